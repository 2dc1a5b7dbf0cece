//! A run belongs to one cluster (issue 14): `runbook run` records the kube target it
//! uses, `resume` refuses another cluster and an unreachable one (exit 2, the run left
//! as it was), shell steps get the run's KUBECONFIG, and a failed run is resumed with
//! `--retry-failed` without repeating what already ran. Two labs served over TCP play
//! the two clusters; their request logs are the proof of what reached each.

use std::path::{Path, PathBuf};

use runbook::journal::event::{Event, RunStatus};
use runbook::journal::reader;
use runbook::journal::state::RunState;
use runbook::lab::{self, Lab, LabServer};

use crate::support::cli::{Cli, Output};

const RUNBOOK: &str = r#"
version: 1
name: scale-down
title: Scale the binder and then the hub down
params:
  dir: { required: true }
steps:
  - action: Scale the binder to zero
    id: scale-binder
    gate: auto
    kube: { scale: deployments, name: binder, namespace: prod, replicas: 0 }
  - action: Note the kubeconfig a shell step sees
    id: note-kubeconfig
    gate: auto
    shell:
      argv: [sh, -c, 'printf %s "$KUBECONFIG" > "$1/kubeconfig-seen"; if test -e "$1/fail"; then echo "told to fail" >&2; exit 3; fi', sh, "{{params.dir}}"]
  - action: Scale the hub to zero
    id: scale-hub
    kube: { scale: deployments, name: hub, namespace: prod, replicas: 0 }
"#;

/// One lab served on loopback, with a kubeconfig file pointing at it.
struct Cluster {
    lab: Lab,
    kubeconfig: PathBuf,
    _server: LabServer,
}

impl Cluster {
    async fn start(dir: &Path, name: &str) -> Cluster {
        let lab = Lab::seed();
        lab.set_speed(0.0);
        let (addr, server) = lab.serve("127.0.0.1:0").await.expect("the lab listens");
        let kubeconfig = dir.join(format!("kubeconfig-{name}"));
        lab::write_kubeconfig(addr, &kubeconfig).expect("a writable temp dir");
        Cluster {
            lab,
            kubeconfig,
            _server: server,
        }
    }

    fn uid(&self) -> String {
        self.lab
            .get("namespaces", None, "kube-system")
            .and_then(|ns| ns["metadata"]["uid"].as_str().map(str::to_string))
            .expect("the lab serves a kube-system namespace with a uid")
    }

    /// Requests other than reads: what changed (or tried to change) this cluster.
    fn writes(&self) -> Vec<String> {
        self.lab
            .requests()
            .into_iter()
            .filter(|r| r.method != "GET")
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    fn replicas(&self, deployment: &str) -> i64 {
        self.lab
            .get("deployments", Some("prod"), deployment)
            .and_then(|d| d["spec"]["replicas"].as_i64())
            .expect("the deployment exists")
    }
}

struct World {
    dir: tempfile::TempDir,
    runbook: PathBuf,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("a temp dir");
        let runbook = dir.path().join("scale-down.yaml");
        std::fs::write(&runbook, RUNBOOK).expect("a writable temp dir");
        World { dir, runbook }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cli(&self) -> Cli {
        Cli::new()
            .state_dir(self.path("state"))
            .env_remove("KUBECONFIG")
            .env("RUNBOOK_OPERATOR", "ana")
    }

    fn start(&self, kubeconfig: &Path, extra: &[&str]) -> Cli {
        self.cli()
            .arg("run")
            .arg(&self.runbook)
            .args(["-p", &format!("dir={}", self.dir.path().display())])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(extra)
    }

    fn run_id(&self) -> String {
        let runs: Vec<String> = std::fs::read_dir(self.path("state/runs"))
            .expect("a runs folder")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(runs.len(), 1, "one run: {runs:?}");
        runs[0].clone()
    }

    fn journal(&self) -> Vec<Event> {
        let path = self
            .path("state/runs")
            .join(self.run_id())
            .join("journal.ndjson");
        reader::read(&path)
            .expect("a readable journal")
            .records
            .into_iter()
            .map(|r| r.event)
            .collect()
    }

    fn state(&self) -> RunState {
        let path = self
            .path("state/runs")
            .join(self.run_id())
            .join("journal.ndjson");
        let j = reader::read(&path).expect("a readable journal");
        RunState::from_records(&j.records).expect("a journal that folds")
    }
}

/// The binary runs on a blocking thread: the labs serve from this test's runtime.
async fn run(cli: Cli) -> Output {
    tokio::task::spawn_blocking(move || cli.run())
        .await
        .expect("the run's thread does not panic")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_paused_on_one_cluster_is_not_resumed_on_another() {
    let w = World::new();
    let a = Cluster::start(w.dir.path(), "a").await;
    let b = Cluster::start(w.dir.path(), "b").await;
    assert_ne!(a.uid(), b.uid(), "two labs are two clusters");

    let out = run(w.start(&a.kubeconfig, &[])).await;
    out.code(runbook::exit::PAUSED);
    assert_eq!(a.replicas("binder"), 0, "the first step ran on A");
    // The gate's plan names the cluster the action would touch.
    out.stderr_contains(format!("cluster uid {}", a.uid()));
    // The shell step saw the run's kubeconfig (the flag's file, absolute).
    let seen = std::fs::read_to_string(w.path("kubeconfig-seen")).expect("the shell step ran");
    assert_eq!(Path::new(&seen), a.kubeconfig);
    match &w.journal()[0] {
        Event::RunStarted {
            target: Some(t), ..
        } => {
            assert_eq!(t.cluster_uid.as_deref(), Some(a.uid().as_str()));
            assert_eq!(t.context.as_deref(), Some("runbook-lab"));
            assert_eq!(
                Path::new(t.kubeconfig.as_deref().unwrap_or("")),
                a.kubeconfig
            );
        }
        other => panic!("run_started records the target: {other:?}"),
    }
    let journaled = w.journal().len();

    // The next shell points at B: refused, nothing journaled, nothing written on B.
    let id = w.run_id();
    let refused = run(w.cli().env("KUBECONFIG", &b.kubeconfig).args([
        "resume",
        &id,
        "--approve",
        "scale-hub",
    ]))
    .await;
    refused.code(runbook::exit::USAGE);
    refused.stderr_contains(a.uid());
    refused.stderr_contains(b.uid());
    refused.stderr_contains(format!("--kubeconfig {}", a.kubeconfig.display()));
    assert_eq!(
        b.writes(),
        Vec::<String>::new(),
        "nothing reached B but reads"
    );
    assert_eq!(b.replicas("hub"), 1);
    assert_eq!(
        w.journal().len(),
        journaled,
        "a refused resume journals nothing"
    );
    assert_eq!(w.state().status, Some(RunStatus::Paused));

    // Pointed at the run's own cluster, it continues there.
    run(w
        .cli()
        .arg("resume")
        .arg(&id)
        .args(["--approve", "scale-hub", "--kubeconfig"])
        .arg(&a.kubeconfig))
    .await
    .success();
    assert_eq!(a.replicas("hub"), 0);
    assert_eq!(b.replicas("hub"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_without_a_reachable_cluster_exits_2_and_the_run_stays_paused() {
    let w = World::new();
    let a = Cluster::start(w.dir.path(), "a").await;
    run(w.start(&a.kubeconfig, &[]))
        .await
        .code(runbook::exit::PAUSED);
    let journaled = w.journal().len();

    // A port nothing listens on any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = closed.local_addr().expect("a bound address");
    drop(closed);
    let dead = w.path("kubeconfig-dead");
    lab::write_kubeconfig(addr, &dead).expect("a writable temp dir");

    let id = w.run_id();
    let out = run(w
        .cli()
        .arg("resume")
        .arg(&id)
        .args(["--approve", "scale-hub", "--kubeconfig"])
        .arg(&dead))
    .await;
    out.code(runbook::exit::USAGE);
    out.stderr_contains("cannot reach");
    assert_eq!(w.journal().len(), journaled, "nothing journaled");
    assert_eq!(w.state().status, Some(RunStatus::Paused));
    assert_eq!(a.replicas("hub"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_is_retried_from_the_failed_step_without_repeating_the_others() {
    let w = World::new();
    let a = Cluster::start(w.dir.path(), "a").await;
    std::fs::write(w.path("fail"), "").expect("a writable temp dir");
    run(w.start(&a.kubeconfig, &["--yes"]))
        .await
        .code(runbook::exit::FAILED);
    let binder_patches = |c: &Cluster| {
        c.writes()
            .iter()
            .filter(|r| r.contains("/deployments/binder"))
            .count()
    };
    assert_eq!(binder_patches(&a), 1);
    assert_eq!(a.replicas("hub"), 1, "the run stopped before the hub");

    let id = w.run_id();
    // Without the flag a failed run stays finished, and says how to retry.
    let plain = run(w
        .cli()
        .arg("resume")
        .arg(&id)
        .args(["--yes", "--kubeconfig"])
        .arg(&a.kubeconfig))
    .await;
    plain.code(runbook::exit::USAGE);
    plain.stderr_contains("--retry-failed");

    std::fs::remove_file(w.path("fail")).expect("the marker exists");
    run(w
        .cli()
        .arg("resume")
        .arg(&id)
        .args(["--retry-failed", "--yes", "--kubeconfig"])
        .arg(&a.kubeconfig))
    .await
    .success();
    assert_eq!(binder_patches(&a), 1, "the completed step was not repeated");
    assert_eq!(
        a.replicas("hub"),
        0,
        "the run went on past the retried step"
    );
    assert!(
        w.journal().iter().any(|e| matches!(
            e,
            Event::StepRetried { step, by, .. } if step == "note-kubeconfig" && by == "ana"
        )),
        "the retry is journaled"
    );
    assert_eq!(w.state().status, Some(RunStatus::Succeeded));

    // One postmortem tells the failure, the retry and the cluster.
    let pm = run(w.cli().args(["postmortem", &id])).await;
    pm.success();
    pm.stdout_contains("`note-kubeconfig` retried");
    pm.stdout_contains(format!("cluster uid {}", a.uid()));
    pm.stdout_contains("told to fail");
}

/// A kube check (so the run has a cluster) and a shell step that writes down the
/// environment it was given.
const ENV_RUNBOOK: &str = r#"
version: 1
name: shell-env
title: A shell step sees the run's cluster
params:
  dir: { required: true }
steps:
  - check: The binder exists
    id: binder
    kube: { get: deployments, name: binder, namespace: prod }
  - action: Write down the cluster the shell step sees
    id: note-env
    gate: auto
    shell:
      argv: [sh, -c, 'printf "%s\n%s\n" "$KUBECONFIG" "$RUNBOOK_KUBE_CONTEXT" > "$1/env-seen"', sh, "{{params.dir}}"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_step_sees_the_run_kubeconfig_and_context_and_runs_names_the_target() {
    let w = World::new();
    std::fs::write(&w.runbook, ENV_RUNBOOK).expect("a writable temp dir");
    let a = Cluster::start(w.dir.path(), "a").await;
    let out = run(w.start(&a.kubeconfig, &["--context", "runbook-lab"])).await;
    out.success();
    let seen = std::fs::read_to_string(w.path("env-seen")).expect("the shell step ran");
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines.len(), 2, "{seen:?}");
    assert_eq!(Path::new(lines[0]), a.kubeconfig, "KUBECONFIG");
    assert_eq!(lines[1], "runbook-lab", "RUNBOOK_KUBE_CONTEXT");

    // `runs` names the cluster of each run: context@server in the table, the whole
    // target (uid included) in JSON; `show` prints it too.
    let id = w.run_id();
    let table = run(w.cli().arg("runs")).await;
    table.success().stdout_contains("TARGET");
    let server = match &w.journal()[0] {
        Event::RunStarted {
            target: Some(t), ..
        } => t.server.clone(),
        other => panic!("run_started records the target: {other:?}"),
    };
    table.stdout_contains(format!("runbook-lab@{server}"));
    let json = run(w.cli().args(["runs", "-o", "json"])).await;
    let row: serde_json::Value =
        serde_json::from_str(json.stdout.trim()).expect("one JSON line per run");
    assert_eq!(row["target"]["cluster_uid"], a.uid().as_str());
    assert_eq!(row["target"]["context"], "runbook-lab");
    run(w.cli().args(["show", &id]))
        .await
        .success()
        .stdout_contains(format!(
            "target:    context runbook-lab, server {server}, cluster uid {}",
            a.uid()
        ));
}
