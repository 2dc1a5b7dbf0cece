//! Node-pressure eviction: the kubelet's eviction manager (`pkg/kubelet/eviction`,
//! "Node-pressure Eviction" in the Kubernetes docs). While a node reports
//! MemoryPressure, DiskPressure or PIDPressure, its kubelet evicts one pod per
//! housekeeping interval (10 s), the lowest-ranked first, until its signal is back under
//! the threshold — in the lab, until the fault's `evict` count is reached (every pod it
//! may evict when the fault gives none). The evicted pod is left `Failed` with reason
//! `Evicted` (its containers killed, a `DisruptionTarget` condition with reason
//! `TerminationByKubelet`) and a `Warning Evicted` event; its controller replaces it,
//! and the pressure taint sends the replacement elsewhere.
//!
//! Ranking, as `rankMemoryPressure` / `rankDiskPressureFunc` / `rankPIDPressure` order
//! pods, with the usage the lab does not model left out: pods whose usage may exceed
//! their request (no request for the starved resource) first, then lower
//! `spec.priority`, then by name (the real tie-break is usage). Never evicted: static
//! (mirror) pods and critical pods (priority ≥ 2000000000, `system-*-critical`).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::*;
use crate::lab::clock::{parse_ts, ts};
use crate::lab::quantity::pod_requests;
use crate::lab::scenario_model::{NodeConditionType, NodeFaultKind};
use crate::lab::state::{State, str_at};

/// The kubelet's housekeeping interval: at most one eviction per node per interval.
pub const EVICTION_INTERVAL: Duration = Duration::seconds(10);

/// `scheduling.SystemCriticalPriority`: pods at or above it are not evicted.
const CRITICAL_PRIORITY: i64 = 2_000_000_000;

/// The starved resource of a pressure condition, in the kubelet's words.
fn starved(c: NodeConditionType) -> Option<&'static str> {
    match c {
        NodeConditionType::MemoryPressure => Some("memory"),
        NodeConditionType::DiskPressure => Some("ephemeral-storage"),
        NodeConditionType::PIDPressure => Some("pids"),
        NodeConditionType::NetworkUnavailable => None,
    }
}

/// The first pressure condition a node reports True, and since when.
fn pressure(node: &Value) -> Option<(NodeConditionType, DateTime<Utc>)> {
    let conds = node.pointer("/status/conditions")?.as_array()?;
    NodeConditionType::ALL.into_iter().find_map(|c| {
        starved(c)?;
        let cond = conds
            .iter()
            .find(|x| x["type"] == c.as_str() && x["status"] == "True")?;
        let since = parse_ts(str_at(cond, "/lastTransitionTime")).unwrap_or(DateTime::UNIX_EPOCH);
        Some((c, since))
    })
}

/// Evict pods from nodes under pressure, catching up on the intervals that passed.
pub(super) fn pressure_eviction(st: &mut State, d: &Dirty) {
    if !d.all && d.nodes.is_empty() {
        return;
    }
    let now = st.now();
    // Only nodes under pressure are cloned; the others forget their count.
    let names: Vec<String> = if d.all {
        st.store
            .list("nodes", None)
            .map(|n| str_at(n, "/metadata/name").to_string())
            .collect()
    } else {
        d.nodes.iter().cloned().collect()
    };
    for name in names {
        let under = st
            .store
            .get("nodes", "", &name)
            .filter(|n| pressure(n).is_some() && !st.node_lost(&name))
            .cloned();
        let Some((node, (cond, since))) = under.and_then(|n| pressure(&n).map(|p| (n, p))) else {
            st.pressure_evictions.remove(&name);
            continue;
        };
        let (limit, began) = eviction_limit(st, &node, cond, now);
        // A fault's pressure began when the fault did, even when the clock jumped past
        // that moment (the condition is stamped when a pass sees it).
        let since = began.unwrap_or(since);
        let (_, mut count) = st
            .pressure_evictions
            .get(&name)
            .copied()
            .unwrap_or((since, 0));
        // One eviction at the start of the pressure, then one per interval.
        let elapsed =
            (now - since).num_milliseconds().max(0) / EVICTION_INTERVAL.num_milliseconds();
        let due = u32::try_from(elapsed + 1).unwrap_or(u32::MAX);
        let target = limit.map_or(due, |l| due.min(l));
        let mut victims = ranked(st, &name, cond).into_iter();
        while count < target {
            let Some(pod) = victims.next() else { break };
            evict(st, pod, cond, now);
            count += 1;
        }
        st.pressure_evictions.insert(name, (now, count));
        let more = limit.is_none_or(|l| count < l) && victims.next().is_some();
        if more {
            st.wake_at(since + EVICTION_INTERVAL * i32::try_from(count).unwrap_or(i32::MAX));
        }
    }
}

/// The most pods the active pressure faults on this node let the kubelet evict (None:
/// no bound — a condition written in the scenario, or a fault without `evict`), and
/// when the earliest of them began.
fn eviction_limit(
    st: &State,
    node: &Value,
    cond: NodeConditionType,
    now: DateTime<Utc>,
) -> (Option<u32>, Option<DateTime<Utc>>) {
    let faults: Vec<_> = st
        .node_faults
        .iter()
        .filter(|f| {
            f.kind == NodeFaultKind::Condition(cond) && f.active(now) && f.scope.matches(node)
        })
        .collect();
    let began = faults.iter().map(|f| f.from).min();
    if faults.is_empty() || faults.iter().any(|f| f.evict.is_none()) {
        return (None, began);
    }
    (faults.iter().filter_map(|f| f.evict).max(), began)
}

fn priority(pod: &Value) -> i64 {
    pod.pointer("/spec/priority")
        .and_then(Value::as_i64)
        .unwrap_or_else(|| match str_at(pod, "/spec/priorityClassName") {
            "system-node-critical" => 2_000_001_000,
            "system-cluster-critical" => CRITICAL_PRIORITY,
            _ => 0,
        })
}

/// The pods the kubelet may evict from `node`, in the order it evicts them.
fn ranked(st: &State, node: &str, cond: NodeConditionType) -> Vec<Value> {
    let resource = starved(cond).unwrap_or("memory");
    let mut pods: Vec<Value> = pods_by_key(st, &st.store.index.pods_on(node))
        .into_iter()
        .filter(|p| {
            active(p)
                && !str_at(p, "/status/phase").is_empty()
                && priority(p) < CRITICAL_PRIORITY
                && p.pointer("/metadata/annotations/kubernetes.io~1config.mirror")
                    .is_none()
        })
        .collect();
    pods.sort_by_cached_key(|p| {
        let within_request = cond != NodeConditionType::PIDPressure
            && pod_requests(p).get(resource).is_some_and(|r| *r > 0);
        (
            within_request,
            priority(p),
            str_at(p, "/metadata/namespace").to_string(),
            str_at(p, "/metadata/name").to_string(),
        )
    });
    pods
}

fn evict(st: &mut State, pod: Value, cond: NodeConditionType, now: DateTime<Utc>) {
    let resource = starved(cond).unwrap_or("memory");
    let message = format!("The node was low on resource: {resource}. ");
    let now_s = ts(now);
    let (ns, name) = (
        str_at(&pod, "/metadata/namespace").to_string(),
        str_at(&pod, "/metadata/name").to_string(),
    );
    let mut p = pod.clone();
    p["status"]["phase"] = json!("Failed");
    p["status"]["reason"] = json!("Evicted");
    p["status"]["message"] = json!(message);
    let mut conds: Vec<Value> = p
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    set_condition(
        &mut conds,
        "DisruptionTarget",
        "True",
        "TerminationByKubelet",
        &message,
        &now_s,
    );
    for t in ["Ready", "ContainersReady"] {
        if conds.iter().any(|c| c["type"] == t) {
            set_condition(&mut conds, t, "False", "PodFailed", "", &now_s);
        }
    }
    p["status"]["conditions"] = json!(conds);
    if let Some(cs) = p
        .pointer_mut("/status/containerStatuses")
        .and_then(Value::as_array_mut)
    {
        for c in cs {
            let started = c
                .pointer("/state/running/startedAt")
                .cloned()
                .unwrap_or(json!(now_s));
            c["ready"] = json!(false);
            c["started"] = json!(false);
            c["state"] = json!({"terminated": {"exitCode": 137, "reason": "Error",
                "startedAt": started, "finishedAt": now_s}});
        }
    }
    st.store.update("pods", &ns, &name, p.clone());
    st.record_event(&p, "Warning", "Evicted", &message, "kubelet");
}
