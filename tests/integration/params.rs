//! Param types (`type:`), and params from `-p @FILE` and `RUNBOOK_PARAM_<NAME>`:
//! a value of the wrong type is refused when the run starts, in the user's terms,
//! and the sources follow the documented order (-p > @FILE > environment > default).

use std::path::{Path, PathBuf};

use crate::support::cli::Cli;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a fixture");
    path
}

/// A runbook whose one step writes its params to `out.txt` in its folder.
const TYPED: &str = r#"version: 1
name: typed-params
title: Disk above {{params.threshold}} %
params:
  threshold: { type: integer, default: 80 }
  ratio: { type: number, default: 0.5 }
  drain: { type: boolean, default: false }
  nodes: { type: list, default: [node-1] }
  grace: { type: duration, default: 30s }
  ns: { default: prod }
steps:
  - check: Write the params
    id: write
    shell:
      argv: [sh, -c, 'printf %s "$1" > out.txt', sh,
             "{{params.threshold}} {{params.ratio}} {{params.drain}} {{len params.nodes}} {{params.grace}} {{params.ns}}"]
"#;

fn out(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("out.txt")).unwrap_or_default()
}

#[test]
fn a_value_of_the_wrong_type_is_refused_at_start_in_the_params_terms() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let rb = write(tmp.path(), "rb.yaml", TYPED);
    let state = tmp.path().join("state");
    let cases = [
        (
            "threshold=abc",
            "`threshold` takes an integer; got `abc` (from -p)",
        ),
        ("ratio=half", "`ratio` takes a number; got `half`"),
        (
            "drain=yes",
            "`drain` takes a boolean (`true` or `false`); got `yes`",
        ),
        (r#"nodes={"a": 1}"#, "`nodes` takes a list"),
        (
            "grace=soon",
            "`grace` takes a duration such as `90s` or `1h30m`; got `soon`",
        ),
    ];
    for (param, message) in cases {
        let o = Cli::new()
            .state_dir(&state)
            .arg("run")
            .arg(&rb)
            .args(["-p", param, "--yes"])
            .run();
        o.code(2).stderr_contains(message);
        assert!(!o.stderr.contains("JSON"), "no JSON wording: {o}");
        assert_eq!(out(tmp.path()), "", "no step ran for {param}");
    }
}

#[test]
fn typed_values_reach_templates_with_their_type() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let rb = write(tmp.path(), "rb.yaml", TYPED);
    Cli::new()
        .state_dir(tmp.path().join("state"))
        .arg("run")
        .arg(&rb)
        .args([
            "-p",
            "threshold= 90",
            "-p",
            "ratio=0.75",
            "-p",
            "drain=true",
        ])
        .args(["-p", "nodes=a, b,c", "-p", "grace=1h30m", "--yes"])
        .run()
        .success();
    assert_eq!(out(tmp.path()), "90 0.75 true 3 1h30m prod");
}

#[test]
fn params_come_from_p_then_files_then_the_environment_then_the_default() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let rb = write(tmp.path(), "rb.yaml", TYPED);
    let first = write(
        tmp.path(),
        "first.yaml",
        "threshold: 91\nratio: 0.1\nns: first\n",
    );
    // JSON is YAML; a later file wins over an earlier one.
    let second = write(
        tmp.path(),
        "second.json",
        r#"{"ratio": 0.2, "nodes": ["x", "y"]}"#,
    );
    Cli::new()
        .state_dir(tmp.path().join("state"))
        .env("RUNBOOK_PARAM_THRESHOLD", "70")
        .env("RUNBOOK_PARAM_NS", "from-env")
        .env("RUNBOOK_PARAM_DRAIN", "true")
        .env("RUNBOOK_PARAM_NOT_A_PARAM", "ignored")
        .arg("run")
        .arg(&rb)
        .args(["-p", "threshold=60"])
        .arg("-p")
        .arg(format!("@{}", first.display()))
        .arg("-p")
        .arg(format!("@{}", second.display()))
        .arg("--yes")
        .run()
        .success();
    // threshold: -p over file over env; ratio: the later file; ns: file over env;
    // drain: env over default; nodes: file; grace: default.
    assert_eq!(out(tmp.path()), "60 0.2 true 2 30s first");
}

#[test]
fn a_params_file_error_names_its_file_line_and_column() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let rb = write(tmp.path(), "rb.yaml", TYPED);
    let state = tmp.path().join("state");
    let run_with = |file: &Path| {
        Cli::new()
            .state_dir(&state)
            .arg("run")
            .arg(&rb)
            .arg("-p")
            .arg(format!("@{}", file.display()))
            .arg("--yes")
            .run()
    };
    let wrong_type = write(tmp.path(), "wrong.yaml", "ns: x\nnodes: { a: 1 }\n");
    run_with(&wrong_type).code(2).stderr_contains(format!(
        "`nodes` takes a list (`a,b` or `[\"a\", \"b\"]`); got a mapping `{{\"a\":1}}` (from {}:2:8)",
        wrong_type.display()
    ));
    let unknown = write(tmp.path(), "unknown.yaml", "treshold: 90\n");
    run_with(&unknown)
        .code(2)
        .stderr_contains(format!(
            "{}:1:11: unknown parameter `treshold`",
            unknown.display()
        ))
        .stderr_contains("did you mean `threshold`?");
    let broken = write(tmp.path(), "broken.yaml", "ns: [a,\n");
    run_with(&broken)
        .code(2)
        .stderr_contains(format!("{}:1:5: error: invalid YAML", broken.display()));
    let list = write(tmp.path(), "list.yaml", "- threshold\n");
    run_with(&list)
        .code(2)
        .stderr_contains("a params file is a mapping of param names to values, found a list");
    assert_eq!(out(tmp.path()), "", "no step ran");
}

#[test]
fn resume_refuses_a_params_file() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    Cli::new()
        .state_dir(tmp.path().join("state"))
        .args(["resume", "last", "-p", "@x.yaml"])
        .run()
        .code(2)
        .stderr_contains("keeps the params it started with");
}

#[test]
fn lint_checks_param_types_and_defaults() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let rb = write(
        tmp.path(),
        "rb.yaml",
        r#"version: 1
name: bad-types
title: Bad types
params:
  threshold: { type: integer, default: eighty }
  nodes: { type: list, default: { a: 1 } }
  ratio: { type: float }
steps:
  - check: c
    id: c
    shell: { argv: ["true"] }
"#,
    );
    Cli::new()
        .args(["lint"])
        .arg(&rb)
        .run()
        .code(1)
        .stdout_contains(
            "rb.yaml:5:40: error: the default of `threshold` does not fit its type: it takes an integer; got `eighty`",
        )
        .stdout_contains("rb.yaml:6:33: error: the default of `nodes` does not fit its type")
        .stdout_contains("rb.yaml:7:18: error: `type` must be one of `integer`, `number`")
        .stdout_contains("did you mean `type: number`?");
}
