//! `prometheus`: an instant query through `/api/v1/query`. The result is
//! `{samples: [{metric, value}], value}`: every sample with its value as a number, and
//! `value`, the single sample's value, or null when there is not exactly one.

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::http::{HttpCall, send};
use super::{Defaults, ExecCtx, OpError, Provider, Resolved};
use crate::runbook::model::OpRef;

/// Queries Prometheus' HTTP API.
#[derive(Debug, Clone)]
pub struct Prometheus {
    client: super::http::LazyClient,
}

impl Prometheus {
    pub fn new() -> Result<Prometheus, String> {
        Ok(Prometheus {
            client: super::http::LazyClient::default(),
        })
    }
}

impl Provider for Prometheus {
    fn resolve(&self, op: OpRef<'_>, vars: &Value, _: &Defaults) -> Result<Resolved, OpError> {
        let OpRef::Prometheus(op) = op else {
            return Err(OpError::wrong_provider("prometheus", &op));
        };
        let server = super::render_field(&op.server, vars, "server")?;
        let query = super::render_field(&op.query, vars, "query")?;
        let mut url = reqwest::Url::parse(server.trim_end_matches('/'))
            .map_err(|e| OpError::Invalid(format!("server `{server}`: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| OpError::Invalid(format!("server `{server}` cannot take a path")))?
            .pop_if_empty()
            .extend(["api", "v1", "query"]);
        let mut range_url = url.clone();
        url.query_pairs_mut().append_pair("query", &query);
        let mut op_json = json!({ "server": server, "query": query, "url": url.as_str() });
        let mut display = format!("PromQL `{query}` on {server}");
        if let Some(d) = &op.detects {
            range_url
                .path_segments_mut()
                .map_err(|()| OpError::Invalid(format!("server `{server}` cannot take a path")))?
                .pop()
                .push("query_range");
            range_url.query_pairs_mut().append_pair("query", &query);
            op_json["detects_ms"] = json!(d.value.0.as_millis() as u64);
            op_json["range_url"] = json!(range_url.as_str());
            display.push_str(&format!(" (detects: looks back {})", d.value));
        }
        Ok(Resolved {
            provider: "prometheus".into(),
            display,
            op: op_json,
            mutating: false,
        })
    }

    fn execute<'a>(
        &'a self,
        op: &'a Resolved,
        cx: &'a ExecCtx,
    ) -> BoxFuture<'a, Result<Value, OpError>> {
        Box::pin(async move {
            let url = op.op["url"]
                .as_str()
                .ok_or_else(|| OpError::Invalid("not a prometheus operation".into()))?;
            let call = HttpCall {
                method: "GET".into(),
                url: url.to_string(),
                headers: Default::default(),
                body: None,
                json: None,
                status: Vec::new(),
            };
            let resp = send(self.client.get()?, &call, cx).await?;
            if resp.get("body_truncated").is_some() {
                // A cut JSON answer cannot be parsed; say why rather than "not JSON",
                // and where the whole answer is when it went to a side file.
                let cap = super::limits::max_output()?;
                let size = resp["body_bytes"]
                    .as_u64()
                    .map(|n| format!(" ({n} bytes)"))
                    .unwrap_or_default();
                let kept = match resp["body_file"].as_str() {
                    Some(f) if resp.get("body_file_truncated").is_none() => {
                        format!("; the whole answer{size} is in {f} in the run folder")
                    }
                    Some(f) => format!("; its first bytes are in {f} in the run folder"),
                    None => size,
                };
                let mut kept_fields = serde_json::Map::new();
                for (k, v) in resp.as_object().into_iter().flatten() {
                    if k.starts_with("body_") || k == "status" {
                        kept_fields.insert(k.clone(), v.clone());
                    }
                }
                return Err(OpError::Failed {
                    message: format!(
                        "Prometheus answer exceeds {cap} bytes (from {url}){kept}: narrow the \
                         query (aggregate with sum/topk, filter labels) or raise {}",
                        super::limits::MAX_OUTPUT_ENV
                    ),
                    result: Some(Value::Object(kept_fields)),
                });
            }
            let Some(body) = resp.get("json") else {
                return Err(OpError::failed(format!(
                    "{url} answered {} without JSON (is this a Prometheus server?)",
                    resp["status"]
                )));
            };
            if body["status"] != "success" {
                let message = match (body["errorType"].as_str(), body["error"].as_str()) {
                    (Some(kind), Some(error)) => format!("query failed: {kind} {error}"),
                    // Not Prometheus' error format (a proxy or load balancer answered,
                    // e.g. a 503): the HTTP status is all there is to go on.
                    _ => format!(
                        "query failed: {url} answered HTTP {}{}",
                        resp["status"],
                        body["message"]
                            .as_str()
                            .or(body["error"].as_str())
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    ),
                };
                return Err(OpError::Failed {
                    message,
                    result: Some(body.clone()),
                });
            }
            let mut result = samples(&body["data"]).map_err(OpError::failed)?;
            let holds = result["samples"].as_array().is_some_and(|s| !s.is_empty());
            if let (Some(ms), Some(range_url), true) = (
                op.op["detects_ms"].as_u64(),
                op.op["range_url"].as_str(),
                holds,
            ) {
                let end = cx.clock.0.now();
                let (range, since, error) = match self.range(range_url, ms, end, cx).await {
                    Ok((range, since)) => (range, since, None),
                    Err(e) => (Vec::new(), None, Some(e)),
                };
                result["range"] = json!(range);
                result["since"] =
                    json!(since.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)));
                if let Some(e) = error {
                    result["range_error"] = json!(e);
                }
            }
            Ok(result)
        })
    }
}

/// At most this many steps in a `detects` look-back (`query_range`'s step is the
/// look-back divided by it, at least a second).
const RANGE_STEPS: u64 = 240;

impl Prometheus {
    /// `detects`: the query's points over the look-back ending at `end`, as
    /// `[unix seconds, value]`, and the start of the last unbroken run of points
    /// reaching `end` (when the condition started to hold; `None` when it does not
    /// hold at the end of the range). With several series, the first one.
    async fn range(
        &self,
        url: &str,
        look_back_ms: u64,
        end: chrono::DateTime<chrono::Utc>,
        cx: &ExecCtx,
    ) -> Result<(Vec<[f64; 2]>, Option<chrono::DateTime<chrono::Utc>>), String> {
        let step_s = (look_back_ms / 1000 / RANGE_STEPS).max(1);
        let end_s = end.timestamp();
        let start_s = end_s - (look_back_ms / 1000) as i64;
        let url = format!("{url}&start={start_s}&end={end_s}&step={step_s}");
        let call = HttpCall {
            method: "GET".into(),
            url: url.clone(),
            headers: Default::default(),
            body: None,
            json: None,
            status: Vec::new(),
        };
        let client = self.client.get().map_err(|e| e.to_string())?;
        let resp = send(client, &call, cx).await.map_err(|e| e.to_string())?;
        let body = resp
            .get("json")
            .ok_or_else(|| format!("{url} answered {} without JSON", resp["status"]))?;
        if body["status"] != "success" || body["data"]["resultType"] != "matrix" {
            return Err(format!(
                "{url} did not answer a range (status {}, resultType {})",
                body["status"], body["data"]["resultType"]
            ));
        }
        let values: Vec<[f64; 2]> = body["data"]["result"]
            .get(0)
            .and_then(|s| s["values"].as_array())
            .map(|vs| {
                vs.iter()
                    .filter_map(|p| {
                        let t = p.get(0)?.as_f64()?;
                        let v = p.get(1)?.as_str()?.parse::<f64>().ok()?;
                        Some([t, if v.is_finite() { v } else { 0.0 }])
                    })
                    .take(RANGE_STEPS as usize + 1)
                    .collect()
            })
            .unwrap_or_default();
        Ok((values.clone(), since(&values, step_s as f64, end_s as f64)))
    }
}

/// The first point of the last unbroken run of points (no gap over 1.5 steps) that
/// reaches `end` (within 1.5 steps); `None` when the last point is older.
fn since(values: &[[f64; 2]], step: f64, end: f64) -> Option<chrono::DateTime<chrono::Utc>> {
    let last = values.last()?[0];
    if end - last > step * 1.5 {
        return None;
    }
    let mut first = last;
    for w in values.windows(2).rev() {
        if w[1][0] - w[0][0] > step * 1.5 {
            break;
        }
        first = w[0][0];
    }
    chrono::DateTime::from_timestamp_millis((first * 1000.0).round() as i64)
}

/// `{samples, value}` from the `data` of a query response.
fn samples(data: &Value) -> Result<Value, String> {
    let number = |pair: &Value| -> Value {
        // Values travel as strings ("1", "NaN", "+Inf"); JSON has no NaN, so those are null.
        pair.get(1)
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<f64>().ok())
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    };
    let samples: Vec<Value> = match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .map(|r| json!({ "metric": r["metric"], "value": number(&r["value"]) }))
                    .collect()
            })
            .unwrap_or_default(),
        Some("scalar") => vec![json!({ "metric": {}, "value": number(&data["result"]) })],
        Some(other) => {
            return Err(format!(
                "an instant query gave a `{other}` result; use a query that gives a vector or scalar"
            ));
        }
        None => return Err("the response has no resultType".into()),
    };
    let value = match samples.as_slice() {
        [one] => one["value"].clone(),
        _ => Value::Null,
    };
    Ok(json!({ "samples": samples, "value": value }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_sample_gives_its_value_as_a_number() {
        let data = json!({"resultType": "vector", "result": [
            {"metric": {"job": "hub"}, "value": [1700000000.0, "0.25"]}]});
        let r = samples(&data).unwrap();
        assert_eq!(r["value"], json!(0.25));
        assert_eq!(r["samples"][0]["metric"]["job"], "hub");
    }

    #[test]
    fn several_samples_or_none_give_a_null_value() {
        let two = json!({"resultType": "vector", "result": [
            {"metric": {}, "value": [1, "1"]}, {"metric": {}, "value": [1, "2"]}]});
        assert_eq!(samples(&two).unwrap()["value"], Value::Null);
        let none = json!({"resultType": "vector", "result": []});
        assert_eq!(samples(&none).unwrap()["value"], Value::Null);
        let nan = json!({"resultType": "scalar", "result": [1, "NaN"]});
        assert_eq!(samples(&nan).unwrap()["value"], Value::Null);
    }

    #[test]
    fn the_condition_started_at_the_first_point_of_the_last_unbroken_run() {
        // Points every 60 s; a gap at 300 → 600; holds to the end.
        let v = [
            [0.0, 1.0],
            [60.0, 1.0],
            [300.0, 0.0],
            [600.0, 1.0],
            [660.0, 1.0],
            [720.0, 0.0],
        ];
        let t = since(&v, 60.0, 720.0).unwrap();
        assert_eq!(t.timestamp(), 600);
        // The last point is older than 1.5 steps: it does not hold now.
        assert_eq!(since(&v, 60.0, 900.0), None);
        assert_eq!(since(&[], 60.0, 900.0), None);
        // Held over the whole look-back: its start (at least that long ago).
        let all = [[0.0, 1.0], [60.0, 1.0], [120.0, 1.0]];
        assert_eq!(since(&all, 60.0, 120.0).unwrap().timestamp(), 0);
    }

    #[test]
    fn the_query_is_url_encoded_under_the_server_path() {
        let op = crate::runbook::model::PrometheusOp {
            server: crate::runbook::model::Sp::bare("http://prom:9090/prefix/".into()),
            query: crate::runbook::model::Sp::bare("rate(x{job=\"a b\"}[5m])".into()),
            detects: None,
        };
        let p = Prometheus::new().unwrap();
        let r = p
            .resolve(OpRef::Prometheus(&op), &json!({}), &Defaults::default())
            .unwrap();
        assert_eq!(
            r.op["url"],
            "http://prom:9090/prefix/api/v1/query?query=rate%28x%7Bjob%3D%22a+b%22%7D%5B5m%5D%29"
        );
        assert!(!r.mutating);
    }
}
