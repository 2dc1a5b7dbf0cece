//! `runbook undo RUN [STEP]`: run the `undo:` of a run's completed actions, newest
//! first (or of STEP only), each behind its own gate, journaled in the run's journal
//! (`undo_started` … `undo_finished`, `undo_skipped`). The flags are `resume`'s:
//! `--yes`, `--approve ID.undo`, `--wait-for-approval`, secrets given again.

use super::Global;
use super::run::{ApprovalArgs, Continuation, Resume, continuation, drive, resume_on_its_cluster};
use crate::engine::UndoRequest;

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

pub fn run(args: Args, g: &Global) -> i32 {
    let c = match continuation(
        &args.run_id,
        &args.params,
        &args.secret_files,
        &args.approval,
        g,
    ) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Continuation {
        run_id,
        found,
        mut opts,
        approver,
        notifier,
        providers,
    } = c;
    opts.accept_changes = args.accept_changes;
    opts.undo = Some(UndoRequest {
        step: args.step.clone(),
    });
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
