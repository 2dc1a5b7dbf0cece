//! Undo (issue 19): an action's `undo:` runs through `runbook undo RUN [STEP]` (or the
//! runbook's `on_failure: undo`), newest action first, each behind its own gate,
//! journaled as `undo_started`/`undo_finished`/`undo_skipped`. Everything through the
//! binary against a lab served on loopback: the lab's state and its request log are
//! the proof of what was undone, and in which order.

use std::path::PathBuf;

use runbook::journal::event::{Decision, Event, Outcome};
use runbook::journal::reader;
use runbook::lab::{self, Lab, LabServer};

use crate::support::cli::{Cli, Output};

/// Three nodes of the seed cluster.
const A: &str = "gke-prod-a-ssd-pool-32-134a959a-n2sk";
const B: &str = "gke-prod-a-ssd-pool-32-134a959a-6hmq";
const C: &str = "gke-prod-a-ssd-pool-32-134a959a-1j33";

/// A drain cut short: cordon four nodes one at a time (the third does not exist, so
/// the step fails with three cordoned), then delete their pods (never reached).
fn half_done_drain(extra: &str) -> String {
    format!(
        r#"
version: 1
name: drain
title: Drain the nodes
{extra}
steps:
  - action: Cordon the nodes
    id: cordon
    for_each: "['{A}', '{B}', 'gone-0', '{C}']"
    concurrency: 1
    kube: {{ cordon: "{{{{item}}}}" }}
    undo: {{ title: Uncordon the nodes, kube: {{ uncordon: "{{{{item}}}}" }} }}
  - action: Delete the pods on them
    id: delete-pods
    kube: {{ delete: pods, namespace: prod, fields: "spec.nodeName={A}" }}
"#
    )
}

/// Two cordons with an undo and a scale without one, then a step that fails.
fn three_actions() -> String {
    format!(
        r#"
version: 1
name: three
title: Three actions, then a failure
steps:
  - action: Cordon A
    id: cordon-a
    kube: {{ cordon: "{A}" }}
    undo: {{ kube: {{ uncordon: "{A}" }} }}
  - action: Scale the hub down
    id: scale-hub
    kube: {{ scale: deployments, name: hub, namespace: prod, replicas: 0 }}
  - action: Cordon B
    id: cordon-b
    kube: {{ cordon: "{B}" }}
    undo: {{ kube: {{ uncordon: "{B}" }} }}
  - action: Fail
    id: fail
    shell: {{ argv: [sh, -c, "exit 1"] }}
"#
    )
}

struct World {
    dir: tempfile::TempDir,
    lab: Lab,
    kubeconfig: PathBuf,
    _server: LabServer,
}

impl World {
    async fn new(runbook: &str) -> World {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join("rb.yaml"), runbook).expect("a writable temp dir");
        let lab = Lab::seed();
        lab.set_speed(0.0);
        let (addr, server) = lab.serve("127.0.0.1:0").await.expect("the lab listens");
        let kubeconfig = dir.path().join("kubeconfig");
        lab::write_kubeconfig(addr, &kubeconfig).expect("a writable temp dir");
        World {
            dir,
            lab,
            kubeconfig,
            _server: server,
        }
    }

    fn cli(&self) -> Cli {
        Cli::new()
            .state_dir(self.dir.path().join("state"))
            .env_remove("KUBECONFIG")
            .env("RUNBOOK_OPERATOR", "ana")
    }

    fn start(&self, extra: &[&str]) -> Cli {
        self.cli()
            .arg("run")
            .arg(self.dir.path().join("rb.yaml"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(extra)
    }

    fn undo(&self, extra: &[&str]) -> Cli {
        self.cli()
            .args(["undo", "last", "--kubeconfig"])
            .arg(&self.kubeconfig)
            .args(extra)
    }

    fn events(&self) -> Vec<Event> {
        let runs = self.dir.path().join("state/runs");
        let run = std::fs::read_dir(&runs)
            .expect("a runs folder")
            .flatten()
            .next()
            .expect("one run");
        reader::read(&run.path().join("journal.ndjson"))
            .map(|j| j.records.into_iter().map(|r| r.event).collect())
            .expect("a readable journal")
    }

    /// The undo events, as `started STEP`, `finished STEP OUTCOME`, `skipped STEP`.
    fn undo_events(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::UndoStarted { step, .. } => Some(format!("started {step}")),
                Event::UndoFinished { step, outcome, .. } => {
                    Some(format!("finished {step} {outcome:?}"))
                }
                Event::UndoSkipped { step, .. } => Some(format!("skipped {step}")),
                _ => None,
            })
            .collect()
    }

    fn cordoned(&self, node: &str) -> bool {
        self.lab
            .get("nodes", None, node)
            .is_some_and(|n| n["spec"]["unschedulable"] == true)
    }

    /// The nodes the lab was asked to change, in order (`PATCH /api/v1/nodes/X`).
    fn node_patches(&self) -> Vec<String> {
        self.lab
            .requests()
            .into_iter()
            .filter(|r| r.method == "PATCH" && r.path.starts_with("/api/v1/nodes/"))
            .filter_map(|r| r.path.rsplit('/').next().map(str::to_owned))
            .collect()
    }
}

async fn run(cli: Cli) -> Output {
    tokio::task::spawn_blocking(move || cli.run())
        .await
        .expect("the run's thread does not panic")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_after_a_half_done_drain_uncordons_the_nodes_that_were_cordoned() {
    let w = World::new(&half_done_drain("")).await;
    run(w.start(&["--yes"])).await.code(runbook::exit::FAILED);
    assert!(w.cordoned(A) && w.cordoned(B) && w.cordoned(C));
    let before = w.node_patches().len();

    run(w.undo(&["--yes"]))
        .await
        .success()
        .stderr_contains("undo cordon: Uncordon the nodes (3 item(s))")
        .stderr_contains("undid 3 item(s)");
    assert!(
        !w.cordoned(A) && !w.cordoned(B) && !w.cordoned(C),
        "every node the drain cordoned takes pods again"
    );
    let undone: Vec<String> = w.node_patches().split_off(before);
    assert_eq!(
        undone,
        vec![A, B, C],
        "one uncordon per cordoned node, none for the missing one"
    );
    let events = w.events();
    let started = events.iter().position(|e| {
        matches!(
            e,
            Event::UndoStarted { step, items, .. } if step == "cordon" && *items == vec![0, 1, 3]
        )
    });
    let first_op = events.iter().position(|e| {
        matches!(
            e,
            Event::OpStarted { op, .. } if op.scope.rung.as_deref() == Some("cordon.undo")
        )
    });
    assert!(
        started.is_some() && started < first_op,
        "the undo's start is journaled before any of its operations: {started:?} {first_op:?}"
    );

    // Undoing again does nothing twice: no request, no new undo.
    let events = w.undo_events();
    let journaled = w.events().len();
    run(w.undo(&["--yes"]))
        .await
        .success()
        .stderr_contains("nothing left to undo");
    assert_eq!(w.events().len(), journaled, "nothing journaled either");
    assert_eq!(w.node_patches().len(), before + 3, "nothing sent again");
    assert_eq!(w.undo_events(), events, "nothing undone twice");

    // `runbook show` and the postmortem tell it.
    run(w.cli().args(["show", "last"]))
        .await
        .success()
        .stdout_contains("undo");
    run(w.cli().args(["postmortem", "last"]))
        .await
        .success()
        .stdout_contains("Undo: Uncordon the nodes")
        .stdout_contains("Undone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_runs_newest_first_and_names_the_action_without_undo() {
    let w = World::new(&three_actions()).await;
    run(w.start(&["--yes"])).await.code(runbook::exit::FAILED);
    let before = w.node_patches().len();
    run(w.undo(&["--yes"]))
        .await
        .success()
        .stderr_contains("`scale-hub` has no `undo:` in the runbook");
    assert_eq!(
        w.undo_events(),
        vec![
            "started cordon-b",
            "finished cordon-b Ok",
            "skipped scale-hub",
            "started cordon-a",
            "finished cordon-a Ok",
        ]
    );
    assert_eq!(
        w.node_patches().split_off(before),
        vec![B, A],
        "B (cordoned last) first"
    );
    assert!(!w.cordoned(A) && !w.cordoned(B));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_of_one_step_undoes_only_that_step_and_names_a_step_it_cannot_undo() {
    let w = World::new(&three_actions()).await;
    run(w.start(&["--yes"])).await.code(runbook::exit::FAILED);
    run(w.undo(&["cordon-a", "--yes"])).await.success();
    assert!(!w.cordoned(A), "cordon-a undone");
    assert!(w.cordoned(B), "cordon-b left as it was");
    run(w.undo(&["nosuch", "--yes"]))
        .await
        .code(runbook::exit::USAGE)
        .stderr_contains("`nosuch` is not a step of runbook `three`");
    run(w.undo(&["fail", "--yes"]))
        .await
        .code(runbook::exit::USAGE)
        .stderr_contains("action `fail` completed nothing in this run");
    assert!(w.cordoned(B), "a refused undo changes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_undo_gate_stops_undoing_and_is_journaled() {
    let w = World::new(&three_actions()).await;
    run(w.start(&["--yes"])).await.code(runbook::exit::FAILED);
    let before = w.node_patches().len();
    // Nobody answers here: the undo waits at its gate (exit 3).
    run(w.undo(&[]))
        .await
        .code(runbook::exit::PAUSED)
        .stderr_contains("runbook undo")
        .stderr_contains("--approve cordon-b.undo");
    run(w.cli().args([
        "approve",
        "last",
        "cordon-b.undo",
        "--decline",
        "--by",
        "bob",
    ]))
    .await
    .success();
    run(w.undo(&[]))
        .await
        .code(runbook::exit::ABORTED)
        .stderr_contains("gate declined by bob");
    assert_eq!(w.node_patches().len(), before, "nothing was uncordoned");
    assert!(w.cordoned(A) && w.cordoned(B));
    assert!(w.events().iter().any(|e| matches!(
        e,
        Event::GateDecided { step, rung: Some(r), decision: Decision::Declined, by, .. }
            if step == "cordon-b" && r == "cordon-b.undo" && by == "bob"
    )));
    assert_eq!(
        w.undo_events().last().map(String::as_str),
        Some("finished cordon-b Aborted")
    );
    assert!(
        !w.undo_events().iter().any(|e| e.contains("cordon-a")),
        "the undos after a declined one do not run: {:?}",
        w.undo_events()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failure_undo_undoes_a_failed_run_behind_the_undo_gate() {
    // `gate: auto` on the undo: undone unattended when the run fails.
    let w = World::new(&half_done_drain("on_failure: undo").replace(
        "undo: { title: Uncordon the nodes,",
        "undo: { gate: auto, title: Uncordon the nodes,",
    ))
    .await;
    run(w.start(&["--approve", "cordon"]))
        .await
        .code(runbook::exit::FAILED)
        .stderr_contains("undid 3 item(s)");
    assert!(!w.cordoned(A) && !w.cordoned(B) && !w.cordoned(C));

    // Without `gate: auto` the undo asks: approving only the action pauses there,
    // and `resume` continues the undo (never the run's steps).
    let w = World::new(&half_done_drain("on_failure: undo")).await;
    run(w.start(&["--approve", "cordon"]))
        .await
        .code(runbook::exit::PAUSED)
        .stderr_contains("--approve cordon.undo");
    assert!(w.cordoned(A), "nothing undone without an approval");
    run(w
        .cli()
        .args(["resume", "last", "--approve", "cordon.undo", "--kubeconfig"])
        .arg(&w.kubeconfig))
    .await
    .success();
    assert!(!w.cordoned(A) && !w.cordoned(B) && !w.cordoned(C));
    // The run ends as it had when its undo began: failed, not paused.
    run(w.cli().args(["show", "last"]))
        .await
        .success()
        .stdout_contains("status:    failed")
        .stdout_contains("undo:      cordon: undone — undid 3 item(s)");
    assert!(
        !w.events()
            .iter()
            .any(|e| matches!(e, Event::StepStarted { step, .. } if step == "delete-pods")),
        "the step after the failure never ran"
    );
    assert!(w.events().iter().any(|e| matches!(
        e,
        Event::UndoFinished { step, outcome: Outcome::Ok, .. } if step == "cordon"
    )));
}

#[test]
fn lint_rejects_undo_on_a_read_only_step_and_unknown_keys_inside_undo() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("rb.yaml");
    std::fs::write(
        &path,
        r#"version: 1
name: bad-undo
title: Undo where there is nothing to undo
on_failure: rollback
steps:
  - check: The nodes
    id: nodes
    kube: { get: nodes }
    undo: { kube: { uncordon: x } }
  - action: Read the pods
    id: pods
    kube: { get: pods }
    undo: { kube: { uncordon: x } }
  - action: Cordon
    id: cordon
    kube: { cordon: x }
    undo: { kube: { get: nodes }, retry: 3 }
"#,
    )
    .expect("a writable temp dir");
    Cli::new()
        .arg("lint")
        .arg(&path)
        .run()
        .failure()
        .stdout_contains("rb.yaml:4:13")
        .stdout_contains("the runbook's `on_failure` must be `stop` or `undo`, found `rollback`")
        .stdout_contains("rb.yaml:9:11")
        .stdout_contains(
            "`undo` compensates what an action changed; a check step changes nothing to undo",
        )
        .stdout_contains("rb.yaml:13:11")
        .stdout_contains("this action only reads (`kube: get`); there is nothing to undo")
        .stdout_contains("an undo changes something back, but `kube: get` only reads")
        .stdout_contains("unknown key `retry`");
}
