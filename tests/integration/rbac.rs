//! Issue 20, least privilege: `runbook rbac` prints the Role and ClusterRole a
//! runbook needs from its kube verbs and kinds, and the lab, loaded with exactly
//! those (and a ServiceAccount token bound to them), lets the runbook run with that
//! token and refuses (403 Forbidden) a runbook that needs more.

use std::path::Path;

use runbook::journal::event::Event;
use runbook::lab::Lab;
use serde_json::Value;

use crate::support::cli::Cli;

const TOKEN: &str = "tok-runbook-sa";

/// Cordon the lost pods' nodes and force-delete the pods: the seed's fix.
const FIX: &str = r#"version: 1
name: lost-pods
title: Cordon the lost nodes and force-delete their pods
kube: { namespace: prod }
steps:
  - check: Pods stuck on a lost node
    id: lost-pods
    kube:
      get: pods
      where: "pod.status.phase == 'Unknown' || (has(pod.status.reason) && pod.status.reason == 'NodeLost')"
    save: lost_pods
    expect: "size(lost_pods) > 0"
  - action: Cordon their nodes
    id: cordon
    for_each: lost_pods
    kube: { cordon: "{{item.spec.nodeName}}" }
  - action: Force-delete them
    id: force-delete
    for_each: lost_pods
    kube: { delete: pods, name: "{{item.metadata.name}}", grace_period: 0, force: true }
"#;

/// Needs to read claims too, which the Role above does not allow.
const MORE: &str = r#"version: 1
name: needs-more
title: Read the claims
kube: { namespace: prod }
steps:
  - check: The claims
    id: claims
    kube: { get: persistentvolumeclaims }
"#;

fn journal(state: &Path) -> Vec<Event> {
    crate::support::only_run_events(state)
}

fn lost(lab: &Lab) -> usize {
    lab.list("pods", Some("prod"))
        .into_iter()
        .filter(|p| p["status"]["phase"] == "Unknown" || p["status"]["reason"] == "NodeLost")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printed_role_is_enough_for_its_runbook_and_the_lab_refuses_anything_more() {
    let dir = tempfile::tempdir().unwrap();
    let fix = dir.path().join("fix.yaml");
    std::fs::write(&fix, FIX).unwrap();
    let printed = Cli::new()
        .args([
            "rbac",
            fix.to_str().unwrap(),
            "--service-account",
            "runbook:runbook",
        ])
        .run();
    printed.success();
    let yaml = printed.stdout.clone();
    // Exactly nodes get/list/patch and pods get/list/delete.
    assert!(
        yaml.contains(
            "kind: Role\nmetadata:\n  name: \"runbook\"\n  namespace: \"prod\"\nrules:\n  - apiGroups: [\"\"]\n    resources: [\"pods\"]\n    verbs: [\"delete\", \"get\", \"list\"]\n---\n"
        ),
        "{yaml}"
    );
    assert!(
        yaml.contains(
            "kind: ClusterRole\nmetadata:\n  name: \"runbook\"\nrules:\n  - apiGroups: [\"\"]\n    resources: [\"nodes\"]\n    verbs: [\"get\", \"list\", \"patch\"]\n---\n"
        ),
        "{yaml}"
    );
    assert_eq!(yaml.matches("rules:").count(), 2);
    assert_eq!(yaml.matches("  - apiGroups").count(), 2);

    // The lab, loaded with the seed and exactly those objects, bound to the token.
    let objects: Vec<Value> = yaml
        .split("---\n")
        .map(|doc| serde_saphyr::from_str(doc).expect("each document is YAML"))
        .collect();
    assert_eq!(objects.len(), 4, "Role, ClusterRole and their bindings");
    let seed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/hub-pvc-locked.scenario.yaml"),
    )
    .unwrap();
    let rbac = serde_json::json!({
        "tokens": { TOKEN: "system:serviceaccount:runbook:runbook" },
        "objects": objects,
    });
    let scenario = format!("{seed}\nrbac: {rbac}\n");
    let lab = Lab::from_scenario_str(&scenario).expect("the scenario with rbac loads");
    lab.set_speed(0.0);
    let stuck = lost(&lab);
    assert!(stuck >= 2);
    let (addr, server) = lab.serve("127.0.0.1:0").await.unwrap();
    let kc = dir.path().join("kubeconfig");
    std::fs::write(
        &kc,
        runbook::lab::kubeconfig_yaml(addr).replace("lab-dummy-token", TOKEN),
    )
    .unwrap();

    let state = dir.path().join("state");
    let cli = Cli::new()
        .state_dir(&state)
        .args(["run", fix.to_str().unwrap(), "--yes", "-q", "--kubeconfig"])
        .arg(&kc);
    let out = tokio::task::spawn_blocking(move || cli.run())
        .await
        .unwrap();
    out.success();
    assert_eq!(lost(&lab), 0, "the fix ran with the least-privilege token");

    let more = dir.path().join("more.yaml");
    std::fs::write(&more, MORE).unwrap();
    let state2 = dir.path().join("state2");
    let cli = Cli::new()
        .state_dir(&state2)
        .args(["run", more.to_str().unwrap(), "--yes", "-q", "--kubeconfig"])
        .arg(&kc);
    let out = tokio::task::spawn_blocking(move || cli.run())
        .await
        .unwrap();
    out.failure();
    let refused = journal(&state2).iter().any(|e| {
        serde_json::to_string(e).unwrap().contains(
            "persistentvolumeclaims is forbidden: User \\\"system:serviceaccount:runbook:runbook\\\" cannot list resource \\\"persistentvolumeclaims\\\" in API group \\\"\\\" in the namespace \\\"prod\\\"",
        )
    });
    assert!(refused, "{:#?}\n{}", journal(&state2), out.stderr);
    // An unknown token is not anybody.
    let bad = dir.path().join("bad-kubeconfig");
    std::fs::write(
        &bad,
        runbook::lab::kubeconfig_yaml(addr).replace("lab-dummy-token", "who"),
    )
    .unwrap();
    let state3 = dir.path().join("state3");
    let cli = Cli::new()
        .state_dir(&state3)
        .args(["run", more.to_str().unwrap(), "--yes", "-q", "--kubeconfig"])
        .arg(&bad);
    let out = tokio::task::spawn_blocking(move || cli.run())
        .await
        .unwrap();
    out.failure();
    server.shutdown().await;
}
