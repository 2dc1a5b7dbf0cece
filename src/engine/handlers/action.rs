//! An action without a ladder: its plan gated, its operations run (on resume only the
//! ones the run state does not show finished ok), its `expect` and verification
//! checked.

use serde_json::Value;

use super::keep_text;
use crate::engine::EngineError;
use crate::engine::ctx::Ctx;
use crate::engine::events::Notice;
use crate::engine::gate::Pass;
use crate::engine::steps::{End, failed, ok, scope};
use crate::engine::verify::{DEFAULT_WITHIN, Verdict};
use crate::journal::state::StepState;
use crate::runbook::model::Step;

/// Run an action step; `prior` is the run state of the step when an earlier process
/// started it (resume).
pub(super) async fn run(
    cx: &mut Ctx<'_>,
    step: &Step,
    prior: Option<&StepState>,
) -> Result<(End, Value), EngineError> {
    let Some(op) = step.op() else {
        return Ok((failed("the action has no operation".into()), Value::Null));
    };
    let base = scope(step, None);
    let mut prepared =
        match cx.prepare(&base, op, step.for_each.as_deref(), false, &keep_text(step)) {
            Ok(p) => p,
            Err(e) => return Ok((failed(e), Value::Null)),
        };
    let mut prior = prior;
    let mut done_items = Vec::new();
    if let Some(p) = prior {
        let unknown = !p.unknown_ops(None).is_empty();
        if let Some(end) = cx.reverify_unknown(step, p, None).await? {
            return Ok((end, Value::Null));
        }
        done_items = p.ok_items(None);
        prepared.retain(|x| !done_items.contains(&x.planned.scope.item));
        if unknown && step.verification().is_none() {
            // Nothing can tell whether it already happened: a person decides
            // again, the earlier approval does not carry over.
            prior = None;
        }
    }
    let gate = cx.gate_of(step, None);
    // Nothing left to run (an empty `for_each`, or every item finished before a
    // resume): there is nothing to approve.
    let pass = if prepared.is_empty() && !cx.opts.dry_run {
        Pass::Go
    } else {
        cx.gate(
            step,
            None,
            step.title(),
            &mut prepared,
            gate,
            prior,
            step.preview.as_deref(),
        )
        .await?
    };
    match pass {
        Pass::Go => {}
        Pass::Skip(r) => {
            if let (true, Some(v)) = (cx.opts.dry_run, step.verification()) {
                let title = v
                    .title
                    .as_deref()
                    .map_or("the verification", |t| t.as_str());
                cx.events.notice(Notice::WouldVerify {
                    title: title.to_string(),
                });
            }
            return Ok((End::Skipped(r), Value::Null));
        }
        Pass::Pause(r) => {
            return Ok((
                End::Paused {
                    reason: r,
                    approve: step.id.value.clone(),
                },
                Value::Null,
            ));
        }
        Pass::Abort(r) => return Ok((End::Aborted(r), Value::Null)),
        Pass::Refuse(r) => return Ok((failed(r), Value::Null)),
    }
    let (mut result, errors) = cx.execute_step(step, prepared, &done_items).await?;
    if cx.cancel.is_cancelled() {
        return Ok((End::Aborted("aborted by operator".into()), result));
    }
    if !errors.is_empty() {
        return Ok((failed(errors.join("; ")), result));
    }
    cx.save(step, &result)?;
    match cx.expect(step, &mut result) {
        Ok(true) | Err(None) => {}
        Ok(false) => {
            let x = step.expect.as_deref().map(String::as_str).unwrap_or("");
            return Ok((failed(format!("expect does not hold: {x}")), result));
        }
        Err(Some(e)) => return Ok((failed(format!("expect: {e}")), result)),
    }
    let Some(v) = step.verification() else {
        return Ok((ok(cx.summary_of(step, &result)), result));
    };
    let within = v.within.as_deref().map(|d| d.0).unwrap_or(DEFAULT_WITHIN);
    match cx.verify(step, None, v, within, false).await? {
        Verdict::Holds => Ok((
            ok(format!("{}; verified", cx.summary_of(step, &result))),
            result,
        )),
        // The hint only where the run fails: a rung's failed verification is the
        // ladder's normal way up (issue 13: every timeout says how to raise it).
        Verdict::Fails(d) => Ok((
            failed(format!(
                "verification failed: {d} (if the fix needs longer, raise the verification's `within:`)"
            )),
            result,
        )),
        Verdict::Aborted => Ok((End::Aborted("aborted by operator".into()), result)),
    }
}
