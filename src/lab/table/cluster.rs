//! Table columns of the cluster's own objects: nodes (with the STATUS kubectl derives),
//! events, storage (claims, volumes, attachments) and namespaces.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{age, col, or_none};
use crate::lab::clock::{human_duration, parse_ts};
use crate::lab::state::str_at;

pub(super) fn node_columns() -> Vec<Value> {
    vec![
        col(
            "Name",
            "string",
            0,
            "Name must be unique within a namespace.",
        ),
        col("Status", "string", 0, "The status of the node"),
        col("Roles", "string", 0, "The roles of the node"),
        col(
            "Age",
            "string",
            0,
            "CreationTimestamp is a timestamp representing the server time when this object was created.",
        ),
        col(
            "Version",
            "string",
            0,
            "Kubelet Version reported by the node.",
        ),
        col(
            "Internal-IP",
            "string",
            1,
            "List of addresses reachable to the node. Queried from cloud provider, if available.",
        ),
        col(
            "External-IP",
            "string",
            1,
            "List of addresses reachable to the node. Queried from cloud provider, if available.",
        ),
        col(
            "OS-Image",
            "string",
            1,
            "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
        ),
        col(
            "Kernel-Version",
            "string",
            1,
            "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
        ),
        col(
            "Container-Runtime",
            "string",
            1,
            "Container runtime version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
        ),
    ]
}

/// The STATUS column of `printNode`: Ready / NotReady (any non-True Ready, including
/// Unknown) / Unknown (no Ready condition), plus `,SchedulingDisabled` when cordoned.
pub fn node_status(node: &Value) -> String {
    let mut status = Vec::new();
    if let Some(c) = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
    {
        status.push(if c["status"] == "True" {
            "Ready"
        } else {
            "NotReady"
        });
    }
    if status.is_empty() {
        status.push("Unknown");
    }
    if node.pointer("/spec/unschedulable") == Some(&json!(true)) {
        status.push("SchedulingDisabled");
    }
    status.join(",")
}

pub(super) fn node_cells(node: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut roles: Vec<String> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            if let Some(r) = k.strip_prefix("node-role.kubernetes.io/") {
                Some(r.to_string())
            } else if k == "kubernetes.io/role" {
                v.as_str().map(String::from)
            } else {
                None
            }
        })
        .filter(|r| !r.is_empty())
        .collect();
    roles.sort();
    let addr = |t: &str| {
        node.pointer("/status/addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|a| a["type"] == t)
            .and_then(|a| a["address"].as_str())
            .unwrap_or("")
            .to_string()
    };
    vec![
        json!(str_at(node, "/metadata/name")),
        json!(node_status(node)),
        json!(if roles.is_empty() {
            "<none>".to_string()
        } else {
            roles.join(",")
        }),
        json!(age(node, now)),
        json!(str_at(node, "/status/nodeInfo/kubeletVersion")),
        json!(or_none(&addr("InternalIP"))),
        json!(or_none(&addr("ExternalIP"))),
        json!(or_none(str_at(node, "/status/nodeInfo/osImage"))),
        json!(or_none(str_at(node, "/status/nodeInfo/kernelVersion"))),
        json!(or_none(str_at(
            node,
            "/status/nodeInfo/containerRuntimeVersion"
        ))),
    ]
}

pub(super) fn event_columns() -> Vec<Value> {
    vec![
        col("Last Seen", "string", 0, "Time when last event occurred"),
        col(
            "Type",
            "string",
            0,
            "Type of this event (Normal, Warning), new types could be added in the future.",
        ),
        col(
            "Reason",
            "string",
            0,
            "This should be a short, machine understandable string that gives the reason for this event being generated.",
        ),
        col(
            "Object",
            "string",
            0,
            "The object that this event is about. Mapped from event.involvedObject.",
        ),
        col(
            "Subobject",
            "string",
            1,
            "The subobject that this event is about.",
        ),
        col(
            "Source",
            "string",
            1,
            "The component reporting this event. Should be a short machine understandable string.",
        ),
        col(
            "Message",
            "string",
            0,
            "A human-readable description of the status of this operation.",
        ),
        col(
            "First Seen",
            "string",
            1,
            "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
        ),
        col(
            "Count",
            "string",
            1,
            "The number of times this event has occurred.",
        ),
        col(
            "Name",
            "string",
            1,
            "Name must be unique within a namespace.",
        ),
    ]
}

pub(super) fn since(o: &Value, ptr: &str, now: DateTime<Utc>) -> String {
    o.pointer(ptr)
        .and_then(Value::as_str)
        .and_then(parse_ts)
        .map(|t| human_duration(now - t))
        .unwrap_or_else(|| "<unknown>".into())
}

pub(super) fn event_cells(e: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(since(e, "/lastTimestamp", now)),
        json!(str_at(e, "/type")),
        json!(str_at(e, "/reason")),
        json!(format!(
            "{}/{}",
            str_at(e, "/involvedObject/kind").to_lowercase(),
            str_at(e, "/involvedObject/name")
        )),
        json!(str_at(e, "/involvedObject/fieldPath")),
        json!(str_at(e, "/source/component")),
        json!(str_at(e, "/message")),
        json!(since(e, "/firstTimestamp", now)),
        json!(e["count"].as_i64().unwrap_or(1).to_string()),
        json!(str_at(e, "/metadata/name")),
    ]
}

pub(super) fn access_modes(o: &Value, ptr: &str) -> String {
    o.pointer(ptr)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn pvc_columns() -> Vec<Value> {
    [
        "Name",
        "Status",
        "Volume",
        "Capacity",
        "Access Modes",
        "StorageClass",
        "VolumeAttributesClass",
        "Age",
    ]
    .iter()
    .map(|n| col(n, "string", 0, ""))
    .collect()
}

pub(super) fn pvc_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(str_at(o, "/metadata/name")),
        json!(str_at(o, "/status/phase")),
        json!(str_at(o, "/spec/volumeName")),
        json!(str_at(o, "/status/capacity/storage")),
        json!(access_modes(o, "/status/accessModes")),
        json!(str_at(o, "/spec/storageClassName")),
        json!("<unset>"),
        json!(age(o, now)),
    ]
}

pub(super) fn pv_columns() -> Vec<Value> {
    [
        "Name",
        "Capacity",
        "Access Modes",
        "Reclaim Policy",
        "Status",
        "Claim",
        "StorageClass",
        "VolumeAttributesClass",
        "Reason",
        "Age",
    ]
    .iter()
    .map(|n| col(n, "string", 0, ""))
    .collect()
}

pub(super) fn pv_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let claim = match (
        str_at(o, "/spec/claimRef/namespace"),
        str_at(o, "/spec/claimRef/name"),
    ) {
        (_, "") => String::new(),
        (ns, n) => format!("{ns}/{n}"),
    };
    vec![
        json!(str_at(o, "/metadata/name")),
        json!(str_at(o, "/spec/capacity/storage")),
        json!(access_modes(o, "/spec/accessModes")),
        json!(str_at(o, "/spec/persistentVolumeReclaimPolicy")),
        json!(str_at(o, "/status/phase")),
        json!(claim),
        json!(str_at(o, "/spec/storageClassName")),
        json!("<unset>"),
        json!(str_at(o, "/status/reason")),
        json!(age(o, now)),
    ]
}

pub(super) fn va_columns() -> Vec<Value> {
    ["Name", "Attacher", "PV", "Node", "Attached", "Age"]
        .iter()
        .map(|n| col(n, "string", 0, ""))
        .collect()
}

pub(super) fn va_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(str_at(o, "/metadata/name")),
        json!(str_at(o, "/spec/attacher")),
        json!(str_at(o, "/spec/source/persistentVolumeName")),
        json!(str_at(o, "/spec/nodeName")),
        json!(o.pointer("/status/attached") == Some(&json!(true))),
        json!(age(o, now)),
    ]
}

pub(super) fn ns_columns() -> Vec<Value> {
    ["Name", "Status", "Age"]
        .iter()
        .map(|n| col(n, "string", 0, ""))
        .collect()
}

pub(super) fn ns_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(str_at(o, "/metadata/name")),
        json!(str_at(o, "/status/phase")),
        json!(age(o, now)),
    ]
}
