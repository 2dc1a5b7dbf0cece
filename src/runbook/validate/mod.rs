//! Rules over the whole model: ids, scopes of templates and conditions, kinds of
//! steps, kube kinds. The parser has already reported shape errors; this runs on
//! what it could build, so a file with a typo in one key still gets its scopes
//! checked.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::diag::{Diagnostic, suggest};
use super::model::*;
use super::source::Source;

mod bounds;
mod ops;
mod scope;

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
    /// A CEL condition (which also sees `now`), not a template.
    condition: bool,
    /// A title: rendered once when the run starts, with `params` only.
    title: bool,
}

/// Where titles are checked: they see `params` and nothing else.
const TITLE: Ctx = Ctx {
    item: false,
    result: false,
    objects: Vec::new(),
    any_object: false,
    condition: false,
    title: true,
};

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
            Some((KubeVerb::Get, _)) if k.name.is_none() => Shape::List,
            Some((KubeVerb::Get, _)) => {
                Shape::Map("a single object from `kube: get` with a `name`")
            }
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
        self.name_bounds();
        self.template(&rb.title, &TITLE);
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
                Some(s) if s.gate_rule.as_ref().is_some_and(|r| r.approvals > 1) => {
                    let len = self.src.width(id.pos, &id.value);
                    self.push(
                        Diagnostic::error(
                            "unattended-quorum",
                            id.pos,
                            format!(
                                "`{}` needs approvals from several people (`gate: {{ approvals: N }}`); an unattended step asks nobody",
                                id.value
                            ),
                        )
                        .len(len)
                        .help("remove it from `unattended`, or its `approvals`"),
                    );
                }
                Some(s) if s.gate.as_ref().map(|g| g.value) == Some(Gate::Explicit) => {
                    let len = self.src.width(id.pos, &id.value);
                    self.push(
                        Diagnostic::error(
                            "unattended-explicit",
                            id.pos,
                            format!(
                                "`{}` has `gate: explicit`: it runs only when approved by name, never unattended",
                                id.value
                            ),
                        )
                        .len(len)
                        .help("remove it from `unattended`, or change its gate to `approve`"),
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
            self.template(t, &TITLE);
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
        if let Some(r) = &step.requires {
            self.condition(r, &base);
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
        if let Some(t) = &step.summary {
            if matches!(kind, StepKind::Verify | StepKind::Manual) {
                self.err(
                    "summary-kind",
                    t.pos,
                    format!(
                        "`summary` describes the result of a check or an action; a {} step has none to show",
                        kind.key()
                    ),
                );
            } else {
                // Rendered once the step is done: no `item`, `result` is every result.
                self.template(
                    t,
                    &Ctx {
                        result: true,
                        ..Ctx::default()
                    },
                );
            }
        }
        if kind != StepKind::Action
            && let Some(l) = &step.limit
        {
            self.push(Diagnostic::error(
                "limit-without-targets",
                l.pos,
                format!(
                    "a {} step acts on nothing; only an action's plan has targets to limit",
                    kind.key()
                ),
            ));
        }
        if let Some(k) = &step.keep
            && (kind != StepKind::Action || (step.kube.is_none() && step.escalate.is_empty()))
        {
            self.push(
                Diagnostic::error(
                    "keep-without-kube-action",
                    k.pos,
                    "`keep` guards what a Kubernetes action takes away; this step is not one",
                )
                .help("put `keep` on an action with a `kube` operation (or an escalation of them)"),
            );
        }
        if let Some(o) = &step.over_limit
            && step.limit.is_none()
        {
            self.push(
                Diagnostic::error(
                    "over-limit-without-limit",
                    o.pos,
                    "`over_limit` says what a plan over its `limit` does, but this step has no `limit`",
                )
                .help("add e.g. `limit: { max_targets: 20 }`, or remove `over_limit`"),
            );
        }
        if let Some(p) = &step.preview {
            let gated =
                kind == StepKind::Action && step.gate.as_ref().map(|g| g.value) != Some(Gate::Auto);
            self.preview(p, gated);
        }
        // A rung's conditions may read the rungs before it in its ladder as
        // `steps['RUNG']` (a manual rung's answer: `status == 'ok'` once confirmed).
        let mut rungs_seen = Vec::new();
        for (n, rung) in step.escalate.iter().enumerate() {
            self.rung(rung);
            let id = rung
                .id
                .as_ref()
                .map(|i| i.value.clone())
                .unwrap_or_else(|| format!("{}.{}", step.id.value, n + 1));
            if self.earlier.insert(id.clone()) {
                rungs_seen.push(id);
            }
        }
        for id in rungs_seen {
            self.earlier.remove(&id);
        }
        // A rung's own `gate:` replaces the step's, quorum and all; a manual rung has
        // no gate. When that is every rung, the step's quorum is never asked.
        if let Some(rule) = &step.gate_rule
            && rule.approvals > 1
            && !step.escalate.is_empty()
            && step
                .escalate
                .iter()
                .all(|r| r.gate.is_some() || r.manual.is_some())
        {
            self.push(
                Diagnostic::error(
                    "approvals-never-asked",
                    rule.pos,
                    format!(
                        "`approvals: {}` on `{}` is never asked: every rung of its ladder is manual or has its own `gate:`, which replaces the step's quorum",
                        rule.approvals, step.id.value
                    ),
                )
                .help("put `gate: { approvals: N }` on the rungs that need several people, or remove their own `gate:`"),
            );
        }
        if let Some(u) = &step.undo {
            self.undo(step, kind, u);
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
            let len = self.src.token_width(g.pos);
            self.push(
                Diagnostic::error(
                    "gate-not-action",
                    g.pos,
                    format!("`gate` applies to actions; this is {a_key} step"),
                )
                .len(len)
                .help(
                    "checks and verifications never change anything, so they never stop at a gate",
                ),
            );
        }
        // A verification polls one condition until it holds; the engine does not run
        // it per item, so `item` would be undefined at run time.
        if let Some(fe) = &step.for_each
            && kind == StepKind::Verify
        {
            let len = self.src.token_width(fe.pos);
            self.push(
                Diagnostic::error(
                    "for-each-on-verify",
                    fe.pos,
                    "`for_each` does not apply to a verify step: a verification is one condition polled until it holds",
                )
                .len(len)
                .help("read every object in one operation and test them all in `expect`, e.g. `result.all(p, ...)`; `for_each` belongs to checks and actions"),
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
                // Rungs with their own `verify:` need none from the step.
                if let Some(rung) = step.escalate.iter().find(|r| r.verify.is_none()) {
                    self.err(
                        "escalate-without-verify",
                        rung.pos,
                        "an `escalate` ladder needs a `verify:` block: it decides when to stop escalating",
                    )
                    .help = Some("give the step a `verify:` block, or this rung its own `verify:`".into());
                }
            }
            _ => {}
        }
        // Every fix is proven by a verification; an action without one is allowed
        // (a notification, a cordon proven by a later step) but worth a second look.
        if kind == StepKind::Action && step.verification().is_none() && step.escalate.is_empty() {
            let key_len = "action".len();
            self.push(
                Diagnostic::warning(
                    "action-without-verify",
                    step.pos,
                    "this action has no `verify:` block: nothing will prove it worked",
                )
                .len(key_len)
                .help("add `verify:` with a read-only operation and an `expect`, or follow it with a `verify:` step"),
            );
        }
    }

    fn save_name(&mut self, s: &Sp<String>) {
        let bad_ident = !is_ident(&s.value);
        let is_now = s.value == crate::expr::NOW;
        let reserved = RESERVED.contains(&s.value.as_str()) || is_now;
        if bad_ident || reserved {
            let len = self.src.width(s.pos, &s.value);
            let why = if is_now {
                "`now` is the current time in conditions: choose another name".to_owned()
            } else if reserved {
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
        if let Some(t) = &rung.title {
            self.template(t, &TITLE);
        }
        if let Some(t) = &rung.manual {
            self.template(t, &ctx);
        }
        if let Some(w) = &rung.when {
            self.condition(w, &Ctx::default());
        }
        if let Some(r) = &rung.requires {
            self.condition(r, &Ctx::default());
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
        if let Some(v) = &rung.verify {
            self.verification(v);
        }
        if let Some(p) = &rung.preview {
            let gated = rung.gate.as_ref().map(|g| g.value) != Some(Gate::Auto);
            self.preview(p, gated);
        }
    }

    /// A preview is read-only: a kube read verb, an http GET, a prometheus query, or
    /// a shell command the author declares read-only by putting it under `preview:`
    /// (as for checks: the program is not inspected). It is shown only at a gate.
    /// `undo:` compensates what an action changed: on a step that changes nothing
    /// (a check, a verify, a manual step, an action that only reads) it is an error,
    /// and so is an undo that only reads.
    fn undo(&mut self, step: &Step, kind: StepKind, u: &Undo) {
        let reads = match step.op() {
            Some(OpRef::Kube(k)) if !k.is_mutating() => {
                k.verb().map(|(v, _)| format!("`kube: {v}`"))
            }
            Some(OpRef::Prometheus(_)) => Some("`prometheus`".to_owned()),
            _ => None,
        };
        if kind != StepKind::Action {
            self.err(
                "undo-read-only",
                u.pos,
                format!(
                    "`undo` compensates what an action changed; a {} step changes nothing to undo",
                    kind.key()
                ),
            )
            .help = Some("remove `undo`, or put it on the action that makes the change".into());
            return;
        }
        if let Some(what) = reads {
            self.err(
                "undo-read-only",
                u.pos,
                format!("this action only reads ({what}); there is nothing to undo"),
            )
            .help = Some("remove `undo`, or make this step a check".into());
            return;
        }
        if !step.escalate.is_empty() {
            self.err(
                "undo-on-ladder",
                u.pos,
                "`undo` on an escalation ladder is not supported: which rung ran decides what to undo",
            )
            .help = Some("split the rung that needs undoing into an action of its own with `undo`".into());
            return;
        }
        if let Some(OpRef::Kube(k)) = u.op()
            && !k.is_mutating()
            && let Some((verb, val)) = k.verb()
        {
            self.err(
                "undo-read-only",
                val.pos,
                format!("an undo changes something back, but `kube: {verb}` only reads"),
            )
            .help = Some("e.g. `undo: { kube: { uncordon: \"{{item}}\" } }` for a cordon".into());
        }
        if let Some(t) = &u.title {
            self.template(t, &TITLE);
        }
        if let Some(op) = u.op() {
            let ctx = Ctx {
                item: step.for_each.is_some() || self.assumed_for_each.contains(&step.pos),
                result: true,
                ..Ctx::default()
            };
            self.op(op, &ctx);
        }
    }

    fn preview(&mut self, p: &Preview, gated: bool) {
        match p.op() {
            Some(OpRef::Kube(k)) if k.is_mutating() => {
                if let Some((verb, val)) = k.verb() {
                    self.err(
                        "mutating-preview",
                        val.pos,
                        format!("a preview is read-only, but `kube: {verb}` changes the cluster"),
                    )
                    .help = Some(
                        "preview with a read verb (`get`, `logs`) of what the action would touch"
                            .into(),
                    );
                }
            }
            Some(OpRef::Http(h))
                if h.method.as_ref().is_some_and(|m| {
                    !["GET", "HEAD"]
                        .iter()
                        .any(|r| m.value.eq_ignore_ascii_case(r))
                }) =>
            {
                if let Some(m) = &h.method {
                    self.err(
                        "mutating-preview",
                        m.pos,
                        format!(
                            "a preview is read-only, but `method: {}` may change something",
                            m.value
                        ),
                    )
                    .help = Some("preview with a GET (leave `method` out)".into());
                }
            }
            _ => {}
        }
        if let Some(op) = p.op() {
            self.op(op, &Ctx::default());
        }
        if let Some(t) = &p.summary {
            self.template(
                t,
                &Ctx {
                    result: true,
                    ..Ctx::default()
                },
            );
        }
        if !gated {
            self.push(
                Diagnostic::warning(
                    "preview-not-gated",
                    p.pos,
                    "`preview` is shown at a gate, but this step never stops at one",
                )
                .help("remove `preview`, or give the action `gate: approve`"),
            );
        }
    }

    fn verification(&mut self, v: &Verification) {
        let base = Ctx::default();
        if let Some(t) = &v.title {
            self.template(t, &TITLE);
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
}

#[cfg(test)]
mod tests;
