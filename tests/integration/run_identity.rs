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
        out.stderr
            .lines()
            .any(|l| l.contains("DEBUG") && l.contains(ESC)),
        "tracing logs without colour under --color always:\n{out}"
    );
    let plain = sys
        .cmd(&["-vv", "--color", "never", "run", path(&fix), "-p", &dir])
        .run();
    plain.stderr_contains("DEBUG");
    assert!(!plain.stderr.contains(ESC), "{plain}");
}

fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

/// A git repository in a temp dir with a copy of fix-file.yaml (not yet added).
fn repo_with_runbook(sys: &Sys) -> PathBuf {
    let repo = sys.dir.path().join("repo");
    std::fs::create_dir(&repo).expect("a folder");
    git(&repo, &["init", "-q"]);
    git(&repo, &["config", "user.email", "ana@example.com"]);
    git(&repo, &["config", "user.name", "Ana"]);
    let rb = repo.join("fix-file.yaml");
    std::fs::copy(fixture("fix-file.yaml"), &rb).expect("copy the fixture");
    rb
}

fn run_started(events: &[Event]) -> runbook::journal::event::RunbookRef {
    match events.first() {
        Some(Event::RunStarted { runbook, .. }) => runbook.clone(),
        other => panic!("the journal starts with run_started: {other:?}"),
    }
}

#[test]
fn an_untracked_runbook_warns_and_is_not_attributed_to_a_commit() {
    let sys = Sys::new();
    let rb = repo_with_runbook(&sys);
    // Something is committed, so HEAD exists, but not the runbook.
    std::fs::write(sys.dir.path().join("repo/README"), "x").expect("a file");
    git(&sys.dir.path().join("repo"), &["add", "README"]);
    git(&sys.dir.path().join("repo"), &["commit", "-qm", "init"]);
    let out = sys.cmd(&["run", path(&rb), "-p", &sys.dir_param()]).run();
    out.code(3)
        .stderr_contains("warning: ")
        .stderr_contains("is not tracked by git: this run is not attributed to a commit");
    let id = out.stdout.trim();
    let events = sys.events(id);
    let r = run_started(&events);
    assert!(r.untracked, "{r:?}");
    assert_eq!(r.git, None, "no commit for an untracked file");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Note { text, by, .. }
            if by == "runbook" && text.contains("not tracked by git"))),
        "the warning is journaled"
    );
    let pm = sys.cmd(&["postmortem", id]).run();
    pm.success().stdout_contains("not tracked by git");
}

#[test]
fn a_modified_runbook_warns_and_a_committed_one_does_not() {
    let sys = Sys::new();
    let rb = repo_with_runbook(&sys);
    let repo = sys.dir.path().join("repo");
    git(&repo, &["add", "fix-file.yaml"]);
    git(&repo, &["commit", "-qm", "the runbook"]);
    let clean = sys.cmd(&["run", path(&rb), "-p", &sys.dir_param()]).run();
    clean.code(3);
    assert!(!clean.stderr.contains("warning: "), "{clean}");
    let r = run_started(&sys.events(clean.stdout.trim()));
    assert!(
        !r.untracked && r.git.as_ref().is_some_and(|g| !g.dirty),
        "{r:?}"
    );

    let text = std::fs::read_to_string(&rb).expect("the copy");
    std::fs::write(&rb, text.replace("within: 5s", "within: 4s")).expect("an edit");
    let dirty = sys.cmd(&["run", path(&rb), "-p", &sys.dir_param()]).run();
    dirty
        .code(3)
        .stderr_contains("has uncommitted changes: this run uses a version that is not commit");
    let events = sys.events(dirty.stdout.trim());
    let r = run_started(&events);
    assert!(r.git.as_ref().is_some_and(|g| g.dirty), "{r:?}");
    assert!(events.iter().any(|e| matches!(e, Event::Note { text, .. }
        if text.contains("has uncommitted changes"))));
}

#[test]
fn resume_refuses_an_edited_runbook_naming_both_sha256_and_accept_changes_journals_the_diff() {
    let sys = Sys::new();
    let rb = sys.dir.path().join("fix-file.yaml");
    let original = std::fs::read_to_string(fixture("fix-file.yaml")).expect("the fixture");
    std::fs::write(&rb, &original).expect("a copy");
    let out = sys.cmd(&["run", path(&rb), "-p", &sys.dir_param()]).run();
    out.code(3);
    let id = out.stdout.trim().to_owned();
    let old_sha = run_started(&sys.events(&id)).sha256;

    // The edit: the step already done (`detect`) gets a new title, the paused one
    // (`repair`) a shorter verification, and a step is added at the end.
    let edited = original
        .replace(
            "The broken flag is present",
            "The broken flag file is present",
        )
        .replace("within: 5s", "within: 4s")
        + "  - check: The repaired flag is there\n    id: confirm\n    shell: { argv: [ls, \"{{params.dir}}/repaired\"] }\n";
    std::fs::write(&rb, &edited).expect("an edit");
    let new_sha = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(edited.as_bytes());
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let before = sys.events(&id).len();
    let refused = sys.cmd(&["resume", &id, "--approve", "repair"]).run();
    refused
        .code(2)
        .stderr_contains(format!("sha256 {old_sha} then, {new_sha} now"))
        .stderr_contains("--accept-changes");
    assert_eq!(
        sys.events(&id).len(),
        before,
        "a refused resume journals nothing"
    );

    let accepted = sys
        .cmd(&["resume", &id, "--approve", "repair", "--accept-changes"])
        .env("RUNBOOK_OPERATOR", "lee")
        .run();
    accepted
        .success()
        .stderr_contains("the runbook changed since the run started")
        .stderr_contains("steps not yet run: repair changed, confirm added");
    let events = sys.events(&id);
    let change = events
        .iter()
        .find_map(|e| match e {
            Event::RunbookChanged {
                old_sha256,
                new_sha256,
                steps,
                by,
                ..
            } => Some((old_sha256, new_sha256, steps, by)),
            _ => None,
        })
        .expect("runbook_changed is journaled");
    assert_eq!(change.0, &old_sha);
    assert_eq!(change.1, &new_sha);
    assert_eq!(change.3, "lee");
    let steps: Vec<(String, String)> = change
        .2
        .iter()
        .map(|c| (c.step.clone(), c.change.clone()))
        .collect();
    // `detect` ran before the edit: its change is not in the diff.
    assert_eq!(
        steps,
        vec![
            ("repair".to_owned(), "changed".to_owned()),
            ("confirm".to_owned(), "added".to_owned())
        ]
    );
    // The added step ran, with the edited file.
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::StepFinished { step, .. } if step == "confirm"))
    );
    let pm = sys.cmd(&["postmortem", &id]).run();
    pm.success()
        .stdout_contains("the runbook changed since the run started")
        .stdout_contains(&old_sha[..12])
        .stdout_contains(&new_sha[..12]);
}

/// A gated action that takes its time; its verification looks for a file the
/// edited version creates.
const SLOW_GATED: &str = r#"
version: 1
name: slow-gated
title: A gated fix that takes its time
params:
  dir: { required: true }
steps:
  - action: Fix it slowly
    id: fix
    shell: { argv: [sh, -c, 'touch "$1/started"; sleep 30', sh, "{{params.dir}}"] }
    verify:
      shell: { argv: [test, -e, "{{params.dir}}/fixed"] }
      within: 1s
      every: 100ms
"#;

#[test]
fn an_approval_of_a_plan_the_edit_changed_is_asked_again() {
    let sys = Sys::new();
    let rb = sys.write("slow-gated.yaml", SLOW_GATED);
    let dir = sys.dir_param();
    let mut child = sys
        .cmd(&["run", path(&rb), "-p", &dir, "--approve", "fix"])
        .discard_output()
        .spawn();
    let started = sys.dir.path().join("started");
    let t0 = std::time::Instant::now();
    while !started.exists() {
        assert!(t0.elapsed().as_secs() < 20, "the action never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Ctrl-C mid-action: the approval is journaled, the outcome is not.
    // SAFETY: a signal to our own child.
    unsafe {
        libc::kill(i32::try_from(child.id()).expect("a pid"), libc::SIGINT);
    }
    let status = child.wait().expect("the run exits");
    assert_eq!(status.code(), Some(4));
    let id = std::fs::read_dir(sys.state().join("runs"))
        .expect("a run")
        .flatten()
        .next()
        .expect("one run")
        .file_name()
        .to_string_lossy()
        .into_owned();
    // The fix is edited: its plan (argv) is not the one ana approved.
    std::fs::write(
        &rb,
        SLOW_GATED.replace(r#"touch "$1/started"; sleep 30"#, r#"touch "$1/fixed""#),
    )
    .expect("an edit");
    let out = sys.cmd(&["resume", &id, "--accept-changes"]).run();
    out.code(3)
        .stderr_contains("steps not yet run: fix changed")
        .stderr_contains("ana approved a different plan")
        .stderr_contains("asking again");
    assert!(
        !sys.dir.path().join("fixed").exists(),
        "the changed action did not run on the old approval"
    );
    // Approved by name, the edited action runs and the verification holds.
    sys.cmd(&["resume", &id, "--approve", "fix"])
        .run()
        .success();
    assert!(sys.dir.path().join("fixed").exists());
}

/// A secret goes through a shell step's output.
const SECRET: &str = r#"
version: 1
name: echo-secret
title: A step prints a secret
params:
  dir: { required: true }
  token: { secret: true }
steps:
  - check: Print the token
    id: show
    shell: { argv: [echo, "token={{params.token}}"] }
"#;

#[test]
fn events_json_streams_the_journal_lines_with_secrets_redacted() {
    let sys = Sys::new();
    let rb = sys.write("echo-secret.yaml", SECRET);
    let secret = "s3cr3t-value-0123456789";
    let out = sys
        .cmd(&["run", path(&rb), "-p", &sys.dir_param(), "--events", "json"])
        .env("RUNBOOK_SECRET_TOKEN", secret)
        .run();
    out.success();
    assert!(!out.stdout.contains(secret), "{out}");
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line of --events json is JSON"))
        .collect();
    assert_eq!(lines[0]["event"], "run_started");
    assert_eq!(lines.last().expect("events")["event"], "run_finished");
    // Exactly the journal's lines, in order: same seq, time and content.
    let id = lines[0]["run_id"]
        .as_str()
        .expect("run_started names the run");
    let journal = std::fs::read_to_string(sys.state().join("runs").join(id).join("journal.ndjson"))
        .expect("the journal");
    let journaled: Vec<Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).expect("journal lines are JSON"))
        .collect();
    assert_eq!(lines, journaled);
    assert!(out.stdout.contains("token=***"), "{out}");
}

#[test]
fn events_json_on_resume_streams_the_resumed_part() {
    let sys = Sys::new();
    let fix = fixture("fix-file.yaml");
    let out = sys.cmd(&["run", path(&fix), "-p", &sys.dir_param()]).run();
    out.code(3);
    let id = out.stdout.trim().to_owned();
    let before = sys.events(&id).len();
    let resumed = sys
        .cmd(&["resume", &id, "--approve", "repair", "--events", "json"])
        .run();
    resumed.success();
    let kinds: Vec<String> = resumed
        .stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("JSON lines");
            v["event"].as_str().unwrap_or("").to_owned()
        })
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("run_resumed"));
    assert_eq!(kinds.last().map(String::as_str), Some("run_finished"));
    assert_eq!(before + kinds.len(), sys.events(&id).len());
}

/// `$USER` unset and a uid without a passwd entry (a container's arbitrary uid, run
/// here in a user namespace with unshare(1)): the operator is `git config
/// user.email`, read from a global config in a temp HOME.
#[test]
fn operator_falls_back_to_the_git_email_without_user_or_a_login_name() {
    let sys = Sys::new();
    let home = sys.dir.path().join("home");
    std::fs::create_dir(&home).expect("a folder");
    let gitconfig = home.join("gitconfig");
    std::fs::write(&gitconfig, "[user]\n\temail = oncall@example.com\n").expect("a file");
    let fix = fixture("fix-file.yaml");
    let out = std::process::Command::new("unshare")
        .args(["--user", "--map-user=54321", env!("CARGO_BIN_EXE_runbook")])
        .args(["--state-dir", path(&sys.state())])
        .args(["run", path(&fix), "-p", &sys.dir_param()])
        .current_dir(&home)
        .env_remove("USER")
        .env_remove("LOGNAME")
        .env_remove("RUNBOOK_OPERATOR")
        .env_remove("RUNBOOK_STATE_DIR")
        .env("HOME", &home)
        .env("GIT_CONFIG_GLOBAL", &gitconfig)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("unshare(1) runs (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the run pauses at its gate (unshare needs user namespaces):\n{stderr}"
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    match sys.events(&id).first() {
        Some(Event::RunStarted { operator, .. }) => assert_eq!(operator, "oncall@example.com"),
        other => panic!("run_started first: {other:?}"),
    }
}

/// The seed incident's force-delete rung: each `--force` line of its plan is bold
/// red with `--color always`, and the plain `delete pods` rung before it is not.
#[test]
fn forced_deletes_in_a_plan_are_bold_red() {
    let state = tempfile::tempdir().expect("a temp dir");
    let out = Cli::new()
        .state_dir(state.path())
        .args(["demo", "--color", "always"])
        .run();
    out.success();
    let forced: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("will run: kubectl delete pod") && l.contains("--force"))
        .collect();
    assert!(!forced.is_empty(), "the demo plans forced deletes:\n{out}");
    for line in &forced {
        assert!(line.starts_with("\u{1b}[1;31m"), "not bold red: {line:?}");
    }
    assert!(
        out.stderr
            .lines()
            .filter(|l| l.contains("will run:")
                && !l.contains("--force")
                && !l.contains("--grace-period=0"))
            .all(|l| !l.contains(ESC)),
        "only irreversible operations are painted:\n{out}"
    );
}

#[test]
fn error_lines_are_red_with_color_always_and_plain_in_a_pipe() {
    let sys = Sys::new();
    let missing = "no-such-runbook.yaml";
    let out = sys.cmd(&["--color", "always", "lint", missing]).run();
    assert!(!out.status.success(), "{out}");
    assert!(
        out.stderr.contains("\u{1b}[1;31merror:\u{1b}[0m"),
        "no red `error:` with --color always:\n{out}"
    );
    let out = sys.cmd(&["lint", missing]).run();
    out.stderr_contains("error:");
    assert!(!out.stderr.contains(ESC), "escape codes in a pipe:\n{out}");
}
