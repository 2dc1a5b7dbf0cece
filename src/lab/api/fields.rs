//! Server-side field validation (`?fieldValidation=Strict`), as the API server does
//! it for create and replace: a body with a field its kind does not have is refused
//! (400), naming the field. kubectl sends `fieldValidation=Strict` on every create
//! and apply, and skips its own (client-side, OpenAPI v2) validation when the
//! server's OpenAPI v3 says the kind's PATCH takes that parameter, which the lab's
//! `/openapi/v3` says ([`openapi`]). `Ignore`, `Warn` and no parameter check nothing
//! (the lab sends no warnings).
//!
//! What a kind has is what its k8s-openapi type reads: the body is read as that type
//! and written back; a field of the body (not null) that is not in the result is
//! unknown. A body that does not read as the type at all (a string where a number
//! goes) is refused too, as the API server's decoding would.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::lab::resources::{RESOURCES, ResourceDef};
use crate::lab::status::ApiError;

fn round_trip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// The body as its kind's type reads it, or why it does not; `None` for a kind the
/// lab has no type for.
fn typed(res: &ResourceDef, v: &Value) -> Option<Result<Value, String>> {
    use k8s_openapi::api::{apps, coordination, core, discovery, policy, storage};
    Some(match (res.group, res.kind) {
        ("", "Namespace") => round_trip::<core::v1::Namespace>(v),
        ("", "Node") => round_trip::<core::v1::Node>(v),
        ("", "Pod") => round_trip::<core::v1::Pod>(v),
        ("", "Event") => round_trip::<core::v1::Event>(v),
        ("", "PersistentVolumeClaim") => round_trip::<core::v1::PersistentVolumeClaim>(v),
        ("", "PersistentVolume") => round_trip::<core::v1::PersistentVolume>(v),
        ("", "Service") => round_trip::<core::v1::Service>(v),
        ("", "Endpoints") => round_trip::<core::v1::Endpoints>(v),
        ("", "ConfigMap") => round_trip::<core::v1::ConfigMap>(v),
        ("", "Secret") => round_trip::<core::v1::Secret>(v),
        ("", "ResourceQuota") => round_trip::<core::v1::ResourceQuota>(v),
        ("", "ServiceAccount") => round_trip::<core::v1::ServiceAccount>(v),
        ("apps", "Deployment") => round_trip::<apps::v1::Deployment>(v),
        ("apps", "ReplicaSet") => round_trip::<apps::v1::ReplicaSet>(v),
        ("apps", "StatefulSet") => round_trip::<apps::v1::StatefulSet>(v),
        ("apps", "DaemonSet") => round_trip::<apps::v1::DaemonSet>(v),
        ("storage.k8s.io", "VolumeAttachment") => round_trip::<storage::v1::VolumeAttachment>(v),
        ("storage.k8s.io", "StorageClass") => round_trip::<storage::v1::StorageClass>(v),
        ("discovery.k8s.io", "EndpointSlice") => round_trip::<discovery::v1::EndpointSlice>(v),
        ("coordination.k8s.io", "Lease") => round_trip::<coordination::v1::Lease>(v),
        ("policy", "PodDisruptionBudget") => round_trip::<policy::v1::PodDisruptionBudget>(v),
        _ => return None,
    })
}

/// The fields of `body` (paths like `spec.template.spec.containers[0].imagePullPolciy`)
/// that are not in `typed`.
fn unknown(body: &Value, typed: &Value, at: &str, out: &mut Vec<String>) {
    match (body, typed) {
        (Value::Object(b), Value::Object(t)) => {
            for (k, v) in b {
                if v.is_null() {
                    continue;
                }
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match t.get(k) {
                    Some(tv) => unknown(v, tv, &path, out),
                    None => out.push(path),
                }
            }
        }
        (Value::Array(b), Value::Array(t)) => {
            for (i, (bv, tv)) in b.iter().zip(t).enumerate() {
                unknown(bv, tv, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// With `fieldValidation=Strict`: refuse a body with an unknown or mistyped field,
/// as the API server does (400, `strict decoding error: unknown field "…"`).
pub fn check(res: &ResourceDef, body: &Value, directive: Option<&str>) -> Result<(), ApiError> {
    if directive != Some("Strict") {
        return Ok(());
    }
    let Some(result) = typed(res, body) else {
        return Ok(());
    };
    let kind = res.kind;
    let version = res.version;
    let typed = result.map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {e}"
        ))
    })?;
    let mut out = Vec::new();
    unknown(body, &typed, "", &mut out);
    if out.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = out
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    Err(ApiError::bad_request(format!(
        "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
        list.join(", ")
    )))
}

/// `/openapi/v3`: the group versions the lab serves, each with its document.
pub fn openapi_root() -> Value {
    let mut paths = serde_json::Map::new();
    for gv in group_versions() {
        paths.insert(
            gv.clone(),
            json!({ "serverRelativeURL": format!("/openapi/v3/{gv}") }),
        );
    }
    json!({ "paths": paths })
}

/// `api/v1`, `apis/apps/v1`, … (the lab serves v1 of each group).
fn group_versions() -> Vec<String> {
    let mut gvs: Vec<String> = RESOURCES
        .iter()
        .map(|r| {
            if r.group.is_empty() {
                format!("api/{}", r.version)
            } else {
                format!("apis/{}/{}", r.group, r.version)
            }
        })
        .collect();
    gvs.sort();
    gvs.dedup();
    gvs
}

/// `/openapi/v3/api/v1`, `/openapi/v3/apis/GROUP/v1`: a minimal OpenAPI 3 document
/// of a group version. It has, for each kind, its object path with the PATCH
/// operation (what kubectl reads to learn that the server validates fields, see
/// [`check`]), its `x-kubernetes-group-version-kind` and its query parameters; no
/// schemas (so kubectl computes apply patches from its own types, as with no
/// OpenAPI at all). `None` for a group version the lab does not serve.
pub fn openapi_document(gv: &str) -> Option<Value> {
    if !group_versions().iter().any(|g| g == gv) {
        return None;
    }
    let mut paths = serde_json::Map::new();
    for r in RESOURCES {
        let prefix = if r.group.is_empty() {
            format!("api/{}", r.version)
        } else {
            format!("apis/{}/{}", r.group, r.version)
        };
        if prefix != gv {
            continue;
        }
        let path = if r.namespaced {
            format!("/{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("/{prefix}/{}/{{name}}", r.plural)
        };
        let param = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
        paths.insert(
            path,
            json!({
                "patch": {
                    "operationId": format!("patch{}", r.kind),
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": {
                        "group": r.group, "version": r.version, "kind": r.kind
                    },
                    "parameters": [param("dryRun"), param("fieldManager"), param("fieldValidation"), param("force")],
                    "responses": {"200": {"description": "OK"}}
                }
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "runbook lab", "version": "v1"},
        "paths": paths
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::resources::by_path;

    #[test]
    fn strict_names_a_misspelt_field_and_lets_a_good_body_through() {
        let deploy = by_path("apps", "v1", "deployments").unwrap();
        let good = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "labels": {"a": "b"}, "creationTimestamp": null},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicy": "Always",
                    "securityContext": {"readOnlyRootFilesystem": true}}]}}}});
        check(deploy, &good, Some("Strict")).unwrap();
        let mut bad = good.clone();
        bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolciy"] = json!("Always");
        let e = check(deploy, &bad, Some("Strict")).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(
            e.message.contains(
                "strict decoding error: unknown field \"spec.template.spec.containers[0].imagePullPolciy\""
            ),
            "{}",
            e.message
        );
        check(deploy, &bad, Some("Ignore")).unwrap();
        check(deploy, &bad, None).unwrap();
        let mut mistyped = good;
        mistyped["spec"]["replicas"] = json!("two");
        assert_eq!(
            check(deploy, &mistyped, Some("Strict")).unwrap_err().code,
            400
        );
    }

    #[test]
    fn every_kind_the_lab_serves_has_a_type_and_a_patch_path_in_openapi_v3() {
        let root = openapi_root();
        for r in RESOURCES {
            assert!(
                typed(r, &json!({})).is_some(),
                "{} has no type for fieldValidation",
                r.kind
            );
            let gv = if r.group.is_empty() {
                "api/v1".to_owned()
            } else {
                format!("apis/{}/v1", r.group)
            };
            assert!(root["paths"][&gv]["serverRelativeURL"].is_string(), "{gv}");
            let doc = openapi_document(&gv).unwrap();
            let found = doc["paths"].as_object().unwrap().values().any(|p| {
                p["patch"]["x-kubernetes-group-version-kind"]["kind"] == r.kind
                    && p["patch"]["parameters"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|q| q["name"] == "fieldValidation")
            });
            assert!(
                found,
                "{} has no PATCH with fieldValidation in {gv}",
                r.kind
            );
        }
        assert!(openapi_document("apis/nothing/v1").is_none());
    }
}
