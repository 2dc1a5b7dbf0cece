//! Issue 13 item 12: the postmortem's cost per note. The document shows the first
//! 1 000 notes and counts the rest (the journal keeps them all), so a journal with a
//! flood of notes renders a bounded document.

use std::io::Write;

use crate::support::cli::Cli;

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
