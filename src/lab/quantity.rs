//! Resource quantities (`500m`, `2`, `1Gi`, `512M`, `1e3`) as the scheduler, quota
//! admission and the autoscaler compare them, and the resource lists of pods and nodes.
//!
//! Everything is kept in milli-units (`i128`), as `resource.Quantity.MilliValue()`
//! does, so `cpu: 250m` and `memory: 1Gi` add up exactly and no request can overflow.

use std::collections::BTreeMap;

use serde_json::Value;

/// The resources the lab schedules on, in the order the real scheduler reports them.
pub const SCHEDULED: &[&str] = &["cpu", "memory", "ephemeral-storage"];

/// Parse a Kubernetes quantity into milli-units; `None` when it is not one.
pub fn parse_milli(q: &Value) -> Option<i128> {
    let s = match q {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    const SUFFIXES: &[(&str, i128)] = &[
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("Ei", 1 << 60),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
        ("E", 1_000_000_000_000_000_000),
    ];
    if let Some(num) = s.strip_suffix('m') {
        return decimal_milli(num, 1).map(|v| v / 1000);
    }
    for (suf, mult) in SUFFIXES {
        if let Some(num) = s.strip_suffix(suf) {
            return decimal_milli(num, *mult);
        }
    }
    if let Some((mant, exp)) = s.split_once(['e', 'E']) {
        let exp: u32 = exp.parse().ok().filter(|e| *e <= 18)?;
        return decimal_milli(mant, 10_i128.pow(exp));
    }
    decimal_milli(&s, 1)
}

/// `num × mult × 1000`, for a plain decimal `num` (`1`, `0.5`, `2.25`).
fn decimal_milli(num: &str, mult: i128) -> Option<i128> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || int.len() > 20
    {
        return None;
    }
    let frac = &frac[..frac.len().min(9)];
    let int: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let scale = 10_i128.pow(frac.len() as u32);
    let frac: i128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let total = int.checked_mul(scale)?.checked_add(frac)?;
    total
        .checked_mul(mult)?
        .checked_mul(1000)?
        .checked_div(scale)
}

/// A quantity for messages, as `kubectl describe` and the quota admission print them:
/// cpu in cores or millicores, bytes with the largest binary suffix that divides them.
pub fn format(resource: &str, milli: i128) -> String {
    if resource.ends_with("cpu") {
        return if milli % 1000 == 0 {
            (milli / 1000).to_string()
        } else {
            format!("{milli}m")
        };
    }
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let v = milli / 1000;
    for (suf, mult) in [
        ("Ti", 1_i128 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if v != 0 && v % mult == 0 {
            return format!("{}{suf}", v / mult);
        }
    }
    v.to_string()
}

/// A resource list (`{cpu: 500m, memory: 1Gi}`) in milli-units; unparseable entries
/// are left out.
pub fn list(v: Option<&Value>) -> BTreeMap<String, i128> {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, q)| parse_milli(q).map(|m| (k.clone(), m)))
        .collect()
}

/// What a pod requests, as the scheduler computes it (`resource.PodRequests`): the sum
/// over its containers, or the largest init container when that is more, plus the
/// pod overhead. Limits stand in for missing requests, as API defaulting does.
pub fn pod_requests(pod: &Value) -> BTreeMap<String, i128> {
    pod_resources(pod, "requests")
}

/// A pod's limits, summed like its requests (quota's `limits.*`).
pub fn pod_limits(pod: &Value) -> BTreeMap<String, i128> {
    pod_resources(pod, "limits")
}

fn pod_resources(pod: &Value, which: &str) -> BTreeMap<String, i128> {
    // Keys read with `get`, not `pointer` (which allocates per segment): the index
    // computes this on every pod write.
    fn resources<'a>(c: &'a Value, which: &str) -> Option<&'a Value> {
        c.get("resources").and_then(|r| r.get(which))
    }
    let of = |c: &Value| {
        let mut r = list(resources(c, which));
        if which == "requests" {
            for (k, v) in list(resources(c, "limits")) {
                r.entry(k).or_insert(v);
            }
        }
        r
    };
    let mut sum: BTreeMap<String, i128> = BTreeMap::new();
    for c in containers(pod, "containers") {
        for (k, v) in of(c) {
            *sum.entry(k).or_default() += v;
        }
    }
    for c in containers(pod, "initContainers") {
        for (k, v) in of(c) {
            let e = sum.entry(k).or_default();
            *e = (*e).max(v);
        }
    }
    for (k, v) in list(pod.get("spec").and_then(|s| s.get("overhead"))) {
        *sum.entry(k).or_default() += v;
    }
    sum
}

fn containers<'a>(pod: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    pod.get("spec")
        .and_then(|s| s.get(field))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_parse_to_milli_units() {
        assert_eq!(parse_milli(&json!("500m")), Some(500));
        assert_eq!(parse_milli(&json!("2")), Some(2000));
        assert_eq!(parse_milli(&json!(1.5)), Some(1500));
        assert_eq!(parse_milli(&json!("1Gi")), Some((1 << 30) * 1000));
        assert_eq!(parse_milli(&json!("512M")), Some(512_000_000_000));
        assert_eq!(parse_milli(&json!("1e3")), Some(1_000_000));
        assert_eq!(parse_milli(&json!("abc")), None);
        assert_eq!(parse_milli(&json!("")), None);
    }

    #[test]
    fn quantities_print_like_kubectl() {
        assert_eq!(format("cpu", 1500), "1500m");
        assert_eq!(format("cpu", 2000), "2");
        assert_eq!(format("memory", (3 << 30) * 1000), "3Gi");
        assert_eq!(format("requests.memory", (512 << 20) * 1000), "512Mi");
        assert_eq!(format("pods", 4000), "4");
    }

    #[test]
    fn pod_requests_sum_containers_and_default_to_limits() {
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}]}});
        let r = pod_requests(&pod);
        assert_eq!(r["cpu"], 2000);
        assert_eq!(r["memory"], (2 << 30) * 1000);
    }
}
