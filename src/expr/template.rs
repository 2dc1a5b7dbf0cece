//! Handlebars templates: strict (a missing variable is an error) and unescaped.

use std::cell::RefCell;
use std::collections::HashMap;

use handlebars::template::{Parameter, TemplateElement};
use handlebars::{Handlebars, Path, PathSeg, RenderErrorReason, Template, TemplateError};
use serde_json::Value;

use super::{ExprError, VarRef, offset_of};

/// Compiled templates are kept by their source text; runbooks hold a few hundred at
/// most, and the engine renders the same ones again for every `for_each` item.
const CACHE_LIMIT: usize = 4096;

thread_local! {
    static REGISTRY: RefCell<Handlebars<'static>> = RefCell::new(new_registry());
    /// The top-level variables each compiled template reads; None when it may read
    /// anything (`@root`, `../`, `this`, `lookup`, partials).
    static ROOTS: RefCell<HashMap<String, Option<Vec<String>>>> = RefCell::new(HashMap::new());
}

fn new_registry() -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    // Rendered values go to argv, URLs and API calls, never to HTML.
    hb.register_escape_fn(handlebars::no_escape);
    super::helpers::register(&mut hb);
    hb
}

/// Render `template` against `ctx` (a JSON object whose keys are the variables).
/// Handlebars in strict mode, no HTML escaping.
pub fn render(template: &str, ctx: &Value) -> Result<String, ExprError> {
    if !template.contains("{{") {
        return Ok(template.to_owned());
    }
    if let Some(s) = plain_path_string(template, ctx) {
        return Ok(s.to_owned());
    }
    REGISTRY.with(|cell| {
        let mut hb = cell.borrow_mut();
        if !hb.has_template(template) {
            if hb.get_templates().len() >= CACHE_LIMIT {
                hb.clear_templates();
                ROOTS.with(|r| r.borrow_mut().clear());
            }
            let compiled = compile(template)?;
            let roots = roots_of(template, &compiled);
            ROOTS.with(|r| r.borrow_mut().insert(template.to_owned(), roots));
            hb.register_template(template, compiled);
        }
        // handlebars copies the data it renders from; copy only the variables the
        // template reads, not every saved list of the run.
        let roots = ROOTS.with(|r| r.borrow().get(template).cloned().flatten());
        let result = match (roots, ctx) {
            (Some(roots), Value::Object(vars)) => {
                let narrowed: serde_json::Map<String, Value> = roots
                    .iter()
                    .filter_map(|k| vars.get(k).map(|v| (k.clone(), v.clone())))
                    .collect();
                hb.render(template, &Value::Object(narrowed))
            }
            _ => hb.render(template, ctx),
        };
        result.map_err(|e| render_error(template, &e))
    })
}

/// The string a template made of one dotted path and nothing else
/// (`{{item.metadata.name}}`, the usual `for_each` name) renders to, read in place:
/// what handlebars (strict, unescaped) gives for it, without copying the item into
/// handlebars' own data first. None for anything else (a helper, a bare name that
/// could be one, a number, a missing field: handlebars renders or refuses those).
fn plain_path_string<'v>(template: &str, ctx: &'v Value) -> Option<&'v str> {
    let inner = template.strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let mut segments = inner.split('.');
    let first = segments.next()?;
    // `this` is handlebars' word for the current context wherever it stands in a
    // path (`a.this` is `a`): never a field name.
    let ident = |s: &str| {
        let mut chars = s.chars();
        s != "this"
            && chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if !ident(first) || !inner.contains('.') {
        return None;
    }
    let mut v = ctx.as_object()?.get(first)?;
    for seg in segments {
        if !ident(seg) {
            return None;
        }
        v = v.as_object()?.get(seg)?;
    }
    v.as_str()
}

fn roots_of(source: &str, compiled: &Template) -> Option<Vec<String>> {
    if ["@root", "../", "this", "lookup", "{{>", "{{#>", "{{#*"]
        .iter()
        .any(|m| source.contains(m))
    {
        return None;
    }
    let mut refs = Vec::new();
    collect_template(compiled, source, &mut refs, true);
    let mut roots: Vec<String> = refs
        .into_iter()
        .filter_map(|r| r.path.into_iter().next())
        .collect();
    roots.sort();
    roots.dedup();
    Some(roots)
}

/// Render every string inside `value` (object values and list elements, not object
/// keys) as a template; numbers, booleans and null are kept as they are.
pub fn render_json(value: &Value, ctx: &Value) -> Result<Value, ExprError> {
    Ok(match value {
        Value::String(s) => Value::String(render(s, ctx)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_json(v, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_json(v, ctx)?)))
                .collect::<Result<_, ExprError>>()?,
        ),
        other => other.clone(),
    })
}

fn compile(template: &str) -> Result<Template, ExprError> {
    Template::compile(template).map_err(|e| syntax_error(template, &e))
}

fn syntax_error(template: &str, e: &TemplateError) -> ExprError {
    let mut offset = e.pos().map(|(line, col)| offset_of(template, line, col));
    if matches!(
        e.reason(),
        handlebars::TemplateErrorReason::InvalidSyntax(_)
    ) && let Some(open) = unclosed_braces(template)
    {
        offset = Some(open);
    }
    let reason = match e.reason() {
        handlebars::TemplateErrorReason::InvalidSyntax(_) => {
            "invalid template syntax (handlebars): every `{{` needs its `}}`, every `{{#block}}` its `{{/block}}`".to_owned()
        }
        handlebars::TemplateErrorReason::MismatchingClosedHelper(open, close) => {
            format!("`{{{{#{open}}}}}` is closed by `{{{{/{close}}}}}`")
        }
        other => format!("invalid template: {other}"),
    };
    ExprError::new(reason, offset)
}

/// The first `{{` with no `}}` before the next `{{` (or the end): where a reader
/// would look, rather than the end of the template the parser reports.
fn unclosed_braces(template: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = template[from..].find("{{").map(|i| from + i) {
        let rest = &template[i + 2..];
        let close = rest.find("}}");
        let next_open = rest.find("{{");
        match (close, next_open) {
            (None, _) => return Some(i),
            (Some(c), Some(o)) if o < c => return Some(i),
            (Some(c), _) => from = i + 2 + c + 2,
        }
    }
    None
}

fn render_error(template: &str, e: &handlebars::RenderError) -> ExprError {
    let offset = match (e.line_no, e.column_no) {
        (Some(line), Some(col)) => Some(offset_of(template, line, col)),
        _ => None,
    };
    let message = match e.reason() {
        RenderErrorReason::MissingVariable(Some(path)) => {
            format!("`{path}` is not defined in this template's scope")
        }
        RenderErrorReason::MissingVariable(None) => "a variable is not defined".to_owned(),
        RenderErrorReason::HelperNotFound(name) => format!("unknown helper `{name}`"),
        RenderErrorReason::TemplateError(te) => return syntax_error(template, te),
        other => other.to_string(),
    };
    ExprError::new(message, offset)
}

/// Parse `template` and list the variables it reads from the context. Paths inside
/// `{{#each}}`/`{{#with}}` blocks are relative to the block's value and are not
/// listed (only the block's own argument is); `@index`-style locals and `this` are
/// skipped. A syntax error is returned with its offset.
pub fn template_refs(template: &str) -> Result<Vec<VarRef>, ExprError> {
    if !template.contains("{{") {
        return Ok(Vec::new());
    }
    let compiled = compile(template)?;
    let mut refs = Vec::new();
    collect_template(&compiled, template, &mut refs, true);
    Ok(refs)
}

/// The helpers every runbook template may call: handlebars' own and ours
/// (expr/helpers.rs). Lint refuses any other name in a helper call, which would
/// otherwise fail only when the template is rendered.
pub const KNOWN_HELPERS: &[&str] = &[
    "if",
    "unless",
    "each",
    "with",
    "lookup",
    "raw",
    "log",
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "and",
    "or",
    "not",
    "len",
    "count",
    "min",
    "max",
    "age",
    "ages",
    "urlencode",
];

/// The helper calls in `template` (`{{urlencode x}}`, `{{#each xs}}`, a
/// subexpression `(min xs)`) whose name is not in [`KNOWN_HELPERS`], with the offset
/// of the call. `{{name}}` alone is a variable, not a call.
pub fn unknown_helpers(template: &str) -> Result<Vec<(String, usize)>, ExprError> {
    if !template.contains("{{") {
        return Ok(Vec::new());
    }
    let compiled = compile(template)?;
    let mut out = Vec::new();
    collect_helpers(&compiled, template, &mut out);
    out.retain(|(n, _)| !KNOWN_HELPERS.contains(&n.as_str()));
    Ok(out)
}

fn collect_helpers(t: &Template, source: &str, out: &mut Vec<(String, usize)>) {
    fn sub_calls(p: &Parameter, offset: usize, source: &str, out: &mut Vec<(String, usize)>) {
        if let Parameter::Subexpression(sub) = p {
            let name = sub.name().to_owned();
            let at = source
                .get(offset..)
                .and_then(|rest| rest.find(&format!("({name}")))
                .map_or(offset, |d| offset + d + 1);
            out.push((name, at));
            for p in sub.params().into_iter().flatten() {
                sub_calls(p, offset, source, out);
            }
        }
    }
    for (i, element) in t.elements.iter().enumerate() {
        let offset = t
            .mapping
            .get(i)
            .map(|m| offset_of(source, m.0, m.1))
            .unwrap_or(0);
        if let TemplateElement::Expression(h)
        | TemplateElement::HtmlExpression(h)
        | TemplateElement::HelperBlock(h) = element
        {
            let offset = name_offset(source, offset);
            let call = !h.params.is_empty() || !h.hash.is_empty();
            if call && let Parameter::Name(n) = &h.name {
                out.push((n.clone(), offset));
            }
            for p in h.params.iter().chain(h.hash.values()) {
                sub_calls(p, offset, source, out);
            }
            for inner in [&h.template, &h.inverse].into_iter().flatten() {
                collect_helpers(inner, source, out);
            }
        }
    }
}

fn collect_template(t: &Template, source: &str, refs: &mut Vec<VarRef>, top_scope: bool) {
    for (i, element) in t.elements.iter().enumerate() {
        let offset = t
            .mapping
            .get(i)
            .map(|m| offset_of(source, m.0, m.1))
            .unwrap_or(0);
        match element {
            TemplateElement::Expression(h)
            | TemplateElement::HtmlExpression(h)
            | TemplateElement::HelperBlock(h) => {
                if !top_scope {
                    continue;
                }
                let offset = name_offset(source, offset);
                // `{{name}}` with no params is a variable; `{{helper a b}}` reads a and b.
                if h.params.is_empty() && h.hash.is_empty() && !h.block {
                    collect_param(&h.name, offset, source, refs);
                } else {
                    for p in h.params.iter().chain(h.hash.values()) {
                        collect_param(p, offset, source, refs);
                    }
                }
                let opens_scope = matches!(&h.name, Parameter::Name(n) if n == "each" || n == "with")
                    || h.block_param.is_some();
                if let Some(inner) = &h.template {
                    collect_template(inner, source, refs, !opens_scope);
                }
                if let Some(inner) = &h.inverse {
                    collect_template(inner, source, refs, true);
                }
            }
            _ => {}
        }
    }
}

/// The offset of an expression's content: past `{{`, `{{{`, `{{#`, `{{~` and spaces.
fn name_offset(source: &str, start: usize) -> usize {
    let bytes = source.as_bytes();
    let mut i = start;
    while i < bytes.len() && matches!(bytes[i], b'{' | b'#' | b'~' | b' ' | b'&') {
        i += 1;
    }
    i
}

fn collect_param(p: &Parameter, offset: usize, source: &str, refs: &mut Vec<VarRef>) {
    match p {
        Parameter::Path(Path::Relative((segs, raw))) => {
            let path: Vec<String> = segs
                .iter()
                .filter_map(|s| match s {
                    PathSeg::Named(n) => Some(n.clone()),
                    _ => None,
                })
                .collect();
            if path.is_empty() || raw.starts_with("this") || raw.starts_with("..") {
                return;
            }
            // Point at the path itself when it appears verbatim after `offset`.
            let at = source
                .get(offset..)
                .and_then(|rest| rest.find(raw.as_str()))
                .map(|d| offset + d)
                .unwrap_or(offset);
            refs.push(VarRef { path, offset: at });
        }
        Parameter::Name(n) => {
            let at = source
                .get(offset..)
                .and_then(|rest| rest.find(n.as_str()))
                .map(|d| offset + d)
                .unwrap_or(offset);
            refs.push(VarRef {
                path: vec![n.clone()],
                offset: at,
            });
        }
        Parameter::Subexpression(sub) => {
            if let Some(params) = sub.params() {
                for p in params {
                    collect_param(p, offset, source, refs);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(t: &str) -> Vec<String> {
        template_refs(t)
            .unwrap()
            .into_iter()
            .map(|r| r.path.join("."))
            .collect()
    }

    /// A template that is one dotted path to a string is read in place; it must
    /// render exactly as handlebars renders it, and anything else still goes to
    /// handlebars (strict: a missing field is an error, a number is rendered).
    #[test]
    fn a_lone_path_renders_as_handlebars_renders_it() {
        let ctx = json!({
            "item": {"metadata": {"name": "web-0 <&>\"x\"", "n": 3, "this": "t"}},
            "this": {"x": "from a variable named this"}
        });
        let through_handlebars = |t: &str| {
            REGISTRY.with(|cell| {
                let mut hb = cell.borrow_mut();
                hb.register_template_string(t, t).unwrap();
                hb.render(t, &ctx).map_err(|e| e.to_string())
            })
        };
        for t in ["{{item.metadata.name}}", "{{ item.metadata.name }}"] {
            assert!(plain_path_string(t, &ctx).is_some(), "{t} is read in place");
            assert_eq!(
                render(t, &ctx).unwrap(),
                through_handlebars(t).unwrap(),
                "{t}"
            );
        }
        // Not plain paths to a string: handlebars decides.
        for t in [
            "{{item.metadata.n}}",
            "{{this.x}}",
            "{{item.metadata.this}}",
            "{{item.metadata.name}} and {{item.metadata.n}}",
            "{{{item.metadata.name}}}",
        ] {
            assert_eq!(plain_path_string(t, &ctx), None, "{t}");
            // Rendered, or refused, as before.
            assert_eq!(render(t, &ctx).ok(), through_handlebars(t).ok(), "{t}");
        }
        assert_eq!(plain_path_string("{{item.metadata.missing}}", &ctx), None);
        assert!(render("{{item.metadata.missing}}", &ctx).is_err());
    }

    /// docs/format.md documents `{{len x}}` as the way to count in a template.
    #[test]
    fn len_counts_a_list() {
        let ctx = json!({"pods": [1, 2, 3]});
        assert_eq!(render("{{len pods}} pods", &ctx).unwrap(), "3 pods");
    }

    #[test]
    fn renders_without_html_escaping() {
        let ctx = json!({"params": {"ns": "<prod> & co"}});
        assert_eq!(render("ns={{params.ns}}", &ctx).unwrap(), "ns=<prod> & co");
    }

    #[test]
    fn missing_variable_is_an_error_not_an_empty_string() {
        let ctx = json!({"params": {"ns": "prod"}});
        let e = render("kubectl -n {{params.nss}}", &ctx).unwrap_err();
        assert!(e.message.contains("params.nss"), "{}", e.message);
    }

    #[test]
    fn renders_numbers_and_nested_paths() {
        let ctx = json!({"item": {"spec": {"nodeName": "n1"}}, "index": 3});
        assert_eq!(
            render("{{item.spec.nodeName}}#{{index}}", &ctx).unwrap(),
            "n1#3"
        );
    }

    #[test]
    fn syntax_error_carries_an_offset() {
        let e = render("abc {{#if x}} no close", &json!({"x": true})).unwrap_err();
        assert!(e.offset.is_some(), "{e:?}");
        let e = template_refs("ok {{ params.x").unwrap_err();
        assert!(e.message.contains("syntax"), "{}", e.message);
    }

    #[test]
    fn render_json_renders_every_string_value() {
        let ctx = json!({"n": "node-1"});
        let body = json!({"spec": {"unschedulable": true, "name": "{{n}}", "list": ["{{n}}", 1]}});
        assert_eq!(
            render_json(&body, &ctx).unwrap(),
            json!({"spec": {"unschedulable": true, "name": "node-1", "list": ["node-1", 1]}})
        );
    }

    #[test]
    fn refs_list_paths_and_offsets() {
        let refs = template_refs("a {{params.namespace}} b {{ item.metadata.name }}").unwrap();
        assert_eq!(refs[0].path, vec!["params", "namespace"]);
        assert_eq!(refs[0].offset, 4);
        assert_eq!(refs[1].path, vec!["item", "metadata", "name"]);
        assert_eq!(refs[1].offset, 28);
    }

    #[test]
    fn refs_skip_each_block_bodies_but_keep_their_argument() {
        assert_eq!(
            paths("{{#each lost}}{{metadata.name}} {{@index}}{{/each}} {{#if x}}{{y}}{{/if}}"),
            vec!["lost", "x", "y"]
        );
    }

    #[test]
    fn narrowing_the_context_keeps_blocks_and_helpers_working() {
        let ctx = json!({"xs": [{"n": "a"}, {"n": "b"}], "flag": true, "other": [1, 2, 3]});
        assert_eq!(
            render(
                "{{#each xs}}{{n}}{{@index}},{{/each}}{{#if flag}}!{{/if}}",
                &ctx
            )
            .unwrap(),
            "a0,b1,!"
        );
        assert_eq!(
            render("{{#each xs}}{{../flag}}{{/each}}", &ctx).unwrap(),
            "truetrue"
        );
        assert!(render("{{nope}}", &ctx).is_err());
    }

    #[test]
    fn plain_strings_have_no_refs_and_render_unchanged() {
        assert!(paths("kubectl get pods").is_empty());
        assert_eq!(render("a } b {", &json!({})).unwrap(), "a } b {");
    }

    #[test]
    fn unknown_helpers_are_the_calls_no_registry_has() {
        let t = "{{urlencod params.t}} {{len xs}} {{age (mni xs)}} {{#each xs}}{{upper this}}{{/each}} {{plain}}";
        let found: Vec<String> = unknown_helpers(t)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(found, ["urlencod", "mni", "upper"]);
        let (_, at) = &unknown_helpers("x {{urlencod params.t}}").unwrap()[0];
        assert_eq!(*at, 4);
        // Every name lint accepts renders (no "unknown helper" from the registry).
        for name in KNOWN_HELPERS {
            let e = render(&format!("{{{{{name} 1}}}}"), &json!({}));
            assert!(
                !matches!(&e, Err(e) if e.message.contains("unknown helper")),
                "{name}: {e:?}"
            );
        }
    }
}
