//! Tables for Services, Endpoints and EndpointSlices (printers.go
//! `printService`, `printEndpoints`, `printEndpointSlice`).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{age, col, or_none};
use crate::lab::state::str_at;

fn columns(names: &[&str]) -> Vec<Value> {
    names.iter().map(|n| col(n, "string", 0, "")).collect()
}

pub(super) fn svc_columns() -> Vec<Value> {
    let mut c = columns(&[
        "Name",
        "Type",
        "Cluster-IP",
        "External-IP",
        "Port(s)",
        "Age",
    ]);
    c.push(col("Selector", "string", 1, ""));
    c
}

pub(super) fn svc_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ports: Vec<String> = o
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(np) => format!("{}:{np}/{proto}", p["port"]),
                None => format!("{}/{proto}", p["port"]),
            }
        })
        .collect();
    let selector: Vec<String> = o
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    vec![
        json!(str_at(o, "/metadata/name")),
        json!(str_at(o, "/spec/type")),
        json!(or_none(str_at(o, "/spec/clusterIP"))),
        json!("<none>"),
        json!(or_none(&ports.join(","))),
        json!(age(o, now)),
        json!(or_none(&selector.join(","))),
    ]
}

/// At most three `ip:port` pairs, then `+ N more...`, as kubectl's formatEndpoints.
fn format_list(items: Vec<String>) -> String {
    if items.is_empty() {
        return "<none>".into();
    }
    let n = items.len();
    let mut s = items.into_iter().take(3).collect::<Vec<_>>().join(",");
    if n > 3 {
        s.push_str(&format!(" + {} more...", n - 3));
    }
    s
}

pub(super) fn ep_columns() -> Vec<Value> {
    columns(&["Name", "Endpoints", "Age"])
}

pub(super) fn ep_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut items = Vec::new();
    for s in o["subsets"].as_array().into_iter().flatten() {
        let ports: Vec<i64> = s["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["port"].as_i64())
            .collect();
        for a in s["addresses"].as_array().into_iter().flatten() {
            let ip = a["ip"].as_str().unwrap_or_default();
            if ports.is_empty() {
                items.push(ip.to_string());
            }
            items.extend(ports.iter().map(|p| format!("{ip}:{p}")));
        }
    }
    vec![
        json!(str_at(o, "/metadata/name")),
        json!(format_list(items)),
        json!(age(o, now)),
    ]
}

pub(super) fn slice_columns() -> Vec<Value> {
    columns(&["Name", "AddressType", "Ports", "Endpoints", "Age"])
}

pub(super) fn slice_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ports: Vec<String> = o["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["port"].as_i64().map(|n| n.to_string()))
        .collect();
    let ips: Vec<String> = o["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(String::from))
        .collect();
    vec![
        json!(str_at(o, "/metadata/name")),
        json!(str_at(o, "/addressType")),
        json!(if ports.is_empty() {
            "<unset>".to_string()
        } else {
            ports.join(",")
        }),
        json!(format_list(ips)),
        json!(age(o, now)),
    ]
}
