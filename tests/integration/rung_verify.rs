//! A rung may carry its own `verify:`, used instead of the step's after it: "cordon"
//! and "someone drained it" are proven differently.

use std::path::PathBuf;

use crate::support::cli::Cli;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn a_rungs_own_verification_decides_whether_it_fixed_the_step() {
    let state = tempfile::tempdir().expect("a temp dir");
    // The step's verification (a `drained` label) never holds in the lab; the
    // cordon rung's own (the node is unschedulable) does, so the ladder stops there.
    let out = Cli::new()
        .current_dir(repo())
        .state_dir(state.path())
        .args(["test", "tests/fixtures/suite/rung-verify.yaml"])
        .run();
    out.success().stdout_contains(
        "PASS  rung-verify :: the first rung is proven by its own verification (succeeded;",
    );
}

#[test]
fn a_ladder_without_a_step_verification_needs_one_on_every_rung() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let rb = tmp.path().join("rb.yaml");
    std::fs::write(
        &rb,
        r#"version: 1
name: half-verified
title: One rung verified, one not
steps:
  - action: Fix it
    id: fix
    escalate:
      - id: gentle
        shell: { argv: ["true"] }
        verify:
          shell: { argv: ["true"] }
      - id: hard
        shell: { argv: ["true"] }
"#,
    )
    .expect("write the runbook");
    Cli::new()
        .arg("lint")
        .arg(&rb)
        .run()
        .code(1)
        .stdout_contains("rb.yaml:12:9: error: an `escalate` ladder needs a `verify:` block")
        .stdout_contains("or this rung its own `verify:`");
}
