//! `runbook lint`, `list` and `schema` through the real binary.

use std::path::Path;
use std::process::Command as StdCommand;

use crate::support::cli::Cli;

const CLEAN: &str = "\
version: 1
name: clean
title: A clean runbook
steps:
  - check: Pods
    id: pods
    kube: { get: pods }
";

const BROKEN: &str = "\
version: 1
name: broken
title: A broken runbook
steps:
  - check: Pods
    id: pods
    kube: { get: podz }
";

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn shipped_runbooks_lint_clean() {
    Cli::new()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["lint"])
        .run()
        .code(0)
        .stdout_is("")
        .stderr_contains("no problems");
}

#[test]
fn clean_file_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "clean.yaml", CLEAN);
    Cli::new()
        .current_dir(dir.path())
        .args(["lint", "clean.yaml"])
        .run()
        .code(0);
}

#[test]
fn errors_exit_1_with_path_line_column_source_and_caret() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "broken.yaml", BROKEN);
    Cli::new()
        .current_dir(dir.path())
        .args(["lint", "broken.yaml"])
        .run()
        .code(1)
        .stdout_contains(
            "broken.yaml:7:18: error: unknown resource kind `podz`\n  |\n7 |     kube: { get: podz }\n  |                  ^^^^\n",
        )
        .stderr_contains("1 error in 1 file");
}

#[test]
fn a_missing_path_is_a_usage_error_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    Cli::new()
        .current_dir(dir.path())
        .args(["lint", "nope.yaml"])
        .run()
        .code(2)
        .stderr_contains("nope.yaml");
}

#[test]
fn an_unknown_flag_is_a_usage_error_exit_2() {
    Cli::new().args(["lint", "--frobnicate"]).run().code(2);
}

#[test]
fn folders_are_searched_recursively_and_scenarios_skipped() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rb/a.yaml", CLEAN);
    write(dir.path(), "rb/nested/b.yml", BROKEN);
    write(dir.path(), "rb/a.scenario.yaml", "not: a runbook\n");
    write(dir.path(), "rb/notes.txt", "ignored");
    let out = Cli::new()
        .current_dir(dir.path())
        .args(["lint", "rb", "--format", "json"])
        .run()
        .code(1)
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["files_checked"], 2);
    assert_eq!(report["errors"], 1);
    let d = &report["diagnostics"][0];
    assert_eq!(d["path"], "rb/nested/b.yml");
    assert_eq!(d["code"], "kube-kind");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(7), Some(18))
    );
    assert_eq!(d["severity"], "error");
}

#[test]
fn all_files_are_reported_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "one.yaml", BROKEN);
    write(
        dir.path(),
        "two.yaml",
        BROKEN.replace("broken", "two").as_str(),
    );
    Cli::new()
        .current_dir(dir.path())
        .args(["lint", "one.yaml", "two.yaml"])
        .run()
        .code(1)
        .stdout_contains("one.yaml:7:18")
        .stdout_contains("two.yaml:7:18")
        .stderr_contains("2 errors in 2 files");
}

#[test]
fn json_format_of_a_clean_run_has_no_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "clean.yaml", CLEAN);
    let out = Cli::new()
        .current_dir(dir.path())
        .args(["lint", "--format", "json", "clean.yaml"])
        .run()
        .code(0)
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["errors"], 0);
    assert_eq!(report["diagnostics"], serde_json::json!([]));
}

fn git(dir: &Path, args: &[&str]) {
    let ok = StdCommand::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_DATE", "2024-05-06T07:08:09Z")
        .env("GIT_COMMITTER_DATE", "2024-05-06T07:08:09Z")
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

#[test]
fn list_shows_name_title_steps_and_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    git(d, &["init", "-q"]);
    git(d, &["config", "user.email", "t@example.com"]);
    git(d, &["config", "user.name", "T"]);
    write(d, "runbooks/clean.yaml", CLEAN);
    git(d, &["add", "."]);
    git(d, &["commit", "-q", "-m", "Add the clean runbook"]);
    let out = Cli::new()
        .current_dir(d)
        .args(["list"])
        .run()
        .code(0)
        .stdout
        .clone();
    let text = out;
    let line = text
        .lines()
        .find(|l| l.starts_with("clean"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("A clean runbook"), "{line}");
    assert!(line.contains(" 1 "), "step count in {line}");
    assert!(
        line.contains("2024-05-06") && line.contains("Add the clean runbook"),
        "{line}"
    );
}

#[test]
fn list_outside_a_git_repository_omits_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rb/clean.yaml", CLEAN);
    let out = Cli::new()
        .current_dir(dir.path())
        .env("GIT_CEILING_DIRECTORIES", dir.path())
        .args(["list", "rb"])
        .run()
        .code(0)
        .stdout
        .clone();
    let text = out;
    assert!(
        text.contains("clean") && text.contains("A clean runbook"),
        "{text}"
    );
    assert!(!text.to_lowercase().contains("fatal"), "{text}");
}

#[test]
fn list_of_a_missing_folder_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    Cli::new()
        .current_dir(dir.path())
        .args(["list", "nope"])
        .run()
        .code(2);
}

#[test]
fn schema_prints_the_checked_in_schema() {
    let checked_in = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/runbook.schema.json"),
    )
    .unwrap();
    Cli::new()
        .args(["schema"])
        .run()
        .code(0)
        .stdout_is(checked_in);
}

#[test]
fn warnings_alone_exit_0_and_are_shown() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "unverified.yaml",
        "version: 1\nname: unverified\ntitle: t\nsteps:\n  - action: Cordon\n    id: cordon\n    kube: { cordon: node-1 }\n",
    );
    Cli::new()
        .current_dir(dir.path())
        .args(["lint", "unverified.yaml"])
        .run()
        .code(0)
        .stdout_contains("unverified.yaml:5:5: warning: this action has no `verify:` block")
        .stderr_contains("no errors, 1 warning");
}
