//! Server-side printing: `meta.k8s.io/v1` Tables for `Accept: application/json;as=Table`,
//! the columns of `kubernetes/pkg/printers/internalversion/printers.go` (§1.4). kubectl
//! 1.37 prints only NAME/AGE when the server does not return a Table.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::clock::{human_duration, parse_ts};
use super::resources::ResourceDef;
use super::state::str_at;

mod cluster;
mod network;
mod workloads;

pub use cluster::node_status;
use cluster::*;
use network::*;
pub use workloads::pod_status;
use workloads::*;

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
        ("", "resourcequotas") => (quota_columns(), quota_cells),
        ("", "services") => (svc_columns(), svc_cells),
        ("", "endpoints") => (ep_columns(), ep_cells),
        ("discovery.k8s.io", "endpointslices") => (slice_columns(), slice_cells),
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
