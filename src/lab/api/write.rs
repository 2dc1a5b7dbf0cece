//! Writes: create, replace (PUT), patch (strategic merge, JSON merge, JSON patch),
//! delete one or a collection, and the eviction subresource. Each runs the
//! controllers once afterwards, as the real control plane would react to the write.

use std::sync::Arc;

use axum::body::Bytes;
use http::{HeaderMap, header};
use serde_json::{Value, json};

use super::read::selectors;
use super::{Params, Target, dry_run, parse_json};
use crate::lab::resources::ResourceDef;
use crate::lab::state::{DeleteOpts, str_at};
use crate::lab::status::{self, ApiError};
use crate::lab::{Lab, controllers, patch};

/// An object in a create or replace body: JSON, or the protobuf kubectl's typed
/// clients send (for the kinds [`protobuf`](super::protobuf) reads; 415 otherwise).
fn parse_object(
    res: &'static ResourceDef,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match ct.as_str() {
        super::protobuf::MEDIA_TYPE => {
            let obj = super::protobuf::decode(body)?;
            let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
            if kind != res.kind || !res.group.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "the body is a {kind} of v1, the path is for {}",
                    res.qualified()
                )));
            }
            Ok(obj)
        }
        "application/cbor" => Err(ApiError::unsupported_media_type(&ct)),
        _ => parse_json(body),
    }
}

/// POST to a collection: create (201).
pub(super) fn create(
    lab: &Lab,
    res: &'static ResourceDef,
    ns: &str,
    headers: &HeaderMap,
    body: &Bytes,
    params: &Params,
) -> Result<(u16, Value), ApiError> {
    parse_object(res, headers, body).and_then(|obj| {
        super::fields::check(res, &obj, params.get("fieldValidation").map(String::as_str))?;
        let mut st = lab.lock();
        let r = st.create(res, ns, obj, dry_run(params));
        if r.is_ok() {
            controllers::reconcile(&mut st);
        }
        r.map(|o| (201, o))
    })
}

/// POST `pods/{name}/eviction` (201, or the PodDisruptionBudget's 429).
pub(super) fn evict(
    lab: &Lab,
    ns: &str,
    name: &str,
    body: &Bytes,
) -> Result<(u16, Value), ApiError> {
    parse_json(body).and_then(|ev| {
        let mut st = lab.lock();
        let r = st.evict(ns, name, &ev);
        controllers::reconcile(&mut st);
        r.map(|s| (201, s))
    })
}

/// PUT an object or its `/status`.
#[allow(clippy::too_many_arguments)]
pub(super) fn replace(
    lab: &Lab,
    res: &'static ResourceDef,
    ns: &str,
    name: &str,
    status_only: bool,
    headers: &HeaderMap,
    body: &Bytes,
    params: &Params,
) -> Result<(u16, Value), ApiError> {
    parse_object(res, headers, body).and_then(|obj| {
        super::fields::check(res, &obj, params.get("fieldValidation").map(String::as_str))?;
        let mut st = lab.lock();
        let r = st.replace(res, ns, name, obj, status_only, dry_run(params));
        controllers::reconcile(&mut st);
        r.map(|o| (200, o))
    })
}

/// DELETE one object. The answer is the removed (or marked) version shared with the
/// store's watch event, encoded after the lock is released.
pub(super) fn delete_one(
    lab: &Lab,
    res: &'static ResourceDef,
    ns: &str,
    name: &str,
    body: &Bytes,
    params: &Params,
) -> Result<(u16, Arc<Value>), ApiError> {
    let opts = delete_opts(body, params)?;
    let mut st = lab.lock();
    let r = st.delete(res, ns, name, &opts);
    controllers::reconcile(&mut st);
    r.map(|(obj, gone)| {
        // Pods, PVs, PVCs and VolumeAttachments return the object
        // (ReturnDeletedObject, §1.3); other kinds a Success Status.
        let returns_object = matches!(res.key().as_str(), "pods" | "persistentvolumes" | "persistentvolumeclaims" | "volumeattachments.storage.k8s.io" | "namespaces");
        if returns_object || !gone {
            (200, obj)
        } else {
            (200, Arc::new(status::success(200, json!({"name": name, "group": res.group, "kind": res.plural, "uid": obj["metadata"]["uid"]}))))
        }
    })
}

fn delete_opts(body: &Bytes, params: &Params) -> Result<DeleteOpts, ApiError> {
    let mut opts = if body.iter().any(|b| !b.is_ascii_whitespace()) {
        DeleteOpts::from_json(&parse_json(body)?)
    } else {
        DeleteOpts::default()
    };
    if let Some(g) = params.get("gracePeriodSeconds") {
        opts.grace = Some(
            g.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}")))?,
        );
    }
    if let Some(p) = params.get("propagationPolicy") {
        opts.propagation = Some(p.clone());
    }
    if dry_run(params) {
        opts.dry_run = true;
    }
    Ok(opts)
}

pub(super) fn delete_collection(
    lab: &Lab,
    t: &Target,
    body: &Bytes,
    params: &Params,
) -> Result<(u16, Value), ApiError> {
    let (labels, fields) = selectors(t.res, params)?;
    let opts = delete_opts(body, params)?;
    let mut st = lab.lock();
    let names: Vec<(String, String)> = st
        .store
        .list(&t.res.key(), t.ns.as_deref())
        .filter(|o| labels.matches(o) && fields.matches(o))
        .map(|o| {
            (
                str_at(o, "/metadata/namespace").to_string(),
                str_at(o, "/metadata/name").to_string(),
            )
        })
        .collect();
    let mut items = Vec::new();
    for (ns, name) in names {
        if let Ok((obj, _)) = st.delete(t.res, &ns, &name, &opts) {
            items.push(Arc::unwrap_or_clone(obj));
        }
    }
    controllers::reconcile(&mut st);
    Ok((
        200,
        json!({"kind": format!("{}List", t.res.kind), "apiVersion": t.res.api_version(),
        "metadata": {"resourceVersion": st.store.rv().to_string()}, "items": items}),
    ))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn patch_object(
    lab: &Lab,
    res: &'static ResourceDef,
    ns: &str,
    name: &str,
    status_only: bool,
    headers: &HeaderMap,
    params: &Params,
    body: &Bytes,
) -> Result<(u16, Value), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if ct == APPLY_PATCH {
        return apply_patch(lab, res, ns, name, status_only, params, body);
    }
    let p = parse_json(body)?;
    let mut st = lab.lock();
    let old = st
        .store
        .get(&res.key(), ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(res, name))?;
    let mut new = old.clone();
    match ct.as_str() {
        "application/strategic-merge-patch+json" => patch::strategic_merge(&mut new, &p),
        "application/merge-patch+json" => patch::merge_patch(&mut new, &p),
        "application/json-patch+json" => {
            patch::json_patch(&mut new, &p).map_err(|e| ApiError::new(422, "Invalid", e))?
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    }
    // A resourceVersion in the patch is an optimistic-lock precondition (§4.6).
    let patched_rv = new
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(String::from);
    let old_rv = old
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(String::from);
    if patched_rv.is_some() && patched_rv != old_rv {
        return Err(ApiError::conflict(res, name));
    }
    let r = st.replace(res, ns, name, new, status_only, dry_run(params))?;
    controllers::reconcile(&mut st);
    Ok((200, r))
}

/// The content type of a server-side apply (`kubectl apply --server-side`).
const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// PATCH with `application/apply-patch+yaml`: server-side apply, as far as the lab
/// models it. The object is created when it does not exist, else the applied
/// configuration is merged into it (strategic merge: lists of containers by name).
/// The field manager is required and recorded in `managedFields`. Not modelled: field
/// ownership conflicts (`--force-conflicts`) and removing fields the manager applied
/// before and no longer applies.
fn apply_patch(
    lab: &Lab,
    res: &'static ResourceDef,
    ns: &str,
    name: &str,
    status_only: bool,
    params: &Params,
    body: &Bytes,
) -> Result<(u16, Value), ApiError> {
    let manager = params
        .get("fieldManager")
        .filter(|m| !m.is_empty())
        .cloned()
        .ok_or_else(|| {
            ApiError::new(
                422,
                "Invalid",
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            )
        })?;
    // kubectl sends JSON (which is YAML); a person may send YAML.
    let p: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            crate::runbook::yaml::from_str(&text).map_err(|e| {
                ApiError::bad_request(format!(
                    "error decoding YAML: line {}: {}",
                    e.line, e.message
                ))
            })?
        }
    };
    if !p.is_object() {
        return Err(ApiError::bad_request("the apply patch is not an object"));
    }
    let applied_name = str_at(&p, "/metadata/name");
    if applied_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({applied_name}) does not match the name on the URL ({name})"
        )));
    }
    let mut st = lab.lock();
    let entry = json!({"manager": manager, "operation": "Apply",
        "apiVersion": res.api_version(), "time": crate::lab::clock::ts(st.now()),
        "fieldsType": "FieldsV1", "fieldsV1": {}});
    let with_manager = |obj: &mut Value| {
        let fields = obj["metadata"]["managedFields"].take();
        let mut list: Vec<Value> = fields
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|f| !(f["manager"] == manager.as_str() && f["operation"] == "Apply"))
            .collect();
        list.push(entry.clone());
        obj["metadata"]["managedFields"] = Value::Array(list);
    };
    let Some(old) = st.store.get(&res.key(), ns, name).cloned() else {
        let mut obj = p;
        with_manager(&mut obj);
        let r = st.create(res, ns, obj, dry_run(params))?;
        controllers::reconcile(&mut st);
        return Ok((201, r));
    };
    let mut new = old.clone();
    patch::strategic_merge(&mut new, &p);
    with_manager(&mut new);
    let r = st.replace(res, ns, name, new, status_only, dry_run(params))?;
    controllers::reconcile(&mut st);
    Ok((200, r))
}

/// The `scale` subresource of a deployment, replica set or stateful set, as an
/// autoscaling/v1 Scale: `GET` reads it; `PUT` (a Scale) and `PATCH` (a patch of
/// one, as `kubectl scale` sends) set the object's `spec.replicas`.
#[allow(clippy::too_many_arguments)]
pub(super) fn scale(
    lab: &Lab,
    res: &'static ResourceDef,
    ns: &str,
    name: &str,
    method: &http::Method,
    headers: &HeaderMap,
    params: &Params,
    body: &Bytes,
) -> Result<(u16, Value), ApiError> {
    if *method == http::Method::GET {
        let st = lab.read();
        let obj = st
            .store
            .get_shared(&res.key(), ns, name)
            .ok_or_else(|| ApiError::not_found(res, name))?;
        return Ok((200, scale_of(&obj)));
    }
    let mut st = lab.lock();
    let old = st
        .store
        .get(&res.key(), ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(res, name))?;
    let mut wanted = scale_of(&old);
    let p = parse_json(body)?;
    if *method == http::Method::PUT {
        wanted = p;
    } else {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        match ct.as_str() {
            "application/strategic-merge-patch+json" | "application/merge-patch+json" => {
                patch::merge_patch(&mut wanted, &p)
            }
            "application/json-patch+json" => {
                patch::json_patch(&mut wanted, &p).map_err(|e| ApiError::new(422, "Invalid", e))?
            }
            other => return Err(ApiError::unsupported_media_type(other)),
        }
    }
    let replicas = wanted
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .filter(|r| (0..=i64::from(i32::MAX)).contains(r))
        .ok_or_else(|| {
            ApiError::new(
                422,
                "Invalid",
                format!(
                    "Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: must be a whole number of at least 0"
                ),
            )
        })?;
    let mut new = old.clone();
    patch::merge_patch(&mut new, &json!({"spec": {"replicas": replicas}}));
    st.replace(res, ns, name, new, false, dry_run(params))?;
    controllers::reconcile(&mut st);
    let now = st
        .store
        .get(&res.key(), ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(res, name))?;
    Ok((200, scale_of(&now)))
}

/// The autoscaling/v1 Scale of a scalable object.
fn scale_of(obj: &Value) -> Value {
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let meta = |k: &str| {
        obj.pointer(&format!("/metadata/{k}"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta("name"),
            "namespace": meta("namespace"),
            "uid": meta("uid"),
            "resourceVersion": meta("resourceVersion"),
            "creationTimestamp": meta("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}
