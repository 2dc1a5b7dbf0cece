//! `runbook undo RUN [STEP]`: run the `undo:` of a run's completed actions, newest
//! first (or of STEP only), each behind its own gate, journaled in the run's journal
//! (`undo_started` … `undo_finished`, `undo_skipped`). The flags are `resume`'s:
//! `--yes`, `--approve ID.undo`, `--wait-for-approval`, secrets given again.

use std::path::PathBuf;

use super::Global;
use super::run::{
    ApprovalArgs, Resume, build_providers, check_approvals, check_resume_hold, continued_params,
    drive, notifier, resolve_run_id, resume_on_its_cluster, run_and_runbook, runbook_dir_of,
    secret_inputs, setup,
};
use crate::engine::UndoRequest;
use crate::exit;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  runbook undo last                     ask at each undo's gate, newest action first
  runbook undo 7f3a --yes               approve every undo's plan
  runbook undo 7f3a cordon              only the undo of step `cordon`
  runbook undo 7f3a --approve cordon.undo

Each completed action's `undo:` runs once: undoing an undone run again does nothing
twice, and an undo cut short (killed, paused at its gate) continues with the items
not yet undone. A completed action without `undo:` is named as not undone. A declined
undo stops the undos after it (exit 4); a run that waits at an undo's gate exits 3.")]
pub struct Args {
    /// The run: its id, a unique prefix or suffix of it, or `last`.
    pub run_id: String,
    /// Undo only this step (an action that completed in the run).
    pub step: Option<String>,
    /// A secret parameter, as name=value: secrets are not kept in the journal, so a
    /// run that has them needs them again (repeatable).
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// A secret parameter from a file's content (trailing newline trimmed), as
    /// name=path (repeatable); or set RUNBOOK_SECRET_<NAME>.
    #[arg(long = "secret-file", value_name = "NAME=PATH")]
    pub secret_files: Vec<String>,
    /// Undo although the runbook file was edited since the run started (the change
    /// is journaled).
    #[arg(long)]
    pub accept_changes: bool,
    #[command(flatten)]
    pub approval: ApprovalArgs,
}

pub fn run(mut args: Args, g: &Global) -> i32 {
    let params = match continued_params(&args.params) {
        Ok(p) => p,
        Err(e) => {
            crate::cli::error_line!("error: {e}");
            return exit::USAGE;
        }
    };
    args.run_id = match resolve_run_id(&g.state_dir, &args.run_id) {
        Ok(id) => id,
        Err(e) => {
            crate::cli::error_line!("error: {e}");
            return exit::USAGE;
        }
    };
    if let Err(e) = check_resume_hold(&g.state_dir, &args.run_id) {
        crate::cli::error_line!("error: {e}");
        return exit::USAGE;
    }
    let found = run_and_runbook(&g.state_dir, &args.run_id);
    if !args.approval.approve.is_empty()
        && let Some((_, loaded)) = &found
        && let Err(e) = check_approvals(&args.approval.approve, &loaded.runbook)
    {
        crate::cli::error_line!("error: {e}");
        return exit::USAGE;
    }
    let base_dir = runbook_dir_of(&g.state_dir, &args.run_id).unwrap_or_else(|| PathBuf::from("."));
    let secrets = match secret_inputs(&args.secret_files) {
        Ok(s) => s,
        Err(e) => {
            crate::cli::error_line!("error: {e}");
            return exit::USAGE;
        }
    };
    let notifier = match notifier(&args.approval, found.as_ref().map(|(_, l)| &l.runbook), g) {
        Ok(n) => n,
        Err(e) => {
            crate::cli::error_line!("error: {e}");
            return exit::USAGE;
        }
    };
    let (mut opts, approver) = setup(&args.approval, g, params, base_dir, false);
    opts.reporters
        .extend(notifier.as_ref().map(|n| n.reporter()));
    opts.secrets = secrets;
    opts.accept_changes = args.accept_changes;
    opts.undo = Some(UndoRequest {
        step: args.step.clone(),
    });
    let providers = match build_providers() {
        Ok(p) => p,
        Err(e) => {
            crate::cli::error_line!("error: {e}");
            return exit::INTERNAL;
        }
    };
    // A cluster is needed when an undo still to run has a kube operation.
    let kube_needed = found.as_ref().is_some_and(|(state, loaded)| {
        let rb = &loaded.runbook;
        rb.steps.iter().chain(&rb.handlers).any(|s| {
            s.undo.as_ref().is_some_and(|u| u.kube.is_some())
                && state.step(&s.id.value).is_some_and(|st| {
                    !st.ok_items(None).is_empty() && !st.undo.as_ref().is_some_and(|u| u.is_done())
                })
        })
    });
    let state_dir = g.state_dir.clone();
    let run_id = args.run_id.clone();
    let kube_args = args.approval.kube.clone();
    drive(&args.approval, notifier, move |cancel| {
        resume_on_its_cluster(
            Resume {
                state_dir,
                run_id,
                kube_args,
                kube_needed,
                providers,
                approver,
                opts,
            },
            cancel,
            "nothing was undone",
        )
    })
}
