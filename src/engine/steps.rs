//! One step, by kind: checks, actions (with their gate, verification and escalation
//! ladder), verify steps and manual steps. Operations go through providers; every
//! event goes to the journal before the engine acts on it.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use super::EngineError;
use super::approve::{GateAnswer, GateRequest, ManualAnswer, ManualRequest};
use super::printer::{Bar, human};
use super::run::{Engine, outcome_word, sha256_hex};
use crate::expr;
use crate::journal::event::{ApprovalSource, Decision, Event, Outcome, PlannedOp, Scope};
use crate::journal::replay::StepReplay;
use crate::providers::{ExecCtx, OpError, Resolved};
use crate::runbook::model::{Gate, OpRef, Retry, Rung, Step, StepKind, Verification};

/// How a step ended, for the run loop.
pub(crate) enum End {
    Done {
        outcome: Outcome,
        summary: String,
    },
    Skipped(String),
    /// Waiting for a person; `approve` is the id to pass to `--approve`.
    Paused {
        reason: String,
        approve: String,
    },
    Aborted(String),
}

/// An operation ready to run: as planned (redacted, journaled) and as resolved.
struct Prepared {
    planned: PlannedOp,
    resolved: Resolved,
    vars: Value,
}

/// A gate's verdict.
enum Pass {
    Go,
    Skip(String),
    Pause(String),
    Abort(String),
}

/// How a verification ended.
enum Verdict {
    Holds,
    Fails(String),
    Aborted,
}

const DEFAULT_WITHIN: Duration = Duration::from_secs(60);
const DEFAULT_EVERY: Duration = Duration::from_secs(10);

impl Engine<'_> {
    /// Run one step and journal its start and end.
    pub(crate) async fn run_step(&mut self, step: &Step) -> Result<End, EngineError> {
        let id = step.id.value.clone();
        if let Some(when) = &step.when {
            match self.eval_bool(when, None) {
                Ok(true) => {}
                Ok(false) => {
                    let reason = format!("`when` did not hold: {}", when.value);
                    self.skip(&id, &reason)?;
                    return Ok(End::Skipped(reason));
                }
                Err(e) => {
                    let now = self.clock.now();
                    return self.finish(step, now, failed(format!("`when`: {e}")), Value::Null);
                }
            }
        }
        let kind = step.kind();
        self.rec.emit(
            Event::StepStarted {
                step: id.clone(),
                title: step.title().to_string(),
                kind: kind.key().to_string(),
            },
            false,
        )?;
        self.printer.step_started(&id, kind.key(), step.title());
        tracing::info!(step = %id, kind = kind.key(), "step started");
        // Step durations come from the run's clock, like the journal's timestamps, so
        // the two agree when the clock is virtual (the lab in `demo` and `test`).
        let t0 = self.clock.now();
        let (end, result) = match kind {
            StepKind::Check => self.check(step).await?,
            StepKind::Action if !step.escalate.is_empty() => {
                (self.ladder(step).await?, Value::Null)
            }
            StepKind::Action => self.action(step).await?,
            StepKind::Verify => self.verify_step(step).await?,
            StepKind::Manual => (self.manual_step(step).await?, Value::Null),
        };
        self.finish(step, t0, end, result)
    }

    fn skip(&mut self, id: &str, reason: &str) -> Result<(), EngineError> {
        self.rec.emit(
            Event::StepSkipped {
                step: id.to_string(),
                reason: reason.to_string(),
            },
            false,
        )?;
        self.printer.line(&format!("↷ {id} skipped: {reason}"));
        self.set_step_var(id, "skipped", Value::Null);
        Ok(())
    }

    fn finish(
        &mut self,
        step: &Step,
        t0: chrono::DateTime<chrono::Utc>,
        end: End,
        result: Value,
    ) -> Result<End, EngineError> {
        let id = &step.id.value;
        let took = (self.clock.now() - t0).to_std().unwrap_or_default();
        match &end {
            End::Done { outcome, summary } => {
                self.rec.emit(
                    Event::StepFinished {
                        step: id.clone(),
                        outcome: *outcome,
                        duration_ms: took.as_millis() as u64,
                        summary: self.rec.redact(summary),
                        fixed_by: self.fixed_by.take(),
                    },
                    false,
                )?;
                self.printer
                    .step_finished(id, *outcome, took, &self.rec.redact(summary));
                tracing::info!(
                    step = %id,
                    outcome = outcome_word(*outcome),
                    duration_ms = took.as_millis() as u64,
                    "step finished"
                );
                self.set_step_var(id, outcome_word(*outcome), result);
            }
            End::Skipped(reason) => self.skip(id, reason)?,
            End::Aborted(reason) => {
                self.rec.emit(
                    Event::StepFinished {
                        step: id.clone(),
                        outcome: Outcome::Aborted,
                        duration_ms: took.as_millis() as u64,
                        summary: reason.clone(),
                        fixed_by: None,
                    },
                    false,
                )?;
                self.printer
                    .step_finished(id, Outcome::Aborted, took, reason);
            }
            End::Paused { .. } => {}
        }
        Ok(end)
    }

    fn prior(&self, step: &Step) -> Option<StepReplay> {
        self.prior.get(&step.id.value).cloned()
    }

    // ----- checks ---------------------------------------------------------------

    async fn check(&mut self, step: &Step) -> Result<(End, Value), EngineError> {
        let Some(op) = step.op() else {
            return Ok((failed("the check has no operation".into()), Value::Null));
        };
        let base = scope(step, None);
        let prepared = match self.prepare(&base, op, step.for_each.as_deref(), true) {
            Ok(p) => p,
            Err(e) => return Ok((failed(e), Value::Null)),
        };
        let (result, errors) = self
            .execute_all(
                prepared,
                step.for_each.is_some(),
                concurrency(
                    step.concurrency.as_deref().copied(),
                    self.opts.default_concurrency,
                ),
                timeout(step),
                step.retry.as_ref(),
                &[],
            )
            .await?;
        if self.cancel.is_cancelled() {
            return Ok((End::Aborted("aborted by operator".into()), result));
        }
        if !errors.is_empty() {
            return Ok((failed(errors.join("; ")), result));
        }
        self.save(step, &result)?;
        match self.expect(step, &result) {
            Ok(true) | Err(None) => Ok((ok(summarize(&result)), result)),
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

    /// Keep the result under the step's `save` name.
    fn save(&mut self, step: &Step, result: &Value) -> Result<(), EngineError> {
        let Some(name) = &step.save else {
            return Ok(());
        };
        let s = scope(step, None);
        let (value, file) = self.rec.bounded(&s, result);
        let journaled = match file {
            Some(f) => serde_json::json!({ "$output_file": f }),
            None => value,
        };
        self.rec.emit(
            Event::Saved {
                step: step.id.value.clone(),
                name: name.value.clone(),
                value: journaled,
            },
            false,
        )?;
        self.vars.insert(name.value.clone(), result.clone());
        Ok(())
    }

    /// Evaluate `expect`: `Err(None)` when there is none.
    fn expect(&mut self, step: &Step, result: &Value) -> Result<bool, Option<String>> {
        let Some(expect) = &step.expect else {
            return Err(None);
        };
        self.eval_bool(expect, Some(result.clone()))
            .map_err(|e| Some(e.to_string()))
    }

    /// Evaluate a condition over the run's variables (and `result`), without copying
    /// them: saved lists of a thousand pods stay where they are.
    fn eval_bool(
        &mut self,
        expr_src: &str,
        result: Option<Value>,
    ) -> Result<bool, expr::ExprError> {
        self.with_vars(result, |vars| expr::eval_bool(expr_src, vars))
    }

    fn render(&mut self, template: &str) -> Result<String, expr::ExprError> {
        self.with_vars(None, |vars| expr::render(template, vars))
    }

    fn with_vars<R>(&mut self, result: Option<Value>, f: impl FnOnce(&Value) -> R) -> R {
        let has_result = result.is_some();
        if let Some(r) = result {
            self.vars.insert("result".into(), r);
        }
        let vars = Value::Object(std::mem::take(&mut self.vars));
        let out = f(&vars);
        if let Value::Object(m) = vars {
            self.vars = m;
        }
        if has_result {
            self.vars.remove("result");
        }
        out
    }

    // ----- actions --------------------------------------------------------------

    async fn action(&mut self, step: &Step) -> Result<(End, Value), EngineError> {
        let Some(op) = step.op() else {
            return Ok((failed("the action has no operation".into()), Value::Null));
        };
        let base = scope(step, None);
        let mut prepared = match self.prepare(&base, op, step.for_each.as_deref(), false) {
            Ok(p) => p,
            Err(e) => return Ok((failed(e), Value::Null)),
        };
        let prior = self.prior(step);
        let mut done_items = Vec::new();
        if let Some(p) = &prior {
            if let Some(end) = self.reverify_unknown(step, p, None).await? {
                return Ok((end, Value::Null));
            }
            done_items = p.ok_items(None);
            prepared.retain(|x| !done_items.contains(&x.planned.scope.item));
        }
        let gate = self.gate_of(step, None);
        // Nothing left to run (an empty `for_each`, or every item finished before a
        // resume): there is nothing to approve.
        let pass = if prepared.is_empty() && !self.opts.dry_run {
            Pass::Go
        } else {
            self.gate(step, None, step.title(), &prepared, gate, prior.as_ref())
                .await?
        };
        match pass {
            Pass::Go => {}
            Pass::Skip(r) => return Ok((End::Skipped(r), Value::Null)),
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
        }
        let (result, errors) = self
            .execute_all(
                prepared,
                step.for_each.is_some(),
                concurrency(
                    step.concurrency.as_deref().copied(),
                    self.opts.default_concurrency,
                ),
                timeout(step),
                step.retry.as_ref(),
                &done_items,
            )
            .await?;
        if self.cancel.is_cancelled() {
            return Ok((End::Aborted("aborted by operator".into()), result));
        }
        if !errors.is_empty() {
            return Ok((failed(errors.join("; ")), result));
        }
        self.save(step, &result)?;
        match self.expect(step, &result) {
            Ok(true) | Err(None) => {}
            Ok(false) => {
                let x = step.expect.as_deref().map(String::as_str).unwrap_or("");
                return Ok((failed(format!("expect does not hold: {x}")), result));
            }
            Err(Some(e)) => return Ok((failed(format!("expect: {e}")), result)),
        }
        let Some(v) = step.verification() else {
            return Ok((ok(summarize(&result)), result));
        };
        let within = v.within.as_deref().map(|d| d.0).unwrap_or(DEFAULT_WITHIN);
        match self.verify(step, None, v, within, false).await? {
            Verdict::Holds => Ok((ok(format!("{}; verified", summarize(&result))), result)),
            Verdict::Fails(d) => Ok((failed(format!("verification failed: {d}")), result)),
            Verdict::Aborted => Ok((End::Aborted("aborted by operator".into()), result)),
        }
    }

    fn gate_of(&self, step: &Step, rung: Option<&Rung>) -> Gate {
        if self.rb.unattended.iter().any(|u| u.value == step.id.value) {
            return Gate::Auto;
        }
        rung.and_then(|r| r.gate.as_deref().copied())
            .or(step.gate.as_deref().copied())
            .unwrap_or(Gate::Approve)
    }

    /// On resume: operations of this step (or rung) whose outcome the journal does not
    /// know are journaled as `unknown`, then the verification runs once. If it holds,
    /// the step is done without running anything again.
    async fn reverify_unknown(
        &mut self,
        step: &Step,
        prior: &StepReplay,
        rung: Option<&str>,
    ) -> Result<Option<End>, EngineError> {
        let unknown = prior.unknown_ops(rung);
        if unknown.is_empty() {
            return Ok(None);
        }
        for key in &unknown {
            let mut s = scope(step, rung.map(str::to_string));
            s.item = key.item;
            self.rec.emit(
                Event::OpFinished {
                    scope: s,
                    attempt: 0,
                    outcome: Outcome::Unknown,
                    duration_ms: 0,
                    result: None,
                    error: Some(
                        "the run stopped before this operation's result was journaled".into(),
                    ),
                    output_file: None,
                    calls: Vec::new(),
                },
                true,
            )?;
        }
        self.printer.line(&format!(
            "? {}: {} operation(s) have an unknown outcome (the run stopped mid-action); re-verifying before retrying",
            step.id.value,
            unknown.len()
        ));
        let Some(v) = step.verification() else {
            self.printer
                .line("  no verification to check them: the action is gated again");
            return Ok(None);
        };
        match self.verify(step, rung, v, Duration::ZERO, true).await? {
            Verdict::Holds => {
                self.printer
                    .line("  the verification holds: nothing is run again");
                Ok(Some(ok("outcome was unknown; re-verified, holds".into())))
            }
            Verdict::Aborted => Ok(Some(End::Aborted("aborted by operator".into()))),
            Verdict::Fails(d) => {
                self.printer
                    .line(&format!("  the verification does not hold ({d}): retrying"));
                Ok(None)
            }
        }
    }

    /// Show the plan and get a decision, journaled before anything runs.
    async fn gate(
        &mut self,
        step: &Step,
        rung: Option<&str>,
        title: &str,
        prepared: &[Prepared],
        gate: Gate,
        prior: Option<&StepReplay>,
    ) -> Result<Pass, EngineError> {
        let ops: Vec<PlannedOp> = prepared.iter().map(|p| p.planned.clone()).collect();
        let digest = sha256_hex(&serde_json::to_vec(&ops).unwrap_or_default());
        let req = GateRequest {
            step: step.id.value.clone(),
            rung: rung.map(str::to_string),
            title: title.to_string(),
            ops,
            digest: digest.clone(),
            explicit: gate == Gate::Explicit,
        };
        if self.opts.dry_run {
            self.printer.plan(&req, "would run");
            return Ok(Pass::Skip(
                "dry run: plan printed, nothing performed".into(),
            ));
        }
        if let Some(g) = prior.and_then(|p| p.approval(rung, &digest)) {
            self.printer
                .line(&format!("  approved earlier by {} (same plan)", g.by));
            return Ok(Pass::Go);
        }
        let decided = |decision, by: String, source| Event::GateDecided {
            step: req.step.clone(),
            rung: req.rung.clone(),
            decision,
            by,
            source,
            digest: digest.clone(),
        };
        let requested = Event::GateRequested {
            step: req.step.clone(),
            rung: req.rung.clone(),
            ops: req.ops.clone(),
            digest: digest.clone(),
        };
        if gate == Gate::Auto {
            self.rec.emit(requested, false)?;
            self.rec.emit(
                decided(
                    Decision::Approved,
                    self.opts.operator.clone(),
                    ApprovalSource::Unattended,
                ),
                false,
            )?;
            return Ok(Pass::Go);
        }
        self.rec.emit(requested, true)?;
        self.printer.plan(&req, "plan of");
        let answer = tokio::select! {
            a = self.approver.gate(&req) => a,
            () = self.cancel.cancelled() => return Ok(Pass::Abort("aborted by operator".into())),
        };
        Ok(match answer {
            GateAnswer::Approve { by, source } => {
                self.rec
                    .emit(decided(Decision::Approved, by.clone(), source), true)?;
                self.printer
                    .line(&format!("  approved by {by} ({})", source_word(source)));
                Pass::Go
            }
            GateAnswer::Skip { by, source } => {
                self.rec
                    .emit(decided(Decision::Skipped, by.clone(), source), true)?;
                Pass::Skip(format!("skipped at the gate by {by}"))
            }
            GateAnswer::Decline { by } => {
                self.rec.emit(
                    decided(Decision::Declined, by.clone(), ApprovalSource::Prompt),
                    true,
                )?;
                Pass::Abort(format!("gate declined by {by}"))
            }
            GateAnswer::Abort { by } => {
                self.rec.emit(
                    decided(Decision::Aborted, by.clone(), ApprovalSource::Prompt),
                    true,
                )?;
                Pass::Abort(format!("aborted at the gate by {by}"))
            }
            GateAnswer::Pause { reason } => Pass::Pause(reason),
        })
    }

    // ----- escalation ladders ---------------------------------------------------

    async fn ladder(&mut self, step: &Step) -> Result<End, EngineError> {
        let Some(v) = step.verification() else {
            return Ok(failed("an escalation ladder needs a verification".into()));
        };
        let ids: Vec<String> = step
            .escalate
            .iter()
            .enumerate()
            .map(|(i, r)| match &r.id {
                Some(id) => id.value.clone(),
                None => format!("{}.{}", step.id.value, i + 1),
            })
            .collect();
        if self.opts.dry_run {
            return self.ladder_plan(step, &ids).await;
        }
        let prior = self.prior(step);
        // On resume, start at the last rung that was started: the ones before it were
        // tried and did not satisfy the verification.
        let first = prior
            .as_ref()
            .and_then(|p| p.rungs.last())
            .and_then(|last| ids.iter().position(|i| i == last))
            .unwrap_or(0);
        let n = ids.len();
        let mut last_reason = String::from("no rung ran");
        for (i, rung) in step.escalate.iter().enumerate().skip(first) {
            let rung_id = &ids[i];
            let resumed = prior.as_ref().filter(|p| p.rungs.contains(rung_id));
            let outcome = self.rung(step, v, rung, rung_id, i, n, resumed).await?;
            match outcome {
                RungEnd::Fixed => {
                    self.fixed_by = Some(rung_id.clone());
                    return Ok(ok(format!("fixed by {rung_id} (rung {} of {n})", i + 1)));
                }
                RungEnd::NotFixed(reason) => {
                    last_reason = reason.clone();
                    if let Some(next) = ids.get(i + 1) {
                        self.rec.emit(
                            Event::Escalated {
                                step: step.id.value.clone(),
                                from: rung_id.clone(),
                                to: next.clone(),
                                reason: reason.clone(),
                            },
                            false,
                        )?;
                        self.printer.line(&format!(
                            "  ↑ escalating from {rung_id} to {next}: {reason}"
                        ));
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
            "no rung of the ladder fixed it (last: {last_reason})"
        )))
    }

    /// `--dry-run` of a ladder: the plan of every rung, nothing performed.
    async fn ladder_plan(&mut self, step: &Step, ids: &[String]) -> Result<End, EngineError> {
        for (rung, rung_id) in step.escalate.iter().zip(ids) {
            let title = rung
                .title
                .as_ref()
                .map(|t| t.value.clone())
                .unwrap_or_else(|| rung_id.clone());
            match rung.op() {
                Some(OpRef::Manual(text)) => {
                    let instruction = self.render(text).unwrap_or_else(|e| format!("({e})"));
                    self.printer.line(&format!(
                        "  would ask a person ({rung_id}: {title}):\n{}",
                        indent(&self.rec.redact(&instruction))
                    ));
                }
                Some(op) => {
                    let base = scope(step, Some(rung_id.clone()));
                    match self.prepare(&base, op, rung.for_each.as_deref(), false) {
                        Ok(prepared) => {
                            self.gate(step, Some(rung_id), &title, &prepared, Gate::Approve, None)
                                .await?;
                        }
                        Err(e) => self.printer.line(&format!("  {rung_id}: cannot plan: {e}")),
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
    async fn rung(
        &mut self,
        step: &Step,
        v: &Verification,
        rung: &Rung,
        rung_id: &str,
        index: usize,
        of: usize,
        prior: Option<&StepReplay>,
    ) -> Result<RungEnd, EngineError> {
        if let Some(when) = &rung.when {
            match self.eval_bool(when, None) {
                Ok(true) => {}
                Ok(false) => {
                    return Ok(RungEnd::NotFixed(format!(
                        "{rung_id} skipped: `when` did not hold"
                    )));
                }
                Err(e) => return Ok(RungEnd::NotFixed(format!("{rung_id}: `when`: {e}"))),
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
            self.rec.emit(
                Event::RungStarted {
                    step: step.id.value.clone(),
                    rung: rung_id.to_string(),
                    title: title.clone(),
                    index: index + 1,
                    of,
                },
                false,
            )?;
        }
        self.printer
            .line(&format!("  rung {}/{of} {rung_id}: {title}", index + 1));
        let Some(op) = rung.op() else {
            return Ok(RungEnd::NotFixed(format!("{rung_id} has no operation")));
        };
        let mut done_items = Vec::new();
        if let Some(p) = prior {
            // Killed during this rung: re-verify first.
            match self
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
                .any(|(r, o)| r.as_deref() == Some(rung_id) && *o == Outcome::Ok);
            let ran = !p.ok_items(Some(rung_id)).is_empty() || manual_done;
            for key in &unknown {
                let mut s = scope(step, Some(rung_id.to_string()));
                s.item = key.item;
                self.rec.emit(
                    Event::OpFinished {
                        scope: s,
                        attempt: 0,
                        outcome: Outcome::Unknown,
                        duration_ms: 0,
                        result: None,
                        error: Some(
                            "the run stopped before this operation's result was journaled".into(),
                        ),
                        output_file: None,
                        calls: Vec::new(),
                    },
                    true,
                )?;
            }
            if unknown.is_empty() && ran {
                // It ran to the end; the process stopped while verifying: verify
                // again for the rung's full `within`.
                return Ok(
                    match self.verify(step, Some(rung_id), v, within, false).await? {
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
        if let OpRef::Manual(text) = op {
            let instruction = match self.render(text) {
                Ok(t) => t,
                Err(e) => return Ok(RungEnd::NotFixed(format!("{rung_id}: {e}"))),
            };
            match self
                .manual(step, Some(rung_id), &title, instruction)
                .await?
            {
                ManualEnd::Done => {}
                ManualEnd::Failed(r) | ManualEnd::Skipped(r) => return Ok(RungEnd::NotFixed(r)),
                ManualEnd::Paused(r) => return Ok(RungEnd::Paused(r)),
                ManualEnd::Aborted(r) => return Ok(RungEnd::Aborted(r)),
            }
        } else {
            let base = scope(step, Some(rung_id.to_string()));
            let mut prepared = match self.prepare(&base, op, rung.for_each.as_deref(), false) {
                Ok(p) => p,
                Err(e) => return Ok(RungEnd::NotFixed(format!("{rung_id}: {e}"))),
            };
            prepared.retain(|x| !done_items.contains(&x.planned.scope.item));
            let gate = self.gate_of(step, Some(rung));
            let pass = if prepared.is_empty() && !self.opts.dry_run {
                Pass::Go
            } else {
                self.gate(step, Some(rung_id), &title, &prepared, gate, prior)
                    .await?
            };
            match pass {
                Pass::Go => {}
                Pass::Skip(r) => return Ok(RungEnd::NotFixed(r)),
                Pass::Pause(r) => return Ok(RungEnd::Paused(r)),
                Pass::Abort(r) => return Ok(RungEnd::Aborted(r)),
            }
            let t = rung
                .timeout
                .as_deref()
                .or(step.timeout.as_deref())
                .map(|d| d.0);
            let (_result, errors) = self
                .execute_all(
                    prepared,
                    rung.for_each.is_some(),
                    concurrency(
                        rung.concurrency.as_deref().copied(),
                        self.opts.default_concurrency,
                    ),
                    t,
                    None,
                    &done_items,
                )
                .await?;
            if self.cancel.is_cancelled() {
                return Ok(RungEnd::Aborted("aborted by operator".into()));
            }
            if !errors.is_empty() {
                self.printer.line(&format!(
                    "  {rung_id}: {} (verifying anyway)",
                    errors.join("; ")
                ));
            }
        }
        match self.verify(step, Some(rung_id), v, within, false).await? {
            Verdict::Holds => Ok(RungEnd::Fixed),
            Verdict::Fails(d) => Ok(RungEnd::NotFixed(format!(
                "verification after {rung_id}: {d}"
            ))),
            Verdict::Aborted => Ok(RungEnd::Aborted("aborted by operator".into())),
        }
    }

    // ----- verifications --------------------------------------------------------

    /// Poll a verification (an action's block, `verification = true`) until `expect`
    /// holds or `within` runs out. `within` zero polls exactly once.
    async fn verify(
        &mut self,
        step: &Step,
        rung: Option<&str>,
        v: &Verification,
        within: Duration,
        quiet: bool,
    ) -> Result<Verdict, EngineError> {
        let Some(op) = v.op() else {
            return Ok(Verdict::Fails("the verification has no operation".into()));
        };
        let mut s = scope(step, rung.map(str::to_string));
        s.verification = true;
        let every = v.every.as_deref().map(|d| d.0).unwrap_or(DEFAULT_EVERY);
        let t = v.timeout.as_deref().map(|d| d.0);
        let title = v
            .title
            .as_ref()
            .map(|t| t.value.clone())
            .unwrap_or_else(|| "verification".into());
        if !quiet {
            self.printer
                .line(&format!("  verifying: {title} (within {})", human(within)));
        }
        self.poll(
            s,
            op,
            v.expect.as_deref().map(String::as_str),
            within,
            every,
            t,
        )
        .await
    }

    async fn poll(
        &mut self,
        s: Scope,
        op: OpRef<'_>,
        expect: Option<&str>,
        within: Duration,
        every: Duration,
        t: Option<Duration>,
    ) -> Result<Verdict, EngineError> {
        let prepared = match self.prepare(&s, op, None, true) {
            Ok(mut p) if p.len() == 1 => p.remove(0),
            Ok(_) => return Ok(Verdict::Fails("a verification runs one operation".into())),
            Err(e) => return Ok(Verdict::Fails(e)),
        };
        let start = self.clock.now();
        let deadline = start + chrono::Duration::from_std(within).unwrap_or(chrono::Duration::MAX);
        let bar = self
            .printer
            .countdown(within, format!("{} polling", s.step));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let out = self.execute_one(&prepared, attempt, t).await?;
            let (holds, detail) = match &out {
                Err(OpError::Cancelled) => {
                    bar.finish();
                    return Ok(Verdict::Aborted);
                }
                Err(e) => (false, e.to_string()),
                Ok(result) => match expect {
                    None => (true, summarize(result)),
                    Some(x) => match self.eval_bool(x, Some(result.clone())) {
                        Ok(true) => (true, format!("{x} holds")),
                        Ok(false) => (false, format!("{x} does not hold ({})", summarize(result))),
                        Err(e) => (false, format!("expect: {e}")),
                    },
                },
            };
            self.rec.emit(
                Event::VerifyPolled {
                    scope: s.clone(),
                    attempt,
                    ok: holds,
                    detail: Some(self.rec.redact(&detail)),
                },
                false,
            )?;
            if holds {
                bar.finish();
                return Ok(Verdict::Holds);
            }
            let now = self.clock.now();
            if now >= deadline {
                bar.finish();
                return Ok(Verdict::Fails(format!(
                    "{detail}, after {attempt} poll(s) within {}",
                    human(within)
                )));
            }
            let left = (deadline - now).to_std().unwrap_or(Duration::ZERO);
            bar.set_position((now - start).num_seconds().max(0) as u64);
            tokio::select! {
                () = self.clock.sleep(every.min(left)) => {}
                () = self.cancel.cancelled() => {
                    bar.finish();
                    return Ok(Verdict::Aborted);
                }
            }
        }
    }

    async fn verify_step(&mut self, step: &Step) -> Result<(End, Value), EngineError> {
        let Some(op) = step.op() else {
            return Ok((
                failed("the verify step has no operation".into()),
                Value::Null,
            ));
        };
        if self.opts.dry_run {
            return Ok((End::Skipped("dry run: would verify".into()), Value::Null));
        }
        let within = step
            .within
            .as_deref()
            .map(|d| d.0)
            .unwrap_or(DEFAULT_WITHIN);
        let every = step.every.as_deref().map(|d| d.0).unwrap_or(DEFAULT_EVERY);
        let expect = step.expect.as_deref().map(String::as_str);
        let s = scope(step, None);
        Ok(
            match self
                .poll(s, op, expect, within, every, timeout(step))
                .await?
            {
                Verdict::Holds => (ok("holds".into()), Value::Null),
                Verdict::Fails(d) => (failed(d), Value::Null),
                Verdict::Aborted => (End::Aborted("aborted by operator".into()), Value::Null),
            },
        )
    }

    // ----- manual steps ---------------------------------------------------------

    async fn manual_step(&mut self, step: &Step) -> Result<End, EngineError> {
        let text = step
            .instructions
            .as_ref()
            .map(|i| i.value.as_str())
            .unwrap_or(step.title());
        let instruction = match self.render(text) {
            Ok(t) => t,
            Err(e) => return Ok(failed(format!("instructions: {e}"))),
        };
        if self.opts.dry_run {
            self.printer.line(&format!("  would ask: {instruction}"));
            return Ok(End::Skipped("dry run: manual step not asked".into()));
        }
        Ok(
            match self.manual(step, None, step.title(), instruction).await? {
                ManualEnd::Done => ok("confirmed done".into()),
                ManualEnd::Failed(r) => failed(r),
                ManualEnd::Skipped(r) => End::Skipped(r),
                ManualEnd::Paused(r) => End::Paused {
                    reason: r,
                    approve: step.id.value.clone(),
                },
                ManualEnd::Aborted(r) => End::Aborted(r),
            },
        )
    }

    async fn manual(
        &mut self,
        step: &Step,
        rung: Option<&str>,
        title: &str,
        instruction: String,
    ) -> Result<ManualEnd, EngineError> {
        let s = scope(step, rung.map(str::to_string));
        let instruction = self.rec.redact(&instruction);
        if self.opts.dry_run {
            self.printer
                .line(&format!("  would ask a person: {instruction}"));
            return Ok(ManualEnd::Skipped("dry run".into()));
        }
        self.rec.emit(
            Event::ManualRequested {
                scope: s.clone(),
                instruction: instruction.clone(),
            },
            true,
        )?;
        self.printer
            .line(&format!("  ✋ {title}\n{}", indent(&instruction)));
        let req = ManualRequest {
            step: step.id.value.clone(),
            rung: rung.map(str::to_string),
            title: title.to_string(),
            instruction,
        };
        let answer = tokio::select! {
            a = self.approver.manual(&req) => a,
            () = self.cancel.cancelled() => return Ok(ManualEnd::Aborted("aborted by operator".into())),
        };
        let (outcome, by, end) = match answer {
            ManualAnswer::Done { by, .. } => (Outcome::Ok, by, ManualEnd::Done),
            ManualAnswer::Failed { by } => (
                Outcome::Failed,
                by.clone(),
                ManualEnd::Failed(format!("{by} reported the manual step failed")),
            ),
            ManualAnswer::Skip { by } => (
                Outcome::Skipped,
                by.clone(),
                ManualEnd::Skipped(format!("skipped by {by}")),
            ),
            ManualAnswer::Pause { reason } => return Ok(ManualEnd::Paused(reason)),
        };
        self.rec.emit(
            Event::ManualConfirmed {
                scope: s,
                outcome,
                by,
            },
            true,
        )?;
        Ok(end)
    }

    // ----- operations -----------------------------------------------------------

    /// Resolve an operation, once or per `for_each` item, into planned operations.
    fn prepare(
        &self,
        base: &Scope,
        op: OpRef<'_>,
        for_each: Option<&String>,
        read_only: bool,
    ) -> Result<Vec<Prepared>, String> {
        let vars = &self.vars_named_in(&op_text(op));
        let name = op.provider();
        let Some(provider) = self.providers.get(name) else {
            return Err(match name {
                "kube" => "no Kubernetes provider is configured for this run (kube steps need a cluster: --kubeconfig/--context)".to_string(),
                other => format!("no `{other}` provider is configured for this run"),
            });
        };
        let items: Vec<(Option<usize>, Value)> = match for_each {
            None => vec![(None, vars.clone())],
            Some(expr_src) => {
                let list = expr::eval(expr_src, &self.vars_named_in(expr_src))
                    .map_err(|e| format!("for_each: {e}"))?;
                let Value::Array(list) = list else {
                    return Err(format!("for_each `{expr_src}` did not give a list"));
                };
                list.into_iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let mut v = vars.clone();
                        if let Value::Object(m) = &mut v {
                            m.insert("item".into(), item);
                            m.insert("index".into(), Value::from(i));
                        }
                        (Some(i), v)
                    })
                    .collect()
            }
        };
        items
            .into_iter()
            .map(|(item, vars)| {
                let mut resolved =
                    provider
                        .resolve(op, &vars, &self.opts.defaults)
                        .map_err(|e| match item {
                            Some(i) => format!("item {i}: {e}"),
                            None => e.to_string(),
                        })?;
                // Checks and verifications are read-only by the runbook's contract
                // (lint rejects mutating kube verbs there).
                if read_only {
                    resolved.mutating = false;
                }
                let mut scope = base.clone();
                scope.item = item;
                let planned = PlannedOp {
                    scope,
                    provider: resolved.provider.clone(),
                    display: self.rec.redact(&resolved.display),
                    op: self.rec.redact_value(&resolved.op),
                    mutating: resolved.mutating,
                };
                Ok(Prepared {
                    planned,
                    resolved,
                    vars,
                })
            })
            .collect()
    }

    /// The variables a text (an operation, a `for_each`) can read: those whose name
    /// appears in it. Copying only these keeps a 500-item `for_each` from copying
    /// every saved list 500 times; a name that merely appears in a string is copied
    /// too, which is harmless.
    fn vars_named_in(&self, text: &str) -> Value {
        Value::Object(
            self.vars
                .iter()
                .filter(|(k, _)| text.contains(k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    /// Run prepared operations, `concurrency` at a time; every item's outcome is kept.
    /// Returns the step's result (a list for `for_each`) and one message per failure.
    async fn execute_all(
        &self,
        prepared: Vec<Prepared>,
        is_list: bool,
        concurrency: usize,
        t: Option<Duration>,
        retry: Option<&Retry>,
        done_items: &[Option<usize>],
    ) -> Result<(Value, Vec<String>), EngineError> {
        let total = prepared.len() + done_items.len();
        let bar = if is_list {
            self.printer.progress(total as u64, String::new())
        } else {
            match prepared.first() {
                Some(p) => self.printer.spinner(p.planned.display.clone()),
                None => Bar::default(),
            }
        };
        bar.set_position(done_items.len() as u64);
        #[allow(clippy::type_complexity)]
        let mut results: Vec<(Option<usize>, Result<Result<Value, OpError>, EngineError>)> =
            futures::stream::iter(prepared.iter())
                .map(|p| async {
                    let r = self.execute_retrying(p, t, retry).await;
                    bar.inc();
                    (p.planned.scope.item, r)
                })
                .buffer_unordered(concurrency.max(1))
                .collect::<Vec<_>>()
                .await;
        bar.finish();
        results.sort_by_key(|(i, _)| *i);
        let mut errors = Vec::new();
        let mut values = Vec::new();
        for (item, r) in results {
            let r = r?;
            match r {
                Ok(v) => values.push(v),
                Err(e) => {
                    values.push(match &e {
                        OpError::Failed {
                            result: Some(r), ..
                        } => r.clone(),
                        _ => Value::Null,
                    });
                    errors.push(match item {
                        Some(i) => format!("item {i}: {e}"),
                        None => e.to_string(),
                    });
                }
            }
        }
        if is_list && errors.len() > 1 {
            let n = errors.len();
            errors.insert(0, format!("{n} of {total} items failed"));
        }
        let result = if is_list {
            Value::Array(values)
        } else {
            values.into_iter().next().unwrap_or(Value::Null)
        };
        Ok((result, errors))
    }

    async fn execute_retrying(
        &self,
        p: &Prepared,
        t: Option<Duration>,
        retry: Option<&Retry>,
    ) -> Result<Result<Value, OpError>, EngineError> {
        let attempts = retry.map(|r| r.attempts.value.max(1)).unwrap_or(1);
        let mut backoff = retry
            .and_then(|r| r.backoff.as_deref())
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(1));
        let max_backoff = retry
            .and_then(|r| r.max_backoff.as_deref())
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(60));
        let mut attempt = 1;
        loop {
            let r = self.execute_one(p, attempt, t).await?;
            match &r {
                Err(OpError::Failed { .. } | OpError::TimedOut(_)) if attempt < attempts => {
                    tokio::select! {
                        () = self.clock.sleep(backoff) => {}
                        () = self.cancel.cancelled() => return Ok(Err(OpError::Cancelled)),
                    }
                    backoff = (backoff * 2).min(max_backoff);
                    attempt += 1;
                }
                _ => return Ok(r),
            }
        }
    }

    /// One attempt: journal the start (synced before a side effect), run it bounded by
    /// the timeout and Ctrl-C, journal the end.
    async fn execute_one(
        &self,
        p: &Prepared,
        attempt: u32,
        t: Option<Duration>,
    ) -> Result<Result<Value, OpError>, EngineError> {
        let mutating = p.resolved.mutating;
        self.rec.emit(
            Event::OpStarted {
                op: p.planned.clone(),
                attempt,
            },
            mutating,
        )?;
        let Some(provider) = self.providers.get(&p.resolved.provider) else {
            return Ok(Err(OpError::Invalid(format!(
                "no `{}` provider",
                p.resolved.provider
            ))));
        };
        let cx = ExecCtx {
            cancel: self.cancel.child_token(),
            timeout: t,
            dry_run: false,
            vars: p.vars.clone(),
            calls: Default::default(),
        };
        let started = std::time::Instant::now();
        let fut = provider.execute(&p.resolved, &cx);
        let r = tokio::select! {
            r = fut => r,
            () = self.cancel.cancelled() => Err(OpError::Cancelled),
        };
        let r = match (r, t) {
            // A provider that ignored its timeout still reports it as one.
            (Err(OpError::Cancelled), Some(t)) if !self.cancel.is_cancelled() => {
                Err(OpError::TimedOut(t))
            }
            (r, _) => r,
        };
        let took = started.elapsed().as_millis() as u64;
        let (outcome, result, error) = match &r {
            Ok(v) => (Outcome::Ok, Some(v.clone()), None),
            Err(OpError::Failed { message, result }) => {
                (Outcome::Failed, result.clone(), Some(message.clone()))
            }
            Err(OpError::TimedOut(d)) => (
                Outcome::TimedOut,
                None,
                Some(format!("timed out after {}", human(*d))),
            ),
            Err(OpError::Cancelled) => (Outcome::Aborted, None, Some("aborted by operator".into())),
            Err(OpError::Invalid(m)) => (Outcome::Failed, None, Some(m.clone())),
        };
        let (result, output_file) = match result {
            Some(v) => {
                let (v, f) = self.rec.bounded(&p.planned.scope, &v);
                (Some(v), f)
            }
            None => (None, None),
        };
        self.rec.emit(
            Event::OpFinished {
                scope: p.planned.scope.clone(),
                attempt,
                outcome,
                duration_ms: took,
                result,
                error: error.map(|e| self.rec.redact(&e)),
                output_file,
                calls: cx.calls.take(),
            },
            // Not synced: the next side effect's start (or the run's end) syncs it.
            // Lost in a crash, it reads as "outcome unknown", which resume
            // re-verifies before retrying: safe, one fsync per operation.
            false,
        )?;
        Ok(r)
    }
}

enum RungEnd {
    Fixed,
    NotFixed(String),
    Paused(String),
    Aborted(String),
}

enum ManualEnd {
    Done,
    Failed(String),
    Skipped(String),
    Paused(String),
    Aborted(String),
}

/// An operation as text, to see which variables it names.
fn op_text(op: OpRef<'_>) -> String {
    match op {
        OpRef::Shell(o) => serde_json::to_string(o),
        OpRef::Http(o) => serde_json::to_string(o),
        OpRef::Prometheus(o) => serde_json::to_string(o),
        OpRef::Kube(o) => serde_json::to_string(o),
        OpRef::Manual(o) => serde_json::to_string(o),
    }
    .unwrap_or_default()
}

fn scope(step: &Step, rung: Option<String>) -> Scope {
    Scope {
        step: step.id.value.clone(),
        rung,
        item: None,
        verification: false,
    }
}

fn ok(summary: String) -> End {
    End::Done {
        outcome: Outcome::Ok,
        summary,
    }
}

fn failed(summary: String) -> End {
    End::Done {
        outcome: Outcome::Failed,
        summary,
    }
}

fn timeout(step: &Step) -> Option<Duration> {
    step.timeout.as_deref().map(|d| d.0)
}

fn concurrency(c: Option<u32>, default: usize) -> usize {
    c.map(|c| c as usize).unwrap_or(default).max(1)
}

fn source_word(s: ApprovalSource) -> &'static str {
    match s {
        ApprovalSource::Prompt => "at the prompt",
        ApprovalSource::Yes => "--yes",
        ApprovalSource::Flag => "--approve",
        ApprovalSource::Unattended => "unattended",
        ApprovalSource::Automatic => "automatic",
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A short description of a result for the console and the timeline.
pub(crate) fn summarize(v: &Value) -> String {
    match v {
        Value::Array(a) => format!("{} item{}", a.len(), if a.len() == 1 { "" } else { "s" }),
        Value::Object(m) => {
            if let Some(code) = m.get("exit_code") {
                let out = m
                    .get("stdout")
                    .and_then(Value::as_str)
                    .map(|s| s.trim())
                    .filter(|s| !s.is_empty())
                    .map(|s| format!(": {}", clip(s.lines().next().unwrap_or(""), 60)))
                    .unwrap_or_default();
                format!("exit {code}{out}")
            } else if let Some(status) = m.get("status").filter(|s| s.is_number()) {
                format!("HTTP {status}")
            } else if let Some(value) = m.get("value").filter(|_| m.contains_key("samples")) {
                format!("value {value}")
            } else {
                clip(&v.to_string(), 80)
            }
        }
        Value::Null => String::new(),
        other => clip(&other.to_string(), 80),
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}
