//! The kube provider's evict, patch, scale, rollout restart, drain and wait against
//! the in-process lab, including the failure paths the lab produces by itself
//! (PDB-blocked eviction = 429, stale resourceVersion = 409, a pod on a lost node
//! that never goes away = a wait that times out).

use crate::support::kube as support;

use std::time::{Duration, Instant};

use runbook::providers::{ExecCtx, OpError};
use serde_json::json;
use support::*;

// ---- evict ----------------------------------------------------------------------

/// Two healthy nodes; `web` pods covered by a PDB that allows no disruption, a
/// `batch` pod with no PDB, a DaemonSet pod, a bare pod and one with an emptyDir.
const DRAIN: &str = r#"
version: 1
name: drain
start: "2026-01-01T00:00:00Z"
objects:
  - { apiVersion: v1, kind: Node, metadata: { name: n1 }, status: { conditions: [ { type: Ready, status: "True" } ] } }
  - { apiVersion: v1, kind: Node, metadata: { name: n2 }, status: { conditions: [ { type: Ready, status: "True" } ] } }
  - apiVersion: apps/v1
    kind: ReplicaSet
    metadata: { name: web, namespace: prod, labels: { app: web } }
    spec: { replicas: 1, selector: { matchLabels: { app: web } }, template: { metadata: { labels: { app: web } }, spec: { containers: [ { name: web, image: web } ] } } }
  - apiVersion: policy/v1
    kind: PodDisruptionBudget
    metadata: { name: web, namespace: prod }
    spec: { minAvailable: 1, selector: { matchLabels: { app: web } } }
  - apiVersion: apps/v1
    kind: DaemonSet
    metadata: { name: agent, namespace: prod }
    spec: { selector: { matchLabels: { app: agent } }, template: { metadata: { labels: { app: agent } }, spec: { containers: [ { name: agent, image: agent } ] } } }
  - apiVersion: v1
    kind: Pod
    metadata: { name: web-1, namespace: prod, labels: { app: web }, ownerReferences: [ { apiVersion: apps/v1, kind: ReplicaSet, name: web, controller: true } ] }
    spec: { nodeName: n1, containers: [ { name: web, image: web } ] }
    status: { phase: Running, conditions: [ { type: Ready, status: "True" } ] }
  - apiVersion: v1
    kind: Pod
    metadata: { name: agent-1, namespace: prod, labels: { app: agent }, ownerReferences: [ { apiVersion: apps/v1, kind: DaemonSet, name: agent, controller: true } ] }
    spec: { nodeName: n1, containers: [ { name: agent, image: agent } ] }
    status: { phase: Running }
  - apiVersion: v1
    kind: Pod
    metadata: { name: bare-1, namespace: prod, labels: { app: bare } }
    spec: { nodeName: n1, containers: [ { name: bare, image: bare } ] }
    status: { phase: Running }
  - apiVersion: v1
    kind: Pod
    metadata: { name: scratch-1, namespace: prod, labels: { app: scratch } }
    spec: { nodeName: n1, containers: [ { name: s, image: s } ], volumes: [ { name: tmp, emptyDir: {} } ] }
    status: { phase: Running }
  - apiVersion: v1
    kind: Pod
    metadata: { name: done-1, namespace: prod, labels: { app: done } }
    spec: { nodeName: n1, containers: [ { name: d, image: d } ] }
    status: { phase: Succeeded }
"#;

#[tokio::test]
async fn eviction_blocked_by_a_pdb_is_retried_boundedly_then_fails_like_kubectl() {
    let lab = scenario(DRAIN);
    let p = provider(&lab);
    let started = Instant::now();
    let ran = run(&p, "{evict: web-1, namespace: prod}").await;
    let (msg, status) = ran.err();
    assert_eq!(
        msg,
        "Error from server (TooManyRequests): Cannot evict pod as it would violate the pod's disruption budget."
    );
    // fast_retry() allows 3 attempts: each one journaled.
    assert_eq!(ran.trace(), ["POST 429", "POST 429", "POST 429"]);
    assert_eq!(
        ran.calls[0].path,
        "/api/v1/namespaces/prod/pods/web-1/eviction"
    );
    let status = status.unwrap();
    assert_eq!(status["already_gone"], json!([]));
    assert_eq!(status["failed"][0]["status"]["code"], 429);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(lab.get("pods", Some("prod"), "web-1").is_some());
}

#[tokio::test]
async fn eviction_sends_a_policy_v1_body_and_removes_the_pod() {
    let lab = scenario(DRAIN);
    let p = provider(&lab);
    // Only a correct body carries the grace period: kube 5's Api::evict would not.
    let ran = run(&p, "{evict: bare-1, namespace: prod, grace_period: 0}").await;
    assert_eq!(ran.ok()["evicted"], json!(["bare-1"]));
    assert_eq!(ran.trace(), ["POST 201"]);
    assert!(
        lab.get("pods", Some("prod"), "bare-1").is_none(),
        "grace 0 removes it now"
    );
    let again = run(&p, "{evict: bare-1, namespace: prod}").await;
    assert_eq!(again.ok()["already_gone"], json!(["bare-1"]));
}

// ---- patch, scale, rollout restart ---------------------------------------------

#[tokio::test]
async fn merge_strategic_and_json_patches_return_the_patched_object() {
    let lab = scenario(DRAIN);
    let p = provider(&lab);
    let ran = run(&p, "{patch: nodes, name: n2, patch_type: merge, body: {metadata: {labels: {incident: inc-42}}}}").await;
    assert_eq!(ran.ok()["metadata"]["labels"]["incident"], "inc-42");
    assert_eq!(
        lab.get("nodes", None, "n2").unwrap()["metadata"]["labels"]["incident"],
        "inc-42"
    );

    let ran = run(
        &p,
        "{patch: pods, name: bare-1, namespace: prod, body: {metadata: {annotations: {note: x}}}}",
    )
    .await;
    assert_eq!(ran.ok()["metadata"]["annotations"]["note"], "x");

    let ran = run(
        &p,
        r#"{patch: pods, name: bare-1, namespace: prod, patch_type: json, body: [{op: add, path: /metadata/labels/tier, value: gold}]}"#,
    )
    .await;
    assert_eq!(ran.ok()["metadata"]["labels"]["tier"], "gold");
}

#[tokio::test]
async fn a_patch_with_a_stale_resource_version_fails_with_a_conflict() {
    let lab = scenario(DRAIN);
    let p = provider(&lab);
    let ran = run(&p, r#"{patch: nodes, name: n2, patch_type: merge, body: {metadata: {resourceVersion: "1", labels: {a: b}}}}"#).await;
    let (msg, status) = ran.err();
    assert!(msg.starts_with("Error from server (Conflict): "), "{msg}");
    assert!(msg.contains(r#"nodes "n2""#), "{msg}");
    assert_eq!(status.unwrap()["code"], 409);
    assert_eq!(
        ran.trace(),
        ["PATCH 409"],
        "a conflict is not retried blindly"
    );
}

#[tokio::test]
async fn a_patch_of_a_missing_object_fails_with_not_found() {
    let lab = scenario(DRAIN);
    let p = provider(&lab);
    let ran = run(
        &p,
        "{patch: nodes, name: nope, patch_type: merge, body: {metadata: {labels: {a: b}}}}",
    )
    .await;
    assert_eq!(
        ran.err().0,
        r#"Error from server (NotFound): nodes "nope" not found"#
    );
}

#[tokio::test]
async fn scale_sets_replicas_and_rollout_restart_stamps_the_template() {
    let lab = seed();
    let p = provider(&lab);
    let ran = run(
        &p,
        "{scale: deployments, name: binder, namespace: prod, replicas: 3}",
    )
    .await;
    assert_eq!(ran.ok()["spec"]["replicas"], 3);
    assert_eq!(
        lab.get("deployments.apps", Some("prod"), "binder").unwrap()["spec"]["replicas"],
        3
    );

    let ran = run(
        &p,
        "{rollout_restart: deployments, name: binder, namespace: prod}",
    )
    .await;
    let stamp = ran.ok()["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
        .as_str()
        .expect("restartedAt is set")
        .to_string();
    assert!(
        chrono::DateTime::parse_from_rfc3339(&stamp).is_ok(),
        "{stamp}"
    );
    assert_eq!(
        ran.calls[0].path,
        "/apis/apps/v1/namespaces/prod/deployments/binder"
    );
}

// ---- drain ----------------------------------------------------------------------

#[tokio::test]
async fn drain_refuses_what_kubectl_refuses_and_leaves_the_node_cordoned() {
    let lab = scenario(DRAIN);
    let p = provider(&lab);
    let ran = run(&p, "{drain: n1}").await;
    let (msg, result) = ran.err();
    assert!(
        msg.starts_with(r#"error: unable to drain node "n1" due to error: ["#),
        "{msg}"
    );
    assert!(
        msg.contains(
            "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): prod/agent-1"
        ),
        "{msg}"
    );
    assert!(msg.contains("cannot delete Pods with local storage (use --delete-emptydir-data to override): prod/scratch-1"), "{msg}");
    assert!(
        msg.contains(
            "cannot delete Pods that declare no controller (use --force to override): prod/bare-1"
        ),
        "{msg}"
    );
    assert_eq!(result.unwrap()["errors"].as_array().unwrap().len(), 3);
    assert_eq!(
        lab.get("nodes", None, "n1").unwrap()["spec"]["unschedulable"],
        true
    );
    // Nothing was evicted.
    assert!(ran.calls.iter().all(|c| c.method != "POST"));
    assert!(lab.get("pods", Some("prod"), "bare-1").is_some());
}

#[tokio::test]
async fn drain_with_kubectls_flags_evicts_and_skips_daemonset_pods() {
    let lab = scenario(DRAIN);
    // The PDB would block web-1 forever; drop it for this test.
    let p = provider(&lab);
    run(&p, "{delete: pdb, name: web, namespace: prod}")
        .await
        .ok();
    let ran = run(
        &p,
        "{drain: n1, ignore_daemonsets: true, delete_emptydir_data: true, force: true, grace_period: 0}",
    )
    .await;
    let r = ran.ok();
    assert_eq!(r["method"], "eviction");
    assert_eq!(
        strs(&r["evicted"]),
        ["prod/bare-1", "prod/done-1", "prod/scratch-1", "prod/web-1"]
    );
    assert_eq!(
        r["skipped"],
        json!([{"pod": "prod/agent-1", "reason": "DaemonSet-managed"}])
    );
    assert_eq!(r["warnings"].as_array().unwrap().len(), 2, "{r}");
    for pod in ["bare-1", "done-1", "scratch-1", "web-1"] {
        assert!(
            lab.get("pods", Some("prod"), pod).is_none(),
            "{pod} evicted"
        );
    }
    assert!(lab.get("pods", Some("prod"), "agent-1").is_some());
    // cordon (GET+PATCH), list, 4 evictions, then the wait's list.
    let methods: Vec<&str> = ran.calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods[..3], ["GET", "PATCH", "GET"]);
    assert_eq!(methods.iter().filter(|m| **m == "POST").count(), 4);
    assert_eq!(
        ran.calls[2].path,
        "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1&limit=500"
    );
}

#[tokio::test]
async fn drain_with_disable_eviction_deletes_past_the_pdb() {
    let lab = scenario(DRAIN);
    let p = provider(&lab);
    let ran = run(
        &p,
        "{drain: n1, ignore_daemonsets: true, delete_emptydir_data: true, force: true, grace_period: 0, disable_eviction: true, pod_selector: app=web}",
    )
    .await;
    let r = ran.ok();
    assert_eq!(r["method"], "delete");
    assert_eq!(strs(&r["evicted"]), ["prod/web-1"]);
    assert!(
        ran.calls
            .iter()
            .any(|c| c.method == "DELETE" && c.status == 200)
    );
    assert!(lab.get("pods", Some("prod"), "web-1").is_none());
}

#[tokio::test]
async fn drain_of_a_lost_node_with_a_grace_period_times_out_like_kubectl() {
    let lab = seed();
    let p = provider(&lab);
    let mut cx = ExecCtx::new(json!({}));
    cx.timeout = Some(Duration::from_millis(400));
    let ran = run_with(
        &p,
        &format!("{{drain: {LOST}, ignore_daemonsets: true, delete_emptydir_data: true, force: true, disable_eviction: true}}"),
        cx,
    )
    .await;
    assert!(
        matches!(ran.result, Err(OpError::TimedOut(_))),
        "{:?}",
        ran.result
    );
    // The calls made before the deadline are still reported.
    assert!(ran.calls.iter().any(|c| c.method == "DELETE"));
}

// ---- wait -----------------------------------------------------------------------

#[tokio::test]
async fn wait_for_delete_of_a_pod_on_a_lost_node_times_out() {
    let lab = seed();
    let p = provider(&lab);
    let mut cx = ExecCtx::new(json!({}));
    cx.timeout = Some(Duration::from_millis(300));
    let started = Instant::now();
    let ran = run_with(
        &p,
        &format!("{{wait: pods, name: {OLD_HUB}, namespace: prod, for: delete}}"),
        cx,
    )
    .await;
    assert!(
        matches!(ran.result, Err(OpError::TimedOut(d)) if d == Duration::from_millis(300)),
        "{:?}",
        ran.result
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(ran.calls.len() >= 2, "it polled: {:?}", ran.trace());
}

#[tokio::test]
async fn wait_without_a_step_timeout_is_bounded_by_the_default() {
    let lab = seed();
    let p = provider(&lab).with_default_wait(Duration::from_millis(200));
    let ran = run(
        &p,
        &format!("{{wait: pods, name: {OLD_HUB}, namespace: prod, for: delete}}"),
    )
    .await;
    assert!(matches!(ran.result, Err(OpError::TimedOut(_))));
}

#[tokio::test]
async fn wait_for_delete_ends_when_the_pod_is_force_deleted() {
    let lab = seed();
    let p = provider(&lab);
    let deleter = {
        let p = p.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            run(&p, &format!("{{delete: pods, name: {OLD_HUB}, namespace: prod, grace_period: 0, force: true}}")).await.ok().clone()
        })
    };
    let mut cx = ExecCtx::new(json!({}));
    cx.timeout = Some(Duration::from_secs(10));
    let ran = run_with(
        &p,
        &format!("{{wait: pods, name: {OLD_HUB}, namespace: prod, for: delete}}"),
        cx,
    )
    .await;
    assert_eq!(ran.ok()["deleted"], json!([OLD_HUB]));
    assert_eq!(ran.calls.last().unwrap().status, 404);
    deleter.await.unwrap();
}

#[tokio::test]
async fn wait_for_a_condition_or_a_cel_expression() {
    let lab = scenario(DRAIN);
    let p = provider(&lab);
    let ran = run(
        &p,
        "{wait: pods, name: web-1, namespace: prod, for: condition=Ready}",
    )
    .await;
    assert_eq!(ran.ok()["metadata"]["name"], "web-1");
    let ran = run(&p, r#"{wait: pods, namespace: prod, selector: app=done, for: "pod.status.phase == 'Succeeded'"}"#).await;
    assert_eq!(names(ran.ok()), ["done-1"]);

    // Not met: bounded by the timeout.
    let mut cx = ExecCtx::new(json!({}));
    cx.timeout = Some(Duration::from_millis(150));
    let ran = run_with(
        &p,
        "{wait: pods, name: bare-1, namespace: prod, for: condition=Ready}",
        cx,
    )
    .await;
    assert!(matches!(ran.result, Err(OpError::TimedOut(_))));
}

#[tokio::test]
async fn cancelling_stops_a_wait_promptly() {
    let lab = seed();
    let p = provider(&lab);
    let cx = ExecCtx::new(json!({}));
    let cancel = cx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let ran = run_with(
        &p,
        &format!("{{wait: pods, name: {OLD_HUB}, namespace: prod, for: delete}}"),
        cx,
    )
    .await;
    assert!(
        matches!(ran.result, Err(OpError::Cancelled)),
        "{:?}",
        ran.result
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

const DRAIN_N1: &str = "{drain: n1, ignore_daemonsets: true, delete_emptydir_data: true, force: true, grace_period: 0}";

/// The eviction calls of one pod, as `METHOD status`.
fn evictions_of(ran: &Ran, pod: &str) -> Vec<String> {
    ran.calls
        .iter()
        .filter(|c| c.path.ends_with(&format!("/pods/{pod}/eviction")))
        .map(|c| format!("{} {}", c.method, c.status))
        .collect()
}

#[tokio::test]
async fn drain_blocked_by_a_pdb_retries_until_the_step_timeout_then_names_pod_and_budget() {
    let lab = scenario(DRAIN);
    let p = provider(&lab);
    let mut cx = ExecCtx::new(json!({}));
    cx.timeout = Some(Duration::from_millis(600));
    let started = Instant::now();
    let ran = run_with(&p, DRAIN_N1, cx).await;
    let (msg, result) = ran.err();
    assert!(
        msg.starts_with(
            r#"error when evicting pods on node "n1": error when evicting pods/"web-1" -n "prod": global timeout reached: 600ms; refused "#
        ),
        "{msg}"
    );
    assert!(
        msg.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{msg}"
    );
    assert!(
        msg.contains("The disruption budget web needs 1 healthy pods and has 1 currently"),
        "{msg}"
    );
    // It kept trying on the provider's cadence (50 ms here, 5 s by default), one
    // journaled POST per attempt, until the step's timeout, and not past it.
    let web = evictions_of(&ran, "web-1");
    assert!(web.len() > 3, "{web:?}");
    assert!(web.iter().all(|c| c == "POST 429"), "{web:?}");
    assert!(
        web.len() < 20,
        "one POST per 50 ms, not a busy loop: {web:?}"
    );
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(600), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let result = result.unwrap();
    assert_eq!(result["failed"][0]["name"], "prod/web-1");
    assert_eq!(result["failed"][0]["status"]["code"], 429);
    assert_eq!(
        strs(&result["evicted"]),
        ["prod/bare-1", "prod/done-1", "prod/scratch-1"]
    );
    assert!(lab.get("pods", Some("prod"), "web-1").is_some());
}

/// Start draining n1 (20 s timeout) in the background and return once the budget has
/// refused web-1's eviction at least once.
async fn drain_held_by_the_budget(lab: &runbook::lab::Lab) -> tokio::task::JoinHandle<Ran> {
    let p = provider(lab);
    let drain = tokio::spawn(async move {
        let mut cx = ExecCtx::new(json!({}));
        cx.timeout = Some(Duration::from_secs(20));
        run_with(&p, DRAIN_N1, cx).await
    });
    until_refused(lab, "web-1").await;
    drain
}

/// Wait until the lab has refused `pod`'s eviction at least once.
async fn until_refused(lab: &runbook::lab::Lab, pod: &str) {
    let path = format!("/pods/{pod}/eviction");
    for _ in 0..500 {
        if lab
            .requests()
            .iter()
            .any(|r| r.path.ends_with(&path) && r.status == 429)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the eviction of {pod} was never refused");
}

#[tokio::test]
async fn drain_blocked_by_a_pdb_succeeds_once_the_budget_is_relaxed() {
    let lab = scenario(DRAIN);
    let drain = drain_held_by_the_budget(&lab).await;
    // Someone lowers the budget mid-drain: the next attempt gets through.
    let pdbs: kube::Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
        kube::Api::namespaced(lab.client(), "prod");
    pdbs.patch(
        "web",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"minAvailable": 0}})),
    )
    .await
    .unwrap();
    let ran = drain.await.unwrap();
    assert_eq!(
        strs(&ran.ok()["evicted"]),
        ["prod/bare-1", "prod/done-1", "prod/scratch-1", "prod/web-1"]
    );
    let web = evictions_of(&ran, "web-1");
    assert!(web.len() >= 2, "{web:?}");
    assert_eq!(web.last().map(String::as_str), Some("POST 201"), "{web:?}");
    assert!(web[..web.len() - 1].iter().all(|c| c == "POST 429"));
    let refused = web.len() - 1;
    assert_eq!(
        strs(&ran.ok()["warnings"]).last(),
        Some(&format!(
            "eviction of prod/web-1 refused by its disruption budget {refused} time(s), retried every 50ms until allowed"
        ))
    );
    assert!(lab.get("pods", Some("prod"), "web-1").is_none());
}

#[tokio::test]
async fn drain_blocked_by_a_pdb_succeeds_once_another_pod_of_the_set_is_ready() {
    let lab = scenario(DRAIN);
    let drain = drain_held_by_the_budget(&lab).await;
    // A second web pod on n2 becomes ready: the budget (minAvailable 1) allows one.
    lab.create(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-2", "namespace": "prod", "labels": {"app": "web"}},
        "spec": {"nodeName": "n2", "containers": [{"name": "web", "image": "web"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}))
        .unwrap();
    let ran = drain.await.unwrap();
    assert!(strs(&ran.ok()["evicted"]).contains(&"prod/web-1".to_string()));
    assert!(evictions_of(&ran, "web-1").len() >= 2);
    assert!(lab.get("pods", Some("prod"), "web-2").is_some());
}

#[tokio::test]
async fn cancelling_a_drain_blocked_by_a_pdb_stops_it_promptly() {
    let lab = scenario(DRAIN);
    let p = provider(&lab).with_eviction_retry(Duration::from_secs(5));
    let cx = ExecCtx::new(json!({}));
    let cancel = cx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let ran = run_with(&p, DRAIN_N1, cx).await;
    assert!(
        matches!(ran.result, Err(OpError::Cancelled)),
        "{:?}",
        ran.result
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(evictions_of(&ran, "web-1"), ["POST 429"]);
}
