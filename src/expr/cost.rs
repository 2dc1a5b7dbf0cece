//! The cost of a CEL condition, estimated before it runs (issue 13): Kubernetes
//! refuses a validation rule whose estimated cost exceeds a budget rather than let
//! it run for minutes; conditions here get the same treatment.
//!
//! The estimate walks the compiled program once. Every value is described by an
//! upper bound: how many elements it has (`n`; 1 for a scalar) and how heavy one
//! element is (`w`: nodes plus string bytes). A comprehension (`all`, `exists`,
//! `map`, `filter`, …) costs its range's `n` times its body, so nesting multiplies;
//! a concatenation or string function costs the size of what it copies.
//!
//! Lint estimates with the runbook alone: a variable's size is unknown there and
//! counted as 1, so only sizes written in the expression (`lists.range(100000000)`,
//! nested ranges, literal lists) are refused. At run time the real values are bound,
//! so `pods.all(a, pods.all(b, pods.all(c, …)))` over 1000 pods is refused before it
//! runs instead of spinning for minutes.

use std::cell::Cell;
use std::sync::OnceLock;

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use serde_json::Value;

/// The default budget: Kubernetes' per-expression limit (`PerCallLimit`) for
/// validation rules. One unit is about one step of the evaluator (a comparison, a
/// field read, a byte copied).
pub const DEFAULT_COST_BUDGET: u64 = 1_000_000;

/// The variable that raises (or lowers) the budget.
pub const COST_BUDGET_VAR: &str = "RUNBOOK_CEL_COST_BUDGET";

/// `lists.range` refuses more than this many elements (the cel crate's own limit),
/// so a range of unknown size is at most this large at run time.
const MAX_RANGE: f64 = 1_000_000.0;

/// The budget in force: `RUNBOOK_CEL_COST_BUDGET` when it is a positive integer,
/// else [`DEFAULT_COST_BUDGET`] (read once per process).
pub fn budget() -> u64 {
    static BUDGET: OnceLock<u64> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        std::env::var(COST_BUDGET_VAR)
            .ok()
            .and_then(|v| v.trim().replace('_', "").parse::<u64>().ok())
            .filter(|&b| b > 0)
            .unwrap_or(DEFAULT_COST_BUDGET)
    })
}

/// An upper bound on a value's shape.
#[derive(Clone, Copy, Debug)]
struct Est {
    /// Elements (list or map entries); 1 for a scalar.
    n: f64,
    /// Weight of one element (of the value itself for a scalar).
    w: f64,
    list: bool,
}

impl Est {
    const ONE: Est = Est {
        n: 1.0,
        w: 1.0,
        list: false,
    };

    fn scalar(w: f64) -> Est {
        Est {
            n: 1.0,
            w: w.max(1.0),
            list: false,
        }
    }

    fn total(self) -> f64 {
        self.n.max(1.0) * self.w.max(1.0)
    }

    /// One element of this value (or a field of it): never heavier than the whole.
    fn element(self) -> Est {
        Est {
            n: self.w,
            w: self.w,
            list: false,
        }
    }
}

/// `v.a.b…`, stopping at the last field the data has (a missing field is no
/// larger than what would hold it).
fn follow<'v>(mut v: &'v Value, fields: &[String]) -> &'v Value {
    for f in fields {
        match v.get(f) {
            Some(inner) => v = inner,
            None => break,
        }
    }
    v
}

/// The shape of a JSON value: its element count and its heaviest element.
fn shape(v: &Value) -> Est {
    match v {
        Value::Array(items) => list_shape(items, heaviest(items)),
        Value::Object(map) => Est {
            n: map.len() as f64,
            w: map
                .iter()
                .map(|(k, v)| k.len() as f64 + weight(v))
                .fold(1.0, f64::max),
            list: false,
        },
        Value::String(s) => Est::scalar(s.len() as f64),
        _ => Est::ONE,
    }
}

fn list_shape(items: &[Value], heaviest: Option<(&Value, f64)>) -> Est {
    Est {
        n: items.len() as f64,
        w: heaviest.map_or(1.0, |(_, w)| w.max(1.0)),
        list: true,
    }
}

/// The heaviest element of a list with its weight: the last of the heaviest, as
/// `Iterator::max_by` picks it. Each element is weighed once.
fn heaviest(items: &[Value]) -> Option<(&Value, f64)> {
    let mut best: Option<(&Value, f64)> = None;
    for item in items {
        let w = weight(item);
        if best.is_none_or(|(_, b)| w >= b) {
            best = Some((item, w));
        }
    }
    best
}

fn weight(v: &Value) -> f64 {
    match v {
        Value::Array(items) => 1.0 + items.iter().map(weight).sum::<f64>(),
        Value::Object(map) => {
            1.0 + map
                .iter()
                .map(|(k, v)| k.len() as f64 + weight(v))
                .sum::<f64>()
        }
        Value::String(s) => 1.0 + s.len() as f64,
        _ => 1.0,
    }
}

/// The value a dotted path names in `ctx`, for the estimate: a field the data does not
/// have is no larger than what holds it, so the deepest value found stands for it.
pub(crate) fn resolve_path<'v>(ctx: &'v Value, path: &[String]) -> Option<&'v Value> {
    let mut v = ctx.get(path.first()?)?;
    for field in &path[1..] {
        match v.get(field) {
            Some(inner) => v = inner,
            None => break,
        }
    }
    Some(v)
}

#[cfg(test)]
thread_local! {
    /// Tests turn the shortcuts off ([`Walk::size_of`], the remembered heaviest
    /// element) to check that they change no estimate.
    static SHORTCUT_OFF: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn shortcut_off() -> bool {
    #[cfg(test)]
    return SHORTCUT_OFF.with(std::cell::Cell::get);
    #[cfg(not(test))]
    false
}

/// What a free variable (a dotted path) is at this point: its shape and, for a
/// number, its value. `None`: unknown (lint).
pub(super) type Resolve<'a> = dyn Fn(&[String]) -> Option<&'a Value> + 'a;

struct Walk<'a, 'r> {
    resolve: &'r Resolve<'a>,
    /// Variables bound by comprehensions, innermost last.
    /// With, when the range was data, its heaviest element: fields of the variable
    /// are then read from it instead of bounded by the element's whole weight.
    scope: Vec<(String, Est, Option<&'a Value>)>,
    /// A size the walk cannot bound (a `lists.range` of a computed length) is taken
    /// as 1 at lint (no false alarms) and as the largest possible at run time.
    runtime: bool,
    /// The last list of data weighed, with its heaviest element: a comprehension
    /// over a variable binds that element, and weighing a 1 000-pod list once
    /// instead of three times is most of the estimate's time.
    weighed: Cell<Option<(&'a Value, Option<&'a Value>)>>,
}

struct Node {
    cost: f64,
    est: Est,
    number: Option<f64>,
}

impl Node {
    fn of(cost: f64, est: Est) -> Node {
        Node {
            cost,
            est,
            number: None,
        }
    }
}

impl<'a> Walk<'a, '_> {
    fn bound(&self, name: &str) -> Option<(Est, Option<&'a Value>)> {
        self.scope
            .iter()
            .rev()
            .find(|(n, _, _)| n == name)
            .map(|(_, e, v)| (*e, *v))
    }

    /// The data a range expression iterates over, when it is data: a variable's
    /// path, or a `filter` of one (its elements are the range's).
    fn value_of(&self, e: &IdedExpr) -> Option<&'a Value> {
        if let Expr::Comprehension(c) = &e.expr {
            let filters =
                matches!(&c.loop_step.expr, Expr::Call(call) if call.func_name == "_?_:_");
            return if filters {
                self.value_of(&c.iter_range)
            } else {
                None
            };
        }
        let (_, path) = super::condition::dotted(e)?;
        let root = match self.bound(&path[0]) {
            Some((_, v)) => v?,
            None => (self.resolve)(&path[..1])?,
        };
        Some(follow(root, &path[1..]))
    }

    fn path(&self, e: &IdedExpr) -> Option<Node> {
        let path = super::condition::dotted(e)?;
        let path = path.1;
        if let Some((root, value)) = self.bound(&path[0]) {
            if let Some(v) = value {
                let v = follow(v, &path[1..]);
                return Some(Node {
                    cost: path.len() as f64,
                    est: self.shape(v),
                    number: v.as_f64(),
                });
            }
            let est = path.iter().skip(1).fold(root, |e, _| e.element());
            return Some(Node::of(path.len() as f64, est));
        }
        let value = (self.resolve)(&path);
        let number = value.and_then(Value::as_f64);
        Some(Node {
            cost: path.len() as f64,
            est: value.map_or(Est::ONE, |v| self.shape(v)),
            number,
        })
    }

    /// [`shape`], remembering a list's heaviest element for [`Walk::walk`].
    fn shape(&self, v: &'a Value) -> Est {
        let Value::Array(items) = v else {
            return shape(v);
        };
        let heavy = heaviest(items);
        self.weighed.set(Some((v, heavy.map(|(x, _)| x))));
        list_shape(items, heavy)
    }

    /// `size(e)` when `e` is a variable's path with data (as [`Walk::path`] reads
    /// it): (its size as the `size` rule below computes it from the shape, the
    /// path's cost). A list's size is its length: its elements are not weighed,
    /// which for a saved list of 1 000 pods was a walk of every field of every pod.
    fn size_of(&self, e: &IdedExpr) -> Option<(f64, f64)> {
        if !matches!(e.expr, Expr::Ident(_) | Expr::Select(_)) {
            return None;
        }
        let (_, path) = super::condition::dotted(e)?;
        let value = match self.bound(&path[0]) {
            Some((_, Some(v))) => Some(follow(v, &path[1..])),
            // A comprehension variable over computed data: its shape is an estimate.
            Some((_, None)) => return None,
            None => (self.resolve)(&path),
        };
        let size = match value {
            Some(Value::Array(items)) => items.len() as f64,
            Some(Value::Object(map)) if map.len() > 1 => map.len() as f64,
            Some(v) => {
                let x = shape(v);
                if x.list || x.n > 1.0 { x.n } else { x.w }
            }
            None => Est::ONE.w,
        };
        Some((size, path.len() as f64))
    }

    fn walk(&mut self, e: &IdedExpr) -> Node {
        match &e.expr {
            Expr::Literal(lit) => match lit {
                LiteralValue::Int(i) => Node {
                    cost: 1.0,
                    est: Est::ONE,
                    number: Some(*i.inner() as f64),
                },
                LiteralValue::UInt(u) => Node {
                    cost: 1.0,
                    est: Est::ONE,
                    number: Some(*u.inner() as f64),
                },
                LiteralValue::Double(d) => Node {
                    cost: 1.0,
                    est: Est::ONE,
                    number: Some(*d.inner()),
                },
                LiteralValue::String(s) => Node::of(1.0, Est::scalar(s.inner().len() as f64)),
                LiteralValue::Bytes(b) => Node::of(1.0, Est::scalar(b.inner().len() as f64)),
                _ => Node::of(1.0, Est::ONE),
            },
            Expr::Ident(_) => self.path(e).unwrap_or(Node::of(1.0, Est::ONE)),
            Expr::Select(s) => {
                if let Some(node) = self.path(e) {
                    return node;
                }
                let op = self.walk(&s.operand);
                Node::of(op.cost + 1.0, op.est.element())
            }
            Expr::List(l) => {
                let items: Vec<Node> = l.elements.iter().map(|x| self.walk(x)).collect();
                let n = items.len() as f64;
                Node::of(
                    items.iter().map(|x| x.cost).sum::<f64>() + n + 1.0,
                    Est {
                        n,
                        w: items.iter().map(|x| x.est.total()).fold(1.0, f64::max),
                        list: true,
                    },
                )
            }
            Expr::Map(m) => {
                let mut cost = 1.0;
                let mut w: f64 = 1.0;
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        let (k, v) = (self.walk(&me.key), self.walk(&me.value));
                        cost += k.cost + v.cost + 1.0;
                        w = w.max(k.est.total() + v.est.total());
                    }
                }
                Node::of(
                    cost,
                    Est {
                        n: m.entries.len() as f64,
                        w,
                        list: false,
                    },
                )
            }
            Expr::Struct(s) => {
                let mut cost = 1.0;
                let mut w: f64 = 1.0;
                for entry in &s.entries {
                    let v = match &entry.expr {
                        EntryExpr::MapEntry(me) => self.walk(&me.value),
                        EntryExpr::StructField(f) => self.walk(&f.value),
                    };
                    cost += v.cost + 1.0;
                    w = w.max(v.est.total());
                }
                Node::of(
                    cost,
                    Est {
                        n: s.entries.len() as f64,
                        w,
                        list: false,
                    },
                )
            }
            Expr::Call(c) => {
                // `size(stuck)`: the length of the data, without weighing it.
                if c.func_name == "size"
                    && !shortcut_off()
                    && let [only] = c
                        .target
                        .iter()
                        .map(|t| &**t)
                        .chain(&c.args)
                        .collect::<Vec<_>>()[..]
                    && let Some((size, cost)) = self.size_of(only)
                {
                    return Node {
                        cost: 1.0 + cost,
                        est: Est::ONE,
                        number: Some(size),
                    };
                }
                let target = c.target.as_ref().map(|t| self.walk(t));
                let args: Vec<Node> = c.args.iter().map(|a| self.walk(a)).collect();
                let operands: Vec<&Node> = target.iter().chain(args.iter()).collect();
                let base = 1.0 + operands.iter().map(|x| x.cost).sum::<f64>();
                let scan: f64 = operands.iter().map(|x| x.est.total()).sum();
                let num = |i: usize| operands.get(i).and_then(|x| x.number);
                let est = |i: usize| operands.get(i).map_or(Est::ONE, |x| x.est);
                match c.func_name.as_str() {
                    "lists.range" | "range" => {
                        let unknown = if self.runtime { MAX_RANGE } else { 1.0 };
                        // `lists.range(n)` parses as a call with `lists` as its target.
                        let n = args
                            .first()
                            .and_then(|a| a.number)
                            .map_or(unknown, |n| n.max(0.0));
                        Node::of(
                            base + n,
                            Est {
                                n,
                                w: 1.0,
                                list: true,
                            },
                        )
                    }
                    "size" => {
                        let x = est(0);
                        Node {
                            cost: base,
                            est: Est::ONE,
                            number: Some(if x.list || x.n > 1.0 { x.n } else { x.w }),
                        }
                    }
                    "_+_" | "_-_" | "_*_" | "_/_" | "_%_"
                        if num(0).is_some() && num(1).is_some() =>
                    {
                        let (a, b) = (num(0).unwrap_or(0.0), num(1).unwrap_or(0.0));
                        let number = match c.func_name.as_str() {
                            "_+_" => a + b,
                            "_-_" => a - b,
                            "_*_" => a * b,
                            "_/_" if b != 0.0 => a / b,
                            _ => a,
                        };
                        Node {
                            cost: base,
                            est: Est::ONE,
                            number: Some(number),
                        }
                    }
                    "_+_" => {
                        let (a, b) = (est(0), est(1));
                        let joined = if a.list || b.list {
                            Est {
                                n: a.n + b.n,
                                w: a.w.max(b.w),
                                list: true,
                            }
                        } else {
                            Est::scalar(a.total() + b.total())
                        };
                        Node::of(base + scan, joined)
                    }
                    "replace" => {
                        let s = est(0);
                        let to = est(2);
                        Node::of(base + scan, Est::scalar(s.total() * to.total().max(1.0)))
                    }
                    "join" => Node::of(base + scan, Est::scalar(est(0).total() * 2.0)),
                    "split" => {
                        let s = est(0).total();
                        Node::of(
                            base + scan,
                            Est {
                                n: s,
                                w: s,
                                list: true,
                            },
                        )
                    }
                    "flatten" => {
                        let x = est(0);
                        Node::of(
                            base + scan,
                            Est {
                                n: x.total(),
                                w: x.w,
                                list: true,
                            },
                        )
                    }
                    _ => {
                        // Anything else returns something no larger than the largest
                        // of its operands (sort: n log n).
                        let biggest = operands
                            .iter()
                            .map(|x| x.est)
                            .max_by(|a, b| a.total().total_cmp(&b.total()))
                            .unwrap_or(Est::ONE);
                        let factor =
                            if matches!(c.func_name.as_str(), "sort" | "@sortByAssociatedKeys") {
                                biggest.n.max(2.0).log2()
                            } else {
                                1.0
                            };
                        // A linear pass over the elements at most: indexing, `has`,
                        // comparisons and conversions do not copy what they read.
                        let elements: f64 = operands.iter().map(|x| x.est.n.max(1.0)).sum();
                        Node::of(base + elements * factor, biggest)
                    }
                }
            }
            Expr::Comprehension(c) => {
                let range = self.walk(&c.iter_range);
                let init = self.walk(&c.accu_init);
                let before = self.scope.len();
                let element = range.est.element();
                let heaviest = match self.value_of(&c.iter_range) {
                    Some(list @ Value::Array(items)) => match self.weighed.get() {
                        _ if shortcut_off() => {
                            items.iter().max_by(|a, b| weight(a).total_cmp(&weight(b)))
                        }
                        Some((seen, heavy)) if std::ptr::eq(seen, list) => heavy,
                        _ => heaviest(items).map(|(x, _)| x),
                    },
                    _ => None,
                };
                let (first, second) = match &c.iter_var2 {
                    // Two variables: index (or key) and element.
                    Some(_) => (None, heaviest),
                    None => (heaviest, None),
                };
                self.scope.push((c.iter_var.clone(), element, first));
                if let Some(v2) = &c.iter_var2 {
                    self.scope.push((v2.clone(), element, second));
                }
                self.scope.push((c.accu_var.clone(), init.est, None));
                let step = self.walk(&c.loop_step);
                let accu = if step.est.list {
                    Est {
                        n: init.est.n + range.est.n * (step.est.n - init.est.n).max(0.0),
                        w: init.est.w.max(step.est.w),
                        list: true,
                    }
                } else {
                    step.est
                };
                if let Some(last) = self.scope.last_mut() {
                    last.1 = accu;
                }
                let cond = self.walk(&c.loop_cond);
                let result = self.walk(&c.result);
                self.scope.truncate(before);
                Node {
                    cost: range.cost
                        + init.cost
                        + range.est.n * (step.cost + cond.cost + 1.0)
                        + result.cost,
                    est: result.est,
                    number: result.number,
                }
            }
            Expr::Unspecified => Node::of(1.0, Est::ONE),
        }
    }
}

/// The estimated cost of `e`, with free variables resolved by `resolve` (bound
/// names in `bound` take the shape of the given values), saturating at u64::MAX.
pub(super) fn estimate<'a>(
    e: &IdedExpr,
    resolve: &Resolve<'a>,
    runtime: bool,
    bound: &[(&str, &'a Value)],
) -> u64 {
    let mut w = Walk {
        resolve,
        scope: bound
            .iter()
            .map(|(name, v)| ((*name).to_owned(), shape(v), Some(*v)))
            .collect(),
        runtime,
        weighed: Cell::new(None),
    };
    let cost = w.walk(e).cost;
    if cost.is_finite() && cost < u64::MAX as f64 {
        cost as u64
    } else {
        u64::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::super::condition::{eval, eval_bool_each, program, static_cost};
    use serde_json::json;

    #[test]
    fn ordinary_conditions_are_cheap() {
        for e in [
            "size(lost_pods) > 0",
            "pods.all(p, p.status.phase == 'Running')",
            "result.items.filter(i, i.x > 1).map(i, i.name).size() == 3",
            "lists.range(10).map(i, i * 2).size() == 10",
        ] {
            let c = static_cost(e).unwrap();
            assert!(c < 1000, "{e}: {c}");
        }
    }

    #[test]
    fn literal_bombs_are_over_budget_statically() {
        for e in [
            "lists.range(100000000).size() > 0",
            "lists.range(10000).map(a, lists.range(10000).map(b, a)).size() > 0",
            "lists.range(1000).all(a, lists.range(1000).all(b, lists.range(1000).all(c, true)))",
            "['aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'].map(x, x + x).map(x, x + x).map(x, x + x).map(x, x + x).map(x, x.replace('a', x).replace('a', x).replace('a', x)).size() > 0",
        ] {
            let c = static_cost(e).unwrap();
            assert!(c > super::DEFAULT_COST_BUDGET, "{e}: {c}");
        }
    }

    #[test]
    fn data_driven_bombs_are_refused_before_they_run() {
        let pods: Vec<_> = (0..500).map(|i| json!({"n": i})).collect();
        let ctx = json!({ "pods": pods });
        let e = "pods.all(a, pods.all(b, pods.all(c, a.n + b.n + c.n >= 0)))";
        assert!(
            static_cost(e).unwrap() < 1000,
            "unknown sizes are small at lint"
        );
        let t0 = std::time::Instant::now();
        let err = eval(e, &ctx).unwrap_err();
        assert!(t0.elapsed() < std::time::Duration::from_secs(1));
        assert!(err.message.contains("cost"), "{}", err.message);
        assert!(
            err.message.contains("RUNBOOK_CEL_COST_BUDGET"),
            "{}",
            err.message
        );
        // One level over the same data is fine.
        assert_eq!(eval("pods.all(a, a.n >= 0)", &ctx).unwrap(), json!(true));
        let items: Vec<_> = (0..3).map(|i| json!({"n": i})).collect();
        let err = eval_bool_each(e, &ctx, &["object"], &items).unwrap_err();
        assert!(err.message.contains("cost"), "{}", err.message);
    }

    /// Every estimate is what it was when each `size` of data weighed the data and
    /// each comprehension over data weighed its list again to find the heaviest.
    #[test]
    fn shortcuts_change_no_estimate() {
        let pods: Vec<_> = (0..300)
            .map(|i| json!({"name": format!("pod-{i}"), "labels": {"a": "b", "c": i}, "one": {"k": "vvvv"}}))
            .collect();
        let ctx = json!({
            "pods": pods, "empty": [], "none": {}, "one": {"key": [1, 2, 3]},
            "s": "hello", "n": 7, "nested": {"list": [1, 2], "m": {"x": "yy"}},
            "ties": [{"a": "xxxxxxxxxx", "b": ""}, {"a": "", "b": "xxxxxxxxxx"}]
        });
        let exprs = [
            "size(pods) == 300",
            "pods.size() > 0 && size(empty) == 0 && size(none) == 0",
            "lists.range(size(pods)).all(i, true)",
            "lists.range(size(one)).size() > 0",
            "lists.range(size(s)).size() > 0",
            "lists.range(size(nested.list) * size(nested.m)).size() > 0",
            "size(missing) == 0 || size(nested.missing.deeper) == 0",
            "size(n)",
            "pods.all(p, size(p.labels) == 2 && size(p.one) == 1 && size(p.name) > 3)",
            "pods.map(p, lists.range(size(p.name))).size() > 0",
            "pods.map(p, p.labels).all(l, size(l) == 2)",
            "size(pods[0]) == 3 && size(steps['x']) == 0",
            "size(pods, pods) == 0",
            "ties.map(t, lists.range(size(t.a))).size() > 0",
            "ties.all(t, lists.range(size(t.b)).all(i, true))",
            "pods.all(p, pods.exists(q, q.name == p.name))",
            "pods.filter(p, true).map(p, lists.range(size(p.labels)))",
            "size(object.labels) == 2 && size(object) == 3 && size(object.missing) == 1",
        ];
        for e in exprs {
            let p = program(e).unwrap();
            let resolve = |path: &[String]| super::resolve_path(&ctx, path);
            let bound = [("object", &ctx["pods"][7])];
            let fast = super::estimate(p.expression(), &resolve, true, &bound);
            super::SHORTCUT_OFF.with(|c| c.set(true));
            let slow = super::estimate(p.expression(), &resolve, true, &bound);
            super::SHORTCUT_OFF.with(|c| c.set(false));
            assert_eq!(fast, slow, "{e}");
        }
    }
}
