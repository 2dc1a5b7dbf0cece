//! Templates and conditions: the two small languages inside a runbook.
//!
//! - **Templates** (every string an operation sends out: a URL, an argv entry, a pod
//!   name) are handlebars in strict mode, without HTML escaping: `{{params.namespace}}`.
//!   A missing variable is an error, never an empty string, so a typo cannot turn
//!   `delete pod {{item.name}}` into `delete pod `.
//! - **Conditions** (`when`, `expect`, `where`, `for_each`, `wait.for`) are CEL, the
//!   side-effect-free expression language Kubernetes uses for its own validation rules:
//!   `size(lost_pods) > 0`, `pod.status.phase == 'Unknown'`.
//!
//! Both evaluate against one JSON object whose top-level keys are the variables
//! (`params`, each saved value, `item`, `index`, `result`, ...). Compiled templates and
//! programs are cached per thread, keyed by their source, so a step that renders the
//! same template for 500 `for_each` items compiles it once.
//!
//! Lint uses [`template_refs`] and [`condition_refs`] to check that every variable a
//! runbook mentions exists at that point, before anything runs.

mod condition;
mod cost;
mod helpers;
mod k8s;
mod lazy;
mod template;

pub use condition::{
    NOW, bare_variable, condition_refs, eval, eval_bool, eval_bool_each, static_cost,
    unknown_functions, with_clock, with_clock_sync, wrong_arity,
};
pub use cost::{COST_BUDGET_VAR, DEFAULT_COST_BUDGET, budget as cost_budget};
/// A duration as `kubectl get` shows ages (`4h`, `2d`).
pub(crate) use helpers::short_age;
pub use template::{KNOWN_HELPERS, render, render_json, template_refs, unknown_helpers};

/// An error from parsing or evaluating a template or a condition.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    pub message: String,
    /// Byte offset in the expression or template when known.
    pub offset: Option<usize>,
}

impl ExprError {
    pub(crate) fn new(message: impl Into<String>, offset: Option<usize>) -> Self {
        ExprError {
            message: message.into(),
            offset,
        }
    }
}

/// A variable mentioned by a template or condition: its dotted path as far as it can
/// be read statically (`params.namespace` is `["params", "namespace"]`, `x[0].y` is
/// `["x"]`), and the byte offset of its first character in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarRef {
    pub path: Vec<String>,
    pub offset: usize,
}

/// Byte offset of a 1-based (line, column-in-chars) position inside `source`.
pub(crate) fn offset_of(source: &str, line: usize, col: usize) -> usize {
    let mut offset = 0;
    for (i, l) in source.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let chars = col.saturating_sub(1);
            return offset
                + l.char_indices()
                    .nth(chars)
                    .map(|(b, _)| b)
                    .unwrap_or(l.len());
        }
        offset += l.len();
    }
    source.len()
}
