//! Controllers: how the simulated cluster reacts, each citing the Kubernetes behaviour
//! it imitates (reference/kubernetes.md). `reconcile` runs them all until nothing
//! changes; the lab calls it after every mutating request, on a timer, and after
//! `Lab::advance`.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::clock::{parse_ts, ts};
use super::resources;
use super::select::LabelSelector;
use super::state::{DeleteOpts, State, controller_of, owner_uids, pod_ready, str_at};

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

fn res(key: &str) -> &'static resources::ResourceDef {
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

fn apply_faults(st: &mut State) {
    let now = st.now();
    let start = st.clock.start();
    for i in 0..st.faults.len() {
        let (at, fault) = &st.faults[i];
        let Some(when) = start.checked_add_signed(*at) else {
            continue;
        };
        if st.applied[i] || when > now {
            continue;
        }
        let fault = fault.clone();
        st.applied[i] = true;
        if let Some(n) = fault.node_lost {
            st.lost_nodes.entry(n.node).or_insert(when);
        }
        if let Some(n) = fault.disk_fills {
            st.full_disks.insert(n.node);
        }
        if let Some(c) = fault.crash_loop
            && let Ok(sel) = LabelSelector::parse(&c.selector)
        {
            st.crash_loops.push((c.namespace, sel, when));
        }
    }
}

fn set_condition(
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

fn ensure_taint(taints: &mut Vec<Value>, key: &str, effect: &str, present: bool, now: &str) {
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

/// Node lifecycle controller (`pkg/controller/nodelifecycle`, §1.5): a lost node's
/// conditions go Unknown with the unreachable taints; a cordoned node gets the
/// unschedulable taint (TaintNodesByCondition, §1.1). A lost node's pods become
/// Unknown/NodeLost (`SetPodTerminationReason`, §1.4) and, after the 300 s toleration,
/// are deleted gracefully, which never completes there.
fn node_lifecycle(st: &mut State) {
    let now = st.now();
    let now_s = ts(now);
    for node in st.store.list_owned("nodes", None) {
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
        }
        for (k, v) in [("architecture", "amd64"), ("operatingSystem", "linux")] {
            if n.pointer(&format!("/status/nodeInfo/{k}")).is_none() {
                n["status"]["nodeInfo"][k] = json!(v);
            }
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
    let lost: Vec<(String, DateTime<Utc>)> =
        st.lost_nodes.iter().map(|(k, v)| (k.clone(), *v)).collect();
    for (node, since) in lost {
        for pod in pods_on(st, &node) {
            let phase = str_at(&pod, "/status/phase");
            if phase == "Succeeded" || phase == "Failed" {
                continue;
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
    }
}

fn pods_on(st: &State, node: &str) -> Vec<Value> {
    st.store
        .list("pods", None)
        .filter(|p| str_at(p, "/spec/nodeName") == node)
        .cloned()
        .collect()
}

fn tolerates(pod: &Value, key: &str, effect: &str) -> bool {
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
fn pod_gc(st: &mut State) {
    let nodes: std::collections::HashMap<String, bool> = st
        .store
        .list("nodes", None)
        .map(|n| {
            (
                str_at(n, "/metadata/name").to_string(),
                has_taint(n, OUT_OF_SERVICE),
            )
        })
        .collect();
    let doomed = pods_where(st, |p| {
        let node = str_at(p, "/spec/nodeName");
        !node.is_empty()
            && match nodes.get(node) {
                None => true,
                Some(oos) => *oos && !tolerates(p, OUT_OF_SERVICE, "NoExecute"),
            }
    });
    for pod in doomed {
        let (ns, name) = (
            str_at(&pod, "/metadata/namespace").to_string(),
            str_at(&pod, "/metadata/name").to_string(),
        );
        st.remove(res("pods"), &ns, &name);
    }
}

/// Clones of the pods matching `pred` (controllers scan by reference, clone few).
fn pods_where(st: &State, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    st.store
        .list("pods", None)
        .filter(|p| pred(p))
        .cloned()
        .collect()
}

/// What the ReplicaSet and Deployment controllers need to know of an active pod.
struct PodSummary {
    name: String,
    scheduled: bool,
    ready: bool,
    created: String,
}

/// Active pods by the uid of their controller owner.
fn active_pods_by_owner(st: &State) -> std::collections::HashMap<String, Vec<PodSummary>> {
    let mut map: std::collections::HashMap<String, Vec<PodSummary>> =
        std::collections::HashMap::new();
    for p in st.store.list("pods", None) {
        let Some(owner) = controller_of(p).and_then(|o| o["uid"].as_str()) else {
            continue;
        };
        if !active(p) {
            continue;
        }
        map.entry(owner.to_string()).or_default().push(PodSummary {
            name: str_at(p, "/metadata/name").to_string(),
            scheduled: !str_at(p, "/spec/nodeName").is_empty(),
            ready: pod_ready(p),
            created: str_at(p, "/metadata/creationTimestamp").to_string(),
        });
    }
    map
}

/// Garbage collector: dependents whose owners are gone are deleted (background propagation).
fn garbage_collect(st: &mut State) {
    let has_owners: Vec<(&crate::lab::store::Key, Vec<String>)> = st
        .store
        .all()
        .filter(|(_, v)| v.pointer("/metadata/deletionTimestamp").is_none())
        .map(|(k, v)| (k, owner_uids(v)))
        .filter(|(_, owners)| !owners.is_empty())
        .collect();
    if has_owners.is_empty() {
        return;
    }
    let uids: std::collections::HashSet<&str> = st
        .store
        .all()
        .map(|(_, v)| str_at(v, "/metadata/uid"))
        .collect();
    let orphans: Vec<crate::lab::store::Key> = has_owners
        .iter()
        .filter(|(_, owners)| owners.iter().all(|u| !uids.contains(u.as_str())))
        .map(|(k, _)| (*k).clone())
        .collect();
    drop(uids);
    drop(has_owners);
    for (r, ns, name) in orphans {
        if let Some(def) = resources::by_key(&r) {
            let _ = st.delete(def, &ns, &name, &DeleteOpts::default());
        }
    }
}

const HASH_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `pod-template-hash`: a hash of the template, encoded like `rand.SafeEncodeString`.
fn template_hash(template: &Value) -> String {
    let digest = Sha256::digest(template.to_string().as_bytes());
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    n.to_string()
        .bytes()
        .map(|b| HASH_CHARS[b as usize % HASH_CHARS.len()] as char)
        .collect()
}

/// A ReplicaSet written in a scenario carries the Deployment's template plus its
/// `pod-template-hash` label: that still counts as the current template.
fn same_template(rs_tpl: Option<&Value>, dep_tpl: &Value) -> bool {
    let Some(t) = rs_tpl else { return false };
    let mut t = t.clone();
    if let Some(l) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        l.remove("pod-template-hash");
    }
    let mut d = dep_tpl.clone();
    if let Some(l) = d
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        l.remove("pod-template-hash");
    }
    t == d
}

fn owner_ref(obj: &Value) -> Value {
    json!({"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true})
}

fn owned_by<'a>(items: &'a [Value], owner: &Value) -> impl Iterator<Item = &'a Value> {
    let uid = owner["metadata"]["uid"].clone();
    items
        .iter()
        .filter(move |v| controller_of(v).is_some_and(|o| o["uid"] == uid))
}

/// Deployment controller (simplified to the Recreate idea): the ReplicaSet whose
/// `pod-template-hash` matches the current template gets all replicas, others get 0.
/// `kubectl rollout restart` changes the template annotation, so a new ReplicaSet
/// takes over.
fn deployments(st: &mut State) {
    let rss = st.store.list_owned("replicasets.apps", None);
    for dep in st.store.list_owned("deployments.apps", None) {
        if dep.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let ns = str_at(&dep, "/metadata/namespace").to_string();
        let dname = str_at(&dep, "/metadata/name").to_string();
        let replicas = dep
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let template = dep.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let hash = template_hash(&template);
        let owned: Vec<Value> = owned_by(&rss, &dep).cloned().collect();
        let is_current = |rs: &Value| {
            str_at(rs, "/metadata/labels/pod-template-hash") == hash
                || str_at(rs, "/metadata/name") == format!("{dname}-{hash}")
                || same_template(rs.pointer("/spec/template"), &template)
        };
        let current = owned.iter().find(|rs| is_current(rs));
        if current.is_none() {
            let mut tpl = template.clone();
            tpl["metadata"]["labels"]["pod-template-hash"] = json!(hash);
            let mut selector = dep.pointer("/spec/selector").cloned().unwrap_or(json!({}));
            selector["matchLabels"]["pod-template-hash"] = json!(hash);
            let mut labels = template
                .pointer("/metadata/labels")
                .cloned()
                .unwrap_or(json!({}));
            labels["pod-template-hash"] = json!(hash);
            let rs = json!({
                "metadata": {"name": format!("{dname}-{hash}"), "namespace": ns, "labels": labels,
                    "ownerReferences": [owner_ref(&dep)],
                    "annotations": {"deployment.kubernetes.io/revision": (owned.len() + 1).to_string()}},
                "spec": {"replicas": replicas, "selector": selector, "template": tpl},
            });
            let now = st.now();
            let _ = st
                .store
                .create(res("replicasets.apps"), &ns, rs, now, false);
        }
        for rs in &owned {
            let want = if is_current(rs) { replicas } else { 0 };
            if rs.pointer("/spec/replicas").and_then(Value::as_i64) != Some(want) {
                let mut r = rs.clone();
                r["spec"]["replicas"] = json!(want);
                st.store
                    .update("replicasets.apps", &ns, str_at(rs, "/metadata/name"), r);
            }
        }
    }
}

fn active(pod: &Value) -> bool {
    let phase = str_at(pod, "/status/phase");
    phase != "Succeeded"
        && phase != "Failed"
        && pod.pointer("/metadata/deletionTimestamp").is_none()
}

/// ReplicaSet controller (`pkg/controller/replicaset`): counts active pods (not
/// terminal, no deletionTimestamp — so a NodeLost pod still counts until it is
/// deleted) and creates or deletes pods to match `spec.replicas`.
fn replicasets(st: &mut State) {
    let mut by_owner = active_pods_by_owner(st);
    for rs in st.store.list_owned("replicasets.apps", None) {
        if rs.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let ns = str_at(&rs, "/metadata/namespace").to_string();
        let want = rs
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let mut mine = by_owner
            .remove(str_at(&rs, "/metadata/uid"))
            .unwrap_or_default();
        let have = mine.len() as i64;
        if have < want {
            for _ in have..want {
                let tpl = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
                let suffix = st.store.suffix(5);
                let pod = json!({
                    "metadata": {"name": format!("{}-{suffix}", str_at(&rs, "/metadata/name")), "namespace": ns,
                        "labels": tpl.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
                        "annotations": tpl.pointer("/metadata/annotations").cloned().unwrap_or(json!({})),
                        "ownerReferences": [owner_ref(&rs)]},
                    "spec": tpl.get("spec").cloned().unwrap_or(json!({"containers": []})),
                });
                let _ = st.create(res("pods"), &ns, pod, false);
            }
        } else if have > want {
            // Delete the least useful first: unscheduled, then not ready, then newest.
            mine.sort_by(|a, b| {
                (a.scheduled, a.ready, std::cmp::Reverse(&a.created)).cmp(&(
                    b.scheduled,
                    b.ready,
                    std::cmp::Reverse(&b.created),
                ))
            });
            for p in mine.iter().take((have - want) as usize) {
                let _ = st.delete(res("pods"), &ns, &p.name, &DeleteOpts::default());
            }
        }
    }
}

fn node_ready(node: &Value) -> bool {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Scheduler: an unbound pod goes to a Ready, schedulable node whose NoSchedule and
/// NoExecute taints it tolerates, preferring the node with the fewest pods.
fn scheduler(st: &mut State) {
    let pending = pods_where(st, |p| {
        str_at(p, "/spec/nodeName").is_empty()
            && active(p)
            && str_at(p, "/status/phase") == "Pending"
    });
    if pending.is_empty() {
        return;
    }
    let nodes = st.store.list_owned("nodes", None);
    let mut per_node: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for p in st.store.list("pods", None) {
        *per_node
            .entry(str_at(p, "/spec/nodeName").to_string())
            .or_default() += 1;
    }
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
        let best = candidates.into_iter().min_by_key(|n| {
            let nn = str_at(n, "/metadata/name");
            (per_node.get(nn).copied().unwrap_or(0), nn.to_string())
        });
        if let Some(n) = best {
            *per_node
                .entry(str_at(n, "/metadata/name").to_string())
                .or_default() += 1;
        }
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

fn tolerates_any(pod: &Value, key: &str, effect: &str) -> bool {
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

/// The PVs (name, ReadWriteOnce?) a pod mounts through its claims.
fn pod_pvs(st: &State, pod: &Value) -> Vec<(String, bool)> {
    let ns = str_at(pod, "/metadata/namespace");
    pod.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| {
            v.pointer("/persistentVolumeClaim/claimName")
                .and_then(Value::as_str)
        })
        .filter_map(|claim| st.store.get("persistentvolumeclaims", ns, claim))
        .filter_map(|pvc| {
            let pv_name = str_at(pvc, "/spec/volumeName");
            let pv = st.store.get("persistentvolumes", "", pv_name)?;
            let rwo = pv
                .pointer("/spec/accessModes")
                .and_then(Value::as_array)
                .is_some_and(|m| {
                    m.iter()
                        .any(|x| x == "ReadWriteOnce" || x == "ReadWriteOncePod")
                });
            Some((pv_name.to_string(), rwo))
        })
        .collect()
}

fn va_name(pv: &str, attacher: &str, node: &str) -> String {
    let d = Sha256::digest(format!("{pv}{attacher}{node}").as_bytes());
    format!(
        "csi-{}",
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// Attach/detach controller (`pkg/controller/volume/attachdetach`, §1.5–1.6): a
/// VolumeAttachment stays while a pod on its node uses the volume. When the last such
/// pod is gone it is detached at once if the node is healthy or tainted out-of-service,
/// else after the 6-minute forced-detach timer.
fn attach_detach(st: &mut State) {
    let now = st.now();
    let nodes = st.store.list_owned("nodes", None);
    for va in st
        .store
        .list_owned("volumeattachments.storage.k8s.io", None)
    {
        let name = str_at(&va, "/metadata/name").to_string();
        let node = str_at(&va, "/spec/nodeName").to_string();
        let pv = str_at(&va, "/spec/source/persistentVolumeName").to_string();
        let holders: Vec<Value> = pods_on(st, &node)
            .into_iter()
            .filter(|p| pod_pvs(st, p).iter().any(|(v, _)| *v == pv))
            .collect();
        if !holders.is_empty() {
            st.detach_since.remove(&name);
            continue;
        }
        let node_obj = nodes.iter().find(|n| str_at(n, "/metadata/name") == node);
        let healthy = node_obj.is_some_and(node_ready) && !st.node_lost(&node);
        let out_of_service = node_obj.is_some_and(|n| has_taint(n, OUT_OF_SERVICE));
        let since = *st.detach_since.entry(name.clone()).or_insert(now);
        if healthy || out_of_service || node_obj.is_none() || now - since >= FORCE_DETACH_AFTER {
            st.detach_since.remove(&name);
            st.store
                .remove("volumeattachments.storage.k8s.io", "", &name);
        }
    }
}

/// Simulated kubelet on every node that is not lost: finishes graceful deletions once
/// the containers stopped (never on a lost node, §1.3), starts pending pods once their
/// volumes are attached — a ReadWriteOnce volume attached to another node leaves the pod
/// ContainerCreating with a FailedAttachVolume "Multi-Attach error" event (§1.6) — and
/// applies crash loops.
fn kubelet(st: &mut State) {
    let now = st.now();
    let crash = !st.crash_loops.is_empty();
    let work = pods_where(st, |p| {
        let node = str_at(p, "/spec/nodeName");
        !node.is_empty()
            && !st.node_lost(node)
            && (crash
                || p.pointer("/metadata/deletionTimestamp").is_some()
                || str_at(p, "/status/phase") == "Pending")
    });
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
            if now >= requested + KUBELET_STOP_TIME.min(grace)
                && super::state::finalizers(&pod).is_empty()
            {
                st.remove(res("pods"), &ns, &name);
            }
            continue;
        }
        let phase = str_at(&pod, "/status/phase").to_string();
        if phase == "Pending" {
            start_pod(st, &pod, &node);
        }
        if let Some(since) = st
            .crash_loops
            .iter()
            .find(|(cns, sel, _)| *cns == ns && sel.matches(&pod))
            .map(|c| c.2)
            && let Some(p) = st.store.get("pods", &ns, &name).cloned()
            && str_at(&p, "/status/phase") == "Running"
        {
            let mut p = p;
            let restarts = 1 + (now - since).num_minutes().max(0);
            let statuses: Vec<Value> = container_names(&p).iter().map(|c| json!({"name": c, "ready": false, "restartCount": restarts,
                "image": image_of(&p, c), "started": false,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off restarting failed container {c}")}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}})).collect();
            p["status"]["containerStatuses"] = json!(statuses);
            let mut conds: Vec<Value> = p
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            set_condition(
                &mut conds,
                "Ready",
                "False",
                "ContainersNotReady",
                "containers with unready status",
                &ts(since),
            );
            p["status"]["conditions"] = json!(conds);
            st.store.update("pods", &ns, &name, p.clone());
            st.record_event(
                &p,
                "Warning",
                "BackOff",
                "Back-off restarting failed container",
                "kubelet",
            );
        }
    }
}

fn container_names(pod: &Value) -> Vec<String> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect()
}

fn image_of(pod: &Value, container: &str) -> Value {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c["name"] == container)
        .map(|c| c["image"].clone())
        .unwrap_or(Value::Null)
}

fn start_pod(st: &mut State, pod: &Value, node: &str) {
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
            let users: Vec<String> = pods_on(st, &other_node)
                .into_iter()
                .filter(|p| {
                    str_at(p, "/metadata/namespace") == ns
                        && pod_pvs(st, p).iter().any(|(v, _)| *v == pv)
                })
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
    st.next_ip += 1;
    let ip = format!("10.8.{}.{}", st.next_ip / 250, st.next_ip % 250 + 2);
    let statuses: Vec<Value> = container_names(&p)
        .iter()
        .map(|c| {
            json!({"name": c, "ready": true, "restartCount": 0,
        "image": image_of(&p, c), "started": true, "state": {"running": {"startedAt": now}}})
        })
        .collect();
    p["status"]["phase"] = json!("Running");
    p["status"]["podIP"] = json!(ip);
    p["status"]["podIPs"] = json!([{"ip": ip}]);
    p["status"]["containerStatuses"] = json!(statuses);
    for t in ["Initialized", "Ready", "ContainersReady", "PodScheduled"] {
        set_condition(&mut conds, t, "True", "", "", &now);
    }
    p["status"]["conditions"] = json!(conds);
    st.store.update("pods", &ns, &name, p.clone());
    st.record_event(&p, "Normal", "Started", "Started container", "kubelet");
}

fn node_ip(st: &State, node: &str) -> String {
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

fn int_or_percent(v: &Value, total: i64, round_up: bool) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => {
            let pct: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
            let x = pct * total as f64 / 100.0;
            if round_up {
                x.ceil() as i64
            } else {
                x.floor() as i64
            }
        }
        _ => 0,
    }
}

/// Disruption controller (`pkg/controller/disruption`): currentHealthy, desiredHealthy
/// and disruptionsAllowed of every PDB, which the eviction subresource checks.
fn disruption_budgets(st: &mut State) {
    for pdb in st.store.list_owned("poddisruptionbudgets.policy", None) {
        let ns = str_at(&pdb, "/metadata/namespace").to_string();
        let sel = LabelSelector::from_object(pdb.pointer("/spec/selector").unwrap_or(&json!({})));
        let pods: Vec<Value> = st
            .store
            .list("pods", Some(&ns))
            .filter(|p| sel.matches(p) && active(p))
            .cloned()
            .collect();
        let expected = pods.len() as i64;
        let healthy = pods.iter().filter(|p| pod_ready(p)).count() as i64;
        let desired = if let Some(min) = pdb.pointer("/spec/minAvailable") {
            int_or_percent(min, expected, true)
        } else if let Some(max) = pdb.pointer("/spec/maxUnavailable") {
            (expected - int_or_percent(max, expected, true)).max(0)
        } else {
            expected
        };
        let mut p = pdb.clone();
        p["status"]["currentHealthy"] = json!(healthy);
        p["status"]["desiredHealthy"] = json!(desired);
        p["status"]["expectedPods"] = json!(expected);
        p["status"]["disruptionsAllowed"] = json!((healthy - desired).max(0));
        p["status"]["observedGeneration"] = pdb["metadata"]["generation"].clone();
        st.store.update(
            "poddisruptionbudgets.policy",
            &ns,
            str_at(&pdb, "/metadata/name"),
            p,
        );
    }
}

/// Status of ReplicaSets and Deployments (what `kubectl get deploy` and rollout read).
fn workload_status(st: &mut State) {
    let by_owner = active_pods_by_owner(st);
    let counts = |uid: &str| {
        by_owner
            .get(uid)
            .map(|v| (v.len(), v.iter().filter(|p| p.ready).count()))
            .unwrap_or((0, 0))
    };
    let rss = st.store.list_owned("replicasets.apps", None);
    for rs in &rss {
        let (total, ready) = counts(str_at(rs, "/metadata/uid"));
        let mut r = rs.clone();
        r["status"] = json!({"replicas": total, "fullyLabeledReplicas": total, "readyReplicas": ready,
            "availableReplicas": ready, "observedGeneration": rs["metadata"]["generation"]});
        st.store.update(
            "replicasets.apps",
            str_at(rs, "/metadata/namespace"),
            str_at(rs, "/metadata/name"),
            r,
        );
    }
    for dep in st.store.list_owned("deployments.apps", None) {
        let template = dep.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let hash = template_hash(&template);
        let mut total = 0;
        let mut ready = 0;
        let mut updated = 0;
        for rs in owned_by(&rss, &dep) {
            let (t, r) = counts(str_at(rs, "/metadata/uid"));
            total += t;
            ready += r;
            if str_at(rs, "/metadata/labels/pod-template-hash") == hash
                || same_template(rs.pointer("/spec/template"), &template)
            {
                updated += t;
            }
        }
        let want = dep
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1) as usize;
        let now = ts(st.now());
        let keep = |i: usize, field: &str| {
            dep.pointer(&format!("/status/conditions/{i}/{field}"))
                .cloned()
                .unwrap_or(json!(now))
        };
        let available = ready >= want;
        let mut status = json!({"replicas": total, "updatedReplicas": updated, "readyReplicas": ready,
            "availableReplicas": ready, "unavailableReplicas": total.saturating_sub(ready),
            "observedGeneration": dep["metadata"]["generation"],
            "conditions": [{"type": "Available", "status": if available { "True" } else { "False" },
                "reason": if available { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
                "lastUpdateTime": keep(0, "lastUpdateTime"), "lastTransitionTime": keep(0, "lastTransitionTime")},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                "message": format!("ReplicaSet \"{}-{hash}\" has successfully progressed.", str_at(&dep, "/metadata/name")),
                "lastUpdateTime": keep(1, "lastUpdateTime"), "lastTransitionTime": keep(1, "lastTransitionTime")}]});
        if !available && let Some(m) = status.as_object_mut() {
            m.remove("availableReplicas");
        }
        let mut d = dep.clone();
        d["status"] = status;
        st.store.update(
            "deployments.apps",
            str_at(&dep, "/metadata/namespace"),
            str_at(&dep, "/metadata/name"),
            d,
        );
    }
}
