//! The Prometheus HTTP query API (`/api/v1/query`, `/api/v1/query_range`) over the
//! scenario's metrics.
//!
//! Each metric is an expression over the simulated state (see
//! [`super::scenario::MetricValue`]); the lab samples them into its history
//! ([`super::history`]) and evaluates PromQL ([`super::promql`]) over that history.

use serde_json::{Value, json};

use super::controllers::node_ready;
use super::history::Series;
use super::promql::{self, Eval, Expr, Labels, Val};
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

/// The Prometheus API's error answer: (HTTP code, body).
fn error(code: u16, kind: &str, e: String) -> (u16, Value) {
    (
        code,
        json!({"status": "error", "errorType": kind, "error": e}),
    )
}

/// An evaluation error as Prometheus answers it: matching errors happen while
/// executing (422 `execution`); the others are the type errors Prometheus finds while
/// parsing (400 `bad_data`).
fn eval_error(e: String) -> (u16, Value) {
    if e.contains("many-to-many") || e.contains("many-to-one") {
        error(422, "execution", e)
    } else {
        error(400, "bad_data", format!("invalid parameter \"query\": {e}"))
    }
}

fn parse(q: &str) -> Result<Expr, (u16, Value)> {
    promql::parse(q)
        .map_err(|e| error(400, "bad_data", format!("invalid parameter \"query\": {e}")))
}

fn sample_json(labels: &Labels, v: f64, t: i64) -> Value {
    json!({"metric": labels, "value": [promql::format_time(t), promql::format_value(v)]})
}

/// Answer `/api/v1/query?query=…&time=…` at `t` (Unix ms) over the history, with
/// Prometheus' JSON: (HTTP code, body).
pub fn query(series: &[Series], q: &str, t: i64) -> (u16, Value) {
    let expr = match parse(q) {
        Ok(e) => e,
        Err(e) => return e,
    };
    let data = match (Eval { series }).eval(&expr, t) {
        Err(e) => return eval_error(e),
        Ok(Val::Scalar(v)) => {
            json!({"resultType": "scalar", "result": [promql::format_time(t), promql::format_value(v)]})
        }
        Ok(Val::Vector(v)) => {
            json!({"resultType": "vector", "result": v.iter().map(|(l, x)| sample_json(l, *x, t)).collect::<Vec<_>>()})
        }
        Ok(Val::Matrix(m)) => {
            json!({"resultType": "matrix", "result": m.iter().map(|(l, pts)| json!({
            "metric": l,
            "values": pts.iter().map(|(pt, x)| json!([promql::format_time(*pt), promql::format_value(*x)])).collect::<Vec<_>>(),
        })).collect::<Vec<_>>()})
        }
    };
    (200, json!({"status": "success", "data": data}))
}

/// Prometheus' cap on a range query's points per series.
const MAX_POINTS: i64 = 11_000;

/// Answer `/api/v1/query_range`: the expression at `start`, `start + step`, … up to
/// `end` (Unix ms), as a matrix, one series per label set, sorted by labels.
pub fn query_range(series: &[Series], q: &str, start: i64, end: i64, step: i64) -> (u16, Value) {
    if end < start {
        return error(
            400,
            "bad_data",
            "end timestamp must not be before start time".into(),
        );
    }
    if step <= 0 {
        return error(400, "bad_data", "zero or negative query resolution step widths are not accepted. Try a positive integer".into());
    }
    if (end - start) / step >= MAX_POINTS {
        return error(400, "bad_data", "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into());
    }
    let expr = match parse(q) {
        Ok(e) => e,
        Err(e) => return e,
    };
    let eval = Eval { series };
    let mut out: std::collections::BTreeMap<Labels, Vec<Value>> = Default::default();
    let mut t = start;
    while t <= end {
        match eval.eval(&expr, t) {
            Err(e) => return eval_error(e),
            Ok(Val::Matrix(_)) => {
                return error(400, "bad_data", "invalid parameter \"query\": invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".into());
            }
            Ok(Val::Scalar(v)) => out
                .entry(Labels::new())
                .or_default()
                .push(json!([promql::format_time(t), promql::format_value(v)])),
            Ok(Val::Vector(v)) => {
                for (l, x) in v {
                    out.entry(l)
                        .or_default()
                        .push(json!([promql::format_time(t), promql::format_value(x)]));
                }
            }
        }
        t += step;
    }
    let result: Vec<Value> = out
        .into_iter()
        .map(|(l, values)| json!({"metric": l, "values": values}))
        .collect();
    (
        200,
        json!({"status": "success", "data": {"resultType": "matrix", "result": result}}),
    )
}
