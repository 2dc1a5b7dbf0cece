//! `runbook run FILE --kubeconfig F --context C --namespace N` against the lab served
//! over TCP: the binary targets the cluster the way kubectl does and fixes it, and the
//! journal holds every API call with its kubectl line.

use std::path::Path;

use runbook::journal::event::{Event, RunStatus};
use runbook::journal::reader;
use runbook::lab::{self, Lab};

use crate::support::cli::Cli;

const RUNBOOK: &str = r#"
version: 1
name: lost-pods
title: Force-delete the pods stuck on lost nodes
steps:
  - check: Pods stuck on a lost node
    id: lost-pods
    kube:
      get: pods
      where: "pod.status.phase == 'Unknown' || (has(pod.status.reason) && pod.status.reason == 'NodeLost')"
    save: lost_pods
    expect: "size(lost_pods) > 0"
  - action: Force-delete them
    id: force-delete
    for_each: lost_pods
    kube: { delete: pods, name: "{{item.metadata.name}}", grace_period: 0, force: true }
    verify:
      kube:
        get: pods
        where: "pod.status.phase == 'Unknown' || (has(pod.status.reason) && pod.status.reason == 'NodeLost')"
      expect: "size(result) == 0"
      within: 20s
      every: 1s
"#;

fn lost(lab: &Lab) -> usize {
    lab.list("pods", Some("prod"))
        .into_iter()
        .filter(|p| p["status"]["phase"] == "Unknown" || p["status"]["reason"] == "NodeLost")
        .count()
}

fn journal_events(state: &Path) -> Vec<Event> {
    let runs = state.join("runs");
    let run = std::fs::read_dir(&runs)
        .expect("a run folder")
        .flatten()
        .next()
        .expect("one run");
    reader::read(&run.path().join("journal.ndjson"))
        .expect("a readable journal")
        .records
        .into_iter()
        .map(|r| r.event)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runbook_run_targets_the_kubeconfig_context_and_namespace() {
    let lab = Lab::seed();
    lab.set_speed(0.0);
    let stuck = lost(&lab);
    assert!(stuck >= 2);
    let (addr, server) = lab.serve("127.0.0.1:0").await.expect("the lab listens");
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    lab::write_kubeconfig(addr, &kc).unwrap();
    let rb = dir.path().join("lost-pods.yaml");
    std::fs::write(&rb, RUNBOOK).unwrap();
    let state = dir.path().join("state");

    let cli = Cli::new()
        .arg("run")
        .arg(&rb)
        .arg("--state-dir")
        .arg(&state)
        .arg("--kubeconfig")
        .arg(&kc)
        .args([
            "--context",
            "runbook-lab",
            "--namespace",
            "prod",
            "--yes",
            "-q",
        ]);
    // The lab serves from this runtime: the blocking run must not hold its thread.
    let out = tokio::task::spawn_blocking(move || cli.run())
        .await
        .expect("the run's thread does not panic");
    out.success();
    assert_eq!(lost(&lab), 0, "the stuck pods are gone");

    let events = journal_events(&state);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::RunFinished {
            status: RunStatus::Succeeded,
            ..
        }
    )));
    let deletes: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::OpFinished { scope, calls, .. }
                if scope.step == "force-delete" && !scope.verification =>
            {
                Some(calls.clone())
            }
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(deletes.len(), stuck);
    for c in &deletes {
        assert_eq!(c.method, "DELETE");
        assert_eq!(c.status, 200);
        assert!(
            c.path.starts_with("/api/v1/namespaces/prod/pods/"),
            "{}",
            c.path
        );
        let k = c.kubectl.as_deref().unwrap_or_default();
        assert!(
            k.starts_with("kubectl delete pod ")
                && k.ends_with(" -n prod --grace-period=0 --force"),
            "{k}"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kube_runbook_without_a_cluster_fails_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("lost-pods.yaml");
    std::fs::write(&rb, RUNBOOK).unwrap();
    let missing = dir.path().join("no-such-kubeconfig");
    let cli = Cli::new()
        .arg("run")
        .arg(&rb)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--kubeconfig")
        .arg(&missing)
        .args(["--yes", "-q"]);
    let out = tokio::task::spawn_blocking(move || cli.run())
        .await
        .expect("the run's thread does not panic");
    out.failure().stderr_contains(missing.display().to_string());
}

const LIST: &str = r#"
version: 1
name: list
title: List what the cluster has
steps:
  - check: Nodes
    id: nodes
    kube: { get: nodes }
    expect: "size(result) == 4"
  - check: Pods of the default namespace
    id: pods
    kube: { get: pods }
"#;

/// `KUBECONFIG`, as kubectl reads it, when no flag names a file: its context and that
/// context's namespace (`default`) are used. Through the binary, so the variable is
/// set for the child only (the tests of this binary share one environment).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runbook_run_reads_the_kubeconfig_named_by_the_environment() {
    let lab = Lab::seed();
    lab.set_speed(0.0);
    let (addr, server) = lab.serve("127.0.0.1:0").await.expect("the lab listens");
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    lab::write_kubeconfig(addr, &kc).unwrap();
    let rb = dir.path().join("list.yaml");
    std::fs::write(&rb, LIST).unwrap();

    for (i, context) in [None, Some("runbook-lab")].into_iter().enumerate() {
        let state = dir.path().join(format!("state-{i}"));
        let mut cli = Cli::new()
            .state_dir(&state)
            .arg("run")
            .arg(&rb)
            .args(["--yes", "-q"])
            .env("KUBECONFIG", &kc);
        if let Some(c) = context {
            cli = cli.args(["--context", c]);
        }
        let out = tokio::task::spawn_blocking(move || cli.run())
            .await
            .expect("the run's thread does not panic");
        out.success();
        let paths: Vec<String> = journal_events(&state)
            .iter()
            .filter_map(|e| match e {
                Event::OpFinished { scope, calls, .. } if scope.step == "pods" => {
                    Some(calls.iter().map(|c| c.path.clone()).collect::<Vec<_>>())
                }
                _ => None,
            })
            .flatten()
            .collect();
        assert!(
            paths
                .iter()
                .any(|p| p.starts_with("/api/v1/namespaces/default/pods")),
            "context {context:?}: {paths:?}"
        );
    }
    server.shutdown().await;
}
