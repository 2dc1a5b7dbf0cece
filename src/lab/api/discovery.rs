//! Discovery (`/version`, `/api`, `/apis`, the resource lists kubectl caches) and the
//! Prometheus query API the lab serves from its scenario's metrics.

use axum::body::Bytes;
use axum::extract::Query;
use axum::response::Response;
use http::HeaderMap;
use serde_json::{Value, json};

use super::{Params, json_response};
use crate::lab::Lab;
use crate::lab::metrics;
use crate::lab::resources;

pub(super) fn version() -> Value {
    json!({"major": "1", "minor": "37", "gitVersion": "v1.37.1-runbook-lab", "gitCommit": "lab",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25",
        "compiler": "gc", "platform": "linux/amd64"})
}

pub(super) fn group(g: &str) -> Value {
    let gv = json!({"groupVersion": format!("{g}/v1"), "version": "v1"});
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": [gv.clone()], "preferredVersion": gv})
}

pub(super) fn group_list() -> Value {
    let groups: Vec<Value> = resources::GROUPS
        .iter()
        .map(|g| {
            let mut v = group(g);
            if let Some(m) = v.as_object_mut() {
                m.remove("kind");
                m.remove("apiVersion");
            }
            v
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub(super) fn resource_list(g: &str, v: &str) -> Value {
    let resources: Vec<Value> = resources::RESOURCES
        .iter()
        .filter(|r| r.group == g && r.version == v)
        .flat_map(|r| r.discovery_entries())
        .collect();
    let gv = if g.is_empty() {
        v.to_string()
    } else {
        format!("{g}/{v}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

pub(super) fn prometheus(
    lab: &Lab,
    params: &Params,
    body: &Bytes,
    _h: &HeaderMap,
    range: bool,
) -> Response {
    // GET parameters, or a POST form body, as Prometheus clients may send.
    let mut params = params.clone();
    if let Ok(form) = serde_urlencoded_parse(body) {
        for (k, v) in form {
            params.entry(k).or_insert(v);
        }
    }
    let bad = |e: String| {
        json_response(
            400,
            &json!({"status": "error", "errorType": "bad_data", "error": e}),
        )
    };
    let Some(q) = params.get("query").cloned() else {
        return bad("missing query parameter \"query\"".into());
    };
    let now = lab.now().timestamp_millis();
    let time = |name: &str, default: Option<i64>| -> Result<i64, String> {
        match params.get(name).map(String::as_str) {
            None | Some("") => default.ok_or_else(|| {
                format!("invalid parameter \"{name}\": cannot parse \"\" to a valid timestamp")
            }),
            Some(s) => parse_prom_time(s).ok_or_else(|| {
                format!("invalid parameter \"{name}\": cannot parse {s:?} to a valid timestamp")
            }),
        }
    };
    lab.scrape_for_query();
    if range {
        let (start, end) = match (time("start", None), time("end", None)) {
            (Ok(s), Ok(e)) => (s, e),
            (Err(e), _) | (_, Err(e)) => return bad(e),
        };
        let step = match params.get("step").map(String::as_str) {
            Some(s) => match parse_prom_duration(s) {
                Some(d) => d,
                None => {
                    return bad(format!(
                        "invalid parameter \"step\": cannot parse {s:?} to a valid duration"
                    ));
                }
            },
            None => {
                return bad(
                    "invalid parameter \"step\": cannot parse \"\" to a valid duration".into(),
                );
            }
        };
        let history = lab.history();
        let (code, v) = metrics::query_range(&history.series, &q, start, end, step);
        json_response(code, &v)
    } else {
        let t = match time("time", Some(now)) {
            Ok(t) => t,
            Err(e) => return bad(e),
        };
        let history = lab.history();
        let (code, v) = metrics::query(&history.series, &q, t);
        json_response(code, &v)
    }
}

/// A Prometheus API time: Unix seconds (`1520922480.5`) or RFC 3339; Unix ms.
fn parse_prom_time(s: &str) -> Option<i64> {
    if let Ok(f) = s.parse::<f64>() {
        return f.is_finite().then(|| (f * 1000.0).round() as i64);
    }
    crate::lab::clock::parse_ts(s).map(|t| t.timestamp_millis())
}

/// A Prometheus API duration: seconds (`15`, `0.5`) or `15s`, `1m`, `1h30m`; ms.
fn parse_prom_duration(s: &str) -> Option<i64> {
    if let Ok(f) = s.parse::<f64>() {
        return f.is_finite().then(|| (f * 1000.0).round() as i64);
    }
    crate::lab::clock::parse_duration(s)
        .ok()
        .map(|d| d.num_milliseconds())
}

/// `GET /metrics`: the scenario's metrics in Prometheus' text exposition format
/// (version 0.0.4), so a real Prometheus can scrape the lab and evaluate alert rules
/// on them (every metric is a gauge: its value is recomputed from the simulated state
/// at each scrape).
pub fn exposition(lab: &Lab) -> Response {
    let st = lab.lock();
    let mut out = String::new();
    let mut typed = std::collections::BTreeSet::new();
    for (name, labels, value) in metrics::evaluate(&st) {
        if typed.insert(name.clone()) {
            out.push_str(&format!("# TYPE {name} gauge\n"));
        }
        out.push_str(&name);
        // The query API's samples carry `__name__`; the exposition names the metric
        // before the braces instead.
        let labels: Vec<_> = labels.iter().filter(|(k, _)| *k != "__name__").collect();
        if !labels.is_empty() {
            let pairs: Vec<String> = labels
                .iter()
                .map(|(k, v)| {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    // The format's escapes: backslash, double quote and newline.
                    let v = v
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n");
                    format!("{k}=\"{v}\"")
                })
                .collect();
            out.push_str(&format!("{{{}}}", pairs.join(",")));
        }
        out.push_str(&format!(" {value}\n"));
    }
    Response::builder()
        .header(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )
        .body(axum::body::Body::from(out))
        .unwrap_or_default()
}

fn serde_urlencoded_parse(body: &Bytes) -> Result<Params, ()> {
    let s = std::str::from_utf8(body).map_err(|_| ())?;
    let uri: http::Uri = format!("/?{s}").parse().map_err(|_| ())?;
    Query::<Params>::try_from_uri(&uri)
        .map(|q| q.0)
        .map_err(|_| ())
}

/// `kubectl auth can-i`: a SelfSubjectAccessReview. The lab has no authorization, so
/// everything is allowed (kubectl prints `yes`). The body may be protobuf, which the
/// lab does not read: the answer echoes the spec only when it was JSON.
pub(super) fn access_review(body: &Bytes) -> Response {
    let spec = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("spec").cloned())
        .unwrap_or(json!({}));
    json_response(
        201,
        &json!({"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
            "metadata": {}, "spec": spec,
            "status": {"allowed": true, "reason": "the runbook lab has no authorization: everything is allowed"}}),
    )
}
