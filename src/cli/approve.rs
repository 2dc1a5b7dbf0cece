//! `runbook approve RUN ID [--decline] [--by NAME]`: answer a gate (or confirm a
//! manual step) of a run from another terminal, while the run waits there or is
//! paused. One line appended under the journal's lock, bound to the plan the gate
//! asks about ([`crate::engine::submit_decision`]); the waiting run reads it within
//! a second.

use super::Global;
use crate::engine::{Submission, SubmitError, Verdict, submit_decision};
use crate::exit;
use crate::journal::event::ApprovalSource;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  runbook approve last force-delete                 a second person approves the plan
  runbook approve 7f3a force-delete --digest 3be1c0a9   only the plan you were shown
  runbook approve last force-delete --decline       the run ends as aborted

The run may be waiting at the gate in another terminal (it goes on within a second) or
paused (`runbook resume` then finds the approval). With `gate: { approvals: 2 }` each
distinct person's approval counts once.")]
pub struct Args {
    /// The run: its id, a unique prefix or suffix of it, or `last`.
    pub run_id: String,
    /// The step (or escalation rung) whose gate waits, or the manual step to confirm.
    pub id: String,
    /// Decline the plan instead (the run ends as aborted); for a manual step, report
    /// it failed.
    #[arg(long)]
    pub decline: bool,
    /// Who decides (default: $USER, then the login name, then `git config
    /// user.email`).
    #[arg(long, visible_alias = "operator", env = "RUNBOOK_OPERATOR")]
    pub by: Option<String>,
    /// The digest of the plan you reviewed (at least its first 8 characters, as
    /// `runbook show` prints it): refused if the gate now asks about another plan.
    #[arg(long, value_name = "SHA256")]
    pub digest: Option<String>,
    #[command(flatten)]
    pub remote: super::remote::ServerArgs,
}

/// `approve --server`: the same decision through `runbook serve`'s API, as the
/// person whose token is in RUNBOOK_TOKEN (`--by` does not apply: the server names
/// who decided from the token).
fn remote(server: &str, args: &Args) -> i32 {
    use super::remote::{call, seg};
    use reqwest::Method;
    use serde_json::json;
    let base = format!("/api/v1/runs/{}", seg(&args.run_id));
    let shown = match call(server, Method::GET, &base, None) {
        Ok(v) => v,
        Err(e) => {
            crate::cli::error_line!("error: {e}");
            return exit::USAGE;
        }
    };
    let w = &shown["run"]["waiting"];
    let result = if w["kind"] == "manual" {
        let outcome = if args.decline { "failed" } else { "done" };
        call(
            server,
            Method::POST,
            &format!("{base}/confirm"),
            Some(json!({ "step": args.id, "outcome": outcome })),
        )
    } else {
        let Some(digest) = args
            .digest
            .clone()
            .or_else(|| w["digest"].as_str().map(str::to_owned))
        else {
            crate::cli::error_line!("error: run {} waits at no gate on {server}", args.run_id);
            return exit::USAGE;
        };
        let decision = if args.decline { "decline" } else { "approve" };
        call(
            server,
            Method::POST,
            &format!("{base}/decision"),
            Some(json!({ "step": args.id, "digest": digest, "decision": decision })),
        )
    };
    match result {
        Ok(v) => {
            eprintln!(
                "{} `{}` as {}",
                v["decided"]
                    .as_str()
                    .or(v["confirmed"].as_str())
                    .unwrap_or("answered"),
                args.id,
                v["by"].as_str().unwrap_or_default()
            );
            println!(
                "{}",
                shown["run"]["run_id"].as_str().unwrap_or(&args.run_id)
            );
            exit::OK
        }
        Err(e) => {
            crate::cli::error_line!("error: {e}");
            exit::USAGE
        }
    }
}

pub fn run(args: Args, g: &Global) -> i32 {
    if let Some(server) = args.remote.server.clone() {
        return remote(&server, &args);
    }
    let by = super::operator::operator_name(args.by.as_deref());
    let sub = Submission {
        run: &args.run_id,
        id: &args.id,
        by: &by,
        verdict: if args.decline {
            Verdict::Decline
        } else {
            Verdict::Approve
        },
        digest: args.digest.as_deref(),
        source: ApprovalSource::Remote,
    };
    match submit_decision(&g.state_dir, &sub, chrono::Utc::now()) {
        Ok(s) => {
            let what = s.rung.as_ref().map_or_else(
                || format!("`{}`", s.step),
                |r| format!("`{}` ({r})", s.step),
            );
            let short: String = s.digest.chars().take(12).collect();
            let line = if s.digest.is_empty() {
                format!(
                    "{} the manual step {what} of run {} as {by}",
                    if args.decline {
                        "reported failed"
                    } else {
                        "confirmed"
                    },
                    s.run_id
                )
            } else if args.decline {
                format!(
                    "declined the plan {short} of {what} in run {} as {by}",
                    s.run_id
                )
            } else {
                format!(
                    "approved the plan {short} of {what} in run {} as {by}: {} of {} approval(s) ({})",
                    s.run_id,
                    s.approvers.len(),
                    s.needed,
                    s.approvers.join(", ")
                )
            };
            eprintln!("{line}");
            eprintln!(
                "{}",
                if s.live {
                    "the run is waiting there and goes on within a second".to_string()
                } else {
                    format!(
                        "the run is paused: continue it with `runbook resume {}`",
                        s.run_id
                    )
                }
            );
            println!("{}", s.run_id);
            exit::OK
        }
        Err(e) => {
            crate::cli::error_line!("error: {e}");
            match e {
                SubmitError::Journal(_) => exit::IO_ERROR,
                _ => exit::USAGE,
            }
        }
    }
}
