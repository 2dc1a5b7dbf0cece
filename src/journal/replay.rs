//! Rebuilding a run's state from its journal: the fold itself is
//! [`RunState`](super::state::RunState); this is the entry point `resume`, `runs` and
//! the fuzz tests have always called.

use super::event::Record;
pub use super::state::{
    GateRecord, OpKey, OpState, Replay, ReplayError, RunState, StepReplay, StepState,
};

/// Rebuild a run's state from its records.
pub fn replay(records: &[Record]) -> Result<RunState, ReplayError> {
    RunState::from_records(records)
}
