//! Small readers of Kubernetes objects as JSON, used by every controller and handler.

use std::collections::BTreeMap;

use serde_json::Value;

pub(super) fn labels_of(v: &Value) -> BTreeMap<String, String> {
    v.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

pub fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    at(v, ptr).and_then(Value::as_str).unwrap_or("")
}

/// `Value::pointer` without its per-segment allocations (controllers and list filters
/// call this for every object); escaped pointers (`~0`, `~1`) go the slow way.
pub fn at<'a>(v: &'a Value, ptr: &str) -> Option<&'a Value> {
    if ptr.contains('~') || !(ptr.is_empty() || ptr.starts_with('/')) {
        return v.pointer(ptr);
    }
    ptr.split('/').skip(1).try_fold(v, |v, k| match v {
        Value::Object(m) => m.get(k),
        // serde_json's parse_index: no sign, no leading zero.
        Value::Array(a) if !k.starts_with('+') && (k == "0" || !k.starts_with('0')) => {
            k.parse::<usize>().ok().and_then(|i| a.get(i))
        }
        _ => None,
    })
}

pub fn finalizers(v: &Value) -> Vec<String> {
    at(v, "/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

pub fn owner_uids(v: &Value) -> Vec<String> {
    at(v, "/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|o| o["uid"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The controller owner reference (`controller: true`), if any.
pub fn controller_of(v: &Value) -> Option<&Value> {
    at(v, "/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|o| o["controller"] == true)
}

/// Pod condition Ready is True.
pub fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn at_agrees_with_json_pointer() {
        let v = json!({"metadata": {"name": "a", "annotations": {"x/y": "1", "t~": "2"}},
            "spec": {"containers": [{"name": "c"}]}});
        for p in [
            "",
            "/metadata/name",
            "/metadata/missing",
            "/spec/containers/0/name",
            "/spec/containers/1/name",
            "/spec/containers/x",
            "/spec/containers/00",
            "/spec/containers/+0",
            "/metadata/annotations/x~1y",
            "/metadata/annotations/t~0",
            "/metadata/name/deeper",
            "metadata",
        ] {
            assert_eq!(at(&v, p), v.pointer(p), "{p}");
        }
    }
}
