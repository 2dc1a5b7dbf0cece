//! Reading a journal back: the renderer and `resume` use nothing else.
//!
//! A process killed in the middle of a write leaves a torn last line. That line is
//! reported (`torn_tail`) and ignored, never fatal: everything before it was fsynced
//! whole. A malformed line anywhere else means the file was edited or corrupted, and
//! that is an error naming the line.

use std::path::{Path, PathBuf};

use super::event::Record;

/// A journal as read from disk.
#[derive(Debug, Clone, Default)]
pub struct Journal {
    pub records: Vec<Record>,
    /// The last line was incomplete or unparsable and was ignored.
    pub torn_tail: bool,
    /// Where `seq` is not the gapless 1, 2, 3 … every writer keeps (the first
    /// [`MAX_SEQ_FAULTS`]): the 1-based line and what is wrong. Only an edited or
    /// damaged file has any; the renderer shows them as warnings, `resume` refuses to
    /// continue such a run.
    pub seq_faults: Vec<(usize, String)>,
}

/// The largest journal read back (1 GiB): a run of 500 000 notes is ~60 MB, so only
/// a forged or wrong file is larger, and reading it whole would take the memory.
pub const MAX_JOURNAL_BYTES: u64 = 1 << 30;

impl ReadError {
    /// True when the file is not a journal at all or is damaged (bad input, exit 2),
    /// rather than unreadable for the environment's reasons.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, ReadError::Io { .. })
    }
}

/// How many `seq` faults a journal reports; one is enough to refuse it.
pub const MAX_SEQ_FAULTS: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A directory, a FIFO, a device (`/dev/zero`): reading it would fail, block
    /// forever or never end, so it is refused before it is opened.
    #[error("{path} is not a journal: it is {what}, not a regular file")]
    NotAFile { path: PathBuf, what: &'static str },
    #[error(
        "{path} is not a journal: it has {size} bytes, more than the {MAX_JOURNAL_BYTES} a journal may have"
    )]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{path}:{line}: corrupt journal line: {message}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Read and parse a journal file.
pub fn read(path: &Path) -> Result<Journal, ReadError> {
    let mut records = Vec::new();
    let mut journal = read_each(path, |r| records.push(r))?;
    journal.records = records;
    Ok(journal)
}

/// Read a journal as a stream: each record is handed to `each` as it is parsed and
/// not kept, so a reader that keeps bounded state (the postmortem) reads a journal
/// of any length in bounded memory. Returns what was found besides the records
/// (`records` is empty). A corrupt line fails the read after the records before it
/// were handed over.
pub fn read_each(path: &Path, mut each: impl FnMut(Record)) -> Result<Journal, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        let what = if t.is_dir() {
            "a directory"
        } else if t.is_fifo() {
            "a FIFO"
        } else if t.is_socket() {
            "a socket"
        } else {
            "a device"
        };
        return Err(ReadError::NotAFile {
            path: path.to_owned(),
            what,
        });
    }
    if meta.len() > MAX_JOURNAL_BYTES {
        return Err(ReadError::TooLarge {
            path: path.to_owned(),
            size: meta.len(),
        });
    }
    // Streamed line by line: a journal whose one line is hundreds of megabytes (a
    // forged file of NULs) costs at most MAX_LINE_BYTES, not its size.
    let file = std::fs::File::open(path).map_err(io)?;
    let mut reader = std::io::BufReader::with_capacity(64 * 1024, file);
    parse_each(&mut reader, &mut each).map_err(|fail| match fail {
        Fail::Io(e) => io(e),
        Fail::Bad(line, message) => ReadError::Corrupt {
            path: path.to_owned(),
            line,
            message,
        },
    })
}

/// The complete records after byte `offset` of a journal that another process may be
/// appending to, and the offset after the last complete line. A line still being
/// written (no newline yet) is left for the next call; an unparsable line is skipped.
/// A file shorter than `offset` (a torn tail was cut) is read from its end.
///
/// For a process waiting on a gate: it reads only what was appended since it last
/// looked, never the whole journal.
pub fn read_tail(path: &Path, offset: u64) -> std::io::Result<(Vec<Record>, u64)> {
    use std::io::{Read, Seek};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len <= offset {
        return Ok((Vec::new(), len));
    }
    file.seek(std::io::SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.take((len - offset).min(MAX_LINE_BYTES as u64 * 4))
        .read_to_end(&mut bytes)?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let records = bytes[..complete]
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .filter_map(|l| serde_json::from_slice::<Record>(l).ok())
        .collect();
    Ok((records, offset + complete as u64))
}

/// The longest journal line: no event the engine writes comes near it (results
/// over the inline bound go to side files), so a longer line is not a journal's.
pub const MAX_LINE_BYTES: usize = 16 << 20;

enum Fail {
    Io(std::io::Error),
    Bad(usize, String),
}

/// Parse journal bytes; on error, the 1-based line number and what is wrong.
pub fn parse(bytes: &[u8]) -> Result<Journal, (usize, String)> {
    let mut reader = bytes;
    parse_from(&mut reader).map_err(|fail| match fail {
        Fail::Io(e) => (0, e.to_string()),
        Fail::Bad(line, message) => (line, message),
    })
}

fn parse_from(r: &mut impl std::io::BufRead) -> Result<Journal, Fail> {
    let mut records = Vec::new();
    let mut journal = parse_each(r, &mut |rec| records.push(rec))?;
    journal.records = records;
    Ok(journal)
}

/// Parse records one by one, handing each to `each`; the returned journal has no
/// records, only its torn tail and seq faults.
/// Room for a line kept from one line to the next.
const LINE_BUFFER_KEPT: usize = 64 * 1024;

fn parse_each(
    r: &mut impl std::io::BufRead,
    each: &mut dyn FnMut(Record),
) -> Result<Journal, Fail> {
    use std::io::{BufRead, Read};
    let mut journal = Journal::default();
    let mut last_seq: Option<u64> = None;
    let mut buf = Vec::new();
    let mut i = 0usize;
    loop {
        if buf.capacity() > LINE_BUFFER_KEPT {
            // One long line (`run_started` with every step's digest) must not keep its
            // room for the rest of the journal (issue 18: memory of a long run).
            buf = Vec::new();
        }
        buf.clear();
        let n = r
            .by_ref()
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(Fail::Io)?;
        if n == 0 {
            break;
        }
        i += 1;
        if buf.last() != Some(&b'\n') {
            if buf.len() > MAX_LINE_BYTES {
                // Skip to the end of this line without keeping it (read_until
                // searches with std's memchr: fast even in a debug build).
                let mut newline = false;
                let mut scratch = Vec::with_capacity(64 * 1024);
                loop {
                    scratch.clear();
                    let n = r
                        .by_ref()
                        .take(64 * 1024)
                        .read_until(b'\n', &mut scratch)
                        .map_err(Fail::Io)?;
                    if n == 0 {
                        break;
                    }
                    if scratch.last() == Some(&b'\n') {
                        newline = true;
                        break;
                    }
                }
                if newline {
                    return Err(Fail::Bad(
                        i,
                        format!(
                            "this line is longer than {MAX_LINE_BYTES} bytes; no journal event is that large"
                        ),
                    ));
                }
            }
            // Text after the last newline is a torn write.
            if !buf.iter().all(u8::is_ascii_whitespace) {
                journal.torn_tail = true;
            }
            break;
        }
        let line = &buf[..buf.len() - 1];
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Record>(line) {
            Ok(record) => {
                let expected = last_seq.map_or(1, |s| s.wrapping_add(1));
                if record.seq != expected && journal.seq_faults.len() < MAX_SEQ_FAULTS {
                    journal
                        .seq_faults
                        .push((i, seq_fault(expected, record.seq)));
                }
                last_seq = Some(record.seq);
                each(record);
            }
            Err(e) => {
                // A final line that is complete but unparsable is also a torn write when
                // nothing follows it (a crash between write and fsync can leave garbage).
                if r.fill_buf().map_err(Fail::Io)?.is_empty() {
                    journal.torn_tail = true;
                } else {
                    return Err(Fail::Bad(i, e.to_string()));
                }
            }
        }
    }
    Ok(journal)
}

fn seq_fault(expected: u64, found: u64) -> String {
    let what = if found > expected {
        format!("events {expected}..{} are missing", found - 1)
    } else {
        "an event is repeated or out of order".to_owned()
    };
    format!("event {found} where event {expected} was expected: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTE: &str =
        r#"{"seq":1,"ts":"2026-01-01T00:00:00Z","event":"note","text":"hi","by":"ana"}"#;

    #[test]
    fn reads_complete_records() {
        let text = format!("{NOTE}\n{}\n", NOTE.replace("\"seq\":1", "\"seq\":2"));
        let j = parse(text.as_bytes()).unwrap();
        assert_eq!(j.records.len(), 2);
        assert_eq!(j.records[1].seq, 2);
        assert!(!j.torn_tail);
    }

    #[test]
    fn torn_last_line_is_ignored_not_fatal() {
        let text = format!("{NOTE}\n{}", &NOTE[..20]);
        let j = parse(text.as_bytes()).unwrap();
        assert_eq!(j.records.len(), 1);
        assert!(j.torn_tail);
    }

    #[test]
    fn garbage_complete_last_line_counts_as_torn() {
        let text = format!("{NOTE}\n{{\"seq\":2,\"ts\n");
        let j = parse(text.as_bytes()).unwrap();
        assert_eq!(j.records.len(), 1);
        assert!(j.torn_tail);
    }

    #[test]
    fn corrupt_middle_line_is_an_error_with_its_line_number() {
        let text = format!("{NOTE}\nnot json\n{NOTE}\n");
        let (line, _) = parse(text.as_bytes()).unwrap_err();
        assert_eq!(line, 2);
    }

    #[test]
    fn a_gap_or_a_repeat_in_seq_is_reported_with_its_line() {
        let two = NOTE.replace("\"seq\":1", "\"seq\":2");
        let three = NOTE.replace("\"seq\":1", "\"seq\":3");
        let j = parse(format!("{NOTE}\n{two}\n{three}\n").as_bytes()).unwrap();
        assert!(j.seq_faults.is_empty());

        let j = parse(format!("{NOTE}\n{three}\n").as_bytes()).unwrap();
        assert_eq!(j.records.len(), 2, "the records are still read");
        let (line, msg) = j.seq_faults[0].clone();
        assert_eq!(line, 2);
        assert!(msg.contains("events 2..2 are missing"), "{msg}");

        let j = parse(format!("{NOTE}\n{two}\n{two}\n").as_bytes()).unwrap();
        let (line, msg) = j.seq_faults[0].clone();
        assert_eq!(line, 3);
        assert!(msg.contains("repeated or out of order"), "{msg}");

        let j = parse(format!("{two}\n").as_bytes()).unwrap();
        assert_eq!(j.seq_faults[0].0, 1, "a journal starts at event 1");
    }
}
