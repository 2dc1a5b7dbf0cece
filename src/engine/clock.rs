//! The clock lives in the leaf module [`crate::clock`] so that `expr` and `providers`
//! can use it without importing the engine (which imports them); re-exported here so
//! `engine::Clock` keeps working.

pub use crate::clock::{Clock, SystemClock};
