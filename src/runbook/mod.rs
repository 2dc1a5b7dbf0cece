//! The runbook format: model, parser with positions, validation, JSON Schema.
pub mod model;
