//! Robustness: the seed runbook against the seed scenario while the (in-process) API
//! server misbehaves. Throttling and unavailability are retried and journaled; a
//! persistent refusal ends the run cleanly, with a journal that says why and a
//! postmortem that renders.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use runbook::engine::{AutoApprover, Printer};
use runbook::journal::event::{ApiCall, Event, Outcome, RunStatus};
use runbook::journal::reader;
use runbook::lab::Lab;
use runbook::lab::faults::ApiFault;
use runbook::render::{RenderOpts, render_run};
use runbook::runbook::load;
use runbook::suite::runner::{LabRun, LabRunOpts, run_on_lab};
use tokio_util::sync::CancellationToken;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn seed_lab() -> Lab {
    Lab::from_scenario_file_at_incident_time(repo("runbooks/hub-pvc-locked.scenario.yaml"))
        .expect("the shipped scenario loads")
}

async fn run_seed(lab: &Lab, state: &Path) -> LabRun {
    let loaded = load(&repo("runbooks/hub-pvc-locked.yaml")).expect("the shipped runbook loads");
    let opts = LabRunOpts {
        params: vec![("prometheus".into(), "{{lab.url}}".into())],
        approver: Arc::new(AutoApprover::new("chaos")),
        state_dir: state.to_path_buf(),
        operator: "chaos".into(),
        printer: Arc::new(Printer::silent()),
        cancel: CancellationToken::new(),
    };
    run_on_lab(&loaded, lab, opts)
        .await
        .expect("the run starts and ends")
}

fn events(run: &LabRun) -> Vec<Event> {
    reader::read(&run.report.journal)
        .expect("the journal reads back")
        .records
        .into_iter()
        .map(|r| r.event)
        .collect()
}

/// Every API call journaled in an `op_finished`, with its step.
fn calls(ev: &[Event]) -> Vec<(String, ApiCall)> {
    ev.iter()
        .filter_map(|e| match e {
            Event::OpFinished { scope, calls, .. } => Some(
                calls
                    .iter()
                    .map(|c| (scope.step.clone(), c.clone()))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect()
}

fn postmortem_renders(run: &LabRun) -> String {
    render_run(&run.report.run_dir, &RenderOpts::default()).expect("the postmortem renders")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_and_unavailable_requests_are_retried_and_the_run_still_succeeds() {
    let lab = seed_lab();
    // Two 429s with Retry-After on the node list, two 503s on the pod list.
    lab.inject_fault(
        ApiFault::new("/api/v1/nodes", 429, 2)
            .method("GET")
            .retry_after(1),
    );
    lab.inject_fault(ApiFault::new("/pods", 503, 2).method("GET"));
    let state = tempfile::tempdir().expect("a temp dir");
    let run = run_seed(&lab, state.path()).await;
    assert_eq!(run.report.status, RunStatus::Succeeded);
    assert!(lab.pending_faults().is_empty(), "every fault fired");

    let ev = events(&run);
    let calls = calls(&ev);
    let with_status = |code: u16| {
        calls
            .iter()
            .filter(|(_, c)| c.status == code && c.method == "GET")
            .count()
    };
    assert_eq!(with_status(429), 2, "both 429s are journaled: {calls:#?}");
    assert_eq!(with_status(503), 2, "both 503s are journaled: {calls:#?}");
    // Each refused call is followed, in the same op, by the call that succeeded.
    for e in &ev {
        if let Event::OpFinished { calls, outcome, .. } = e
            && calls.iter().any(|c| c.status == 429 || c.status == 503)
        {
            assert_eq!(*outcome, Outcome::Ok, "a retried op still succeeds");
            assert!(
                calls.last().is_some_and(|c| c.status == 200),
                "the last attempt succeeded: {calls:?}"
            );
        }
    }
    assert!(matches!(
        ev.last(),
        Some(Event::RunFinished {
            status: RunStatus::Succeeded,
            ..
        })
    ));
    let md = postmortem_renders(&run);
    assert!(
        md.contains("free-hub-volume") || md.contains("Free the hub"),
        "{md}"
    );
}

/// The error texts of the failed non-verification ops of `step`.
fn op_errors<'a>(ev: &'a [Event], step: &str) -> Vec<&'a String> {
    ev.iter()
        .filter_map(|e| match e {
            Event::OpFinished {
                scope,
                error: Some(err),
                ..
            } if scope.step == step && !scope.verification => Some(err),
            _ => None,
        })
        .collect()
}

fn names_forbidden_call(err: &str, verb: &str, resource: &str) -> bool {
    err.contains("Error from server (Forbidden)")
        && err.contains(&format!("cannot {verb} resource \"{resource}\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_pod_deletes_fail_both_delete_rungs_and_the_ladder_escalates_past_them() {
    let lab = seed_lab();
    lab.inject_fault(ApiFault::new("/pods", 403, 1000).method("DELETE"));
    let state = tempfile::tempdir().expect("a temp dir");
    let run = run_seed(&lab, state.path()).await;
    let ev = events(&run);

    // The ladder escalates from each delete rung (their verification cannot hold
    // while every delete is refused).
    let escalations: Vec<(&String, &String)> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Escalated { from, to, .. } => Some((from, to)),
            _ => None,
        })
        .collect();
    for rung in ["delete-hub-pods", "force-delete-lost-pods"] {
        assert!(
            escalations.iter().any(|(from, _)| from.as_str() == rung),
            "the ladder escalated from {rung}: {escalations:#?}"
        );
    }
    // The reason for escalating names the refusal, not only the failed verification.
    assert!(
        ev.iter().any(|e| matches!(e,
            Event::Escalated { from, reason, .. }
                if from == "delete-hub-pods" && reason.contains("Forbidden"))),
        "the escalation says why the rung failed"
    );
    // Each delete rung's op_finished carries kubectl's words for the refused call.
    for rung in ["delete-hub-pods", "force-delete-lost-pods"] {
        assert!(
            ev.iter().any(|e| matches!(e,
                Event::OpFinished { scope, outcome: Outcome::Failed, error: Some(err), .. }
                    if scope.rung.as_deref() == Some(rung)
                        && names_forbidden_call(err, "delete", "pods"))),
            "{rung}: a failed op names the forbidden call"
        );
    }
    assert!(
        op_errors(&ev, "free-hub-volume")
            .iter()
            .any(|e| names_forbidden_call(e, "delete", "pods")),
        "op_finished.error names the forbidden call"
    );
    let forbidden = calls(&ev)
        .into_iter()
        .filter(|(_, c)| c.status == 403 && c.method == "DELETE")
        .collect::<Vec<_>>();
    assert!(!forbidden.is_empty(), "the 403s are in op_finished.calls");
    assert!(forbidden.iter().all(|(step, _)| step == "free-hub-volume"));
    // No pod was deleted behind the refusal.
    assert!(
        lab.requests()
            .iter()
            .filter(|r| r.method == "DELETE")
            .all(|r| r.status == 403),
        "every delete was refused"
    );
    // A later rung that needs no pod delete (the out-of-service taint) fixes it.
    assert_eq!(run.report.status, RunStatus::Succeeded, "{escalations:#?}");
    assert!(ev.iter().any(|e| matches!(e,
        Event::StepFinished { step, fixed_by: Some(r), .. }
            if step == "free-hub-volume" && r == "taint-out-of-service")));
    let md = postmortem_renders(&run);
    assert!(md.contains("Forbidden"), "the postmortem says why: {md}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_forbidden_node_patch_fails_the_run_cleanly_at_that_step() {
    let lab = seed_lab();
    lab.inject_fault(ApiFault::new("/api/v1/nodes/", 403, 1000).method("PATCH"));
    let state = tempfile::tempdir().expect("a temp dir");
    let run = run_seed(&lab, state.path()).await;
    assert_eq!(run.report.status, RunStatus::Failed);
    assert_eq!(run.report.exit_code, 1);

    let ev = events(&run);
    assert!(
        matches!(
            ev.last(),
            Some(Event::RunFinished {
                status: RunStatus::Failed,
                ..
            })
        ),
        "the journal ends with run_finished: {:?}",
        ev.last()
    );
    let errors = op_errors(&ev, "cordon");
    assert!(
        errors
            .iter()
            .any(|e| names_forbidden_call(e, "patch", "nodes")),
        "an error names the forbidden call: {errors:#?}"
    );
    assert!(
        calls(&ev)
            .iter()
            .any(|(step, c)| step == "cordon" && c.method == "PATCH" && c.status == 403),
        "the 403 is in op_finished.calls"
    );
    assert!(ev.iter().any(|e| matches!(e,
        Event::StepFinished { step, outcome: Outcome::Failed, .. } if step == "cordon")));
    // The run stops there: the ladder never starts.
    assert!(!ev.iter().any(|e| matches!(e,
        Event::StepStarted { step, .. } if step == "free-hub-volume")));
    assert!(
        lab.requests().iter().all(|r| r.method != "DELETE"),
        "nothing was deleted"
    );
    let md = postmortem_renders(&run);
    assert!(md.contains("Forbidden"), "the postmortem says why: {md}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_prometheus_at_the_first_check_ends_the_run_cleanly() {
    let lab = seed_lab();
    lab.inject_fault(ApiFault::new("/api/v1/query", 503, 1000));
    let state = tempfile::tempdir().expect("a temp dir");
    let run = run_seed(&lab, state.path()).await;
    let ev = events(&run);
    assert!(matches!(ev.last(), Some(Event::RunFinished { .. })));
    // Nothing was changed on the cluster after the check could not run.
    assert!(lab.requests().iter().all(|r| r.method == "GET"));
    let errors = op_errors(&ev, "launch-rate");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("/api/v1/query") && e.contains("answered HTTP 503")),
        "the error names the status: {errors:#?}"
    );
    assert_eq!(run.report.status, RunStatus::Failed);
    postmortem_renders(&run);
}
