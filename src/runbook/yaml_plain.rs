//! The reader's fast path: a plain document read straight from the YAML parser's
//! events into the spanned tree, without serde.
//!
//! Most runbooks are plain: mappings, lists and scalars, no anchors, aliases, merge
//! keys or tags. Reading such a document through serde-saphyr's spanned serde
//! machinery cost about 95 000 instructions a step (a third of what a 500-step run
//! costs the engine); straight from the parser's events it is a fraction of that.
//!
//! The fast path gives the same tree as the full reader or it gives nothing:
//! whenever the document uses anything outside the plain subset (an anchor, an
//! alias, a merge key, a tag, a directive, more than one document), a scalar whose
//! type is not plainly a string, an integer, a boolean or null (floats, `0x1f`,
//! `+1`, `007`), a key written twice, a budget it comes near, or any syntax error,
//! [`read`] returns `None` and the caller reads the document with the full reader,
//! whose result and error messages are therefore exactly what they were. The
//! test `a_plain_document_reads_the_same_on_both_paths` compares the two on every
//! YAML file in the repository.

use std::collections::HashSet;

use granit_parser::{Event, Parser, ScalarStyle};

use super::model::Pos;
use super::parse::{Node, Yaml};

/// Up to this many keys, a key written twice is found by a linear scan; beyond,
/// with a set of the keys.
const SCAN_KEYS: usize = 16;
/// Nesting deeper than this goes to the full reader (its budget is 64).
const MAX_FAST_DEPTH: usize = 48;

enum Frame {
    Seq(Pos, Vec<Node>),
    /// The entries, the key waiting for its value, and the keys as a set once there
    /// are more than [`SCAN_KEYS`].
    Map(
        Pos,
        Vec<(Node, Node)>,
        Option<Node>,
        Option<HashSet<String>>,
    ),
}

/// The document's tree, when it is plain (see the module's documentation). `nodes`
/// and `events` are the full reader's limits for this document: the fast path gives
/// up at half of them, as it does at half of every other budget the full reader
/// keeps, so a document near a limit is judged by the full reader.
pub(crate) fn read(text: &str, nodes_limit: usize, events_limit: usize) -> Option<Node> {
    let budget = serde_saphyr::budget::Budget::default();
    let options = granit_parser::options! {
        simple_key_max_lookahead: budget.simple_key_max_lookahead,
        flow_nesting_limit: budget.flow_nesting_limit,
        block_nesting_limit: granit_parser::Options::default()
            .block_nesting_limit
            .max(budget.max_depth.saturating_add(1)),
        emit_comments: true,
        max_buffered_comment_events: budget.max_buffered_comment_events,
    };
    let max_scalar_bytes = budget.max_total_scalar_bytes / 2;
    let max_comment_bytes = budget.max_total_comment_bytes / 2;
    let (max_events, max_nodes) = (events_limit / 2, nodes_limit / 2);

    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let (mut events, mut nodes, mut documents) = (0usize, 0usize, 0usize);
    let (mut scalar_bytes, mut comment_bytes) = (0usize, 0usize);
    for item in Parser::new_from_str_with_options(text, options) {
        let (event, span) = item.ok()?;
        events += 1;
        if events > max_events {
            return None;
        }
        let pos = Pos {
            line: u32::try_from(span.start.line()).ok()?,
            col: u32::try_from(span.start.col() + 1).ok()?,
        };
        let node = match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => continue,
            Event::DocumentStart(_, version) => {
                documents += 1;
                if documents > 1 || version.is_some() {
                    return None;
                }
                continue;
            }
            Event::Comment(text, _) => {
                comment_bytes += text.len();
                if comment_bytes > max_comment_bytes {
                    return None;
                }
                continue;
            }
            Event::Scalar(value, style, anchor, tag) => {
                if anchor != 0 || tag.is_some() {
                    return None;
                }
                scalar_bytes += value.len();
                if scalar_bytes > max_scalar_bytes {
                    return None;
                }
                let value = match style {
                    ScalarStyle::Plain => plain(&value)?,
                    _ => Yaml::Str(value.into_owned()),
                };
                Node { pos, value }
            }
            Event::SequenceStart(_, anchor, tag) => {
                if anchor != 0 || tag.is_some() || stack.len() >= MAX_FAST_DEPTH {
                    return None;
                }
                stack.push(Frame::Seq(pos, Vec::new()));
                continue;
            }
            Event::MappingStart(_, anchor, tag) => {
                if anchor != 0 || tag.is_some() || stack.len() >= MAX_FAST_DEPTH {
                    return None;
                }
                stack.push(Frame::Map(pos, Vec::new(), None, None));
                continue;
            }
            Event::SequenceEnd => match stack.pop()? {
                Frame::Seq(pos, items) => Node {
                    pos,
                    value: Yaml::Seq(items),
                },
                Frame::Map(..) => return None,
            },
            Event::MappingEnd => match stack.pop()? {
                Frame::Map(pos, entries, None, _) => Node {
                    pos,
                    value: Yaml::Map(entries),
                },
                _ => return None,
            },
            // Aliases, anchors, and whatever a later parser version adds.
            _ => return None,
        };
        nodes += 1;
        if nodes > max_nodes {
            return None;
        }
        match stack.last_mut() {
            None => {
                if root.is_some() {
                    return None;
                }
                root = Some(node);
            }
            Some(Frame::Seq(_, items)) => items.push(node),
            Some(Frame::Map(_, entries, pending, set)) => match pending.take() {
                Some(key) => entries.push((key, node)),
                None => {
                    let k = key_text(&node)?;
                    let twice = match set {
                        Some(set) => !set.insert(k.to_owned()),
                        None => entries.iter().any(|(e, _)| key_text(e) == Some(k)),
                    };
                    if k == "<<" || twice {
                        return None;
                    }
                    if set.is_none() && entries.len() >= SCAN_KEYS {
                        let mut keys: HashSet<String> = entries
                            .iter()
                            .filter_map(|(e, _)| key_text(e).map(str::to_owned))
                            .collect();
                        keys.insert(k.to_owned());
                        *set = Some(keys);
                    }
                    *pending = Some(node);
                }
            },
        }
    }
    if !stack.is_empty() || documents != 1 {
        return None;
    }
    // A document that is a lone scalar (or null) is the full reader's to judge.
    root.filter(|n| matches!(n.value, Yaml::Map(_) | Yaml::Seq(_)))
}

/// A key's text, for finding a key written twice. Deliberately coarse (`1` and
/// `'1'`, `true` and `TRUE` are the same here): a document it calls a duplicate goes
/// to the full reader, which decides.
fn key_text(key: &Node) -> Option<&str> {
    match &key.value {
        Yaml::Str(s) => Some(s),
        Yaml::Bool(true) => Some("true"),
        Yaml::Bool(false) => Some("false"),
        // Integer keys, null keys and collections as keys: the full reader.
        _ => None,
    }
}

/// True when no number spelling of the full reader (integers in radix 2, 8, 10 or
/// 16 with `_` separators, Rust's float syntax, `.inf`, `.nan`) can be `s`: after an
/// optional sign, a number starts with a digit or a dot, and it holds only digits,
/// hex digits, radix letters, signs, `_` and at most one dot. So `inf`, `nan`, `e5`,
/// `-c`, `--version`, `5m`, `52Gi`, `10.128.0.21` and `5 minutes` are strings.
fn surely_string(s: &str) -> bool {
    let b = s.as_bytes();
    let rest = match b.first() {
        Some(b'+' | b'-') => &b[1..],
        _ => b,
    };
    match rest.first() {
        None => false,
        Some(c) if !c.is_ascii_digit() && *c != b'.' => true,
        Some(b'.') => false,
        Some(_) => {
            rest.iter().any(|c| {
                !(c.is_ascii_hexdigit()
                    || matches!(c, b'.' | b'x' | b'X' | b'o' | b'O' | b'+' | b'-' | b'_'))
            }) || rest.iter().filter(|&&c| c == b'.').count() > 1
        }
    }
}

/// A plain scalar's value as the full reader resolves it (YAML 1.2 core schema with
/// strict booleans), for the spellings whose type is beyond doubt; `None` for the
/// rest (floats, other radices, signs, leading zeros), which the full reader reads.
fn plain(s: &str) -> Option<Yaml> {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Yaml::Null),
        "true" | "True" | "TRUE" => return Some(Yaml::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Yaml::Bool(false)),
        _ => {}
    }
    if surely_string(s) {
        return Some(Yaml::Str(s.to_owned()));
    }
    let (negative, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    let decimal = !digits.is_empty()
        && digits.len() <= 18
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && !(negative && digits == "0");
    if !decimal {
        return None;
    }
    let n: i64 = digits.parse().ok()?;
    Some(Yaml::Int(if negative { -n } else { n }))
}

#[cfg(test)]
mod tests {
    use super::super::parse::Node;
    use super::super::yaml;

    /// What the full reader (serde-saphyr) makes of `text`.
    fn full(text: &str) -> Result<Option<Node>, yaml::YamlError> {
        yaml::from_str::<Option<Node>>(text)
    }

    /// The fast path either declines or gives exactly the full reader's tree.
    fn same(text: &str) -> bool {
        match yaml::plain_tree(text) {
            None => false,
            Some(fast) => {
                assert_eq!(
                    full(text),
                    Ok(Some(fast)),
                    "the fast path disagrees with the full reader on:\n{text}"
                );
                true
            }
        }
    }

    fn yaml_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() && !name.starts_with('.') && name != "target" {
                yaml_files(&p, out);
            } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                out.push(p);
            }
        }
    }

    #[test]
    fn a_plain_document_reads_the_same_on_both_paths() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        for dir in ["runbooks", "tests", "examples", "docs", "schemas"] {
            yaml_files(&root.join(dir), &mut files);
        }
        assert!(files.len() > 60, "found only {} YAML files", files.len());
        let mut fast = 0;
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            // Also every prefix cut at a line end: half-written and malformed
            // documents, which must be declined or read identically.
            let cuts: Vec<usize> = text.match_indices('\n').map(|(i, _)| i + 1).collect();
            for &cut in cuts.iter().step_by(cuts.len() / 8 + 1) {
                same(&text[..cut]);
            }
            if same(&text) {
                fast += 1;
            }
        }
        // The shipped runbooks, scenarios and test files are plain: nearly all of
        // them take the fast path (a test that always declined would prove nothing).
        assert!(
            fast * 10 >= files.len() * 7,
            "only {fast} of {} files took the fast path",
            files.len()
        );
    }

    #[test]
    fn scalars_resolve_as_the_full_reader_resolves_them() {
        let spellings = [
            "1",
            "-1",
            "0",
            "-0",
            "007",
            "-007",
            "1.5",
            "-1.5",
            ".5",
            "1e3",
            "1E3",
            "0x1f",
            "0o17",
            "0b11",
            "+1",
            "1_000",
            "123456789012345678",
            "1234567890123456789",
            "99999999999999999999",
            "true",
            "True",
            "TRUE",
            "tRue",
            "false",
            "yes",
            "no",
            "on",
            "off",
            "y",
            "n",
            "null",
            "Null",
            "NULL",
            "nULL",
            "~",
            "",
            "inf",
            "-inf",
            ".inf",
            "-.inf",
            ".nan",
            "nan",
            "NaN",
            "infinity",
            "e5",
            "a b",
            "/usr/bin/true",
            "héllo",
            "10s",
            "5m",
            "1.2.3",
            "2026-12-02",
            "12:30",
            "-",
            "--",
            "-a",
            "'q'",
            "\"dq\"",
            "\"1\"",
            "'true'",
            "'null'",
            "''",
            "!!str 1",
            "&a 1",
            "a#b",
            "a #c",
            "{{item.metadata.name}}",
            "5m",
            "30s",
            "52Gi",
            "10.128.0.21",
            "-c",
            "--version",
            "-5h",
            "5 minutes",
            "2026-12-02T10:00:00Z",
            "1.5e3",
            "-1e-3",
            "0x1F",
            "1__0",
            "1_0",
            "_1",
            "+.5",
            "-.inf",
            "12e",
            "0.",
            "1.2e3.4",
            "1-2",
            "a1",
            "héllo wörld",
            "+",
            "-x1",
        ];
        let mut fast = 0;
        for s in spellings {
            let doc = format!("k: {s}\nl: [{s}]\n");
            fast += usize::from(same(&doc));
            let doc = format!("- {s}\n");
            same(&doc);
        }
        assert!(fast >= 30, "only {fast} spellings took the fast path");
    }

    #[test]
    fn structures_positions_and_declines() {
        let plain = [
            "a: 1\nb:\n  - x\n  - 'y'\n  - {c: d, e: [1, 2]}\n",
            "steps:\n  - check: A\n    id: a\n    shell: { argv: [\"true\"] }\n",
            "# comment\na: 1 # trailing\n\nb: |\n  line one\n  line two\nc: >\n  folded\n  text\n",
            "---\na: 1\n...\n",
            "a:\nb: ~\nc: []\nd: {}\n",
            "a: multi\n  line plain\n  scalar\n",
            "- - 1\n  - 2\n- - 3\n",
            "\u{feff}a: 1\n",
            &(0..100).map(|i| format!("k{i}: {i}\n")).collect::<String>(),
        ];
        for doc in plain {
            assert!(same(doc), "declined a plain document:\n{doc}");
        }
        let declined = [
            "a: &x 1\nb: *x\n",
            "base: &b {x: 1}\nc:\n  <<: *b\n  y: 2\n",
            "a: !secret x\n",
            "a: 1\na: 2\n",
            "a: 1\n'a': 2\n",
            &(0..40)
                .map(|i| format!("k{i}: {i}\n"))
                .collect::<String>()
                .replace("k39:", "k3:"),
            "a: 1\n---\nb: 2\n",
            "%YAML 1.2\n---\na: 1\n",
            "a: [1, 2\n",
            "a: b: c\n",
            "1: a\n",
            "just a scalar\n",
            "",
        ];
        for doc in declined {
            assert!(
                yaml::plain_tree(doc).is_none(),
                "the fast path read a document the full reader must judge:\n{doc}"
            );
        }
    }

    const SCALARS: [&str; 28] = [
        "x",
        "1",
        "-2",
        "0",
        "true",
        "False",
        "null",
        "~",
        "'q'",
        "\"d\"",
        "5m",
        "10.0.0.1",
        "-c",
        "a b",
        "yes",
        "/bin/sh",
        "{{item.name}}",
        "hé",
        "12:30",
        "0x1f",
        "1.5",
        "007",
        "+3",
        ".inf",
        "nan",
        "e5",
        "'1'",
        "\"\"",
    ];
    const KEYS: [&str; 7] = ["a", "b", "id", "kind", "'a'", "1", "<<"];

    /// A document tree to write out as YAML text.
    #[derive(Debug, Clone)]
    enum T {
        Scalar(usize),
        Seq(Vec<T>),
        Map(Vec<(usize, T)>),
    }

    fn tree() -> impl proptest::strategy::Strategy<Value = T> {
        use proptest::prelude::*;
        let leaf = (0..SCALARS.len()).prop_map(T::Scalar);
        leaf.prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(T::Seq),
                proptest::collection::vec((0..KEYS.len(), inner), 0..5).prop_map(T::Map),
            ]
        })
    }

    /// Block style, with flow style for lists of scalars when `flow`.
    fn write(t: &T, indent: usize, flow: bool, out: &mut String) {
        let pad = "  ".repeat(indent);
        match t {
            T::Scalar(s) => {
                out.push(' ');
                out.push_str(SCALARS[*s]);
                out.push('\n');
            }
            T::Seq(items) if items.is_empty() => out.push_str(" []\n"),
            T::Map(entries) if entries.is_empty() => out.push_str(" {}\n"),
            T::Seq(items)
                if flow
                    && items
                        .iter()
                        .all(|i| matches!(i, T::Scalar(s) if !SCALARS[*s].is_empty())) =>
            {
                let texts: Vec<&str> = items
                    .iter()
                    .filter_map(|i| match i {
                        T::Scalar(s) => Some(SCALARS[*s]),
                        _ => None,
                    })
                    .collect();
                out.push_str(&format!(" [{}]\n", texts.join(", ")));
            }
            T::Seq(items) => {
                out.push('\n');
                for i in items {
                    out.push_str(&pad);
                    out.push('-');
                    write(i, indent + 1, flow, out);
                }
            }
            T::Map(entries) => {
                out.push('\n');
                // Mostly distinct keys (`a` and `'a'` are one key): duplicates are
                // declined, and the fixed cases test them.
                let mut seen = Vec::new();
                for (k, v) in entries {
                    let bare = KEYS[*k].trim_matches('\'');
                    if seen.contains(&bare) {
                        continue;
                    }
                    seen.push(bare);
                    out.push_str(&pad);
                    out.push_str(KEYS[*k]);
                    out.push(':');
                    write(v, indent + 1, flow, out);
                }
            }
        }
    }

    proptest::proptest! {
        /// Generated documents (block and flow style, nested, with spellings that take
        /// the fast path and spellings and keys that must not): the fast path either
        /// declines or reads exactly what the full reader reads.
        #[test]
        fn random_documents_read_the_same_on_both_paths(
            entries in proptest::collection::vec((0..KEYS.len(), tree()), 1..6),
            flow in proptest::bool::ANY,
        ) {
            let mut doc = String::new();
            write(&T::Map(entries), 0, flow, &mut doc);
            same(doc.trim_start_matches('\n'));
        }
    }
}
