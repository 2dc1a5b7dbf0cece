//! The YAML tree to the typed model, collecting every problem on the way.
//!
//! Each function converts what it can and records a diagnostic for what it cannot,
//! then carries on with a placeholder, so one run of lint shows all the unknown keys,
//! wrong types and missing fields of a file. Rules that need the whole model
//! (scopes, ids, kube verbs) are in `validate.rs`.

use std::collections::BTreeMap;

use super::diag::{Diagnostic, suggest};
use super::limits;
use super::model::*;
use super::parse::{Node, Yaml};
pub(crate) use super::source::Source;

mod ops;
mod steps;

pub(crate) const RUNBOOK_KEYS: &[&str] = &[
    "version",
    "name",
    "title",
    "description",
    "tags",
    "owners",
    "links",
    "notify",
    "params",
    "triggers",
    "params_from_alert",
    "unattended",
    "kube",
    "steps",
    "handlers",
    "lock",
    "on_failure",
];
pub(crate) const STEP_KEYS: &[&str] = &[
    "check",
    "action",
    "verify",
    "manual",
    "id",
    "description",
    "instructions",
    "shell",
    "http",
    "prometheus",
    "kube",
    "when",
    "requires",
    "for_each",
    "concurrency",
    "save",
    "expect",
    "summary",
    "preview",
    "timeout",
    "retry",
    "within",
    "every",
    "gate",
    "escalate",
    "on_failure",
    "limit",
    "over_limit",
    "keep",
    "undo",
];
const VERIFICATION_KEYS: &[&str] = &[
    "title",
    "shell",
    "http",
    "prometheus",
    "kube",
    "expect",
    "within",
    "every",
    "timeout",
];
const RUNG_KEYS: &[&str] = &[
    "id",
    "title",
    "shell",
    "http",
    "prometheus",
    "kube",
    "manual",
    "preview",
    "when",
    "requires",
    "for_each",
    "concurrency",
    "timeout",
    "within",
    "gate",
    "verify",
];
const UNDO_KEYS: &[&str] = &["title", "shell", "http", "kube", "gate"];
const PREVIEW_KEYS: &[&str] = &["shell", "http", "prometheus", "kube", "summary"];
const PARAM_KEYS: &[&str] = &["description", "type", "default", "required", "secret"];
const KUBE_DEFAULT_KEYS: &[&str] = &["context", "namespace"];
const LINK_KEYS: &[&str] = &["title", "url"];
const NOTIFY_KEYS: &[&str] = &[
    "url",
    "url_env",
    "kind",
    "on",
    "headers",
    "headers_env",
    "secret_env",
    "timeout",
    "retries",
];
const TRIGGER_KEYS: &[&str] = &["alert"];
const SHELL_KEYS: &[&str] = &["argv", "env", "dir", "stdin"];
const HTTP_KEYS: &[&str] = &["method", "url", "headers", "body", "json", "status"];
const PROMETHEUS_KEYS: &[&str] = &["server", "query", "detects"];
const RETRY_KEYS: &[&str] = &["attempts", "backoff", "max_backoff"];
/// Keys of the mapping form of `gate:`.
pub(crate) const GATE_KEYS: &[&str] =
    &["approvals", "explicit", "expires", "timeout", "on_timeout"];
pub(crate) const KUBE_QUALIFIERS: &[&str] = &[
    "name",
    "namespace",
    "all_namespaces",
    "selector",
    "fields",
    "where",
    "grace_period",
    "force",
    "ignore_daemonsets",
    "delete_emptydir_data",
    "disable_eviction",
    "pod_selector",
    "patch_type",
    "body",
    "key",
    "value",
    "effect",
    "for",
    "replicas",
    "to_revision",
    "container",
    "tail",
    "since",
    "previous",
    "set",
    "remove",
    "overwrite",
    "images",
    "dry_run",
];
const OP_KEYS: &[&str] = &["shell", "http", "prometheus", "kube"];

/// A mapping's entries, after unknown keys were reported.
struct Fields<'n> {
    pos: Pos,
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, ..)| *k == key)
            .map(|(_, _, v)| *v)
    }
    fn key(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, ..)| *k == key)
            .map(|(_, k, _)| *k)
    }
    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

pub(crate) struct Conv<'s> {
    pub src: &'s Source<'s>,
    pub diags: Vec<Diagnostic>,
    /// Steps and rungs (by position) with a misspelt `for_each`: validation treats
    /// them as having one, so `item` there is not reported a second time.
    pub assumed_for_each: Vec<Pos>,
}

impl<'s> Conv<'s> {
    pub fn new(src: &'s Source<'s>) -> Self {
        Conv {
            src,
            diags: Vec::new(),
            assumed_for_each: Vec::new(),
        }
    }

    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn wrong_type(&mut self, node: &Node, expected: &str, what: &str) {
        let len = match &node.value {
            Yaml::Str(s) => self.src.width(node.pos, s),
            Yaml::Seq(_) | Yaml::Map(_) => 1,
            _ => self.src.token_width(node.pos),
        };
        let d = Diagnostic::error(
            "wrong-type",
            node.pos,
            format!("{what} must be {expected}, found {}", node.value.describe()),
        )
        .len(len);
        // `argv: [true]` runs the program `true`; YAML reads the bare word as a boolean.
        self.push(match &node.value {
            Yaml::Bool(b) if expected.contains("string") => d.help(format!(
                "YAML reads a bare `{b}` as a boolean: quote it, `\"{b}\"`"
            )),
            _ => d,
        });
    }

    fn missing(&mut self, f: &Fields<'_>, key: &str, what: &str, help: Option<&str>) {
        let d = Diagnostic::error(
            "missing-key",
            f.pos,
            format!("{what} is missing the required key `{key}`"),
        );
        self.push(match help {
            Some(h) => d.help(h),
            None => d,
        });
    }

    /// The entries of a mapping; reports a non-mapping and every unknown key.
    fn fields<'n>(&mut self, node: &'n Node, what: &str, allowed: &[&str]) -> Option<Fields<'n>> {
        let Yaml::Map(entries) = &node.value else {
            self.wrong_type(node, "a mapping", what);
            return None;
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let Yaml::Str(key) = &k.value else {
                self.wrong_type(k, "a string", &format!("a key of {what}"));
                continue;
            };
            if allowed.contains(&key.as_str()) {
                out.push((key.as_str(), k, v));
            } else if self.unknown_key(k, key, what, allowed) == Some("for_each") {
                self.assumed_for_each.push(node.pos);
            }
        }
        Some(Fields {
            pos: node.pos,
            entries: out,
        })
    }

    /// Reports an unknown key; returns the key it suggests instead.
    fn unknown_key<'a>(
        &mut self,
        k: &Node,
        key: &str,
        what: &str,
        allowed: &[&'a str],
    ) -> Option<&'a str> {
        let d = Diagnostic::error(
            "unknown-key",
            k.pos,
            format!("unknown key `{key}` in {what}"),
        )
        .len(key.chars().count());
        let suggestion = suggest(key, allowed.iter().copied());
        let d = match suggestion {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None => d.help(format!("expected one of: {}", allowed.join(", "))),
        };
        self.push(d);
        suggestion
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<Sp<String>> {
        match &node.value {
            Yaml::Str(s) => Some(Sp::new(node.pos, s.clone())),
            // Numbers are fine where text is expected (`value: 1`, `default: 8080`).
            Yaml::Int(i) => Some(Sp::new(node.pos, i.to_string())),
            Yaml::Float(f) => Some(Sp::new(node.pos, f.to_string())),
            _ => {
                self.wrong_type(node, "a string", what);
                None
            }
        }
    }

    fn opt_string(&mut self, f: &Fields<'_>, key: &str) -> Option<Sp<String>> {
        let n = f.get(key)?;
        self.string(n, &format!("`{key}`"))
    }

    fn req_string(&mut self, f: &Fields<'_>, key: &str, what: &str) -> Sp<String> {
        match f.get(key) {
            Some(n) => self
                .string(n, &format!("`{key}`"))
                .unwrap_or_else(|| Sp::new(n.pos, String::new())),
            None => {
                self.missing(f, key, what, None);
                Sp::new(f.pos, String::new())
            }
        }
    }

    fn uint<T: TryFrom<i64>>(&mut self, node: &Node, what: &str) -> Option<Sp<T>> {
        match &node.value {
            Yaml::Int(i) => match T::try_from(*i) {
                Ok(v) if *i >= 0 => Some(Sp::new(node.pos, v)),
                _ => {
                    self.push(Diagnostic::error(
                        "out-of-range",
                        node.pos,
                        format!("{what} is out of range: {i}"),
                    ));
                    None
                }
            },
            _ => {
                self.wrong_type(node, "a whole number", what);
                None
            }
        }
    }

    /// A whole number of at least 1 under `key`; 0 is an error saying what it
    /// would mean (`why`: "keeps nothing").
    fn at_least_one(&mut self, node: &Node, key: &str, why: &str) -> Option<u32> {
        let v = self.uint::<u32>(node, &format!("`{key}`"))?;
        if v.value == 0 {
            self.push(Diagnostic::error(
                "out-of-range",
                v.pos,
                format!("`{key}: 0` {why}; it must be at least 1"),
            ));
            return None;
        }
        Some(v.value)
    }

    fn opt_uint<T: TryFrom<i64>>(&mut self, f: &Fields<'_>, key: &str) -> Option<Sp<T>> {
        let n = f.get(key)?;
        self.uint(n, &format!("`{key}`"))
    }

    fn opt_bool(&mut self, f: &Fields<'_>, key: &str) -> Option<Sp<bool>> {
        let n = f.get(key)?;
        match &n.value {
            Yaml::Bool(b) => Some(Sp::new(n.pos, *b)),
            other => {
                let d = Diagnostic::error(
                    "wrong-type",
                    n.pos,
                    format!("`{key}` must be true or false, found {}", other.describe()),
                )
                .len(self.src.token_width(n.pos));
                // `yes`/`on` are strings in YAML 1.2, which is what we read.
                let d = match other {
                    Yaml::Str(s)
                        if matches!(
                            s.as_str(),
                            "yes"
                                | "no"
                                | "on"
                                | "off"
                                | "y"
                                | "n"
                                | "True"
                                | "False"
                                | "TRUE"
                                | "FALSE"
                        ) =>
                    {
                        d.help(format!("write `true` or `false` (`{s}` is a string here)"))
                    }
                    _ => d,
                };
                self.push(d);
                None
            }
        }
    }

    fn flag(&mut self, f: &Fields<'_>, key: &str) -> bool {
        self.opt_bool(f, key).is_some_and(|b| b.value)
    }

    fn duration(&mut self, f: &Fields<'_>, key: &str) -> Option<Sp<Duration>> {
        let n = f.get(key)?;
        let text = self.string(n, &format!("`{key}`"))?;
        match Duration::parse(&text) {
            Ok(d) if d.0 > limits::MAX_DURATION => {
                let len = self.src.width(n.pos, &text);
                self.push(
                    Diagnostic::error(
                        "duration-too-long",
                        n.pos,
                        format!(
                            "`{key}: {}` is longer than the limit of 30 days",
                            text.value
                        ),
                    )
                    .len(len)
                    .help("durations are at most 30d (docs/format.md, Limits)"),
                );
                None
            }
            Ok(d) if key == "every" && d.0.is_zero() => {
                let len = self.src.width(n.pos, &text);
                self.push(
                    Diagnostic::error("every-zero", n.pos, "`every: 0` would poll without pause")
                        .len(len)
                        .help("poll at a human pace, e.g. `every: 5s`"),
                );
                None
            }
            Ok(d) => Some(Sp::new(n.pos, d)),
            Err(e) => {
                let len = self.src.width(n.pos, &text);
                self.push(
                    Diagnostic::error("bad-duration", n.pos, format!("`{key}`: {e}"))
                        .len(len)
                        .help("durations look like 30s, 5m, 1h30m or 250ms"),
                );
                None
            }
        }
    }

    fn string_list(&mut self, f: &Fields<'_>, key: &str) -> Vec<Sp<String>> {
        let Some(n) = f.get(key) else {
            return Vec::new();
        };
        match &n.value {
            Yaml::Seq(items) => items
                .iter()
                .filter_map(|i| self.string(i, &format!("an item of `{key}`")))
                .collect(),
            _ => {
                self.wrong_type(n, "a list of strings", &format!("`{key}`"));
                Vec::new()
            }
        }
    }

    fn string_map(&mut self, f: &Fields<'_>, key: &str) -> BTreeMap<String, Sp<String>> {
        let mut out = BTreeMap::new();
        let Some(n) = f.get(key) else {
            return out;
        };
        let Yaml::Map(entries) = &n.value else {
            self.wrong_type(n, "a mapping of names to strings", &format!("`{key}`"));
            return out;
        };
        for (k, v) in entries {
            let Some(name) = self.string(k, &format!("a key of `{key}`")) else {
                continue;
            };
            if let Some(value) = self.string(v, &format!("`{key}.{}`", name.value)) {
                out.insert(name.value, value);
            }
        }
        out
    }

    fn json(&mut self, node: &Node) -> serde_json::Value {
        use serde_json::Value as J;
        match &node.value {
            Yaml::Null => J::Null,
            Yaml::Bool(b) => J::Bool(*b),
            Yaml::Int(i) => J::from(*i),
            Yaml::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Yaml::Str(s) => J::String(s.clone()),
            Yaml::Seq(items) => J::Array(items.iter().map(|i| self.json(i)).collect()),
            Yaml::Map(entries) => {
                let mut m = serde_json::Map::new();
                for (k, v) in entries {
                    let key = match &k.value {
                        Yaml::Str(s) => s.clone(),
                        Yaml::Int(i) => i.to_string(),
                        Yaml::Bool(b) => b.to_string(),
                        _ => {
                            self.wrong_type(k, "a string", "a JSON object key");
                            continue;
                        }
                    };
                    let value = self.json(v);
                    m.insert(key, value);
                }
                J::Object(m)
            }
        }
    }
}
