//! From journal records to the [`Postmortem`] model, in one pass.
//!
//! Every record is first applied to a [`RunState`], the same fold the engine and
//! `resume` use; what an event *means* (a step's outcome, who decided a gate and how
//! long it was asked, a manual confirmation and its wait, an operation's outcome, the
//! rungs of a ladder, pauses, resumes and whether the run ended) is then read from
//! that state, so the postmortem cannot disagree with the engine or with `resume`.
//! This module only decides where things are shown: events are placed into timeline
//! entries (a step's gate, operations, verification polls and manual confirmation
//! land on the entry its `StepStarted` or, inside an escalation ladder, its
//! `RungStarted` opened), and it streams the details the state does not keep (results,
//! errors, API calls). Polls and retries of one operation line are merged, so a
//! verification polled 30 times is one line with `runs: 30`, not 30 entries.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use super::format::{Time, duration_ms};
use super::gantt::Span;
use super::model::*;
use super::summary::Details;
use present::{add_wait, first_line, outcome, plain, status};

mod finish;
mod present;
mod steps;
use crate::journal::event::{self, Event, Record, Scope};
use crate::journal::reader::Journal;
use crate::journal::state::{self, OpState, RunState};

/// More API calls than this for one operation are folded into a `<details>` block.
pub(super) const INLINE_CALLS: usize = 3;

/// The model without drafts and chart, plus the spans the chart is drawn from.
pub struct Built {
    pub pm: Postmortem,
    pub spans: Vec<Span>,
    /// The impact start the run journaled (`runbook run --incident-start`).
    pub incident_start: Option<DateTime<Utc>>,
    /// Where it came from (`incident_start.source`), when not from the operator.
    pub incident_start_source: Option<String>,
}

/// Build the model of a whole journal in memory (the unit tests' way; the renderer
/// streams it, see [`Stream`]).
#[cfg(test)]
pub fn build(journal: &Journal, tz: Tz, details: Details) -> Built {
    let mut b = Stream::new(tz, details);
    for rec in &journal.records {
        b.record(rec);
    }
    b.finish(journal)
}

/// The model of a journal, with times shown in `tz`, built as the journal is read,
/// one record at a time: what it keeps is
/// bounded (notes past [`SHOWN_NOTES`] and `for_each` items past [`SHOWN_ITEMS`]
/// are counted, polls are merged, results are not kept past their operation), so
/// `runbook postmortem` does not hold the journal in memory.
pub struct Stream(Builder);

impl Stream {
    pub fn new(tz: Tz, details: Details) -> Stream {
        let mut b = Builder::new(tz);
        b.details = details;
        Stream(b)
    }

    pub fn record(&mut self, rec: &Record) {
        self.0.record(rec);
    }

    /// The model, with the warnings of what reading found (`journal`'s seq faults
    /// and torn tail; its records are not read again).
    pub fn finish(self, journal: &Journal) -> Built {
        let mut b = self.0;
        let faults = journal.seq_faults.iter().map(|(line, what)| {
            format!(
                "Line {line} of the journal: {what} (the file was edited or damaged; the timeline may be incomplete)."
            )
        });
        b.warnings.splice(0..0, faults);
        if journal.torn_tail {
            b.warnings.push(
                "The journal's last line was incomplete (the process was killed while writing it) and was ignored."
                    .to_owned(),
            );
        }
        b.finish()
    }
}

/// An operation being accumulated, with its last raw result.
struct OpAcc {
    op: Op,
    /// The result as JSON text, parsed again when the entry is finished: a
    /// `serde_json::Value` of an `echo`'s three fields is a `BTreeMap` node of
    /// ~630 bytes, held per operation until the end of the journal (issue 18).
    result: Option<Box<str>>,
    /// When the result was read, and the event that holds it.
    result_at: Option<(DateTime<Utc>, u64)>,
}

impl OpAcc {
    /// The last raw result, as the journal had it.
    fn result(&self) -> Option<Value> {
        self.result
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
    }
}

struct EntryAcc {
    entry: Entry,
    ops: Vec<OpAcc>,
    /// Where each operation line of `ops` is, by `for_each` item: a step of 100 000
    /// items finds its line in constant time (issue 18: a linear search made
    /// rendering quadratic). Lines of one item differ by their display. Made only
    /// when the entry has [`INDEXED_OPS`] lines: a map per entry of one operation
    /// was a fifth of what a step cost (issue 18).
    #[allow(clippy::box_collection)] // the point: 8 bytes per entry, not a map's 48
    op_index: Option<Box<HashMap<Option<usize>, Vec<usize>>>>,
    /// The verification's polled operation (kept apart from `ops`).
    verify_op: Option<Box<OpAcc>>,
    /// `for_each` items past [`SHOWN_ITEMS`]: counted by how they ended, not kept
    /// (issue 18: a step of 100 000 items cost a gigabyte).
    folded: Vec<(String, usize)>,
    folded_ok: bool,
    folded_started: usize,
}

/// Operation lines of an entry below which they are searched, not indexed.
const INDEXED_OPS: usize = 8;

impl EntryAcc {
    /// Whether an operation line of `item` exists.
    fn has_item(&self, item: Option<usize>) -> bool {
        match &self.op_index {
            Some(index) => index.contains_key(&item),
            None => self.ops.iter().any(|a| a.op.item == item),
        }
    }

    /// The operation line of `item` showing `display`, added when there is none.
    fn line(&mut self, item: Option<usize>, display: &str, fresh: impl FnOnce() -> OpAcc) -> usize {
        let found = match &self.op_index {
            Some(index) => index.get(&item).and_then(|lines| {
                lines
                    .iter()
                    .copied()
                    .find(|&k| self.ops[k].op.display == display)
            }),
            None => self
                .ops
                .iter()
                .position(|a| a.op.item == item && a.op.display == display),
        };
        if let Some(k) = found {
            return k;
        }
        // One operation is the common step: room for one, not four.
        if self.ops.capacity() == 0 {
            self.ops.reserve_exact(1);
        }
        self.ops.push(fresh());
        let k = self.ops.len() - 1;
        match &mut self.op_index {
            Some(index) => index.entry(item).or_default().push(k),
            None if self.ops.len() >= INDEXED_OPS => {
                let mut index: HashMap<Option<usize>, Vec<usize>> = HashMap::new();
                for (k, a) in self.ops.iter().enumerate() {
                    index.entry(a.op.item).or_default().push(k);
                }
                self.op_index = Some(Box::new(index));
            }
            None => {}
        }
        k
    }

    fn fold(&mut self, what: String, ok: bool) {
        self.folded_ok &= ok;
        match self.folded.iter_mut().find(|(w, _)| *w == what) {
            Some((_, n)) => *n += 1,
            None => self.folded.push((what, 1)),
        }
    }
}

/// Items of a `for_each` step shown one by one; the rest are counted by outcome.
pub(super) const SHOWN_ITEMS: usize = 20;
/// The slot of an operation that is counted, not kept.
pub(super) const FOLDED: usize = usize::MAX;
/// Notes shown in the timeline; the rest are counted (500 000 notes must not take
/// gigabytes).
pub(super) const SHOWN_NOTES: usize = 1000;

type OpKey = (String, Option<String>, Option<usize>, bool);

/// Where each step is: its row of the steps table and the entry its events go to
/// now. One map, not one for each (issue 18: two maps of `String` keys were ~170
/// bytes a step, held to the end of the journal).
#[derive(Default)]
struct StepIndex(HashMap<Box<str>, StepAt>);

/// A step's row and entry; [`StepAt::NONE`] when it has none.
#[derive(Clone, Copy)]
struct StepAt {
    row: u32,
    entry: u32,
}

impl StepAt {
    const NONE: u32 = u32::MAX;
}

fn index_of(n: u32) -> Option<usize> {
    (n != StepAt::NONE).then_some(n as usize)
}

fn small(i: usize) -> u32 {
    u32::try_from(i)
        .ok()
        .filter(|&n| n != StepAt::NONE)
        .expect("invariant: fewer than 2^32 - 1 steps and entries")
}

impl StepIndex {
    /// The step's row of the steps table.
    fn row(&self, step: &str) -> Option<usize> {
        self.0.get(step).and_then(|at| index_of(at.row))
    }

    /// The entry the step's events go to.
    fn entry(&self, step: &str) -> Option<usize> {
        self.0.get(step).and_then(|at| index_of(at.entry))
    }

    fn at(&mut self, step: &str) -> &mut StepAt {
        if !self.0.contains_key(step) {
            self.0.insert(
                step.into(),
                StepAt {
                    row: StepAt::NONE,
                    entry: StepAt::NONE,
                },
            );
        }
        self.0
            .get_mut(step)
            .expect("invariant: the step was just inserted")
    }

    fn set_row(&mut self, step: &str, row: usize) {
        self.at(step).row = small(row);
    }

    fn set_entry(&mut self, step: &str, entry: usize) {
        self.at(step).entry = small(entry);
    }
}

struct Builder {
    tz: Tz,
    run: Option<Run>,
    run_start: Option<DateTime<Utc>>,
    first_ts: Option<DateTime<Utc>>,
    last_ts: Option<DateTime<Utc>>,
    params: Vec<Param>,
    /// Boxed: an entry is most of a kilobyte, and a vector of them grown by
    /// doubling held up to twice that per step (issue 18).
    #[allow(clippy::vec_box)] // the point: a pointer per entry in the vector, not the entry
    entries: Vec<Box<EntryAcc>>,
    #[allow(clippy::vec_box)] // see `Postmortem::steps`
    steps: Vec<Box<StepRow>>,
    /// Each step's row of `steps` and its current entry.
    index: StepIndex,
    rung_entry: HashMap<(String, String), usize>,
    /// Where the running operation of each scope is: entry index, op index or None
    /// for the verification's operation.
    running: HashMap<OpKey, (usize, Option<usize>)>,
    notes: Vec<Note>,
    metrics: Metrics,
    /// First passing verification of a verify step or a ladder, and of anything.
    mitigated_fix: Option<(usize, Milestone)>,
    mitigated_any: Option<(usize, Milestone)>,
    spans: Vec<Span>,
    warnings: Vec<String>,
    events: usize,
    /// The run as [`RunState`] folds it: the engine's and `resume`'s view. Every
    /// record is applied to it before it is placed, and the facts are read from it.
    state: RunState,
    details: Details,
    /// Entries before this index opened before the last pause, stop or resume.
    barrier: usize,
    /// Notes past [`SHOWN_NOTES`], counted, and who wrote them.
    notes_hidden: usize,
    authors_extra: Vec<String>,
    /// Notes written later about an earlier time (`runbook note --at`): placed in
    /// the timeline at that time when the entries are finished.
    #[allow(clippy::vec_box)] // moved between `entries` and here
    backdated: Vec<Box<EntryAcc>>,
}

fn op_key(scope: &Scope) -> OpKey {
    (
        scope.step.clone(),
        scope.rung.clone(),
        scope.item,
        scope.verification,
    )
}

impl Builder {
    fn new(tz: Tz) -> Builder {
        Builder {
            tz,
            run: None,
            run_start: None,
            first_ts: None,
            last_ts: None,
            params: Vec::new(),
            entries: Vec::new(),
            steps: Vec::new(),
            index: StepIndex::default(),
            rung_entry: HashMap::new(),
            running: HashMap::new(),
            notes: Vec::new(),
            metrics: Metrics {
                impact_start: None,
                impact_start_source: None,
                first_action: None,
                resolved: None,
                time_to_detect: None,
                time_to_mitigate: None,
                gate_wait: Wait::default(),
                manual_wait: Wait::default(),
                paused: Wait::default(),
                counts: Counts::default(),
                escalation: None,
            },
            mitigated_fix: None,
            mitigated_any: None,
            spans: Vec::new(),
            warnings: Vec::new(),
            events: 0,
            state: RunState::default(),
            details: Details::Full,
            barrier: 0,
            notes_hidden: 0,
            authors_extra: Vec::new(),
            backdated: Vec::new(),
        }
    }

    fn time(&self, ts: DateTime<Utc>) -> Time {
        Time::new(ts, self.tz)
    }

    fn start(&self) -> DateTime<Utc> {
        self.run_start
            .or(self.first_ts)
            .expect("invariant: start() is called after the first record")
    }

    fn push_entry(&mut self, rec: &Record, kind: &'static str, title: String) -> usize {
        self.entries.push(Box::new(EntryAcc {
            entry: Entry {
                id: EntryId(rec.seq),
                seq: rec.seq,
                time: self.time(rec.ts),
                kind,
                label: Word::Borrowed(""),
                step: None,
                step_kind: None,
                title,
                rung: None,
                outcome: None,
                duration: None,
                summary: None,
                ops: Vec::new(),
                more: None,
                details: Vec::new(),
                results: Vec::new(),
                continued: false,
            },
            ops: Vec::new(),
            op_index: None,
            verify_op: None,
            folded: Vec::new(),
            folded_ok: true,
            folded_started: 0,
        }));
        self.entries.len() - 1
    }

    fn step_title(&self, step: &str) -> String {
        self.index
            .row(step)
            .map_or_else(|| step.to_owned(), |i| self.steps[i].title.clone())
    }

    /// The entry an event of `scope` belongs to; a step the journal never started
    /// (a journal cut at the front) gets an entry of its own.
    fn entry_for(
        &mut self,
        rec: &Record,
        step: &str,
        rung: Option<&str>,
        verification: bool,
    ) -> usize {
        let i = self.entry_for_scope(rec, step, rung, verification);
        if i >= self.barrier {
            return i;
        }
        // The run paused (or stopped) after this entry opened: what happens now happened
        // after the resume and is stamped then, in an entry of its own, so the timeline
        // reads paused → resumed → approved → deleted.
        let (kind, title, step_kind, r) = {
            let e = &self.entries[i].entry;
            (e.kind, e.title.clone(), e.step_kind.clone(), e.rung.clone())
        };
        let j = self.push_entry(rec, kind, title);
        let e = &mut self.entries[j].entry;
        e.continued = true;
        e.step = Some(step.to_owned());
        e.step_kind = step_kind;
        e.rung = r.clone();
        match r {
            Some(r) if kind == "rung" => {
                self.rung_entry.insert((step.to_owned(), r.id), j);
            }
            _ => {
                self.index.set_entry(step, j);
            }
        }
        j
    }

    fn entry_for_scope(
        &mut self,
        rec: &Record,
        step: &str,
        rung: Option<&str>,
        verification: bool,
    ) -> usize {
        if let Some(r) = rung
            && let Some(&i) = self.rung_entry.get(&(step.to_owned(), r.to_owned()))
        {
            return i;
        }
        if verification
            && rung.is_none()
            && let Some(r) = self.current_rung(step)
            && let Some(&i) = self.rung_entry.get(&(step.to_owned(), r.to_owned()))
        {
            return i;
        }
        if let Some(i) = self.index.entry(step) {
            return i;
        }
        let i = self.push_entry(rec, "step", step.to_owned());
        self.entries[i].entry.step = Some(step.to_owned());
        self.index.set_entry(step, i);
        i
    }

    /// The rung as the run state knows it; its id alone when it never started.
    fn rung_ref(&self, step: &str, rung: &str) -> RungRef {
        self.known_rung(step, rung).unwrap_or_else(|| RungRef {
            id: rung.to_owned(),
            title: rung.to_owned(),
            index: 0,
            of: 0,
        })
    }

    fn known_rung(&self, step: &str, rung: &str) -> Option<RungRef> {
        let r = self.state.step(step)?.rung_info.get(rung)?;
        Some(RungRef {
            id: rung.to_owned(),
            title: r.title.clone(),
            index: r.index,
            of: r.of,
        })
    }

    /// The rung of `step` that started last.
    fn current_rung(&self, step: &str) -> Option<&str> {
        self.state.step(step)?.current_rung.as_deref()
    }

    fn record(&mut self, rec: &Record) {
        // The rung that was running ends when the next one starts: its span is closed
        // while the state still names it the current one.
        if let Event::RungStarted { step, .. } = &rec.event {
            self.close_rung(step, rec.ts);
        }
        self.state.apply(rec.ts, &rec.event);
        if !self.state.runbook.step_digests.is_empty() {
            // Each step's digest is for `resume --accept-changes`; the postmortem never
            // reads them, and the state's copy was ~100 bytes a step (issue 18).
            self.state.runbook.step_digests = Default::default();
        }
        self.events += 1;
        self.first_ts.get_or_insert(rec.ts);
        self.last_ts = Some(rec.ts);
        match &rec.event {
            Event::RunStarted {
                run_id,
                runbook,
                params,
                operator,
                host,
                tool_version,
                dry_run,
                target,
                ..
            } => {
                self.run_start = Some(rec.ts);
                self.params = params
                    .iter()
                    .map(|(name, v)| Param {
                        name: name.clone(),
                        // A secret is journaled as a reference (`{"$secret": …}`),
                        // or as `"***"` by older versions.
                        secret: v.get("$secret").is_some() || v.as_str() == Some("***"),
                        value: if v.get("$secret").is_some() {
                            "***".to_string()
                        } else {
                            plain(v)
                        },
                    })
                    .collect();
                self.run = Some(Run {
                    id: run_id.clone(),
                    runbook: Runbook {
                        name: runbook.name.clone(),
                        title: runbook.title.clone(),
                        path: runbook.path.clone(),
                        sha256: runbook.sha256.clone(),
                        git_commit: runbook.git.as_ref().map(|g| g.commit.clone()),
                        git_dirty: runbook.git.as_ref().is_some_and(|g| g.dirty),
                        links: Vec::new(),
                    },
                    operator: operator.clone(),
                    host: host.clone(),
                    tool_version: tool_version.clone(),
                    dry_run: *dry_run,
                    target: target.as_ref().map(|t| t.describe()),
                    retried: Vec::new(),
                    started: Some(self.time(rec.ts)),
                    ended: None,
                    duration: None,
                    status: "unfinished".to_owned(),
                    status_label: "Unfinished (the journal has no end)".to_owned(),
                    reason: None,
                    resumed: Vec::new(),
                    events: 0,
                });
                let i = self.push_entry(rec, "start", String::new());
                self.entries[i]
                    .entry
                    .more_mut()
                    .milestones
                    .push("RUN STARTED".to_owned());
            }
            Event::RunResumed { .. } => {
                let Some(r) = self.state.resumes.last() else {
                    return;
                };
                let resume = Resume {
                    at: self.time(r.at),
                    by: r.operator.clone(),
                    host: r.host.clone(),
                };
                if let Some(run) = &mut self.run {
                    run.resumed.push(resume.clone());
                }
                let i = self.push_entry(rec, "resume", String::new());
                self.entries[i].entry.more_mut().resumed = Some(Box::new(resume));
                self.barrier = i;
            }
            Event::StepRetried {
                step,
                by,
                failed,
                kept,
            } => {
                let retry = crate::render::model::Retry {
                    step: step.clone(),
                    by: by.clone(),
                    at: self.time(rec.ts),
                    items: failed
                        .iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    kept: kept.len(),
                };
                if let Some(run) = &mut self.run {
                    run.retried.push(retry);
                }
            }
            Event::StepStarted { step, title, kind } => self.step_started(rec, step, title, kind),
            Event::StepSkipped { step, reason } => {
                self.metrics.counts.skipped += 1;
                let last = self.entries.len().checked_sub(1);
                let i = match self.index.entry(step) {
                    Some(i) if Some(i) == last => i,
                    _ => {
                        let i = self.push_entry(rec, "skip", self.step_title(step));
                        self.entries[i].entry.step = Some(step.clone());
                        i
                    }
                };
                let e = &mut self.entries[i].entry;
                e.more_mut().skip_reason = Some(reason.clone());
                e.outcome = Some(outcome(event::Outcome::Skipped));
                if let Some(r) = self.index.row(step) {
                    self.steps[r].outcome = Some(outcome(event::Outcome::Skipped));
                }
            }
            Event::GateRequested {
                step,
                rung,
                preview,
                ..
            } => {
                let i = self.entry_for(rec, step, rung.as_deref(), false);
                // The state keeps the first request not answered since (a gate asked
                // again after a resume), so the wait counts the whole time.
                let Some(p) = self
                    .state
                    .step(step)
                    .and_then(|s| s.pending_gate(rung.as_deref()))
                else {
                    return;
                };
                let mut gate = Gate::asked(self.time(p.asked), p.planned);
                gate.preview = preview.clone();
                self.entries[i].entry.more_mut().gate = Some(Box::new(gate));
            }
            Event::GateDecided { step, rung, .. } => {
                self.gate_decided(rec, step, rung.as_deref());
            }
            Event::Paused {
                step,
                reason,
                resume,
            } => {
                let i = self.push_entry(rec, "pause", self.step_title(step));
                self.barrier = i;
                let e = &mut self.entries[i].entry;
                e.step = Some(step.clone());
                let more = e.more_mut();
                more.milestones.push("PAUSED".to_owned());
                more.pause = Some(Box::new(Pause {
                    step: step.clone(),
                    reason: reason.clone(),
                    resume: resume.clone(),
                }));
            }
            Event::OpStarted { op, attempt } => self.op_started(rec, op, *attempt),
            Event::OpFinished {
                scope,
                duration_ms: d,
                result,
                error,
                output_file,
                calls,
                ..
            } => {
                self.metrics.counts.api_calls += calls.len();
                let key = op_key(scope);
                let (i, slot) = match self.running.remove(&key) {
                    Some(found) => found,
                    None => {
                        // No OpStarted (a journal cut at the front): show what we know.
                        let op = event::PlannedOp {
                            scope: scope.clone(),
                            provider: String::new(),
                            display: "(operation not in the journal)".to_owned(),
                            op: Value::Null,
                            mutating: false,
                            impact: None,
                        };
                        self.op_started(rec, &op, 1);
                        match self.running.remove(&key) {
                            Some(found) => found,
                            None => return,
                        }
                    }
                };
                if slot == Some(FOLDED) {
                    let o = self
                        .state
                        .step(&scope.step)
                        .and_then(|s| s.op(&state::OpKey::from(scope)))
                        .and_then(|r| match r.state {
                            OpState::Finished { outcome: o } => Some(o),
                            OpState::Started => None,
                        });
                    let what = match (o, result.as_ref().and_then(super::summary::result_line)) {
                        (Some(event::Outcome::Ok), Some(line)) if line.len() <= 20 => line,
                        (Some(o), _) => outcome(o).label.to_lowercase(),
                        (None, _) => "no result".to_owned(),
                    };
                    self.entries[i].fold(what, o == Some(event::Outcome::Ok));
                    return;
                }
                let acc = match slot {
                    Some(k) => &mut self.entries[i].ops[k],
                    None => match &mut self.entries[i].verify_op {
                        Some(acc) => acc,
                        None => return,
                    },
                };
                acc.op.outcome = self
                    .state
                    .step(&scope.step)
                    .and_then(|s| s.op(&state::OpKey::from(scope)))
                    .and_then(|r| match r.state {
                        OpState::Finished { outcome: o } => Some(outcome(o)),
                        OpState::Started => None,
                    });
                acc.op.duration = Some(Millis(*d));
                let link = acc.op.more.take().and_then(|m| m.link);
                let display = &acc.op.display;
                acc.op.set_more(OpMore {
                    error: error.clone(),
                    error_line: error.as_deref().map(first_line),
                    // A stream cut at the provider's cap was streamed whole to its own
                    // side file: point there, not at the journal's cut copy.
                    output_file: present::spilled_files(result.as_ref())
                        .or_else(|| output_file.clone()),
                    calls_folded: calls.len() > INLINE_CALLS,
                    calls: calls
                        .iter()
                        .map(|c| Call {
                            line: format!("{} {}", c.method, c.path),
                            method: c.method.clone(),
                            path: c.path.clone(),
                            status: c.status,
                            answer: if c.status == 0 {
                                "no answer".to_owned()
                            } else {
                                c.status.to_string()
                            },
                            duration: duration_ms(c.duration_ms),
                            kubectl: c.kubectl.clone().filter(|k| k != display),
                        })
                        .collect(),
                    link,
                });
                acc.result = result.as_ref().map(|r| r.to_string().into_boxed_str());
                acc.result_at = Some((rec.ts, rec.seq));
            }
            Event::ManualRequested { scope, instruction } => {
                let i = self.entry_for(rec, &scope.step, scope.rung.as_deref(), scope.verification);
                let Some(&(_, at)) = self
                    .state
                    .step(&scope.step)
                    .and_then(|s| s.manual_requested.iter().find(|(r, _)| *r == scope.rung))
                else {
                    return;
                };
                let requested = self.time(at);
                self.entries[i].entry.more_mut().manual = Some(Box::new(Manual {
                    instruction: instruction.clone(),
                    requested,
                    confirmed: None,
                    by: None,
                    outcome: None,
                    waited: None,
                }));
            }
            Event::ManualConfirmed { scope, .. } => {
                let i = self.entry_for(rec, &scope.step, scope.rung.as_deref(), scope.verification);
                let Some(c) = self.state.step(&scope.step).and_then(|s| s.manual.last()) else {
                    return;
                };
                let waited = c.waited_ms();
                let (by, o) = (c.by.clone(), c.outcome);
                let confirmed = self.time(c.confirmed);
                // A confirmation without its request (a damaged journal): asked when
                // confirmed.
                let requested = self.time(c.requested.unwrap_or(c.confirmed));
                add_wait(&mut self.metrics.manual_wait, waited);
                let e = &mut self.entries[i].entry;
                let m = e.more_mut().manual.get_or_insert_with(|| {
                    Box::new(Manual {
                        instruction: String::new(),
                        requested,
                        confirmed: None,
                        by: None,
                        outcome: None,
                        waited: None,
                    })
                });
                m.confirmed = Some(confirmed);
                m.by = Some(by);
                m.outcome = Some(outcome(o));
                m.waited = Some(duration_ms(waited));
            }
            Event::VerifyPolled {
                scope, ok, detail, ..
            } => self.verify_polled(rec, scope, *ok, detail.as_deref()),
            Event::RungStarted {
                step,
                rung,
                title,
                index,
                of,
            } => {
                let r = self.rung_ref(step, rung);
                if self
                    .metrics
                    .escalation
                    .as_ref()
                    .is_none_or(|e| e.index < *index)
                {
                    self.metrics.escalation = Some(Escalation {
                        step: step.clone(),
                        rung: rung.clone(),
                        title: title.clone(),
                        index: *index,
                        of: *of,
                    });
                }
                let i = self.push_entry(rec, "rung", title.clone());
                let e = &mut self.entries[i].entry;
                e.step = Some(step.clone());
                e.step_kind = Some(Word::Borrowed("action"));
                e.rung = Some(Box::new(r));
                self.rung_entry.insert((step.clone(), rung.clone()), i);
            }
            Event::Escalated {
                step,
                from,
                to,
                reason,
            } => {
                let title = self.step_title(step);
                let i = self.push_entry(rec, "escalation", title);
                let (from, to) = (self.rung_ref(step, from), self.rung_ref(step, to));
                let e = &mut self.entries[i].entry;
                e.step = Some(step.clone());
                let more = e.more_mut();
                more.milestones.push("ESCALATED".to_owned());
                more.escalation = Some(Box::new(EscalationStep {
                    step: step.clone(),
                    from,
                    to,
                    reason: reason.clone(),
                }));
            }
            Event::Saved { .. } | Event::ProcessStarted { .. } => {}
            Event::StepFinished {
                step,
                duration_ms: d,
                summary,
                fixed_by,
                ..
            } => self.step_finished(rec, step, *d, summary, fixed_by.as_deref()),
            // An accepted edit of the runbook reads as a note by whoever accepted it.
            Event::RunbookChanged { .. } => {
                let note = Note {
                    at: self.time(rec.ts),
                    by: crate::journal::event::changed_by(&rec.event).to_owned(),
                    text: crate::journal::event::describe_change(&rec.event),
                };
                self.notes.push(note.clone());
                let i = self.push_entry(rec, "note", String::new());
                self.entries[i].entry.more_mut().note = Some(Box::new(note));
            }
            Event::IncidentStart { .. } | Event::RunbookLinks { .. } => {}
            Event::UndoBegun { .. } => {}
            Event::UndoStarted { step, title, .. } => {
                let i = self.push_entry(rec, "undo", title.clone());
                self.entries[i].entry.step = Some(step.clone());
                let rung = state::UndoRecord::rung_of(step);
                self.rung_entry.insert((step.clone(), rung), i);
            }
            Event::UndoFinished {
                step,
                outcome: o,
                duration_ms: d,
                summary,
            } => {
                let i = self.entry_for(rec, step, Some(&state::UndoRecord::rung_of(step)), false);
                let e = &mut self.entries[i].entry;
                e.outcome = Some(outcome(*o));
                e.duration = Some(Millis(*d));
                e.summary = Some(summary.clone());
            }
            Event::UndoSkipped { step, reason } => {
                let i = self.push_entry(rec, "undo", self.step_title(step));
                let e = &mut self.entries[i].entry;
                e.step = Some(step.clone());
                e.outcome = Some(outcome(event::Outcome::Skipped));
                e.more_mut().skip_reason = Some(reason.clone());
            }
            Event::Note { text, by, at } => {
                if self.notes.len() >= SHOWN_NOTES {
                    self.notes_hidden += 1;
                    if !self.authors_extra.iter().any(|a| a == by) && self.authors_extra.len() < 100
                    {
                        self.authors_extra.push(by.clone());
                    }
                    return;
                }
                let note = Note {
                    at: self.time(at.unwrap_or(rec.ts)),
                    by: by.clone(),
                    text: text.clone(),
                };
                self.notes.push(note.clone());
                let i = self.push_entry(rec, "note", String::new());
                self.entries[i].entry.more_mut().note = Some(Box::new(note));
                if at.is_some() {
                    // Not where it was written but when it says: moved in `finish`.
                    let mut acc = self.entries.remove(i);
                    acc.entry.time = acc
                        .entry
                        .more()
                        .note
                        .as_ref()
                        .map_or(acc.entry.time, |n| n.at);
                    self.backdated.push(acc);
                }
            }
            Event::RunFinished {
                status: s, reason, ..
            } => {
                // The run's status, end and reason are the state's (see `finish`);
                // this entry marks where this process stopped.
                let (code, label) = status(*s);
                let i = self.push_entry(rec, "finish", label.to_owned());
                self.barrier = i;
                let e = &mut self.entries[i].entry;
                e.more_mut()
                    .milestones
                    .push(format!("RUN {}", code.replace('_', " ").to_uppercase()));
                e.summary = reason.clone();
            }
        }
    }
}
