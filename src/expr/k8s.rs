//! The CEL libraries Kubernetes adds for its validation rules and admission
//! policies, for conditions: quantities (`quantity('15k')`), regular expressions
//! (`find`, `findAll`), lists (`sum`, `min`, `max`, `indexOf`, `lastIndexOf`,
//! `isSorted`) and URLs (`url()`, `getHost()`...). Semantics follow
//! k8s.io/apiserver/pkg/cel/library (quantity.go, regex.go, lists.go, urls.go);
//! the strings library (`lowerAscii`, `split`, `join`, ...) comes from the `cel`
//! crate's strings extension.

use std::any::Any;
use std::cmp::Ordering;
use std::collections::HashMap;

use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelString, CelUInt, LIST_TYPE, Type,
};
use cel::common::value::{CowVal, StaticVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

/// Registers every function of this module on `env`.
pub(super) fn extension(env: &mut Env) -> Result<(), DeclarationError> {
    quantities(env)?;
    regex(env)?;
    lists(env)?;
    urls(env)?;
    Ok(())
}

// ---------------------------------------------------------------- quantities

static QUANTITY: Type = Type::new_unspecified_type("kubernetes.Quantity");

/// A Kubernetes resource quantity (`500m`, `1.5Gi`, `2e3`), kept exactly in
/// billionths (`n` is the smallest suffix Kubernetes has) with its source text.
#[derive(Debug, Clone)]
pub(crate) struct Quantity {
    nanos: i128,
    text: String,
}

impl Quantity {
    /// Parse Kubernetes' quantity syntax: a signed decimal number, then an
    /// optional binary (`Ki`..`Ei`) or decimal (`n u m k M G T P E`) suffix or a
    /// decimal exponent (`e3`, `E-2`).
    pub(crate) fn parse(text: &str) -> Result<Quantity, String> {
        let bad = || format!("`{text}` is not a quantity (e.g. `500m`, `1.5Gi`, `2k`)");
        let s = text.trim();
        let (negative, s) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(end);
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
            return Err(bad());
        }
        let digits = format!("{int}{frac}");
        let mut num: i128 = digits.parse().map_err(|_| bad())?;
        // value = num / 10^frac * multiplier, kept in billionths.
        let mut pow10: i32 = 9 - frac.len() as i32;
        let mut mul: i128 = 1;
        match suffix {
            "" => {}
            "Ki" => mul = 1 << 10,
            "Mi" => mul = 1 << 20,
            "Gi" => mul = 1 << 30,
            "Ti" => mul = 1 << 40,
            "Pi" => mul = 1 << 50,
            "Ei" => mul = 1 << 60,
            "n" => pow10 -= 9,
            "u" => pow10 -= 6,
            "m" => pow10 -= 3,
            "k" => pow10 += 3,
            "M" => pow10 += 6,
            "G" => pow10 += 9,
            "T" => pow10 += 12,
            "P" => pow10 += 15,
            "E" => pow10 += 18,
            e if e.starts_with(['e', 'E']) => {
                let exp: i32 = e[1..].parse().map_err(|_| bad())?;
                if !(-30..=30).contains(&exp) {
                    return Err(bad());
                }
                pow10 += exp;
            }
            _ => return Err(bad()),
        }
        let too_big = || format!("`{text}` is too large a quantity");
        num = num.checked_mul(mul).ok_or_else(too_big)?;
        if pow10 >= 0 {
            let f = 10i128.checked_pow(pow10 as u32).ok_or_else(too_big)?;
            num = num.checked_mul(f).ok_or_else(too_big)?;
        } else {
            // Below a billionth: Kubernetes rounds up to its smallest unit.
            let f = 10i128.checked_pow((-pow10) as u32).ok_or_else(too_big)?;
            num = (num + f - 1) / f;
        }
        Ok(Quantity {
            nanos: if negative { -num } else { num },
            text: text.trim().to_owned(),
        })
    }

    fn from_nanos(nanos: i128) -> Quantity {
        let text = if nanos % 1_000_000_000 == 0 {
            (nanos / 1_000_000_000).to_string()
        } else {
            format!("{nanos}n")
        };
        Quantity { nanos, text }
    }
}

impl Val for Quantity {
    fn get_type(&self) -> &Type {
        <Self as Val>::cel_type()
    }
    fn cel_type() -> &'static Type {
        &QUANTITY
    }
    fn equals(&self, other: &dyn Val) -> bool {
        other
            .downcast_ref::<Quantity>()
            .is_some_and(|o| o.nanos == self.nanos)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}
impl StaticVal for Quantity {}

fn quantities(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_type(QUANTITY.to_owned())?;
    cel::add_overload!(env, fn quantity: (CelString) -> Result<Quantity>)?;
    cel::add_overload!(env, fn is_quantity: (CelString) -> CelBool)?;
    cel::add_member_overload!(env, fn sign: (Quantity) -> CelInt)?;
    cel::add_member_overload!(env, fn is_integer: (Quantity) -> CelBool)?;
    cel::add_member_overload!(env, fn as_integer: (Quantity) -> Result<CelInt>)?;
    cel::add_member_overload!(env, fn as_approximate_float: (Quantity) -> CelDouble)?;
    cel::add_member_overload!(env, fn add: (Quantity, Quantity) -> Result<Quantity>)?;
    cel::add_member_overload!(env, fn add_int: (Quantity, CelInt) -> Result<Quantity>, name = "add")?;
    cel::add_member_overload!(env, fn sub: (Quantity, Quantity) -> Result<Quantity>)?;
    cel::add_member_overload!(env, fn sub_int: (Quantity, CelInt) -> Result<Quantity>, name = "sub")?;
    cel::add_member_overload!(env, fn is_greater_than: (Quantity, Quantity) -> CelBool)?;
    cel::add_member_overload!(env, fn is_less_than: (Quantity, Quantity) -> CelBool)?;
    cel::add_member_overload!(env, fn compare_to: (Quantity, Quantity) -> CelInt)?;
    Ok(())
}

fn quantity(s: &CelString<'_>) -> Result<Quantity, ExecutionError> {
    Quantity::parse(s.inner()).map_err(|e| ExecutionError::function_error("quantity", e))
}

fn is_quantity(s: &CelString<'_>) -> CelBool {
    Quantity::parse(s.inner()).is_ok().into()
}

fn sign(q: &Quantity) -> CelInt {
    (q.nanos.signum() as i64).into()
}

fn is_integer(q: &Quantity) -> CelBool {
    (q.nanos % 1_000_000_000 == 0 && i64::try_from(q.nanos / 1_000_000_000).is_ok()).into()
}

fn as_integer(q: &Quantity) -> Result<CelInt, ExecutionError> {
    if q.nanos % 1_000_000_000 != 0 {
        return Err(ExecutionError::function_error(
            "asInteger",
            format!("`{}` is not a whole number (test with isInteger())", q.text),
        ));
    }
    i64::try_from(q.nanos / 1_000_000_000)
        .map(CelInt::from)
        .map_err(|_| {
            ExecutionError::function_error("asInteger", format!("`{}` is too large", q.text))
        })
}

fn as_approximate_float(q: &Quantity) -> CelDouble {
    (q.nanos as f64 / 1e9).into()
}

fn overflow(f: &str) -> ExecutionError {
    ExecutionError::function_error(f, "quantity overflow")
}

fn add(a: &Quantity, b: &Quantity) -> Result<Quantity, ExecutionError> {
    a.nanos
        .checked_add(b.nanos)
        .map(Quantity::from_nanos)
        .ok_or_else(|| overflow("add"))
}

fn add_int(a: &Quantity, b: &CelInt) -> Result<Quantity, ExecutionError> {
    (*b.inner() as i128)
        .checked_mul(1_000_000_000)
        .and_then(|n| a.nanos.checked_add(n))
        .map(Quantity::from_nanos)
        .ok_or_else(|| overflow("add"))
}

fn sub(a: &Quantity, b: &Quantity) -> Result<Quantity, ExecutionError> {
    a.nanos
        .checked_sub(b.nanos)
        .map(Quantity::from_nanos)
        .ok_or_else(|| overflow("sub"))
}

fn sub_int(a: &Quantity, b: &CelInt) -> Result<Quantity, ExecutionError> {
    (*b.inner() as i128)
        .checked_mul(1_000_000_000)
        .and_then(|n| a.nanos.checked_sub(n))
        .map(Quantity::from_nanos)
        .ok_or_else(|| overflow("sub"))
}

fn is_greater_than(a: &Quantity, b: &Quantity) -> CelBool {
    (a.nanos > b.nanos).into()
}

fn is_less_than(a: &Quantity, b: &Quantity) -> CelBool {
    (a.nanos < b.nanos).into()
}

fn compare_to(a: &Quantity, b: &Quantity) -> CelInt {
    (a.nanos.cmp(&b.nanos) as i64).into()
}

// ---------------------------------------------------------------- regex

fn regex(env: &mut Env) -> Result<(), DeclarationError> {
    cel::add_member_overload!(env, fn find: (CelString, CelString) -> Result<CelString>)?;
    cel::add_member_overload!(env, fn find_all: (CelString, CelString) -> Result<CelList>)?;
    cel::add_member_overload!(env, fn find_all_n: (CelString, CelString, CelInt) -> Result<CelList>,
        name = "findAll")?;
    Ok(())
}

fn compile_regex(f: &str, re: &str) -> Result<::regex::Regex, ExecutionError> {
    ::regex::Regex::new(re)
        .map_err(|e| ExecutionError::function_error(f, format!("invalid regular expression: {e}")))
}

fn find(s: &CelString<'_>, re: &CelString<'_>) -> Result<CelString<'static>, ExecutionError> {
    let re = compile_regex("find", re.inner())?;
    Ok(re
        .find(s.inner())
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default()
        .into())
}

fn find_all(s: &CelString<'_>, re: &CelString<'_>) -> Result<CelList<'static>, ExecutionError> {
    find_all_n(s, re, &CelInt::from(-1))
}

fn find_all_n(
    s: &CelString<'_>,
    re: &CelString<'_>,
    n: &CelInt,
) -> Result<CelList<'static>, ExecutionError> {
    let re = compile_regex("findAll", re.inner())?;
    // As Go's FindAllString: a negative limit means all matches.
    let limit = usize::try_from(*n.inner()).unwrap_or(usize::MAX);
    Ok(CelList::from(
        re.find_iter(s.inner())
            .take(limit)
            .map(|m| Box::new(CelString::from(m.as_str().to_owned())) as Box<dyn Val>)
            .collect::<Vec<_>>(),
    ))
}

// ---------------------------------------------------------------- lists

fn lists(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_member_overload("sum", "list.sum()", LIST_TYPE, vec![], list_sum)?;
    env.add_member_overload("min", "list.min()", LIST_TYPE, vec![], list_min)?;
    env.add_member_overload("max", "list.max()", LIST_TYPE, vec![], list_max)?;
    env.add_member_overload(
        "isSorted",
        "list.isSorted()",
        LIST_TYPE,
        vec![],
        list_is_sorted,
    )?;
    use cel::common::types::DYN_TYPE;
    env.add_member_overload(
        "indexOf",
        "list.indexOf(dyn)",
        LIST_TYPE,
        vec![DYN_TYPE],
        list_index_of,
    )?;
    env.add_member_overload(
        "lastIndexOf",
        "list.lastIndexOf(dyn)",
        LIST_TYPE,
        vec![DYN_TYPE],
        list_last_index_of,
    )?;
    Ok(())
}

/// The elements of the list receiver `args[0]`, after checking the arity.
fn elements<'b, 'v>(
    args: &'b [CowVal<'b, 'v>],
    arity: usize,
) -> Result<Vec<&'b (dyn Val + 'v)>, ExecutionError> {
    if args.len() != arity {
        return Err(ExecutionError::invalid_argument_count(arity, args.len()));
    }
    let list = args[0].as_ref();
    let it = list
        .as_iterable()
        .ok_or_else(|| ExecutionError::UnexpectedType {
            got: list.get_type().name().to_owned(),
            want: "list".to_owned(),
        })?;
    let mut items = it.iter();
    let mut out = Vec::new();
    while let Some(x) = items.next() {
        out.push(x);
    }
    Ok(out)
}

fn compare(f: &str, a: &dyn Val, b: &dyn Val) -> Result<Ordering, ExecutionError> {
    a.as_comparer()
        .ok_or_else(|| {
            ExecutionError::function_error(f, format!("cannot order {}", a.get_type().name()))
        })?
        .compare(b)
        .map_err(|_| {
            ExecutionError::function_error(
                f,
                format!(
                    "cannot order {} and {}",
                    a.get_type().name(),
                    b.get_type().name()
                ),
            )
        })
}

fn list_sum<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = elements(&args, 1)?;
    let mut ints: i64 = 0;
    let mut uints: u64 = 0;
    let mut doubles: f64 = 0.0;
    let (mut saw_int, mut saw_uint, mut saw_double) = (false, false, false);
    for x in items {
        if let Some(i) = x.downcast_ref::<CelInt>() {
            saw_int = true;
            ints = ints
                .checked_add(*i.inner())
                .ok_or_else(|| ExecutionError::function_error("sum", "integer overflow"))?;
        } else if let Some(u) = x.downcast_ref::<CelUInt>() {
            saw_uint = true;
            uints = uints
                .checked_add(*u.inner())
                .ok_or_else(|| ExecutionError::function_error("sum", "integer overflow"))?;
        } else if let Some(d) = x.downcast_ref::<CelDouble>() {
            saw_double = true;
            doubles += *d.inner();
        } else {
            return Err(ExecutionError::function_error(
                "sum",
                format!("cannot add {}", x.get_type().name()),
            ));
        }
    }
    match (saw_int, saw_uint, saw_double) {
        (_, false, false) => Ok(CowVal::owned(CelInt::from(ints))),
        (false, true, false) => Ok(CowVal::owned(CelUInt::from(uints))),
        (false, false, true) => Ok(CowVal::owned(CelDouble::from(doubles))),
        _ => Err(ExecutionError::function_error(
            "sum",
            "the list mixes number types (convert with int() or double())",
        )),
    }
}

fn extreme<'b, 'v>(
    f: &str,
    args: Vec<CowVal<'b, 'v>>,
    keep: Ordering,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = elements(&args, 1)?;
    let mut best: Option<&(dyn Val + 'v)> = None;
    for x in items {
        best = Some(match best {
            Some(b) if compare(f, x, b)? != keep => b,
            _ => x,
        });
    }
    match best {
        Some(b) => Ok(CowVal::from(b.clone_as_boxed())),
        None => Err(ExecutionError::function_error(f, "the list is empty")),
    }
}

fn list_min<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme("min", args, Ordering::Less)
}

fn list_max<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme("max", args, Ordering::Greater)
}

fn list_is_sorted<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = elements(&args, 1)?;
    for w in items.windows(2) {
        if compare("isSorted", w[0], w[1])? == Ordering::Greater {
            return Ok(CowVal::owned(CelBool::from(false)));
        }
    }
    Ok(CowVal::owned(CelBool::from(true)))
}

fn list_index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = elements(&args, 2)?;
    let needle = args[1].as_ref();
    let at = items
        .iter()
        .position(|x| x.equals(needle))
        .map_or(-1, |i| i as i64);
    Ok(CowVal::owned(CelInt::from(at)))
}

fn list_last_index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = elements(&args, 2)?;
    let needle = args[1].as_ref();
    let at = items
        .iter()
        .rposition(|x| x.equals(needle))
        .map_or(-1, |i| i as i64);
    Ok(CowVal::owned(CelInt::from(at)))
}

// ---------------------------------------------------------------- URLs

static URL: Type = Type::new_unspecified_type("net.URL");

/// A URL as Kubernetes' `url()` takes it: absolute (`https://host/path`) or an
/// absolute path (`/path`).
#[derive(Debug, Clone)]
pub(crate) struct Url {
    scheme: String,
    /// `host[:port]` as written (IPv6 in brackets); empty for a path.
    host: String,
    hostname: String,
    port: String,
    escaped_path: String,
    query: Vec<(String, String)>,
    text: String,
}

impl Url {
    fn parse(text: &str) -> Result<Url, String> {
        let bad = |why: &str| format!("`{text}` is not a URL: {why}");
        if text.starts_with('/') {
            let parsed =
                ::url::Url::parse(&format!("http://h{text}")).map_err(|e| bad(&e.to_string()))?;
            let mut u = Url::from_parsed(&parsed, text);
            u.scheme.clear();
            u.host.clear();
            u.hostname.clear();
            return Ok(u);
        }
        let parsed = ::url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        Ok(Url::from_parsed(&parsed, text))
    }

    fn from_parsed(u: &::url::Url, text: &str) -> Url {
        let hostname = match u.host() {
            Some(::url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => String::new(),
        };
        let host_shown = u.host_str().unwrap_or("").to_owned();
        // Only a port written in the URL: `url` drops a scheme's default port.
        let port = u.port().map(|p| p.to_string()).unwrap_or_default();
        let written_port = written_port(text).unwrap_or(port);
        let host = if written_port.is_empty() {
            host_shown
        } else {
            format!("{host_shown}:{written_port}")
        };
        Url {
            scheme: u.scheme().to_owned(),
            host,
            hostname,
            port: written_port,
            escaped_path: u.path().to_owned(),
            query: u
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            text: text.to_owned(),
        }
    }
}

/// The port as written after the authority's host, if any (`url` forgets a
/// scheme's default port, Go's `URL.Port()` does not).
fn written_port(text: &str) -> Option<String> {
    let rest = text.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit('@').next()?;
    let port = match host_port.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.1.strip_prefix(':')?,
        None => host_port.split_once(':')?.1,
    };
    Some(port.to_owned())
}

impl Val for Url {
    fn get_type(&self) -> &Type {
        <Self as Val>::cel_type()
    }
    fn cel_type() -> &'static Type {
        &URL
    }
    fn equals(&self, other: &dyn Val) -> bool {
        other
            .downcast_ref::<Url>()
            .is_some_and(|o| o.text == self.text)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}
impl StaticVal for Url {}

fn urls(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_type(URL.to_owned())?;
    cel::add_overload!(env, fn url: (CelString) -> Result<Url>)?;
    cel::add_overload!(env, fn is_url: (CelString) -> CelBool, name = "isURL")?;
    cel::add_member_overload!(env, fn get_scheme: (Url) -> CelString)?;
    cel::add_member_overload!(env, fn get_host: (Url) -> CelString)?;
    cel::add_member_overload!(env, fn get_hostname: (Url) -> CelString)?;
    cel::add_member_overload!(env, fn get_port: (Url) -> CelString)?;
    cel::add_member_overload!(env, fn get_escaped_path: (Url) -> CelString)?;
    cel::add_member_overload!(env, fn get_query: (Url) -> CelMap)?;
    Ok(())
}

fn url(s: &CelString<'_>) -> Result<Url, ExecutionError> {
    Url::parse(s.inner()).map_err(|e| ExecutionError::function_error("url", e))
}

fn is_url(s: &CelString<'_>) -> CelBool {
    Url::parse(s.inner()).is_ok().into()
}

fn get_scheme(u: &Url) -> CelString<'static> {
    u.scheme.clone().into()
}

fn get_host(u: &Url) -> CelString<'static> {
    u.host.clone().into()
}

fn get_hostname(u: &Url) -> CelString<'static> {
    u.hostname.clone().into()
}

fn get_port(u: &Url) -> CelString<'static> {
    u.port.clone().into()
}

fn get_escaped_path(u: &Url) -> CelString<'static> {
    u.escaped_path.clone().into()
}

/// `map(string, list(string))`, as Go's `url.Values`.
fn get_query(u: &Url) -> CelMap<'static> {
    let mut grouped: Vec<(String, Vec<String>)> = Vec::new();
    for (k, v) in &u.query {
        match grouped.iter_mut().find(|(g, _)| g == k) {
            Some((_, vs)) => vs.push(v.clone()),
            None => grouped.push((k.clone(), vec![v.clone()])),
        }
    }
    CelMap::from(
        grouped
            .into_iter()
            .map(|(k, vs)| {
                (
                    CelMapKey::String(CelString::from(k)),
                    Box::new(CelList::from(
                        vs.into_iter()
                            .map(|v| Box::new(CelString::from(v)) as Box<dyn Val>)
                            .collect::<Vec<_>>(),
                    )) as Box<dyn Val>,
                )
            })
            .collect::<HashMap<_, _>>(),
    )
}

/// How many arguments each function takes (a method's receiver not counted), for
/// lint: CEL parses a call with any number of arguments and fails only when it
/// runs. `(name, is a method, allowed counts)`; names not listed are not checked.
pub(crate) const ARITIES: &[(&str, bool, &[usize])] = &[
    // Global functions: CEL's conversions and Kubernetes' constructors.
    ("quantity", false, &[1]),
    ("isQuantity", false, &[1]),
    ("url", false, &[1]),
    ("isURL", false, &[1]),
    ("size", false, &[1]),
    ("int", false, &[1]),
    ("uint", false, &[1]),
    ("double", false, &[1]),
    ("string", false, &[1]),
    ("bool", false, &[1]),
    ("bytes", false, &[1]),
    ("timestamp", false, &[1]),
    ("duration", false, &[1]),
    ("type", false, &[1]),
    ("dyn", false, &[1]),
    ("matches", false, &[2]),
    // Quantities.
    ("sign", true, &[0]),
    ("isInteger", true, &[0]),
    ("asInteger", true, &[0]),
    ("asApproximateFloat", true, &[0]),
    ("add", true, &[1]),
    ("sub", true, &[1]),
    ("isGreaterThan", true, &[1]),
    ("isLessThan", true, &[1]),
    ("compareTo", true, &[1]),
    // Regex.
    ("matches", true, &[1]),
    ("find", true, &[1]),
    ("findAll", true, &[1, 2]),
    // Lists (and strings' indexOf with an offset).
    ("sum", true, &[0]),
    ("min", true, &[0]),
    ("max", true, &[0]),
    ("isSorted", true, &[0]),
    ("indexOf", true, &[1, 2]),
    ("lastIndexOf", true, &[1, 2]),
    ("size", true, &[0]),
    // URLs.
    ("getScheme", true, &[0]),
    ("getHost", true, &[0]),
    ("getHostname", true, &[0]),
    ("getPort", true, &[0]),
    ("getEscapedPath", true, &[0]),
    ("getQuery", true, &[0]),
    // Strings.
    ("lowerAscii", true, &[0]),
    ("upperAscii", true, &[0]),
    ("trim", true, &[0]),
    ("split", true, &[1, 2]),
    ("join", true, &[0, 1]),
    ("replace", true, &[2, 3]),
    ("substring", true, &[1, 2]),
    ("charAt", true, &[1]),
    ("startsWith", true, &[1]),
    ("endsWith", true, &[1]),
    ("contains", true, &[1]),
    ("reverse", true, &[0]),
    // Timestamps.
    ("getHours", true, &[0, 1]),
    ("getMinutes", true, &[0, 1]),
    ("getDayOfWeek", true, &[0, 1]),
];

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::expr::{eval, eval_bool};

    fn holds(expr: &str) {
        assert_eq!(
            eval_bool(expr, &json!({})).map_err(|e| e.message),
            Ok(true),
            "{expr}"
        );
    }

    #[test]
    fn quantities_parse_compare_and_convert_like_kubernetes() {
        holds("quantity('15k').isGreaterThan(quantity('14999'))");
        holds("quantity('1Gi').compareTo(quantity('1024Mi')) == 0");
        holds("quantity('500m').isLessThan(quantity('1'))");
        holds("quantity('1.5Gi').asInteger() == 1610612736");
        holds("quantity('2e3').asInteger() == 2000");
        holds("quantity('100Mi') == quantity('104857600')");
        holds("isQuantity('3Ti') && !isQuantity('3 apples') && !isQuantity('')");
        holds("!quantity('250m').isInteger() && quantity('-2').sign() == -1");
        holds("quantity('1').add(quantity('500m')).asApproximateFloat() == 1.5");
        holds("quantity('1k').sub(1).asInteger() == 999");
        assert!(eval("quantity('250m').asInteger()", &json!({})).is_err());
        assert!(eval("quantity('abc')", &json!({})).is_err());
        // Over JSON data, as conditions see a pod's resources.
        let pod = json!({"c": {"resources": {"limits": {"memory": "512Mi"}}}});
        assert!(
            eval_bool(
                "quantity(c.resources.limits.memory).isGreaterThan(quantity('256Mi'))",
                &pod
            )
            .unwrap()
        );
    }

    #[test]
    fn regex_find_and_find_all() {
        holds("'abc 123 def 456'.find('[0-9]+') == '123'");
        holds("'abc'.find('[0-9]+') == ''");
        holds("'abc 123 def 456'.findAll('[0-9]+') == ['123', '456']");
        holds("'a1 b2 c3'.findAll('[0-9]', 2) == ['1', '2']");
        holds("'image:v1.2'.matches('^image:v[0-9.]+$')");
        assert!(eval("'x'.find('(')", &json!({})).is_err());
    }

    #[test]
    fn list_functions() {
        holds("[1, 2, 3].sum() == 6 && [1.5, 2.5].sum() == 4.0 && [].sum() == 0");
        holds("[3, 1, 2].min() == 1 && [3, 1, 2].max() == 3 && ['b', 'a'].min() == 'a'");
        holds("[1, 2, 2, 3].isSorted() && ![2, 1].isSorted()");
        holds("['a', 'b', 'a'].indexOf('a') == 0 && ['a', 'b', 'a'].lastIndexOf('a') == 2");
        holds("[1, 2].indexOf(5) == -1");
        holds("'hello'.indexOf('l') == 2");
        assert!(eval("[].min()", &json!({})).is_err());
        assert_eq!(
            eval("xs.map(x, x.n).sum()", &json!({"xs": [{"n": 2}, {"n": 3}]})).unwrap(),
            json!(5)
        );
    }

    #[test]
    fn strings_library() {
        holds("'  Hub  '.trim().lowerAscii() == 'hub' && 'hub'.upperAscii() == 'HUB'");
        holds("'a,b,c'.split(',') == ['a', 'b', 'c'] && ['a', 'b'].join('-') == 'a-b'");
        holds("'node-1'.replace('-', '_') == 'node_1' && 'prometheus'.substring(0, 4) == 'prom'");
    }

    #[test]
    fn urls_like_kubernetes() {
        holds("url('https://example.com:8443/a%20b?x=1&x=2&y=3').getScheme() == 'https'");
        holds("url('https://example.com:8443/path').getHost() == 'example.com:8443'");
        holds("url('https://example.com:8443/path').getHostname() == 'example.com'");
        holds("url('https://example.com:8443/path').getPort() == '8443'");
        holds("url('https://example.com/path').getPort() == ''");
        holds(
            "url('https://[::1]:80/').getHost() == '[::1]:80' && url('https://[::1]:80/').getHostname() == '::1'",
        );
        holds("url('https://example.com/a%20b').getEscapedPath() == '/a%20b'");
        holds("url('https://e.com/?x=1&x=2&y=3').getQuery() == {'x': ['1', '2'], 'y': ['3']}");
        holds("url('/readyz').getEscapedPath() == '/readyz' && url('/readyz').getHost() == ''");
        holds("isURL('https://example.com') && !isURL('not a url')");
    }
}
