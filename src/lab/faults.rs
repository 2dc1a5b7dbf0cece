//! API fault injection: answer chosen requests with an error `Status` instead of
//! serving them, so clients can be tested for forbidden, not found, conflict,
//! throttled and server errors without a real cluster misbehaving.
//!
//! A fault matches a request by method (or any) and a substring of the path and query
//! as sent; it answers the next `times` matching requests and is then used up. A
//! faulted request changes nothing in the cluster, but it is still recorded in the
//! request log with the status it got. The lab's own admin routes (`/lab/v1/...`) are
//! never faulted, so a test can always clear faults again.
//!
//! The bodies are the `metav1.Status` objects the API server builds
//! (`k8s.io/apimachinery/pkg/api/errors`: `NewForbidden`, `NewNotFound`,
//! `NewConflict`, `NewTooManyRequests`, `NewInternalError`, `NewServiceUnavailable`),
//! so kube maps them to `Error::Api` and kubectl prints `Error from server (Forbidden):
//! …` exactly as it would against a real cluster.

use axum::body::Body;
use axum::response::Response;
use http::{Method, StatusCode, header};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::resources;

/// One injected API fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiFault {
    /// HTTP method to match (`GET`, `DELETE`, …, case-insensitive); absent = any.
    #[serde(default)]
    pub method: Option<String>,
    /// A substring of the request's path and query, e.g. `/pods/hub-` or `/nodes`;
    /// empty matches every request.
    pub path_contains: String,
    /// The HTTP status to answer (400–599), e.g. 403, 404, 409, 429, 500, 503.
    pub status: u16,
    /// How many matching requests to answer (default 1); 0 matches nothing.
    #[serde(default = "one")]
    pub times: u32,
    /// Seconds for a `Retry-After` header (and `details.retryAfterSeconds`), as the
    /// API server sends with 429 and 503.
    #[serde(default)]
    pub retry_after: Option<u32>,
}

fn one() -> u32 {
    1
}

impl ApiFault {
    /// Answer the next `times` requests whose path contains `path_contains` with `status`.
    pub fn new(path_contains: impl Into<String>, status: u16, times: u32) -> Self {
        ApiFault {
            method: None,
            path_contains: path_contains.into(),
            status,
            times,
            retry_after: None,
        }
    }

    /// Only requests with this method match.
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    /// Send `Retry-After: secs`.
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Why the fault cannot be injected as written (admin route and scenario files).
    pub fn check(&self) -> Result<(), String> {
        if !(400..=599).contains(&self.status) {
            return Err(format!(
                "status {} is not an error status: use 400-599 (e.g. 403, 404, 409, 429, 500, 503)",
                self.status
            ));
        }
        if let Some(m) = &self.method
            && Method::from_bytes(m.to_ascii_uppercase().as_bytes()).is_err()
        {
            return Err(format!("method {m:?} is not an HTTP method"));
        }
        Ok(())
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.times > 0
            && self
                .method
                .as_ref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && path.contains(&self.path_contains)
    }
}

/// The faults waiting to fire, in injection order (the first matching one answers).
#[derive(Debug, Default)]
pub struct Faults {
    pending: Vec<ApiFault>,
}

impl Faults {
    pub fn push(&mut self, f: ApiFault) {
        if f.times > 0 {
            self.pending.push(f);
        }
    }

    pub fn clear(&mut self) {
        self.pending.clear();
    }

    pub fn pending(&self) -> Vec<ApiFault> {
        self.pending.clone()
    }

    /// The fault answering this request, if any; uses up one of its `times`.
    pub fn take(&mut self, method: &str, path: &str) -> Option<ApiFault> {
        let i = self.pending.iter().position(|f| f.matches(method, path))?;
        let f = &mut self.pending[i];
        f.times -= 1;
        let hit = f.clone();
        if f.times == 0 {
            self.pending.remove(i);
        }
        Some(hit)
    }
}

/// What the request was about, for the API server's wording of the error.
struct Request {
    verb: &'static str,
    group: String,
    /// Plural resource, with `/subresource` when there is one.
    resource: String,
    /// `pods` or `deployments.apps`, as errors name it.
    qualified: String,
    namespace: Option<String>,
    name: Option<String>,
}

fn describe(method: &str, path: &str, query: &str) -> Option<Request> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, r, rest @ ..]
            if resources::by_path(group, version, r).is_some_and(|d| d.namespaced) =>
        {
            (Some(ns.to_string()), [&[*r][..], rest].concat())
        }
        other => (None, other.to_vec()),
    };
    let (plural, name, sub) = match rest.as_slice() {
        [r] => (*r, None, None),
        [r, n] => (*r, Some(n.to_string()), None),
        [r, n, s, ..] => (*r, Some(n.to_string()), Some(*s)),
        _ => return None,
    };
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method, name.is_some()) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "get",
    };
    let qualified = resources::RESOURCES
        .iter()
        .find(|r| r.group == group && r.plural == plural)
        .map(|r| r.qualified())
        .unwrap_or_else(|| {
            if group.is_empty() {
                plural.to_string()
            } else {
                format!("{plural}.{group}")
            }
        });
    Some(Request {
        verb,
        group: group.to_string(),
        resource: match sub {
            Some(s) => format!("{plural}/{s}"),
            None => plural.to_string(),
        },
        qualified,
        namespace,
        name,
    })
}

/// The `metav1.Status` (reason and message) the API server would send for `status`.
pub fn status_body(status: u16, method: &str, path: &str, query: &str) -> Value {
    let req = describe(method, path, query);
    let name = req
        .as_ref()
        .and_then(|r| r.name.clone())
        .unwrap_or_default();
    let what = req
        .as_ref()
        .map(|r| r.qualified.clone())
        .unwrap_or_default();
    let (reason, message) = match status {
        400 => (
            "BadRequest",
            "the server rejected our request for an unknown reason".to_string(),
        ),
        401 => ("Unauthorized", "Unauthorized".to_string()),
        403 => {
            // The RBAC authorizer's reason, as NewForbidden wraps it.
            let why = match &req {
                Some(r) => format!(
                    "User \"system:serviceaccount:default:runbook\" cannot {} resource \"{}\" in API group \"{}\" {}",
                    r.verb,
                    r.resource,
                    r.group,
                    match &r.namespace {
                        Some(ns) => format!("in the namespace \"{ns}\""),
                        None => "at the cluster scope".to_string(),
                    }
                ),
                None => "User \"system:serviceaccount:default:runbook\" cannot access this path"
                    .to_string(),
            };
            let message = if name.is_empty() {
                format!("{what} is forbidden: {why}")
            } else {
                format!("{what} \"{name}\" is forbidden: {why}")
            };
            ("Forbidden", message)
        }
        404 if !name.is_empty() => ("NotFound", format!("{what} \"{name}\" not found")),
        404 => (
            "NotFound",
            "the server could not find the requested resource".to_string(),
        ),
        405 => (
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        ),
        409 => (
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {what} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        ),
        410 => (
            "Expired",
            "too old resource version: the requested version is no longer kept".to_string(),
        ),
        422 => (
            "Invalid",
            format!("{what} \"{name}\" is invalid: rejected by an injected fault"),
        ),
        // The max-in-flight / priority-and-fairness filters' message.
        429 => (
            "TooManyRequests",
            "Too many requests, please try again later.".to_string(),
        ),
        500 => (
            "InternalError",
            "Internal error occurred: injected fault (runbook lab)".to_string(),
        ),
        503 => (
            "ServiceUnavailable",
            "the server is currently unable to handle the request".to_string(),
        ),
        504 => (
            "Timeout",
            "Timeout: request did not complete within the allotted timeout".to_string(),
        ),
        // apimachinery's StatusReasonUnknown, with the text clients print for it.
        other => (
            "",
            format!(
                "the server responded with the status code {other} but did not return more information"
            ),
        ),
    };
    let mut s = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": status,
    });
    if let Some(r) = &req
        && !matches!(status, 429 | 500 | 503 | 504)
    {
        s["details"] = json!({"name": name, "group": r.group,
            "kind": r.resource.split('/').next().unwrap_or_default()});
    }
    if status == 500 {
        s["details"] = json!({"causes": [{"message": "injected fault (runbook lab)"}]});
    }
    s
}

/// The response for a request answered by `f`. Status codes outside 400–599 are
/// answered as 500 (the admin route and scenario files reject them up front).
pub fn answer(f: &ApiFault, method: &str, path: &str, query: &str) -> Response {
    let code = if (400..=599).contains(&f.status) {
        f.status
    } else {
        500
    };
    let mut body = status_body(code, method, path, query);
    let mut resp = Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(secs) = f.retry_after {
        resp = resp.header(header::RETRY_AFTER, secs.to_string());
        body["details"]["retryAfterSeconds"] = json!(secs);
    }
    resp.body(Body::from(serde_json::to_vec(&body).unwrap_or_default()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_answers_only_its_next_n_matching_requests() {
        let mut faults = Faults::default();
        faults.push(ApiFault::new("/pods/hub-", 409, 2).method("delete"));
        assert!(
            faults
                .take("GET", "/api/v1/namespaces/prod/pods/hub-1")
                .is_none()
        );
        assert!(faults.take("DELETE", "/api/v1/nodes/n1").is_none());
        assert!(
            faults
                .take("DELETE", "/api/v1/namespaces/prod/pods/hub-1")
                .is_some()
        );
        assert!(
            faults
                .take("DELETE", "/api/v1/namespaces/prod/pods/hub-2")
                .is_some()
        );
        assert!(
            faults
                .take("DELETE", "/api/v1/namespaces/prod/pods/hub-3")
                .is_none()
        );
        assert!(faults.pending().is_empty());
    }

    #[test]
    fn forbidden_names_the_verb_resource_and_namespace_like_rbac() {
        let s = status_body(403, "DELETE", "/api/v1/namespaces/prod/pods/hub-1", "");
        assert_eq!(
            s["message"],
            "pods \"hub-1\" is forbidden: User \"system:serviceaccount:default:runbook\" cannot delete resource \"pods\" in API group \"\" in the namespace \"prod\""
        );
        let s = status_body(403, "GET", "/apis/storage.k8s.io/v1/volumeattachments", "");
        assert_eq!(
            s["message"],
            "volumeattachments.storage.k8s.io is forbidden: User \"system:serviceaccount:default:runbook\" cannot list resource \"volumeattachments\" in API group \"storage.k8s.io\" at the cluster scope"
        );
        let s = status_body(
            403,
            "POST",
            "/api/v1/namespaces/prod/pods/hub-1/eviction",
            "",
        );
        assert!(
            s["message"]
                .as_str()
                .unwrap()
                .contains("cannot create resource \"pods/eviction\"")
        );
    }

    #[test]
    fn statuses_outside_the_error_range_are_rejected() {
        assert!(ApiFault::new("/", 200, 1).check().is_err());
        assert!(ApiFault::new("/", 503, 1).check().is_ok());
        assert!(ApiFault::new("/", 503, 1).method("GE T").check().is_err());
    }
}
