//! Deployments, ReplicaSets, the garbage collector, PodDisruptionBudgets and workload status.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use std::collections::BTreeSet;

use super::*;
use crate::lab::clock::ts;
use crate::lab::resources;
use crate::lab::select::LabelSelector;
use crate::lab::state::{DeleteOpts, State, controller_of, owner_uids, pod_ready, str_at};

/// What the ReplicaSet and Deployment controllers need to know of an active pod.
pub(super) struct PodSummary {
    pub(super) name: String,
    pub(super) scheduled: bool,
    pub(super) ready: bool,
    pub(super) created: String,
}

/// Active pods whose controller owner has this uid (through the owner index).
pub(super) fn active_pods_of(st: &State, owner_uid: &str) -> Vec<PodSummary> {
    st.store
        .index
        .dependents(owner_uid)
        .into_iter()
        .filter(|(r, _, _)| r == "pods")
        .filter_map(|(r, ns, name)| st.store.get(&r, &ns, &name))
        .filter(|p| controller_of(p).is_some_and(|o| o["uid"] == owner_uid) && active(p))
        .map(|p| PodSummary {
            name: str_at(p, "/metadata/name").to_string(),
            scheduled: !str_at(p, "/spec/nodeName").is_empty(),
            ready: pod_ready(p),
            created: str_at(p, "/metadata/creationTimestamp").to_string(),
        })
        .collect()
}

/// (namespace, name) of an object.
fn ns_name(v: &Value) -> (String, String) {
    (
        str_at(v, "/metadata/namespace").to_string(),
        str_at(v, "/metadata/name").to_string(),
    )
}

/// The objects of `kind` that changed, plus the controller owners of `kind` of the
/// changed objects of `dependent_kind`: what a status or replica count depends on.
fn changed_with_owners(st: &State, d: &Dirty, kind: &str, dependent_kind: &str) -> Vec<Value> {
    if d.all {
        return st.store.list_owned(kind, None);
    }
    let mut keys: BTreeSet<(String, String)> = d.versions(kind).map(ns_name).collect();
    for v in d.versions(dependent_kind) {
        if let Some(uid) = controller_of(v).and_then(|o| o["uid"].as_str())
            && let Some((r, ns, name)) = st.store.index.by_uid(uid)
            && r == kind
        {
            keys.insert((ns.clone(), name.clone()));
        }
    }
    keys.iter()
        .filter_map(|(ns, name)| st.store.get(kind, ns, name).cloned())
        .collect()
}

/// Garbage collector: dependents whose owners are gone are deleted (background
/// propagation). Looks at changed objects and the dependents of removed ones.
pub(super) fn garbage_collect(st: &mut State, d: &Dirty) {
    let candidates: BTreeSet<crate::lab::store::Key> = if d.all {
        st.store
            .all()
            .filter(|(_, v)| v.pointer("/metadata/ownerReferences").is_some())
            .map(|(k, _)| k.clone())
            .collect()
    } else {
        let mut c = BTreeSet::new();
        for ev in &d.events {
            if ev.etype == crate::lab::store::EventType::Deleted {
                c.extend(
                    st.store
                        .index
                        .dependents(str_at(&ev.object, "/metadata/uid")),
                );
            } else if ev.object.pointer("/metadata/ownerReferences").is_some() {
                c.insert((
                    ev.resource.clone(),
                    ev.namespace.clone(),
                    str_at(&ev.object, "/metadata/name").to_string(),
                ));
            }
        }
        c
    };
    let orphans: Vec<crate::lab::store::Key> = candidates
        .into_iter()
        .filter(|(r, ns, name)| {
            st.store.get(r, ns, name).is_some_and(|v| {
                let owners = owner_uids(v);
                v.pointer("/metadata/deletionTimestamp").is_none()
                    && !owners.is_empty()
                    && owners.iter().all(|u| st.store.index.by_uid(u).is_none())
            })
        })
        .collect();
    for (r, ns, name) in orphans {
        if let Some(def) = resources::by_key(&r) {
            let _ = st.delete(def, &ns, &name, &DeleteOpts::default());
        }
    }
}

pub(super) const HASH_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `pod-template-hash`: a hash of the template, encoded like `rand.SafeEncodeString`.
pub(super) fn template_hash(template: &Value) -> String {
    let digest = Sha256::digest(template.to_string().as_bytes());
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    n.to_string()
        .bytes()
        .map(|b| HASH_CHARS[b as usize % HASH_CHARS.len()] as char)
        .collect()
}

/// A ReplicaSet written in a scenario carries the Deployment's template plus its
/// `pod-template-hash` label: that still counts as the current template.
///
/// Compared without nulls and empty mappings: a client that decodes the template into
/// typed structs and encodes it again (kubectl rollout undo) writes
/// `creationTimestamp: null` and `resources: {}`, and the real controller compares
/// defaulted objects, where those are the same.
pub(super) fn same_template(rs_tpl: Option<&Value>, dep_tpl: &Value) -> bool {
    let Some(t) = rs_tpl else { return false };
    let mut t = t.clone();
    let mut dep_tpl = dep_tpl.clone();
    prune_empty(&mut t);
    prune_empty(&mut dep_tpl);
    let dep_tpl = &dep_tpl;
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

/// Remove nulls and empty mappings, recursively.
fn prune_empty(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for x in m.values_mut() {
                prune_empty(x);
            }
            m.retain(|_, x| !x.is_null() && !x.as_object().is_some_and(|o| o.is_empty()));
        }
        Value::Array(a) => a.iter_mut().for_each(prune_empty),
        _ => {}
    }
}

pub(super) fn owner_ref(obj: &Value) -> Value {
    json!({"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true})
}

pub(super) fn owned_by<'a>(items: &'a [Value], owner: &Value) -> impl Iterator<Item = &'a Value> {
    let uid = owner["metadata"]["uid"].clone();
    items
        .iter()
        .filter(move |v| controller_of(v).is_some_and(|o| o["uid"] == uid))
}

/// The annotation that numbers a Deployment's rollouts (`kubectl rollout history`).
pub(crate) const REVISION: &str = "deployment.kubernetes.io/revision";

/// A ReplicaSet's revision; 0 when it has none.
fn revision(rs: &Value) -> u64 {
    rs.pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Deployment controller (simplified to the Recreate idea): the ReplicaSet whose
/// `pod-template-hash` matches the current template gets all replicas, others get 0.
/// `kubectl rollout restart` changes the template annotation, so a new ReplicaSet
/// takes over.
pub(super) fn deployments(st: &mut State, d: &Dirty) {
    if !d.touched("deployments.apps") && !d.touched("replicasets.apps") {
        return;
    }
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
        // Revisions as deployment_util.go numbers them: a new ReplicaSet, or an old
        // one adopted again (`kubectl rollout undo`), gets the highest old revision
        // plus one; the Deployment carries its current ReplicaSet's revision.
        let max_old = owned
            .iter()
            .filter(|rs| !is_current(rs))
            .map(revision)
            .max()
            .unwrap_or(0);
        let current_revision = current.map_or(max_old + 1, |rs| revision(rs).max(max_old + 1));
        if dep
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(REVISION))
            .and_then(Value::as_str)
            != Some(current_revision.to_string().as_str())
        {
            let mut d = dep.clone();
            d["metadata"]["annotations"][REVISION] = json!(current_revision.to_string());
            st.store.update("deployments.apps", &ns, &dname, d);
        }
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
                    "annotations": {REVISION: current_revision.to_string()}},
                "spec": {"replicas": replicas, "selector": selector, "template": tpl},
            });
            let now = st.now();
            let _ = st
                .store
                .create(res("replicasets.apps"), &ns, rs, now, false);
        }
        for rs in &owned {
            let want = if is_current(rs) { replicas } else { 0 };
            let want_revision = if is_current(rs) {
                current_revision
            } else {
                revision(rs)
            };
            let stale_revision = revision(rs) != want_revision;
            if rs.pointer("/spec/replicas").and_then(Value::as_i64) != Some(want) || stale_revision
            {
                let mut r = rs.clone();
                r["spec"]["replicas"] = json!(want);
                if stale_revision {
                    r["metadata"]["annotations"][REVISION] = json!(want_revision.to_string());
                }
                st.store
                    .update("replicasets.apps", &ns, str_at(rs, "/metadata/name"), r);
            }
        }
    }
}

/// ReplicaSet controller (`pkg/controller/replicaset`): counts active pods (not
/// terminal, no deletionTimestamp — so a NodeLost pod still counts until it is
/// deleted) and creates or deletes pods to match `spec.replicas`.
pub(super) fn replicasets(st: &mut State, d: &Dirty) {
    for rs in changed_with_owners(st, d, "replicasets.apps", "pods") {
        if rs.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let ns = str_at(&rs, "/metadata/namespace").to_string();
        let want = rs
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        release_unmatched_pods(st, &rs);
        let mut mine = active_pods_of(st, str_at(&rs, "/metadata/uid"));
        let have = mine.len() as i64;
        if have < want {
            for _ in have..want {
                let tpl = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
                let suffix = st.store.suffix(5);
                let pod = json!({
                    "metadata": {"name": format!("{}-{suffix}", str_at(&rs, "/metadata/name")), "namespace": ns,
                        "generateName": format!("{}-", str_at(&rs, "/metadata/name")),
                        "labels": tpl.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
                        "annotations": tpl.pointer("/metadata/annotations").cloned().unwrap_or(json!({})),
                        "ownerReferences": [owner_ref(&rs)]},
                    "spec": tpl.get("spec").cloned().unwrap_or(json!({"containers": []})),
                });
                // A refused create (quota admission) is reported on the ReplicaSet
                // and retried on its next visit, as replica_set.go does.
                if let Err(e) = st.create(res("pods"), &ns, pod, false) {
                    let msg = format!("Error creating: {}", e.message);
                    st.record_event(
                        &rs,
                        "Warning",
                        "FailedCreate",
                        &msg,
                        "replicaset-controller",
                    );
                    break;
                }
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

/// A pod the ReplicaSet controls whose labels no longer match its selector (someone
/// ran `kubectl label pod web-x app-` to take it out of service and keep it for
/// debugging) is released: its controller ownerReference is removed, so it no longer
/// counts and the ReplicaSet makes a replacement (`ReleasePod` in
/// pkg/controller/controller_ref_manager.go). Its Deployment's ReplicaSets never
/// adopt it back while its labels do not match.
fn release_unmatched_pods(st: &mut State, rs: &Value) {
    let Some(selector) = rs.pointer("/spec/selector") else {
        return;
    };
    let sel = LabelSelector::from_object(selector);
    if sel.is_empty() {
        return;
    }
    let uid = str_at(rs, "/metadata/uid").to_string();
    let released: Vec<(String, String)> = st
        .store
        .index
        .dependents(&uid)
        .into_iter()
        .filter(|(r, _, _)| r == "pods")
        .filter_map(|(r, ns, name)| st.store.get(&r, &ns, &name).map(|p| (ns, name, p)))
        .filter(|(_, _, p)| {
            controller_of(p).is_some_and(|o| o["uid"] == uid.as_str()) && !sel.matches(p)
        })
        .map(|(ns, name, _)| (ns, name))
        .collect();
    for (ns, name) in released {
        let Some(mut pod) = st.store.get("pods", &ns, &name).cloned() else {
            continue;
        };
        if let Some(refs) = pod
            .pointer_mut("/metadata/ownerReferences")
            .and_then(Value::as_array_mut)
        {
            refs.retain(|o| o["uid"] != uid.as_str());
            if refs.is_empty()
                && let Some(meta) = pod["metadata"].as_object_mut()
            {
                meta.remove("ownerReferences");
            }
        }
        st.store.update("pods", &ns, &name, pod);
    }
}

pub(super) fn int_or_percent(v: &Value, total: i64, round_up: bool) -> i64 {
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
///
/// Recomputes changed budgets and those selecting a changed pod.
pub(super) fn disruption_budgets(st: &mut State, d: &Dirty) {
    const PDB: &str = "poddisruptionbudgets.policy";
    let pdbs: Vec<Value> = if d.all {
        st.store.list_owned(PDB, None)
    } else {
        let mut keys: BTreeSet<(String, String)> = d.versions(PDB).map(ns_name).collect();
        let namespaces: BTreeSet<&str> = d
            .versions("pods")
            .map(|p| str_at(p, "/metadata/namespace"))
            .collect();
        for ns in namespaces {
            for pdb in st.store.list(PDB, Some(ns)) {
                let sel =
                    LabelSelector::from_object(pdb.pointer("/spec/selector").unwrap_or(&json!({})));
                if d.versions("pods")
                    .any(|p| str_at(p, "/metadata/namespace") == ns && sel.matches(p))
                {
                    keys.insert(ns_name(pdb));
                }
            }
        }
        keys.iter()
            .filter_map(|(ns, name)| st.store.get(PDB, ns, name).cloned())
            .collect()
    };
    for pdb in pdbs {
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
///
/// Recomputes changed ReplicaSets and Deployments and the owners of changed pods and
/// ReplicaSets.
pub(super) fn workload_status(st: &mut State, d: &Dirty) {
    let counts = |st: &State, uid: &str| {
        let pods = active_pods_of(st, uid);
        (pods.len(), pods.iter().filter(|p| p.ready).count())
    };
    let rss = changed_with_owners(st, d, "replicasets.apps", "pods");
    let mut deps = changed_with_owners(st, d, "deployments.apps", "replicasets.apps");
    if !d.all {
        // Owners of the ReplicaSets whose pods changed.
        for rs in &rss {
            if let Some(uid) = controller_of(rs).and_then(|o| o["uid"].as_str())
                && let Some((r, ns, name)) = st.store.index.by_uid(uid).cloned()
                && r == "deployments.apps"
                && !deps
                    .iter()
                    .any(|d| ns_name(d) == (ns.clone(), name.clone()))
                && let Some(dep) = st.store.get(&r, &ns, &name)
            {
                deps.push(dep.clone());
            }
        }
    }
    for rs in &rss {
        let (total, ready) = counts(st, str_at(rs, "/metadata/uid"));
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
    for dep in deps {
        let owned: Vec<Value> = st
            .store
            .index
            .dependents(str_at(&dep, "/metadata/uid"))
            .into_iter()
            .filter(|(r, _, _)| r == "replicasets.apps")
            .filter_map(|(r, ns, name)| st.store.get(&r, &ns, &name).cloned())
            .collect();
        let template = dep.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let hash = template_hash(&template);
        let mut total = 0;
        let mut ready = 0;
        let mut updated = 0;
        for rs in owned_by(&owned, &dep) {
            let (t, r) = counts(st, str_at(rs, "/metadata/uid"));
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
