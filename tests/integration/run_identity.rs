//! Issue 14, the rest of it: colour on the console (`--color`, NO_COLOR, pipes), the
//! runbook version told honestly (a modified or untracked runbook warns, `resume
//! --accept-changes`), `--events json`, and the environment a run gives its shell
//! steps. Every test drives the binary.

use std::path::{Path, PathBuf};

use runbook::journal::event::Event;
use runbook::journal::reader;
use serde_json::Value;

use crate::support::cli::{Cli, Output};

const ESC: char = '\u{1b}';

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/engine")
        .join(name)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp paths")
}

/// A temp dir with the `broken` flag the fix-file fixtures look for, and a state dir.
struct Sys {
    dir: tempfile::TempDir,
}

impl Sys {
    fn new() -> Sys {
        let sys = Sys {
            dir: tempfile::tempdir().expect("a temp dir"),
        };
        std::fs::write(sys.dir.path().join("broken"), "").expect("writable temp dir");
        sys
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn cmd(&self, args: &[&str]) -> Cli {
        Cli::new().state_dir(self.state()).args(args)
    }

    fn dir_param(&self) -> String {
        format!("dir={}", self.dir.path().display())
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("writable temp dir");
        p
    }

    fn events(&self, run_id: &str) -> Vec<Event> {
        let path = self
            .state()
            .join("runs")
            .join(run_id)
            .join("journal.ndjson");
        reader::read(&path)
            .expect("a readable journal")
            .records
            .into_iter()
            .map(|r| r.event)
            .collect()
    }
}

/// A step that fails, after an explicit gate approved by name.
const FAILS: &str = r#"
version: 1
name: fails
title: A fix that does not work
params:
  dir: { required: true }
steps:
  - action: Try the fix
    id: try-fix
    gate: explicit
    shell: { argv: [sh, -c, "echo it did not work >&2; exit 3"] }
"#;

fn fails_run(sys: &Sys, extra: &[&str], env: Option<(&str, &str)>) -> Output {
    let rb = sys.write("fails.yaml", FAILS);
    let dir = sys.dir_param();
    let mut args = vec!["run", path(&rb), "-p", &dir, "--approve", "try-fix"];
    args.extend_from_slice(extra);
    let mut cmd = sys.cmd(&args);
    if let Some((k, v)) = env {
        cmd = cmd.env(k, v);
    }
    let out = cmd.env_remove("NO_COLOR").run();
    out.code(1);
    out
}

#[test]
fn color_always_paints_failures_and_explicit_gates_even_into_a_pipe() {
    let sys = Sys::new();
    let out = fails_run(&sys, &["--color", "always"], None);
    // The failed step's line and the run's last line are red; the explicit gate's
    // header is bold magenta.
    assert!(
        out.stderr.contains("\u{1b}[31m✗ try-fix failed"),
        "no red failure line:\n{out}"
    );
    assert!(
        out.stderr.contains("\u{1b}[1;35m  plan of try-fix"),
        "explicit gate not painted:\n{out}"
    );
    // Data on stdout is never painted.
    assert!(!out.stdout.contains(ESC), "{out}");
}

#[test]
fn no_colour_in_a_pipe_with_no_color_or_with_color_never() {
    let sys = Sys::new();
    for (extra, env) in [
        (&[][..], None),
        (&["--color", "never"][..], None),
        (&[][..], Some(("NO_COLOR", "1"))),
    ] {
        let out = fails_run(&sys, extra, env);
        out.stderr_contains("✗ try-fix failed");
        assert!(
            !out.stderr.contains(ESC),
            "escape codes with {extra:?} {env:?}:\n{out}"
        );
    }
}

#[test]
fn on_a_terminal_colour_is_on_unless_no_color_is_set() {
    let sys = Sys::new();
    let rb = sys.write("fails.yaml", FAILS);
    let dir = sys.dir_param();
    let args = ["run", path(&rb), "-p", &dir, "--approve", "try-fix"];
    let out = sys.cmd(&args).env_remove("NO_COLOR").on_a_terminal().run();
    assert!(out.stdout.contains("\u{1b}[31m✗ try-fix failed"), "{out}");
    let out = sys.cmd(&args).env("NO_COLOR", "1").on_a_terminal().run();
    out.stdout_contains("✗ try-fix failed");
    assert!(
        !out.stdout.contains("\u{1b}[31m"),
        "red with NO_COLOR:\n{out}"
    );
}

#[test]
fn warnings_are_yellow_and_tracing_logs_follow_the_same_rule() {
    let sys = Sys::new();
    let fix = fixture("fix-file.yaml");
    let dir = sys.dir_param();
    // A paused run of fix-file, then a second run of it: the siblings warning.
    sys.cmd(&["run", path(&fix), "-p", &dir]).run().code(3);
    let out = sys
        .cmd(&["-vv", "--color", "always", "run", path(&fix), "-p", &dir])
        .run();
    out.code(3);
    assert!(
        out.stderr.contains("\u{1b}[33mwarning: "),
        "warning not yellow:\n{out}"
    );
    // tracing-subscriber paints its level names when colour is on.
    assert!(out.stderr.contains("DEBUG"), "{out}");
    assert!(
        out.stderr.lines().any(|l| l.contains("DEBUG") && l.contains(ESC)),
        "tracing logs without colour under --color always:\n{out}"
    );
    let plain = sys
        .cmd(&["-vv", "--color", "never", "run", path(&fix), "-p", &dir])
        .run();
    plain.stderr_contains("DEBUG");
    assert!(!plain.stderr.contains(ESC), "{plain}");
}
