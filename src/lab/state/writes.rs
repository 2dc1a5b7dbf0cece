//! Writes with the API server's rules: create with the registries' defaults, replace
//! (status subresource, optimistic locking, finalizers), the graceful deletion of
//! pods, orphaning dependents, and the data lost when a pod or claim goes.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Duration;
use serde_json::{Value, json};

use super::State;
use super::json::{at, finalizers, labels_of, str_at};
use super::shape::{check_shape, default_pod, invalid};
use crate::lab::clock::ts;
use crate::lab::resources::ResourceDef;
use crate::lab::status::ApiError;

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
                .get("preconditions")
                .and_then(|p| p.get("uid"))
                .and_then(Value::as_str)
                .map(String::from),
            precondition_rv: v
                .get("preconditions")
                .and_then(|p| p.get("resourceVersion"))
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

impl State {
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
            self.admit_pod_quota(ns, &obj)?;
        }
        // The API server's defaulting: a Secret without a type is Opaque.
        if res.key() == "secrets"
            && obj.get("type").is_none_or(|t| t.is_null() || t == "")
            && let Some(o) = obj.as_object_mut()
        {
            o.insert("type".into(), Value::String("Opaque".into()));
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
    /// The removed version is shared with its watch event (see [`Store::remove`]).
    ///
    /// [`Store::remove`]: crate::lab::store::Store::remove
    pub fn remove(&mut self, res: &ResourceDef, ns: &str, name: &str) -> Option<Arc<Value>> {
        let obj = self.store.remove(&res.key(), ns, name)?;
        if res.is("pods") {
            self.note_data_loss(&obj);
        }
        if res.is("persistentvolumeclaims") {
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
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(DATA_VOLUME_ANNOTATION))
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
    ) -> Result<(Arc<Value>, bool), ApiError> {
        let key = res.key();
        // Shared, not copied: a force delete reads the object and removes it.
        let Some(obj) = self.store.get_shared(&key, ns, name) else {
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
        if key == "pods" {
            grace = opts
                .grace
                .or_else(|| at(&obj, "/spec/terminationGracePeriodSeconds").and_then(Value::as_i64))
                .unwrap_or(30)
                .clamp(0, crate::lab::controllers::MAX_GRACE_SECONDS);
            let phase = str_at(&obj, "/status/phase");
            if str_at(&obj, "/spec/nodeName").is_empty()
                || phase == "Succeeded"
                || phase == "Failed"
            {
                grace = 0;
            }
            if let Some(existing) =
                at(&obj, "/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64)
                && at(&obj, "/metadata/deletionTimestamp").is_some()
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
            let mut o = Value::clone(&obj);
            o["metadata"]["deletionTimestamp"] = json!(ts(now + Duration::seconds(grace)));
            o["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            let stored = self.store.update_shared(&key, ns, name, o).unwrap_or(obj);
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
}
