//! Journal: event types, writer (fsync per event), reader (tolerates a torn last line),
//! and the run state every reader of events shares.
pub mod digest;
pub mod event;
pub mod reader;
pub mod replay;
pub mod state;
pub mod writer;
