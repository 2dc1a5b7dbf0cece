//! `now` in conditions: the run clock's time as a CEL timestamp, read each time a
//! condition is evaluated, so a runbook can ask "Terminating past its grace period?"
//! and a verification can wait for time to pass. The engine runs against scripted
//! providers with a virtual clock, and against the lab with its virtual clock.

use crate::support::scripted as scripted_support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use runbook::engine::{self, AutoApprover, Clock, EngineOpts, Printer, RunReport};
use runbook::journal::event::{Event, Outcome, Record, RunStatus};
use runbook::journal::reader;
use runbook::lab::Lab;
use runbook::providers::{Defaults, ExecCtx, OpError, Provider, Providers, Resolved};
use runbook::runbook::model::OpRef;
use runbook::suite::run_on_lab;
use runbook::suite::runner::LabRunOpts;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Registered as `shell`: every operation returns the same JSON.
struct Returns(Value);

impl Provider for Returns {
    fn resolve(&self, op: OpRef<'_>, vars: &Value, _: &Defaults) -> Result<Resolved, OpError> {
        scripted_support::resolve_shell(op, vars, false)
    }

    fn execute<'a>(
        &'a self,
        _: &'a Resolved,
        _: &'a ExecCtx,
    ) -> BoxFuture<'a, Result<Value, OpError>> {
        Box::pin(async move { Ok(self.0.clone()) })
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

/// The virtual clock starts here.
const START: &str = "2026-03-13T14:00:00Z";

fn load(dir: &Path, yaml: &str) -> runbook::runbook::Loaded {
    let path = dir.join("rb.yaml");
    std::fs::write(&path, yaml).unwrap();
    runbook::runbook::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Run `yaml` with every `shell` operation returning `result`, on a virtual clock
/// at [`START`]: the report, the clock's time at the end, and the folder holding
/// the journal.
async fn run_scripted(yaml: &str, result: Value) -> (RunReport, DateTime<Utc>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let loaded = load(dir.path(), yaml);
    let clock = Arc::new(VirtualClock(Mutex::new(START.parse().unwrap())));
    let providers = Providers::empty().with("shell", Arc::new(Returns(result)));
    let mut opts = EngineOpts::new("ana", Arc::new(Printer::silent()));
    opts.defaults.base_dir = dir.path().to_owned();
    let report = engine::run(
        &loaded,
        providers,
        Arc::new(AutoApprover::new("test")),
        clock.clone(),
        &dir.path().join("state"),
        opts,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let end = clock.now();
    (report, end, dir)
}

fn records(report: &RunReport) -> Vec<Record> {
    reader::read(&report.journal).unwrap().records
}

fn finished(records: &[Record], step: &str) -> (Outcome, String) {
    records
        .iter()
        .find_map(|r| match &r.event {
            Event::StepFinished {
                step: s,
                outcome,
                summary,
                ..
            } if s == step => Some((*outcome, summary.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("step {step} did not finish"))
}

/// A pod whose deletion was asked with a 30 s grace period: the API server sets
/// `deletionTimestamp` to the end of that grace period.
fn pod_terminating_since(deletion: &str) -> Value {
    json!({"items": [{
        "metadata": {"name": "hub-0", "deletionTimestamp": deletion, "deletionGracePeriodSeconds": 30}
    }]})
}

const PAST_GRACE: &str = r#"
version: 1
name: past-grace
title: t
steps:
  - check: Pods Terminating more than 5 minutes past their grace period
    id: stuck
    shell: { argv: [list-pods] }
    save: pods
    expect: "pods.items.exists(p, now - timestamp(p.metadata.deletionTimestamp) > duration('300s'))"
"#;

#[tokio::test]
async fn a_check_on_now_holds_just_past_its_threshold_and_not_just_before() {
    // 14:00:00 - 5 min 1 s: the grace period ended 301 s ago.
    let (report, _, _dir) =
        run_scripted(PAST_GRACE, pod_terminating_since("2026-03-13T13:54:59Z")).await;
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(finished(&records(&report), "stuck").0, Outcome::Ok);

    // 299 s ago: not yet.
    let (report, _, _dir) =
        run_scripted(PAST_GRACE, pod_terminating_since("2026-03-13T13:55:01Z")).await;
    assert_eq!(report.status, RunStatus::NotApplicable);
    let (outcome, summary) = finished(&records(&report), "stuck");
    assert_eq!(outcome, Outcome::NotApplicable, "{summary}");
}

#[tokio::test]
async fn the_grace_period_in_seconds_turns_into_a_cel_duration() {
    // When the deletion was asked: the end of the grace period minus the period.
    let yaml = r#"
version: 1
name: asked
title: t
steps:
  - check: Deletion asked more than 2 minutes ago
    id: asked
    shell: { argv: [list-pods] }
    save: pods
    expect: "pods.items.all(p, timestamp(p.metadata.deletionTimestamp) - duration(string(p.metadata.deletionGracePeriodSeconds) + 's') + duration('2m') < now)"
"#;
    // Grace ended at 13:58:29, so it was asked at 13:57:59: 2 min 1 s ago.
    let (report, _, _dir) = run_scripted(yaml, pod_terminating_since("2026-03-13T13:58:29Z")).await;
    assert_eq!(report.status, RunStatus::Succeeded);
    // Asked at 13:58:01: 1 min 59 s ago.
    let (report, _, _dir) = run_scripted(yaml, pod_terminating_since("2026-03-13T13:58:31Z")).await;
    assert_eq!(report.status, RunStatus::NotApplicable);
}

#[tokio::test]
async fn a_polling_verification_sees_a_later_now_on_every_poll() {
    let yaml = r#"
version: 1
name: wait-out-grace
title: t
steps:
  - verify: The pod's grace period is over
    id: grace-over
    shell: { argv: [get-pod] }
    expect: "timestamp(result.items[0].metadata.deletionTimestamp) < now"
    within: 2m
    every: 10s
"#;
    // The grace period ends 35 s after the run starts: polls at +0, +10, +20 and
    // +30 s do not hold, the one at +40 s does.
    let (report, end, _dir) =
        run_scripted(yaml, pod_terminating_since("2026-03-13T14:00:35Z")).await;
    assert_eq!(report.status, RunStatus::Succeeded);
    let polls: Vec<(u32, bool, DateTime<Utc>)> = records(&report)
        .iter()
        .filter_map(|r| match &r.event {
            Event::VerifyPolled { attempt, ok, .. } => Some((*attempt, *ok, r.ts)),
            _ => None,
        })
        .collect();
    let oks: Vec<bool> = polls.iter().map(|p| p.1).collect();
    assert_eq!(oks, vec![false, false, false, false, true], "{polls:?}");
    assert_eq!(
        polls.last().unwrap().2,
        "2026-03-13T14:00:40Z".parse::<DateTime<Utc>>().unwrap()
    );
    assert_eq!(
        end,
        "2026-03-13T14:00:40Z".parse::<DateTime<Utc>>().unwrap()
    );
}

#[tokio::test]
async fn now_stays_out_of_the_journal_and_saved_values() {
    let (report, _, _dir) =
        run_scripted(PAST_GRACE, pod_terminating_since("2026-03-13T13:54:59Z")).await;
    // The condition did read `now` (it holds), yet nothing of it is recorded.
    assert_eq!(finished(&records(&report), "stuck").0, Outcome::Ok);
    let text = std::fs::read_to_string(&report.journal).unwrap();
    let saved: Vec<(String, Value)> = records(&report)
        .into_iter()
        .filter_map(|r| match r.event {
            Event::Saved { name, value, .. } => Some((name, value)),
            _ => None,
        })
        .collect();
    assert_eq!(
        saved,
        vec![(
            "pods".to_string(),
            pod_terminating_since("2026-03-13T13:54:59Z")
        )]
    );
    // The clock's time appears only as event timestamps, never as a value.
    assert!(!text.contains("\"now\""), "{text}");
}

// ----- against the lab, on its virtual clock -----------------------------------

async fn run_lab(lab: &Lab, yaml: &str) -> (RunReport, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let loaded = load(dir.path(), yaml);
    let ran = run_on_lab(
        &loaded,
        lab,
        LabRunOpts {
            params: Vec::new(),
            approver: Arc::new(AutoApprover::new("test")),
            state_dir: dir.path().join("state"),
            operator: "ana".into(),
            printer: Arc::new(Printer::silent()),
            cancel: CancellationToken::new(),
        },
    )
    .await
    .unwrap();
    (ran.report, dir)
}

#[tokio::test]
async fn a_kube_where_reads_the_labs_time_at_the_incident_not_the_wall_clock() {
    // The seed incident (2018-03-13): the old hub pod was deleted hours before, and
    // the lost node never confirmed it. Within a day of the incident's own time,
    // hours past its grace period; measured against today's wall clock, years.
    let yaml = r#"
version: 1
name: stuck-terminating
title: t
steps:
  - check: Pods Terminating past their grace period
    id: stuck
    kube:
      get: pods
      namespace: prod
      where: "has(pod.metadata.deletionTimestamp) && now - timestamp(pod.metadata.deletionTimestamp) > duration('5m') && now - timestamp(pod.metadata.deletionTimestamp) < duration('24h')"
    save: stuck
    expect: "size(stuck) == 1 && stuck[0].metadata.name == 'hub-65d9f46698-dj4jb'"
"#;
    let lab = Lab::seed_at_incident_time();
    assert!(lab.now() < "2019-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap());
    let (report, _dir) = run_lab(&lab, yaml).await;
    let (outcome, summary) = finished(&records(&report), "stuck");
    assert_eq!(outcome, Outcome::Ok, "{summary}");
    assert_eq!(report.status, RunStatus::Succeeded);
}

/// A notebook pod of the seed scenario on a lost node, not yet evicted.
const POD: &str = "jupyter-ipython-2dipython-2din-2ddepth-2dk2m8pq";

#[tokio::test]
async fn a_verification_on_the_lab_holds_once_the_lab_clock_passes_the_grace_period() {
    // A notebook pod on a lost node, not yet evicted, deleted with a 20 s grace
    // period: it stays Terminating (no kubelet confirms), and only the passing of lab
    // time makes it "past its grace period".
    let yaml = format!(
        r#"
version: 1
name: graceful-then-check
title: t
steps:
  - action: Delete the notebook pod gracefully
    id: delete
    gate: auto
    kube: {{ delete: pod, name: {POD}, namespace: prod, grace_period: 20 }}
    verify:
      kube:
        get: pods
        namespace: prod
        where: "pod.metadata.name == '{POD}' && has(pod.metadata.deletionTimestamp) && timestamp(pod.metadata.deletionTimestamp) < now"
      expect: "size(result) == 1"
      within: 2m
      every: 10s
"#
    );
    let lab = Lab::seed_at_incident_time();
    let start = lab.now();
    let before = lab
        .get("pods", Some("prod"), POD)
        .expect("the seed has the pod");
    assert!(before.pointer("/metadata/deletionTimestamp").is_none());
    let (report, _dir) = run_lab(&lab, &yaml).await;
    assert_eq!(report.status, RunStatus::Succeeded);
    let polls: Vec<bool> = records(&report)
        .iter()
        .filter_map(|r| match &r.event {
            Event::VerifyPolled { ok, .. } => Some(*ok),
            _ => None,
        })
        .collect();
    // The grace period ends 20 s after the delete: the polls at +0, +10 and +20 s
    // are not past it, the one at +30 s is.
    assert_eq!(polls, vec![false, false, false, true]);
    assert_eq!((lab.now() - start).num_seconds(), 30);
    let pod = lab
        .get("pods", Some("prod"), POD)
        .expect("a pod on a lost node stays Terminating");
    assert_eq!(
        pod.pointer("/metadata/deletionTimestamp"),
        Some(&json!(
            (start + chrono::Duration::seconds(20))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ))
    );
}

#[tokio::test]
async fn a_test_files_cluster_expectations_read_the_labs_time() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = r#"
version: 1
name: graceful-delete
title: t
steps:
  - action: Delete the notebook pod gracefully
    id: delete
    gate: auto
    kube: { delete: pod, name: jupyter-binder-2dexamples-2dr-2dq3x9a1, namespace: prod, grace_period: 30 }
    verify:
      kube: { get: pods, namespace: prod, where: "has(pod.metadata.deletionTimestamp) && timestamp(pod.metadata.deletionTimestamp) < now" }
      expect: "result.exists(p, p.metadata.name == 'jupyter-binder-2dexamples-2dr-2dq3x9a1')"
      within: 2m
      every: 10s
"#;
    let loaded = load(dir.path(), yaml);
    let scenario =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/hub-pvc-locked.scenario.yaml");
    let test_file = dir.path().join("rb.test.yaml");
    // At the end the lab's clock is 10 s past the grace period (the poll at +40 s).
    std::fs::write(
        &test_file,
        format!(
            r#"version: 1
tests:
  - name: graceful delete on a lost node
    scenario: "{}"
    expect:
      status: succeeded
      cluster:
        past its grace period: "pods.exists(p, p.metadata.name == 'jupyter-binder-2dexamples-2dr-2dq3x9a1' && now - timestamp(p.metadata.deletionTimestamp) == duration('10s'))"
        not a minute past it: "pods.exists(p, p.metadata.name == 'jupyter-binder-2dexamples-2dr-2dq3x9a1' && now - timestamp(p.metadata.deletionTimestamp) > duration('1m'))"
"#,
            scenario.display()
        ),
    )
    .unwrap();
    let spec = runbook::suite::spec::load(&test_file, &loaded.runbook).unwrap();
    let result = runbook::suite::run_case(
        &loaded,
        dir.path(),
        &spec.tests[0],
        &dir.path().join("state"),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(
        result.status,
        Some(RunStatus::Succeeded),
        "{:?}",
        result.failures
    );
    assert_eq!(result.cluster_secs, 40);
    assert_eq!(
        result.failures,
        vec![format!(
            "cluster: not a minute past it: does not hold (pods.exists(p, p.metadata.name == 'jupyter-binder-2dexamples-2dr-2dq3x9a1' && now - timestamp(p.metadata.deletionTimestamp) > duration('1m')))"
        )]
    );
}

/// The yaml block of docs/format.md that contains `marker`.
fn doc_example(marker: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/format.md");
    let doc = std::fs::read_to_string(path).unwrap();
    doc.split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("\n```").next())
        .find(|b| b.contains(marker))
        .unwrap_or_else(|| panic!("docs/format.md has no yaml example with {marker}"))
        .to_string()
}

#[tokio::test]
async fn the_documented_terminating_example_finds_and_clears_the_seed_incidents_stuck_hub_pod() {
    let steps: String = doc_example("id: stuck-terminating")
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect();
    let yaml = format!(
        "version: 1\nname: doc-terminating\ntitle: t\nparams:\n  namespace: {{ default: prod }}\nsteps:\n{steps}"
    );
    let lab = Lab::seed_at_incident_time();
    let (report, _dir) = run_lab(&lab, &yaml).await;
    let records = records(&report);
    let (outcome, summary) = finished(&records, "stuck-terminating");
    assert_eq!(outcome, Outcome::Ok, "{summary}");
    // Only the old hub pod (deleted five hours before the incident's time) is past
    // its grace period by more than 5 minutes; the others were evicted just now.
    let stuck: Vec<String> = records
        .iter()
        .find_map(|r| match &r.event {
            Event::Saved { name, value, .. } if name == "stuck_pods" => Some(
                value
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
                    .collect(),
            ),
            _ => None,
        })
        .expect("stuck_pods saved");
    assert_eq!(stuck, vec!["hub-65d9f46698-dj4jb".to_string()]);
    assert_eq!(report.status, RunStatus::Succeeded);
    assert!(
        lab.get("pods", Some("prod"), "hub-65d9f46698-dj4jb")
            .is_none()
    );
}

#[tokio::test]
async fn a_when_and_a_for_each_read_now_too() {
    // The virtual clock starts at 14:00 UTC.
    let yaml = r#"
version: 1
name: when-now
title: t
steps:
  - check: Only from 14:00 UTC on
    id: afternoon
    when: "now.getHours() >= 14"
    shell: { argv: [probe] }
  - check: Only before 14:00 UTC
    id: morning
    when: "now.getHours() < 14"
    shell: { argv: [probe] }
  - action: One item per timestamp
    id: stamps
    gate: auto
    for_each: "[now - duration('1m'), now]"
    shell: { argv: [stamp, "{{item}}"] }
"#;
    let (report, _, _dir) = run_scripted(yaml, json!({"exit_code": 0})).await;
    assert_eq!(report.status, RunStatus::Succeeded);
    let records = records(&report);
    assert_eq!(finished(&records, "afternoon").0, Outcome::Ok);
    let skipped: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::StepSkipped { step, .. } => Some(step.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(skipped, vec!["morning".to_string()]);
    // A timestamp that becomes data is an RFC 3339 string.
    let displays: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::OpStarted { op, .. } if op.scope.step == "stamps" => Some(op.display.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        displays,
        vec![
            "stamp 2026-03-13T13:59:00+00:00".to_string(),
            "stamp 2026-03-13T14:00:00+00:00".to_string()
        ]
    );
}

#[tokio::test]
async fn a_kube_wait_polls_on_the_labs_clock() {
    // The same notebook pod on a lost node, deleted with a 20 s grace period. A kube
    // `wait` polls on the run's clock: against the lab, its polls move the lab's time,
    // so the grace period runs out (and a hopeless wait times out) in cluster time,
    // not in wall time.
    let yaml = format!(
        r#"
version: 1
name: wait-out-grace
title: t
steps:
  - action: Delete the notebook pod gracefully
    id: delete
    gate: auto
    kube: {{ delete: pod, name: {POD}, namespace: prod, grace_period: 20 }}
  - check: Its grace period runs out
    id: grace
    kube:
      wait: pods
      name: {POD}
      namespace: prod
      for: "timestamp(pod.metadata.deletionTimestamp) < now"
    timeout: 2m
  - check: It never goes away (no kubelet confirms)
    id: gone
    kube: {{ wait: pods, name: {POD}, namespace: prod, for: delete }}
    timeout: 90s
"#
    );
    let lab = Lab::seed_at_incident_time();
    let start = lab.now();
    let wall = std::time::Instant::now();
    let (report, _dir) = run_lab(&lab, &yaml).await;
    let finished: Vec<(String, Outcome, String)> = records(&report)
        .iter()
        .filter_map(|r| match &r.event {
            Event::StepFinished {
                step,
                outcome,
                summary,
                ..
            } => Some((step.clone(), *outcome, summary.clone())),
            _ => None,
        })
        .collect();
    let outcomes: Vec<(&str, Outcome)> =
        finished.iter().map(|(s, o, _)| (s.as_str(), *o)).collect();
    assert_eq!(
        outcomes,
        [
            ("delete", Outcome::Ok),
            ("grace", Outcome::Ok),
            ("gone", Outcome::Failed)
        ],
        "{finished:?}"
    );
    assert_eq!(
        finished[2].2,
        "timed out after 90s; to allow longer, set a longer `timeout:` on the step (e.g. `timeout: 3m`)",
        "{finished:?}"
    );
    let passed = lab.now() - start;
    assert!(
        passed >= chrono::Duration::seconds(20 + 90),
        "the lab's time moved with the polls: {passed}"
    );
    assert!(
        wall.elapsed() < Duration::from_secs(60),
        "110 s of cluster time are not waited out on the wall clock: {:?}",
        wall.elapsed()
    );
}
