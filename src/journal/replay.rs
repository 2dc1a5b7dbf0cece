//! Rebuilding a run's state from its journal alone, for `runbook resume` and
//! `runbook runs`.
//!
//! What a resumed engine needs: the params and saved values, which steps are done
//! (they are not run again), and for the step that was in flight: the gates already
//! decided (an approval is bound to a plan digest and stays valid for the same plan),
//! the escalation rungs already started, and every operation whose start was journaled
//! but whose result was not — its outcome is unknown.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::event::{Decision, Event, Outcome, Record, RunStatus, RunbookRef, Scope};

/// Identifies one operation of a step: its rung, its `for_each` item, and whether it
/// belongs to the verification.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpKey {
    pub rung: Option<String>,
    pub item: Option<usize>,
    pub verification: bool,
}

impl From<&Scope> for OpKey {
    fn from(s: &Scope) -> OpKey {
        OpKey {
            rung: s.rung.clone(),
            item: s.item,
            verification: s.verification,
        }
    }
}

/// The last thing the journal says about one operation.
#[derive(Debug, Clone, PartialEq)]
pub enum OpState {
    /// `op_started` without `op_finished`: the process stopped mid-operation.
    Started,
    Finished {
        outcome: Outcome,
        result: Option<Value>,
    },
}

/// A gate decision as journaled.
#[derive(Debug, Clone, PartialEq)]
pub struct GateRecord {
    pub rung: Option<String>,
    pub decision: Decision,
    pub by: String,
    pub digest: String,
}

/// What the journal says about one step.
#[derive(Debug, Clone, Default)]
pub struct StepReplay {
    pub started: bool,
    /// From `step_finished`.
    pub finished: Option<Outcome>,
    pub summary: Option<String>,
    /// From `step_skipped`.
    pub skipped: Option<String>,
    pub gates: Vec<GateRecord>,
    pub ops: BTreeMap<OpKey, OpState>,
    /// Escalation rungs started, in order.
    pub rungs: Vec<String>,
    /// Manual confirmations: rung (None for a manual step) and outcome.
    pub manual: Vec<(Option<String>, Outcome)>,
}

impl StepReplay {
    /// The step needs no more work: it finished (other than by an abort) or was skipped.
    pub fn is_done(&self) -> bool {
        self.skipped.is_some() || matches!(self.finished, Some(o) if o != Outcome::Aborted)
    }

    /// Operations (outside verifications) of `rung` whose outcome is unknown: started
    /// and never finished, or cut short by an abort.
    pub fn unknown_ops(&self, rung: Option<&str>) -> Vec<OpKey> {
        self.ops
            .iter()
            .filter(|(k, s)| {
                !k.verification
                    && k.rung.as_deref() == rung
                    && matches!(
                        s,
                        OpState::Started
                            | OpState::Finished {
                                outcome: Outcome::Aborted | Outcome::Unknown,
                                ..
                            }
                    )
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// `for_each` items (or the single op, `None`) of `rung` that finished ok.
    pub fn ok_items(&self, rung: Option<&str>) -> Vec<Option<usize>> {
        self.ops
            .iter()
            .filter(|(k, s)| {
                !k.verification
                    && k.rung.as_deref() == rung
                    && matches!(
                        s,
                        OpState::Finished {
                            outcome: Outcome::Ok,
                            ..
                        }
                    )
            })
            .map(|(k, _)| k.item)
            .collect()
    }

    /// An approval of exactly this plan, if one was journaled.
    pub fn approval(&self, rung: Option<&str>, digest: &str) -> Option<&GateRecord> {
        self.gates.iter().rev().find(|g| {
            g.rung.as_deref() == rung && g.digest == digest && g.decision == Decision::Approved
        })
    }

    /// The last approval of this gate for a plan other than `digest`: it was given for
    /// different operations, so it does not carry over.
    pub fn stale_approval(&self, rung: Option<&str>, digest: &str) -> Option<&GateRecord> {
        self.gates.iter().rev().find(|g| {
            g.rung.as_deref() == rung && g.digest != digest && g.decision == Decision::Approved
        })
    }
}

/// A run as its journal tells it.
#[derive(Debug, Clone)]
pub struct Replay {
    pub run_id: String,
    pub runbook: RunbookRef,
    /// Secrets are `"***"`.
    pub params: Map<String, Value>,
    pub operator: String,
    pub dry_run: bool,
    pub started: DateTime<Utc>,
    /// Time of the last record.
    pub last_ts: DateTime<Utc>,
    /// The status of the last `run_finished` not followed by a `run_resumed`:
    /// `None` while running or after a crash.
    pub status: Option<RunStatus>,
    /// Sum of `duration_ms` of every `run_finished` (each process's share).
    pub duration_ms: u64,
    pub saved: Map<String, Value>,
    pub steps: HashMap<String, StepReplay>,
    /// The step of the last `paused` event, if the run is paused.
    pub paused_at: Option<String>,
}

/// Why a journal cannot be replayed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReplayError(pub String);

/// Rebuild a run's state from its records.
pub fn replay(records: &[Record]) -> Result<Replay, ReplayError> {
    let first = records
        .first()
        .ok_or_else(|| ReplayError("the journal is empty".into()))?;
    let Event::RunStarted {
        run_id,
        runbook,
        params,
        operator,
        dry_run,
        ..
    } = &first.event
    else {
        return Err(ReplayError(
            "the journal does not start with run_started".into(),
        ));
    };
    let mut r = Replay {
        run_id: run_id.clone(),
        runbook: runbook.clone(),
        params: params.clone(),
        operator: operator.clone(),
        dry_run: *dry_run,
        started: first.ts,
        last_ts: first.ts,
        status: None,
        duration_ms: 0,
        saved: Map::new(),
        steps: HashMap::new(),
        paused_at: None,
    };
    for rec in &records[1..] {
        r.last_ts = rec.ts;
        apply(&mut r, &rec.event);
    }
    Ok(r)
}

fn apply(r: &mut Replay, event: &Event) {
    match event {
        Event::RunStarted { .. } | Event::Note { .. } | Event::VerifyPolled { .. } => {}
        Event::RunResumed { .. } => {
            r.status = None;
            r.paused_at = None;
        }
        Event::StepStarted { step, .. } => {
            let s = r.steps.entry(step.clone()).or_default();
            s.started = true;
            // A step run again after an abort starts over.
            s.finished = None;
        }
        Event::StepSkipped { step, reason } => {
            r.steps.entry(step.clone()).or_default().skipped = Some(reason.clone());
        }
        Event::GateRequested { .. } => {}
        Event::GateDecided {
            step,
            rung,
            decision,
            by,
            digest,
            ..
        } => r
            .steps
            .entry(step.clone())
            .or_default()
            .gates
            .push(GateRecord {
                rung: rung.clone(),
                decision: *decision,
                by: by.clone(),
                digest: digest.clone(),
            }),
        Event::Paused { step, .. } => r.paused_at = Some(step.clone()),
        Event::OpStarted { op, .. } => {
            r.steps
                .entry(op.scope.step.clone())
                .or_default()
                .ops
                .insert(OpKey::from(&op.scope), OpState::Started);
        }
        Event::OpFinished {
            scope,
            outcome,
            result,
            ..
        } => {
            r.steps.entry(scope.step.clone()).or_default().ops.insert(
                OpKey::from(scope),
                OpState::Finished {
                    outcome: *outcome,
                    result: result.clone(),
                },
            );
        }
        Event::ManualRequested { .. } => {}
        Event::ManualConfirmed { scope, outcome, .. } => r
            .steps
            .entry(scope.step.clone())
            .or_default()
            .manual
            .push((scope.rung.clone(), *outcome)),
        Event::RungStarted { step, rung, .. } => {
            let s = r.steps.entry(step.clone()).or_default();
            if !s.rungs.contains(rung) {
                s.rungs.push(rung.clone());
            }
        }
        Event::Escalated { .. } => {}
        Event::Saved { name, value, .. } => {
            r.saved.insert(name.clone(), value.clone());
        }
        Event::StepFinished {
            step,
            outcome,
            summary,
            ..
        } => {
            let s = r.steps.entry(step.clone()).or_default();
            s.finished = Some(*outcome);
            s.summary = Some(summary.clone());
        }
        Event::RunFinished {
            status,
            duration_ms,
            ..
        } => {
            r.status = Some(*status);
            r.duration_ms += duration_ms;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::event::PlannedOp;

    fn rec(seq: u64, event: Event) -> Record {
        Record {
            seq,
            ts: Utc::now(),
            event,
        }
    }

    fn started() -> Event {
        Event::RunStarted {
            format: 1,
            run_id: "r1".into(),
            runbook: RunbookRef {
                name: "n".into(),
                title: "t".into(),
                path: "p.yaml".into(),
                sha256: "00".into(),
                git: None,
            },
            params: Map::new(),
            operator: "ana".into(),
            host: "h".into(),
            tool_version: "0".into(),
            dry_run: false,
        }
    }

    fn scope(step: &str) -> Scope {
        Scope {
            step: step.into(),
            ..Scope::default()
        }
    }

    #[test]
    fn an_op_started_but_never_finished_has_an_unknown_outcome() {
        let op = PlannedOp {
            scope: scope("fix"),
            provider: "shell".into(),
            display: "touch x".into(),
            op: Value::Null,
            mutating: true,
        };
        let records = vec![
            rec(1, started()),
            rec(
                2,
                Event::StepStarted {
                    step: "fix".into(),
                    title: "Fix".into(),
                    kind: "action".into(),
                },
            ),
            rec(3, Event::OpStarted { op, attempt: 1 }),
        ];
        let r = replay(&records).unwrap();
        let s = &r.steps["fix"];
        assert!(!s.is_done());
        assert_eq!(s.unknown_ops(None).len(), 1);
        assert_eq!(r.status, None);
    }

    #[test]
    fn a_resumed_run_is_no_longer_paused_and_saved_values_survive() {
        let records = vec![
            rec(1, started()),
            rec(
                2,
                Event::Saved {
                    step: "c".into(),
                    name: "x".into(),
                    value: Value::from(3),
                },
            ),
            rec(
                3,
                Event::RunFinished {
                    status: RunStatus::Paused,
                    duration_ms: 5,
                    reason: None,
                },
            ),
            rec(
                4,
                Event::RunResumed {
                    operator: "bo".into(),
                    host: "h".into(),
                },
            ),
        ];
        let r = replay(&records).unwrap();
        assert_eq!(r.status, None);
        assert_eq!(r.saved["x"], Value::from(3));
        assert_eq!(r.duration_ms, 5);
    }
}
