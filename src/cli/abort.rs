//! `runbook abort RUN [--reason TEXT]`: end a run that is waiting for a person (paused)
//! or was left behind (interrupted), from any terminal, with who ended it and why in
//! the journal.
//!
//! A run that a live process is driving is refused, not ended under it. That process
//! would go on appending to a journal that says the run is over; the run's own
//! process is the one that can stop its step cleanly (Ctrl-C or SIGTERM there kills
//! the step's process group and journals the abort). This is the choice kubectl makes
//! for a conflicting write: optimistic concurrency refuses a stale writer (409
//! Conflict) rather than overwrite what a live one is doing.

use chrono::Utc;

use super::Global;
use crate::exit;
use crate::journal::event::{Event, RunStatus};
use crate::store::{self, DirStore, HoldState, RunStore, StoreError};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  runbook abort last --reason \"fixed by hand, see INC-4211\"
  runbook abort 7f3a                  a paused run, by the end of its id

A run still driven by a process (status `running`) is refused: stop it in its
terminal with Ctrl-C, or `kill -TERM PID` (the pid is in the message).")]
pub struct Args {
    /// The run: its id, a unique prefix or suffix of it, or `last`.
    pub run_id: String,
    /// Why the run is ended, journaled and shown in the postmortem.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Who ends it (default: $USER, then the login name, then `git config user.email`).
    #[arg(long, env = "RUNBOOK_OPERATOR")]
    pub operator: Option<String>,
    #[command(flatten)]
    pub remote: super::remote::ServerArgs,
}

pub fn run(args: Args, g: &Global) -> i32 {
    if let Some(server) = &args.remote.server {
        use super::remote::{call, seg};
        let base = format!("/api/v1/runs/{}", seg(&args.run_id));
        if let Some(reason) = &args.reason {
            let note = serde_json::json!({ "text": format!("abort: {reason}") });
            if let Err(e) = call(
                server,
                reqwest::Method::POST,
                &format!("{base}/note"),
                Some(note),
            ) {
                crate::cli::error_line!("error: {e}");
                return exit::USAGE;
            }
        }
        return match call(
            server,
            reqwest::Method::POST,
            &format!("{base}/abort"),
            Some(serde_json::json!({})),
        ) {
            Ok(_) => {
                println!("{}", args.run_id);
                exit::OK
            }
            Err(e) => {
                crate::cli::error_line!("error: {e}");
                exit::USAGE
            }
        };
    }
    match abort(&args, g) {
        Ok(run_id) => {
            println!("{run_id}");
            exit::OK
        }
        Err(e) => {
            crate::cli::error_line!("error: {e}");
            exit::USAGE
        }
    }
}

fn abort(args: &Args, g: &Global) -> Result<String, String> {
    let store = DirStore::new(&g.state_dir);
    let run_id = store.resolve(&args.run_id).map_err(|e| e.to_string())?;
    let before = store::summarize(&store, &run_id).map_err(|e| format!("run {run_id}: {e}"))?;
    if !matches!(before.status.as_str(), "paused" | "interrupted" | "running") {
        return Err(format!(
            "run {run_id} has already ended ({}); there is nothing to abort",
            before.status
        ));
    }
    if let HoldState::Stale(holder) = store.hold_state(&run_id) {
        eprintln!(
            "note: {}; aborting it instead",
            HoldState::stale_message(&holder, &run_id)
        );
    }
    // Held for the two appends, so no `resume` starts between them.
    let held = store.hold(&run_id).map_err(|e| match e {
        StoreError::Locked { holder, .. } => format!(
            "run {run_id} is being driven by a live process{holder}; stop it there (Ctrl-C in its terminal, or `kill -TERM <pid>`: the step is stopped and the run journaled as aborted); `runbook abort` does not end a run under a running process"
        ),
        other => other.to_string(),
    })?;
    let by = super::operator::operator_name(args.operator.as_deref());
    let why = args
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .unwrap_or("no reason given");
    let reason = format!("aborted by {by} with `runbook abort`: {why}");
    let append = |event| {
        crate::journal::writer::append_once(&held.journal, Utc::now(), event)
            .map_err(|e| e.to_string())
    };
    append(Event::Note {
        text: format!("run aborted: {why}"),
        by: by.clone(),
        at: None,
    })?;
    append(Event::RunFinished {
        status: RunStatus::Aborted,
        duration_ms: before.duration_ms,
        reason: Some(reason),
    })?;
    eprintln!(
        "aborted run {run_id} (was {}{}); `runbook postmortem {run_id}` renders it",
        before.status,
        before
            .paused_at
            .as_ref()
            .map(|s| format!(" at step `{s}`"))
            .unwrap_or_default()
    );
    Ok(run_id)
}
