//! Issue 18: group commit. Operations a `for_each` starts together share one fsync of
//! their `op_started` records (each still durable before its operation runs), and the
//! next group's starts are synced while the current group runs, so a 100-item batch
//! under `concurrency: 10` costs about 100/10 fsyncs, not 100. The
//! journal writer counts its fsyncs and `runbook -vv` logs the count when the journal
//! closes ("journal closed fsyncs=N").

use crate::support::cli::Cli;

/// A runbook whose one action marks `n` items under `concurrency`.
fn runbook(n: usize, concurrency: usize) -> String {
    let items: Vec<String> = (0..n).map(|i| format!("i{i}")).collect();
    format!(
        "version: 1\nname: batch\ntitle: Mark many items\nparams:\n  items: {{ default: [{}] }}\nsteps:\n  - action: Mark each item\n    id: mark\n    gate: auto\n    for_each: params.items\n    concurrency: {concurrency}\n    shell: {{ argv: [\"true\", \"{{{{item}}}}\"] }}\n",
        items.join(", ")
    )
}

/// Run the runbook; the fsyncs its journal took and the journal's text.
fn fsyncs_of(n: usize, concurrency: usize) -> (u64, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("batch.yaml");
    std::fs::write(&file, runbook(n, concurrency)).unwrap();
    let state = dir.path().join("state");
    let out = Cli::new()
        .state_dir(&state)
        .env("RUST_LOG", "runbook::engine::record=debug")
        .args(["run", file.to_str().unwrap()])
        .run();
    out.success();
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("journal closed"))
        .unwrap_or_else(|| panic!("no `journal closed` debug line:\n{}", out.stderr));
    let n_fsyncs = line
        .split("fsyncs=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no fsync count in {line:?}"));
    let runs = state.join("runs");
    let run = std::fs::read_dir(&runs).unwrap().next().unwrap().unwrap();
    let journal = std::fs::read_to_string(run.path().join("journal.ndjson")).unwrap();
    (n_fsyncs, journal)
}

#[test]
fn a_100_item_batch_under_concurrency_10_shares_fsyncs_instead_of_one_per_item() {
    let (fsyncs, journal) = fsyncs_of(100, 10);
    assert_eq!(journal.matches("\"op_started\"").count(), 100);
    assert_eq!(journal.matches("\"op_finished\"").count(), 100);
    // The next ten starts are journaled (and synced) while a group runs: about
    // 100/10 syncs for the starts, plus the run's own (start, gate, step end, run
    // end). Refilling half-empty groups without that costs ~2 × 100/10 (20 in all).
    assert!(
        fsyncs <= 16,
        "{fsyncs} fsyncs for 100 operations under concurrency 10 (one per operation would be ~100)"
    );
}

#[test]
fn under_concurrency_1_every_start_still_gets_its_own_fsync() {
    // The counter counts: one at a time, each start is synced before it runs.
    let (fsyncs, _) = fsyncs_of(30, 1);
    assert!(
        fsyncs >= 30,
        "{fsyncs} fsyncs for 30 operations run one at a time"
    );
}
