//! A panic is reported as a bug and exits 70, as the README's exit-code table says.

use crate::support::cli::Cli;

#[test]
fn a_panic_prints_a_bug_report_request_and_exits_70() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let out = Cli::new()
        .state_dir(tmp.path())
        .arg("runs")
        .env("RUNBOOK_TEST_PANIC", "1")
        .run();
    out.code(70)
        .stderr_contains("Please report it")
        .stderr_contains("RUNBOOK_TEST_PANIC=1");
    assert!(
        out.stderr
            .starts_with("runbook hit a bug and stopped: RUNBOOK_TEST_PANIC=1"),
        "{out}"
    );
    assert!(
        !out.stderr.contains("RUST_BACKTRACE"),
        "Rust's default hint leaked: {out}"
    );
}

#[test]
fn without_the_switch_nothing_panics() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    Cli::new()
        .state_dir(tmp.path())
        .arg("runs")
        .env("RUNBOOK_TEST_PANIC", "0")
        .run()
        .success();
}
