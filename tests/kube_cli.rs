//! `runbook run FILE --kubeconfig F --context C --namespace N` against the lab served
//! over TCP: the binary targets the cluster the way kubectl does and fixes it, and the
//! journal holds every API call with its kubectl line.

use std::path::Path;
use std::process::{Command, Stdio};

use runbook::journal::event::{Event, RunStatus};
use runbook::journal::reader;
use runbook::lab::{self, Lab};

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

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
    cmd.arg("run")
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
        ])
        .env("USER", "ana")
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
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
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
    cmd.arg("run")
        .arg(&rb)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--kubeconfig")
        .arg(&missing)
        .args(["--yes", "-q"])
        .stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("the binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
}
