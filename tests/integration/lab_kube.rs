//! The lab driven in-process through `kube::Client` (no socket): every API operation
//! the runbooks need, and the controllers that make the seed incident heal.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::api::storage::v1::VolumeAttachment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ObjectMeta};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use runbook::lab::Lab;
use serde_json::json;

const OLD_HUB: &str = "hub-65d9f46698-dj4jb";
const NEW_HUB: &str = "hub-65d9f46698-dmlcv";
const LOST: &str = "gke-prod-a-ssd-pool-32-134a959a-n2sk";
const HEALTHY: &str = "gke-prod-a-ssd-pool-32-134a959a-1j33";

/// The seed lab with its clock stopped: only `advance` moves cluster time, so
/// nothing races the wall clock on a busy machine.
fn seed() -> Lab {
    let lab = Lab::seed();
    lab.set_speed(0.0);
    lab
}

fn empty() -> Lab {
    let lab = Lab::empty();
    lab.set_speed(0.0);
    lab
}

fn api_code(e: kube::Error) -> (u16, String, serde_json::Value) {
    match e {
        kube::Error::Api(s) => (
            s.code,
            s.reason.clone(),
            serde_json::to_value(&s).unwrap_or_default(),
        ),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn lists_pods_on_a_node_with_a_field_selector_and_labels() {
    let lab = seed();
    let pods: Api<Pod> = Api::all(lab.client());
    let on_lost = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={LOST}")))
        .await
        .unwrap();
    let mut names: Vec<String> = on_lost.items.iter().map(|p| p.name_any()).collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            OLD_HUB.to_string(),
            "jupyter-binder-2dexamples-2dr-2dq3x9a1".to_string()
        ]
    );
    assert!(
        on_lost
            .metadata
            .resource_version
            .is_some_and(|rv| !rv.is_empty())
    );

    let hubs = Api::<Pod>::namespaced(lab.client(), "prod")
        .list(&ListParams::default().labels("component in (hub),app=jupyterhub"))
        .await
        .unwrap();
    assert_eq!(hubs.items.len(), 2);
    let none = Api::<Pod>::namespaced(lab.client(), "prod")
        .list(&ListParams::default().labels("component notin (hub,binder,singleuser-server)"))
        .await
        .unwrap();
    assert!(none.items.is_empty());
}

#[tokio::test]
async fn unsupported_field_selector_is_a_400_like_the_real_server() {
    let lab = seed();
    let vas: Api<VolumeAttachment> = Api::all(lab.client());
    let e = vas
        .list(&ListParams::default().fields(&format!("spec.nodeName={LOST}")))
        .await
        .unwrap_err();
    let (code, reason, status) = api_code(e);
    assert_eq!((code, reason.as_str()), (400, "BadRequest"));
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("field label not supported: spec.nodeName")
    );
}

#[tokio::test]
async fn limit_pages_with_continue_tokens() {
    let lab = seed();
    let pods: Api<Pod> = Api::all(lab.client());
    let first = pods.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let token = first.metadata.continue_.clone().expect("a continue token");
    let rest = pods
        .list(&ListParams::default().limit(100).continue_token(&token))
        .await
        .unwrap();
    let all = pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(first.items.len() + rest.items.len(), all.items.len());
}

#[tokio::test]
async fn create_fills_metadata_and_a_duplicate_is_already_exists() {
    let lab = empty();
    let pods: Api<Pod> = Api::namespaced(lab.client(), "default");
    let pod: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p1"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}),
    )
    .unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    let rv1: u64 = created.metadata.resource_version.unwrap().parse().unwrap();
    let (code, reason, _) = api_code(pods.create(&PostParams::default(), &pod).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));
    let pod2: Pod =
        serde_json::from_value(json!({"metadata": {"name": "p2"}, "spec": {"containers": []}}))
            .unwrap();
    let rv2: u64 = pods
        .create(&PostParams::default(), &pod2)
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1, "resourceVersion is monotonic");
    let (code, _, _) = api_code(pods.get("nope").await.unwrap_err());
    assert_eq!(code, 404);
}

#[tokio::test]
async fn patch_with_a_stale_resource_version_conflicts_and_dry_run_changes_nothing() {
    let lab = seed();
    let nodes: Api<Node> = Api::all(lab.client());
    let node = nodes.get(HEALTHY).await.unwrap();
    let rv = node.resource_version().unwrap();
    let ok = nodes
        .patch(
            HEALTHY,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": rv, "labels": {"a": "1"}}})),
        )
        .await
        .unwrap();
    assert_eq!(ok.labels().get("a").map(String::as_str), Some("1"));
    let stale = nodes
        .patch(
            HEALTHY,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": rv, "labels": {"a": "2"}}})),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(stale).1, "Conflict");

    let dry = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    let preview = nodes
        .patch(
            HEALTHY,
            &dry,
            &Patch::Strategic(json!({"spec": {"unschedulable": true}})),
        )
        .await
        .unwrap();
    assert_eq!(preview.spec.unwrap().unschedulable, Some(true));
    assert_eq!(
        lab.get("nodes", None, HEALTHY)
            .unwrap()
            .pointer("/spec/unschedulable"),
        None
    );

    let jp = json!([{"op": "add", "path": "/metadata/labels/b", "value": "2"}]);
    let patched = nodes
        .patch(
            HEALTHY,
            &PatchParams::default(),
            &Patch::<()>::Json(serde_json::from_value(jp).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(patched.labels().get("b").map(String::as_str), Some("2"));
}

#[tokio::test]
async fn cordon_sets_unschedulable_and_the_lifecycle_controller_adds_the_taint() {
    let lab = seed();
    let nodes: Api<Node> = Api::all(lab.client());
    nodes.cordon(HEALTHY).await.unwrap();
    let n = lab.get("nodes", None, HEALTHY).unwrap();
    assert_eq!(n["spec"]["unschedulable"], true);
    assert!(
        n["spec"]["taints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unschedulable")
    );
    nodes.uncordon(HEALTHY).await.unwrap();
    let n = lab.get("nodes", None, HEALTHY).unwrap();
    assert_ne!(n["spec"]["unschedulable"], true);
    assert!(n.pointer("/spec/taints").is_none());
}

#[tokio::test]
async fn lost_node_is_unknown_with_unreachable_taints() {
    let lab = seed();
    let node = Api::<Node>::all(lab.client()).get(LOST).await.unwrap();
    let ready = node
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "Unknown");
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    let taints: Vec<(String, String)> = node
        .spec
        .unwrap()
        .taints
        .unwrap()
        .into_iter()
        .map(|t| (t.key, t.effect))
        .collect();
    assert!(taints.contains(&("node.kubernetes.io/unreachable".into(), "NoExecute".into())));
    assert!(taints.contains(&("node.kubernetes.io/unreachable".into(), "NoSchedule".into())));
}

#[tokio::test]
async fn graceful_delete_on_a_lost_node_never_finishes_but_force_delete_does() {
    let lab = seed();
    let pods: Api<Pod> = Api::namespaced(lab.client(), "prod");
    let user = "jupyter-jupyterlab-2djupyterlab-2ddemo-2dz7w2ne";
    let before = pods.get(user).await.unwrap();
    assert_eq!(
        before.status.as_ref().unwrap().reason.as_deref(),
        Some("NodeLost")
    );
    let res = pods.delete(user, &DeleteParams::default()).await.unwrap();
    assert!(
        res.is_left(),
        "pods are returned by DELETE (ReturnDeletedObject)"
    );
    lab.advance(Duration::from_secs(24 * 3600));
    let still = pods.get(user).await.unwrap();
    assert!(
        still.metadata.deletion_timestamp.is_some(),
        "the pod is Terminating forever on a lost node"
    );

    let force = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    pods.delete(user, &force).await.unwrap();
    assert!(pods.get_opt(user).await.unwrap().is_none());
}

#[tokio::test]
async fn graceful_delete_on_a_healthy_node_is_finished_by_the_kubelet() {
    let lab = seed();
    let pods: Api<Pod> = Api::namespaced(lab.client(), "prod");
    let binder = pods
        .list(&ListParams::default().labels("component=binder"))
        .await
        .unwrap()
        .items
        .remove(0);
    let name = binder.name_any();
    pods.delete(&name, &DeleteParams::default()).await.unwrap();
    assert!(
        pods.get(&name)
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    lab.advance(Duration::from_secs(2));
    assert!(pods.get_opt(&name).await.unwrap().is_none());
    // The ReplicaSet replaced it on a Ready node.
    let now = pods
        .list(&ListParams::default().labels("component=binder"))
        .await
        .unwrap();
    assert_eq!(now.items.len(), 1);
    assert_eq!(
        now.items[0].status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );
}

#[tokio::test]
async fn eviction_blocked_by_a_pdb_is_429_with_a_disruption_budget_cause() {
    let lab = seed();
    let pods: Api<Pod> = Api::namespaced(lab.client(), "prod");
    let binder = pods
        .list(&ListParams::default().labels("component=binder"))
        .await
        .unwrap()
        .items
        .remove(0)
        .name_any();
    let ev = Eviction {
        metadata: ObjectMeta {
            name: Some(binder.clone()),
            namespace: Some("prod".into()),
            ..Default::default()
        },
        delete_options: Some(DeleteOptions {
            grace_period_seconds: Some(0),
            ..Default::default()
        }),
    };
    let e = pods
        .create_subresource::<_, kube::core::Status>(
            "eviction",
            &binder,
            &PostParams::default(),
            &ev,
        )
        .await
        .unwrap_err();
    let (code, reason, status) = api_code(e);
    assert_eq!((code, reason.as_str()), (429, "TooManyRequests"));
    assert_eq!(status["details"]["causes"][0]["reason"], "DisruptionBudget");
    assert!(pods.get_opt(&binder).await.unwrap().is_some());

    // A pod without a PDB is evicted (deleted with the eviction's grace period).
    let user = "jupyter-jupyterlab-2djupyterlab-2ddemo-2dz7w2ne";
    let ev = Eviction {
        metadata: ObjectMeta {
            name: Some(user.into()),
            namespace: Some("prod".into()),
            ..Default::default()
        },
        delete_options: Some(DeleteOptions {
            grace_period_seconds: Some(0),
            ..Default::default()
        }),
    };
    pods.create_subresource::<_, kube::core::Status>("eviction", user, &PostParams::default(), &ev)
        .await
        .unwrap();
    assert!(pods.get_opt(user).await.unwrap().is_none());
}

#[tokio::test]
async fn replacement_hub_starts_six_minutes_after_the_old_one_is_force_deleted() {
    let lab = seed();
    let pods: Api<Pod> = Api::namespaced(lab.client(), "prod");
    assert_eq!(lab.metric("launch_success_rate"), Some(0.0));
    let waiting = pods.get(NEW_HUB).await.unwrap();
    let state = &waiting.status.unwrap().container_statuses.unwrap()[0];
    assert_eq!(
        state
            .state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("ContainerCreating")
    );
    let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(lab.client(), "prod")
        .list(&ListParams::default().fields(&format!(
            "involvedObject.name={NEW_HUB},reason=FailedAttachVolume"
        )))
        .await
        .unwrap();
    assert!(
        events.items[0]
            .message
            .as_deref()
            .unwrap()
            .starts_with("Multi-Attach error for volume")
    );

    // Cordoning and plain deletes change nothing (the incident's 07:33-08:17).
    Api::<Node>::all(lab.client()).cordon(LOST).await.unwrap();
    pods.delete(OLD_HUB, &DeleteParams::default())
        .await
        .unwrap();
    lab.advance(Duration::from_secs(600));
    assert_eq!(lab.metric("launch_success_rate"), Some(0.0));

    pods.delete(
        OLD_HUB,
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    lab.advance(Duration::from_secs(5 * 60));
    assert_eq!(
        lab.list("volumeattachments", None).len(),
        1,
        "still attached before the 6-minute timer"
    );
    assert_eq!(lab.metric("launch_success_rate"), Some(0.0));
    lab.advance(Duration::from_secs(61));
    let hub = pods.get(NEW_HUB).await.unwrap();
    assert_eq!(hub.status.unwrap().phase.as_deref(), Some("Running"));
    assert_eq!(lab.metric("launch_success_rate"), Some(1.0));
    let vas = lab.list("volumeattachments", None);
    assert_eq!(vas.len(), 1);
    assert_eq!(
        vas[0]["spec"]["nodeName"],
        "gke-prod-a-ssd-pool-32-134a959a-x7k2"
    );
}

#[tokio::test]
async fn out_of_service_taint_force_deletes_pods_and_detaches_at_once() {
    let lab = seed();
    let nodes: Api<Node> = Api::all(lab.client());
    let node = nodes.get(LOST).await.unwrap();
    let mut taints = serde_json::to_value(node.spec.unwrap().taints.unwrap()).unwrap();
    taints.as_array_mut().unwrap().push(json!({"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute"}));
    nodes
        .patch(LOST, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"resourceVersion": node.metadata.resource_version}, "spec": {"taints": taints}})))
        .await
        .unwrap();
    assert!(lab.get("pods", Some("prod"), OLD_HUB).is_none());
    assert!(
        lab.get(
            "pods",
            Some("prod"),
            "jupyter-binder-2dexamples-2dr-2dq3x9a1"
        )
        .is_none()
    );
    assert_eq!(
        lab.get("pods", Some("prod"), NEW_HUB).unwrap()["status"]["phase"],
        "Running"
    );
    assert_eq!(lab.metric("launch_success_rate"), Some(1.0));
}

#[tokio::test]
async fn recovering_the_node_lets_the_kubelet_finish_and_the_hub_start() {
    let lab = seed();
    lab.recover_node(LOST);
    assert!(lab.get("pods", Some("prod"), OLD_HUB).is_none());
    assert_eq!(lab.metric("launch_success_rate"), Some(1.0));
}

#[tokio::test]
async fn await_deletion_through_a_watch_resolves_after_force_delete() {
    let lab = seed();
    let pods: Api<Pod> = Api::namespaced(lab.client(), "prod");
    let uid = pods.get(OLD_HUB).await.unwrap().uid().unwrap();
    let api = pods.clone();
    let waiter = tokio::spawn(async move {
        kube::runtime::wait::await_condition(
            api,
            OLD_HUB,
            kube::runtime::wait::conditions::is_deleted(&uid),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished(), "the pod still exists");
    pods.delete(
        OLD_HUB,
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the watch saw the deletion")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn rollout_restart_creates_a_new_replicaset_and_pod() {
    let lab = seed();
    let deps: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(lab.client(), "prod");
    deps.restart("binder").await.unwrap();
    lab.advance(Duration::from_secs(5));
    let rss = lab.list("replicasets", Some("prod"));
    let binder_rss: Vec<_> = rss
        .iter()
        .filter(|r| {
            r["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("binder-")
        })
        .collect();
    assert_eq!(binder_rss.len(), 2);
    let pods = lab.list("pods", Some("prod"));
    let binders: Vec<_> = pods
        .iter()
        .filter(|p| p["metadata"]["labels"]["component"] == "binder")
        .collect();
    assert_eq!(binders.len(), 1);
    assert!(
        binders[0]["metadata"]["annotations"]["kube.kubernetes.io/restartedAt"].is_string(),
        "{:#}",
        serde_json::json!(binders)
    );
}

#[tokio::test]
async fn discovery_advertises_the_eviction_subresource_and_groups() {
    let lab = seed();
    let d = kube::Discovery::new(lab.client()).run().await.unwrap();
    let groups: Vec<String> = d.groups().map(|g| g.name().to_string()).collect();
    for g in ["", "apps", "storage.k8s.io", "policy"] {
        assert!(groups.contains(&g.to_string()), "{g} in {groups:?}");
    }
    let v1 = lab.router();
    use tower::ServiceExt;
    let resp = v1
        .oneshot(
            http::Request::get("/api/v1")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let ev = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods/eviction")
        .unwrap();
    assert_eq!(
        (
            ev["group"].as_str(),
            ev["version"].as_str(),
            ev["kind"].as_str()
        ),
        (Some("policy"), Some("v1"), Some("Eviction"))
    );
}

#[tokio::test]
async fn every_request_is_logged_with_method_and_path() {
    let lab = seed();
    let pods: Api<Pod> = Api::namespaced(lab.client(), "prod");
    let _ = pods.get(OLD_HUB).await.unwrap();
    let log = lab.requests();
    assert!(log.iter().any(|r| {
        r.method == "GET"
            && r.path
                .starts_with(&format!("/api/v1/namespaces/prod/pods/{OLD_HUB}"))
    }));
}

#[tokio::test]
async fn put_status_changes_only_status_and_a_stale_put_conflicts() {
    let lab = seed();
    let pods: Api<Pod> = Api::namespaced(lab.client(), "prod");
    let mut pod = pods.get(NEW_HUB).await.unwrap();
    let mut changed = pod.clone();
    changed.spec.as_mut().unwrap().containers[0].image = Some("evil:1".into());
    changed.status.as_mut().unwrap().message = Some("set through /status".into());
    let after = pods
        .replace_status(NEW_HUB, &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_eq!(
        after.status.unwrap().message.as_deref(),
        Some("set through /status")
    );
    assert_eq!(
        after.spec.unwrap().containers[0].image.as_deref(),
        Some("jupyterhub/k8s-hub:v0.6"),
        "/status ignores spec"
    );

    // `pod` still carries the old resourceVersion: a PUT with it is a conflict.
    pod.metadata
        .labels
        .get_or_insert_default()
        .insert("x".into(), "y".into());
    let (code, reason, _) = api_code(
        pods.replace(NEW_HUB, &PostParams::default(), &pod)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
}

#[tokio::test]
async fn finalizers_hold_a_deleted_object_until_they_are_removed() {
    let lab = seed();
    let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(lab.client(), "prod");
    pvcs.patch(
        "hub-db-dir",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["kubernetes.io/pvc-protection"]}})),
    )
    .await
    .unwrap();
    pvcs.delete("hub-db-dir", &DeleteParams::default())
        .await
        .unwrap();
    let held = pvcs.get("hub-db-dir").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    pvcs.patch(
        "hub-db-dir",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(pvcs.get_opt("hub-db-dir").await.unwrap().is_none());
}

#[tokio::test]
async fn deleting_a_deployment_returns_a_status_and_garbage_collects_its_pods() {
    let lab = seed();
    let deps: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(lab.client(), "prod");
    let res = deps
        .delete("binder", &DeleteParams::background())
        .await
        .unwrap();
    assert!(
        res.is_right(),
        "kinds without ReturnDeletedObject answer a Success Status"
    );
    lab.advance(Duration::from_secs(5));
    assert!(lab.list("replicasets", Some("prod")).iter().all(|r| {
        !r["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("binder-")
    }));
    assert!(
        lab.list("pods", Some("prod"))
            .iter()
            .all(|p| p["metadata"]["labels"]["component"] != "binder")
    );
}

#[tokio::test]
async fn absurd_grace_periods_and_bad_bodies_are_answered_not_crashed_on() {
    use tower::ServiceExt;
    let lab = seed();
    let send = |method: &str, uri: &str, body: &str, ct: &str| {
        let req = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", ct)
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        let router = lab.router();
        async move { router.oneshot(req).await.unwrap().status().as_u16() }
    };
    let pod = format!("/api/v1/namespaces/prod/pods/{NEW_HUB}");
    assert_eq!(
        send(
            "DELETE",
            &format!("{pod}?gracePeriodSeconds=9223372036854775807"),
            "",
            "application/json"
        )
        .await,
        200
    );
    assert!(
        lab.get("pods", Some("prod"), NEW_HUB).unwrap()["metadata"]["deletionTimestamp"]
            .is_string()
    );
    assert_eq!(
        send("PATCH", &pod, "{not json", "application/merge-patch+json").await,
        400
    );
    // Server-side apply is served (issue 15); without a field manager it is a 422,
    // as a real API server answers.
    assert_eq!(
        send("PATCH", &pod, "{}", "application/apply-patch+yaml").await,
        422
    );
    assert_eq!(send("PATCH", &pod, "{}", "application/yaml").await, 415);
    assert_eq!(
        send(
            "PATCH",
            &pod,
            "[{\"op\":\"remove\",\"path\":\"/nope\"}]",
            "application/json-patch+json"
        )
        .await,
        422
    );
    assert_eq!(
        send(
            "POST",
            "/api/v1/namespaces/prod/pods",
            "[]",
            "application/json"
        )
        .await,
        400
    );
    assert_eq!(
        send(
            "GET",
            "/api/v1/pods?labelSelector=a%20in%20(b",
            "",
            "application/json"
        )
        .await,
        400
    );
    assert_eq!(
        send(
            "GET",
            "/api/v1/pods?watch=true&resourceVersion=1",
            "",
            "application/json"
        )
        .await,
        410
    );
    assert_eq!(
        send("GET", "/api/v1/nosuchthings", "", "application/json").await,
        404
    );
}

#[tokio::test]
async fn leases_are_served_with_optimistic_concurrency() {
    use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
    let lab = seed();
    let leases: Api<Lease> = Api::namespaced(lab.client(), "prod");
    let lease = |holder: &str| Lease {
        metadata: ObjectMeta {
            name: Some("runbook-lock".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(30),
            ..Default::default()
        }),
    };
    // Two runs create the same lease: the first holds it, the second is told it exists.
    let ana = leases
        .create(&PostParams::default(), &lease("ana"))
        .await
        .unwrap();
    let (code, reason, _) = api_code(
        leases
            .create(&PostParams::default(), &lease("bob"))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));
    // Both read it, then both try to take it over: only the first write wins.
    let mut take = leases.get("runbook-lock").await.unwrap();
    let mut also = take.clone();
    assert_eq!(take.resource_version(), ana.resource_version());
    take.spec.as_mut().unwrap().holder_identity = Some("bob".into());
    also.spec.as_mut().unwrap().holder_identity = Some("cy".into());
    leases
        .replace("runbook-lock", &PostParams::default(), &take)
        .await
        .unwrap();
    let (code, reason, _) = api_code(
        leases
            .replace("runbook-lock", &PostParams::default(), &also)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    let now = leases.get("runbook-lock").await.unwrap();
    assert_eq!(
        now.spec.unwrap().holder_identity.as_deref(),
        Some("bob"),
        "the loser changed nothing"
    );
    leases
        .delete("runbook-lock", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        api_code(leases.get("runbook-lock").await.unwrap_err()).0,
        404
    );
}
