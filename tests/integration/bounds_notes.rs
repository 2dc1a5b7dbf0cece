//! Issue 13 item 12: the postmortem's cost per note. The document shows the first
//! 1 000 notes and counts the rest (the journal keeps them all), so a journal with a
//! flood of notes renders a bounded document; and `runbook postmortem` streams the
//! journal, so its memory does not grow with the events the document folds.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::support::cli::Cli;
use crate::support::measured;

/// A finished one-step run in `state`, and its journal.
fn one_step_run(dir: &Path, state: &Path) -> PathBuf {
    let file = dir.join("n.yaml");
    std::fs::write(
        &file,
        "version: 1\nname: notes\ntitle: Many notes\nsteps:\n  - check: One\n    id: one\n    shell: { argv: [echo, hi] }\n",
    )
    .unwrap();
    Cli::new()
        .state_dir(state)
        .args(["run", file.to_str().unwrap()])
        .run()
        .success();
    let run = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    run.join("journal.ndjson")
}

/// Append `n` notes of about `len` bytes each.
fn add_notes(journal: &Path, n: usize, len: usize) {
    let text = std::fs::read_to_string(journal).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let (mut seq, ts) = (
        last["seq"].as_u64().unwrap(),
        last["ts"].as_str().unwrap().to_owned(),
    );
    let mut f = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .append(true)
            .open(journal)
            .unwrap(),
    );
    let filler = "x".repeat(len);
    for i in 0..n {
        seq += 1;
        let line = serde_json::json!({"seq": seq, "ts": ts, "event": "note", "text": format!("note number {i} {filler}"), "by": "ana"});
        writeln!(f, "{line}").unwrap();
    }
}

/// Issue 13 follow-up: the postmortem held every record of the journal while it
/// rendered (about 0.5 KiB per note), though it shows 1 000 notes. 200 000 notes of
/// 300 bytes (a 70 MB journal) took well over 100 MiB; read as a stream, the peak is
/// that of a small run.
#[test]
fn the_postmortem_of_a_huge_journal_streams_it_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let journal = one_step_run(dir.path(), &state);
    add_notes(&journal, 200_000, 300);
    assert!(std::fs::metadata(&journal).unwrap().len() > 60_000_000);
    let state_arg = state.to_str().unwrap();
    let m = measured::Run::new(["--state-dir", state_arg, "postmortem", "last"])
        .bound(std::time::Duration::from_secs(120))
        .run();
    assert_eq!(m.code, Some(0), "{m}");
    assert!(
        m.stdout.contains("199000 more notes after the first 1000"),
        "{m}"
    );
    m.assert_sane("postmortem of 200 000 notes", 80 * 1024);
}

#[test]
fn notes_past_the_first_thousand_are_counted_not_rendered() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("n.yaml");
    std::fs::write(
        &file,
        "version: 1\nname: notes\ntitle: Many notes\nsteps:\n  - check: One\n    id: one\n    shell: { argv: [echo, hi] }\n",
    )
    .unwrap();
    Cli::new()
        .state_dir(&state)
        .args(["run", file.to_str().unwrap()])
        .run()
        .success();
    let run = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let journal = run.join("journal.ndjson");
    let text = std::fs::read_to_string(&journal).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let (mut seq, ts) = (
        last["seq"].as_u64().unwrap(),
        last["ts"].as_str().unwrap().to_owned(),
    );
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .unwrap();
    for i in 0..1500 {
        seq += 1;
        let line = serde_json::json!({"seq": seq, "ts": ts, "event": "note", "text": format!("note number {i}"), "by": "ana"});
        writeln!(f, "{line}").unwrap();
    }
    drop(f);
    let out = Cli::new()
        .state_dir(&state)
        .args(["postmortem", "last"])
        .run();
    out.success()
        .stdout_contains("500 more notes after the first 1000 are not shown here")
        .stdout_contains("note number 999");
    assert!(
        !out.stdout.contains("note number 1000"),
        "the 1001st note is rendered"
    );
}
