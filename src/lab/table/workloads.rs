//! Table columns of workloads: pods (with the STATUS kubectl derives), deployments,
//! replica sets and pod disruption budgets.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{age, col, or_none};
use crate::lab::state::str_at;

pub(super) fn pod_columns() -> Vec<Value> {
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
        reason = if crate::lab::state::pod_ready(pod) {
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

pub(super) fn pod_cells(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
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

pub(super) fn deploy_columns() -> Vec<Value> {
    ["Name", "Ready", "Up-to-date", "Available", "Age"]
        .iter()
        .map(|n| col(n, "string", 0, ""))
        .collect()
}

pub(super) fn deploy_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
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

pub(super) fn pdb_columns() -> Vec<Value> {
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

pub(super) fn pdb_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
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

pub(super) fn rs_columns() -> Vec<Value> {
    let mut c: Vec<Value> = ["Name", "Desired", "Current", "Ready"]
        .iter()
        .map(|n| col(n, "integer", 0, ""))
        .collect();
    c[0] = col("Name", "string", 0, "");
    c.push(col("Age", "string", 0, ""));
    c
}

pub(super) fn rs_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
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

pub(super) fn quota_columns() -> Vec<Value> {
    ["Name", "Age", "Request", "Limit"]
        .iter()
        .map(|n| col(n, "string", 0, ""))
        .collect()
}

/// printers.go `printResourceQuota`: `used/hard` per resource, `limits.*` in LIMIT and
/// the rest in REQUEST, sorted by name.
pub(super) fn quota_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (mut request, mut limit) = (Vec::new(), Vec::new());
    let hard = o.pointer("/status/hard").and_then(Value::as_object);
    for (k, h) in hard.into_iter().flatten() {
        let used = o
            .pointer("/status/used")
            .and_then(|u| u.get(k))
            .and_then(Value::as_str)
            .unwrap_or("0");
        let h = h
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| h.to_string());
        let cell = format!("{k}: {used}/{h}");
        if k.starts_with("limits.") {
            limit.push(cell);
        } else {
            request.push(cell);
        }
    }
    vec![
        json!(str_at(o, "/metadata/name")),
        json!(age(o, now)),
        json!(request.join(", ")),
        json!(limit.join(", ")),
    ]
}
