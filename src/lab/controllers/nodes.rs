//! Faults, the node lifecycle controller and PodGC.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::*;
use crate::lab::clock::ts;
use crate::lab::scenario_model::{NodeConditionType, NodeFaultKind};
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
            && let Ok(sel) = LabelSelector::parse(&c.selector.0)
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
    let events = if lost {
        Vec::new()
    } else {
        node_fault_conditions(st, &mut n, &mut conds, now)
    };
    ensure_taint(&mut taints, UNREACHABLE, "NoSchedule", lost, &now_s);
    ensure_taint(&mut taints, UNREACHABLE, "NoExecute", lost, &now_s);
    // TaintNodesByCondition: each pressure condition has its NoSchedule taint.
    for c in NodeConditionType::ALL {
        let on = conds
            .iter()
            .any(|x| x["type"] == c.as_str() && x["status"] == "True");
        ensure_taint(&mut taints, condition_taint(c), "NoSchedule", on, &now_s);
    }
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
    st.store.update("nodes", "", &name, n.clone());
    for (etype, reason, msg) in events {
        st.record_event(&n, etype, reason, &msg, "kubelet");
    }
}

fn condition_taint(c: NodeConditionType) -> &'static str {
    match c {
        NodeConditionType::DiskPressure => DISK_PRESSURE,
        NodeConditionType::MemoryPressure => "node.kubernetes.io/memory-pressure",
        NodeConditionType::PIDPressure => "node.kubernetes.io/pid-pressure",
        NodeConditionType::NetworkUnavailable => "node.kubernetes.io/network-unavailable",
    }
}

/// The kubelet's (and route controller's) words for a condition, True and False:
/// (reason, message, event reason).
fn condition_words(
    c: NodeConditionType,
    on: bool,
) -> (&'static str, &'static str, Option<&'static str>) {
    use NodeConditionType::*;
    match (c, on) {
        (DiskPressure, true) => (
            "KubeletHasDiskPressure",
            "kubelet has disk pressure",
            Some("NodeHasDiskPressure"),
        ),
        (DiskPressure, false) => (
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
            Some("NodeHasNoDiskPressure"),
        ),
        (MemoryPressure, true) => (
            "KubeletHasInsufficientMemory",
            "kubelet has insufficient memory available",
            Some("NodeHasInsufficientMemory"),
        ),
        (MemoryPressure, false) => (
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
            Some("NodeHasSufficientMemory"),
        ),
        (PIDPressure, true) => (
            "KubeletHasInsufficientPID",
            "kubelet has insufficient PID available",
            Some("NodeHasInsufficientPID"),
        ),
        (PIDPressure, false) => (
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
            Some("NodeHasSufficientPID"),
        ),
        (NetworkUnavailable, true) => ("NoRouteCreated", "Node created without a route", None),
        (NetworkUnavailable, false) => ("RouteCreated", "RouteController created a route", None),
    }
}

/// Apply the node faults of the scenario to one node: conditions True while a fault
/// lasts and False again after it (with the kubelet's events), the InternalIP taken
/// away and given back. Registers the next moment one starts or ends.
fn node_fault_conditions(
    st: &mut State,
    n: &mut Value,
    conds: &mut Vec<Value>,
    now: DateTime<Utc>,
) -> Vec<(&'static str, &'static str, String)> {
    let name = str_at(n, "/metadata/name").to_string();
    let faults: Vec<_> = st
        .node_faults
        .iter()
        .filter(|f| f.scope.matches(n))
        .cloned()
        .collect();
    let mut events = Vec::new();
    if faults.is_empty() {
        return events;
    }
    for f in &faults {
        for t in std::iter::once(f.from).chain(f.until) {
            if t > now {
                st.wake_at(t);
            }
        }
    }
    let now_s = ts(now);
    for c in NodeConditionType::ALL {
        let mine: Vec<_> = faults
            .iter()
            .filter(|f| f.kind == NodeFaultKind::Condition(c))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let on = mine.iter().any(|f| f.active(now))
            || (c == NodeConditionType::DiskPressure && st.full_disks.contains(&name));
        let was = conds
            .iter()
            .any(|x| x["type"] == c.as_str() && x["status"] == "True");
        let (reason, msg, event) = condition_words(c, on);
        let status = if on { "True" } else { "False" };
        set_condition(conds, c.as_str(), status, reason, msg, &now_s);
        if was != on {
            if let Some(ev) = event {
                events.push(("Normal", ev, format!("Node {name} status is now: {ev}")));
            }
            let reclaim = match c {
                NodeConditionType::DiskPressure => Some("ephemeral-storage"),
                NodeConditionType::MemoryPressure => Some("memory"),
                NodeConditionType::PIDPressure => Some("pids"),
                NodeConditionType::NetworkUnavailable => None,
            };
            if let Some(r) = reclaim.filter(|_| on) {
                events.push((
                    "Warning",
                    "EvictionThresholdMet",
                    format!("Attempting to reclaim {r}"),
                ));
            }
        }
    }
    let no_ip = faults
        .iter()
        .any(|f| f.kind == NodeFaultKind::NoInternalIp && f.active(now));
    let addrs: Vec<Value> = n
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if no_ip {
        let (gone, kept): (Vec<Value>, Vec<Value>) = addrs
            .into_iter()
            .partition(|a| a["type"] == "InternalIP" || a["type"] == "ExternalIP");
        if !gone.is_empty() {
            st.hidden_ips.entry(name.clone()).or_default().extend(gone);
            n["status"]["addresses"] = json!(kept);
        }
    } else if let Some(back) = st.hidden_ips.remove(&name) {
        n["status"]["addresses"] = json!(back.into_iter().chain(addrs).collect::<Vec<_>>());
    }
    events
}

/// Has a `no_internal_ip` fault taken this node's addresses now? (The API server can
/// then not reach its kubelet.)
pub fn without_ip(st: &State, node: &str) -> bool {
    let now = st.now();
    st.store.get("nodes", "", node).is_some_and(|n| {
        st.node_faults
            .iter()
            .any(|f| f.kind == NodeFaultKind::NoInternalIp && f.active(now) && f.scope.matches(n))
    })
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
