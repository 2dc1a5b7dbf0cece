//! Node faults and image pull failures (issue 16): node conditions with a window, their
//! NoSchedule taints and the kubelet's events; a node losing its InternalIP, which
//! makes the API server unable to fetch logs from it; an image that cannot be pulled
//! (ErrImagePull, then ImagePullBackOff with the kubelet's back-off) until the fault
//! ends. Checked through the lab's API and with a real kubectl.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use runbook::lab::Lab;
use serde_json::{Value, json};

use crate::support::kubectl::Kubectl;

const NODES: &str = r#"version: 1
name: node-faults
objects:
  - apiVersion: v1
    kind: Node
    metadata: { name: n1 }
    status: { addresses: [ { type: InternalIP, address: 10.128.0.6 }, { type: Hostname, address: n1 } ] }
  - { apiVersion: v1, kind: Node, metadata: { name: n2, labels: { disk: old } } }
  - apiVersion: v1
    kind: Pod
    metadata: { name: hub-0, namespace: default }
    spec: { nodeName: n1, containers: [ { name: hub, image: hub } ] }
node_faults:
  - { node: n1, at: 1m, until: 5m, no_internal_ip: {} }
  - { selector: disk=old, at: 30s, until: 10m, condition: DiskPressure }
  - { node: n2, at: 30s, condition: MemoryPressure }
pod_faults:
  - { image: "registry.example.org/bad:*", until: 3m, image_pull: {} }
"#;

fn lab() -> Lab {
    let lab = Lab::from_scenario_str(NODES).unwrap_or_else(|e| panic!("scenario: {e}"));
    lab.set_speed(0.0);
    lab
}

fn condition(lab: &Lab, node: &str, t: &str) -> (String, String) {
    let n = lab.get("nodes", None, node).unwrap();
    n["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == t)
        .map(|c| {
            (
                c["status"].as_str().unwrap().to_string(),
                c["reason"].as_str().unwrap().to_string(),
            )
        })
        .unwrap_or_default()
}

fn taints(lab: &Lab, node: &str) -> Vec<String> {
    let n = lab.get("nodes", None, node).unwrap();
    n.pointer("/spec/taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{}:{}",
                t["key"].as_str().unwrap(),
                t["effect"].as_str().unwrap()
            )
        })
        .collect()
}

fn event_reasons(lab: &Lab, name: &str) -> Vec<String> {
    lab.list("events", None)
        .into_iter()
        .filter(|e| e["involvedObject"]["name"] == name)
        .map(|e| {
            format!(
                "{}: {}",
                e["reason"].as_str().unwrap(),
                e["message"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn a_node_condition_holds_for_its_window_with_its_taint_and_the_kubelets_events() {
    let lab = lab();
    assert_ne!(condition(&lab, "n2", "DiskPressure").0, "True");
    assert!(taints(&lab, "n2").is_empty());
    lab.advance(Duration::from_secs(30));
    assert_eq!(
        condition(&lab, "n2", "DiskPressure"),
        ("True".into(), "KubeletHasDiskPressure".into())
    );
    assert_eq!(
        condition(&lab, "n2", "MemoryPressure"),
        ("True".into(), "KubeletHasInsufficientMemory".into())
    );
    let t = taints(&lab, "n2");
    assert!(
        t.contains(&"node.kubernetes.io/disk-pressure:NoSchedule".into()),
        "{t:?}"
    );
    assert!(
        t.contains(&"node.kubernetes.io/memory-pressure:NoSchedule".into()),
        "{t:?}"
    );
    let evs = event_reasons(&lab, "n2");
    assert!(
        evs.contains(&"NodeHasDiskPressure: Node n2 status is now: NodeHasDiskPressure".into()),
        "{evs:?}"
    );
    assert!(
        evs.iter().any(|e| e.starts_with("EvictionThresholdMet")),
        "{evs:?}"
    );
    // A new pod is not scheduled onto the tainted node.
    lab.create(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"nodeSelector": {"disk": "old"}, "containers": [{"name": "c", "image": "nginx"}]}}))
        .unwrap();
    let web = lab.get("pods", Some("default"), "web").unwrap();
    assert_eq!(web["status"]["phase"], "Pending");

    lab.advance(Duration::from_secs(10 * 60));
    assert_eq!(
        condition(&lab, "n2", "DiskPressure"),
        ("False".into(), "KubeletHasNoDiskPressure".into())
    );
    let t = taints(&lab, "n2");
    assert!(!t.iter().any(|t| t.contains("disk-pressure")), "{t:?}");
    assert!(
        t.iter().any(|t| t.contains("memory-pressure")),
        "no end: {t:?}"
    );
    let evs = event_reasons(&lab, "n2");
    assert!(
        evs.iter().any(|e| e.starts_with("NodeHasNoDiskPressure")),
        "{evs:?}"
    );
}

#[tokio::test]
async fn a_node_without_its_internal_ip_cannot_serve_logs_until_the_fault_ends() {
    let lab = lab();
    let pods: Api<Pod> = Api::namespaced(lab.client(), "default");
    pods.logs("hub-0", &Default::default())
        .await
        .expect("logs at first");
    lab.advance(Duration::from_secs(60));
    let n1 = lab.get("nodes", None, "n1").unwrap();
    assert_eq!(
        n1["status"]["addresses"],
        json!([{"type": "Hostname", "address": "n1"}])
    );
    let err = pods.logs("hub-0", &Default::default()).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("no preferred addresses found; known addresses: [{Hostname n1}]"),
        "{text}"
    );
    lab.advance(Duration::from_secs(4 * 60));
    let n1 = lab.get("nodes", None, "n1").unwrap();
    assert_eq!(n1["status"]["addresses"][0]["type"], "InternalIP", "{n1:#}");
    pods.logs("hub-0", &Default::default())
        .await
        .expect("logs again");
}

fn waiting(lab: &Lab, pod: &str) -> String {
    let p = lab.get("pods", Some("default"), pod).unwrap();
    p.pointer("/status/containerStatuses/0/state/waiting/reason")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

#[test]
fn an_image_that_cannot_be_pulled_backs_off_and_the_pod_starts_when_the_fault_ends() {
    let lab = lab();
    lab.create(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "builder"},
        "spec": {"nodeName": "n1", "containers": [{"name": "build", "image": "registry.example.org/bad:1"}]}}))
        .unwrap();
    assert_eq!(waiting(&lab, "builder"), "ErrImagePull");
    let p = lab.get("pods", Some("default"), "builder").unwrap();
    assert_eq!(p["status"]["phase"], "Pending");
    assert!(
        p.pointer("/status/containerStatuses/0/state/waiting/message")
            .and_then(Value::as_str)
            .unwrap()
            .contains("failed to pull and unpack image \"registry.example.org/bad:1\""),
        "{p:#}"
    );
    lab.advance(Duration::from_secs(6));
    assert_eq!(waiting(&lab, "builder"), "ImagePullBackOff");
    let evs = event_reasons(&lab, "builder");
    assert!(
        evs.contains(&"Failed: Error: ErrImagePull".into()),
        "{evs:?}"
    );
    assert!(
        evs.contains(&"BackOff: Back-off pulling image \"registry.example.org/bad:1\"".into()),
        "{evs:?}"
    );
    // The next attempt comes 10 s after the first: ErrImagePull again.
    lab.advance(Duration::from_secs(4));
    assert_eq!(waiting(&lab, "builder"), "ErrImagePull");
    // Other images are not touched.
    assert_eq!(
        lab.get("pods", Some("default"), "hub-0").unwrap()["status"]["phase"],
        "Running"
    );
    lab.advance(Duration::from_secs(3 * 60));
    let p = lab.get("pods", Some("default"), "builder").unwrap();
    assert_eq!(p["status"]["phase"], "Running", "{p:#}");
}

#[test]
fn a_node_fault_without_a_scope_or_with_two_kinds_is_refused_with_its_line() {
    let err = Lab::from_scenario_str(
        "version: 1\nname: bad\nnode_faults:\n  - { condition: DiskPressure }\n",
    )
    .err()
    .expect("refused");
    assert!(
        err.to_string()
            .contains("exactly one of `node` and `selector`"),
        "{err}"
    );
    assert_eq!(err.line, 4);
    let err = Lab::from_scenario_str(
        "version: 1\nname: bad\nnode_faults:\n  - { node: n1, condition: DiskPresure }\n",
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("DiskPressure"), "{err}");
}

#[tokio::test]
#[ignore = "needs kubectl (scripts/test.sh installs it)"]
async fn kubectl_shows_node_conditions_a_node_without_ip_and_image_pull_back_off() {
    let lab = lab();
    lab.create(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "builder"},
        "spec": {"nodeName": "n1", "containers": [{"name": "build", "image": "registry.example.org/bad:1"}]}}))
        .unwrap();
    lab.advance(Duration::from_secs(60));
    let k = Kubectl::start(&lab).await;
    let out = k.ok(&["describe", "node", "n2"]).await;
    assert!(
        out.contains("DiskPressure") && out.contains("KubeletHasDiskPressure"),
        "{out}"
    );
    assert!(
        out.contains("node.kubernetes.io/disk-pressure:NoSchedule"),
        "{out}"
    );
    assert!(out.contains("NodeHasDiskPressure"), "{out}");
    let out = k
        .ok(&["get", "node", "n1", "-o", "jsonpath={.status.addresses}"])
        .await;
    assert!(!out.contains("InternalIP"), "{out}");
    let err = k.fails(&["logs", "hub-0"]).await;
    assert!(
        err.contains("no preferred addresses found; known addresses: [{Hostname n1}]"),
        "{err}"
    );
    let out = k.ok(&["get", "pods"]).await;
    assert!(
        out.lines()
            .any(|l| l.starts_with("builder") && l.contains("ImagePullBackOff")),
        "{out}"
    );
    let out = k
        .ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=builder",
        ])
        .await;
    assert!(out.contains("Back-off pulling image"), "{out}");
    k.stop().await;
}
