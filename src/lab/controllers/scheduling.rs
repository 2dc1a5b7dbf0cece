//! The scheduler.

use serde_json::{Value, json};

use super::*;
use crate::lab::clock::ts;
use crate::lab::state::{State, str_at};

/// Scheduler: an unbound pod goes to a Ready, schedulable node whose NoSchedule and
/// NoExecute taints it tolerates, preferring the node with the fewest pods.
///
/// Only unbound pods that changed are looked at, or all unbound pods when a node
/// changed (it may have become Ready or schedulable).
pub(super) fn scheduler(st: &mut State, d: &Dirty) {
    let unbound = if d.all || !d.nodes.is_empty() {
        st.store.index.pods_on("")
    } else {
        d.pods.iter().cloned().collect()
    };
    let pending: Vec<Value> = pods_by_key(st, &unbound)
        .into_iter()
        .filter(|p| {
            str_at(p, "/spec/nodeName").is_empty()
                && active(p)
                && str_at(p, "/status/phase") == "Pending"
        })
        .collect();
    if pending.is_empty() {
        return;
    }
    let nodes = st.store.list_owned("nodes", None);
    for pod in pending {
        let candidates: Vec<&Value> = nodes
            .iter()
            .filter(|n| node_ready(n) && n.pointer("/spec/unschedulable") != Some(&json!(true)))
            .filter(|n| {
                n.pointer("/spec/taints")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .all(|t| {
                        let effect = t["effect"].as_str().unwrap_or("");
                        effect == "PreferNoSchedule"
                            || tolerates_any(&pod, t["key"].as_str().unwrap_or(""), effect)
                    })
            })
            .collect();
        let (ns, name) = (
            str_at(&pod, "/metadata/namespace").to_string(),
            str_at(&pod, "/metadata/name").to_string(),
        );
        // The index counts every pod bound to the node, this pass's bindings included.
        let best = candidates.into_iter().min_by_key(|n| {
            let nn = str_at(n, "/metadata/name");
            (st.store.index.pod_count_on(nn), nn.to_string())
        });
        let mut p = pod.clone();
        let now = ts(st.now());
        let mut conds: Vec<Value> = p
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        match best {
            Some(n) => {
                p["spec"]["nodeName"] = n["metadata"]["name"].clone();
                set_condition(&mut conds, "PodScheduled", "True", "", "", &now);
                p["status"]["conditions"] = json!(conds);
                st.store.update("pods", &ns, &name, p.clone());
                let msg = format!(
                    "Successfully assigned {ns}/{name} to {}",
                    str_at(n, "/metadata/name")
                );
                st.record_event(&p, "Normal", "Scheduled", &msg, "default-scheduler");
            }
            None => {
                set_condition(
                    &mut conds,
                    "PodScheduled",
                    "False",
                    "Unschedulable",
                    "0/N nodes are available: no Ready, schedulable node tolerated by the pod.",
                    &now,
                );
                p["status"]["conditions"] = json!(conds);
                st.store.update("pods", &ns, &name, p.clone());
                st.record_event(
                    &p,
                    "Warning",
                    "FailedScheduling",
                    &format!(
                        "0/{} nodes are available: nodes are not ready, cordoned or tainted.",
                        nodes.len()
                    ),
                    "default-scheduler",
                );
            }
        }
    }
}

pub(super) fn tolerates_any(pod: &Value, key: &str, effect: &str) -> bool {
    pod.pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .is_some_and(|ts| {
            ts.iter().any(|t| {
                let key_ok = match t.get("key").and_then(Value::as_str) {
                    None | Some("") => t["operator"] == "Exists",
                    Some(k) => k == key,
                };
                let effect_ok = t
                    .get("effect")
                    .and_then(Value::as_str)
                    .is_none_or(|e| e.is_empty() || e == effect);
                key_ok && effect_ok
            })
        })
}
