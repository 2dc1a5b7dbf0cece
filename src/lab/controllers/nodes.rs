//! Faults, the node lifecycle controller and PodGC.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::*;
use crate::lab::clock::ts;
use crate::lab::select::LabelSelector;
use crate::lab::state::{DeleteOpts, State, controller_of, str_at};

/// Apply the scenario's faults whose time has come; true when one was applied (the
/// controllers must then look at everything). Registers a wake-up for the next one.
pub(super) fn apply_faults(st: &mut State) -> bool {
    let now = st.now();
    let start = st.clock.start();
    let mut applied = false;
    for i in 0..st.faults.len() {
        let (at, fault) = &st.faults[i];
        let Some(when) = start.checked_add_signed(*at) else {
            continue;
        };
        if st.applied[i] {
            continue;
        }
        if when > now {
            st.wake_at(when);
            continue;
        }
        let fault = fault.clone();
        st.applied[i] = true;
        applied = true;
        if let Some(n) = fault.node_lost {
            st.lost_nodes.entry(n.node).or_insert(when);
        }
        if let Some(n) = fault.disk_fills {
            st.full_disks.insert(n.node);
        }
        if let Some(c) = fault.crash_loop
            && let Ok(sel) = LabelSelector::parse(&c.selector)
        {
            st.pod_faults.push(crate::lab::state::ActivePodFault {
                namespace: c.namespace,
                scope: crate::lab::scenario_model::PodScope::Selector(sel),
                kind: crate::lab::scenario_model::PodFaultKind::CrashLoop {
                    exit_code: 1,
                    reason: "Error".into(),
                },
                from: when,
                until: None,
            });
        }
    }
    applied
}

/// Node lifecycle controller (`pkg/controller/nodelifecycle`, §1.5): a lost node's
/// conditions go Unknown with the unreachable taints; a cordoned node gets the
/// unschedulable taint (TaintNodesByCondition, §1.1). A lost node's pods become
/// Unknown/NodeLost (`SetPodTerminationReason`, §1.4) and, after the 300 s toleration,
/// are deleted gracefully, which never completes there.
pub(super) fn node_lifecycle(st: &mut State, d: &Dirty) {
    let now = st.now();
    let nodes: Vec<Value> = if d.all {
        st.store.list_owned("nodes", None)
    } else {
        d.nodes
            .iter()
            .filter_map(|n| st.store.get("nodes", "", n).cloned())
            .collect()
    };
    for node in nodes {
        update_node(st, node, now);
    }
    let pods: BTreeSet<PodKey> = if d.all {
        let lost: Vec<String> = st.lost_nodes.keys().cloned().collect();
        lost.iter()
            .flat_map(|n| st.store.index.pods_on(n))
            .collect()
    } else {
        pods_to_visit(st, d)
    };
    for pod in pods_by_key(st, &pods) {
        let node = str_at(&pod, "/spec/nodeName").to_string();
        if let Some(since) = st.lost_nodes.get(&node).copied() {
            node_lost_pod(st, pod, &node, since, now);
        }
    }
    let timers: Vec<DateTime<Utc>> = st
        .lost_nodes
        .values()
        .map(|since| *since + POD_EVICTION_TIMEOUT)
        .filter(|t| *t > now)
        .collect();
    for t in timers {
        st.wake_at(t);
    }
}

fn update_node(st: &mut State, node: Value, now: DateTime<Utc>) {
    let now_s = ts(now);
    let name = str_at(&node, "/metadata/name").to_string();
    let mut n = node.clone();
    let mut conds: Vec<Value> = n
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut taints: Vec<Value> = n
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let lost = st.node_lost(&name);
    if let Some(since) = st.lost_nodes.get(&name) {
        // The last heartbeat and the transition are when the kubelet went silent.
        let since = ts(*since);
        for t in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
            set_condition(
                &mut conds,
                t,
                "Unknown",
                "NodeStatusUnknown",
                "Kubelet stopped posting node status.",
                &since,
            );
        }
    } else if !conds.iter().any(|c| c["type"] == "Ready") {
        set_condition(
            &mut conds,
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
            &now_s,
        );
    }
    if st.full_disks.contains(&name) && !lost {
        set_condition(
            &mut conds,
            "DiskPressure",
            "True",
            "KubeletHasDiskPressure",
            "kubelet has disk pressure",
            &now_s,
        );
    }
    let disk_pressure = conds
        .iter()
        .any(|c| c["type"] == "DiskPressure" && c["status"] == "True");
    ensure_taint(&mut taints, UNREACHABLE, "NoSchedule", lost, &now_s);
    ensure_taint(&mut taints, UNREACHABLE, "NoExecute", lost, &now_s);
    ensure_taint(
        &mut taints,
        DISK_PRESSURE,
        "NoSchedule",
        disk_pressure,
        &now_s,
    );
    let cordoned = n.pointer("/spec/unschedulable") == Some(&json!(true));
    ensure_taint(&mut taints, UNSCHEDULABLE, "NoSchedule", cordoned, &now_s);
    n["status"]["conditions"] = json!(conds);
    // What a kubelet reports about its machine, when the scenario does not say.
    if n.pointer("/status/capacity").is_none() {
        let cap =
            json!({"cpu": "4", "memory": "15Gi", "pods": "110", "ephemeral-storage": "100Gi"});
        n["status"]["capacity"] = cap.clone();
        n["status"]["allocatable"] = cap;
        st.default_capacity.insert(name.clone());
    }
    for (k, v) in [("architecture", "amd64"), ("operatingSystem", "linux")] {
        if n.pointer(&format!("/status/nodeInfo/{k}")).is_none() {
            n["status"]["nodeInfo"][k] = json!(v);
        }
    }
    // NodeSpec is a struct, not a pointer: the API server always serves `spec: {}`,
    // so `has(node.spec.unschedulable)` works on every node.
    if !n.get("spec").is_some_and(Value::is_object) {
        n["spec"] = json!({});
    }
    if taints.is_empty() {
        if let Some(spec) = n.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("taints");
        }
    } else {
        n["spec"]["taints"] = json!(taints);
    }
    st.store.update("nodes", "", &name, n);
}

/// A pod on a lost node: Unknown/NodeLost, and deleted gracefully once the
/// eviction timeout passed.
fn node_lost_pod(st: &mut State, pod: Value, node: &str, since: DateTime<Utc>, now: DateTime<Utc>) {
    let phase = str_at(&pod, "/status/phase");
    if phase == "Succeeded" || phase == "Failed" {
        return;
    }
    let (ns, name) = (
        str_at(&pod, "/metadata/namespace").to_string(),
        str_at(&pod, "/metadata/name").to_string(),
    );
    let mut p = pod.clone();
    p["status"]["phase"] = json!("Unknown");
    p["status"]["reason"] = json!("NodeLost");
    p["status"]["message"] = json!(format!(
        "Node {node} which was running pod {name} is unresponsive"
    ));
    let mut conds: Vec<Value> = p
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if conds
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] != "False")
        || !conds.iter().any(|c| c["type"] == "Ready")
    {
        set_condition(&mut conds, "Ready", "False", "NodeLost", "", &ts(now));
    }
    p["status"]["conditions"] = json!(conds);
    if let Some(cs) = p
        .pointer_mut("/status/containerStatuses")
        .and_then(Value::as_array_mut)
    {
        for c in cs {
            c["ready"] = json!(false);
        }
    }
    st.store.update("pods", &ns, &name, p);
    let daemon = controller_of(&pod).is_some_and(|o| o["kind"] == "DaemonSet");
    if now - since >= POD_EVICTION_TIMEOUT
        && pod.pointer("/metadata/deletionTimestamp").is_none()
        && !daemon
    {
        let _ = st.delete(res("pods"), &ns, &name, &DeleteOpts::default());
    }
}

pub(super) fn tolerates(pod: &Value, key: &str, effect: &str) -> bool {
    pod.pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .is_some_and(|ts| {
            ts.iter().any(|t| {
                let k_ok = t.get("key").is_none_or(|k| k == key || k == "")
                    && !(t.get("key").is_none() && t["operator"] != "Exists");
                let e_ok = t.get("effect").is_none_or(|e| e == effect || e == "");
                k_ok && e_ok && t.get("tolerationSeconds").is_none()
            })
        })
}

/// PodGC (`pkg/controller/podgc`): force-deletes pods bound to nodes that no longer
/// exist, and — non-graceful node shutdown, §1.5 — pods on nodes tainted
/// `node.kubernetes.io/out-of-service` without a matching toleration.
pub(super) fn pod_gc(st: &mut State, d: &Dirty) {
    let doomed: Vec<Value> = pods_by_key(st, &pods_to_visit(st, d))
        .into_iter()
        .filter(|p| {
            let node = str_at(p, "/spec/nodeName");
            !node.is_empty()
                && match st.store.get("nodes", "", node) {
                    None => true,
                    Some(n) => {
                        has_taint(n, OUT_OF_SERVICE) && !tolerates(p, OUT_OF_SERVICE, "NoExecute")
                    }
                }
        })
        .collect();
    for pod in doomed {
        let (ns, name) = (
            str_at(&pod, "/metadata/namespace").to_string(),
            str_at(&pod, "/metadata/name").to_string(),
        );
        st.remove(res("pods"), &ns, &name);
    }
}
