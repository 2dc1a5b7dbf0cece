//! The kube provider against the in-process lab, through `resolve` + `execute`:
//! reads, cordon, taint, delete, evict, patch, scale, rollout restart.

use crate::support::kube as support;

use runbook::providers::{ExecCtx, OpError};
use serde_json::json;
use support::*;

// ---- resolve ------------------------------------------------------------------

#[tokio::test]
async fn resolve_renders_templates_and_shows_the_kubectl_line() {
    let lab = seed();
    let p = provider(&lab);
    let vars = json!({"item": {"metadata": {"name": "hub-1", "namespace": "prod"}}});
    let r = resolve(
        &p,
        r#"{delete: pods, name: "{{item.metadata.name}}", namespace: "{{item.metadata.namespace}}", grace_period: 0, force: true}"#,
        &vars,
    )
    .unwrap();
    assert_eq!(
        r.display,
        "kubectl delete pod hub-1 -n prod --grace-period=0 --force"
    );
    assert!(r.mutating);
    assert_eq!(r.op["name"], "hub-1");
    assert_eq!(r.op["namespace"], "prod");
}

#[tokio::test]
async fn resolve_leaves_where_unevaluated_and_defaults_the_namespace() {
    let lab = seed();
    let p = provider(&lab);
    let r = resolve(
        &p,
        r#"{get: pods, where: "pod.status.phase == 'Unknown'"}"#,
        &json!({}),
    )
    .unwrap();
    assert_eq!(r.op["where"], "pod.status.phase == 'Unknown'");
    assert_eq!(r.op["namespace"], "default");
    assert!(!r.mutating);
    assert_eq!(
        r.display,
        "kubectl get pods -n default -o json  # where pod.status.phase == 'Unknown'"
    );
    // Cluster-scoped kinds get no namespace.
    let r = resolve(&p, "{get: nodes}", &json!({})).unwrap();
    assert!(r.op.get("namespace").is_none());
    assert_eq!(r.display, "kubectl get nodes -o json");
}

#[tokio::test]
async fn resolve_rejects_what_kubectl_rejects() {
    let lab = seed();
    let p = provider(&lab);
    // A template that renders an empty name, and force with a positive grace period.
    let e = resolve(
        &p,
        r#"{cordon: "{{params.node}}"}"#,
        &json!({"params": {"node": ""}}),
    )
    .unwrap_err();
    assert!(matches!(e, OpError::Invalid(m) if m.contains("rendered empty")));
    let e = resolve(
        &p,
        "{delete: pods, name: x, grace_period: 5, force: true}",
        &json!({}),
    )
    .unwrap_err();
    assert!(matches!(e, OpError::Invalid(m) if m.contains("cannot be used together")));
    let e = resolve(
        &p,
        r#"{get: pods, name: "{{params.n}}"}"#,
        &json!({"params": {"n": "a/b"}}),
    )
    .unwrap_err();
    assert!(matches!(e, OpError::Invalid(m) if m.contains("not a valid object name")));
}

#[tokio::test]
async fn display_covers_every_verb_like_kubectl() {
    let lab = seed();
    let p = provider(&lab);
    let show = |k: &str| resolve(&p, k, &json!({})).unwrap().display;
    assert_eq!(show("{cordon: node-1}"), "kubectl cordon node-1");
    assert_eq!(show("{uncordon: node-1}"), "kubectl uncordon node-1");
    assert_eq!(
        show(
            "{taint: node-1, key: node.kubernetes.io/out-of-service, value: nodeshutdown, effect: NoExecute}"
        ),
        "kubectl taint node node-1 node.kubernetes.io/out-of-service=nodeshutdown:NoExecute --overwrite"
    );
    assert_eq!(
        show("{untaint: node-1, key: node.kubernetes.io/out-of-service}"),
        "kubectl taint node node-1 node.kubernetes.io/out-of-service-"
    );
    assert_eq!(
        show(
            "{drain: node-1, ignore_daemonsets: true, delete_emptydir_data: true, force: true, grace_period: 0}"
        ),
        "kubectl drain node-1 --ignore-daemonsets --delete-emptydir-data --force --grace-period=0"
    );
    assert_eq!(
        show("{delete: pods, namespace: prod, selector: component=hub}"),
        "kubectl delete pods -n prod -l component=hub"
    );
    assert_eq!(
        show("{scale: deployments, name: hub, namespace: prod, replicas: 2}"),
        "kubectl scale deployment hub -n prod --replicas=2"
    );
    assert_eq!(
        show("{rollout_restart: deployments, name: hub, namespace: prod}"),
        "kubectl rollout restart deployment hub -n prod"
    );
    assert_eq!(
        show("{patch: nodes, name: n1, patch_type: merge, body: {metadata: {labels: {a: b c}}}}"),
        r#"kubectl patch node n1 --type merge -p '{"metadata":{"labels":{"a":"b c"}}}'"#
    );
    assert_eq!(
        show("{wait: pods, name: hub-1, namespace: prod, for: delete}"),
        "kubectl wait pod/hub-1 -n prod --for=delete"
    );
    assert_eq!(
        show("{evict: hub-1, namespace: prod, grace_period: 0}"),
        r#"echo '{"apiVersion":"policy/v1","deleteOptions":{"gracePeriodSeconds":0},"kind":"Eviction","metadata":{"name":"hub-1","namespace":"prod"}}' | kubectl create --raw /api/v1/namespaces/prod/pods/hub-1/eviction -f -"#
    );
}

// ---- reads --------------------------------------------------------------------

#[tokio::test]
async fn get_with_where_finds_the_lost_pods_and_journals_one_list() {
    let lab = seed();
    let p = provider(&lab);
    let ran = run(
        &p,
        r#"{get: pods, namespace: prod, where: "pod.status.phase == 'Unknown' || (has(pod.status.reason) && pod.status.reason == 'NodeLost')"}"#,
    )
    .await;
    let pods = ran.ok();
    let mut expected: Vec<String> = lab
        .list("pods", Some("prod"))
        .into_iter()
        .filter(|p| p["status"]["phase"] == "Unknown" || p["status"]["reason"] == "NodeLost")
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    expected.sort();
    let mut got = names(pods);
    got.sort();
    assert!(!got.is_empty(), "the seed has lost pods");
    assert_eq!(got, expected);
    // Items of a list carry their kind, like an object fetched by name.
    assert!(
        pods.as_array()
            .unwrap()
            .iter()
            .all(|p| p["kind"] == "Pod" && p["apiVersion"] == "v1")
    );
    assert_eq!(ran.calls.len(), 1);
    assert_eq!(ran.calls[0].method, "GET");
    assert_eq!(ran.calls[0].status, 200);
    assert_eq!(ran.calls[0].path, "/api/v1/namespaces/prod/pods?limit=500");
    assert_eq!(
        ran.calls[0].kubectl.as_deref(),
        Some("kubectl get pods -n prod -o json")
    );
}

#[tokio::test]
async fn where_sees_the_run_variables_next_to_the_object() {
    let lab = seed();
    let p = provider(&lab);
    let cx = ExecCtx::new(json!({"params": {"node": LOST}}));
    let ran = run_with(&p, r#"{get: pods, all_namespaces: true, where: "has(pod.spec.nodeName) && pod.spec.nodeName == params.node"}"#, cx).await;
    let got = names(ran.ok());
    assert!(got.contains(&OLD_HUB.to_string()));
    assert!(!got.contains(&NEW_HUB.to_string()));
}

#[tokio::test]
async fn get_by_field_selector_lists_pods_on_a_node() {
    let lab = seed();
    let p = provider(&lab);
    let ran = run(
        &p,
        &format!("{{get: pods, all_namespaces: true, fields: spec.nodeName={LOST}}}"),
    )
    .await;
    let pods = ran.ok().as_array().unwrap().clone();
    assert!(!pods.is_empty());
    assert!(pods.iter().all(|p| p["spec"]["nodeName"] == LOST));
    assert_eq!(
        ran.calls[0].path,
        format!("/api/v1/pods?fieldSelector=spec.nodeName%3D{LOST}&limit=500")
    );
}

#[tokio::test]
async fn get_by_name_returns_the_object_and_a_missing_one_fails_like_kubectl() {
    let lab = seed();
    let p = provider(&lab);
    let ran = run(&p, "{get: pvc, name: hub-db-dir, namespace: prod}").await;
    assert_eq!(
        ran.ok()["spec"]["volumeName"],
        "pvc-6b3f1c2e-1d7a-11e8-9a3c-42010a800007"
    );
    let ran = run(&p, "{get: pods, name: nope, namespace: prod}").await;
    let (msg, status) = ran.err();
    assert_eq!(
        msg,
        r#"Error from server (NotFound): pods "nope" not found"#
    );
    assert_eq!(status.unwrap()["code"], 404);
    assert_eq!(ran.trace(), ["GET 404"]);
}

#[tokio::test]
async fn get_reads_other_groups_storage_apps_policy() {
    let lab = seed();
    let p = provider(&lab);
    let vas = run(&p, "{get: volumeattachments}").await;
    assert_eq!(vas.ok()[0]["spec"]["nodeName"], LOST);
    assert!(
        vas.calls[0]
            .path
            .starts_with("/apis/storage.k8s.io/v1/volumeattachments?")
    );
    let deps = run(
        &p,
        "{get: deployments.apps, namespace: prod, selector: component=hub}",
    )
    .await;
    assert_eq!(names(deps.ok()), ["hub"]);
    let pdbs = run(&p, "{get: pdb, namespace: prod}").await;
    assert_eq!(names(pdbs.ok()), ["binder"]);
}

#[tokio::test]
async fn a_bad_field_selector_fails_with_the_servers_message() {
    let lab = seed();
    let p = provider(&lab);
    let ran = run(&p, "{get: pods, namespace: prod, fields: spec.bogus=x}").await;
    let (msg, status) = ran.err();
    assert!(msg.starts_with("Error from server (BadRequest): "), "{msg}");
    assert!(
        msg.contains("field label not supported: spec.bogus"),
        "{msg}"
    );
    assert_eq!(status.unwrap()["code"], 400);
}

#[tokio::test]
async fn a_where_that_is_not_boolean_fails_clearly() {
    let lab = seed();
    let p = provider(&lab);
    let ran = run(
        &p,
        r#"{get: pods, namespace: prod, where: "pod.metadata.name"}"#,
    )
    .await;
    let (msg, _) = ran.err();
    assert!(msg.contains("not true or false"), "{msg}");
}

// ---- cordon / taint -----------------------------------------------------------

#[tokio::test]
async fn cordon_patches_once_and_uncordon_undoes_it() {
    let lab = seed();
    let p = provider(&lab);
    let ran = run(&p, &format!("{{cordon: {HEALTHY}}}")).await;
    assert_eq!(ran.ok()["changed"], true);
    assert_eq!(ran.trace(), ["GET 200", "PATCH 200"]);
    assert_eq!(
        ran.calls[1].kubectl.as_deref(),
        Some(format!("kubectl cordon {HEALTHY}").as_str())
    );
    assert_eq!(
        lab.get("nodes", None, HEALTHY).unwrap()["spec"]["unschedulable"],
        true
    );

    // Already cordoned: kubectl decides from a GET and sends nothing.
    let again = run(&p, &format!("{{cordon: {HEALTHY}}}")).await;
    assert_eq!(again.ok()["changed"], false);
    assert_eq!(again.trace(), ["GET 200"]);

    let un = run(&p, &format!("{{uncordon: {HEALTHY}}}")).await;
    assert_eq!(un.ok()["changed"], true);
    let node = lab.get("nodes", None, HEALTHY).unwrap();
    assert!(node["spec"].get("unschedulable").is_none_or(|u| u == false));
}

#[tokio::test]
async fn cordon_of_a_missing_node_fails_like_kubectl() {
    let lab = seed();
    let p = provider(&lab);
    let ran = run(&p, "{cordon: no-such-node}").await;
    let (msg, _) = ran.err();
    assert_eq!(
        msg,
        r#"Error from server (NotFound): nodes "no-such-node" not found"#
    );
}

#[tokio::test]
async fn out_of_service_taint_is_added_once_and_removed() {
    let lab = seed();
    let p = provider(&lab);
    let taint = format!(
        "{{taint: {HEALTHY}, key: node.kubernetes.io/out-of-service, value: nodeshutdown, effect: NoExecute}}"
    );
    let ran = run(&p, &taint).await;
    assert_eq!(ran.ok()["changed"], true);
    assert_eq!(ran.trace(), ["GET 200", "PATCH 200"]);
    let node = lab.get("nodes", None, HEALTHY).unwrap();
    let taints = node["spec"]["taints"].as_array().unwrap();
    assert!(
        taints
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/out-of-service"
                && t["value"] == "nodeshutdown"
                && t["effect"] == "NoExecute")
    );

    let again = run(&p, &taint).await;
    assert_eq!(again.ok()["changed"], false);
    assert_eq!(again.trace(), ["GET 200"]);

    let un = run(
        &p,
        &format!("{{untaint: {HEALTHY}, key: node.kubernetes.io/out-of-service}}"),
    )
    .await;
    assert_eq!(un.ok()["changed"], true);
    assert_eq!(un.ok()["removed"][0]["value"], "nodeshutdown");
    let node = lab.get("nodes", None, HEALTHY).unwrap();
    assert!(!node["spec"]["taints"].as_array().is_some_and(|ts| {
        ts.iter()
            .any(|t| t["key"] == "node.kubernetes.io/out-of-service")
    }));

    // Removing a taint that is not there is a no-op, so a runbook can repeat it.
    let un2 = run(
        &p,
        &format!("{{untaint: {HEALTHY}, key: node.kubernetes.io/out-of-service}}"),
    )
    .await;
    assert_eq!(un2.ok()["changed"], false);
}

#[tokio::test]
async fn taint_keeps_other_taints_and_replaces_one_with_the_same_key_and_effect() {
    let lab = seed();
    let p = provider(&lab);
    run(
        &p,
        &format!("{{taint: {HEALTHY}, key: team, value: a, effect: NoSchedule}}"),
    )
    .await
    .ok();
    run(
        &p,
        &format!("{{taint: {HEALTHY}, key: other, value: x, effect: NoSchedule}}"),
    )
    .await
    .ok();
    run(
        &p,
        &format!("{{taint: {HEALTHY}, key: team, value: b, effect: NoSchedule}}"),
    )
    .await
    .ok();
    let node = lab.get("nodes", None, HEALTHY).unwrap();
    let taints = node["spec"]["taints"].as_array().unwrap();
    let team: Vec<_> = taints.iter().filter(|t| t["key"] == "team").collect();
    assert_eq!(team.len(), 1);
    assert_eq!(team[0]["value"], "b");
    assert!(taints.iter().any(|t| t["key"] == "other"));
}

#[tokio::test]
async fn out_of_service_taint_frees_the_lost_nodes_pods_in_the_lab() {
    let lab = seed();
    let p = provider(&lab);
    run(
        &p,
        &format!("{{taint: {LOST}, key: node.kubernetes.io/out-of-service, value: nodeshutdown, effect: NoExecute}}"),
    )
    .await
    .ok();
    lab.advance(std::time::Duration::from_secs(5));
    assert!(
        lab.get("pods", Some("prod"), OLD_HUB).is_none(),
        "PodGC force-deletes the old hub"
    );
}

// ---- delete -------------------------------------------------------------------

#[tokio::test]
async fn force_delete_removes_a_pod_on_a_lost_node_and_404_counts_as_done() {
    let lab = seed();
    let p = provider(&lab);
    let k =
        format!("{{delete: pods, name: {OLD_HUB}, namespace: prod, grace_period: 0, force: true}}");
    let ran = run(&p, &k).await;
    assert_eq!(ran.ok()["deleted"], json!([OLD_HUB]));
    assert_eq!(ran.ok()["already_gone"], json!([]));
    assert_eq!(ran.trace(), ["DELETE 200"]);
    assert_eq!(
        ran.calls[0].path,
        format!("/api/v1/namespaces/prod/pods/{OLD_HUB}")
    );
    assert_eq!(
        ran.calls[0].kubectl.as_deref(),
        Some(format!("kubectl delete pod {OLD_HUB} -n prod --grace-period=0 --force").as_str())
    );
    assert!(lab.get("pods", Some("prod"), OLD_HUB).is_none());

    let again = run(&p, &k).await;
    assert_eq!(again.ok()["deleted"], json!([]));
    assert_eq!(again.ok()["already_gone"], json!([OLD_HUB]));
    assert_eq!(again.trace(), ["DELETE 404"]);
}

#[tokio::test]
async fn a_plain_delete_leaves_a_pod_on_a_lost_node_terminating() {
    let lab = seed();
    let p = provider(&lab);
    let user = "jupyter-binder-2dexamples-2dr-2dq3x9a1";
    let ran = run(
        &p,
        &format!("{{delete: pods, name: {user}, namespace: prod}}"),
    )
    .await;
    assert_eq!(ran.ok()["deleted"], json!([user]));
    let pod = lab
        .get("pods", Some("prod"), user)
        .expect("the kubelet never confirms");
    assert!(pod["metadata"]["deletionTimestamp"].is_string());
}

#[tokio::test]
async fn delete_by_selector_and_where_deletes_only_the_matching_pods() {
    let lab = seed();
    let p = provider(&lab);
    let before = lab.list("pods", Some("prod")).len();
    let ran = run(
        &p,
        &format!("{{delete: pods, namespace: prod, selector: component=singleuser-server, where: \"pod.spec.nodeName == '{LOST}'\", grace_period: 0, force: true}}"),
    )
    .await;
    let deleted = strs(&ran.ok()["deleted"]);
    assert_eq!(deleted, ["jupyter-binder-2dexamples-2dr-2dq3x9a1"]);
    assert_eq!(ran.trace(), ["GET 200", "DELETE 200"]);
    assert_eq!(lab.list("pods", Some("prod")).len(), before - 1);
    assert!(
        lab.get("pods", Some("prod"), OLD_HUB).is_some(),
        "not selected"
    );
}

#[tokio::test]
async fn dry_run_asks_the_server_and_changes_nothing() {
    let lab = seed();
    let p = provider(&lab);
    let mut cx = ExecCtx::new(json!({}));
    cx.dry_run = true;
    let ran = run_with(
        &p,
        &format!(
            "{{delete: pods, name: {OLD_HUB}, namespace: prod, grace_period: 0, force: true}}"
        ),
        cx,
    )
    .await;
    assert_eq!(ran.ok()["dry_run"], true);
    assert!(
        ran.calls[0].path.ends_with("?dryRun=All"),
        "{}",
        ran.calls[0].path
    );
    assert!(
        ran.calls[0]
            .kubectl
            .as_deref()
            .unwrap()
            .ends_with("--dry-run=server")
    );
    assert!(lab.get("pods", Some("prod"), OLD_HUB).is_some());

    let mut cx = ExecCtx::new(json!({}));
    cx.dry_run = true;
    let ran = run_with(&p, &format!("{{cordon: {HEALTHY}}}"), cx).await;
    assert_eq!(ran.trace(), ["GET 200", "PATCH 200"]);
    assert!(ran.calls[1].path.contains("dryRun=All"));
    assert!(
        lab.get("nodes", None, HEALTHY).unwrap()["spec"]
            .get("unschedulable")
            .is_none()
    );
}

#[tokio::test]
async fn delete_by_name_with_where_deletes_only_when_the_condition_holds() {
    let lab = seed();
    let p = provider(&lab);
    let keep = run(
        &p,
        &format!("{{delete: pods, name: {NEW_HUB}, namespace: prod, where: \"pod.status.phase == 'Unknown'\", grace_period: 0, force: true}}"),
    )
    .await;
    assert_eq!(keep.ok()["deleted"], json!([]));
    assert!(lab.get("pods", Some("prod"), NEW_HUB).is_some());
    let gone = run(
        &p,
        "{delete: pods, name: nope, namespace: prod, where: \"true\", grace_period: 0, force: true}",
    )
    .await;
    assert_eq!(gone.ok()["already_gone"], json!(["nope"]));
}

#[tokio::test]
async fn the_namespace_comes_from_the_op_then_the_defaults_then_the_kubeconfig() {
    use runbook::providers::{Defaults, Provider};
    use runbook::runbook::model::OpRef;
    let lab = seed();
    let p = runbook::providers::kube::KubeProvider::new(lab.client(), "from-kubeconfig", 0.0);
    let get = op("{get: pods}");
    let with = |ns: Option<&str>| Defaults {
        namespace: ns.map(String::from),
        ..Default::default()
    };
    let ns_of =
        |d: &Defaults| p.resolve(OpRef::Kube(&get), &json!({}), d).unwrap().op["namespace"].clone();
    assert_eq!(ns_of(&with(None)), "from-kubeconfig");
    assert_eq!(ns_of(&with(Some(""))), "from-kubeconfig");
    assert_eq!(ns_of(&with(Some("prod"))), "prod");
    let own = op("{get: pods, namespace: kube-system}");
    let r = p
        .resolve(OpRef::Kube(&own), &json!({}), &with(Some("prod")))
        .unwrap();
    assert_eq!(r.op["namespace"], "kube-system");
}

#[tokio::test]
async fn delete_across_namespaces_names_objects_with_their_namespace() {
    let lab = seed();
    let p = provider(&lab);
    let ran = run(
        &p,
        &format!("{{delete: pods, all_namespaces: true, fields: spec.nodeName={LOST}, grace_period: 0, force: true}}"),
    )
    .await;
    let deleted = strs(&ran.ok()["deleted"]);
    assert!(deleted.contains(&format!("prod/{OLD_HUB}")), "{deleted:?}");
    assert!(ran.calls[0].path.starts_with("/api/v1/pods?fieldSelector="));
    assert!(lab.get("pods", Some("prod"), OLD_HUB).is_none());
}
