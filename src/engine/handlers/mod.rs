//! Step handlers: one per kind of step (check, action, escalation ladder, verify,
//! manual). Each is a function of a small context ([`Ctx`]: providers, approver,
//! clock, cancellation, the event stream and the run's variables), the step, and —
//! when an earlier process started the step — the run state's [`StepState`] of it.
//! A handler says what happened by emitting events; it returns how the step ended
//! for the run loop, which journals the step's end.
//!
//! Nothing a handler needs lives on a shared struct mutated from elsewhere: what a
//! resumed step continues from is the `prior` argument (the one fold's view), and a
//! ladder's fixing rung comes back in [`Handled::fixed_by`].

mod action;
mod check;
mod ladder;
mod manual;
mod verify;

use serde_json::Value;

use super::EngineError;
use super::ctx::Ctx;
use super::steps::End;
use crate::journal::state::StepState;
use crate::runbook::model::{Step, StepKind};

/// How a handler left its step.
pub(crate) struct Handled {
    pub end: End,
    /// The step's result (kept under `steps.ID.result`); `null` when it has none.
    pub result: Value,
    /// The rung that fixed an escalation ladder.
    pub fixed_by: Option<String>,
}

impl Handled {
    fn of(end: End, result: Value) -> Handled {
        Handled {
            end,
            result,
            fixed_by: None,
        }
    }
}

/// Run `step` with the handler of its kind. `prior` is what the run state says about
/// the step when an earlier process started it (resume); `None` otherwise.
pub(crate) async fn handle(
    cx: &mut Ctx<'_>,
    step: &Step,
    prior: Option<&StepState>,
) -> Result<Handled, EngineError> {
    Ok(match step.kind() {
        StepKind::Check => {
            let (end, result) = check::run(cx, step).await?;
            Handled::of(end, result)
        }
        StepKind::Action if !step.escalate.is_empty() => {
            let mut fixed_by = None;
            let end = ladder::run(cx, step, prior, &mut fixed_by).await?;
            Handled {
                end,
                result: Value::Null,
                fixed_by,
            }
        }
        StepKind::Action => {
            let (end, result) = action::run(cx, step, prior).await?;
            Handled::of(end, result)
        }
        StepKind::Verify => {
            let (end, result) = verify::run(cx, step).await?;
            Handled::of(end, result)
        }
        StepKind::Manual => Handled::of(manual::run(cx, step).await?, Value::Null),
    })
}

/// The text of a step's templates, other than its operation's, that read a
/// `for_each` item's variables (a `keep:` namespace), for [`Ctx::prepare`].
fn keep_text(step: &Step) -> String {
    step.keep
        .as_deref()
        .and_then(|k| k.namespace.as_deref())
        .cloned()
        .unwrap_or_default()
}
