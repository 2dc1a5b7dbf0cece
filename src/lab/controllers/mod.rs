//! Controllers: how the simulated cluster reacts, each citing the Kubernetes behaviour
//! it imitates (reference/kubernetes.md). `reconcile` runs them all until nothing
//! changes; the lab calls it after every mutating request, on a timer, and after
//! `Lab::advance`.

use chrono::Duration;
use serde_json::{Value, json};

use super::resources;
use super::state::{State, str_at};

mod kubelet;
mod nodes;
mod scheduling;
mod volumes;
mod workloads;

use kubelet::kubelet;
use nodes::{apply_faults, node_lifecycle, pod_gc};
use scheduling::scheduler;
use volumes::attach_detach;
use workloads::{deployments, disruption_budgets, garbage_collect, replicasets, workload_status};

/// Taint-based eviction waits this long before deleting a lost node's pods
/// (DefaultTolerationSeconds admission: `tolerationSeconds: 300`, §1.5).
pub const POD_EVICTION_TIMEOUT: Duration = Duration::seconds(300);

/// The attach/detach controller force-detaches after 6 minutes on an unhealthy node
/// ("Forced storage detach on timeout", node-shutdown docs, §1.5).
pub const FORCE_DETACH_AFTER: Duration = Duration::minutes(6);

/// The simulated kubelet's containers stop this long after SIGTERM (at most the grace
/// period), then the kubelet finishes the deletion with grace 0 (§1.3).
pub const KUBELET_STOP_TIME: Duration = Duration::seconds(1);

/// Grace periods beyond ten years are treated as ten years (no overflow on input).
pub const MAX_GRACE_SECONDS: i64 = 10 * 365 * 24 * 3600;

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

pub const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

pub const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";

pub(super) fn res(key: &str) -> &'static resources::ResourceDef {
    resources::by_key(key).expect("invariant: controllers only use served resources")
}

/// Run every controller until the store stops changing (bounded).
pub fn reconcile(st: &mut State) {
    for _ in 0..8 {
        let before = st.store.rv();
        apply_faults(st);
        node_lifecycle(st);
        pod_gc(st);
        garbage_collect(st);
        deployments(st);
        replicasets(st);
        scheduler(st);
        attach_detach(st);
        kubelet(st);
        disruption_budgets(st);
        workload_status(st);
        if st.store.rv() == before {
            break;
        }
    }
}

pub(super) fn set_condition(
    conds: &mut Vec<Value>,
    ctype: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
) {
    if let Some(c) = conds.iter_mut().find(|c| c["type"] == ctype) {
        if c["status"] != status {
            c["lastTransitionTime"] = json!(now);
        }
        c["status"] = json!(status);
        c["reason"] = json!(reason);
        c["message"] = json!(message);
    } else {
        conds.push(
            json!({"type": ctype, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": now}),
        );
    }
}

pub(super) fn ensure_taint(
    taints: &mut Vec<Value>,
    key: &str,
    effect: &str,
    present: bool,
    now: &str,
) {
    let has = taints
        .iter()
        .position(|t| t["key"] == key && t["effect"] == effect);
    match (has, present) {
        (None, true) => {
            let mut t = json!({"key": key, "effect": effect});
            if effect == "NoExecute" {
                t["timeAdded"] = json!(now);
            }
            taints.push(t)
        }
        (Some(i), false) => {
            taints.remove(i);
        }
        _ => {}
    }
}

pub fn has_taint(node: &Value, key: &str) -> bool {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .is_some_and(|ts| ts.iter().any(|t| t["key"] == key))
}

pub(super) fn pods_on(st: &State, node: &str) -> Vec<Value> {
    st.store
        .list("pods", None)
        .filter(|p| str_at(p, "/spec/nodeName") == node)
        .cloned()
        .collect()
}

/// Clones of the pods matching `pred` (controllers scan by reference, clone few).
pub(super) fn pods_where(st: &State, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    st.store
        .list("pods", None)
        .filter(|p| pred(p))
        .cloned()
        .collect()
}

pub(super) fn active(pod: &Value) -> bool {
    let phase = str_at(pod, "/status/phase");
    phase != "Succeeded"
        && phase != "Failed"
        && pod.pointer("/metadata/deletionTimestamp").is_none()
}

pub(super) fn node_ready(node: &Value) -> bool {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}
