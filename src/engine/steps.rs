//! One step: its `when`, its start and end journaled, and in between the handler of
//! its kind (`handlers/`). What handlers share lives here and next door, as methods of
//! the context: saving results and evaluating conditions (here), `gate.rs` (plan and
//! decision), `ops.rs` (resolving and running operations), `verify.rs` (polling) and
//! resume's re-verification of operations whose outcome is unknown (here).

use std::time::Duration;

use serde_json::Value;

use super::EngineError;
use super::ctx::Ctx;
use super::events::Notice;
use super::gate::GatePolicy;
use super::handlers;
use super::run::{Runner, outcome_word};
use super::verify::{DEFAULT_WITHIN, Verdict};
use crate::expr;
use crate::journal::event::{Event, Outcome, Scope};
use crate::journal::state::StepState;
use crate::runbook::model::{Gate, Rung, Step};

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

impl Runner<'_> {
    /// Run one step and journal its start and end.
    pub(crate) async fn run_step(&mut self, step: &Step) -> Result<End, EngineError> {
        let id = step.id.value.clone();
        if let Some(when) = &step.when {
            match self.cx.eval_bool(when, None) {
                Ok(true) => {}
                Ok(false) => {
                    let reason = format!("`when` did not hold: {}", when.value);
                    self.cx.skip(&id, &reason)?;
                    return Ok(End::Skipped(reason));
                }
                Err(e) => {
                    let now = self.cx.clock.now();
                    let end = failed(format!("`when`: {e}"));
                    return self.cx.finish(step, now, end, Value::Null, None);
                }
            }
        }
        if let Some(req) = &step.requires {
            let holds = self.cx.eval_bool(req, None);
            if !matches!(holds, Ok(true)) {
                let now = self.cx.clock.now();
                let why = match holds {
                    Err(e) => format!("`requires`: {e}"),
                    _ => format!(
                        "its precondition does not hold (`requires: {}`): it never runs before it does",
                        req.value
                    ),
                };
                return self.cx.finish(step, now, failed(why), Value::Null, None);
            }
        }
        let kind = step.kind();
        // Held: written with the step's next event (its first operation's start, at
        // the latest before anything waits), one journal append instead of two.
        self.cx.events.defer(Event::StepStarted {
            step: id.clone(),
            title: step.title().to_string(),
            kind: kind.key().to_string(),
        });
        tracing::info!(step = %id, kind = kind.key(), "step started");
        // Step durations come from the run's clock, like the journal's timestamps, so
        // the two agree when the clock is virtual (the lab in `demo` and `test`).
        let t0 = self.cx.clock.now();
        let prior = self.prior(step);
        let ran = handlers::handle(&mut self.cx, step, prior.as_ref()).await;
        // From here on, what the run state says about this step is this process's.
        self.ran_here.insert(id);
        let h = ran?;
        self.cx.finish(step, t0, h.end, h.result, h.fixed_by)
    }
}

impl Ctx<'_> {
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
        fixed_by: Option<String>,
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
                        fixed_by,
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

    /// Run a step's own prepared operations with the step's `for_each`, concurrency,
    /// timeout and retry settings.
    pub(super) async fn execute_step(
        &self,
        step: &Step,
        prepared: Vec<super::ops::Prepared>,
        done_items: &[Option<usize>],
    ) -> Result<(Value, Vec<String>), EngineError> {
        self.execute_all(
            prepared,
            super::ops::FanOut {
                is_list: step.for_each.is_some(),
                concurrency: concurrency(
                    step.concurrency.as_deref().copied(),
                    self.opts.default_concurrency,
                ),
                timeout: timeout(step),
                retry: step.retry.as_ref(),
                max_failures: step.limit.as_deref().and_then(|l| l.max_failures),
                keep: step.keep.as_deref(),
            },
            done_items,
        )
        .await
    }

    /// Keep the result under the step's `save` name.
    pub(super) fn save(&mut self, step: &Step, result: &Value) -> Result<(), EngineError> {
        let Some(name) = &step.save else {
            return Ok(());
        };
        let s = scope(step, None);
        // A step without `for_each` saves its one operation's result, which that
        // operation's `op_finished` has just put in a side file when it is large:
        // the same file is named (content-addressed) without writing it again.
        let reused = match &step.for_each {
            None => self.events.side_file_of(&s),
            Some(_) => None,
        };
        let journaled = match reused {
            Some(f) => serde_json::json!({ "$output_file": f }),
            None => match self.events.bounded(&s, result) {
                (_, Some(f)) => serde_json::json!({ "$output_file": f }),
                (value, None) => value,
            },
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

    /// The step's one-line outcome for the console and the postmortem: its
    /// `summary:` template rendered with `result` (and everything `expect` sees),
    /// else a short description of the result. A summary that cannot be rendered
    /// does not fail a step that worked: the description is shown with the reason.
    pub(super) fn summary_of(&mut self, step: &Step, result: &Value) -> String {
        let Some(template) = &step.summary else {
            return summarize(result);
        };
        match self.with_vars(Some(result.clone()), |vars| expr::render(template, vars)) {
            // One line: the console and the timeline show one line per step.
            Ok(text) => clip(&text.split_whitespace().collect::<Vec<_>>().join(" "), 200),
            Err(e) => format!("{} (summary: {e})", summarize(result)),
        }
    }

    /// Evaluate `expect`: `Err(None)` when there is none.
    /// `result` is lent to the condition, not copied (a saved 1 000-pod list is
    /// 1.4 MB), and is as it was when this returns.
    pub(super) fn expect(
        &mut self,
        step: &Step,
        result: &mut Value,
    ) -> Result<bool, Option<String>> {
        let Some(expect) = &step.expect else {
            return Err(None);
        };
        self.with_lent_result(result, |vars| expr::eval_bool(expect, vars))
            .map_err(|e| Some(e.to_string()))
    }

    /// [`Ctx::with_vars`] with `result` moved in and back rather than copied.
    pub(super) fn with_lent_result<R>(
        &mut self,
        result: &mut Value,
        f: impl FnOnce(&Value) -> R,
    ) -> R {
        let lent = std::mem::take(result);
        let mut back = Value::Null;
        let out = self.with_vars_returning(Some(lent), &mut back, f);
        *result = back;
        out
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
        let mut back = Value::Null;
        self.with_vars_returning(result, &mut back, f)
    }

    /// [`Ctx::with_vars`], putting `result` back into `back` afterwards.
    fn with_vars_returning<R>(
        &mut self,
        result: Option<Value>,
        back: &mut Value,
        f: impl FnOnce(&Value) -> R,
    ) -> R {
        let has_result = result.is_some();
        if let Some(r) = result {
            self.vars.insert("result".into(), r);
        }
        let vars = Value::Object(std::mem::take(&mut self.vars));
        let out = f(&vars);
        if let Value::Object(m) = vars {
            self.vars = m;
        }
        if has_result && let Some(r) = self.vars.remove("result") {
            *back = r;
        }
        out
    }

    pub(super) fn gate_of(&self, step: &Step, rung: Option<&Rung>) -> GatePolicy {
        if self.rb.unattended.iter().any(|u| u.value == step.id.value) {
            return Gate::Auto.into();
        }
        // A rung's own `gate:` replaces the step's, quorum and all.
        let (gate, rule) = match rung.filter(|r| r.gate.is_some()) {
            Some(r) => (r.gate.as_deref().copied(), r.gate_rule.as_deref().copied()),
            None => (
                step.gate.as_deref().copied(),
                step.gate_rule.as_deref().copied(),
            ),
        };
        GatePolicy {
            mode: gate.unwrap_or(Gate::Approve),
            rule: rule.unwrap_or_default(),
        }
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
