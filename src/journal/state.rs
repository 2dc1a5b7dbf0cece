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

use super::event::{
    ApprovalSource, Decision, Event, KubeTarget, Outcome, Quorum, Record, RunStatus, RunbookRef,
    Scope,
};

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

/// The operations of one step, in [`OpKey`] order (a map's order, which the engine
/// and `resume` read them in).
///
/// Most steps have one operation: a sorted vector of a few holds it in one small
/// allocation, where a `BTreeMap` node took more than a kilobyte per step (issue 18:
/// the postmortem of 2 500 steps held 2.5 MiB of near-empty nodes). A `for_each`
/// step past [`OpMap::SMALL`] operations moves to a `BTreeMap`, so its inserts stay
/// logarithmic however its items arrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpMap {
    Small(Vec<(OpKey, OpRecord)>),
    Large(BTreeMap<OpKey, OpRecord>),
}

impl Default for OpMap {
    fn default() -> OpMap {
        OpMap::Small(Vec::new())
    }
}

impl OpMap {
    /// Operations held in the sorted vector before it becomes a `BTreeMap`.
    pub const SMALL: usize = 16;

    pub fn get(&self, key: &OpKey) -> Option<&OpRecord> {
        match self {
            OpMap::Small(v) => v
                .binary_search_by(|(k, _)| k.cmp(key))
                .ok()
                .map(|i| &v[i].1),
            OpMap::Large(m) => m.get(key),
        }
    }

    pub fn get_mut(&mut self, key: &OpKey) -> Option<&mut OpRecord> {
        match self {
            OpMap::Small(v) => v
                .binary_search_by(|(k, _)| k.cmp(key))
                .ok()
                .map(|i| &mut v[i].1),
            OpMap::Large(m) => m.get_mut(key),
        }
    }

    /// The record of `key`, `new` inserted first when there is none.
    pub fn get_or_insert(&mut self, key: OpKey, new: OpRecord) -> &mut OpRecord {
        if let OpMap::Small(v) = self
            && v.len() >= Self::SMALL
            && v.binary_search_by(|(k, _)| k.cmp(&key)).is_err()
        {
            *self = OpMap::Large(std::mem::take(v).into_iter().collect());
        }
        match self {
            OpMap::Small(v) => {
                let i = match v.binary_search_by(|(k, _)| k.cmp(&key)) {
                    Ok(i) => i,
                    Err(i) => {
                        // One more slot, not four: most steps have one operation.
                        v.reserve_exact(1);
                        v.insert(i, (key, new));
                        i
                    }
                };
                &mut v[i].1
            }
            OpMap::Large(m) => m.entry(key).or_insert(new),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            OpMap::Small(v) => v.len(),
            OpMap::Large(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The operations in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&OpKey, &OpRecord)> {
        let (small, large) = match self {
            OpMap::Small(v) => (Some(v.iter().map(|(k, o)| (k, o))), None),
            OpMap::Large(m) => (None, Some(m.iter())),
        };
        small
            .into_iter()
            .flatten()
            .chain(large.into_iter().flatten())
    }
}

impl<'a> IntoIterator for &'a OpMap {
    type Item = (&'a OpKey, &'a OpRecord);
    type IntoIter = Box<dyn Iterator<Item = (&'a OpKey, &'a OpRecord)> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl IntoIterator for OpMap {
    type Item = (OpKey, OpRecord);
    type IntoIter = Box<dyn Iterator<Item = (OpKey, OpRecord)>>;
    fn into_iter(self) -> Self::IntoIter {
        match self {
            OpMap::Small(v) => Box::new(v.into_iter()),
            OpMap::Large(m) => Box::new(m.into_iter()),
        }
    }
}

impl FromIterator<(OpKey, OpRecord)> for OpMap {
    fn from_iter<I: IntoIterator<Item = (OpKey, OpRecord)>>(iter: I) -> OpMap {
        let m: BTreeMap<OpKey, OpRecord> = iter.into_iter().collect();
        if m.len() > Self::SMALL {
            OpMap::Large(m)
        } else {
            OpMap::Small(m.into_iter().collect())
        }
    }
}

/// What the events say about one operation (one scope): its last state, when it last
/// started and finished, which attempt that was and how many times it started.
///
/// Only the outcome is kept, never the result: the renderer streams results from the
/// journal itself, so applying an `op_finished` stays cheap however big its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpRecord {
    pub state: OpState,
    /// Time of the last `op_started` of this scope (or of its `op_finished` when the
    /// journal has no start, a journal cut at the front).
    pub started: DateTime<Utc>,
    pub finished: Option<DateTime<Utc>>,
    /// The attempt number of the last event about the operation.
    pub attempt: u32,
    /// How many `op_started` events this scope had (retries and polls included).
    pub starts: u32,
    /// The process group of the last start's program, when a `process_started` said
    /// (shell actions); cleared by the next `op_started`.
    pub pgid: Option<u32>,
    /// When that `process_started` was journaled (to tell a recycled group id).
    pub spawned: Option<DateTime<Utc>>,
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

/// A gate decision as journaled, with the request it answered.
#[derive(Debug, Clone, PartialEq)]
pub struct GateRecord {
    pub rung: Option<String>,
    pub decision: Decision,
    pub by: String,
    pub source: ApprovalSource,
    pub digest: String,
    /// When the gate was first asked and not answered since (a gate asked again after
    /// a resume keeps this time, so the wait counts the whole time nobody answered);
    /// the decision's own time when the journal has no request.
    pub asked: DateTime<Utc>,
    pub decided: DateTime<Utc>,
    /// How many operations the plan shown at the gate held (0 without a request).
    pub planned: usize,
}

impl GateRecord {
    /// Milliseconds a person (or the policy) took to answer.
    pub fn waited_ms(&self) -> u64 {
        between_ms(self.asked, self.decided)
    }
}

/// A gate asked and not answered yet (with a quorum: not approved by enough
/// people yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingGate {
    pub rung: Option<String>,
    pub asked: DateTime<Utc>,
    pub planned: usize,
    /// The plan the gate asks about: a decision for another digest does not answer it.
    pub digest: String,
    /// What opens it.
    pub quorum: Quorum,
}

/// A manual confirmation as journaled, with the request it answered.
#[derive(Debug, Clone, PartialEq)]
pub struct ManualRecord {
    /// The rung, `None` for a manual step.
    pub rung: Option<String>,
    pub outcome: Outcome,
    pub by: String,
    /// The last request of this step (or rung) since it (last) started; `None` when
    /// the journal has none (it was cut, or the request was before a restart).
    pub requested: Option<DateTime<Utc>>,
    pub confirmed: DateTime<Utc>,
}

impl ManualRecord {
    /// Milliseconds the person took (0 without a request).
    pub fn waited_ms(&self) -> u64 {
        self.requested.map_or(0, |r| between_ms(r, self.confirmed))
    }
}

/// A rung of an escalation ladder as it was (last) started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RungInfo {
    pub title: String,
    /// 1-based position in the ladder, of `of` rungs.
    pub index: usize,
    pub of: usize,
    pub started: DateTime<Utc>,
}

/// A pause of the run: from the `paused` event to the `run_resumed` that ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PauseRecord {
    pub from: DateTime<Utc>,
    pub to: Option<DateTime<Utc>>,
}

/// A later process that took the run over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeRecord {
    pub at: DateTime<Utc>,
    pub operator: String,
    pub host: String,
}

/// Milliseconds from `a` to `b`, 0 when `b` is earlier (clocks of two hosts).
pub fn between_ms(a: DateTime<Utc>, b: DateTime<Utc>) -> u64 {
    u64::try_from((b - a).num_milliseconds()).unwrap_or(0)
}

/// What the events say about one step.
#[derive(Debug, Clone, Default)]
pub struct StepState {
    pub started: bool,
    /// From the last `step_started` (a step resumed starts again).
    pub started_at: Option<DateTime<Utc>>,
    /// From `step_started`.
    pub title: String,
    /// `check`, `action`, `verify` or `manual`, from `step_started`.
    pub kind: String,
    /// From `step_finished`.
    pub finished: Option<Outcome>,
    pub finished_at: Option<DateTime<Utc>>,
    pub summary: Option<String>,
    /// From `step_skipped`.
    pub skipped: Option<String>,
    pub gates: Vec<GateRecord>,
    /// Gates asked and not answered yet, by rung (`None`: the step's own gate).
    pub pending_gates: Vec<PendingGate>,
    pub ops: OpMap,
    /// Escalation rungs started, in order.
    pub rungs: Vec<String>,
    /// The rungs started, by rung id.
    pub rung_info: HashMap<String, RungInfo>,
    /// The rung of the last `rung_started`.
    pub current_rung: Option<String>,
    /// Manual confirmations, in order.
    pub manual: Vec<ManualRecord>,
    /// The last manual request of the step (rung `None`) or of each rung since it
    /// (last) started.
    pub manual_requested: Vec<(Option<String>, DateTime<Utc>)>,
    /// Its undo, once `runbook undo` (or `on_failure: undo`) reached it.
    /// Boxed: most steps are never undone, and every step's state is held for the
    /// whole journal (issue 18).
    pub undo: Option<Box<UndoRecord>>,
}

/// What the events say about a step's undo (`undo_started` … `undo_finished`, or
/// `undo_skipped`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndoRecord {
    pub title: String,
    /// From the last `undo_started`; `None` for an undo skipped without starting.
    pub started: Option<DateTime<Utc>>,
    pub by: String,
    /// The `for_each` items undone (empty for a single operation).
    pub items: Vec<usize>,
    /// From `undo_finished`; `None` while it runs (or after a crash, or a pause at
    /// its gate).
    pub outcome: Option<Outcome>,
    pub finished: Option<DateTime<Utc>>,
    pub summary: String,
    /// From `undo_skipped`: why it was not undone.
    pub skipped: Option<String>,
}

impl UndoRecord {
    /// Nothing is left to do for this undo: it finished ok, or there is nothing to run.
    pub fn is_done(&self) -> bool {
        self.skipped.is_some() || self.outcome == Some(Outcome::Ok)
    }

    /// The rung id under which the undo's gate and operations are journaled.
    pub fn rung_of(step: &str) -> String {
        format!("{step}.undo")
    }
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
                        s.state,
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
                    && s.state
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

    /// The approvals of exactly this plan that count at `now`: one per person (their
    /// latest), none older than `expires_ms`, in the order they were given. A gate
    /// with `approvals: N` opens when this holds N.
    pub fn approvers(
        &self,
        rung: Option<&str>,
        digest: &str,
        expires_ms: Option<u64>,
        now: DateTime<Utc>,
    ) -> Vec<&GateRecord> {
        let mut out: Vec<&GateRecord> = Vec::new();
        for g in self.gates.iter().filter(|g| {
            g.rung.as_deref() == rung
                && g.digest == digest
                && g.decision == Decision::Approved
                && expires_ms.is_none_or(|ms| between_ms(g.decided, now) <= ms)
        }) {
            match out.iter_mut().find(|o| o.by == g.by) {
                Some(o) => *o = g,
                None => out.push(g),
            }
        }
        out
    }

    /// Approvals of this plan that no longer count because they are older than
    /// `expires_ms` at `now` (one per person, latest first).
    pub fn expired_approvals(
        &self,
        rung: Option<&str>,
        digest: &str,
        expires_ms: u64,
        now: DateTime<Utc>,
    ) -> Vec<&GateRecord> {
        let fresh = self.approvers(rung, digest, Some(expires_ms), now);
        let mut out: Vec<&GateRecord> = Vec::new();
        for g in self.gates.iter().rev().filter(|g| {
            g.rung.as_deref() == rung
                && g.digest == digest
                && g.decision == Decision::Approved
                && between_ms(g.decided, now) > expires_ms
        }) {
            if !fresh.iter().any(|f| f.by == g.by) && !out.iter().any(|o| o.by == g.by) {
                out.push(g);
            }
        }
        out
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
        self.rung_info.get(rung).map_or(rung, |r| r.title.as_str())
    }

    /// The operation of `scope`'s key, if the events named it.
    pub fn op(&self, key: &OpKey) -> Option<&OpRecord> {
        self.ops.get(key)
    }

    /// The gate of `rung` asked and not answered yet.
    pub fn pending_gate(&self, rung: Option<&str>) -> Option<&PendingGate> {
        self.pending_gates
            .iter()
            .find(|g| g.rung.as_deref() == rung)
    }
}

/// A run as its events tell it.
#[derive(Debug, Clone, Default)]
pub struct RunState {
    pub run_id: String,
    pub runbook: RunbookRef,
    /// Secrets are references, `{"$secret": NAME, "from": SOURCE}` (or `"***"`).
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
    /// Every pause, in order; the last one is open while the run is paused.
    pub pauses: Vec<PauseRecord>,
    /// How many processes drove the run: 1 + the `run_resumed` events.
    pub sessions: u32,
    /// Every later process that took the run over.
    pub resumes: Vec<ResumeRecord>,
    /// When and why the run ended, with `status` (cleared by a `run_resumed`).
    pub ended: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    /// The cluster the run's kube steps act on, as recorded when it started.
    pub target: Option<KubeTarget>,
    /// When users were first affected, as the run journaled it (`incident_start`;
    /// the last one wins). `None` when the run was not told.
    pub incident_start: Option<DateTime<Utc>>,
    /// Where that time came from (`incident_start.source`: `scenario`, `alert`);
    /// `None` when the operator gave it or the journal predates the field.
    pub incident_start_source: Option<String>,
    /// The runbook's `links:`, as journaled (`runbook_links`).
    pub links: Vec<crate::journal::event::Link>,
    /// The steps an undo reached (started or skipped), in the order it reached them:
    /// once non-empty the run is being (or was) undone and `resume` refuses it.
    pub undo_order: Vec<String>,
    /// How the run had ended when its undo began (`undo_begun`): `Some((None, _))`
    /// for a run that had not ended. `None` before any undo.
    pub undo_from: Option<(Option<RunStatus>, Option<String>)>,
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
            Event::IncidentStart { at, source, .. } => {
                self.incident_start = Some(*at);
                self.incident_start_source.clone_from(source);
            }
            Event::RunbookLinks { links } => self.links.clone_from(links),
            Event::Note { .. } | Event::VerifyPolled { .. } | Event::Escalated { .. } => {}
            Event::GateRequested {
                step,
                rung,
                ops,
                digest,
                quorum,
                ..
            } => {
                let s = self.step_mut(step);
                match s
                    .pending_gates
                    .iter_mut()
                    .find(|g| g.rung.as_deref() == rung.as_deref())
                {
                    // Asked again: the wait counts from the first request, the
                    // question is the latest one.
                    Some(g) => {
                        g.digest.clone_from(digest);
                        g.quorum = *quorum;
                        g.planned = ops.len();
                    }
                    None => s.pending_gates.push(PendingGate {
                        rung: rung.clone(),
                        asked: ts,
                        planned: ops.len(),
                        digest: digest.clone(),
                        quorum: *quorum,
                    }),
                }
            }
            Event::ManualRequested { scope, .. } => {
                let m = &mut self.step_mut(&scope.step).manual_requested;
                m.retain(|(r, _)| *r != scope.rung);
                m.push((scope.rung.clone(), ts));
            }
            Event::RunResumed { operator, host } => {
                self.status = None;
                self.ended = None;
                self.reason = None;
                self.paused_at = None;
                if let Some(p) = self.pauses.last_mut()
                    && p.to.is_none()
                {
                    p.to = Some(ts);
                }
                self.sessions += 1;
                self.resumes.push(ResumeRecord {
                    at: ts,
                    operator: operator.clone(),
                    host: host.clone(),
                });
            }
            Event::RunbookChanged {
                new_sha256,
                git,
                untracked,
                step_digests,
                ..
            } => {
                self.runbook.step_digests.clone_from(step_digests);
                // The run continues with the edited file: it is the run's runbook
                // from here on, so a later resume compares against it.
                self.runbook.sha256.clone_from(new_sha256);
                self.runbook.git.clone_from(git);
                self.runbook.untracked = *untracked;
            }
            Event::StepRetried { step, kept, .. } => {
                // The failed attempt stays in the journal (the postmortem shows it);
                // for what runs next, the step has not run yet, except the `for_each`
                // items that finished ok, which are not repeated.
                let old = self.steps.remove(step);
                if let Some(old) = old.filter(|_| !kept.is_empty()) {
                    let ops: OpMap = old
                        .ops
                        .into_iter()
                        .filter(|(k, o)| {
                            k.rung.is_none()
                                && !k.verification
                                && k.item.is_some_and(|i| kept.contains(&i))
                                && o.state
                                    == OpState::Finished {
                                        outcome: Outcome::Ok,
                                    }
                        })
                        .collect();
                    let fresh = StepState {
                        title: old.title,
                        kind: old.kind,
                        ops,
                        ..StepState::default()
                    };
                    self.steps.insert(step.clone(), fresh);
                }
            }
            Event::StepStarted { step, title, kind } => {
                let s = self.step_mut(step);
                s.started = true;
                s.started_at = Some(ts);
                s.title.clone_from(title);
                s.kind.clone_from(kind);
                // A step run again after an abort starts over, and so does what it
                // asked a person: a request before the restart is not answered by a
                // decision after it.
                s.finished = None;
                s.pending_gates.retain(|g| g.rung.is_some());
                s.manual_requested.retain(|(r, _)| r.is_some());
            }
            Event::StepSkipped { step, reason } => {
                self.step_mut(step).skipped = Some(reason.clone());
            }
            Event::GateDecided {
                step,
                rung,
                decision,
                by,
                source,
                digest,
            } => {
                let s = self.step_mut(step);
                let pending = s
                    .pending_gates
                    .iter()
                    .position(|g| g.rung == *rung)
                    .map(|i| s.pending_gates[i].clone());
                s.gates.push(GateRecord {
                    rung: rung.clone(),
                    decision: *decision,
                    by: by.clone(),
                    source: *source,
                    digest: digest.clone(),
                    asked: pending.as_ref().map_or(ts, |p| p.asked),
                    decided: ts,
                    planned: pending.as_ref().map_or(0, |p| p.planned),
                });
                // A quorum gate keeps waiting until enough distinct people approved
                // its plan; any other decision answers it.
                if let Some(p) = pending {
                    // The record just pushed counts: a quorum of one is never short.
                    let short = *decision == Decision::Approved
                        && p.quorum.approvals > 1
                        && p.digest == *digest
                        && s.approvers(rung.as_deref(), digest, p.quorum.expires_ms, ts)
                            .len()
                            < p.quorum.approvals as usize;
                    if !short {
                        s.pending_gates.retain(|g| g.rung != *rung);
                    }
                }
            }
            Event::Paused { step, .. } => {
                self.paused_at = Some(step.clone());
                // Paused twice without a resume: the pause counts from the last one.
                match self.pauses.last_mut() {
                    Some(p) if p.to.is_none() => p.from = ts,
                    _ => self.pauses.push(PauseRecord { from: ts, to: None }),
                }
            }
            Event::OpStarted { op, attempt } => {
                let op = self.step_mut(&op.scope.step).ops.get_or_insert(
                    OpKey::from(&op.scope),
                    OpRecord {
                        state: OpState::Started,
                        started: ts,
                        finished: None,
                        attempt: *attempt,
                        starts: 0,
                        pgid: None,
                        spawned: None,
                    },
                );
                op.state = OpState::Started;
                op.started = ts;
                op.finished = None;
                op.attempt = *attempt;
                op.starts += 1;
                op.pgid = None;
                op.spawned = None;
            }
            Event::ProcessStarted { scope, pgid, .. } => {
                // Only the start it belongs to: a group reported for a scope the
                // journal never started is ignored.
                if let Some(op) = self
                    .steps
                    .get_mut(&scope.step)
                    .and_then(|s| s.ops.get_mut(&OpKey::from(scope)))
                {
                    op.pgid = Some(*pgid);
                    op.spawned = Some(ts);
                }
            }
            Event::OpFinished {
                scope,
                outcome,
                attempt,
                ..
            } => {
                let op = self.step_mut(&scope.step).ops.get_or_insert(
                    OpKey::from(scope),
                    OpRecord {
                        state: OpState::Started,
                        started: ts,
                        finished: None,
                        attempt: *attempt,
                        starts: 0,
                        pgid: None,
                        spawned: None,
                    },
                );
                op.state = OpState::Finished { outcome: *outcome };
                op.finished = Some(ts);
                op.attempt = *attempt;
            }
            Event::ManualConfirmed { scope, outcome, by } => {
                let s = self.step_mut(&scope.step);
                let requested = s
                    .manual_requested
                    .iter()
                    .find(|(r, _)| *r == scope.rung)
                    .map(|&(_, at)| at);
                s.manual.push(ManualRecord {
                    rung: scope.rung.clone(),
                    outcome: *outcome,
                    by: by.clone(),
                    requested,
                    confirmed: ts,
                });
            }
            Event::RungStarted {
                step,
                rung,
                title,
                index,
                of,
            } => {
                let s = self.step_mut(step);
                if !s.rungs.contains(rung) {
                    s.rungs.push(rung.clone());
                }
                s.rung_info.insert(
                    rung.clone(),
                    RungInfo {
                        title: title.clone(),
                        index: *index,
                        of: *of,
                        started: ts,
                    },
                );
                s.current_rung = Some(rung.clone());
                // What the rung asked before it started again is not answered by
                // what comes after.
                let again = Some(rung);
                s.pending_gates.retain(|g| g.rung.as_ref() != again);
                s.manual_requested.retain(|(r, _)| r.as_ref() != again);
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
                s.finished_at = Some(ts);
                s.summary = Some(summary.clone());
            }
            Event::UndoBegun { status, reason, .. } => {
                if self.undo_from.is_none() {
                    self.undo_from = Some((*status, reason.clone()));
                }
            }
            Event::UndoStarted {
                step,
                title,
                items,
                by,
            } => {
                self.undo_reached(step);
                let s = self.step_mut(step);
                let u = s.undo.get_or_insert_with(|| {
                    Box::new(UndoRecord {
                        title: String::new(),
                        started: None,
                        by: String::new(),
                        items: Vec::new(),
                        outcome: None,
                        finished: None,
                        summary: String::new(),
                        skipped: None,
                    })
                });
                u.title.clone_from(title);
                u.started = Some(ts);
                u.by.clone_from(by);
                u.items.clone_from(items);
                u.outcome = None;
                u.finished = None;
                u.summary.clear();
                // An undo started again asks its gate afresh.
                let rung = UndoRecord::rung_of(step);
                s.pending_gates.retain(|g| g.rung.as_deref() != Some(&rung));
            }
            Event::UndoFinished {
                step,
                outcome,
                summary,
                ..
            } => {
                if let Some(u) = self.step_mut(step).undo.as_mut() {
                    u.outcome = Some(*outcome);
                    u.finished = Some(ts);
                    u.summary.clone_from(summary);
                }
            }
            Event::UndoSkipped { step, reason } => {
                self.undo_reached(step);
                let s = self.step_mut(step);
                let title = s.title.clone();
                s.undo = Some(Box::new(UndoRecord {
                    title,
                    started: None,
                    by: String::new(),
                    items: Vec::new(),
                    outcome: Some(Outcome::Skipped),
                    finished: Some(ts),
                    summary: reason.clone(),
                    skipped: Some(reason.clone()),
                }));
            }
            Event::RunFinished {
                status,
                duration_ms,
                reason,
            } => {
                self.status = Some(*status);
                self.ended = Some(ts);
                self.reason.clone_from(reason);
                self.duration_ms += duration_ms;
            }
        }
    }

    fn undo_reached(&mut self, step: &str) {
        if !self.undo_order.iter().any(|s| s == step) {
            self.undo_order.push(step.to_string());
        }
    }

    /// Drop the record of a step that is done with: it finished ok, not applicable
    /// or skipped, with no escalation rung, undo or unanswered request. For a
    /// consumer that folds a whole journal but has read what it needs of each step
    /// when it finishes (the postmortem: a record per step held to the end of a
    /// long journal was a fifth of its memory, issue 18). What a later event of the
    /// step means is unchanged: `apply` starts a record again, as it does for a step
    /// not seen before, and the events that can follow such a step (a restart, an
    /// undo) set what they read. The engine and `resume` keep every record.
    /// Returns whether the record was dropped.
    pub fn forget_finished_step(&mut self, id: &str) -> bool {
        let done = self.steps.get(id).is_some_and(|s| {
            matches!(
                s.finished,
                Some(Outcome::Ok | Outcome::NotApplicable | Outcome::Skipped)
            ) && s.rung_info.is_empty()
                && s.current_rung.is_none()
                && s.undo.is_none()
                && s.pending_gates.is_empty()
                && s.manual_requested.is_empty()
        }) && self.paused_at.as_deref() != Some(id)
            && !self.undo_order.iter().any(|u| u == id);
        if done {
            self.steps.remove(id);
        }
        done
    }

    fn step_mut(&mut self, id: &str) -> &mut StepState {
        // Looked up before an owned key is made: every event of a step after its
        // start finds it, and allocating a key per event only to drop it showed in
        // the engine's time per step.
        if !self.steps.contains_key(id) {
            self.steps.insert(id.to_string(), StepState::default());
        }
        self.steps
            .get_mut(id)
            .expect("invariant: the step was just found or inserted")
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
