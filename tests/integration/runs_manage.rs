//! Runs managed like objects (issue 14): `show`, `abort`, `runs` with filters and
//! columns, dry runs kept out of `last`, `--approve` typos refused, who did it, and
//! where the state lives. Every test drives the binary against files in a temp dir.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use runbook::journal::event::{Event, RunStatus};
use runbook::journal::reader;
use serde_json::Value;

use crate::support::cli::{Cli, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/engine")
        .join(name)
}

/// A temp dir holding the "system" (a `broken` flag file) and the state dir.
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

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).run()
    }

    fn dir_param(&self) -> String {
        format!("dir={}", self.dir.path().display())
    }

    /// `run fix-file` without approval: it pauses at the `repair` gate (exit 3) and
    /// prints its id, the only line on stdout.
    fn paused_run(&self) -> String {
        let fix = fixture("fix-file.yaml");
        let out = self.run(&["run", path(&fix), "-p", &self.dir_param()]);
        out.code(3);
        let id = out.stdout.trim().to_owned();
        assert_eq!(out.stdout, format!("{id}\n"), "stdout is the run id only");
        assert!(self.state().join("runs").join(&id).is_dir(), "{out}");
        id
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

    fn runs_json(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["runs", "-o", "json"];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        out.success();
        out.stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line of `runs -o json` is JSON"))
            .collect()
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp paths")
}

#[test]
fn show_says_where_a_paused_run_waits_and_how_to_continue() {
    let sys = Sys::new();
    let id = sys.paused_run();
    let suffix = &id[id.len() - 4..];
    let out = sys.run(&["show", suffix]);
    out.success()
        .stdout_contains(format!("run:       {id}"))
        .stdout_contains("status:    paused")
        .stdout_contains("started:   ")
        .stdout_contains("by ana")
        .stdout_contains("waits at:  step `repair`")
        .stdout_contains(format!("continue:  runbook resume {id}"))
        .stdout_contains(format!("runbook abort {id}"));
    let json = sys.run(&["show", "last", "-o", "json"]);
    json.success();
    let v: Value = serde_json::from_str(&json.stdout).expect("show -o json is one JSON object");
    assert_eq!(v["run_id"], id.as_str());
    assert_eq!(v["status"], "paused");
    assert_eq!(v["paused_at"], "repair");
    assert_eq!(v["operator"], "ana");
    assert!(
        v["continue_with"]
            .as_str()
            .is_some_and(|c| c.contains("--approve repair")),
        "{v}"
    );
}

#[test]
fn abort_ends_a_paused_run_from_another_process_with_who_and_why() {
    let sys = Sys::new();
    let id = sys.paused_run();
    let out = sys.run(&[
        "abort",
        "last",
        "--reason",
        "fixed by hand, INC-42",
        "--operator",
        "lee",
    ]);
    out.success().stdout_is(format!("{id}\n"));
    out.stderr_contains("at step `repair`");
    let events = sys.events(&id);
    assert!(
        events.iter().any(
            |e| matches!(e, Event::Note { text, by, .. } if by == "lee" && text.contains("INC-42"))
        ),
        "{events:#?}"
    );
    match events.last() {
        Some(Event::RunFinished {
            status: RunStatus::Aborted,
            reason: Some(reason),
            ..
        }) => assert!(
            reason.contains("aborted by lee") && reason.contains("INC-42"),
            "{reason}"
        ),
        other => panic!("the journal ends with the abort, not {other:?}"),
    }
    let runs = sys.runs_json(&[]);
    assert_eq!(runs[0]["status"], "aborted");
    // The flag file was never touched: the gated action did not run.
    assert!(sys.dir.path().join("broken").exists());
    // An ended run cannot be aborted again.
    sys.run(&["abort", &id])
        .code(2)
        .stderr_contains("has already ended (aborted)");
    let pm = sys.run(&["postmortem", &id]);
    pm.success().stdout_contains("INC-42");
}

#[test]
fn abort_refuses_a_run_a_live_process_drives_and_names_the_process() {
    let sys = Sys::new();
    let slow = fixture("slow-fix.yaml");
    let mut child = sys
        .cmd(&[
            "run",
            path(&slow),
            "-p",
            &sys.dir_param(),
            "-p",
            "linger=30",
        ])
        .discard_output()
        .spawn();
    let started = sys.dir.path().join("started");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the slow step never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = sys.run(&["abort", "last"]);
    let _ = child.kill();
    let _ = child.wait();
    out.code(2)
        .stderr_contains("is being driven by a live process")
        .stderr_contains(format!("held by pid {} on this host", child.id()))
        .stderr_contains("kill -TERM");
}

#[test]
fn a_run_left_by_a_killed_process_is_reported_as_interrupted_with_its_dead_pid() {
    let sys = Sys::new();
    let slow = fixture("slow-fix.yaml");
    let mut child = sys
        .cmd(&[
            "run",
            path(&slow),
            "-p",
            &sys.dir_param(),
            "-p",
            "linger=30",
        ])
        .discard_output()
        .spawn();
    let started = sys.dir.path().join("started");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the slow step never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGKILL: the process cannot let go of its lock file normally.
    child.kill().expect("the run can be killed");
    child.wait().expect("the run is reaped");
    let pid = child.id();
    // The step's `sleep` (its own process group) may keep the flock a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let runs = loop {
        let runs = sys.run(&["runs"]);
        if runs.stdout.contains("interrupted") || Instant::now() > deadline {
            break runs;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let id = sys.runs_json(&[])[0]["run_id"]
        .as_str()
        .expect("a run id")
        .to_owned();
    let expected = format!(
        "held by pid {pid} on this host, which is no longer running: run {id} was interrupted; `runbook resume {id}` takes it over"
    );
    runs.success()
        .stdout_contains("interrupted")
        .stderr_contains(&expected);
    sys.run(&["show", &id]).success().stdout_contains(&expected);
    // Resume says so before taking it over.
    sys.run(&["resume", &id])
        .stderr_contains(&expected)
        .stderr_contains("taking it over");
}

#[test]
fn dry_runs_are_marked_and_last_skips_them() {
    let sys = Sys::new();
    let id = sys.paused_run();
    let fix = fixture("fix-file.yaml");
    let dry = sys.run(&["run", path(&fix), "-p", &sys.dir_param(), "--dry-run"]);
    let dry_id = dry.stdout.trim().to_owned();
    assert_ne!(dry_id, id, "{dry}");
    let table = sys.run(&["runs"]);
    table.success().stdout_contains("(dry run)");
    let runs = sys.runs_json(&[]);
    assert_eq!(runs[0]["run_id"], dry_id.as_str(), "newest first");
    assert_eq!(runs[0]["dry_run"], true);
    let shown: Value =
        serde_json::from_str(&sys.run(&["show", "last", "-o", "json"]).stdout).expect("JSON");
    assert_eq!(shown["run_id"], id.as_str(), "`last` is the last real run");
    let only_dry = sys.runs_json(&["--status", "dry-run"]);
    assert_eq!(only_dry.len(), 1);
    assert_eq!(only_dry[0]["run_id"], dry_id.as_str());
}

#[test]
fn runs_filters_by_status_runbook_and_since() {
    let sys = Sys::new();
    let paused = sys.paused_run();
    std::fs::write(sys.dir.path().join("broken"), "").expect("writable");
    let fix = fixture("fix-file.yaml");
    sys.run(&["run", path(&fix), "-p", &sys.dir_param(), "--yes"])
        .success();
    assert_eq!(sys.runs_json(&[]).len(), 2);
    let p = sys.runs_json(&["--status", "paused"]);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0]["run_id"], paused.as_str());
    assert_eq!(sys.runs_json(&["--runbook", "fix-file"]).len(), 2);
    assert!(sys.runs_json(&["--runbook", "other"]).is_empty());
    assert_eq!(sys.runs_json(&["--since", "1h"]).len(), 2);
    assert!(sys.runs_json(&["--since", "2999-01-01"]).is_empty());
    sys.run(&["runs", "--status", "stuck"])
        .code(2)
        .stderr_contains("not a status");
    sys.run(&["runs", "--since", "soon"]).code(2);
    // The table has the operator and where a paused run waits.
    let table = sys.run(&["runs", "--status", "paused"]);
    table
        .success()
        .stdout_contains("OPERATOR")
        .stdout_contains("PAUSED AT");
    let row = table.stdout.lines().nth(1).expect("one row");
    assert!(
        row.contains("ana") && row.trim_end().ends_with("repair"),
        "{row}"
    );
}

#[test]
fn an_unknown_approve_id_is_refused_with_the_gate_ids_rungs_included() {
    let sys = Sys::new();
    let fix = fixture("fix-file.yaml");
    sys.run(&[
        "run",
        path(&fix),
        "-p",
        &sys.dir_param(),
        "--approve",
        "repiar",
    ])
    .code(2)
    .stderr_contains("--approve repiar")
    .stderr_contains("did you mean `repair`?")
    .stderr_contains("the gates of `fix-file` are: repair");
    assert!(!sys.state().join("runs").exists(), "nothing started");
    let ladder = fixture("ladder.yaml");
    sys.run(&[
        "run",
        path(&ladder),
        "-p",
        &sys.dir_param(),
        "--approve",
        "gentel",
    ])
    .code(2)
    .stderr_contains("did you mean `gentle`?")
    .stderr_contains("gentle, move, never");
    // On resume too: the runbook comes from the journal.
    let id = sys.paused_run();
    sys.run(&["resume", &id, "--approve", "repari"])
        .code(2)
        .stderr_contains("did you mean `repair`?");
    assert_eq!(
        sys.runs_json(&[])[0]["status"],
        "paused",
        "the refused resume changed nothing"
    );
}

#[test]
fn operator_falls_back_to_the_login_name_and_a_resume_records_who_resumed() {
    let sys = Sys::new();
    let fix = fixture("fix-file.yaml");
    let out = sys
        .cmd(&["run", path(&fix), "-p", &sys.dir_param()])
        .env_remove("USER")
        .run();
    out.code(3);
    let login = std::process::Command::new("id")
        .arg("-un")
        .output()
        .expect("id(1) runs");
    let login = String::from_utf8_lossy(&login.stdout).trim().to_owned();
    let runs = sys.runs_json(&[]);
    assert_eq!(runs[0]["operator"], login.as_str(), "not \"unknown\"");
    let id = out.stdout.trim().to_owned();
    sys.cmd(&["resume", &id, "--approve", "repair"])
        .env("RUNBOOK_OPERATOR", "lee")
        .run()
        .success()
        .stdout_is(format!("{id}\n"));
    let runs = sys.runs_json(&[]);
    assert_eq!(runs[0]["resumed_by"], serde_json::json!(["lee"]));
    assert!(
        sys.events(&id).iter().any(|e| matches!(e,
            Event::GateDecided { by, .. } if by == "lee")),
        "the approval is lee's"
    );
    let table = sys.run(&["runs"]);
    assert!(table.stdout.contains(&format!("{login}, lee")), "{table}");
}

#[test]
fn the_state_dir_is_at_the_git_top_level_and_ignored_by_git() {
    let top = tempfile::tempdir().expect("a temp dir");
    std::fs::create_dir(top.path().join(".git")).expect("a fake repository");
    let sub = top.path().join("runbooks/db");
    let other = top.path().join("docs");
    std::fs::create_dir_all(&sub).expect("folders");
    std::fs::create_dir_all(&other).expect("folders");
    std::fs::write(top.path().join("broken"), "").expect("the flag");
    let fix = fixture("fix-file.yaml");
    let dir = format!("dir={}", top.path().display());
    let out = Cli::new()
        .current_dir(&sub)
        .args(["run", path(&fix), "-p", &dir])
        .run();
    out.code(3);
    let state = top.path().join(".runbook");
    assert!(state.join("runs").join(out.stdout.trim()).is_dir(), "{out}");
    assert!(!sub.join(".runbook").exists());
    let ignore = std::fs::read_to_string(state.join(".gitignore")).expect(".gitignore written");
    assert!(ignore.lines().any(|l| l == "*"), "{ignore}");
    // Another folder of the same repository sees the same runs.
    Cli::new()
        .current_dir(&other)
        .args(["runs"])
        .run()
        .success()
        .stdout_contains(out.stdout.trim());
}

/// Every subcommand `runbook --help` lists (the hidden `man` is not one of them).
fn subcommands() -> Vec<String> {
    let help = Cli::new().arg("--help").run();
    help.success();
    let commands: Vec<String> = help
        .stdout
        .split("Commands:")
        .nth(1)
        .expect("--help has a Commands section")
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect();
    assert!(commands.len() >= 14, "{commands:?}");
    commands
}

#[test]
fn completions_and_man_pages_cover_every_subcommand() {
    let subs = subcommands();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = Cli::new().args(["completions", shell]).run();
        out.success();
        for sub in &subs {
            assert!(
                out.stdout.contains(sub.as_str()),
                "{shell} completion lacks `{sub}`"
            );
        }
    }
    let bash = Cli::new().args(["completions", "bash"]).run();
    bash.stdout_contains("complete -F")
        .stdout_contains("--state-dir");
    let man = Cli::new().arg("man").run();
    man.success().stdout_contains(".TH runbook");
    for sub in &subs {
        assert!(man.stdout.contains(sub.as_str()), "man page lacks `{sub}`");
        let page = Cli::new().args(["man", sub]).run();
        page.success()
            .stdout_contains(format!(".TH runbook-{sub}"))
            .stdout_contains("Examples:");
        // And the same Examples in --help.
        Cli::new()
            .args([sub.as_str(), "--help"])
            .run()
            .success()
            .stdout_contains("Examples:\n  runbook ");
    }
    Cli::new()
        .args(["man", "nope"])
        .run()
        .code(2)
        .stderr_contains("no subcommand `nope`");
}

#[test]
fn version_names_the_commit() {
    let out = Cli::new().arg("--version").run();
    out.success();
    let line = out.stdout.trim();
    let (_, commit) = line
        .split_once(" (")
        .unwrap_or_else(|| panic!("`{line}` has no commit"));
    let hash = commit.trim_end_matches(')').split(',').next().unwrap_or("");
    assert!(
        hash == "unknown commit"
            || (hash.len() == 12 && hash.chars().all(|c| c.is_ascii_hexdigit())),
        "{line}"
    );
}

#[test]
fn output_json_is_one_spelling_on_list_lint_and_test() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let list = Cli::new()
        .current_dir(root)
        .args(["list", "-o", "json"])
        .run();
    list.success();
    let rows: Vec<Value> = list
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("list -o json lines"))
        .collect();
    assert!(
        rows.iter()
            .any(|r| r["name"] == "hub-pvc-locked" && r["valid"] == true && r["steps"].is_u64()),
        "{rows:?}"
    );
    let fix = fixture("fix-file.yaml");
    for spelling in [
        &["-o", "json"][..],
        &["--output", "json"],
        &["--format", "json"],
    ] {
        let mut args = vec!["lint", path(&fix)];
        args.extend_from_slice(spelling);
        let out = Cli::new().args(&args).run();
        out.success();
        let v: Value = serde_json::from_str(&out.stdout).expect("lint JSON");
        assert_eq!(v["files_checked"], 1, "{spelling:?}");
    }
    let out = Cli::new()
        .current_dir(root)
        .state_dir(tempfile::tempdir().expect("a temp dir").path())
        .args(["test", "runbooks/hub-pvc-locked.yaml", "-o", "json"])
        .run();
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("test -o json lines"))
        .collect();
    let summary = lines.last().expect("a summary line");
    assert_eq!(summary["kind"], "summary", "{out}");
    assert!(
        lines
            .iter()
            .any(|l| l["kind"] == "case" && l["runbook"] == "hub-pvc-locked")
    );
    // The old spelling of `runs -o json` still works.
    let sys = Sys::new();
    let id = sys.paused_run();
    let old = sys.run(&["runs", "--json"]);
    let v: Value = serde_json::from_str(old.stdout.trim()).expect("runs --json");
    assert_eq!(v["run_id"], id.as_str());
}

#[test]
fn tracing_logs_into_a_pipe_have_no_colour_codes() {
    let sys = Sys::new();
    let fix = fixture("fix-file.yaml");
    let out = sys.run(&["-vv", "run", path(&fix), "-p", &sys.dir_param(), "--yes"]);
    out.success().stderr_contains("DEBUG");
    assert!(
        !out.stderr.contains('\u{1b}'),
        "escape codes in a pipe:\n{out}"
    );
}
