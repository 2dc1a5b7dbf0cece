//! Bounds on what a provider keeps in memory (docs/limits.md, "Result caps").
//!
//! A shell step running `yes`, an HTTP server sending an endless body or a
//! Prometheus answer of tens of megabytes must not take the run's memory with it:
//! the run is the operator's only record of an incident. Every stream a provider
//! keeps (a command's stdout and stderr, a response body) is kept up to one cap,
//! [`max_output`]; what is past it is counted (shell) or not read at all (HTTP), and
//! the result says it was cut.

use tokio::io::{AsyncRead, AsyncReadExt};

use super::OpError;

/// The cap on each stream or body kept in memory when `RUNBOOK_MAX_OUTPUT` is unset.
pub const DEFAULT_MAX_OUTPUT: usize = 4 << 20;

/// The environment variable that raises (or lowers) [`DEFAULT_MAX_OUTPUT`]: a number
/// of bytes, optionally with a `K`, `M` or `G` suffix (powers of 1024).
pub const MAX_OUTPUT_ENV: &str = "RUNBOOK_MAX_OUTPUT";

/// The cap on each stream or body a provider keeps: `RUNBOOK_MAX_OUTPUT`, else
/// [`DEFAULT_MAX_OUTPUT`]. An unreadable value fails the operation rather than
/// silently running unbounded.
pub fn max_output() -> Result<usize, OpError> {
    // Read once per process: every operation asks, and the environment does not
    // change under a run.
    static CAP: std::sync::OnceLock<Result<usize, String>> = std::sync::OnceLock::new();
    CAP.get_or_init(|| match std::env::var(MAX_OUTPUT_ENV) {
        Err(_) => Ok(DEFAULT_MAX_OUTPUT),
        Ok(v) => parse_size(&v).ok_or_else(|| {
            format!(
                "{MAX_OUTPUT_ENV}={v:?}: expected a size in bytes such as 4194304, 512K, 16M or 1G"
            )
        }),
    })
    .clone()
    .map_err(OpError::Invalid)
}

/// `4194304`, `512K`, `16M`, `1G` (case-insensitive, powers of 1024); at least 1 byte.
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&s[..i], c.to_ascii_uppercase()),
        _ => (s, 'B'),
    };
    let n: usize = digits.trim().parse().ok()?;
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        _ => return None,
    };
    let bytes = n.checked_mul(1usize.checked_shl(shift)?)?;
    (bytes > 0).then_some(bytes)
}

/// The cap on the bytes of one stream written to its side file when
/// `RUNBOOK_MAX_SPILL` is unset: past the in-memory cap a stream goes to disk, and
/// the disk is bounded too (an endless `yes` must not fill it).
pub const DEFAULT_MAX_SPILL: u64 = 256 << 20;

/// The environment variable that sets [`DEFAULT_MAX_SPILL`] (same syntax as
/// [`MAX_OUTPUT_ENV`]).
pub const MAX_SPILL_ENV: &str = "RUNBOOK_MAX_SPILL";

/// The cap on each stream's side file: `RUNBOOK_MAX_SPILL`, else [`DEFAULT_MAX_SPILL`].
pub fn max_spill() -> Result<u64, OpError> {
    // Read once per process, like `max_output`.
    static CAP: std::sync::OnceLock<Result<u64, String>> = std::sync::OnceLock::new();
    CAP.get_or_init(|| match std::env::var(MAX_SPILL_ENV) {
        Err(_) => Ok(DEFAULT_MAX_SPILL),
        Ok(v) => parse_size(&v).map(|n| n as u64).ok_or_else(|| {
            format!("{MAX_SPILL_ENV}={v:?}: expected a size in bytes such as 268435456, 512M or 4G")
        }),
    })
    .clone()
    .map_err(OpError::Invalid)
}

/// Where a stream larger than the in-memory cap is written whole, as it is read:
/// the run's side files. The engine provides one per operation (it knows the run
/// folder, the step and the secrets to mask); providers only stream bytes into it,
/// so memory stays at the cap whatever the stream's size.
pub trait Spill: Send + Sync {
    /// Start the side file of `stream` (`stdout`, `stderr`, `body`) with the file
    /// extension `ext`.
    fn create(&self, stream: &str, ext: &str) -> std::io::Result<Box<dyn SpillWriter>>;

    /// The side files finished through this spill so far. An operation that ends
    /// without a result (timed out, cancelled) may have finished some: the engine
    /// journals them, so that no file in the run folder is left unreferenced.
    fn finished(&self) -> Vec<SpillFile> {
        Vec::new()
    }
}

/// A side file a [`Spill`] finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpillFile {
    /// `stdout`, `stderr`, `body`.
    pub stream: String,
    /// Relative to the run folder.
    pub file: String,
    /// The bytes of the stream written to it (at most the spill cap).
    pub bytes: u64,
}

impl SpillTo {
    /// What an operation that ended without a result streamed to side files, as a
    /// result the journal can hold: for each stream `NAME_truncated: true`,
    /// `NAME_file`, and `NAME_bytes` (the bytes read before it ended), or, when the
    /// spill cap `cap` cut the file, `NAME_file_truncated: true, NAME_file_bytes`.
    /// `None` when nothing was spilled.
    pub fn partial_result(&self, cap: u64) -> Option<serde_json::Value> {
        use serde_json::Value;
        let files = self.0.finished();
        if files.is_empty() {
            return None;
        }
        let mut m = serde_json::Map::new();
        for f in files {
            let name = &f.stream;
            m.insert(format!("{name}_truncated"), Value::Bool(true));
            m.insert(format!("{name}_file"), Value::String(f.file));
            if f.bytes >= cap {
                m.insert(format!("{name}_file_truncated"), Value::Bool(true));
                m.insert(format!("{name}_file_bytes"), Value::from(f.bytes));
            } else {
                m.insert(format!("{name}_bytes"), Value::from(f.bytes));
            }
        }
        Some(Value::Object(m))
    }
}

/// One side file being written. Dropped without [`SpillWriter::finish`], it leaves
/// nothing behind (a partial file must not pass for the whole output).
pub trait SpillWriter: Send {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// Close the file; returns its path relative to the run folder (what the journal
    /// records).
    fn finish(self: Box<Self>) -> std::io::Result<String>;
}

/// An operation's [`Spill`], as [`super::ExecCtx`] carries it.
#[derive(Clone)]
pub struct SpillTo(pub std::sync::Arc<dyn Spill>);

impl std::fmt::Debug for SpillTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpillTo")
    }
}

/// How one stream past the cap went to its side file.
#[derive(Debug, Default)]
pub struct Spilled {
    /// The file (relative to the run folder), once finished.
    pub file: Option<String>,
    /// Bytes written to it (less than the stream's when the spill cap was reached).
    pub bytes: u64,
    /// Why the side file could not be written (a full disk); the output past the
    /// in-memory cap is then only counted.
    pub error: Option<String>,
}

/// How many chunks a stream may be ahead of its side file's writer. Past it the
/// reader waits (asynchronously: the runtime goes on) and so, through its pipe or
/// its connection, does the writer of the stream; memory stays bounded by this many
/// chunks (64 KiB each when read from a pipe).
const SPILL_QUEUE: usize = 16;

/// What the reader of a stream hands its side file's writer.
enum Chunk {
    Bytes(Vec<u8>),
    /// The stream ended: name the file. A writer that sees its channel close
    /// without this was abandoned (the operation was dropped half-way) and leaves
    /// nothing behind.
    Finish,
}

/// A side file written on the blocking pool: a slow or stalled disk holds up this
/// stream's reader, never the runtime (the engine's other operations, their
/// timeouts, the heartbeat of a gate).
struct Background {
    tx: tokio::sync::mpsc::Sender<Chunk>,
    done: tokio::task::JoinHandle<std::io::Result<String>>,
}

impl Background {
    fn start(spill: &SpillTo, stream: &str, ext: &str) -> Background {
        let (tx, mut rx) = tokio::sync::mpsc::channel(SPILL_QUEUE);
        let (spill, stream, ext) = (spill.clone(), stream.to_owned(), ext.to_owned());
        let done = tokio::task::spawn_blocking(move || {
            let mut w = spill.0.create(&stream, &ext)?;
            while let Some(chunk) = rx.blocking_recv() {
                match chunk {
                    Chunk::Bytes(b) => w.write(&b)?,
                    Chunk::Finish => return w.finish(),
                }
            }
            // Dropping the unfinished writer removes its temporary file.
            Err(std::io::Error::other("the stream was abandoned unfinished"))
        });
        Background { tx, done }
    }

    /// Why the writer stopped (it returned an error or panicked).
    async fn outcome(self) -> std::io::Result<String> {
        drop(self.tx);
        match self.done.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(format!(
                "the side file's writer stopped: {e}"
            ))),
        }
    }
}

/// A stream being spilled: its writer, until it is finished or fails.
pub struct Spiller<'a> {
    spill: Option<&'a SpillTo>,
    stream: &'a str,
    ext: &'a str,
    cap: u64,
    writer: Option<Background>,
    pub spilled: Spilled,
}

impl<'a> Spiller<'a> {
    pub fn new(spill: Option<&'a SpillTo>, stream: &'a str, ext: &'a str, cap: u64) -> Self {
        Spiller {
            spill,
            stream,
            ext,
            cap,
            writer: None,
            spilled: Spilled::default(),
        }
    }

    /// Whether more bytes would still be written (no error, room under the cap).
    pub fn open(&self) -> bool {
        self.spill.is_some() && self.spilled.error.is_none() && self.spilled.bytes < self.cap
    }

    /// Write `before` (what was kept so far, on the first call) then `bytes`, up to
    /// the spill cap. Returns false once nothing more will be written. The file is
    /// written on the blocking pool; this waits only when the writer is
    /// [`SPILL_QUEUE`] chunks behind.
    pub async fn write(&mut self, before: &[u8], bytes: &[u8]) -> bool {
        if !self.open() {
            return false;
        }
        if self.writer.is_none() {
            let Some(spill) = self.spill else {
                return false;
            };
            self.writer = Some(Background::start(spill, self.stream, self.ext));
            if !self.put(before).await {
                return false;
            }
        }
        self.put(bytes).await
    }

    async fn put(&mut self, bytes: &[u8]) -> bool {
        let room = self.cap.saturating_sub(self.spilled.bytes);
        let part = &bytes[..bytes.len().min(usize::try_from(room).unwrap_or(usize::MAX))];
        if part.is_empty() {
            return self.open();
        }
        let sent = match &self.writer {
            Some(w) => w.tx.send(Chunk::Bytes(part.to_vec())).await.is_ok(),
            None => false,
        };
        if !sent {
            // The writer stopped early: a failed create or write.
            let e = match self.writer.take() {
                Some(w) => match w.outcome().await {
                    Err(e) => e,
                    Ok(_) => std::io::Error::other("the side file's writer ended early"),
                },
                None => std::io::Error::other("no side file"),
            };
            self.fail(e);
            return false;
        }
        self.spilled.bytes += part.len() as u64;
        self.open()
    }

    fn fail(&mut self, e: std::io::Error) {
        self.writer = None;
        self.spilled.error = Some(format!(
            "the {} side file could not be written: {e}",
            self.stream
        ));
    }

    /// Close the side file (if one was started) and wait for the writer to name it.
    pub async fn finish(mut self) -> Spilled {
        if let Some(w) = self.writer.take() {
            // A writer that already stopped has dropped its receiver; its outcome
            // says why.
            let _ = w.tx.send(Chunk::Finish).await;
            match w.outcome().await {
                Ok(f) => self.spilled.file = Some(f),
                Err(e) => self.fail(e),
            }
        }
        self.spilled
    }
}

/// One stream as kept: its first `cap` bytes, how many bytes it had in all, and its
/// side file when it was larger than the cap.
#[derive(Debug, Default)]
pub struct Captured {
    pub kept: Vec<u8>,
    pub total: u64,
    pub spilled: Spilled,
}

impl Captured {
    /// Were bytes dropped?
    pub fn truncated(&self) -> bool {
        self.total > self.kept.len() as u64
    }
}

/// Read a pipe to its end, keeping at most `cap` bytes in memory. Past the cap the
/// whole stream (from its first byte) goes to a side file through `spill`, up to
/// the spill cap; beyond that the bytes are counted and dropped. Reading goes on
/// to the end so that a program writing more than the pipe holds is never blocked
/// on a full pipe, which would turn a chatty step into a hung one. A read error
/// ends the stream; what was read is kept.
pub async fn read_capped<R: AsyncRead + Unpin>(
    pipe: Option<R>,
    cap: usize,
    mut spill: Spiller<'_>,
) -> Captured {
    let mut out = Captured::default();
    let Some(mut p) = pipe else {
        return out;
    };
    // Most steps print a line or two: start with a small buffer (from memory the
    // allocator already has, no page faults) and double it while reads fill it,
    // up to 64 KiB for chatty ones.
    // `read_buf` reads into the spare capacity, so the buffer is never zeroed.
    let mut chunk: Vec<u8> = Vec::with_capacity(4 << 10);
    loop {
        chunk.clear();
        let n = match p.read_buf(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        out.total += n as u64;
        if out.total > cap as u64 && spill.open() {
            // Before the first write, `kept` is everything read so far.
            let before: &[u8] = if spill.spilled.bytes == 0 {
                &out.kept
            } else {
                &[]
            };
            spill.write(before, &chunk[..n]).await;
        }
        let room = cap.saturating_sub(out.kept.len());
        out.kept.extend_from_slice(&chunk[..n.min(room)]);
        if n == chunk.capacity() && chunk.capacity() < 64 << 10 {
            chunk.reserve_exact(chunk.capacity());
        }
    }
    out.spilled = spill.finish().await;
    out
}

/// Record where a cut stream `name` went, in its result: `NAME_file` (the side file
/// holding the stream from its first byte), `NAME_file_truncated` when the spill
/// cap cut the file short of the stream's `total`, `NAME_file_error` when it could
/// not be written.
pub fn note_spill(
    result: &mut serde_json::Map<String, serde_json::Value>,
    name: &str,
    spilled: &Spilled,
    total: u64,
) {
    use serde_json::Value;
    if let Some(f) = &spilled.file {
        result.insert(format!("{name}_file"), Value::String(f.clone()));
        if spilled.bytes < total {
            result.insert(format!("{name}_file_truncated"), Value::Bool(true));
            result.insert(format!("{name}_file_bytes"), Value::from(spilled.bytes));
        }
    }
    if let Some(e) = &spilled.error {
        result.insert(format!("{name}_file_error"), Value::String(e.clone()));
    }
}

/// Bytes as text, cutting a trailing character that the cap split in two (rather
/// than leaving a replacement character that was never in the output).
pub fn text(c: &Captured) -> String {
    cut_text(&c.kept, c.truncated())
}

/// [`text`] for bytes that were (`truncated`) or were not cut at a cap.
pub fn cut_text(bytes: &[u8], truncated: bool) -> String {
    if truncated
        && let Err(e) = std::str::from_utf8(bytes)
        && e.error_len().is_none()
    {
        return String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned();
    }
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("4194304"), Some(4 << 20));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("16M"), Some(16 << 20));
        assert_eq!(parse_size(" 1G "), Some(1 << 30));
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("3T"), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
    }

    #[tokio::test]
    async fn a_stream_past_the_cap_is_read_to_its_end_and_counted() {
        let data = vec![b'y'; 300_000];
        let c = read_capped(
            Some(&data[..]),
            1000,
            Spiller::new(None, "stdout", "txt", 0),
        )
        .await;
        assert_eq!(c.kept.len(), 1000);
        assert_eq!(c.total, 300_000);
        assert!(c.truncated());
    }

    /// A disk that takes 20 ms per write.
    struct SlowDisk;
    struct SlowFile;

    impl Spill for SlowDisk {
        fn create(&self, _: &str, _: &str) -> std::io::Result<Box<dyn SpillWriter>> {
            Ok(Box::new(SlowFile))
        }
    }

    impl SpillWriter for SlowFile {
        fn write(&mut self, _: &[u8]) -> std::io::Result<()> {
            std::thread::sleep(std::time::Duration::from_millis(20));
            Ok(())
        }
        fn finish(self: Box<Self>) -> std::io::Result<String> {
            Ok("outputs/0001-slow-stdout.txt".into())
        }
    }

    /// On a current-thread runtime (one thread for everything, as the test's), a
    /// side file written inline would hold the thread for the whole spill: the
    /// ticker next to it would not tick until the stream ended.
    #[tokio::test]
    async fn a_slow_disk_under_a_spill_does_not_stall_the_runtime() {
        let data = vec![b'y'; 40 * (64 << 10)];
        let spill = SpillTo(std::sync::Arc::new(SlowDisk));
        let done = std::cell::Cell::new(false);
        let read = async {
            let c = read_capped(
                Some(&data[..]),
                1024,
                Spiller::new(Some(&spill), "stdout", "txt", u64::MAX),
            )
            .await;
            done.set(true);
            c
        };
        let ticker = async {
            let mut ticks = 0u32;
            while !done.get() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                ticks += 1;
            }
            ticks
        };
        let started = std::time::Instant::now();
        let (c, ticks) = tokio::join!(read, ticker);
        let took = started.elapsed();
        assert_eq!(
            c.spilled.file.as_deref(),
            Some("outputs/0001-slow-stdout.txt")
        );
        assert_eq!(c.spilled.bytes, data.len() as u64);
        assert!(took >= std::time::Duration::from_millis(800), "{took:?}");
        // 5 ms ticks over at least 800 ms: at least 20 even on a loaded machine.
        assert!(ticks >= 20, "the runtime ticked {ticks} times in {took:?}");
    }

    #[tokio::test]
    async fn a_spill_dropped_unfinished_is_abandoned_not_named() {
        struct Disk(std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>);
        struct File(std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>);
        impl Spill for Disk {
            fn create(&self, _: &str, _: &str) -> std::io::Result<Box<dyn SpillWriter>> {
                Ok(Box::new(File(self.0.clone())))
            }
        }
        impl SpillWriter for File {
            fn write(&mut self, _: &[u8]) -> std::io::Result<()> {
                Ok(())
            }
            fn finish(self: Box<Self>) -> std::io::Result<String> {
                self.0.lock().unwrap().push("finished");
                Ok("f".into())
            }
        }
        impl Drop for File {
            fn drop(&mut self) {
                self.0.lock().unwrap().push("dropped");
            }
        }
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let spill = SpillTo(std::sync::Arc::new(Disk(log.clone())));
        let mut s = Spiller::new(Some(&spill), "stdout", "txt", u64::MAX);
        assert!(s.write(b"kept", b"more").await);
        drop(s);
        for _ in 0..200 {
            if !log.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(*log.lock().unwrap(), ["dropped"]);
    }

    #[test]
    fn a_character_split_by_the_cap_is_dropped_whole() {
        let c = Captured {
            kept: "ab\u{e9}".as_bytes()[..3].to_vec(),
            total: 10,
            spilled: Spilled::default(),
        };
        assert_eq!(text(&c), "ab");
    }
}
