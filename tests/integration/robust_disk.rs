//! Issue 13 item 8: a disk that refuses writes is the environment's failure, not a bug.
//! A run whose journal cannot be written exits 74 (EX_IOERR) naming the path and what
//! to free, never 70; a side file that cannot be written leaves the cut output in the
//! journal with a note saying the whole was not kept, never nothing.
//!
//! The full disk is made with `ulimit -f` (RLIMIT_FSIZE, EFBIG past it), which needs no
//! privileges and no mount; SIGXFSZ is ignored first so the write fails instead of
//! killing the process, as ENOSPC would. Both errors take the same path in the code
//! (`exit::io_hint`).

use std::path::Path;
use std::process::{Command, Output, Stdio};

use runbook::journal::event::Event;
use runbook::journal::reader;

/// `runbook ARGS` with files limited to `kib` KiB.
fn run_limited(kib: u32, state: &Path, args: &[&str]) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg(format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_runbook"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env("USER", "ana")
        .env_remove("RUNBOOK_STATE_DIR")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("bash runs")
}

fn runbook(dir: &Path, bytes: usize) -> std::path::PathBuf {
    let file = dir.join("big.yaml");
    std::fs::write(
        &file,
        format!(
            "version: 1\nname: big\ntitle: A step with a large output\nsteps:\n  - action: Print\n    id: print\n    gate: auto\n    shell:\n      argv: [sh, -c, 'head -c {bytes} /dev/zero | tr \"\\\\0\" x']\n"
        ),
    )
    .unwrap();
    file
}

fn only_journal(state: &Path) -> std::path::PathBuf {
    let runs: Vec<_> = std::fs::read_dir(state.join("runs"))
        .expect("a runs folder")
        .flatten()
        .collect();
    assert_eq!(runs.len(), 1);
    runs[0].path().join("journal.ndjson")
}

#[test]
fn a_side_file_that_cannot_be_written_leaves_the_cut_output_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = runbook(dir.path(), 300_000);
    let out = run_limited(64, &state, &["run", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the run still succeeds: {stderr}"
    );
    let journal = reader::read(&only_journal(&state)).expect("the journal reads back");
    let (result, output_file) = journal
        .records
        .iter()
        .find_map(|r| match &r.event {
            Event::OpFinished {
                result,
                output_file,
                ..
            } => Some((result.clone(), output_file.clone())),
            _ => None,
        })
        .expect("the operation finished");
    assert_eq!(output_file, None, "no side file is named: none was written");
    let result = result.expect("the cut result is inline");
    let stdout = result["stdout"].as_str().expect("stdout kept");
    assert!(
        stdout.starts_with("xxxx") && stdout.contains("[300000 bytes in total]"),
        "the cut copy is kept: {}",
        &stdout[stdout.len().saturating_sub(80)..]
    );
    let why = result["$side_file_error"]
        .as_str()
        .expect("the journal says so");
    assert!(
        why.contains("could not be written") && why.contains("outputs"),
        "{why}"
    );
    let outputs = only_journal(&state).with_file_name("outputs");
    let partial: Vec<_> = std::fs::read_dir(&outputs)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(
        partial.is_empty(),
        "no partial side file is left: {partial:?}"
    );
}

#[test]
fn a_journal_that_cannot_be_written_exits_74_naming_the_path_and_what_to_free() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = runbook(dir.path(), 10);
    let out = run_limited(1, &state, &["run", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(74), "{stderr}");
    assert!(
        stderr.contains("journal.ndjson") && stderr.contains("free space"),
        "the message names the file and what to do: {stderr}"
    );
    assert!(!stderr.contains("bug"), "{stderr}");
}
