//! Rules over the whole model: ids, scopes of templates and conditions, kinds of
//! steps, kube kinds. The parser has already reported shape errors; this runs on
//! what it could build, so a file with a typo in one key still gets its scopes
//! checked.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use super::convert::Source;
use super::diag::{Diagnostic, suggest};
use super::kinds;
use super::model::*;
use crate::expr::{self, VarRef};

/// Names the engine binds itself; a param or saved value may not take them.
pub const RESERVED: &[&str] = &["params", "steps", "item", "index", "result", "object"];

/// CEL identifiers that are type names or extension namespaces, not variables.
const CEL_BUILTINS: &[&str] = &[
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
    "math",
    "strings",
    "lists",
    "optional",
];

/// What a saved value holds, as far as lint can tell from the step that saves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    List,
    /// A mapping, with what produced it (for the message).
    Map(&'static str),
    Unknown,
}

#[derive(Debug, Clone)]
struct Saved {
    step: String,
    pos: Pos,
    shape: Shape,
}

/// Where an expression sits decides which names it may use.
#[derive(Debug, Clone, Default)]
struct Ctx {
    item: bool,
    result: bool,
    /// `object` and the singular kind name, inside `where`/`for`.
    objects: Vec<String>,
    /// The kind is a template or unknown: any name may be its singular.
    any_object: bool,
}

pub(crate) struct Validator<'a> {
    src: &'a Source<'a>,
    rb: &'a Runbook,
    pub diags: Vec<Diagnostic>,
    /// Values saved by the steps before the current one.
    saved: BTreeMap<String, Saved>,
    /// Every saved value in the file, for "saved later" messages.
    all_saved: BTreeMap<String, Saved>,
    /// Ids of the steps before the current one.
    earlier: HashSet<String>,
    all_ids: HashMap<String, Pos>,
    assumed_for_each: Vec<Pos>,
}

/// `assumed_for_each`: positions of steps and rungs whose `for_each` key was misspelt
/// (already reported); `item` is allowed there.
pub(crate) fn validate(
    src: &Source<'_>,
    rb: &Runbook,
    assumed_for_each: &[Pos],
) -> Vec<Diagnostic> {
    let mut v = Validator {
        assumed_for_each: assumed_for_each.to_vec(),
        src,
        rb,
        diags: Vec::new(),
        saved: BTreeMap::new(),
        all_saved: BTreeMap::new(),
        earlier: HashSet::new(),
        all_ids: HashMap::new(),
    };
    v.run();
    v.diags
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.split('-').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

fn is_id(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// A name usable as a variable in both handlebars and CEL.
fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn shape_of(step: &Step) -> Shape {
    if step.for_each.is_some() {
        return Shape::List;
    }
    match step.op() {
        Some(OpRef::Kube(k)) => match k.verb() {
            Some(("get", _)) if k.name.is_none() => Shape::List,
            Some(("get", _)) => Shape::Map("a single object from `kube: get` with a `name`"),
            _ => Shape::Unknown,
        },
        Some(OpRef::Prometheus(_)) => Shape::Map("the result of a prometheus query"),
        Some(OpRef::Http(_)) => Shape::Map("an HTTP response"),
        Some(OpRef::Shell(_)) => Shape::Map("the result of a shell command"),
        _ => Shape::Unknown,
    }
}

impl<'a> Validator<'a> {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn err(&mut self, code: &'static str, pos: Pos, msg: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(Diagnostic::error(code, pos, msg));
        self.diags
            .last_mut()
            .expect("invariant: a diagnostic was just pushed")
    }

    fn run(&mut self) {
        let rb = self.rb;
        if rb.version.value != 1 && rb.version.pos != Pos::UNKNOWN {
            self.err(
                "version",
                rb.version.pos,
                format!(
                    "unsupported format version {}; this runbook reads version 1",
                    rb.version.value
                ),
            )
            .help = Some("write `version: 1`".into());
        }
        if !rb.name.value.is_empty() && !is_slug(&rb.name.value) {
            let len = self.src.width(rb.name.pos, &rb.name.value);
            let slug: String = rb
                .name
                .value
                .to_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect::<String>()
                .split('-')
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("-");
            let d = Diagnostic::error(
                "name-slug",
                rb.name.pos,
                format!(
                    "`name` must be a slug (lowercase letters, digits and dashes), found `{}`",
                    rb.name.value
                ),
            )
            .len(len)
            .help(format!("e.g. `name: {slug}`"));
            self.push(d);
        }
        for (name, p) in &rb.params {
            if !is_ident(name) || RESERVED.contains(&name.as_str()) {
                self.push(
                    Diagnostic::error(
                        "param-name",
                        p.pos,
                        format!("parameter name `{name}` cannot be used in templates and conditions"),
                    )
                    .len(name.len())
                    .help("use letters, digits and underscores, starting with a letter (`hub_selector`)"),
                );
            }
            if p.required && p.default.is_some() {
                self.push(Diagnostic::error(
                    "param-required-default",
                    p.pos,
                    format!("parameter `{name}` is `required` and has a `default`; the default makes it optional"),
                ).len(name.len()));
            }
        }
        self.collect_ids();
        for step in &rb.steps {
            if let Some(save) = &step.save {
                self.all_saved.entry(save.value.clone()).or_insert(Saved {
                    step: step.id.value.clone(),
                    pos: save.pos,
                    shape: shape_of(step),
                });
            }
        }
        for step in &rb.steps {
            self.step(step);
            self.earlier.insert(step.id.value.clone());
            if let Some(save) = &step.save {
                self.saved.insert(
                    save.value.clone(),
                    Saved {
                        step: step.id.value.clone(),
                        pos: save.pos,
                        shape: shape_of(step),
                    },
                );
            }
        }
        // Handlers run after a failure, when any earlier step may have saved.
        self.saved = self.all_saved.clone();
        for handler in &rb.handlers {
            self.step(handler);
        }
        self.unattended();
    }

    fn collect_ids(&mut self) {
        let rb = self.rb;
        let mut ids: Vec<(String, Pos)> = Vec::new();
        for step in rb.steps.iter().chain(&rb.handlers) {
            if step.id.value.is_empty() && step.id.pos == step.pos {
                continue; // missing: already reported
            }
            if !is_id(&step.id.value) {
                let len = self.src.width(step.id.pos, &step.id.value);
                self.push(
                    Diagnostic::error(
                        "id-format",
                        step.id.pos,
                        format!(
                            "step id `{}` must be lowercase letters, digits, `-` and `_`",
                            step.id.value
                        ),
                    )
                    .len(len),
                );
            }
            ids.push((step.id.value.clone(), step.id.pos));
            for (n, rung) in step.escalate.iter().enumerate() {
                match &rung.id {
                    Some(id) => ids.push((id.value.clone(), id.pos)),
                    None => ids.push((format!("{}.{}", step.id.value, n + 1), rung.pos)),
                }
            }
        }
        for (id, pos) in ids {
            if let Some(first) = self.all_ids.get(&id) {
                let first = *first;
                let len = self.src.width(pos, &id);
                self.push(
                    Diagnostic::error("duplicate-id", pos, format!("duplicate step id `{id}`"))
                        .len(len)
                        .help(format!(
                            "`{id}` is already the id of the step on line {}; ids must be unique",
                            first.line
                        )),
                );
            } else {
                self.all_ids.insert(id, pos);
            }
        }
    }

    fn unattended(&mut self) {
        let rb = self.rb;
        for id in &rb.unattended {
            match rb
                .steps
                .iter()
                .chain(&rb.handlers)
                .find(|s| s.id.value == id.value)
            {
                None => {
                    let d = self.unknown_id(id, "`unattended`");
                    self.push(d);
                }
                Some(s) if s.kind() != StepKind::Action => {
                    let len = self.src.width(id.pos, &id.value);
                    self.push(
                        Diagnostic::error(
                            "unattended-not-action",
                            id.pos,
                            format!(
                                "`{}` is a {} step; only actions have a gate",
                                id.value,
                                s.kind().key()
                            ),
                        )
                        .len(len),
                    );
                }
                Some(_) => {}
            }
        }
    }

    fn unknown_id(&self, id: &Sp<String>, what: &str) -> Diagnostic {
        let len = self.src.width(id.pos, &id.value);
        let d = Diagnostic::error(
            "unknown-id",
            id.pos,
            format!(
                "{what} names `{}`, which is not a step or handler id",
                id.value
            ),
        )
        .len(len);
        match suggest(&id.value, self.all_ids.keys().map(String::as_str)) {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None => d,
        }
    }

    fn step(&mut self, step: &Step) {
        let kind = step.kind();
        let title = match (&step.check, &step.action, &step.verify, &step.manual) {
            (Some(t), ..)
            | (_, Some(t), ..)
            | (_, _, Some(VerifyField::Title(t)), _)
            | (.., Some(t)) => Some(t),
            _ => None,
        };
        let base = Ctx::default();
        if let Some(t) = title {
            self.template(t, &base);
        }
        if let Some(t) = &step.instructions {
            self.template(t, &base);
        }
        if let Some(s) = &step.save {
            self.save_name(s);
        }
        self.step_kind_rules(step, kind);

        let item_ctx = Ctx {
            item: step.for_each.is_some() || self.assumed_for_each.contains(&step.pos),
            ..Ctx::default()
        };
        if let Some(w) = &step.when {
            self.condition(w, &base);
        }
        if let Some(fe) = &step.for_each {
            self.for_each(fe);
        }
        if let Some(c) = &step.concurrency {
            self.concurrency(c, step.for_each.is_some());
        }
        if let Some(op) = step.op() {
            self.op(op, &item_ctx);
        }
        // The step's own saved value is visible in its `expect` (as `result` too).
        if let Some(e) = &step.expect {
            let own = step.save.as_ref().map(|s| {
                (
                    s.value.clone(),
                    Saved {
                        step: step.id.value.clone(),
                        pos: s.pos,
                        shape: shape_of(step),
                    },
                )
            });
            let previous = own
                .as_ref()
                .and_then(|(n, s)| self.saved.insert(n.clone(), s.clone()));
            self.condition(
                e,
                &Ctx {
                    result: true,
                    ..item_ctx.clone()
                },
            );
            if let Some((n, _)) = &own {
                match previous {
                    Some(p) => {
                        self.saved.insert(n.clone(), p);
                    }
                    None => {
                        self.saved.remove(n);
                    }
                }
            }
        }
        for rung in &step.escalate {
            self.rung(rung);
        }
        if let Some(v) = step.verification() {
            self.verification(v);
        }
        if let Some(of) = &step.on_failure
            && let OnFailure::Run(ids) = &of.value
        {
            for id in ids {
                if !self.all_ids.contains_key(&id.value) {
                    let d = self.unknown_id(id, "`on_failure`");
                    self.push(d);
                }
            }
        }
    }

    fn step_kind_rules(&mut self, step: &Step, kind: StepKind) {
        let has_op = step.op().is_some();
        let key = kind.key();
        let a_key = if key == "action" {
            "an action".to_owned()
        } else {
            format!("a {key}")
        };
        if let Some(g) = &step.gate
            && kind != StepKind::Action
        {
            self.err(
                "gate-not-action",
                g.pos,
                format!("`gate` applies to actions; this is {a_key} step"),
            )
            .help = Some(
                "checks and verifications never change anything, so they never stop at a gate"
                    .into(),
            );
        }
        for (name, d) in [("within", &step.within), ("every", &step.every)] {
            if let Some(d) = d
                && kind != StepKind::Verify
            {
                let help = if kind == StepKind::Action {
                    format!("move `{name}` into the action's `verify:` block")
                } else {
                    format!(
                        "`{name}` belongs to a verification: a `verify:` step or an action's `verify:` block"
                    )
                };
                let len = self.src.token_width(d.pos);
                self.push(
                    Diagnostic::error(
                        "within-outside-verification",
                        d.pos,
                        format!(
                            "`{name}` only applies to a verification, and this is {a_key} step"
                        ),
                    )
                    .len(len)
                    .help(help),
                );
            }
        }
        if let Some(VerifyField::Block(b)) = &step.verify
            && kind != StepKind::Action
        {
            self.err(
                "verify-block-not-action",
                b.pos,
                format!("{a_key} step cannot have a verification block; only actions do"),
            );
        }
        if let Some(r) = step.escalate.first()
            && kind != StepKind::Action
        {
            self.err(
                "escalate-not-action",
                r.pos,
                format!("`escalate` applies to actions; this is {a_key} step"),
            );
        }
        match kind {
            StepKind::Check | StepKind::Verify if !has_op => {
                self.err(
                    "missing-operation",
                    step.pos,
                    format!("this {key} step has no operation"),
                )
                .help = Some("add one of `shell`, `http`, `prometheus` or `kube`".into());
            }
            StepKind::Check | StepKind::Verify => {
                if let Some(OpRef::Kube(k)) = step.op()
                    && k.is_mutating()
                    && let Some((verb, v)) = k.verb()
                {
                    self.err(
                        "mutating-check",
                        v.pos,
                        format!(
                            "{a_key} step is read-only, but `kube: {verb}` changes the cluster"
                        ),
                    )
                    .help = Some("make this step an `action:` so it is gated and verified".into());
                }
            }
            StepKind::Manual if has_op => {
                self.err(
                    "manual-with-operation",
                    step.pos,
                    "a manual step has no operation: a person does it and confirms",
                )
                .help =
                    Some("make it an `action:`, or move the operation to a step of its own".into());
            }
            StepKind::Action if !has_op && step.escalate.is_empty() => {
                self.err(
                    "missing-operation",
                    step.pos,
                    "this action has no operation and no `escalate` ladder",
                )
                .help = Some("add one of `shell`, `http`, `kube`, or an `escalate:` list".into());
            }
            StepKind::Action if has_op && !step.escalate.is_empty() => {
                self.err(
                    "operation-and-escalate",
                    step.pos,
                    "an action has either one operation or an `escalate` ladder, not both",
                )
                .help = Some("make the operation the first rung of the ladder".into());
            }
            StepKind::Action if !step.escalate.is_empty() && step.verification().is_none() => {
                self.err(
                    "escalate-without-verify",
                    step.escalate[0].pos,
                    "an `escalate` ladder needs a `verify:` block: it decides when to stop escalating",
                );
            }
            _ => {}
        }
    }

    fn save_name(&mut self, s: &Sp<String>) {
        let bad_ident = !is_ident(&s.value);
        let reserved = RESERVED.contains(&s.value.as_str());
        if bad_ident || reserved {
            let len = self.src.width(s.pos, &s.value);
            let why = if reserved {
                format!("`{}` is bound by the engine", s.value)
            } else {
                "use letters, digits and underscores, starting with a letter".to_owned()
            };
            self.push(
                Diagnostic::error(
                    "save-name",
                    s.pos,
                    format!("cannot save a value as `{}`", s.value),
                )
                .len(len)
                .help(why),
            );
        }
    }

    fn concurrency(&mut self, c: &Sp<u32>, has_for_each: bool) {
        if c.value == 0 {
            self.err("out-of-range", c.pos, "`concurrency` must be at least 1");
        }
        if !has_for_each {
            self.err(
                "concurrency-without-for-each",
                c.pos,
                "`concurrency` only applies with `for_each`",
            );
        }
    }

    fn rung(&mut self, rung: &Rung) {
        let ctx = Ctx {
            item: rung.for_each.is_some() || self.assumed_for_each.contains(&rung.pos),
            ..Ctx::default()
        };
        for t in [&rung.title, &rung.manual].into_iter().flatten() {
            self.template(t, &ctx);
        }
        if let Some(w) = &rung.when {
            self.condition(w, &Ctx::default());
        }
        if let Some(fe) = &rung.for_each {
            self.for_each(fe);
        }
        if let Some(c) = &rung.concurrency {
            self.concurrency(c, rung.for_each.is_some());
        }
        if let Some(op) = rung.op() {
            self.op(op, &ctx);
        }
    }

    fn verification(&mut self, v: &Verification) {
        let base = Ctx::default();
        if let Some(t) = &v.title {
            self.template(t, &base);
        }
        match v.op() {
            Some(op) => {
                if let OpRef::Kube(k) = op
                    && k.is_mutating()
                    && let Some((verb, val)) = k.verb()
                {
                    self.err(
                        "mutating-check",
                        val.pos,
                        format!(
                            "a verification is read-only, but `kube: {verb}` changes the cluster"
                        ),
                    );
                }
                self.op(op, &base);
            }
            None => {
                self.err(
                    "missing-operation",
                    v.pos,
                    "this verification has no operation",
                )
                .help = Some(
                    "add one of `shell`, `http`, `prometheus` or `kube`, and an `expect`".into(),
                );
            }
        }
        if let Some(e) = &v.expect {
            self.condition(
                e,
                &Ctx {
                    result: true,
                    ..Ctx::default()
                },
            );
        }
    }

    fn op(&mut self, op: OpRef<'_>, ctx: &Ctx) {
        match op {
            OpRef::Shell(s) => {
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

    fn json_templates(&mut self, j: &Sp<Value>, ctx: &Ctx) {
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

    fn kube(&mut self, k: &KubeOp, ctx: &Ctx) {
        let Some((verb, value)) = k.verb() else {
            return;
        };
        self.template(value, ctx);
        let kind_verb = matches!(
            verb,
            "get" | "delete" | "patch" | "wait" | "scale" | "rollout_restart"
        );
        let mut objects = vec!["object".to_owned()];
        let mut any_object = !kind_verb || value.value.contains("{{");
        if kind_verb && !value.value.contains("{{") {
            match kinds::resolve(&value.value) {
                Some(resolved) => {
                    objects.push(resolved.singular());
                    let allowed: Option<&[&str]> = match verb {
                        "scale" => Some(&["deployments", "statefulsets", "replicasets"]),
                        "rollout_restart" => Some(&["deployments", "statefulsets", "daemonsets"]),
                        _ => None,
                    };
                    if let Some(allowed) = allowed {
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
                    let d = match suggest(&value.value.to_ascii_lowercase(), kinds::all_names()) {
                        Some(s) => d.help(format!("did you mean `{s}`? (custom resources are written `plural.group`, e.g. `widgets.example.com`)")),
                        None => d.help("use a kind as kubectl names it (`pods`, `po`, `deployments.apps`) or a custom resource as `plural.group`"),
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

    // ----- templates and conditions ---------------------------------------------

    fn expr_error(&mut self, code: &'static str, sp: &Sp<String>, e: &expr::ExprError) {
        let pos = e.offset.map_or(sp.pos, |o| self.src.pos_in(sp, o));
        self.push(Diagnostic::error(code, pos, e.message.clone()));
    }

    fn template(&mut self, sp: &Sp<String>, ctx: &Ctx) {
        match expr::template_refs(&sp.value) {
            Ok(refs) => {
                for r in refs {
                    self.var(sp, &r, ctx);
                }
            }
            Err(e) => self.expr_error("template-syntax", sp, &e),
        }
    }

    fn condition(&mut self, sp: &Sp<String>, ctx: &Ctx) {
        if sp.value.contains("{{") {
            let inner = sp
                .value
                .trim()
                .trim_start_matches("{{")
                .trim_end_matches("}}")
                .trim()
                .to_owned();
            let len = self.src.width(sp.pos, &sp.value);
            self.push(
                Diagnostic::error(
                    "template-in-condition",
                    sp.pos,
                    "a condition is a CEL expression, not a template",
                )
                .len(len)
                .help(format!(
                    "write the CEL expression `{inner}` without the braces"
                )),
            );
            return;
        }
        match expr::condition_refs(&sp.value) {
            Ok(refs) => {
                for r in refs {
                    if r.path.len() == 1 && CEL_BUILTINS.contains(&r.path[0].as_str()) {
                        continue;
                    }
                    self.var(sp, &r, ctx);
                }
            }
            Err(e) => self.expr_error("condition-syntax", sp, &e),
        }
    }

    fn for_each(&mut self, sp: &Sp<String>) {
        if sp.value.contains("{{") {
            let inner = sp
                .value
                .trim()
                .trim_start_matches("{{")
                .trim_end_matches("}}")
                .trim()
                .to_owned();
            let len = self.src.width(sp.pos, &sp.value);
            self.push(
                Diagnostic::error(
                    "for-each-template",
                    sp.pos,
                    "`for_each` takes a CEL expression that gives a list, not a template (a template renders to a string)",
                )
                .len(len)
                .help(format!("write the CEL expression `{inner}`")),
            );
            return;
        }
        let refs = match expr::condition_refs(&sp.value) {
            Ok(r) => r,
            Err(e) => return self.expr_error("condition-syntax", sp, &e),
        };
        for r in &refs {
            if r.path.len() == 1 && CEL_BUILTINS.contains(&r.path[0].as_str()) {
                continue;
            }
            self.var(sp, r, &Ctx::default());
        }
        let len = self.src.width(sp.pos, &sp.value);
        let not_list = |what: &str| {
            Diagnostic::error(
                "for-each-not-list",
                sp.pos,
                format!("`for_each` needs a list, but this is {what}"),
            )
            .len(len)
        };
        if refs.is_empty() {
            // A constant: evaluate it now.
            if let Ok(v) = expr::eval(&sp.value, &Value::Object(Default::default()))
                && !v.is_array()
            {
                self.push(not_list(json_kind(&v)));
            }
            return;
        }
        // A bare reference to a saved value or a param: its shape is known.
        let bare = sp.value.trim();
        if let [r] = &refs[..]
            && r.path.join(".") == bare
        {
            if r.path.len() == 1
                && let Some(saved) = self.saved.get(&r.path[0])
                && let Shape::Map(what) = saved.shape
            {
                let help = match what {
                    w if w.contains("prometheus") => {
                        format!("to loop over the samples, write `{bare}.samples`")
                    }
                    w if w.contains("HTTP") => format!(
                        "to loop over a JSON list in the body, write `{bare}.json.items` (or the field that holds it)"
                    ),
                    w if w.contains("shell") => {
                        format!("to loop over output lines, write `{bare}.stdout.split('\\n')`")
                    }
                    _ => "drop `name` from the `kube: get` to list objects".to_owned(),
                };
                self.push(not_list(&format!("`{bare}`, {what}")).help(help));
            } else if r.path.len() == 2
                && r.path[0] == "params"
                && let Some(Some(default)) =
                    self.rb.params.get(&r.path[1]).map(|p| p.default.as_ref())
                && !default.value.is_array()
            {
                self.push(
                    not_list(&format!(
                        "`{bare}`, whose default is {}",
                        json_kind(&default.value)
                    ))
                    .help(format!(
                        "for a comma-separated string, write `{bare}.split(',')`"
                    )),
                );
            }
        }
    }

    /// Check one variable reference of a template or a condition.
    fn var(&mut self, sp: &Sp<String>, r: &VarRef, ctx: &Ctx) {
        let root = r.path[0].as_str();
        let pos = self.src.pos_in(sp, r.offset);
        let shown = r.path.join(".");
        let len = shown.chars().count();
        let error = |this: &mut Self, code: &'static str, msg: String, help: Option<String>| {
            let d = Diagnostic::error(code, pos, msg).len(len);
            this.push(match help {
                Some(h) => d.help(h),
                None => d,
            });
        };
        match root {
            "params" => {
                if let Some(name) = r.path.get(1)
                    && !self.rb.params.contains_key(name)
                {
                    let help = match suggest(name, self.rb.params.keys().map(String::as_str)) {
                        Some(s) => format!("did you mean `params.{s}`?"),
                        None => {
                            format!("declare it under `params:` (`{name}: {{ default: ... }}`)")
                        }
                    };
                    error(
                        self,
                        "unknown-param",
                        format!("unknown parameter `{name}`"),
                        Some(help),
                    );
                }
            }
            "item" | "index" if !ctx.item => error(
                self,
                "item-outside-for-each",
                format!("`{root}` is only defined in a step or rung with `for_each`"),
                None,
            ),
            "result" if !ctx.result => error(
                self,
                "result-outside-expect",
                "`result` is only defined in `expect` and in a verification's `expect`".to_owned(),
                Some(
                    "to use a step's result later, give the step `save: NAME` and refer to NAME"
                        .to_owned(),
                ),
            ),
            "item" | "index" | "result" => {}
            "steps" => match r.path.get(1) {
                Some(id) if self.earlier.contains(id) => {}
                Some(id) if self.all_ids.contains_key(id) => error(
                    self,
                    "step-defined-later",
                    format!("step `{id}` runs after this one"),
                    Some("a step can only refer to the steps before it".to_owned()),
                ),
                Some(id) => {
                    let help = suggest(id, self.earlier.iter().map(String::as_str))
                        .map(|s| format!("did you mean `steps.{s}`?"));
                    error(
                        self,
                        "unknown-step",
                        format!("there is no step `{id}`"),
                        help,
                    );
                }
                None => {}
            },
            name if ctx.objects.iter().any(|o| o == name) => {}
            _ if ctx.any_object => {}
            name if self.saved.contains_key(name) => {}
            name => {
                if let Some(later) = self.all_saved.get(name) {
                    let msg = format!(
                        "`{name}` is saved by step `{}` on line {}, which runs after this one",
                        later.step, later.pos.line
                    );
                    error(
                        self,
                        "saved-later",
                        msg,
                        Some("a step can only use values saved by the steps before it".to_owned()),
                    );
                    return;
                }
                let singular_elsewhere =
                    kinds::BUILTIN.iter().any(|k| k.singular == name) || name == "object";
                let mut candidates: Vec<&str> = self.saved.keys().map(String::as_str).collect();
                candidates.extend(["params", "steps"]);
                if ctx.item {
                    candidates.extend(["item", "index"]);
                }
                if ctx.result {
                    candidates.push("result");
                }
                candidates.extend(ctx.objects.iter().map(String::as_str));
                let help = if singular_elsewhere {
                    Some(format!(
                        "`{name}` is only bound inside a kube `where` or `for` condition"
                    ))
                } else if let Some(s) = suggest(name, candidates.iter().copied()) {
                    Some(format!("did you mean `{s}`?"))
                } else if self.rb.params.contains_key(name) {
                    Some(format!(
                        "parameters are under `params`: write `params.{name}`"
                    ))
                } else {
                    Some("save a step's result with `save: NAME`, or declare a parameter and use `params.NAME`".to_owned())
                };
                error(
                    self,
                    "undefined",
                    format!("`{name}` is not defined here"),
                    help,
                );
            }
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::runbook::parse_str;

    /// The codes of every problem in `steps` (a YAML list) under a minimal header.
    fn codes(params: &str, steps: &str) -> Vec<&'static str> {
        let text = format!("version: 1\nname: t\ntitle: t\nparams:\n{params}\nsteps:\n{steps}");
        match parse_str(&text, Path::new("t.yaml")) {
            Ok(_) => Vec::new(),
            Err(d) => d.into_iter().map(|d| d.code).collect(),
        }
    }

    const NS: &str = "  ns: { default: prod }";

    #[test]
    fn a_steps_own_saved_value_is_visible_in_its_expect() {
        let steps = "  - check: c\n    id: c\n    kube: { get: pods }\n    save: pods\n    expect: \"size(pods) > 0 && size(result) > 0\"\n";
        assert_eq!(codes(NS, steps), Vec::<&str>::new());
    }

    #[test]
    fn steps_may_refer_to_earlier_steps_only() {
        let ok = "  - check: a\n    id: a\n    shell: { argv: [\"true\"] }\n  - check: b\n    id: b\n    shell: { argv: [echo, \"{{steps.a.status}}\"] }\n";
        assert_eq!(codes(NS, ok), Vec::<&str>::new());
        let later = "  - check: a\n    id: a\n    shell: { argv: [echo, \"{{steps.b.status}}\"] }\n  - check: b\n    id: b\n    shell: { argv: [\"true\"] }\n";
        assert_eq!(codes(NS, later), vec!["step-defined-later"]);
    }

    #[test]
    fn handlers_see_every_saved_value() {
        let text = "version: 1\nname: t\ntitle: t\nsteps:\n  - check: a\n    id: a\n    kube: { get: pods }\n    save: pods\n    on_failure: [h]\nhandlers:\n  - manual: h\n    id: h\n    instructions: \"{{pods}}\"\n";
        assert!(parse_str(text, Path::new("t.yaml")).is_ok());
    }

    #[test]
    fn custom_resources_bind_their_singular_name_in_where() {
        let steps = "  - check: w\n    id: w\n    kube: { get: widgets.example.com, where: \"widget.spec.size > 1 && object.kind == 'Widget'\" }\n";
        assert_eq!(codes(NS, steps), Vec::<&str>::new());
    }

    #[test]
    fn a_templated_kind_is_not_checked_and_any_object_name_is_allowed() {
        let steps = "  - check: w\n    id: w\n    kube: { get: \"{{params.ns}}\", where: \"thing.x == 1\" }\n";
        assert_eq!(codes(NS, steps), Vec::<&str>::new());
    }

    #[test]
    fn manual_steps_have_no_operation() {
        let steps = "  - manual: m\n    id: m\n    kube: { get: pods }\n";
        assert_eq!(codes(NS, steps), vec!["manual-with-operation"]);
    }

    #[test]
    fn an_escalation_needs_a_verification_and_no_operation_of_its_own() {
        let no_verify = "  - action: a\n    id: a\n    escalate:\n      - kube: { cordon: n1 }\n";
        assert_eq!(codes(NS, no_verify), vec!["escalate-without-verify"]);
        let both = "  - action: a\n    id: a\n    kube: { cordon: n1 }\n    escalate:\n      - kube: { cordon: n1 }\n    verify: { kube: { get: nodes }, expect: \"size(result) > 0\" }\n";
        assert_eq!(codes(NS, both), vec!["operation-and-escalate"]);
    }

    #[test]
    fn default_rung_ids_collide_with_explicit_ids() {
        let steps = "  - action: a\n    id: a\n    escalate:\n      - kube: { cordon: n1 }\n      - id: a.1\n        kube: { cordon: n2 }\n    verify: { kube: { get: nodes } }\n";
        assert_eq!(codes(NS, steps), vec!["duplicate-id"]);
    }

    #[test]
    fn a_verification_must_not_mutate() {
        let steps = "  - action: a\n    id: a\n    kube: { cordon: n1 }\n    verify: { kube: { delete: pods, name: x } }\n";
        assert_eq!(codes(NS, steps), vec!["mutating-check"]);
    }

    #[test]
    fn param_names_must_be_identifiers() {
        assert_eq!(
            codes(
                "  hub-selector: { default: x }",
                "  - check: c\n    id: c\n    kube: { get: pods }\n"
            ),
            vec!["param-name"]
        );
    }

    #[test]
    fn templates_inside_json_bodies_are_checked() {
        let steps = "  - action: p\n    id: p\n    kube: { patch: nodes, name: n1, body: { metadata: { labels: { x: \"{{params.nope}}\" } } } }\n";
        assert_eq!(codes(NS, steps), vec!["unknown-param"]);
    }

    #[test]
    fn cel_type_names_are_not_variables() {
        let steps = "  - check: c\n    id: c\n    kube: { get: pods }\n    expect: \"type(result) == list && math.greatest(1, 2) == 2\"\n";
        assert_eq!(codes(NS, steps), Vec::<&str>::new());
    }

    #[test]
    fn concurrency_needs_for_each() {
        let steps = "  - action: a\n    id: a\n    concurrency: 2\n    kube: { cordon: n1 }\n";
        assert_eq!(codes(NS, steps), vec!["concurrency-without-for-each"]);
    }

    #[test]
    fn a_param_default_that_is_not_a_list_cannot_be_iterated() {
        let steps = "  - action: a\n    id: a\n    for_each: params.ns\n    kube: { cordon: \"{{item}}\" }\n";
        assert_eq!(codes(NS, steps), vec!["for-each-not-list"]);
    }

    #[test]
    fn a_bare_param_name_gets_a_hint_to_use_params() {
        let text = "version: 1\nname: t\ntitle: t\nparams:\n  ns: { default: prod }\nsteps:\n  - check: c\n    id: c\n    kube: { get: pods, namespace: \"{{ns}}\" }\n";
        let d = parse_str(text, Path::new("t.yaml")).unwrap_err();
        assert_eq!(d[0].code, "undefined");
        assert_eq!(
            d[0].help.as_deref(),
            Some("parameters are under `params`: write `params.ns`")
        );
        assert_eq!((d[0].line, d[0].column), (9, 38));
    }
}
