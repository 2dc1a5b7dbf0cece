//! Runs on disk: ids, the per-run lock, and the list of past runs.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::EngineError;
use crate::journal::{reader, replay};

/// A new run id: UTC start time, the runbook's name and a short random suffix, so ids
/// sort by time and say what ran: `20260313-142501-hub-pvc-locked-7f3a`.
pub fn new_run_id(now: DateTime<Utc>, runbook: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let salt = (nanos ^ std::process::id().rotate_left(16)) & 0xffff;
    format!("{}-{runbook}-{salt:04x}", now.format("%Y%m%d-%H%M%S"))
}

/// An exclusive `flock` on `<run>/lock`, held while a process drives the run. The
/// kernel drops it when the process dies, so a run killed with SIGKILL can be resumed.
#[derive(Debug)]
pub(crate) struct RunLock {
    _file: File,
}

impl RunLock {
    pub(crate) fn acquire(run_dir: &Path, run_id: &str) -> Result<RunLock, EngineError> {
        let path = run_dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| EngineError::Io {
                context: format!("cannot open lock file {}", path.display()),
                source,
            })?;
        // A lock can outlive its holder by a moment: a child process forked by the
        // previous holder (a shell step) keeps the descriptor until it execs. So a
        // busy lock is retried for a second before it counts as another run's.
        for attempt in 0..20 {
            // SAFETY: flock on a descriptor owned by `file`, which lives as long as the lock.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(RunLock { _file: file });
            }
            if attempt < 19 {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        Err(EngineError::Locked {
            run_id: run_id.to_string(),
            lock: path,
        })
    }
}

/// True when a process holds the run's lock right now.
pub(crate) fn is_locked(run_dir: &Path) -> bool {
    let Ok(file) = File::open(run_dir.join("lock")) else {
        return false;
    };
    // SAFETY: flock on a descriptor owned by `file`; released when it is dropped.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    rc != 0
}

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

/// Every run under `state_dir`, oldest first. Unreadable journals are listed with
/// status `unreadable` rather than hiding the run.
pub fn list_runs(state_dir: &Path) -> Result<Vec<RunSummary>, EngineError> {
    let runs = state_dir.join("runs");
    let entries = match std::fs::read_dir(&runs) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(EngineError::Io {
                context: format!("cannot list {}", runs.display()),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let journal = dir.join("journal.ndjson");
        if !journal.is_file() {
            continue;
        }
        let id = entry.file_name().to_string_lossy().into_owned();
        let summary = match reader::read(&journal)
            .map_err(|e| e.to_string())
            .and_then(|j| replay::replay(&j.records).map_err(|e| e.to_string()))
        {
            Ok(r) => {
                let status = match r.status {
                    Some(s) => s.as_str().to_string(),
                    None if is_locked(&dir) => "running".into(),
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
                run_id: id,
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
