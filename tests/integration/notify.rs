//! Issue 20, notifications: `notify:` in the runbook and `--notify URL` tell local
//! receivers (a small axum server in the test) that a run started, waits at a gate
//! (with its plan and blast radius) and ended; a receiver that fails is retried a
//! bounded number of times and then journaled; a receiver that hangs does not slow
//! the run; and no secret, in any encoding, reaches a payload.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runbook::journal::event::Event;
use serde_json::Value;

use crate::support::cli::Cli;

/// How the receiver answers.
#[derive(Clone, Copy)]
pub(crate) enum Answer {
    Ok,
    Status(u16),
    Hang,
}

/// A request the receiver got: its headers (lowercase names) and its body.
#[derive(Clone, Debug)]
pub(crate) struct Got {
    headers: Vec<(String, String)>,
    body: String,
    /// When it arrived (for latencies).
    pub(crate) at: std::time::SystemTime,
}

impl Got {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) struct Receiver {
    pub(crate) url: String,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Receiver {
    pub(crate) fn start(answer: Answer) -> Receiver {
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let store = Arc::clone(&got);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                tx.send(listener.local_addr().expect("an address"))
                    .expect("the test waits");
                let app = axum::Router::new().route(
                    "/{*path}",
                    axum::routing::post(
                        move |headers: axum::http::HeaderMap, body: String| async move {
                            store.lock().unwrap().push(Got {
                                headers: headers
                                    .iter()
                                    .map(|(k, v)| {
                                        (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())
                                    })
                                    .collect(),
                                body,
                                at: std::time::SystemTime::now(),
                            });
                            match answer {
                                Answer::Ok => axum::http::StatusCode::OK,
                                Answer::Status(s) => axum::http::StatusCode::from_u16(s).unwrap(),
                                Answer::Hang => std::future::pending().await,
                            }
                        },
                    ),
                );
                axum::serve(listener, app).await.expect("serve");
            });
        });
        let addr = rx.recv_timeout(Duration::from_secs(10)).expect("a port");
        Receiver {
            url: format!("http://{addr}/hook/some-token"),
            got,
        }
    }

    pub(crate) fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// The payloads' `on` fields, in order of arrival.
    fn ons(&self) -> Vec<String> {
        self.got()
            .iter()
            .map(|g| g.json()["on"].as_str().unwrap_or("?").to_owned())
            .collect()
    }
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn journal(state: &Path) -> Vec<Event> {
    crate::support::only_run_events(state)
}

fn notes_by_runbook(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Note { text, by, .. } if by == "runbook" => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn run_duration_ms(events: &[Event]) -> u64 {
    events
        .iter()
        .find_map(|e| match e {
            Event::RunFinished { duration_ms, .. } => Some(*duration_ms),
            _ => None,
        })
        .expect("run_finished")
}

const GATED: &str = r#"version: 1
name: notify-gate
title: Restart the hub after a check
params:
  target: { default: hub-1 }
steps:
  - check: Is the hub up
    id: look
    shell: { argv: [echo, "hub is down"] }
  - action: Restart the hub
    id: restart
    shell: { argv: [echo, "restarting {{params.target}}"] }
"#;

#[test]
fn a_webhook_and_a_slack_hook_hear_the_start_and_the_gate_wait_with_its_plan() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(Answer::Ok);
    let slack = Receiver::start(Answer::Ok);
    let rb = write(
        dir.path(),
        "rb.yaml",
        &format!(
            "{GATED}notify:\n  - url: {}\n    kind: slack\n    on: [waiting]\n    headers: {{ X-Team: ops }}\n",
            slack.url
        ),
    );
    // No terminal and no approval: the run waits at the gate (paused, exit 3).
    Cli::new()
        .state_dir(dir.path().join("state"))
        .args(["run", rb.to_str().unwrap(), "--notify", &hook.url])
        .run()
        .code(3);

    assert_eq!(hook.ons(), ["started", "waiting"], "a pause is not an end");
    let waiting = hook.got()[1].json();
    assert_eq!(waiting["status"], "waiting");
    assert_eq!(waiting["runbook"]["name"], "notify-gate");
    assert_eq!(waiting["step"]["id"], "restart");
    assert_eq!(waiting["step"]["title"], "Restart the hub");
    assert_eq!(
        waiting["gate"]["plan"][0]["display"],
        "echo 'restarting hub-1'"
    );
    assert_eq!(waiting["gate"]["blast_radius"]["mutating"], 1);
    assert!(
        waiting["approve_command"]
            .as_str()
            .unwrap()
            .ends_with("--approve restart"),
        "{waiting}"
    );
    assert_eq!(hook.got()[1].header("x-runbook-event"), Some("waiting"));

    let got = slack.got();
    assert_eq!(got.len(), 1, "slack asked only for `waiting`");
    let msg = got[0].json();
    assert!(
        msg["text"]
            .as_str()
            .unwrap()
            .contains("waits for approval of `restart`")
    );
    let blocks = msg["blocks"].as_array().unwrap();
    assert!(
        blocks[1]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("restarting hub-1"),
        "the plan is in the message: {msg}"
    );
    assert_eq!(got[0].header("x-team"), Some("ops"));

    // Resuming with the approval tells the webhook it resumed and finished.
    Cli::new()
        .state_dir(dir.path().join("state"))
        .args([
            "resume",
            "last",
            "--approve",
            "restart",
            "--notify",
            &hook.url,
        ])
        .run()
        .success();
    assert_eq!(hook.ons(), ["started", "waiting", "started", "finished"]);
    let finished = hook.got()[3].json();
    assert_eq!(finished["status"], "succeeded");
    assert!(notes_by_runbook(&journal(&dir.path().join("state"))).is_empty());
}

#[test]
fn a_failing_receiver_is_retried_a_bounded_number_of_times_then_journaled_and_the_run_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(Answer::Status(500));
    let rb = write(
        dir.path(),
        "rb.yaml",
        &format!(
            "{GATED}notify:\n  - url: {}\n    on: [finished]\n    retries: 2\n",
            hook.url
        ),
    );
    let state = dir.path().join("state");
    Cli::new()
        .state_dir(&state)
        .args(["run", rb.to_str().unwrap(), "--yes"])
        .run()
        .success();
    assert_eq!(
        hook.ons(),
        ["finished", "finished", "finished"],
        "1 + 2 retries"
    );
    let notes = notes_by_runbook(&journal(&state));
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("notification `finished`")
            && notes[0].contains("not delivered after 3 attempt(s): HTTP 500"),
        "{notes:?}"
    );
    // The receiver is named by host and port: its path holds a token.
    assert!(!notes[0].contains("some-token"), "{notes:?}");
    // A receiver answering 400 is not retried: the request itself is wrong.
    let bad = Receiver::start(Answer::Status(400));
    let state2 = dir.path().join("state2");
    Cli::new()
        .state_dir(&state2)
        .args(["run", rb.to_str().unwrap(), "--yes", "--notify", &bad.url])
        .run()
        .success();
    // `--yes` decides every gate at once: nobody waited, no `waiting` was sent.
    assert_eq!(bad.ons(), ["started", "finished"]);
    let notes = notes_by_runbook(&journal(&state2));
    assert_eq!(
        notes
            .iter()
            .filter(|n| n.contains("after 1 attempt(s): HTTP 400"))
            .count(),
        2,
        "{notes:?}"
    );
}

#[test]
fn a_hanging_receiver_does_not_slow_the_run_and_is_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(Answer::Hang);
    let steps: String = (0..5)
        .map(|i| format!("  - check: Step {i}\n    id: s{i}\n    shell: {{ argv: [\"true\"] }}\n"))
        .collect();
    let rb = write(
        dir.path(),
        "rb.yaml",
        &format!(
            "version: 1\nname: notify-hang\ntitle: Five quick checks\nnotify:\n  - url: {}\n    timeout: 2s\n    retries: 0\nsteps:\n{steps}",
            hook.url
        ),
    );
    let state = dir.path().join("state");
    let t0 = Instant::now();
    Cli::new()
        .state_dir(&state)
        .args(["run", rb.to_str().unwrap()])
        .run()
        .success();
    let elapsed = t0.elapsed();
    let events = journal(&state);
    // The `started` notification hangs for 2 s; the run does not wait for it.
    let ran = run_duration_ms(&events);
    assert!(ran < 1500, "the run took {ran} ms");
    // The process waits for its notifications at most the drain time (5 s).
    assert!(elapsed < Duration::from_secs(9), "exit after {elapsed:?}");
    let notes = notes_by_runbook(&events);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("`started`") && n.contains("no answer within 2")),
        "{notes:?}"
    );
    assert_eq!(hook.ons(), ["started", "finished"]);
}

#[test]
fn no_secret_reaches_any_notification_in_any_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(Answer::Ok);
    let slack = Receiver::start(Answer::Ok);
    let secret = "Zq7-hunter2 pass/word+x";
    let rb = write(
        dir.path(),
        "rb.yaml",
        &format!(
            r#"version: 1
name: notify-secret
title: A secret in every place a payload could take it from
params:
  token: {{ required: true, secret: true }}
notify:
  - url: {}
    kind: slack
  - url_env: HOOK_URL
    headers_env: {{ Authorization: HOOK_AUTH }}
steps:
  - check: Say the token
    id: say
    shell: {{ argv: [echo, "token={{{{params.token}}}}"] }}
    save: said
  - action: Use the token
    id: use
    shell: {{ argv: [echo, "{{{{params.token}}}}", "{{{{said.stdout}}}}"] }}
  - action: Fail with it
    id: fail
    shell: {{ argv: [sh, -c, 'echo "$0" >&2; exit 3', "{{{{params.token}}}}"] }}
"#,
            slack.url
        ),
    );
    let state = dir.path().join("state");
    Cli::new()
        .state_dir(&state)
        .env("RUNBOOK_SECRET_TOKEN", secret)
        .env("HOOK_URL", &hook.url)
        .env("HOOK_AUTH", "Bearer abc123")
        .args(["run", rb.to_str().unwrap(), "--approve", "use"])
        .run()
        .code(3);
    Cli::new()
        .state_dir(&state)
        .env("RUNBOOK_SECRET_TOKEN", secret)
        .env("HOOK_URL", &hook.url)
        .env("HOOK_AUTH", "Bearer abc123")
        .args(["resume", "last", "--yes"])
        .run()
        .failure();
    let got: Vec<Got> = hook.got().into_iter().chain(slack.got()).collect();
    let ons: Vec<String> = hook.ons();
    // `use` was approved on the command line (no wait); `fail` waited (paused).
    assert_eq!(ons, ["started", "waiting", "started", "failed"], "{ons:?}");
    assert_eq!(slack.got().len(), 4);
    assert_eq!(hook.got()[0].header("authorization"), Some("Bearer abc123"));
    // The gate's plan was sent, with the secret masked in it.
    assert!(hook.got()[1].body.contains("***"), "{}", hook.got()[1].body);
    for g in &got {
        for (form, value) in crate::secrets::forms(secret) {
            assert!(
                !g.body.contains(&value),
                "the secret's {form} form {value:?} is in a payload: {}",
                g.body
            );
        }
    }
}

#[test]
fn lint_refuses_a_bad_notification_url_and_an_unknown_event() {
    let dir = tempfile::tempdir().unwrap();
    let rb = write(
        dir.path(),
        "rb.yaml",
        "version: 1\nname: bad-notify\ntitle: Bad notify\nnotify:\n  - url: hooks.example.org/x\n    on: [waitng]\n  - kind: teams\n    url_env: X\nsteps:\n  - check: c\n    shell: { argv: [\"true\"] }\n",
    );
    Cli::new()
        .args(["lint", rb.to_str().unwrap()])
        .run()
        .code(1)
        .stdout_contains(
            "rb.yaml:5:10: error: the notification URL \"hooks.example.org/x\" is not usable",
        )
        .stdout_contains("rb.yaml:6:10: error: unknown notification event in `on` `waitng`")
        .stdout_contains("did you mean `waiting`?")
        .stdout_contains("unknown notification kind `teams`");
}
