//! The scheduler: filters nodes the way kube-scheduler's default plugins do, binds a
//! pod to the least busy node that passes, and leaves it Pending with the scheduler's
//! own `FailedScheduling` wording when none does.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::*;
use crate::lab::clock::ts;
use crate::lab::quantity::{self, SCHEDULED};
use crate::lab::state::{State, str_at};

/// What is bound to a node with declared allocatable: summed requests and pod count,
/// and (cached for one scheduling pass) what the node offers.
#[derive(Default, Clone)]
pub(crate) struct Usage {
    pub requested: BTreeMap<String, i128>,
    pub pods: i128,
    pub allocatable: Option<BTreeMap<String, i128>>,
}

/// What a node offers, or `None` when the lab filled in its capacity itself (a scenario
/// that declares no capacity keeps the old behaviour: every pod fits).
pub(crate) fn allocatable(st: &State, node: &Value) -> Option<BTreeMap<String, i128>> {
    let name = str_at(node, "/metadata/name");
    if st.default_capacity.contains(name) {
        return None;
    }
    let a = node
        .pointer("/status/allocatable")
        .or_else(|| node.pointer("/status/capacity"))?;
    Some(quantity::list(Some(a)))
}

/// Requests of the pods bound to `node` that still hold resources (not Succeeded or
/// Failed; terminating pods still count, as in the scheduler's cache): read from the
/// store's per-node sums, kept as pods are written.
pub(crate) fn usage_of(st: &State, node: &str) -> Usage {
    let u = st.store.index.usage_on(node);
    Usage {
        requested: u.requested,
        pods: u.pods,
        allocatable: None,
    }
}

/// Why a node cannot take a pod, in the order of the default filter plugins
/// (NodeUnschedulable, TaintToleration, NodeAffinity, NodeResourcesFit); the first
/// failing plugin's reasons are the node's (`RunAllFilters` is off by default).
/// Empty when the pod fits.
pub(crate) fn unfit_reasons(
    st: &State,
    pod: &Value,
    node: &Value,
    usage: &mut HashMap<String, Usage>,
) -> Vec<String> {
    let name = str_at(node, "/metadata/name").to_string();
    if node.pointer("/spec/unschedulable") == Some(&json!(true))
        && !tolerates_any(pod, UNSCHEDULABLE, "NoSchedule")
    {
        return vec!["node(s) were unschedulable".into()];
    }
    let taints: Vec<&Value> = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    for t in &taints {
        let effect = t["effect"].as_str().unwrap_or("");
        let key = t["key"].as_str().unwrap_or("");
        if effect != "PreferNoSchedule" && !tolerates_any(pod, key, effect) {
            // plugins/tainttoleration: "node(s) had untolerated taint {key: value}".
            let value = t["value"].as_str().unwrap_or("");
            return vec![format!("node(s) had untolerated taint {{{key}: {value}}}")];
        }
    }
    if !node_ready(node) && !tolerates_any(pod, "node.kubernetes.io/not-ready", "NoSchedule") {
        // The node lifecycle controller taints a NotReady node so; the lab checks the
        // condition directly.
        return vec!["node(s) had untolerated taint {node.kubernetes.io/not-ready: }".into()];
    }
    if !matches_node_selector(pod, node) {
        return vec!["node(s) didn't match Pod's node affinity/selector".into()];
    }
    let u = usage.entry(name.clone()).or_insert_with(|| Usage {
        allocatable: allocatable(st, node),
        ..usage_of(st, &name)
    });
    let Some(alloc) = &u.allocatable else {
        return Vec::new();
    };
    let mut reasons = Vec::new();
    // plugins/noderesources/fit.go fitsRequest: pods first, then cpu, memory, storage.
    if let Some(max) = alloc.get("pods")
        && u.pods * 1000 + 1000 > *max
    {
        reasons.push("Too many pods".to_string());
    }
    let req = quantity::pod_requests(pod);
    for r in SCHEDULED {
        let want = req.get(*r).copied().unwrap_or(0);
        let have = alloc.get(*r).copied().unwrap_or(0) - u.requested.get(*r).copied().unwrap_or(0);
        if want > 0 && want > have {
            reasons.push(format!("Insufficient {r}"));
        }
    }
    reasons
}

/// `spec.nodeSelector` and required node affinity (`nodeSelectorTerms`, ORed; their
/// `matchExpressions` ANDed with In, NotIn, Exists, DoesNotExist, Gt, Lt).
pub(crate) fn matches_node_selector(pod: &Value, node: &Value) -> bool {
    let labels = node.pointer("/metadata/labels");
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let selector_ok = pod
        .pointer("/spec/nodeSelector")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(k, v)| label(k) == v.as_str());
    if !selector_ok {
        return false;
    }
    let Some(terms) = pod
        .pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array)
    else {
        return true;
    };
    terms.iter().any(|term| {
        term.get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .all(|e| {
                let have = label(e["key"].as_str().unwrap_or(""));
                let values: Vec<&str> = e["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let num = |s: &str| s.parse::<i64>().ok();
                match e["operator"].as_str().unwrap_or("") {
                    "In" => have.is_some_and(|h| values.contains(&h)),
                    "NotIn" => have.is_none_or(|h| !values.contains(&h)),
                    "Exists" => have.is_some(),
                    "DoesNotExist" => have.is_none(),
                    "Gt" => have.and_then(num) > values.first().and_then(|v| num(v)),
                    "Lt" => matches!((have.and_then(num), values.first().and_then(|v| num(v))), (Some(h), Some(v)) if h < v),
                    _ => false,
                }
            })
    })
}

/// The scheduler's FitError message (framework/types.go `FitError.Error`): a sorted
/// histogram of the nodes' reasons, then the preemption plugin's verdict. The lab has
/// no pod priorities, so preemption never finds victims.
pub(crate) fn fit_error(total: usize, per_node: &[Vec<String>]) -> String {
    let mut msg = format!("0/{total} nodes are available");
    if total > 0 {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for reasons in per_node {
            for r in reasons {
                *counts.entry(r).or_default() += 1;
            }
        }
        let mut v: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
        v.sort();
        msg.push_str(&format!(": {}.", v.join(", ")));
        // Each node counts once in the preemption histogram.
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for reasons in per_node {
            let helpful = reasons
                .iter()
                .all(|r| r.starts_with("Insufficient") || r == "Too many pods");
            *counts
                .entry(if helpful {
                    "No preemption victims found for incoming pod"
                } else {
                    "Preemption is not helpful for scheduling"
                })
                .or_default() += 1;
        }
        let mut v: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
        v.sort();
        msg.push_str(&format!(
            " preemption: 0/{total} nodes are available: {}.",
            v.join(", ")
        ));
    } else {
        msg.push('.');
    }
    msg
}

/// Scheduler: an unbound pod goes to the node with the fewest pods among those that
/// pass the filters; otherwise it stays Pending with PodScheduled=False
/// (Unschedulable) and a `FailedScheduling` event.
///
/// Only unbound pods that changed are looked at, or all unbound pods when a node
/// changed (it may have become Ready, schedulable or emptier) or a pod left a node.
pub(super) fn scheduler(st: &mut State, d: &Dirty) {
    let freed = d
        .versions("pods")
        .any(|p| !str_at(p, "/spec/nodeName").is_empty());
    let unbound = if d.all || !d.nodes.is_empty() || freed {
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
    let mut usage: HashMap<String, Usage> = HashMap::new();
    for pod in pending {
        let mut fits = Vec::new();
        let mut reasons = Vec::new();
        for n in &nodes {
            let r = unfit_reasons(st, &pod, n, &mut usage);
            if r.is_empty() {
                fits.push(n);
            } else {
                reasons.push(r);
            }
        }
        let (ns, name) = (
            str_at(&pod, "/metadata/namespace").to_string(),
            str_at(&pod, "/metadata/name").to_string(),
        );
        // The index counts every pod bound to the node, this pass's bindings included.
        let best = fits.into_iter().min_by_key(|n| {
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
                let node = str_at(n, "/metadata/name").to_string();
                if let Some(u) = usage.get_mut(&node) {
                    u.pods += 1;
                    for (k, v) in quantity::pod_requests(&pod) {
                        *u.requested.entry(k).or_default() += v;
                    }
                }
                p["spec"]["nodeName"] = json!(node);
                set_condition(&mut conds, "PodScheduled", "True", "", "", &now);
                p["status"]["conditions"] = json!(conds);
                st.store.update("pods", &ns, &name, p.clone());
                let msg = format!("Successfully assigned {ns}/{name} to {node}");
                st.record_event(&p, "Normal", "Scheduled", &msg, "default-scheduler");
            }
            None => {
                let msg = fit_error(nodes.len(), &reasons);
                set_condition(
                    &mut conds,
                    "PodScheduled",
                    "False",
                    "Unschedulable",
                    &msg,
                    &now,
                );
                p["status"]["conditions"] = json!(conds);
                st.store.update("pods", &ns, &name, p.clone());
                st.record_event(&p, "Warning", "FailedScheduling", &msg, "default-scheduler");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_error_reads_like_the_scheduler() {
        let per = vec![vec!["Insufficient memory".to_string()]; 8];
        assert_eq!(
            fit_error(8, &per),
            "0/8 nodes are available: 8 Insufficient memory. preemption: 0/8 nodes are available: 8 No preemption victims found for incoming pod."
        );
        let per = vec![
            vec!["node(s) were unschedulable".to_string()],
            vec![
                "Insufficient cpu".to_string(),
                "Insufficient memory".to_string(),
            ],
        ];
        assert_eq!(
            fit_error(2, &per),
            "0/2 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, 1 node(s) were unschedulable. preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
        );
        assert_eq!(fit_error(0, &[]), "0/0 nodes are available.");
    }
}
