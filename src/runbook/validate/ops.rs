//! Rules for operations: kube kinds, verbs' values, HTTP methods, and the templates
//! inside every operation.

use serde_json::Value;

use super::{Ctx, Validator};
use crate::runbook::diag::{Diagnostic, suggest};
use crate::runbook::kinds;
use crate::runbook::model::*;

impl Validator<'_> {
    pub(super) fn op(&mut self, op: OpRef<'_>, ctx: &Ctx) {
        match op {
            OpRef::Shell(s) => {
                self.shell_script_templates(s);
                for a in &s.argv {
                    self.template(a, ctx);
                }
                for v in s.env.values() {
                    self.template(v, ctx);
                }
                for t in [&s.dir, &s.stdin].into_iter().flatten() {
                    self.template(t, ctx);
                }
            }
            OpRef::Http(h) => {
                self.template(&h.url, ctx);
                if let Some(m) = &h.method
                    && !["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
                        .contains(&m.value.to_ascii_uppercase().as_str())
                {
                    let len = self.src.width(m.pos, &m.value);
                    self.push(
                        Diagnostic::error(
                            "http-method",
                            m.pos,
                            format!("unknown HTTP method `{}`", m.value),
                        )
                        .len(len)
                        .help("one of GET, HEAD, POST, PUT, PATCH, DELETE"),
                    );
                }
                for v in h.headers.values() {
                    self.template(v, ctx);
                }
                if let Some(b) = &h.body {
                    self.template(b, ctx);
                }
                if h.body.is_some()
                    && let Some(j) = &h.json
                {
                    self.err(
                        "http-body-and-json",
                        j.pos,
                        "`http` takes `body` or `json`, not both",
                    );
                }
                if let Some(j) = &h.json {
                    self.json_templates(j, ctx);
                }
                for s in &h.status {
                    if !(100..=599).contains(&s.value) {
                        self.err(
                            "out-of-range",
                            s.pos,
                            format!("{} is not an HTTP status code", s.value),
                        );
                    }
                }
            }
            OpRef::Prometheus(p) => {
                self.template(&p.server, ctx);
                self.template(&p.query, ctx);
            }
            OpRef::Kube(k) => self.kube(k, ctx),
            OpRef::Manual(m) => self.template(m, ctx),
        }
    }

    pub(super) fn json_templates(&mut self, j: &Sp<Value>, ctx: &Ctx) {
        fn strings<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
            match v {
                Value::String(s) => out.push(s),
                Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
                Value::Object(o) => o.values().for_each(|x| strings(x, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        strings(&j.value, &mut out);
        for s in out {
            // Strings inside a JSON body have no exact position of their own here;
            // errors point at the body.
            self.template(&Sp::new(j.pos, s.to_owned()), ctx);
        }
    }

    pub(super) fn kube(&mut self, k: &KubeOp, ctx: &Ctx) {
        let Some((verb, value)) = k.verb() else {
            return;
        };
        self.template(value, ctx);
        let kind_verb = verb.takes_kind();
        let mut objects = vec!["object".to_owned()];
        let mut any_object = !kind_verb || value.value.contains("{{");
        if kind_verb && !value.value.contains("{{") {
            match kinds::resolve(&value.value) {
                Some(resolved) => {
                    objects.push(resolved.singular());
                    if let Some(allowed) = verb.spec().kinds {
                        let ok = matches!(&resolved, kinds::Resolved::Builtin(b) if allowed.contains(&b.plural));
                        if !ok {
                            let len = self.src.width(value.pos, &value.value);
                            self.push(
                                Diagnostic::error(
                                    "kube-kind",
                                    value.pos,
                                    format!("`kube: {verb}` does not apply to `{}`", value.value),
                                )
                                .len(len)
                                .help(format!("it applies to {}", allowed.join(", "))),
                            );
                        }
                    }
                }
                None => {
                    any_object = true;
                    let len = self.src.width(value.pos, &value.value);
                    let d = Diagnostic::error(
                        "kube-kind",
                        value.pos,
                        format!("unknown resource kind `{}`", value.value),
                    )
                    .len(len);
                    let lower = value.value.to_ascii_lowercase();
                    let plurals = kinds::BUILTIN.iter().map(|k| k.plural);
                    // kubectl's `deployment/web`: here the kind and the name are apart.
                    let split = value.value.split_once('/').and_then(|(kind, name)| {
                        let k = kinds::resolve(kind)?;
                        Some(format!(
                            "write the kind and the name apart: `{verb}: {}` with `name: {name}`",
                            match k {
                                kinds::Resolved::Builtin(b) => b.plural.to_string(),
                                kinds::Resolved::Custom { plural, group } =>
                                    format!("{plural}.{group}"),
                            }
                        ))
                    });
                    let d = match split {
                        Some(help) => d.help(help),
                        None => match suggest(&lower, plurals).or_else(|| suggest(&lower, kinds::all_names())) {
                        Some(s) => d.help(format!("did you mean `{s}`? (custom resources are written `plural.group`, e.g. `widgets.example.com`)")),
                        None => d.help("use a kind as kubectl names it (`pods`, `po`, `deployments.apps`) or a custom resource as `plural.group`"),
                        },
                    };
                    self.push(d);
                }
            }
        }
        for t in [
            &k.name,
            &k.namespace,
            &k.selector,
            &k.fields,
            &k.pod_selector,
            &k.key,
            &k.value,
        ]
        .into_iter()
        .flatten()
        {
            self.template(t, ctx);
        }
        if let Some(e) = &k.effect
            && !e.value.contains("{{")
            && !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&e.value.as_str())
        {
            let len = self.src.width(e.pos, &e.value);
            let d = Diagnostic::error(
                "kube-effect",
                e.pos,
                format!("unknown taint effect `{}`", e.value),
            )
            .len(len);
            let d = match suggest(&e.value, ["NoSchedule", "PreferNoSchedule", "NoExecute"]) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help("one of NoSchedule, PreferNoSchedule, NoExecute"),
            };
            self.push(d);
        }
        if let Some(p) = &k.patch_type
            && !["strategic", "merge", "json"].contains(&p.value.as_str())
        {
            let len = self.src.width(p.pos, &p.value);
            self.push(
                Diagnostic::error(
                    "kube-patch-type",
                    p.pos,
                    format!("unknown patch type `{}`", p.value),
                )
                .len(len)
                .help("one of strategic, merge, json"),
            );
        }
        if let (Some(ns), Some(all)) = (&k.namespace, &k.all_namespaces)
            && all.value
        {
            self.err(
                "kube-namespace-conflict",
                ns.pos,
                "`namespace` and `all_namespaces: true` contradict each other",
            );
        }
        if verb == KubeVerb::Apply {
            self.inline_manifest(value);
            self.inline_secret(value);
        }
        // `logs: deployment/web`: the kind before the slash must be one that has pods.
        if verb == KubeVerb::Logs
            && !value.value.contains("{{")
            && let Some((kind, _)) = value.value.split_once('/')
        {
            let ok = matches!(kinds::resolve(kind), Some(kinds::Resolved::Builtin(b))
                if crate::runbook::verbs::LOG_KINDS.contains(&b.plural));
            if !ok {
                let len = self.src.width(value.pos, &value.value);
                self.push(
                    Diagnostic::error(
                        "kube-kind",
                        value.pos,
                        format!("`kube: logs` cannot read the logs of a `{kind}`"),
                    )
                    .len(len)
                    .help("name a pod, or `deployment/NAME` (also replicaset, statefulset, daemonset, job)"),
                );
            }
        }
        if verb == KubeVerb::SetImage
            && k.images.is_empty()
            && let Some((_, v)) = k.verb()
        {
            // `images: {}`: present, so the converter did not call it missing.
            self.err("kube-images", v.pos, "`kube: set_image` names no image")
                .help = Some("add `images: { CONTAINER: IMAGE }`".into());
        }
        if let Some(b) = &k.body {
            self.json_templates(b, ctx);
        }
        let object_ctx = Ctx {
            objects,
            any_object,
            ..ctx.clone()
        };
        if let Some(w) = &k.where_ {
            self.condition(w, &object_ctx);
        }
        if let Some(f) = &k.for_
            && f.value.trim() != "delete"
            && !f.value.trim_start().starts_with("condition=")
        {
            self.condition(f, &object_ctx);
        }
    }
}

impl Validator<'_> {
    /// An inline `apply` manifest (text with a newline) is checked now: one object of a
    /// built-in kind with a name. A path is read when the step runs.
    fn inline_manifest(&mut self, value: &Sp<String>) {
        let text = &value.value;
        if text.contains("{{") || !(text.contains('\n') || text.trim_start().starts_with('{')) {
            return;
        }
        let problem = match crate::runbook::yaml::from_str::<serde_json::Value>(text) {
            Err(e) => Some(format!(
                "the inline manifest is not YAML (its line {}, column {}: {})",
                e.line, e.column, e.message
            )),
            Ok(m) => {
                let s = |p: &str| m.pointer(p).and_then(|v| v.as_str()).unwrap_or("");
                let group = s("/apiVersion").rsplit_once('/').map_or("", |(g, _)| g);
                if s("/apiVersion").is_empty()
                    || s("/kind").is_empty()
                    || s("/metadata/name").is_empty()
                {
                    Some(
                        "the inline manifest needs `apiVersion`, `kind` and `metadata.name`"
                            .to_string(),
                    )
                } else if !kinds::BUILTIN
                    .iter()
                    .any(|b| b.kind == s("/kind") && b.group == group)
                {
                    Some(format!(
                        "`{}` `{}` is not a built-in kind: `apply` takes built-in kinds only",
                        s("/apiVersion"),
                        s("/kind")
                    ))
                } else {
                    None
                }
            }
        };
        if let Some(msg) = problem {
            self.err("kube-manifest", value.pos, msg).help =
                Some("write one Kubernetes object, e.g. `apiVersion: v1`, `kind: ConfigMap`, `metadata: { name: x }`".into());
        }
    }

    /// An inline manifest of a Secret must take its values from templates (a secret
    /// param, redacted by reference), never write them: the runbook is in git, and
    /// its text is shown in plans and reviews.
    fn inline_secret(&mut self, value: &Sp<String>) {
        let text = &value.value;
        if !(text.contains('\n') || text.trim_start().starts_with('{')) {
            return;
        }
        // Each template stands for a value lint cannot know; a plain word keeps the
        // YAML parseable whether or not the template was quoted.
        const TEMPLATE: &str = "RUNBOOKTEMPLATEVALUE";
        let mut plain = String::new();
        let mut rest = text.as_str();
        while let Some(open) = rest.find("{{") {
            let Some(close) = rest[open..].find("}}") else {
                break;
            };
            let end = open + close + 2 + rest[open + close + 2..].len()
                - rest[open + close + 2..].trim_start_matches('}').len();
            plain.push_str(&rest[..open]);
            plain.push_str(TEMPLATE);
            rest = &rest[end..];
        }
        plain.push_str(rest);
        let Ok(m) = crate::runbook::yaml::from_str::<Value>(&plain) else {
            return;
        };
        if m.get("kind").and_then(Value::as_str) != Some("Secret") {
            return;
        }
        for field in ["stringData", "data"] {
            let Some(Value::Object(d)) = m.get(field) else {
                continue;
            };
            for (key, v) in d {
                let literal = match v {
                    Value::String(s) => !s.replace(TEMPLATE, "").trim().is_empty(),
                    Value::Null => false,
                    _ => true,
                };
                if !literal {
                    continue;
                }
                let pos = self.manifest_key_pos(value, field, key);
                let param = key.replace(['-', '.'], "_").to_lowercase();
                let help = format!(
                    "pass it through a secret param: declare `params: {{ {param}: {{ required: true, secret: true }} }}` and write `{key}: \"{{{{params.{param}}}}}\"` under `stringData` (redacted by reference in the journal)"
                );
                self.push(
                    Diagnostic::error(
                        "kube-secret-literal",
                        pos,
                        format!(
                            "the Secret's `{field}.{key}` is written in the runbook: it would be kept in git and shown in plans and reviews"
                        ),
                    )
                    .len(if pos == value.pos { 1 } else { key.chars().count() })
                    .help(help),
                );
            }
        }
    }

    /// Where `field`'s `key` is written inside an inline manifest: its line and column
    /// in the file for a block scalar (`apply: |`), else the manifest's position.
    fn manifest_key_pos(&self, sp: &Sp<String>, field: &str, key: &str) -> Pos {
        let text = &sp.value;
        let Some(field_at) = find_key(text, field, 0) else {
            return sp.pos;
        };
        let Some(at) = find_key(text, key, field_at + field.len()) else {
            return sp.pos;
        };
        let line = text[..at].matches('\n').count();
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let col = text[line_start..at].chars().count();
        if line == 0 {
            return self.src.pos_in(sp, at);
        }
        // A block scalar: its lines stand in the file one under the other, at the
        // column of its first line. Checked against the file, else the manifest.
        let written = Pos {
            line: sp.pos.line + line as u32,
            col: sp.pos.col,
        };
        let in_file = self.src.byte(written).map(|b| &self.src.text[b..]);
        let this_line = text[line_start..].lines().next().unwrap_or("");
        if in_file.is_some_and(|f| f.starts_with(this_line)) {
            Pos {
                line: written.line,
                col: written.col + col as u32,
            }
        } else {
            sp.pos
        }
    }
}

/// The byte offset of `key` written as a mapping key (`key:`, `"key":`, `'key':`) in
/// YAML text, at or after `from`.
fn find_key(text: &str, key: &str, from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(found) = text.get(i..)?.find(key) {
        let at = i + found;
        let before = text[..at].chars().next_back();
        let quoted = matches!(before, Some('"' | '\''));
        let after = &text[at + key.len()..];
        let after = if quoted {
            after.get(1..).unwrap_or("")
        } else {
            after
        };
        let start = if quoted { at - 1 } else { at };
        let bounded = text[..start]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || c == '{' || c == ',');
        if bounded && after.trim_start_matches([' ', '\t']).starts_with(':') {
            return Some(start);
        }
        i = at + key.len();
    }
    None
}
