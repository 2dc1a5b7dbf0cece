//! Writes reconcile incrementally (each controller revisits only what a write touched);
//! a full pass over everything must then find nothing left to do. Each step below is a
//! write that sets several controllers off; after it, a full reconcile at the same
//! cluster time must not change a single object.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use runbook::lab::Lab;
use serde_json::json;

const OLD_HUB: &str = "hub-65d9f46698-dj4jb";
const LOST: &str = "gke-prod-a-ssd-pool-32-134a959a-n2sk";
const HEALTHY: &str = "gke-prod-a-ssd-pool-32-134a959a-1j33";

/// After an incremental reconcile, a full pass changes nothing.
fn assert_fixpoint(lab: &Lab, step: &str) {
    let before = lab.resource_version();
    let objects = |lab: &Lab| {
        [
            "pods",
            "nodes",
            "replicasets",
            "deployments",
            "volumeattachments",
            "events",
            "poddisruptionbudgets",
            "persistentvolumeclaims",
        ]
        .iter()
        .map(|r| (r.to_string(), lab.list(r, None)))
        .collect::<Vec<_>>()
    };
    let seen = objects(lab);
    lab.reconcile();
    if lab.resource_version() != before {
        let after = objects(lab);
        for ((r, a), (_, b)) in seen.iter().zip(&after) {
            if a != b {
                panic!(
                    "after {step}: a full pass still changed {r}:\nincremental: {:#}\nfull: {:#}",
                    json!(a),
                    json!(b)
                );
            }
        }
        panic!("after {step}: a full pass changed something (resourceVersion moved)");
    }
}

#[tokio::test]
async fn incremental_reconcile_leaves_nothing_for_a_full_pass() {
    let lab = Lab::seed();
    lab.set_speed(0.0);
    let client = lab.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "prod");
    let nodes: Api<Node> = Api::all(client.clone());
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "prod");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "prod");
    assert_fixpoint(&lab, "loading the seed");

    pods.delete(OLD_HUB, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert_fixpoint(&lab, "force-deleting the old hub");

    lab.advance(Duration::from_secs(6 * 60));
    assert_fixpoint(&lab, "the forced detach");

    nodes.cordon(HEALTHY).await.unwrap();
    assert_fixpoint(&lab, "cordon");

    deps.restart("binder").await.unwrap();
    assert_fixpoint(&lab, "rollout restart");

    let scale = Patch::Merge(json!({"spec": {"replicas": 3}}));
    deps.patch("binder", &PatchParams::default(), &scale)
        .await
        .unwrap();
    assert_fixpoint(&lab, "scaling up");

    nodes.uncordon(HEALTHY).await.unwrap();
    assert_fixpoint(&lab, "uncordon");

    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "loose", "labels": {"app": "loose"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    assert_fixpoint(&lab, "creating an unscheduled pod");

    let binder = lab
        .list("pods", Some("prod"))
        .into_iter()
        .find(|p| p["metadata"]["labels"]["component"] == "binder")
        .expect("a binder pod");
    let name = binder["metadata"]["name"].as_str().unwrap().to_string();
    let ev = Eviction {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some("prod".into()),
            ..Default::default()
        },
        delete_options: None,
    };
    let _ = pods
        .create_subresource::<_, kube::core::Status>("eviction", &name, &PostParams::default(), &ev)
        .await;
    assert_fixpoint(&lab, "an eviction");

    lab.advance(Duration::from_secs(40));
    assert_fixpoint(&lab, "the kubelet finishing the eviction");

    let oos = Patch::Strategic(json!({"spec": {"taints": [
        {"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute"}]}}));
    nodes
        .patch(LOST, &PatchParams::default(), &oos)
        .await
        .unwrap();
    assert_fixpoint(&lab, "the out-of-service taint");

    deps.delete("binder", &DeleteParams::default())
        .await
        .unwrap();
    assert_fixpoint(&lab, "deleting a deployment (garbage collection)");

    pvcs.delete("hub-db-dir", &DeleteParams::default())
        .await
        .unwrap();
    assert_fixpoint(&lab, "deleting the hub's claim");

    nodes
        .delete(HEALTHY, &DeleteParams::default())
        .await
        .unwrap();
    assert_fixpoint(&lab, "deleting a node (PodGC)");
}

/// Polls `cond` for up to 20 s of wall time.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let ok = tokio::time::timeout(Duration::from_secs(20), async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "{what} never happened: its timer did not fire");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_running_clock_timers_fire_without_any_write() {
    // No other timer runs in this lab (no blocked volume, no crash loop), so each
    // change below can only come from the timer it tests.
    let lab = Lab::from_scenario_str(
        "version: 1\nname: timers\nobjects:\n\
         - {apiVersion: v1, kind: Node, metadata: {name: up}}\n\
         - {apiVersion: v1, kind: Node, metadata: {name: down}}\n\
         - {apiVersion: v1, kind: Pod, metadata: {name: a, namespace: prod}, spec: {nodeName: up, containers: [{name: c, image: x}]}}\n\
         - {apiVersion: v1, kind: Pod, metadata: {name: b, namespace: prod}, spec: {nodeName: down, containers: [{name: c, image: x}]}}\n",
    )
    .unwrap();
    lab.set_speed(0.0);
    let pods: Api<Pod> = Api::namespaced(lab.client(), "prod");
    lab.lose_node("down");
    pods.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(
        lab.get("pods", Some("prod"), "a").is_some(),
        "a is Terminating"
    );
    // Two minutes of cluster time per wall second (the ticker wakes every 100 ms, 12 s
    // of cluster time); nothing is written from now on.
    lab.set_speed(120.0);
    eventually("the kubelet finishing a's graceful deletion", || {
        lab.get("pods", Some("prod"), "a").is_none()
    })
    .await;
    assert!(
        lab.get("pods", Some("prod"), "b")
            .is_some_and(|p| p["metadata"]["deletionTimestamp"].is_null()),
        "a went by its own timer, long before b's eviction timeout"
    );
    eventually(
        "the taint eviction of b after 300 s on the lost node",
        || {
            lab.get("pods", Some("prod"), "b")
                .is_some_and(|p| p["metadata"]["deletionTimestamp"].is_string())
        },
    )
    .await;
}
