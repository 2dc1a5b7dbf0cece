//! Regressions of issue 15 in `runbook test`: shell steps run (in the runbook's
//! folder, talking to the lab), and a failing case says which step failed and why.

use crate::support::regex_escape;
use std::path::{Path, PathBuf};

use crate::support::cli::{Cli, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `runbook test PATH...` from the repository root, with `state` as the state dir.
fn runbook_test(state: &Path, paths: &[&str]) -> Output {
    Cli::new()
        .current_dir(repo())
        .state_dir(state)
        .arg("test")
        .args(paths)
        .run()
}

/// What changes from run to run in `runbook test` output: the state dir, run ids,
/// wall-clock seconds.
fn filters(state: &Path) -> Vec<(String, &'static str)> {
    vec![
        (regex_escape(&state.display().to_string()), "[STATE]"),
        (r"\d{8}-\d{6}-[a-z0-9-]+-[0-9a-f]{4}".into(), "[RUN]"),
        (r"\d+\.\d+s wall".into(), "[WALL]s wall"),
        (regex_escape(&repo().display().to_string()), "[REPO]"),
    ]
}

#[test]
fn shell_steps_run_in_the_runbooks_folder_with_the_labs_kubeconfig() {
    let state = tempfile::tempdir().expect("a temp dir");
    let out = runbook_test(state.path(), &["tests/fixtures/suite/shell-steps.yaml"]);
    let text = &out.success().stdout;
    assert!(
        text.starts_with("PASS  shell-steps :: every shell step runs (succeeded;"),
        "{text}"
    );
}

#[test]
fn a_program_missing_from_path_is_reported_as_not_found_on_path() {
    let state = tempfile::tempdir().expect("a temp dir");
    let out = runbook_test(state.path(), &["tests/fixtures/suite/missing-program.yaml"]);
    let text = &out.code(1).stdout;
    assert!(
        text.contains("cannot start `runbook-test-no-such-program`: not found on PATH (in "),
        "{text}"
    );
}

/// The FAIL block names the runbook and case (header), the step and rung that failed
/// with its error or unmet verification (`why:`), and the journal.
#[test]
fn a_failing_case_says_which_step_failed_why_and_where_its_journal_is() {
    let state = tempfile::tempdir().expect("a temp dir");
    let out = runbook_test(
        state.path(),
        &[
            "tests/fixtures/suite/missing-program.yaml",
            "tests/fixtures/runbooks/hub-no-force-delete.yaml",
            "tests/fixtures/runbooks/prometheus-careless.yaml",
        ],
    );
    let filters = filters(state.path());
    let filters: Vec<(&str, &str)> = filters.iter().map(|(a, b)| (a.as_str(), *b)).collect();
    insta::with_settings!({filters => filters}, {
        insta::assert_snapshot!("test-failures", out.code(1).stdout);
    });
}

/// `approve:`, `ran:` and `not_ran:` take rung ids, as `runbook run --approve RUNG`
/// does: an explicit rung approved by id runs and fixes the step; unapproved, the
/// run pauses at it and the rung after it never starts.
#[test]
fn test_files_name_rungs_in_approve_ran_and_not_ran() {
    let state = tempfile::tempdir().expect("a temp dir");
    let out = runbook_test(state.path(), &["tests/fixtures/suite/rung-ids.yaml"]);
    let text = &out.success().stdout;
    assert!(
        text.contains("PASS  rung-ids :: approving the rung by its id lets it run (succeeded;"),
        "{text}"
    );
    assert!(
        text.contains("PASS  rung-ids :: without the approval the run pauses at the rung (paused;"),
        "{text}"
    );
}

/// `runbook lint FILE` on `text`, from a temp dir; stdout and stderr together.
fn lint(text: &str) -> String {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("r.yaml");
    std::fs::write(&path, text).expect("a writable temp dir");
    let out = Cli::new()
        .state_dir(dir.path())
        .arg("lint")
        .arg(&path)
        .run();
    format!("{}{}", out.code(1).stdout, out.stderr)
}

const HEADER: &str = "version: 1\nname: t\ntitle: t\nsteps:\n";

#[test]
fn misleading_lint_advice_points_at_the_real_remedy() {
    let text = lint(&format!(
        "{HEADER}  - check: c\n    id: c\n    shell: {{ argv: [true] }}\n  - action: a\n    id: a\n    on_failure: retry\n    kube: {{ rollout_undo: deployment/x }}\n    verify: {{ kube: {{ get: pods }}, expect: \"true\" }}\n"
    ));
    assert!(
        text.contains("help: YAML reads a bare `true` as a boolean: quote it, `\"true\"`"),
        "{text}"
    );
    assert!(
        text.contains("help: to try the step again, give it `retry:"),
        "{text}"
    );
    // rollout_undo is a verb now (issue 15): kubectl's `deployment/x` is explained,
    // and a different remedy is never suggested.
    assert!(
        text.contains(
            "help: write the kind and the name apart: `rollout_undo: deployments` with `name: x`"
        ),
        "{text}"
    );
    assert!(!text.contains("does not support"), "{text}");
    assert!(!text.contains("did you mean `rollout_restart`"), "{text}");
}

#[test]
fn lint_rejects_what_fails_at_run_time() {
    let text = lint(&format!(
        "{HEADER}  - check: c\n    id: c\n    kube: {{ get: pods }}\n    save: pods\n  - verify: v\n    id: v\n    for_each: pods\n    kube: {{ get: pods }}\n    expect: \"size(result) > 0\"\n  - check: d\n    id: d\n    shell: {{ argv: [echo, \"{{{{pods.length}}}}\"] }}\n"
    ));
    assert!(
        text.contains("error: `for_each` does not apply to a verify step"),
        "{text}"
    );
    assert!(
        text.contains("help: count with the `len` helper: `{{len pods}}`"),
        "{text}"
    );
}
