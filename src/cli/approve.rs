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
}

pub fn run(args: Args, g: &Global) -> i32 {
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
