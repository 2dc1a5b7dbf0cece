//! Issue 13: every timeout message says how to raise the limit it hit (the key to
//! set, with an example), whether the limit was the step's own or a default.

use std::net::TcpListener;
use std::path::Path;

use runbook::journal::event::{Event, Outcome};
use runbook::journal::reader;

use crate::support::cli::Cli;

/// The errors of the run's finished operations and the run's own reason.
fn errors(state: &Path) -> Vec<(String, Outcome, String)> {
    let runs: Vec<_> = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .flatten()
        .collect();
    let j = reader::read(&runs[0].path().join("journal.ndjson")).unwrap();
    j.records
        .into_iter()
        .filter_map(|r| match r.event {
            Event::OpFinished {
                scope,
                outcome,
                error,
                ..
            } => Some((scope.step, outcome, error.unwrap_or_default())),
            _ => None,
        })
        .collect()
}

fn run(dir: &Path, steps: &str) -> (crate::support::cli::Output, Vec<(String, Outcome, String)>) {
    let file = dir.join("t.yaml");
    std::fs::write(
        &file,
        format!("version: 1\nname: t\ntitle: Timeouts\nsteps:\n{steps}"),
    )
    .unwrap();
    let state = dir.join("state");
    let out = Cli::new()
        .state_dir(&state)
        .args(["run", "--yes", file.to_str().unwrap()])
        .run();
    let errs = errors(&state);
    (out, errs)
}

#[test]
fn a_step_timeout_names_the_step_and_the_timeout_key_to_raise() {
    let dir = tempfile::tempdir().unwrap();
    let (out, errs) = run(
        dir.path(),
        "  - check: Slow\n    id: slow\n    timeout: 1s\n    shell:\n      argv: [sleep, '30']\n",
    );
    out.code(1)
        .stderr_contains("`timeout:` on the step (e.g. `timeout: 2s`)");
    assert_eq!(errs[0].1, Outcome::TimedOut);
    assert_eq!(
        errs[0].2,
        "timed out after 1.0s; to allow longer, raise `timeout:` on step `slow` (e.g. `timeout: 2s`)"
    );
}

#[test]
fn an_http_timeout_says_how_to_raise_it() {
    let dir = tempfile::tempdir().unwrap();
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let (out, errs) = run(
        dir.path(),
        &format!(
            "  - check: Ask a stalled server\n    id: ask\n    timeout: 2s\n    http: {{ url: \"{url}\" }}\n"
        ),
    );
    drop(listener);
    out.code(1);
    assert_eq!(errs[0].1, Outcome::TimedOut, "{errs:?}");
    assert!(
        errs[0]
            .2
            .contains("raise `timeout:` on step `ask` (e.g. `timeout: 4s`)"),
        "{errs:?}"
    );
}

#[test]
fn a_verification_that_runs_out_of_time_says_to_raise_within() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = run(
        dir.path(),
        "  - action: Act\n    id: act\n    shell: { argv: ['true'] }\n    verify:\n      shell: { argv: ['false'] }\n      within: 1s\n      every: 200ms\n",
    );
    out.code(1)
        .stderr_contains("if the fix needs longer, raise the verification's `within:`");
}

#[test]
fn a_timeout_message_of_the_provider_names_the_key() {
    // What a provider reports itself (a kube `wait`, a rollout) goes through the
    // same error type.
    let e = runbook::providers::OpError::TimedOut(std::time::Duration::from_secs(90));
    assert_eq!(
        e.to_string(),
        "timed out after 90s; to allow longer, set a longer `timeout:` on the step (e.g. `timeout: 3m`)"
    );
}

/// Issue 13 item 16: a provider's timeout is written as a runbook writes durations,
/// not as Rust's `Debug` of a `Duration` (`300s`, `1.000000001s`).
#[test]
fn a_provider_timeout_reads_as_a_runbook_duration() {
    let said = |d| runbook::providers::OpError::TimedOut(d).to_string();
    assert!(
        said(std::time::Duration::from_secs(300)).starts_with("timed out after 5m; "),
        "{}",
        said(std::time::Duration::from_secs(300))
    );
    assert!(
        said(std::time::Duration::from_nanos(1_000_000_001)).starts_with("timed out after 1s; "),
        "{}",
        said(std::time::Duration::from_nanos(1_000_000_001))
    );
}
