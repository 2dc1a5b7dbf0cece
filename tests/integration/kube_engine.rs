//! Runbooks with kube steps, run by the engine against the in-process lab: the
//! provider's results feed later steps, the plan shows the kubectl lines, and the
//! journal records every API call.

use std::sync::Arc;
use std::time::Duration;

use runbook::engine::{self, AutoApprover, EngineOpts, Printer, SystemClock};
use runbook::journal::event::{ApiCall, Event, RunStatus};
use runbook::journal::reader;
use runbook::lab::Lab;
use runbook::providers::Providers;
use runbook::providers::kube::KubeProvider;
use tokio_util::sync::CancellationToken;

const LOST: &str = "gke-prod-a-ssd-pool-32-134a959a-n2sk";

const FORCE_DELETE: &str = r#"
version: 1
name: lost-pods
title: Force-delete the pods stuck on lost nodes
params:
  namespace: { default: prod }
steps:
  - check: Pods stuck on a lost node
    id: lost-pods
    kube:
      get: pods
      namespace: "{{params.namespace}}"
      where: "pod.status.phase == 'Unknown' || (has(pod.status.reason) && pod.status.reason == 'NodeLost')"
    save: lost_pods
    expect: "size(lost_pods) > 0"
  - action: Cordon their nodes
    id: cordon
    for_each: lost_pods
    kube: { cordon: "{{item.spec.nodeName}}" }
    verify:
      kube: { get: nodes, where: "has(node.spec.unschedulable) && node.spec.unschedulable" }
      expect: "lost_pods.all(p, result.exists(n, n.metadata.name == p.spec.nodeName))"
      within: 10s
      every: 1s
  - action: Force-delete them
    id: force-delete
    for_each: lost_pods
    concurrency: 4
    kube: { delete: pods, name: "{{item.metadata.name}}", namespace: "{{item.metadata.namespace}}", grace_period: 0, force: true }
    verify:
      kube:
        get: pods
        namespace: "{{params.namespace}}"
        where: "pod.status.phase == 'Unknown' || (has(pod.status.reason) && pod.status.reason == 'NodeLost')"
      expect: "size(result) == 0"
      within: 10s
      every: 1s
"#;

struct Ran {
    status: RunStatus,
    events: Vec<Event>,
    output: String,
}

async fn run_on_lab(lab: &Lab, yaml: &str, dry_run: bool) -> Ran {
    let provider = KubeProvider::new(lab.client(), "default", 0.0)
        .with_poll_interval(Duration::from_millis(20));
    run_with_provider(provider, yaml, dry_run).await
}

async fn run_with_provider(provider: KubeProvider, yaml: &str, dry_run: bool) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rb.yaml");
    std::fs::write(&path, yaml).unwrap();
    let loaded = runbook::runbook::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let providers = Providers::empty().with("kube", Arc::new(provider));
    let (printer, out) = Printer::capture();
    let mut opts = EngineOpts::new("ana", Arc::new(printer));
    opts.dry_run = dry_run;
    let report = engine::run(
        &loaded,
        providers,
        Arc::new(AutoApprover::new("test")),
        Arc::new(SystemClock),
        &dir.path().join("state"),
        opts,
        CancellationToken::new(),
    )
    .await
    .expect("the run starts");
    let events = reader::read(&report.journal)
        .unwrap()
        .records
        .into_iter()
        .map(|r| r.event)
        .collect();
    let output = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
    Ran {
        status: report.status,
        events,
        output,
    }
}

fn calls_of(events: &[Event], step: &str) -> Vec<ApiCall> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::OpFinished { scope, calls, .. } if scope.step == step && !scope.verification => {
                Some(calls.clone())
            }
            _ => None,
        })
        .flatten()
        .collect()
}

fn lost(lab: &Lab) -> Vec<String> {
    lab.list("pods", Some("prod"))
        .into_iter()
        .filter(|p| p["status"]["phase"] == "Unknown" || p["status"]["reason"] == "NodeLost")
        .map(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn a_runbook_finds_cordons_and_force_deletes_the_lost_pods() {
    let lab = Lab::seed();
    lab.set_speed(0.0);
    let stuck = lost(&lab);
    assert!(
        stuck.len() >= 2,
        "the seed has pods stuck on lost nodes: {stuck:?}"
    );

    let ran = run_on_lab(&lab, FORCE_DELETE, false).await;
    assert_eq!(ran.status, RunStatus::Succeeded, "{}", ran.output);
    assert!(lost(&lab).is_empty());
    assert_eq!(
        lab.get("nodes", None, LOST).unwrap()["spec"]["unschedulable"],
        true
    );

    // The plan showed the kubectl line of every item.
    let planned: Vec<String> = ran
        .events
        .iter()
        .filter_map(|e| match e {
            Event::GateRequested { step, ops, .. } if step == "force-delete" => {
                Some(ops.iter().map(|o| o.display.clone()).collect::<Vec<_>>())
            }
            _ => None,
        })
        .flatten()
        .collect();
    for name in &stuck {
        assert!(
            planned.contains(&format!(
                "kubectl delete pod {name} -n prod --grace-period=0 --force"
            )),
            "{planned:?}"
        );
    }

    // The journal has one DELETE per pod, with its status and kubectl line.
    let deletes = calls_of(&ran.events, "force-delete");
    assert_eq!(deletes.len(), stuck.len());
    assert!(deletes.iter().all(|c| {
        c.method == "DELETE"
            && c.status == 200
            && c.kubectl
                .as_deref()
                .is_some_and(|k| k.ends_with("--grace-period=0 --force"))
    }));
    let reads = calls_of(&ran.events, "lost-pods");
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0].path, "/api/v1/namespaces/prod/pods?limit=500");
}

#[tokio::test]
async fn a_dry_run_reads_but_changes_nothing() {
    let lab = Lab::seed();
    lab.set_speed(0.0);
    let before = lost(&lab);
    let ran = run_on_lab(&lab, FORCE_DELETE, true).await;
    assert_eq!(lost(&lab), before);
    assert!(
        lab.get("nodes", None, LOST).unwrap()["spec"]
            .get("unschedulable")
            .is_none()
    );
    assert_eq!(
        calls_of(&ran.events, "lost-pods").len(),
        1,
        "{}",
        ran.output
    );
}

/// A node whose only `web` pod is guarded by a budget that allows no disruption.
const PDB_BLOCKED: &str = r#"
version: 1
name: pdb
start: "2026-01-01T00:00:00Z"
objects:
  - { apiVersion: v1, kind: Node, metadata: { name: n1 }, status: { conditions: [ { type: Ready, status: "True" } ] } }
  - apiVersion: policy/v1
    kind: PodDisruptionBudget
    metadata: { name: web-budget, namespace: prod }
    spec: { minAvailable: 1, selector: { matchLabels: { app: web } } }
  - apiVersion: v1
    kind: Pod
    metadata: { name: web-1, namespace: prod, labels: { app: web }, ownerReferences: [ { apiVersion: apps/v1, kind: ReplicaSet, name: web, controller: true } ] }
    spec: { nodeName: n1, containers: [ { name: web, image: web } ] }
    status: { phase: Running, conditions: [ { type: Ready, status: "True" } ] }
"#;

const DRAIN_N1: &str = r#"
version: 1
name: drain
title: Drain n1
steps:
  - action: Drain n1
    id: drain
    timeout: 1s
    kube: { drain: n1 }
"#;

#[tokio::test]
async fn a_drain_step_held_by_a_pdb_journals_every_attempt_and_fails_at_its_timeout() {
    let lab = Lab::from_scenario_str(PDB_BLOCKED).unwrap();
    lab.set_speed(0.0);
    let provider = KubeProvider::new(lab.client(), "default", 0.0)
        .with_poll_interval(Duration::from_millis(20))
        .with_eviction_retry(Duration::from_millis(100));
    let ran = run_with_provider(provider, DRAIN_N1, false).await;
    assert_eq!(ran.status, RunStatus::Failed, "{}", ran.output);
    let evictions: Vec<ApiCall> = calls_of(&ran.events, "drain")
        .into_iter()
        .filter(|c| c.path == "/api/v1/namespaces/prod/pods/web-1/eviction")
        .collect();
    assert!(evictions.len() >= 3, "{evictions:?}");
    assert!(
        evictions
            .iter()
            .all(|c| c.method == "POST" && c.status == 429)
    );
    let errors: Vec<String> = ran
        .events
        .iter()
        .filter_map(|e| match e {
            Event::OpFinished { scope, error, .. } if scope.step == "drain" => error.clone(),
            _ => None,
        })
        .collect();
    assert!(
        errors.iter().any(
            |e| e.contains(r#"pods/"web-1" -n "prod": global timeout reached: 1s"#)
                && e.contains("The disruption budget web-budget needs 1 healthy pods")
        ),
        "{errors:?}"
    );
    assert!(lab.get("pods", Some("prod"), "web-1").is_some());
}
