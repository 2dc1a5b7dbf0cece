//! The engine's view of the run store ([`crate::store`] owns ids, folders, the lock
//! and listing; these re-exports keep `engine::new_run_id` and friends working).

pub use crate::store::{RunSummary, new_run_id};

use super::EngineError;
use crate::store::StoreError;

/// Every run under `state_dir`, oldest first (see [`crate::store::list_runs`]).
pub fn list_runs(state_dir: &std::path::Path) -> Result<Vec<RunSummary>, EngineError> {
    Ok(crate::store::list_runs(&crate::store::DirStore::new(
        state_dir,
    ))?)
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> EngineError {
        match e {
            StoreError::NotFound { id, .. } => EngineError::NoSuchRun(id),
            StoreError::Locked { run_id, lock, .. } => EngineError::Locked { run_id, lock },
            StoreError::Io { context, source } => EngineError::Io { context, source },
            other => EngineError::Resume(other.to_string()),
        }
    }
}
