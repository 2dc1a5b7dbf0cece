//! The engine's side of the journal: redaction by structure (see [`super::redact`]),
//! bounded outputs with side files, and the fsync policy.
//!
//! fsync policy (why fewer fsyncs are still crash-safe): an event is synced, together
//! with every event written before it, when the engine is about to act on the outside
//! world (an operation start, a gate decision), when a mutating operation finishes (so
//! a resumed run does not redo it), and at the end of a run or a pause. The results of
//! read-only operations are written without a sync: if the process dies before the
//! next sync, those lines are lost (or torn, which the reader ignores) and `resume`
//! simply runs the read-only operation again — harmless by definition.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use chrono::SubsecRound;
use serde_json::Value;

use super::redact::{Redactor, StreamMask};
use super::{Clock, EngineError};
use crate::journal::event::{ApiCall, Event, PlannedOp, Record, Scope};
use crate::journal::writer::{WriteError, Writer};
use crate::providers::limits::{Spill, SpillFile, SpillTo, SpillWriter};
use crate::store::{SideFiles, SideStream};

impl From<WriteError> for EngineError {
    fn from(e: WriteError) -> EngineError {
        match e {
            WriteError::Io { path, source } => EngineError::Write { path, source },
            // A journal at the end of its numbering was forged or damaged: bad input.
            e @ WriteError::SeqExhausted(_) => EngineError::Resume(e.to_string()),
            e @ (WriteError::Exists(_) | WriteError::Unreadable(_)) => {
                EngineError::Journal(e.to_string())
            }
        }
    }
}

pub(crate) struct Recorder {
    writer: Mutex<Writer>,
    clock: std::sync::Arc<dyn Clock>,
    /// The run's secrets: the secret params', and credential headers learned from
    /// resolved operations as they are journaled.
    /// Shared with the operations' side-file streams ([`Recorder::spill`]).
    secrets: Arc<RwLock<Redactor>>,
    max_inline: usize,
    side_files: Arc<SideFiles>,
    /// The scope of the last result [`Recorder::bounded`] journaled and the side
    /// file it went to (None: inline), so that `save:` of that same result names
    /// the same file without serialising and hashing it again
    /// ([`Recorder::side_file_of`]).
    last_bounded: Mutex<Option<(Scope, Option<String>)>>,
}

/// What a run cost in fsyncs, for `-vv` (and the test that proves group commit:
/// `tests/integration/robust_group_commit.rs` reads this line).
impl Drop for Recorder {
    fn drop(&mut self) {
        let w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        tracing::debug!(fsyncs = w.fsyncs(), journal = %w.path().display(), "journal closed");
    }
}

/// A string in journaled results longer than this is cut when the result is too big.
const MAX_STRING: usize = 2048;

impl Recorder {
    pub(crate) fn new(
        writer: Writer,
        clock: std::sync::Arc<dyn Clock>,
        secrets: Vec<String>,
        run_dir: &Path,
        max_inline: usize,
    ) -> Recorder {
        Recorder {
            writer: Mutex::new(writer),
            clock,
            secrets: Arc::new(RwLock::new(Redactor::new(secrets))),
            max_inline,
            side_files: Arc::new(SideFiles::open(run_dir)),
            last_bounded: Mutex::new(None),
        }
    }

    /// Journal an event, redacted; `sync` makes it (and everything before it) durable
    /// before this returns. Returns the record as journaled (its `seq`, its time, the
    /// redacted event), for the rest of the stream ([`super::events::Events`]).
    pub(crate) fn append(&self, event: Event, sync: bool) -> Result<Record, EngineError> {
        let event = self.redact_event(event);
        let ts = self.clock.now();
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(
                event = %serde_json::to_string(&event).unwrap_or_default(),
                sync,
                "journal"
            );
        }
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let seq = w.append_ref(ts, &event, sync)?;
        // The journal keeps millisecond precision; the state sees the same time.
        Ok(Record {
            seq,
            ts: ts.trunc_subsecs(3),
            event,
        })
    }

    /// [`Recorder::append_stamped`] of borrowed events: the first line's `seq` (the
    /// others follow it), nothing written on an error.
    pub(crate) fn write_stamped(
        &self,
        events: &[(chrono::DateTime<chrono::Utc>, &Event)],
        sync: bool,
    ) -> Result<u64, EngineError> {
        if tracing::enabled!(tracing::Level::DEBUG) {
            for (_, event) in events {
                tracing::debug!(
                    event = %serde_json::to_string(event).unwrap_or_default(),
                    sync,
                    "journal"
                );
            }
        }
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        Ok(w.append_stamped(events, sync)?)
    }

    /// An event redacted and stamped with the time it happened, to be written later
    /// with the next one ([`Recorder::append_stamped`]; see `Events::defer`). The
    /// journal keeps milliseconds; so does the stamp, and the state that sees it.
    pub(crate) fn stamp(&self, event: Event) -> (chrono::DateTime<chrono::Utc>, Event) {
        let event = self.redact_event(event);
        (self.clock.now().trunc_subsecs(3), event)
    }

    /// Write events already redacted and stamped ([`Recorder::stamp`]) under one
    /// lock with one `write`, each line with its own time; fsynced once when `sync`.
    pub(crate) fn append_stamped(
        &self,
        events: Vec<(chrono::DateTime<chrono::Utc>, Event)>,
        sync: bool,
    ) -> Result<Vec<Record>, EngineError> {
        let refs: Vec<(chrono::DateTime<chrono::Utc>, &Event)> =
            events.iter().map(|(ts, e)| (*ts, e)).collect();
        let first = self.write_stamped(&refs, sync)?;
        Ok(events
            .into_iter()
            .zip(first..)
            .map(|((ts, event), seq)| Record { seq, ts, event })
            .collect())
    }

    /// [`Recorder::append_stamped`], made durable before this returns by an fsync run on
    /// a blocking thread: while the disk works, the engine's thread goes on with
    /// the operations already running (their results are appended meanwhile; the
    /// fsync covers at least every line written before it started).
    pub(crate) async fn append_all_durable(
        &self,
        events: Vec<(chrono::DateTime<chrono::Utc>, Event)>,
    ) -> Result<Vec<Record>, EngineError> {
        let records = self.append_stamped(events, false)?;
        let pending = self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .detach_sync()?;
        if let Some(pending) = pending {
            let done = tokio::task::spawn_blocking(move || pending.run()).await;
            let failed = match done {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(EngineError::from(e)),
                // The thread could not run it (the runtime is shutting down): sync
                // here instead.
                Err(_) => {
                    self.writer
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .mark_unsynced();
                    self.sync().err()
                }
            };
            if let Some(e) = failed {
                self.writer
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .mark_unsynced();
                return Err(e);
            }
        }
        Ok(records)
    }

    /// [`Recorder::append`] only if `write` agrees with what other processes
    /// appended from byte `from` on, checked under the journal's lock
    /// ([`crate::journal::writer::Writer::append_checked`]). Returns the record when
    /// written, the records read, and the offset to read on from.
    pub(crate) fn append_checked(
        &self,
        event: Event,
        sync: bool,
        from: u64,
        write: impl FnOnce(&[Record]) -> bool,
    ) -> Result<(Option<Record>, Vec<Record>, u64), EngineError> {
        let event = self.redact_event(event);
        let ts = self.clock.now();
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let (seq, tail, next) = w.append_checked(ts, &event, sync, from, write)?;
        let record = seq.map(|seq| Record {
            seq,
            ts: ts.trunc_subsecs(3),
            event,
        });
        Ok((record, tail, next))
    }

    /// The journal's path and the end of this process's last append.
    pub(crate) fn end(&self) -> (std::path::PathBuf, u64) {
        let w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        (w.path().to_owned(), w.written_len())
    }

    pub(crate) fn sync(&self) -> Result<(), EngineError> {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        Ok(w.sync()?)
    }

    fn redactor(&self) -> std::sync::RwLockReadGuard<'_, Redactor> {
        self.secrets.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Free text with every secret masked (see [`Redactor::mask`]).
    pub(crate) fn redact(&self, s: &str) -> String {
        self.redactor().mask(s)
    }

    /// A free-text value (a result, a resolved operation) masked throughout, keys
    /// included. Credential-named headers in it are learned as secrets first, so an
    /// `Authorization` value the runbook did not mark is masked here and in every
    /// later event.
    pub(crate) fn redact_value(&self, v: &Value) -> Value {
        self.learn(v);
        self.redactor().mask_value(v)
    }

    /// Learn the secrets a value reveals by its structure: credential-named headers,
    /// and the values of Kubernetes Secrets in it (see [`super::redact`]).
    fn learn(&self, v: &Value) {
        let mut found = Redactor::default();
        let mut values = Vec::new();
        super::redact::secret_object_values(v, &mut values);
        if found.learn_headers(v) || !values.is_empty() {
            let mut r = self.secrets.write().unwrap_or_else(|e| e.into_inner());
            r.learn_headers(v);
            for s in values {
                r.add(&s);
            }
        }
    }

    /// The event with its free-text leaves masked; its structure (step ids, scopes,
    /// enum tags, params, digests, counts) is never touched, so what is journaled
    /// reads back as the same steps and outcomes that ran.
    fn redact_event(&self, event: Event) -> Event {
        // Learn credential headers and Secret values before the lock is taken for
        // reading.
        match &event {
            Event::OpStarted { op, .. } => self.learn(&op.op),
            Event::GateRequested { ops, .. } => ops.iter().for_each(|op| self.learn(&op.op)),
            Event::OpFinished {
                result: Some(v), ..
            }
            | Event::Saved { value: v, .. } => self.learn(v),
            _ => {}
        }
        // With no secret known, Kubernetes Secrets are still masked by structure
        // (`mask_value`); free text is left as it is.
        let r = self.redactor();
        // Most runs know no secret and most events carry no Secret object: then
        // masking would rebuild the event as it is, so it is not rebuilt.
        if r.is_empty() && !holds_kube_secrets(&event) {
            return event;
        }
        let text = |s: String| r.mask(&s);
        let opt = |s: Option<String>| s.map(|s| r.mask(&s));
        let planned = |op: PlannedOp| PlannedOp {
            display: r.mask(&op.display),
            op: r.mask_value(&op.op),
            impact: op.impact.map(|i| crate::journal::event::Impact {
                summary: r.mask(&i.summary),
                ..i
            }),
            ..op
        };
        match event {
            Event::StepStarted { step, title, kind } => Event::StepStarted {
                step,
                title: text(title),
                kind,
            },
            Event::StepSkipped { step, reason } => Event::StepSkipped {
                step,
                reason: text(reason),
            },
            Event::GateRequested {
                step,
                rung,
                ops,
                digest,
                preview,
                quorum,
            } => Event::GateRequested {
                step,
                rung,
                ops: ops.into_iter().map(planned).collect(),
                digest,
                preview: preview.map(text),
                quorum,
            },
            Event::Paused {
                step,
                reason,
                resume,
            } => Event::Paused {
                step,
                reason: text(reason),
                resume,
            },
            Event::OpStarted { op, attempt } => Event::OpStarted {
                op: planned(op),
                attempt,
            },
            Event::OpFinished {
                scope,
                attempt,
                outcome,
                duration_ms,
                result,
                error,
                output_file,
                calls,
            } => Event::OpFinished {
                scope,
                attempt,
                outcome,
                duration_ms,
                result: result.map(|v| r.mask_value(&v)),
                error: opt(error),
                output_file,
                calls: calls
                    .into_iter()
                    .map(|c| ApiCall {
                        path: r.mask(&c.path),
                        kubectl: c.kubectl.map(|k| r.mask(&k)),
                        ..c
                    })
                    .collect(),
            },
            Event::ManualRequested { scope, instruction } => Event::ManualRequested {
                scope,
                instruction: text(instruction),
            },
            Event::VerifyPolled {
                scope,
                attempt,
                ok,
                detail,
            } => Event::VerifyPolled {
                scope,
                attempt,
                ok,
                detail: opt(detail),
            },
            Event::RungStarted {
                step,
                rung,
                title,
                index,
                of,
            } => Event::RungStarted {
                step,
                rung,
                title: text(title),
                index,
                of,
            },
            Event::Escalated {
                step,
                from,
                to,
                reason,
            } => Event::Escalated {
                step,
                from,
                to,
                reason: text(reason),
            },
            Event::Saved { step, name, value } => Event::Saved {
                step,
                name,
                value: r.mask_value(&value),
            },
            Event::StepFinished {
                step,
                outcome,
                duration_ms,
                summary,
                fixed_by,
            } => Event::StepFinished {
                step,
                outcome,
                duration_ms,
                summary: text(summary),
                fixed_by,
            },
            Event::UndoBegun { status, reason, by } => Event::UndoBegun {
                status,
                reason: opt(reason),
                by,
            },
            Event::UndoStarted {
                step,
                title,
                items,
                by,
            } => Event::UndoStarted {
                step,
                title: text(title),
                items,
                by,
            },
            Event::UndoFinished {
                step,
                outcome,
                duration_ms,
                summary,
            } => Event::UndoFinished {
                step,
                outcome,
                duration_ms,
                summary: text(summary),
            },
            Event::UndoSkipped { step, reason } => Event::UndoSkipped {
                step,
                reason: text(reason),
            },
            Event::Note { text: t, by, at } => Event::Note {
                text: text(t),
                by,
                at,
            },
            Event::RunFinished {
                status,
                duration_ms,
                reason,
            } => Event::RunFinished {
                status,
                duration_ms,
                reason: opt(reason),
            },
            // Identity, params (secret ones are journaled as references by the
            // engine), decisions and who made them: structure, never rewritten.
            other @ (Event::RunStarted { .. }
            | Event::RunResumed { .. }
            | Event::GateDecided { .. }
            | Event::StepRetried { .. }
            | Event::RunbookChanged { .. }
            | Event::ProcessStarted { .. }
            | Event::IncidentStart { .. }
            | Event::RunbookLinks { .. }
            | Event::ManualConfirmed { .. }) => other,
        }
    }

    /// A result as journaled: redacted, and when its JSON is larger than the inline
    /// bound, written whole to a side file (returned, relative to the run folder)
    /// while the journal keeps a copy with long strings cut.
    pub(crate) fn bounded(&self, scope: &Scope, result: &Value) -> (Value, Option<String>) {
        let (v, file) = self.bounded_uncached(scope, result);
        *self.last_bounded.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((scope.clone(), file.clone()));
        (v, file)
    }

    /// The side file the last result [`Recorder::bounded`] kept went to, if that
    /// result was of `scope` and went to one. The caller vouches that the value it
    /// is about to journal is that same result (a step's `save:` of its single
    /// operation's result, right after the operation).
    pub(crate) fn side_file_of(&self, scope: &Scope) -> Option<String> {
        match &*self.last_bounded.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((s, file)) if s == scope => file.clone(),
            _ => None,
        }
    }

    fn bounded_uncached(&self, scope: &Scope, result: &Value) -> (Value, Option<String>) {
        self.learn(result);
        // Masked without a copy when there is nothing to mask: a large result is
        // only read (measured, written to its side file, cut), never rebuilt whole.
        let redactor = self.redactor();
        let v = redactor.mask_value_cow(result);
        drop(redactor);
        // Counted, not kept: a 1 000-pod list is 1.4 MB that only its size was
        // needed of (the side file holds the pretty form).
        let mut size = ByteCount(0);
        let _ = serde_json::to_writer(&mut size, &*v);
        if size.0 <= self.max_inline {
            return (v.into_owned(), None);
        }
        let label = label(scope);
        let bytes = serde_json::to_vec_pretty(&*v).unwrap_or_default();
        match self.side_files.write(&label, &bytes) {
            Ok(file) => (truncate_strings(&v), Some(file)),
            // The disk is full (or the folder unwritable): the output is not lost
            // silently. The journal keeps the cut copy and says the whole was not kept.
            Err(e) => {
                let why = format!(
                    "the whole output ({} bytes) could not be written to a side file under {}: {e}; only this cut copy is kept",
                    bytes.len(),
                    self.side_files.dir().display()
                );
                tracing::warn!("{why}");
                (with_side_file_error(truncate_strings(&v), why), None)
            }
        }
    }
}

/// Whether any structured value of `event` (an operation, a result, a saved value)
/// holds a Kubernetes Secret that masking by structure would change.
fn holds_kube_secrets(event: &Event) -> bool {
    use super::redact::holds_kube_secrets as holds;
    match event {
        Event::OpStarted { op, .. } => holds(&op.op),
        Event::GateRequested { ops, .. } => ops.iter().any(|op| holds(&op.op)),
        Event::OpFinished {
            result: Some(v), ..
        }
        | Event::Saved { value: v, .. } => holds(v),
        _ => false,
    }
}

impl Recorder {
    /// Where the operation of `scope` writes a stream past the in-memory cap: a
    /// side file named after the step (`NNNN-<step>-stdout.txt`), written as it is
    /// read, with the run's secrets masked as they pass.
    pub(crate) fn spill(&self, scope: &Scope) -> SpillTo {
        SpillTo(Arc::new(RunSpill {
            files: Arc::clone(&self.side_files),
            secrets: Arc::clone(&self.secrets),
            label: label(scope),
            finished: Default::default(),
        }))
    }
}

/// The label of an operation's side files: its step, rung, item and `verify`.
fn label(scope: &Scope) -> String {
    let mut label = scope.step.clone();
    if let Some(r) = &scope.rung {
        label.push_str(&format!("-{r}"));
    }
    if let Some(i) = scope.item {
        label.push_str(&format!("-{i}"));
    }
    if scope.verification {
        label.push_str("-verify");
    }
    label
}

/// One operation's [`Spill`]: the run's side files and its secrets.
struct RunSpill {
    files: Arc<SideFiles>,
    secrets: Arc<RwLock<Redactor>>,
    label: String,
    /// The files finished so far (see [`Spill::finished`]).
    finished: Arc<std::sync::Mutex<Vec<SpillFile>>>,
}

impl Spill for RunSpill {
    fn create(&self, stream: &str, ext: &str) -> std::io::Result<Box<dyn SpillWriter>> {
        let mask = self
            .secrets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .stream_mask();
        let out = self
            .files
            .stream(&format!("{}-{stream}", self.label), ext)?;
        Ok(Box::new(RunSpillWriter {
            out,
            mask,
            stream: stream.to_owned(),
            bytes: 0,
            finished: Arc::clone(&self.finished),
        }))
    }

    fn finished(&self) -> Vec<SpillFile> {
        self.finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

struct RunSpillWriter {
    out: SideStream,
    mask: StreamMask,
    stream: String,
    bytes: u64,
    finished: Arc<std::sync::Mutex<Vec<SpillFile>>>,
}

impl SpillWriter for RunSpillWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.bytes += bytes.len() as u64;
        let masked = self.mask.push(bytes);
        self.out.write(&masked)
    }

    fn finish(mut self: Box<Self>) -> std::io::Result<String> {
        let rest = self.mask.finish();
        self.out.write(&rest)?;
        let file = self.out.finish()?;
        self.finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(SpillFile {
                stream: self.stream,
                file: file.clone(),
                bytes: self.bytes,
            });
        Ok(file)
    }
}

/// The key under which a cut result says its side file could not be written.
pub(crate) const SIDE_FILE_ERROR: &str = "$side_file_error";

fn with_side_file_error(v: Value, why: String) -> Value {
    match v {
        Value::Object(mut m) => {
            m.insert(SIDE_FILE_ERROR.into(), Value::String(why));
            Value::Object(m)
        }
        other => serde_json::json!({ "$cut": other, SIDE_FILE_ERROR: why }),
    }
}

fn truncate_strings(v: &Value) -> Value {
    match v {
        Value::String(s) if s.len() > MAX_STRING => {
            let mut cut = MAX_STRING;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            Value::String(format!("{}… [{} bytes in total]", &s[..cut], s.len()))
        }
        Value::Array(a) if a.len() > 100 => {
            let mut items: Vec<Value> = a.iter().take(100).map(truncate_strings).collect();
            items.push(Value::String(format!("… [{} items in total]", a.len())));
            Value::Array(items)
        }
        Value::Array(a) => Value::Array(a.iter().map(truncate_strings).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), truncate_strings(x)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A writer that only counts the bytes written to it.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
