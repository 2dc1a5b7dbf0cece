//! Controllers: how the simulated cluster reacts, each citing the Kubernetes behaviour
//! it imitates (reference/kubernetes.md).
//!
//! Like real controllers they react to what changed: the store logs every change, and
//! [`reconcile`] (run after every write) hands each controller a [`Dirty`] set — the
//! pods, nodes and kinds a write touched — which it widens through the store's indexes
//! (pods by node, by claim, by owner) to exactly the objects it must revisit. A write
//! therefore costs work proportional to what it touched, not to the cluster's size.
//! Time is the exception: [`reconcile_all`] (after `Lab::advance`, on the ticker, when
//! a registered timer is due) lets every controller look at everything, which is how
//! eviction timeouts, the forced-detach timer and graceful deletions fire.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Duration;
use serde_json::{Value, json};

use super::index::PodKey;
use super::resources;
use super::state::{State, str_at};
use super::store::WatchEvent;

pub(crate) mod autoscaler;
pub(crate) mod endpoints;
mod kubelet;
pub(crate) mod managed;
pub(crate) mod nodes;
mod pod_health;
mod pressure;
mod quota;
mod scheduling;
mod volumes;
mod workloads;

use autoscaler::autoscaler;
use endpoints::endpoints;
use kubelet::kubelet;
use managed::managed_objects;
use nodes::{apply_faults, node_lifecycle, pod_gc};
use pressure::pressure_eviction;
use quota::resource_quotas;
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

/// Rounds of reconciliation after one change before the lab gives up (a controller
/// that keeps changing things would otherwise hold the lock forever).
const MAX_ROUNDS: usize = 32;

/// What changed since the controllers last looked.
#[derive(Default)]
pub struct Dirty {
    /// Look at everything: the first pass, a time-driven pass.
    pub all: bool,
    /// The changes, in order (their `old` and removed objects name the nodes, owners
    /// and claims a change affects).
    pub events: Vec<Arc<WatchEvent>>,
    /// Pods created, changed or removed.
    pub pods: BTreeSet<PodKey>,
    /// Nodes created, changed or removed.
    pub nodes: BTreeSet<String>,
    /// Resource keys (`pods`, `replicasets.apps`) with any change.
    pub kinds: BTreeSet<String>,
}

impl Dirty {
    fn new(all: bool, events: Vec<Arc<WatchEvent>>) -> Self {
        let mut d = Dirty {
            all,
            ..Default::default()
        };
        for ev in &events {
            let name = str_at(&ev.object, "/metadata/name").to_string();
            match ev.resource.as_str() {
                "pods" => {
                    d.pods.insert((ev.namespace.clone(), name));
                }
                "nodes" => {
                    d.nodes.insert(name);
                }
                _ => {}
            }
            if !d.kinds.contains(&ev.resource) {
                d.kinds.insert(ev.resource.clone());
            }
        }
        d.events = events;
        d
    }

    /// Did anything of this kind change (or must everything be looked at)?
    pub fn touched(&self, kind: &str) -> bool {
        self.all || self.kinds.contains(kind)
    }

    /// Every version of changed objects of `kind` seen in the changes: new, old and
    /// removed ones. What they reference (owner, node, claims) may need a look.
    pub fn versions<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.events
            .iter()
            .filter(move |e| e.resource == kind)
            .flat_map(|e| std::iter::once(&*e.object).chain(e.old.as_deref()))
    }
}

/// React to the writes since the last reconcile: each controller revisits only what
/// they touched. Runs a full pass instead when a timer is due.
pub fn reconcile(st: &mut State) {
    run(st, false);
}

/// Every controller looks at every object (and re-registers its timers): the first
/// pass and time-driven passes.
pub fn reconcile_all(st: &mut State) {
    run(st, true);
}

fn run(st: &mut State, mut all: bool) {
    for _ in 0..MAX_ROUNDS {
        if st.next_wake.is_some_and(|w| w <= st.now()) {
            all = true;
        }
        if apply_faults(st) {
            all = true;
        }
        let changes = st.store.take_changes();
        if !all && changes.is_empty() {
            return;
        }
        if all {
            st.next_wake = None;
        }
        let d = Dirty::new(all, changes);
        all = false;
        node_lifecycle(st, &d);
        pod_gc(st, &d);
        garbage_collect(st, &d);
        deployments(st, &d);
        replicasets(st, &d);
        scheduler(st, &d);
        autoscaler(st, &d);
        attach_detach(st, &d);
        kubelet(st, &d);
        pressure_eviction(st, &d);
        endpoints(st, &d);
        disruption_budgets(st, &d);
        workload_status(st, &d);
        resource_quotas(st, &d);
        managed_objects(st, &d);
    }
}

/// Clones of the pods with these keys that still exist.
pub(super) fn pods_by_key<'a>(
    st: &State,
    keys: impl IntoIterator<Item = &'a PodKey>,
) -> Vec<Value> {
    keys.into_iter()
        .filter_map(|(ns, name)| st.store.get("pods", ns, name).cloned())
        .collect()
}

/// The pods a controller must revisit: every pod on a full pass, else the changed pods
/// and the pods on changed nodes.
pub(super) fn pods_to_visit(st: &State, d: &Dirty) -> BTreeSet<PodKey> {
    if d.all {
        return st
            .store
            .list("pods", None)
            .map(|p| {
                (
                    str_at(p, "/metadata/namespace").to_string(),
                    str_at(p, "/metadata/name").to_string(),
                )
            })
            .collect();
    }
    let mut keys = d.pods.clone();
    for n in &d.nodes {
        keys.extend(st.store.index.pods_on(n));
    }
    keys
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

pub(super) fn active(pod: &Value) -> bool {
    let phase = str_at(pod, "/status/phase");
    phase != "Succeeded"
        && phase != "Failed"
        && pod.pointer("/metadata/deletionTimestamp").is_none()
}

pub fn node_ready(node: &Value) -> bool {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}
