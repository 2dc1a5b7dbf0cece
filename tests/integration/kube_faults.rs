//! The kube provider when the API server refuses, throttles or fails: a fault layer
//! in front of the lab's router answers chosen requests with a real `Status`, the
//! way an apiserver (or an RBAC policy, or an overloaded control plane) would.
//! Also: discovery of a custom resource, and the client-side rate limit.

use crate::support::kube as support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, Response};
use runbook::lab::Lab;
use runbook::providers::kube::{KubeProvider, RetryPolicy};
use serde_json::{Value, json};
use support::*;
use tower::ServiceExt;

/// Answer the next `times` requests whose method and path match with `status`.
#[derive(Clone)]
struct Fault {
    method: &'static str,
    path: &'static str,
    status: u16,
    times: usize,
    retry_after: Option<u64>,
}

fn fault(method: &'static str, path: &'static str, status: u16, times: usize) -> Fault {
    Fault {
        method,
        path,
        status,
        times,
        retry_after: None,
    }
}

fn status_body(code: u16, path: &str) -> Value {
    let (reason, message) = match code {
        403 => (
            "Forbidden",
            format!(
                "pods \"{}\" is forbidden: User \"system:serviceaccount:ops:runbook\" cannot delete resource \"pods\" in API group \"\" in the namespace \"prod\"",
                path.rsplit('/').next().unwrap_or("")
            ),
        ),
        409 => (
            "Conflict",
            "Operation cannot be fulfilled on nodes: the object has been modified; please apply your changes to the latest version and try again".to_string(),
        ),
        429 => ("TooManyRequests", "the server has received too many requests and has asked us to try again later".to_string()),
        _ => ("InternalError", "Internal error occurred: etcdserver: request timed out".to_string()),
    };
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
        "reason": reason, "code": code})
}

/// A custom resource group the lab does not serve, answered here.
fn custom(path: &str) -> Option<Value> {
    match path {
        "/apis/example.com" => Some(
            json!({"kind": "APIGroup", "apiVersion": "v1", "name": "example.com",
            "versions": [{"groupVersion": "example.com/v1", "version": "v1"}],
            "preferredVersion": {"groupVersion": "example.com/v1", "version": "v1"}}),
        ),
        "/apis/example.com/v1" => Some(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "example.com/v1",
            "resources": [{"name": "widgets", "singularName": "widget", "namespaced": true, "kind": "Widget",
                "verbs": ["get", "list", "delete", "patch"]}]}),
        ),
        "/apis/example.com/v1/namespaces/prod/widgets" => {
            Some(json!({"kind": "WidgetList", "apiVersion": "example.com/v1",
            "metadata": {"resourceVersion": "1"},
            "items": [{"metadata": {"name": "w1", "namespace": "prod"}, "spec": {"size": 3}},
                      {"metadata": {"name": "w2", "namespace": "prod"}, "spec": {"size": 9}}]}))
        }
        _ => None,
    }
}

/// A client over the lab with `faults` in front; a request whose path contains
/// `unreachable` fails as a refused connection would, one with `slow` hangs for 30 s.
fn faulty_client(lab: &Lab, faults: Vec<Fault>) -> kube::Client {
    let router = lab.router();
    let faults = Arc::new(Mutex::new(faults));
    let svc = tower::service_fn(move |req: Request<kube::client::Body>| {
        let router = router.clone();
        let faults = faults.clone();
        async move {
            let path = req.uri().path().to_string();
            if path.contains("slow") {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            if path.contains("unreachable") {
                return Err::<Response<Body>, std::io::Error>(std::io::Error::other(
                    "connection refused",
                ));
            }
            let hit = {
                let mut fs = faults.lock().unwrap();
                fs.iter_mut()
                    .find(|f| {
                        f.times > 0 && req.method().as_str() == f.method && path.contains(f.path)
                    })
                    .map(|f| {
                        f.times -= 1;
                        f.clone()
                    })
            };
            let json_response = |code: u16, body: &Value| {
                Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(body.to_string()))
                    .unwrap()
            };
            if let Some(f) = hit {
                let mut resp = json_response(f.status, &status_body(f.status, &path));
                if let Some(s) = f.retry_after {
                    resp.headers_mut()
                        .insert("retry-after", s.to_string().parse().unwrap());
                }
                return Ok(resp);
            }
            if let Some(body) = custom(&path) {
                return Ok(json_response(200, &body));
            }
            let resp = router.oneshot(req).await;
            Ok(resp.unwrap_or_else(|e: Infallible| match e {}))
        }
    });
    kube::Client::new(svc, "default")
}

fn faulty(lab: &Lab, faults: Vec<Fault>) -> KubeProvider {
    KubeProvider::new(faulty_client(lab, faults), "default", 0.0)
        .with_retry(fast_retry())
        .with_poll_interval(Duration::from_millis(20))
}

#[tokio::test]
async fn forbidden_fails_at_once_with_the_servers_words() {
    let lab = seed();
    let p = faulty(&lab, vec![fault("DELETE", "/pods/", 403, 1)]);
    let ran = run(
        &p,
        &format!(
            "{{delete: pods, name: {OLD_HUB}, namespace: prod, grace_period: 0, force: true}}"
        ),
    )
    .await;
    let (msg, result) = ran.err();
    assert_eq!(
        msg,
        format!(
            "Error from server (Forbidden): pods \"{OLD_HUB}\" is forbidden: User \"system:serviceaccount:ops:runbook\" cannot delete resource \"pods\" in API group \"\" in the namespace \"prod\""
        )
    );
    let result = result.unwrap();
    assert_eq!(result["failed"][0]["status"]["code"], 403);
    assert_eq!(result["failed"][0]["status"]["reason"], "Forbidden");
    assert_eq!(ran.trace(), ["DELETE 403"], "a 403 is not retried");
    assert!(lab.get("pods", Some("prod"), OLD_HUB).is_some());
}

#[tokio::test]
async fn delete_by_selector_reports_what_was_deleted_when_one_delete_is_refused() {
    let lab = seed();
    let p = faulty(&lab, vec![fault("DELETE", "jupyter-binder", 403, 1)]);
    let ran = run(&p, "{delete: pods, namespace: prod, selector: component=singleuser-server, grace_period: 0, force: true}").await;
    let (msg, result) = ran.err();
    assert!(msg.contains("is forbidden"), "{msg}");
    let result = result.unwrap();
    assert_eq!(strs(&result["deleted"]).len(), 2, "{result}");
    assert_eq!(
        result["failed"][0]["name"],
        "jupyter-binder-2dexamples-2dr-2dq3x9a1"
    );
}

#[tokio::test]
async fn throttled_requests_are_retried_and_every_attempt_is_journaled() {
    let lab = seed();
    let p = faulty(
        &lab,
        vec![fault("GET", "/api/v1/namespaces/prod/pods", 429, 2)],
    );
    let ran = run(&p, "{get: pods, namespace: prod}").await;
    assert!(!ran.ok().as_array().unwrap().is_empty());
    assert_eq!(ran.trace(), ["GET 429", "GET 429", "GET 200"]);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let lab = seed();
    let mut f = fault("GET", "/api/v1/nodes", 429, 1);
    f.retry_after = Some(1);
    let p =
        KubeProvider::new(faulty_client(&lab, vec![f]), "default", 0.0).with_retry(RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_secs(5),
            max_total: Duration::from_secs(5),
        });
    let started = Instant::now();
    let ran = run(&p, "{get: nodes}").await;
    ran.ok();
    assert_eq!(ran.trace(), ["GET 429", "GET 200"]);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    let lab = seed();
    let p = faulty(&lab, vec![fault("GET", "/api/v1/nodes", 500, 100)]);
    let ran = run(&p, "{get: nodes}").await;
    let (msg, status) = ran.err();
    assert_eq!(
        msg,
        "Error from server (InternalError): Internal error occurred: etcdserver: request timed out"
    );
    assert_eq!(status.unwrap()["code"], 500);
    assert_eq!(ran.trace(), ["GET 500", "GET 500", "GET 500"]);
}

#[tokio::test]
async fn a_json_patch_is_not_resent_after_a_server_error() {
    let lab = seed();
    let p = faulty(&lab, vec![fault("PATCH", "/api/v1/nodes", 500, 100)]);
    let ran = run(&p, &format!("{{patch: nodes, name: {HEALTHY}, patch_type: json, body: [{{op: add, path: /metadata/labels/x, value: y}}]}}")).await;
    ran.err();
    assert_eq!(ran.trace(), ["PATCH 500"]);
}

#[tokio::test]
async fn taint_starts_over_after_a_conflict() {
    let lab = seed();
    let p = faulty(&lab, vec![fault("PATCH", "/api/v1/nodes", 409, 1)]);
    let ran = run(&p, &format!("{{taint: {LOST}, key: node.kubernetes.io/out-of-service, value: nodeshutdown, effect: NoExecute}}")).await;
    assert_eq!(ran.ok()["changed"], true);
    assert_eq!(
        ran.trace(),
        ["GET 200", "PATCH 409", "GET 200", "PATCH 200"]
    );
    let node = lab.get("nodes", None, LOST).unwrap();
    assert!(
        node["spec"]["taints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/out-of-service")
    );
}

#[tokio::test]
async fn taint_gives_up_after_repeated_conflicts() {
    let lab = seed();
    let p = faulty(&lab, vec![fault("PATCH", "/api/v1/nodes", 409, 100)]);
    let ran = run(
        &p,
        &format!("{{taint: {LOST}, key: k, value: v, effect: NoSchedule}}"),
    )
    .await;
    let (msg, _) = ran.err();
    assert!(msg.starts_with("Error from server (Conflict): "), "{msg}");
    assert_eq!(ran.calls.iter().filter(|c| c.method == "PATCH").count(), 5);
}

#[tokio::test]
async fn an_unreachable_server_is_reported_with_status_zero() {
    let lab = seed();
    let p = faulty(&lab, vec![]);
    let ran = run(&p, "{get: nodes, name: unreachable-node}").await;
    let (msg, _) = ran.err();
    assert!(
        msg.starts_with("GET /api/v1/nodes/unreachable-node: cannot reach the API server"),
        "{msg}"
    );
    assert_eq!(ran.trace(), ["GET 0"]);
}

#[tokio::test]
async fn a_request_cut_off_by_the_step_timeout_is_still_journaled() {
    let lab = seed();
    let p = faulty(&lab, vec![]);
    let mut cx = runbook::providers::ExecCtx::new(json!({}));
    cx.timeout = Some(Duration::from_millis(200));
    let started = Instant::now();
    let ran = run_with(&p, "{get: nodes, name: slow-node}", cx).await;
    assert!(
        matches!(ran.result, Err(runbook::providers::OpError::TimedOut(_))),
        "{:?}",
        ran.result
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(ran.trace(), ["GET 0"]);
    assert_eq!(ran.calls[0].path, "/api/v1/nodes/slow-node");

    // Ctrl-C the same way.
    let cx = runbook::providers::ExecCtx::new(json!({}));
    let cancel = cx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    });
    let ran = run_with(&p, "{get: nodes, name: slow-node}", cx).await;
    assert!(
        matches!(ran.result, Err(runbook::providers::OpError::Cancelled)),
        "{:?}",
        ran.result
    );
    assert_eq!(ran.trace(), ["GET 0"]);
}

#[tokio::test]
async fn custom_resources_are_found_by_discovery_once() {
    let lab = seed();
    let p = faulty(&lab, vec![]);
    let ran = run(
        &p,
        r#"{get: widgets.example.com, namespace: prod, where: "widget.spec.size > 5"}"#,
    )
    .await;
    assert_eq!(names(ran.ok()), ["w2"]);
    assert_eq!(ran.ok()[0]["kind"], "Widget");
    assert_eq!(ran.ok()[0]["apiVersion"], "example.com/v1");
    let paths: Vec<&str> = ran.calls.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/apis/example.com",
            "/apis/example.com/v1",
            "/apis/example.com/v1/namespaces/prod/widgets?limit=500"
        ]
    );
    let again = run(&p, "{get: widgets.example.com, namespace: prod}").await;
    assert_eq!(again.calls.len(), 1, "discovery is cached");
}

#[tokio::test]
async fn a_kind_the_server_does_not_serve_fails_like_kubectl() {
    let lab = seed();
    let p = faulty(&lab, vec![]);
    let ran = run(&p, "{get: gadgets.nowhere.io, namespace: prod}").await;
    assert_eq!(
        ran.err().0,
        r#"error: the server doesn't have a resource type "gadgets.nowhere.io""#
    );
}

// ---- rate limit -------------------------------------------------------------------

fn lab_with_pods(n: usize) -> Lab {
    let lab = Lab::empty();
    lab.set_speed(0.0);
    lab.create(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "lost-1"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
    )
    .unwrap();
    for i in 0..n {
        lab.create(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("p-{i}"), "namespace": "prod", "labels": {"app": "x"}},
            "spec": {"nodeName": "lost-1", "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running"}}))
            .unwrap();
    }
    lab
}

/// The largest number of requests the lab saw in any one-second window.
fn max_per_second(lab: &Lab) -> usize {
    let at: Vec<_> = lab.requests().iter().map(|r| r.at).collect();
    (0..at.len())
        .map(|i| {
            at[i..]
                .iter()
                .take_while(|t| **t - at[i] < chrono::Duration::seconds(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn concurrent_executions_share_one_rate_limit() {
    let lab = lab_with_pods(10);
    let before = lab.requests().len();
    let p = KubeProvider::new(lab.client(), "default", 20.0);
    let started = Instant::now();
    // Ten for_each items run at once, as the engine's fan-out would.
    let runs = (0..10).map(|i| {
        let p = p.clone();
        async move {
            run(
                &p,
                &format!(
                    "{{delete: pods, name: p-{i}, namespace: prod, grace_period: 0, force: true}}"
                ),
            )
            .await
        }
    });
    let ran = futures::future::join_all(runs).await;
    let elapsed = started.elapsed();
    assert!(ran.iter().all(|r| r.result.is_ok()));
    assert!(
        elapsed >= Duration::from_millis(440),
        "10 requests at 20 qps took {elapsed:?}"
    );
    assert_eq!(lab.requests().len() - before, 10);
    assert!(
        max_per_second(&lab) <= 20,
        "{} requests in one second",
        max_per_second(&lab)
    );
    assert!(lab.list("pods", Some("prod")).is_empty());
}

#[tokio::test]
async fn one_selector_delete_of_many_pods_stays_under_the_limit() {
    let lab = lab_with_pods(30);
    let p = KubeProvider::new(lab.client(), "default", 20.0);
    let started = Instant::now();
    let ran = run(&p, "{delete: pods, namespace: prod, fields: spec.nodeName=lost-1, grace_period: 0, force: true}").await;
    assert_eq!(strs(&ran.ok()["deleted"]).len(), 30);
    // 31 requests (one list, 30 deletes) spaced 50 ms apart.
    assert!(
        started.elapsed() >= Duration::from_millis(1450),
        "{:?}",
        started.elapsed()
    );
    assert!(
        max_per_second(&lab) <= 20,
        "{} requests in one second",
        max_per_second(&lab)
    );
}

#[tokio::test]
async fn without_a_limit_many_deletes_run_concurrently() {
    let lab = lab_with_pods(200);
    let p = KubeProvider::new(lab.client(), "default", 0.0);
    let ran = run(
        &p,
        "{delete: pods, namespace: prod, selector: app=x, grace_period: 0, force: true}",
    )
    .await;
    assert_eq!(strs(&ran.ok()["deleted"]).len(), 200);
    assert_eq!(ran.calls.len(), 201);
    assert!(lab.list("pods", Some("prod")).is_empty());
}

// ---- the lab's own fault injection ---------------------------------------------------

fn lab_fault(method: &str, path: &str, status: u16, times: u32) -> runbook::lab::faults::ApiFault {
    runbook::lab::faults::ApiFault {
        method: Some(method.into()),
        path_contains: path.into(),
        status,
        times,
        retry_after: None,
    }
}

#[tokio::test]
async fn a_forbidden_delete_from_the_lab_reads_like_kubectl() {
    let lab = seed();
    lab.inject_fault(lab_fault("DELETE", "/pods/", 403, 1));
    let p = provider(&lab);
    let ran = run(
        &p,
        &format!(
            "{{delete: pods, name: {OLD_HUB}, namespace: prod, grace_period: 0, force: true}}"
        ),
    )
    .await;
    let (msg, _) = ran.err();
    assert_eq!(
        msg,
        format!(
            "Error from server (Forbidden): pods \"{OLD_HUB}\" is forbidden: User \"system:serviceaccount:default:runbook\" cannot delete resource \"pods\" in API group \"\" in the namespace \"prod\""
        )
    );
    assert!(lab.get("pods", Some("prod"), OLD_HUB).is_some());
}

#[tokio::test]
async fn the_labs_throttling_and_unavailability_are_retried() {
    let lab = seed();
    lab.inject_fault(lab_fault("GET", "/api/v1/nodes", 429, 1));
    lab.inject_fault(lab_fault("GET", "/api/v1/nodes", 503, 1));
    let p = provider(&lab);
    let ran = run(&p, "{get: nodes}").await;
    assert_eq!(ran.ok().as_array().unwrap().len(), 4);
    assert_eq!(ran.trace(), ["GET 429", "GET 503", "GET 200"]);
}

#[tokio::test]
async fn a_lab_conflict_on_taint_is_retried_with_a_fresh_read() {
    let lab = seed();
    lab.inject_fault(lab_fault("PATCH", &format!("/nodes/{HEALTHY}"), 409, 2));
    let p = provider(&lab);
    let ran = run(
        &p,
        &format!("{{taint: {HEALTHY}, key: k, value: v, effect: NoSchedule}}"),
    )
    .await;
    assert_eq!(ran.ok()["changed"], true);
    assert_eq!(
        ran.trace(),
        [
            "GET 200",
            "PATCH 409",
            "GET 200",
            "PATCH 409",
            "GET 200",
            "PATCH 200"
        ]
    );
}
