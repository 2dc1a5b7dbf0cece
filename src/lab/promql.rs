//! The part of PromQL the lab's Prometheus evaluates, over its history
//! ([`super::history`]), with Prometheus' semantics (reference:
//! prometheus.io/docs/prometheus/latest/querying/):
//!
//! - selectors `name`, `name{l="v", l!="v", l=~"re", l!~"re"}`, `{__name__="x"}`,
//!   range selectors `name[5m]`, `offset 5m`; an instant selector takes each
//!   series' newest sample in the 5-minute look-back before the evaluation time;
//! - numbers (`0.5`, `1e3`, `Inf`, `NaN`) and unary minus;
//! - binary operators `^ * / % + - == != > < >= <= and or unless`, with
//!   Prometheus' precedence, `bool`, and `on(…)`/`ignoring(…)` one-to-one vector
//!   matching (a comparison without `bool` filters and keeps the vector's value and
//!   the metric name; arithmetic and `bool` drop the name);
//! - aggregations `sum avg min max count` with `by (…)`/`without (…)`;
//! - functions `rate increase delta` (extrapolated as Prometheus does),
//!   `avg_over_time min_over_time max_over_time sum_over_time count_over_time
//!   last_over_time`, `abs ceil floor clamp_min clamp_max`, `vector scalar time absent`.
//!
//! Anything else is refused with a `bad_data` error naming what the lab supports.

use std::collections::BTreeMap;

use super::history::Series;

/// Prometheus' default look-back for instant selectors (`--query.lookback-delta`).
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

pub type Labels = BTreeMap<String, String>;

/// Prometheus' staleness marker (`value.StaleNaN` in prometheus/model/value): a NaN
/// with this bit pattern, written when a series stops (the lab writes it for
/// `ALERTS`/`ALERTS_FOR_STATE` series when an alert leaves that state). An instant
/// selector whose newest sample in the look-back is a marker sees no sample; range
/// selectors skip markers.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether a value is the staleness marker.
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num(f64),
    Sel {
        matchers: Vec<Matcher>,
        range: Option<i64>,
        offset: i64,
    },
    Neg(Box<Expr>),
    Call(String, Vec<Expr>),
    Agg {
        op: String,
        grouping: Option<(bool, Vec<String>)>,
        expr: Box<Expr>,
    },
    Bin {
        op: String,
        bool_mod: bool,
        /// `on(…)` (true) or `ignoring(…)` (false) and its labels.
        matching: Option<(bool, Vec<String>)>,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Matcher {
    pub name: String,
    pub op: String,
    pub value: String,
}

/// A value: a scalar, an instant vector, or a range vector.
#[derive(Debug, Clone)]
pub enum Val {
    Scalar(f64),
    Vector(Vec<(Labels, f64)>),
    Matrix(Vec<(Labels, Vec<(i64, f64)>)>),
}

const SUPPORTED: &str = "the lab evaluates selectors, numbers, + - * / % ^, comparisons (with bool), and/or/unless, on()/ignoring(), sum/avg/min/max/count by/without, rate/increase/delta, *_over_time, abs/ceil/floor/clamp_min/clamp_max, vector/scalar/time/absent";

const FUNCS: &[&str] = &[
    "rate",
    "increase",
    "delta",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
    "abs",
    "ceil",
    "floor",
    "clamp_min",
    "clamp_max",
    "vector",
    "scalar",
    "time",
    "absent",
];
const AGGS: &[&str] = &["sum", "avg", "min", "max", "count"];

// ---------------------------------------------------------------- lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Num(f64),
    Str(String),
    Dur(i64),
    P(&'static str),
}

const PUNCT: &[&str] = &[
    "==", "!=", "=~", "!~", ">=", "<=", "(", ")", "{", "}", "[", "]", ",", "=", "<", ">", "+", "-",
    "*", "/", "%", "^",
];

fn parse_dur(s: &str) -> Option<i64> {
    let mut total = 0i64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1
            }
            's' => 1000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            'w' => 7 * 86_400_000,
            'y' => 365 * 86_400_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        any = true;
    }
    (any && num.is_empty()).then_some(total)
}

fn lex(q: &str) -> Result<Vec<Tok>, String> {
    let b = q.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i] as char;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == '"' || c == '\'' || c == '`' {
            let mut s = String::new();
            i += 1;
            let mut closed = false;
            let rest = &q[i..];
            let mut it = rest.char_indices();
            while let Some((j, ch)) = it.next() {
                if ch == c {
                    i += j + 1;
                    closed = true;
                    break;
                }
                if ch == '\\' && c != '`' {
                    match it.next() {
                        Some((_, 'n')) => s.push('\n'),
                        Some((_, 't')) => s.push('\t'),
                        Some((_, e)) => s.push(e),
                        None => break,
                    }
                } else {
                    s.push(ch);
                }
            }
            if !closed {
                return Err("unterminated quoted string".into());
            }
            out.push(Tok::Str(s));
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                // An exponent's sign: 1e-3.
                i += 1;
                if i < b.len()
                    && (b[i] == b'-' || b[i] == b'+')
                    && matches!(b[i - 1], b'e' | b'E')
                    && !q[start..i]
                        .contains(|ch: char| ch.is_ascii_alphabetic() && ch != 'e' && ch != 'E')
                {
                    i += 1;
                }
            }
            let text = &q[start..i];
            if let Ok(n) = text.parse::<f64>() {
                out.push(Tok::Num(n));
            } else if let Some(d) = parse_dur(text) {
                out.push(Tok::Dur(d));
            } else {
                return Err(format!("bad number or duration {text:?}"));
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            out.push(Tok::Ident(q[start..i].to_string()));
            continue;
        }
        match PUNCT.iter().find(|p| q[i..].starts_with(**p)) {
            Some(p) => {
                out.push(Tok::P(p));
                i += p.len();
            }
            None => return Err(format!("unexpected character {c:?}")),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- parser

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

fn prec(op: &str) -> Option<u8> {
    Some(match op {
        "or" => 1,
        "and" | "unless" => 2,
        "==" | "!=" | "<" | ">" | "<=" | ">=" => 3,
        "+" | "-" => 4,
        "*" | "/" | "%" => 5,
        "^" => 6,
        _ => return None,
    })
}

fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | "<" | ">" | "<=" | ">=")
}

fn is_set(op: &str) -> bool {
    matches!(op, "and" | "or" | "unless")
}

/// Parse a PromQL expression the lab evaluates.
pub fn parse(q: &str) -> Result<Expr, String> {
    let mut p = Parser {
        toks: lex(q)?,
        pos: 0,
    };
    if p.toks.is_empty() {
        return Err("empty query".into());
    }
    let e = p.expr(0)?;
    if p.pos < p.toks.len() {
        return Err(format!(
            "unexpected {} after the expression; {SUPPORTED}",
            p.show(p.pos)
        ));
    }
    Ok(e)
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn show(&self, i: usize) -> String {
        match self.toks.get(i) {
            None => "end of query".into(),
            Some(Tok::Ident(s)) => format!("`{s}`"),
            Some(Tok::Num(n)) => format!("number {n}"),
            Some(Tok::Str(s)) => format!("string {s:?}"),
            Some(Tok::Dur(d)) => format!("duration {d}ms"),
            Some(Tok::P(p)) => format!("`{p}`"),
        }
    }

    fn eat(&mut self, p: &str) -> bool {
        if matches!(self.peek(), Some(Tok::P(x)) if *x == p) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, p: &str) -> Result<(), String> {
        if self.eat(p) {
            Ok(())
        } else {
            Err(format!("expected `{p}`, found {}", self.show(self.pos)))
        }
    }

    fn ident_is(&self, s: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(x)) if x.eq_ignore_ascii_case(s))
    }

    fn binop(&self) -> Option<String> {
        match self.peek()? {
            Tok::P(p) if prec(p).is_some() => Some((*p).to_string()),
            Tok::Ident(s) if prec(&s.to_ascii_lowercase()).is_some() => {
                Some(s.to_ascii_lowercase())
            }
            _ => None,
        }
    }

    fn expr(&mut self, min: u8) -> Result<Expr, String> {
        let mut lhs = self.unary()?;
        while let Some(op) = self.binop() {
            let p = prec(&op).unwrap_or(0);
            if p < min {
                break;
            }
            self.pos += 1;
            let bool_mod = if self.ident_is("bool") {
                self.pos += 1;
                true
            } else {
                false
            };
            if bool_mod && !is_comparison(&op) {
                return Err(format!(
                    "bool modifier can only be used on comparison operators, not `{op}`"
                ));
            }
            let matching = if self.ident_is("on") || self.ident_is("ignoring") {
                let on = self.ident_is("on");
                self.pos += 1;
                Some((on, self.label_list()?))
            } else {
                None
            };
            if self.ident_is("group_left") || self.ident_is("group_right") {
                return Err(format!(
                    "{} (many-to-one matching) is not supported by the lab; {SUPPORTED}",
                    self.show(self.pos)
                ));
            }
            // `^` is right-associative, the others left.
            let rhs = self.expr(if op == "^" { p } else { p + 1 })?;
            lhs = Expr::Bin {
                op,
                bool_mod,
                matching,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            };
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat("-") {
            let e = self.unary()?;
            return Ok(match e {
                Expr::Num(n) => Expr::Num(-n),
                e => Expr::Neg(Box::new(e)),
            });
        }
        if self.eat("+") {
            return self.unary();
        }
        let mut e = self.primary()?;
        if self.eat("[") {
            let d = match self.peek() {
                Some(Tok::Dur(d)) => *d,
                Some(Tok::Num(n)) if n.fract() == 0.0 && *n > 0.0 => (*n as i64) * 1000,
                _ => {
                    return Err(format!(
                        "expected a duration such as 5m in `[…]`, found {}",
                        self.show(self.pos)
                    ));
                }
            };
            self.pos += 1;
            if self.eat(":") {
                return Err(format!(
                    "subqueries are not supported by the lab; {SUPPORTED}"
                ));
            }
            self.expect("]")?;
            match &mut e {
                Expr::Sel { range, .. } if range.is_none() => *range = Some(d),
                _ => return Err("a range `[…]` can only follow a metric selector".into()),
            }
        }
        if self.ident_is("offset") {
            self.pos += 1;
            let neg = self.eat("-");
            let d = match self.peek() {
                Some(Tok::Dur(d)) => *d,
                _ => {
                    return Err(format!(
                        "expected a duration after offset, found {}",
                        self.show(self.pos)
                    ));
                }
            };
            self.pos += 1;
            match &mut e {
                Expr::Sel { offset, .. } => *offset = if neg { -d } else { d },
                _ => return Err("offset can only follow a selector".into()),
            }
        }
        Ok(e)
    }

    fn label_list(&mut self) -> Result<Vec<String>, String> {
        self.expect("(")?;
        let mut out = Vec::new();
        loop {
            if self.eat(")") {
                return Ok(out);
            }
            match self.peek() {
                Some(Tok::Ident(s)) => {
                    out.push(s.clone());
                    self.pos += 1;
                }
                _ => {
                    return Err(format!(
                        "expected a label name, found {}",
                        self.show(self.pos)
                    ));
                }
            }
            if !self.eat(",") {
                self.expect(")")?;
                return Ok(out);
            }
        }
    }

    fn grouping(&mut self) -> Result<Option<(bool, Vec<String>)>, String> {
        if self.ident_is("by") || self.ident_is("without") {
            let by = self.ident_is("by");
            self.pos += 1;
            return Ok(Some((by, self.label_list()?)));
        }
        Ok(None)
    }

    fn matchers(&mut self) -> Result<Vec<Matcher>, String> {
        let mut out = Vec::new();
        loop {
            if self.eat("}") {
                return Ok(out);
            }
            let name = match self.peek() {
                Some(Tok::Ident(s)) => s.clone(),
                _ => {
                    return Err(format!(
                        "expected a label name in `{{…}}`, found {}",
                        self.show(self.pos)
                    ));
                }
            };
            self.pos += 1;
            let op = match self.peek() {
                Some(Tok::P(p)) if matches!(*p, "=" | "!=" | "=~" | "!~") => (*p).to_string(),
                _ => {
                    return Err(format!(
                        "expected =, !=, =~ or !~ after `{name}`, found {}",
                        self.show(self.pos)
                    ));
                }
            };
            self.pos += 1;
            let value = match self.peek() {
                Some(Tok::Str(s)) => s.clone(),
                _ => {
                    return Err(format!(
                        "expected a quoted label value after `{name}{op}`, found {}",
                        self.show(self.pos)
                    ));
                }
            };
            self.pos += 1;
            if op.ends_with('~') {
                regex::Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("invalid regular expression {value:?}: {e}"))?;
            }
            out.push(Matcher { name, op, value });
            if !self.eat(",") {
                self.expect("}")?;
                return Ok(out);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let Some(tok) = self.peek().cloned() else {
            return Err("unexpected end of query".into());
        };
        self.pos += 1;
        match tok {
            Tok::Num(n) => Ok(Expr::Num(n)),
            Tok::P("(") => {
                let e = self.expr(0)?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::P("{") => {
                let matchers = self.matchers()?;
                if matchers
                    .iter()
                    .all(|m| matches(std::slice::from_ref(m), &Labels::new()))
                {
                    return Err(
                        "vector selector must contain at least one non-empty matcher".into(),
                    );
                }
                Ok(Expr::Sel {
                    matchers,
                    range: None,
                    offset: 0,
                })
            }
            Tok::Ident(name) => {
                let lower = name.to_ascii_lowercase();
                if lower == "inf" || lower == "nan" {
                    return Ok(Expr::Num(if lower == "inf" {
                        f64::INFINITY
                    } else {
                        f64::NAN
                    }));
                }
                if AGGS.contains(&lower.as_str())
                    && (self.ident_is("by")
                        || self.ident_is("without")
                        || matches!(self.peek(), Some(Tok::P("("))))
                {
                    let mut grouping = self.grouping()?;
                    self.expect("(")?;
                    let expr = self.expr(0)?;
                    self.expect(")")?;
                    if grouping.is_none() {
                        grouping = self.grouping()?;
                    }
                    return Ok(Expr::Agg {
                        op: lower,
                        grouping,
                        expr: Box::new(expr),
                    });
                }
                if matches!(self.peek(), Some(Tok::P("("))) {
                    if !FUNCS.contains(&name.as_str()) {
                        return Err(format!(
                            "function `{name}` is not supported by the lab; {SUPPORTED}"
                        ));
                    }
                    self.pos += 1;
                    let mut args = Vec::new();
                    if !self.eat(")") {
                        loop {
                            args.push(self.expr(0)?);
                            if !self.eat(",") {
                                self.expect(")")?;
                                break;
                            }
                        }
                    }
                    return Ok(Expr::Call(name, args));
                }
                let mut matchers = vec![Matcher {
                    name: "__name__".into(),
                    op: "=".into(),
                    value: name,
                }];
                if self.eat("{") {
                    matchers.extend(self.matchers()?);
                }
                Ok(Expr::Sel {
                    matchers,
                    range: None,
                    offset: 0,
                })
            }
            _ => Err(format!(
                "unexpected {} in query; {SUPPORTED}",
                self.show(self.pos - 1)
            )),
        }
    }
}

// ---------------------------------------------------------------- evaluation

fn matches(m: &[Matcher], labels: &Labels) -> bool {
    m.iter().all(|m| {
        let v = labels.get(&m.name).map(String::as_str).unwrap_or("");
        match m.op.as_str() {
            "=" => v == m.value,
            "!=" => v != m.value,
            op => {
                let hit =
                    regex::Regex::new(&format!("^(?:{})$", m.value)).is_ok_and(|r| r.is_match(v));
                hit == (op == "=~")
            }
        }
    })
}

/// The labels of a history series as strings.
pub fn labels_of(s: &Series) -> Labels {
    s.labels
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().map_or_else(|| v.to_string(), str::to_owned),
            )
        })
        .collect()
}

fn drop_name(mut l: Labels) -> Labels {
    l.remove("__name__");
    l
}

fn type_name(v: &Val) -> &'static str {
    match v {
        Val::Scalar(_) => "scalar",
        Val::Vector(_) => "instant vector",
        Val::Matrix(_) => "range vector",
    }
}

/// Prometheus' extrapolated rate/increase/delta over the samples of a range.
fn extrapolated(
    samples: &[(i64, f64)],
    start: i64,
    end: i64,
    counter: bool,
    rate: bool,
) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let (first, last) = (samples[0], samples[samples.len() - 1]);
    let mut result = last.1 - first.1;
    if counter {
        for w in samples.windows(2) {
            if w[1].1 < w[0].1 {
                result += w[0].1;
            }
        }
    }
    let mut to_start = (first.0 - start) as f64 / 1000.0;
    let to_end = (end - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let avg = sampled / (samples.len() - 1) as f64;
    if counter && result > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        avg / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        avg / 2.0
    };
    result *= interval / sampled;
    if rate {
        result /= (end - start) as f64 / 1000.0;
    }
    Some(result)
}

fn arith(op: &str, a: f64, b: f64) -> f64 {
    match op {
        "+" => a + b,
        "-" => a - b,
        "*" => a * b,
        "/" => a / b,
        "%" => a % b,
        _ => a.powf(b),
    }
}

fn compare(op: &str, a: f64, b: f64) -> bool {
    match op {
        "==" => a == b,
        "!=" => a != b,
        "<" => a < b,
        ">" => a > b,
        "<=" => a <= b,
        _ => a >= b,
    }
}

/// The labels two samples are matched on.
fn signature(l: &Labels, matching: &Option<(bool, Vec<String>)>) -> Labels {
    match matching {
        Some((true, on)) => l
            .iter()
            .filter(|(k, _)| on.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        Some((false, ign)) => l
            .iter()
            .filter(|(k, _)| *k != "__name__" && !ign.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        None => drop_name(l.clone()),
    }
}

/// Evaluates expressions against a history at one time.
pub struct Eval<'a> {
    pub series: &'a [Series],
}

impl Eval<'_> {
    fn select(&self, m: &[Matcher], from: i64, to: i64) -> Vec<(Labels, Vec<(i64, f64)>)> {
        self.series
            .iter()
            .filter_map(|s| {
                let labels = labels_of(s);
                if !matches(m, &labels) {
                    return None;
                }
                // Samples are in time order: find the window by bisection (a rule
                // evaluated at every scrape point over a day of history would
                // otherwise scan the whole series each time).
                let lo = s.samples.partition_point(|(t, _)| *t <= from);
                let hi = s.samples.partition_point(|(t, _)| *t <= to);
                let pts: Vec<(i64, f64)> = s.samples.range(lo..hi.max(lo)).copied().collect();
                Some((labels, pts))
            })
            .collect()
    }

    /// The value of `e` at `t` (Unix ms).
    pub fn eval(&self, e: &Expr, t: i64) -> Result<Val, String> {
        Ok(match e {
            Expr::Num(n) => Val::Scalar(*n),
            Expr::Sel {
                matchers,
                range,
                offset,
            } => {
                let at = t - offset;
                match range {
                    Some(r) => Val::Matrix(
                        self.select(matchers, at - r, at)
                            .into_iter()
                            .map(|(l, mut p)| {
                                p.retain(|x| !is_stale(x.1));
                                (l, p)
                            })
                            .filter(|(_, p)| !p.is_empty())
                            .collect(),
                    ),
                    None => Val::Vector(
                        self.select(matchers, at - LOOKBACK_MS, at)
                            .into_iter()
                            .filter_map(|(l, p)| p.last().map(|x| (l, x.1)))
                            .filter(|(_, v)| !is_stale(*v))
                            .collect(),
                    ),
                }
            }
            Expr::Neg(inner) => match self.eval(inner, t)? {
                Val::Scalar(v) => Val::Scalar(-v),
                Val::Vector(v) => {
                    Val::Vector(v.into_iter().map(|(l, x)| (drop_name(l), -x)).collect())
                }
                Val::Matrix(_) => {
                    return Err(
                        "unary minus needs a scalar or an instant vector, not a range vector"
                            .into(),
                    );
                }
            },
            Expr::Call(f, args) => self.call(f, args, t)?,
            Expr::Agg { op, grouping, expr } => {
                let Val::Vector(v) = self.eval(expr, t)? else {
                    return Err(format!("expected an instant vector in aggregation `{op}`"));
                };
                let mut groups: Vec<(Labels, Vec<f64>)> = Vec::new();
                for (l, x) in v {
                    let key: Labels = match grouping {
                        Some((true, by)) => l.into_iter().filter(|(k, _)| by.contains(k)).collect(),
                        Some((false, without)) => l
                            .into_iter()
                            .filter(|(k, _)| k != "__name__" && !without.contains(k))
                            .collect(),
                        None => Labels::new(),
                    };
                    match groups.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, xs)) => xs.push(x),
                        None => groups.push((key, vec![x])),
                    }
                }
                Val::Vector(
                    groups
                        .into_iter()
                        .map(|(k, xs)| {
                            let v =
                                match op.as_str() {
                                    "sum" => xs.iter().sum(),
                                    "avg" => xs.iter().sum::<f64>() / xs.len() as f64,
                                    "min" => xs.iter().copied().fold(f64::NAN, |a, b| {
                                        if a.is_nan() || b < a { b } else { a }
                                    }),
                                    "max" => xs.iter().copied().fold(f64::NAN, |a, b| {
                                        if a.is_nan() || b > a { b } else { a }
                                    }),
                                    _ => xs.len() as f64,
                                };
                            (k, v)
                        })
                        .collect(),
                )
            }
            Expr::Bin {
                op,
                bool_mod,
                matching,
                lhs,
                rhs,
            } => {
                let (a, b) = (self.eval(lhs, t)?, self.eval(rhs, t)?);
                binary(op, *bool_mod, matching, a, b)?
            }
        })
    }

    fn call(&self, f: &str, args: &[Expr], t: i64) -> Result<Val, String> {
        let arity = match f {
            "time" => 0,
            "clamp_min" | "clamp_max" => 2,
            _ => 1,
        };
        if args.len() != arity {
            return Err(format!(
                "{f}() takes {arity} argument(s), got {}",
                args.len()
            ));
        }
        if f == "time" {
            return Ok(Val::Scalar(t as f64 / 1000.0));
        }
        let arg = self.eval(&args[0], t)?;
        Ok(match (f, arg) {
            ("rate" | "increase" | "delta", Val::Matrix(m)) => {
                let Expr::Sel {
                    range: Some(r),
                    offset,
                    ..
                } = &args[0]
                else {
                    return Err(format!("{f}() needs a range selector such as x[5m]"));
                };
                let end = t - offset;
                Val::Vector(
                    m.into_iter()
                        .filter_map(|(l, p)| {
                            extrapolated(&p, end - r, end, f != "delta", f == "rate")
                                .map(|v| (drop_name(l), v))
                        })
                        .collect(),
                )
            }
            (_, Val::Matrix(m)) if f.ends_with("_over_time") => Val::Vector(
                m.into_iter()
                    .map(|(l, p)| {
                        let xs: Vec<f64> = p.iter().map(|x| x.1).collect();
                        let v = match f {
                            "avg_over_time" => xs.iter().sum::<f64>() / xs.len() as f64,
                            "min_over_time" => xs.iter().copied().fold(f64::INFINITY, f64::min),
                            "max_over_time" => xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                            "sum_over_time" => xs.iter().sum(),
                            "count_over_time" => xs.len() as f64,
                            _ => *xs.last().unwrap_or(&f64::NAN),
                        };
                        let l = if f == "last_over_time" {
                            l
                        } else {
                            drop_name(l)
                        };
                        (l, v)
                    })
                    .collect(),
            ),
            ("abs" | "ceil" | "floor" | "clamp_min" | "clamp_max", Val::Vector(v)) => {
                let bound = if arity == 2 {
                    match self.eval(&args[1], t)? {
                        Val::Scalar(s) => s,
                        other => {
                            return Err(format!(
                                "{f}() takes a scalar as its second argument, not an {}",
                                type_name(&other)
                            ));
                        }
                    }
                } else {
                    0.0
                };
                Val::Vector(
                    v.into_iter()
                        .map(|(l, x)| {
                            let y = match f {
                                "abs" => x.abs(),
                                "ceil" => x.ceil(),
                                "floor" => x.floor(),
                                "clamp_min" => x.max(bound),
                                _ => x.min(bound),
                            };
                            (drop_name(l), y)
                        })
                        .collect(),
                )
            }
            ("vector", Val::Scalar(s)) => Val::Vector(vec![(Labels::new(), s)]),
            ("scalar", Val::Vector(v)) => Val::Scalar(if v.len() == 1 { v[0].1 } else { f64::NAN }),
            ("absent", Val::Vector(v)) => {
                if v.is_empty() {
                    let labels = match &args[0] {
                        Expr::Sel { matchers, .. } => matchers
                            .iter()
                            .filter(|m| m.op == "=" && m.name != "__name__")
                            .map(|m| (m.name.clone(), m.value.clone()))
                            .collect(),
                        _ => Labels::new(),
                    };
                    Val::Vector(vec![(labels, 1.0)])
                } else {
                    Val::Vector(Vec::new())
                }
            }
            (_, other) => {
                return Err(format!(
                    "expected type {} in call to function {f:?}, got {}",
                    match f {
                        "vector" => "scalar",
                        _ if f.ends_with("_over_time")
                            || matches!(f, "rate" | "increase" | "delta") =>
                            "range vector",
                        _ => "instant vector",
                    },
                    type_name(&other)
                ));
            }
        })
    }
}

fn binary(
    op: &str,
    bool_mod: bool,
    matching: &Option<(bool, Vec<String>)>,
    a: Val,
    b: Val,
) -> Result<Val, String> {
    let cmp = is_comparison(op);
    Ok(match (a, b) {
        (Val::Matrix(_), _) | (_, Val::Matrix(_)) => {
            return Err(format!(
                "binary expression must contain only scalar and instant vector types (`{op}`)"
            ));
        }
        (Val::Scalar(x), Val::Scalar(y)) => {
            if is_set(op) {
                return Err(format!(
                    "set operator `{op}` not allowed in binary scalar expression"
                ));
            }
            if cmp && !bool_mod {
                return Err("comparisons between scalars must use BOOL modifier".into());
            }
            Val::Scalar(if cmp {
                f64::from(u8::from(compare(op, x, y)))
            } else {
                arith(op, x, y)
            })
        }
        (Val::Vector(v), Val::Scalar(s)) | (Val::Scalar(s), Val::Vector(v)) if is_set(op) => {
            let _ = (v, s);
            return Err(format!(
                "set operator `{op}` not allowed between a scalar and a vector"
            ));
        }
        (Val::Vector(v), Val::Scalar(s)) => Val::Vector(scalar_op(op, bool_mod, v, s, false)),
        (Val::Scalar(s), Val::Vector(v)) => Val::Vector(scalar_op(op, bool_mod, v, s, true)),
        (Val::Vector(l), Val::Vector(r)) => {
            let rsig: Vec<Labels> = r.iter().map(|(lab, _)| signature(lab, matching)).collect();
            let lsig: Vec<Labels> = l.iter().map(|(lab, _)| signature(lab, matching)).collect();
            match op {
                "and" => Val::Vector(
                    l.into_iter()
                        .zip(lsig)
                        .filter(|(_, s)| rsig.contains(s))
                        .map(|(x, _)| x)
                        .collect(),
                ),
                "unless" => Val::Vector(
                    l.into_iter()
                        .zip(lsig)
                        .filter(|(_, s)| !rsig.contains(s))
                        .map(|(x, _)| x)
                        .collect(),
                ),
                "or" => {
                    let mut out = l;
                    out.extend(
                        r.into_iter()
                            .zip(rsig)
                            .filter(|(_, s)| !lsig.contains(s))
                            .map(|(x, _)| x),
                    );
                    Val::Vector(out)
                }
                _ => {
                    for (i, s) in rsig.iter().enumerate() {
                        if rsig[..i].contains(s) {
                            return Err(format!(
                                "found duplicate series for the match group {} on the right hand-side of the operation: many-to-many matching not allowed: matching labels must be unique on one side",
                                show_labels(s)
                            ));
                        }
                    }
                    let mut out = Vec::new();
                    let mut seen: Vec<Labels> = Vec::new();
                    for ((lab, x), s) in l.into_iter().zip(lsig) {
                        let Some(j) = rsig.iter().position(|r| *r == s) else {
                            continue;
                        };
                        if seen.contains(&s) {
                            return Err(format!(
                                "multiple matches for labels {}: many-to-one matching must be explicit (group_left/group_right)",
                                show_labels(&s)
                            ));
                        }
                        seen.push(s);
                        let y = r[j].1;
                        let metric = match matching {
                            Some((true, on)) => {
                                lab.into_iter().filter(|(k, _)| on.contains(k)).collect()
                            }
                            _ => lab,
                        };
                        if cmp {
                            let holds = compare(op, x, y);
                            if bool_mod {
                                out.push((drop_name(metric), f64::from(u8::from(holds))));
                            } else if holds {
                                out.push((metric, x));
                            }
                        } else {
                            out.push((drop_name(metric), arith(op, x, y)));
                        }
                    }
                    Val::Vector(out)
                }
            }
        }
    })
}

fn scalar_op(
    op: &str,
    bool_mod: bool,
    v: Vec<(Labels, f64)>,
    s: f64,
    scalar_left: bool,
) -> Vec<(Labels, f64)> {
    v.into_iter()
        .filter_map(|(l, x)| {
            let (a, b) = if scalar_left { (s, x) } else { (x, s) };
            if is_comparison(op) {
                let holds = compare(op, a, b);
                if bool_mod {
                    Some((drop_name(l), f64::from(u8::from(holds))))
                } else {
                    // The vector's value is kept, whichever side it is on.
                    holds.then_some((l, x))
                }
            } else {
                Some((drop_name(l), arith(op, a, b)))
            }
        })
        .collect()
}

fn show_labels(l: &Labels) -> String {
    let pairs: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", pairs.join(", "))
}

/// A sample value as Prometheus writes it (Go's `FormatFloat(v, 'f', -1, 64)`):
/// `1`, `0.25`, `NaN`, `+Inf`, `-Inf`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        v.to_string()
    }
}

/// A timestamp as Prometheus writes it: Unix seconds, with a fraction only when
/// there is one (`1520922480`, `1520922480.5`).
pub fn format_time(ms: i64) -> serde_json::Value {
    if ms % 1000 == 0 {
        serde_json::json!(ms / 1000)
    } else {
        serde_json::json!(ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn series(name: &str, extra: &[(&str, &str)], pts: &[(i64, f64)]) -> Series {
        let mut labels = serde_json::Map::new();
        labels.insert("__name__".into(), name.into());
        for (k, v) in extra {
            labels.insert((*k).into(), (*v).into());
        }
        Series {
            labels,
            samples: pts.iter().copied().collect::<VecDeque<_>>(),
        }
    }

    fn eval(q: &str, s: &[Series], t: i64) -> Result<Val, String> {
        Eval { series: s }.eval(&parse(q)?, t)
    }

    fn vector(v: Val) -> Vec<(Labels, f64)> {
        match v {
            Val::Vector(v) => v,
            other => panic!("not a vector: {other:?}"),
        }
    }

    #[test]
    fn precedence_follows_prometheus() {
        let s: [Series; 0] = [];
        let Val::Scalar(x) = eval("1 + 2 * 3 ^ 2 ^ 0.5", &s, 0).unwrap() else {
            panic!()
        };
        assert!((x - (1.0 + 2.0 * 3f64.powf(2f64.powf(0.5)))).abs() < 1e-9);
        let Val::Scalar(x) = eval("(1 + 2) * 3 > bool 8", &s, 0).unwrap() else {
            panic!()
        };
        assert_eq!(x, 1.0);
        assert!(eval("1 > 0", &s, 0).unwrap_err().contains("BOOL"));
    }

    #[test]
    fn the_instant_selector_takes_the_newest_sample_in_the_look_back() {
        let s = [series("x", &[], &[(0, 1.0), (15_000, 2.0)])];
        assert_eq!(vector(eval("x", &s, 20_000).unwrap())[0].1, 2.0);
        assert_eq!(vector(eval("x", &s, 10_000).unwrap())[0].1, 1.0);
        // Stale after 5 minutes.
        assert!(vector(eval("x", &s, 15_000 + LOOKBACK_MS).unwrap()).is_empty());
    }

    #[test]
    fn comparisons_filter_or_give_booleans_and_arithmetic_drops_the_name() {
        let s = [
            series("ok", &[("job", "a")], &[(0, 3.0)]),
            series("ok", &[("job", "b")], &[(0, 1.0)]),
            series("all", &[("job", "a")], &[(0, 4.0)]),
            series("all", &[("job", "b")], &[(0, 4.0)]),
        ];
        let v = vector(eval("ok / all", &s, 0).unwrap());
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].1, 0.75);
        assert!(!v[0].0.contains_key("__name__"));
        assert_eq!(v[0].0["job"], "a");
        let v = vector(eval("ok / all > 0.5", &s, 0).unwrap());
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].1, 0.75);
        let v = vector(eval("ok > 2", &s, 0).unwrap());
        assert_eq!(v[0].0["__name__"], "ok", "a filter keeps the name");
        let v = vector(eval("ok > bool 2", &s, 0).unwrap());
        assert_eq!(v.iter().map(|x| x.1).collect::<Vec<_>>(), [1.0, 0.0]);
        let v = vector(eval("2 < ok", &s, 0).unwrap());
        assert_eq!(v[0].1, 3.0, "the vector's value is kept on either side");
        let v = vector(eval("sum(ok) / sum(all)", &s, 0).unwrap());
        assert_eq!(v, vec![(Labels::new(), 0.5)]);
        let v = vector(eval("sum by (job) (ok)", &s, 0).unwrap());
        assert_eq!(v.len(), 2);
        let v = vector(eval("ok and on(job) all", &s, 0).unwrap());
        assert_eq!(v.len(), 2);
        let v = vector(eval(r#"ok{job=~"a|c"} unless all{job="b"}"#, &s, 0).unwrap());
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn rate_extrapolates_like_prometheus() {
        // A counter rising 1 per 15 s, sampled every 15 s over 5 minutes: 1/15 per second.
        let pts: Vec<(i64, f64)> = (0..=20).map(|i| (i * 15_000, i as f64)).collect();
        let s = [series("c", &[], &pts)];
        let v = vector(eval("rate(c[5m])", &s, 300_000).unwrap());
        assert!((v[0].1 - 1.0 / 15.0).abs() < 1e-3, "{}", v[0].1);
        let v = vector(eval("sum(rate(c[5m])) / sum(rate(c[5m]))", &s, 300_000).unwrap());
        assert_eq!(v[0].1, 1.0);
    }

    #[test]
    fn unsupported_syntax_is_refused_with_what_the_lab_supports() {
        for q in [
            "histogram_quantile(0.9, x)",
            "x[5m:1m]",
            "a * on(x) group_left b",
            "x{",
            "",
        ] {
            assert!(parse(q).is_err(), "{q}");
        }
        assert!(parse("topk(3, x)").unwrap_err().contains("not supported"));
    }

    #[test]
    fn values_and_times_are_written_as_prometheus_does() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_time(1_520_922_480_000).to_string(), "1520922480");
        assert_eq!(format_time(1_520_922_480_500).to_string(), "1520922480.5");
    }
}
