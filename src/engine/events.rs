//! The one stream every event of a run goes through, and its consumers.
//!
//! [`Events::emit`] is the only way the engine says what happened. An event is
//! redacted once, then handed out in a fixed order:
//!
//! 1. the journal (through the [`Recorder`]): written, and fsynced when the caller
//!    says so, *before* anyone else hears of it. An action's `op_started` is durable
//!    before the action runs, and no console line or notification can claim something
//!    the journal does not have if the process dies right after;
//! 2. the [`RunState`], which applies it (the same fold `resume` and the postmortem
//!    use);
//! 3. the reporters, in order: the console ([`super::Printer`]) first, then any
//!    others (a quiet one in tests; a notifier or a web view later).
//!
//! Transient messages ([`Progress`]: bar ticks, and the console-only notices that no
//! event carries, such as a plan shown at a gate) travel on the same stream with
//! [`Events::progress`] but are never journaled and never change the state.
//!
//! Held events ([`Events::defer`]): a step's start, an unattended gate's request and
//! decision, and the end of a step's only operation are applied to the state at once
//! but written with the event that follows them (the step's first `op_started`,
//! fsynced before its operation runs; the step's end), so an unattended one-action
//! step takes three journal appends instead of seven. They are never held across a
//! wait: every other emit, a sync, a notice or bar, a read of the journal's end, a
//! retry's back-off, and the places that ask a provider before journaling anything
//! (`assess`, `preview`, `keep`) write them first. Nothing rests on them being
//! durable sooner: a held start means nothing had started that the journal does not
//! show (`resume` starts the step over), and a held operation end lost with the
//! process reads as "outcome unknown", which `resume` re-verifies, as it does for an
//! end lost in a crash (those lines are not fsynced either). Reporters hear of a held
//! event when it is written.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

use super::EngineError;
use super::approve::GateRequest;
use super::record::Recorder;
use crate::journal::event::{Event, Record, Scope};
use crate::journal::state::RunState;

/// A consumer of a run's events. Reporters cannot fail the run: whatever they do
/// with an event (print it, send it), the journal already has it.
pub trait Reporter: Send + Sync {
    /// An event, after the journal has it and `state` has applied it.
    fn event(&self, event: &Event, state: &RunState);

    /// The same, with the journal line's `seq` and time: for a reporter that
    /// repeats the journal (`--events json`). By default, [`Reporter::event`].
    fn record(&self, record: &Record, state: &RunState) {
        self.event(&record.event, state);
    }

    /// A transient message: never journaled.
    fn progress(&self, _message: &Progress) {}

    /// True when it draws progress bars; when no reporter does, bar updates are not
    /// even sent (a run without a terminal pays nothing for them).
    fn draws_bars(&self) -> bool {
        false
    }
}

/// A reporter that ignores everything: for tests and for callers that only want the
/// journal.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Reporter for Quiet {
    fn event(&self, _event: &Event, _state: &RunState) {}
}

/// `--events json`: every event of the run, as the journal has it (the same line:
/// `seq`, `ts`, the event, secrets already redacted by the journal's [`Recorder`]),
/// one JSON object per line on stdout, as it happens. For CI pipelines that follow a
/// run without parsing the console. Notes appended by another process (`runbook
/// note`) are in the journal but not in this stream.
pub struct JsonLines {
    out: Mutex<Box<dyn std::io::Write + Send>>,
}

impl JsonLines {
    /// Lines on stdout.
    pub fn stdout() -> JsonLines {
        JsonLines::to(Box::new(std::io::stdout()))
    }

    /// Lines into any writer (tests).
    pub fn to(out: Box<dyn std::io::Write + Send>) -> JsonLines {
        JsonLines {
            out: Mutex::new(out),
        }
    }
}

impl std::fmt::Debug for JsonLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsonLines")
    }
}

impl Reporter for JsonLines {
    fn event(&self, _event: &Event, _state: &RunState) {}

    fn record(&self, record: &Record, _state: &RunState) {
        // A reader that went away (`| head`) must not fail the run: the journal has
        // every event regardless.
        if let Ok(line) = serde_json::to_string(record) {
            let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

/// Which progress bar a [`Progress::Bar`] message is about.
pub type BarId = u64;

/// What kind of bar to draw.
#[derive(Debug, Clone)]
pub enum BarKind {
    /// A running operation: spinner, its display line and the time elapsed.
    Spinner { message: String },
    /// done/total of a `for_each`.
    Items { total: u64 },
    /// Seconds of a verification's `within`.
    Countdown { within: Duration, message: String },
}

/// A change to a progress bar.
#[derive(Debug, Clone)]
pub enum BarUpdate {
    Start(BarKind),
    Position(u64),
    Inc,
    Message(String),
    Finish,
}

/// A transient message on the stream: never journaled, never applied to the state.
#[derive(Debug, Clone)]
pub enum Progress {
    Bar { id: BarId, update: BarUpdate },
    Notice(Notice),
}

/// Something the console tells a person that no event carries: plans, dry-run
/// notes, what resume does about an action it cannot tell the outcome of.
#[derive(Debug, Clone)]
pub enum Notice {
    /// The plan of an action at a gate (`header`: `plan of` or, in a dry run,
    /// `would run`).
    Plan {
        request: GateRequest,
        header: &'static str,
    },
    /// The same plan was approved before the run stopped.
    ApprovedEarlier {
        by: String,
    },
    /// An earlier approval was of another plan.
    StaleApproval {
        by: String,
        then: String,
        now: String,
    },
    /// Approvals of this plan older than the gate's `expires:` no longer count.
    ExpiredApproval {
        by: String,
        at: chrono::DateTime<chrono::Utc>,
    },
    /// A plan over its step's `limit:` that only an explicit approval opens.
    OverLimit {
        message: String,
    },
    /// A quorum gate has some approvals and waits for more.
    AwaitingApprovals {
        have: Vec<String>,
        needed: u32,
        how: String,
    },
    /// The same person approved again: it counts once.
    SamePerson {
        by: String,
    },
    /// This process's answer at a gate came after another process's decision
    /// (`runbook approve`, `runbook serve`) settled it: not journaled. `by` names
    /// who decided and how (`bob (approved)`).
    DecidedElsewhere {
        by: String,
        yours: String,
    },
    /// A decision from another process settled the gate while the terminal asked:
    /// the question is closed, and the next line typed answers the next question.
    PromptClosed {
        by: String,
    },
    /// A dry run does not verify.
    WouldVerify {
        title: String,
    },
    /// A dry run does not ask a manual step.
    WouldAsk {
        instruction: String,
    },
    /// A dry run does not ask a person (a manual part of a step).
    WouldAskPerson {
        instruction: String,
    },
    /// A dry run of a ladder's manual rung.
    WouldAskRung {
        rung: String,
        title: String,
        instruction: String,
    },
    /// A dry run could not resolve a rung's operation.
    CannotPlan {
        rung: String,
        error: String,
    },
    /// Operations whose outcome the journal does not know (the run stopped
    /// mid-action).
    UnknownOutcomes {
        step: String,
        count: usize,
    },
    /// ... and no verification can tell.
    NoVerificationToTell,
    /// ... so the verification runs once first.
    Reverifying,
    ReverifyHolds,
    ReverifyFails {
        detail: String,
    },
    /// A verification starts polling.
    Verifying {
        title: String,
        within: Duration,
    },
    /// A resumed rung (its `rung_started` is already in the journal).
    RungResumed {
        index: usize,
        of: usize,
        rung: String,
        title: String,
    },
    /// A rung's operations failed; its verification runs anyway.
    RungErrors {
        rung: String,
        errors: String,
    },
}

type Reporters = Arc<[Arc<dyn Reporter>]>;

fn send(reporters: &Reporters, message: &Progress) {
    for r in reporters.iter() {
        r.progress(message);
    }
}

/// The stream: the journal sink, the run state, the reporters.
pub(crate) struct Events {
    journal: Recorder,
    state: Mutex<RunState>,
    reporters: Reporters,
    bars: bool,
    next_bar: AtomicU64,
    /// Events applied to the state, redacted and stamped, that the journal and the
    /// reporters get with the next append ([`Events::defer`]).
    held: Mutex<Vec<Stamped>>,
}

type Stamped = (chrono::DateTime<chrono::Utc>, Event);

/// A stream dropped with events still held (an error path that journaled nothing
/// after a step's start) writes them: the journal is not left behind the state.
impl Drop for Events {
    fn drop(&mut self) {
        self.flush_quietly();
    }
}

impl Events {
    /// A stream over `journal`, starting from `state` (empty for a new run, the
    /// journal's fold on resume).
    pub(crate) fn new(
        journal: Recorder,
        state: RunState,
        reporters: Vec<Arc<dyn Reporter>>,
    ) -> Events {
        let bars = reporters.iter().any(|r| r.draws_bars());
        Events {
            journal,
            state: Mutex::new(state),
            reporters: reporters.into(),
            bars,
            next_bar: AtomicU64::new(0),
            held: Mutex::new(Vec::new()),
        }
    }

    /// Journal an event (durable before this returns when `sync`), apply it to the
    /// run state, then hand it to every reporter in order. Held events go first, in
    /// the same append.
    pub(crate) fn emit(&self, event: Event, sync: bool) -> Result<(), EngineError> {
        let mut held = self.held();
        if !held.is_empty() {
            return self.write_with(&mut held, vec![event], sync);
        }
        drop(held);
        let record = self.journal.append(event, sync)?;
        self.publish_after(std::slice::from_ref(&record), 0);
        Ok(())
    }

    /// Apply `event` to the run state now and write it with the next append
    /// (see the module's "Held events"). For events that nothing waits on and
    /// that another event follows without the engine waiting for anything: a
    /// step's start, an unattended gate's request and decision, the end of a
    /// step's only operation.
    pub(crate) fn defer(&self, event: Event) {
        let (ts, event) = self.journal.stamp(event);
        let mut held = self.held();
        self.state().apply(ts, &event);
        held.push((ts, event));
    }

    /// Write the held events now (before the engine waits on something that does
    /// not journal first).
    pub(crate) fn flush(&self) -> Result<(), EngineError> {
        let mut held = self.held();
        if held.is_empty() {
            return Ok(());
        }
        self.write_with(&mut held, Vec::new(), false)
    }

    /// [`Events::flush`] where an error cannot be returned (a notice, a bar): the
    /// events stay held and the next emit writes them or reports the error.
    fn flush_quietly(&self) {
        let _ = self.flush();
    }

    fn held(&self) -> MutexGuard<'_, Vec<Stamped>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The held events (if any), then `events` stamped now, in one append; the held
    /// ones are only reported (the state has them), the new ones applied and
    /// reported. On an error nothing was written and the held events stay held.
    fn write_with(
        &self,
        held: &mut Vec<Stamped>,
        events: Vec<Event>,
        sync: bool,
    ) -> Result<(), EngineError> {
        let n = held.len();
        let fresh: Vec<Stamped> = events.into_iter().map(|e| self.journal.stamp(e)).collect();
        let lines: Vec<(chrono::DateTime<chrono::Utc>, &Event)> = held
            .iter()
            .chain(fresh.iter())
            .map(|(ts, e)| (*ts, e))
            .collect();
        let first = self.journal.write_stamped(&lines, sync)?;
        drop(lines);
        let records: Vec<Record> = held
            .drain(..)
            .chain(fresh)
            .zip(first..)
            .map(|((ts, event), seq)| Record { seq, ts, event })
            .collect();
        self.publish_after(&records, n);
        Ok(())
    }

    /// [`Events::emit`] of several events, journaled with one lock and one write
    /// (and one fsync when `sync`), then applied and reported one by one in order.
    pub(crate) fn emit_all(&self, events: Vec<Event>, sync: bool) -> Result<(), EngineError> {
        if events.is_empty() {
            // Nothing to say: held events stay held for the next one.
            return Ok(());
        }
        self.write_with(&mut self.held(), events, sync)
    }

    /// Report journaled `records` in order; all but the first `applied` are
    /// applied to the run state first (those were applied when they were held).
    fn publish_after(&self, records: &[Record], applied: usize) {
        let mut state = self.state();
        for (i, record) in records.iter().enumerate() {
            if i >= applied {
                state.apply(record.ts, &record.event);
            }
            for r in self.reporters.iter() {
                r.record(record, &state);
            }
        }
    }

    /// [`Events::emit_all`] with `sync`, the fsync awaited on a blocking thread
    /// ([`Recorder::append_all_durable`]) so that operations already running go on
    /// meanwhile. The events are applied and reported once they are durable.
    pub(crate) async fn emit_all_durable(&self, events: Vec<Event>) -> Result<(), EngineError> {
        if events.is_empty() {
            return Ok(());
        }
        // Taken out before the await: a held event is written once, here.
        let mut stamped = std::mem::take(&mut *self.held());
        let n = stamped.len();
        stamped.extend(events.into_iter().map(|e| self.journal.stamp(e)));
        let records = self.journal.append_all_durable(stamped).await?;
        self.publish_after(&records, n);
        Ok(())
    }

    /// [`Events::emit`] only if `write` agrees with the records other processes
    /// appended to the journal from byte `from` on (checked under the journal's
    /// lock). Returns whether it was written, the records read, and the offset to
    /// read on from.
    pub(crate) fn emit_checked(
        &self,
        event: Event,
        sync: bool,
        from: u64,
        write: impl FnOnce(&[Record]) -> bool,
    ) -> Result<(bool, Vec<Record>, u64), EngineError> {
        self.flush()?;
        let (record, tail, next) = self.journal.append_checked(event, sync, from, write)?;
        let Some(record) = record else {
            return Ok((false, tail, next));
        };
        let mut state = self.state();
        state.apply(record.ts, &record.event);
        for r in self.reporters.iter() {
            r.record(&record, &state);
        }
        Ok((true, tail, next))
    }

    /// A transient message to the reporters; not journaled.
    pub(crate) fn progress(&self, message: Progress) {
        // What a person reads comes in order: a held step start before its plan.
        self.flush_quietly();
        send(&self.reporters, &message);
    }

    pub(crate) fn notice(&self, notice: Notice) {
        self.progress(Progress::Notice(notice));
    }

    /// The run state as of the last event emitted. Hold it briefly: `emit` waits
    /// for it.
    pub(crate) fn state(&self) -> MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new progress bar; a no-op handle when no reporter draws bars.
    pub(crate) fn bar(&self, kind: BarKind) -> Bar {
        if !self.bars {
            return Bar(None);
        }
        self.flush_quietly();
        let id = self.next_bar.fetch_add(1, Ordering::Relaxed);
        let bar = Bar(Some((id, Arc::clone(&self.reporters))));
        bar.send(BarUpdate::Start(kind));
        bar
    }

    /// A bar handle that draws nothing.
    pub(crate) fn no_bar(&self) -> Bar {
        Bar(None)
    }

    /// An event another process appended to the journal (`runbook approve`): the
    /// journal has it already, so it is only applied to the state and told to the
    /// reporters.
    pub(crate) fn observe(&self, record: &Record) {
        let mut state = self.state();
        state.apply(record.ts, &record.event);
        for r in self.reporters.iter() {
            r.record(record, &state);
        }
    }

    /// Where the journal is, and how many bytes of it this process has seen written
    /// (its own appends): where to look for what other processes append.
    pub(crate) fn journal_end(&self) -> (std::path::PathBuf, u64) {
        self.flush_quietly();
        self.journal.end()
    }

    /// Make every event emitted so far durable (held ones written first).
    pub(crate) fn sync(&self) -> Result<(), EngineError> {
        self.flush()?;
        self.journal.sync()
    }

    pub(crate) fn redact(&self, s: &str) -> String {
        self.journal.redact(s)
    }

    pub(crate) fn redact_value(&self, v: &Value) -> Value {
        self.journal.redact_value(v)
    }

    /// Where the operation of `scope` streams output past the in-memory cap (see
    /// [`Recorder::spill`]).
    pub(crate) fn spill(&self, scope: &Scope) -> crate::providers::limits::SpillTo {
        self.journal.spill(scope)
    }

    /// A result as journaled (see [`Recorder::bounded`]).
    pub(crate) fn bounded(&self, scope: &Scope, result: &Value) -> (Value, Option<String>) {
        self.journal.bounded(scope, result)
    }

    /// See [`Recorder::side_file_of`].
    pub(crate) fn side_file_of(&self, scope: &Scope) -> Option<String> {
        self.journal.side_file_of(scope)
    }
}

/// A handle on one progress bar; every update is a [`Progress::Bar`] message to the
/// stream's reporters. `None` when no reporter draws bars.
pub(crate) struct Bar(Option<(BarId, Reporters)>);

impl Bar {
    fn send(&self, update: BarUpdate) {
        if let Some((id, reporters)) = &self.0 {
            send(reporters, &Progress::Bar { id: *id, update });
        }
    }

    pub(crate) fn inc(&self) {
        self.send(BarUpdate::Inc);
    }

    pub(crate) fn set_message(&self, message: String) {
        self.send(BarUpdate::Message(message));
    }

    pub(crate) fn set_position(&self, pos: u64) {
        self.send(BarUpdate::Position(pos));
    }

    pub(crate) fn finish(&self) {
        self.send(BarUpdate::Finish);
    }
}

/// A bar left behind by an early return is taken down, not left drawn.
impl Drop for Bar {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use super::*;
    use crate::engine::SystemClock;
    use crate::journal::event::{Outcome, RunbookRef};
    use crate::journal::reader;
    use crate::journal::writer::Writer;

    /// Remembers what it heard, and how many lines the journal had at that moment.
    struct Spy {
        journal: PathBuf,
        heard: Mutex<Vec<(String, usize)>>,
    }

    impl Spy {
        fn lines(&self) -> usize {
            reader::read(&self.journal)
                .map(|j| j.records.len())
                .unwrap_or(0)
        }
    }

    impl Reporter for Spy {
        fn event(&self, event: &Event, state: &RunState) {
            let name = serde_json::to_value(event)
                .ok()
                .and_then(|v| v["event"].as_str().map(str::to_string))
                .unwrap_or_default();
            // The state has applied the event before any reporter hears of it.
            assert_eq!(state.run_id, "r1");
            self.heard.lock().unwrap().push((name, self.lines()));
        }

        fn progress(&self, message: &Progress) {
            if let Progress::Notice(Notice::Reverifying) = message {
                self.heard
                    .lock()
                    .unwrap()
                    .push(("notice".into(), self.lines()));
            }
        }
    }

    fn stream(dir: &Path, secrets: Vec<String>, reporters: Vec<Arc<dyn Reporter>>) -> Events {
        let path = dir.join("journal.ndjson");
        let writer = Writer::create(&path).unwrap();
        let rec = Recorder::new(writer, Arc::new(SystemClock), secrets, dir, 16 * 1024);
        Events::new(rec, RunState::default(), reporters)
    }

    fn started() -> Event {
        Event::RunStarted {
            format: 1,
            run_id: "r1".into(),
            runbook: RunbookRef::default(),
            params: serde_json::Map::new(),
            operator: "ana".into(),
            host: "h".into(),
            tool_version: "0".into(),
            dry_run: false,
            target: None,
        }
    }

    #[test]
    fn the_journal_has_every_event_before_any_reporter_hears_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let spy = Arc::new(Spy {
            journal: dir.path().join("journal.ndjson"),
            heard: Mutex::default(),
        });
        let events = stream(dir.path(), Vec::new(), vec![spy.clone(), Arc::new(Quiet)]);
        events.emit(started(), true).unwrap();
        events.notice(Notice::Reverifying);
        events
            .emit(
                Event::StepSkipped {
                    step: "a".into(),
                    reason: "no".into(),
                },
                false,
            )
            .unwrap();
        let heard = spy.heard.lock().unwrap().clone();
        assert_eq!(
            heard,
            vec![
                ("run_started".to_string(), 1),
                // A notice is never journaled.
                ("notice".to_string(), 1),
                ("step_skipped".to_string(), 2),
            ]
        );
        assert!(events.state().steps["a"].is_done());
    }

    #[test]
    fn reporters_and_the_state_see_the_event_as_journaled_with_secrets_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let events = stream(dir.path(), vec!["hunter2".into()], Vec::new());
        events.emit(started(), true).unwrap();
        events
            .emit(
                Event::StepFinished {
                    step: "login".into(),
                    outcome: Outcome::Failed,
                    duration_ms: 1,
                    summary: "bad password hunter2".into(),
                    fixed_by: None,
                },
                true,
            )
            .unwrap();
        let state = events.state();
        assert_eq!(
            state.steps["login"].summary.as_deref(),
            Some("bad password ***")
        );
        let text = std::fs::read_to_string(dir.path().join("journal.ndjson")).unwrap();
        assert!(!text.contains("hunter2"));
    }

    fn step_started(id: &str) -> Event {
        Event::StepStarted {
            step: id.into(),
            title: "t".into(),
            kind: "action".into(),
        }
    }

    fn skipped(id: &str) -> Event {
        Event::StepSkipped {
            step: id.into(),
            reason: "no".into(),
        }
    }

    fn spy_on(dir: &Path) -> Arc<Spy> {
        Arc::new(Spy {
            journal: dir.join("journal.ndjson"),
            heard: Mutex::default(),
        })
    }

    #[test]
    fn a_held_event_is_in_the_state_at_once_and_written_in_order_with_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let spy = spy_on(dir.path());
        let events = stream(dir.path(), Vec::new(), vec![spy.clone()]);
        events.emit(started(), true).unwrap();
        events.defer(step_started("a"));
        // The state has it; the journal and the reporters do not yet.
        assert!(events.state().steps["a"].started);
        assert_eq!(spy.lines(), 1);
        assert_eq!(spy.heard.lock().unwrap().len(), 1);
        // Nothing to say is not a reason to write what is held.
        events.emit_all(Vec::new(), false).unwrap();
        assert_eq!(spy.lines(), 1);
        events.emit(skipped("b"), false).unwrap();
        let journal = reader::read(&dir.path().join("journal.ndjson")).unwrap();
        let names: Vec<String> = journal
            .records
            .iter()
            .map(|r| serde_json::to_value(&r.event).unwrap()["event"].to_string())
            .collect();
        assert_eq!(
            names,
            vec!["\"run_started\"", "\"step_started\"", "\"step_skipped\""]
        );
        assert_eq!(
            journal.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        // Reporters heard the held event after the journal had it, and in order.
        assert_eq!(
            spy.heard.lock().unwrap().clone(),
            vec![
                ("run_started".to_string(), 1),
                ("step_started".to_string(), 3),
                ("step_skipped".to_string(), 3),
            ]
        );
        // Applied once: the held start is not applied again when it is written.
        assert!(events.state().steps["a"].started);
        assert!(events.state().steps["b"].is_done());
    }

    #[test]
    fn held_events_are_written_before_a_notice_a_sync_a_read_of_the_end_or_the_stream_ends() {
        let dir = tempfile::tempdir().unwrap();
        let spy = spy_on(dir.path());
        let events = stream(dir.path(), Vec::new(), vec![spy.clone()]);
        events.emit(started(), true).unwrap();

        events.defer(step_started("a"));
        events.notice(Notice::Reverifying);
        assert_eq!(spy.lines(), 2, "a notice comes after the held start");
        assert_eq!(
            spy.heard.lock().unwrap().last().unwrap().0,
            "notice",
            "the console reads the start before the notice"
        );

        events.defer(step_started("b"));
        events.sync().unwrap();
        assert_eq!(spy.lines(), 3);

        events.defer(step_started("c"));
        let (path, end) = events.journal_end();
        assert_eq!(end, std::fs::metadata(&path).unwrap().len());
        assert_eq!(spy.lines(), 4);

        events.defer(step_started("d"));
        drop(events);
        assert_eq!(spy.lines(), 5, "a dropped stream writes what it held");
    }

    #[tokio::test]
    async fn held_events_ride_with_a_durable_group_start() {
        let dir = tempfile::tempdir().unwrap();
        let spy = spy_on(dir.path());
        let events = stream(dir.path(), Vec::new(), vec![spy.clone()]);
        events.emit(started(), true).unwrap();
        events.defer(step_started("a"));
        events.emit_all_durable(vec![skipped("b")]).await.unwrap();
        assert_eq!(spy.lines(), 3);
        let heard: Vec<String> = spy
            .heard
            .lock()
            .unwrap()
            .iter()
            .map(|h| h.0.clone())
            .collect();
        assert_eq!(heard, vec!["run_started", "step_started", "step_skipped"]);
    }

    #[test]
    fn without_a_reporter_that_draws_bars_no_bar_message_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let events = stream(dir.path(), Vec::new(), vec![Arc::new(Quiet)]);
        let bar = events.bar(BarKind::Items { total: 3 });
        assert!(bar.0.is_none());
    }
}
