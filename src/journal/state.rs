//! The state of a run, as its events tell it: the one place that knows what an event
//! means.
//!
//! [`RunState::apply`] folds one event at a time. The live engine applies every event
//! it emits (right after the journal has it), `runbook resume` applies every event of
//! the journal and then continues with the same state, `runbook runs` lists runs from
//! it, and the postmortem reads its run-level facts from it. So what the engine
//! decides, what resume rebuilds and what the postmortem says cannot disagree: a new
//! kind of decision is taught here once.
//!
//! Applying is cheap by design (no I/O, no copies of large results): it runs for every
//! event of a live run.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::event::{Decision, Event, KubeTarget, Outcome, Record, RunStatus, RunbookRef, Scope};

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

/// The last thing the events say about one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpState {
    /// `op_started` without `op_finished`: the process stopped mid-operation (or, in
    /// a live run, it is running now).
    Started,
    Finished {
        outcome: Outcome,
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

/// What the events say about one step.
#[derive(Debug, Clone, Default)]
pub struct StepState {
    pub started: bool,
    /// From `step_started`.
    pub title: String,
    /// From `step_finished`.
    pub finished: Option<Outcome>,
    pub summary: Option<String>,
    /// From `step_skipped`.
    pub skipped: Option<String>,
    pub gates: Vec<GateRecord>,
    pub ops: BTreeMap<OpKey, OpState>,
    /// Escalation rungs started, in order.
    pub rungs: Vec<String>,
    /// Titles of the rungs started, by rung id.
    pub rung_titles: HashMap<String, String>,
    /// Manual confirmations: rung (None for a manual step) and outcome.
    pub manual: Vec<(Option<String>, Outcome)>,
}

/// The name this type had when only `resume` folded the journal.
pub type StepReplay = StepState;

impl StepState {
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
                    && **s
                        == OpState::Finished {
                            outcome: Outcome::Ok,
                        }
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

    /// The title of a rung as it was started; its id when it never was.
    pub fn rung_title<'a>(&'a self, rung: &'a str) -> &'a str {
        self.rung_titles.get(rung).map_or(rung, String::as_str)
    }
}

/// A run as its events tell it.
#[derive(Debug, Clone, Default)]
pub struct RunState {
    pub run_id: String,
    pub runbook: RunbookRef,
    /// Secrets are `"***"`.
    pub params: Map<String, Value>,
    pub operator: String,
    pub dry_run: bool,
    pub started: DateTime<Utc>,
    /// Time of the last event applied.
    pub last_ts: DateTime<Utc>,
    /// The status of the last `run_finished` not followed by a `run_resumed`:
    /// `None` while running or after a crash.
    pub status: Option<RunStatus>,
    /// Sum of `duration_ms` of every `run_finished` (each process's share).
    pub duration_ms: u64,
    /// Values kept with `save`, as journaled (large ones point at a side file).
    pub saved: Map<String, Value>,
    pub steps: HashMap<String, StepState>,
    /// The step of the last `paused` event, if the run is paused.
    pub paused_at: Option<String>,
    /// How many processes drove the run: 1 + the `run_resumed` events.
    pub sessions: u32,
    /// The cluster the run's kube steps act on, as recorded when it started.
    pub target: Option<KubeTarget>,
}

/// The name this type had when only `resume` folded the journal.
pub type Replay = RunState;

/// Why a journal cannot be folded into a state.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReplayError(pub String);

impl RunState {
    /// The state of a run from its records (a journal read back).
    pub fn from_records(records: &[Record]) -> Result<RunState, ReplayError> {
        let first = records
            .first()
            .ok_or_else(|| ReplayError("the journal is empty".into()))?;
        if !matches!(first.event, Event::RunStarted { .. }) {
            return Err(ReplayError(
                "the journal does not start with run_started".into(),
            ));
        }
        let mut state = RunState::default();
        for rec in records {
            state.apply(rec.ts, &rec.event);
        }
        Ok(state)
    }

    /// The step's state; an empty one when no event named it yet.
    pub fn step(&self, id: &str) -> Option<&StepState> {
        self.steps.get(id)
    }

    /// Fold one event, which happened at `ts`, into the state.
    pub fn apply(&mut self, ts: DateTime<Utc>, event: &Event) {
        self.last_ts = ts;
        match event {
            Event::RunStarted {
                run_id,
                runbook,
                params,
                operator,
                dry_run,
                target,
                ..
            } => {
                self.target.clone_from(target);
                self.run_id.clone_from(run_id);
                self.runbook = runbook.clone();
                self.params = params.clone();
                self.operator.clone_from(operator);
                self.dry_run = *dry_run;
                self.started = ts;
                self.sessions = 1;
            }
            Event::Note { .. }
            | Event::VerifyPolled { .. }
            | Event::GateRequested { .. }
            | Event::ManualRequested { .. }
            | Event::Escalated { .. } => {}
            Event::RunResumed { .. } => {
                self.status = None;
                self.paused_at = None;
                self.sessions += 1;
            }
            Event::StepRetried { step, .. } => {
                // The failed attempt stays in the journal (the postmortem shows it);
                // for what runs next, the step has not run yet.
                self.steps.remove(step);
            }
            Event::StepStarted { step, title, .. } => {
                let s = self.step_mut(step);
                s.started = true;
                s.title.clone_from(title);
                // A step run again after an abort starts over.
                s.finished = None;
            }
            Event::StepSkipped { step, reason } => {
                self.step_mut(step).skipped = Some(reason.clone());
            }
            Event::GateDecided {
                step,
                rung,
                decision,
                by,
                digest,
                ..
            } => self.step_mut(step).gates.push(GateRecord {
                rung: rung.clone(),
                decision: *decision,
                by: by.clone(),
                digest: digest.clone(),
            }),
            Event::Paused { step, .. } => self.paused_at = Some(step.clone()),
            Event::OpStarted { op, .. } => {
                self.step_mut(&op.scope.step)
                    .ops
                    .insert(OpKey::from(&op.scope), OpState::Started);
            }
            Event::OpFinished { scope, outcome, .. } => {
                self.step_mut(&scope.step)
                    .ops
                    .insert(OpKey::from(scope), OpState::Finished { outcome: *outcome });
            }
            Event::ManualConfirmed { scope, outcome, .. } => self
                .step_mut(&scope.step)
                .manual
                .push((scope.rung.clone(), *outcome)),
            Event::RungStarted {
                step, rung, title, ..
            } => {
                let s = self.step_mut(step);
                if !s.rungs.contains(rung) {
                    s.rungs.push(rung.clone());
                }
                s.rung_titles.insert(rung.clone(), title.clone());
            }
            Event::Saved { name, value, .. } => {
                self.saved.insert(name.clone(), value.clone());
            }
            Event::StepFinished {
                step,
                outcome,
                summary,
                ..
            } => {
                let s = self.step_mut(step);
                s.finished = Some(*outcome);
                s.summary = Some(summary.clone());
            }
            Event::RunFinished {
                status,
                duration_ms,
                ..
            } => {
                self.status = Some(*status);
                self.duration_ms += duration_ms;
            }
        }
    }

    fn step_mut(&mut self, id: &str) -> &mut StepState {
        self.steps.entry(id.to_string()).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::event::{ApprovalSource, PlannedOp};

    fn rec(seq: u64, event: Event) -> Record {
        Record {
            seq,
            ts: Utc::now(),
            event,
        }
    }

    /// Records numbered from 1, all at the same instant.
    fn records(events: Vec<Event>) -> Vec<Record> {
        events
            .into_iter()
            .enumerate()
            .map(|(i, e)| rec(i as u64 + 1, e))
            .collect()
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
            target: None,
        }
    }

    fn scope(step: &str, rung: Option<&str>, item: Option<usize>) -> Scope {
        Scope {
            step: step.into(),
            rung: rung.map(str::to_string),
            item,
            verification: false,
        }
    }

    fn step_started(step: &str) -> Event {
        Event::StepStarted {
            step: step.into(),
            title: format!("Title of {step}"),
            kind: "action".into(),
        }
    }

    fn op_started(scope: Scope) -> Event {
        Event::OpStarted {
            op: PlannedOp {
                scope,
                provider: "shell".into(),
                display: "touch x".into(),
                op: Value::Null,
                mutating: true,
            },
            attempt: 1,
        }
    }

    fn op_finished(scope: Scope, outcome: Outcome) -> Event {
        Event::OpFinished {
            scope,
            attempt: 1,
            outcome,
            duration_ms: 1,
            result: Some(Value::from("big")),
            error: None,
            output_file: None,
            calls: Vec::new(),
        }
    }

    fn finished(step: &str, outcome: Outcome) -> Event {
        Event::StepFinished {
            step: step.into(),
            outcome,
            duration_ms: 1,
            summary: "s".into(),
            fixed_by: None,
        }
    }

    fn decided(step: &str, rung: Option<&str>, decision: Decision, digest: &str) -> Event {
        Event::GateDecided {
            step: step.into(),
            rung: rung.map(str::to_string),
            decision,
            by: "ana".into(),
            source: ApprovalSource::Prompt,
            digest: digest.into(),
        }
    }

    fn run_finished(status: RunStatus, duration_ms: u64) -> Event {
        Event::RunFinished {
            status,
            duration_ms,
            reason: None,
        }
    }

    #[test]
    fn a_journal_must_start_with_run_started() {
        assert!(RunState::from_records(&[]).is_err());
        let r = RunState::from_records(&records(vec![step_started("a")]));
        assert!(r.is_err());
    }

    #[test]
    fn run_started_sets_the_identity_of_the_run() {
        let r = RunState::from_records(&records(vec![started()])).unwrap();
        assert_eq!(r.run_id, "r1");
        assert_eq!(r.runbook.name, "n");
        assert_eq!(r.operator, "ana");
        assert_eq!(r.sessions, 1);
        assert_eq!(r.status, None);
    }

    #[test]
    fn an_op_started_but_never_finished_has_an_unknown_outcome() {
        let r = RunState::from_records(&records(vec![
            started(),
            step_started("fix"),
            op_started(scope("fix", None, None)),
        ]))
        .unwrap();
        let s = &r.steps["fix"];
        assert!(!s.is_done());
        assert_eq!(s.unknown_ops(None).len(), 1);
        assert_eq!(s.title, "Title of fix");
        assert_eq!(r.status, None);
    }

    #[test]
    fn an_aborted_op_is_unknown_and_ok_items_are_not_run_again() {
        let r = RunState::from_records(&records(vec![
            started(),
            step_started("fix"),
            op_started(scope("fix", None, Some(0))),
            op_finished(scope("fix", None, Some(0)), Outcome::Ok),
            op_started(scope("fix", None, Some(1))),
            op_finished(scope("fix", None, Some(1)), Outcome::Aborted),
            op_started(scope("fix", None, Some(2))),
        ]))
        .unwrap();
        let s = &r.steps["fix"];
        assert_eq!(s.ok_items(None), vec![Some(0)]);
        let unknown: Vec<_> = s.unknown_ops(None).iter().map(|k| k.item).collect();
        assert_eq!(unknown, vec![Some(1), Some(2)]);
        // Another rung's operations are another rung's.
        assert!(s.unknown_ops(Some("fix.2")).is_empty());
    }

    #[test]
    fn verification_ops_are_never_unknown_actions() {
        let mut v = scope("fix", None, None);
        v.verification = true;
        let r = RunState::from_records(&records(vec![
            started(),
            step_started("fix"),
            op_started(v),
        ]))
        .unwrap();
        assert!(r.steps["fix"].unknown_ops(None).is_empty());
    }

    #[test]
    fn an_approval_holds_for_the_same_plan_only() {
        let r = RunState::from_records(&records(vec![
            started(),
            step_started("fix"),
            decided("fix", None, Decision::Approved, "d1"),
            decided("fix", Some("fix.2"), Decision::Declined, "d2"),
        ]))
        .unwrap();
        let s = &r.steps["fix"];
        assert_eq!(s.approval(None, "d1").map(|g| g.by.as_str()), Some("ana"));
        assert!(s.approval(None, "d9").is_none());
        assert_eq!(
            s.stale_approval(None, "d9").map(|g| g.digest.as_str()),
            Some("d1")
        );
        // A declined gate is no approval.
        assert!(s.approval(Some("fix.2"), "d2").is_none());
    }

    #[test]
    fn a_step_aborted_is_not_done_and_starts_over_when_run_again() {
        let mut r = RunState::from_records(&records(vec![
            started(),
            step_started("fix"),
            finished("fix", Outcome::Aborted),
        ]))
        .unwrap();
        assert!(!r.steps["fix"].is_done());
        r.apply(Utc::now(), &step_started("fix"));
        assert_eq!(r.steps["fix"].finished, None);
        r.apply(Utc::now(), &finished("fix", Outcome::Failed));
        assert!(r.steps["fix"].is_done());
        assert_eq!(r.steps["fix"].summary.as_deref(), Some("s"));
    }

    #[test]
    fn a_skipped_step_is_done() {
        let r = RunState::from_records(&records(vec![
            started(),
            Event::StepSkipped {
                step: "a".into(),
                reason: "no".into(),
            },
        ]))
        .unwrap();
        assert!(r.steps["a"].is_done());
        assert!(!r.steps["a"].started);
    }

    #[test]
    fn rungs_are_kept_in_order_once_with_their_titles() {
        let rung = |id: &str, index| Event::RungStarted {
            step: "fix".into(),
            rung: id.into(),
            title: format!("{id} title"),
            index,
            of: 2,
        };
        let r = RunState::from_records(&records(vec![
            started(),
            step_started("fix"),
            rung("fix.1", 1),
            rung("fix.2", 2),
            rung("fix.1", 1),
            Event::ManualConfirmed {
                scope: scope("fix", Some("fix.2"), None),
                outcome: Outcome::Ok,
                by: "bo".into(),
            },
        ]))
        .unwrap();
        let s = &r.steps["fix"];
        assert_eq!(s.rungs, vec!["fix.1", "fix.2"]);
        assert_eq!(s.rung_title("fix.2"), "fix.2 title");
        assert_eq!(s.rung_title("fix.3"), "fix.3");
        assert_eq!(s.manual, vec![(Some("fix.2".to_string()), Outcome::Ok)]);
    }

    #[test]
    fn a_resumed_run_is_no_longer_paused_and_saved_values_survive() {
        let r = RunState::from_records(&records(vec![
            started(),
            Event::Saved {
                step: "c".into(),
                name: "x".into(),
                value: Value::from(3),
            },
            Event::Paused {
                step: "fix".into(),
                reason: "nobody".into(),
                resume: "runbook resume r1".into(),
            },
            run_finished(RunStatus::Paused, 5),
        ]))
        .unwrap();
        assert_eq!(r.paused_at.as_deref(), Some("fix"));
        assert_eq!(r.status, Some(RunStatus::Paused));
        let mut r = r;
        r.apply(
            Utc::now(),
            &Event::RunResumed {
                operator: "bo".into(),
                host: "h".into(),
            },
        );
        assert_eq!(r.status, None);
        assert_eq!(r.paused_at, None);
        assert_eq!(r.saved["x"], Value::from(3));
        assert_eq!(r.sessions, 2);
        r.apply(Utc::now(), &run_finished(RunStatus::Succeeded, 7));
        assert_eq!(r.status, Some(RunStatus::Succeeded));
        assert_eq!(r.duration_ms, 12);
    }

    #[test]
    fn applying_one_event_at_a_time_is_the_same_as_folding_the_journal() {
        let events = vec![
            started(),
            step_started("fix"),
            decided("fix", None, Decision::Approved, "d1"),
            op_started(scope("fix", None, None)),
            op_finished(scope("fix", None, None), Outcome::Ok),
            finished("fix", Outcome::Ok),
            run_finished(RunStatus::Succeeded, 3),
        ];
        let recs = records(events);
        let folded = RunState::from_records(&recs).unwrap();
        let mut live = RunState::default();
        for r in &recs {
            live.apply(r.ts, &r.event);
            // Every prefix is a valid state, too.
            assert_eq!(live.last_ts, r.ts);
        }
        assert_eq!(format!("{live:?}"), format!("{folded:?}"));
        assert!(live.steps["fix"].is_done());
    }

    /// A journal written before targets were recorded still folds (no target), and
    /// one that has a target keeps it for `resume` to compare.
    #[test]
    fn run_started_without_a_target_still_reads_and_one_with_a_target_is_kept() {
        let old = r#"{"seq":1,"ts":"2026-03-13T14:25:01Z","event":"run_started","format":1,"run_id":"r1","runbook":{"name":"n","title":"t","path":"p.yaml","sha256":"00"},"params":{},"operator":"ana","host":"h","tool_version":"0","dry_run":false}"#;
        let r: Record = serde_json::from_str(old).expect("an old run_started parses");
        let state = RunState::from_records(&[r]).expect("it folds");
        assert_eq!(state.target, None);

        let mut with = started();
        if let Event::RunStarted { target, .. } = &mut with {
            *target = Some(KubeTarget {
                server: "https://a:6443".into(),
                cluster_uid: Some("uid-a".into()),
                ..Default::default()
            });
        }
        let state = RunState::from_records(&records(vec![with])).expect("it folds");
        assert_eq!(
            state.target.and_then(|t| t.cluster_uid).as_deref(),
            Some("uid-a")
        );
    }

    /// `step_retried` makes a failed step one still to run; the others stay done.
    #[test]
    fn a_retried_step_is_no_longer_done() {
        let finished = |step: &str, outcome| Event::StepFinished {
            step: step.into(),
            outcome,
            duration_ms: 1,
            summary: String::new(),
            fixed_by: None,
        };
        let state = RunState::from_records(&records(vec![
            started(),
            finished("a", Outcome::Ok),
            finished("b", Outcome::Failed),
            Event::StepRetried {
                step: "b".into(),
                by: "bo".into(),
            },
        ]))
        .expect("it folds");
        assert!(state.steps["a"].is_done());
        assert!(state.step("b").is_none_or(|s| !s.is_done()));
    }
}
