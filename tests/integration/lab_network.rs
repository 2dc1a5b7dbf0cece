//! Services, Endpoints, EndpointSlices and HTTP sites (issue 16): a Service's
//! endpoints follow its pods' readiness, a scenario's site answers 200 through them or
//! the ingress' error without them, outages make it fail by itself, metrics computed
//! from the lab's state follow what clients do, and kubectl sees all of it.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};
use runbook::lab::Lab;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::kubectl::Kubectl;

const SITES: &str = r#"version: 1
name: sites
objects:
  - { apiVersion: v1, kind: Node, metadata: { name: n1, labels: { lab.runbook.dev/node-pool: web-pool } } }
  - apiVersion: apps/v1
    kind: Deployment
    metadata: { name: hub, namespace: prod }
    spec:
      replicas: 2
      selector: { matchLabels: { app: hub } }
      template:
        metadata: { labels: { app: hub } }
        spec: { containers: [ { name: hub, image: "jupyterhub/k8s-hub:0.9", ports: [ { name: http, containerPort: 8081 } ] } ] }
  - apiVersion: v1
    kind: Service
    metadata: { name: hub, namespace: prod }
    spec: { selector: { app: hub }, ports: [ { name: http, port: 80, targetPort: http } ] }
  - apiVersion: v1
    kind: ResourceQuota
    metadata: { name: compute, namespace: prod }
    spec: { hard: { pods: "10" } }
sites:
  - { name: hub, host: hub.example.org, namespace: prod, service: hub, when_down: { status: 502 } }
  - { name: status, namespace: prod, service: hub, outages: [ { at: 1m, until: 2m, status: 504 } ] }
  - { name: slow, namespace: prod, service: nothing-here, when_down: { status: 504, after: 1s } }
metrics:
  - { name: hub_success_rate, value: { site_success_rate: { site: hub, window: 1m } } }
  - { name: pods_pending, value: { pods: { phase: Pending } } }
  - { name: hub_pods_ready, value: { pods: { namespace: prod, selector: app=hub, ready: true } } }
  - { name: pool_nodes, labels: { node_group: web-pool }, value: { nodes: { pool: web-pool } } }
  - { name: ready_nodes, value: { nodes: { ready: true } } }
  - { name: quota_pods_used, value: { quota_used: { namespace: prod, name: compute, resource: pods } } }
  - { name: quota_pods_hard, value: { quota_hard: { namespace: prod, name: compute, resource: pods } } }
"#;

fn lab() -> Lab {
    let lab = Lab::from_scenario_str(SITES).unwrap_or_else(|e| panic!("scenario: {e}"));
    lab.set_speed(0.0);
    lab
}

/// GET `uri` through the lab's router, optionally with a Host header: (status, body).
async fn get(lab: &Lab, uri: &str, host: Option<&str>) -> (u16, String) {
    let mut req = http::Request::builder().uri(uri);
    if let Some(h) = host {
        req = req.header("host", h);
    }
    let resp = lab
        .router()
        .oneshot(req.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (code, String::from_utf8_lossy(&bytes).into_owned())
}

async fn scale(lab: &Lab, replicas: i32) {
    let deploys: Api<Deployment> = Api::namespaced(lab.client(), "prod");
    deploys
        .patch(
            "hub",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .expect("scale the hub");
}

fn ready_ips(ep: &Value) -> Vec<String> {
    ep.pointer("/subsets/0/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|a| a["ip"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_service_gets_endpoints_and_a_slice_from_its_ready_pods() {
    let lab = lab();
    let ep = lab
        .get("endpoints", Some("prod"), "hub")
        .expect("endpoints");
    assert_eq!(ready_ips(&ep).len(), 2, "{ep:#}");
    assert_eq!(ep.pointer("/subsets/0/ports/0/port"), Some(&json!(8081)));
    let svc = lab.get("services", Some("prod"), "hub").unwrap();
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert!(
        svc["spec"]["clusterIP"]
            .as_str()
            .unwrap()
            .starts_with("10.96.")
    );
    let slices = lab.list("endpointslices.discovery.k8s.io", Some("prod"));
    assert_eq!(slices.len(), 1);
    let s = &slices[0];
    assert_eq!(s["metadata"]["labels"]["kubernetes.io/service-name"], "hub");
    assert_eq!(s["addressType"], "IPv4");
    assert_eq!(s["endpoints"].as_array().unwrap().len(), 2);
    assert_eq!(s["endpoints"][0]["conditions"]["ready"], true);

    scale(&lab, 0).await;
    lab.advance(Duration::from_secs(5));
    let ep = lab.get("endpoints", Some("prod"), "hub").unwrap();
    assert!(ready_ips(&ep).is_empty(), "{ep:#}");
    let s = &lab.list("endpointslices.discovery.k8s.io", Some("prod"))[0];
    assert_eq!(s["endpoints"], json!([]), "{s:#}");
}

/// The endpoints controller finds a service's pods through the label index: a pod
/// relabelled out of the selector leaves the endpoints at once (without a full pass),
/// one relabelled in joins, a pod matching only one of two labels never does, and a
/// full pass afterwards finds nothing to change.
#[tokio::test]
async fn relabelled_pods_leave_and_join_a_two_label_selector_incrementally() {
    let lab = lab();
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "hub-canary", "namespace": "prod"},
        "spec": {"selector": {"app": "hub", "track": "canary"}, "ports": [{"port": 80}]}});
    lab.create(svc).unwrap();
    let pods: Api<Pod> = Api::namespaced(lab.client(), "prod");
    let names: Vec<String> = lab
        .list("pods", Some("prod"))
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 2);
    let relabel = |name: String, track: Value| {
        let pods = pods.clone();
        async move {
            pods.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"track": track}}})),
            )
            .await
            .expect("relabel");
        }
    };
    let canary = |lab: &Lab| -> Vec<String> {
        let ep = lab.get("endpoints", Some("prod"), "hub-canary").unwrap();
        ep.pointer("/subsets/0/addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|a| a["targetRef"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(canary(&lab).is_empty(), "no pod has track=canary yet");
    relabel(names[0].clone(), json!("canary")).await;
    assert_eq!(canary(&lab), [names[0].clone()]);
    relabel(names[1].clone(), json!("canary")).await;
    assert_eq!(canary(&lab).len(), 2);
    relabel(names[0].clone(), json!("stable")).await;
    assert_eq!(canary(&lab), [names[1].clone()]);
    // The other service (app=hub) kept both pods all along.
    let hub = lab.get("endpoints", Some("prod"), "hub").unwrap();
    assert_eq!(ready_ips(&hub).len(), 2, "{hub:#}");
    let rv = lab.resource_version();
    lab.reconcile();
    assert_eq!(
        lab.resource_version(),
        rv,
        "a full pass found endpoints left stale"
    );
}

#[tokio::test]
async fn a_site_answers_through_ready_endpoints_and_the_ingress_error_without_them() {
    let lab = lab();
    let (code, body) = get(&lab, "/sites/hub", None).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("hub: served by pod hub-"), "{body}");
    let (code, body) = get(&lab, "/hub/api/health", Some("hub.example.org")).await;
    assert_eq!(code, 200, "the Host header picks the site: {body}");
    assert_eq!(lab.metric("hub_success_rate"), Some(1.0));

    scale(&lab, 0).await;
    lab.advance(Duration::from_secs(5));
    let (code, body) = get(&lab, "/sites/hub/run?repo=x", None).await;
    assert_eq!(code, 502);
    assert!(body.contains("<title>502 Bad Gateway</title>"), "{body}");
    let rate = lab.metric("hub_success_rate").unwrap();
    assert!(
        (rate - 2.0 / 3.0).abs() < 1e-9,
        "2 of 3 answers were 200: {rate}"
    );
    lab.advance(Duration::from_secs(120));
    assert_eq!(
        lab.metric("hub_success_rate"),
        Some(0.0),
        "no answers in the window: the site's state now"
    );

    scale(&lab, 1).await;
    let (code, _) = get(&lab, "/sites/hub", None).await;
    assert_eq!(code, 200, "back once a pod is Ready again");

    let (code, body) = get(&lab, "/sites/nope", None).await;
    assert_eq!(code, 404);
    assert!(body.contains("its sites: [hub, status, slow]"), "{body}");
}

#[tokio::test]
async fn an_outage_fails_a_site_by_itself_for_its_window_and_slow_answers_wait() {
    let lab = lab();
    assert_eq!(get(&lab, "/sites/status", None).await.0, 200);
    lab.advance(Duration::from_secs(60));
    let (code, body) = get(&lab, "/sites/status", None).await;
    assert_eq!(code, 504, "{body}");
    assert!(body.contains("504 Gateway Time-out"), "{body}");
    lab.advance(Duration::from_secs(60));
    assert_eq!(get(&lab, "/sites/status", None).await.0, 200);

    let t = Instant::now();
    let (code, _) = get(&lab, "/sites/slow", None).await;
    assert_eq!(code, 504);
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());
}

#[tokio::test]
async fn metrics_count_pods_nodes_and_quota_from_the_lab_state() {
    let lab = lab();
    assert_eq!(lab.metric("hub_pods_ready"), Some(2.0));
    assert_eq!(lab.metric("pods_pending"), Some(0.0));
    assert_eq!(lab.metric("pool_nodes"), Some(1.0));
    assert_eq!(lab.metric("ready_nodes"), Some(1.0));
    assert_eq!(lab.metric("quota_pods_used"), Some(2.0));
    assert_eq!(lab.metric("quota_pods_hard"), Some(10.0));
    lab.create(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "huge", "namespace": "prod"},
        "spec": {"nodeSelector": {"disk": "none"}, "containers": [{"name": "c", "image": "x"}]}}))
        .expect("create");
    assert_eq!(lab.metric("pods_pending"), Some(1.0));
    assert_eq!(lab.metric("quota_pods_used"), Some(3.0));
    scale(&lab, 5).await;
    assert_eq!(lab.metric("hub_pods_ready"), Some(5.0));
    // Through the Prometheus query API, as a runbook's check reads it.
    let (code, body) = get(
        &lab,
        "/api/v1/query?query=pool_nodes%7Bnode_group%3D%22web-pool%22%7D",
        None,
    )
    .await;
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["result"][0]["value"][1], "1", "{v:#}");
}

#[test]
fn a_site_status_outside_500_599_and_an_unknown_site_metric_are_refused() {
    let err = Lab::from_scenario_str(
        "version: 1\nname: bad\nsites:\n  - { name: hub, service: hub, when_down: { status: 200 } }\n",
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("500-599"), "{err}");
    assert_eq!(err.line, 4, "{err}");
    let err = Lab::from_scenario_str(
        "version: 1\nname: bad\nmetrics:\n  - { name: m, value: { site_success_rate: { site: hub } } }\n",
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("no site named \"hub\""), "{err}");
}

#[tokio::test]
#[ignore = "needs kubectl (scripts/test.sh installs it)"]
async fn kubectl_gets_services_endpoints_and_endpointslices_and_may_do_anything() {
    let lab = lab();
    let k = Kubectl::start(&lab).await;
    let out = k.ok(&["get", "svc", "-n", "prod"]).await;
    assert!(out.contains("NAME") && out.contains("CLUSTER-IP"), "{out}");
    assert!(out.contains("ClusterIP") && out.contains("80/TCP"), "{out}");
    let out = k.ok(&["get", "endpoints", "-n", "prod", "hub"]).await;
    assert!(out.contains("ENDPOINTS") && out.contains(":8081,"), "{out}");
    let out = k.ok(&["get", "endpointslices", "-n", "prod"]).await;
    assert!(
        out.contains("ADDRESSTYPE") && out.contains("IPv4") && out.contains("8081"),
        "{out}"
    );
    let out = k
        .ok(&[
            "get",
            "endpointslices",
            "-n",
            "prod",
            "-l",
            "kubernetes.io/service-name=hub",
            "-o",
            "json",
        ])
        .await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["items"][0]["endpoints"].as_array().unwrap().len(), 2);
    let out = k
        .ok(&["auth", "can-i", "delete", "pods", "-n", "prod"])
        .await;
    assert_eq!(out.trim(), "yes");
    k.ok(&[
        "patch",
        "deployment",
        "hub",
        "-n",
        "prod",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"replicas":0}}"#,
    ])
    .await;
    lab.advance(Duration::from_secs(5));
    let out = k.ok(&["get", "endpoints", "-n", "prod", "hub"]).await;
    assert!(out.contains("<none>"), "{out}");
    // The site, on the lab's own address, as a runbook's http check sees it.
    let (code, _) = get(&lab, "/sites/hub", None).await;
    assert_eq!(code, 502);
    k.stop().await;
}
