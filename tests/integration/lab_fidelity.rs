//! The lab models the failures clusters really have (issue 16): capacity-aware
//! scheduling, ResourceQuota admission, a cluster autoscaler, scenario logs and faults
//! with the kubelet's timing. Each test drives the lab through its HTTP API (kube's
//! client over the lab's router) or, where what a person reads matters, a real kubectl.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use runbook::lab::Lab;
use serde_json::{Value, json};

use crate::support::kubectl::Kubectl;

/// A lab from scenario text with its clock stopped: only `advance` moves time.
fn lab(yaml: &str) -> Lab {
    let lab = Lab::from_scenario_str(yaml).unwrap_or_else(|e| panic!("scenario: {e}"));
    lab.set_speed(0.0);
    lab
}

/// `n` nodes named `node-0…` with the given allocatable (all Ready).
fn nodes(n: usize, cpu: &str, memory: &str, pods: u32) -> String {
    (0..n)
        .map(|i| {
            format!(
                "  - apiVersion: v1\n    kind: Node\n    metadata: {{ name: node-{i}, labels: {{ pool: general }} }}\n    status: {{ allocatable: {{ cpu: \"{cpu}\", memory: {memory}, pods: \"{pods}\" }}, capacity: {{ cpu: \"{cpu}\", memory: {memory}, pods: \"{pods}\" }} }}\n"
            )
        })
        .collect()
}

fn pod(name: &str, cpu: &str, memory: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx",
            "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}
    }))
    .expect("a valid pod")
}

async fn events_about(lab: &Lab, name: &str) -> Vec<Event> {
    let events: Api<Event> = Api::all(lab.client());
    events
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .expect("list events")
        .items
}

fn messages(evs: &[Event], reason: &str) -> Vec<String> {
    evs.iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.message.clone())
        .collect()
}

// ---------------------------------------------------------------- 1. scheduling

#[tokio::test]
async fn a_pod_too_big_for_every_node_stays_pending_with_the_schedulers_words() {
    let lab = lab(&format!(
        "version: 1\nname: full\nobjects:\n{}",
        nodes(8, "4", "4Gi", 110)
    ));
    let pods: Api<Pod> = Api::namespaced(lab.client(), "default");
    pods.create(&PostParams::default(), &pod("big", "1", "8Gi"))
        .await
        .unwrap();
    lab.advance(Duration::from_secs(60));
    let p = pods.get("big").await.unwrap();
    let status = p.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert!(p.spec.unwrap().node_name.is_none());
    let cond = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "PodScheduled")
        .unwrap();
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_deref()),
        ("False", Some("Unschedulable"))
    );
    let msgs = messages(&events_about(&lab, "big").await, "FailedScheduling");
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(
        msgs[0].starts_with("0/8 nodes are available: 8 Insufficient memory. preemption:"),
        "{}",
        msgs[0]
    );
}

#[tokio::test]
async fn pods_fill_nodes_by_requests_and_the_rest_wait_until_room_is_freed() {
    let lab = lab(&format!(
        "version: 1\nname: fill\nobjects:\n{}",
        nodes(2, "2", "8Gi", 110)
    ));
    let pods: Api<Pod> = Api::namespaced(lab.client(), "default");
    for i in 0..5 {
        pods.create(&PostParams::default(), &pod(&format!("w{i}"), "1", "1Gi"))
            .await
            .unwrap();
    }
    let all = pods.list(&ListParams::default()).await.unwrap().items;
    let bound: Vec<_> = all
        .iter()
        .filter(|p| p.spec.as_ref().unwrap().node_name.is_some())
        .collect();
    assert_eq!(bound.len(), 4, "2 nodes × 2 cpu hold four 1-cpu pods");
    let waiting = all
        .iter()
        .find(|p| p.spec.as_ref().unwrap().node_name.is_none())
        .unwrap()
        .name_any();
    let msgs = messages(&events_about(&lab, &waiting).await, "FailedScheduling");
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("0/2 nodes are available: 2 Insufficient cpu.")),
        "{msgs:?}"
    );
    // Deleting a bound pod frees its cpu: the waiting pod is scheduled.
    let victim = bound[0].name_any();
    pods.delete(&victim, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let p = pods.get(&waiting).await.unwrap();
    assert!(
        p.spec.unwrap().node_name.is_some(),
        "scheduled once room was freed"
    );
}

#[tokio::test]
async fn the_node_pods_limit_taints_and_node_selectors_are_honoured() {
    let yaml = format!(
        "version: 1\nname: limits\nobjects:\n{}  - apiVersion: v1\n    kind: Node\n    metadata: {{ name: gpu-0, labels: {{ pool: gpu }} }}\n    spec: {{ taints: [ {{ key: nvidia.com/gpu, value: present, effect: NoSchedule }} ] }}\n    status: {{ allocatable: {{ cpu: \"8\", memory: 32Gi, pods: \"110\" }} }}\n",
        nodes(1, "8", "32Gi", 2)
    );
    let lab = lab(&yaml);
    let pods: Api<Pod> = Api::namespaced(lab.client(), "default");
    for i in 0..3 {
        pods.create(
            &PostParams::default(),
            &pod(&format!("p{i}"), "100m", "64Mi"),
        )
        .await
        .unwrap();
    }
    let msgs = messages(&events_about(&lab, "p2").await, "FailedScheduling");
    assert!(
        msgs.iter().any(|m| m.starts_with(
            "0/2 nodes are available: 1 Too many pods, 1 node(s) had untolerated taint {nvidia.com/gpu: present}."
        )),
        "{msgs:?}"
    );
    // A pod selecting the gpu pool and tolerating its taint goes there.
    let mut gpu = pod("trainer", "1", "1Gi");
    let spec = gpu.spec.as_mut().unwrap();
    spec.node_selector = Some([("pool".to_string(), "gpu".to_string())].into());
    spec.tolerations = Some(vec![
        serde_json::from_value(
            json!({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}),
        )
        .unwrap(),
    ]);
    pods.create(&PostParams::default(), &gpu).await.unwrap();
    let p = pods.get("trainer").await.unwrap();
    assert_eq!(p.spec.unwrap().node_name.as_deref(), Some("gpu-0"));
    // Selecting a pool that does not exist leaves the pod Pending.
    let mut lost = pod("nowhere", "1", "1Gi");
    lost.spec.as_mut().unwrap().node_selector =
        Some([("pool".to_string(), "tpu".to_string())].into());
    pods.create(&PostParams::default(), &lost).await.unwrap();
    let msgs = messages(&events_about(&lab, "nowhere").await, "FailedScheduling");
    assert!(
        msgs.iter()
            .any(|m| m.contains("node(s) didn't match Pod's node affinity/selector")),
        "{msgs:?}"
    );
}

#[tokio::test]
async fn nodes_without_declared_capacity_take_any_pod_and_are_served_with_a_spec() {
    let lab = lab(
        "version: 1\nname: old\nobjects:\n  - { apiVersion: v1, kind: Node, metadata: { name: n1 } }\n",
    );
    let nodes_api: Api<Node> = Api::all(lab.client());
    let raw: Value = serde_json::to_value(nodes_api.get("n1").await.unwrap()).unwrap();
    assert_eq!(
        raw["spec"],
        json!({}),
        "a Node written without spec is served with spec: {{}}"
    );
    let pods: Api<Pod> = Api::namespaced(lab.client(), "default");
    pods.create(&PostParams::default(), &pod("huge", "64", "1Ti"))
        .await
        .unwrap();
    let p = pods.get("huge").await.unwrap();
    assert_eq!(p.spec.unwrap().node_name.as_deref(), Some("n1"));
}

#[tokio::test]
#[ignore = "needs kubectl (scripts/test.sh installs it)"]
async fn kubectl_describe_node_shows_allocated_resources_and_events_show_failed_scheduling() {
    let lab = lab(&format!(
        "version: 1\nname: full\nobjects:\n{}",
        nodes(1, "4", "8Gi", 110)
    ));
    let pods: Api<Pod> = Api::namespaced(lab.client(), "default");
    pods.create(&PostParams::default(), &pod("a", "3", "6Gi"))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("b", "2", "1Gi"))
        .await
        .unwrap();
    let k = Kubectl::start(&lab).await;
    let describe = k.ok(&["describe", "node", "node-0"]).await;
    let allocated = describe
        .split("Allocated resources:")
        .nth(1)
        .unwrap_or_else(|| panic!("no Allocated resources section:\n{describe}"));
    let cpu = allocated
        .lines()
        .find(|l| l.trim_start().starts_with("cpu"))
        .unwrap();
    let memory = allocated
        .lines()
        .find(|l| l.trim_start().starts_with("memory"))
        .unwrap();
    assert!(cpu.contains("3 (75%)"), "{cpu}");
    assert!(memory.contains("6Gi (75%)"), "{memory}");
    let events = k
        .ok(&[
            "get",
            "events",
            "--field-selector",
            "reason=FailedScheduling",
        ])
        .await;
    assert!(
        events.contains("0/1 nodes are available: 1 Insufficient cpu."),
        "{events}"
    );
    let get = k.ok(&["get", "pod", "b"]).await;
    assert!(get.contains("Pending"), "{get}");
    k.stop().await;
}

// ---------------------------------------------------------------- 2. ResourceQuota

const QUOTA: &str = "version: 1
name: quota
objects:
  - { apiVersion: v1, kind: Node, metadata: { name: n1 } }
  - apiVersion: v1
    kind: ResourceQuota
    metadata: { name: compute, namespace: default }
    spec: { hard: { pods: \"2\", requests.memory: 1Gi, limits.cpu: \"4\" } }
";

#[tokio::test]
async fn a_pod_over_quota_is_refused_with_the_api_servers_403_and_used_is_kept() {
    let lab = lab(QUOTA);
    let pods: Api<Pod> = Api::namespaced(lab.client(), "default");
    pods.create(&PostParams::default(), &pod("a", "100m", "512Mi"))
        .await
        .unwrap();
    let err = pods
        .create(&PostParams::default(), &pod("b", "100m", "1Gi"))
        .await
        .expect_err("over quota");
    let kube::Error::Api(s) = err else {
        panic!("expected an API error, got {err:?}")
    };
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        s.message,
        "pods \"b\" is forbidden: exceeded quota: compute, requested: requests.memory=1Gi, used: requests.memory=512Mi, limited: requests.memory=1Gi"
    );
    assert!(
        pods.get_opt("b").await.unwrap().is_none(),
        "a refused pod is not stored"
    );
    let quotas: Api<k8s_openapi::api::core::v1::ResourceQuota> =
        Api::namespaced(lab.client(), "default");
    let q = quotas.get("compute").await.unwrap();
    let used = q.status.unwrap().used.unwrap();
    assert_eq!(used["pods"].0, "1");
    assert_eq!(used["requests.memory"].0, "512Mi");
    // The pod count is a limit too; deleting a pod frees quota.
    pods.create(&PostParams::default(), &pod("c", "100m", "100Mi"))
        .await
        .unwrap();
    let err = pods
        .create(&PostParams::default(), &pod("d", "100m", "100Mi"))
        .await
        .expect_err("third pod");
    assert!(
        err.to_string()
            .contains("exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2"),
        "{err}"
    );
    pods.delete("c", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("d", "100m", "100Mi"))
        .await
        .expect("room again after a delete");
}

#[tokio::test]
async fn a_replicaset_under_quota_creates_what_fits_and_reports_failed_create() {
    let lab = lab(QUOTA);
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(lab.client(), "default");
    let d: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx",
                    "resources": {"requests": {"memory": "100Mi"}}}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(lab.client(), "default");
    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
    let events: Api<Event> = Api::namespaced(lab.client(), "default");
    let failed: Vec<String> = events
        .list(&ListParams::default().fields("reason=FailedCreate"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.message)
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].starts_with("Error creating: pods \"web-")
            && failed[0].ends_with("-\" is forbidden: exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2"),
        "{}",
        failed[0]
    );
}

#[tokio::test]
#[ignore = "needs kubectl (scripts/test.sh installs it)"]
async fn kubectl_gets_creates_and_deletes_resource_quotas() {
    let lab = lab(QUOTA);
    let pods: Api<Pod> = Api::namespaced(lab.client(), "default");
    pods.create(&PostParams::default(), &pod("a", "100m", "512Mi"))
        .await
        .unwrap();
    let k = Kubectl::start(&lab).await;
    let out = k.ok(&["get", "resourcequota"]).await;
    assert!(out.contains("REQUEST") && out.contains("LIMIT"), "{out}");
    assert!(
        out.contains("pods: 1/2, requests.memory: 512Mi/1Gi"),
        "{out}"
    );
    assert!(out.contains("limits.cpu: 0/4"), "{out}");
    // `kubectl create quota` sends protobuf, which the lab does not speak; a manifest
    // goes as JSON (the lab serves no OpenAPI document, hence --validate=false).
    let manifest = k.dir.path().join("quota.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: { name: small }\nspec: { hard: { pods: \"1\" } }\n",
    )
    .unwrap();
    k.ok(&[
        "create",
        "--validate=false",
        "-f",
        manifest.to_str().unwrap(),
    ])
    .await;
    let out = k
        .ok(&[
            "get",
            "quota",
            "small",
            "-o",
            "jsonpath={.status.used.pods}",
        ])
        .await;
    assert_eq!(out, "1");
    let (ok, _, stderr) = k
        .run(&["run", "extra", "--image=nginx", "--restart=Never"])
        .await;
    assert!(!ok);
    assert!(
        stderr.contains(
            "Error from server (Forbidden): pods \"extra\" is forbidden: exceeded quota: "
        ),
        "{stderr}"
    );
    k.ok(&["delete", "resourcequota", "small", "compute"]).await;
    k.ok(&["run", "extra", "--image=nginx", "--restart=Never"])
        .await;
    k.stop().await;
}

const MANAGED: &str = "version: 1
name: managed-quota
managed:
  - { kind: ResourceQuota, namespace: team-a, name: gke-resource-quotas, recreate_after: 30s, manager: gke-resource-quotas }
objects:
  - apiVersion: v1
    kind: ResourceQuota
    metadata: { name: gke-resource-quotas, namespace: team-a }
    spec: { hard: { pods: \"1500\", services: \"500\" } }
";

fn quotas(lab: &Lab) -> Api<k8s_openapi::api::core::v1::ResourceQuota> {
    Api::namespaced(lab.client(), "team-a")
}

#[tokio::test]
async fn a_managed_quota_comes_back_with_a_new_uid_after_its_delay() {
    let lab = lab(MANAGED);
    let api = quotas(&lab);
    let before = api.get("gke-resource-quotas").await.unwrap();
    assert_eq!(
        before.managed_fields()[0].manager.as_deref(),
        Some("gke-resource-quotas")
    );
    api.delete("gke-resource-quotas", &DeleteParams::default())
        .await
        .unwrap();
    assert!(api.get_opt("gke-resource-quotas").await.unwrap().is_none());
    lab.advance(Duration::from_secs(29));
    assert!(
        api.get_opt("gke-resource-quotas").await.unwrap().is_none(),
        "back before recreate_after"
    );
    lab.advance(Duration::from_secs(2));
    let after = api
        .get_opt("gke-resource-quotas")
        .await
        .unwrap()
        .expect("the manager recreated the quota");
    assert_ne!(after.uid(), before.uid());
    assert_ne!(after.resource_version(), before.resource_version());
    assert_eq!(after.spec, before.spec);
    assert!(after.creation_timestamp() > before.creation_timestamp());
    assert_eq!(
        after.managed_fields()[0].manager.as_deref(),
        Some("gke-resource-quotas")
    );
    let evs: Api<Event> = Api::namespaced(lab.client(), "team-a");
    let evs = evs.list(&ListParams::default()).await.unwrap().items;
    let msgs = messages(&evs, "Recreated");
    assert_eq!(
        msgs,
        vec![
            "ResourceQuota gke-resource-quotas was deleted 31s ago; gke-resource-quotas created it again"
        ]
    );
    // A second deletion is noticed again.
    api.delete("gke-resource-quotas", &DeleteParams::default())
        .await
        .unwrap();
    lab.advance(Duration::from_secs(31));
    assert!(api.get_opt("gke-resource-quotas").await.unwrap().is_some());
}

const MANAGED_RUNBOOK: &str = r#"version: 1
name: quota-blocks-deploys
title: Pods in team-a are refused by the provider's quota
steps:
  - action: Delete the provider's quota
    id: delete-quota
    kube: { delete: resourcequotas, name: gke-resource-quotas, namespace: team-a }
    verify:
      title: The provider put the quota back (deleting it does not help)
      kube: { get: resourcequotas, namespace: team-a }
      expect: >-
        size(result) == 1
        && result[0].metadata.managedFields[0].manager == 'gke-resource-quotas'
      within: 2m
      every: 10s
"#;

const MANAGED_TEST: &str = r#"version: 1
tests:
  - name: the managed quota comes back
    scenario: managed.scenario.yaml
    expect:
      status: succeeded
      ran: [delete-quota]
      cluster:
        the quota is back, recreated by its manager: >-
          resourcequotas.exists(q, q.metadata.name == 'gke-resource-quotas'
          && q.spec.hard.pods == '1500')
"#;

#[test]
fn runbook_test_sees_a_deleted_managed_quota_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("quota.yaml"), MANAGED_RUNBOOK).unwrap();
    std::fs::write(d.join("quota.test.yaml"), MANAGED_TEST).unwrap();
    std::fs::write(d.join("managed.scenario.yaml"), MANAGED).unwrap();
    let state = tempfile::tempdir().unwrap();
    crate::support::cli::Cli::new()
        .state_dir(state.path())
        .arg("test")
        .arg(d.join("quota.yaml"))
        .run()
        .success()
        .stdout_contains("PASS  quota-blocks-deploys :: the managed quota comes back");
    // Without the `managed` rule the quota stays deleted and the verification fails.
    let plain = MANAGED.replace(
        "managed:\n  - { kind: ResourceQuota, namespace: team-a, name: gke-resource-quotas, recreate_after: 30s, manager: gke-resource-quotas }\n",
        "",
    );
    assert_ne!(plain, MANAGED);
    std::fs::write(d.join("managed.scenario.yaml"), plain).unwrap();
    crate::support::cli::Cli::new()
        .state_dir(state.path())
        .arg("test")
        .arg(d.join("quota.yaml"))
        .run()
        .failure()
        .stdout_contains("FAIL  quota-blocks-deploys :: the managed quota comes back");
}

#[test]
fn a_managed_entry_naming_no_declared_object_is_refused() {
    let text = MANAGED.replace(
        "name: gke-resource-quotas, recreate",
        "name: other, recreate",
    );
    let e = Lab::from_scenario_str(&text).err().expect("refused");
    let e = e.to_string();
    assert!(e.contains("managed: no ResourceQuota \"other\""), "{e}");
}

#[tokio::test]
#[ignore = "needs kubectl (scripts/test.sh installs it)"]
async fn kubectl_deletes_a_managed_quota_and_gets_it_back_after_the_delay() {
    let lab = lab(MANAGED);
    let k = Kubectl::start(&lab).await;
    k.ok(&[
        "delete",
        "resourcequota",
        "gke-resource-quotas",
        "-n",
        "team-a",
    ])
    .await;
    let (ok, _, stderr) = k
        .run(&[
            "get",
            "resourcequota",
            "gke-resource-quotas",
            "-n",
            "team-a",
        ])
        .await;
    assert!(!ok);
    assert!(stderr.contains("NotFound"), "{stderr}");
    lab.advance(Duration::from_secs(30));
    let out = k
        .ok(&[
            "get",
            "resourcequota",
            "gke-resource-quotas",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.spec.hard.pods} {.metadata.managedFields[0].manager}",
        ])
        .await;
    assert_eq!(out, "1500 gke-resource-quotas");
    let out = k.ok(&["get", "events", "-n", "team-a"]).await;
    assert!(out.contains("Recreated"), "{out}");
    k.stop().await;
}

// ---------------------------------------------------------------- 3. autoscaler

const POOLS: &str = "version: 1
name: autoscale
node_pools:
  - name: default-pool
    min: 1
    max: 3
    machine: { cpu: \"2\", memory: 8Gi }
objects:
  - apiVersion: apps/v1
    kind: Deployment
    metadata: { name: web, namespace: default }
    spec:
      replicas: 1
      selector: { matchLabels: { app: web } }
      template:
        metadata: { labels: { app: web } }
        spec:
          containers:
            - name: web
              image: nginx
              resources: { requests: { cpu: 1500m, memory: 1Gi } }
";

async fn scale(lab: &Lab, replicas: i32) {
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(lab.client(), "default");
    deployments
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .unwrap();
}

async fn node_names(lab: &Lab) -> Vec<String> {
    let nodes: Api<Node> = Api::all(lab.client());
    let mut n: Vec<String> = nodes
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    n.sort();
    n
}

async fn running(lab: &Lab) -> usize {
    let pods: Api<Pod> = Api::namespaced(lab.client(), "default");
    pods.list(&ListParams::default().fields("status.phase=Running"))
        .await
        .unwrap()
        .items
        .len()
}

#[tokio::test]
async fn the_autoscaler_adds_nodes_for_pending_pods_then_removes_them_after_ten_minutes() {
    let lab = lab(POOLS);
    assert_eq!(node_names(&lab).await.len(), 1, "the pool starts at min");
    assert_eq!(running(&lab).await, 1);
    scale(&lab, 3).await;
    assert_eq!(running(&lab).await, 1, "two pods do not fit: Pending");
    // Within one scan interval the autoscaler has not acted yet.
    lab.advance(Duration::from_secs(5));
    assert_eq!(node_names(&lab).await.len(), 1);
    lab.advance(Duration::from_secs(10));
    assert_eq!(
        node_names(&lab).await.len(),
        3,
        "scale-up 1->3 after the scan interval"
    );
    let pods: Api<Pod> = Api::namespaced(lab.client(), "default");
    let pending = pods
        .list(&ListParams::default().fields("status.phase=Pending"))
        .await
        .unwrap()
        .items;
    assert_eq!(pending.len(), 2, "new nodes are still booting");
    let msgs = messages(
        &events_about(&lab, &pending[0].name_any()).await,
        "TriggeredScaleUp",
    );
    assert_eq!(
        msgs,
        vec!["pod triggered scale-up: [{default-pool 1->3 (max: 3)}]"]
    );
    lab.advance(Duration::from_secs(90));
    assert_eq!(running(&lab).await, 3, "pods run once the nodes are Ready");

    // One more pod than max allows: NotTriggerScaleUp.
    scale(&lab, 4).await;
    lab.advance(Duration::from_secs(15));
    assert_eq!(node_names(&lab).await.len(), 3);
    let pending = pods
        .list(&ListParams::default().fields("status.phase=Pending"))
        .await
        .unwrap()
        .items;
    let msgs = messages(
        &events_about(&lab, &pending[0].name_any()).await,
        "NotTriggerScaleUp",
    );
    assert_eq!(
        msgs,
        vec!["pod didn't trigger scale-up: 1 max node group size reached"]
    );

    // Back to one replica: two nodes are unneeded; they go after 10 minutes, not before.
    scale(&lab, 1).await;
    lab.advance(Duration::from_secs(9 * 60));
    assert_eq!(
        node_names(&lab).await.len(),
        3,
        "not before 10 minutes unneeded"
    );
    lab.advance(Duration::from_secs(61));
    assert_eq!(
        node_names(&lab).await.len(),
        1,
        "scaled down to the one node in use"
    );
    assert_eq!(running(&lab).await, 1);
}

#[tokio::test]
async fn scale_down_leaves_cordoned_and_annotated_nodes_and_keeps_the_pool_minimum() {
    let lab = lab(&POOLS
        .replace("min: 1", "min: 0")
        .replace("replicas: 1", "replicas: 3"));
    lab.advance(Duration::from_secs(15));
    lab.advance(Duration::from_secs(90));
    let names = node_names(&lab).await;
    assert_eq!(names.len(), 3);
    assert_eq!(running(&lab).await, 3);
    let nodes: Api<Node> = Api::all(lab.client());
    nodes.cordon(&names[0]).await.unwrap();
    nodes
        .patch(
            &names[1],
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"annotations": {
                "cluster-autoscaler.kubernetes.io/scale-down-disabled": "true"}}})),
        )
        .await
        .unwrap();
    scale(&lab, 0).await;
    lab.advance(Duration::from_secs(11 * 60));
    assert_eq!(
        node_names(&lab).await,
        vec![names[0].clone(), names[1].clone()],
        "only the node neither cordoned nor annotated is removed"
    );
    let msgs = messages(&events_about(&lab, &names[2]).await, "ScaleDown");
    assert_eq!(msgs, vec!["marked the node as toBeDeleted/unschedulable"]);
}

// ---------------------------------------------------------------- 4. logs

const LOGS: &str = "version: 1
name: logs
objects:
  - { apiVersion: v1, kind: Node, metadata: { name: n1 } }
  - apiVersion: v1
    kind: Pod
    metadata: { name: hub-0, namespace: prod, labels: { component: hub } }
    spec: { containers: [ { name: hub, image: jupyterhub/k8s-hub } ] }
logs:
  - namespace: prod
    selector: component=hub
    lines:
      - '[I 2018-03-13 06:20:01 JupyterHub app:1673] Using Authenticator: oauthenticator'
      - '[I 2018-03-13 06:20:02 JupyterHub app:2257] JupyterHub is now running'
    timed:
      - { at: 2m, text: '[E 2018-03-13 06:30:00 JupyterHub user:477] Unhandled error starting server: timeout' }
    previous:
      - 'sqlite3.OperationalError: database is locked'
";

#[tokio::test]
async fn a_scenario_says_what_a_pod_logs_and_the_log_api_filters_it() {
    let lab = lab(LOGS);
    let pods: Api<Pod> = Api::namespaced(lab.client(), "prod");
    let all = pods.logs("hub-0", &Default::default()).await.unwrap();
    assert_eq!(
        all.lines().count(),
        2,
        "the timed line has not come yet:\n{all}"
    );
    assert!(all.ends_with("JupyterHub is now running\n"), "{all}");
    lab.advance(Duration::from_secs(150));
    let tail = pods
        .logs(
            "hub-0",
            &kube::api::LogParams {
                tail_lines: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        tail,
        "[E 2018-03-13 06:30:00 JupyterHub user:477] Unhandled error starting server: timeout\n"
    );
    let recent = pods
        .logs(
            "hub-0",
            &kube::api::LogParams {
                since_seconds: Some(60),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(recent.lines().count(), 1, "{recent}");
    let previous = pods
        .logs(
            "hub-0",
            &kube::api::LogParams {
                previous: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(previous, "sqlite3.OperationalError: database is locked\n");
}

#[test]
fn a_logs_entry_naming_both_pod_and_selector_is_refused_with_its_line() {
    let err = Lab::from_scenario_str(
        "version: 1\nname: bad\nlogs:\n  - { pod: a, selector: app=b, lines: [x] }\n",
    )
    .err()
    .expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("exactly one of `pod` and `selector`"),
        "{text}"
    );
    assert_eq!(err.line, 4, "{text}");
}

#[tokio::test]
#[ignore = "needs kubectl (scripts/test.sh installs it)"]
async fn kubectl_logs_prints_the_scenario_lines_with_tail_and_previous() {
    let lab = lab(LOGS);
    let k = Kubectl::start(&lab).await;
    let out = k.ok(&["logs", "-n", "prod", "hub-0"]).await;
    assert!(
        out.contains("Using Authenticator") && out.contains("is now running"),
        "{out}"
    );
    let out = k.ok(&["logs", "-n", "prod", "hub-0", "--tail=1"]).await;
    assert_eq!(out.lines().count(), 1, "{out}");
    let out = k
        .ok(&["logs", "-n", "prod", "-l", "component=hub", "--previous"])
        .await;
    assert_eq!(out, "sqlite3.OperationalError: database is locked\n");
    k.stop().await;
}

// ---------------------------------------------------------------- 5. faults with timing

fn faults_scenario(pod_faults: &str, timing: &str) -> String {
    format!(
        "version: 1
name: faults
{timing}objects:
  - {{ apiVersion: v1, kind: Node, metadata: {{ name: n1 }} }}
  - {{ apiVersion: v1, kind: Node, metadata: {{ name: n2 }}, spec: {{ unschedulable: true }} }}
  - apiVersion: v1
    kind: Pod
    metadata: {{ name: hub-0, labels: {{ app: hub }} }}
    spec: {{ nodeName: n1, containers: [ {{ name: hub, image: hub }} ] }}
  - apiVersion: v1
    kind: Pod
    metadata: {{ name: proxy-0, labels: {{ app: proxy }} }}
    spec: {{ nodeName: n1, containers: [ {{ name: proxy, image: proxy }} ] }}
pod_faults:
{pod_faults}"
    )
}

async fn container(lab: &Lab, name: &str) -> Value {
    let pods: Api<Pod> = Api::namespaced(lab.client(), "default");
    let p = serde_json::to_value(pods.get(name).await.unwrap()).unwrap();
    p["status"]["containerStatuses"][0].clone()
}

async fn ready(lab: &Lab, name: &str) -> bool {
    let pods: Api<Pod> = Api::namespaced(lab.client(), "default");
    let p = pods.get(name).await.unwrap();
    p.status
        .and_then(|s| s.conditions)
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

#[tokio::test]
async fn a_crash_loop_restarts_with_the_kubelet_back_off_hits_one_pod_and_ends() {
    let lab = lab(&faults_scenario(
        "  - { pod: hub-0, at: 1m, until: 20m, crash_loop: { exit_code: 2 } }\n",
        "",
    ));
    assert!(ready(&lab, "hub-0").await, "healthy before the fault");
    lab.advance(Duration::from_secs(60));
    let c = container(&lab, "hub-0").await;
    assert_eq!(c["state"]["waiting"]["reason"], "CrashLoopBackOff");
    assert_eq!(c["restartCount"], 0);
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 2);
    // Restarts at +10 s, +30 s, +70 s, +150 s, +310 s, then every 5 minutes.
    let mut seen = Vec::new();
    for secs in [9, 1, 20, 40, 80, 160, 300] {
        lab.advance(Duration::from_secs(secs));
        seen.push(
            container(&lab, "hub-0").await["restartCount"]
                .as_i64()
                .unwrap(),
        );
    }
    assert_eq!(seen, vec![0, 1, 2, 3, 4, 5, 6]);
    assert!(
        container(&lab, "hub-0").await["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .starts_with("back-off 5m0s restarting failed container=hub pod=hub-0_default(")
    );
    assert!(
        ready(&lab, "proxy-0").await,
        "only the named pod crash-loops"
    );
    // The fault ends at 20 m: the container runs and is Ready again.
    lab.advance(Duration::from_secs(20 * 60));
    let c = container(&lab, "hub-0").await;
    assert!(c["state"]["running"].is_object(), "{c}");
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 2);
    assert!(ready(&lab, "hub-0").await);
    let backoffs = messages(&events_about(&lab, "hub-0").await, "BackOff");
    assert!(
        backoffs.iter().all(
            |m| m.starts_with("Back-off restarting failed container hub in pod hub-0_default(")
        ),
        "{backoffs:?}"
    );
}

#[tokio::test]
async fn an_oom_kill_on_a_node_shows_oomkilled_exit_137_and_a_node_event() {
    let lab = lab(&faults_scenario("  - { node: n1, oom_killed: {} }\n", ""));
    for pod in ["hub-0", "proxy-0"] {
        let c = container(&lab, pod).await;
        assert_eq!(c["lastState"]["terminated"]["reason"], "OOMKilled", "{c}");
        assert_eq!(c["lastState"]["terminated"]["exitCode"], 137);
        assert!(!ready(&lab, pod).await);
    }
    let node_events = messages(&events_about(&lab, "n1").await, "OOMKilling");
    assert!(!node_events.is_empty());
    assert!(node_events[0].starts_with("Memory cgroup out of memory: Killed process"));
}

#[tokio::test]
async fn running_but_not_ready_and_new_pods_become_ready_after_the_scenario_delay() {
    let lab = lab(&faults_scenario(
        "  - { selector: app=proxy, until: 5m, not_ready: {} }\n",
        "timing: { ready_after: 20s }\n",
    ));
    let pods: Api<Pod> = Api::namespaced(lab.client(), "default");
    let proxy = pods.get("proxy-0").await.unwrap();
    assert_eq!(
        proxy.status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );
    assert!(!ready(&lab, "proxy-0").await, "running, readiness failing");
    let unhealthy = messages(&events_about(&lab, "proxy-0").await, "Unhealthy");
    assert_eq!(
        unhealthy,
        vec!["Readiness probe failed: HTTP probe failed with statuscode: 503"]
    );
    assert!(!ready(&lab, "hub-0").await, "not Ready before ready_after");
    lab.advance(Duration::from_secs(20));
    assert!(ready(&lab, "hub-0").await, "Ready 20 s after starting");
    pods.create(&PostParams::default(), &pod("late", "100m", "10Mi"))
        .await
        .unwrap();
    assert!(!ready(&lab, "late").await, "a new pod waits too");
    lab.advance(Duration::from_secs(19));
    assert!(!ready(&lab, "late").await);
    lab.advance(Duration::from_secs(1));
    assert!(ready(&lab, "late").await);
    lab.advance(Duration::from_secs(5 * 60));
    assert!(ready(&lab, "proxy-0").await, "the readiness fault ended");
}

#[test]
fn a_pod_fault_without_a_scope_is_refused_with_its_line() {
    let err = Lab::from_scenario_str(
        "version: 1\nname: bad\npod_faults:\n  - { at: 1m, crash_loop: {} }\n",
    )
    .err()
    .expect("refused");
    assert!(
        err.to_string()
            .contains("exactly one of `pod`, `selector`, `node`"),
        "{err}"
    );
    assert_eq!(err.line, 4);
}

// ---------------------------------------------------------------- docs

#[test]
fn every_scenario_example_in_docs_lab_md_loads() {
    let doc = std::fs::read_to_string(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/lab.md"),
    )
    .expect("docs/lab.md");
    let blocks: Vec<&str> = doc
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect();
    assert!(blocks.len() >= 6, "found {} yaml examples", blocks.len());
    for b in blocks {
        let yaml = format!(
            "version: 1\nname: doc\n{}",
            b.replace(
                "# in a scenario file (schemas/scenario.schema.json): active from the start\n",
                ""
            )
        );
        if let Err(e) = Lab::from_scenario_str(&yaml) {
            panic!("docs/lab.md example does not load: {e}\n{b}");
        }
    }
}
