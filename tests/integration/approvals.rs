//! Decisions from another terminal (issue 19): `runbook approve RUN ID` appends a
//! digest-bound decision under the journal's lock; a run waiting at the gate
//! (`--wait-for-approval`) goes on within a second; a paused run finds it on resume;
//! `gate: { approvals: 2 }` needs two distinct people. Everything through the binary,
//! the kube plans against a lab served on loopback (its request log is the proof of
//! what was done, and when).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use runbook::journal::event::{ApprovalSource, Decision, Event, Outcome};
use runbook::journal::reader;
use runbook::lab::{self, Lab, LabServer};

use crate::support::cli::{Cli, Output};

/// Scale the hub to zero behind a two-person gate.
const QUORUM: &str = r#"
version: 1
name: two-person
title: Scale the hub down, approved by two people
steps:
  - action: Scale the hub to zero
    id: scale-hub
    gate: { approvals: 2 }
    kube: { scale: deployments, name: hub, namespace: prod, replicas: 0 }
"#;

/// The same action behind an ordinary gate.
const SINGLE: &str = r#"
version: 1
name: one-person
title: Scale the hub down
steps:
  - action: Scale the hub to zero
    id: scale-hub
    kube: { scale: deployments, name: hub, namespace: prod, replicas: 0 }
"#;

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
    }

    /// `runbook run rb.yaml` against the lab, as `who`.
    fn start(&self, who: &str, extra: &[&str]) -> Cli {
        self.cli()
            .args(["run", "--operator", who])
            .arg(self.dir.path().join("rb.yaml"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(extra)
    }

    /// `runbook resume last` against the lab.
    fn resume(&self, extra: &[&str]) -> Cli {
        self.cli()
            .args(["resume", "last", "--kubeconfig"])
            .arg(&self.kubeconfig)
            .args(extra)
    }

    fn approve(&self, who: &str, extra: &[&str]) -> Cli {
        self.cli()
            .args(["approve", "last", "scale-hub", "--by", who])
            .args(extra)
    }

    fn journal_path(&self) -> PathBuf {
        let runs = self.dir.path().join("state/runs");
        let run = std::fs::read_dir(&runs)
            .expect("a runs folder")
            .flatten()
            .next()
            .expect("one run");
        run.path().join("journal.ndjson")
    }

    /// The run's events; none before the run has a folder.
    fn events(&self) -> Vec<Event> {
        let started = std::fs::read_dir(self.dir.path().join("state/runs"))
            .ok()
            .and_then(|mut d| d.next())
            .is_some();
        if started {
            events(&self.journal_path())
        } else {
            Vec::new()
        }
    }

    /// (decision, by, source) of every gate decision journaled.
    fn decisions(&self) -> Vec<(Decision, String, ApprovalSource)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::GateDecided {
                    decision,
                    by,
                    source,
                    ..
                } => Some((decision, by, source)),
                _ => None,
            })
            .collect()
    }

    fn replicas(&self) -> i64 {
        self.lab
            .get("deployments", Some("prod"), "hub")
            .and_then(|d| d["spec"]["replicas"].as_i64())
            .expect("the hub deployment exists")
    }

    /// Wait (bounded) until the journal says the gate asked, and how many decisions
    /// it holds by then is `decisions`.
    fn wait_for_gate(&self, decisions: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = self
                .events()
                .iter()
                .any(|e| matches!(e, Event::GateRequested { .. }))
                && self.decisions().len() >= decisions;
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "the run never reached its gate");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn events(path: &Path) -> Vec<Event> {
    reader::read(path)
        .map(|j| j.records.into_iter().map(|r| r.event).collect())
        .unwrap_or_default()
}

async fn run(cli: Cli) -> Output {
    tokio::task::spawn_blocking(move || cli.run())
        .await
        .expect("the run's thread does not panic")
}

/// Wait for a spawned run to exit (bounded), with what it printed.
fn finish(child: std::process::Child) -> (std::process::ExitStatus, String) {
    let out = child.wait_with_output().expect("the run exits");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_person_approves_from_another_terminal_and_the_waiting_run_proceeds() {
    let w = World::new(QUORUM).await;
    let child = w.start("ana", &["--yes", "--wait-for-approval=2m"]).spawn();
    // ana's --yes is one approval; the run waits for a second person.
    w.wait_for_gate(1);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(w.replicas(), 1, "nothing scaled on one approval");
    assert_eq!(
        w.decisions(),
        vec![(Decision::Approved, "ana".into(), ApprovalSource::Yes)]
    );

    let approved = Instant::now();
    run(w.approve("bob", &[]))
        .await
        .success()
        .stderr_contains("2 of 2 approval(s) (ana, bob)")
        .stderr_contains("goes on within a second");
    let (status, stderr) = tokio::task::spawn_blocking(move || finish(child))
        .await
        .unwrap();
    let took = approved.elapsed();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        took < Duration::from_secs(5),
        "the waiting run noticed the approval within a poll (took {took:?})"
    );
    assert_eq!(w.replicas(), 0, "scaled after the second approval");
    assert_eq!(
        w.decisions(),
        vec![
            (Decision::Approved, "ana".into(), ApprovalSource::Yes),
            (Decision::Approved, "bob".into(), ApprovalSource::Remote),
        ]
    );
    // The postmortem names each approver.
    let pm = run(w.cli().args(["postmortem", "last"])).await;
    pm.success()
        .stdout_contains("ana")
        .stdout_contains("bob")
        .stdout_contains("runbook approve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_person_twice_counts_once_and_a_paused_run_resumes_with_two() {
    let w = World::new(QUORUM).await;
    // No terminal, no waiting: ana's approval is journaled and the run pauses.
    run(w.start("ana", &["--yes"]))
        .await
        .code(runbook::exit::PAUSED)
        .stderr_contains("waiting for 1 more approval(s)")
        .stderr_contains("runbook approve");
    assert_eq!(w.replicas(), 1);

    // ana again, from another terminal: refused, nothing journaled.
    run(w.approve("ana", &[]))
        .await
        .code(runbook::exit::USAGE)
        .stderr_contains("the same person counts once");
    assert_eq!(w.decisions().len(), 1);
    // ana resuming with --yes is still one person: the run pauses again.
    run(w.resume(&["--yes", "--operator", "ana"]))
        .await
        .code(runbook::exit::PAUSED);
    assert_eq!(
        w.replicas(),
        1,
        "one person, however often, is one approval"
    );

    run(w.approve("bob", &[]))
        .await
        .success()
        .stderr_contains("the run is paused");
    run(w.resume(&[])).await.success();
    assert_eq!(w.replicas(), 0);
    let people: Vec<String> = w
        .decisions()
        .into_iter()
        .filter(|(d, _, _)| *d == Decision::Approved)
        .map(|(_, by, _)| by)
        .collect();
    assert_eq!(people, ["ana", "bob"], "each person once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_for_another_plan_or_a_step_that_does_not_wait_is_refused() {
    let w = World::new(SINGLE).await;
    run(w.start("ana", &[])).await.code(runbook::exit::PAUSED);
    run(w.approve("bob", &["--digest", "0123456789abcdef"]))
        .await
        .code(runbook::exit::USAGE)
        .stderr_contains("the plan of `scale-hub` changed");
    run(w
        .cli()
        .args(["approve", "last", "no-such-step", "--by", "bob"]))
    .await
    .code(runbook::exit::USAGE)
    .stderr_contains("`no-such-step` is not waiting")
    .stderr_contains("waiting: scale-hub");
    assert!(w.decisions().is_empty(), "nothing journaled by a refusal");
    assert_eq!(w.replicas(), 1);

    // The digest the gate asks about is accepted, by prefix.
    let digest = w
        .events()
        .into_iter()
        .find_map(|e| match e {
            Event::GateRequested { digest, .. } => Some(digest),
            _ => None,
        })
        .expect("a gate request");
    run(w.approve("bob", &["--digest", &digest[..12]]))
        .await
        .success();
    // Answered: a second decision finds nothing waiting, and is told who decided.
    run(w.approve("cem", &[]))
        .await
        .code(runbook::exit::USAGE)
        .stderr_contains("was already decided: approved by bob (remote)");
    run(w.resume(&[])).await.success();
    assert_eq!(w.replicas(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_racing_to_answer_one_gate_journal_exactly_one_decision() {
    let w = World::new(SINGLE).await;
    run(w.start("ana", &[])).await.code(runbook::exit::PAUSED);
    for round in 0..3 {
        let racers: Vec<_> = ["bob", "cem", "dan", "eve"]
            .iter()
            .map(|who| w.approve(&format!("{who}{round}"), &[]).spawn())
            .collect();
        let codes: Vec<i32> = racers
            .into_iter()
            .map(|c| finish(c).0.code().unwrap_or(-1))
            .collect();
        let won = codes.iter().filter(|c| **c == 0).count();
        if round == 0 {
            assert_eq!(won, 1, "exactly one answer is accepted: {codes:?}");
        } else {
            assert_eq!(won, 0, "the gate no longer waits: {codes:?}");
        }
    }
    assert_eq!(w.decisions().len(), 1, "{:?}", w.decisions());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decline_from_another_terminal_aborts_the_waiting_run_and_nothing_runs() {
    let w = World::new(SINGLE).await;
    let child = w.start("ana", &["--wait-for-approval"]).spawn();
    w.wait_for_gate(0);
    run(w.approve("bob", &["--decline"])).await.success();
    let (status, stderr) = tokio::task::spawn_blocking(move || finish(child))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(runbook::exit::ABORTED), "{stderr}");
    assert!(stderr.contains("declined by bob"), "{stderr}");
    assert_eq!(w.replicas(), 1, "nothing scaled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_run_that_nobody_answers_pauses_at_its_timeout() {
    let w = World::new(SINGLE).await;
    let started = Instant::now();
    run(w.start("ana", &["--wait-for-approval=1s"]))
        .await
        .code(runbook::exit::PAUSED)
        .stderr_contains("--wait-for-approval");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(w.replicas(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lint_rejects_a_quorum_of_zero_and_unknown_gate_keys() {
    let w = World::new(
        r#"
version: 1
name: bad
title: Bad gates
steps:
  - action: A
    id: a
    gate: { approvals: 0 }
    shell: { argv: ["true"] }
  - action: B
    id: b
    gate: { approval: 2 }
    shell: { argv: ["true"] }
"#,
    )
    .await;
    run(w.cli().arg("lint").arg(w.dir.path().join("rb.yaml")))
        .await
        .failure()
        .stdout_contains("`approvals: 0` must be between 1 and 10")
        .stdout_contains("approval");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_step_is_confirmed_from_another_terminal_while_the_run_waits() {
    let w = World::new(
        r#"
version: 1
name: manual
title: Power off the node, then scale the hub down
steps:
  - manual: Power the node off from the cloud console
    id: power-off
  - action: Scale the hub to zero
    id: scale-hub
    gate: auto
    kube: { scale: deployments, name: hub, namespace: prod, replicas: 0 }
"#,
    )
    .await;
    let child = w.start("ana", &["--wait-for-approval=2m"]).spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !w
        .events()
        .iter()
        .any(|e| matches!(e, Event::ManualRequested { .. }))
    {
        assert!(Instant::now() < deadline, "the run never asked");
        std::thread::sleep(Duration::from_millis(50));
    }
    run(w
        .cli()
        .args(["approve", "last", "power-off", "--by", "bob"]))
    .await
    .success()
    .stderr_contains("confirmed the manual step `power-off`");
    let (status, stderr) = tokio::task::spawn_blocking(move || finish(child))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(w.replicas(), 0);
    let confirmations: Vec<String> = w
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::ManualConfirmed { by, .. } => Some(by),
            _ => None,
        })
        .collect();
    assert_eq!(confirmations, ["bob"], "confirmed once, by bob");

    // A paused manual step is confirmed on resume, not from another terminal.
    let w2 = World::new(
        r#"
version: 1
name: manual
title: Power off the node
steps:
  - manual: Power the node off from the cloud console
    id: power-off
"#,
    )
    .await;
    run(w2.start("ana", &[])).await.code(runbook::exit::PAUSED);
    run(w2
        .cli()
        .args(["approve", "last", "power-off", "--by", "bob"]))
    .await
    .code(runbook::exit::USAGE)
    .stderr_contains("--approve power-off");
}

/// A gate with `timeout:` and `on_timeout: WHAT`, waiting for an approval nobody gives.
fn timing_out(what: &str) -> String {
    format!(
        r#"
version: 1
name: timing-out
title: Scale the hub down unless nobody answers
steps:
  - action: Scale the hub to zero
    id: scale-hub
    gate: {{ timeout: 1s, on_timeout: {what} }}
    kube: {{ scale: deployments, name: hub, namespace: prod, replicas: 0 }}
  - action: Write that the run went on
    id: after
    gate: auto
    shell: {{ argv: [touch, went-on] }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_nobody_answers_expires_and_on_timeout_decides() {
    for (what, code, went_on) in [
        ("abort", runbook::exit::ABORTED, false),
        ("skip", runbook::exit::OK, true),
        ("escalate", runbook::exit::PAUSED, false),
    ] {
        let w = World::new(&timing_out(what)).await;
        let out = run(w
            .start("ana", &["--wait-for-approval=1m"])
            .current_dir(w.dir.path()))
        .await;
        out.code(code).stderr_contains("expired");
        assert_eq!(w.replicas(), 1, "{what}: nothing scaled");
        assert_eq!(
            w.dir.path().join("went-on").exists(),
            went_on,
            "{what}: the next step ran or not"
        );
        let asked: Vec<_> = w
            .decisions()
            .into_iter()
            .filter(|(_, _, source)| *source != ApprovalSource::Unattended)
            .collect();
        let expired: Vec<_> = w
            .decisions()
            .into_iter()
            .filter(|(d, _, _)| *d != Decision::Approved)
            .collect();
        assert!(
            asked.is_empty(),
            "{what}: nobody approved or declined: {asked:?}"
        );
        assert_eq!(
            expired,
            vec![(
                Decision::Expired,
                "runbook".into(),
                ApprovalSource::Unattended
            )],
            "{what}: journaled as expired, never approved or declined"
        );
        if what == "abort" {
            run(w.cli().args(["postmortem", "last"]))
                .await
                .success()
                .stdout_contains("expired");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_approval_no_longer_counts_and_is_asked_again() {
    let w = World::new(
        r#"
version: 1
name: expiring
title: Scale the hub down, two fresh approvals
steps:
  - action: Scale the hub to zero
    id: scale-hub
    gate: { approvals: 2, expires: 3s }
    kube: { scale: deployments, name: hub, namespace: prod, replicas: 0 }
"#,
    )
    .await;
    run(w.start("ana", &["--yes"]))
        .await
        .code(runbook::exit::PAUSED);
    std::thread::sleep(Duration::from_millis(3500));
    // ana's approval has expired: bob's is the only one that counts.
    run(w.approve("bob", &[]))
        .await
        .success()
        .stderr_contains("1 of 2 approval(s) (bob)");
    // Waiting on: bob's expires too before a second person comes.
    std::thread::sleep(Duration::from_millis(3500));
    run(w.resume(&[]))
        .await
        .code(runbook::exit::PAUSED)
        .stderr_contains("bob's approval")
        .stderr_contains("has expired");
    assert_eq!(w.replicas(), 1, "expired approvals opened nothing");
    // Two fresh approvals open it.
    run(w.approve("bob", &[])).await.success();
    run(w.resume(&["--yes"])).await.success();
    assert_eq!(w.replicas(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lint_rejects_on_timeout_without_timeout() {
    let w = World::new(
        r#"
version: 1
name: bad
title: Bad gate
steps:
  - action: A
    id: a
    gate: { on_timeout: skip }
    shell: { argv: ["true"] }
"#,
    )
    .await;
    run(w.cli().arg("lint").arg(w.dir.path().join("rb.yaml")))
        .await
        .failure()
        .stdout_contains("but this gate has no `timeout`");
}

/// Cordon every node of the seed cluster, behind a blast-radius limit of one.
fn limited(over: &str) -> String {
    format!(
        r#"
version: 1
name: limited
title: Cordon every node
steps:
  - check: Every node
    id: nodes
    kube: {{ get: nodes }}
    save: nodes
  - action: Cordon them
    id: cordon
    for_each: nodes
    limit: {{ max_targets: 1 }}
    {over}
    kube: {{ cordon: "{{{{item.metadata.name}}}}" }}
"#
    )
}

impl World {
    /// Requests other than reads: what changed (or tried to change) the lab.
    fn writes(&self) -> Vec<String> {
        self.lab
            .requests()
            .into_iter()
            .filter(|r| r.method != "GET")
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_over_its_limit_is_refused_before_anyone_is_asked() {
    let w = World::new(&limited("")).await;
    run(w.start("ana", &["--yes"]))
        .await
        .code(runbook::exit::FAILED)
        .stderr_contains("objects")
        .stderr_contains("the limit is 1");
    assert!(w.writes().is_empty(), "nothing changed: {:?}", w.writes());
    assert!(
        !w.events()
            .iter()
            .any(|e| matches!(e, Event::GateRequested { .. })),
        "nobody was asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_limit_explicit_lets_only_an_approval_naming_the_step_open_it() {
    let w = World::new(&limited("over_limit: explicit")).await;
    // --yes does not open it.
    run(w.start("ana", &["--yes"]))
        .await
        .code(runbook::exit::PAUSED)
        .stderr_contains("the limit is 1");
    assert!(w.writes().is_empty(), "nothing changed: {:?}", w.writes());
    run(w.resume(&["--approve", "cordon"])).await.success();
    assert!(
        w.writes()
            .iter()
            .any(|r| r.starts_with("PATCH /api/v1/nodes/")),
        "cordoned after the explicit approval: {:?}",
        w.writes()
    );
}

/// Ten cordons of nodes that do not exist: every one fails (404).
const FAILING_FAN_OUT: &str = r#"
version: 1
name: failing-fan-out
title: Cordon ten nodes that are not there
steps:
  - action: Cordon them one at a time
    id: cordon
    for_each: "['gone-0', 'gone-1', 'gone-2', 'gone-3', 'gone-4', 'gone-5', 'gone-6', 'gone-7', 'gone-8', 'gone-9']"
    concurrency: 1
    limit: { max_failures: 3 }
    kube: { cordon: "{{item}}" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_failures_stops_a_fan_out_and_the_rest_is_never_sent() {
    let w = World::new(FAILING_FAN_OUT).await;
    run(w.start("ana", &["--yes"]))
        .await
        .code(runbook::exit::FAILED)
        .stderr_contains("stopped after 3 failed items (`limit: { max_failures: 3 }`): 7 of 10 items were not started");
    let asked: Vec<String> = w
        .lab
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/nodes/gone-"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let items: std::collections::BTreeSet<&str> =
        asked.iter().filter_map(|r| r.rsplit('/').next()).collect();
    assert_eq!(
        items.len(),
        3,
        "the lab was asked about three nodes, not ten: {asked:?}"
    );
    // A share of the items: 20 % of 10 is 2.
    let w = World::new(&FAILING_FAN_OUT.replace("max_failures: 3", "max_failures: 20%")).await;
    run(w.start("ana", &["--yes"]))
        .await
        .code(runbook::exit::FAILED)
        .stderr_contains("8 of 10 items were not started");
}

/// Issue 18's pipelining: under `concurrency`, the next group's starts are journaled
/// (and synced) while the current group runs. When a failure limit stops the fan-out,
/// that group never runs: its starts are closed as skipped ("not started"), so the
/// journal holds no operation of unknown outcome, and the lab never hears of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_journaled_ahead_that_a_failure_limit_stops_is_closed_as_not_started() {
    let nodes: Vec<String> = (0..40).map(|i| format!("'gone-{i}'")).collect();
    let rb = FAILING_FAN_OUT
        .replace(
            "['gone-0', 'gone-1', 'gone-2', 'gone-3', 'gone-4', 'gone-5', 'gone-6', 'gone-7', 'gone-8', 'gone-9']",
            &format!("[{}]", nodes.join(", ")),
        )
        .replace("concurrency: 1", "concurrency: 4")
        .replace("max_failures: 3", "max_failures: 1");
    let w = World::new(&rb).await;
    // The first failure stops the fan-out: the other three of the first group were
    // already running (and fail too); the next four had been journaled ahead.
    run(w.start("ana", &["--yes"]))
        .await
        .code(runbook::exit::FAILED)
        .stderr_contains("stopped after 4 failed items (`limit: { max_failures: 1 }`): 36 of 40 items were not started");
    let ev = w.events();
    let started: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::OpStarted { op, .. } => op.scope.item,
            _ => None,
        })
        .collect();
    let finished: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::OpFinished {
                scope,
                outcome,
                error,
                ..
            } => Some((scope.item, *outcome, error.clone().unwrap_or_default())),
            _ => None,
        })
        .collect();
    // The first group of four ran and failed; the next four were journaled ahead.
    assert_eq!(started.len(), 8, "{ev:#?}");
    assert_eq!(finished.len(), 8, "every start is finished: {finished:?}");
    let skipped: Vec<_> = finished
        .iter()
        .filter(|(_, o, e)| *o == Outcome::Skipped && e.starts_with("not started"))
        .map(|(i, _, _)| *i)
        .collect();
    assert_eq!(
        skipped,
        vec![Some(4), Some(5), Some(6), Some(7)],
        "{finished:?}"
    );
    let asked: std::collections::BTreeSet<String> = w
        .lab
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/nodes/gone-"))
        .filter_map(|r| r.path.rsplit('/').next().map(str::to_owned))
        .collect();
    assert_eq!(
        asked.into_iter().collect::<Vec<_>>(),
        ["gone-0", "gone-1", "gone-2", "gone-3"],
        "the items closed as not started were never sent"
    );
}

#[test]
fn lint_rejects_a_bad_max_failures() {
    let dir = tempfile::tempdir().unwrap();
    for (bad, says) in [
        ("0", "`max_failures` is 0"),
        ("150%", "`max_failures` is \"150%\""),
        ("lots", "`max_failures` is \"lots\""),
    ] {
        let path = dir.path().join("rb.yaml");
        std::fs::write(
            &path,
            FAILING_FAN_OUT.replace("max_failures: 3", &format!("max_failures: {bad}")),
        )
        .unwrap();
        Cli::new()
            .args(["lint"])
            .arg(&path)
            .run()
            .code(runbook::exit::FAILED)
            .stdout_contains(says)
            .stdout_contains("rb.yaml:10:");
    }
}

const REQUIRES: &str = r#"
version: 1
name: requires
title: Scale the hub down once the node is powered off
params:
  powered_off: { default: "no" }
steps:
  - action: Scale the hub to zero
    id: scale-hub
    requires: "params.powered_off == 'yes'"
    kube: { scale: deployments, name: hub, namespace: prod, replicas: 0 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_never_runs_before_its_precondition_holds() {
    let w = World::new(REQUIRES).await;
    run(w.start("ana", &["--yes"]))
        .await
        .code(runbook::exit::FAILED)
        .stderr_contains("precondition does not hold");
    assert!(w.writes().is_empty(), "nothing changed: {:?}", w.writes());
    assert!(
        !w.events()
            .iter()
            .any(|e| matches!(e, Event::GateRequested { .. })),
        "nobody was asked"
    );

    let w = World::new(REQUIRES).await;
    run(w.start("ana", &["--yes", "-p", "powered_off=yes"]))
        .await
        .success();
    assert_eq!(w.replicas(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_precondition_blocks_a_heavy_rung_and_the_ladder_goes_on() {
    let w = World::new(
        r#"
version: 1
name: ladder
title: Free the hub
params:
  powered_off: { default: "no" }
steps:
  - action: Free the hub
    id: free
    escalate:
      - id: scale-hub
        title: Scale the hub to zero (only once the node is off)
        requires: "params.powered_off == 'yes'"
        kube: { scale: deployments, name: hub, namespace: prod, replicas: 0 }
      - id: ask
        title: Ask a person
        manual: Free it by hand
    verify:
      kube: { get: deployments, namespace: prod, name: hub }
      expect: "true"
      within: 1s
"#,
    )
    .await;
    run(w.start("ana", &["--yes", "--approve", "ask"]))
        .await
        .stderr_contains("scale-hub not run: its precondition does not hold");
    assert!(
        w.writes().is_empty(),
        "the heavy rung did nothing: {:?}",
        w.writes()
    );
    assert_eq!(w.replicas(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lint_rejects_a_precondition_naming_nothing_known() {
    let w = World::new(
        r#"
version: 1
name: bad
title: Bad precondition
steps:
  - action: A
    id: a
    requires: "node_powered_off"
    shell: { argv: ["true"] }
"#,
    )
    .await;
    run(w.cli().arg("lint").arg(w.dir.path().join("rb.yaml")))
        .await
        .failure()
        .stdout_contains("node_powered_off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lint_rejects_a_limit_without_targets_and_an_unattended_quorum() {
    let w = World::new(
        r#"
version: 1
name: bad
title: Bad limits
unattended: [two]
steps:
  - check: Nodes
    id: nodes
    kube: { get: nodes }
    limit: { max_targets: 3 }
  - action: A
    id: a
    over_limit: explicit
    shell: { argv: ["true"] }
  - action: Two people
    id: two
    gate: { approvals: 2 }
    shell: { argv: ["true"] }
"#,
    )
    .await;
    run(w.cli().arg("lint").arg(w.dir.path().join("rb.yaml")))
        .await
        .failure()
        .stdout_contains("only an action's plan has targets to limit")
        .stdout_contains("but this step has no `limit`")
        .stdout_contains("an unattended step asks nobody");
}

/// Delete the single-user pods among everything `app=jupyterhub` matches (the hub
/// pods too), under a share limit of `limit`.
fn fraction(limit: &str) -> String {
    format!(
        r#"
version: 1
name: fraction
title: Delete the user pods
steps:
  - action: Delete the user pods
    id: delete-users
    limit: {{ max_fraction: {limit} }}
    kube:
      delete: pods
      namespace: prod
      selector: app=jupyterhub
      where: "has(pod.metadata.labels.component) && pod.metadata.labels.component == 'singleuser-server'"
"#
    )
}

impl World {
    /// Every DELETE the lab was sent.
    fn deletes(&self) -> Vec<String> {
        self.writes()
            .into_iter()
            .filter(|w| w.starts_with("DELETE"))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_over_its_share_of_the_matched_set_is_refused_before_anyone_is_asked() {
    // The selector matches the 2 hub pods and the 3 user pods: 3 of 5 is 60 %.
    let w = World::new(&fraction("50%")).await;
    run(w.start("ana", &["--yes"]))
        .await
        .code(runbook::exit::FAILED)
        .stderr_contains("would act on 3 of the 5 objects its selector matches (60%")
        .stderr_contains("the limit is 50% (`limit: { max_fraction: 50% }`)");
    assert!(w.writes().is_empty(), "nothing changed: {:?}", w.writes());
    assert!(
        !w.events()
            .iter()
            .any(|e| matches!(e, Event::GateRequested { .. })),
        "nobody was asked"
    );
    // Within the share, the same plan runs: the three user pods, nothing else.
    let w = World::new(&fraction("60%")).await;
    run(w.start("ana", &["--yes"])).await.success();
    let deletes = w.deletes();
    assert_eq!(deletes.len(), 3, "the three user pods: {deletes:?}");
    assert!(
        deletes.iter().all(|d| d.contains("/pods/jupyter-")),
        "no hub pod was deleted: {deletes:?}"
    );
}

/// Cordon every Ready node, one at a time, keeping `floor` Ready and schedulable.
fn keeping(floor: u32) -> String {
    format!(
        r#"
version: 1
name: keeping
title: Cordon the healthy nodes
steps:
  - check: The Ready nodes
    id: nodes
    kube:
      get: nodes
      where: "has(node.status.conditions) && node.status.conditions.exists(c, c.type == 'Ready' && c.status == 'True')"
    save: nodes
  - action: Cordon them
    id: cordon
    for_each: nodes
    concurrency: 4
    keep: {{ ready_nodes: {floor} }}
    kube: {{ cordon: "{{{{item.metadata.name}}}}" }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_guard_stops_a_drain_before_the_last_healthy_node() {
    // The seed cluster has two Ready nodes: the first may go, the second is the last.
    let w = World::new(&keeping(1)).await;
    run(w.start("ana", &["--yes"]))
        .await
        .code(runbook::exit::FAILED)
        .stderr_contains("`keep: { ready_nodes: 1 }` stopped the step before item 1: 1 node is Ready and schedulable")
        .stderr_contains("1 of 2 items were not started");
    let patches: Vec<String> = w
        .writes()
        .into_iter()
        .filter(|r| r.starts_with("PATCH /api/v1/nodes/"))
        .collect();
    assert_eq!(patches.len(), 1, "one node cordoned, not both: {patches:?}");
    let schedulable = w
        .lab
        .list("nodes", None)
        .into_iter()
        .filter(|n| {
            n["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            }) && n["spec"]["unschedulable"] != true
        })
        .count();
    assert_eq!(schedulable, 1, "the last healthy node still takes pods");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_guard_on_a_workload_refuses_to_take_its_last_ready_replica() {
    let w = World::new(
        r#"
version: 1
name: keep-hub
title: Restart the hub pods
steps:
  - action: Delete the hub pods
    id: delete-hub
    keep: { ready_replicas: deployment/hub >= 1 }
    kube: { delete: pods, namespace: prod, selector: component=hub }
"#,
    )
    .await;
    run(w.start("ana", &["--yes"]))
        .await
        .code(runbook::exit::FAILED)
        .stderr_contains("`keep: { ready_replicas: deployment/hub >= 1 }` stopped the step before the operation: deployments/hub has")
        .stderr_contains("nothing was done");
    assert!(w.deletes().is_empty(), "nothing deleted: {:?}", w.deletes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lint_rejects_a_bad_fraction_and_keep() {
    let w = World::new(
        r#"
version: 1
name: bad
title: Bad guards
steps:
  - check: Nodes
    id: nodes
    kube: { get: nodes }
    keep: { ready_nodes: 2 }
  - action: A
    id: a
    limit: { max_fraction: 150% }
    kube: { delete: pods, namespace: prod, selector: app=x }
  - action: B
    id: b
    keep: { ready_replicas: "pods/hub >= 1" }
    kube: { delete: pods, namespace: prod, selector: app=x }
"#,
    )
    .await;
    run(w.cli().arg("lint").arg(w.dir.path().join("rb.yaml")))
        .await
        .failure()
        .stdout_contains("rb.yaml:9:")
        .stdout_contains("`keep` guards what a Kubernetes action takes away")
        .stdout_contains("`max_fraction` is \"150%\"")
        .stdout_contains("`ready_replicas` is \"pods/hub >= 1\"");
}

/// Scale the hub to zero after `hold` of a slow check, one run at a time.
fn locked(lock: &str, hold: u32) -> String {
    format!(
        r#"
version: 1
name: locked
title: Scale the hub down, one run at a time
lock: {lock}
kube: {{ namespace: prod }}
params:
  hold: {{ default: "{hold}" }}
steps:
  - check: Something slow
    id: slow
    shell: {{ argv: ["sleep", "{{{{params.hold}}}}"] }}
  - action: Scale the hub to zero
    id: scale-hub
    kube: {{ scale: deployments, name: hub, namespace: prod, replicas: 0 }}
"#
    )
}

impl World {
    /// The holder of the `runbook-lock-locked` Lease, "" when free, None when absent.
    fn lock_holder(&self) -> Option<String> {
        self.lab
            .get("leases", Some("prod"), "runbook-lock-locked")
            .map(|l| {
                l["spec"]["holderIdentity"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
    }

    /// Wait (bounded) until `who` holds the lock.
    fn wait_for_holder(&self, who: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.lock_holder().is_some_and(|h| h.starts_with(who)) {
            assert!(Instant::now() < deadline, "{who} never took the lock");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// PUTs and PATCHes of the hub's scale: how many runs acted.
    fn scalings(&self) -> usize {
        self.writes()
            .iter()
            .filter(|w| w.contains("/deployments/hub"))
            .count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_is_told_who_holds_the_lock_and_pauses_and_only_one_acts() {
    let w = World::new(&locked("{ scope: runbook }", 3)).await;
    let first = w.start("ana", &["--yes"]).spawn();
    w.wait_for_holder("ana");
    run(w.start("bob", &["--yes"]))
        .await
        .code(runbook::exit::PAUSED)
        .stderr_contains("lock `runbook-lock-locked` is held by ana (run ")
        .stderr_contains("nothing was done");
    let (status, stderr) = tokio::task::spawn_blocking(move || finish(first))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(w.scalings(), 1, "exactly one run scaled: {:?}", w.writes());
    assert_eq!(
        w.lock_holder().as_deref(),
        Some(""),
        "released at the end of the run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_waiting_for_the_lock_proceeds_when_it_is_released() {
    let w = World::new(&locked("{ wait: 2m }", 2)).await;
    let first = w.start("ana", &["--yes"]).spawn();
    w.wait_for_holder("ana");
    let second = run(w.start("bob", &["--yes"])).await;
    second
        .success()
        .stderr_contains("is held by ana (run ")
        .stderr_contains("waiting up to 2m");
    let (status, stderr) = tokio::task::spawn_blocking(move || finish(first))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(w.scalings(), 2, "one after the other: {:?}", w.writes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_whose_holder_was_killed_expires_and_the_next_run_takes_it() {
    let w = World::new(&locked("{ ttl: 2s, wait: 1m }", 120)).await;
    let mut first = w.start("ana", &["--yes"]).spawn();
    w.wait_for_holder("ana");
    first.kill().expect("SIGKILL the holder");
    let _ = first.wait();
    let killed = Instant::now();
    run(w.start("bob", &["--yes", "-p", "hold=0"]))
        .await
        .success()
        .stderr_contains("is held by ana (run ");
    assert!(
        killed.elapsed() >= Duration::from_secs(2),
        "not before the killed holder's lease expired"
    );
    assert_eq!(w.scalings(), 1, "only bob acted: {:?}", w.writes());
    assert_eq!(w.lock_holder().as_deref(), Some(""));
}

/// Cordon every node of the seed cluster, one at a time, no limit.
const CORDON_ALL: &str = r#"
version: 1
name: cordon-all
title: Cordon every node
steps:
  - check: Every node
    id: nodes
    kube: { get: nodes }
    save: nodes
  - action: Cordon them
    id: cordon
    for_each: nodes
    concurrency: 1
    kube: { cordon: "{{item.metadata.name}}" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_failed_runs_only_the_failed_items_of_a_fan_out_again() {
    let w = World::new(CORDON_ALL).await;
    let nodes: Vec<String> = w
        .lab
        .list("nodes", None)
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    assert!(
        nodes.len() >= 3,
        "the seed has nodes to fan out over: {nodes:?}"
    );
    // The API refuses the cordon of two of them (every time, until cleared).
    let refused = [nodes[0].clone(), nodes[2].clone()];
    for n in &refused {
        w.lab
            .inject_fault(lab::ApiFault::new(format!("/nodes/{n}"), 403, 1000).method("PATCH"));
    }
    run(w.start("ana", &["--yes"]))
        .await
        .code(runbook::exit::FAILED)
        .stderr_contains("2 of");
    let patches = |n: &str| {
        w.lab
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH" && r.path.contains(&format!("/nodes/{n}")))
            .count()
    };
    let first: Vec<usize> = nodes.iter().map(|n| patches(n)).collect();
    assert!(
        first.iter().all(|c| *c >= 1),
        "every node was asked once: {first:?}"
    );

    w.lab.clear_faults();
    let out = run(w.resume(&["--retry-failed", "--yes"])).await;
    out.success();
    out.stderr_contains("retrying its failed items");
    for (n, before) in nodes.iter().zip(&first) {
        let after = patches(n);
        if refused.contains(n) {
            assert_eq!(after, before + 1, "failed item {n} was sent once more");
        } else {
            assert_eq!(after, *before, "succeeded item {n} was not repeated");
        }
        let node = w.lab.get("nodes", None, n).expect("the node exists");
        assert_eq!(
            node["spec"]["unschedulable"].as_bool(),
            Some(true),
            "{n} is cordoned in the end"
        );
    }
    // The retry is journaled per item: which ran again, which were kept.
    let retried: Vec<(Vec<usize>, Vec<usize>)> = w
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::StepRetried {
                step, failed, kept, ..
            } if step == "cordon" => Some((failed, kept)),
            _ => None,
        })
        .collect();
    let index = |n: &String| nodes.iter().position(|x| x == n).expect("a node");
    let failed: Vec<usize> = refused.iter().map(index).collect();
    let kept: Vec<usize> = (0..nodes.len()).filter(|i| !failed.contains(i)).collect();
    assert_eq!(retried, vec![(failed.clone(), kept.clone())]);
    // The run state of the resumed run knows every item finished ok.
    let state = runbook::journal::state::RunState::from_records(
        &reader::read(&w.journal_path()).expect("a journal").records,
    )
    .expect("it folds");
    assert_eq!(
        state.steps["cordon"].ok_items(None).len(),
        nodes.len(),
        "every item finished ok"
    );
    let pm = run(w.cli().args(["postmortem", "last"])).await;
    pm.success();
    pm.stdout_contains(format!(
        "failed items {} only; {} that succeeded not repeated",
        failed
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        kept.len()
    ));
}

/// The shipped seed runbook's out-of-service taint `requires:` a person's answer
/// that the lost nodes are powered off; `runbook test` runs both answers against the
/// scenario where every delete of the old hub pod is refused. Their journals show
/// the block (the rung never sent a request, with the reason) and the pass.
#[test]
fn the_seed_runbooks_taint_needs_the_powered_off_answer() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let state = tempfile::tempdir().expect("a temp dir");
    let out = Cli::new()
        .args(["test", "--filter", "out-of-service taint", "-o", "json"])
        .arg(root.join("runbooks/hub-pvc-locked.yaml"))
        .arg("--state-dir")
        .arg(state.path())
        .run();
    out.success();
    let cases: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["kind"] == "case")
        .collect();
    assert_eq!(cases.len(), 2, "both cases ran: {}", out.stdout);
    let journal_of = |name: &str| -> Vec<Event> {
        let case = cases
            .iter()
            .find(|c| c["case"].as_str().is_some_and(|n| n.contains(name)))
            .unwrap_or_else(|| panic!("a case named {name}: {}", out.stdout));
        assert_eq!(case["passed"], true, "{case}");
        events(Path::new(case["journal"].as_str().expect("a journal path")))
    };
    let taint_ops = |events: &[Event]| {
        events
            .iter()
            .filter(|e| matches!(e, Event::OpStarted { op, .. } if op.scope.rung.as_deref() == Some("taint-out-of-service")))
            .count()
    };
    let blocked = journal_of("never runs");
    assert_eq!(taint_ops(&blocked), 0, "the taint sent nothing");
    assert!(
        blocked
            .iter()
            .any(|e| matches!(e, Event::Escalated { from, reason, .. }
            if from == "taint-out-of-service"
                && reason.contains("taint-out-of-service not run: its precondition does not hold")
                && reason.contains("confirm-powered-off"))),
        "the block is journaled with its reason"
    );
    let passed = journal_of("runs once");
    assert!(taint_ops(&passed) >= 1, "the taint ran once confirmed");
}

/// Two gated steps that change nothing.
const TWO_GATES: &str = r#"
version: 1
name: two-gates
title: Two gated steps
steps:
  - action: First
    id: first
    shell: { argv: ["true"] }
  - action: Second
    id: second
    shell: { argv: ["true"] }
"#;

/// `runbook run` on a pseudo-terminal (util-linux `script`) whose keyboard the test
/// types on whenever it chooses.
struct Terminal {
    child: std::process::Child,
    keys: std::process::ChildStdin,
    out: std::thread::JoinHandle<String>,
}

impl Terminal {
    fn run(w: &World) -> Terminal {
        use std::process::{Command, Stdio};
        let quote = |a: &str| format!("'{}'", a.replace('\'', r"'\''"));
        let state = w.dir.path().join("state");
        let rb = w.dir.path().join("rb.yaml");
        let line = [
            crate::support::cli::BIN,
            "--state-dir",
            state.to_str().expect("a UTF-8 path"),
            "run",
            "--operator",
            "ana",
            rb.to_str().expect("a UTF-8 path"),
        ]
        .map(quote)
        .join(" ");
        let mut child = Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env("USER", "ana")
            .env_remove("RUNBOOK_OPERATOR")
            .env_remove("RUNBOOK_STATE_DIR")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("util-linux `script` runs the binary on a terminal");
        let keys = child.stdin.take().expect("stdin is piped");
        let mut pipe = child.stdout.take().expect("stdout is piped");
        let out = std::thread::spawn(move || {
            let mut all = String::new();
            let _ = std::io::Read::read_to_string(&mut pipe, &mut all);
            all
        });
        Terminal { child, keys, out }
    }

    fn type_line(&mut self, text: &str) {
        use std::io::Write;
        self.keys
            .write_all(format!("{text}\n").as_bytes())
            .and_then(|()| self.keys.flush())
            .expect("the terminal takes keys");
    }

    /// Wait (bounded) for the run to end; what the terminal showed.
    fn finish(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let code = loop {
            if let Some(status) = self.child.try_wait().expect("the run can be waited for") {
                break status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        drop(self.keys);
        (code, self.out.join().unwrap_or_default())
    }
}

impl World {
    /// Wait (bounded) until the gate of `step` has been asked.
    fn wait_for_gate_of(&self, step: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self
            .events()
            .iter()
            .any(|e| matches!(e, Event::GateRequested { step: s, .. } if s == step))
        {
            assert!(
                Instant::now() < deadline,
                "the run never asked about {step}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// (step, decision, by, source) of every gate decision journaled.
    fn decisions_by_step(&self) -> Vec<(String, Decision, String, ApprovalSource)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::GateDecided {
                    step,
                    decision,
                    by,
                    source,
                    ..
                } => Some((step, decision, by, source)),
                _ => None,
            })
            .collect()
    }
}

/// A question at the terminal that another terminal's `runbook approve` answered
/// first is closed: the next line the operator types answers the next question,
/// not the closed one (whose read of the terminal would otherwise swallow it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_beaten_by_runbook_approve_does_not_swallow_the_next_line() {
    let w = World::new(TWO_GATES).await;
    let mut term = Terminal::run(&w);
    w.wait_for_gate_of("first");
    run(w.cli().args(["approve", "last", "first", "--by", "bob"]))
        .await
        .success();
    // Nothing typed: bob's decision alone moves the run to the second question.
    w.wait_for_gate_of("second");
    term.type_line("y");
    let (code, shown) = term.finish();
    assert_eq!(
        code,
        Some(0),
        "the one line typed answered the second question\n{shown}"
    );
    assert_eq!(
        w.decisions_by_step(),
        vec![
            (
                "first".into(),
                Decision::Approved,
                "bob".into(),
                ApprovalSource::Remote
            ),
            (
                "second".into(),
                Decision::Approved,
                "ana".into(),
                ApprovalSource::Prompt
            ),
        ]
    );
    assert!(
        shown.contains("decided by bob (approved) from another terminal"),
        "the operator is told who closed the question\n{shown}"
    );
}

/// The operator answers at the terminal just as `runbook approve` from another
/// terminal lands: the engine re-checks the journal under its lock before writing
/// its own answer, so every gate is decided exactly once, and whoever lost is told
/// who decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_answer_racing_runbook_approve_journals_exactly_one_decision() {
    let w = World::new(TWO_GATES).await;
    let mut term = Terminal::run(&w);
    let mut told = Vec::new();
    for step in ["first", "second"] {
        w.wait_for_gate_of(step);
        let remote = run(w.cli().args(["approve", "last", step, "--by", "bob"])).await;
        // Typed at once: the engine polls for remote decisions every 200 ms, so its
        // own answer usually arrives before it has seen bob's.
        term.type_line("y");
        if remote.status.success() {
            told.push(format!("{step}: bob won"));
        } else {
            remote.stderr_contains("was already decided: approved by ana (prompt)");
            told.push(format!("{step}: ana won"));
        }
    }
    let (code, shown) = term.finish();
    assert_eq!(code, Some(0), "{told:?}\n{shown}");
    let decisions = w.decisions_by_step();
    for step in ["first", "second"] {
        let of_step: Vec<_> = decisions.iter().filter(|d| d.0 == step).collect();
        assert_eq!(
            of_step.len(),
            1,
            "{step} decided once: {decisions:?} ({told:?})"
        );
    }
    if told.iter().any(|t| t.contains("bob won")) {
        assert!(
            shown.contains("was already decided by bob (approved) from another terminal")
                || shown.contains("decided by bob (approved) from another terminal"),
            "the terminal says bob decided\n{shown}"
        );
    }
}

/// `runbook test` with `wait_for_approval: 30m`: an explicit gate nobody approves
/// waits 30 minutes of the lab's virtual clock (as `--wait-for-approval=30m` does on
/// the run's clock), then pauses; the wall clock barely moves. A bad duration is an
/// error at its line.
#[test]
fn wait_for_approval_times_out_on_the_runs_clock_under_runbook_test() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(
        root.join("tests/fixtures/suite/empty.scenario.yaml"),
        dir.path().join("empty.scenario.yaml"),
    )
    .expect("the fixture copies");
    let rb = dir.path().join("w.yaml");
    std::fs::write(
        &rb,
        r#"
version: 1
name: w
title: An explicit gate nobody approves
steps:
  - action: Do it
    id: do-it
    gate: explicit
    shell: { argv: ["true"] }
"#,
    )
    .expect("a writable temp dir");
    let cases = |wait: &str| {
        format!(
            "version: 1\ntests:\n  - name: nobody approves\n    scenario: empty.scenario.yaml\n    wait_for_approval: {wait}\n    expect:\n      status: paused\n      not_ran: []\n"
        )
    };
    std::fs::write(dir.path().join("w.test.yaml"), cases("30m")).expect("a writable temp dir");
    let state = dir.path().join("state");
    let wall = Instant::now();
    let out = Cli::new()
        .args(["test", "-o", "json", "--state-dir"])
        .arg(&state)
        .arg(&rb)
        .run();
    out.success();
    let case: serde_json::Value = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|v: &serde_json::Value| v["kind"] == "case")
        .unwrap_or_else(|| panic!("a case line: {}", out.stdout));
    assert_eq!(case["status"], "paused", "{case}");
    let secs = case["cluster_secs"].as_u64().expect("cluster time");
    assert!(
        (1800..1900).contains(&secs),
        "the gate waited 30 minutes of lab time: {case}"
    );
    assert!(
        wall.elapsed() < Duration::from_secs(120),
        "not 30 wall minutes"
    );
    let paused = events(Path::new(case["journal"].as_str().expect("a journal")))
        .into_iter()
        .find_map(|e| match e {
            Event::Paused { reason, .. } => Some(reason),
            _ => None,
        })
        .expect("the run paused");
    assert!(
        paused.contains("within the wait (--wait-for-approval)"),
        "{paused}"
    );

    std::fs::write(dir.path().join("w.test.yaml"), cases("soon")).expect("a writable temp dir");
    let out = Cli::new()
        .args(["test", "--state-dir"])
        .arg(&state)
        .arg(&rb)
        .run();
    out.code(1)
        .stdout_contains("w.test.yaml:5:1: error: test `nobody approves`: `wait_for_approval: soon` is not a duration");
}

/// Issue 19's lint checks, each once: `on_timeout` without `timeout`, `approvals` on
/// a step no gate asks (a check, a manual step, a ladder whose rungs all bring their
/// own gate), a `requires` naming nothing known (a rung id later in the ladder
/// included), and a `limit` on a step without targets.
#[test]
fn lint_names_every_misplaced_safety_key() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let rb = dir.path().join("rb.yaml");
    std::fs::write(
        &rb,
        r#"version: 1
name: bad
title: Misplaced safety keys
steps:
  - check: Nodes
    id: nodes
    gate: { approvals: 2 }
    limit: { max_targets: 3 }
    kube: { get: nodes }
  - action: Timeout without a timeout
    id: a
    gate: { on_timeout: skip }
    shell: { argv: ["true"] }
  - action: A quorum nobody is asked for
    id: ladder
    gate: { approvals: 2 }
    escalate:
      - id: first
        requires: "steps['second'].status == 'ok' && powered_off"
        gate: auto
        shell: { argv: ["true"] }
      - id: second
        manual: Do it by hand
    verify:
      shell: { argv: ["true"] }
  - action: A quorum a rung keeps
    id: kept
    gate: { approvals: 2 }
    escalate:
      - id: third
        shell: { argv: ["true"] }
      - id: fourth
        requires: "steps['third'].status == 'ok'"
        gate: auto
        shell: { argv: ["true"] }
    verify:
      shell: { argv: ["true"] }
"#,
    )
    .expect("a writable temp dir");
    let out = Cli::new().arg("lint").arg(&rb).run();
    out.code(runbook::exit::FAILED)
        .stdout_contains("rb.yaml:7:11: error: `gate` applies to actions; this is a check step")
        .stdout_contains("only an action's plan has targets to limit")
        .stdout_contains("but this gate has no `timeout`")
        .stdout_contains("error: `approvals: 2` on `ladder` is never asked")
        .stdout_contains("step `second` runs after this one")
        .stdout_contains("powered_off");
    assert!(
        !out.stdout.contains("on `kept` is never asked"),
        "a rung without its own gate keeps the quorum\n{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("`third`"),
        "an earlier rung is known to a later rung's `requires`\n{}",
        out.stdout
    );
}

/// A lock without a cluster: shell steps only. The action appends who ran it to
/// `acted` after `hold` seconds.
fn locked_locally(lock: &str) -> String {
    format!(
        r#"
version: 1
name: locked-here
title: One run at a time, no cluster
lock: {lock}
params:
  hold: {{ default: "2" }}
  who: {{ default: "" }}
steps:
  - action: Act slowly
    id: act
    gate: auto
    shell: {{ argv: ["sh", "-c", "sleep \"$1\"; echo \"$2\" >> acted", "sh", "{{{{params.hold}}}}", "{{{{params.who}}}}"] }}
"#
    )
}

/// `(dir, state dir, lock file)` of a local-lock world, and a `runbook run` in it.
fn local_run(dir: &Path, who: &str, extra: &[&str]) -> Cli {
    Cli::new()
        .state_dir(dir.join("state"))
        .current_dir(dir)
        .args(["run", "--operator", who])
        .arg(dir.join("rb.yaml"))
        .args(["-p", &format!("who={who}")])
        .args(extra)
}

fn wait_for_local_holder(lock_file: &Path, who: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(lock_file).is_ok_and(|h| h.starts_with(who)) {
        assert!(Instant::now() < deadline, "{who} never took the lock file");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_cluster_the_lock_is_a_file_the_second_run_waits_for_and_is_told_who_holds() {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("rb.yaml"), locked_locally("{ wait: 2m }")).unwrap();
    let lock_file = dir.path().join("state/locks/runbook-lock-locked-here.lock");
    let first = local_run(dir.path(), "ana", &[]).spawn();
    wait_for_local_holder(&lock_file, "ana");
    run(local_run(dir.path(), "bob", &["-p", "hold=0"]))
        .await
        .success()
        .stderr_contains("lock `runbook-lock-locked-here` is held by ana (run ")
        .stderr_contains("waiting up to 2m");
    let (status, stderr) = tokio::task::spawn_blocking(move || finish(first))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let acted = std::fs::read_to_string(dir.path().join("acted")).unwrap();
    assert_eq!(
        acted, "ana\nbob\n",
        "one after the other, never both at once"
    );
    assert_eq!(
        std::fs::read_to_string(&lock_file).unwrap(),
        "",
        "released (and emptied) at the end of the run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_lock_whose_holder_was_killed_is_free_at_once_and_a_busy_one_pauses_the_run() {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("rb.yaml"), locked_locally("{ }")).unwrap();
    let lock_file = dir.path().join("state/locks/runbook-lock-locked-here.lock");
    let mut first = local_run(dir.path(), "ana", &["-p", "hold=120"]).spawn();
    wait_for_local_holder(&lock_file, "ana");
    // Held, and no `wait:`: the second run pauses having done nothing.
    run(local_run(dir.path(), "bob", &["-p", "hold=0"]))
        .await
        .code(runbook::exit::PAUSED)
        .stderr_contains("is held by ana (run ")
        .stderr_contains("nothing was done");
    assert!(!dir.path().join("acted").exists(), "bob did not act");
    first.kill().expect("SIGKILL the holder");
    let _ = first.wait();
    // The kernel freed the killed holder's lock: no ttl to wait out.
    run(local_run(dir.path(), "bob", &["-p", "hold=0"]))
        .await
        .success();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("acted")).unwrap(),
        "bob\n"
    );
}
