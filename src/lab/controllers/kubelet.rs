//! The simulated kubelet.

use chrono::Duration;
use serde_json::{Value, json};

use super::volumes::{claims_of_pv, holders_on, pod_pvs, va_name};
use super::*;
use crate::lab::clock::{parse_ts, ts};
use crate::lab::state::{State, str_at};

/// Simulated kubelet on every node that is not lost: finishes graceful deletions once
/// the containers stopped (never on a lost node, §1.3), starts pending pods once their
/// volumes are attached — a ReadWriteOnce volume attached to another node leaves the pod
/// ContainerCreating with a FailedAttachVolume "Multi-Attach error" event (§1.6) — and
/// applies crash loops.
///
/// Looks at changed pods, pods on changed nodes, and pods waiting for a volume whose
/// attachment or claim changed; everything on a time-driven pass.
pub(super) fn kubelet(st: &mut State, d: &Dirty) {
    let now = st.now();
    // Running pods need a look only when faults or a readiness delay can change them.
    let health = !st.pod_faults.is_empty() || st.ready_after > Duration::zero();
    let mut keys = pods_to_visit(st, d);
    if !d.all {
        let pvs: BTreeSet<String> = d
            .versions("volumeattachments.storage.k8s.io")
            .map(|va| str_at(va, "/spec/source/persistentVolumeName").to_string())
            .chain(
                d.versions("persistentvolumeclaims")
                    .map(|c| str_at(c, "/spec/volumeName").to_string()),
            )
            .filter(|pv| !pv.is_empty())
            .collect();
        for pv in pvs {
            for (ns, claim) in claims_of_pv(st, &pv) {
                keys.extend(st.store.index.pods_with_claim(&ns, &claim));
            }
        }
        // A pod waiting for a volume names its holders in the Multi-Attach event, so
        // it is looked at again when a pod sharing its claim changes or goes.
        let shared: BTreeSet<(String, String)> = d
            .versions("pods")
            .flat_map(|p| {
                let ns = str_at(p, "/metadata/namespace");
                crate::lab::index::claims_of(p).map(move |c| (ns.to_string(), c.to_string()))
            })
            .collect();
        for (ns, claim) in shared {
            keys.extend(st.store.index.pods_with_claim(&ns, &claim));
        }
    }
    let work: Vec<Value> = pods_by_key(st, &keys)
        .into_iter()
        .filter(|p| {
            let node = str_at(p, "/spec/nodeName");
            !node.is_empty()
                && !st.node_lost(node)
                && (health
                    || p.pointer("/metadata/deletionTimestamp").is_some()
                    || str_at(p, "/status/phase") == "Pending")
        })
        .collect();
    for pod in work {
        let node = str_at(&pod, "/spec/nodeName").to_string();
        let (ns, name) = (
            str_at(&pod, "/metadata/namespace").to_string(),
            str_at(&pod, "/metadata/name").to_string(),
        );
        if let Some(del) = pod
            .pointer("/metadata/deletionTimestamp")
            .and_then(Value::as_str)
            .and_then(parse_ts)
        {
            let grace = pod
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            // Clamped: a scenario may write any number here.
            let grace = Duration::seconds(grace.clamp(0, MAX_GRACE_SECONDS));
            let requested = del - grace;
            let done_at = requested + KUBELET_STOP_TIME.min(grace);
            if now >= done_at && crate::lab::state::finalizers(&pod).is_empty() {
                st.remove(res("pods"), &ns, &name);
            } else if now < done_at {
                st.wake_at(done_at);
            }
            continue;
        }
        let phase = str_at(&pod, "/status/phase").to_string();
        if phase == "Pending" && !super::pod_health::image_pull_failing(st, &pod) {
            start_pod(st, &pod, &node);
        }
        if let Some(p) = st.store.get("pods", &ns, &name).cloned()
            && str_at(&p, "/status/phase") == "Running"
            && health
        {
            super::pod_health::running_pod(st, &p);
        }
    }
}

pub(super) fn container_names(pod: &Value) -> Vec<String> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect()
}

pub(super) fn image_of(pod: &Value, container: &str) -> Value {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c["name"] == container)
        .map(|c| c["image"].clone())
        .unwrap_or(Value::Null)
}

pub(super) fn start_pod(st: &mut State, pod: &Value, node: &str) {
    let (ns, name) = (
        str_at(pod, "/metadata/namespace").to_string(),
        str_at(pod, "/metadata/name").to_string(),
    );
    let now = ts(st.now());
    let mut blocked: Option<(String, Vec<String>)> = None;
    let mut attach = Vec::new();
    for (pv, rwo) in pod_pvs(st, pod) {
        if !rwo {
            continue;
        }
        let vas: Vec<Value> = st
            .store
            .list("volumeattachments.storage.k8s.io", None)
            .filter(|va| str_at(va, "/spec/source/persistentVolumeName") == pv)
            .cloned()
            .collect();
        if let Some(other) = vas.iter().find(|va| str_at(va, "/spec/nodeName") != node) {
            let other_node = str_at(other, "/spec/nodeName").to_string();
            let users: Vec<String> = holders_on(st, &pv, &other_node)
                .into_iter()
                .filter(|p| str_at(p, "/metadata/namespace") == ns)
                .map(|p| str_at(&p, "/metadata/name").to_string())
                .collect();
            blocked = Some((pv, users));
            break;
        }
        if vas.is_empty() {
            attach.push(pv);
        }
    }
    let mut p = pod.clone();
    let mut conds: Vec<Value> = p
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    p["status"]["hostIP"] = json!(node_ip(st, node));
    if p.pointer("/status/startTime").is_none() {
        p["status"]["startTime"] = json!(now);
    }
    if let Some((pv, users)) = blocked {
        let statuses: Vec<Value> = container_names(&p).iter().map(|c| json!({"name": c, "ready": false, "restartCount": 0,
            "image": image_of(&p, c), "started": false, "state": {"waiting": {"reason": "ContainerCreating"}}})).collect();
        p["status"]["containerStatuses"] = json!(statuses);
        set_condition(&mut conds, "PodScheduled", "True", "", "", &now);
        set_condition(
            &mut conds,
            "Ready",
            "False",
            "ContainersNotReady",
            "containers with unready status",
            &now,
        );
        p["status"]["conditions"] = json!(conds);
        st.store.update("pods", &ns, &name, p.clone());
        // reconciler.go reportMultiAttachError: names the holder pods when visible.
        let msg = if users.is_empty() {
            format!(
                "Multi-Attach error for volume \"{pv}\" Volume is already exclusively attached to one node and can't be attached to another"
            )
        } else {
            format!(
                "Multi-Attach error for volume \"{pv}\" Volume is already used by pod(s) {}",
                users.join(", ")
            )
        };
        st.record_event(
            &p,
            "Warning",
            "FailedAttachVolume",
            &msg,
            "attachdetach-controller",
        );
        // The reconciler retries; a retry a minute later counts the event again.
        let again = st.now() + Duration::minutes(1);
        st.wake_at(again);
        return;
    }
    for pv in attach {
        let attacher = st
            .store
            .get("persistentvolumes", "", &pv)
            .map(|v| str_at(v, "/spec/csi/driver").to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "pd.csi.storage.gke.io".to_string());
        let va = json!({"metadata": {"name": va_name(&pv, &attacher, node)},
            "spec": {"attacher": attacher, "nodeName": node, "source": {"persistentVolumeName": pv}},
            "status": {"attached": true}});
        let n = st.now();
        let _ = st
            .store
            .create(res("volumeattachments.storage.k8s.io"), "", va, n, false);
    }
    // Ready at once unless the scenario gives containers time to pass their probes.
    let ready = st.ready_after <= Duration::zero();
    if !ready {
        let due = st.now() + st.ready_after;
        st.wake_at(due);
    }
    st.next_ip += 1;
    let ip = format!("10.8.{}.{}", st.next_ip / 250, st.next_ip % 250 + 2);
    let statuses: Vec<Value> = container_names(&p)
        .iter()
        .map(|c| {
            json!({"name": c, "ready": ready, "restartCount": 0,
        "image": image_of(&p, c), "started": true, "state": {"running": {"startedAt": now}}})
        })
        .collect();
    p["status"]["phase"] = json!("Running");
    p["status"]["podIP"] = json!(ip);
    p["status"]["podIPs"] = json!([{"ip": ip}]);
    p["status"]["containerStatuses"] = json!(statuses);
    for t in ["Initialized", "PodScheduled"] {
        set_condition(&mut conds, t, "True", "", "", &now);
    }
    for t in ["Ready", "ContainersReady"] {
        if ready {
            set_condition(&mut conds, t, "True", "", "", &now);
        } else {
            set_condition(
                &mut conds,
                t,
                "False",
                "ContainersNotReady",
                "containers with unready status",
                &now,
            );
        }
    }
    p["status"]["conditions"] = json!(conds);
    st.store.update("pods", &ns, &name, p.clone());
    st.record_event(&p, "Normal", "Started", "Started container", "kubelet");
}

pub(super) fn node_ip(st: &State, node: &str) -> String {
    st.store
        .get("nodes", "", node)
        .and_then(|n| {
            n.pointer("/status/addresses")
                .and_then(Value::as_array)
                .cloned()
        })
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str().map(String::from))
        .unwrap_or_default()
}
