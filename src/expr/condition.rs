//! CEL conditions over JSON values.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::common::types::CelTimestamp;
use cel::common::value::Val;
use cel::objects::Key;
use cel::{Context, Env, Program, Value as Cel};
use serde_json::{Number, Value};

use super::lazy::to_val;
use super::{ExprError, VarRef, cost};
use crate::clock::Clock;

/// The name under which every condition sees the current time, a CEL `timestamp`.
pub const NOW: &str = "now";

tokio::task_local! {
    /// The clock `now` is read from. A task-local rather than a parameter because
    /// conditions are also evaluated deep inside providers (a kube `where`, `wait`'s
    /// `for`), which only receive the run's variables as JSON; the engine scopes its
    /// whole run with its own clock, so those see the same (possibly virtual) time.
    static CLOCK: Arc<dyn Clock>;
}

/// Run `fut` with `clock` as the source of `now` in every condition it evaluates,
/// on whichever thread it is polled. The engine wraps each run in this.
pub async fn with_clock<F: std::future::Future>(clock: Arc<dyn Clock>, fut: F) -> F::Output {
    CLOCK.scope(clock, fut).await
}

/// [`with_clock`] for synchronous code (a test suite's expectations over the lab).
pub fn with_clock_sync<R>(clock: Arc<dyn Clock>, f: impl FnOnce() -> R) -> R {
    CLOCK.sync_scope(clock, f)
}

/// `now` as CEL sees it, read from the clock in scope when the condition is
/// evaluated (so every poll of a verification sees a later one). Outside a
/// [`with_clock`] scope there is no `now`: a condition that reads it fails with
/// "not defined" rather than silently reading the wall clock.
fn now_val() -> Option<Box<dyn Val + 'static>> {
    CLOCK
        .try_with(|c| c.now())
        .ok()
        .map(|t| Box::new(CelTimestamp::from(t.fixed_offset())) as Box<dyn Val>)
}

/// The run's time when a clock is in scope (templates rendered by the engine),
/// else the wall clock (templates rendered outside a run).
pub(crate) fn now_or_wall_clock() -> chrono::DateTime<chrono::Utc> {
    CLOCK
        .try_with(|c| c.now())
        .unwrap_or_else(|_| chrono::Utc::now())
}

/// Bind the variables a program reads (`names`): `now` from the clock, the others
/// from `vars` (binding only what it reads keeps a `where` over 1000 pods from
/// converting every saved list 1000 times), except the names in `skip`. A list or
/// map is bound lazily (see [`super::lazy`]): `size(stuck)` converts nothing.
fn bind_vars<'v>(context: &mut Context<'_, 'v>, names: &[&str], vars: &'v Value, skip: &[&str]) {
    for &name in names {
        if skip.contains(&name) {
            continue;
        }
        if name == NOW
            && let Some(now) = now_val()
        {
            context.add_variable_as_val(NOW, now);
            continue;
        }
        if let Some(v) = vars.get(name) {
            context.add_variable_as_val(name, to_val(v));
        }
    }
}

/// Compiled programs kept by source text (see the template cache).
const CACHE_LIMIT: usize = 4096;

thread_local! {
    static ENV: Arc<Env> = Arc::new(new_env());
    static PROGRAMS: RefCell<HashMap<String, Rc<Program>>> = RefCell::new(HashMap::new());
}

fn new_env() -> Env {
    let mut env = Env::stdlib();
    // `'a,b'.split(',')`, `name.lowerAscii()`, `list.join(', ')`, `math.greatest`,
    // `lists.range`: the extension libraries cel-go and Kubernetes offer. Failing to
    // add one only loses its functions.
    let _ = env.add_extension(cel::extensions::strings);
    let _ = env.add_extension(cel::extensions::lists);
    let _ = env.add_extension(cel::extensions::math);
    // Quantities, regex, lists and URLs as Kubernetes' CEL has them.
    let _ = env.add_extension(super::k8s::extension);
    env
}

pub(super) fn program(expr: &str) -> Result<Rc<Program>, ExprError> {
    if let Some(p) = PROGRAMS.with(|c| c.borrow().get(expr).cloned()) {
        return Ok(p);
    }
    let compiled = ENV
        .with(|env| env.compile(expr))
        .map_err(|e| parse_error(expr, &e))?;
    let compiled = Rc::new(compiled);
    PROGRAMS.with(|c| {
        let mut cache = c.borrow_mut();
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(expr.to_owned(), Rc::clone(&compiled));
    });
    Ok(compiled)
}

fn parse_error(expr: &str, e: &cel::ParseErrors) -> ExprError {
    let Some(first) = e.errors.first() else {
        return ExprError::new("invalid condition (CEL)", None);
    };
    // The parser reports a 1-based line and column, in characters.
    let (line, col) = first.pos;
    let offset = if line >= 1 && col >= 1 {
        Some(super::offset_of(expr, line as usize, col as usize))
    } else {
        None
    };
    ExprError::new(
        format!(
            "invalid condition (CEL): {}",
            short_parse_message(&first.msg)
        ),
        offset,
    )
}

/// ANTLR's messages list every token it would have accepted; keep what went wrong.
fn short_parse_message(msg: &str) -> String {
    let msg = msg.strip_prefix("Syntax error: ").unwrap_or(msg);
    if let Some(rest) = msg.strip_prefix("mismatched input ") {
        let token = rest.split(" expecting").next().unwrap_or(rest).trim();
        return if token == "'<EOF>'" {
            "the condition ends too early".to_owned()
        } else {
            format!("unexpected {token}")
        };
    }
    if let Some(rest) = msg.strip_prefix("token recognition error at: ") {
        let ch = rest.trim_matches('\'').chars().next().unwrap_or(' ');
        return format!("unexpected character '{ch}'");
    }
    if let Some(rest) = msg.strip_prefix("extraneous input ") {
        let token = rest.split(" expecting").next().unwrap_or(rest).trim();
        return format!("unexpected {token}");
    }
    msg.split(" expecting {").next().unwrap_or(msg).to_owned()
}

/// The variable an expression is nothing but (`for_each: pods`), when `ctx` has it:
/// its value is the expression's value, with no trip through CEL. For a JSON value
/// that trip is the identity, but it converted a 1 000-pod list twice and checked
/// its cost (about 100 ms of a 1 000-pod `for_each`, issue 18).
pub fn bare_variable<'v>(expr: &str, ctx: &'v serde_json::Map<String, Value>) -> Option<&'v Value> {
    let name = expr.trim();
    let mut chars = name.chars();
    let first = chars.next()?;
    let ident = (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    // `now` is bound by the evaluator, not taken from the variables; the literals
    // and reserved words are not variables.
    if !ident || matches!(name, NOW | "true" | "false" | "null") || CEL_RESERVED.contains(&name) {
        return None;
    }
    ctx.get(name)
}

/// Words CEL reserves: never a variable in an expression.
const CEL_RESERVED: &[&str] = &[
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// Evaluate a CEL expression; each top-level key of `ctx` (an object) is a variable.
pub fn eval(expr: &str, ctx: &Value) -> Result<Value, ExprError> {
    if let Some(v) = ctx.as_object().and_then(|m| bare_variable(expr, m)) {
        return Ok(v.clone());
    }
    let program = program(expr)?;
    within_budget(&program, ctx, &[])?;
    let mut context = ENV.with(|env| Context::with_env(Arc::clone(env)));
    bind_vars(&mut context, &program.references().variables(), ctx, &[]);
    let value = program.execute(&context).map_err(|e| execution_error(&e))?;
    from_cel(&value)
}

/// The estimated cost of a condition with every variable's size unknown (lint):
/// only sizes written in the expression count. See [`super::cost`].
pub fn static_cost(expr: &str) -> Result<u64, ExprError> {
    let program = program(expr)?;
    Ok(cost::estimate(program.expression(), &|_| None, false, &[]))
}

/// Refuse to run a program whose estimated cost over these values is over budget.
fn within_budget(
    program: &Program,
    ctx: &Value,
    bound: &[(&str, &Value)],
) -> Result<(), ExprError> {
    let resolve = |path: &[String]| cost::resolve_path(ctx, path);
    let cost = cost::estimate(program.expression(), &resolve, true, bound);
    let budget = cost::budget();
    if cost > budget {
        return Err(ExprError::new(
            format!(
                "this condition's estimated cost is {cost}, over the budget of {budget} \
                 (about one unit per element visited or byte copied): it was not run; \
                 iterate over less data (filter first, avoid nested loops over large lists) \
                 or raise {}",
                cost::COST_BUDGET_VAR
            ),
            None,
        ));
    }
    Ok(())
}

/// Nodes plus string bytes, to pick the heaviest item (see [`cost`]).
fn approx_weight(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(approx_weight).sum::<usize>(),
        Value::Object(map) => {
            1 + map
                .iter()
                .map(|(k, v)| k.len() + approx_weight(v))
                .sum::<usize>()
        }
        Value::String(s) => 1 + s.len(),
        _ => 1,
    }
}

fn execution_error(e: &cel::ExecutionError) -> ExprError {
    ExprError::new(
        match e {
            cel::ExecutionError::UndeclaredReference(name) => {
                format!("`{name}` is not defined in this condition's scope")
            }
            cel::ExecutionError::NoSuchKey(key) => {
                format!("no such key: `{key}` (guard optional fields with has())")
            }
            // A quantity or URL (k8s.rs) has no JSON form.
            cel::ExecutionError::UnexpectedType { got, want } if want.contains("representable") => {
                format!(
                    "the condition gave a {got}, which is for comparing inside a condition: convert it (e.g. `.asInteger()`, `.isGreaterThan(...)`, `.getHost()`)"
                )
            }
            other => other.to_string(),
        },
        None,
    )
}

/// Evaluate a boolean condition once per item, the way a kube `where` filters
/// objects: the variables of `ctx` are converted once, and each item is bound to
/// every name in `bind` (e.g. `["object", "pod"]`). Much cheaper than calling
/// [`eval_bool`] per item when the condition also reads a large saved list.
pub fn eval_bool_each(
    expr: &str,
    ctx: &Value,
    bind: &[&str],
    items: &[Value],
) -> Result<Vec<bool>, ExprError> {
    let program = program(expr)?;
    // The cost is estimated once, with the heaviest item bound.
    if let Some(heaviest) = items.iter().max_by_key(|v| approx_weight(v)) {
        let bound: Vec<(&str, &Value)> = bind.iter().map(|b| (*b, heaviest)).collect();
        within_budget(&program, ctx, &bound)?;
    }
    let mut base = ENV.with(|env| Context::with_env(Arc::clone(env)));
    let referenced = program.references();
    let names = referenced.variables();
    // One `now` for every item: the objects were listed at one moment.
    bind_vars(&mut base, &names, ctx, bind);
    let bound: Vec<&str> = bind.iter().copied().filter(|b| names.contains(b)).collect();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let mut scope = base.new_inner_scope();
        for name in &bound {
            scope.add_variable_as_val(*name, to_val(item));
        }
        match program.execute(&scope) {
            Ok(Cel::Bool(b)) => out.push(b),
            Ok(other) => {
                return Err(ExprError::new(
                    format!(
                        "the condition `{expr}` gave {}, not true or false",
                        json_type(&from_cel(&other)?)
                    ),
                    None,
                ));
            }
            Err(e) => return Err(execution_error(&e)),
        }
    }
    Ok(out)
}

/// Evaluate a CEL expression that must yield a boolean.
pub fn eval_bool(expr: &str, ctx: &Value) -> Result<bool, ExprError> {
    match eval(expr, ctx)? {
        Value::Bool(b) => Ok(b),
        other => Err(ExprError::new(
            format!(
                "the condition `{expr}` gave {} `{other}`, not true or false",
                json_type(&other)
            ),
            None,
        )),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// CEL to JSON. Durations become seconds, timestamps RFC 3339 strings, bytes a
/// UTF-8 string (lossy); a non-finite double is an error (JSON has no NaN).
pub(crate) fn from_cel(v: &Cel) -> Result<Value, ExprError> {
    Ok(match v {
        Cel::Null => Value::Null,
        Cel::Bool(b) => Value::Bool(*b),
        Cel::Int(i) => Value::Number((*i).into()),
        Cel::UInt(u) => Value::Number((*u).into()),
        Cel::Float(f) => Value::Number(Number::from_f64(*f).ok_or_else(|| {
            ExprError::new(
                format!("the condition gave {f}, which JSON cannot hold"),
                None,
            )
        })?),
        Cel::String(s) => Value::String(s.as_str().to_owned()),
        Cel::Bytes(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        Cel::List(items) => Value::Array(items.iter().map(from_cel).collect::<Result<_, _>>()?),
        Cel::Map(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m.map.iter() {
                let key = match k {
                    Key::String(s) => s.as_str().to_owned(),
                    Key::Int(i) => i.to_string(),
                    Key::Uint(u) => u.to_string(),
                    Key::Bool(b) => b.to_string(),
                };
                out.insert(key, from_cel(v)?);
            }
            Value::Object(out)
        }
        Cel::Duration(d) => {
            let secs = d.num_milliseconds() as f64 / 1000.0;
            Number::from_f64(secs).map_or(Value::Null, Value::Number)
        }
        Cel::Timestamp(t) => Value::String(t.to_rfc3339()),
        other => {
            return Err(ExprError::new(
                format!(
                    "the condition gave a {} value, which has no JSON form",
                    other.type_of()
                ),
                None,
            ));
        }
    })
}

/// Parse a condition and list the free variables it reads, with the longest dotted
/// path that can be read statically (`params.ns` in `params.ns == 'x'`). Variables
/// bound by macros (`x` in `pods.all(x, x.ready)`) are not listed.
pub fn condition_refs(expr: &str) -> Result<Vec<VarRef>, ExprError> {
    let program = program(expr)?;
    let mut refs = Vec::new();
    let mut bound = Vec::new();
    walk(program.expression(), &program, &mut bound, &mut refs);
    Ok(refs)
}

fn walk(e: &IdedExpr, p: &Program, bound: &mut Vec<String>, refs: &mut Vec<VarRef>) {
    match &e.expr {
        Expr::Ident(_) | Expr::Select(_) => {
            if let Some((root_id, path)) = dotted(e) {
                if !bound.iter().any(|b| b == &path[0]) {
                    let offset = p
                        .source_info()
                        .offset_for(root_id)
                        .map(|(start, _)| char_to_byte(&p.source_info().source, start as usize))
                        .unwrap_or(0);
                    refs.push(VarRef { path, offset });
                }
            } else if let Expr::Select(s) = &e.expr {
                walk(&s.operand, p, bound, refs);
            }
        }
        Expr::Call(_) if dotted(e).is_some() => {
            if let Some((root_id, path)) = dotted(e)
                && !bound.iter().any(|b| b == &path[0])
            {
                let offset = p
                    .source_info()
                    .offset_for(root_id)
                    .map(|(start, _)| char_to_byte(&p.source_info().source, start as usize))
                    .unwrap_or(0);
                refs.push(VarRef { path, offset });
            }
        }
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                walk(t, p, bound, refs);
            }
            for a in &c.args {
                walk(a, p, bound, refs);
            }
        }
        Expr::Comprehension(c) => {
            walk(&c.iter_range, p, bound, refs);
            walk(&c.accu_init, p, bound, refs);
            let before = bound.len();
            bound.push(c.iter_var.clone());
            if let Some(v2) = &c.iter_var2 {
                bound.push(v2.clone());
            }
            bound.push(c.accu_var.clone());
            walk(&c.loop_cond, p, bound, refs);
            walk(&c.loop_step, p, bound, refs);
            walk(&c.result, p, bound, refs);
            bound.truncate(before);
        }
        Expr::List(l) => {
            for x in &l.elements {
                walk(x, p, bound, refs);
            }
        }
        Expr::Map(m) => {
            for entry in &m.entries {
                if let EntryExpr::MapEntry(me) = &entry.expr {
                    walk(&me.key, p, bound, refs);
                    walk(&me.value, p, bound, refs);
                }
            }
        }
        Expr::Struct(s) => {
            for entry in &s.entries {
                match &entry.expr {
                    EntryExpr::MapEntry(me) => {
                        walk(&me.key, p, bound, refs);
                        walk(&me.value, p, bound, refs);
                    }
                    EntryExpr::StructField(f) => walk(&f.value, p, bound, refs),
                }
            }
        }
        Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// The functions a condition calls that CEL (with the extensions this crate adds)
/// does not have, such as `quantity('15k')`: CEL parses any call and fails only when
/// it runs, so lint asks the evaluator itself. Each is (name, byte offset of the call).
pub fn unknown_functions(expr: &str) -> Result<Vec<(String, usize)>, ExprError> {
    let program = program(expr)?;
    let mut calls = Vec::new();
    calls_in(program.expression(), &mut calls);
    let mut unknown: Vec<(String, usize)> = Vec::new();
    for (id, name, target, _) in calls {
        // Operators (`_==_`, `@in`, `!_`) are calls too; they always exist.
        if !name.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
            continue;
        }
        let declared = match &target {
            None => probe(&format!("{name}(null)"), &name),
            // `x.f()` is a method of `x`'s value, or `f` of namespace `x` (`math.greatest`).
            Some(ns) => {
                probe(&format!("null.{name}()"), &name)
                    || ns
                        .as_ref()
                        .is_some_and(|ns| probe(&format!("{ns}.{name}(null)"), &name))
            }
        };
        if !declared && !unknown.iter().any(|(n, _)| n == &name) {
            let offset = program
                .source_info()
                .offset_for(id)
                .map(|(start, _)| char_to_byte(&program.source_info().source, start as usize))
                .unwrap_or(0);
            unknown.push((name, offset));
        }
    }
    Ok(unknown)
}

/// A call with the wrong number of arguments: (function name, byte offset of the
/// call, arguments given, the counts the function takes).
pub type WrongArity = (String, usize, usize, Vec<usize>);

/// Calls with a number of arguments their function does not take, such as
/// `s.findAll()`: CEL parses them and fails only when it runs. Each is (name, byte
/// offset of the call, arguments given, the counts it takes). Namespaced functions
/// (`math.greatest`) and macros (`all`, `map`) are not checked.
pub fn wrong_arity(expr: &str) -> Result<Vec<WrongArity>, ExprError> {
    let program = program(expr)?;
    let mut calls = Vec::new();
    calls_in(program.expression(), &mut calls);
    let mut out = Vec::new();
    for (id, name, target, given) in calls {
        if let Some(Some(ns)) = &target
            && ["math", "strings", "lists", "optional"].contains(&ns.as_str())
        {
            continue;
        }
        let method = target.is_some();
        let takes: Vec<usize> = super::k8s::ARITIES
            .iter()
            .filter(|(n, m, _)| *n == name && *m == method)
            .flat_map(|(_, _, a)| a.iter().copied())
            .collect();
        if takes.is_empty() || takes.contains(&given) {
            continue;
        }
        let offset = program
            .source_info()
            .offset_for(id)
            .map(|(start, _)| char_to_byte(&program.source_info().source, start as usize))
            .unwrap_or(0);
        out.push((name, offset, given, takes));
    }
    Ok(out)
}

/// Whether evaluating `call` (which calls `name` on nothing bound) finds a function
/// called `name`: only a missing one is an undeclared reference to that name.
fn probe(call: &str, name: &str) -> bool {
    let Ok(p) = ENV.with(|env| env.compile(call)) else {
        return true;
    };
    let context = ENV.with(|env| Context::with_env(Arc::clone(env)));
    !matches!(p.execute(&context), Err(cel::ExecutionError::UndeclaredReference(n)) if n.as_str() == name)
}

/// A call: (id, function name, its target: None for a global call, else Some(the
/// target's name when it is a plain identifier), how many arguments it passes).
type Call = (u64, String, Option<Option<String>>, usize);

/// Every call in `e`.
fn calls_in(e: &IdedExpr, out: &mut Vec<Call>) {
    match &e.expr {
        Expr::Call(c) => {
            let target = c.target.as_ref().map(|t| match &t.expr {
                Expr::Ident(n) => Some(n.clone()),
                _ => None,
            });
            out.push((e.id, c.func_name.clone(), target, c.args.len()));
            if let Some(t) = &c.target {
                calls_in(t, out);
            }
            for a in &c.args {
                calls_in(a, out);
            }
        }
        Expr::Select(s) => calls_in(&s.operand, out),
        Expr::Comprehension(c) => {
            for x in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                calls_in(x, out);
            }
        }
        Expr::List(l) => l.elements.iter().for_each(|x| calls_in(x, out)),
        Expr::Map(m) => {
            for entry in &m.entries {
                if let EntryExpr::MapEntry(me) = &entry.expr {
                    calls_in(&me.key, out);
                    calls_in(&me.value, out);
                }
            }
        }
        Expr::Struct(st) => {
            for entry in &st.entries {
                match &entry.expr {
                    EntryExpr::MapEntry(me) => {
                        calls_in(&me.key, out);
                        calls_in(&me.value, out);
                    }
                    EntryExpr::StructField(f) => calls_in(&f.value, out),
                }
            }
        }
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// `a.b.c` as (id of `a`, ["a", "b", "c"]); None unless the chain ends in an ident.
pub(super) fn dotted(e: &IdedExpr) -> Option<(u64, Vec<String>)> {
    match &e.expr {
        Expr::Ident(name) => Some((e.id, vec![name.clone()])),
        Expr::Select(s) => {
            let (id, mut path) = dotted(&s.operand)?;
            path.push(s.field.clone());
            Some((id, path))
        }
        // `steps['free-hub'].status`: a step or rung id with dashes cannot be a field
        // name, so it is written as an index; read statically like `steps.x`.
        Expr::Call(c)
            if c.func_name == cel::common::ast::operators::INDEX
                && c.target.is_none()
                && c.args.len() == 2 =>
        {
            let cel::common::ast::Expr::Literal(cel::common::ast::LiteralValue::String(key)) =
                &c.args[1].expr
            else {
                return None;
            };
            let (id, mut path) = dotted(&c.args[0])?;
            if path != ["steps"] {
                return None;
            }
            path.push(key.inner().to_string());
            Some((id, path))
        }
        _ => None,
    }
}

fn char_to_byte(source: &str, chars: usize) -> usize {
    source
        .char_indices()
        .nth(chars)
        .map(|(b, _)| b)
        .unwrap_or(source.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cel::common::types::{CelList, CelMap, CelMapKey, CelString};
    use serde_json::json;

    #[test]
    fn a_bare_variable_is_its_value_without_cel() {
        let pods = json!([{"n": 1, "f": 1.5, "big": 18446744073709551615u64, "m": {"a": [null, true, "x"]}}]);
        let ctx = json!({"pods": pods, "now": "not the clock", "if": 1});
        let m = ctx.as_object().unwrap();
        assert_eq!(bare_variable(" pods ", m), Some(&pods));
        // The same value CEL gives for the same data.
        assert_eq!(eval("pods", &ctx).unwrap(), pods);
        assert_eq!(eval("pods.filter(p, true)", &ctx).unwrap(), pods);
        for not_bare in [
            "now",
            "true",
            "if",
            "pods[0]",
            "pods.size()",
            "1",
            "",
            "missing",
        ] {
            assert_eq!(bare_variable(not_bare, m), None, "{not_bare}");
        }
        // A missing variable still gets CEL's error.
        assert!(eval("missing", &ctx).is_err());
    }

    #[test]
    fn evaluates_over_json_variables() {
        let ctx = json!({"lost_pods": [{"n": 1}, {"n": 2}], "params": {"ns": "prod"}});
        assert!(eval_bool("size(lost_pods) > 0", &ctx).unwrap());
        assert!(eval_bool("params.ns == 'prod'", &ctx).unwrap());
        assert_eq!(eval("lost_pods.map(p, p.n)", &ctx).unwrap(), json!([1, 2]));
    }

    #[test]
    fn integers_stay_integers_both_ways() {
        let ctx = json!({"x": 3, "big": u64::MAX});
        assert_eq!(eval("x + 1", &ctx).unwrap(), json!(4));
        assert_eq!(eval("x == 3", &ctx).unwrap(), json!(true));
        assert_eq!(eval("big", &ctx).unwrap(), json!(u64::MAX));
        assert_eq!(eval("1.5", &ctx).unwrap(), json!(1.5));
    }

    #[test]
    fn maps_lists_and_null_convert_back() {
        let ctx = json!({"o": {"a": null, "b": [true, "s"]}});
        assert_eq!(
            eval("o", &ctx).unwrap(),
            json!({"a": null, "b": [true, "s"]})
        );
        assert_eq!(
            eval("{'k': [1, 'two']}", &ctx).unwrap(),
            json!({"k": [1, "two"]})
        );
    }

    #[test]
    fn kubernetes_style_object_filters() {
        let pod = json!({"pod": {"status": {"phase": "Unknown", "reason": "NodeLost"}}});
        assert!(
            eval_bool(
                "pod.status.phase == 'Unknown' || pod.status.reason == 'NodeLost'",
                &pod
            )
            .unwrap()
        );
        assert!(eval_bool("has(pod.status.reason)", &pod).unwrap());
        assert!(!eval_bool("has(pod.spec)", &json!({"pod": {}})).unwrap());
    }

    #[test]
    fn eval_bool_each_binds_every_item_and_reads_the_context_once() {
        let ctx = json!({"lost": [{"name": "n1"}], "params": {"phase": "Unknown"}});
        let pods = vec![
            json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Unknown"}}),
            json!({"spec": {"nodeName": "n2"}, "status": {"phase": "Unknown"}}),
            json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}),
        ];
        let kept = eval_bool_each(
            "lost.exists(n, n.name == pod.spec.nodeName) && object.status.phase == params.phase",
            &ctx,
            &["object", "pod"],
            &pods,
        )
        .unwrap();
        assert_eq!(kept, vec![true, false, false]);
        assert!(eval_bool_each("pod.x", &ctx, &["pod"], &pods).is_err());
        assert!(eval_bool_each("1", &ctx, &["pod"], &pods).is_err());
    }

    #[test]
    fn non_boolean_result_is_an_error_for_eval_bool() {
        let e = eval_bool("1 + 1", &json!({})).unwrap_err();
        assert!(e.message.contains("not true or false"), "{}", e.message);
    }

    #[test]
    fn undefined_variable_is_an_error() {
        let e = eval("nope > 1", &json!({})).unwrap_err();
        assert!(e.message.contains("`nope`"), "{}", e.message);
    }

    #[test]
    fn syntax_error_points_at_the_offending_character() {
        let e = condition_refs("size(x) >").unwrap_err();
        assert!(e.message.starts_with("invalid condition"), "{}", e.message);
        assert!(e.offset.is_some());
        let e = condition_refs("a == = b").unwrap_err();
        assert_eq!(e.offset, Some(5), "{e:?}");
    }

    #[test]
    fn unknown_functions_are_found_and_known_ones_are_not() {
        let known = "size(pods) > 0 && 'a,b'.split(',').size() == 2 && math.greatest(1, 2) == 2 \
                     && pods.all(p, p.name.startsWith('x')) && int('1') == 1 && duration('1s') > duration('0s')";
        assert_eq!(unknown_functions(known).unwrap(), vec![]);
        let bad = "qty('15k') > 0 && pods.exists(p, p.name.frobnicate())";
        let names: Vec<String> = unknown_functions(bad)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, vec!["qty", "frobnicate"]);
    }

    #[test]
    fn refs_give_dotted_paths_and_skip_macro_variables() {
        let refs = condition_refs("params.ns == 'x' && lost.all(p, p.ready) && y[0].z").unwrap();
        let paths: Vec<String> = refs.iter().map(|r| r.path.join(".")).collect();
        assert_eq!(paths, vec!["params.ns", "lost", "y"]);
        assert_eq!(refs[1].offset, 20);
    }

    /// A clock stopped at one instant.
    struct At(chrono::DateTime<chrono::Utc>);

    impl Clock for At {
        fn now(&self) -> chrono::DateTime<chrono::Utc> {
            self.0
        }
        fn sleep(&self, _: std::time::Duration) -> futures::future::BoxFuture<'_, ()> {
            Box::pin(async {})
        }
    }

    fn at(t: &str) -> Arc<dyn Clock> {
        Arc::new(At(t.parse().expect("test timestamp")))
    }

    /// A pod whose graceful deletion (30 s) was asked at 14:00:00: the API server
    /// sets deletionTimestamp to the end of the grace period.
    fn terminating() -> Value {
        json!({"pod": {"metadata": {
            "deletionTimestamp": "2026-03-13T14:00:30Z",
            "deletionGracePeriodSeconds": 30
        }}})
    }

    #[test]
    fn now_is_the_clocks_time_as_a_cel_timestamp() {
        let clock = at("2026-03-13T14:05:00Z");
        with_clock_sync(clock, || {
            assert_eq!(
                eval("now", &json!({})).unwrap(),
                json!("2026-03-13T14:05:00+00:00")
            );
            assert!(eval_bool("type(now) == google.protobuf.Timestamp", &json!({})).unwrap());
            assert!(
                eval_bool("now.getHours() == 14 && now.getMinutes() == 5", &json!({})).unwrap()
            );
        });
    }

    #[test]
    fn now_compares_and_subtracts_with_timestamps_and_durations() {
        let pod = terminating();
        let past_grace = "timestamp(pod.metadata.deletionTimestamp) < now";
        let long_past = "now - timestamp(pod.metadata.deletionTimestamp) > duration('300s')";
        let asked = "timestamp(pod.metadata.deletionTimestamp) - duration(string(pod.metadata.deletionGracePeriodSeconds) + 's') + duration('5m') < now";
        // Within its grace period: none holds.
        with_clock_sync(at("2026-03-13T14:00:29Z"), || {
            assert!(!eval_bool(past_grace, &pod).unwrap());
            assert!(!eval_bool(long_past, &pod).unwrap());
            assert!(!eval_bool(asked, &pod).unwrap());
        });
        // One second after its grace period.
        with_clock_sync(at("2026-03-13T14:00:31Z"), || {
            assert!(eval_bool(past_grace, &pod).unwrap());
            assert!(!eval_bool(long_past, &pod).unwrap());
            assert!(!eval_bool(asked, &pod).unwrap());
        });
        // Five minutes and a second after it was asked / its grace ended.
        with_clock_sync(at("2026-03-13T14:05:01Z"), || {
            assert!(!eval_bool(long_past, &pod).unwrap());
            assert!(eval_bool(asked, &pod).unwrap());
        });
        with_clock_sync(at("2026-03-13T14:05:31Z"), || {
            assert!(eval_bool(long_past, &pod).unwrap());
        });
    }

    #[test]
    fn durations_and_differences_convert_to_seconds() {
        with_clock_sync(at("2026-03-13T14:00:00Z"), || {
            assert_eq!(
                eval("now - timestamp('2026-03-13T13:58:30Z')", &json!({})).unwrap(),
                json!(90.0)
            );
            assert_eq!(
                eval("duration('1h30m') + duration('1.5s')", &json!({})).unwrap(),
                json!(5401.5)
            );
            assert!(
                eval_bool(
                    "now + duration('-2m') == timestamp('2026-03-13T13:58:00Z')",
                    &json!({})
                )
                .unwrap()
            );
            assert!(
                eval_bool(
                    "now.getDayOfWeek() == 5 && now.getHours('Europe/Zurich') == 15",
                    &json!({})
                )
                .unwrap()
            );
            assert!(eval_bool("timestamp(int(now)) == now", &json!({})).unwrap());
            assert_eq!(
                eval("now - duration('1h') + duration('30s')", &json!({})).unwrap(),
                json!("2026-03-13T13:00:30+00:00")
            );
            assert!(
                eval_bool(
                    "int(now) - int(timestamp('2026-03-13T13:59:00+00:00')) == 60",
                    &json!({})
                )
                .unwrap()
            );
        });
    }

    #[test]
    fn a_bad_timestamp_or_duration_is_an_error_not_a_panic() {
        with_clock_sync(at("2026-03-13T14:00:00Z"), || {
            assert!(eval_bool("timestamp('yesterday') < now", &json!({})).is_err());
            assert!(eval_bool("now - duration('5 minutes') < now", &json!({})).is_err());
            assert!(eval_bool("now < '2026-03-13'", &json!({})).is_err());
            // CEL durations have no day unit, unlike the runbook's `within`.
            assert!(eval_bool("now - duration('2d') < now", &json!({})).is_err());
        });
    }

    #[test]
    fn every_item_of_a_where_sees_now() {
        let items = vec![
            json!({"metadata": {"deletionTimestamp": "2026-03-13T13:59:00Z"}}),
            json!({"metadata": {"deletionTimestamp": "2026-03-13T14:01:00Z"}}),
            json!({"metadata": {}}),
        ];
        let cond = "has(pod.metadata.deletionTimestamp) && timestamp(pod.metadata.deletionTimestamp) < now";
        let kept = with_clock_sync(at("2026-03-13T14:00:00Z"), || {
            eval_bool_each(cond, &json!({}), &["object", "pod"], &items)
        })
        .unwrap();
        assert_eq!(kept, vec![true, false, false]);
        let kept = with_clock_sync(at("2026-03-13T14:02:00Z"), || {
            eval_bool_each(cond, &json!({}), &["object", "pod"], &items)
        })
        .unwrap();
        assert_eq!(kept, vec![true, true, false]);
    }

    #[tokio::test]
    async fn now_follows_the_clock_in_scope_across_awaits() {
        let clock = Arc::new(std::sync::Mutex::new(
            "2026-03-13T14:00:00Z".parse().unwrap(),
        ));
        struct Shared(Arc<std::sync::Mutex<chrono::DateTime<chrono::Utc>>>);
        impl Clock for Shared {
            fn now(&self) -> chrono::DateTime<chrono::Utc> {
                *self.0.lock().unwrap()
            }
            fn sleep(&self, d: std::time::Duration) -> futures::future::BoxFuture<'_, ()> {
                *self.0.lock().unwrap() += chrono::Duration::from_std(d).unwrap();
                Box::pin(tokio::task::yield_now())
            }
        }
        let shared: Arc<dyn Clock> = Arc::new(Shared(Arc::clone(&clock)));
        let seen = with_clock(Arc::clone(&shared), async {
            let first = eval("now", &json!({})).unwrap();
            shared.sleep(std::time::Duration::from_secs(90)).await;
            let second = eval("now", &json!({})).unwrap();
            (first, second)
        })
        .await;
        assert_eq!(seen.0, json!("2026-03-13T14:00:00+00:00"));
        assert_eq!(seen.1, json!("2026-03-13T14:01:30+00:00"));
    }

    #[test]
    fn without_a_clock_now_is_undefined_rather_than_the_wall_clock() {
        let e = eval("now", &json!({})).unwrap_err();
        assert!(e.message.contains("`now` is not defined"), "{}", e.message);
    }

    #[test]
    fn a_quantity_as_the_result_says_how_to_convert_it() {
        let e = eval("quantity('1k')", &json!({})).unwrap_err();
        assert!(
            e.message.contains("kubernetes.Quantity") && e.message.contains("asInteger"),
            "{}",
            e.message
        );
    }

    #[test]
    fn string_extension_is_available() {
        assert_eq!(
            eval("'A,B'.lowerAscii().split(',')", &json!({})).unwrap(),
            json!(["a", "b"])
        );
    }

    /// The deep conversion conditions used before the lazy one (issue 18): every
    /// array and object converted into the cel crate's own list and map up front.
    fn deep_val(v: &Value) -> Box<dyn Val + '_> {
        match v {
            Value::Array(items) => Box::new(CelList::from(
                items.iter().map(deep_val).collect::<Vec<_>>(),
            )),
            Value::Object(map) => Box::new(CelMap::from(
                map.iter()
                    .map(|(k, v)| (CelMapKey::String(CelString::from(k.as_str())), deep_val(v)))
                    .collect::<HashMap<_, _>>(),
            )),
            scalar => to_val(scalar),
        }
    }

    /// `expr` run with the variables of `ctx` bound by `convert`: the value, or the
    /// error as a user reads it.
    fn run_with(
        expr: &str,
        ctx: &Value,
        convert: for<'a> fn(&'a Value) -> Box<dyn Val + 'a>,
    ) -> Result<Value, String> {
        let program = program(expr).map_err(|e| e.message)?;
        let mut context = ENV.with(|env| Context::with_env(Arc::clone(env)));
        for (name, v) in ctx.as_object().expect("an object of variables") {
            context.add_variable_as_val(name, convert(v));
        }
        let value = program
            .execute(&context)
            .map_err(|e| execution_error(&e).message)?;
        from_cel(&value).map_err(|e| e.message)
    }

    /// Data with every JSON shape: nested objects and lists, a list of mixed types,
    /// an int, a uint above i64, a double, null, an empty list and object.
    fn mixed() -> Value {
        json!({
            "pods": [
                {"metadata": {"name": "a", "labels": {"app": "web"}}, "status": {"phase": "Running", "restarts": 0}},
                {"metadata": {"name": "b"}, "status": {"phase": "Unknown", "reason": "NodeLost", "restarts": 3}},
                {"metadata": {"name": "c", "labels": {}}, "status": {"phase": "Running", "restarts": 1}}
            ],
            "mixed": [1, "two", 3.5, null, true, [1, 2], {"k": "v"}, 18446744073709551615u64, -4],
            "nums": {"i": 3, "u": 18446744073709551615u64, "d": 2.5, "whole": 2.0},
            "empty": [],
            "none": {},
            "names": ["a", "b", "c"]
        })
    }

    /// Every expression gives the same value, or the same error, with the lazy
    /// conversion as with the deep one.
    #[test]
    fn lazy_values_behave_exactly_like_converted_ones() {
        let ctx = mixed();
        let exprs = [
            // sizes
            "size(pods)",
            "pods.size() == 3",
            "size(none) == 0 && size(empty) == 0",
            "size(pods[0])",
            "size(mixed[5])",
            // equality with literals, both ways, and between variables
            "names == ['a', 'b', 'c']",
            "['a', 'b', 'c'] == names",
            "names == ['a', 'b']",
            "pods[0].metadata.labels == {'app': 'web'}",
            "{'app': 'web'} == pods[0].metadata.labels",
            "pods[1].metadata == {'name': 'b'}",
            "pods == pods",
            "pods[0] == pods[2]",
            "mixed[5] == [1, 2] && [1, 2] == mixed[5]",
            "mixed[5] == [1.0, 2u]",
            "none == {} && empty == []",
            "names != ['x']",
            // `in`
            "'b' in names",
            "'z' in names",
            "'app' in pods[0].metadata.labels",
            "'name' in none",
            "[1, 2] in mixed",
            "{'k': 'v'} in mixed",
            "3.5 in mixed && null in mixed",
            "1 in pods[0].metadata",
            "'a' in pods.map(p, p.metadata.name)",
            // has() and missing fields
            "has(pods[1].status.reason)",
            "has(pods[0].status.reason)",
            "pods.filter(p, has(p.metadata.labels)).size()",
            "pods[0].status.reason",
            "pods[0].nope.deeper",
            "none.x",
            "pods[3]",
            "pods[-1]",
            "pods['x']",
            "pods[1u].metadata.name",
            "pods[2.0].metadata.name",
            "names[0.5]",
            "pods[0.5]",
            "pods[0][1]",
            "pods[0].metadata[0]",
            "mixed[6].k",
            "mixed[0].k",
            "names.x",
            // macros, nested
            "pods.all(p, p.status.phase == 'Running')",
            "pods.exists(p, p.status.phase == 'Unknown' && p.status.reason == 'NodeLost')",
            "pods.exists_one(p, p.status.restarts > 2)",
            "pods.map(p, p.metadata.name)",
            "pods.filter(p, p.status.restarts > 0).map(p, p.metadata.name)",
            "pods.map(p, p.status)",
            "pods.all(a, pods.exists(b, a.metadata.name == b.metadata.name))",
            "pods.map(a, pods.filter(b, b.status.restarts < a.status.restarts).size())",
            "pods.all(p, p.metadata.labels.app == 'web')",
            "pods.exists(p, has(p.metadata.labels) && p.metadata.labels.all(k, k == 'app'))",
            "nums.all(k, k in ['i', 'u', 'd', 'whole'])",
            "mixed.map(x, type(x))",
            "mixed.filter(x, type(x) == int)",
            "mixed.exists(x, x == 'two')",
            "mixed.all(x, x != 7)",
            // numbers
            "nums.i == 3 && nums.i == 3u && nums.i == 3.0",
            "nums.u == 18446744073709551615u && type(nums.u) == uint",
            "nums.d * 2.0 == 5.0 && type(nums.d) == double",
            "nums.whole == 2 && type(nums.whole) == double",
            "nums.u + 1u",
            "nums.i + nums.d",
            "mixed[8] < 0 && mixed[0] + mixed[8] == -3",
            // concatenation, conversion, functions over lists
            "names + ['d']",
            "['z'] + names",
            "empty + names",
            "names.join(',')",
            "pods.map(p, p.metadata.name).join('-')",
            "names.sort()",
            "lists.range(3).map(i, pods[i].metadata.name)",
            "math.greatest(pods.map(p, p.status.restarts))",
            "names.flatten()",
            "mixed[5].sum()",
            "dyn(pods)[0].metadata.name",
            "type(pods) == list && type(pods[0]) == map",
            "pods[0]",
            "mixed",
            "nums",
            "pods.filter(p, p.status.phase == 'Running')[1].metadata.name",
            "pods.map(p, p.metadata)[0].labels.app",
            "pods.map(p, p.metadata)[1].labels",
            "pods.map(p, p.metadata)[0][1]",
            "optional.of(pods[0]).value().metadata.name",
            "pods[0].?metadata.?labels.?app.orValue('none')",
            "pods[1].?metadata.?labels.?app.orValue('none')",
            "pods[?5].hasValue()",
            "optional.ofNonZeroValue(empty).hasValue() || optional.ofNonZeroValue(names).hasValue()",
            "pods[0].metadata.name.startsWith('a') && names[1].upperAscii() == 'B'",
            "pods + 1",
            "1 + pods",
            "pods < names",
            "-names",
            "!pods",
            "pods ? 1 : 2",
            "size(pods[0].metadata.name)",
        ];
        // An error that prints a map prints its entries in no fixed order (a
        // HashMap's): errors are compared as the characters they contain.
        let chars = |r: Result<Value, String>| {
            r.map_err(|e| {
                let mut c: Vec<char> = e.chars().collect();
                c.sort_unstable();
                c
            })
        };
        let mut failed = 0;
        for expr in exprs {
            let lazy = chars(run_with(expr, &ctx, to_val));
            let deep = chars(run_with(expr, &ctx, deep_val));
            assert_eq!(lazy, deep, "{expr}");
            failed += usize::from(lazy.is_err());
        }
        // The battery covers both outcomes.
        assert!(
            (15..45).contains(&failed),
            "{failed} of {} failed",
            exprs.len()
        );
        assert!(run_with("pods[0].nope.deeper", &ctx, to_val).is_err());
        assert_eq!(
            run_with("['a', 'b', 'c'] == names", &ctx, to_val),
            Ok(json!(true))
        );
    }

    #[test]
    fn a_lazy_value_prints_as_the_converted_one() {
        // (one key per map: a map prints its entries in no fixed order)
        let v = json!([1, "a", 2.5, null, {"k": [true, {"x": 18446744073709551615u64}]}, []]);
        assert_eq!(format!("{:?}", to_val(&v)), format!("{:?}", deep_val(&v)));
    }

    #[test]
    fn lazy_lists_compare_with_literal_lists_both_ways() {
        let ctx = mixed();
        for (expr, want) in [
            ("names == ['a', 'b', 'c']", true),
            ("['a', 'b', 'c'] == names", true),
            ("['a', 'b'] == names", false),
            ("mixed[5] == [1.0, 2u]", true),
            (
                "[{'app': 'web'}] == pods.filter(p, has(p.metadata.labels)).map(p, p.metadata.labels).filter(l, size(l) > 0)",
                true,
            ),
            ("'c' in names && !('d' in names)", true),
            (
                "has(pods[0].metadata.labels.app) && !has(pods[1].metadata.labels)",
                true,
            ),
        ] {
            assert_eq!(eval_bool(expr, &ctx).unwrap(), want, "{expr}");
        }
    }

    #[test]
    fn a_missing_field_of_a_lazy_map_names_the_field() {
        let e = eval_bool("pods[1].metadata.labels.app == 'web'", &mixed()).unwrap_err();
        assert_eq!(
            e.message,
            "no such key: `labels` (guard optional fields with has())"
        );
    }

    #[test]
    fn a_thousand_pods_are_read_lazily_with_the_same_results() {
        let pods: Vec<Value> = (0..1000)
            .map(|i| {
                json!({"metadata": {"name": format!("user-{i:05}"), "labels": {"shard": i % 7}},
                       "spec": {"nodeName": "node-0000", "containers": [{"name": "nb", "image": "x"}]},
                       "status": {"phase": if i == 500 { "Unknown" } else { "Running" }}})
            })
            .collect();
        let ctx = json!({ "stuck": pods });
        for (expr, want) in [
            ("size(stuck) == 1000", json!(true)),
            ("stuck.all(p, p.status.phase == 'Running')", json!(false)),
            (
                "stuck.exists_one(p, p.status.phase == 'Unknown')",
                json!(true),
            ),
            ("stuck[3].metadata.name", json!("user-00003")),
            ("stuck[999].metadata.labels.shard", json!(5)),
            (
                "stuck.filter(p, p.status.phase != 'Running').map(p, p.metadata.name)",
                json!(["user-00500"]),
            ),
            ("'user-00999' in stuck.map(p, p.metadata.name)", json!(true)),
        ] {
            assert_eq!(eval(expr, &ctx).unwrap(), want, "{expr}");
            assert_eq!(run_with(expr, &ctx, deep_val), Ok(want), "{expr}");
        }
        assert_eq!(eval("stuck", &ctx).unwrap(), ctx["stuck"]);
        assert_eq!(eval("stuck.filter(p, true)", &ctx).unwrap(), ctx["stuck"]);
        let kept = eval_bool_each(
            "object.status.phase == 'Running' && stuck[object.metadata.labels.shard].spec.nodeName == 'node-0000'",
            &ctx,
            &["object"],
            ctx["stuck"].as_array().unwrap(),
        )
        .unwrap();
        assert_eq!(kept.iter().filter(|k| !**k).count(), 1);
        assert!(!kept[500]);
    }
}
