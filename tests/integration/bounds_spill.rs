//! Issue 13 item 1, the other half of the result caps: an output past the in-memory
//! cap (`RUNBOOK_MAX_OUTPUT`) is not lost. The provider streams it whole to a side
//! file in the run folder as it reads it (memory stays at the cap), the journal says
//! it was cut, how large it was and which file has it, the run goes on, and `runbook
//! show` and the postmortem point at the file. Secrets are masked in the file as they
//! are everywhere else, even where a chunk boundary splits one.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use runbook::journal::event::{Event, Outcome};
use runbook::journal::reader;
use serde_json::Value;

use crate::support::cli::Cli;

const SECRET: &str = "Tok3n-4-spill-test";

fn run_dir(state: &Path) -> PathBuf {
    let runs: Vec<_> = std::fs::read_dir(state.join("runs"))
        .expect("a runs folder")
        .flatten()
        .collect();
    assert_eq!(runs.len(), 1);
    runs[0].path()
}

/// Every `op_finished` of the run: (step, outcome, result, error).
fn finished(state: &Path) -> Vec<(String, Outcome, Option<Value>, Option<String>)> {
    let journal = reader::read(&run_dir(state).join("journal.ndjson")).expect("a journal");
    journal
        .records
        .into_iter()
        .filter_map(|r| match r.event {
            Event::OpFinished {
                scope,
                outcome,
                result,
                error,
                ..
            } => Some((scope.step, outcome, result, error)),
            _ => None,
        })
        .collect()
}

fn write_runbook(dir: &Path, steps: &str) -> PathBuf {
    let file = dir.join("spill.yaml");
    let text = format!(
        "version: 1\nname: spill\ntitle: Outputs past the cap\nparams:\n  token: {{ secret: true, required: true }}\nsteps:\n{steps}  - check: The run goes on\n    id: after\n    shell:\n      argv: [echo, next]\n"
    );
    std::fs::write(&file, text).expect("a writable temp dir");
    file
}

#[test]
fn a_shell_output_past_the_cap_is_streamed_whole_to_a_side_file_that_show_and_the_postmortem_name()
{
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // 3 000 000 x, the secret, 100 y: the secret lies past the 1 MiB kept in memory.
    let file = write_runbook(
        dir.path(),
        "  - action: Print a lot\n    id: print\n    gate: auto\n    shell:\n      argv: [sh, -c, 'head -c 3000000 /dev/zero | tr \"\\\\0\" x; printf %s \"$1\"; head -c 100 /dev/zero | tr \"\\\\0\" y', sh, '{{params.token}}']\n",
    );
    Cli::new()
        .state_dir(&state)
        .env("RUNBOOK_MAX_OUTPUT", "1M")
        .env("RUNBOOK_SECRET_TOKEN", SECRET)
        .args(["run", file.to_str().unwrap()])
        .run()
        .success();
    let ops = finished(&state);
    assert_eq!(ops.len(), 2, "the run went on to the next step: {ops:?}");
    let (step, outcome, result, _) = &ops[0];
    assert_eq!((step.as_str(), *outcome), ("print", Outcome::Ok));
    let result = result.as_ref().expect("a journaled result");
    let total = 3_000_000 + SECRET.len() + 100;
    assert_eq!(result["stdout_truncated"], true, "{result}");
    assert_eq!(result["stdout_bytes"], total);
    assert!(result.get("stdout_file_truncated").is_none(), "{result}");
    let side = result["stdout_file"].as_str().expect("stdout_file");
    assert!(
        side.starts_with("outputs/") && side.ends_with("-print-stdout.txt"),
        "{side}"
    );
    let bytes = std::fs::read(run_dir(&state).join(side)).expect("the side file exists");
    let text = String::from_utf8(bytes).unwrap();
    let expected = format!("{}***{}", "x".repeat(3_000_000), "y".repeat(100));
    assert!(
        text == expected,
        "the side file is the whole stream, its secret masked ({} bytes)",
        text.len()
    );
    // No temporary file is left next to it.
    for e in std::fs::read_dir(run_dir(&state).join("outputs")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(!name.starts_with('.'), "left behind: {name}");
    }

    let shown = Cli::new().state_dir(&state).args(["show", "last"]).run();
    shown
        .success()
        .stdout_contains(format!(
            "output:    {}",
            run_dir(&state).join(side).display()
        ))
        .stdout_contains(format!("(step `print` stdout, {total} bytes)"));
    let pm = Cli::new()
        .state_dir(&state)
        .args(["postmortem", "last"])
        .run();
    pm.success()
        .stdout_contains(format!("(all of it: `{side}` in the run folder)"));
}

/// Issue 13 follow-up: a shell step killed at its timeout after its output passed
/// the cap had streamed that output to a side file that no journal line named.
#[test]
fn a_shell_step_timed_out_after_the_cap_journals_its_side_file_and_leaves_no_unnamed_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = write_runbook(
        dir.path(),
        "  - action: Print then hang\n    id: hang\n    gate: auto\n    timeout: 3s\n    shell:\n      argv: [sh, -c, 'head -c 2000000 /dev/zero | tr \"\\\\0\" x; exec sleep 60']\n",
    );
    Cli::new()
        .state_dir(&state)
        .env("RUNBOOK_MAX_OUTPUT", "1M")
        .env("RUNBOOK_SECRET_TOKEN", SECRET)
        .args(["run", file.to_str().unwrap()])
        .run()
        .code(1);
    let ops = finished(&state);
    let (step, outcome, result, _) = &ops[0];
    assert_eq!((step.as_str(), *outcome), ("hang", Outcome::TimedOut));
    let result = result
        .as_ref()
        .expect("the timed-out step's result names what it streamed");
    assert_eq!(result["stdout_truncated"], true, "{result}");
    assert_eq!(result["stdout_bytes"], 2_000_000, "{result}");
    let side = result["stdout_file"].as_str().expect("stdout_file");
    let bytes = std::fs::read(run_dir(&state).join(side)).expect("the side file exists");
    assert_eq!(bytes, vec![b'x'; 2_000_000]);
    // Every file in the run's outputs is named by the journal.
    let journal = std::fs::read_to_string(run_dir(&state).join("journal.ndjson")).unwrap();
    for e in std::fs::read_dir(run_dir(&state).join("outputs")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(
            journal.contains(&format!("outputs/{name}")),
            "outputs/{name} is named by no journal line"
        );
    }
    Cli::new()
        .state_dir(&state)
        .args(["show", "last"])
        .run()
        .success()
        .stdout_contains("(step `hang` stdout, 2000000 bytes)");
}

#[test]
fn a_stream_past_the_spill_cap_keeps_its_first_bytes_on_disk_and_says_the_file_was_cut() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = write_runbook(
        dir.path(),
        "  - action: Print a lot\n    id: print\n    gate: auto\n    shell:\n      argv: [sh, -c, 'head -c 5000000 /dev/zero']\n",
    );
    Cli::new()
        .state_dir(&state)
        .env("RUNBOOK_MAX_OUTPUT", "64K")
        .env("RUNBOOK_MAX_SPILL", "2M")
        .env("RUNBOOK_SECRET_TOKEN", SECRET)
        .args(["run", file.to_str().unwrap()])
        .run()
        .success();
    let ops = finished(&state);
    let result = ops[0].2.as_ref().expect("a journaled result");
    assert_eq!(result["stdout_bytes"], 5_000_000);
    assert_eq!(result["stdout_file_truncated"], true, "{result}");
    assert_eq!(result["stdout_file_bytes"], 2 << 20);
    let side = result["stdout_file"].as_str().expect("stdout_file");
    let len = std::fs::metadata(run_dir(&state).join(side)).unwrap().len();
    assert_eq!(len, 2 << 20);
    Cli::new()
        .state_dir(&state)
        .args(["show", "last"])
        .run()
        .success()
        .stdout_contains("(cut at RUNBOOK_MAX_SPILL)");
}

/// A server answering every request with `body` (and a `Content-Length`), on a
/// thread; returns its base URL.
fn serve(body: Vec<u8>, content_type: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&body);
        }
    });
    url
}

#[test]
fn an_http_body_past_the_cap_is_kept_whole_in_a_side_file_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut body = vec![b'a'; 3_000_000];
    body.extend_from_slice(SECRET.as_bytes());
    body.extend_from_slice(b"end");
    let url = serve(body.clone(), "text/plain");
    let file = write_runbook(
        dir.path(),
        &format!("  - check: Fetch a large body\n    id: fetch\n    http:\n      url: {url}/big\n"),
    );
    Cli::new()
        .state_dir(&state)
        .env("RUNBOOK_MAX_OUTPUT", "1M")
        .env("RUNBOOK_SECRET_TOKEN", SECRET)
        .args(["run", file.to_str().unwrap()])
        .run()
        .success();
    let ops = finished(&state);
    assert_eq!(ops.len(), 2, "{ops:?}");
    let result = ops[0].2.as_ref().expect("a journaled result");
    assert_eq!(result["body_truncated"], true);
    assert_eq!(result["body_bytes"], body.len());
    let side = result["body_file"].as_str().expect("body_file");
    let kept = std::fs::read(run_dir(&state).join(side)).unwrap();
    let expected = [&body[..3_000_000], b"***end"].concat();
    assert!(
        kept == expected,
        "the whole body, masked ({} bytes)",
        kept.len()
    );
}

#[test]
fn a_prometheus_answer_past_the_cap_fails_the_step_naming_the_side_file_that_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let series: Vec<String> = (0..40_000)
        .map(|i| format!(r#"{{"metric":{{"pod":"hub-{i}"}},"value":[1700000000,"1"]}}"#))
        .collect();
    let answer = format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
        series.join(",")
    );
    let url = serve(answer.clone().into_bytes(), "application/json");
    let file = write_runbook(
        dir.path(),
        &format!(
            "  - check: Every pod\n    id: pods\n    on_failure: continue\n    prometheus:\n      server: {url}\n      query: up\n"
        ),
    );
    let out = Cli::new()
        .state_dir(&state)
        .env("RUNBOOK_MAX_OUTPUT", "512K")
        .env("RUNBOOK_SECRET_TOKEN", SECRET)
        .args(["run", file.to_str().unwrap()])
        .run();
    let ops = finished(&state);
    let (_, outcome, result, error) = &ops[0];
    assert_eq!(*outcome, Outcome::Failed, "{}", out.stderr);
    let error = error.as_deref().unwrap();
    let result = result
        .as_ref()
        .expect("the cut answer's fields are journaled");
    let side = result["body_file"].as_str().expect("body_file");
    assert!(
        error.contains(&format!(
            "the whole answer ({} bytes) is in {side} in the run folder",
            answer.len()
        )) && error.contains("RUNBOOK_MAX_OUTPUT"),
        "{error}"
    );
    let kept = std::fs::read(run_dir(&state).join(side)).unwrap();
    assert!(
        kept == answer.as_bytes(),
        "the whole answer ({} bytes)",
        kept.len()
    );
}
