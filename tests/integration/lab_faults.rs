//! API fault injection: a client sees each injected status as the API server would
//! send it, a fault answers exactly its next `times` matching requests and changes
//! nothing, other requests pass, and the admin route and scenario files inject faults
//! into a lab in another process.

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use runbook::lab::{ApiFault, Lab};
use serde_json::{Value, json};
use tower::ServiceExt;

const OLD_HUB: &str = "hub-65d9f46698-dj4jb";
const NEW_HUB: &str = "hub-65d9f46698-dmlcv";
const LOST: &str = "gke-prod-a-ssd-pool-32-134a959a-n2sk";

fn seed() -> Lab {
    let lab = Lab::seed();
    lab.set_speed(0.0);
    lab
}

fn api_status(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Send one request through the router; (status, Retry-After, JSON body).
async fn call(lab: &Lab, method: &str, uri: &str, body: Value) -> (u16, Option<String>, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(&body).unwrap()
        }))
        .unwrap();
    let resp = lab.router().oneshot(req).await.unwrap();
    let code = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .unwrap();
    (
        code,
        retry,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn kube_client_sees_each_injected_status_with_the_api_servers_reason() {
    let lab = seed();
    let pods: Api<Pod> = Api::namespaced(lab.client(), "prod");
    let cases = [
        (403, "Forbidden"),
        (404, "NotFound"),
        (409, "Conflict"),
        (429, "TooManyRequests"),
        (500, "InternalError"),
        (503, "ServiceUnavailable"),
    ];
    for (code, reason) in cases {
        lab.inject_fault(ApiFault::new(format!("/pods/{NEW_HUB}"), code, 1).method("GET"));
        let s = api_status(pods.get(NEW_HUB).await.unwrap_err());
        assert_eq!(
            (s.code, s.reason.as_str(), s.status),
            (
                code,
                reason,
                Some(kube::core::response::StatusSummary::Failure)
            ),
            "{code}: {s:?}"
        );
        assert!(!s.message.is_empty());
    }
    let s = {
        lab.inject_fault(ApiFault::new(format!("/pods/{OLD_HUB}"), 403, 1));
        api_status(
            pods.delete(OLD_HUB, &DeleteParams::default())
                .await
                .unwrap_err(),
        )
    };
    assert_eq!(
        s.message,
        format!(
            "pods \"{OLD_HUB}\" is forbidden: User \"system:serviceaccount:default:runbook\" cannot delete resource \"pods\" in API group \"\" in the namespace \"prod\""
        )
    );
    assert!(pods.get(NEW_HUB).await.is_ok(), "all faults are used up");
}

#[tokio::test]
async fn a_faulted_write_changes_nothing_and_is_logged_with_its_status() {
    let lab = seed();
    let pods: Api<Pod> = Api::namespaced(lab.client(), "prod");
    lab.inject_fault(ApiFault::new(format!("/pods/{OLD_HUB}"), 409, 1).method("DELETE"));
    let rv_before =
        lab.get("pods", Some("prod"), OLD_HUB).unwrap()["metadata"]["resourceVersion"].clone();
    let err = pods
        .delete(OLD_HUB, &DeleteParams::default().grace_period(0))
        .await
        .unwrap_err();
    assert_eq!(api_status(err).code, 409);
    let after = lab
        .get("pods", Some("prod"), OLD_HUB)
        .expect("the faulted force delete removed nothing");
    assert_eq!(after["metadata"]["resourceVersion"], rv_before);
    let log = lab.requests();
    let last = log
        .iter()
        .rev()
        .find(|r| r.method == "DELETE")
        .expect("the DELETE is logged");
    assert_eq!(last.status, 409);

    // The same request without a fault goes through.
    pods.delete(OLD_HUB, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert!(lab.get("pods", Some("prod"), OLD_HUB).is_none());
    let last = lab
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.method == "DELETE")
        .unwrap();
    assert_eq!(last.status, 200);
}

#[tokio::test]
async fn times_is_honoured_and_non_matching_requests_pass() {
    let lab = seed();
    let client = lab.client();
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client);
    lab.inject_fault(ApiFault::new("/api/v1/nodes", 503, 3).retry_after(2));
    // Other paths are untouched.
    assert!(pods.list(&ListParams::default()).await.is_ok());
    for i in 0..3 {
        let s = api_status(nodes.list(&ListParams::default()).await.unwrap_err());
        assert_eq!(s.code, 503, "request {i}");
        assert_eq!(s.details.unwrap().retry_after_seconds, 2);
    }
    assert!(
        nodes.list(&ListParams::default()).await.is_ok(),
        "the fourth request is served"
    );
    assert!(lab.pending_faults().is_empty());

    // A method filter: PATCH fails, GET of the same node passes.
    lab.inject_fault(ApiFault::new(format!("/nodes/{LOST}"), 403, 5).method("patch"));
    assert!(nodes.get(LOST).await.is_ok());
    let patch = Patch::Strategic(json!({"spec": {"unschedulable": true}}));
    let s = api_status(
        nodes
            .patch(LOST, &PatchParams::default(), &patch)
            .await
            .unwrap_err(),
    );
    assert_eq!(s.reason, "Forbidden");
    assert_eq!(
        lab.get("nodes", None, LOST).unwrap()["spec"]["unschedulable"],
        Value::Null,
        "the faulted cordon changed nothing"
    );
    assert_eq!(lab.pending_faults()[0].times, 4);
    lab.clear_faults();
    nodes
        .patch(LOST, &PatchParams::default(), &patch)
        .await
        .unwrap();
    assert_eq!(
        lab.get("nodes", None, LOST).unwrap()["spec"]["unschedulable"],
        true
    );
}

#[tokio::test]
async fn admin_route_injects_lists_and_clears_faults_for_each_code() {
    let lab = seed();
    for (code, reason) in [
        (403, "Forbidden"),
        (404, "NotFound"),
        (409, "Conflict"),
        (429, "TooManyRequests"),
        (500, "InternalError"),
        (503, "ServiceUnavailable"),
    ] {
        let (c, _, _) = call(
            &lab,
            "POST",
            "/lab/v1/faults",
            json!({"method": "GET", "path_contains": "/namespaces/prod/pods", "status": code,
                   "times": 1, "retry_after": 7}),
        )
        .await;
        assert_eq!(c, 201);
        let (c, retry, body) = call(&lab, "GET", "/api/v1/namespaces/prod/pods", Value::Null).await;
        assert_eq!(c, code);
        assert_eq!(
            (
                body["kind"].as_str(),
                body["apiVersion"].as_str(),
                body["status"].as_str()
            ),
            (Some("Status"), Some("v1"), Some("Failure"))
        );
        assert_eq!(body["reason"], reason);
        assert_eq!(body["code"], code);
        assert_eq!(retry.as_deref(), Some("7"));
        let (c, _, body) = call(&lab, "GET", "/api/v1/namespaces/prod/pods", Value::Null).await;
        assert_eq!((c, body["kind"].as_str()), (200, Some("PodList")));
    }

    call(
        &lab,
        "POST",
        "/lab/v1/faults",
        json!({"path_contains": "/pods", "status": 500, "times": 10}),
    )
    .await;
    let (_, _, pending) = call(&lab, "GET", "/lab/v1/faults", Value::Null).await;
    assert_eq!(pending[0]["times"], 10);
    // Admin routes are never faulted, even when they match.
    let (c, _, body) = call(&lab, "DELETE", "/lab/v1/faults", Value::Null).await;
    assert_eq!((c, body["cleared"].as_u64()), (200, Some(1)));
    let (c, _, _) = call(&lab, "GET", "/api/v1/pods", Value::Null).await;
    assert_eq!(c, 200);

    let (_, _, log) = call(&lab, "GET", "/lab/v1/requests", Value::Null).await;
    let statuses: Vec<u64> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"] == "/api/v1/namespaces/prod/pods")
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(
        statuses,
        vec![403, 200, 404, 200, 409, 200, 429, 200, 500, 200, 503, 200]
    );
}

#[tokio::test]
async fn admin_route_rejects_bad_faults_with_a_clear_error() {
    let lab = seed();
    let (c, _, body) = call(
        &lab,
        "POST",
        "/lab/v1/faults",
        json!({"path_contains": "/pods", "status": 200}),
    )
    .await;
    assert_eq!(c, 400);
    assert!(
        body["message"].as_str().unwrap().contains("400-599"),
        "{body}"
    );
    let (c, _, body) = call(
        &lab,
        "POST",
        "/lab/v1/faults",
        json!({"path": "/pods", "status": 500}),
    )
    .await;
    assert_eq!(c, 400);
    assert!(
        body["message"].as_str().unwrap().contains("unknown field"),
        "{body}"
    );
    assert!(lab.pending_faults().is_empty());
}

#[tokio::test]
async fn scenario_api_faults_are_active_from_the_start() {
    let lab = Lab::from_scenario_str(
        "version: 1\nname: faulty\nobjects:\n- {apiVersion: v1, kind: Node, metadata: {name: n1}}\napi_faults:\n- {path_contains: /nodes/n1, status: 429, times: 2, retry_after: 1}\n",
    )
    .unwrap();
    lab.set_speed(0.0);
    let nodes: Api<Node> = Api::all(lab.client());
    for _ in 0..2 {
        assert_eq!(api_status(nodes.get("n1").await.unwrap_err()).code, 429);
    }
    assert!(nodes.get("n1").await.is_ok());

    let err = Lab::from_scenario_str(
        "version: 1\nname: bad\napi_faults:\n- {path_contains: /nodes, status: 302}\n",
    )
    .err()
    .expect("a redirect is no fault");
    assert!(err.message.contains("api_faults[0]"), "{err}");
}
