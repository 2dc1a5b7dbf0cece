//! Scenario files: the checked-in schema is current, every shipped scenario loads, and
//! bad scenarios are rejected with a location and a hint.

use std::path::Path;

use runbook::lab::{Lab, scenario};

#[test]
fn checked_in_scenario_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(scenario::schema_path());
    let fresh = scenario::schema_json();
    if std::env::var_os("RUNBOOK_UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == fresh,
        "schemas/scenario.schema.json is stale: run `RUNBOOK_UPDATE_SCHEMAS=1 cargo test --test integration lab_scenarios` and commit it"
    );
}

#[test]
fn every_shipped_scenario_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".scenario.yaml") {
            Lab::from_scenario_file(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(
        n >= 3,
        "the seed, the Prometheus outbreak and the ingress scenario ship"
    );
}

#[test]
fn unknown_kind_is_reported_with_line_column_and_the_known_kinds() {
    let yaml = "version: 1\nname: bad\nobjects:\n  - apiVersion: v1\n    kind: Pood\n    metadata: { name: x }\n";
    let e = Lab::from_scenario_str(yaml).err().expect("rejected");
    assert_eq!(e.line, 4);
    assert!(e.message.contains("unknown object kind v1/Pood"), "{e}");
    assert!(e.hint.unwrap().contains("v1/Pod"));
}

#[test]
fn unknown_field_and_bad_durations_are_rejected() {
    let e = Lab::from_scenario_str("version: 1\nname: x\nfaultz: []\n")
        .err()
        .expect("rejected");
    assert!(e.to_string().contains("faultz"), "{e}");
    // One position, printed once, and no snippet of an unnamed `<input>`.
    assert_eq!((e.line, e.column), (3, 1), "{e}");
    assert!(
        e.message
            .starts_with("unknown field `faultz`, expected one of"),
        "{e}"
    );
    assert!(
        !e.to_string().contains("line 3 column 1") && !e.to_string().contains("<input>"),
        "{e}"
    );
    let e = Lab::from_scenario_str(
        "version: 1\nname: x\nfaults:\n  - at: 5x\n    node_lost: { node: n }\n",
    )
    .err()
    .expect("rejected");
    assert!(e.message.contains("unknown unit"), "{e}");
    let e = Lab::from_scenario_str("version: 1\nname: x\nfaults:\n  - at: 5m\n")
        .err()
        .expect("rejected");
    assert!(e.message.contains("exactly one of"), "{e}");
}

#[test]
fn a_fault_fires_when_its_time_comes() {
    let yaml = r#"
version: 1
name: later
faults:
  - at: 10m
    node_lost: { node: n1 }
objects:
  - apiVersion: v1
    kind: Node
    metadata: { name: n1 }
"#;
    let lab = Lab::from_scenario_str(yaml).unwrap();
    lab.set_speed(0.0);
    let ready = |lab: &Lab| {
        lab.get("nodes", None, "n1").unwrap()["status"]["conditions"][0]["status"].clone()
    };
    assert_eq!(ready(&lab), "True");
    lab.advance(std::time::Duration::from_secs(9 * 60));
    assert_eq!(ready(&lab), "True");
    lab.advance(std::time::Duration::from_secs(61));
    assert_eq!(ready(&lab), "Unknown");
}

fn shipped(name: &str) -> Lab {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("runbooks")
        .join(name);
    let lab = Lab::from_scenario_file(path).unwrap();
    lab.set_speed(0.0);
    lab
}

fn pods_matching(lab: &Lab, label: &str, value: &str) -> Vec<serde_json::Value> {
    lab.list("pods", Some("prod"))
        .into_iter()
        .filter(|p| p["metadata"]["labels"][label] == value)
        .collect()
}

#[test]
fn prometheus_outbreak_force_delete_keeps_the_data_and_prometheus_returns() {
    let lab = shipped("prometheus-node-lost.scenario.yaml");
    assert_eq!(lab.metric("prometheus_up"), Some(0.0));
    let prom = pods_matching(&lab, "app", "prometheus");
    assert_eq!(
        prom.len(),
        2,
        "the old pod on the lost node and its waiting replacement"
    );
    let old = prom
        .iter()
        .find(|p| p["spec"]["nodeName"] == "gke-prod-a-ssd-pool-32-134a959a-bmsw")
        .unwrap();
    assert!(
        old["metadata"]["deletionTimestamp"].is_string(),
        "deleted by the node controller, never confirmed"
    );
    let old_name = old["metadata"]["name"].as_str().unwrap().to_string();

    // Force delete the old pod (the lab API's own delete rules), wait out the forced detach.
    let lab2 = lab.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        use kube::api::{Api, DeleteParams};
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(lab2.client(), "prod");
        pods.delete(
            &old_name,
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    });
    lab.advance(std::time::Duration::from_secs(6 * 60 + 1));
    assert_eq!(lab.metric("prometheus_up"), Some(1.0));
    assert_eq!(
        lab.metric("prometheus_data_lost"),
        Some(0.0),
        "the PVC kept the data"
    );
    assert!(lab.data_losses().is_empty());
}

#[test]
fn prometheus_outbreak_deleting_the_claim_or_the_emptydir_pod_loses_data() {
    let lab = shipped("prometheus-node-lost.scenario.yaml");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let lab2 = lab.clone();
    rt.block_on(async move {
        use kube::api::{Api, DeleteParams};
        let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
            Api::namespaced(lab2.client(), "prod");
        pvcs.delete("prometheus-data", &DeleteParams::default())
            .await
            .unwrap();
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(lab2.client(), "prod");
        pods.delete(
            "alertmanager-6c4b9d7f8-p3n5t",
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    });
    assert_eq!(lab.metric("prometheus_data_lost"), Some(1.0));
    assert_eq!(lab.metric("alertmanager_data_lost"), Some(1.0));
    let losses = lab.data_losses();
    assert!(
        losses
            .iter()
            .any(|d| d.pod == "alertmanager-6c4b9d7f8-p3n5t" && d.volume == "silences")
    );
}

#[test]
fn ingress_site_is_down_until_an_ingress_pod_runs_on_an_uncordoned_node() {
    let lab = shipped("ingress-on-cordoned-nodes.scenario.yaml");
    assert_eq!(lab.metric("site_up"), Some(0.0));
    assert_eq!(lab.metric("ingress_pods_running"), Some(2.0));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let lab2 = lab.clone();
    rt.block_on(async move {
        use kube::api::{Api, DeleteParams};
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(lab2.client(), "prod");
        pods.delete(
            "nginx-ingress-controller-6f5b8d7c9-4xk2p",
            &DeleteParams::default(),
        )
        .await
        .unwrap();
    });
    lab.advance(std::time::Duration::from_secs(2));
    assert_eq!(lab.metric("site_up"), Some(1.0));
    let ingress = pods_matching(&lab, "component", "controller");
    assert!(
        ingress
            .iter()
            .any(|p| p["spec"]["nodeName"].as_str().unwrap().contains("user-new"))
    );
}

#[test]
fn crash_loop_and_disk_fill_faults_change_pods_and_nodes() {
    let yaml = r#"
version: 1
name: faults
faults:
  - at: 1m
    crash_loop: { namespace: default, selector: app=web }
  - at: 2m
    disk_fills: { node: n1 }
metrics:
  - name: web_up
    value: { pods_running: { namespace: default, selector: app=web } }
objects:
  - apiVersion: v1
    kind: Node
    metadata: { name: n1 }
  - apiVersion: v1
    kind: Pod
    metadata: { name: web-1, labels: { app: web } }
    spec: { containers: [ { name: web, image: nginx } ] }
"#;
    let lab = Lab::from_scenario_str(yaml).unwrap();
    lab.set_speed(0.0);
    let pod = lab.get("pods", Some("default"), "web-1").unwrap();
    assert_eq!(
        pod["status"]["phase"], "Running",
        "scheduled on n1 and started"
    );
    assert_eq!(lab.metric("web_up"), Some(1.0));
    lab.advance(std::time::Duration::from_secs(61));
    let pod = lab.get("pods", Some("default"), "web-1").unwrap();
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
        "CrashLoopBackOff"
    );
    assert_eq!(lab.metric("web_up"), Some(0.0));
    lab.advance(std::time::Duration::from_secs(60));
    let node = lab.get("nodes", None, "n1").unwrap();
    let disk = node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "DiskPressure")
        .unwrap()
        .clone();
    assert_eq!(disk["status"], "True");
    assert!(
        node["spec"]["taints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/disk-pressure")
    );
}

#[tokio::test]
async fn prometheus_query_api_answers_vectors_and_rejects_what_it_cannot_parse() {
    use tower::ServiceExt;
    let lab = Lab::seed();
    lab.set_speed(0.0);
    let ask = |q: &str| {
        let uri = format!(
            "/api/v1/query?query={}",
            q.replace(' ', "%20")
                .replace('{', "%7B")
                .replace('}', "%7D")
                .replace('"', "%22")
                .replace('<', "%3C")
        );
        let router = lab.router();
        async move {
            let resp = router
                .oneshot(
                    http::Request::get(uri)
                        .body(axum::body::Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            let code = resp.status().as_u16();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            (
                code,
                serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            )
        }
    };
    let (code, v) = ask("launch_success_rate").await;
    assert_eq!(code, 200);
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(v["data"]["result"][0]["value"][1], "0");
    let (_, v) = ask(r#"hub_up{job="hub"}"#).await;
    assert_eq!(v["data"]["result"][0]["metric"]["job"], "hub");
    let (_, v) = ask("launch_success_rate < 1").await;
    assert_eq!(
        v["data"]["result"].as_array().unwrap().len(),
        1,
        "the alert condition holds"
    );
    let (_, v) = ask("launch_success_rate == 1").await;
    assert!(v["data"]["result"].as_array().unwrap().is_empty());
    let (code, v) = ask("topk(3, x)").await;
    assert_eq!(code, 400);
    assert_eq!(v["status"], "error");
}

#[tokio::test]
async fn watch_list_sends_initial_events_then_the_initial_events_end_bookmark() {
    use tower::ServiceExt;
    let lab = Lab::seed();
    lab.set_speed(0.0);
    let uri = "/api/v1/namespaces/prod/pods?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&fieldSelector=metadata.name%3Dhub-65d9f46698-dj4jb&timeoutSeconds=1";
    let resp = lab
        .router()
        .oneshot(
            http::Request::get(uri)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let lines: Vec<serde_json::Value> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "ADDED");
    assert_eq!(
        lines[0]["object"]["metadata"]["name"],
        "hub-65d9f46698-dj4jb"
    );
    assert_eq!(lines[1]["type"], "BOOKMARK");
    assert_eq!(
        lines[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
}

#[tokio::test]
async fn admin_routes_advance_time_and_recover_nodes_of_a_lab_in_another_process() {
    use tower::ServiceExt;
    let lab = Lab::seed();
    lab.set_speed(0.0);
    let call = |method: &str, uri: &str| {
        let req = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(axum::body::Body::empty())
            .unwrap();
        let router = lab.router();
        async move {
            let resp = router.oneshot(req).await.unwrap();
            let code = resp.status().as_u16();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            (
                code,
                serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            )
        }
    };
    let before = lab.now();
    let (code, _) = call("POST", "/lab/v1/advance?by=6m").await;
    assert_eq!(code, 200);
    assert_eq!((lab.now() - before).num_minutes(), 6);
    assert_eq!(call("POST", "/lab/v1/advance?by=soon").await.0, 400);
    call(
        "POST",
        "/lab/v1/nodes/gke-prod-a-ssd-pool-32-134a959a-n2sk/recover",
    )
    .await;
    assert_eq!(
        lab.metric("launch_success_rate"),
        Some(1.0),
        "the reset node's kubelet finished the old hub's deletion"
    );
    let (_, log) = call("GET", "/lab/v1/requests").await;
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|r| r["path"] == "/lab/v1/advance?by=6m")
    );
}
