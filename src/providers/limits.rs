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
    match std::env::var(MAX_OUTPUT_ENV) {
        Err(_) => Ok(DEFAULT_MAX_OUTPUT),
        Ok(v) => parse_size(&v).ok_or_else(|| {
            OpError::Invalid(format!(
                "{MAX_OUTPUT_ENV}={v:?}: expected a size in bytes such as 4194304, 512K, 16M or 1G"
            ))
        }),
    }
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

/// One stream as kept: its first `cap` bytes, and how many bytes it had in all.
#[derive(Debug, Default)]
pub struct Captured {
    pub kept: Vec<u8>,
    pub total: u64,
}

impl Captured {
    /// Were bytes dropped?
    pub fn truncated(&self) -> bool {
        self.total > self.kept.len() as u64
    }
}

/// Read a pipe to its end, keeping at most `cap` bytes. Reading goes on past the cap
/// (the bytes are counted and dropped) so that a program writing more than the pipe
/// holds is never blocked on a full pipe, which would turn a chatty step into a hung
/// one. A read error ends the stream; what was read is kept.
pub async fn read_capped<R: AsyncRead + Unpin>(pipe: Option<R>, cap: usize) -> Captured {
    let mut out = Captured::default();
    let Some(mut p) = pipe else {
        return out;
    };
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = match p.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        out.total += n as u64;
        let room = cap.saturating_sub(out.kept.len());
        out.kept.extend_from_slice(&chunk[..n.min(room)]);
    }
    out
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
        let c = read_capped(Some(&data[..]), 1000).await;
        assert_eq!(c.kept.len(), 1000);
        assert_eq!(c.total, 300_000);
        assert!(c.truncated());
    }

    #[test]
    fn a_character_split_by_the_cap_is_dropped_whole() {
        let c = Captured {
            kept: "ab\u{e9}".as_bytes()[..3].to_vec(),
            total: 10,
        };
        assert_eq!(text(&c), "ab");
    }
}
