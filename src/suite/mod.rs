//! Runbooks against an in-process lab: `runbook test` and `runbook demo`.
//!
//! Both load a scenario into a [`crate::lab::Lab`], serve it on 127.0.0.1 (for the
//! Prometheus query API and any HTTP step), register a `kube` provider that talks to
//! the lab in-process, and run the engine with a [`LabClock`], so every wait of the
//! engine (a verification polling every 10 s for 7 minutes) moves the lab's virtual
//! clock instead of the wall clock: minutes of cluster time pass in milliseconds, and
//! the journal's timestamps are the cluster's.

pub mod clock;
pub mod explain;
pub mod runner;
pub mod shell;
pub mod spec;

pub use clock::LabClock;
pub use runner::{CaseResult, LabRun, run_case, run_on_lab};
