//! Templates and conditions: syntax, and whether every name they use exists at that
//! point of the runbook.

use serde_json::Value;

use super::{CEL_BUILTINS, Ctx, Shape, Validator};
use crate::expr::{self, VarRef};
use crate::runbook::diag::{Diagnostic, suggest};
use crate::runbook::kinds;
use crate::runbook::model::*;

impl Validator<'_> {
    pub(super) fn expr_error(&mut self, code: &'static str, sp: &Sp<String>, e: &expr::ExprError) {
        let pos = e.offset.map_or(sp.pos, |o| self.src.pos_in(sp, o));
        self.push(Diagnostic::error(code, pos, e.message.clone()));
    }

    pub(super) fn template(&mut self, sp: &Sp<String>, ctx: &Ctx) {
        if !sp.value.contains("{{") {
            return;
        }
        if !self.expression_fits(sp) {
            return;
        }
        match expr::template_refs(&sp.value) {
            Ok(refs) => {
                for r in refs {
                    self.var(sp, &r, ctx);
                }
            }
            Err(e) => return self.expr_error("template-syntax", sp, &e),
        }
        for (name, offset) in expr::unknown_helpers(&sp.value).unwrap_or_default() {
            let help = match suggest(&name, expr::KNOWN_HELPERS.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => {
                    "the helpers are listed in docs/format.md (templates and conditions)".to_owned()
                }
            };
            let len = name.chars().count();
            self.push(
                Diagnostic::error(
                    "unknown-helper",
                    self.src.pos_in(sp, offset),
                    format!("`{name}` is not a template helper"),
                )
                .len(len)
                .help(help),
            );
        }
    }

    pub(super) fn condition(&mut self, sp: &Sp<String>, ctx: &Ctx) {
        if !self.expression_fits(sp) {
            return;
        }
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
        let ctx = Ctx {
            condition: true,
            ..ctx.clone()
        };
        match expr::condition_refs(&sp.value) {
            Ok(refs) => {
                for r in refs {
                    if !self.builtin(sp, &r) {
                        self.var(sp, &r, &ctx);
                    }
                }
            }
            Err(e) => return self.expr_error("condition-syntax", sp, &e),
        }
        // The sizes written in the expression alone can put it over the cost budget
        // (`lists.range(100000000)`, nested ranges); the run would refuse it anyway.
        if let Ok(cost) = expr::static_cost(&sp.value) {
            let budget = expr::cost_budget();
            if cost > budget {
                let len = self.src.width(sp.pos, &sp.value);
                self.push(
                    Diagnostic::error(
                        "expression-too-costly",
                        sp.pos,
                        format!(
                            "this condition's estimated cost is {cost}, over the budget of {budget}: the run would refuse it"
                        ),
                    )
                    .len(len)
                    .help(format!(
                        "iterate over less (smaller ranges, no nested loops over large lists), or raise {} (docs/limits.md)",
                        expr::COST_BUDGET_VAR
                    )),
                );
            }
        }
        // CEL parses a call of any name and fails only when it runs.
        if let Ok(unknown) = expr::unknown_functions(&sp.value) {
            for (name, offset) in unknown {
                let pos = self.src.pos_in(sp, offset);
                self.push(
                    Diagnostic::error(
                        "unknown-function",
                        pos,
                        format!("CEL has no function `{name}`"),
                    )
                    .len(name.chars().count())
                    .help("conditions offer CEL's standard functions, its strings, lists and math extensions, and Kubernetes' quantity, regex, list and URL libraries (docs/format.md, \"CEL libraries\")"),
                );
            }
        }
        if let Ok(calls) = expr::wrong_arity(&sp.value) {
            for (name, offset, given, takes) in calls {
                let pos = self.src.pos_in(sp, offset);
                let count = |n: usize| match n {
                    1 => "1 argument".to_owned(),
                    n => format!("{n} arguments"),
                };
                let takes = match takes.as_slice() {
                    [one] => count(*one),
                    many => format!(
                        "{} or {}",
                        many[..many.len() - 1]
                            .iter()
                            .map(usize::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                        count(many[many.len() - 1])
                    ),
                };
                self.push(
                    Diagnostic::error(
                        "function-arity",
                        pos,
                        format!("`{name}` takes {takes}, not {given}"),
                    )
                    .len(name.chars().count())
                    .help("see docs/format.md, \"CEL libraries\", for each function's arguments"),
                );
            }
        }
    }

    /// Whether a name in a condition is CEL's or bound in every condition: type
    /// names, extension namespaces, and `now` (the run clock's time, a timestamp,
    /// which has methods but no fields).
    fn builtin(&mut self, sp: &Sp<String>, r: &VarRef) -> bool {
        if r.path.len() == 1 && CEL_BUILTINS.contains(&r.path[0].as_str()) {
            return true;
        }
        if r.path[0] != expr::NOW {
            return false;
        }
        if let Some(field) = r.path.get(1) {
            let pos = self.src.pos_in(sp, r.offset);
            let len = r.path.join(".").chars().count();
            self.push(
                Diagnostic::error(
                    "now-field",
                    pos,
                    format!("`now` is a timestamp: it has no field `{field}`"),
                )
                .len(len)
                .help("compare it with a timestamp or subtract one: `now - timestamp(x) > duration('5m')`; methods such as `now.getHours()` work"),
            );
        }
        true
    }

    pub(super) fn for_each(&mut self, sp: &Sp<String>) {
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
        let ctx = Ctx {
            condition: true,
            ..Ctx::default()
        };
        for r in &refs {
            if !self.builtin(sp, r) {
                self.var(sp, r, &ctx);
            }
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
    pub(super) fn var(&mut self, sp: &Sp<String>, r: &VarRef, ctx: &Ctx) {
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
        // Handlebars reads `x.length` as the field `length` of `x`; a list has none,
        // so the template fails at run time. Its `len` helper counts.
        if !ctx.condition
            && r.path.len() >= 2
            && let Some(last @ ("length" | "size" | "count")) = r.path.last().map(String::as_str)
        {
            let of = r.path[..r.path.len() - 1].join(".");
            error(
                self,
                "template-length",
                format!(
                    "a template cannot read `.{last}`: `{of}.{last}` is the field `{last}` of `{of}`, which a list does not have"
                ),
                Some(format!("count with the `len` helper: `{{{{len {of}}}}}`")),
            );
            return;
        }
        if ctx.title && root != "params" {
            error(
                self,
                "title-scope",
                format!("a title is rendered when the run starts, with `params` only; `{root}` is not known then"),
                Some("name params in titles (`{{params.namespace}}`); show results with the step's `summary:`".to_owned()),
            );
            return;
        }
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
                if ctx.condition {
                    candidates.push(expr::NOW);
                }
                candidates.extend(ctx.objects.iter().map(String::as_str));
                let help = if name == expr::NOW {
                    Some("`now` is only defined in conditions (`when`, `expect`, `where`, `for_each`, `for`), not in templates".to_owned())
                } else if ctx.condition && strsim::osa_distance(name, expr::NOW) == 1 {
                    // Too short for the similarity `suggest` uses (`nwo`, `nowe`).
                    Some(format!("did you mean `{}`?", expr::NOW))
                } else if singular_elsewhere {
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
