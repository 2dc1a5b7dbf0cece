//! Node-pressure eviction (issue 16): while a node reports MemoryPressure (or disk or
//! PID pressure) its kubelet evicts pods one per 10 s, lowest rank first — pods over
//! their request of the starved resource, then lower priority — never a critical pod,
//! up to the fault's `evict` count. An evicted pod is Failed/Evicted with the kubelet's
//! event, and its controller's replacement lands on a node without pressure.

use std::time::Duration;

use runbook::lab::Lab;
use serde_json::{Value, json};

use crate::support::kubectl::Kubectl;

fn scenario(evict: &str) -> String {
    format!(
        r#"version: 1
name: memory-pressure
objects:
  - {{ apiVersion: v1, kind: Node, metadata: {{ name: n1 }}, status: {{ allocatable: {{ cpu: "8", memory: 32Gi, pods: "110" }} }} }}
  - apiVersion: v1
    kind: Pod
    metadata: {{ name: besteffort, namespace: default }}
    spec: {{ nodeName: n1, containers: [ {{ name: c, image: busybox }} ] }}
  - apiVersion: v1
    kind: Pod
    metadata: {{ name: within-request, namespace: default }}
    spec: {{ nodeName: n1, containers: [ {{ name: c, image: busybox, resources: {{ requests: {{ memory: 1Gi }} }} }} ] }}
  - apiVersion: v1
    kind: Pod
    metadata: {{ name: important, namespace: default }}
    spec: {{ nodeName: n1, priority: 1000, containers: [ {{ name: c, image: busybox }} ] }}
  - apiVersion: v1
    kind: Pod
    metadata: {{ name: kube-proxy-n1, namespace: kube-system }}
    spec: {{ nodeName: n1, priorityClassName: system-node-critical, containers: [ {{ name: c, image: kube-proxy }} ] }}
node_faults:
  - {{ node: n1, at: 30s, condition: MemoryPressure{evict} }}
"#
    )
}

fn lab(evict: &str) -> Lab {
    let lab = Lab::from_scenario_str(&scenario(evict)).unwrap_or_else(|e| panic!("scenario: {e}"));
    lab.set_speed(0.0);
    lab
}

fn phase(lab: &Lab, ns: &str, name: &str) -> String {
    let p = lab
        .get("pods", Some(ns), name)
        .unwrap_or_else(|| panic!("pod {name}"));
    let reason = p
        .pointer("/status/reason")
        .and_then(Value::as_str)
        .unwrap_or("");
    format!(
        "{}{}",
        p["status"]["phase"].as_str().unwrap_or(""),
        if reason.is_empty() {
            String::new()
        } else {
            format!("/{reason}")
        }
    )
}

fn evicted(lab: &Lab) -> Vec<String> {
    lab.list("events", None)
        .into_iter()
        .filter(|e| e["reason"] == "Evicted")
        .map(|e| e["involvedObject"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_kubelet_evicts_one_pod_per_interval_lowest_rank_first_up_to_the_faults_count() {
    let lab = lab(", evict: 2");
    lab.advance(Duration::from_secs(20));
    assert_eq!(
        phase(&lab, "default", "besteffort"),
        "Running",
        "no pressure yet"
    );
    lab.advance(Duration::from_secs(10));
    // At 30 s the pressure begins: the pod over its (absent) memory request with the
    // lowest priority goes first.
    assert_eq!(phase(&lab, "default", "besteffort"), "Failed/Evicted");
    assert_eq!(phase(&lab, "default", "important"), "Running");
    assert_eq!(evicted(&lab), ["besteffort"]);
    lab.advance(Duration::from_secs(10));
    assert_eq!(
        phase(&lab, "default", "important"),
        "Failed/Evicted",
        "then the higher priority one over its request"
    );
    assert_eq!(phase(&lab, "default", "within-request"), "Running");
    lab.advance(Duration::from_secs(600));
    // Two evictions were enough to get under the threshold: the others keep running.
    assert_eq!(evicted(&lab), ["besteffort", "important"]);
    assert_eq!(phase(&lab, "default", "within-request"), "Running");
    assert_eq!(phase(&lab, "kube-system", "kube-proxy-n1"), "Running");

    let pod = lab.get("pods", Some("default"), "besteffort").unwrap();
    assert_eq!(
        pod["status"]["message"],
        "The node was low on resource: memory. "
    );
    let target = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "DisruptionTarget")
        .cloned()
        .expect("a DisruptionTarget condition");
    assert_eq!(target["reason"], "TerminationByKubelet");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        137
    );
    let node_events: Vec<String> = lab
        .list("events", None)
        .into_iter()
        .filter(|e| e["involvedObject"]["name"] == "n1")
        .map(|e| {
            format!(
                "{}: {}",
                e["reason"].as_str().unwrap(),
                e["message"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        node_events.contains(&"EvictionThresholdMet: Attempting to reclaim memory".to_string()),
        "{node_events:?}"
    );
}

#[test]
fn without_a_count_every_pod_but_the_critical_one_is_evicted_and_catching_up_after_a_jump() {
    let lab = lab("");
    // One jump of ten minutes: the kubelet's evictions in between all happened.
    lab.advance(Duration::from_secs(600));
    assert_eq!(evicted(&lab), ["besteffort", "important", "within-request"]);
    assert_eq!(
        phase(&lab, "kube-system", "kube-proxy-n1"),
        "Running",
        "a critical pod is never evicted"
    );
}

#[test]
fn an_evicted_replica_is_replaced_on_a_node_without_pressure() {
    let lab = lab(", evict: 1");
    lab.create(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"priority": -10, "containers": [{"name": "web", "image": "nginx"}]}}}}))
        .unwrap();
    lab.advance(Duration::from_secs(5));
    let web = |lab: &Lab| -> Vec<(String, String, String)> {
        lab.list("pods", Some("default"))
            .into_iter()
            .filter(|p| p["metadata"]["labels"]["app"] == "web")
            .map(|p| {
                (
                    p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                    p["status"]["phase"].as_str().unwrap_or("").to_string(),
                    p["status"]["reason"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    assert_eq!(web(&lab), [("n1".into(), "Running".into(), String::new())]);
    lab.create(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"},
        "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"}}}),
    )
    .unwrap();
    lab.advance(Duration::from_secs(40));
    let mut pods = web(&lab);
    pods.sort();
    assert_eq!(
        pods,
        [
            ("n1".into(), "Failed".into(), "Evicted".into()),
            ("n2".into(), "Running".into(), String::new())
        ],
        "the lowest priority pod went first; the memory-pressure taint kept its replacement off n1"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs kubectl 1.37 (scripts/test.sh runs it)"]
async fn kubectl_shows_the_evicted_pod_and_the_kubelets_event() {
    let lab = lab(", evict: 1");
    lab.advance(Duration::from_secs(31));
    let k = Kubectl::start(&lab).await;
    let (ok, out, err) = k.run(&["get", "pods"]).await;
    assert!(ok, "{err}");
    // kubectl prints `status.reason` (Evicted) unless a container's terminated reason
    // overrides it, as the kubelet's killed container (`Error`, exit 137) does: the
    // STATUS of evicted pods on current clusters (kubernetes#105467).
    assert!(
        out.lines()
            .any(|l| l.starts_with("besteffort") && l.contains("0/1") && l.contains("Error")),
        "{out}"
    );
    let (ok, out, err) = k
        .run(&["get", "events", "--field-selector", "reason=Evicted"])
        .await;
    assert!(ok, "{err}");
    assert!(
        out.contains("The node was low on resource: memory."),
        "{out}"
    );
    let (ok, out, err) = k.run(&["describe", "pod", "besteffort"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("Failed") && out.contains("Evicted"), "{out}");
}

#[test]
fn evict_on_a_fault_that_is_not_a_pressure_condition_is_refused_with_its_line() {
    let err = Lab::from_scenario_str(
        "version: 1\nname: bad\nnode_faults:\n  - { node: n1, condition: NetworkUnavailable, evict: 2 }\n",
    )
    .err()
    .expect("refused");
    assert!(
        err.to_string()
            .contains("`evict` goes with a pressure condition"),
        "{err}"
    );
    assert_eq!(err.line, 4);
}
