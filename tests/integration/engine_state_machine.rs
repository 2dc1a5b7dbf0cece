//! The engine as a state machine: scripted providers, a virtual clock, no processes.
//! Each test runs a small runbook and checks the outcome and the journal.

use crate::support::scripted as scripted_support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use runbook::engine::{self, AutoApprover, Clock, EngineOpts, FlagApprover, Printer, RunReport};
use runbook::journal::event::{Decision, Event, Outcome, RunStatus};
use runbook::journal::reader;
use runbook::providers::{Defaults, ExecCtx, OpError, Provider, Providers, Resolved};
use runbook::runbook::model::OpRef;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

type Script = dyn Fn(&str, &World) -> Result<Value, OpError> + Send + Sync;

/// The "system" the scripted commands act on: named counters.
#[derive(Default, Clone)]
struct World(Arc<Mutex<HashMap<String, i64>>>);

impl World {
    fn get(&self, k: &str) -> i64 {
        *self.0.lock().unwrap().get(k).unwrap_or(&0)
    }
    fn set(&self, k: &str, v: i64) {
        self.0.lock().unwrap().insert(k.into(), v);
    }
}

/// A provider registered as `shell`: argv is rendered and joined into one line, and
/// the script decides what that line does.
struct Scripted {
    world: World,
    log: Arc<Mutex<Vec<String>>>,
    script: Box<Script>,
    /// Lines that never finish (until cancelled).
    hang: Vec<String>,
}

impl Provider for Scripted {
    fn resolve(&self, op: OpRef<'_>, vars: &Value, _: &Defaults) -> Result<Resolved, OpError> {
        scripted_support::resolve_shell(op, vars, true)
    }

    fn execute<'a>(
        &'a self,
        op: &'a Resolved,
        cx: &'a ExecCtx,
    ) -> BoxFuture<'a, Result<Value, OpError>> {
        Box::pin(async move {
            self.log.lock().unwrap().push(op.display.clone());
            if self.hang.contains(&op.display) {
                cx.cancel.cancelled().await;
                return Err(OpError::Cancelled);
            }
            (self.script)(&op.display, &self.world)
        })
    }
}

/// Time that passes only when the engine sleeps.
struct VirtualClock(Mutex<DateTime<Utc>>);

impl Clock for VirtualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'_, ()> {
        *self.0.lock().unwrap() += chrono::Duration::from_std(d).unwrap();
        Box::pin(tokio::task::yield_now())
    }
}

struct Harness {
    dir: tempfile::TempDir,
    world: World,
    log: Arc<Mutex<Vec<String>>>,
    out: Arc<Mutex<Vec<u8>>>,
    printer: Arc<Printer>,
    clock: Arc<VirtualClock>,
    hang: Vec<String>,
}

impl Harness {
    fn new() -> Harness {
        let (printer, out) = Printer::capture();
        Harness {
            dir: tempfile::tempdir().unwrap(),
            world: World::default(),
            log: Arc::default(),
            out,
            printer: Arc::new(printer),
            clock: Arc::new(VirtualClock(Mutex::new(
                "2026-03-13T14:00:00Z".parse().unwrap(),
            ))),
            hang: Vec::new(),
        }
    }

    fn providers(
        &self,
        script: impl Fn(&str, &World) -> Result<Value, OpError> + Send + Sync + 'static,
    ) -> Providers {
        Providers::empty().with(
            "shell",
            Arc::new(Scripted {
                world: self.world.clone(),
                log: Arc::clone(&self.log),
                script: Box::new(script),
                hang: self.hang.clone(),
            }),
        )
    }

    fn opts(&self) -> EngineOpts {
        let mut o = EngineOpts::new("ana", Arc::clone(&self.printer));
        o.defaults.base_dir = self.dir.path().to_owned();
        o
    }

    fn runbook(&self, yaml: &str) -> runbook::runbook::Loaded {
        let path = self.dir.path().join("rb.yaml");
        std::fs::write(&path, yaml).unwrap();
        runbook::runbook::load(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `engine::resume` of `run_id` with these providers and approver.
    async fn resume(
        &self,
        run_id: &str,
        providers: Providers,
        approver: Arc<dyn engine::Approver>,
    ) -> RunReport {
        engine::resume(
            &self.state(),
            run_id,
            providers,
            approver,
            self.clock.clone(),
            self.opts(),
            CancellationToken::new(),
        )
        .await
        .unwrap()
    }

    fn state(&self) -> std::path::PathBuf {
        self.dir.path().join("state")
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }
}

fn events(report: &RunReport) -> Vec<Event> {
    reader::read(&report.journal)
        .unwrap()
        .records
        .into_iter()
        .map(|r| r.event)
        .collect()
}

fn ok_json() -> Result<Value, OpError> {
    Ok(json!({"exit_code": 0, "stdout": "", "stderr": ""}))
}

async fn run_auto(
    h: &Harness,
    loaded: &runbook::runbook::Loaded,
    providers: Providers,
) -> RunReport {
    engine::run(
        loaded,
        providers,
        Arc::new(AutoApprover::new("test")),
        h.clock.clone(),
        &h.state(),
        h.opts(),
        CancellationToken::new(),
    )
    .await
    .unwrap()
}

const DETECT_FIX_VERIFY: &str = r#"
version: 1
name: detect-fix
title: t
steps:
  - check: Is it broken
    id: detect
    shell: { argv: [probe] }
    save: probe
    expect: "probe.json.broken"
  - action: Fix it
    id: fix
    shell: { argv: [fix] }
    verify:
      shell: { argv: [probe] }
      expect: "!result.json.broken"
      within: 1m
      every: 5s
"#;

fn detect_fix_script(line: &str, w: &World) -> Result<Value, OpError> {
    match line {
        "probe" => Ok(json!({"exit_code": 0, "json": {"broken": w.get("fixed") == 0}})),
        "fix" => {
            w.set("fixed", 1);
            ok_json()
        }
        other => Err(OpError::failed(format!("unexpected {other}"))),
    }
}

#[tokio::test]
async fn a_check_that_finds_nothing_ends_the_run_as_not_applicable() {
    let h = Harness::new();
    h.world.set("fixed", 1);
    let loaded = h.runbook(DETECT_FIX_VERIFY);
    let report = run_auto(&h, &loaded, h.providers(detect_fix_script)).await;
    assert_eq!(report.status, RunStatus::NotApplicable);
    assert_eq!(report.exit_code, 5);
    assert_eq!(h.log(), ["probe"], "the action must not run");
}

#[tokio::test]
async fn detect_fix_verify_succeeds_and_journals_the_approval_before_the_action() {
    let h = Harness::new();
    let loaded = h.runbook(DETECT_FIX_VERIFY);
    let report = run_auto(&h, &loaded, h.providers(detect_fix_script)).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{}", h.output());
    assert_eq!(h.log(), ["probe", "fix", "probe"]);
    let ev = events(&report);
    let decided = ev
        .iter()
        .position(|e| {
            matches!(
                e,
                Event::GateDecided {
                    decision: Decision::Approved,
                    ..
                }
            )
        })
        .expect("a gate decision");
    let fix_started = ev
        .iter()
        .position(|e| matches!(e, Event::OpStarted { op, .. } if op.display == "fix"))
        .expect("the fix started");
    assert!(decided < fix_started);
    assert!(matches!(
        ev.last(),
        Some(Event::RunFinished {
            status: RunStatus::Succeeded,
            ..
        })
    ));
    assert!(h.output().contains("✓ fix ok"), "{}", h.output());
}

#[tokio::test]
async fn an_unapproved_gate_pauses_and_resume_with_approval_finishes_without_rerunning_checks() {
    let h = Harness::new();
    let loaded = h.runbook(DETECT_FIX_VERIFY);
    let paused = engine::run(
        &loaded,
        h.providers(detect_fix_script),
        Arc::new(FlagApprover::new(false, &[], "ana")),
        h.clock.clone(),
        &h.state(),
        h.opts(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(paused.status, RunStatus::Paused);
    assert_eq!(paused.exit_code, 3);
    assert_eq!(h.log(), ["probe"]);
    assert!(
        events(&paused)
            .iter()
            .any(|e| matches!(e, Event::Paused { step, resume, .. }
        if step == "fix" && resume.contains("--approve fix")))
    );

    let resumed = h
        .resume(
            &paused.run_id,
            h.providers(detect_fix_script),
            Arc::new(FlagApprover::new(false, &["fix".to_string()], "bo")),
        )
        .await;
    assert_eq!(resumed.status, RunStatus::Succeeded, "{}", h.output());
    assert_eq!(
        h.log(),
        ["probe", "fix", "probe"],
        "the check is not run again"
    );
    let ev = events(&resumed);
    assert!(ev.iter().any(
        |e| matches!(e, Event::GateDecided { by, decision: Decision::Approved, .. } if by == "bo")
    ));
}

#[tokio::test]
async fn a_verification_that_never_holds_fails_after_within_polling_every() {
    let h = Harness::new();
    let loaded = h.runbook(DETECT_FIX_VERIFY);
    // The fix does nothing: the probe keeps saying broken.
    let report = run_auto(
        &h,
        &loaded,
        h.providers(|line, _| match line {
            "probe" => Ok(json!({"exit_code": 0, "json": {"broken": true}})),
            _ => ok_json(),
        }),
    )
    .await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.exit_code, 1);
    let polls = events(&report)
        .iter()
        .filter(|e| matches!(e, Event::VerifyPolled { .. }))
        .count();
    // t = 0, 5, ..., 60: 13 polls within one minute every 5 seconds.
    assert_eq!(polls, 13);
}

const LADDER: &str = r#"
version: 1
name: ladder
title: t
steps:
  - action: Free it
    id: free
    gate: auto
    escalate:
      - id: gentle
        shell: { argv: [gentle] }
        within: 10s
      - id: force
        shell: { argv: [force] }
        within: 10s
      - id: nuke
        shell: { argv: [nuke] }
    verify:
      shell: { argv: [probe] }
      expect: "result.json.free"
      every: 2s
"#;

#[tokio::test]
async fn an_escalation_stops_at_the_first_rung_the_verification_accepts() {
    let h = Harness::new();
    let loaded = h.runbook(LADDER);
    let report = run_auto(
        &h,
        &loaded,
        h.providers(|line, w| match line {
            "probe" => Ok(json!({"json": {"free": w.get("forced") == 1}})),
            "force" => {
                w.set("forced", 1);
                ok_json()
            }
            _ => ok_json(),
        }),
    )
    .await;
    assert_eq!(report.status, RunStatus::Succeeded, "{}", h.output());
    let log = h.log();
    assert!(!log.contains(&"nuke".to_string()), "{log:?}");
    assert_eq!(log.iter().filter(|l| *l == "gentle").count(), 1);
    let ev = events(&report);
    assert!(ev.iter().any(
        |e| matches!(e, Event::Escalated { from, to, .. } if from == "gentle" && to == "force")
    ));
    assert!(ev.iter().any(|e| matches!(e, Event::StepFinished { fixed_by: Some(r), outcome: Outcome::Ok, .. } if r == "force")));
    let rungs: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::RungStarted {
                rung, index, of, ..
            } => Some((rung.clone(), *index, *of)),
            _ => None,
        })
        .collect();
    assert_eq!(rungs, [("gentle".into(), 1, 3), ("force".into(), 2, 3)]);
}

#[tokio::test]
async fn a_for_each_reports_every_item_when_one_fails() {
    let h = Harness::new();
    let loaded = h.runbook(
        r#"
version: 1
name: fan-out
title: t
params:
  nodes: { default: [a, b, c, d] }
steps:
  - action: Cordon
    id: cordon
    gate: auto
    for_each: params.nodes
    concurrency: 2
    shell: { argv: [cordon, "{{item}}"] }
"#,
    );
    let report = run_auto(
        &h,
        &loaded,
        h.providers(|line, _| match line {
            "cordon b" => Err(OpError::failed("node b refused")),
            _ => ok_json(),
        }),
    )
    .await;
    assert_eq!(report.status, RunStatus::Failed);
    let mut log = h.log();
    log.sort();
    assert_eq!(log, ["cordon a", "cordon b", "cordon c", "cordon d"]);
    let ev = events(&report);
    let outcomes: Vec<(usize, Outcome)> = ev
        .iter()
        .filter_map(|e| match e {
            Event::OpFinished { scope, outcome, .. } => Some((scope.item.unwrap(), *outcome)),
            _ => None,
        })
        .collect();
    assert_eq!(outcomes.len(), 4);
    assert!(outcomes.contains(&(1, Outcome::Failed)));
    assert_eq!(
        outcomes.iter().filter(|(_, o)| *o == Outcome::Ok).count(),
        3
    );
    assert!(ev.iter().any(|e| matches!(e, Event::StepFinished { summary, .. } if summary.contains("item 1: node b refused"))));
}

#[tokio::test]
async fn dry_run_runs_checks_and_plans_actions_without_performing_them() {
    let h = Harness::new();
    let loaded = h.runbook(DETECT_FIX_VERIFY);
    let mut opts = h.opts();
    opts.dry_run = true;
    let report = engine::run(
        &loaded,
        h.providers(detect_fix_script),
        Arc::new(AutoApprover::new("test")),
        h.clock.clone(),
        &h.state(),
        opts,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(h.log(), ["probe"]);
    assert_eq!(report.status, RunStatus::Succeeded);
    assert!(h.output().contains("would run fix"), "{}", h.output());
    assert!(h.output().contains("would verify"), "{}", h.output());
    assert!(
        events(&report)
            .iter()
            .any(|e| matches!(e, Event::StepSkipped { step, .. } if step == "fix"))
    );
}

#[tokio::test]
async fn secret_params_never_reach_the_journal() {
    let h = Harness::new();
    let loaded = h.runbook(
        r#"
version: 1
name: secret
title: t
params:
  token: { required: true, secret: true }
steps:
  - check: Call with the token
    id: call
    shell: { argv: [curl, "-H", "Authorization: Bearer {{params.token}}"] }
"#,
    );
    let mut opts = h.opts();
    opts.params = vec![("token".into(), "s3cr3t-value".into())];
    let report = engine::run(
        &loaded,
        h.providers(|line, _| Ok(json!({"stdout": format!("echo {line}")}))),
        Arc::new(AutoApprover::new("test")),
        h.clock.clone(),
        &h.state(),
        opts,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(h.log(), ["curl -H Authorization: Bearer s3cr3t-value"]);
    let text = std::fs::read_to_string(&report.journal).unwrap();
    assert!(!text.contains("s3cr3t-value"), "{text}");
    assert!(text.contains("Bearer ***"));
    assert!(!h.output().contains("s3cr3t-value"));
}

#[tokio::test]
async fn a_secret_in_a_failure_message_is_redacted_on_the_console_and_in_the_journal() {
    let h = Harness::new();
    let loaded = h.runbook(
        r#"
version: 1
name: secret
title: t
params:
  token: { required: true, secret: true }
steps:
  - check: Call with the token
    id: call
    shell: { argv: [curl, "https://api/?token={{params.token}}"] }
"#,
    );
    let mut opts = h.opts();
    opts.params = vec![("token".into(), "s3cr3t-value".into())];
    let report = engine::run(
        &loaded,
        h.providers(|line, _| Err(OpError::failed(format!("401 for {line}")))),
        Arc::new(AutoApprover::new("test")),
        h.clock.clone(),
        &h.state(),
        opts,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    let out = h.output();
    assert!(out.contains("401 for curl https://api/?token=***"), "{out}");
    assert!(!out.contains("s3cr3t-value"), "{out}");
    let text = std::fs::read_to_string(&report.journal).unwrap();
    assert!(!text.contains("s3cr3t-value"), "{text}");
}

#[tokio::test]
async fn cancelling_aborts_the_running_step_and_the_run_can_be_resumed() {
    let mut h = Harness::new();
    h.hang = vec!["fix".into()];
    let loaded = h.runbook(DETECT_FIX_VERIFY);
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        c.cancel();
    });
    let report = engine::run(
        &loaded,
        h.providers(detect_fix_script),
        Arc::new(AutoApprover::new("test")),
        h.clock.clone(),
        &h.state(),
        h.opts(),
        cancel,
    )
    .await
    .unwrap();
    canceller.await.unwrap();
    assert_eq!(report.status, RunStatus::Aborted);
    assert_eq!(report.exit_code, 4);
    let ev = events(&report);
    assert!(ev.iter().any(
        |e| matches!(e, Event::RunFinished { reason: Some(r), .. } if r == "aborted by operator")
    ));

    // Resumed: the aborted action's outcome is unknown, so it is re-verified first,
    // polled for its whole `within` (still broken: its process might have been
    // finishing it), and then run again.
    h.hang.clear();
    let resumed = h
        .resume(
            &report.run_id,
            h.providers(detect_fix_script),
            Arc::new(AutoApprover::new("test")),
        )
        .await;
    assert_eq!(resumed.status, RunStatus::Succeeded, "{}", h.output());
    let log = h.log();
    assert_eq!(log[..3], ["probe", "fix", "probe"], "{log:?}");
    assert_eq!(log[log.len() - 2..], ["fix", "probe"], "{log:?}");
    assert!(
        log.len() > 5,
        "the re-verification polls until its within runs out, not once: {log:?}"
    );
    assert_eq!(log.iter().filter(|l| *l == "fix").count(), 2, "{log:?}");
    assert!(events(&resumed).iter().any(|e| matches!(
        e,
        Event::OpFinished {
            outcome: Outcome::Unknown,
            ..
        }
    )));
}

/// A run stopped right after its gate was approved: the journal up to that
/// `gate_decided`, its digest replaced by `digest` when given.
fn cut_after_approval(report: &RunReport, digest: Option<&str>) {
    let text = std::fs::read_to_string(&report.journal).unwrap();
    let mut kept = String::new();
    for line in text.lines() {
        let decided = line.contains("\"gate_decided\"") && line.contains("\"step\":\"fix\"");
        let line = match (decided, digest) {
            (true, Some(d)) => {
                let mut v: Value = serde_json::from_str(line).unwrap();
                v["digest"] = json!(d);
                v.to_string()
            }
            _ => line.to_string(),
        };
        kept.push_str(&line);
        kept.push('\n');
        if decided {
            break;
        }
    }
    std::fs::write(&report.journal, kept).unwrap();
}

/// The detect-fix run, approved automatically, then cut right after its gate was
/// approved (with that approval's digest replaced by `digest` when given), then
/// resumed with nobody to approve anything.
async fn resume_after_approval(h: &Harness, digest: Option<&str>) -> RunReport {
    let loaded = h.runbook(DETECT_FIX_VERIFY);
    let report = run_auto(h, &loaded, h.providers(detect_fix_script)).await;
    cut_after_approval(&report, digest);
    h.resume(
        &report.run_id,
        h.providers(detect_fix_script),
        Arc::new(FlagApprover::new(false, &[], "ana")),
    )
    .await
}

#[tokio::test]
async fn an_approval_carries_over_on_resume_only_for_the_same_plan() {
    // Approved, then stopped before the fix ran: the same plan is not asked again.
    let h = Harness::new();
    let same = resume_after_approval(&h, None).await;
    assert_eq!(same.status, RunStatus::Succeeded, "{}", h.output());
    assert!(h.output().contains("approved earlier by"), "{}", h.output());
    assert_eq!(
        h.log().iter().filter(|l| *l == "fix").count(),
        2,
        "{:?}",
        h.log()
    );

    // The approval was of other operations (say the plan resolved under other
    // flags): it does not carry over, the gate asks again and, unattended, pauses.
    let h = Harness::new();
    let stale = resume_after_approval(&h, Some(&"0".repeat(64))).await;
    assert_eq!(stale.status, RunStatus::Paused, "{}", h.output());
    assert_eq!(
        h.log().iter().filter(|l| *l == "fix").count(),
        1,
        "nothing ran on the old approval: {:?}",
        h.log()
    );
    assert!(
        h.output()
            .contains("approved a different plan (digest 000000000000 then"),
        "{}",
        h.output()
    );
}

#[tokio::test]
async fn an_action_killed_after_it_acted_is_re_verified_not_rerun() {
    let h = Harness::new();
    let loaded = h.runbook(DETECT_FIX_VERIFY);
    let report = run_auto(&h, &loaded, h.providers(detect_fix_script)).await;
    assert_eq!(report.status, RunStatus::Succeeded);
    // Simulate a SIGKILL right after the fix started: keep the journal up to and
    // including its op_started, and tear the next line.
    let text = std::fs::read_to_string(&report.journal).unwrap();
    let mut kept = String::new();
    for line in text.lines() {
        kept.push_str(line);
        kept.push('\n');
        if line.contains("\"op_started\"") && line.contains("\"display\":\"fix\"") {
            break;
        }
    }
    kept.push_str("{\"seq\":99,\"ts\":\"2026-");
    std::fs::write(&report.journal, kept).unwrap();
    let before = h.log().len();
    let resumed = h
        .resume(
            &report.run_id,
            h.providers(detect_fix_script),
            Arc::new(FlagApprover::new(false, &[], "ana")),
        )
        .await;
    assert_eq!(resumed.status, RunStatus::Succeeded, "{}", h.output());
    assert_eq!(&h.log()[before..], ["probe"], "only the verification runs");
    assert!(h.output().contains("unknown outcome"), "{}", h.output());
    let j = reader::read(&resumed.journal).unwrap();
    assert!(!j.torn_tail);
    let seqs: Vec<u64> = j.records.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gapless after a torn tail"
    );
}

#[tokio::test]
async fn a_kube_step_without_a_kube_provider_fails_with_a_clear_error() {
    let h = Harness::new();
    let loaded = h.runbook(
        r#"
version: 1
name: kube
title: t
steps:
  - check: Pods
    id: pods
    kube: { get: pods, namespace: prod }
"#,
    );
    let report = run_auto(&h, &loaded, h.providers(|_, _| ok_json())).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert!(
        h.output().contains("no Kubernetes provider is configured"),
        "{}",
        h.output()
    );
}

#[tokio::test]
async fn unknown_and_missing_params_are_refused_before_anything_runs() {
    let h = Harness::new();
    let loaded = h.runbook(
        r#"
version: 1
name: params
title: t
params:
  need: { required: true }
steps:
  - check: c
    id: c
    shell: { argv: [echo, "{{params.need}}"] }
"#,
    );
    let err = engine::run(
        &loaded,
        h.providers(|_, _| ok_json()),
        Arc::new(AutoApprover::new("test")),
        h.clock.clone(),
        &h.state(),
        h.opts(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("`need` is required"), "{err}");
    let mut opts = h.opts();
    opts.params = vec![("nede".into(), "x".into())];
    let err = engine::run(
        &loaded,
        h.providers(|_, _| ok_json()),
        Arc::new(AutoApprover::new("test")),
        h.clock.clone(),
        &h.state(),
        opts,
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("unknown parameter `nede`"),
        "{err}"
    );
    assert!(h.log().is_empty());
    assert!(!Path::new(&h.state()).join("runs").exists());
}

/// Answers every gate and manual step the same way.
struct Answering {
    gate: engine::GateAnswer,
    manual: engine::ManualAnswer,
}

impl engine::Approver for Answering {
    fn gate<'a>(&'a self, _: &'a engine::GateRequest) -> BoxFuture<'a, engine::GateAnswer> {
        Box::pin(async move { self.gate.clone() })
    }
    fn manual<'a>(&'a self, _: &'a engine::ManualRequest) -> BoxFuture<'a, engine::ManualAnswer> {
        Box::pin(async move { self.manual.clone() })
    }
}

async fn run_with(h: &Harness, yaml: &str, approver: Arc<dyn engine::Approver>) -> RunReport {
    let loaded = h.runbook(yaml);
    engine::run(
        &loaded,
        h.providers(detect_fix_script),
        approver,
        h.clock.clone(),
        &h.state(),
        h.opts(),
        CancellationToken::new(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_declined_gate_aborts_the_run_and_a_skipped_one_goes_on() {
    let h = Harness::new();
    let declined = run_with(
        &h,
        DETECT_FIX_VERIFY,
        Arc::new(Answering {
            gate: engine::GateAnswer::Decline { by: "ana".into() },
            manual: engine::ManualAnswer::Skip { by: "ana".into() },
        }),
    )
    .await;
    assert_eq!(declined.status, RunStatus::Aborted);
    assert_eq!(declined.exit_code, 4);
    assert_eq!(h.log(), ["probe"]);
    assert!(events(&declined).iter().any(|e| matches!(e,
        Event::GateDecided { decision: Decision::Declined, by, .. } if by == "ana")));

    let skipped = run_with(
        &h,
        DETECT_FIX_VERIFY,
        Arc::new(Answering {
            gate: engine::GateAnswer::Skip {
                by: "ana".into(),
                source: runbook::journal::event::ApprovalSource::Prompt,
            },
            manual: engine::ManualAnswer::Skip { by: "ana".into() },
        }),
    )
    .await;
    assert_eq!(skipped.status, RunStatus::Succeeded);
    assert_eq!(h.log(), ["probe", "probe"], "the fix never ran");
    assert!(
        events(&skipped)
            .iter()
            .any(|e| matches!(e, Event::StepSkipped { step, .. } if step == "fix"))
    );
}

const MANUAL: &str = r#"
version: 1
name: manual
title: t
params:
  node: { default: node-7 }
steps:
  - manual: Power off the node
    id: power-off
    instructions: "Stop {{params.node}} in the cloud console."
  - check: After
    id: after
    shell: { argv: [probe] }
"#;

#[tokio::test]
async fn a_manual_step_pauses_unattended_and_is_confirmed_with_approve() {
    let h = Harness::new();
    let paused = run_with(&h, MANUAL, Arc::new(FlagApprover::new(true, &[], "ana"))).await;
    assert_eq!(
        paused.status,
        RunStatus::Paused,
        "--yes does not do a person's work"
    );
    assert!(
        h.output().contains("Stop node-7 in the cloud console."),
        "{}",
        h.output()
    );
    assert!(events(&paused).iter().any(|e| matches!(e,
        Event::ManualRequested { instruction, .. } if instruction == "Stop node-7 in the cloud console.")));
    let resumed = h
        .resume(
            &paused.run_id,
            h.providers(detect_fix_script),
            Arc::new(FlagApprover::new(false, &["power-off".to_string()], "bo")),
        )
        .await;
    assert_eq!(resumed.status, RunStatus::Succeeded, "{}", h.output());
    assert!(events(&resumed).iter().any(|e| matches!(e,
        Event::ManualConfirmed { outcome: Outcome::Ok, by, .. } if by == "bo")));
    assert_eq!(h.log(), ["probe"]);
}

#[tokio::test]
async fn a_manual_step_reported_failed_fails_the_run() {
    let h = Harness::new();
    let report = run_with(
        &h,
        MANUAL,
        Arc::new(Answering {
            gate: engine::GateAnswer::Decline { by: "ana".into() },
            manual: engine::ManualAnswer::Failed { by: "ana".into() },
        }),
    )
    .await;
    assert_eq!(report.status, RunStatus::Failed);
    assert!(h.log().is_empty());
}

#[tokio::test]
async fn failed_attempts_are_retried_with_backoff_on_the_clock() {
    let h = Harness::new();
    let loaded = h.runbook(
        r#"
version: 1
name: retry
title: t
steps:
  - check: Flaky
    id: flaky
    shell: { argv: [flaky] }
    retry: { attempts: 3, backoff: 2s }
"#,
    );
    let t0 = h.clock.now();
    let report = run_auto(
        &h,
        &loaded,
        h.providers(|_, w| {
            let n = w.get("calls") + 1;
            w.set("calls", n);
            if n < 3 {
                Err(OpError::failed("not yet"))
            } else {
                ok_json()
            }
        }),
    )
    .await;
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(h.log().len(), 3);
    // 2s, then 4s of backoff on the virtual clock.
    assert_eq!((h.clock.now() - t0).num_seconds(), 6);
    let attempts: Vec<u32> = events(&report)
        .iter()
        .filter_map(|e| match e {
            Event::OpFinished { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
}

#[tokio::test]
async fn a_verify_step_polls_until_it_holds_and_on_failure_continue_goes_on() {
    let h = Harness::new();
    let loaded = h.runbook(
        r#"
version: 1
name: verify
title: t
steps:
  - check: Broken on purpose
    id: broken
    shell: { argv: [fail] }
    on_failure: continue
  - verify: Eventually ready
    id: ready
    shell: { argv: [ready] }
    expect: "result.json.ready"
    within: 1m
    every: 10s
"#,
    );
    let report = run_auto(
        &h,
        &loaded,
        h.providers(|line, w| match line {
            "ready" => {
                let n = w.get("polls") + 1;
                w.set("polls", n);
                Ok(json!({"json": {"ready": n >= 3}}))
            }
            _ => Err(OpError::failed("nope")),
        }),
    )
    .await;
    assert_eq!(report.status, RunStatus::Succeeded, "{}", h.output());
    let polls: Vec<bool> = events(&report)
        .iter()
        .filter_map(|e| match e {
            Event::VerifyPolled { ok, .. } => Some(*ok),
            _ => None,
        })
        .collect();
    assert_eq!(polls, [false, false, true]);
}

#[tokio::test]
async fn dry_run_of_a_ladder_plans_every_rung_and_runs_none() {
    let h = Harness::new();
    let loaded = h.runbook(LADDER);
    let mut opts = h.opts();
    opts.dry_run = true;
    let report = engine::run(
        &loaded,
        h.providers(|_, _| ok_json()),
        Arc::new(AutoApprover::new("test")),
        h.clock.clone(),
        &h.state(),
        opts,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{}", h.output());
    assert!(h.log().is_empty(), "{:?}", h.log());
    let out = h.output();
    for rung in ["gentle", "force", "nuke"] {
        assert!(out.contains(&format!("would run free / {rung}")), "{out}");
    }
    assert!(
        !events(&report)
            .iter()
            .any(|e| matches!(e, Event::Escalated { .. }))
    );
}

#[tokio::test]
async fn an_empty_for_each_asks_nothing_and_succeeds() {
    let h = Harness::new();
    let loaded = h.runbook(
        r#"
version: 1
name: empty
title: t
params:
  nodes: { default: [] }
steps:
  - action: Cordon
    id: cordon
    for_each: params.nodes
    shell: { argv: [cordon, "{{item}}"] }
"#,
    );
    let report = engine::run(
        &loaded,
        h.providers(|_, _| ok_json()),
        Arc::new(FlagApprover::new(false, &[], "ana")),
        h.clock.clone(),
        &h.state(),
        h.opts(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{}", h.output());
    assert!(h.log().is_empty());
}

#[tokio::test]
async fn a_failing_step_runs_its_handlers_then_the_run_fails() {
    let h = Harness::new();
    let loaded = h.runbook(
        r#"
version: 1
name: handlers
title: t
steps:
  - action: Change
    id: change
    gate: auto
    shell: { argv: [change] }
    on_failure: [rollback]
  - check: Never reached
    id: later
    shell: { argv: [later] }
handlers:
  - action: Roll back
    id: rollback
    gate: auto
    shell: { argv: [rollback] }
"#,
    );
    let report = run_auto(
        &h,
        &loaded,
        h.providers(|line, _| match line {
            "change" => Err(OpError::failed("boom")),
            _ => ok_json(),
        }),
    )
    .await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(h.log(), ["change", "rollback"]);
}

#[tokio::test]
async fn resuming_a_for_each_runs_only_the_items_that_did_not_finish_and_asks_again() {
    let h = Harness::new();
    let loaded = h.runbook(
        r#"
version: 1
name: fan-out
title: t
params:
  nodes: { default: [a, b, c, d] }
steps:
  - action: Cordon
    id: cordon
    for_each: params.nodes
    concurrency: 1
    shell: { argv: [cordon, "{{item}}"] }
"#,
    );
    let report = run_auto(&h, &loaded, h.providers(|_, _| ok_json())).await;
    assert_eq!(report.status, RunStatus::Succeeded);
    // Cut the journal as if killed while item 1 ran: item 0 finished, item 1 started.
    let text = std::fs::read_to_string(&report.journal).unwrap();
    let mut kept = String::new();
    for line in text.lines() {
        kept.push_str(line);
        kept.push('\n');
        if line.contains("\"op_started\"") && line.contains("cordon b") {
            break;
        }
    }
    std::fs::write(&report.journal, kept).unwrap();
    let before = h.log().len();

    // The earlier approval does not carry over: nothing can tell whether b happened.
    let paused = h
        .resume(
            &report.run_id,
            h.providers(|_, _| ok_json()),
            Arc::new(FlagApprover::new(false, &[], "ana")),
        )
        .await;
    assert_eq!(paused.status, RunStatus::Paused, "{}", h.output());
    assert_eq!(h.log().len(), before);

    let resumed = h
        .resume(
            &report.run_id,
            h.providers(|_, _| ok_json()),
            Arc::new(FlagApprover::new(false, &["cordon".to_string()], "ana")),
        )
        .await;
    assert_eq!(resumed.status, RunStatus::Succeeded, "{}", h.output());
    assert_eq!(&h.log()[before..], ["cordon b", "cordon c", "cordon d"]);
}

#[tokio::test]
async fn a_large_output_goes_to_a_side_file_and_the_journal_keeps_a_bounded_copy() {
    let h = Harness::new();
    let loaded = h.runbook(
        r#"
version: 1
name: big
title: t
steps:
  - check: Dump
    id: dump
    shell: { argv: [dump] }
    save: dump
"#,
    );
    let big = "x".repeat(100_000);
    let report = run_auto(
        &h,
        &loaded,
        h.providers(move |_, _| Ok(json!({"exit_code": 0, "stdout": big.clone(), "stderr": ""}))),
    )
    .await;
    assert_eq!(report.status, RunStatus::Succeeded);
    let ev = events(&report);
    let (result, file) = ev
        .iter()
        .find_map(|e| match e {
            Event::OpFinished {
                result: Some(r),
                output_file: Some(f),
                ..
            } => Some((r.clone(), f.clone())),
            _ => None,
        })
        .expect("a side file for the large result");
    assert!(result["stdout"].as_str().unwrap().len() < 4096);
    assert!(
        result["stdout"]
            .as_str()
            .unwrap()
            .ends_with("[100000 bytes in total]")
    );
    let full: Value =
        serde_json::from_slice(&std::fs::read(report.run_dir.join(&file)).unwrap()).unwrap();
    assert_eq!(full["stdout"].as_str().unwrap().len(), 100_000);
    assert!(std::fs::metadata(&report.journal).unwrap().len() < 20_000);
    // `save: dump` of that same result names the same file; nothing is written twice.
    let saved = ev
        .iter()
        .find_map(|e| match e {
            Event::Saved { value, .. } => Some(value.clone()),
            _ => None,
        })
        .expect("the saved value");
    assert_eq!(saved, json!({ "$output_file": file }));
    let outputs: Vec<_> = std::fs::read_dir(report.run_dir.join("outputs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outputs.len(), 1, "{outputs:?}");
}

#[tokio::test]
async fn a_ladder_paused_at_its_second_rung_resumes_there_without_rerunning_the_first() {
    let h = Harness::new();
    let loaded = h.runbook(&LADDER.replace("    gate: auto\n", ""));
    let script = |line: &str, w: &World| match line {
        "probe" => Ok(json!({"json": {"free": w.get("forced") == 1}})),
        "force" => {
            w.set("forced", 1);
            ok_json()
        }
        _ => ok_json(),
    };
    let paused = engine::run(
        &loaded,
        h.providers(script),
        Arc::new(FlagApprover::new(false, &["gentle".to_string()], "ana")),
        h.clock.clone(),
        &h.state(),
        h.opts(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(paused.status, RunStatus::Paused, "{}", h.output());
    assert!(events(&paused).iter().any(|e| matches!(e,
        Event::Paused { resume, .. } if resume.ends_with("--approve force"))));
    let gentle_runs = |log: &[String]| log.iter().filter(|l| *l == "gentle").count();
    assert_eq!(gentle_runs(&h.log()), 1);

    let resumed = h
        .resume(
            &paused.run_id,
            h.providers(script),
            Arc::new(FlagApprover::new(false, &["force".to_string()], "bo")),
        )
        .await;
    assert_eq!(resumed.status, RunStatus::Succeeded, "{}", h.output());
    assert_eq!(gentle_runs(&h.log()), 1, "{:?}", h.log());
    assert!(!h.log().contains(&"nuke".to_string()));
    assert!(events(&resumed).iter().any(|e| matches!(e,
        Event::StepFinished { fixed_by: Some(r), .. } if r == "force")));
}
