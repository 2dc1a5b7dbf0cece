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
        url.query_pairs_mut().append_pair("query", &query);
        Ok(Resolved {
            provider: "prometheus".into(),
            display: format!("PromQL `{query}` on {server}"),
            op: json!({ "server": server, "query": query, "url": url.as_str() }),
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
            samples(&body["data"]).map_err(OpError::failed)
        })
    }
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
    fn the_query_is_url_encoded_under_the_server_path() {
        let op = crate::runbook::model::PrometheusOp {
            server: crate::runbook::model::Sp::bare("http://prom:9090/prefix/".into()),
            query: crate::runbook::model::Sp::bare("rate(x{job=\"a b\"}[5m])".into()),
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
