//! One step, by kind: checks, actions, verify steps and manual steps, and how a
//! step's start and end are journaled. The parts an action is made of live next
//! door: `gate.rs` (plan and decision), `ops.rs` (resolving and running operations),
//! `verify.rs` (polling) and `ladder.rs` (escalation).

use std::time::Duration;

use serde_json::Value;

use super::EngineError;
use super::approve::{ManualAnswer, ManualRequest};
use super::events::Notice;
use super::run::{Engine, outcome_word};
use crate::expr;
use crate::journal::event::{Event, Outcome, Scope};
use crate::journal::state::StepState;
use crate::runbook::model::{Gate, Rung, Step, StepKind};

use super::gate::Pass;
use super::verify::{DEFAULT_WITHIN, Verdict};

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
        self.events.emit(
            Event::StepStarted {
                step: id.clone(),
                title: step.title().to_string(),
                kind: kind.key().to_string(),
            },
            false,
        )?;
        tracing::info!(step = %id, kind = kind.key(), "step started");
        // Step durations come from the run's clock, like the journal's timestamps, so
        // the two agree when the clock is virtual (the lab in `demo` and `test`).
        let t0 = self.clock.now();
        let ran = match kind {
            StepKind::Check => self.check(step).await,
            StepKind::Action if !step.escalate.is_empty() => {
                self.ladder(step).await.map(|end| (end, Value::Null))
            }
            StepKind::Action => self.action(step).await,
            StepKind::Verify => self.verify_step(step).await,
            StepKind::Manual => self.manual_step(step).await.map(|end| (end, Value::Null)),
        };
        // From here on, what the run state says about this step is this process's.
        self.ran_here.insert(id);
        let (end, result) = ran?;
        self.finish(step, t0, end, result)
    }

    pub(super) fn skip(&mut self, id: &str, reason: &str) -> Result<(), EngineError> {
        self.events.emit(
            Event::StepSkipped {
                step: id.to_string(),
                reason: reason.to_string(),
            },
            false,
        )?;
        self.set_step_var(id, "skipped", Value::Null);
        Ok(())
    }

    pub(super) fn finish(
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
                self.events.emit(
                    Event::StepFinished {
                        step: id.clone(),
                        outcome: *outcome,
                        duration_ms: took.as_millis() as u64,
                        summary: self.events.redact(summary),
                        fixed_by: self.fixed_by.take(),
                    },
                    false,
                )?;
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
                self.events.emit(
                    Event::StepFinished {
                        step: id.clone(),
                        outcome: Outcome::Aborted,
                        duration_ms: took.as_millis() as u64,
                        summary: reason.clone(),
                        fixed_by: None,
                    },
                    false,
                )?;
            }
            End::Paused { .. } => {}
        }
        Ok(end)
    }

    // ----- checks ---------------------------------------------------------------

    /// Run a step's own prepared operations with the step's `for_each`, concurrency,
    /// timeout and retry settings.
    async fn execute_step(
        &self,
        step: &Step,
        prepared: Vec<super::ops::Prepared>,
        done_items: &[Option<usize>],
    ) -> Result<(Value, Vec<String>), EngineError> {
        self.execute_all(
            prepared,
            step.for_each.is_some(),
            concurrency(
                step.concurrency.as_deref().copied(),
                self.opts.default_concurrency,
            ),
            timeout(step),
            step.retry.as_ref(),
            done_items,
        )
        .await
    }

    pub(super) async fn check(&mut self, step: &Step) -> Result<(End, Value), EngineError> {
        let Some(op) = step.op() else {
            return Ok((failed("the check has no operation".into()), Value::Null));
        };
        let base = scope(step, None);
        let prepared = match self.prepare(&base, op, step.for_each.as_deref(), true) {
            Ok(p) => p,
            Err(e) => return Ok((failed(e), Value::Null)),
        };
        let (result, errors) = self.execute_step(step, prepared, &[]).await?;
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
    pub(super) fn save(&mut self, step: &Step, result: &Value) -> Result<(), EngineError> {
        let Some(name) = &step.save else {
            return Ok(());
        };
        let s = scope(step, None);
        let (value, file) = self.events.bounded(&s, result);
        let journaled = match file {
            Some(f) => serde_json::json!({ "$output_file": f }),
            None => value,
        };
        self.events.emit(
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
    pub(super) fn expect(&mut self, step: &Step, result: &Value) -> Result<bool, Option<String>> {
        let Some(expect) = &step.expect else {
            return Err(None);
        };
        self.eval_bool(expect, Some(result.clone()))
            .map_err(|e| Some(e.to_string()))
    }

    /// Evaluate a condition over the run's variables (and `result`), without copying
    /// them: saved lists of a thousand pods stay where they are.
    pub(super) fn eval_bool(
        &mut self,
        expr_src: &str,
        result: Option<Value>,
    ) -> Result<bool, expr::ExprError> {
        self.with_vars(result, |vars| expr::eval_bool(expr_src, vars))
    }

    pub(super) fn render(&mut self, template: &str) -> Result<String, expr::ExprError> {
        self.with_vars(None, |vars| expr::render(template, vars))
    }

    pub(super) fn with_vars<R>(&mut self, result: Option<Value>, f: impl FnOnce(&Value) -> R) -> R {
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

    pub(super) async fn action(&mut self, step: &Step) -> Result<(End, Value), EngineError> {
        let Some(op) = step.op() else {
            return Ok((failed("the action has no operation".into()), Value::Null));
        };
        let base = scope(step, None);
        let mut prepared = match self.prepare(&base, op, step.for_each.as_deref(), false) {
            Ok(p) => p,
            Err(e) => return Ok((failed(e), Value::Null)),
        };
        let mut prior = self.prior(step);
        let mut done_items = Vec::new();
        if let Some(p) = &prior {
            let unknown = !p.unknown_ops(None).is_empty();
            if let Some(end) = self.reverify_unknown(step, p, None).await? {
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
            Pass::Skip(r) => {
                if let (true, Some(v)) = (self.opts.dry_run, step.verification()) {
                    let title = v
                        .title
                        .as_deref()
                        .map_or("the verification", |t| t.as_str());
                    self.events.notice(Notice::WouldVerify {
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
        }
        let (result, errors) = self.execute_step(step, prepared, &done_items).await?;
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

    pub(super) fn gate_of(&self, step: &Step, rung: Option<&Rung>) -> Gate {
        if self.rb.unattended.iter().any(|u| u.value == step.id.value) {
            return Gate::Auto;
        }
        rung.and_then(|r| r.gate.as_deref().copied())
            .or(step.gate.as_deref().copied())
            .unwrap_or(Gate::Approve)
    }

    /// Journal, for each operation the process stopped in the middle of, that its
    /// outcome is unknown (resume then re-verifies before retrying anything).
    pub(super) fn journal_unknown(
        &mut self,
        step: &Step,
        rung: Option<&str>,
        unknown: &[crate::journal::state::OpKey],
    ) -> Result<(), EngineError> {
        for key in unknown {
            let mut s = scope(step, rung.map(str::to_string));
            s.item = key.item;
            self.events.emit(
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
        Ok(())
    }

    /// On resume: operations of this step (or rung) whose outcome the journal does not
    /// know are journaled as `unknown`, then the verification is polled for its
    /// `within`. If it holds,
    /// the step is done without running anything again.
    pub(super) async fn reverify_unknown(
        &mut self,
        step: &Step,
        prior: &StepState,
        rung: Option<&str>,
    ) -> Result<Option<End>, EngineError> {
        let unknown = prior.unknown_ops(rung);
        if unknown.is_empty() {
            return Ok(None);
        }
        self.journal_unknown(step, rung, &unknown)?;
        self.events.notice(Notice::UnknownOutcomes {
            step: step.id.value.clone(),
            count: unknown.len(),
        });
        let Some(v) = step.verification() else {
            self.events.notice(Notice::NoVerificationToTell);
            return Ok(None);
        };
        self.events.notice(Notice::Reverifying);
        // Polled for its whole `within`, not once: after a crash the action may still
        // be running (its process group outlives the engine), and re-running it now
        // would put a second execution next to the first (issue 13 item 2).
        let within = v.within.as_deref().map(|d| d.0).unwrap_or(DEFAULT_WITHIN);
        match self.verify(step, rung, v, within, true).await? {
            Verdict::Holds => {
                self.events.notice(Notice::ReverifyHolds);
                Ok(Some(ok("outcome was unknown; re-verified, holds".into())))
            }
            Verdict::Aborted => Ok(Some(End::Aborted("aborted by operator".into()))),
            Verdict::Fails(detail) => {
                self.events.notice(Notice::ReverifyFails { detail });
                Ok(None)
            }
        }
    }

    // ----- manual steps ---------------------------------------------------------

    pub(super) async fn manual_step(&mut self, step: &Step) -> Result<End, EngineError> {
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
            self.events.notice(Notice::WouldAsk { instruction });
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

    pub(super) async fn manual(
        &mut self,
        step: &Step,
        rung: Option<&str>,
        title: &str,
        instruction: String,
    ) -> Result<ManualEnd, EngineError> {
        let s = scope(step, rung.map(str::to_string));
        let instruction = self.events.redact(&instruction);
        if self.opts.dry_run {
            self.events.notice(Notice::WouldAskPerson { instruction });
            return Ok(ManualEnd::Skipped("dry run".into()));
        }
        self.events.emit(
            Event::ManualRequested {
                scope: s.clone(),
                instruction: instruction.clone(),
            },
            true,
        )?;
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
        self.events.emit(
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
}

pub(super) enum ManualEnd {
    Done,
    Failed(String),
    Skipped(String),
    Paused(String),
    Aborted(String),
}

pub(super) fn scope(step: &Step, rung: Option<String>) -> Scope {
    Scope {
        step: step.id.value.clone(),
        rung,
        item: None,
        verification: false,
    }
}

pub(super) fn ok(summary: String) -> End {
    End::Done {
        outcome: Outcome::Ok,
        summary,
    }
}

pub(super) fn failed(summary: String) -> End {
    End::Done {
        outcome: Outcome::Failed,
        summary,
    }
}

pub(super) fn timeout(step: &Step) -> Option<Duration> {
    step.timeout.as_deref().map(|d| d.0)
}

pub(super) fn concurrency(c: Option<u32>, default: usize) -> usize {
    c.map(|c| c as usize).unwrap_or(default).max(1)
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

pub(super) fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}
