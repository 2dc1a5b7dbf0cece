//! Server-side printing: `meta.k8s.io/v1` Tables for `Accept: application/json;as=Table`,
//! the columns of `kubernetes/pkg/printers/internalversion/printers.go` (§1.4). kubectl
//! 1.37 prints only NAME/AGE when the server does not return a Table.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::clock::{human_duration, parse_ts};
use super::resources::ResourceDef;
use super::state::str_at;

/// `includeObject` of the Table request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

fn col(name: &str, typ: &str, priority: u8, description: &str) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": typ, "format": format, "description": description, "priority": priority})
}

fn age(obj: &Value, now: DateTime<Utc>) -> String {
    match obj
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(parse_ts)
    {
        Some(t) => human_duration(now - t),
        None => "<unknown>".into(),
    }
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.to_string()
    }
}

type CellsFn = fn(&Value, DateTime<Utc>) -> Vec<Value>;

/// Build a Table of `objects` for `res` (and `list_rv` in its metadata).
pub fn table(
    res: &ResourceDef,
    objects: &[&Value],
    now: DateTime<Utc>,
    include: IncludeObject,
    list_rv: Option<u64>,
) -> Value {
    let (columns, cells): (Vec<Value>, CellsFn) = match (res.group, res.plural) {
        ("", "pods") => (pod_columns(), pod_cells),
        ("", "nodes") => (node_columns(), node_cells),
        ("", "events") => (event_columns(), event_cells),
        ("", "persistentvolumeclaims") => (pvc_columns(), pvc_cells),
        ("", "persistentvolumes") => (pv_columns(), pv_cells),
        ("storage.k8s.io", "volumeattachments") => (va_columns(), va_cells),
        ("apps", "deployments") => (deploy_columns(), deploy_cells),
        ("apps", "replicasets") => (rs_columns(), rs_cells),
        ("", "namespaces") => (ns_columns(), ns_cells),
        ("policy", "poddisruptionbudgets") => (pdb_columns(), pdb_cells),
        _ => (
            vec![
                col(
                    "Name",
                    "string",
                    0,
                    "Name must be unique within a namespace.",
                ),
                col(
                    "Created At",
                    "date",
                    0,
                    "CreationTimestamp is a timestamp representing the server time when this object was created.",
                ),
            ],
            generic_cells,
        ),
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cells(o, now)});
            match include {
                IncludeObject::None => {}
                IncludeObject::Object => row["object"] = (*o).clone(),
                IncludeObject::Metadata => {
                    row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                        "metadata": o.get("metadata").cloned().unwrap_or(json!({}))})
                }
            }
            row
        })
        .collect();
    let mut t = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
        "columnDefinitions": columns, "rows": rows});
    if let Some(rv) = list_rv {
        t["metadata"]["resourceVersion"] = json!(rv.to_string());
    }
    t
}

fn generic_cells(o: &Value, _now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(str_at(o, "/metadata/name")),
        json!(str_at(o, "/metadata/creationTimestamp")),
    ]
}

fn pod_columns() -> Vec<Value> {
    vec![
        col(
            "Name",
            "string",
            0,
            "Name must be unique within a namespace.",
        ),
        col(
            "Ready",
            "string",
            0,
            "The aggregate readiness state of this pod for accepting traffic.",
        ),
        col(
            "Status",
            "string",
            0,
            "The aggregate status of the containers in this pod.",
        ),
        col(
            "Restarts",
            "string",
            0,
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        ),
        col(
            "Age",
            "string",
            0,
            "CreationTimestamp is a timestamp representing the server time when this object was created.",
        ),
        col(
            "IP",
            "string",
            1,
            "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
        ),
        col(
            "Node",
            "string",
            1,
            "NodeName is a request to schedule this pod onto a specific node.",
        ),
        col(
            "Nominated Node",
            "string",
            1,
            "nominatedNodeName is set only when this pod preempts other pods on the node.",
        ),
        col(
            "Readiness Gates",
            "string",
            1,
            "If specified, all readiness gates will be evaluated for pod readiness.",
        ),
    ]
}

/// The STATUS column, `printPod` (§1.4).
pub fn pod_status(pod: &Value) -> String {
    let mut reason = str_at(pod, "/status/phase").to_string();
    let status_reason = str_at(pod, "/status/reason");
    if !status_reason.is_empty() {
        reason = status_reason.to_string();
    }
    let statuses = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut has_running = false;
    for c in statuses.iter().rev() {
        if let Some(w) = c
            .pointer("/state/waiting/reason")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        {
            reason = w.to_string();
        } else if let Some(t) = c.pointer("/state/terminated") {
            reason = match t["reason"].as_str().filter(|r| !r.is_empty()) {
                Some(r) => r.to_string(),
                None => match t["signal"].as_i64().filter(|s| *s != 0) {
                    Some(s) => format!("Signal:{s}"),
                    None => format!("ExitCode:{}", t["exitCode"].as_i64().unwrap_or(0)),
                },
            };
        } else if c["ready"] == true && c.pointer("/state/running").is_some() {
            has_running = true;
        }
    }
    if reason == "Completed" && has_running {
        reason = if super::state::pod_ready(pod) {
            "Running".into()
        } else {
            "NotReady".into()
        };
    }
    let deleting = pod.pointer("/metadata/deletionTimestamp").is_some();
    let phase = str_at(pod, "/status/phase");
    if deleting && status_reason == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }
    reason
}

fn pod_cells(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let total = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let statuses = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ready = statuses
        .iter()
        .filter(|c| c["ready"] == true && c.pointer("/state/running").is_some())
        .count();
    let restarts: i64 = statuses
        .iter()
        .map(|c| c["restartCount"].as_i64().unwrap_or(0))
        .sum();
    let gates = pod
        .pointer("/spec/readinessGates")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    vec![
        json!(str_at(pod, "/metadata/name")),
        json!(format!("{ready}/{total}")),
        json!(pod_status(pod)),
        json!(restarts.to_string()),
        json!(age(pod, now)),
        json!(or_none(str_at(pod, "/status/podIP"))),
        json!(or_none(str_at(pod, "/spec/nodeName"))),
        json!(or_none(str_at(pod, "/status/nominatedNodeName"))),
        json!(if gates == 0 {
            "<none>".to_string()
        } else {
            format!("0/{gates}")
        }),
    ]
}

fn node_columns() -> Vec<Value> {
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

fn node_cells(node: &Value, now: DateTime<Utc>) -> Vec<Value> {
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

fn event_columns() -> Vec<Value> {
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

fn since(o: &Value, ptr: &str, now: DateTime<Utc>) -> String {
    o.pointer(ptr)
        .and_then(Value::as_str)
        .and_then(parse_ts)
        .map(|t| human_duration(now - t))
        .unwrap_or_else(|| "<unknown>".into())
}

fn event_cells(e: &Value, now: DateTime<Utc>) -> Vec<Value> {
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

fn access_modes(o: &Value, ptr: &str) -> String {
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

fn pvc_columns() -> Vec<Value> {
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

fn pvc_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
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

fn pv_columns() -> Vec<Value> {
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

fn pv_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
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

fn va_columns() -> Vec<Value> {
    ["Name", "Attacher", "PV", "Node", "Attached", "Age"]
        .iter()
        .map(|n| col(n, "string", 0, ""))
        .collect()
}

fn va_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(str_at(o, "/metadata/name")),
        json!(str_at(o, "/spec/attacher")),
        json!(str_at(o, "/spec/source/persistentVolumeName")),
        json!(str_at(o, "/spec/nodeName")),
        json!(o.pointer("/status/attached") == Some(&json!(true))),
        json!(age(o, now)),
    ]
}

fn deploy_columns() -> Vec<Value> {
    ["Name", "Ready", "Up-to-date", "Available", "Age"]
        .iter()
        .map(|n| col(n, "string", 0, ""))
        .collect()
}

fn deploy_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let n = |p: &str| o.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    vec![
        json!(str_at(o, "/metadata/name")),
        json!(format!(
            "{}/{}",
            n("/status/readyReplicas"),
            o.pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        )),
        json!(n("/status/updatedReplicas")),
        json!(n("/status/availableReplicas")),
        json!(age(o, now)),
    ]
}

fn pdb_columns() -> Vec<Value> {
    [
        "Name",
        "Min Available",
        "Max Unavailable",
        "Allowed Disruptions",
        "Age",
    ]
    .iter()
    .map(|n| col(n, "string", 0, ""))
    .collect()
}

fn pdb_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let show = |p: &str| match o.pointer(p) {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => "N/A".into(),
    };
    vec![
        json!(str_at(o, "/metadata/name")),
        json!(show("/spec/minAvailable")),
        json!(show("/spec/maxUnavailable")),
        json!(
            o.pointer("/status/disruptionsAllowed")
                .and_then(Value::as_i64)
                .unwrap_or(0)
        ),
        json!(age(o, now)),
    ]
}

fn rs_columns() -> Vec<Value> {
    let mut c: Vec<Value> = ["Name", "Desired", "Current", "Ready"]
        .iter()
        .map(|n| col(n, "integer", 0, ""))
        .collect();
    c[0] = col("Name", "string", 0, "");
    c.push(col("Age", "string", 0, ""));
    c
}

fn rs_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let n = |p: &str| o.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    vec![
        json!(str_at(o, "/metadata/name")),
        json!(
            o.pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        ),
        json!(n("/status/replicas")),
        json!(n("/status/readyReplicas")),
        json!(age(o, now)),
    ]
}

fn ns_columns() -> Vec<Value> {
    ["Name", "Status", "Age"]
        .iter()
        .map(|n| col(n, "string", 0, ""))
        .collect()
}

fn ns_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(str_at(o, "/metadata/name")),
        json!(str_at(o, "/status/phase")),
        json!(age(o, now)),
    ]
}
