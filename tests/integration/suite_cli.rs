//! `runbook test` and `runbook demo` through the binary: the shipped runbooks pass
//! against their scenarios, runbooks that are wrong for their scenario fail, and the
//! demo fixes the seed incident and writes its postmortem.

use std::path::{Path, PathBuf};

use crate::support::cli::{Cli, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary, run from the repository root with its own state directory (given
/// through the environment, the way CI sets it).
fn runbook(state: &Path) -> Cli {
    Cli::new()
        .current_dir(repo())
        .env("RUNBOOK_STATE_DIR", state)
}

/// `runbook test PATH` with its own state dir.
fn runbook_test(path: &str) -> Output {
    let state = tempfile::tempdir().unwrap();
    runbook(state.path()).args(["test", path]).run()
}

#[test]
fn every_shipped_runbook_passes_its_tests() {
    let state = tempfile::tempdir().unwrap();
    let out = runbook(state.path()).args(["test", "runbooks"]).run();
    out.success();
    let text = &out.stdout;
    for name in [
        "hub-pvc-locked",
        "prometheus-node-lost",
        "ingress-on-cordoned-nodes",
        "hub-504",
        "node-disk-pressure",
        "bad-deploy",
        "quota-exhausted",
        "launch-spike",
        "release-headroom",
        "node-memory-pressure",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("PASS") && l.contains(name)),
            "no passing test for {name}:\n{text}"
        );
    }
    assert!(!text.contains("FAIL"), "{text}");
    assert!(!text.contains("has no test file"), "{text}");
    let summary = text.lines().last().unwrap_or_default();
    assert!(summary.ends_with("passed, 0 failed"), "{summary}");
}

#[test]
fn a_runbook_without_the_force_delete_rung_fails_against_the_seed() {
    let out = runbook_test("tests/fixtures/runbooks/hub-no-force-delete.yaml");
    let text = &out.code(1).stdout;
    assert!(text.contains("FAIL  hub-no-force-delete"), "{text}");
    assert!(
        text.contains("status: expected succeeded, got failed"),
        "{text}"
    );
    assert!(
        text.contains("cluster: the hub pod is Running: does not hold"),
        "{text}"
    );
    assert!(text.contains("0 passed, 1 failed"), "{text}");
}

#[test]
fn a_runbook_that_deletes_prometheus_without_checking_its_volume_fails_on_data_loss() {
    let out = runbook_test("tests/fixtures/runbooks/prometheus-careless.yaml");
    let text = &out.code(1).stdout;
    assert!(
        text.contains(
            "data was lost, expected none: prod/prometheus-server-5d8c7b9f4-q2w7r volume data"
        ),
        "{text}"
    );
}

/// `title`, `links` and `shown` compare what the run showed a responder with the test's
/// texts: the shipped quota runbook, tested with wrong texts, fails on each of them and
/// says what the run showed instead.
#[test]
fn a_test_expecting_other_titles_summaries_previews_or_links_fails_and_shows_what_was_shown() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["quota-exhausted.yaml", "quota-exhausted.scenario.yaml"] {
        std::fs::copy(repo().join("runbooks").join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(
        dir.path().join("quota-exhausted.test.yaml"),
        r#"version: 1
tests:
  - name: wrong texts
    scenario: quota-exhausted.scenario.yaml
    params: { prometheus: "{{lab.url}}", deployment: binder, pods: "8" }
    expect:
      status: succeeded
      title: Pods of {{params.deployment}} refused
      links: [Quota usage dashboard]
      shown:
        quota-full: { summary: 3 of 4 pods used }
        raise-quota: { title: Raise the pod limit of compute to 9, preview: compute uses 3 of 4 pods }
        replicas-available: { preview: anything }
"#,
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = runbook(state.path())
        .args([
            "test",
            dir.path().join("quota-exhausted.yaml").to_str().unwrap(),
        ])
        .run();
    let text = &out.code(1).stdout;
    for line in [
        "FAIL  quota-exhausted :: wrong texts (succeeded;",
        r#"- title: expected "Pods of {{params.deployment}} refused", the run showed "Pods of binder refused by a quota in prod""#,
        r#"- links: expected ["Quota usage dashboard"], the run journaled ["Quota usage dashboard", "GKE quotas"]"#,
        r#"- `quota-full` summary: expected "3 of 4 pods used", the run showed "4 of 4 pods used""#,
        r#"- `raise-quota` title: expected "Raise the pod limit of compute to 9", the run showed "Raise the pod limit of compute to 8""#,
        r#"- `raise-quota` preview: expected "compute uses 3 of 4 pods", the run showed "compute uses 4 of 4 pods""#,
        r#"- `replicas-available` preview: expected "anything", none was shown"#,
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

#[test]
fn a_test_file_naming_an_unknown_step_is_an_error_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("t.yaml");
    std::fs::write(
        &rb,
        "version: 1\nname: t\ntitle: t\nsteps:\n  - check: c\n    id: c\n    shell: { argv: [\"true\"] }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("t.test.yaml"),
        "version: 1\ntests:\n  - name: x\n    scenario: t.scenario.yaml\n    expect:\n      status: succeeded\n      ran: [nope]\n",
    )
    .unwrap();
    let out = runbook(dir.path()).arg("test").arg(&rb).run();
    let text = &out.code(1).stdout;
    assert!(
        text.contains(
            "t.test.yaml:7:1: error: test `x` names step `nope`, which runbook `t` does not have"
        ),
        "{text}"
    );
}

#[test]
fn demo_fixes_the_seed_incident_and_writes_its_postmortem() {
    let state = tempfile::tempdir().unwrap();
    let out = runbook(state.path()).arg("demo").run();
    let text = &out.success().stdout;
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("postmortem written to "))
        .unwrap_or_else(|| panic!("no postmortem path in:\n{text}"));
    let md = std::fs::read_to_string(repo().join(path)).unwrap();
    assert!(md.contains("2018-03-13"), "the timeline shows cluster time");
    assert!(
        md.contains("--grace-period=0 --force"),
        "the force delete is shown as kubectl"
    );
    assert!(md.contains("force-delete-lost-pods"));
    assert!(md.contains("## Timeline"));
}

#[test]
fn checked_in_test_file_schema_is_current() {
    let path = repo().join("schemas/test.schema.json");
    let fresh = runbook::suite::spec::schema_json();
    if std::env::var_os("RUNBOOK_UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == fresh,
        "schemas/test.schema.json is stale: run `RUNBOOK_UPDATE_SCHEMAS=1 cargo test --test integration suite_cli` and commit it"
    );
}
