//! The HTTP side: one axum fallback handler that parses Kubernetes REST paths and
//! dispatches to discovery, CRUD, watch, eviction and the Prometheus query API.
//! What each endpoint must do is listed in reference/kubernetes.md §4.
//!
//! This file owns the routing: the path parser, the handler (request log, injected
//! faults) and the dispatch of resource requests by method and subresource. The
//! answers live next door: [`discovery`] (version, API groups, the Prometheus query
//! API), [`read`] (get, list, pod logs), [`write`] (create, replace, patch, delete,
//! eviction), [`watch`] (`?watch=true` streams) and [`admin`] (the lab's own
//! `/lab/v1` routes).

mod admin;
mod discovery;
mod fields;
mod protobuf;
mod read;
mod watch;
mod write;

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State as AxState};
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode, header};
use serde_json::{Value, json};

use super::resources::{self, ResourceDef};
use super::status::ApiError;
use super::{Lab, limits};

type Params = HashMap<String, String>;

/// A JSON answer; an invalid status code becomes 500 rather than a panic.
pub fn json_response(code: u16, body: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap_or_default()))
        .unwrap_or_default()
}

fn err(e: ApiError) -> Response {
    json_response(e.code, &e.to_status())
}

/// A parsed resource path.
struct Target {
    res: &'static ResourceDef,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_target(group: &str, version: &str, segs: &[&str]) -> Result<Target, ApiError> {
    let lookup = |plural: &str| {
        resources::by_path(group, version, plural).ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        })
    };
    let t = |res, ns: Option<&str>, name: Option<&str>, sub: Option<&str>| Target {
        res,
        ns: ns.map(String::from),
        name: name.map(String::from),
        sub: sub.map(String::from),
    };
    match segs {
        [r] => Ok(t(lookup(r)?, None, None, None)),
        ["namespaces", ns, r]
            if resources::by_path(group, version, r).is_some_and(|d| d.namespaced) =>
        {
            Ok(t(lookup(r)?, Some(ns), None, None))
        }
        ["namespaces", ns, r, name] => Ok(t(lookup(r)?, Some(ns), Some(name), None)),
        ["namespaces", ns, r, name, sub] => Ok(t(lookup(r)?, Some(ns), Some(name), Some(sub))),
        [r, name] => Ok(t(lookup(r)?, None, Some(name), None)),
        [r, name, sub] => Ok(t(lookup(r)?, None, Some(name), Some(sub))),
        _ => Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
    }
}

/// The one handler behind the router: logs the request, answers it from an injected
/// fault if one matches (never for the lab's admin routes), else serves it.
pub async fn handle(AxState(lab): AxState<Lab>, req: Request) -> Response {
    let uri = req.uri().to_string();
    let method = req.method().as_str().to_string();
    let seq = lab.log_request(&method, &uri);
    // The metrics as they were before this request changes anything.
    lab.scrape();
    let fault = if lab_path(req.uri().path()) {
        None
    } else {
        lab.take_fault(&method, &uri)
    };
    let site = site_of(&lab, &req);
    let resp = match (fault, site) {
        (_, Some(name)) => super::sites::serve(&lab, &name).await,
        (Some(f), None) => super::faults::answer(
            &f,
            &method,
            req.uri().path(),
            req.uri().query().unwrap_or(""),
        ),
        (None, None) => serve(&lab, req).await,
    };
    lab.log_status(seq, resp.status().as_u16());
    resp
}

/// The site a request is for: `/sites/<name>[/…]`, or a site's `host` in the Host
/// header. Sites are not the Kubernetes API: API faults never answer them.
fn site_of(lab: &Lab, req: &Request) -> Option<String> {
    if let Some(rest) = req.uri().path().strip_prefix("/sites/") {
        return Some(rest.split('/').next().unwrap_or_default().to_string());
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())?;
    let st = lab.lock();
    st.sites.by_host(host).map(String::from)
}

fn lab_path(path: &str) -> bool {
    path == "/lab" || path.starts_with("/lab/")
}

async fn serve(lab: &Lab, req: Request) -> Response {
    let lab = lab.clone();
    let (parts, body) = req.into_parts();
    let params: Params = Query::<Params>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits::MAX_BODY as u64) {
        return err(too_large());
    }
    // Read at most MAX_BODY: a chunked body with no Content-Length is cut off
    // there, not buffered whole.
    let body = match axum::body::to_bytes(body, limits::MAX_BODY).await {
        Ok(b) => b,
        Err(e) if is_length_limit(&e) => return err(too_large()),
        Err(e) => {
            return err(ApiError::bad_request(format!(
                "cannot read the request body: {e}"
            )));
        }
    };
    let path = parts.uri.path().trim_end_matches('/').to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => json_response(200, &discovery::version()),
        ["healthz"] | ["readyz"] | ["livez"] => Response::new(Body::from("ok")),
        ["api"] => json_response(
            200,
            &json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        ),
        ["apis"] => json_response(200, &discovery::group_list()),
        ["openapi", "v3"] if parts.method == Method::GET => {
            json_response(200, &fields::openapi_root())
        }
        ["openapi", "v3", gv @ ..] if parts.method == Method::GET => {
            match fields::openapi_document(&gv.join("/")) {
                Some(doc) => json_response(200, &doc),
                None => err(ApiError::new(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                )),
            }
        }
        ["metrics"] if parts.method == Method::GET => discovery::exposition(&lab),
        ["api", "v1", "query"] => {
            discovery::prometheus(&lab, &params, &body, &parts.headers, false)
        }
        ["api", "v1", "query_range"] => {
            discovery::prometheus(&lab, &params, &body, &parts.headers, true)
        }
        ["api", "v1"] => json_response(200, &discovery::resource_list("", "v1")),
        [
            "apis",
            "authorization.k8s.io",
            "v1",
            "selfsubjectaccessreviews",
        ] if parts.method == Method::POST => discovery::access_review(&body),
        ["apis", g] if resources::GROUPS.contains(g) => json_response(200, &discovery::group(g)),
        ["apis", g, v] if resources::GROUPS.contains(g) && *v == "v1" => {
            json_response(200, &discovery::resource_list(g, v))
        }
        ["lab", "v1", rest @ ..] => admin::admin(&lab, &parts.method, rest, &params, &body),
        ["api", "v1", rest @ ..] => {
            resource(
                &lab,
                "",
                "v1",
                rest,
                &parts.method,
                &parts.headers,
                &params,
                body,
            )
            .await
        }
        ["apis", g, v, rest @ ..] => {
            resource(
                &lab,
                g,
                v,
                rest,
                &parts.method,
                &parts.headers,
                &params,
                body,
            )
            .await
        }
        _ => err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
    }
}

/// The scenario's RBAC (`rbac:`) on a resource request: `None` when allowed, else
/// the 401 or 403 answer.
fn authorize(
    lab: &Lab,
    group: &str,
    t: &Target,
    method: &Method,
    headers: &HeaderMap,
    params: &Params,
) -> Option<Response> {
    let st = lab.lock();
    let rbac = st.rbac.as_ref()?;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let watch = params.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (method, &t.name) {
        (&Method::GET, None) if watch => "watch",
        (&Method::GET, None) => "list",
        (&Method::GET, Some(_)) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, None) => "deletecollection",
        (&Method::DELETE, Some(_)) => "delete",
        _ => return None,
    };
    let resource = match &t.sub {
        Some(s) => format!("{}/{s}", t.res.plural),
        None => t.res.plural.to_owned(),
    };
    let attrs = super::rbac::Attributes {
        verb,
        group,
        resource: &resource,
        namespace: t.ns.as_deref(),
        name: t.name.as_deref(),
    };
    match rbac.authorize(token, &attrs) {
        super::rbac::Verdict::Allowed => None,
        super::rbac::Verdict::Unauthenticated => {
            Some(err(ApiError::new(401, "Unauthorized", "Unauthorized")))
        }
        super::rbac::Verdict::Forbidden(m) => Some(err(ApiError::new(403, "Forbidden", m))),
    }
}

/// 413 with the API server's Status (k8s.io/apiserver pkg/endpoints/handlers/rest.go
/// `limitedReadBody`: "limit is 3145728").
fn too_large() -> ApiError {
    ApiError::new(
        413,
        "RequestEntityTooLarge",
        format!("Request entity too large: limit is {}", limits::MAX_BODY),
    )
}

/// Did reading the body stop at the length limit (rather than fail)?
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

fn wants_table(h: &HeaderMap) -> bool {
    h.get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"))
}

fn dry_run(params: &Params) -> bool {
    params.get("dryRun").is_some_and(|v| v == "All")
}

fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

#[allow(clippy::too_many_arguments)]
async fn resource(
    lab: &Lab,
    g: &str,
    v: &str,
    rest: &[&str],
    method: &Method,
    headers: &HeaderMap,
    params: &Params,
    body: Bytes,
) -> Response {
    let t = match parse_target(g, v, rest) {
        Ok(t) => t,
        Err(e) => return err(e),
    };
    if t.res.namespaced && t.name.is_some() && t.ns.is_none() {
        return err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    if let Some(denied) = authorize(lab, g, &t, method, headers, params) {
        return denied;
    }
    let ns = t.ns.clone().unwrap_or_default();
    let result = match (method, &t.name, t.sub.as_deref()) {
        (&Method::GET, None, _) if params.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            return watch::watch(lab, &t, params, wants_table(headers));
        }
        (&Method::GET, None, _) => {
            return match read::list(lab, &t, params, wants_table(headers)) {
                Ok(resp) => resp,
                Err(e) => err(e),
            };
        }
        (&Method::GET, Some(name), Some("log")) if t.res.key() == "pods" => {
            return read::pod_log(lab, &ns, name, params);
        }
        (&Method::GET, Some(name), None | Some("status")) => {
            read::get(lab, t.res, &ns, name, wants_table(headers), params)
        }
        (&Method::POST, None, _) => write::create(lab, t.res, &ns, headers, &body, params),
        (&Method::POST, Some(name), Some("eviction")) if t.res.key() == "pods" => {
            write::evict(lab, &ns, name, &body)
        }
        (&Method::GET | &Method::PUT | &Method::PATCH, Some(name), Some("scale"))
            if t.res.scalable() =>
        {
            write::scale(lab, t.res, &ns, name, method, headers, params, &body)
        }
        (&Method::PUT, Some(name), sub @ (None | Some("status"))) => {
            write::replace(lab, t.res, &ns, name, sub.is_some(), headers, &body, params)
        }
        (&Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
            write::patch_object(lab, t.res, &ns, name, sub.is_some(), headers, params, &body)
        }
        (&Method::DELETE, Some(name), None) => {
            return match write::delete_one(lab, t.res, &ns, name, &body, params) {
                Ok((code, v)) => json_response(code, &v),
                Err(e) => err(e),
            };
        }
        (&Method::DELETE, None, _) => write::delete_collection(lab, &t, &body, params),
        (m, _, _) => Err(ApiError::method_not_allowed(m.as_str())),
    };
    match result {
        Ok((code, v)) => json_response(code, &v),
        Err(e) => err(e),
    }
}
