//! Appending to a journal: one JSON line per event, written with one `write` on a file
//! opened with `O_APPEND`, then fsynced before the engine acts on it.
//!
//! Two processes may append to the same journal: the engine of a run and
//! `runbook note` from another terminal. Each append takes an exclusive `flock` on
//! the journal for the read-last-seq + write, so `seq` stays a gapless 1, 2, 3 … even
//! when lines come from both. The writer notices lines another process appended
//! (the file grew past where it last wrote) and continues their numbering.
//!
//! Crash safety: an event is durable once [`Writer::append`] with `sync` returns. The
//! engine syncs every event that precedes a side effect (an operation start, a gate
//! decision) and the final one; read-only results may ride along with the next sync.
//! A process killed between write and fsync leaves at worst a torn last line, which
//! the reader ignores.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SubsecRound, Utc};

use super::event::Event;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot write journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The journal cannot be read back to check a decision against it.
    #[error("{0}")]
    Unreadable(String),
    #[error("journal {0} already exists")]
    Exists(PathBuf),
    /// The last event has seq 2^64−1: another would wrap to 0 and break the journal's
    /// gapless numbering, so nothing more is appended (a forged or damaged journal).
    #[error(
        "journal {0} is full: its last event has the highest possible number (2^64-1); nothing more can be added"
    )]
    SeqExhausted(PathBuf),
}

/// An open journal, positioned for appending.
#[derive(Debug)]
pub struct Writer {
    file: File,
    path: PathBuf,
    /// `seq` of the last line in the file, as of our last append.
    seq: u64,
    /// File length right after our last append; a longer file means another process
    /// appended.
    len: u64,
    /// Appends not yet fsynced.
    unsynced: bool,
    /// fsyncs this writer made (reported in debug logs; tests count them to prove
    /// group commit).
    fsyncs: u64,
    /// Syncs handed out by [`Writer::detach_sync`] and not yet finished: while
    /// one runs, [`Writer::sync`] syncs too, even with nothing new written.
    detached: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// An fsync of a journal taken out of its writer ([`Writer::detach_sync`]): run
/// on another thread, so appends (and everything else the caller does) go on
/// while the disk works.
#[derive(Debug)]
pub struct PendingSync {
    file: File,
    path: PathBuf,
    detached: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl PendingSync {
    /// Make every line written before [`Writer::detach_sync`] durable.
    pub fn run(self) -> Result<(), WriteError> {
        let r = self.file.sync_data().map_err(|e| io(&self.path, e));
        self.detached
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        r
    }
}

impl Writer {
    /// Create a new journal; fails if it exists.
    pub fn create(path: &Path) -> Result<Writer, WriteError> {
        let file = OpenOptions::new()
            .append(true)
            .read(true)
            .create_new(true)
            .open(path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    WriteError::Exists(path.to_owned())
                } else {
                    io(path, e)
                }
            })?;
        // The directory entry must survive a crash too.
        if let Some(dir) = path.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(Writer {
            file,
            path: path.to_owned(),
            seq: 0,
            len: 0,
            unsynced: false,
            fsyncs: 0,
            detached: Default::default(),
        })
    }

    /// Open an existing journal for appending; numbering continues from its last line.
    pub fn open(path: &Path) -> Result<Writer, WriteError> {
        let file = OpenOptions::new()
            .append(true)
            .read(true)
            .open(path)
            .map_err(|e| io(path, e))?;
        let mut w = Writer {
            file,
            path: path.to_owned(),
            seq: 0,
            len: 0,
            unsynced: false,
            fsyncs: 0,
            detached: Default::default(),
        };
        w.catch_up()?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's length right after this writer's last append (or the last time
    /// it caught up with other processes' lines).
    pub fn written_len(&self) -> u64 {
        self.len
    }

    /// `seq` of the last event in the file as far as this writer knows.
    pub fn last_seq(&self) -> u64 {
        self.seq
    }

    /// Append one event stamped `ts`; fsync it (and every earlier unsynced one) when
    /// `sync` is true. Returns the record's `seq`.
    pub fn append(
        &mut self,
        ts: DateTime<Utc>,
        event: Event,
        sync: bool,
    ) -> Result<u64, WriteError> {
        self.append_ref(ts, &event, sync)
    }

    /// [`Writer::append`] of a borrowed event: the engine keeps the event it journals
    /// for the rest of its stream, without copying it to write it.
    pub fn append_ref(
        &mut self,
        ts: DateTime<Utc>,
        event: &Event,
        sync: bool,
    ) -> Result<u64, WriteError> {
        // The lock is taken on the writer's own descriptor (no duplicate to open and
        // close on every line) and released on every path out.
        lock_exclusive(&self.file).map_err(|e| io(&self.path, e))?;
        let r = self.append_locked(ts, event, sync);
        let _ = self.file.unlock();
        r
    }

    /// Append `event` only if `write` agrees after seeing what the journal holds from
    /// byte `from` on (other processes' lines), with the journal's lock held from the
    /// read to the write: the engine's own answer at a gate is checked against a
    /// decision `runbook approve` appended meanwhile, so exactly one of them is
    /// journaled. Returns the seq (`None`: not written), the records read, and the
    /// offset to read on from.
    pub fn append_checked(
        &mut self,
        ts: DateTime<Utc>,
        event: &Event,
        sync: bool,
        from: u64,
        write: impl FnOnce(&[super::event::Record]) -> bool,
    ) -> Result<(Option<u64>, Vec<super::event::Record>, u64), WriteError> {
        lock_exclusive(&self.file).map_err(|e| io(&self.path, e))?;
        let r = (|| {
            let (tail, next) =
                super::reader::read_tail(&self.path, from).map_err(|e| io(&self.path, e))?;
            if !write(&tail) {
                return Ok((None, tail, next));
            }
            let seq = self.append_locked(ts, event, sync)?;
            Ok((Some(seq), tail, self.len))
        })();
        let _ = self.file.unlock();
        r
    }

    /// Append several events, each with its own time, under one lock and with one
    /// `write` (a group-committed batch of `op_started` lines; events the engine
    /// held back to write with the next one): the same lines, numbered the same
    /// way, as that many [`Writer::append_ref`] calls, in a fraction of the system
    /// calls. Fsynced once at the end when `sync`. Returns the first `seq` (the
    /// others follow it without a gap).
    pub fn append_stamped(
        &mut self,
        events: &[(DateTime<Utc>, &Event)],
        sync: bool,
    ) -> Result<u64, WriteError> {
        lock_exclusive(&self.file).map_err(|e| io(&self.path, e))?;
        let r = self.append_all_locked(events.iter().copied(), sync);
        let _ = self.file.unlock();
        r
    }

    fn append_locked(
        &mut self,
        ts: DateTime<Utc>,
        event: &Event,
        sync: bool,
    ) -> Result<u64, WriteError> {
        self.append_all_locked(std::iter::once((ts, event)), sync)
    }

    /// With the lock held: catch up with other writers, then write `events` as
    /// consecutive lines with one `write`. Returns the first line's `seq`.
    fn append_all_locked<'e>(
        &mut self,
        events: impl Iterator<Item = (DateTime<Utc>, &'e Event)>,
        sync: bool,
    ) -> Result<u64, WriteError> {
        self.catch_up()?;
        let exhausted = || WriteError::SeqExhausted(self.path.clone());
        let first = self.seq.checked_add(1).ok_or_else(exhausted)?;
        // Most lines are a few hundred bytes: one allocation, not a dozen regrowths.
        let mut lines = Vec::with_capacity(512);
        let mut seq = self.seq;
        for (ts, event) in events {
            seq = seq.checked_add(1).ok_or_else(exhausted)?;
            self.line_into(&mut lines, seq, ts, event)?;
        }
        self.write_lines(&lines, seq, sync)?;
        Ok(first)
    }

    /// One journal line, newline included, appended to `out`.
    fn line_into(
        &self,
        out: &mut Vec<u8>,
        seq: u64,
        ts: DateTime<Utc>,
        event: &Event,
    ) -> Result<(), WriteError> {
        // The same line as a `Record` (`super::event::Record`) serializes to, written
        // without serde's `flatten` (a map serializer) and with the timestamp
        // formatted in place: chrono's `Serialize` goes through `collect_str`, one
        // escaped `write_char` per character (a fifth of an action's journal cost).
        // `line_matches_record_serialization` holds the two to the same bytes.
        let ts = ts.trunc_subsecs(3);
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{{\"seq\":{seq},\"ts\":\"");
        write_ts(out, ts);
        out.push(b'"');
        let event_at = out.len();
        serde_json::to_writer(&mut *out, event)
            .map_err(|e| io(&self.path, std::io::Error::other(e)))?;
        // The event is an object (`{"event":…}`): its fields follow the record's.
        match out.get_mut(event_at) {
            Some(b) if *b == b'{' => *b = b',',
            _ => {
                return Err(io(
                    &self.path,
                    std::io::Error::other("an event did not serialize to a JSON object"),
                ));
            }
        }
        out.push(b'\n');
        Ok(())
    }

    /// Write whole lines ending with `last_seq`, with the lock held.
    fn write_lines(&mut self, lines: &[u8], last_seq: u64, sync: bool) -> Result<(), WriteError> {
        // One write call: with O_APPEND the lines land whole at the end of the file.
        (&self.file)
            .write_all(lines)
            .map_err(|e| io(&self.path, e))?;
        self.seq = last_seq;
        self.len += lines.len() as u64;
        self.unsynced = true;
        if sync {
            self.sync()?;
        }
        Ok(())
    }

    /// How many fsyncs this writer has made.
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs
    }

    /// Make every appended event durable.
    pub fn sync(&mut self) -> Result<(), WriteError> {
        let detached = self.detached.load(std::sync::atomic::Ordering::SeqCst) > 0;
        if self.unsynced || detached {
            self.fsyncs += 1;
            self.file.sync_data().map_err(|e| io(&self.path, e))?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// The fsync [`Writer::sync`] would make now, to run elsewhere (None: nothing
    /// is unsynced). Every line written so far is durable once it has run; a
    /// [`Writer::sync`] meanwhile does not return before its own fsync. When it
    /// fails, call [`Writer::mark_unsynced`].
    pub fn detach_sync(&mut self) -> Result<Option<PendingSync>, WriteError> {
        if !self.unsynced {
            return Ok(None);
        }
        let file = self.file.try_clone().map_err(|e| io(&self.path, e))?;
        self.detached
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.unsynced = false;
        self.fsyncs += 1;
        Ok(Some(PendingSync {
            file,
            path: self.path.clone(),
            detached: std::sync::Arc::clone(&self.detached),
        }))
    }

    /// A detached sync failed: what it was to make durable is not.
    pub fn mark_unsynced(&mut self) {
        self.unsynced = true;
    }

    /// If the file grew past our last append (another process wrote), read the new
    /// tail and take `seq` from its last complete line. A torn tail (a crashed writer)
    /// is cut off so the next line starts on a fresh line.
    fn catch_up(&mut self) -> Result<(), WriteError> {
        let len = self.file.metadata().map_err(|e| io(&self.path, e))?.len();
        if len == self.len {
            return Ok(());
        }
        let start = if len > self.len { self.len } else { 0 };
        // Scanned from the end in chunks, never read whole: a journal may be up to a
        // gigabyte, and a forged one a single line of that size.
        let complete = rfind_newline(&self.file, start, len)
            .map_err(|e| io(&self.path, e))?
            .map_or(start, |nl| nl + 1);
        if complete < len {
            // A torn line from a killed writer: drop it so our line is not glued to it.
            self.file.set_len(complete).map_err(|e| io(&self.path, e))?;
            self.file.sync_data().map_err(|e| io(&self.path, e))?;
        }
        // The seq of the last complete line that has one, looking back at most
        // MAX_LOOKBACK bytes (lines after a parsable one are never that long).
        let floor = start.max(complete.saturating_sub(MAX_LOOKBACK));
        let mut end = complete;
        while end > floor {
            let newline = end - 1;
            let begin = rfind_newline(&self.file, floor, newline)
                .map_err(|e| io(&self.path, e))?
                .map_or(floor, |nl| nl + 1);
            let line_len = (newline - begin) as usize;
            if line_len > 0 && line_len <= super::reader::MAX_LINE_BYTES {
                let mut line = vec![0u8; line_len];
                std::os::unix::fs::FileExt::read_exact_at(&self.file, &mut line, begin)
                    .map_err(|e| io(&self.path, e))?;
                #[derive(serde::Deserialize)]
                struct SeqOnly {
                    seq: u64,
                }
                if !line.iter().all(u8::is_ascii_whitespace)
                    && let Ok(s) = serde_json::from_slice::<SeqOnly>(&line)
                {
                    self.seq = self.seq.max(s.seq);
                    break;
                }
            }
            end = begin;
        }
        self.len = complete;
        Ok(())
    }
}

/// How far back [`Writer::catch_up`] looks for the last seq.
const MAX_LOOKBACK: u64 = 2 * super::reader::MAX_LINE_BYTES as u64;

/// The offset of the last `\n` in `file[from..to]`, read backwards in chunks.
fn rfind_newline(file: &File, from: u64, to: u64) -> std::io::Result<Option<u64>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 64 * 1024];
    let mut end = to;
    while end > from {
        let begin = end.saturating_sub(buf.len() as u64).max(from);
        let chunk = &mut buf[..(end - begin) as usize];
        file.read_exact_at(chunk, begin)?;
        if let Some(p) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(begin + p as u64));
        }
        end = begin;
    }
    Ok(None)
}

fn io(path: &Path, source: std::io::Error) -> WriteError {
    WriteError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Append one event to a journal another process may hold open (`runbook note`):
/// lock, take `seq` from the last line, one write, fsync.
pub fn append_once(path: &Path, ts: DateTime<Utc>, event: Event) -> Result<u64, WriteError> {
    let mut w = Writer::open(path)?;
    w.append(ts, event, true)
}

/// Append the event `decide` makes of the journal as it is, or nothing when it
/// refuses, with the journal's lock held from the read to the fsync: a decision
/// checked against the run's state (a gate still waiting, the same plan) cannot be
/// outdated by another process's append between the check and the write. Two
/// processes racing to answer one gate: the second sees the first's answer.
///
/// `Ok(Err(e))` is `decide`'s refusal; nothing was written.
pub fn append_if<E>(
    path: &Path,
    ts: DateTime<Utc>,
    decide: impl FnOnce(&super::reader::Journal) -> Result<Event, E>,
) -> Result<Result<u64, E>, WriteError> {
    let mut w = Writer::open(path)?;
    lock_exclusive(&w.file).map_err(|e| io(path, e))?;
    let r = (|| {
        let journal = super::reader::read(path).map_err(|e| match e {
            super::reader::ReadError::Io { path, source } => WriteError::Io { path, source },
            other => WriteError::Unreadable(other.to_string()),
        })?;
        match decide(&journal) {
            Ok(event) => Ok(Ok(w.append_locked(ts, &event, true)?)),
            Err(e) => Ok(Err(e)),
        }
    })();
    let _ = w.file.unlock();
    r
}

/// `ts` as chrono's `Serialize` writes a `DateTime<Utc>` (RFC 3339, `Z`, the
/// fraction only when there is one: 3, 6 or 9 digits), for the journal's millisecond
/// timestamps without chrono's per-character formatter. Years outside 0..=9999 (which
/// chrono writes with a sign) and leap seconds go through chrono itself.
fn write_ts(out: &mut Vec<u8>, ts: DateTime<Utc>) {
    use chrono::{Datelike, Timelike};
    let n = ts.naive_utc();
    let nanos = n.nanosecond();
    if !(0..=9999).contains(&n.year()) || nanos >= 1_000_000_000 {
        let text = serde_json::to_string(&ts).unwrap_or_default();
        out.extend_from_slice(text.trim_matches('"').as_bytes());
        return;
    }
    let two = |out: &mut Vec<u8>, v: u32| {
        out.extend_from_slice(&[b'0' + (v / 10) as u8, b'0' + (v % 10) as u8])
    };
    let y = n.year() as u32;
    two(out, y / 100);
    two(out, y % 100);
    out.push(b'-');
    two(out, n.month());
    out.push(b'-');
    two(out, n.day());
    out.push(b'T');
    two(out, n.hour());
    out.push(b':');
    two(out, n.minute());
    out.push(b':');
    two(out, n.second());
    let (digits, frac) = if nanos == 0 {
        (0, 0)
    } else if nanos.is_multiple_of(1_000_000) {
        (3, nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        (6, nanos / 1_000)
    } else {
        (9, nanos)
    };
    if digits > 0 {
        out.push(b'.');
        let at = out.len();
        let mut f = frac;
        out.resize(at + digits, b'0');
        for i in (0..digits).rev() {
            out[at + i] = b'0' + (f % 10) as u8;
            f /= 10;
        }
    }
    out.push(b'Z');
}

/// An advisory exclusive `flock` (std's `File::lock` on Linux) on the journal, held
/// for the duration of one append and released with `File::unlock`.
fn lock_exclusive(file: &File) -> std::io::Result<()> {
    loop {
        match file.lock() {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::reader;

    fn note(text: &str) -> Event {
        Event::Note {
            text: text.into(),
            by: "ana".into(),
            at: None,
        }
    }

    #[test]
    fn line_matches_record_serialization() {
        use crate::journal::event::{Outcome, Record, Scope};
        use chrono::TimeZone;
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::create(&dir.path().join("j.ndjson")).unwrap();
        let times = [
            Utc.with_ymd_and_hms(2026, 12, 2, 1, 39, 44).unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 2, 1, 39, 44).unwrap()
                + chrono::Duration::milliseconds(7),
            Utc.with_ymd_and_hms(2026, 1, 9, 23, 5, 0).unwrap()
                + chrono::Duration::milliseconds(377),
            Utc.with_ymd_and_hms(2026, 1, 9, 23, 5, 0).unwrap()
                + chrono::Duration::nanoseconds(123_456_789),
            Utc.with_ymd_and_hms(999, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(12_000, 1, 1, 0, 0, 0).unwrap(),
        ];
        let events = [
            note("a \"quoted\" note\nwith a newline and ünïcode"),
            Event::OpFinished {
                scope: Scope {
                    step: "s".into(),
                    item: Some(3),
                    ..Scope::default()
                },
                attempt: 1,
                outcome: Outcome::Skipped,
                duration_ms: 0,
                result: Some(serde_json::json!({"b": [1, 2.5, null], "a": "x"})),
                error: Some("not started".into()),
                output_file: None,
                calls: Vec::new(),
            },
        ];
        for (i, ts) in times.iter().enumerate() {
            for event in &events {
                let mut line = Vec::new();
                w.line_into(&mut line, i as u64 + 1, *ts, event).unwrap();
                let record = Record {
                    seq: i as u64 + 1,
                    ts: ts.trunc_subsecs(3),
                    event: event.clone(),
                };
                let want = serde_json::to_string(&record).unwrap() + "\n";
                assert_eq!(String::from_utf8(line).unwrap(), want);
            }
        }
    }

    #[test]
    fn an_append_after_the_last_possible_seq_is_refused_not_wrapped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.ndjson");
        let line = format!(
            "{{\"seq\":{},\"ts\":\"2026-01-01T00:00:00Z\",\"event\":\"note\",\"text\":\"x\",\"by\":\"a\"}}\n",
            u64::MAX
        );
        std::fs::write(&path, line).unwrap();
        let e = append_once(&path, Utc::now(), note("y")).unwrap_err();
        assert!(matches!(e, WriteError::SeqExhausted(_)), "{e}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "nothing appended: {text}");
    }

    #[test]
    fn seq_continues_across_writers_appending_to_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.ndjson");
        let mut engine = Writer::create(&path).unwrap();
        engine.append(Utc::now(), note("a"), true).unwrap();
        assert_eq!(
            append_once(&path, Utc::now(), note("from another process")).unwrap(),
            2
        );
        assert_eq!(engine.append(Utc::now(), note("c"), true).unwrap(), 3);
        let j = reader::read(&path).unwrap();
        let seqs: Vec<u64> = j.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert!(!j.torn_tail);
    }

    #[test]
    fn a_torn_tail_is_cut_before_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.ndjson");
        let mut w = Writer::create(&path).unwrap();
        w.append(Utc::now(), note("a"), true).unwrap();
        drop(w);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":2,\"ts\":\"20").unwrap();
        assert!(reader::read(&path).unwrap().torn_tail);
        let mut w = Writer::open(&path).unwrap();
        assert_eq!(w.append(Utc::now(), note("b"), true).unwrap(), 2);
        let j = reader::read(&path).unwrap();
        assert_eq!(j.records.len(), 2);
        assert!(!j.torn_tail);
    }
}
