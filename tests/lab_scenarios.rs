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
        "schemas/scenario.schema.json is stale: run `RUNBOOK_UPDATE_SCHEMAS=1 cargo test --test lab_scenarios` and commit it"
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
