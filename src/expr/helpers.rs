//! Template helpers beyond handlebars' own (`len`, `eq`, `if`...): counts and ages
//! for plans and summaries, e.g. "{{len lost_pods}} pods, ages {{ages lost_pods
//! "metadata.creationTimestamp"}}, on {{count lost_pods "spec.nodeName"}} nodes".
//!
//! - `{{count LIST "PATH"}}`: how many distinct values the items have at PATH
//!   (a dotted path into each item; missing and null values are not counted);
//! - `{{count LIST "PATH" VALUE}}`: how many items have VALUE at PATH;
//! - `{{min LIST}}` / `{{max LIST}}`, or `{{min LIST "PATH"}}`: the smallest /
//!   largest number or timestamp (RFC 3339 text, compared as times), as written;
//! - `{{age TIMESTAMP}}`: how long ago, from the run's clock (`3h`, `2d`);
//! - `{{ages LIST "PATH"}}`: the youngest and oldest age, `4h–2d` (one age when
//!   they are equal);
//! - `{{urlencode VALUE}}`: VALUE percent-encoded for one URL path segment or query
//!   value (everything but RFC 3986's unreserved `A-Z a-z 0-9 - . _ ~`), so a value
//!   with `&`, `+`, `/` or `#` stays one value.

use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderError,
    RenderErrorReason,
};
use serde_json::Value;

pub(super) fn register(hb: &mut Handlebars<'_>) {
    hb.register_helper("count", Box::new(count));
    hb.register_helper("min", Box::new(min));
    hb.register_helper("max", Box::new(max));
    hb.register_helper("age", Box::new(age));
    hb.register_helper("ages", Box::new(ages));
    hb.register_helper("urlencode", Box::new(urlencode));
}

/// `{{urlencode VALUE}}`: strict percent-encoding (uppercase hex, as the secret
/// masker in engine/redact.rs expects of a URL-encoded secret). A number or a
/// boolean is encoded as written; a list or a mapping is refused.
fn urlencode(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let text = match h.param(0).map(|p| p.value()) {
        Some(Value::String(s)) => s.clone(),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
        Some(other) => {
            return Err(fail(
                "urlencode",
                format!("takes a string, got {}", short(other)),
            ));
        }
        None => return Err(fail("urlencode", "takes a value")),
    };
    let mut encoded = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    out.write(&encoded)?;
    Ok(())
}

fn fail(helper: &str, why: impl Into<String>) -> RenderError {
    RenderErrorReason::Other(format!("`{helper}`: {}", why.into())).into()
}

fn list<'a>(h: &'a Helper<'_>, name: &str) -> Result<&'a [Value], RenderError> {
    match h.param(0).map(|p| p.value()) {
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(fail(
            name,
            format!("takes a list first, got {}", short(other)),
        )),
        None => Err(fail(name, "takes a list first")),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

fn path_arg<'a>(h: &'a Helper<'_>, i: usize, name: &str) -> Result<Option<&'a str>, RenderError> {
    match h.param(i).map(|p| p.value()) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(fail(
            name,
            format!("takes a dotted path in quotes, got {}", short(other)),
        )),
    }
}

/// The value at a dotted `path` inside `item` (the item itself for no path).
fn at<'v>(item: &'v Value, path: Option<&str>) -> Option<&'v Value> {
    let Some(path) = path.filter(|p| !p.is_empty()) else {
        return Some(item);
    };
    path.split('.').try_fold(item, |v, key| match v {
        Value::Object(m) => m.get(key),
        Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn count(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let items = list(h, "count")?;
    let path = path_arg(h, 1, "count")?;
    let n = match h.param(2).map(|p| p.value()) {
        Some(wanted) => items.iter().filter(|i| at(i, path) == Some(wanted)).count(),
        None => {
            let mut seen: Vec<&Value> = Vec::new();
            for v in items.iter().filter_map(|i| at(i, path)) {
                if !v.is_null() && !seen.contains(&v) {
                    seen.push(v);
                }
            }
            seen.len()
        }
    };
    out.write(&n.to_string())?;
    Ok(())
}

/// How two values order: numbers as numbers, RFC 3339 timestamps as times, other
/// strings as text.
fn order(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => match (timestamp(x), timestamp(y)) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => Some(x.cmp(y)),
        },
        _ => None,
    }
}

fn timestamp(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

fn extreme(h: &Helper<'_>, name: &str, keep: std::cmp::Ordering) -> Result<String, RenderError> {
    let items = list(h, name)?;
    let path = path_arg(h, 1, name)?;
    let mut best: Option<&Value> = None;
    for v in items
        .iter()
        .filter_map(|i| at(i, path))
        .filter(|v| !v.is_null())
    {
        best = Some(match best {
            None => v,
            Some(b) => match order(v, b) {
                Some(o) if o == keep => v,
                Some(_) => b,
                None => {
                    return Err(fail(
                        name,
                        format!("cannot compare {} with {}", short(v), short(b)),
                    ));
                }
            },
        });
    }
    Ok(match best {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    })
}

fn min(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    out.write(&extreme(h, "min", std::cmp::Ordering::Less)?)?;
    Ok(())
}

fn max(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    out.write(&extreme(h, "max", std::cmp::Ordering::Greater)?)?;
    Ok(())
}

/// A duration the way `kubectl get` shows ages: its largest unit.
pub(crate) fn short_age(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn age_of(name: &str, v: &Value) -> Result<chrono::Duration, RenderError> {
    let t = v
        .as_str()
        .and_then(timestamp)
        .ok_or_else(|| fail(name, format!("takes RFC 3339 timestamps, got {}", short(v))))?;
    Ok(super::condition::now_or_wall_clock() - t)
}

fn age(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let v = h
        .param(0)
        .map(|p| p.value())
        .ok_or_else(|| fail("age", "takes a timestamp"))?;
    out.write(&short_age(age_of("age", v)?))?;
    Ok(())
}

fn ages(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let items = list(h, "ages")?;
    let path = path_arg(h, 1, "ages")?;
    let mut all = Vec::new();
    for v in items
        .iter()
        .filter_map(|i| at(i, path))
        .filter(|v| !v.is_null())
    {
        all.push(age_of("ages", v)?);
    }
    let (Some(young), Some(old)) = (all.iter().min(), all.iter().max()) else {
        return Ok(());
    };
    let (young, old) = (short_age(*young), short_age(*old));
    if young == old {
        out.write(&young)?;
    } else {
        out.write(&format!("{young}–{old}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use crate::expr::{render, with_clock_sync};

    struct At(chrono::DateTime<chrono::Utc>);
    impl crate::clock::Clock for At {
        fn now(&self) -> chrono::DateTime<chrono::Utc> {
            self.0
        }
        fn sleep(&self, _: std::time::Duration) -> futures::future::BoxFuture<'_, ()> {
            Box::pin(async {})
        }
    }

    fn pods() -> serde_json::Value {
        json!({"pods": [
            {"metadata": {"creationTimestamp": "2026-03-11T14:00:00Z"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Unknown"}},
            {"metadata": {"creationTimestamp": "2026-03-13T10:00:00Z"}, "spec": {"nodeName": "n2"}, "status": {"phase": "Running"}},
            {"metadata": {"creationTimestamp": "2026-03-13T13:30:00Z"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Unknown"}},
            {"metadata": {}, "spec": {}}
        ]})
    }

    #[test]
    fn count_counts_distinct_values_or_matches() {
        let ctx = pods();
        assert_eq!(
            render("{{count pods \"spec.nodeName\"}}", &ctx).unwrap(),
            "2"
        );
        assert_eq!(
            render("{{count pods \"status.phase\" \"Unknown\"}}", &ctx).unwrap(),
            "2"
        );
        assert!(render("{{count params}}", &json!({"params": {}})).is_err());
    }

    #[test]
    fn min_max_and_ages_of_timestamps() {
        let clock: Arc<dyn crate::clock::Clock> =
            Arc::new(At("2026-03-13T14:00:00Z".parse().expect("a timestamp")));
        with_clock_sync(clock, || {
            let ctx = pods();
            assert_eq!(
                render("{{min pods \"metadata.creationTimestamp\"}}", &ctx).unwrap(),
                "2026-03-11T14:00:00Z"
            );
            assert_eq!(
                render("{{max pods \"metadata.creationTimestamp\"}}", &ctx).unwrap(),
                "2026-03-13T13:30:00Z"
            );
            assert_eq!(
                render(
                    "{{len pods}} pods, ages {{ages pods \"metadata.creationTimestamp\"}}, on {{count pods \"spec.nodeName\"}} nodes",
                    &ctx
                )
                .unwrap(),
                "4 pods, ages 30m–2d, on 2 nodes"
            );
            assert_eq!(
                render("{{age (max pods \"metadata.creationTimestamp\")}}", &ctx).unwrap(),
                "30m"
            );
            assert_eq!(
                render("{{max xs}}", &json!({"xs": [3, 10, 2]})).unwrap(),
                "10"
            );
        });
    }

    #[test]
    fn urlencode_keeps_a_value_one_query_value() {
        let ctx = json!({"params": {"token": "a+b/c&d=e f~", "n": 3}});
        assert_eq!(
            render(
                "q={{urlencode params.token}}&n={{urlencode params.n}}",
                &ctx
            )
            .unwrap(),
            "q=a%2Bb%2Fc%26d%3De%20f~&n=3"
        );
        assert!(render("{{urlencode params}}", &ctx).is_err());
    }
}
