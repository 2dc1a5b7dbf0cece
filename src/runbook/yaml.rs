//! The one YAML reader, with one policy, for every file a person writes: runbooks,
//! lab scenarios and test files.
//!
//! This is the only module that names the YAML crate (serde-saphyr; its API moves
//! fast), with its fast path for plain runbooks, `runbook::yaml_plain`, which reads
//! serde-saphyr's own parser (granit-parser) directly and gives either exactly this
//! reader's tree or nothing (then this reader reads the document). Before it,
//! scenarios and test files built their own reader without the
//! runbook's duplicate-key and alias rules, so a key written twice in a scenario was
//! silently the last one. The policy:
//!
//! - `yes`/`off` stay strings; only `true`/`false` are booleans (STYLE.md pitfall);
//! - a key written twice in a mapping is an error;
//! - anchors and aliases may replay at most [`MAX_ALIAS_EVENTS`] events (raise it
//!   with [`MAX_ALIAS_EVENTS_ENV`]), so a billion-laughs document fails in
//!   milliseconds;
//! - a document may have as many nodes as it has bytes (at least [`MAX_NODES`]), and
//!   twice as many parser events: a plain file of any size the input cap lets through
//!   (10 000 pods, 20 000 steps) loads, since every node is written out at least once
//!   in its text; only aliases can make a tree larger than its file. The node limit
//!   can be raised with [`MAX_NODES_ENV`];
//! - a tag the reader does not know (`!secret`, `!include`, `!!python/object`) is an
//!   error, not silently dropped;
//! - a file is read only when it is a regular file of at most [`max_input_bytes`]
//!   (see [`read_input`]).

use std::io::{self, Read};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_saphyr::DuplicateKeyPolicy;

/// A value with the line and column it was written at.
pub use serde_saphyr::Spanned;

/// Events that anchors and aliases may replay in one document. A runbook or a
/// scenario is a few hundred lines; the reader's own default is a million.
pub const MAX_ALIAS_EVENTS: usize = 20_000;
/// The environment variable that raises (or lowers) [`MAX_ALIAS_EVENTS`].
pub const MAX_ALIAS_EVENTS_ENV: &str = "RUNBOOK_YAML_MAX_ALIAS_EVENTS";
/// Nodes in one document, at least; a larger file may have one node per byte.
pub const MAX_NODES: usize = 100_000;
/// The environment variable that sets the node limit (parser events: twice it).
pub const MAX_NODES_ENV: &str = "RUNBOOK_YAML_MAX_NODES";
/// The default cap on an input file's size: 8 MiB, ~300 times the largest runbook or
/// scenario in this repository.
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 8 * 1024 * 1024;
/// The environment variable that raises (or lowers) [`DEFAULT_MAX_INPUT_BYTES`].
pub const MAX_INPUT_ENV: &str = "RUNBOOK_MAX_INPUT_BYTES";

/// A document the reader refused, with where.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    /// 1-based; 0 when the reader gave no position.
    pub line: u64,
    pub column: u64,
    /// What is wrong, without the position (callers print `FILE:LINE:COL:`).
    pub message: String,
    pub kind: YamlErrorKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum YamlErrorKind {
    /// The key written twice.
    DuplicateKey(String),
    /// Anchors and aliases replay more than their budget.
    Budget,
    /// The tree has more nodes (or parser events) than the limit.
    Size,
    /// A tag the reader does not know.
    Tag,
    Indentation,
    /// Any other syntax or type error.
    Other,
}

impl YamlError {
    /// A short hint for the person fixing the file.
    pub fn help(&self) -> Option<&'static str> {
        match self.kind {
            YamlErrorKind::DuplicateKey(_) => {
                Some("each key may appear once in a mapping; remove or rename one")
            }
            YamlErrorKind::Budget => Some(
                "the document expands too much through anchors and aliases; write the repeated parts out plainly, or raise the limit as the message says",
            ),
            YamlErrorKind::Size => Some(
                "split the file, or raise the limit as the message says if a tree this large is intended",
            ),
            YamlErrorKind::Tag => Some(
                "YAML tags (`!name`) are not part of the format; remove the tag and write the value plainly",
            ),
            YamlErrorKind::Indentation => {
                Some("check the indentation: keys of one mapping start in the same column")
            }
            YamlErrorKind::Other => None,
        }
    }
}

/// The reader's limits for one document.
#[derive(Debug, Clone, Copy)]
struct Limits {
    bytes: usize,
    nodes: usize,
    events: usize,
    alias_events: usize,
}

impl Limits {
    /// Limits for a document of `bytes` bytes: one node per byte (at least
    /// [`MAX_NODES`]) unless [`MAX_NODES_ENV`] says otherwise, and twice as many
    /// events (a collection is a start and an end).
    fn for_size(bytes: usize) -> Limits {
        let env = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
        };
        let nodes = env(MAX_NODES_ENV).unwrap_or_else(|| bytes.max(MAX_NODES));
        Limits {
            bytes,
            nodes,
            events: nodes.saturating_mul(2).saturating_add(16),
            alias_events: env(MAX_ALIAS_EVENTS_ENV).unwrap_or(MAX_ALIAS_EVENTS),
        }
    }
}

fn options(limits: &Limits) -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.duplicate_keys = DuplicateKeyPolicy::Error;
    options.reject_unsupported_tags = true;
    options.reject_tagged_field_names = true;
    options.alias_limits.max_total_replayed_events = limits.alias_events;
    if let Some(budget) = options.budget.as_mut() {
        budget.max_events = limits.events;
        budget.max_nodes = limits.nodes;
        budget.max_reader_input_bytes = usize::try_from(max_input_bytes()).ok();
    }
    options
}

/// Read one document into `T` with the policy above.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    let limits = Limits::for_size(text.len());
    serde_saphyr::from_str_with_options(text, options(&limits)).map_err(|e| error(&e, &limits))
}

/// A runbook's spanned tree by the fast path (`yaml_plain`) when the
/// document is plain, else `None`: then [`from_str`] reads it (and reports its
/// errors).
pub(crate) fn plain_tree(text: &str) -> Option<super::parse::Node> {
    let limits = Limits::for_size(text.len());
    super::yaml_plain::read(text, limits.nodes, limits.events)
}

/// The error under the reader's wrappers (a snippet, an alias being replayed).
fn root(mut e: &serde_saphyr::Error) -> &serde_saphyr::Error {
    loop {
        match e {
            serde_saphyr::Error::WithSnippet { error, .. }
            | serde_saphyr::Error::AliasError { error, .. } => e = error,
            other => return other,
        }
    }
}

/// A budget the document breached, said in the person's terms: what was counted,
/// the limit, and how to raise it; `None` for any other error.
fn budget_message(e: &serde_saphyr::Error, limits: &Limits) -> Option<(String, YamlErrorKind)> {
    use serde_saphyr::budget::BudgetBreach;
    let size = |what: &str, counted: usize, limit: usize| {
        format!(
            "this document has more than {limit} {what} in its YAML tree (reading stopped at {counted}); the limit for a file of {} bytes is {limit}; raise it with {MAX_NODES_ENV}=N (N nodes, 2N parser events)",
            limits.bytes
        )
    };
    match root(e) {
        serde_saphyr::Error::AliasReplayLimitExceeded {
            total_replayed_events,
            max_total_replayed_events,
            ..
        } => Some((
            format!(
                "anchors and aliases in this document replay more than {max_total_replayed_events} parser events (reading stopped at {total_replayed_events}); the limit is {max_total_replayed_events}; raise it with {MAX_ALIAS_EVENTS_ENV}=N"
            ),
            YamlErrorKind::Budget,
        )),
        serde_saphyr::Error::Budget { breach, .. } => match breach {
            BudgetBreach::Nodes { nodes } => {
                Some((size("nodes", *nodes, limits.nodes), YamlErrorKind::Size))
            }
            BudgetBreach::Events { events } => Some((
                size("parser events", *events, limits.events),
                YamlErrorKind::Size,
            )),
            BudgetBreach::Depth { depth } => Some((
                format!(
                    "the document nests deeper than the YAML reader allows (reading stopped at depth {depth}, counting the levels that anchors and merge keys bring in)"
                ),
                YamlErrorKind::Budget,
            )),
            BudgetBreach::Aliases { aliases } => Some((
                format!(
                    "the document uses more aliases (`*name`) than the YAML reader allows (reading stopped at {aliases})"
                ),
                YamlErrorKind::Budget,
            )),
            BudgetBreach::Anchors { anchors } => Some((
                format!(
                    "the document defines more anchors (`&name`) than the YAML reader allows (reading stopped at {anchors})"
                ),
                YamlErrorKind::Budget,
            )),
            BudgetBreach::Documents { documents } => Some((
                format!(
                    "the file holds {documents} YAML documents; a runbook is one document (remove the `---` separators)"
                ),
                YamlErrorKind::Budget,
            )),
            BudgetBreach::MergeKeys { merge_keys } => Some((
                format!(
                    "the document uses more merge keys (`<<`) than the YAML reader allows (reading stopped at {merge_keys})"
                ),
                YamlErrorKind::Budget,
            )),
            BudgetBreach::AliasAnchorRatio { aliases, anchors } => Some((
                format!(
                    "the document uses {aliases} aliases of only {anchors} anchors, more than the YAML reader allows (an alias bomb?)"
                ),
                YamlErrorKind::Budget,
            )),
            BudgetBreach::ScalarBytes { total_scalar_bytes } => Some((
                format!(
                    "the document's text values add up to more than the YAML reader allows (reading stopped at {total_scalar_bytes} bytes)"
                ),
                YamlErrorKind::Size,
            )),
            BudgetBreach::InputBytes { input_bytes } => Some((
                format!(
                    "the document is larger than the YAML reader allows (reading stopped at {input_bytes} bytes)"
                ),
                YamlErrorKind::Size,
            )),
            BudgetBreach::SequenceUnbalanced => Some((
                "the document's structure is unbalanced (a list or mapping closes that never opened): the file is cut or malformed".to_owned(),
                YamlErrorKind::Budget,
            )),
            // Limits a runbook does not reach (includes, anchor recordings,
            // property expansion): named in words, never as a Rust value.
            _ => Some((
                "the document exceeds a limit of the YAML reader (anchors, aliases or nesting too large): simplify it".to_owned(),
                YamlErrorKind::Budget,
            )),
        },
        _ => None,
    }
}

fn error(e: &serde_saphyr::Error, limits: &Limits) -> YamlError {
    let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
    if let Some((message, kind)) = budget_message(e, limits) {
        return YamlError {
            line,
            column,
            message,
            kind,
        };
    }
    let raw = e.render_with_options(serde_saphyr::render_options! {
        snippets: serde_saphyr::SnippetMode::Off,
    });
    let mut message = clean_message(&raw);
    let lower = raw.to_lowercase();
    let kind = if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        // "duplicate mapping key: id, set DuplicateKeyPolicy in Options if acceptable"
        let key = rest.split(", set ").next().unwrap_or(rest).to_owned();
        message = format!("the key `{key}` appears twice in this mapping");
        YamlErrorKind::DuplicateKey(key)
    } else if lower.contains("duplicate") {
        YamlErrorKind::DuplicateKey(String::new())
    } else if lower.contains("budget") || lower.contains("alias") {
        YamlErrorKind::Budget
    } else if lower.contains("tag") {
        YamlErrorKind::Tag
    } else if lower.contains("indent") || lower.contains("mapping values are not allowed") {
        YamlErrorKind::Indentation
    } else {
        YamlErrorKind::Other
    };
    YamlError {
        line,
        column,
        message,
        kind,
    }
}

/// The reader appends " at line X column Y" and sometimes a snippet; callers print
/// the position themselves.
fn clean_message(raw: &str) -> String {
    let first = raw.lines().next().unwrap_or(raw).trim();
    let cut = first.find(" at line ").map_or(first, |i| &first[..i]);
    cut.trim_end_matches([',', ':', '.']).trim().to_owned()
}

/// The input size cap in force: [`MAX_INPUT_ENV`] when it holds a number of bytes,
/// else [`DEFAULT_MAX_INPUT_BYTES`].
pub fn max_input_bytes() -> u64 {
    std::env::var(MAX_INPUT_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_MAX_INPUT_BYTES)
}

/// Read an input file (a runbook, a scenario, a test file) that a person wrote.
///
/// Only a regular file is read: a FIFO would block forever and `/dev/zero` would
/// grow memory without bound (issue 13, item 11), so both are refused before a byte
/// is read. The file is opened non-blocking, so a FIFO swapped in after the check
/// cannot block the open either, and its type is checked again on the open handle.
/// At most [`max_input_bytes`] are read. `what` names what was expected ("a
/// runbook") in the error.
pub fn read_input(path: &Path, what: &str) -> io::Result<Vec<u8>> {
    let limit = max_input_bytes();
    let refuse = |kind: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {kind}, not a regular file: expected {what}"),
        )
    };
    check_type(&std::fs::metadata(path)?, refuse)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    check_type(&meta, refuse)?;
    let too_large = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the file is larger than the input limit of {limit} bytes (expected {what}); \
                 set {MAX_INPUT_ENV}=BYTES to raise it"
            ),
        )
    };
    if meta.len() > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    // `take` guards against a file that grows while it is read.
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

fn check_type(meta: &std::fs::Metadata, refuse: impl Fn(&str) -> io::Error) -> io::Result<()> {
    let t = meta.file_type();
    if t.is_file() {
        return Ok(());
    }
    if t.is_dir() {
        return Err(refuse("a directory"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return Err(refuse("a FIFO (named pipe)"));
        }
        if t.is_char_device() {
            return Err(refuse("a character device"));
        }
        if t.is_block_device() {
            return Err(refuse("a block device"));
        }
        if t.is_socket() {
            return Err(refuse("a socket"));
        }
    }
    Err(refuse("not a regular file"))
}

/// Read an input file as UTF-8 text ([`read_input`], then a UTF-8 check).
pub fn read_input_text(path: &Path, what: &str) -> io::Result<String> {
    String::from_utf8(read_input(path, what)?).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the file is not UTF-8 text (byte {} is not valid UTF-8)",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_fifo_and_a_character_device_are_refused_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.yaml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_input(&fifo, "a runbook").unwrap_err();
        assert!(
            e.to_string().contains("FIFO") && e.to_string().contains("a runbook"),
            "{e}"
        );
        let e = read_input(Path::new("/dev/zero"), "a scenario").unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        let e = read_input(dir.path(), "a test file").unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
    }

    #[test]
    fn an_unknown_tag_is_an_error_not_silently_dropped() {
        let e = from_str::<BTreeMap<String, String>>("a: !secret x\n").unwrap_err();
        assert_eq!(e.kind, YamlErrorKind::Tag, "{e:?}");
        assert_eq!(e.line, 1, "{e:?}");
        assert!(from_str::<BTreeMap<String, String>>("a: !!str x\n").is_ok());
    }
}
