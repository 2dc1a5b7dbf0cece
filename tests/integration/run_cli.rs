//! `runbook run`, `resume`, `runs` and `note` end to end through the binary, against
//! a "system" made of files in a temp dir.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use runbook::journal::event::{Event, Outcome, RunStatus};
use runbook::journal::reader;

use crate::support::cli::{Cli, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/engine")
        .join(name)
}

/// A temp dir that is both the system (files) and the state dir's parent.
struct Sys {
    dir: tempfile::TempDir,
}

impl Sys {
    fn new() -> Sys {
        Sys {
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn touch(&self, name: &str) {
        std::fs::write(self.path(name), "").expect("writable temp dir");
    }

    fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }

    fn state(&self) -> PathBuf {
        self.path(".runbook")
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

    fn run_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.state().join("runs"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
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

    /// Start `runbook run FIXTURE -p dir=… [-p EXTRA]` in the background (stderr piped)
    /// and wait until its step has written the `started` flag.
    fn start(&self, fixture_name: &str, extra: &[&str]) -> Child {
        let file = fixture(fixture_name);
        let dir = self.dir_param();
        let mut args = vec!["run", file.to_str().unwrap(), "-p", &dir];
        for e in extra {
            args.extend(["-p", e]);
        }
        let child = self.cmd(&args).spawn();
        wait_for(&self.path("started"), Duration::from_secs(20));
        child
    }

    fn only_run(&self) -> String {
        let ids = self.run_ids();
        assert_eq!(ids.len(), 1, "{ids:?}");
        ids[0].clone()
    }
}

fn wait_for(path: &Path, within: Duration) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(t0.elapsed() < within, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("waitable child") {
            return s;
        }
        assert!(t0.elapsed() < within, "the run did not exit in {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: i32) {
    let pid = i32::try_from(child.id()).expect("a pid fits i32");
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(pid, sig);
    }
}

#[test]
fn a_check_finds_the_problem_an_approved_action_fixes_it_and_the_verification_proves_it() {
    let sys = Sys::new();
    sys.touch("broken");
    let file = fixture("fix-file.yaml");
    let out = sys.run(&[
        "run",
        file.to_str().unwrap(),
        "-p",
        &sys.dir_param(),
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", out);
    assert!(!sys.exists("broken") && sys.exists("repaired"));
    let stderr = out.stderr.as_str();
    assert!(stderr.contains("▶ detect (check)"), "{stderr}");
    assert!(stderr.contains("✓ repair ok"), "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "no bars or colours without a terminal: {stderr}"
    );
    let id = sys.only_run();
    assert!(
        stderr.contains(&format!("postmortem: runbook postmortem {id}")),
        "{stderr}"
    );
    let ev = sys.events(&id);
    assert!(matches!(&ev[0], Event::RunStarted { operator, runbook, .. }
        if operator == "ana" && runbook.name == "fix-file" && runbook.sha256.len() == 64));
    assert!(matches!(
        ev.last(),
        Some(Event::RunFinished {
            status: RunStatus::Succeeded,
            ..
        })
    ));

    // Nothing left to fix: the next run is not applicable.
    let again = sys.run(&[
        "run",
        file.to_str().unwrap(),
        "-p",
        &sys.dir_param(),
        "--yes",
    ]);
    assert_eq!(again.status.code(), Some(5), "{}", again);
}

#[test]
fn without_approval_the_run_pauses_and_resume_with_approve_continues_it() {
    let sys = Sys::new();
    sys.touch("broken");
    let file = fixture("fix-file.yaml");
    let out = sys.run(&["run", file.to_str().unwrap(), "-p", &sys.dir_param()]);
    assert_eq!(out.status.code(), Some(3), "{}", out);
    assert!(sys.exists("broken"), "nothing ran without approval");
    let id = sys.only_run();
    let stderr = out.stderr.as_str();
    assert!(
        stderr.contains(&format!("runbook resume {id} --approve repair")),
        "{stderr}"
    );
    assert!(
        stderr.contains("shell will run: mv "),
        "the plan is shown: {stderr}"
    );

    // Runs are named as `runbook postmortem` names them: a prefix, or `last`.
    let noted = sys.run(&["note", &id[..12], "waiting for the storage team"]);
    assert_eq!(noted.status.code(), Some(0), "{}", noted);
    let unknown = sys.run(&["resume", "nope", "--approve", "repair"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", unknown);
    assert!(
        unknown.stderr.as_str().contains("no run \"nope\""),
        "{}",
        unknown
    );

    let resumed = sys.run(&["resume", "last", "--approve", "repair"]);
    assert_eq!(resumed.status.code(), Some(0), "{}", resumed);
    assert!(
        !resumed.stderr.as_str().contains("Kubernetes"),
        "a shell-only run says nothing about Kubernetes: {}",
        resumed
    );
    assert!(sys.exists("repaired"));
    let ev = sys.events(&id);
    assert!(
        ev.iter().any(
            |e| matches!(e, Event::Note { text, .. } if text == "waiting for the storage team")
        )
    );
    let checks = ev
        .iter()
        .filter(|e| matches!(e, Event::StepStarted { step, .. } if step == "detect"))
        .count();
    assert_eq!(checks, 1, "the check is not run again");
    assert!(ev.iter().any(|e| matches!(e, Event::RunResumed { .. })));

    // The postmortem tells one run: the step that paused and was resumed is one step
    // that succeeded, and nobody is asked to continue a run that has finished.
    let pm = sys.run(&["postmortem", &id]);
    assert_eq!(pm.status.code(), Some(0), "{}", pm);
    let md = pm.stdout.as_str();
    assert!(md.contains("| Steps | 2 (1 checks, 1 actions"), "{md}");
    assert!(!md.contains("had not finished"), "{md}");
    assert!(!md.contains("Who continues the paused run"), "{md}");
    assert!(md.contains("It stood paused, waiting for a person"), "{md}");

    let done = sys.run(&["resume", &id]);
    assert_eq!(done.status.code(), Some(2), "{}", done);
    assert!(done.stderr.as_str().contains("already finished"));
}

#[test]
fn an_escalation_needs_its_second_rung_and_never_reaches_the_third() {
    let sys = Sys::new();
    sys.touch("broken");
    let file = fixture("ladder.yaml");
    let out = sys.run(&[
        "run",
        file.to_str().unwrap(),
        "-p",
        &sys.dir_param(),
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", out);
    assert!(sys.exists("repaired"));
    assert!(!sys.exists("never"));
    let ev = sys.events(&sys.only_run());
    assert!(ev.iter().any(
        |e| matches!(e, Event::Escalated { from, to, .. } if from == "gentle" && to == "move")
    ));
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::StepFinished { fixed_by: Some(r), .. } if r == "move"))
    );
}

#[test]
fn a_for_each_with_one_failing_item_runs_and_reports_every_item() {
    let sys = Sys::new();
    let file = fixture("fan-out.yaml");
    let out = sys.run(&["run", file.to_str().unwrap(), "-p", &sys.dir_param()]);
    assert_eq!(out.status.code(), Some(1), "{}", out);
    assert!(sys.exists("a") && sys.exists("c") && !sys.exists("b"));
    let stderr = out.stderr.as_str();
    assert!(
        stderr.contains("item 1: `sh` failed: exit 7: item b is stuck"),
        "{stderr}"
    );
    let ev = sys.events(&sys.only_run());
    let finished: Vec<(Option<usize>, Outcome)> = ev
        .iter()
        .filter_map(|e| match e {
            Event::OpFinished { scope, outcome, .. } => Some((scope.item, *outcome)),
            _ => None,
        })
        .collect();
    assert_eq!(finished.len(), 3, "{finished:?}");
}

#[test]
fn a_run_killed_mid_action_resumes_with_outcome_unknown_and_re_verifies_instead_of_rerunning() {
    let sys = Sys::new();
    sys.touch("broken");
    let mut child = sys.start("slow-fix.yaml", &["linger=2"]);
    signal(&child, libc::SIGKILL);
    wait_exit(&mut child, Duration::from_secs(5));
    let id = sys.only_run();
    assert!(
        !sys.events(&id)
            .iter()
            .any(|e| matches!(e, Event::OpFinished { .. })),
        "killed before the result was journaled"
    );
    // The fix's program lingers in its own process group, which outlived the runner:
    // an immediate resume refuses to run the step again next to it.
    let pgid = sys
        .events(&id)
        .iter()
        .find_map(|e| match e {
            Event::ProcessStarted { pgid, .. } => Some(*pgid),
            _ => None,
        })
        .expect("the fix's process group is journaled");
    let early = sys.run(&["resume", &id]);
    assert_eq!(early.status.code(), Some(2), "{}", early);
    assert!(
        early.stderr.contains(&format!("kill -- -{pgid}")),
        "{early}"
    );
    // Once it has ended, the run resumes.
    let t0 = Instant::now();
    while group_has_live_members(pgid) && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }

    let out = sys.run(&["resume", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", out);
    let stderr = out.stderr.as_str();
    assert!(stderr.contains("unknown outcome"), "{stderr}");
    let ev = sys.events(&id);
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::OpFinished {
            outcome: Outcome::Unknown,
            ..
        }
    )));
    let fix_starts = ev
        .iter()
        .filter(|e| matches!(e, Event::OpStarted { op, .. } if !op.scope.verification))
        .count();
    assert_eq!(fix_starts, 1, "the fix is not run a second time");
}

#[test]
fn ctrl_c_during_a_long_step_aborts_with_exit_4_and_a_journal_that_says_so() {
    let sys = Sys::new();
    sys.touch("broken");
    let mut child = sys.start("slow-fix.yaml", &["linger=30"]);
    let id = sys.only_run();

    // A note from another terminal while the run holds its lock.
    let note = sys.run(&["note", &id, "paged the storage team"]);
    assert_eq!(note.status.code(), Some(0), "{}", note);
    // But nobody else may drive it.
    let second = sys.run(&["resume", &id, "--yes"]);
    assert_eq!(second.status.code(), Some(2), "{}", second);
    assert!(second.stderr.as_str().contains("in use by another process"));

    let t0 = Instant::now();
    signal(&child, libc::SIGINT);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(4));
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "the step was not cancelled promptly"
    );
    assert!(!sys.exists("finished"), "the child process was killed");
    let j = reader::read(&sys.state().join("runs").join(&id).join("journal.ndjson")).unwrap();
    let seqs: Vec<u64> = j.records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let ev: Vec<Event> = j.records.into_iter().map(|r| r.event).collect();
    assert!(ev.iter().any(
        |e| matches!(e, Event::Note { text, by, .. } if text == "paged the storage team" && by == "ana")
    ));
    assert!(ev.iter().any(|e| matches!(e, Event::RunFinished { status: RunStatus::Aborted, reason: Some(r), .. } if r == "aborted by operator")));

    let runs = sys.run(&["runs"]);
    let listing = runs.stdout.as_str();
    assert!(
        listing.contains(&id) && listing.contains("aborted"),
        "{listing}"
    );
}

/// SIGTERM (a service manager, `kill`) and SIGHUP (the SSH connection dropped) are
/// handled like the first Ctrl-C: the step's process group is killed, the run is
/// journaled as aborted, the process exits 4 and the run resumes. By default either
/// signal ended the process with nothing journaled and the step still running.
#[test]
fn sigterm_and_sighup_abort_like_ctrl_c_and_leave_a_resumable_run() {
    for sig in [libc::SIGTERM, libc::SIGHUP] {
        let sys = Sys::new();
        let mut child = sys.start("stubborn-fix.yaml", &[]);
        let id = sys.only_run();
        signal(&child, sig);
        let status = wait_exit(&mut child, Duration::from_secs(10));
        if let Ok(pid) = std::fs::read_to_string(sys.path("orphan"))
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            // SAFETY: killing the test's own leftover grandchild.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        assert_eq!(status.code(), Some(4), "signal {sig}");
        let member = std::fs::read_to_string(sys.path("member")).expect("the member's pid");
        let alive = || {
            std::fs::read_to_string(format!("/proc/{}/stat", member.trim()))
                .is_ok_and(|stat| !stat.contains(") Z "))
        };
        let t0 = Instant::now();
        while alive() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !alive(),
            "signal {sig}: the step's process {member} outlived the run"
        );
        let ev = sys.events(&id);
        assert!(
            ev.iter().any(|e| matches!(
                e,
                Event::RunFinished {
                    status: RunStatus::Aborted,
                    ..
                }
            )),
            "signal {sig}: the abort is journaled: {ev:?}"
        );
        let out = sys.run(&["resume", &id, "--yes"]);
        assert_eq!(out.status.code(), Some(0), "signal {sig}: {}", out);
    }
}

#[test]
fn a_second_ctrl_c_exits_at_once_and_leaves_a_resumable_run() {
    let sys = Sys::new();
    let mut child = sys.start("stubborn-fix.yaml", &[]);
    let id = sys.only_run();
    // The first Ctrl-C: wait until the runner says it is stopping the step.
    let stderr = child.stderr.take().expect("piped stderr");
    let (said, heard) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.starts_with("aborting") {
                let _ = said.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    signal(&child, libc::SIGINT);
    heard
        .recv_timeout(Duration::from_secs(10))
        .expect("the first Ctrl-C is acknowledged");
    // The step's group is killed, but its grandchild holds the output pipe for up to
    // two seconds: the second Ctrl-C does not wait for that.
    signal(&child, libc::SIGINT);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    let said = reader.join().expect("the stderr reader");
    if let Ok(pid) = std::fs::read_to_string(sys.path("orphan"))
        && let Ok(pid) = pid.trim().parse::<i32>()
    {
        // SAFETY: killing the test's own leftover grandchild.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    assert_eq!(status.code(), Some(4), "{said}");
    // The step's own process group died with the first Ctrl-C.
    let member = std::fs::read_to_string(sys.path("member")).expect("the member's pid");
    let alive = || {
        std::fs::read_to_string(format!("/proc/{}/stat", member.trim()))
            .is_ok_and(|stat| !stat.contains(") Z "))
    };
    let t0 = Instant::now();
    while alive() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(), "the step's grandchild {member} outlived the run");
    let ev = sys.events(&id);
    assert!(
        !ev.iter().any(|e| matches!(e, Event::RunFinished { .. })),
        "exited at once, before the step wound down: {ev:?}"
    );

    // What was journaled reads back, and the run resumes: the fix's start is
    // journaled and its result is not, so it is re-verified, not run again.
    let out = sys.run(&["resume", &id, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", out);
    assert!(out.stderr.as_str().contains("unknown outcome"), "{}", out);
    let fix_starts = sys
        .events(&id)
        .iter()
        .filter(|e| matches!(e, Event::OpStarted { op, .. } if !op.scope.verification))
        .count();
    assert_eq!(fix_starts, 1, "the fix is not run a second time");
}

#[test]
fn an_invalid_runbook_never_starts() {
    let sys = Sys::new();
    let file = fixture("invalid.yaml");
    let out = sys.run(&["run", file.to_str().unwrap(), "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", out);
    assert!(out.stderr.as_str().contains("params.nope"), "{}", out);
    assert!(sys.run_ids().is_empty());
}

#[test]
fn runs_lists_past_runs_with_their_status() {
    let sys = Sys::new();
    let file = fixture("fix-file.yaml");
    let out = sys.run(&["run", file.to_str().unwrap(), "-p", &sys.dir_param()]);
    assert_eq!(out.status.code(), Some(5), "{}", out);
    let runs = sys.run(&["runs", "--json"]);
    assert_eq!(runs.status.code(), Some(0));
    let line: serde_json::Value =
        serde_json::from_str(runs.stdout.lines().next().unwrap_or_default()).unwrap();
    assert_eq!(line["runbook"], "fix-file");
    assert_eq!(line["status"], "not_applicable");
    assert_eq!(line["run_id"], sys.only_run());
}

#[test]
fn dry_run_runs_the_checks_and_prints_the_plan_without_acting() {
    let sys = Sys::new();
    sys.touch("broken");
    let file = fixture("fix-file.yaml");
    let out = sys.run(&[
        "run",
        file.to_str().unwrap(),
        "-p",
        &sys.dir_param(),
        "--dry-run",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", out);
    assert!(sys.exists("broken"), "nothing was changed");
    let stderr = out.stderr.as_str();
    assert!(stderr.contains("would run repair"), "{stderr}");
    assert!(stderr.contains("✓ detect ok"), "{stderr}");
}

/// Run the binary on a pseudo-terminal, typing `input`.
fn on_a_terminal(sys: &Sys, args: &[String], input: &str) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sys.cmd(&args).on_a_terminal().stdin(input).run()
}

#[test]
fn demo_interactive_counts_the_time_a_person_takes_at_a_gate() {
    let sys = Sys::new();
    // The person reads the prompt, then takes 1.5 s: timed from the prompt, not from
    // the start (a loaded machine may take over a second to show the first gate).
    let out = sys
        .cmd(&["demo", "--interactive"])
        .on_a_terminal()
        .after_prompt("Approve? [y/N/skip/abort]")
        .think(Duration::from_millis(1500))
        .stdin("y\n".repeat(20))
        .run();
    let shown = out.stdout.as_str();
    assert!(shown.contains("Approve? [y/N/skip/abort]"), "{shown}");
    let id = sys.only_run();
    let j = reader::read(&sys.state().join("runs").join(&id).join("journal.ndjson")).unwrap();
    let requested = j
        .records
        .iter()
        .find(|r| matches!(r.event, Event::GateRequested { .. }))
        .expect("a gate was asked");
    let decided = j
        .records
        .iter()
        .find(|r| matches!(r.event, Event::GateDecided { .. }))
        .expect("and answered");
    // The lab's clock is virtual, but a person's time is not: the 1.5 s before the
    // first answer shows in the journal (and so in the postmortem's gate waits).
    let waited = decided.ts - requested.ts;
    assert!(
        waited >= chrono::Duration::milliseconds(1000),
        "the gate waited {waited} in the journal\n{shown}"
    );
}

#[test]
fn on_a_terminal_the_gate_asks_and_the_answer_is_journaled() {
    let sys = Sys::new();
    sys.touch("broken");
    let file = fixture("fix-file.yaml").display().to_string();
    let args = vec!["run".to_string(), file, "-p".into(), sys.dir_param()];
    let out = on_a_terminal(&sys, &args, "y\n");
    let shown = out.stdout.as_str();
    assert!(shown.contains("Approve? [y/N/skip/abort]"), "{shown}");
    assert!(sys.exists("repaired"), "{shown}");
    let ev = sys.events(&sys.only_run());
    assert!(ev.iter().any(|e| matches!(e, Event::GateDecided {
        source: runbook::journal::event::ApprovalSource::Prompt, by, .. } if by == "ana")));

    // Declining ends the run as aborted and changes nothing.
    let sys = Sys::new();
    sys.touch("broken");
    let out = on_a_terminal(&sys, &args_for(&sys), "n\n");
    assert!(sys.exists("broken"), "{}", out.stdout.as_str());
    let ev = sys.events(&sys.only_run());
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::RunFinished {
            status: RunStatus::Aborted,
            ..
        }
    )));
}

fn args_for(sys: &Sys) -> Vec<String> {
    vec![
        "run".to_string(),
        fixture("fix-file.yaml").display().to_string(),
        "-p".into(),
        sys.dir_param(),
    ]
}

#[test]
fn yes_does_not_approve_an_explicit_gate_but_approve_by_name_does() {
    let sys = Sys::new();
    sys.touch("broken");
    let file = fixture("fix-file-explicit.yaml");
    let out = sys.run(&[
        "run",
        file.to_str().unwrap(),
        "-p",
        &sys.dir_param(),
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", out);
    assert!(
        sys.exists("broken"),
        "--yes did not approve the explicit gate"
    );
    let stderr = out.stderr.as_str();
    assert!(stderr.contains("--approve repair"), "{stderr}");
    let id = sys.only_run();
    let resumed = sys.run(&["resume", &id, "--yes"]);
    assert_eq!(resumed.status.code(), Some(3), "{}", resumed);
    assert!(sys.exists("broken"));
    let resumed = sys.run(&["resume", &id, "--approve", "repair"]);
    assert_eq!(resumed.status.code(), Some(0), "{}", resumed);
    assert!(sys.exists("repaired"));
}

#[test]
fn postmortem_flag_writes_the_file_for_a_paused_run_and_keeps_human_edits_on_resume() {
    let sys = Sys::new();
    sys.touch("broken");
    let file = fixture("fix-file.yaml");
    let pm = sys.path("pm.md");
    let pm_arg = pm.to_str().unwrap();
    let out = sys.run(&[
        "run",
        file.to_str().unwrap(),
        "-p",
        &sys.dir_param(),
        "--postmortem",
        pm_arg,
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", out);
    let first = std::fs::read_to_string(&pm).expect("the paused run wrote its postmortem");
    assert!(first.contains("## Timeline"), "{first}");
    assert!(first.contains("Paused"), "{first}");
    // A person writes the summary; the resumed run's re-render must keep it.
    let region = first
        .find("<!-- runbook:human id=summary ")
        .expect("a summary region");
    let body = region + first[region..].find("-->\n").expect("marker ends") + 4;
    let edited = format!(
        "{}We found the flag at 03:12 and paged Ana. {}",
        &first[..body],
        &first[body..]
    );
    assert_ne!(edited, first);
    std::fs::write(&pm, &edited).unwrap();
    let id = sys.only_run();
    let resumed = sys.run(&["resume", &id, "--approve", "repair", "--postmortem", pm_arg]);
    assert_eq!(resumed.status.code(), Some(0), "{}", resumed);
    let second = std::fs::read_to_string(&pm).unwrap();
    assert!(
        second.contains("We found the flag at 03:12 and paged Ana."),
        "{second}"
    );
    assert!(
        second.contains("Succeeded"),
        "the generated facts were refreshed: {second}"
    );
}

/// Whether a process of group `pgid` that is not a zombie exists (an orphan of a
/// killed runner may stay unreaped for a while).
fn group_has_live_members(pgid: u32) -> bool {
    let want = pgid.to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            std::fs::read_to_string(e.path().join("stat")).is_ok_and(|stat| {
                let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
                let f: Vec<&str> = rest.split_whitespace().collect();
                f.get(2) == Some(&want.as_str()) && !matches!(f.first(), Some(&"Z" | &"X"))
            })
        })
}
