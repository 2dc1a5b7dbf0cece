//! What several test modules share.

pub mod cli;
pub mod kube;
pub mod scripted;
