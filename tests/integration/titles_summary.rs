//! Titles are templates rendered with params at the gate, on the console, in the
//! journal and in the postmortem; a step's `summary:` template is its one-line
//! outcome. Lint checks both like every other template.

use std::path::{Path, PathBuf};

use crate::support::cli::Cli;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a fixture");
    path
}

const DISK: &str = r#"version: 1
name: disk-full
title: Disk above {{params.threshold}} % on {{params.node}}
params:
  threshold: { type: integer, default: 80 }
  node: { default: node-1 }
steps:
  - check: Usage of / on {{params.node}}
    id: usage
    shell: { argv: [echo, "91"] }
    save: used
    expect: "int(result.stdout.trim()) > params.threshold"
    summary: "{{result.stdout}} % used (threshold {{params.threshold}} %)"
  - action: Clean /tmp on {{params.node}}
    id: clean
    escalate:
      - title: Remove old files on {{params.node}}
        shell: { argv: ["true"] }
    verify:
      title: Usage below {{params.threshold}} %
      shell: { argv: [echo, "42"] }
      expect: "int(result.stdout.trim()) < params.threshold"
"#;

#[test]
fn titles_and_summaries_are_rendered_on_the_console_in_the_journal_and_postmortem() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let rb = write(tmp.path(), "disk.yaml", DISK);
    let state = tmp.path().join("state");
    // Without approval the run pauses at the gate, which shows the rendered title.
    Cli::new()
        .state_dir(&state)
        .arg("run")
        .arg(&rb)
        .args(["-p", "node=node-7"])
        .run()
        .code(3)
        .stderr_contains("disk-full — Disk above 80 % on node-7")
        .stderr_contains("▶ usage (check) Usage of / on node-7")
        .stderr_contains("✓ usage ok in")
        .stderr_contains("— 91 % used (threshold 80 %)")
        .stderr_contains("Clean /tmp on node-7");
    let out = Cli::new()
        .state_dir(&state)
        .args(["resume", "last", "--yes"])
        .run();
    out.success()
        .stderr_contains("rung 1/1 clean.1: Remove old files on node-7");
    let journal = std::fs::read_dir(state.join("runs"))
        .expect("runs")
        .next()
        .expect("one run")
        .expect("a run folder")
        .path()
        .join("journal.ndjson");
    let journal = std::fs::read_to_string(journal).expect("the journal");
    assert!(
        !journal.contains("{{"),
        "no raw template in the journal:\n{journal}"
    );
    assert!(journal.contains("Usage of / on node-7"), "{journal}");
    let pm = Cli::new()
        .state_dir(&state)
        .args(["postmortem", "last"])
        .run();
    pm.success()
        .stdout_contains("Disk above 80 % on node-7")
        .stdout_contains("91 % used (threshold 80 %)");
    assert!(!pm.stdout.contains("{{"), "{pm}");
}

#[test]
fn lint_checks_title_and_summary_templates() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let rb = write(
        tmp.path(),
        "rb.yaml",
        r#"version: 1
name: bad-titles
title: Disk above {{params.treshold}} %
params:
  threshold: { default: 80 }
steps:
  - check: Usage
    id: usage
    shell: { argv: [echo, "91"] }
    save: used
    summary: "{{result.stdout}} % of {{params.nope}}"
  - action: Clean {{used.stdout}}
    id: clean
    shell: { argv: ["true"] }
    verify:
      title: Below {{params.threshold}
      shell: { argv: ["true"] }
  - verify: Usage is fine
    id: fine
    shell: { argv: ["true"] }
    summary: "{{result}}"
"#,
    );
    Cli::new()
        .args(["lint"])
        .arg(&rb)
        .run()
        .code(1)
        .stdout_contains("rb.yaml:3:21: error: unknown parameter `treshold`")
        .stdout_contains("rb.yaml:11:40: error: unknown parameter `nope`")
        .stdout_contains(
            "rb.yaml:12:21: error: a title is rendered when the run starts, with `params` only; `used` is not known then",
        )
        .stdout_contains("rb.yaml:16:20: error: invalid template syntax")
        .stdout_contains("rb.yaml:21:14: error: `summary` describes the result of a check or an action");
}

#[test]
fn a_secret_param_in_a_title_is_shown_as_stars_everywhere() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let rb = write(
        tmp.path(),
        "s.yaml",
        r#"version: 1
name: rotate
title: Rotate token {{params.token}}
params:
  token: { secret: true, required: true }
steps:
  - check: Use {{params.token}}
    id: use
    shell: { argv: ["true"] }
"#,
    );
    let state = tmp.path().join("state");
    let out = Cli::new()
        .state_dir(&state)
        .env("RUNBOOK_SECRET_TOKEN", "hunter2hunter2")
        .arg("run")
        .arg(&rb)
        .arg("--yes")
        .run();
    out.success().stderr_contains("rotate — Rotate token ***");
    assert!(!out.stderr.contains("hunter2"), "{out}");
    let runs = std::fs::read_dir(state.join("runs"))
        .expect("runs")
        .next()
        .expect("one run")
        .expect("a run folder")
        .path();
    let journal = std::fs::read_to_string(runs.join("journal.ndjson")).expect("the journal");
    assert!(!journal.contains("hunter2"), "{journal}");
    let pm = Cli::new()
        .state_dir(&state)
        .args(["postmortem", "last"])
        .run();
    assert!(!pm.success().stdout.contains("hunter2"), "{pm}");
}
