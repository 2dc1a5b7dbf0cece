//! The YAML tree to the typed model, collecting every problem on the way.
//!
//! Each function converts what it can and records a diagnostic for what it cannot,
//! then carries on with a placeholder, so one run of lint shows all the unknown keys,
//! wrong types and missing fields of a file. Rules that need the whole model
//! (scopes, ids, kube verbs) are in `validate.rs`.

use std::collections::BTreeMap;

use super::diag::{Diagnostic, suggest};
use super::model::*;
use super::parse::{Node, Yaml};

pub(crate) const RUNBOOK_KEYS: &[&str] = &[
    "version",
    "name",
    "title",
    "description",
    "tags",
    "owners",
    "params",
    "unattended",
    "kube",
    "steps",
    "handlers",
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
    "for_each",
    "concurrency",
    "save",
    "expect",
    "timeout",
    "retry",
    "within",
    "every",
    "gate",
    "escalate",
    "on_failure",
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
    "when",
    "for_each",
    "concurrency",
    "timeout",
    "within",
    "gate",
];
const PARAM_KEYS: &[&str] = &["description", "default", "required", "secret"];
const KUBE_DEFAULT_KEYS: &[&str] = &["context", "namespace"];
const SHELL_KEYS: &[&str] = &["argv", "env", "dir", "stdin"];
const HTTP_KEYS: &[&str] = &["method", "url", "headers", "body", "json", "status"];
const PROMETHEUS_KEYS: &[&str] = &["server", "query"];
const RETRY_KEYS: &[&str] = &["attempts", "backoff", "max_backoff"];
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
];
const OP_KEYS: &[&str] = &["shell", "http", "prometheus", "kube"];

/// The source text with a line index: positions to byte offsets and back.
pub(crate) struct Source<'s> {
    pub text: &'s str,
    line_starts: Vec<usize>,
}

impl<'s> Source<'s> {
    pub fn new(text: &'s str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source { text, line_starts }
    }

    /// Byte offset of a 1-based line and character column.
    pub fn byte(&self, pos: Pos) -> Option<usize> {
        let start = *self.line_starts.get((pos.line as usize).checked_sub(1)?)?;
        let line = &self.text[start..];
        let chars = (pos.col as usize).checked_sub(1)?;
        line.char_indices()
            .nth(chars)
            .map(|(b, _)| start + b)
            .or(Some(start + line.len()))
    }

    pub fn pos_at(&self, byte: usize) -> Pos {
        let line = self.line_starts.partition_point(|s| *s <= byte).max(1);
        let start = self.line_starts[line - 1];
        let col = self
            .text
            .get(start..byte)
            .map_or(1, |s| s.chars().count() + 1);
        Pos {
            line: line as u32,
            col: col as u32,
        }
    }

    /// The position of byte `offset` inside the string value `sp`, when the value is
    /// written verbatim in the file (plain or quoted without escapes before that
    /// point); otherwise the position of the value itself.
    pub fn pos_in(&self, sp: &Sp<String>, offset: usize) -> Pos {
        let Some(start) = self.byte(sp.pos) else {
            return sp.pos;
        };
        let raw = &self.text[start..];
        let skip = usize::from(raw.starts_with(['"', '\'']));
        let Some(prefix) = sp.value.get(..offset) else {
            return sp.pos;
        };
        if raw[skip..].starts_with(prefix) {
            self.pos_at(start + skip + offset)
        } else {
            sp.pos
        }
    }

    /// How many characters the plain token at `pos` takes (up to a space, `,`, `}`,
    /// `]` or `#`), for values that are not strings.
    pub fn token_width(&self, pos: Pos) -> usize {
        self.byte(pos).map_or(1, |b| {
            self.text[b..]
                .chars()
                .take_while(|c| !matches!(c, ' ' | '\t' | '\n' | '\r' | ',' | '}' | ']' | '#'))
                .count()
                .max(1)
        })
    }

    /// How many characters a scalar takes in the file (for the caret underline).
    pub fn width(&self, pos: Pos, text: &str) -> usize {
        let quoted = self
            .byte(pos)
            .and_then(|b| self.text[b..].chars().next())
            .is_some_and(|c| c == '"' || c == '\'');
        let first_line = text.lines().next().unwrap_or("");
        first_line.chars().count() + if quoted { 2 } else { 0 }
    }
}

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
        self.push(
            Diagnostic::error(
                "wrong-type",
                node.pos,
                format!("{what} must be {expected}, found {}", node.value.describe()),
            )
            .len(len),
        );
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
                );
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

    // ----- the model -------------------------------------------------------------

    pub fn runbook(&mut self, root: &Node) -> Option<Runbook> {
        let f = self.fields(root, "the runbook", RUNBOOK_KEYS)?;
        let version = match f.get("version") {
            Some(n) => self
                .uint::<u32>(n, "`version`")
                .unwrap_or_else(|| Sp::new(n.pos, 0)),
            None => {
                self.missing(
                    &f,
                    "version",
                    "the runbook",
                    Some("add `version: 1` at the top"),
                );
                Sp::new(Pos::UNKNOWN, 1)
            }
        };
        let name = self.req_string(&f, "name", "the runbook");
        let title = self.req_string(&f, "title", "the runbook");
        let description = self.opt_string(&f, "description");
        let tags = self.string_list(&f, "tags");
        let owners = self.string_list(&f, "owners");
        let params = self.params(&f);
        let unattended = self.string_list(&f, "unattended");
        let kube = f.get("kube").and_then(|n| {
            let k = self.fields(n, "`kube` defaults", KUBE_DEFAULT_KEYS)?;
            Some(KubeDefaults {
                context: self.opt_string(&k, "context"),
                namespace: self.opt_string(&k, "namespace"),
            })
        });
        let steps = match f.get("steps") {
            Some(n) => self.steps(n, "steps"),
            None => {
                self.missing(&f, "steps", "the runbook", None);
                Vec::new()
            }
        };
        let handlers = f
            .get("handlers")
            .map_or_else(Vec::new, |n| self.steps(n, "handlers"));
        Some(Runbook {
            version,
            name,
            title,
            description,
            tags,
            owners,
            params,
            unattended,
            kube,
            steps,
            handlers,
        })
    }

    fn params(&mut self, f: &Fields<'_>) -> BTreeMap<String, Param> {
        let mut out = BTreeMap::new();
        let Some(n) = f.get("params") else {
            return out;
        };
        let Yaml::Map(entries) = &n.value else {
            self.wrong_type(n, "a mapping of parameter names", "`params`");
            return out;
        };
        for (k, v) in entries {
            let Some(name) = self.string(k, "a parameter name") else {
                continue;
            };
            let what = format!("parameter `{}`", name.value);
            if !matches!(v.value, Yaml::Map(_)) {
                let d = Diagnostic::error(
                    "wrong-type",
                    v.pos,
                    format!("{what} must be a mapping, found {}", v.value.describe()),
                );
                let d = match &v.value {
                    Yaml::Str(_) | Yaml::Int(_) | Yaml::Float(_) | Yaml::Bool(_) => {
                        d.help(format!("write `{}: {{ default: ... }}`", name.value))
                    }
                    _ => d,
                };
                self.push(d);
                continue;
            }
            let Some(p) = self.fields(v, &what, PARAM_KEYS) else {
                continue;
            };
            let param = Param {
                pos: k.pos,
                description: self.opt_string(&p, "description"),
                default: p.get("default").map(|d| Sp::new(d.pos, self.json(d))),
                required: self.flag(&p, "required"),
                secret: self.flag(&p, "secret"),
            };
            out.insert(name.value, param);
        }
        out
    }

    fn steps(&mut self, node: &Node, key: &str) -> Vec<Step> {
        let Yaml::Seq(items) = &node.value else {
            self.wrong_type(node, "a list of steps", &format!("`{key}`"));
            return Vec::new();
        };
        items.iter().filter_map(|i| self.step(i)).collect()
    }

    /// Reports more than one of `keys` in `f` (the second and later).
    fn at_most_one(&mut self, f: &Fields<'_>, keys: &[&str], code: &'static str, what: &str) {
        let present: Vec<&str> = keys.iter().copied().filter(|k| f.has(k)).collect();
        if present.len() > 1 {
            for extra in &present[1..] {
                if let Some(k) = f.key(extra) {
                    self.push(
                        Diagnostic::error(
                            code,
                            k.pos,
                            format!(
                                "{what} has both `{}` and `{extra}`; it takes exactly one",
                                present[0]
                            ),
                        )
                        .len(extra.len()),
                    );
                }
            }
        }
    }

    fn step(&mut self, node: &Node) -> Option<Step> {
        let f = self.fields(node, "a step", STEP_KEYS)?;
        let verify_is_title = f
            .get("verify")
            .is_some_and(|n| matches!(n.value, Yaml::Str(_)));
        let kinds: Vec<&str> = ["check", "action", "verify", "manual"]
            .into_iter()
            .filter(|k| *k != "verify" || verify_is_title)
            .collect();
        if kinds.iter().all(|k| !f.has(k)) {
            self.push(
                Diagnostic::error(
                    "step-kind",
                    f.pos,
                    "a step needs its title under one of `check`, `action`, `verify` or `manual`",
                )
                .help("for example `- check: Pods stuck in Unknown`"),
            );
        } else {
            self.at_most_one(&f, &kinds, "step-kind", "this step");
        }
        self.at_most_one(&f, OP_KEYS, "one-operation", "this step");
        let id = match f.get("id") {
            Some(n) => self
                .string(n, "`id`")
                .unwrap_or_else(|| Sp::new(n.pos, String::new())),
            None => {
                self.missing(&f, "id", "this step", Some("give every step a stable id, e.g. `id: lost-pods`; the journal and `--approve` refer to it"));
                Sp::new(f.pos, String::new())
            }
        };
        let verify = match f.get("verify") {
            None => None,
            Some(n) if verify_is_title => self.string(n, "`verify`").map(VerifyField::Title),
            Some(n) => self
                .verification(n)
                .map(|v| VerifyField::Block(Box::new(v))),
        };
        Some(Step {
            pos: f.pos,
            check: self.opt_string(&f, "check"),
            action: self.opt_string(&f, "action"),
            verify,
            manual: self.opt_string(&f, "manual"),
            id,
            description: self.opt_string(&f, "description"),
            instructions: self.opt_string(&f, "instructions"),
            shell: f.get("shell").and_then(|n| self.shell(n)),
            http: f.get("http").and_then(|n| self.http(n)),
            prometheus: f.get("prometheus").and_then(|n| self.prometheus(n)),
            kube: f.get("kube").and_then(|n| self.kube(n)),
            when: self.opt_string(&f, "when"),
            for_each: self.opt_string(&f, "for_each"),
            concurrency: self.opt_uint(&f, "concurrency"),
            save: self.opt_string(&f, "save"),
            expect: self.opt_string(&f, "expect"),
            timeout: self.duration(&f, "timeout"),
            retry: f.get("retry").and_then(|n| self.retry(n)),
            within: self.duration(&f, "within"),
            every: self.duration(&f, "every"),
            gate: self.gate(&f),
            escalate: f
                .get("escalate")
                .map_or_else(Vec::new, |n| self.escalate(n)),
            on_failure: self.on_failure(&f),
        })
    }

    fn verification(&mut self, node: &Node) -> Option<Verification> {
        let f = self.fields(node, "a verification", VERIFICATION_KEYS)?;
        self.at_most_one(&f, OP_KEYS, "one-operation", "this verification");
        Some(Verification {
            pos: f.pos,
            title: self.opt_string(&f, "title"),
            shell: f.get("shell").and_then(|n| self.shell(n)),
            http: f.get("http").and_then(|n| self.http(n)),
            prometheus: f.get("prometheus").and_then(|n| self.prometheus(n)),
            kube: f.get("kube").and_then(|n| self.kube(n)),
            expect: self.opt_string(&f, "expect"),
            within: self.duration(&f, "within"),
            every: self.duration(&f, "every"),
            timeout: self.duration(&f, "timeout"),
        })
    }

    fn escalate(&mut self, node: &Node) -> Vec<Rung> {
        let Yaml::Seq(items) = &node.value else {
            self.wrong_type(node, "a list of remedies", "`escalate`");
            return Vec::new();
        };
        items.iter().filter_map(|i| self.rung(i)).collect()
    }

    fn rung(&mut self, node: &Node) -> Option<Rung> {
        let f = self.fields(node, "an escalation rung", RUNG_KEYS)?;
        let ops = ["shell", "http", "prometheus", "kube", "manual"];
        self.at_most_one(&f, &ops, "one-operation", "this rung");
        if !ops.iter().any(|k| f.has(k)) {
            self.push(
                Diagnostic::error(
                    "missing-operation",
                    f.pos,
                    "an escalation rung needs one remedy: `shell`, `http`, `kube` or `manual`",
                )
                .help("e.g. `- kube: { delete: pods, selector: \"component=hub\" }`"),
            );
        }
        Some(Rung {
            pos: f.pos,
            id: self.opt_string(&f, "id"),
            title: self.opt_string(&f, "title"),
            shell: f.get("shell").and_then(|n| self.shell(n)),
            http: f.get("http").and_then(|n| self.http(n)),
            prometheus: f.get("prometheus").and_then(|n| self.prometheus(n)),
            kube: f.get("kube").and_then(|n| self.kube(n)),
            manual: self.opt_string(&f, "manual"),
            when: self.opt_string(&f, "when"),
            for_each: self.opt_string(&f, "for_each"),
            concurrency: self.opt_uint(&f, "concurrency"),
            timeout: self.duration(&f, "timeout"),
            within: self.duration(&f, "within"),
            gate: self.gate(&f),
        })
    }

    fn gate(&mut self, f: &Fields<'_>) -> Option<Sp<Gate>> {
        let n = f.get("gate")?;
        let s = self.string(n, "`gate`")?;
        match s.value.as_str() {
            "approve" => Some(Sp::new(n.pos, Gate::Approve)),
            "auto" => Some(Sp::new(n.pos, Gate::Auto)),
            other => {
                let len = self.src.width(n.pos, other);
                self.push(
                    Diagnostic::error(
                        "bad-value",
                        n.pos,
                        format!("`gate` must be `approve` or `auto`, found `{other}`"),
                    )
                    .len(len),
                );
                None
            }
        }
    }

    fn on_failure(&mut self, f: &Fields<'_>) -> Option<Sp<OnFailure>> {
        let n = f.get("on_failure")?;
        match &n.value {
            Yaml::Str(s) => match s.as_str() {
                "stop" => Some(Sp::new(n.pos, OnFailure::Policy(FailurePolicy::Stop))),
                "continue" => Some(Sp::new(n.pos, OnFailure::Policy(FailurePolicy::Continue))),
                other => {
                    let len = self.src.width(n.pos, other);
                    self.push(
                        Diagnostic::error(
                            "bad-value",
                            n.pos,
                            format!("`on_failure` must be `stop`, `continue` or a list of handler ids, found `{other}`"),
                        )
                        .len(len)
                        .help(format!("to run a handler, write `on_failure: [{other}]`")),
                    );
                    None
                }
            },
            Yaml::Seq(items) => {
                let ids = items
                    .iter()
                    .filter_map(|i| self.string(i, "a handler id in `on_failure`"))
                    .collect();
                Some(Sp::new(n.pos, OnFailure::Run(ids)))
            }
            _ => {
                self.wrong_type(
                    n,
                    "`stop`, `continue` or a list of handler ids",
                    "`on_failure`",
                );
                None
            }
        }
    }

    fn retry(&mut self, node: &Node) -> Option<Retry> {
        let f = self.fields(node, "`retry`", RETRY_KEYS)?;
        let attempts = match f.get("attempts") {
            Some(n) => self.uint::<u32>(n, "`attempts`")?,
            None => {
                self.missing(
                    &f,
                    "attempts",
                    "`retry`",
                    Some("e.g. `retry: { attempts: 3, backoff: 2s }`"),
                );
                return None;
            }
        };
        if attempts.value == 0 {
            self.push(Diagnostic::error(
                "out-of-range",
                attempts.pos,
                "`attempts` counts the first try too; it must be at least 1",
            ));
        }
        Some(Retry {
            attempts,
            backoff: self.duration(&f, "backoff"),
            max_backoff: self.duration(&f, "max_backoff"),
        })
    }

    fn shell(&mut self, node: &Node) -> Option<ShellOp> {
        let f = self.fields(node, "`shell`", SHELL_KEYS)?;
        let argv = match f.get("argv") {
            Some(n) => match &n.value {
                Yaml::Seq(items) if items.is_empty() => {
                    self.push(Diagnostic::error(
                        "empty-argv",
                        n.pos,
                        "`argv` is empty: name the program to run",
                    ));
                    Vec::new()
                }
                Yaml::Seq(items) => items
                    .iter()
                    .filter_map(|i| self.string(i, "an `argv` entry"))
                    .collect(),
                Yaml::Str(s) => {
                    let words: Vec<&str> = s.split_whitespace().collect();
                    self.push(
                        Diagnostic::error(
                            "wrong-type",
                            n.pos,
                            "`argv` must be a list: program and arguments, never one shell string",
                        )
                        .len(self.src.width(n.pos, s))
                        .help(format!("write `argv: [{}]`", words.join(", "))),
                    );
                    Vec::new()
                }
                _ => {
                    self.wrong_type(n, "a list of strings", "`argv`");
                    Vec::new()
                }
            },
            None => {
                self.missing(
                    &f,
                    "argv",
                    "`shell`",
                    Some("e.g. `shell: { argv: [kubectl, get, pods] }`"),
                );
                Vec::new()
            }
        };
        Some(ShellOp {
            argv,
            env: self.string_map(&f, "env"),
            dir: self.opt_string(&f, "dir"),
            stdin: self.opt_string(&f, "stdin"),
        })
    }

    fn http(&mut self, node: &Node) -> Option<HttpOp> {
        let f = self.fields(node, "`http`", HTTP_KEYS)?;
        let status = match f.get("status") {
            None => Vec::new(),
            Some(n) => match &n.value {
                Yaml::Seq(items) => items
                    .iter()
                    .filter_map(|i| self.uint::<u16>(i, "a status code"))
                    .collect(),
                _ => self.uint::<u16>(n, "`status`").into_iter().collect(),
            },
        };
        Some(HttpOp {
            method: self.opt_string(&f, "method"),
            url: self.req_string(&f, "url", "`http`"),
            headers: self.string_map(&f, "headers"),
            body: self.opt_string(&f, "body"),
            json: f.get("json").map(|n| Sp::new(n.pos, self.json(n))),
            status,
        })
    }

    fn prometheus(&mut self, node: &Node) -> Option<PrometheusOp> {
        let f = self.fields(node, "`prometheus`", PROMETHEUS_KEYS)?;
        Some(PrometheusOp {
            server: self.req_string(&f, "server", "`prometheus`"),
            query: self.req_string(&f, "query", "`prometheus`"),
        })
    }

    /// Keys a verb does not use are errors (a `force: true` on a `get` is a mistake
    /// someone will rely on); keys it needs must be there.
    fn kube_qualifiers(&mut self, f: &Fields<'_>, verb: &str) {
        let (allowed, required) = kube_verb_keys(verb);
        for (key, k, _) in &f.entries {
            if KUBE_VERBS.contains(key) || allowed.contains(key) {
                continue;
            }
            let help = if allowed.is_empty() {
                format!("`{verb}` takes only its value")
            } else {
                format!("`{verb}` takes: {}", allowed.join(", "))
            };
            self.push(
                Diagnostic::error(
                    "kube-key-unused",
                    k.pos,
                    format!("`{key}` has no meaning for `kube: {verb}`"),
                )
                .len(key.len())
                .help(help),
            );
        }
        for key in required {
            if !f.has(key) {
                self.missing(f, key, &format!("`kube: {verb}`"), None);
            }
        }
        if verb == "delete"
            && !["name", "selector", "fields", "where"]
                .iter()
                .any(|k| f.has(k))
        {
            self.push(
                Diagnostic::error(
                    "kube-delete-everything",
                    f.pos,
                    "`kube: delete` without `name`, `selector`, `fields` or `where` would delete every object of the kind",
                )
                .help("name the object or narrow it with a selector"),
            );
        }
    }

    fn kube(&mut self, node: &Node) -> Option<KubeOp> {
        let Yaml::Map(entries) = &node.value else {
            self.wrong_type(
                node,
                "a mapping with one verb (`get`, `delete`, `cordon`, ...)",
                "`kube`",
            );
            return None;
        };
        // Unknown keys are reported against the verbs and the qualifiers together, so
        // `list: pods` suggests `get`... only when it is close; say which are verbs.
        let mut allowed: Vec<&str> = KUBE_VERBS.to_vec();
        allowed.extend_from_slice(KUBE_QUALIFIERS);
        let has_verb = entries
            .iter()
            .any(|(k, _)| matches!(&k.value, Yaml::Str(s) if KUBE_VERBS.contains(&s.as_str())));
        let mut known = Vec::new();
        let mut unknown = 0;
        for (k, v) in entries {
            let Yaml::Str(key) = &k.value else {
                self.wrong_type(k, "a string", "a key of `kube`");
                continue;
            };
            if allowed.contains(&key.as_str()) {
                known.push((key.as_str(), k, v));
                continue;
            }
            unknown += 1;
            // Without a verb, the unknown key is most likely the verb, misspelt or
            // borrowed from kubectl (`list`, `describe`, `restart`).
            let (what, candidates): (&str, Vec<&str>) = if has_verb {
                ("option", KUBE_QUALIFIERS.to_vec())
            } else {
                ("verb", KUBE_VERBS.to_vec())
            };
            let d = Diagnostic::error(
                "unknown-kube-key",
                k.pos,
                format!("unknown kube {what} `{key}`"),
            )
            .len(key.chars().count());
            let synonym = match key.as_str() {
                "list" | "describe" | "read" | "show" => Some("get"),
                "remove" | "del" | "rm" | "kill" => Some("delete"),
                "restart" | "rollout" | "rollout-restart" => Some("rollout_restart"),
                "unschedule" => Some("cordon"),
                "label" | "annotate" | "edit" | "update" => Some("patch"),
                _ => None,
            };
            let d = match synonym.or_else(|| suggest(key, candidates.iter().copied())) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help(format!("the {what}s are: {}", candidates.join(", "))),
            };
            self.push(d);
        }
        let f = Fields {
            pos: node.pos,
            entries: known,
        };
        let verbs: Vec<&str> = KUBE_VERBS.iter().copied().filter(|v| f.has(v)).collect();
        if verbs.is_empty() && unknown == 0 {
            self.push(
                Diagnostic::error("kube-verb", node.pos, "`kube` needs one verb")
                    .help(format!("one of: {}", KUBE_VERBS.join(", "))),
            );
        }
        self.at_most_one(&f, KUBE_VERBS, "kube-verb", "this `kube` operation");
        if let [verb] = verbs[..] {
            self.kube_qualifiers(&f, verb);
        }
        let s = |c: &mut Self, k: &str| c.opt_string(&f, k);
        Some(KubeOp {
            pos: node.pos,
            get: s(self, "get"),
            cordon: s(self, "cordon"),
            uncordon: s(self, "uncordon"),
            drain: s(self, "drain"),
            delete: s(self, "delete"),
            evict: s(self, "evict"),
            patch: s(self, "patch"),
            taint: s(self, "taint"),
            untaint: s(self, "untaint"),
            wait: s(self, "wait"),
            scale: s(self, "scale"),
            rollout_restart: s(self, "rollout_restart"),
            name: s(self, "name"),
            namespace: s(self, "namespace"),
            all_namespaces: self.opt_bool(&f, "all_namespaces"),
            selector: s(self, "selector"),
            fields: s(self, "fields"),
            where_: s(self, "where"),
            grace_period: self.opt_uint(&f, "grace_period"),
            force: self.opt_bool(&f, "force"),
            ignore_daemonsets: self.opt_bool(&f, "ignore_daemonsets"),
            delete_emptydir_data: self.opt_bool(&f, "delete_emptydir_data"),
            disable_eviction: self.opt_bool(&f, "disable_eviction"),
            pod_selector: s(self, "pod_selector"),
            patch_type: s(self, "patch_type"),
            body: f.get("body").map(|n| Sp::new(n.pos, self.json(n))),
            key: s(self, "key"),
            value: s(self, "value"),
            effect: s(self, "effect"),
            for_: s(self, "for"),
            replicas: self.opt_uint(&f, "replicas"),
        })
    }
}

/// The qualifier keys each kube verb uses, and those it requires.
pub(crate) fn kube_verb_keys(verb: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match verb {
        "get" => (
            &[
                "name",
                "namespace",
                "all_namespaces",
                "selector",
                "fields",
                "where",
            ],
            &[],
        ),
        "cordon" | "uncordon" => (&[], &[]),
        "drain" => (
            &[
                "grace_period",
                "force",
                "ignore_daemonsets",
                "delete_emptydir_data",
                "disable_eviction",
                "pod_selector",
            ],
            &[],
        ),
        "delete" => (
            &[
                "name",
                "namespace",
                "all_namespaces",
                "selector",
                "fields",
                "where",
                "grace_period",
                "force",
            ],
            &[],
        ),
        "evict" => (&["namespace", "grace_period"], &[]),
        "patch" => (
            &["name", "namespace", "patch_type", "body"],
            &["name", "body"],
        ),
        "taint" => (&["key", "value", "effect"], &["key", "effect"]),
        "untaint" => (&["key", "effect"], &["key"]),
        "wait" => (
            &[
                "name",
                "namespace",
                "all_namespaces",
                "selector",
                "fields",
                "for",
            ],
            &["for"],
        ),
        "scale" => (&["name", "namespace", "replicas"], &["name", "replicas"]),
        "rollout_restart" => (&["name", "namespace"], &["name"]),
        _ => (&[], &[]),
    }
}
