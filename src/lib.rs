//! `runbook`: a runbook-as-code executor.
//!
//! Data flows one way: YAML runbooks are parsed and validated into a typed model
//! ([`runbook`]), the [`engine`] executes it through [`providers`] and writes every
//! event to an append-only [`journal`], and [`render`] turns a journal into a
//! postmortem. [`lab`] is a simulated Kubernetes API server used by tests, demos and
//! `runbook test`.

pub mod cli;
pub mod clock;
pub mod engine;
pub mod exit;
pub mod expr;
pub mod journal;
pub mod lab;
#[cfg(test)]
mod layering;
pub mod notify;
pub mod providers;
pub mod render;
pub mod runbook;
pub mod serve;
pub mod store;
pub mod suite;
