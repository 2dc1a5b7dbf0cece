//! `runbook runs`: every run of a store with what its journal says about it.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{RunStore, StoreError};
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
    pub journal: PathBuf,
}

/// Every run in `store`, oldest first. Unreadable journals are listed with status
/// `unreadable` rather than hiding the run.
pub fn list_runs(store: &dyn RunStore) -> Result<Vec<RunSummary>, StoreError> {
    let mut out = Vec::new();
    for run in store.list()? {
        let journal = run.journal;
        let summary = match reader::read(&journal)
            .map_err(|e| e.to_string())
            .and_then(|j| replay::replay(&j.records).map_err(|e| e.to_string()))
        {
            Ok(r) => {
                let status = match r.status {
                    Some(s) => s.as_str().to_string(),
                    None if store.is_held(&run.run_id) => "running".into(),
                    None => "interrupted".into(),
                };
                let duration_ms = match r.status {
                    Some(_) => r.duration_ms,
                    None => u64::try_from((r.last_ts - r.started).num_milliseconds()).unwrap_or(0),
                };
                RunSummary {
                    run_id: r.run_id,
                    runbook: r.runbook.name,
                    status,
                    started: r.started,
                    duration_ms,
                    journal,
                }
            }
            Err(_) => RunSummary {
                run_id: run.run_id,
                runbook: "?".into(),
                status: "unreadable".into(),
                started: DateTime::<Utc>::MIN_UTC,
                duration_ms: 0,
                journal,
            },
        };
        out.push(summary);
    }
    out.sort_by(|a, b| a.started.cmp(&b.started).then(a.run_id.cmp(&b.run_id)));
    Ok(out)
}
