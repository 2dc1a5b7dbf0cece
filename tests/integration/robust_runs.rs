//! Issue 13 items 5 and 6, through the binary: a resumed run numbers its side files
//! after the ones already written (the earlier files stay intact and distinct), and a
//! second run of a runbook that still has an unfinished run warns and journals a note.

use std::path::{Path, PathBuf};

use runbook::journal::event::Event;
use runbook::journal::reader;

use crate::support::cli::Cli;

/// Two actions printing 300 kB each (more than the journal keeps inline); the second
/// has a gate, so without a terminal or `--yes` the run pauses before it.
fn runbook(dir: &Path) -> PathBuf {
    let file = dir.join("two.yaml");
    std::fs::write(
        &file,
        r#"version: 1
name: two-outputs
title: Two large outputs around a gate
steps:
  - action: First output
    id: first
    gate: auto
    shell: { argv: [sh, -c, 'head -c 300000 /dev/zero | tr "\0" a'] }
  - action: Second output
    id: second
    shell: { argv: [sh, -c, 'head -c 300000 /dev/zero | tr "\0" b'] }
"#,
    )
    .unwrap();
    file
}

fn runs(state: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(state.join("runs"))
        .expect("a runs folder")
        .flatten()
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

fn output_files(run: &Path) -> Vec<String> {
    reader::read(&run.join("journal.ndjson"))
        .expect("the journal reads back")
        .records
        .into_iter()
        .filter_map(|r| match r.event {
            Event::OpFinished { output_file, .. } => output_file,
            _ => None,
        })
        .collect()
}

#[test]
fn a_resumed_run_keeps_its_earlier_side_files_intact_and_numbers_new_ones_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = runbook(dir.path());
    Cli::new()
        .state_dir(&state)
        .args(["run", file.to_str().unwrap()])
        .run()
        .code(3);
    let run = runs(&state).remove(0);
    let before = output_files(&run);
    assert_eq!(before.len(), 1, "{before:?}");
    let first = std::fs::read(run.join(&before[0])).expect("the first side file");

    let id = run.file_name().unwrap().to_str().unwrap().to_string();
    Cli::new()
        .state_dir(&state)
        .args(["resume", &id, "--yes"])
        .run()
        .success();
    let after = output_files(&run);
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(after[0], before[0]);
    assert_ne!(
        after[0], after[1],
        "a new number for the resumed run's file"
    );
    assert_eq!(
        std::fs::read(run.join(&after[0])).unwrap(),
        first,
        "the earlier side file is intact"
    );
    let second = String::from_utf8(std::fs::read(run.join(&after[1])).unwrap()).unwrap();
    assert!(second.contains("bbbb") && !second.contains("aaaa"));
}

#[test]
fn a_second_run_of_a_runbook_with_an_unfinished_run_warns_and_journals_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = runbook(dir.path());
    let quiet = Cli::new()
        .state_dir(&state)
        .args(["run", file.to_str().unwrap()])
        .run();
    quiet.code(3);
    assert!(
        !quiet.stderr.contains("another unfinished run"),
        "{}",
        quiet.stderr
    );
    let paused = runs(&state).remove(0);
    let paused_id = paused.file_name().unwrap().to_str().unwrap().to_string();

    let out = Cli::new()
        .state_dir(&state)
        .args(["run", file.to_str().unwrap()])
        .run();
    out.code(3)
        .stderr_contains("another unfinished run of `two-outputs`")
        .stderr_contains(format!("{paused_id} (paused)"))
        .stderr_contains(format!("runbook postmortem {paused_id}"));
    let second = runs(&state)
        .into_iter()
        .find(|r| *r != paused)
        .expect("a second run");
    let notes: Vec<String> = reader::read(&second.join("journal.ndjson"))
        .unwrap()
        .records
        .into_iter()
        .filter_map(|r| match r.event {
            Event::Note { text, by, .. } if by == "runbook" => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains(&paused_id), "{}", notes[0]);

    // Once the first run is finished, a new run is quiet again.
    Cli::new()
        .state_dir(&state)
        .args(["resume", &paused_id, "--yes"])
        .run()
        .success();
    let second_id = second.file_name().unwrap().to_str().unwrap().to_string();
    Cli::new()
        .state_dir(&state)
        .args(["resume", &second_id, "--yes"])
        .run()
        .success();
    let third = Cli::new()
        .state_dir(&state)
        .args(["run", file.to_str().unwrap(), "--yes"])
        .run();
    third.success();
    assert!(
        !third.stderr.contains("another unfinished run"),
        "{}",
        third.stderr
    );
}
