//! What the API checks and fills in on a write: the shapes the lab's controllers rely
//! on, and the defaults the pod registry adds.

use serde_json::{Value, json};

use crate::lab::resources::ResourceDef;
use crate::lab::status::ApiError;

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

pub(super) fn invalid(res: &ResourceDef, name: &str, why: String) -> ApiError {
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
