//! Journal: event types, writer (fsync per event), reader (tolerates a torn last line).
pub mod event;
pub mod reader;
pub mod replay;
pub mod writer;
