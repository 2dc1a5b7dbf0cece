//! The runbooks in runbooks/examples/, run by `runbook test` against their lab
//! scenario, and what they depend on: `label` and `set_image` acting on the lab the
//! way they act on a cluster, a rung's own `verify:` deciding whether the ladder
//! escalates, `integer`/`number`/`duration` params in conditions and titles, the URL
//! functions in a `requires:`, and a secret percent-encoded into a URL yet masked.

use std::path::{Path, PathBuf};

use crate::support::cli::Cli;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every journal under a state dir, as text.
fn journals(dir: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir)
        .expect("read the state dir")
        .flatten()
    {
        let p = e.path();
        if p.is_dir() {
            out.push_str(&journals(&p));
        } else if p.file_name().is_some_and(|n| n == "journal.ndjson") {
            out.push_str(&std::fs::read_to_string(&p).expect("read a journal"));
        }
    }
    out
}

#[test]
fn bad_image_quarantines_a_pod_with_label_and_escalates_to_set_image() {
    let state = tempfile::tempdir().expect("a temp dir");
    let out = Cli::new()
        .current_dir(repo())
        .state_dir(state.path())
        .args(["test", "runbooks/examples/bad-image.yaml"])
        .run();
    // The test file checks the lab: a new ReplicaSet for the hotfix at revision 4
    // (the restart made revision 3), the old ones at 0, the quarantined pod released
    // by its ReplicaSet, out of the Service's endpoints, still running after the
    // rollout; and the restart rung's own verification failing, so the ladder went on.
    out.success()
        .stdout_contains("PASS  bad-image :: restarting does not help, so the hotfix image is rolled out as a new ReplicaSet")
        .stdout_contains("PASS  bad-image :: a Ready half of the hotfix is enough")
        .stdout_contains("2 passed, 0 failed");
    let journal = journals(state.path());
    for line in [
        "kubectl set image deployment/web -n prod web=registry.example.com/web:2.4.1",
        "kubectl rollout restart deployment web -n prod",
    ] {
        assert!(
            journal.contains(&serde_json::to_string(line).expect("a JSON string")),
            "the journal shows `{line}`"
        );
    }
    assert!(
        journal.contains("quarantined=true app-"),
        "the label operation is journaled as kubectl writes it"
    );
}

#[test]
fn a_rungs_failing_verification_sends_the_ladder_to_the_next_rung() {
    let state = tempfile::tempdir().expect("a temp dir");
    Cli::new()
        .current_dir(repo())
        .state_dir(state.path())
        .args([
            "test",
            "runbooks/examples/bad-image.yaml",
            "--filter",
            "restarting",
        ])
        .run()
        .success();
    let events: Vec<serde_json::Value> = journals(state.path())
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let at = |pred: &dyn Fn(&serde_json::Value) -> bool, what: &str| {
        events
            .iter()
            .position(pred)
            .unwrap_or_else(|| panic!("no {what} in the journal"))
    };
    let restart = at(
        &|e| e["event"] == "rung_started" && e["rung"] == "restart",
        "start of the restart rung",
    );
    // The restart rung was judged by its own verification (`rollout_status`, which
    // never completes while 2.4.0 crashes): polls in the rung's scope, none holding.
    let polls: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "verify_polled" && e["scope"]["rung"] == "restart")
        .collect();
    assert!(
        !polls.is_empty(),
        "the restart rung's verification was polled"
    );
    assert!(polls.iter().all(|p| p["ok"] == false));
    let escalated = at(
        &|e| e["event"] == "escalated" && e["from"] == "restart" && e["to"] == "roll-forward",
        "escalation from restart to roll-forward",
    );
    let forward = at(
        &|e| e["event"] == "rung_started" && e["rung"] == "roll-forward",
        "start of the roll-forward rung",
    );
    assert!(restart < escalated && escalated < forward);
    assert!(
        events.iter().any(|e| e["event"] == "verify_polled"
            && e["scope"]["rung"] == "roll-forward"
            && e["ok"] == true),
        "the roll-forward rung's own verification held"
    );
}

#[test]
fn site_token_checks_the_url_before_sending_the_secret_and_masks_it() {
    let state = tempfile::tempdir().expect("a temp dir");
    Cli::new()
        .current_dir(repo())
        .state_dir(state.path())
        .args(["test", "runbooks/examples/site-token.yaml"])
        .run()
        .success()
        .stdout_contains("PASS  site-token :: the token goes to a local site, percent-encoded")
        .stdout_contains(
            "PASS  site-token :: the token is never sent to a plain-http site elsewhere",
        )
        .stdout_contains("3 passed, 0 failed");
    let journal = journals(state.path());
    assert!(
        journal.contains("token=***"),
        "the URL is journaled, masked"
    );
    for form in ["s3cr3t/t0k+n=", "s3cr3t%2Ft0k%2Bn%3D", "s3cr3t"] {
        assert!(!journal.contains(form), "`{form}` reached the journal");
    }
}

const TYPED: &str = r#"version: 1
name: typed
title: At most {{params.ratio}} for {{params.window}}
params:
  ratio: { type: number, default: 2 }
  window: { type: duration, default: 2d }
  floor: { type: integer, default: 3 }
steps:
  - check: Arithmetic on typed params
    id: typed
    shell: { argv: [echo, "{{params.ratio}} {{params.window}} {{params.floor}}"] }
    expect: >-
      params.ratio * 2.0 > double(params.floor)
      && duration(params.window) >= duration('1h')
      && result.stdout.trim() == ARGS
"#;

#[test]
fn number_and_duration_params_are_usable_in_cel_whatever_form_they_are_given() {
    // `number` given as `80` (or defaulting to `1`) is a double, so `* 2.0` has an
    // overload; a `duration` given in days is handed on in hours, which CEL's
    // `duration()` reads. Both failed at run time before.
    let tmp = tempfile::tempdir().expect("a temp dir");
    for (args, shown, ok) in [
        (vec![], "2.0 48h 3", true),
        (
            vec!["-p", "ratio=80", "-p", "window=1d12h"],
            "80.0 36h 3",
            true,
        ),
        (
            vec!["-p", "ratio=2.5", "-p", "window=90m"],
            "2.5 90m 3",
            true,
        ),
        // 1.0 * 2.0 > 3.0 is false: the condition is evaluated, not an error.
        (vec!["-p", "ratio=1"], "1.0 48h 3", false),
    ] {
        let rb = tmp.path().join("typed.yaml");
        std::fs::write(&rb, TYPED.replace("ARGS", &format!("'{shown}'"))).expect("write");
        let out = Cli::new()
            .state_dir(tmp.path().join("state"))
            .arg("run")
            .arg(&rb)
            .args(args)
            .arg("--yes")
            .run();
        if ok {
            out.success();
        } else {
            // The check's condition is false: not applicable (exit 5), not an error.
            out.code(5).stderr_contains("expect does not hold");
        }
    }
}

#[test]
fn a_test_file_param_that_is_unknown_or_of_the_wrong_type_is_refused_at_its_line() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let d = tmp.path();
    let examples = repo().join("runbooks/examples");
    for f in ["bad-image.yaml", "bad-image.scenario.yaml"] {
        std::fs::copy(examples.join(f), d.join(f)).expect("copy an example");
    }
    let test = d.join("bad-image.test.yaml");
    let write_case = |params: &str| {
        std::fs::write(
            &test,
            format!(
                "version: 1\ntests:\n  - name: typo\n    scenario: bad-image.scenario.yaml\n    params:\n      {params}\n    expect: {{ status: succeeded }}\n"
            ),
        )
        .expect("write the test file");
    };
    let run = || {
        Cli::new()
            .state_dir(d.join("state"))
            .arg("test")
            .arg(d.join("bad-image.yaml"))
            .run()
    };
    write_case("ready_share: half");
    let out = run();
    assert!(
        out.stdout.contains(&format!(
            "{}:6:7: error: test `typo`: param `ready_share` takes a number; got `half`",
            test.display()
        )) || out.stderr.contains(&format!(
            "{}:6:7: error: test `typo`: param `ready_share` takes a number; got `half`",
            test.display()
        )),
        "{out}"
    );
    assert_ne!(out.status.code(), Some(0));
    write_case("recnt: 1h");
    let out = run();
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains(&format!(
            "{}:6:7: error: test `typo` gives param `recnt`, which runbook `bad-image` does not take",
            test.display()
        )),
        "{out}"
    );
}

#[test]
fn lint_refuses_a_template_helper_that_does_not_exist() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let rb = tmp.path().join("rb.yaml");
    std::fs::write(
        &rb,
        "version: 1\nname: h\ntitle: h\nparams:\n  t: { default: x }\nsteps:\n  - check: c\n    id: c\n    http: { url: \"https://example.org/?t={{urlencod params.t}}\" }\n",
    )
    .expect("write the runbook");
    Cli::new()
        .arg("lint")
        .arg(&rb)
        .run()
        .code(1)
        .stdout_contains("rb.yaml:9:44: error: `urlencod` is not a template helper")
        .stdout_contains("did you mean `urlencode`?");
}
