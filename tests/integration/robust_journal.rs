//! Issue 13 items 11 and 16, through the binary: a journal that is a directory, a FIFO
//! or a device is refused as bad input (exit 2, naming the file) without blocking, and
//! `note` on a journal whose last event is seq 2^64−1 is refused instead of wrapping.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::cli::Cli;

const RUN: &str = "20260101-000000-x-abcd";

fn run_dir(state: &Path) -> PathBuf {
    let dir = state.join("runs").join(RUN);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_journal_that_is_a_directory_a_fifo_or_a_device_is_refused_with_exit_2() {
    /// What the journal is instead, and how to make it at a path.
    type Case = (&'static str, fn(&Path));
    let cases: [Case; 3] = [
        ("a directory", |p| std::fs::create_dir(p).unwrap()),
        ("a FIFO", |p| {
            let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        }),
        ("a device", |p| {
            std::os::unix::fs::symlink("/dev/zero", p).unwrap()
        }),
    ];
    for (what, make) in cases {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        make(&run_dir(&state).join("journal.ndjson"));
        for cmd in ["postmortem", "resume"] {
            let t0 = Instant::now();
            let out = Cli::new().state_dir(&state).args([cmd, RUN]).run();
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{cmd} on {what} hung"
            );
            out.code(2);
            // `resume` holds only a run whose journal is a file: "no run …" names it.
            if cmd == "postmortem" {
                out.stderr_contains("journal.ndjson is not a journal")
                    .stderr_contains(what);
            } else {
                out.stderr_contains(RUN);
            }
        }
    }
}

#[test]
fn a_note_after_the_last_possible_seq_is_refused_and_nothing_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let journal = run_dir(&state).join("journal.ndjson");
    let text = format!(
        "{{\"seq\":{},\"ts\":\"2026-01-01T00:00:00Z\",\"event\":\"note\",\"text\":\"x\",\"by\":\"a\"}}\n",
        u64::MAX
    );
    std::fs::write(&journal, &text).unwrap();
    Cli::new()
        .state_dir(&state)
        .args(["note", RUN, "hello"])
        .run()
        .code(2)
        .stderr_contains("highest possible number");
    assert_eq!(std::fs::read_to_string(&journal).unwrap(), text);
}
