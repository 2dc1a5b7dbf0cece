//! Every YAML file a person writes goes through one reader with one policy (issue 12)
//! and one guarded read (issue 13, item 11): runbooks, lab scenarios and test files
//! alike refuse a key written twice, an alias bomb and an unknown tag, with the
//! file, line and column; and none of them is read from a FIFO or a device.

use std::path::{Path, PathBuf};

use crate::support::cli::Cli;
use runbook::lab::scenario;
use runbook::suite::spec;

const RUNBOOK: &str = "\
version: 1
name: t
title: t
steps:
  - check: Pods
    id: pods
    kube: { get: pods }
";

/// A billion-laughs list (10^12 strings if expanded), as items of a list that starts
/// at column 3 of the lines after `head`.
fn alias_bomb(head: &str) -> String {
    let mut src = format!("{head}\n  - &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        let refs = vec![format!("*a{p}"); 10].join(", ");
        src.push_str(&format!("  - &a{i} [{refs}]\n"));
    }
    src
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a temp file");
    path
}

fn scenario_error(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "s.scenario.yaml", text);
    match scenario::load_file(&path) {
        Ok(_) => panic!("the scenario was accepted:\n{text}"),
        Err(e) => e.to_string().replace(&path.display().to_string(), "FILE"),
    }
}

fn test_file_error(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "t.test.yaml", text);
    let rb = runbook::runbook::parse_str(RUNBOOK, Path::new("t.yaml")).unwrap();
    match spec::load(&path, &rb) {
        Ok(_) => panic!("the test file was accepted:\n{text}"),
        Err(e) => e.to_string().replace(&path.display().to_string(), "FILE"),
    }
}

#[test]
fn a_scenario_with_a_key_written_twice_is_refused_at_the_second_key() {
    // Inside an object (free-form YAML) the second `name` used to win silently.
    let e = scenario_error(
        "version: 1\nname: a\nobjects:\n  - apiVersion: v1\n    kind: Node\n    metadata:\n      name: n1\n      name: n2\n",
    );
    assert!(e.starts_with("FILE:8:7: "), "{e}");
    assert!(e.contains("`name` appears twice"), "{e}");
}

#[test]
fn a_scenario_alias_bomb_is_refused_with_a_position() {
    let e = scenario_error(&alias_bomb("version: 1\nname: bomb\nobjects:"));
    assert!(e.starts_with("FILE:"), "{e}");
    let loc: Vec<&str> = e.splitn(4, ':').collect();
    assert!(loc[1].parse::<u32>().unwrap() > 0, "{e}");
    assert!(e.contains("anchors and aliases"), "{e}");
}

#[test]
fn a_test_file_with_a_key_written_twice_is_refused_at_the_second_key() {
    // In `params` (a map) the second `a` used to win silently.
    let e = test_file_error(
        "version: 1\ntests:\n  - name: t\n    scenario: s.yaml\n    params: { a: x, a: y }\n    expect: { status: succeeded }\n",
    );
    assert!(e.starts_with("FILE:5:"), "{e}");
    assert!(e.contains("`a` appears twice"), "{e}");
}

#[test]
fn a_test_file_alias_bomb_is_refused_with_a_position() {
    // A test file's fields are typed, so the bomb is refused (by type) before it is
    // expanded; the point is that it is refused fast and with a position.
    let started = std::time::Instant::now();
    let e = test_file_error(&alias_bomb("version: 1\ntests:"));
    let loc: Vec<&str> = e.splitn(4, ':').collect();
    assert_eq!(loc[0], "FILE", "{e}");
    assert!(loc[1].parse::<u32>().unwrap() > 0, "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{e}");
}

#[test]
fn a_yaml_tag_in_a_runbook_is_an_error_not_silently_dropped() {
    let text = RUNBOOK.replace("get: pods", "get: !secret pods");
    let diags = runbook::runbook::lint_str(&text);
    let tag = diags.iter().find(|d| d.code == "yaml-tag");
    let tag = tag.unwrap_or_else(|| panic!("no yaml-tag error: {diags:?}"));
    assert_eq!(tag.line, 7, "{tag:?}");
}

#[test]
fn a_tagged_value_in_a_scenario_is_refused() {
    let e = scenario_error("version: 1\nname: !secret a\n");
    assert!(e.starts_with("FILE:2:"), "{e}");
    assert!(e.contains("tags"), "{e}");
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo").arg(path).status();
    assert!(status.is_ok_and(|s| s.success()), "mkfifo failed");
}

/// Before the guarded read, `lint FIFO` blocked forever and `lint /dev/zero` grew
/// without bound (6.4 GB in 10 s).
#[cfg(unix)]
#[test]
fn lint_refuses_a_fifo_and_dev_zero_at_once_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.yaml");
    mkfifo(&fifo);
    for (path, what) in [
        (fifo.as_path(), "FIFO"),
        (Path::new("/dev/zero"), "character device"),
    ] {
        Cli::new()
            .args(["lint"])
            .arg(path)
            .run()
            .failure()
            .stdout_contains(path.display().to_string())
            .stdout_contains(what)
            .stdout_contains("expected a runbook");
    }
}

#[cfg(unix)]
#[test]
fn a_scenario_or_test_file_that_is_a_fifo_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("s.scenario.yaml");
    mkfifo(&fifo);
    let e = scenario::load_file(&fifo).unwrap_err().to_string();
    assert!(
        e.contains("FIFO") && e.contains("expected a scenario"),
        "{e}"
    );
    let rb = runbook::runbook::parse_str(RUNBOOK, Path::new("t.yaml")).unwrap();
    let e = spec::load(&fifo, &rb).unwrap_err().to_string();
    assert!(
        e.contains("FIFO") && e.contains("expected a test file"),
        "{e}"
    );
}

#[test]
fn a_runbook_over_the_input_cap_is_refused_and_the_hint_says_how_to_raise_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = RUNBOOK.to_owned();
    text.push_str(&format!("# {}\n", "x".repeat(2000)));
    let path = write(dir.path(), "big.yaml", &text);
    Cli::new()
        .args(["lint"])
        .arg(&path)
        .env("RUNBOOK_MAX_INPUT_BYTES", "1000")
        .run()
        .failure()
        .stdout_contains("input limit of 1000 bytes")
        .stdout_contains("RUNBOOK_MAX_INPUT_BYTES");
    Cli::new()
        .args(["lint"])
        .arg(&path)
        .env("RUNBOOK_MAX_INPUT_BYTES", "100000")
        .run()
        .success();
}

/// Issue 13 item 16: an object given for a list param used to start the run and fail
/// at the `for_each` that needed the list; now the run refuses it before any step.
#[test]
fn an_object_for_a_list_param_is_refused_before_the_first_step() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("first-step-ran");
    let text = format!(
        "version: 1\nname: t\ntitle: t\nparams:\n  nodes: {{ default: [a, b] }}\nsteps:\n  - check: Mark\n    id: mark\n    shell: {{ argv: [touch, \"{}\"] }}\n  - check: Each\n    id: each\n    for_each: params.nodes\n    shell: {{ argv: [echo, \"{{{{item}}}}\"] }}\n",
        marker.display()
    );
    let path = write(dir.path(), "t.yaml", &text);
    Cli::new()
        .state_dir(dir.path().join("state"))
        .args(["run", "-q", "--yes", "-p", r#"nodes={"a":1}"#])
        .arg(&path)
        .run()
        .code(2)
        .stderr_contains("`nodes` takes a list")
        .stderr_contains("got a mapping");
    assert!(!marker.exists(), "a step ran before the param was refused");
}

/// Issue 13 item 16 ("errors in debug formatting"): the reader's size limit is one
/// sentence, not a sentence with a run of source indentation inside it.
#[test]
fn a_document_over_the_node_limit_is_told_in_one_plain_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "t.yaml", RUNBOOK);
    let out = Cli::new()
        .env("RUNBOOK_YAML_MAX_NODES", "5")
        .args(["lint"])
        .arg(&path)
        .run();
    out.code(1)
        .stdout_contains(
            "this document has more than 5 nodes in its YAML tree (reading stopped at ",
        )
        .stdout_contains("); the limit for a file of ");
    assert!(!out.stdout.contains("  the limit"), "{}", out.stdout);
}
