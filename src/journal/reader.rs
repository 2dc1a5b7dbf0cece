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
    let bytes = std::fs::read(path).map_err(io)?;
    parse(&bytes).map_err(|(line, message)| ReadError::Corrupt {
        path: path.to_owned(),
        line,
        message,
    })
}

/// Parse journal bytes; on error, the 1-based line number and what is wrong.
pub fn parse(bytes: &[u8]) -> Result<Journal, (usize, String)> {
    let mut journal = Journal::default();
    // Every complete record ends with '\n'; text after the last newline is a torn write.
    let complete_len = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let (complete, tail) = bytes.split_at(complete_len);
    let lines: Vec<&[u8]> = complete.split(|&b| b == b'\n').collect();
    let last = lines.len().saturating_sub(1); // the split leaves one empty slice at the end
    for (i, line) in lines.iter().enumerate().take(last) {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Record>(line) {
            Ok(record) => {
                let expected = journal.records.last().map_or(1, |r| r.seq + 1);
                if record.seq != expected && journal.seq_faults.len() < MAX_SEQ_FAULTS {
                    journal
                        .seq_faults
                        .push((i + 1, seq_fault(expected, record.seq)));
                }
                journal.records.push(record);
            }
            // A final line that is complete but unparsable is also a torn write when
            // nothing follows it (a crash between write and fsync can leave garbage).
            Err(_) if i + 1 == last && tail.is_empty() => journal.torn_tail = true,
            Err(e) => return Err((i + 1, e.to_string())),
        }
    }
    if !tail.iter().all(u8::is_ascii_whitespace) {
        journal.torn_tail = true;
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
