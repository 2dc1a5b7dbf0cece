//! `runbook runs`: every run of a store with what its journal says about it.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{HoldState, RunStore, StoreError};
use crate::journal::event::{Event, Record};
use crate::journal::{reader, replay};

/// One line of `runbook runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub runbook: String,
    /// `succeeded`, `failed`, `aborted`, `not_applicable`, `paused`, `running`, or
    /// `interrupted` (no final status and nobody holds the lock: resume it).
    pub status: String,
    pub started: DateTime<Utc>,
    pub duration_ms: u64,
    /// A dry run changed nothing; it is listed as such and `last` skips it.
    pub dry_run: bool,
    /// Who started the run.
    pub operator: String,
    /// Who resumed it, in order (one entry per `runbook resume`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumed_by: Vec<String>,
    /// The step a paused run waits at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<String>,
    /// Why it waits and the command that continues it (a paused run's last `paused`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continue_with: Option<String>,
    /// For an interrupted run whose lock still names the process that died with it:
    /// what `store::lock` says about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_lock: Option<String>,
    /// The cluster the run acts on, as `run_started` recorded it (none for a
    /// runbook without kube steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<crate::journal::event::KubeTarget>,
    pub journal: PathBuf,
    /// Outputs cut at the in-memory cap and streamed whole to a side file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spilled: Vec<SpilledOutput>,
    /// What `runbook undo` (or `on_failure: undo`) did, one line per step it reached,
    /// in order: `cordon: ok — undid 3 item(s)`, `scale-hub: not undone — …`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undone: Vec<String>,
}

/// One output a provider cut at its in-memory cap and streamed to a side file
/// (`stdout_file`, `body_file` in the operation's journaled result).
#[derive(Debug, Clone, Serialize)]
pub struct SpilledOutput {
    pub step: String,
    /// `stdout`, `stderr`, `body`.
    pub stream: String,
    /// Relative to the run folder.
    pub file: String,
    /// The whole stream's size, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// True when the spill cap cut the file short of the stream.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub file_truncated: bool,
}

impl SpilledOutput {
    /// One line for `runbook show`, the file under `run_dir`.
    pub fn describe(&self, run_dir: &std::path::Path) -> String {
        let size = self
            .bytes
            .map(|n| format!(", {n} bytes"))
            .unwrap_or_default();
        let cut = if self.file_truncated {
            " (cut at RUNBOOK_MAX_SPILL)"
        } else {
            ""
        };
        format!(
            "{} (step `{}` {}{size}){cut}",
            run_dir.join(&self.file).display(),
            self.step,
            self.stream
        )
    }
}

/// The spilled outputs a journal names, in order.
fn spilled(records: &[Record]) -> Vec<SpilledOutput> {
    let mut out = Vec::new();
    for rec in records {
        let Event::OpFinished {
            scope,
            result: Some(serde_json::Value::Object(m)),
            ..
        } = &rec.event
        else {
            continue;
        };
        for (k, v) in m {
            let (Some(stream), Some(file)) = (k.strip_suffix("_file"), v.as_str()) else {
                continue;
            };
            if m.get(&format!("{stream}_truncated")) != Some(&serde_json::Value::Bool(true)) {
                continue;
            }
            out.push(SpilledOutput {
                step: scope.step.clone(),
                stream: stream.to_owned(),
                file: file.to_owned(),
                bytes: m.get(&format!("{stream}_bytes")).and_then(|b| b.as_u64()),
                file_truncated: m.get(&format!("{stream}_file_truncated"))
                    == Some(&serde_json::Value::Bool(true)),
            });
        }
    }
    out
}

impl RunSummary {
    /// The status as a person reads it: a dry run says so.
    pub fn status_label(&self) -> String {
        if self.dry_run {
            format!("{} (dry run)", self.status)
        } else {
            self.status.clone()
        }
    }
}

/// The run's summary from its journal.
pub fn summarize(store: &dyn RunStore, run_id: &str) -> Result<RunSummary, String> {
    let journal = store.journal_path(run_id);
    let j = reader::read(&journal).map_err(|e| e.to_string())?;
    let r = replay::replay(&j.records).map_err(|e| e.to_string())?;
    let hold = store.hold_state(run_id);
    let status = match r.status {
        Some(s) => s.as_str().to_string(),
        None if matches!(hold, HoldState::Held(_)) => "running".into(),
        None => "interrupted".into(),
    };
    let duration_ms = match r.status {
        Some(_) => r.duration_ms,
        None => u64::try_from((r.last_ts - r.started).num_milliseconds()).unwrap_or(0),
    };
    let stale_lock = match (&hold, r.status) {
        (HoldState::Stale(holder), None) => Some(HoldState::stale_message(holder, &r.run_id)),
        _ => None,
    };
    let undone = undo_lines(&r);
    let (waiting_for, continue_with) = match r.paused_at {
        Some(_) => last_pause(&j.records),
        None => (None, None),
    };
    Ok(RunSummary {
        resumed_by: resumers(&j.records),
        run_id: r.run_id,
        runbook: r.runbook.name,
        status,
        started: r.started,
        duration_ms,
        dry_run: r.dry_run,
        operator: r.operator,
        paused_at: r.paused_at,
        waiting_for,
        continue_with,
        stale_lock,
        target: r.target,
        journal,
        spilled: spilled(&j.records),
        undone,
    })
}

/// One line per undo the run's state knows, in the order they were reached.
fn undo_lines(r: &crate::journal::state::RunState) -> Vec<String> {
    use crate::journal::event::Outcome;
    r.undo_order
        .iter()
        .filter_map(|id| {
            let u = r.step(id)?.undo.as_ref()?;
            let (word, why) = match (&u.skipped, u.outcome) {
                (Some(why), _) => ("not undone", why.clone()),
                (None, Some(Outcome::Ok)) => ("undone", u.summary.clone()),
                (None, Some(Outcome::Skipped)) => ("skipped at its gate", u.summary.clone()),
                (None, Some(Outcome::Aborted)) => ("undo stopped", u.summary.clone()),
                (None, Some(_)) => ("undo failed", u.summary.clone()),
                (None, None) => (
                    "undo not finished",
                    format!("`{id}.undo` waits or was cut short"),
                ),
            };
            Some(if why.is_empty() {
                format!("{id}: {word}")
            } else {
                format!("{id}: {word} — {why}")
            })
        })
        .collect()
}

fn resumers(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|rec| match &rec.event {
            Event::RunResumed { operator, .. } => Some(operator.clone()),
            _ => None,
        })
        .collect()
}

fn last_pause(records: &[Record]) -> (Option<String>, Option<String>) {
    records
        .iter()
        .rev()
        .find_map(|rec| match &rec.event {
            Event::Paused { reason, resume, .. } => {
                Some((Some(reason.clone()), Some(resume.clone())))
            }
            _ => None,
        })
        .unwrap_or((None, None))
}

/// Every run in `store`, oldest first. Unreadable journals are listed with status
/// `unreadable` rather than hiding the run.
pub fn list_runs(store: &dyn RunStore) -> Result<Vec<RunSummary>, StoreError> {
    let mut out = Vec::new();
    for run in store.list()? {
        let summary = summarize(store, &run.run_id).unwrap_or_else(|_| RunSummary {
            run_id: run.run_id.clone(),
            runbook: "?".into(),
            status: "unreadable".into(),
            started: DateTime::<Utc>::MIN_UTC,
            duration_ms: 0,
            dry_run: false,
            operator: String::new(),
            resumed_by: Vec::new(),
            paused_at: None,
            waiting_for: None,
            continue_with: None,
            stale_lock: None,
            target: None,
            journal: run.journal.clone(),
            spilled: Vec::new(),
            undone: Vec::new(),
        });
        out.push(summary);
    }
    out.sort_by(|a, b| a.started.cmp(&b.started).then(a.run_id.cmp(&b.run_id)));
    Ok(out)
}
