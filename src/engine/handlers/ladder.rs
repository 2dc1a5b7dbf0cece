//! Escalation ladders: remedies gentlest first, each verified, stopping at the
//! first one the verification accepts.

use std::time::Duration;

use serde_json::Value;

use super::keep_text;
use super::manual::ManualEnd;
use crate::engine::EngineError;
use crate::engine::ctx::Ctx;
use crate::engine::events::Notice;
use crate::engine::gate::Pass;
use crate::engine::steps::{End, concurrency, failed, ok, scope};
use crate::engine::verify::{DEFAULT_WITHIN, Verdict};
use crate::journal::event::{Event, Outcome};
use crate::journal::state::StepState;
use crate::runbook::model::{Gate, OpRef, Rung, Step, Verification};

enum RungEnd {
    Fixed,
    NotFixed(String),
    Paused(String),
    Aborted(String),
}

/// Run an action with an escalation ladder; the rung that fixed it goes to
/// `fixed_by` (journaled with the step's end).
pub(super) async fn run(
    cx: &mut Ctx<'_>,
    step: &Step,
    prior: Option<&StepState>,
    fixed_by: &mut Option<String>,
) -> Result<End, EngineError> {
    // Each rung is proven by its own `verify:`, else by the step's.
    let v = step.verification();
    if v.is_none() && step.escalate.iter().any(|r| r.verify.is_none()) {
        return Ok(failed("an escalation ladder needs a verification".into()));
    }
    let ids: Vec<String> = step
        .escalate
        .iter()
        .enumerate()
        .map(|(i, r)| match &r.id {
            Some(id) => id.value.clone(),
            None => format!("{}.{}", step.id.value, i + 1),
        })
        .collect();
    if cx.opts.dry_run {
        return plan(cx, step, &ids).await;
    }
    // On resume, start at the last rung that was started: the ones before it were
    // tried and did not satisfy the verification.
    let first = prior
        .and_then(|p| p.rungs.last())
        .and_then(|last| ids.iter().position(|i| i == last))
        .unwrap_or(0);
    let n = ids.len();
    let mut last_reason = String::from("no rung ran");
    for (i, rung) in step.escalate.iter().enumerate().skip(first) {
        let rung_id = &ids[i];
        let resumed = prior.filter(|p| p.rungs.contains(rung_id));
        let Some(v) = rung.verify.as_deref().or(v) else {
            return Ok(failed(format!("{rung_id} has no verification")));
        };
        let outcome = run_rung(cx, step, v, rung, rung_id, i, n, resumed).await?;
        match outcome {
            RungEnd::Fixed => {
                *fixed_by = Some(rung_id.clone());
                return Ok(ok(format!("fixed by {rung_id} (rung {} of {n})", i + 1)));
            }
            RungEnd::NotFixed(reason) => {
                last_reason = reason.clone();
                if let Some(next) = ids.get(i + 1) {
                    cx.events.emit(
                        Event::Escalated {
                            step: step.id.value.clone(),
                            from: rung_id.clone(),
                            to: next.clone(),
                            reason: reason.clone(),
                        },
                        false,
                    )?;
                }
            }
            RungEnd::Paused(reason) => {
                return Ok(End::Paused {
                    reason,
                    approve: rung_id.clone(),
                });
            }
            RungEnd::Aborted(reason) => return Ok(End::Aborted(reason)),
        }
    }
    Ok(failed(format!(
        "no rung of the ladder fixed it (last: {last_reason}; if a fix needs longer, raise its verification's `within:`)"
    )))
}

/// `--dry-run` of a ladder: the plan of every rung, nothing performed.
async fn plan(cx: &mut Ctx<'_>, step: &Step, ids: &[String]) -> Result<End, EngineError> {
    for (rung, rung_id) in step.escalate.iter().zip(ids) {
        let title = rung
            .title
            .as_ref()
            .map(|t| t.value.clone())
            .unwrap_or_else(|| rung_id.clone());
        match rung.op() {
            Some(OpRef::Manual(text)) => {
                let instruction = cx.render(text).unwrap_or_else(|e| format!("({e})"));
                cx.events.notice(Notice::WouldAskRung {
                    rung: rung_id.clone(),
                    title,
                    instruction: cx.events.redact(&instruction),
                });
            }
            Some(op) => {
                let base = scope(step, Some(rung_id.clone()));
                match cx.prepare(&base, op, rung.for_each.as_deref(), false, &keep_text(step)) {
                    Ok(mut prepared) => {
                        cx.gate(
                            step,
                            Some(rung_id),
                            &title,
                            &mut prepared,
                            Gate::Approve.into(),
                            None,
                            rung.preview.as_deref(),
                        )
                        .await?;
                    }
                    Err(error) => cx.events.notice(Notice::CannotPlan {
                        rung: rung_id.clone(),
                        error,
                    }),
                }
            }
            None => {}
        }
    }
    Ok(End::Skipped(
        "dry run: the plan of every rung printed, nothing performed".into(),
    ))
}

#[allow(clippy::too_many_arguments)]
async fn run_rung(
    cx: &mut Ctx<'_>,
    step: &Step,
    v: &Verification,
    rung: &Rung,
    rung_id: &str,
    index: usize,
    of: usize,
    prior: Option<&StepState>,
) -> Result<RungEnd, EngineError> {
    if let Some(when) = &rung.when {
        match cx.eval_bool(when, None) {
            Ok(true) => {}
            Ok(false) => {
                return Ok(RungEnd::NotFixed(format!(
                    "{rung_id} skipped: `when` did not hold"
                )));
            }
            Err(e) => return Ok(RungEnd::NotFixed(format!("{rung_id}: `when`: {e}"))),
        }
    }
    if let Some(req) = &rung.requires {
        match cx.eval_bool(req, None) {
            Ok(true) => {}
            Ok(false) => {
                return Ok(RungEnd::NotFixed(format!(
                    "{rung_id} not run: its precondition does not hold (`requires: {}`)",
                    req.value
                )));
            }
            Err(e) => return Ok(RungEnd::NotFixed(format!("{rung_id}: `requires`: {e}"))),
        }
    }
    let title = rung
        .title
        .as_ref()
        .map(|t| t.value.clone())
        .unwrap_or_else(|| rung_id.to_string());
    let within = rung
        .within
        .as_deref()
        .or(v.within.as_deref())
        .map(|d| d.0)
        .unwrap_or(DEFAULT_WITHIN);
    if prior.is_none() {
        cx.events.emit(
            Event::RungStarted {
                step: step.id.value.clone(),
                rung: rung_id.to_string(),
                title: title.clone(),
                index: index + 1,
                of,
            },
            false,
        )?;
    } else {
        cx.events.notice(Notice::RungResumed {
            index: index + 1,
            of,
            rung: rung_id.to_string(),
            title: title.clone(),
        });
    }
    let Some(op) = rung.op() else {
        return Ok(RungEnd::NotFixed(format!("{rung_id} has no operation")));
    };
    let mut done_items = Vec::new();
    if let Some(p) = prior {
        // Killed during this rung: re-verify first.
        match cx
            .verify(step, Some(rung_id), v, Duration::ZERO, true)
            .await?
        {
            Verdict::Holds => return Ok(RungEnd::Fixed),
            Verdict::Aborted => return Ok(RungEnd::Aborted("aborted by operator".into())),
            Verdict::Fails(_) => {}
        }
        let unknown = p.unknown_ops(Some(rung_id));
        let manual_done = p
            .manual
            .iter()
            .any(|m| m.rung.as_deref() == Some(rung_id) && m.outcome == Outcome::Ok);
        let ran = !p.ok_items(Some(rung_id)).is_empty() || manual_done;
        cx.journal_unknown(step, Some(rung_id), &unknown)?;
        if unknown.is_empty() && ran {
            // It ran to the end; the process stopped while verifying: verify
            // again for the rung's full `within`.
            return Ok(
                match cx.verify(step, Some(rung_id), v, within, false).await? {
                    Verdict::Holds => RungEnd::Fixed,
                    Verdict::Fails(d) => {
                        RungEnd::NotFixed(format!("verification after {rung_id}: {d}"))
                    }
                    Verdict::Aborted => RungEnd::Aborted("aborted by operator".into()),
                },
            );
        }
        done_items = p.ok_items(Some(rung_id));
    }
    let mut op_errors: Vec<String> = Vec::new();
    if let OpRef::Manual(text) = op {
        let instruction = match cx.render(text) {
            Ok(t) => t,
            Err(e) => return Ok(RungEnd::NotFixed(format!("{rung_id}: {e}"))),
        };
        // The answer is visible to the rungs after it as `steps['RUNG'].status`
        // (`requires: "steps['confirm-powered-off'].status == 'ok'"`).
        match cx.manual(step, Some(rung_id), &title, instruction).await? {
            ManualEnd::Done => cx.set_step_var(rung_id, "ok", Value::Null),
            ManualEnd::Failed(r) => {
                cx.set_step_var(rung_id, "failed", Value::Null);
                return Ok(RungEnd::NotFixed(r));
            }
            ManualEnd::Skipped(r) => {
                cx.set_step_var(rung_id, "skipped", Value::Null);
                return Ok(RungEnd::NotFixed(r));
            }
            ManualEnd::Paused(r) => return Ok(RungEnd::Paused(r)),
            ManualEnd::Aborted(r) => return Ok(RungEnd::Aborted(r)),
        }
    } else {
        let base = scope(step, Some(rung_id.to_string()));
        let mut prepared =
            match cx.prepare(&base, op, rung.for_each.as_deref(), false, &keep_text(step)) {
                Ok(p) => p,
                Err(e) => return Ok(RungEnd::NotFixed(format!("{rung_id}: {e}"))),
            };
        prepared.retain(|x| !done_items.contains(&x.planned.scope.item));
        let gate = cx.gate_of(step, Some(rung));
        let pass = if prepared.is_empty() && !cx.opts.dry_run {
            Pass::Go
        } else {
            cx.gate(
                step,
                Some(rung_id),
                &title,
                &mut prepared,
                gate,
                prior,
                rung.preview.as_deref(),
            )
            .await?
        };
        match pass {
            Pass::Go => {}
            Pass::Skip(r) => return Ok(RungEnd::NotFixed(r)),
            Pass::Pause(r) => return Ok(RungEnd::Paused(r)),
            // A rung over the step's limit stops the ladder: going on would only
            // try a heavier remedy.
            Pass::Abort(r) | Pass::Refuse(r) => return Ok(RungEnd::Aborted(r)),
        }
        let t = rung
            .timeout
            .as_deref()
            .or(step.timeout.as_deref())
            .map(|d| d.0);
        let (_result, errors) = cx
            .execute_all(
                prepared,
                crate::engine::ops::FanOut {
                    is_list: rung.for_each.is_some(),
                    concurrency: concurrency(
                        rung.concurrency.as_deref().copied(),
                        cx.opts.default_concurrency,
                    ),
                    timeout: t,
                    retry: None,
                    max_failures: step.limit.as_deref().and_then(|l| l.max_failures),
                    keep: step.keep.as_deref(),
                },
                &done_items,
            )
            .await?;
        if cx.cancel.is_cancelled() {
            return Ok(RungEnd::Aborted("aborted by operator".into()));
        }
        if !errors.is_empty() {
            cx.events.notice(Notice::RungErrors {
                rung: rung_id.to_string(),
                errors: errors.join("; "),
            });
        }
        op_errors = errors;
    }
    match cx.verify(step, Some(rung_id), v, within, false).await? {
        Verdict::Holds => Ok(RungEnd::Fixed),
        // The escalation's reason carries the rung's own errors too: "Forbidden" is
        // why a delete did not free the volume, not only that the check still fails.
        Verdict::Fails(d) if op_errors.is_empty() => Ok(RungEnd::NotFixed(format!(
            "verification after {rung_id}: {d}"
        ))),
        Verdict::Fails(d) => Ok(RungEnd::NotFixed(format!(
            "{rung_id} failed ({}); verification after it: {d}",
            op_errors.join("; ")
        ))),
        Verdict::Aborted => Ok(RungEnd::Aborted("aborted by operator".into())),
    }
}
