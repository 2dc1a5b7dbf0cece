//! The lab's own admin routes under `/lab/v1`: time, node loss, injected faults and
//! the request and data-loss logs, for a lab running in another process.

use axum::body::Bytes;
use axum::response::Response;
use http::Method;
use serde_json::json;

use super::{Params, err, json_response};
use crate::lab::Lab;
use crate::lab::status::ApiError;

/// The lab's own admin routes, for a lab running in another process (`runbook lab`):
/// `POST /lab/v1/advance?by=6m`, `POST /lab/v1/nodes/{name}/lose|recover`,
/// `GET /lab/v1/requests`, `GET /lab/v1/data-losses`, `GET /lab/v1/time`,
/// `POST /lab/v1/faults` (body: one [`crate::lab::ApiFault`] as JSON), `GET /lab/v1/faults`
/// (the pending ones), `DELETE /lab/v1/faults` (clear them).
pub(super) fn admin(
    lab: &Lab,
    method: &Method,
    rest: &[&str],
    params: &Params,
    body: &Bytes,
) -> Response {
    match (method, rest) {
        (&Method::POST, ["faults"]) => {
            let f: crate::lab::ApiFault = match serde_json::from_slice(body) {
                Ok(f) => f,
                Err(e) => {
                    return err(ApiError::bad_request(format!(
                        "invalid fault: {e}; expected e.g. {{\"path_contains\": \"/pods/hub-\", \"status\": 403, \"times\": 1}}"
                    )));
                }
            };
            if let Err(why) = f.check() {
                return err(ApiError::bad_request(format!("invalid fault: {why}")));
            }
            lab.inject_fault(f.clone());
            json_response(201, &json!(f))
        }
        (&Method::GET, ["faults"]) => json_response(200, &json!(lab.pending_faults())),
        (&Method::DELETE, ["faults"]) => {
            let n = lab.pending_faults().len();
            lab.clear_faults();
            json_response(200, &json!({"cleared": n}))
        }
        (&Method::POST, ["advance"]) => {
            let by = params.get("by").map(String::as_str).unwrap_or("");
            match crate::lab::clock::parse_duration(by) {
                Ok(d) if d >= chrono::Duration::zero() => {
                    lab.advance(d.to_std().unwrap_or_default());
                    json_response(200, &json!({"now": crate::lab::clock::ts(lab.now())}))
                }
                _ => err(ApiError::bad_request(format!(
                    "invalid ?by={by:?}: expected e.g. 6m, 90s, 1h"
                ))),
            }
        }
        (&Method::POST, ["nodes", name, "lose" | "recover"])
            if let Err(why) = crate::lab::names::dns_subdomain(name) =>
        {
            // A node name is a path segment as it came (`..%2f..` undecoded): the
            // API server refuses a name it cannot hold rather than act on it.
            err(ApiError::bad_request(format!("invalid node name: {why}")))
        }
        (&Method::POST, ["nodes", name, "lose"]) => {
            lab.lose_node(name);
            json_response(200, &json!({"node": name, "lost": true}))
        }
        (&Method::POST, ["nodes", name, "recover"]) => {
            lab.recover_node(name);
            json_response(200, &json!({"node": name, "lost": false}))
        }
        (&Method::GET, ["requests"]) => json_response(200, &json!(lab.requests())),
        (&Method::GET, ["data-losses"]) => json_response(200, &json!(lab.data_losses())),
        (&Method::GET, ["time"]) => {
            json_response(200, &json!({"now": crate::lab::clock::ts(lab.now())}))
        }
        _ => err(ApiError::new(
            404,
            "NotFound",
            "unknown lab admin route; see runbook::lab::api::admin",
        )),
    }
}
