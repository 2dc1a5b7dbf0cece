//! The Prometheus HTTP query API (`/api/v1/query`) over the scenario's metrics.
//!
//! Each metric is an expression over the simulated state (see
//! [`super::scenario::MetricValue`]), evaluated at query time. Queries are a metric
//! name with optional label matchers (`launch_success_rate`, `up{job="hub"}`),
//! optionally compared with a number (`launch_success_rate < 1`, which keeps the
//! sample only when the comparison holds, as PromQL's filter comparisons do).

use serde_json::{Value, json};

use super::controllers::node_ready;
use super::quantity;
use super::scenario::{MetricValue, NodeCount, PodCount, QuotaRef};
use super::select::LabelSelector;
use super::sites;
use super::state::{State, pod_ready, str_at};

fn running(st: &State, ns: &str, sel: &LabelSelector, schedulable_only: bool) -> usize {
    st.store
        .list("pods", Some(ns))
        .filter(|p| sel.matches(p) && str_at(p, "/status/phase") == "Running" && pod_ready(p))
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .filter(|p| {
            !schedulable_only
                || st
                    .store
                    .get("nodes", "", str_at(p, "/spec/nodeName"))
                    .is_some_and(|n| n.pointer("/spec/unschedulable") != Some(&json!(true)))
        })
        .count()
}

fn count_pods(st: &State, p: &PodCount) -> usize {
    let sel = p.selector.as_ref().map(|s| s.1.clone());
    st.store
        .list("pods", p.namespace.as_deref())
        .filter(|pod| sel.as_ref().is_none_or(|s| s.matches(pod)))
        .filter(|pod| {
            p.phase
                .as_deref()
                .is_none_or(|ph| str_at(pod, "/status/phase") == ph)
        })
        .filter(|pod| p.ready.is_none_or(|r| pod_ready(pod) == r))
        .count()
}

/// The label the lab puts on every node of a node pool.
const POOL_LABEL: &str = "/metadata/labels/lab.runbook.dev~1node-pool";

fn count_nodes(st: &State, n: &NodeCount) -> usize {
    let sel = n.selector.as_ref().map(|s| s.1.clone());
    st.store
        .list("nodes", None)
        .filter(|node| {
            n.pool
                .as_deref()
                .is_none_or(|p| str_at(node, POOL_LABEL) == p)
        })
        .filter(|node| sel.as_ref().is_none_or(|s| s.matches(node)))
        .filter(|node| n.ready.is_none_or(|r| node_ready(node) == r))
        .count()
}

/// A quota's used or hard amount in base units (milli-units / 1000); 0 when absent.
fn quota(st: &State, q: &QuotaRef, which: &str) -> f64 {
    st.store
        .get("resourcequotas", &q.namespace, &q.name)
        .and_then(|o| o.pointer(&format!("/status/{which}")))
        .and_then(|m| m.get(&q.resource))
        .and_then(quantity::parse_milli)
        .map_or(0.0, |m| m as f64 / 1000.0)
}

/// The current value of every metric: (name, labels, value).
pub fn evaluate(st: &State) -> Vec<(String, serde_json::Map<String, Value>, f64)> {
    st.metrics
        .iter()
        .map(|m| {
            let value = match &m.value {
                MetricValue::PodsRunning(p) => {
                    let sel = p.selector.1.clone();
                    if running(st, &p.namespace, &sel, p.on_schedulable_node) >= p.min as usize {
                        1.0
                    } else {
                        0.0
                    }
                }
                MetricValue::CountRunning(p) => {
                    let sel = p.selector.1.clone();
                    running(st, &p.namespace, &sel, p.on_schedulable_node) as f64
                }
                MetricValue::DataLost(p) => {
                    let sel = p.selector.1.clone();
                    let lost = st.data_losses.iter().any(|d| {
                        d.namespace == p.namespace && sel.matches_labels(Some(&json!(d.labels)))
                    });
                    if lost { 1.0 } else { 0.0 }
                }
                MetricValue::Constant(v) => *v,
                MetricValue::Pods(p) => count_pods(st, p) as f64,
                MetricValue::Nodes(n) => count_nodes(st, n) as f64,
                MetricValue::QuotaUsed(q) => quota(st, q, "used"),
                MetricValue::QuotaHard(q) => quota(st, q, "hard"),
                MetricValue::SiteSuccessRate(r) => {
                    let window = r.window.map_or(chrono::Duration::minutes(5), |w| w.0);
                    sites::success_rate(st, &r.site, window).unwrap_or(0.0)
                }
            };
            let mut labels: serde_json::Map<String, Value> = m
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            labels.insert("__name__".into(), json!(m.name));
            (m.name.clone(), labels, value)
        })
        .collect()
}

struct Query {
    name: String,
    matchers: Vec<(String, String, bool)>,
    cmp: Option<(String, f64)>,
}

fn parse_query(q: &str) -> Result<Query, String> {
    let q = q.trim();
    let end = q
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(q.len());
    let name = q[..end].to_string();
    if name.is_empty() {
        return Err(format!(
            "unsupported query {q:?}: the lab answers `metric`, `metric{{label=\"v\"}}` and `metric <op> number`"
        ));
    }
    let mut rest = q[end..].trim();
    let mut matchers = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        let close = r.find('}').ok_or("unclosed `{` in query")?;
        for m in r[..close]
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
        {
            let (k, v, neg) = if let Some((k, v)) = m.split_once("!=") {
                (k, v, true)
            } else if let Some((k, v)) = m.split_once('=') {
                (k, v, false)
            } else {
                return Err(format!("invalid label matcher {m:?}"));
            };
            matchers.push((
                k.trim().to_string(),
                v.trim().trim_matches('"').to_string(),
                neg,
            ));
        }
        rest = r[close + 1..].trim();
    }
    let cmp = if rest.is_empty() {
        None
    } else {
        let op = ["==", "!=", ">=", "<=", ">", "<"]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .ok_or_else(|| format!("unsupported query {q:?}"))?;
        let n: f64 = rest[op.len()..]
            .trim()
            .parse()
            .map_err(|_| format!("unsupported query {q:?}: expected a number after {op}"))?;
        Some((op.to_string(), n))
    };
    Ok(Query {
        name,
        matchers,
        cmp,
    })
}

/// Answer `/api/v1/query?query=…` with Prometheus' JSON: (HTTP code, body).
pub fn query(st: &State, q: &str) -> (u16, Value) {
    let parsed = match parse_query(q) {
        Ok(p) => p,
        Err(e) => {
            return (
                400,
                json!({"status": "error", "errorType": "bad_data", "error": e}),
            );
        }
    };
    let t = st.now().timestamp_millis() as f64 / 1000.0;
    let result: Vec<Value> = evaluate(st)
        .into_iter()
        .filter(|(name, labels, _)| {
            *name == parsed.name
                && parsed.matchers.iter().all(|(k, v, neg)| {
                    (labels.get(k).and_then(Value::as_str).unwrap_or("") == v) != *neg
                })
        })
        .filter(|(_, _, v)| match &parsed.cmp {
            None => true,
            Some((op, n)) => match op.as_str() {
                "==" => v == n,
                "!=" => v != n,
                ">=" => v >= n,
                "<=" => v <= n,
                ">" => v > n,
                _ => v < n,
            },
        })
        .map(|(_, labels, v)| json!({"metric": labels, "value": [t, format_value(v)]}))
        .collect();
    (
        200,
        json!({"status": "success", "data": {"resultType": "vector", "result": result}}),
    )
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        v.to_string()
    }
}
