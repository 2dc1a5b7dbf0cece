//! From journal records to the [`Postmortem`] model, in one pass.
//!
//! Events are folded into timeline entries: a step's gate, operations, verification
//! polls and manual confirmation all land on the entry its `StepStarted` (or, inside
//! an escalation ladder, its `RungStarted`) opened, found by the event's scope. Polls
//! and retries of one operation line are merged, so a verification polled 30 times
//! is one line with `runs: 30`, not 30 entries.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use super::format::{Time, between, duration_ms};
use super::gantt::Span;
use super::model::*;
use crate::journal::event::{self, ApprovalSource, Decision, Event, Record, RunStatus, Scope};
use crate::journal::reader::Journal;

/// Output longer than this (bytes) is cut in the document; the journal's side file
/// (`output_file`) keeps all of it.
const MAX_OUTPUT: usize = 8 * 1024;
/// More API calls than this for one operation are folded into a `<details>` block.
const INLINE_CALLS: usize = 3;

/// The model without drafts and chart, plus the spans the chart is drawn from.
pub struct Built {
    pub pm: Postmortem,
    pub spans: Vec<Span>,
}

/// Build the model of a journal, with times shown in `tz`.
pub fn build(journal: &Journal, tz: Tz) -> Built {
    let mut b = Builder::new(tz);
    let mut expected_seq = 1;
    for rec in &journal.records {
        if rec.seq != expected_seq && b.warnings.len() < 20 {
            b.warnings.push(format!(
                "The journal skips from event {} to {}: events may be missing.",
                expected_seq.saturating_sub(1),
                rec.seq
            ));
        }
        expected_seq = rec.seq + 1;
        b.record(rec);
    }
    if journal.torn_tail {
        b.warnings.push(
            "The journal's last line was incomplete (the process was killed while writing it) and was ignored."
                .to_owned(),
        );
    }
    b.finish()
}

/// An operation being accumulated, with its last raw result.
struct OpAcc {
    op: Op,
    result: Option<Value>,
}

struct EntryAcc {
    entry: Entry,
    ops: Vec<OpAcc>,
    /// The verification's polled operation (kept apart from `ops`).
    verify_op: Option<OpAcc>,
}

type OpKey = (String, Option<String>, Option<usize>, bool);

struct Builder {
    tz: Tz,
    run: Option<Run>,
    run_start: Option<DateTime<Utc>>,
    first_ts: Option<DateTime<Utc>>,
    last_ts: Option<DateTime<Utc>>,
    finished: Option<DateTime<Utc>>,
    params: Vec<Param>,
    entries: Vec<EntryAcc>,
    steps: Vec<StepRow>,
    step_row: HashMap<String, usize>,
    step_entry: HashMap<String, usize>,
    step_start: HashMap<String, DateTime<Utc>>,
    rung_entry: HashMap<(String, String), usize>,
    current_rung: HashMap<String, String>,
    rungs: HashMap<(String, String), (RungRef, DateTime<Utc>)>,
    /// Where the running operation of each scope is: entry index, op index or None
    /// for the verification's operation.
    running: HashMap<OpKey, (usize, Option<usize>)>,
    notes: Vec<Note>,
    metrics: Metrics,
    paused_at: Option<DateTime<Utc>>,
    /// First passing verification of a verify step or a ladder, and of anything.
    mitigated_fix: Option<(usize, Milestone)>,
    mitigated_any: Option<(usize, Milestone)>,
    spans: Vec<Span>,
    warnings: Vec<String>,
    events: usize,
}

fn op_key(scope: &Scope) -> OpKey {
    (
        scope.step.clone(),
        scope.rung.clone(),
        scope.item,
        scope.verification,
    )
}

pub fn outcome(o: event::Outcome) -> Outcome {
    use event::Outcome as O;
    let (code, label) = match o {
        O::Ok => ("ok", "OK"),
        O::Failed => ("failed", "FAILED"),
        O::Skipped => ("skipped", "SKIPPED"),
        O::NotApplicable => ("not_applicable", "NOT APPLICABLE"),
        O::Unknown => ("unknown", "UNKNOWN (no result in the journal)"),
        O::TimedOut => ("timed_out", "TIMED OUT"),
        O::Aborted => ("aborted", "ABORTED"),
    };
    Outcome {
        code: code.to_owned(),
        label: label.to_owned(),
        ok: o == O::Ok,
    }
}

fn no_result() -> Outcome {
    Outcome {
        code: "unknown".to_owned(),
        label: "NO RESULT (the run stopped before it finished)".to_owned(),
        ok: false,
    }
}

fn status(s: RunStatus) -> (&'static str, &'static str) {
    match s {
        RunStatus::Succeeded => ("succeeded", "Succeeded"),
        RunStatus::Failed => ("failed", "Failed"),
        RunStatus::Aborted => ("aborted", "Aborted"),
        RunStatus::NotApplicable => ("not_applicable", "Not applicable"),
        RunStatus::Paused => ("paused", "Paused, waiting for a person"),
    }
}

fn decision(d: Decision) -> &'static str {
    match d {
        Decision::Approved => "approved",
        Decision::Declined => "declined",
        Decision::Skipped => "skipped",
        Decision::Aborted => "aborted",
    }
}

fn source(s: ApprovalSource) -> (&'static str, &'static str, bool) {
    match s {
        ApprovalSource::Prompt => ("prompt", "at the prompt", false),
        ApprovalSource::Yes => ("yes", "in advance with --yes", false),
        ApprovalSource::Flag => ("flag", "in advance with --approve", false),
        ApprovalSource::Unattended => ("unattended", "unattended (no person was asked)", true),
        ApprovalSource::Automatic => ("automatic", "automatically (runbook demo/test)", true),
    }
}

/// A JSON value as one line of text: strings as they are, anything else as JSON.
pub fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Cut `s` to [`MAX_OUTPUT`] bytes at a character boundary, saying how much is missing.
fn bounded(s: &str) -> String {
    if s.len() <= MAX_OUTPUT {
        return s.to_owned();
    }
    let mut end = MAX_OUTPUT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n… ({} more bytes not shown)", &s[..end], s.len() - end)
}

/// The folded blocks showing an operation's result: stdout and stderr of a command
/// apart, a string as text, anything else as pretty JSON.
fn result_details(what: &str, result: &Value, out: &mut Vec<Detail>) {
    let mut push = |summary: String, body: String, lang: &str| {
        if !body.trim().is_empty() {
            out.push(Detail {
                summary,
                body: bounded(&body),
                lang: lang.to_owned(),
            });
        }
    };
    match result {
        Value::Null => {}
        Value::String(s) => push(format!("Output of {what}"), s.clone(), "text"),
        Value::Object(map) if map.contains_key("stdout") || map.contains_key("stderr") => {
            for (key, label) in [("stdout", "Output"), ("stderr", "Errors (stderr)")] {
                if let Some(v) = map.get(key) {
                    push(format!("{label} of {what}"), plain(v), "text");
                }
            }
        }
        other => push(
            format!("Result of {what}"),
            serde_json::to_string_pretty(other).unwrap_or_else(|_| other.to_string()),
            "json",
        ),
    }
}

impl Builder {
    fn new(tz: Tz) -> Builder {
        Builder {
            tz,
            run: None,
            run_start: None,
            first_ts: None,
            last_ts: None,
            finished: None,
            params: Vec::new(),
            entries: Vec::new(),
            steps: Vec::new(),
            step_row: HashMap::new(),
            step_entry: HashMap::new(),
            step_start: HashMap::new(),
            rung_entry: HashMap::new(),
            current_rung: HashMap::new(),
            rungs: HashMap::new(),
            running: HashMap::new(),
            notes: Vec::new(),
            metrics: Metrics {
                time_to_detect: None,
                time_to_mitigate: None,
                gate_wait: Wait::default(),
                manual_wait: Wait::default(),
                paused: Wait::default(),
                counts: Counts::default(),
                escalation: None,
            },
            paused_at: None,
            mitigated_fix: None,
            mitigated_any: None,
            spans: Vec::new(),
            warnings: Vec::new(),
            events: 0,
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

    fn push_entry(&mut self, rec: &Record, kind: &str, title: String) -> usize {
        self.entries.push(EntryAcc {
            entry: Entry {
                id: format!("evt-{}", rec.seq),
                seq: rec.seq,
                time: self.time(rec.ts),
                kind: kind.to_owned(),
                label: String::new(),
                milestones: Vec::new(),
                step: None,
                step_kind: None,
                title,
                rung: None,
                outcome: None,
                duration: None,
                summary: None,
                fixed_by: None,
                gate: None,
                ops: Vec::new(),
                verification: None,
                manual: None,
                escalation: None,
                note: None,
                pause: None,
                skip_reason: None,
                resumed: None,
                details: Vec::new(),
            },
            ops: Vec::new(),
            verify_op: None,
        });
        self.entries.len() - 1
    }

    fn step_title(&self, step: &str) -> String {
        self.step_row
            .get(step)
            .map_or_else(|| step.to_owned(), |&i| self.steps[i].title.clone())
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
        if let Some(r) = rung
            && let Some(&i) = self.rung_entry.get(&(step.to_owned(), r.to_owned()))
        {
            return i;
        }
        if verification
            && rung.is_none()
            && let Some(r) = self.current_rung.get(step)
            && let Some(&i) = self.rung_entry.get(&(step.to_owned(), r.clone()))
        {
            return i;
        }
        if let Some(&i) = self.step_entry.get(step) {
            return i;
        }
        let i = self.push_entry(rec, "step", step.to_owned());
        self.entries[i].entry.step = Some(step.to_owned());
        self.step_entry.insert(step.to_owned(), i);
        i
    }

    fn rung_ref(&self, step: &str, rung: &str) -> RungRef {
        self.rungs
            .get(&(step.to_owned(), rung.to_owned()))
            .map(|(r, _)| r.clone())
            .unwrap_or_else(|| RungRef {
                id: rung.to_owned(),
                title: rung.to_owned(),
                index: 0,
                of: 0,
            })
    }

    fn record(&mut self, rec: &Record) {
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
                ..
            } => {
                self.run_start = Some(rec.ts);
                self.params = params
                    .iter()
                    .map(|(name, v)| Param {
                        name: name.clone(),
                        secret: v.as_str() == Some("***"),
                        value: plain(v),
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
                    },
                    operator: operator.clone(),
                    host: host.clone(),
                    tool_version: tool_version.clone(),
                    dry_run: *dry_run,
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
                    .milestones
                    .push("RUN STARTED".to_owned());
            }
            Event::RunResumed { operator, host } => {
                let resume = Resume {
                    at: self.time(rec.ts),
                    by: operator.clone(),
                    host: host.clone(),
                };
                if let Some(run) = &mut self.run {
                    run.resumed.push(resume.clone());
                }
                if let Some(p) = self.paused_at.take() {
                    add_wait(&mut self.metrics.paused, between(p, rec.ts));
                }
                let i = self.push_entry(rec, "resume", String::new());
                self.entries[i].entry.resumed = Some(resume);
            }
            Event::StepStarted { step, title, kind } => self.step_started(rec, step, title, kind),
            Event::StepSkipped { step, reason } => {
                self.metrics.counts.skipped += 1;
                let last = self.entries.len().checked_sub(1);
                let i = match self.step_entry.get(step) {
                    Some(&i) if Some(i) == last => i,
                    _ => {
                        let i = self.push_entry(rec, "skip", self.step_title(step));
                        self.entries[i].entry.step = Some(step.clone());
                        i
                    }
                };
                let e = &mut self.entries[i].entry;
                e.skip_reason = Some(reason.clone());
                e.outcome = Some(outcome(event::Outcome::Skipped));
                if let Some(&r) = self.step_row.get(step) {
                    self.steps[r].outcome = Some(outcome(event::Outcome::Skipped));
                }
            }
            Event::GateRequested {
                step, rung, ops, ..
            } => {
                let i = self.entry_for(rec, step, rung.as_deref(), false);
                let requested = self.time(rec.ts);
                let e = &mut self.entries[i].entry;
                // A gate asked again after a resume keeps its first request time, so
                // the wait counts the whole time nobody answered.
                if e.gate.as_ref().is_none_or(|g| g.decided.is_some()) {
                    e.gate = Some(Gate {
                        requested,
                        decided: None,
                        decision: None,
                        by: None,
                        source: None,
                        how: None,
                        automatic: false,
                        waited: None,
                        waited_ms: 0,
                        planned: ops.len(),
                    });
                }
            }
            Event::GateDecided {
                step,
                rung,
                decision: d,
                by,
                source: s,
                ..
            } => self.gate_decided(rec, step, rung.as_deref(), *d, by, *s),
            Event::Paused {
                step,
                reason,
                resume,
            } => {
                self.paused_at = Some(rec.ts);
                let i = self.push_entry(rec, "pause", self.step_title(step));
                let e = &mut self.entries[i].entry;
                e.step = Some(step.clone());
                e.milestones.push("PAUSED".to_owned());
                e.pause = Some(Pause {
                    step: step.clone(),
                    reason: reason.clone(),
                    resume: resume.clone(),
                });
            }
            Event::OpStarted { op, attempt } => self.op_started(rec, op, *attempt),
            Event::OpFinished {
                scope,
                outcome: o,
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
                        };
                        self.op_started(rec, &op, 1);
                        match self.running.remove(&key) {
                            Some(found) => found,
                            None => return,
                        }
                    }
                };
                let acc = match slot {
                    Some(k) => &mut self.entries[i].ops[k],
                    None => match &mut self.entries[i].verify_op {
                        Some(acc) => acc,
                        None => return,
                    },
                };
                acc.op.outcome = Some(outcome(*o));
                acc.op.duration = Some(duration_ms(*d));
                acc.op.error = error.clone();
                acc.op.error_line = error.as_deref().map(first_line);
                acc.op.output_file = output_file.clone();
                acc.op.calls_folded = calls.len() > INLINE_CALLS;
                acc.op.calls = calls
                    .iter()
                    .map(|c| Call {
                        line: format!("{} {}", c.method, c.path),
                        method: c.method.clone(),
                        path: c.path.clone(),
                        status: c.status,
                        duration: duration_ms(c.duration_ms),
                        kubectl: c.kubectl.clone().filter(|k| *k != acc.op.display),
                    })
                    .collect();
                acc.result = result.clone();
            }
            Event::ManualRequested { scope, instruction } => {
                let i = self.entry_for(rec, &scope.step, scope.rung.as_deref(), scope.verification);
                let requested = self.time(rec.ts);
                self.entries[i].entry.manual = Some(Manual {
                    instruction: instruction.clone(),
                    requested,
                    confirmed: None,
                    by: None,
                    outcome: None,
                    waited: None,
                });
            }
            Event::ManualConfirmed {
                scope,
                outcome: o,
                by,
            } => {
                let i = self.entry_for(rec, &scope.step, scope.rung.as_deref(), scope.verification);
                let waited = self.wait_since_manual(i, rec.ts);
                add_wait(&mut self.metrics.manual_wait, waited);
                let confirmed = self.time(rec.ts);
                let e = &mut self.entries[i].entry;
                let m = e.manual.get_or_insert_with(|| Manual {
                    instruction: String::new(),
                    requested: confirmed.clone(),
                    confirmed: None,
                    by: None,
                    outcome: None,
                    waited: None,
                });
                m.confirmed = Some(confirmed);
                m.by = Some(by.clone());
                m.outcome = Some(outcome(*o));
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
                let r = RungRef {
                    id: rung.clone(),
                    title: title.clone(),
                    index: *index,
                    of: *of,
                };
                self.close_rung(step, rec.ts);
                self.rungs
                    .insert((step.clone(), rung.clone()), (r.clone(), rec.ts));
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
                e.step_kind = Some("action".to_owned());
                e.rung = Some(r);
                self.rung_entry.insert((step.clone(), rung.clone()), i);
                self.current_rung.insert(step.clone(), rung.clone());
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
                e.milestones.push("ESCALATED".to_owned());
                e.escalation = Some(EscalationStep {
                    step: step.clone(),
                    from,
                    to,
                    reason: reason.clone(),
                });
            }
            Event::Saved { .. } => {}
            Event::StepFinished {
                step,
                outcome: o,
                duration_ms: d,
                summary,
                fixed_by,
            } => self.step_finished(rec, step, *o, *d, summary, fixed_by.as_deref()),
            Event::Note { text, by } => {
                let note = Note {
                    at: self.time(rec.ts),
                    by: by.clone(),
                    text: text.clone(),
                };
                self.notes.push(note.clone());
                let i = self.push_entry(rec, "note", String::new());
                self.entries[i].entry.note = Some(note);
            }
            Event::RunFinished {
                status: s, reason, ..
            } => {
                self.finished = Some(rec.ts);
                let (code, label) = status(*s);
                let ended = self.time(rec.ts);
                if let Some(run) = &mut self.run {
                    run.status = code.to_owned();
                    run.status_label = label.to_owned();
                    run.reason = reason.clone();
                    run.ended = Some(ended);
                }
                let i = self.push_entry(rec, "finish", label.to_owned());
                let e = &mut self.entries[i].entry;
                e.milestones.push(format!("RUN {}", label.to_uppercase()));
                e.summary = reason.clone();
            }
        }
    }

    fn step_started(&mut self, rec: &Record, step: &str, title: &str, kind: &str) {
        let c = &mut self.metrics.counts;
        c.steps += 1;
        match kind {
            "check" => c.checks += 1,
            "action" => c.actions += 1,
            "verify" => c.verifies += 1,
            "manual" => c.manual += 1,
            _ => {}
        }
        let i = self.push_entry(rec, "step", title.to_owned());
        let e = &mut self.entries[i].entry;
        e.step = Some(step.to_owned());
        e.step_kind = Some(kind.to_owned());
        self.step_entry.insert(step.to_owned(), i);
        self.step_start.insert(step.to_owned(), rec.ts);
        self.step_row.insert(step.to_owned(), self.steps.len());
        self.steps.push(StepRow {
            id: step.to_owned(),
            title: title.to_owned(),
            kind: kind.to_owned(),
            started: self.time(rec.ts),
            outcome: None,
            duration: None,
            summary: None,
            fixed_by: None,
            rungs: Vec::new(),
        });
    }

    fn step_finished(
        &mut self,
        rec: &Record,
        step: &str,
        o: event::Outcome,
        d: u64,
        summary: &str,
        fixed_by: Option<&str>,
    ) {
        let out = outcome(o);
        match o {
            event::Outcome::Ok => self.metrics.counts.ok += 1,
            event::Outcome::Skipped => self.metrics.counts.skipped += 1,
            event::Outcome::NotApplicable => {}
            _ => self.metrics.counts.failed += 1,
        }
        self.close_rung(step, rec.ts);
        let fixed = fixed_by.map(|r| self.rung_ref(step, r));
        let kind = self
            .step_row
            .get(step)
            .map(|&r| self.steps[r].kind.clone())
            .unwrap_or_default();
        if let Some(&r) = self.step_row.get(step) {
            let row = &mut self.steps[r];
            row.outcome = Some(out.clone());
            row.duration = Some(duration_ms(d));
            row.summary = Some(summary.to_owned());
            row.fixed_by = fixed_by.map(str::to_owned);
        }
        let start = self.step_start.get(step).copied().unwrap_or(rec.ts);
        self.spans.push(Span {
            label: self.step_title(step),
            section: kind.clone(),
            start,
            end: rec.ts,
            ok: o == event::Outcome::Ok || o == event::Outcome::NotApplicable,
            ladder: self.current_rung.contains_key(step),
            step: step.to_owned(),
        });
        // The outcome joins the step's entry when nothing happened in between;
        // otherwise (escalations, notes, other steps) it gets an entry at its own time.
        let last = self.entries.len().checked_sub(1);
        let i = match self.step_entry.get(step) {
            Some(&i) if Some(i) == last => i,
            _ => {
                let i = self.push_entry(rec, "step_end", self.step_title(step));
                let e = &mut self.entries[i].entry;
                e.step = Some(step.to_owned());
                e.step_kind = Some(kind.clone());
                i
            }
        };
        if kind == "check" && o == event::Outcome::Ok && self.metrics.time_to_detect.is_none() {
            self.metrics.time_to_detect = Some(Milestone {
                after: duration_ms(between(self.start(), rec.ts)),
                at: self.time(rec.ts),
                step: step.to_owned(),
                title: self.step_title(step),
                what: "check".to_owned(),
                rung: None,
            });
            self.entries[i].entry.milestones.push("DETECTED".to_owned());
        }
        let e = &mut self.entries[i].entry;
        e.outcome = Some(out);
        e.duration = Some(duration_ms(d));
        e.summary = Some(summary.to_owned()).filter(|s| !s.is_empty());
        e.fixed_by = fixed;
    }

    /// The span of the step's current rung ends (a next rung starts or the step ends).
    fn close_rung(&mut self, step: &str, end: DateTime<Utc>) {
        let Some(rung) = self.current_rung.get(step).cloned() else {
            return;
        };
        if let Some((r, start)) = self.rungs.get(&(step.to_owned(), rung.clone())) {
            let passed = self
                .rung_entry
                .get(&(step.to_owned(), rung.clone()))
                .and_then(|&i| self.entries[i].entry.verification.as_ref())
                .is_some_and(|v| v.passed);
            let already = self
                .spans
                .iter()
                .any(|s| s.step == step && s.label == format!("{}/{} {}", r.index, r.of, r.title));
            if !already {
                self.spans.push(Span {
                    label: format!("{}/{} {}", r.index, r.of, r.title),
                    section: format!("ladder:{step}"),
                    start: *start,
                    end,
                    ok: passed,
                    ladder: true,
                    step: step.to_owned(),
                });
            }
        }
    }

    fn op_started(&mut self, rec: &Record, op: &event::PlannedOp, _attempt: u32) {
        self.metrics.counts.operations += 1;
        let s = &op.scope;
        let i = self.entry_for(rec, &s.step, s.rung.as_deref(), s.verification);
        let started = self.time(rec.ts);
        let fresh = || OpAcc {
            op: Op {
                display: op.display.clone(),
                provider: op.provider.clone(),
                mutating: op.mutating,
                item: s.item,
                runs: 0,
                started: started.clone(),
                outcome: None,
                duration: None,
                error: None,
                error_line: None,
                calls: Vec::new(),
                calls_folded: false,
                output_file: None,
            },
            result: None,
        };
        let acc = &mut self.entries[i];
        let slot = if s.verification {
            let v = acc.verify_op.get_or_insert_with(fresh);
            v.op.runs += 1;
            None
        } else {
            let k = match acc
                .ops
                .iter()
                .position(|a| a.op.item == s.item && a.op.display == op.display)
            {
                Some(k) => k,
                None => {
                    acc.ops.push(fresh());
                    acc.ops.len() - 1
                }
            };
            acc.ops[k].op.runs += 1;
            Some(k)
        };
        self.running.insert(op_key(s), (i, slot));
    }

    fn verify_polled(&mut self, rec: &Record, scope: &Scope, ok: bool, detail: Option<&str>) {
        let i = self.entry_for(rec, &scope.step, scope.rung.as_deref(), scope.verification);
        let now = self.time(rec.ts);
        let acc = &mut self.entries[i];
        let display = acc
            .verify_op
            .as_ref()
            .or(acc.ops.last())
            .map(|a| a.op.display.clone());
        let v = acc.entry.verification.get_or_insert_with(|| Verification {
            display: None,
            polls: 0,
            passed: false,
            first: now.clone(),
            last: now.clone(),
            took: String::new(),
            detail: None,
            outcome: "pending".to_owned(),
            label: String::new(),
        });
        v.display = display;
        v.polls += 1;
        v.passed = ok;
        v.last = now;
        v.detail = detail.map(str::to_owned);
        v.outcome = if ok { "passed" } else { "pending" }.to_owned();
        if ok {
            let step = scope.step.clone();
            let kind = self
                .step_row
                .get(&step)
                .map(|&r| self.steps[r].kind.clone())
                .unwrap_or_default();
            let rung = acc.entry.rung.as_ref().map(|r| r.id.clone());
            // A verify step or the verification of an escalation ladder proves the
            // problem is fixed; the verification of a preparatory action (cordon)
            // only proves that action worked. Prefer the former.
            let fixes = kind == "verify" || rung.is_some();
            let slot = if fixes {
                &self.mitigated_fix
            } else {
                &self.mitigated_any
            };
            if slot.is_none() {
                let m = Milestone {
                    after: duration_ms(between(self.start(), rec.ts)),
                    at: self.time(rec.ts),
                    title: self.step_title(&step),
                    step,
                    what: if kind == "verify" {
                        "verify"
                    } else {
                        "verification"
                    }
                    .to_owned(),
                    rung,
                };
                if fixes {
                    self.mitigated_fix = Some((i, m));
                } else {
                    self.mitigated_any = Some((i, m));
                }
            }
        }
    }

    fn gate_decided(
        &mut self,
        rec: &Record,
        step: &str,
        rung: Option<&str>,
        d: Decision,
        by: &str,
        s: ApprovalSource,
    ) {
        let i = self.entry_for(rec, step, rung, false);
        let decided = self.time(rec.ts);
        let (code, how, automatic) = source(s);
        let requested_ts = self.gate_requested_ts(i).unwrap_or(rec.ts);
        let waited = between(requested_ts, rec.ts);
        add_wait(&mut self.metrics.gate_wait, waited);
        let e = &mut self.entries[i].entry;
        let g = e.gate.get_or_insert_with(|| Gate {
            requested: decided.clone(),
            decided: None,
            decision: None,
            by: None,
            source: None,
            how: None,
            automatic: false,
            waited: None,
            waited_ms: 0,
            planned: 0,
        });
        g.decided = Some(decided);
        g.decision = Some(decision(d).to_owned());
        g.by = Some(by.to_owned());
        g.source = Some(code.to_owned());
        g.how = Some(how.to_owned());
        g.automatic = automatic;
        g.waited = Some(duration_ms(waited));
        g.waited_ms = waited;
    }

    fn gate_requested_ts(&self, i: usize) -> Option<DateTime<Utc>> {
        let g = self.entries[i].entry.gate.as_ref()?;
        g.requested.utc.parse().ok()
    }

    fn wait_since_manual(&self, i: usize, ts: DateTime<Utc>) -> u64 {
        self.entries[i]
            .entry
            .manual
            .as_ref()
            .and_then(|m| m.requested.utc.parse::<DateTime<Utc>>().ok())
            .map_or(0, |r| between(r, ts))
    }

    fn finish(mut self) -> Built {
        if let Some((i, m)) = self.mitigated_fix.take().or(self.mitigated_any.take()) {
            let e = &mut self.entries[i].entry;
            e.milestones.push(if e.time.time == m.at.time {
                "MITIGATED".to_owned()
            } else {
                format!("MITIGATED at {}", m.at.time)
            });
            self.metrics.time_to_mitigate = Some(m);
        }
        let first = self.first_ts;
        let last = self.last_ts;
        // Rungs and steps still open at the end of the journal.
        let open: Vec<String> = self.current_rung.keys().cloned().collect();
        for step in open {
            if let Some(end) = last {
                self.close_rung(&step, end);
            }
        }
        for row in &self.steps {
            if row.outcome.is_none()
                && let (Some(&start), Some(end)) = (self.step_start.get(&row.id), last)
            {
                self.spans.push(Span {
                    label: row.title.clone(),
                    section: row.kind.clone(),
                    start,
                    end,
                    ok: false,
                    ladder: self.current_rung.contains_key(&row.id),
                    step: row.id.clone(),
                });
            }
        }
        // Escalations name rungs that had not started yet when they were journaled.
        let rungs = &self.rungs;
        for acc in &mut self.entries {
            if let Some(esc) = &mut acc.entry.escalation {
                for r in [&mut esc.from, &mut esc.to] {
                    if let Some((known, _)) = rungs.get(&(esc.step.clone(), r.id.clone())) {
                        *r = known.clone();
                    }
                }
            }
        }
        let mut run = self.run.take().unwrap_or_else(|| {
            self.warnings.insert(
                0,
                "The journal has no run_started event: the facts about the run are missing."
                    .to_owned(),
            );
            Run {
                id: "unknown".to_owned(),
                runbook: Runbook {
                    name: "unknown".to_owned(),
                    title: "unknown runbook".to_owned(),
                    path: String::new(),
                    sha256: String::new(),
                    git_commit: None,
                    git_dirty: false,
                },
                operator: "unknown".to_owned(),
                host: "unknown".to_owned(),
                tool_version: "unknown".to_owned(),
                dry_run: false,
                started: first.map(|t| Time::new(t, self.tz)),
                ended: None,
                duration: None,
                status: "unfinished".to_owned(),
                status_label: "Unfinished (the journal has no end)".to_owned(),
                reason: None,
                resumed: Vec::new(),
                events: 0,
            }
        });
        run.events = self.events;
        let start = self.run_start.or(first);
        if let (Some(s), Some(e)) = (start, self.finished.or(last)) {
            run.duration = Some(duration_ms(between(s, e)));
        }
        if self.finished.is_none() && self.events > 0 {
            self.warnings.push(
                "The run has not finished: it is still running, or the process was killed. Everything after the last event is unknown."
                    .to_owned(),
            );
        }
        for row in &mut self.steps {
            row.rungs = self
                .rungs
                .iter()
                .filter(|((s, _), _)| *s == row.id)
                .map(|(_, (r, _))| r.clone())
                .collect();
            row.rungs.sort_by_key(|r| r.index);
        }
        let finished = self.finished.is_some();
        let mut timeline: Vec<Day> = Vec::new();
        let mut approvals = Vec::new();
        for acc in self.entries {
            let e = finish_entry(acc, finished);
            if let Some(g) = &e.gate {
                approvals.push(Approval {
                    step: e.step.clone().unwrap_or_default(),
                    rung: e.rung.as_ref().map(|r| r.id.clone()),
                    title: e.title.clone(),
                    gate: g.clone(),
                });
            }
            match timeline.last_mut() {
                Some(day) if day.date == e.time.date => day.entries.push(e),
                _ => {
                    let weekday = e
                        .time
                        .date
                        .parse::<chrono::NaiveDate>()
                        .map(|d| d.weekday().to_string())
                        .unwrap_or_default();
                    timeline.push(Day {
                        date: e.time.date.clone(),
                        weekday: long_weekday(&weekday),
                        entries: vec![e],
                    });
                }
            }
        }
        Built {
            pm: Postmortem {
                run,
                tz: self.tz.name().to_owned(),
                params: self.params,
                metrics: self.metrics,
                timeline,
                steps: self.steps,
                approvals,
                notes: self.notes,
                gantt: String::new(),
                drafts: Drafts::default(),
                warnings: self.warnings,
            },
            spans: self.spans,
        }
    }
}

/// The first line of `s`, cut to 200 characters.
fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.chars().count() > 200 {
        line.chars().take(199).collect::<String>() + "…"
    } else {
        line.to_owned()
    }
}

/// The entry's kind for people.
fn label(e: &Entry) -> String {
    match e.kind.as_str() {
        "start" => "Run started".to_owned(),
        "resume" => "Run resumed".to_owned(),
        "rung" => match &e.rung {
            Some(r) => format!("Rung {} of {}", r.index, r.of),
            None => "Rung".to_owned(),
        },
        "escalation" => "Escalation".to_owned(),
        "skip" => "Skipped".to_owned(),
        "note" => "Note".to_owned(),
        "pause" => "Paused".to_owned(),
        "finish" => "Run ended".to_owned(),
        "step_end" => "Finished".to_owned(),
        _ => match e.step_kind.as_deref() {
            Some("check") => "Check",
            Some("action") => "Action",
            Some("verify") => "Verify",
            Some("manual") => "Manual step",
            _ => "Step",
        }
        .to_owned(),
    }
}

fn long_weekday(short: &str) -> String {
    match short {
        "Mon" => "Monday",
        "Tue" => "Tuesday",
        "Wed" => "Wednesday",
        "Thu" => "Thursday",
        "Fri" => "Friday",
        "Sat" => "Saturday",
        "Sun" => "Sunday",
        other => other,
    }
    .to_owned()
}

fn add_wait(w: &mut Wait, ms: u64) {
    w.total_ms += ms;
    w.count += 1;
    w.total = duration_ms(w.total_ms);
}

/// Turn an accumulated entry into its final form: operations in order, their output
/// folded into details, verifications that never passed marked.
fn finish_entry(acc: EntryAcc, run_finished: bool) -> Entry {
    let mut e = acc.entry;
    e.label = label(&e);
    for a in acc.ops {
        let mut op = a.op;
        if op.outcome.is_none() {
            op.outcome = Some(no_result());
        }
        let what = match op.item {
            Some(n) => format!("{} (item {n})", op.display),
            None => op.display.clone(),
        };
        if let Some(err) = &op.error
            && (err.contains('\n') || err.len() > 200)
        {
            e.details.push(Detail {
                summary: format!("Error of {what}"),
                body: bounded(err),
                lang: "text".to_owned(),
            });
        }
        if op.calls_folded {
            let body: Vec<String> = op
                .calls
                .iter()
                .map(|c| format!("{} {} → {} ({})", c.method, c.path, c.status, c.duration))
                .collect();
            e.details.push(Detail {
                summary: format!("{} API calls of {what}", op.calls.len()),
                body: body.join("\n"),
                lang: "text".to_owned(),
            });
        }
        if let Some(r) = &a.result {
            result_details(&what, r, &mut e.details);
        }
        e.ops.push(op);
    }
    if let Some(v) = &mut e.verification {
        // A verify step polls its own operation: it is listed once, under `ops`.
        if e.ops.iter().any(|o| Some(&o.display) == v.display.as_ref()) {
            v.display = None;
        }
        let first: Option<DateTime<Utc>> = v.first.utc.parse().ok();
        let last: Option<DateTime<Utc>> = v.last.utc.parse().ok();
        if let (Some(f), Some(l)) = (first, last) {
            v.took = duration_ms(between(f, l));
        }
        if !v.passed {
            v.outcome = match e.outcome.as_ref().map(|o| o.code.as_str()) {
                Some("timed_out") => "timed_out",
                Some("failed") => "failed",
                _ if e.kind == "rung" || run_finished => "failed",
                _ => "pending",
            }
            .to_owned();
        }
        v.label = match v.outcome.as_str() {
            "passed" => "passed",
            "timed_out" => "TIMED OUT",
            "failed" => "did not pass",
            _ => "still polling",
        }
        .to_owned();
        if let Some(a) = acc.verify_op
            && let Some(r) = &a.result
        {
            result_details(
                &format!("the last verification poll ({})", a.op.display),
                r,
                &mut e.details,
            );
        }
    }
    e
}
