//! Undo: the `undo:` of a run's completed actions, newest first, each behind its own
//! gate (`runbook undo RUN [STEP]`, or the runbook's `on_failure: undo` when a run
//! fails).
//!
//! An undo is journaled as `undo_started` (fsynced before its gate and its
//! operations) … `undo_finished`, or `undo_skipped` for a completed action without
//! `undo:`. Its gate and operations are those of the step under the rung `ID.undo`,
//! so the plan, the digest-bound approval (`--yes`, `--approve ID.undo`, `runbook
//! approve RUN ID.undo`), the journaling of each operation's start and the fold are
//! the ones every action has. What the run state says about an undo (`UndoRecord`)
//! is what makes undoing twice do nothing twice: a finished undo is not run again,
//! and an undo cut short runs only the items whose compensation did not finish ok.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::EngineError;
use super::ctx::Ctx;
use super::gate::{GatePolicy, Pass};
use super::ops::{FanOut, Prepared};
use super::run::Runner;
use super::steps::{concurrency, timeout};
use crate::journal::event::{Event, Outcome, PlannedOp, RunStatus, Scope};
use crate::journal::reader;
use crate::journal::state::{OpState, RunState, UndoRecord};
use crate::runbook::model::{Gate, Runbook, Step, StepKind, Undo};

/// How undoing ended.
pub(super) enum UndoEnd {
    /// Every undo that could run ran (or was skipped at its gate, or named).
    Done,
    /// An undo's gate waits for a person; `approve` is its id (`ID.undo`).
    Paused {
        step: String,
        reason: String,
        approve: String,
    },
    /// An undo was declined, failed or was stopped: the ones after it did not run.
    Stopped { status: RunStatus, reason: String },
}

/// The completed actions of a run, newest first (by when their last operation
/// finished ok): what `runbook undo` walks. With `only`, just that step, or why it
/// cannot be undone. Computed before anything is journaled.
pub(super) fn undo_order(
    rb: &Runbook,
    state: &RunState,
    only: Option<&str>,
) -> Result<Vec<String>, String> {
    let mut done: Vec<(DateTime<Utc>, usize, &Step)> = Vec::new();
    for (n, step) in rb.steps.iter().chain(&rb.handlers).enumerate() {
        if step.kind() != StepKind::Action {
            continue;
        }
        let Some(s) = state.step(&step.id.value) else {
            continue;
        };
        let last = s
            .ops
            .iter()
            .filter(|(k, o)| {
                k.rung.is_none()
                    && !k.verification
                    && o.state
                        == OpState::Finished {
                            outcome: Outcome::Ok,
                        }
            })
            .filter_map(|(_, o)| o.finished)
            .max();
        // A ladder's rungs are not undone (lint refuses `undo` on a ladder), but a
        // ladder that acted is named as not undone.
        let rung_acted = !step.escalate.is_empty()
            && s.ops.iter().any(|(k, o)| {
                k.rung.is_some()
                    && !k.verification
                    && o.state
                        == OpState::Finished {
                            outcome: Outcome::Ok,
                        }
            });
        let last = match (last, rung_acted) {
            (Some(t), _) => t,
            (None, true) => s.finished_at.or(s.started_at).unwrap_or_default(),
            (None, false) => continue,
        };
        done.push((last, n, step));
    }
    // Newest first; the later step first when two finished in the same millisecond.
    done.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    let ids: Vec<String> = done.iter().map(|(_, _, s)| s.id.value.clone()).collect();
    let Some(only) = only else {
        return Ok(ids);
    };
    if ids.iter().any(|i| i == only) {
        return Ok(vec![only.to_string()]);
    }
    let known = rb
        .steps
        .iter()
        .chain(&rb.handlers)
        .find(|s| s.id.value == only);
    Err(match known {
        None => format!(
            "`{only}` is not a step of runbook `{}`{}",
            rb.name.value,
            if ids.is_empty() {
                String::new()
            } else {
                format!(" (the completed actions are: {})", ids.join(", "))
            }
        ),
        Some(s) if s.kind() != StepKind::Action => format!(
            "`{only}` is a {} step: it changed nothing to undo",
            s.kind().key()
        ),
        Some(_) => format!(
            "action `{only}` completed nothing in this run, so there is nothing to undo{}",
            if ids.is_empty() {
                String::new()
            } else {
                format!(" (the completed actions are: {})", ids.join(", "))
            }
        ),
    })
}

/// Every step of `order` was undone, or named as not undoable, already.
pub(super) fn all_done(state: &RunState, order: &[String]) -> bool {
    order.iter().all(|id| {
        state
            .step(id)
            .and_then(|s| s.undo.as_deref())
            .is_some_and(UndoRecord::is_done)
    })
}

impl Runner<'_> {
    /// `runbook undo`: undo `order` (from [`undo_order`]) and journal how the run
    /// ended: as before when every undo ran (a failed run stays failed; it is now
    /// also undone), paused at an undo's gate, or aborted/failed when one was
    /// declined or failed. Returns the status and the exit code.
    pub(super) async fn undo_run(
        &mut self,
        t0: DateTime<Utc>,
        order: &[String],
        before: (Option<RunStatus>, Option<String>),
    ) -> Result<(RunStatus, i32), EngineError> {
        // An undo continued (after a pause at its gate) ends the run as it had ended
        // when the undo began, not as the pause left it.
        let before = self.cx.events.state().undo_from.clone().unwrap_or(before);
        let held = match self.cx.take_lock().await {
            Ok(h) => h,
            Err(why) => {
                self.cx.opts.printer.line(&format!("⏸ {why}"));
                return self.end_undo(t0, RunStatus::Paused, Some(why)).await;
            }
        };
        let end = self.cx.undo_steps(order, &before).await?;
        if let Some(h) = held {
            self.cx.release_lock(h).await;
        }
        let undone = matches!(end, UndoEnd::Done);
        let (status, reason) = match end {
            UndoEnd::Done => match before.0 {
                Some(
                    s @ (RunStatus::Failed
                    | RunStatus::Succeeded
                    | RunStatus::Aborted
                    | RunStatus::NotApplicable),
                ) => (s, before.1),
                // A paused or interrupted run that was undone does not go on.
                _ => (
                    RunStatus::Aborted,
                    Some("undone before it finished (runbook undo)".to_string()),
                ),
            },
            UndoEnd::Paused {
                step,
                reason,
                approve,
            } => {
                self.cx.undo_paused(&step, &reason, &approve)?;
                (RunStatus::Paused, Some(reason))
            }
            UndoEnd::Stopped { status, reason } => (status, Some(reason)),
        };
        let (status, code) = self.end_undo(t0, status, reason).await?;
        // Every undo ran: `runbook undo` did its job, whatever the run's status.
        Ok((status, if undone { crate::exit::OK } else { code }))
    }

    async fn end_undo(
        &mut self,
        t0: DateTime<Utc>,
        status: RunStatus,
        reason: Option<String>,
    ) -> Result<(RunStatus, i32), EngineError> {
        self.finish_run(t0, status, reason)?;
        Ok((status, super::exit_code(status)))
    }

    /// The runbook's `on_failure: undo`: a failed run undoes its completed actions
    /// before it ends. Returns how the run ends.
    pub(super) async fn undo_on_failure(
        &mut self,
        reason: Option<String>,
    ) -> Result<(RunStatus, Option<String>), EngineError> {
        let order = {
            let state = self.cx.events.state();
            undo_order(self.cx.rb, &state, None).unwrap_or_default()
        };
        if order.is_empty() {
            return Ok((RunStatus::Failed, reason));
        }
        let from = (Some(RunStatus::Failed), reason.clone());
        Ok(match self.cx.undo_steps(&order, &from).await? {
            UndoEnd::Done => (RunStatus::Failed, reason),
            UndoEnd::Paused {
                step,
                reason: why,
                approve,
            } => {
                self.cx.undo_paused(&step, &why, &approve)?;
                (RunStatus::Paused, Some(why))
            }
            UndoEnd::Stopped {
                status,
                reason: why,
            } => (
                status,
                Some(match reason {
                    Some(r) => format!("{r}; {why}"),
                    None => why,
                }),
            ),
        })
    }
}

impl Ctx<'_> {
    fn undo_paused(&self, step: &str, reason: &str, approve: &str) -> Result<(), EngineError> {
        let resume = format!("runbook undo {} --approve {approve}", self.run_id);
        self.events.emit(
            Event::Paused {
                step: step.to_string(),
                reason: reason.to_string(),
                resume,
            },
            false,
        )
    }

    /// Undo each step of `order`, stopping at the first that is declined, fails or
    /// pauses.
    pub(super) async fn undo_steps(
        &mut self,
        order: &[String],
        from: &(Option<RunStatus>, Option<String>),
    ) -> Result<UndoEnd, EngineError> {
        let rb = self.rb;
        if self.events.state().undo_from.is_none() {
            self.events.emit(
                Event::UndoBegun {
                    status: from.0,
                    reason: from.1.clone(),
                    by: self.opts.operator.clone(),
                },
                true,
            )?;
        }
        for id in order {
            let Some(step) = rb
                .steps
                .iter()
                .chain(&rb.handlers)
                .find(|s| s.id.value == *id)
            else {
                continue;
            };
            let (done, skipped) = {
                let state = self.events.state();
                let u = state.step(id).and_then(|s| s.undo.as_deref());
                (
                    u.is_some_and(UndoRecord::is_done),
                    u.and_then(|u| u.skipped.clone()),
                )
            };
            if done || skipped.is_some() {
                // Undone (or named as not undoable) by an earlier `runbook undo`.
                continue;
            }
            let Some(undo) = step.undo.as_deref() else {
                let reason = if step.escalate.is_empty() {
                    format!("`{id}` has no `undo:` in the runbook; undo it by hand")
                } else {
                    format!(
                        "`{id}` is an escalation ladder, which has no `undo:`; undo its rungs by hand"
                    )
                };
                self.events.emit(
                    Event::UndoSkipped {
                        step: id.clone(),
                        reason,
                    },
                    false,
                )?;
                continue;
            };
            match self.undo_one(step, undo).await? {
                UndoEnd::Done => {}
                other => return Ok(other),
            }
        }
        Ok(UndoEnd::Done)
    }

    /// Undo one step: the items whose action finished ok and whose undo did not.
    async fn undo_one(&mut self, step: &Step, undo: &Undo) -> Result<UndoEnd, EngineError> {
        let id = step.id.value.clone();
        let rung = UndoRecord::rung_of(&id);
        let items: Vec<Option<usize>> = {
            let state = self.events.state();
            let s = state.step(&id).cloned().unwrap_or_default();
            let undone = s.ok_items(Some(&rung));
            s.ok_items(None)
                .into_iter()
                .filter(|i| !undone.contains(i))
                .collect()
        };
        let title = match &undo.title {
            Some(t) => t.value.clone(),
            None => format!("undo {}", step.title()),
        };
        let t0 = self.clock.now();
        self.events.emit(
            Event::UndoStarted {
                step: id.clone(),
                title: title.clone(),
                items: items.iter().flatten().copied().collect(),
                by: self.opts.operator.clone(),
            },
            true,
        )?;
        let finish = |cx: &Ctx<'_>, outcome: Outcome, summary: String| {
            let took = (cx.clock.now() - t0).num_milliseconds().max(0) as u64;
            cx.events.emit(
                Event::UndoFinished {
                    step: id.clone(),
                    outcome,
                    duration_ms: took,
                    summary,
                },
                true,
            )
        };
        let mut prepared = match self.prepare_undo(step, undo, &rung, &items) {
            Ok(p) => p,
            Err(e) => {
                let why = format!("the undo of `{id}` could not be planned: {e}");
                finish(self, Outcome::Failed, why.clone())?;
                return Ok(UndoEnd::Stopped {
                    status: RunStatus::Failed,
                    reason: why,
                });
            }
        };
        if prepared.is_empty() {
            finish(self, Outcome::Ok, "nothing left to undo".into())?;
            return Ok(UndoEnd::Done);
        }
        let prior = self.events.state().step(&id).cloned();
        // `undo: { gate: auto }` undoes unattended; otherwise it asks like an action.
        let mode = undo.gate.as_deref().copied().unwrap_or(Gate::Approve);
        let pass = self
            .gate(
                step,
                Some(&rung),
                &title,
                &mut prepared,
                GatePolicy::from(mode),
                prior.as_ref(),
                None,
            )
            .await?;
        match pass {
            Pass::Go => {}
            Pass::Skip(r) => {
                finish(self, Outcome::Skipped, r)?;
                return Ok(UndoEnd::Done);
            }
            Pass::Pause(reason) => {
                return Ok(UndoEnd::Paused {
                    step: id,
                    reason,
                    approve: rung,
                });
            }
            Pass::Abort(r) => {
                finish(self, Outcome::Aborted, r.clone())?;
                return Ok(UndoEnd::Stopped {
                    status: RunStatus::Aborted,
                    reason: format!("undo of `{id}`: {r}; the undos after it did not run"),
                });
            }
            Pass::Refuse(r) => {
                finish(self, Outcome::Failed, r.clone())?;
                return Ok(UndoEnd::Stopped {
                    status: RunStatus::Failed,
                    reason: format!("undo of `{id}`: {r}"),
                });
            }
        }
        let n = prepared.len();
        let (_, errors) = self
            .execute_all(
                prepared,
                FanOut {
                    is_list: step.for_each.is_some(),
                    concurrency: concurrency(
                        step.concurrency.as_deref().copied(),
                        self.opts.default_concurrency,
                    ),
                    timeout: timeout(step),
                    retry: None,
                    max_failures: None,
                    keep: None,
                },
                &[],
            )
            .await?;
        if self.cancel.is_cancelled() {
            finish(self, Outcome::Aborted, "aborted by operator".into())?;
            return Ok(UndoEnd::Stopped {
                status: RunStatus::Aborted,
                reason: format!("undo of `{id}` aborted by operator"),
            });
        }
        if !errors.is_empty() {
            let why = errors.join("; ");
            finish(self, Outcome::Failed, why.clone())?;
            return Ok(UndoEnd::Stopped {
                status: RunStatus::Failed,
                reason: format!("undo of `{id}` failed: {why}; the undos after it did not run"),
            });
        }
        let what = if step.for_each.is_some() {
            format!("undid {n} item(s)")
        } else {
            "undone".to_string()
        };
        finish(self, Outcome::Ok, what)?;
        Ok(UndoEnd::Done)
    }

    /// The undo's operations, one per item to undo, rendered with the action's
    /// `item` and `index` (its `for_each` evaluated again over the run's variables)
    /// and `result` (that item's result as the journal has it).
    fn prepare_undo(
        &self,
        step: &Step,
        undo: &Undo,
        rung: &str,
        items: &[Option<usize>],
    ) -> Result<Vec<Prepared>, String> {
        let Some(op) = undo.op() else {
            return Err("the undo has no operation".into());
        };
        let name = op.provider();
        let Some(provider) = self.providers.get(name) else {
            return Err(match name {
                "kube" => "no Kubernetes provider is configured (the undo needs the run's cluster: --kubeconfig/--context)".to_string(),
                other => format!("no `{other}` provider is configured"),
            });
        };
        let text = super::ops::op_text(op);
        let base = self.vars_named_in(&text);
        let list = match &step.for_each {
            Some(src) => {
                let v = crate::expr::eval(src, &self.vars_named_in(src))
                    .map_err(|e| format!("for_each: {e}"))?;
                match v {
                    Value::Array(l) => Some(l),
                    _ => return Err(format!("for_each `{}` did not give a list", src.value)),
                }
            }
            None => None,
        };
        let results = self.action_results(&step.id.value);
        let mut out = Vec::new();
        for item in items {
            let mut vars = base.clone();
            if let Value::Object(m) = &mut vars {
                if let (Some(i), Some(list)) = (item, &list) {
                    let Some(v) = list.get(*i) else {
                        return Err(format!(
                            "item {i} of `for_each` is no longer in the list it was taken from"
                        ));
                    };
                    m.insert("item".into(), v.clone());
                    m.insert("index".into(), Value::from(*i));
                }
                m.insert(
                    "result".into(),
                    results.get(item).cloned().unwrap_or(Value::Null),
                );
            }
            let resolved =
                provider
                    .resolve(op, &vars, &self.opts.defaults)
                    .map_err(|e| match item {
                        Some(i) => format!("item {i}: {e}"),
                        None => e.to_string(),
                    })?;
            let scope = Scope {
                step: step.id.value.clone(),
                rung: Some(rung.to_string()),
                item: *item,
                verification: false,
            };
            let planned = PlannedOp {
                scope,
                provider: resolved.provider.clone(),
                display: self.events.redact(&resolved.display),
                op: self.events.redact_value(&resolved.op),
                mutating: resolved.mutating,
                impact: None,
            };
            out.push(Prepared {
                planned,
                resolved,
                vars: std::sync::Arc::new(vars),
            });
        }
        Ok(out)
    }

    /// The last ok result of each operation of the action `step` (by item), read
    /// back from the journal (a result too large to inline from its side file).
    fn action_results(&self, step: &str) -> std::collections::HashMap<Option<usize>, Value> {
        let (journal, _) = self.events.journal_end();
        let mut out = std::collections::HashMap::new();
        let Ok(j) = reader::read(&journal) else {
            return out;
        };
        let dir = journal.parent().map(Path::to_path_buf).unwrap_or_default();
        for rec in j.records {
            if let Event::OpFinished {
                scope,
                outcome: Outcome::Ok,
                result,
                output_file,
                ..
            } = rec.event
                && scope.step == step
                && scope.rung.is_none()
                && !scope.verification
            {
                let whole = output_file
                    .and_then(|f| std::fs::read(dir.join(f)).ok())
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
                out.insert(scope.item, whole.or(result).unwrap_or(Value::Null));
            }
        }
        out
    }
}
