//! The three PATCH flavours kubectl and kube send (reference/kubernetes.md §4.6).

use serde_json::Value;

/// RFC 7386 JSON merge patch: objects merge, `null` deletes, everything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Strategic merge patch, approximated: like a merge patch, except that lists of
/// objects which all carry a merge key (`name`, or `type` for conditions) merge by
/// that key, and `$`-directives (`$setElementOrder/…`, `$retainKeys`) are ignored.
/// Lists without a merge key (node `spec.taints`, which kubectl taint sends whole,
/// §1.5) replace the old list, which is what the real server does for them.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        let slot = t.entry(k.clone()).or_insert(Value::Null);
        match (slot.as_array_mut(), v.as_array()) {
            (Some(old), Some(new)) => {
                if let Some(key) = merge_key(k, old, new) {
                    merge_list(old, new, key);
                } else {
                    *slot = v.clone();
                }
            }
            _ => strategic_merge(slot, v),
        }
    }
}

fn merge_key(field: &str, old: &[Value], new: &[Value]) -> Option<&'static str> {
    let all_have = |key: &str| {
        !new.is_empty()
            && old
                .iter()
                .chain(new)
                .all(|e| e.get(key).is_some_and(Value::is_string))
    };
    if field == "conditions" && all_have("type") {
        Some("type")
    } else if field != "taints" && all_have("name") {
        Some("name")
    } else {
        None
    }
}

fn merge_list(old: &mut Vec<Value>, new: &[Value], key: &str) {
    for item in new {
        let id = item.get(key).cloned();
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match old.iter().position(|o| o.get(key) == id.as_ref()) {
            Some(i) if delete => {
                old.remove(i);
            }
            Some(i) => strategic_merge(&mut old[i], item),
            None if delete => {}
            None => old.push(item.clone()),
        }
    }
}

/// RFC 6902 JSON patch.
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch must be an array of operations")?;
    for op in ops {
        let kind = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or("operation without \"op\"")?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or("operation without \"path\"")?;
        match kind {
            "add" => add(target, path, value_of(op)?)?,
            "remove" => {
                remove(target, path)?;
            }
            "replace" => {
                remove(target, path)?;
                add(target, path, value_of(op)?)?;
            }
            "test" => {
                if target.pointer(path) != Some(&value_of(op)?) {
                    return Err(format!("test operation failed at {path}"));
                }
            }
            "move" | "copy" => {
                let from = op
                    .get("from")
                    .and_then(Value::as_str)
                    .ok_or("operation without \"from\"")?;
                let v = if kind == "move" {
                    remove(target, from)?
                } else {
                    target
                        .pointer(from)
                        .cloned()
                        .ok_or(format!("no value at {from}"))?
                };
                add(target, path, v)?;
            }
            other => return Err(format!("unknown JSON patch operation {other:?}")),
        }
    }
    Ok(())
}

fn value_of(op: &Value) -> Result<Value, String> {
    op.get("value")
        .cloned()
        .ok_or_else(|| "operation without \"value\"".to_string())
}

fn split(path: &str) -> Result<(String, String), String> {
    let i = path
        .rfind('/')
        .ok_or(format!("invalid JSON pointer {path:?}"))?;
    let last = path[i + 1..].replace("~1", "/").replace("~0", "~");
    Ok((path[..i].to_string(), last))
}

fn add(target: &mut Value, path: &str, v: Value) -> Result<(), String> {
    if path.is_empty() {
        *target = v;
        return Ok(());
    }
    let (parent, last) = split(path)?;
    let p = target
        .pointer_mut(&parent)
        .ok_or(format!("no parent for {path}"))?;
    match p {
        Value::Object(m) => {
            m.insert(last, v);
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(v);
            } else {
                let i: usize = last
                    .parse()
                    .map_err(|_| format!("invalid index in {path}"))?;
                if i > a.len() {
                    return Err(format!("index out of range in {path}"));
                }
                a.insert(i, v);
            }
        }
        _ => return Err(format!("cannot add to a scalar at {path}")),
    }
    Ok(())
}

fn remove(target: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split(path)?;
    let p = target
        .pointer_mut(&parent)
        .ok_or(format!("no value at {path}"))?;
    match p {
        Value::Object(m) => m.remove(&last).ok_or(format!("no value at {path}")),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid index in {path}"))?;
            if i >= a.len() {
                return Err(format!("index out of range in {path}"));
            }
            Ok(a.remove(i))
        }
        _ => Err(format!("no value at {path}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn uncordon_patch_with_null_removes_unschedulable() {
        let mut node = json!({"spec": {"unschedulable": true, "podCIDR": "10.0.0.0/24"}});
        strategic_merge(&mut node, &json!({"spec": {"unschedulable": null}}));
        assert_eq!(node, json!({"spec": {"podCIDR": "10.0.0.0/24"}}));
    }

    #[test]
    fn strategic_merge_merges_containers_by_name_and_replaces_taints() {
        let mut obj = json!({"spec": {
            "containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}],
            "taints": [{"key": "k1", "effect": "NoSchedule"}]}});
        strategic_merge(
            &mut obj,
            &json!({"spec": {
            "containers": [{"name": "b", "image": "y:2"}],
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "taints": [{"key": "k2", "effect": "NoExecute"}]}}),
        );
        assert_eq!(obj["spec"]["containers"][0]["image"], "x:1");
        assert_eq!(obj["spec"]["containers"][1]["image"], "y:2");
        assert_eq!(
            obj["spec"]["taints"],
            json!([{"key": "k2", "effect": "NoExecute"}])
        );
    }

    #[test]
    fn json_patch_applies_add_replace_remove_and_fails_a_test() {
        let mut obj = json!({"metadata": {"labels": {"a": "1"}}, "list": [1, 2]});
        json_patch(
            &mut obj,
            &json!([
                {"op": "add", "path": "/metadata/labels/b", "value": "2"},
                {"op": "replace", "path": "/metadata/labels/a", "value": "3"},
                {"op": "remove", "path": "/list/0"},
                {"op": "add", "path": "/list/-", "value": 9}
            ]),
        )
        .unwrap();
        assert_eq!(
            obj,
            json!({"metadata": {"labels": {"a": "3", "b": "2"}}, "list": [2, 9]})
        );
        assert!(
            json_patch(
                &mut obj,
                &json!([{"op": "test", "path": "/list/0", "value": 1}])
            )
            .is_err()
        );
    }
}
