//! Issue 13 item 2: the engine is killed (SIGKILL) while an action's program runs in
//! its own process group. The start of the program is journaled with its pgid
//! (`process_started`), and an immediate `resume` refuses to run the action again
//! while that group is alive (exit 2, naming the group and the ways out) instead of
//! putting a second execution next to the first.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::cli::{BIN, Cli};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/robust/pgid.yaml")
}

/// A run killed while its action sleeps: the state folder, the scratch folder, the
/// run id and the pgid its journal names.
struct Killed {
    _dir: tempfile::TempDir,
    state: PathBuf,
    work: PathBuf,
    run_id: String,
    journal: PathBuf,
    pgid: i32,
}

impl Drop for Killed {
    fn drop(&mut self) {
        // Never leave the 30 s sleep behind, whatever the test asserted.
        // SAFETY: signalling the group the test's own run started.
        unsafe { libc::kill(-self.pgid, libc::SIGKILL) };
    }
}

/// Whether a process of group `pgid` that is not a zombie exists (the killed
/// engine's orphans may stay unreaped for a while).
fn alive(pgid: i32) -> bool {
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

fn run_and_kill() -> Killed {
    let dir = tempfile::tempdir().unwrap();
    let (state, work) = (dir.path().join("state"), dir.path().join("work"));
    std::fs::create_dir_all(&work).unwrap();
    let mut child = std::process::Command::new(BIN)
        .arg("--state-dir")
        .arg(&state)
        .args(["run", fixture().to_str().unwrap(), "-p"])
        .arg(format!("dir={}", work.display()))
        .env("USER", "ana")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the binary starts");
    // Wait for the journal to name the action's process group.
    let t0 = Instant::now();
    let found = loop {
        let journal = std::fs::read_dir(state.join("runs"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(Result::ok)
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.path().join("journal.ndjson"),
                )
            });
        if let Some((id, path)) = journal {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let pgid = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["event"] == "process_started")
                .and_then(|v| v["pgid"].as_i64());
            if let Some(pgid) = pgid {
                break Some((id, path, pgid as i32));
            }
        }
        if t0.elapsed() > Duration::from_secs(20) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // SAFETY: signalling the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    let (run_id, journal, pgid) = found.expect("the journal names the action's process group");
    assert!(alive(pgid), "the action's group {pgid} outlives the engine");
    Killed {
        _dir: dir,
        state,
        work,
        run_id,
        journal,
        pgid,
    }
}

fn runs(work: &Path) -> usize {
    std::fs::read_to_string(work.join("runs"))
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn resume_refuses_while_the_killed_actions_group_runs_and_rerun_unknown_overrides() {
    let k = run_and_kill();
    let before = std::fs::read_to_string(&k.journal).unwrap();
    let pgid = k.pgid.to_string();
    Cli::new()
        .state_dir(&k.state)
        .env("USER", "ana")
        .args(["resume", &k.run_id, "--yes"])
        .run()
        .code(2)
        .stderr_contains(format!(
            "the process group {pgid} of step long is still running"
        ))
        .stderr_contains(format!("kill -- -{pgid}"))
        .stderr_contains(format!("runbook resume {} --rerun-unknown", k.run_id));
    assert_eq!(
        std::fs::read_to_string(&k.journal).unwrap(),
        before,
        "a refused resume leaves the journal as it was"
    );
    assert_eq!(runs(&k.work), 1, "the action did not run again");
    // A person says to run it again anyway: the run proceeds (the verification is
    // polled for its `within` first, then the action runs a second time).
    Cli::new()
        .state_dir(&k.state)
        .env("USER", "ana")
        .args(["resume", &k.run_id, "--yes", "--rerun-unknown"])
        .run()
        .success();
    assert_eq!(runs(&k.work), 2, "the action ran again next to the first");
    let journal = std::fs::read_to_string(&k.journal).unwrap();
    let note = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            v["event"] == "note"
                && v["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("--rerun-unknown"))
        })
        .expect("the override is journaled as a note");
    assert_eq!(note["by"], "ana");
    assert!(note["text"].as_str().unwrap().contains(&pgid), "{note}");
}

#[test]
fn resume_proceeds_once_the_killed_actions_group_is_gone() {
    let k = run_and_kill();
    // SAFETY: the group of the test's own run.
    unsafe { libc::kill(-k.pgid, libc::SIGKILL) };
    let t0 = Instant::now();
    while alive(k.pgid) && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!alive(k.pgid), "the group ended");
    let out = Cli::new()
        .state_dir(&k.state)
        .env("USER", "ana")
        .args(["resume", &k.run_id, "--yes"])
        .run();
    out.success();
    assert!(!out.stderr.contains("--rerun-unknown"), "{}", out.stderr);
    assert_eq!(
        runs(&k.work),
        2,
        "the action ran again once its group was gone"
    );
}
