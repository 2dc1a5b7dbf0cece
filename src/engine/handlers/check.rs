//! A check: read-only operations whose result is saved and whose `expect` decides
//! whether the run has anything to do (`not_applicable` when it does not hold).

use serde_json::Value;

use crate::engine::EngineError;
use crate::engine::ctx::Ctx;
use crate::engine::steps::{End, failed, ok, scope};
use crate::journal::event::Outcome;
use crate::runbook::model::Step;

/// Run a check step.
pub(super) async fn run(cx: &mut Ctx<'_>, step: &Step) -> Result<(End, Value), EngineError> {
    let Some(op) = step.op() else {
        return Ok((failed("the check has no operation".into()), Value::Null));
    };
    let base = scope(step, None);
    let prepared = match cx.prepare(&base, op, step.for_each.as_deref(), true, "") {
        Ok(p) => p,
        Err(e) => return Ok((failed(e), Value::Null)),
    };
    let (mut result, errors) = cx.execute_step(step, prepared, &[]).await?;
    if cx.cancel.is_cancelled() {
        return Ok((End::Aborted("aborted by operator".into()), result));
    }
    if !errors.is_empty() {
        return Ok((failed(errors.join("; ")), result));
    }
    cx.save(step, &result)?;
    match cx.expect(step, &mut result) {
        Ok(true) | Err(None) => Ok((ok(cx.summary_of(step, &result)), result)),
        Ok(false) => Ok((
            End::Done {
                outcome: Outcome::NotApplicable,
                summary: format!(
                    "expect does not hold ({}): nothing to do",
                    step.expect.as_deref().map(String::as_str).unwrap_or("")
                ),
            },
            result,
        )),
        Err(Some(e)) => Ok((failed(format!("expect: {e}")), result)),
    }
}
