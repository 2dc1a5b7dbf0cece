//! YAML text to a tree of [`Node`]s that remember where they were written.
//!
//! It reads the document, with the one reader policy of [`super::yaml`], into a
//! generic tree, not into the model, so that the converter (`convert.rs`) can report
//! every problem of the file instead of the first one serde would stop at.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::diag::Diagnostic;
use super::model::Pos;
use super::yaml::{self, Spanned, YamlError};

/// A YAML value with the position of its first character.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub pos: Pos,
    pub value: Yaml,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Yaml {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer beyond i64 or a float.
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order; keys keep their own positions.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The value as JSON; keys that are not strings are written as their text.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Yaml::Null => J::Null,
            Yaml::Bool(b) => J::Bool(*b),
            Yaml::Int(i) => J::from(*i),
            Yaml::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Yaml::Str(s) => J::String(s.clone()),
            Yaml::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Yaml::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| {
                        let key = match &k.to_json() {
                            J::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (key, v.to_json())
                    })
                    .collect(),
            ),
        }
    }
}

impl Yaml {
    /// "a string", "a list"...: for "expected X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match self {
            Yaml::Null => "nothing (null)",
            Yaml::Bool(_) => "a boolean",
            Yaml::Int(_) => "an integer",
            Yaml::Float(_) => "a number",
            Yaml::Str(_) => "a string",
            Yaml::Seq(_) => "a list",
            Yaml::Map(_) => "a mapping",
        }
    }
}

/// Parse one YAML document. On a syntax error, returns one diagnostic at the
/// position the YAML reader reports.
pub(crate) fn parse_yaml(source: &str) -> Result<Node, Diagnostic> {
    if let Some(d) = tab_indentation(source) {
        return Err(d);
    }
    if let Some(node) = yaml::plain_tree(source) {
        return Ok(node);
    }
    match yaml::from_str::<Option<Node>>(source) {
        Ok(Some(node)) => Ok(node),
        Ok(None) => Err(Diagnostic::error(
            "empty",
            Pos { line: 1, col: 1 },
            "the file is empty: a runbook is a mapping with `version`, `name`, `title` and `steps`",
        )),
        Err(e) => Err(yaml_error(&e)),
    }
}

/// The YAML reader stops at its first error. To report the independent ones too,
/// blank the list item (a step, a rung) or line that holds the error, keeping the
/// line numbers, and read again; an error inside the blanked region's reach (at
/// or before its last line) is taken as a consequence of the first and ends the
/// search. At most `limit` errors in all.
///
/// A limit of the reader (expansion budget, depth, size) is not a local mistake:
/// blanking the line it names only makes the next alias dangle, so it is reported
/// alone, and so is an alias left dangling by a blanked anchor. (Re-reading a
/// document that hit a budget 20 times made `lint` take half a minute.)
pub(crate) fn yaml_errors(source: &str, first: Diagnostic, limit: usize) -> Vec<Diagnostic> {
    if matches!(first.code, "yaml-budget" | "yaml-size") {
        return vec![first];
    }
    let mut lines: Vec<String> = source.lines().map(str::to_owned).collect();
    let mut out = vec![first];
    while out.len() < limit {
        let last = out.last().map_or(0, |d| d.line as usize);
        if last == 0 || last > lines.len() {
            break;
        }
        let (start, end) = enclosing_item(&lines, last - 1);
        for l in &mut lines[start..end] {
            l.clear();
        }
        let text = lines.join("\n");
        match parse_yaml(&text) {
            Err(d) if d.message.contains("unknown anchor") => break,
            Err(d) if d.line as usize > end && d.code != "empty" => out.push(d),
            _ => break,
        }
    }
    out
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The 0-based line range [start, end) of the outermost list item below the top
/// level that holds line `at` (a whole step), else the line and its deeper lines.
fn enclosing_item(lines: &[String], at: usize) -> (usize, usize) {
    let mut start = at;
    let mut i = at;
    loop {
        let l = &lines[i];
        if is_content(l) {
            if indent(l) == 0 && i != at {
                break;
            }
            if l.trim_start().starts_with("- ") || l.trim() == "-" {
                start = i;
            }
        }
        if i == 0 {
            break;
        }
        i -= 1;
    }
    let depth = indent(&lines[start]);
    let mut end = at + 1;
    while end < lines.len() && (!is_content(&lines[end]) || indent(&lines[end]) > depth) {
        end += 1;
    }
    (start, end)
}

/// YAML forbids tabs for indentation; the reader's message for them is obscure, so
/// find the first one ourselves and say what to do.
fn tab_indentation(source: &str) -> Option<Diagnostic> {
    let mut in_block_scalar = false;
    for (i, line) in source.lines().enumerate() {
        let indent: String = line
            .chars()
            .take_while(|c| *c == ' ' || *c == '\t')
            .collect();
        if let Some(col) = indent.find('\t') {
            let rest = line.trim_start_matches([' ', '\t']);
            if !rest.is_empty() && !rest.starts_with('#') && !in_block_scalar {
                return Some(
                    Diagnostic::error(
                        "yaml-tab",
                        Pos {
                            line: (i + 1) as u32,
                            col: (col + 1) as u32,
                        },
                        "a tab is used for indentation; YAML allows only spaces",
                    )
                    .help("replace the tab with spaces (two per level is usual)"),
                );
            }
        }
        // Tabs inside `|`/`>` block scalars are content, not indentation; a rough
        // guard: after a line ending in `|` or `>`, indented lines are content.
        let trimmed = line.trim_end();
        if trimmed.ends_with('|')
            || trimmed.ends_with('>')
            || trimmed.ends_with("|-")
            || trimmed.ends_with(">-")
        {
            in_block_scalar = true;
        } else if !line.starts_with([' ', '\t']) {
            in_block_scalar = false;
        }
    }
    None
}

fn yaml_error(e: &YamlError) -> Diagnostic {
    let pos = Pos {
        line: u32::try_from(e.line).unwrap_or(0),
        col: u32::try_from(e.column).unwrap_or(0),
    };
    let code = match e.kind {
        yaml::YamlErrorKind::DuplicateKey(_) => "yaml-duplicate-key",
        yaml::YamlErrorKind::Budget => "yaml-budget",
        yaml::YamlErrorKind::Size => "yaml-size",
        yaml::YamlErrorKind::Tag => "yaml-tag",
        yaml::YamlErrorKind::Indentation | yaml::YamlErrorKind::Other => "yaml-syntax",
    };
    let mut d = Diagnostic::error(code, pos, format!("invalid YAML: {}", e.message));
    if let yaml::YamlErrorKind::DuplicateKey(key) = &e.kind
        && !key.is_empty()
    {
        d = d.len(key.chars().count());
    }
    match e.help() {
        Some(h) => d.help(h),
        None => d,
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Yaml>::deserialize(d)?;
        Ok(Node {
            pos: Pos {
                line: u32::try_from(spanned.referenced.line()).unwrap_or(0),
                col: u32::try_from(spanned.referenced.column()).unwrap_or(0),
            },
            value: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for Yaml {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(YamlVisitor)
    }
}

struct YamlVisitor;

impl<'de> Visitor<'de> for YamlVisitor {
    type Value = Yaml;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Yaml, E> {
        Ok(Yaml::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Yaml, E> {
        Ok(Yaml::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Yaml, E> {
        Ok(i64::try_from(v).map_or(Yaml::Float(v as f64), Yaml::Int))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Yaml, E> {
        Ok(i64::try_from(v).map_or(Yaml::Float(v as f64), Yaml::Int))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Yaml, E> {
        Ok(i64::try_from(v).map_or(Yaml::Float(v as f64), Yaml::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Yaml, E> {
        Ok(Yaml::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Yaml, E> {
        Ok(Yaml::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Yaml, E> {
        Ok(Yaml::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Yaml, E> {
        Ok(Yaml::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Yaml, E> {
        Ok(Yaml::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Yaml, E> {
        Ok(Yaml::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Yaml, D::Error> {
        Yaml::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Yaml, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Yaml::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Yaml, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(Yaml::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(src: &str) -> Vec<(Node, Node)> {
        match parse_yaml(src).unwrap().value {
            Yaml::Map(m) => m,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn keys_and_values_keep_their_positions() {
        let m = map("a: 1\nbb:\n  - x\n  - 'y'\n");
        assert_eq!(m[0].0.pos, Pos { line: 1, col: 1 });
        assert_eq!(m[0].1.pos, Pos { line: 1, col: 4 });
        assert_eq!(m[1].0.pos, Pos { line: 2, col: 1 });
        let Yaml::Seq(items) = &m[1].1.value else {
            panic!("not a list")
        };
        assert_eq!(items[1].pos, Pos { line: 4, col: 5 });
        assert_eq!(items[1].value, Yaml::Str("y".into()));
    }

    #[test]
    fn yes_and_off_stay_strings() {
        let m = map("a: off\nb: yes\nc: true\n");
        assert_eq!(m[0].1.value, Yaml::Str("off".into()));
        assert_eq!(m[1].1.value, Yaml::Str("yes".into()));
        assert_eq!(m[2].1.value, Yaml::Bool(true));
    }

    #[test]
    fn duplicate_keys_are_rejected_with_a_position() {
        let e = parse_yaml("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.code, "yaml-duplicate-key", "{e:?}");
        assert_eq!(e.line, 3, "{e:?}");
    }

    #[test]
    fn tab_indentation_is_reported_at_the_tab() {
        let e = parse_yaml("a:\n\tb: 1\n").unwrap_err();
        assert_eq!((e.code, e.line, e.column), ("yaml-tab", 2, 1));
    }

    #[test]
    fn a_reader_limit_is_reported_once_not_re_read_for_more_errors() {
        // Merge keys chained deeper than the reader allows: the first error is the
        // limit; blanking its line would only make every later alias dangle.
        let mut src = String::from("m0: &m0 {a: 1}\n");
        for i in 1..200 {
            src.push_str(&format!("m{i}: &m{i} {{<<: *m{}, k{i}: {i}}}\n", i - 1));
        }
        let first = parse_yaml(&src).unwrap_err();
        let all = yaml_errors(&src, first.clone(), 20);
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0], first);
    }

    #[test]
    fn alias_bomb_is_stopped_by_the_budget() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            src.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = parse_yaml(&src).unwrap_err();
        assert_eq!(e.code, "yaml-budget", "{e:?}");
        // The message names the limit, the value reached and how to raise it.
        assert!(e.message.contains("anchors and aliases"), "{}", e.message);
        assert!(e.message.contains("the limit is 20000"), "{}", e.message);
        assert!(
            e.message.contains("RUNBOOK_YAML_MAX_ALIAS_EVENTS=N"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_plain_runbook_of_20_000_steps_is_within_the_budget() {
        let mut src = String::from("version: 1\nname: big\ntitle: Big\nsteps:\n");
        for i in 0..20_000 {
            src.push_str(&format!(
                "  - check: Step {i}\n    id: s{i}\n    shell: {{ argv: [\"true\", \"{i}\"] }}\n"
            ));
        }
        // ~160 000 nodes: above the fixed floor of 100 000, below one per byte.
        let node = parse_yaml(&src).unwrap_or_else(|e| panic!("{e:?}"));
        let Yaml::Map(m) = node.value else {
            panic!("not a map")
        };
        let Yaml::Seq(steps) = &m[3].1.value else {
            panic!("steps not a list")
        };
        assert_eq!(steps.len(), 20_000);
    }
}
