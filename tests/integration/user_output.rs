//! Snapshots of what a user reads that no other test pins: `--help` of every
//! subcommand, a gate's plan as the console prints it, the `runs` table and the
//! report of `runbook test`. A change to any of them shows as a snapshot diff in
//! review (`cargo insta review`); run ids, temp paths and times are replaced by
//! placeholders so only the wording and layout are pinned.

use crate::support::regex_escape;
use std::path::{Path, PathBuf};

use crate::support::cli::Cli;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every subcommand, as `runbook --help` lists them.
const SUBCOMMANDS: [&str; 18] = [
    "lint",
    "list",
    "schema",
    "rbac",
    "run",
    "resume",
    "undo",
    "runs",
    "show",
    "abort",
    "approve",
    "note",
    "postmortem",
    "lab",
    "serve",
    "demo",
    "test",
    "completions",
];

#[test]
fn help_of_the_binary_and_every_subcommand() {
    let top = Cli::new().arg("--help").run();
    top.success();
    insta::assert_snapshot!("help", top.stdout);
    // Every command --help lists has its own help pinned here.
    let listed: Vec<&str> = top
        .stdout
        .split("Commands:")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    let mut missing: Vec<&str> = listed
        .iter()
        .copied()
        .filter(|c| !SUBCOMMANDS.contains(c))
        .collect();
    missing.sort_unstable();
    assert!(
        missing.is_empty(),
        "--help lists {missing:?}, whose help is not snapshotted (add to SUBCOMMANDS)"
    );
    for sub in SUBCOMMANDS {
        assert!(
            top.stdout.contains(&format!("\n  {sub} ")),
            "`{sub}` is not listed by --help (update SUBCOMMANDS):\n{}",
            top.stdout
        );
        let out = Cli::new().args([sub, "--help"]).run();
        out.success();
        insta::assert_snapshot!(format!("help-{sub}"), out.stdout);
    }
}

/// The placeholders for what changes from run to run.
fn normalised(dir: &Path) -> Vec<(String, &'static str)> {
    vec![
        (regex_escape(&dir.display().to_string()), "[DIR]"),
        (r"\d{8}-\d{6}-[a-z0-9-]+-[0-9a-f]{4}".into(), "[RUN]"),
        // The digest covers the rendered operations, which hold the temp dir's path.
        (r"plan digest [0-9a-f]{12}".into(), "plan digest [DIGEST]"),
        (r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}".into(), "[TIME]"),
        // With the padding after it: a column's width follows the real duration's.
        (r"\b\d+(\.\d+)?(ms|s)\b +".into(), "[DURATION] "),
        (r"\b\d+(\.\d+)?(ms|s)\b".into(), "[DURATION]"),
    ]
}

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/engine").join(name)
}

#[test]
fn a_gates_plan_as_printed_for_a_dry_run_and_an_approved_run() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let filters = normalised(dir.path());
    let filters: Vec<(&str, &str)> = filters.iter().map(|(a, b)| (a.as_str(), *b)).collect();
    let state = dir.path().join(".runbook");
    std::fs::write(dir.path().join("broken"), "").expect("writable temp dir");
    let param = format!("dir={}", dir.path().display());
    let run = |extra: &str| {
        Cli::new()
            .state_dir(&state)
            .arg("run")
            .arg(fixture("fix-file.yaml"))
            .args(["-p", &param, extra])
            .run()
    };
    let dry = run("--dry-run");
    dry.success();
    let yes = run("--yes");
    yes.success();
    insta::with_settings!({filters => filters.clone()}, {
        insta::assert_snapshot!("plan-dry-run", dry.stderr);
        insta::assert_snapshot!("plan-approved", yes.stderr);
    });

    // The two runs, as `runs` lists them.
    let runs = Cli::new().state_dir(&state).arg("runs").run();
    runs.success();
    insta::with_settings!({filters => filters}, {
        insta::assert_snapshot!("runs-live", runs.stdout);
    });
}

/// `runs` over the fixture journals: fixed ids and times, so nothing is replaced.
#[test]
fn runs_lists_every_run_with_its_status_start_and_duration() {
    let state = tempfile::tempdir().expect("a temp dir");
    for (id, name) in [
        ("20180313T062800Z-hub-pvc-locked-7f3a", "clean"),
        ("20180320T235840Z-hub-pvc-locked-c91e", "escalated"),
        ("20180321T101500Z-hub-pvc-locked-0a1b", "failed"),
        ("20180322T090000Z-hub-pvc-locked-2c3d", "aborted"),
        ("20180323T120000Z-hub-pvc-locked-4e5f", "paused"),
    ] {
        let run = state.path().join("runs").join(id);
        std::fs::create_dir_all(&run).expect("a run dir");
        std::fs::copy(
            repo().join(format!("tests/fixtures/journals/{name}.ndjson")),
            run.join("journal.ndjson"),
        )
        .expect("a fixture journal");
    }
    let out = Cli::new().state_dir(state.path()).arg("runs").run();
    out.success();
    insta::assert_snapshot!("runs", out.stdout);
}

#[test]
fn runbook_test_reports_a_pass_and_a_failure() {
    let state = tempfile::tempdir().expect("a temp dir");
    let filters = normalised(state.path());
    let filters: Vec<(&str, &str)> = filters.iter().map(|(a, b)| (a.as_str(), *b)).collect();
    let test = |path: &str| {
        Cli::new()
            .current_dir(repo())
            .state_dir(state.path())
            .args(["test", path])
            .run()
    };
    let failing = test("tests/fixtures/runbooks/hub-no-force-delete.yaml");
    failing.code(1);
    let passing = test("runbooks/hub-pvc-locked.yaml");
    passing.success();
    insta::with_settings!({filters => filters}, {
        insta::assert_snapshot!("test-fails", failing.stdout);
        insta::assert_snapshot!("test-passes", passing.stdout);
    });
}
