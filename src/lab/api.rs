//! The HTTP side: one axum fallback handler that parses Kubernetes REST paths and
//! dispatches to discovery, CRUD, watch, eviction and the Prometheus query API.
//! What each endpoint must do is listed in reference/kubernetes.md §4.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration as StdDuration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State as AxState};
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode, header};
use serde_json::{Value, json};

use super::Lab;
use super::metrics;
use super::patch;
use super::resources::{self, ResourceDef};
use super::select::{FieldSelector, LabelSelector};
use super::state::{DeleteOpts, str_at};
use super::status::{self, ApiError};
use super::store::{EventType, WatchEvent};
use super::table::{self, IncludeObject};

type Params = HashMap<String, String>;

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
    let fault = if lab_path(req.uri().path()) {
        None
    } else {
        lab.take_fault(&method, &uri)
    };
    let resp = match fault {
        Some(f) => super::faults::answer(
            &f,
            &method,
            req.uri().path(),
            req.uri().query().unwrap_or(""),
        ),
        None => serve(&lab, req).await,
    };
    lab.log_status(seq, resp.status().as_u16());
    resp
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
    let body = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(b) => b,
        Err(e) => {
            return err(ApiError::bad_request(format!(
                "cannot read the request body: {e}"
            )));
        }
    };
    let path = parts.uri.path().trim_end_matches('/').to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => json_response(200, &version()),
        ["healthz"] | ["readyz"] | ["livez"] => Response::new(Body::from("ok")),
        ["api"] => json_response(
            200,
            &json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        ),
        ["apis"] => json_response(200, &group_list()),
        ["api", "v1", "query"] | ["api", "v1", "query_range"] => {
            prometheus(&lab, &params, &body, &parts.headers)
        }
        ["api", "v1"] => json_response(200, &resource_list("", "v1")),
        ["apis", g] if resources::GROUPS.contains(g) => json_response(200, &group(g)),
        ["apis", g, v] if resources::GROUPS.contains(g) && *v == "v1" => {
            json_response(200, &resource_list(g, v))
        }
        ["lab", "v1", rest @ ..] => admin(&lab, &parts.method, rest, &params, &body),
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

/// The lab's own admin routes, for a lab running in another process (`runbook lab`):
/// `POST /lab/v1/advance?by=6m`, `POST /lab/v1/nodes/{name}/lose|recover`,
/// `GET /lab/v1/requests`, `GET /lab/v1/data-losses`, `GET /lab/v1/time`,
/// `POST /lab/v1/faults` (body: one [`super::ApiFault`] as JSON), `GET /lab/v1/faults`
/// (the pending ones), `DELETE /lab/v1/faults` (clear them).
fn admin(lab: &Lab, method: &Method, rest: &[&str], params: &Params, body: &Bytes) -> Response {
    match (method, rest) {
        (&Method::POST, ["faults"]) => {
            let f: super::ApiFault = match serde_json::from_slice(body) {
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
            match super::clock::parse_duration(by) {
                Ok(d) if d >= chrono::Duration::zero() => {
                    lab.advance(d.to_std().unwrap_or_default());
                    json_response(200, &json!({"now": super::clock::ts(lab.now())}))
                }
                _ => err(ApiError::bad_request(format!(
                    "invalid ?by={by:?}: expected e.g. 6m, 90s, 1h"
                ))),
            }
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
            json_response(200, &json!({"now": super::clock::ts(lab.now())}))
        }
        _ => err(ApiError::new(
            404,
            "NotFound",
            "unknown lab admin route; see runbook::lab::api::admin",
        )),
    }
}

fn version() -> Value {
    json!({"major": "1", "minor": "37", "gitVersion": "v1.37.1-runbook-lab", "gitCommit": "lab",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25",
        "compiler": "gc", "platform": "linux/amd64"})
}

fn group(g: &str) -> Value {
    let gv = json!({"groupVersion": format!("{g}/v1"), "version": "v1"});
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": [gv.clone()], "preferredVersion": gv})
}

fn group_list() -> Value {
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

fn resource_list(g: &str, v: &str) -> Value {
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

fn prometheus(lab: &Lab, params: &Params, body: &Bytes, _h: &HeaderMap) -> Response {
    let mut q = params.get("query").cloned();
    if q.is_none() {
        // POST with a form body, as Prometheus clients may send.
        if let Ok(form) = serde_urlencoded_parse(body) {
            q = form.get("query").cloned();
        }
    }
    let Some(q) = q else {
        return json_response(
            400,
            &json!({"status": "error", "errorType": "bad_data", "error": "missing query parameter \"query\""}),
        );
    };
    let st = lab.lock();
    let (code, v) = metrics::query(&st, &q);
    json_response(code, &v)
}

fn serde_urlencoded_parse(body: &Bytes) -> Result<Params, ()> {
    let s = std::str::from_utf8(body).map_err(|_| ())?;
    let uri: http::Uri = format!("/?{s}").parse().map_err(|_| ())?;
    Query::<Params>::try_from_uri(&uri)
        .map(|q| q.0)
        .map_err(|_| ())
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
    let ns = t.ns.clone().unwrap_or_default();
    let result = match (method, &t.name, t.sub.as_deref()) {
        (&Method::GET, None, _) if params.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            return watch(lab, &t, params, wants_table(headers));
        }
        (&Method::GET, None, _) => {
            return match list(lab, &t, params, wants_table(headers)) {
                Ok(resp) => resp,
                Err(e) => err(e),
            };
        }
        (&Method::GET, Some(name), Some("log")) if t.res.key() == "pods" => {
            return pod_log(lab, &ns, name, params);
        }
        (&Method::GET, Some(name), None | Some("status")) => {
            get(lab, t.res, &ns, name, wants_table(headers), params)
        }
        (&Method::POST, None, _) => parse_json(&body).and_then(|obj| {
            let mut st = lab.lock();
            let r = st.create(t.res, &ns, obj, dry_run(params));
            if r.is_ok() {
                super::controllers::reconcile(&mut st);
            }
            r.map(|o| (201, o))
        }),
        (&Method::POST, Some(name), Some("eviction")) if t.res.key() == "pods" => parse_json(&body)
            .and_then(|ev| {
                let mut st = lab.lock();
                let r = st.evict(&ns, name, &ev);
                super::controllers::reconcile(&mut st);
                r.map(|s| (201, s))
            }),
        (&Method::PUT, Some(name), sub @ (None | Some("status"))) => {
            parse_json(&body).and_then(|obj| {
                let mut st = lab.lock();
                let r = st.replace(t.res, &ns, name, obj, sub.is_some(), dry_run(params));
                super::controllers::reconcile(&mut st);
                r.map(|o| (200, o))
            })
        }
        (&Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
            patch_object(lab, t.res, &ns, name, sub.is_some(), headers, params, &body)
        }
        (&Method::DELETE, Some(name), None) => {
            let opts = delete_opts(&body, params);
            match opts {
                Err(e) => Err(e),
                Ok(opts) => {
                    let mut st = lab.lock();
                    let r = st.delete(t.res, &ns, name, &opts);
                    super::controllers::reconcile(&mut st);
                    r.map(|(obj, gone)| {
                        // Pods, PVs, PVCs and VolumeAttachments return the object
                        // (ReturnDeletedObject, §1.3); other kinds a Success Status.
                        let returns_object = matches!(t.res.key().as_str(), "pods" | "persistentvolumes" | "persistentvolumeclaims" | "volumeattachments.storage.k8s.io" | "namespaces");
                        if returns_object || !gone {
                            (200, obj)
                        } else {
                            (200, status::success(200, json!({"name": name, "group": t.res.group, "kind": t.res.plural, "uid": obj["metadata"]["uid"]})))
                        }
                    })
                }
            }
        }
        (&Method::DELETE, None, _) => delete_collection(lab, &t, &body, params),
        (m, _, _) => Err(ApiError::method_not_allowed(m.as_str())),
    };
    match result {
        Ok((code, v)) => json_response(code, &v),
        Err(e) => err(e),
    }
}

/// `GET pods/{name}/log`: the real apiserver proxies to the node's kubelet. The lab
/// has no containers, so it answers what a user would get: a 400 for a container that
/// has not started, a kubelet dial timeout for a pod on a lost node, else a short
/// simulated log.
fn pod_log(lab: &Lab, ns: &str, name: &str, params: &Params) -> Response {
    let st = lab.lock();
    let pods = resources::by_key("pods").expect("invariant: pods are a served resource");
    let Some(pod) = st.store.get("pods", ns, name) else {
        return err(ApiError::not_found(pods, name));
    };
    let containers: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect();
    let container = match params.get("container") {
        Some(c) => c.clone(),
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            )));
        }
    };
    let node = str_at(pod, "/spec/nodeName");
    if st.node_lost(node) {
        let ip = str_at(pod, "/status/hostIP");
        let ip = if ip.is_empty() { node } else { ip };
        return err(ApiError::new(
            500,
            "InternalError",
            format!(
                "Get \"https://{ip}:10250/containerLogs/{ns}/{name}/{container}\": dial tcp {ip}:10250: i/o timeout"
            ),
        ));
    }
    let status = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["name"] == container.as_str()));
    if let Some(reason) = status
        .and_then(|c| c.pointer("/state/waiting/reason"))
        .and_then(Value::as_str)
        && reason != "CrashLoopBackOff"
    {
        return err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        )));
    }
    if status.is_none() {
        return err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
        )));
    }
    let text = format!(
        "[runbook lab] simulated container {container} of pod {ns}/{name}: no real log is kept\n"
    );
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(text))
        .unwrap_or_default()
}

fn delete_opts(body: &Bytes, params: &Params) -> Result<DeleteOpts, ApiError> {
    let mut opts = if body.iter().any(|b| !b.is_ascii_whitespace()) {
        DeleteOpts::from_json(&parse_json(body)?)
    } else {
        DeleteOpts::default()
    };
    if let Some(g) = params.get("gracePeriodSeconds") {
        opts.grace = Some(
            g.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}")))?,
        );
    }
    if let Some(p) = params.get("propagationPolicy") {
        opts.propagation = Some(p.clone());
    }
    if dry_run(params) {
        opts.dry_run = true;
    }
    Ok(opts)
}

fn selectors(
    res: &ResourceDef,
    params: &Params,
) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(
        params
            .get("labelSelector")
            .map(String::as_str)
            .unwrap_or(""),
    )
    .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let fs_text = params
        .get("fieldSelector")
        .map(String::as_str)
        .unwrap_or("");
    let fields = FieldSelector::parse(fs_text).map_err(ApiError::bad_request)?;
    if let Some(bad) = fields.unsupported(res.selectable_fields()) {
        // The real registry's message (apiserver/pkg/registry/generic/registry/store.go).
        return Err(ApiError::bad_request(format!(
            "Unable to find \"{}/{}, Resource={}\" that match label selector \"{}\", field selector \"{fs_text}\": field label not supported: {bad}",
            res.group,
            res.version,
            res.plural,
            params
                .get("labelSelector")
                .map(String::as_str)
                .unwrap_or("")
        )));
    }
    Ok((labels, fields))
}

fn get(
    lab: &Lab,
    res: &'static ResourceDef,
    ns: &str,
    name: &str,
    as_table: bool,
    params: &Params,
) -> Result<(u16, Value), ApiError> {
    let st = lab.lock();
    let obj = st
        .store
        .get(&res.key(), ns, name)
        .ok_or_else(|| ApiError::not_found(res, name))?;
    if as_table {
        let include = IncludeObject::parse(params.get("includeObject").map(String::as_str));
        return Ok((200, table::table(res, &[obj], st.now(), include, None)));
    }
    Ok((200, obj.clone()))
}

/// A list body serialised straight from the store's objects (no copy of the items).
#[derive(serde::Serialize)]
struct ListBody<'a> {
    kind: String,
    #[serde(rename = "apiVersion")]
    api_version: String,
    metadata: Value,
    items: &'a [&'a Value],
}

fn list(lab: &Lab, t: &Target, params: &Params, as_table: bool) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(t.res, params)?;
    let st = lab.lock();
    let key = t.res.key();
    let matching: Vec<&Value> = st
        .store
        .list(&key, t.ns.as_deref())
        .filter(|o| labels.matches(o) && fields.matches(o))
        .collect();
    let offset: usize = params
        .get("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let limit: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let end = offset.saturating_add(limit).min(matching.len());
    let page = &matching[offset.min(end)..end];
    let rv = st.store.rv();
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if end < matching.len() {
        meta["continue"] = json!(end.to_string());
        meta["remainingItemCount"] = json!(matching.len() - end);
    }
    if as_table {
        let include = IncludeObject::parse(params.get("includeObject").map(String::as_str));
        let mut tb = table::table(t.res, page, st.now(), include, Some(rv));
        tb["metadata"] = meta;
        return Ok(json_response(200, &tb));
    }
    let body = ListBody {
        kind: format!("{}List", t.res.kind),
        api_version: t.res.api_version(),
        metadata: meta,
        items: page,
    };
    let bytes = serde_json::to_vec(&body)
        .map_err(|e| ApiError::new(500, "InternalError", format!("cannot encode the list: {e}")))?;
    drop(st);
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(bytes))
        .unwrap_or_default())
}

fn delete_collection(
    lab: &Lab,
    t: &Target,
    body: &Bytes,
    params: &Params,
) -> Result<(u16, Value), ApiError> {
    let (labels, fields) = selectors(t.res, params)?;
    let opts = delete_opts(body, params)?;
    let mut st = lab.lock();
    let names: Vec<(String, String)> = st
        .store
        .list(&t.res.key(), t.ns.as_deref())
        .filter(|o| labels.matches(o) && fields.matches(o))
        .map(|o| {
            (
                str_at(o, "/metadata/namespace").to_string(),
                str_at(o, "/metadata/name").to_string(),
            )
        })
        .collect();
    let mut items = Vec::new();
    for (ns, name) in names {
        if let Ok((obj, _)) = st.delete(t.res, &ns, &name, &opts) {
            items.push(obj);
        }
    }
    super::controllers::reconcile(&mut st);
    Ok((
        200,
        json!({"kind": format!("{}List", t.res.kind), "apiVersion": t.res.api_version(),
        "metadata": {"resourceVersion": st.store.rv().to_string()}, "items": items}),
    ))
}

#[allow(clippy::too_many_arguments)]
fn patch_object(
    lab: &Lab,
    res: &'static ResourceDef,
    ns: &str,
    name: &str,
    status_only: bool,
    headers: &HeaderMap,
    params: &Params,
    body: &Bytes,
) -> Result<(u16, Value), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let p = parse_json(body)?;
    let mut st = lab.lock();
    let old = st
        .store
        .get(&res.key(), ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(res, name))?;
    let mut new = old.clone();
    match ct.as_str() {
        "application/strategic-merge-patch+json" => patch::strategic_merge(&mut new, &p),
        "application/merge-patch+json" => patch::merge_patch(&mut new, &p),
        "application/json-patch+json" => {
            patch::json_patch(&mut new, &p).map_err(|e| ApiError::new(422, "Invalid", e))?
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    }
    // A resourceVersion in the patch is an optimistic-lock precondition (§4.6).
    let patched_rv = new
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(String::from);
    let old_rv = old
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(String::from);
    if patched_rv.is_some() && patched_rv != old_rv {
        return Err(ApiError::conflict(res, name));
    }
    let r = st.replace(res, ns, name, new, status_only, dry_run(params))?;
    super::controllers::reconcile(&mut st);
    Ok((200, r))
}

/// One line of a watch stream.
fn watch_line(
    etype: &str,
    obj: Value,
    table_res: Option<(&ResourceDef, chrono::DateTime<chrono::Utc>)>,
) -> Bytes {
    let object = match table_res {
        Some((res, now)) if etype != "BOOKMARK" => {
            table::table(res, &[&obj], now, IncludeObject::Metadata, None)
        }
        _ => obj,
    };
    let mut line =
        serde_json::to_vec(&json!({"type": etype, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn bookmark(res: &ResourceDef, rv: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": meta})
}

/// `?watch=true`: newline-delimited events (§4.4), including watch-list
/// (`sendInitialEvents=true`: initial ADDED events, then a BOOKMARK annotated
/// `k8s.io/initial-events-end`, which kubectl 1.37's delete/wait need).
fn watch(lab: &Lab, t: &Target, params: &Params, as_table: bool) -> Response {
    let (labels, fields) = match selectors(t.res, params) {
        Ok(s) => s,
        Err(e) => return err(e),
    };
    let send_initial = params.get("sendInitialEvents").is_some_and(|v| v == "true");
    let rv_param = params.get("resourceVersion").cloned().unwrap_or_default();
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(1800);
    let res = t.res;
    let key = res.key();
    let ns = t.ns.clone();
    let matches = move |o: &Value| labels.matches(o) && fields.matches(o);
    let (rx, initial, replay, start_rv, now) = {
        let st = lab.lock();
        let rx = st.store.subscribe();
        let from_now = send_initial || rv_param.is_empty() || rv_param == "0";
        let initial: Vec<Value> = if from_now {
            st.store
                .list(&key, ns.as_deref())
                .filter(|o| matches(o))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let (start_rv, replay) = if from_now {
            (st.store.rv(), Vec::new())
        } else {
            let Ok(rv) = rv_param.parse::<u64>() else {
                return err(ApiError::bad_request(format!(
                    "invalid resourceVersion {rv_param:?}"
                )));
            };
            match st.store.history_since(rv) {
                Some(h) => (st.store.rv(), h),
                None => {
                    return err(ApiError::new(
                        410,
                        "Expired",
                        format!("too old resource version: {rv} ({})", st.store.rv()),
                    ));
                }
            }
        };
        (rx, initial, replay, start_rv, st.now())
    };
    let lab2 = lab.clone();
    let (tx, out) = tokio::sync::mpsc::channel::<Bytes>(256);
    tokio::spawn(async move {
        let table_res = |now| if as_table { Some((res, now)) } else { None };
        for o in initial {
            if tx
                .send(watch_line("ADDED", o, table_res(now)))
                .await
                .is_err()
            {
                return;
            }
        }
        if send_initial
            && tx
                .send(watch_line("BOOKMARK", bookmark(res, start_rv, true), None))
                .await
                .is_err()
        {
            return;
        }
        let relevant =
            |ev: &WatchEvent| ev.resource == key && ns.as_ref().is_none_or(|n| *n == ev.namespace);
        let translate = |ev: &WatchEvent| -> Option<(&'static str, Value)> {
            let now_m = matches(&ev.object);
            let was = ev.old.as_ref().is_some_and(&matches);
            match ev.etype {
                EventType::Added if now_m => Some(("ADDED", ev.object.clone())),
                EventType::Deleted if now_m => Some(("DELETED", ev.object.clone())),
                EventType::Modified if now_m && was => Some(("MODIFIED", ev.object.clone())),
                EventType::Modified if now_m => Some(("ADDED", ev.object.clone())),
                EventType::Modified if was => Some(("DELETED", ev.object.clone())),
                _ => None,
            }
        };
        for ev in replay.iter().filter(|e| relevant(e)) {
            if let Some((ty, o)) = translate(ev)
                && tx
                    .send(watch_line(ty, o, table_res(lab2.now())))
                    .await
                    .is_err()
            {
                return;
            }
        }
        let mut rx = rx;
        let deadline = tokio::time::sleep(StdDuration::from_secs(timeout));
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(StdDuration::from_secs(5));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tick.tick(), if bookmarks => {
                    let rv = lab2.rv();
                    if tx.send(watch_line("BOOKMARK", bookmark(res, rv, false), None)).await.is_err() { return; }
                }
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        if ev.rv <= start_rv || !relevant(&ev) { continue; }
                        if let Some((ty, o)) = translate(&ev)
                            && tx.send(watch_line(ty, o, table_res(lab2.now()))).await.is_err()
                        {
                            return;
                        }
                    }
                    // Too slow a reader: end the watch; clients re-list and re-watch.
                    Err(_) => return,
                },
                _ = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(out, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}
