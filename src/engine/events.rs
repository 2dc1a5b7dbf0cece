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
        }
    }

    /// Journal an event (durable before this returns when `sync`), apply it to the
    /// run state, then hand it to every reporter in order.
    pub(crate) fn emit(&self, event: Event, sync: bool) -> Result<(), EngineError> {
        let record = self.journal.append(event, sync)?;
        let mut state = self.state();
        state.apply(record.ts, &record.event);
        for r in self.reporters.iter() {
            r.record(&record, &state);
        }
        Ok(())
    }

    /// [`Events::emit`] of several events, journaled with one lock and one write
    /// (and one fsync when `sync`), then applied and reported one by one in order.
    pub(crate) fn emit_all(&self, events: Vec<Event>, sync: bool) -> Result<(), EngineError> {
        if events.is_empty() {
            return Ok(());
        }
        let records = self.journal.append_all(events, sync)?;
        self.publish(&records);
        Ok(())
    }

    /// Apply journaled `records` to the run state and report them, in order.
    fn publish(&self, records: &[Record]) {
        let mut state = self.state();
        for record in records {
            state.apply(record.ts, &record.event);
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
        let records = self.journal.append_all_durable(events).await?;
        self.publish(&records);
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
        self.journal.end()
    }

    /// Make every event written so far durable.
    pub(crate) fn sync(&self) -> Result<(), EngineError> {
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

    #[test]
    fn without_a_reporter_that_draws_bars_no_bar_message_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let events = stream(dir.path(), Vec::new(), vec![Arc::new(Quiet)]);
        let bar = events.bar(BarKind::Items { total: 3 });
        assert!(bar.0.is_none());
    }
}
