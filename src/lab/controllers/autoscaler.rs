//! The cluster autoscaler (kubernetes/autoscaler, `cluster-autoscaler`): grows a node
//! pool when pods are unschedulable for lack of room, and removes nodes that stayed
//! unneeded for `--scale-down-unneeded-time`, as the real one does with its defaults.
//!
//! Scale-up: a pod Unschedulable for one scan interval is bin-packed onto the pools'
//! booting nodes, then onto new nodes of the first pool whose machine fits it, up to
//! `max`; the new nodes are NotReady until `node_startup` has passed. The pods get
//! `TriggeredScaleUp`, or `NotTriggerScaleUp` when no pool can take them.
//!
//! Scale-down: a pool node is unneeded when its cpu and memory requests are under the
//! utilization threshold and every pod on it can move (controller-owned, not in
//! kube-system, no `safe-to-evict: "false"`, no emptyDir; DaemonSet pods are ignored)
//! onto other nodes. Cordoned nodes and nodes annotated
//! `cluster-autoscaler.kubernetes.io/scale-down-disabled: "true"` are left alone, as is
//! a pool at its `min`, and nothing is removed within `scale_down_delay_after_add` of
//! a scale-up.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::scheduling::{Usage, allocatable, unfit_reasons};
use super::*;
use crate::lab::clock::ts;
use crate::lab::quantity;
use crate::lab::scenario_model::NodePool;
use crate::lab::state::{DeleteOpts, State, controller_of, str_at};

/// The label naming a node's pool.
pub const POOL_LABEL: &str = "lab.runbook.dev/node-pool";

/// The annotation that keeps the autoscaler from removing a node.
pub const SCALE_DOWN_DISABLED: &str = "cluster-autoscaler.kubernetes.io/scale-down-disabled";

/// The annotation that keeps the autoscaler from evicting a pod (and so from
/// removing its node).
pub const SAFE_TO_EVICT: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict";

const COMPONENT: &str = "cluster-autoscaler";

/// A node of `pool` as a cloud would register it: the machine's allocatable, the
/// pool's labels and taints, Ready or still booting.
pub(crate) fn pool_node(st: &mut State, pool: &NodePool, ready: bool) -> Value {
    let name = format!("{}-{}", pool.name, st.store.suffix(5));
    st.next_ip += 1;
    let ip = format!("10.128.{}.{}", st.next_ip / 250, st.next_ip % 250 + 2);
    let mut labels = json!({POOL_LABEL: pool.name, "kubernetes.io/hostname": name});
    for (k, v) in &pool.labels {
        labels[k] = json!(v);
    }
    let now = ts(st.now());
    let ready = if ready {
        json!({"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now})
    } else {
        json!({"type": "Ready", "status": "False", "reason": "KubeletNotReady",
            "message": "container runtime status check may not have completed yet",
            "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let mut spec = json!({});
    if !pool.taints.is_empty() {
        spec["taints"] = json!(pool.taints);
    }
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
        "status": {"capacity": pool.machine.allocatable, "allocatable": pool.machine.allocatable,
            "conditions": [ready], "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]}})
}

pub(super) fn autoscaler(st: &mut State, d: &Dirty) {
    if st.node_pools.is_empty() || !(d.all || d.touched("pods") || d.touched("nodes")) {
        return;
    }
    let now = st.now();
    finish_booting(st, now);
    scale_up(st, now);
    scale_down(st, now);
}

fn finish_booting(st: &mut State, now: DateTime<Utc>) {
    let booting: Vec<(String, DateTime<Utc>)> = st
        .provisioning
        .iter()
        .map(|(n, t)| (n.clone(), *t))
        .collect();
    for (name, at) in booting {
        if now < at {
            st.wake_at(at);
            continue;
        }
        st.provisioning.remove(&name);
        if let Some(mut n) = st.store.get("nodes", "", &name).cloned() {
            let mut conds: Vec<Value> = n
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let t = ts(at);
            set_condition(
                &mut conds,
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
                &t,
            );
            n["status"]["conditions"] = json!(conds);
            st.store.update("nodes", "", &name, n.clone());
            st.record_event(
                &n,
                "Normal",
                "NodeReady",
                &format!("Node {name} status is now: NodeReady"),
                "kubelet",
            );
        }
    }
}

fn pool_of(node: &Value) -> &str {
    str_at(
        node,
        &format!("/metadata/labels/{}", POOL_LABEL.replace('/', "~1")),
    )
}

/// A pod the scheduler gave up on, and since when.
fn unschedulable_since(pod: &Value) -> Option<DateTime<Utc>> {
    pod.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| {
            c["type"] == "PodScheduled" && c["status"] == "False" && c["reason"] == "Unschedulable"
        })
        .and_then(|c| c["lastTransitionTime"].as_str())
        .and_then(crate::lab::clock::parse_ts)
}

fn scale_up(st: &mut State, now: DateTime<Utc>) {
    let scan = st.autoscaler.scan_interval.0;
    let mut pending = Vec::new();
    for p in pods_by_key(st, &st.store.index.pods_on("")) {
        if !active(&p) || !str_at(&p, "/spec/nodeName").is_empty() {
            continue;
        }
        let Some(since) = unschedulable_since(&p) else {
            continue;
        };
        if since + scan <= now {
            pending.push(p);
        } else {
            st.wake_at(since + scan);
        }
    }
    if pending.is_empty() {
        return;
    }
    let nodes = st.store.list_owned("nodes", None);
    let pools = st.node_pools.clone();
    let mut size: Vec<u32> = pools
        .iter()
        .map(|pl| nodes.iter().filter(|n| pool_of(n) == pl.name).count() as u32)
        .collect();
    let start_size = size.clone();
    // Where pods can go: Ready nodes with room (a pod the scheduler has not placed yet
    // since a node became Ready — `filterOutSchedulablePods` in the real autoscaler —
    // triggers nothing), booting nodes (as if Ready), then nodes this scan adds.
    let mut bins: Vec<(usize, Value, bool)> = nodes
        .iter()
        .filter_map(|n| {
            let booting = st.provisioning.contains_key(str_at(n, "/metadata/name"));
            if !booting && !node_ready(n) {
                return None;
            }
            let i = pools
                .iter()
                .position(|pl| pl.name == pool_of(n))
                .unwrap_or(usize::MAX);
            let mut n = n.clone();
            if booting {
                n["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
            }
            Some((i, n, false))
        })
        .collect();
    let mut usage: HashMap<String, Usage> = HashMap::new();
    let mut triggered: Vec<Value> = Vec::new();
    for pod in pending {
        let req = quantity::pod_requests(&pod);
        let place = |usage: &mut HashMap<String, Usage>, name: &str| {
            let u = usage.entry(name.to_string()).or_default();
            u.pods += 1;
            for (k, v) in &req {
                *u.requested.entry(k.clone()).or_default() += v;
            }
        };
        if let Some((_, n, new)) = bins
            .iter()
            .find(|(_, n, _)| unfit_reasons(st, &pod, n, &mut usage).is_empty())
        {
            let (name, new) = (str_at(n, "/metadata/name").to_string(), *new);
            place(&mut usage, &name);
            if new {
                triggered.push(pod);
            }
            continue;
        }
        let mut why: Vec<String> = Vec::new();
        let mut placed = false;
        for (i, pool) in pools.iter().enumerate() {
            let mut template = pool_node(st, pool, true);
            template["metadata"]["name"] = json!(format!("template-{}-{}", pool.name, bins.len()));
            let reasons = unfit_reasons(st, &pod, &template, &mut usage);
            if !reasons.is_empty() {
                why.extend(reasons);
                continue;
            }
            if size[i] >= pool.max {
                why.push("max node group size reached".into());
                continue;
            }
            size[i] += 1;
            let name = str_at(&template, "/metadata/name").to_string();
            place(&mut usage, &name);
            bins.push((i, template, true));
            triggered.push(pod.clone());
            placed = true;
            break;
        }
        if !placed {
            // orchestrator.go: "pod didn't trigger scale-up: " + the reasons per group.
            let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
            for w in why {
                *counts.entry(w).or_default() += 1;
            }
            let msg = counts
                .iter()
                .map(|(w, n)| format!("{n} {w}"))
                .collect::<Vec<_>>()
                .join(", ");
            st.record_event(
                &pod,
                "Normal",
                "NotTriggerScaleUp",
                &format!("pod didn't trigger scale-up: {msg}"),
                COMPONENT,
            );
        }
    }
    let groups: Vec<String> = pools
        .iter()
        .enumerate()
        .filter(|(i, _)| size[*i] > start_size[*i])
        .map(|(i, pl)| {
            format!(
                "{{{} {}->{} (max: {})}}",
                pl.name, start_size[i], size[i], pl.max
            )
        })
        .collect();
    if groups.is_empty() {
        return;
    }
    let ready_at = now + st.autoscaler.node_startup.0;
    for (i, pool) in pools.iter().enumerate() {
        for _ in start_size[i]..size[i] {
            let node = pool_node(st, pool, false);
            let name = str_at(&node, "/metadata/name").to_string();
            if st.store.create(res("nodes"), "", node, now, false).is_ok() {
                st.provisioning.insert(name, ready_at);
            }
        }
    }
    st.last_scale_up = Some(now);
    st.wake_at(ready_at);
    let msg = format!("pod triggered scale-up: [{}]", groups.join(" "));
    for pod in triggered {
        st.record_event(&pod, "Normal", "TriggeredScaleUp", &msg, COMPONENT);
    }
}

/// Can the autoscaler move this pod elsewhere (drain.go's checks with the defaults)?
/// `None`: the pod does not count (a DaemonSet's); `Some(false)`: it blocks.
fn movable(pod: &Value) -> Option<bool> {
    let owner = controller_of(pod);
    if owner.is_some_and(|o| o["kind"] == "DaemonSet") {
        return None;
    }
    let annotation = pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(SAFE_TO_EVICT))
        .and_then(Value::as_str);
    if annotation == Some("true") {
        return Some(true);
    }
    let local = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .is_some_and(|vs| vs.iter().any(|v| v.get("emptyDir").is_some()));
    Some(
        owner.is_some()
            && annotation != Some("false")
            && str_at(pod, "/metadata/namespace") != "kube-system"
            && !local,
    )
}

fn scale_down(st: &mut State, now: DateTime<Utc>) {
    let cfg = st.autoscaler.clone();
    let cooldown_until = st
        .last_scale_up
        .map(|t| t + cfg.scale_down_delay_after_add.0);
    let nodes = st.store.list_owned("nodes", None);
    let pools = st.node_pools.clone();
    let mut size: HashMap<String, u32> = HashMap::new();
    for n in &nodes {
        *size.entry(pool_of(n).to_string()).or_default() += 1;
    }
    let mut usage: HashMap<String, Usage> = HashMap::new();
    let mut leaving: Vec<String> = Vec::new();
    let mut still_unneeded = BTreeSet::new();
    for node in &nodes {
        let name = str_at(node, "/metadata/name").to_string();
        let Some(pool) = pools.iter().find(|p| p.name == pool_of(node)) else {
            continue;
        };
        let disabled = node
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(SCALE_DOWN_DISABLED))
            .and_then(Value::as_str)
            == Some("true");
        if disabled
            || st.provisioning.contains_key(&name)
            || !node_ready(node)
            || node.pointer("/spec/unschedulable") == Some(&json!(true))
        {
            continue;
        }
        let Some(alloc) = allocatable(st, node) else {
            continue;
        };
        // Pods being deleted are on their way out (the kubelet stops them within a
        // second); counting them would start the unneeded timer only at the next
        // time-driven pass instead of when the node emptied.
        let pods: Vec<Value> = pods_by_key(st, &st.store.index.pods_on(&name))
            .into_iter()
            .filter(active)
            .collect();
        let mut used = Usage::default();
        for p in &pods {
            for (k, v) in quantity::pod_requests(p) {
                *used.requested.entry(k).or_default() += v;
            }
        }
        let share = |r: &str| {
            let a = alloc.get(r).copied().unwrap_or(0);
            if a == 0 {
                0.0
            } else {
                used.requested.get(r).copied().unwrap_or(0) as f64 / a as f64
            }
        };
        if share("cpu").max(share("memory")) >= cfg.scale_down_utilization_threshold {
            continue;
        }
        let moving: Vec<&Value> = pods.iter().filter(|p| movable(p) == Some(true)).collect();
        if pods.iter().any(|p| movable(p) == Some(false)) {
            continue;
        }
        // Every moving pod must fit on a node that stays.
        let mut trial = usage.clone();
        let fits = moving.iter().all(|p| {
            let target = nodes.iter().find(|n| {
                let nn = str_at(n, "/metadata/name");
                nn != name
                    && !leaving.iter().any(|l| l == nn)
                    && !st.provisioning.contains_key(nn)
                    && unfit_reasons(st, p, n, &mut trial).is_empty()
            });
            match target {
                Some(n) => {
                    let u = trial
                        .entry(str_at(n, "/metadata/name").to_string())
                        .or_default();
                    u.pods += 1;
                    for (k, v) in quantity::pod_requests(p) {
                        *u.requested.entry(k).or_default() += v;
                    }
                    true
                }
                None => false,
            }
        });
        if !fits {
            continue;
        }
        still_unneeded.insert(name.clone());
        let since = *st.unneeded.entry(name.clone()).or_insert(now);
        let due = since + cfg.scale_down_unneeded_time.0;
        let due = cooldown_until.map_or(due, |c| due.max(c));
        let pool_size = size.get(&pool.name).copied().unwrap_or(0);
        if now < due {
            st.wake_at(due);
            continue;
        }
        if pool_size <= pool.min {
            continue;
        }
        size.insert(pool.name.clone(), pool_size - 1);
        usage = trial;
        leaving.push(name.clone());
        remove_node(st, node, &pods);
    }
    st.unneeded
        .retain(|n, _| still_unneeded.contains(n) && !leaving.contains(n));
}

/// Taint the node, evict its pods and delete it, with the autoscaler's events.
fn remove_node(st: &mut State, node: &Value, pods: &[Value]) {
    let name = str_at(node, "/metadata/name").to_string();
    let mut n = node.clone();
    let mut taints: Vec<Value> = n
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    taints.push(json!({"key": "ToBeDeletedByClusterAutoscaler", "value": st.now().timestamp().to_string(), "effect": "NoSchedule"}));
    n["spec"]["taints"] = json!(taints);
    st.store.update("nodes", "", &name, n.clone());
    st.record_event(
        &n,
        "Normal",
        "ScaleDown",
        "marked the node as toBeDeleted/unschedulable",
        COMPONENT,
    );
    for p in pods {
        if movable(p).is_none() {
            continue;
        }
        st.record_event(
            p,
            "Normal",
            "ScaleDown",
            "deleting pod for node scale down",
            COMPONENT,
        );
        let (ns, pn) = (
            str_at(p, "/metadata/namespace").to_string(),
            str_at(p, "/metadata/name").to_string(),
        );
        let _ = st.delete(res("pods"), &ns, &pn, &DeleteOpts::default());
    }
    st.record_event(
        &n,
        "Normal",
        "RemovingNode",
        &format!("Removing Node {name} from Controller"),
        "node-controller",
    );
    st.remove(res("nodes"), "", &name);
    st.default_capacity.remove(&name);
}
