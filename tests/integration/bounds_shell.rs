//! Issue 13 item 1, shell side, measured from outside the process: a step that
//! floods its stdout keeps the run's memory bounded (stdout and stderr are each kept
//! up to `RUNBOOK_MAX_OUTPUT`, 4 MiB by default, the rest drained and counted), and
//! the journal says the output was cut and how large it was.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runbook::journal::event::{Event, Outcome};
use runbook::journal::reader;

/// Peak resident memory allowed to a run whose step prints hundreds of megabytes.
const MAX_RSS_KB: i64 = 200 * 1024;

/// Run `runbook run FILE` to its end; returns (exit code, peak RSS in KiB, wall time).
/// The peak is the child's own `VmHWM` (the high-water mark of the memory image it
/// exec'ed), read from /proc while it runs. Not `wait4`'s `ru_maxrss`: Linux carries
/// the parent's resident size across `exec` into it, and the parent here is the whole
/// test binary with every other test running in it.
fn run_measured(state: &Path, file: &Path, env: &[(&str, &str)]) -> (i32, i64, Duration) {
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .arg("--state-dir")
        .arg(state)
        .arg("run")
        .arg(file)
        .envs(env.iter().copied())
        .env("USER", "ana")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0i64;
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(&status_file)
            && let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            break status;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the run did not end in 120 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    assert!(peak_kb > 0, "VmHWM of the run was never read");
    (code, peak_kb, t0.elapsed())
}

fn finished_results(state: &Path) -> Vec<(Outcome, Option<serde_json::Value>)> {
    let runs: Vec<_> = std::fs::read_dir(state.join("runs"))
        .expect("a runs folder")
        .flatten()
        .collect();
    assert_eq!(runs.len(), 1);
    let journal = reader::read(&runs[0].path().join("journal.ndjson")).expect("a journal");
    journal
        .records
        .into_iter()
        .filter_map(|r| match r.event {
            Event::OpFinished {
                outcome, result, ..
            } => Some((outcome, result)),
            _ => None,
        })
        .collect()
}

fn runbook(dir: &Path, step: &str) -> std::path::PathBuf {
    let file = dir.join("flood.yaml");
    let text = format!(
        "version: 1\nname: flood\ntitle: A step that prints a lot\nsteps:\n  - action: Print\n    id: print\n    gate: auto\n{step}"
    );
    std::fs::write(&file, text).expect("a writable temp dir");
    file
}

#[test]
fn a_step_printing_600_mb_keeps_the_run_small_and_the_journal_says_it_was_cut() {
    let dir = tempfile::tempdir().unwrap();
    let file = runbook(
        dir.path(),
        "    shell:\n      argv: [sh, -c, 'head -c 600000000 /dev/zero; echo tail >&2']\n",
    );
    let (code, rss_kb, took) = run_measured(&dir.path().join("state"), &file, &[]);
    assert_eq!(code, 0, "the run succeeds");
    assert!(rss_kb < MAX_RSS_KB, "peak RSS {rss_kb} KiB (took {took:?})");
    let results = finished_results(&dir.path().join("state"));
    let (outcome, result) = &results[0];
    assert_eq!(*outcome, Outcome::Ok);
    let result = result.as_ref().expect("a journaled result");
    assert_eq!(result["stdout_truncated"], true, "{result}");
    assert_eq!(result["stdout_bytes"], 600_000_000u64);
    // Streamed to disk, not memory, up to the spill cap (256 MiB by default).
    assert_eq!(result["stdout_file_truncated"], true, "{result}");
    assert_eq!(result["stdout_file_bytes"], 256u64 << 20);
    assert!(result["stdout_file"].as_str().is_some(), "{result}");
    assert!(result.get("stderr_truncated").is_none());
    assert_eq!(result["stderr"], "tail\n");
}

#[test]
fn an_endless_yes_ends_at_its_timeout_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let file = runbook(
        dir.path(),
        "    timeout: 2s\n    shell:\n      argv: [yes]\n",
    );
    let (code, rss_kb, took) = run_measured(&dir.path().join("state"), &file, &[]);
    assert_eq!(code, 1, "the step timed out");
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(rss_kb < MAX_RSS_KB, "peak RSS {rss_kb} KiB");
    let results = finished_results(&dir.path().join("state"));
    assert_eq!(results[0].0, Outcome::TimedOut);
}

#[test]
fn the_cap_is_raised_or_lowered_with_runbook_max_output() {
    let dir = tempfile::tempdir().unwrap();
    let file = runbook(
        dir.path(),
        "    shell:\n      argv: [sh, -c, 'head -c 5000 /dev/zero | tr \"\\\\0\" x']\n",
    );
    let (code, _, _) = run_measured(
        &dir.path().join("state"),
        &file,
        &[("RUNBOOK_MAX_OUTPUT", "1K")],
    );
    assert_eq!(code, 0);
    let results = finished_results(&dir.path().join("state"));
    let result = results[0].1.as_ref().expect("a journaled result");
    assert_eq!(result["stdout"], "x".repeat(1024));
    assert_eq!(result["stdout_bytes"], 5000);
}
