//! Issue 13 item 2: `runbook run` killed with SIGKILL at a seeded random point and
//! resumed at once, without the sleep that used to hide the race. The action's
//! process group outlives the engine; a resume that re-ran the action after one
//! immediate poll of its verification put a second execution next to the first. The
//! fixture claims a marker with an atomic marker (mkdir) while it runs, so any overlap is counted.
//!
//! `CHAOS_SEED=N cargo test --test integration robust_kill` runs one seed alone.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::cli::{BIN, Cli};

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/robust/overlap.yaml")
}

/// splitmix64, as in `chaos_kill`.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn round(seed: u64, signal: i32) {
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
    // Somewhere from before the journal exists to after the action ended.
    std::thread::sleep(Duration::from_millis(mix(seed) % 450));
    // SAFETY: signalling the child we spawned.
    unsafe { libc::kill(child.id() as i32, signal) };
    let _ = child.wait();
    // No sleep: resume at once, while the action's process may still be running.
    if let Ok(runs) = std::fs::read_dir(state.join("runs")) {
        for run in runs.flatten() {
            let id = run.file_name().to_string_lossy().into_owned();
            let out = Cli::new()
                .state_dir(&state)
                .args(["resume", &id, "--yes"])
                .run();
            let code = out.status.code();
            assert!(
                !matches!(code, Some(70) | Some(101) | None),
                "seed {seed}: resume exited {code:?}: {}",
                out.stderr
            );
        }
    }
    // Let any execution still running end before looking.
    let t0 = Instant::now();
    let alive = || {
        std::fs::read_to_string(work.join("running/pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            // SAFETY: signal 0 only asks whether the process exists.
            .is_some_and(|pid| unsafe { libc::kill(pid, 0) } == 0)
    };
    while alive() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let overlaps = std::fs::read_to_string(work.join("overlaps")).unwrap_or_default();
    assert!(
        overlaps.is_empty(),
        "seed {seed} (signal {signal}): two executions overlapped; effects: {:?}",
        std::fs::read_to_string(work.join("effects")).unwrap_or_default()
    );
}

fn seeds(base: u64, n: u64) -> Vec<u64> {
    match std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => (base..base + n).collect(),
    }
}

#[test]
fn sigkill_then_immediate_resume_never_runs_the_action_twice_at_once() {
    for seed in seeds(1000, 30) {
        round(seed, libc::SIGKILL);
    }
}

#[test]
fn sigterm_or_sighup_then_immediate_resume_never_runs_the_action_twice_at_once() {
    for seed in seeds(2000, 6) {
        let signal = if seed % 2 == 0 {
            libc::SIGTERM
        } else {
            libc::SIGHUP
        };
        round(seed, signal);
    }
}
