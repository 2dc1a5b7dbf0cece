//! A panic is reported as a bug and exits 70, as the README's exit-code table says.

use assert_cmd::Command;

#[test]
fn a_panic_prints_a_bug_report_request_and_exits_70() {
    let out = Command::cargo_bin("runbook")
        .expect("the runbook binary is built")
        .arg("runs")
        .env("RUNBOOK_TEST_PANIC", "1")
        .output()
        .expect("runbook starts");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(70), "stderr: {stderr}");
    assert!(
        stderr.starts_with("runbook hit a bug and stopped: RUNBOOK_TEST_PANIC=1"),
        "{stderr}"
    );
    assert!(stderr.contains("Please report it"), "{stderr}");
    assert!(
        !stderr.contains("RUST_BACKTRACE"),
        "Rust's default hint leaked: {stderr}"
    );
}

#[test]
fn without_the_switch_nothing_panics() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let out = Command::cargo_bin("runbook")
        .expect("the runbook binary is built")
        .args(["runs", "--state-dir"])
        .arg(tmp.path())
        .env("RUNBOOK_TEST_PANIC", "0")
        .output()
        .expect("runbook starts");
    assert_eq!(out.status.code(), Some(0));
}
