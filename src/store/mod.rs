//! The run store: where runs live, what they are called, and who holds one.
//!
//! Everything about a run lives in its journal, but the journal needs a home: a
//! folder, an id a person can type, a lock so two processes never drive one run,
//! and room for outputs too large to inline. This module owns all of that, behind
//! [`RunStore`], so that the engine, the renderer and the CLI never spell out a path
//! and a shared store (a database, for teams) can be added later as a second
//! implementation without touching the engine.
//!
//! Today's only implementation is [`DirStore`], the layout every release so far has
//! written:
//!
//! ```text
//! <state-dir>/runs/<run-id>/journal.ndjson   the journal (journal::writer appends)
//! <state-dir>/runs/<run-id>/lock             held (flock) while a process drives the run
//! <state-dir>/runs/<run-id>/outputs/NNNN-…   side files for outputs too large to inline
//! ```

mod dir;
mod list;
mod lock;
mod resolve;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

pub use dir::{DirStore, JOURNAL, LOCK, OUTPUTS, SideFiles, SideStream};
pub use list::{RunSummary, list_runs, summarize};
pub use lock::{HoldState, LockHolder};
pub use resolve::resolve_among;

/// Where runs are kept. Every method takes a run id as [`RunStore::resolve`] returns
/// it; ids are what the journal's `run_started` says and what people type.
pub trait RunStore: Send + Sync {
    /// Create a new, empty run for `runbook`, started at `started`, with a fresh id
    /// ([`new_run_id`]), and hold it for the caller (no other process can drive it).
    fn create(&self, started: DateTime<Utc>, runbook: &str) -> Result<HeldRun, StoreError>;

    /// Hold an existing run to continue it (`resume`). [`StoreError::NotFound`] when it
    /// has no journal, [`StoreError::Locked`] while another process holds it.
    fn hold(&self, run_id: &str) -> Result<HeldRun, StoreError>;

    /// The run a person means: an exact id, `last` (the newest run), a unique prefix
    /// (`20260313-1425`) or a unique suffix (the trailing 4 hex people copy, `7f3a`).
    fn resolve(&self, query: &str) -> Result<String, StoreError>;

    /// Every run that has a journal, in no particular order.
    fn list(&self) -> Result<Vec<StoredRun>, StoreError>;

    /// True while some process holds the run (so a run with no final status is still
    /// going on rather than interrupted).
    fn is_held(&self, run_id: &str) -> bool;

    /// Whether the run is held, by whom, and whether a holder died with it.
    fn hold_state(&self, run_id: &str) -> HoldState;

    /// Where the run's journal is read and appended. The journal writer and reader are
    /// file based today; a database store would hand out a sink here instead.
    fn journal_path(&self, run_id: &str) -> PathBuf;

    /// Where the store is, for messages (`no runs in …`).
    fn location(&self) -> String;
}

/// A run listed by [`RunStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRun {
    pub run_id: String,
    pub journal: PathBuf,
}

/// A run this process holds: its id, its folder, its journal and its side files. The
/// hold ends when this is dropped (and when the process dies, however it dies, so a
/// run killed with SIGKILL can be resumed).
#[derive(Debug)]
pub struct HeldRun {
    pub run_id: String,
    /// The run's folder: the renderer and the report name it.
    pub dir: PathBuf,
    pub journal: PathBuf,
    /// Whatever keeps the hold (a file lock for [`DirStore`]); released on drop.
    _hold: Box<dyn std::any::Any + Send + Sync>,
}

impl HeldRun {
    /// A run held by `hold` until the returned value is dropped.
    pub fn new(
        run_id: String,
        dir: PathBuf,
        journal: PathBuf,
        hold: impl std::any::Any + Send + Sync,
    ) -> HeldRun {
        HeldRun {
            run_id,
            dir,
            journal,
            _hold: Box::new(hold),
        }
    }
}

/// The state directory when none is given: `.runbook` at the top of the git
/// repository `cwd` is in, so `runbook runs` from a subfolder finds the runs started
/// from the top (and the runbooks' repository is where `.runbook/.gitignore` keeps
/// them out of commits); outside a repository, `.runbook` in `cwd`. Returned relative
/// (`.runbook`) when that is where it is, so messages stay short.
pub fn default_state_dir(cwd: &Path) -> PathBuf {
    const NAME: &str = ".runbook";
    match cwd.ancestors().find(|d| d.join(".git").exists()) {
        Some(top) if top != cwd => top.join(NAME),
        _ => PathBuf::from(NAME),
    }
}

/// A new run id: UTC start time, the runbook's name and a short random suffix, so ids
/// sort by time, say what ran, and end in 4 hex digits a person can type to name the
/// run: `20260313-142501-hub-pvc-locked-7f3a`.
pub fn new_run_id(now: DateTime<Utc>, runbook: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let salt = (nanos ^ std::process::id().rotate_left(16)) & 0xffff;
    format!("{}-{runbook}-{salt:04x}", now.format("%Y%m%d-%H%M%S"))
}

/// What can go wrong finding, creating or holding a run. The messages are the ones
/// `runbook postmortem`, `resume` and `note` have always printed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "no runs in {dir} (runs live in <state-dir>/runs; see --state-dir or RUNBOOK_STATE_DIR)"
    )]
    NoRuns { dir: PathBuf },
    #[error("no run {id:?} in {dir} (`runbook runs` lists them)")]
    NotFound { id: String, dir: PathBuf },
    #[error("{id:?} matches several runs: {candidates}; give more of the id")]
    Ambiguous { id: String, candidates: String },
    #[error(
        "only dry runs in {dir}, and `last` skips them (they changed nothing); name a dry run by its id"
    )]
    OnlyDryRuns { dir: PathBuf },
    #[error("run {run_id} is in use by another process (lock {lock}{holder})")]
    Locked {
        run_id: String,
        lock: PathBuf,
        /// `, held by pid N on this host`, when the lock file names its holder.
        holder: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// True when the person named a run that is not there (or not uniquely): exit 2.
    pub fn is_usage(&self) -> bool {
        !matches!(self, StoreError::Io { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_state_dir_is_at_the_git_top_level_else_here() {
        let tmp = tempfile::tempdir().unwrap();
        let sub = tmp.path().join("runbooks/db");
        std::fs::create_dir_all(&sub).unwrap();
        assert_eq!(default_state_dir(&sub), PathBuf::from(".runbook"));
        std::fs::create_dir(tmp.path().join(".git")).unwrap();
        assert_eq!(default_state_dir(&sub), tmp.path().join(".runbook"));
        assert_eq!(default_state_dir(tmp.path()), PathBuf::from(".runbook"));
    }

    #[test]
    fn a_run_id_sorts_by_time_names_the_runbook_and_ends_in_4_hex() {
        let t = DateTime::parse_from_rfc3339("2026-03-13T14:25:01Z")
            .unwrap()
            .with_timezone(&Utc);
        let id = new_run_id(t, "hub-pvc-locked");
        let (head, hex) = id.rsplit_once('-').unwrap();
        assert_eq!(head, "20260313-142501-hub-pvc-locked");
        assert_eq!(hex.len(), 4);
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    }
}
