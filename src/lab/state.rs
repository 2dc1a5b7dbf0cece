//! The lab's whole world behind one lock: the object store, the virtual clock, the
//! scenario's faults and metrics, and the bits of controller memory that Kubernetes
//! keeps outside objects (which nodes' kubelets are dead, detach timers).
//!
//! The operations here (create, delete, evict) are shared by the HTTP handlers and the
//! controllers, so a controller's force delete follows the same rules as kubectl's.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::clock::{Clock, parse_ts, ts};
use super::resources::{self, ResourceDef};
use super::scenario::{Fault, MetricDef};
use super::select::LabelSelector;
use super::status::{self, ApiError};
use super::store::Store;

/// Data that was lost: a pod holding it on an `emptyDir` was deleted (`pod` set), or
/// a PersistentVolumeClaim was deleted (`pod` empty, `volume` = claim, `labels` = the
/// claim's labels). The seed incident's second outbreak lost Prometheus' data.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DataLoss {
    pub namespace: String,
    pub pod: String,
    pub volume: String,
    pub labels: BTreeMap<String, String>,
    pub at: String,
}

/// Annotation naming the pod volume whose contents matter. When the pod is deleted and
/// that volume is an `emptyDir`, the lab records a [`DataLoss`].
pub const DATA_VOLUME_ANNOTATION: &str = "lab.runbook.dev/data-volume";

/// `DeleteOptions` from a body or the query string (§1.3).
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    pub grace: Option<i64>,
    pub propagation: Option<String>,
    pub dry_run: bool,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
}

impl DeleteOpts {
    pub fn from_json(v: &Value) -> Self {
        DeleteOpts {
            grace: v.get("gracePeriodSeconds").and_then(Value::as_i64),
            propagation: v
                .get("propagationPolicy")
                .and_then(Value::as_str)
                .map(String::from),
            dry_run: v
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|x| x == "All")),
            precondition_uid: v
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(String::from),
            precondition_rv: v
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(String::from),
        }
    }

    pub fn force() -> Self {
        DeleteOpts {
            grace: Some(0),
            ..Default::default()
        }
    }
}

pub struct State {
    pub store: Store,
    pub clock: Clock,
    pub faults: Vec<(Duration, Fault)>,
    pub applied: Vec<bool>,
    pub metrics: Vec<MetricDef>,
    /// Nodes whose kubelet stopped posting status, and since when.
    pub lost_nodes: BTreeMap<String, DateTime<Utc>>,
    /// Nodes whose disk filled up.
    pub full_disks: BTreeSet<String>,
    /// (namespace, selector, since) of crash-looping pods.
    pub crash_loops: Vec<(String, LabelSelector, DateTime<Utc>)>,
    /// VolumeAttachment name → when its last holder pod disappeared (forced-detach timer).
    pub detach_since: BTreeMap<String, DateTime<Utc>>,
    pub data_losses: Vec<DataLoss>,
    pub next_ip: u32,
    /// The earliest cluster time at which a time-driven controller has something to do
    /// (an eviction timeout, a detach timer, a kubelet finishing a deletion, a fault):
    /// a write after it runs a full pass instead of an incremental one.
    pub next_wake: Option<DateTime<Utc>>,
}

impl State {
    pub fn new(clock: Clock, faults: Vec<(Duration, Fault)>, metrics: Vec<MetricDef>) -> Self {
        let seed = clock.now().timestamp_nanos_opt().unwrap_or(42) as u64;
        let n = faults.len();
        State {
            store: Store::new(seed),
            clock,
            faults,
            applied: vec![false; n],
            metrics,
            lost_nodes: BTreeMap::new(),
            full_disks: BTreeSet::new(),
            crash_loops: Vec::new(),
            detach_since: BTreeMap::new(),
            data_losses: Vec::new(),
            next_ip: 10,
            next_wake: None,
        }
    }

    /// A controller will have work at `t` without any write: make sure a pass runs then.
    pub fn wake_at(&mut self, t: DateTime<Utc>) {
        if self.next_wake.is_none_or(|w| t < w) {
            self.next_wake = Some(t);
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn node_lost(&self, node: &str) -> bool {
        self.lost_nodes.contains_key(node)
    }

    /// Create through the API: defaults like the real registries add them.
    pub fn create(
        &mut self,
        res: &'static ResourceDef,
        ns: &str,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if let Some(body_ns) = obj.pointer("/metadata/namespace").and_then(Value::as_str)
            && res.namespaced
            && !body_ns.is_empty()
            && body_ns != ns
        {
            return Err(ApiError::bad_request(format!(
                "the namespace of the provided object ({body_ns}) does not match the namespace sent on the request ({ns})"
            )));
        }
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        check_shape(&obj).map_err(|why| invalid(res, &name, why))?;
        if res.key() == "pods" {
            default_pod(&mut obj);
        }
        if dry_run {
            return Ok(obj);
        }
        let now = self.now();
        self.store.create(res, ns, obj, now, false)
    }

    /// Replace an object after a PUT/PATCH. `status_only` keeps everything but status
    /// (the `/status` subresource); otherwise status is kept from the stored object for
    /// kinds with a status subresource, as the real strategies' PrepareForUpdate do.
    pub fn replace(
        &mut self,
        res: &'static ResourceDef,
        ns: &str,
        name: &str,
        mut new: Value,
        status_only: bool,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let Some(old) = self.store.get(&res.key(), ns, name).cloned() else {
            return Err(ApiError::not_found(res, name));
        };
        if let Some(rv) = new
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            && !rv.is_empty()
            && Some(rv)
                != old
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
        {
            return Err(ApiError::conflict(res, name));
        }
        check_shape(&new).map_err(|why| invalid(res, name, why))?;
        let merged = if status_only {
            let mut m = old.clone();
            m["status"] = new.get("status").cloned().unwrap_or(Value::Null);
            m
        } else {
            if res.subresources.contains(&"status") {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            new["apiVersion"] = json!(res.api_version());
            new["kind"] = json!(res.kind);
            new["metadata"]["name"] = json!(name);
            if res.namespaced {
                new["metadata"]["namespace"] = json!(ns);
            }
            // deletionTimestamp cannot be set or cleared by an update.
            match old.pointer("/metadata/deletionTimestamp") {
                Some(d) => new["metadata"]["deletionTimestamp"] = d.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove("deletionTimestamp");
                    }
                }
            }
            new
        };
        if dry_run {
            return Ok(merged);
        }
        let stored = self
            .store
            .update(&res.key(), ns, name, merged)
            .ok_or_else(|| ApiError::not_found(res, name))?;
        // Removing the last finalizer of an object being deleted completes the deletion.
        if stored.pointer("/metadata/deletionTimestamp").is_some() && finalizers(&stored).is_empty()
        {
            let graceful_pod = res.key() == "pods"
                && stored
                    .pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
                    > 0;
            if !graceful_pod {
                self.remove(res, ns, name);
            }
        }
        Ok(stored)
    }

    /// Remove an object for good. Pods holding important data on an emptyDir record a loss.
    pub fn remove(&mut self, res: &ResourceDef, ns: &str, name: &str) -> Option<Value> {
        let obj = self.store.remove(&res.key(), ns, name)?;
        if res.key() == "pods" {
            self.note_data_loss(&obj);
        }
        if res.key() == "persistentvolumeclaims" {
            // The claim's data goes with it (reclaim policy Delete, the usual default).
            self.data_losses.push(DataLoss {
                namespace: ns.to_string(),
                pod: String::new(),
                volume: name.to_string(),
                labels: labels_of(&obj),
                at: ts(self.now()),
            });
        }
        Some(obj)
    }

    fn note_data_loss(&mut self, pod: &Value) {
        let Some(vol) = pod
            .pointer(&format!(
                "/metadata/annotations/{}",
                DATA_VOLUME_ANNOTATION.replace('/', "~1")
            ))
            .and_then(Value::as_str)
        else {
            return;
        };
        let is_empty_dir = pod
            .pointer("/spec/volumes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|v| v["name"] == vol && v.get("emptyDir").is_some());
        if !is_empty_dir {
            return;
        }
        let labels = labels_of(pod);
        self.data_losses.push(DataLoss {
            namespace: str_at(pod, "/metadata/namespace").to_string(),
            pod: str_at(pod, "/metadata/name").to_string(),
            volume: vol.to_string(),
            labels,
            at: ts(self.now()),
        });
    }

    /// DELETE: the graceful-deletion rules of `pkg/registry/core/pod/strategy.go`
    /// `CheckGracefulDelete` for pods (reference/kubernetes.md §1.3), finalizers for
    /// everything. Returns the object as it is after the call (the deleted object when
    /// it is gone) and whether it is gone.
    pub fn delete(
        &mut self,
        res: &'static ResourceDef,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<(Value, bool), ApiError> {
        let Some(obj) = self.store.get(&res.key(), ns, name).cloned() else {
            return Err(ApiError::not_found(res, name));
        };
        if let Some(uid) = &opts.precondition_uid
            && Some(uid.as_str()) != obj.pointer("/metadata/uid").and_then(Value::as_str)
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    res.qualified(),
                    str_at(&obj, "/metadata/uid")
                ),
            ));
        }
        if let Some(rv) = &opts.precondition_rv
            && Some(rv.as_str())
                != obj
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
        {
            return Err(ApiError::conflict(res, name));
        }
        let now = self.now();
        let mut grace = 0;
        if res.key() == "pods" {
            grace = opts
                .grace
                .or_else(|| {
                    obj.pointer("/spec/terminationGracePeriodSeconds")
                        .and_then(Value::as_i64)
                })
                .unwrap_or(30)
                .clamp(0, super::controllers::MAX_GRACE_SECONDS);
            let phase = str_at(&obj, "/status/phase");
            if str_at(&obj, "/spec/nodeName").is_empty()
                || phase == "Succeeded"
                || phase == "Failed"
            {
                grace = 0;
            }
            if let Some(existing) = obj
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                && obj.pointer("/metadata/deletionTimestamp").is_some()
                && grace >= existing
            {
                // A second DELETE can only shorten a pending graceful deletion.
                return Ok((obj, false));
            }
        }
        if opts.dry_run {
            return Ok((obj, false));
        }
        if opts.propagation.as_deref() == Some("Orphan") {
            self.orphan_dependents(&obj);
        }
        if grace > 0 || !finalizers(&obj).is_empty() {
            let mut o = obj.clone();
            o["metadata"]["deletionTimestamp"] = json!(ts(now + Duration::seconds(grace)));
            o["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            let stored = self.store.update(&res.key(), ns, name, o).unwrap_or(obj);
            return Ok((stored, false));
        }
        let gone = self.remove(res, ns, name).unwrap_or(obj);
        Ok((gone, true))
    }

    fn orphan_dependents(&mut self, owner: &Value) {
        let uid = str_at(owner, "/metadata/uid").to_string();
        let deps: Vec<(String, String, String, Value)> = self
            .store
            .index
            .dependents(&uid)
            .into_iter()
            .filter_map(|(r, n, m)| {
                let v = self.store.get(&r, &n, &m)?.clone();
                Some((r, n, m, v))
            })
            .collect();
        for (r, n, m, mut v) in deps {
            if let Some(refs) = v
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|o| o["uid"] != uid.as_str());
            }
            self.store.update(&r, &n, &m, v);
        }
    }

    /// POST pods/{name}/eviction (`pkg/registry/core/pod/storage/eviction.go`, §1.2 step 4).
    pub fn evict(&mut self, ns: &str, name: &str, body: &Value) -> Result<Value, ApiError> {
        let pods = resources::by_key("pods").expect("invariant: pods are a served resource");
        let Some(pod) = self.store.get("pods", ns, name).cloned() else {
            return Err(ApiError::not_found(pods, name));
        };
        // kube 5's EvictParams sends `delete_options` (snake case): unknown to the real
        // server and ignored there, so ignored here too (§2 pitfall b).
        let opts = body
            .get("deleteOptions")
            .map(DeleteOpts::from_json)
            .unwrap_or_default();
        let phase = str_at(&pod, "/status/phase");
        let can_ignore_pdb = matches!(phase, "Succeeded" | "Failed" | "Pending")
            || pod.pointer("/metadata/deletionTimestamp").is_some();
        if !can_ignore_pdb {
            let matching: Vec<Value> = self
                .store
                .list("poddisruptionbudgets.policy", Some(ns))
                .filter(|pdb| {
                    pdb.pointer("/spec/selector")
                        .is_some_and(|s| LabelSelector::from_object(s).matches(&pod))
                })
                .cloned()
                .collect();
            if matching.len() > 1 {
                return Err(ApiError::new(
                    500,
                    "InternalError",
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                ));
            }
            if let Some(pdb) = matching.into_iter().next() {
                let allowed = pdb
                    .pointer("/status/disruptionsAllowed")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let healthy = pdb
                    .pointer("/status/currentHealthy")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let desired = pdb
                    .pointer("/status/desiredHealthy")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let pdb_name = str_at(&pdb, "/metadata/name").to_string();
                // IfHealthyBudget (the default unhealthyPodEvictionPolicy): an unready pod
                // may go when the budget is met without it.
                let unready_ok = !pod_ready(&pod) && healthy >= desired && desired > 0;
                if !unready_ok {
                    if allowed <= 0 {
                        return Err(ApiError::new(429, "TooManyRequests",
                            "Cannot evict pod as it would violate the pod's disruption budget.")
                            .with_details(json!({"causes": [{"reason": "DisruptionBudget",
                                "message": format!("The disruption budget {pdb_name} needs {desired} healthy pods and has {healthy} currently")}]})));
                    }
                    if !opts.dry_run {
                        let mut p = pdb.clone();
                        p["status"]["disruptionsAllowed"] = json!(allowed - 1);
                        self.store
                            .update("poddisruptionbudgets.policy", ns, &pdb_name, p);
                    }
                }
            }
        }
        self.delete(pods, ns, name, &opts)?;
        Ok(status::success(201, json!({"name": name, "kind": "pods"})))
    }

    /// Record a core/v1 Event about an object; repeats within a minute are folded into
    /// the existing event (the event recorder's aggregation, simplified).
    pub fn record_event(
        &mut self,
        involved: &Value,
        etype: &str,
        reason: &str,
        message: &str,
        component: &str,
    ) {
        let ns = str_at(involved, "/metadata/namespace").to_string();
        let ns = if ns.is_empty() {
            "default".to_string()
        } else {
            ns
        };
        let uid = str_at(involved, "/metadata/uid").to_string();
        let now = self.now();
        let same = |e: &Value| {
            e.pointer("/involvedObject/uid").and_then(Value::as_str) == Some(&uid)
                && e["reason"] == reason
                && e["message"] == message
        };
        let existing = if uid.is_empty() {
            self.store
                .list("events", Some(&ns))
                .find(|e| same(e))
                .cloned()
        } else {
            self.store
                .index
                .events_about(&uid)
                .into_iter()
                .filter(|(_, ens, _)| *ens == ns)
                .filter_map(|(r, ens, name)| self.store.get(&r, &ens, &name))
                .find(|e| same(e))
                .cloned()
        };
        if let Some(mut e) = existing {
            let last = e["lastTimestamp"]
                .as_str()
                .and_then(parse_ts)
                .unwrap_or(now);
            if now - last < Duration::minutes(1) {
                return;
            }
            e["count"] = json!(e["count"].as_i64().unwrap_or(1).saturating_add(1));
            e["lastTimestamp"] = json!(ts(now));
            let name = str_at(&e, "/metadata/name").to_string();
            self.store.update("events", &ns, &name, e);
            return;
        }
        let events = resources::by_key("events").expect("invariant: events are a served resource");
        let suffix = format!(
            "{:016x}",
            self.store.rv() * 7919 + now.timestamp_subsec_nanos() as u64
        );
        let ev = json!({
            "metadata": {"name": format!("{}.{}", str_at(involved, "/metadata/name"), suffix), "namespace": ns},
            "involvedObject": {
                "kind": involved["kind"], "apiVersion": involved["apiVersion"],
                "name": involved["metadata"]["name"], "namespace": involved["metadata"]["namespace"],
                "uid": involved["metadata"]["uid"], "resourceVersion": involved["metadata"]["resourceVersion"],
            },
            "reason": reason, "message": message, "type": etype,
            "source": {"component": component},
            "firstTimestamp": ts(now), "lastTimestamp": ts(now), "count": 1,
            "reportingComponent": component, "reportingInstance": "",
        });
        let _ = self.store.create(events, &ns, ev, now, false);
    }

    /// Fill in `uid` of scenario events' involvedObject from the objects they name.
    pub fn link_event_uids(&mut self) {
        for e in self.store.list_owned("events", None) {
            if e.pointer("/involvedObject/uid")
                .and_then(Value::as_str)
                .is_some_and(|u| !u.is_empty())
            {
                continue;
            }
            let kind = str_at(&e, "/involvedObject/kind");
            let api = e
                .pointer("/involvedObject/apiVersion")
                .and_then(Value::as_str)
                .unwrap_or("v1");
            let Some(def) = resources::by_kind(api, kind)
                .or_else(|| resources::RESOURCES.iter().find(|r| r.kind == kind))
            else {
                continue;
            };
            let ons = if def.namespaced {
                str_at(&e, "/involvedObject/namespace")
            } else {
                ""
            };
            let Some(target) = self
                .store
                .get(&def.key(), ons, str_at(&e, "/involvedObject/name"))
            else {
                continue;
            };
            let mut e2 = e.clone();
            e2["involvedObject"]["uid"] = target["metadata"]["uid"].clone();
            e2["involvedObject"]["apiVersion"] = json!(def.api_version());
            self.store.update(
                "events",
                str_at(&e, "/metadata/namespace"),
                str_at(&e, "/metadata/name"),
                e2,
            );
        }
    }
}

/// Fields the lab's controllers write into must be objects (or arrays of objects);
/// anything else is rejected up front as the real API's schema validation would,
/// instead of breaking a controller later. `Err` names the offending field.
pub fn check_shape(obj: &Value) -> Result<(), String> {
    if !obj.is_object() {
        return Err("the object must be a JSON object".into());
    }
    const OBJECTS: &[&str] = &[
        "/metadata",
        "/metadata/labels",
        "/metadata/annotations",
        "/spec",
        "/status",
        "/status/nodeInfo",
        "/status/capacity",
        "/spec/template",
        "/spec/template/metadata",
        "/spec/template/metadata/labels",
        "/spec/template/spec",
        "/spec/selector",
        "/spec/selector/matchLabels",
        "/involvedObject",
        "/source",
    ];
    const ARRAYS_OF_OBJECTS: &[&str] = &[
        "/metadata/ownerReferences",
        "/spec/taints",
        "/spec/tolerations",
        "/spec/containers",
        "/spec/volumes",
        "/status/conditions",
        "/status/containerStatuses",
        "/status/addresses",
    ];
    for p in OBJECTS {
        if let Some(v) = obj.pointer(p)
            && !(v.is_object() || v.is_null())
        {
            return Err(format!(
                "{}: must be an object",
                p.trim_start_matches('/').replace('/', ".")
            ));
        }
    }
    for p in ARRAYS_OF_OBJECTS {
        if let Some(v) = obj.pointer(p)
            && !v.is_null()
            && !v.as_array().is_some_and(|a| a.iter().all(Value::is_object))
        {
            return Err(format!(
                "{}: must be a list of objects",
                p.trim_start_matches('/').replace('/', ".")
            ));
        }
    }
    Ok(())
}

fn invalid(res: &ResourceDef, name: &str, why: String) -> ApiError {
    ApiError::new(
        422,
        "Invalid",
        format!("{} \"{name}\" is invalid: {why}", res.kind),
    )
}

/// Defaults the pod registry and admission add on create.
pub(crate) fn default_pod(obj: &mut Value) {
    if obj.pointer("/spec/terminationGracePeriodSeconds").is_none() && obj.get("spec").is_some() {
        obj["spec"]["terminationGracePeriodSeconds"] = json!(30);
    }
    if obj.pointer("/spec/restartPolicy").is_none() && obj.get("spec").is_some() {
        obj["spec"]["restartPolicy"] = json!("Always");
    }
    if obj.pointer("/spec/schedulerName").is_none() && obj.get("spec").is_some() {
        obj["spec"]["schedulerName"] = json!("default-scheduler");
    }
    if obj.pointer("/status/phase").is_none() {
        obj["status"] = json!({"phase": "Pending"});
    }
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    v.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

pub fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    at(v, ptr).and_then(Value::as_str).unwrap_or("")
}

/// `Value::pointer` without its per-segment allocations (controllers and list filters
/// call this for every object); escaped pointers (`~0`, `~1`) go the slow way.
pub fn at<'a>(v: &'a Value, ptr: &str) -> Option<&'a Value> {
    if ptr.contains('~') || !(ptr.is_empty() || ptr.starts_with('/')) {
        return v.pointer(ptr);
    }
    ptr.split('/').skip(1).try_fold(v, |v, k| match v {
        Value::Object(m) => m.get(k),
        // serde_json's parse_index: no sign, no leading zero.
        Value::Array(a) if !k.starts_with('+') && (k == "0" || !k.starts_with('0')) => {
            k.parse::<usize>().ok().and_then(|i| a.get(i))
        }
        _ => None,
    })
}

pub fn finalizers(v: &Value) -> Vec<String> {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

pub fn owner_uids(v: &Value) -> Vec<String> {
    v.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|o| o["uid"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The controller owner reference (`controller: true`), if any.
pub fn controller_of(v: &Value) -> Option<&Value> {
    v.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|o| o["controller"] == true)
}

/// Pod condition Ready is True.
pub fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_agrees_with_json_pointer() {
        let v = json!({"metadata": {"name": "a", "annotations": {"x/y": "1", "t~": "2"}},
            "spec": {"containers": [{"name": "c"}]}});
        for p in [
            "",
            "/metadata/name",
            "/metadata/missing",
            "/spec/containers/0/name",
            "/spec/containers/1/name",
            "/spec/containers/x",
            "/spec/containers/00",
            "/spec/containers/+0",
            "/metadata/annotations/x~1y",
            "/metadata/annotations/t~0",
            "/metadata/name/deeper",
            "metadata",
        ] {
            assert_eq!(at(&v, p), v.pointer(p), "{p}");
        }
    }
}
