//! `runbook serve` through the binary: Alertmanager webhooks start runs that wait at
//! their gate; approvals need a person (token, CSRF on the page); two racing
//! approvals make one decision; a restart finds the waiting run again.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::cli::BIN;

const RUNBOOK: &str = r#"version: 1
name: hub-down
title: The hub is down
triggers:
  - alert: { alertname: HubDown, namespace: prod }
params:
  namespace: { default: nowhere }
  dir: { default: "." }
params_from_alert:
  namespace: labels.namespace
steps:
  - check: Look at the hub
    id: look
    shell: { argv: [echo, "hub in {{params.namespace}}"] }
  - action: Restart the hub
    id: restart
    shell: { argv: [touch, restarted] }
"#;

pub const ANA: &str = "0123456789abcdef-ana";
pub const BOB: &str = "0123456789abcdef-bob";

/// A `runbook serve` child, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
    pub state: PathBuf,
    pub runbooks: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temp folder with the runbook, a token file (ana, bob) and a state dir.
pub fn world() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("runbooks")).unwrap();
    std::fs::write(dir.path().join("runbooks/hub-down.yaml"), RUNBOOK).unwrap();
    std::fs::write(
        dir.path().join("tokens"),
        format!("# people\nana:{ANA}\nbob:{BOB}\n"),
    )
    .unwrap();
    dir
}

pub fn serve(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
    let state = dir.join("state");
    let runbooks = dir.join("runbooks");
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .arg("--runbooks")
        .arg(&runbooks)
        .arg("--state-dir")
        .arg(&state)
        .args(extra)
        .env_remove("RUNBOOK_SERVE_TOKENS_FILE")
        .env_remove("RUNBOOK_SERVE_WEBHOOK_TOKEN")
        .env("RUST_LOG", "runbook=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if !extra.contains(&"--listen") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("runbook serve starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("listening on http://").nth(1) {
                let _ = tx.send(Ok(addr.trim().to_owned()));
            } else {
                let _ = tx.send(Err(line));
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Ok(addr)) => {
                return Server {
                    child,
                    addr,
                    state,
                    runbooks,
                };
            }
            Ok(Err(line)) => seen.push(line),
            Err(_) => {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("runbook serve exited ({status}):\n{}", seen.join("\n"));
                }
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "runbook serve did not listen within 60 s:\n{}",
        seen.join("\n")
    );
}

/// One HTTP/1.1 request; the status and the body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("the server accepts");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // A server may answer (413) before reading the whole body and close.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

pub fn post_json(addr: &str, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let (status, text) = http(addr, "POST", path, &headers, body.to_string().as_bytes());
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub fn get_json(addr: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let (status, text) = http(addr, "GET", path, &headers, b"");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub fn alert(group: &str, status: &str, labels: Value) -> Value {
    json!({
        "version": "4",
        "groupKey": group,
        "status": status,
        "receiver": "runbook",
        "groupLabels": {},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "truncatedAlerts": 0,
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": { "summary": "the hub answers 503" },
            "startsAt": "2026-03-13T01:02:03Z",
            "endsAt": if status == "resolved" { "2026-03-13T01:30:00Z" } else { "0001-01-01T00:00:00Z" },
            "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
            "fingerprint": "abc123"
        }]
    })
}

pub fn hub_down() -> Value {
    alert(
        "{}:{alertname=\"HubDown\"}",
        "firing",
        json!({"alertname": "HubDown", "namespace": "prod"}),
    )
}

pub fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn events(state: &Path, run_id: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(state.join("runs").join(run_id).join("journal.ndjson"))
        .unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

/// Wait until the run waits at the gate of `step`; its plan digest.
pub fn waiting_gate(s: &Server, run_id: &str, step: &str) -> String {
    wait_until(&format!("run {run_id} waits at the gate of {step}"), || {
        let (_, v) = get_json(&s.addr, &format!("/api/v1/runs/{run_id}"), Some(ANA));
        let w = &v["run"]["waiting"];
        (w["kind"] == "gate" && w["step"] == step).then(|| w["digest"].as_str().unwrap().to_owned())
    })
}

fn runs_in(state: &Path) -> usize {
    std::fs::read_dir(state.join("runs")).map_or(0, |d| d.count())
}

fn tokens_flag(dir: &Path) -> String {
    dir.join("tokens").display().to_string()
}

fn started(resp: &(u16, Value)) -> String {
    assert_eq!(resp.0, 202, "{}", resp.1);
    resp.1["run_id"].as_str().unwrap().to_owned()
}

#[test]
fn an_alert_group_starts_one_run_that_runs_its_checks_and_waits_at_the_gate() {
    let dir = world();
    let s = serve(
        dir.path(),
        &["--tokens-file", &tokens_flag(dir.path())],
        &[],
    );
    let run_id = started(&post_json(
        &s.addr,
        "/api/v1/alerts/alertmanager",
        None,
        &hub_down(),
    ));
    waiting_gate(&s, &run_id, "restart");
    let ev = events(&s.state, &run_id);
    assert_eq!(
        of_kind(&ev, "run_started")[0]["params"]["namespace"],
        "prod",
        "params_from_alert"
    );
    assert_eq!(
        of_kind(&ev, "incident_start")[0]["at"],
        "2026-03-13T01:02:03Z"
    );
    assert_eq!(
        of_kind(&ev, "incident_start")[0]["source"],
        "alert",
        "the postmortem says the impact start is the alert's startsAt"
    );
    let look = of_kind(&ev, "step_finished");
    assert_eq!(look.len(), 1, "the check ran and nothing else: {ev:?}");
    assert_eq!(look[0]["step"], "look");
    assert!(
        of_kind(&ev, "gate_decided").is_empty(),
        "a run from an alert never approves by itself"
    );
    assert!(!s.runbooks.join("restarted").exists());

    // Alertmanager sends the same group again (group_interval, repeat_interval).
    let again = post_json(&s.addr, "/api/v1/alerts/alertmanager", None, &hub_down());
    assert_eq!(again.0, 200, "{}", again.1);
    assert_eq!(again.1["run_id"], run_id.as_str());
    assert_eq!(again.1["duplicate"], true);
    assert_eq!(runs_in(&s.state), 1, "a re-sent group starts no second run");

    // It resolves: a note in the same run.
    let resolved = alert(
        "{}:{alertname=\"HubDown\"}",
        "resolved",
        json!({"alertname": "HubDown", "namespace": "prod"}),
    );
    let r = post_json(&s.addr, "/api/v1/alerts/alertmanager", None, &resolved);
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(runs_in(&s.state), 1);
    let notes = of_kind(&events(&s.state, &run_id), "note")
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert!(
        notes.iter().any(|n| n["by"] == "alertmanager"
            && n["text"]
                .as_str()
                .unwrap()
                .contains("HubDown resolved at 2026-03-13T01:30:00Z")),
        "{notes:?}"
    );

    // Approved with a person's token: journaled with their name, and the action runs.
    let digest = waiting_gate(&s, &run_id, "restart");
    let body = json!({"step": "restart", "digest": digest, "decision": "approve"});
    let a = post_json(
        &s.addr,
        &format!("/api/v1/runs/{run_id}/decision"),
        Some(BOB),
        &body,
    );
    assert_eq!(a.0, 200, "{}", a.1);
    wait_until("the run succeeds", || {
        of_kind(&events(&s.state, &run_id), "run_finished")
            .first()
            .map(|e| e["status"].clone())
    });
    let ev = events(&s.state, &run_id);
    let d = of_kind(&ev, "gate_decided");
    assert_eq!(
        (d[0]["by"].as_str(), d[0]["source"].as_str()),
        (Some("bob"), Some("remote"))
    );
    assert_eq!(of_kind(&ev, "run_finished")[0]["status"], "succeeded");
    assert!(s.runbooks.join("restarted").exists());
}

#[test]
fn an_alert_no_runbook_answers_is_answered_200_and_starts_nothing() {
    let dir = world();
    let s = serve(dir.path(), &[], &[]);
    let other = alert(
        "g2",
        "firing",
        json!({"alertname": "DiskFull", "namespace": "prod"}),
    );
    let r = post_json(&s.addr, "/api/v1/alerts/alertmanager", None, &other);
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["started"], false);
    // Labels that match only part of the trigger do not start it either.
    let staging = alert(
        "g3",
        "firing",
        json!({"alertname": "HubDown", "namespace": "staging"}),
    );
    assert_eq!(
        post_json(&s.addr, "/api/v1/alerts/alertmanager", None, &staging).1["started"],
        false
    );
    assert_eq!(runs_in(&s.state), 0);
}

#[test]
fn an_alert_finds_its_runbook_by_the_runbook_url_annotation() {
    let dir = world();
    let s = serve(dir.path(), &[], &[]);
    let mut a = alert("g4", "firing", json!({"alertname": "SomethingElse"}));
    a["alerts"][0]["annotations"]["runbook_url"] =
        json!("https://git.example.org/ops/runbooks/blob/main/hub-down.yaml");
    let run_id = started(&post_json(&s.addr, "/api/v1/alerts/alertmanager", None, &a));
    // The alert's note follows run_started (the answer comes once the run started).
    wait_until("the alert's note names how the runbook was found", || {
        of_kind(&events(&s.state, &run_id), "note")
            .iter()
            .any(|n| {
                n["text"]
                    .as_str()
                    .unwrap()
                    .contains("runbook found by runbook_url")
            })
            .then_some(())
    });
}

#[test]
fn malformed_and_oversized_payloads_are_refused_and_start_nothing() {
    let dir = world();
    let s = serve(dir.path(), &["--max-body", "4096"], &[]);
    let path = "/api/v1/alerts/alertmanager";
    let (status, body) = http(
        &s.addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        b"{\"version\": \"4\", ",
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("not an Alertmanager webhook payload"),
        "{body}"
    );
    let mut v3 = hub_down();
    v3["version"] = json!("3");
    let r = post_json(&s.addr, path, None, &v3);
    assert_eq!(r.0, 400, "{}", r.1);
    let mut big = hub_down();
    big["alerts"][0]["annotations"]["description"] = json!("x".repeat(10_000));
    let r = post_json(&s.addr, path, None, &big);
    assert_eq!(r.0, 413, "{}", r.1);
    assert_eq!(runs_in(&s.state), 0);
}

#[test]
fn the_webhook_needs_its_bearer_token_when_one_is_configured() {
    let dir = world();
    let s = serve(
        dir.path(),
        &[],
        &[("RUNBOOK_SERVE_WEBHOOK_TOKEN", "am-secret-token-123")],
    );
    let path = "/api/v1/alerts/alertmanager";
    assert_eq!(post_json(&s.addr, path, None, &hub_down()).0, 401);
    assert_eq!(post_json(&s.addr, path, Some("wrong"), &hub_down()).0, 401);
    assert_eq!(runs_in(&s.state), 0);
    started(&post_json(
        &s.addr,
        path,
        Some("am-secret-token-123"),
        &hub_down(),
    ));
}

#[test]
fn unauthenticated_and_cross_site_approvals_are_refused_and_journaled_nowhere() {
    let dir = world();
    let s = serve(
        dir.path(),
        &["--tokens-file", &tokens_flag(dir.path())],
        &[],
    );
    let run_id = started(&post_json(
        &s.addr,
        "/api/v1/alerts/alertmanager",
        None,
        &hub_down(),
    ));
    let digest = waiting_gate(&s, &run_id, "restart");
    let api = format!("/api/v1/runs/{run_id}/decision");
    let body = json!({"step": "restart", "digest": digest, "decision": "approve"});
    assert_eq!(post_json(&s.addr, &api, None, &body).0, 401, "no token");
    assert_eq!(
        post_json(&s.addr, &api, Some("not-a-token-000000"), &body).0,
        401,
        "unknown token"
    );

    // The page's form: a logged-in browser (cookie) needs the CSRF token.
    let page = format!("/runs/{run_id}/decision");
    let cookie = format!("runbook_token={ANA}");
    let form = |csrf: &str| format!("csrf={csrf}&step=restart&digest={digest}&decision=approve");
    let ct = ("Content-Type", "application/x-www-form-urlencoded");
    let (st, _) = http(
        &s.addr,
        "POST",
        &page,
        &[ct, ("Cookie", &cookie)],
        form("").as_bytes(),
    );
    assert_eq!(st, 403, "a form without the CSRF token");
    let (st, _) = http(
        &s.addr,
        "POST",
        &page,
        &[ct, ("Cookie", &cookie)],
        form("0000").as_bytes(),
    );
    assert_eq!(st, 403, "a wrong CSRF token");
    let (st, html) = http(
        &s.addr,
        "GET",
        &format!("/runs/{run_id}"),
        &[("Cookie", &cookie)],
        b"",
    );
    assert_eq!(st, 200);
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the page has a CSRF field")
        .to_owned();
    assert!(
        html.contains("Approve") && html.contains("touch restarted"),
        "the plan is on the page"
    );
    let evil = [ct, ("Cookie", &cookie), ("Origin", "https://evil.example")];
    let (st, _) = http(&s.addr, "POST", &page, &evil, form(&csrf).as_bytes());
    assert_eq!(st, 403, "a cross-site post with a (leaked) CSRF token");
    assert_eq!(post_json(&s.addr, &api, None, &body).0, 401);
    std::thread::sleep(Duration::from_millis(200));
    let ev = events(&s.state, &run_id);
    assert!(
        of_kind(&ev, "gate_decided").is_empty(),
        "refused attempts are journaled nowhere: {ev:?}"
    );
    assert!(!s.runbooks.join("restarted").exists());

    // The same form with the CSRF token, same-site: ana approves.
    let ok = [
        ct,
        ("Cookie", &cookie),
        ("Origin", &format!("http://{}", s.addr)),
    ];
    let (st, _) = http(&s.addr, "POST", &page, &ok, form(&csrf).as_bytes());
    assert_eq!(st, 303, "redirect back to the run");
    let d = wait_until("the gate is decided", || {
        of_kind(&events(&s.state, &run_id), "gate_decided")
            .first()
            .map(|d| (*d).clone())
    });
    assert_eq!(d["by"], "ana");
}

/// The CSRF token the run page gives the person whose token is in the cookie.
fn csrf_of(s: &Server, run_id: &str, token: &str) -> String {
    let (st, html) = http(
        &s.addr,
        "GET",
        &format!("/runs/{run_id}"),
        &[("Cookie", &format!("runbook_token={token}"))],
        b"",
    );
    assert_eq!(st, 200, "{html}");
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the page has a CSRF field")
        .to_owned()
}

#[test]
fn a_gate_is_skipped_or_declined_from_the_page_with_csrf_and_journaled_with_who() {
    let dir = world();
    let s = serve(
        dir.path(),
        &["--tokens-file", &tokens_flag(dir.path())],
        &[],
    );
    let labels = json!({"alertname": "HubDown", "namespace": "prod"});
    let skipped = started(&post_json(
        &s.addr,
        "/api/v1/alerts/alertmanager",
        None,
        &alert("group-1", "firing", labels.clone()),
    ));
    let declined = started(&post_json(
        &s.addr,
        "/api/v1/alerts/alertmanager",
        None,
        &alert("group-2", "firing", labels),
    ));
    let ct = ("Content-Type", "application/x-www-form-urlencoded");
    let origin = format!("http://{}", s.addr);

    // Bob skips the first run's gate: the page offers it; without the CSRF token
    // the form is refused and nothing is journaled.
    let digest = waiting_gate(&s, &skipped, "restart");
    let (_, html) = http(
        &s.addr,
        "GET",
        &format!("/runs/{skipped}"),
        &[("Cookie", &format!("runbook_token={BOB}"))],
        b"",
    );
    assert!(
        html.contains("value=\"skip\">Skip this step</button>"),
        "the page offers Skip at the gate: {html}"
    );
    let bob = format!("runbook_token={BOB}");
    let form = |csrf: &str, decision: &str| {
        format!("csrf={csrf}&step=restart&digest={digest}&decision={decision}")
    };
    let page = format!("/runs/{skipped}/decision");
    let (st, _) = http(
        &s.addr,
        "POST",
        &page,
        &[ct, ("Cookie", &bob), ("Origin", &origin)],
        form("", "skip").as_bytes(),
    );
    assert_eq!(st, 403, "a skip without the CSRF token");
    std::thread::sleep(Duration::from_millis(200));
    assert!(of_kind(&events(&s.state, &skipped), "gate_decided").is_empty());
    let csrf = csrf_of(&s, &skipped, BOB);
    let (st, _) = http(
        &s.addr,
        "POST",
        &page,
        &[ct, ("Cookie", &bob), ("Origin", &origin)],
        form(&csrf, "skip").as_bytes(),
    );
    assert_eq!(st, 303, "back to the run page");
    let status = wait_until("the skipped run ends", || {
        of_kind(&events(&s.state, &skipped), "run_finished")
            .first()
            .map(|e| e["status"].clone())
    });
    assert_eq!(status, "succeeded", "a skipped step does not fail the run");
    let ev = events(&s.state, &skipped);
    let d = of_kind(&ev, "gate_decided");
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        (
            d[0]["decision"].as_str(),
            d[0]["by"].as_str(),
            d[0]["source"].as_str()
        ),
        (Some("skipped"), Some("bob"), Some("remote"))
    );
    assert_eq!(d[0]["digest"], digest.as_str());
    assert!(
        !of_kind(&ev, "step_skipped").is_empty(),
        "the step is journaled skipped: {ev:?}"
    );
    assert!(
        !s.runbooks.join("restarted").exists(),
        "a skipped step runs nothing"
    );

    // Ana declines the second run's plan: the run ends aborted, naming her.
    let digest = waiting_gate(&s, &declined, "restart");
    let ana = format!("runbook_token={ANA}");
    let csrf = csrf_of(&s, &declined, ANA);
    let (st, _) = http(
        &s.addr,
        "POST",
        &format!("/runs/{declined}/decision"),
        &[ct, ("Cookie", &ana), ("Origin", &origin)],
        format!("csrf={csrf}&step=restart&digest={digest}&decision=decline").as_bytes(),
    );
    assert_eq!(st, 303);
    let status = wait_until("the declined run ends", || {
        of_kind(&events(&s.state, &declined), "run_finished")
            .first()
            .map(|e| e["status"].clone())
    });
    assert_eq!(status, "aborted");
    let ev = events(&s.state, &declined);
    let d = of_kind(&ev, "gate_decided");
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        (
            d[0]["decision"].as_str(),
            d[0]["by"].as_str(),
            d[0]["source"].as_str()
        ),
        (Some("declined"), Some("ana"), Some("remote"))
    );
    assert!(!s.runbooks.join("restarted").exists());
}

#[test]
fn two_approvals_racing_for_one_gate_make_exactly_one_decision() {
    let dir = world();
    let s = serve(
        dir.path(),
        &["--tokens-file", &tokens_flag(dir.path())],
        &[],
    );
    let run_id = started(&post_json(
        &s.addr,
        "/api/v1/alerts/alertmanager",
        None,
        &hub_down(),
    ));
    let digest = waiting_gate(&s, &run_id, "restart");
    let api = format!("/api/v1/runs/{run_id}/decision");
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let handles: Vec<_> = [ANA, BOB]
        .into_iter()
        .map(|token| {
            let (addr, api, digest, barrier) =
                (s.addr.clone(), api.clone(), digest.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let body = json!({"step": "restart", "digest": digest, "decision": "approve"});
                post_json(&addr, &api, Some(token), &body).0
            })
        })
        .collect();
    let mut codes: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    codes.sort_unstable();
    assert_eq!(codes, vec![200, 409]);
    wait_until("the run ends", || {
        of_kind(&events(&s.state, &run_id), "run_finished")
            .first()
            .map(|_| ())
    });
    assert_eq!(of_kind(&events(&s.state, &run_id), "gate_decided").len(), 1);
}

#[test]
fn a_decision_for_another_plan_is_refused() {
    let dir = world();
    let s = serve(
        dir.path(),
        &["--tokens-file", &tokens_flag(dir.path())],
        &[],
    );
    let run_id = started(&post_json(
        &s.addr,
        "/api/v1/alerts/alertmanager",
        None,
        &hub_down(),
    ));
    waiting_gate(&s, &run_id, "restart");
    let body = json!({"step": "restart", "digest": "0".repeat(64), "decision": "approve"});
    let r = post_json(
        &s.addr,
        &format!("/api/v1/runs/{run_id}/decision"),
        Some(ANA),
        &body,
    );
    assert_eq!(r.0, 409, "{}", r.1);
    assert!(
        r.1["error"].as_str().unwrap().contains("reload the page"),
        "{}",
        r.1
    );
}

#[test]
fn people_are_told_when_a_run_from_an_alert_waits_with_a_link_to_approve_it() {
    use crate::notify::{Answer, Receiver};
    let dir = world();
    let hook = Receiver::start(Answer::Ok);
    let s = serve(
        dir.path(),
        &[
            "--tokens-file",
            &tokens_flag(dir.path()),
            "--notify",
            &hook.url,
        ],
        &[],
    );
    let run_id = started(&post_json(
        &s.addr,
        "/api/v1/alerts/alertmanager",
        None,
        &hub_down(),
    ));
    let digest = waiting_gate(&s, &run_id, "restart");
    let waiting = wait_until("the waiting notification", || {
        hook.got()
            .into_iter()
            .map(|g| g.json())
            .find(|v| v["on"] == "waiting")
    });
    assert_eq!(waiting["run_id"], run_id.as_str(), "{waiting}");
    assert_eq!(waiting["step"]["id"], "restart", "{waiting}");
    assert_eq!(
        waiting["gate"]["plan"][0]["display"], "touch restarted",
        "the plan is in the notification: {waiting}"
    );
    assert_eq!(
        waiting["links"]["approve"],
        format!("http://{}/runs/{run_id}", s.addr).as_str(),
        "the link opens this server's run page: {waiting}"
    );
    let a = post_json(
        &s.addr,
        &format!("/api/v1/runs/{run_id}/decision"),
        Some(ANA),
        &json!({"step": "restart", "digest": digest, "decision": "approve"}),
    );
    assert_eq!(a.0, 200, "{}", a.1);
    let finished = wait_until("the finished notification", || {
        hook.got()
            .into_iter()
            .map(|g| g.json())
            .find(|v| v["on"] == "finished")
    });
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert_eq!(
        finished["links"]["postmortem"],
        format!("http://{}/runs/{run_id}/postmortem", s.addr).as_str(),
        "{finished}"
    );
}

#[test]
fn a_run_waiting_at_a_gate_waits_again_after_the_server_restarts() {
    let dir = world();
    let args = ["--tokens-file".to_owned(), tokens_flag(dir.path())];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = serve(dir.path(), &args, &[]);
    let run_id = started(&post_json(
        &first.addr,
        "/api/v1/alerts/alertmanager",
        None,
        &hub_down(),
    ));
    let digest = waiting_gate(&first, &run_id, "restart");
    drop(first); // SIGKILL: the run is left waiting in the journal
    let s = serve(dir.path(), &args, &[]);
    assert_eq!(waiting_gate(&s, &run_id, "restart"), digest);
    // The group is remembered: a re-send after the restart starts nothing new.
    let again = post_json(&s.addr, "/api/v1/alerts/alertmanager", None, &hub_down());
    assert_eq!(again.1["run_id"], run_id.as_str(), "{}", again.1);
    let body = json!({"step": "restart", "digest": digest, "decision": "approve"});
    let a = post_json(
        &s.addr,
        &format!("/api/v1/runs/{run_id}/decision"),
        Some(ANA),
        &body,
    );
    assert_eq!(a.0, 200, "{}", a.1);
    let status = wait_until("the run ends", || {
        of_kind(&events(&s.state, &run_id), "run_finished")
            .last()
            .map(|e| e["status"].clone())
    });
    assert_eq!(status, "succeeded");
    assert_eq!(runs_in(&s.state), 1);
}

#[test]
fn a_non_loopback_address_needs_authentication() {
    let dir = world();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0", "--runbooks"])
        .arg(dir.path().join("runbooks"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env_remove("RUNBOOK_SERVE_TOKENS_FILE")
        .env_remove("RUNBOOK_SERVE_WEBHOOK_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to listen on 0.0.0.0:0"), "{err}");
}

#[test]
fn notes_abort_and_starts_go_through_the_api_with_a_person() {
    let dir = world();
    let s = serve(
        dir.path(),
        &["--tokens-file", &tokens_flag(dir.path())],
        &[],
    );
    let r = post_json(
        &s.addr,
        "/api/v1/runs",
        Some(ANA),
        &json!({"runbook": "hub-down", "params": {"namespace": "qa"}}),
    );
    assert_eq!(r.0, 201, "{}", r.1);
    let run_id = r.1["run_id"].as_str().unwrap().to_owned();
    waiting_gate(&s, &run_id, "restart");
    let n = post_json(
        &s.addr,
        &format!("/api/v1/runs/{run_id}/note"),
        Some(BOB),
        &json!({"text": "looking at the LB"}),
    );
    assert_eq!(n.0, 200, "{}", n.1);
    let a = post_json(
        &s.addr,
        &format!("/api/v1/runs/{run_id}/abort"),
        Some(BOB),
        &json!({}),
    );
    assert_eq!(a.0, 200, "{}", a.1);
    let status = wait_until("the run ends", || {
        of_kind(&events(&s.state, &run_id), "run_finished")
            .first()
            .map(|e| e["status"].clone())
    });
    assert_eq!(status, "aborted");
    let ev = events(&s.state, &run_id);
    assert_eq!(of_kind(&ev, "run_started")[0]["operator"], "ana");
    assert!(
        of_kind(&ev, "note")
            .iter()
            .any(|n| n["by"] == "bob" && n["text"] == "looking at the LB")
    );
    assert!(
        of_kind(&ev, "note")
            .iter()
            .any(|n| n["by"] == "bob" && n["text"] == "abort requested by bob on runbook serve")
    );
    assert!(
        of_kind(&ev, "gate_decided").is_empty(),
        "an abort approves nothing"
    );
    assert!(!s.runbooks.join("restarted").exists());
    // Nobody without a token reads the runs when tokens are configured.
    assert_eq!(get_json(&s.addr, "/api/v1/runs", None).0, 401);
}

#[test]
fn the_run_page_streams_the_timeline_as_it_happens() {
    let dir = world();
    let s = serve(
        dir.path(),
        &["--tokens-file", &tokens_flag(dir.path())],
        &[],
    );
    let run_id = started(&post_json(
        &s.addr,
        "/api/v1/alerts/alertmanager",
        None,
        &hub_down(),
    ));
    let digest = waiting_gate(&s, &run_id, "restart");
    let mut sse = TcpStream::connect(&s.addr).unwrap();
    sse.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        sse,
        "GET /runs/{run_id}/events HTTP/1.1\r\nHost: {}\r\nCookie: runbook_token={ANA}\r\n\r\n",
        s.addr
    )
    .unwrap();
    // The stream is open once its headers arrived.
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains("\r\n\r\n") {
        let n = sse.read(&mut buf).unwrap();
        assert!(n > 0, "the stream closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("text/event-stream"), "{seen}");
    let body = json!({"step": "restart", "digest": digest, "decision": "approve"});
    assert_eq!(
        post_json(
            &s.addr,
            &format!("/api/v1/runs/{run_id}/decision"),
            Some(ANA),
            &body
        )
        .0,
        200
    );
    while !seen.contains("run succeeded") {
        let n = sse
            .read(&mut buf)
            .expect("the stream goes on until the run ends");
        assert!(n > 0, "the stream closed before the run ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        seen.contains("`restart`: approved by ana (remote)"),
        "{seen}"
    );
    assert!(
        seen.contains("\"reload\":true"),
        "a decided gate reloads the page: {seen}"
    );
}

#[test]
fn show_note_and_abort_talk_to_a_server_with_the_persons_token() {
    let dir = world();
    let s = serve(
        dir.path(),
        &["--tokens-file", &tokens_flag(dir.path())],
        &[],
    );
    let run_id = started(&post_json(
        &s.addr,
        "/api/v1/alerts/alertmanager",
        None,
        &hub_down(),
    ));
    waiting_gate(&s, &run_id, "restart");
    let url = format!("http://{}", s.addr);
    let cli = |args: &[&str], token: Option<&str>| {
        let mut c = Command::new(BIN);
        c.args(args)
            .args(["--server", &url])
            .env_remove("RUNBOOK_TOKEN");
        if let Some(t) = token {
            c.env("RUNBOOK_TOKEN", t);
        }
        c.output().unwrap()
    };
    let out = cli(&["show", &run_id], Some(ANA));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("waits at:  gate `restart`") && text.contains("touch restarted"),
        "{text}"
    );
    let out = cli(&["note", &run_id, "from the CLI"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RUNBOOK_TOKEN"));
    assert!(
        cli(&["note", &run_id, "from the CLI"], Some(BOB))
            .status
            .success()
    );
    assert!(cli(&["abort", &run_id], Some(ANA)).status.success());
    let status = wait_until("the run ends", || {
        of_kind(&events(&s.state, &run_id), "run_finished")
            .first()
            .map(|e| e["status"].clone())
    });
    assert_eq!(status, "aborted");
    let ev = events(&s.state, &run_id);
    assert!(
        of_kind(&ev, "note")
            .iter()
            .any(|n| n["by"] == "bob" && n["text"] == "from the CLI")
    );
    assert!(
        of_kind(&ev, "note")
            .iter()
            .any(|n| n["text"] == "abort requested by ana on runbook serve")
    );
}

#[test]
fn runbook_approve_with_server_decides_as_the_token_s_person() {
    let dir = world();
    let s = serve(
        dir.path(),
        &["--tokens-file", &tokens_flag(dir.path())],
        &[],
    );
    let run_id = started(&post_json(
        &s.addr,
        "/api/v1/alerts/alertmanager",
        None,
        &hub_down(),
    ));
    waiting_gate(&s, &run_id, "restart");
    let out = Command::new(BIN)
        .args([
            "approve",
            &run_id,
            "restart",
            "--server",
            &format!("http://{}", s.addr),
        ])
        .env("RUNBOOK_TOKEN", BOB)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = wait_until("the run ends", || {
        of_kind(&events(&s.state, &run_id), "run_finished")
            .first()
            .map(|e| e["status"].clone())
    });
    assert_eq!(status, "succeeded");
    let ev = events(&s.state, &run_id);
    let d = of_kind(&ev, "gate_decided");
    assert_eq!(
        (d[0]["by"].as_str(), d[0]["source"].as_str()),
        (Some("bob"), Some("remote"))
    );
}

/// A free TCP port on 127.0.0.1 (bound, then released for the child to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
#[ignore = "needs prometheus-alertmanager (Debian package prometheus-alertmanager)"]
fn a_real_alertmanager_starts_one_run_through_the_webhook() {
    let dir = world();
    let token = "am-token-0123456789";
    std::fs::write(dir.path().join("am-token"), token).unwrap();
    let s = serve(
        dir.path(),
        &["--tokens-file", &tokens_flag(dir.path())],
        &[("RUNBOOK_SERVE_WEBHOOK_TOKEN", token)],
    );
    let port = free_port();
    let config = format!(
        "route: {{ receiver: runbook, group_by: [alertname], group_wait: 1s, group_interval: 1s, repeat_interval: 1h }}\n\
receivers:\n  - name: runbook\n    webhook_configs:\n      - url: http://{}/api/v1/alerts/alertmanager\n        send_resolved: true\n        http_config: {{ authorization: {{ type: Bearer, credentials_file: {} }} }}\n",
        s.addr,
        dir.path().join("am-token").display()
    );
    std::fs::write(dir.path().join("am.yml"), config).unwrap();
    let mut am = Command::new("prometheus-alertmanager")
        .arg(format!(
            "--config.file={}",
            dir.path().join("am.yml").display()
        ))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("am-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-alertmanager starts");
    let am_addr = format!("127.0.0.1:{port}");
    let result = std::panic::catch_unwind(|| {
        wait_until("Alertmanager is ready", || {
            TcpStream::connect(&am_addr)
                .ok()
                .and_then(|_| (http(&am_addr, "GET", "/-/ready", &[], b"").0 == 200).then_some(()))
        });
        let starts = (chrono::Utc::now() - chrono::Duration::minutes(5))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let alerts = json!([{
            "labels": { "alertname": "HubDown", "namespace": "prod" },
            "annotations": { "summary": "the hub answers 503" },
            "startsAt": starts,
        }]);
        let post = || {
            let (st, body) = http(
                &am_addr,
                "POST",
                "/api/v2/alerts",
                &[("Content-Type", "application/json")],
                alerts.to_string().as_bytes(),
            );
            assert_eq!(st, 200, "{body}");
        };
        post();
        let run_id = wait_until("Alertmanager's webhook started a run", || {
            std::fs::read_dir(s.state.join("runs"))
                .ok()?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .next()
        });
        waiting_gate(&s, &run_id, "restart");
        let ev = events(&s.state, &run_id);
        assert_eq!(
            of_kind(&ev, "incident_start")[0]["at"].as_str().unwrap()[..19],
            starts[..19]
        );
        // Alertmanager re-sends the group (group_interval 1 s): still one run.
        post();
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(runs_in(&s.state), 1);
    });
    let _ = am.kill();
    let _ = am.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// `serve -p NAME=VALUE`: every run the server starts gets the param if its runbook
/// declares it (a param no runbook declares is ignored, not an error); the alert's
/// `params_from_alert:` and an API start's params win over it.
#[test]
fn server_params_reach_every_run_and_the_alert_and_the_api_win_over_them() {
    let dir = world();
    let s = serve(
        dir.path(),
        &[
            "--tokens-file",
            &tokens_flag(dir.path()),
            "-p",
            "dir=/srv/hub",
            "--param",
            "namespace=from-server",
            "-p",
            "prometheus=http://prometheus:9090",
        ],
        &[],
    );
    let params =
        |run_id: &str| of_kind(&events(&s.state, run_id), "run_started")[0]["params"].clone();
    let by_alert = started(&post_json(
        &s.addr,
        "/api/v1/alerts/alertmanager",
        None,
        &hub_down(),
    ));
    waiting_gate(&s, &by_alert, "restart");
    assert_eq!(
        params(&by_alert),
        json!({"dir": "/srv/hub", "namespace": "prod"}),
        "the alert's label wins; the server's dir is taken; prometheus is not this runbook's"
    );
    let r = post_json(
        &s.addr,
        "/api/v1/runs",
        Some(ANA),
        &json!({"runbook": "hub-down", "params": {"dir": "/tmp"}}),
    );
    assert_eq!(r.0, 201, "{}", r.1);
    let by_api = r.1["run_id"].as_str().unwrap().to_owned();
    waiting_gate(&s, &by_api, "restart");
    assert_eq!(
        params(&by_api),
        json!({"dir": "/tmp", "namespace": "from-server"})
    );
}

#[test]
fn a_server_param_without_a_value_is_refused_at_start() {
    let dir = world();
    let out = Command::new(BIN)
        .args(["serve", "--runbooks"])
        .arg(dir.path().join("runbooks"))
        .args(["--listen", "127.0.0.1:0", "-p", "prometheus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`--param prometheus`: write a parameter as name=value"),
        "{err}"
    );
}

/// A ladder's rung waits at its own gate: approving it by the step's name (what the
/// run page's form sends) decides that rung, once.
#[test]
fn a_ladder_rung_is_approved_by_naming_its_step() {
    let dir = world();
    std::fs::write(
        dir.path().join("runbooks/ladder.yaml"),
        r#"version: 1
name: ladder
title: A ladder of one rung
steps:
  - action: Fix it
    id: fix
    escalate:
      - id: gentle
        title: The gentle way
        shell: { argv: [touch, gentle] }
        within: 5s
    verify:
      shell: { argv: ["true"] }
      within: 5s
      every: 1s
"#,
    )
    .unwrap();
    let s = serve(
        dir.path(),
        &["--tokens-file", &tokens_flag(dir.path())],
        &[],
    );
    let r = post_json(
        &s.addr,
        "/api/v1/runs",
        Some(ANA),
        &json!({"runbook": "ladder"}),
    );
    assert_eq!(r.0, 201, "{}", r.1);
    let run_id = r.1["run_id"].as_str().unwrap().to_owned();
    let digest = waiting_gate(&s, &run_id, "fix");
    let d = post_json(
        &s.addr,
        &format!("/api/v1/runs/{run_id}/decision"),
        Some(ANA),
        &json!({"step": "fix", "digest": digest, "decision": "approve"}),
    );
    assert_eq!(d.0, 200, "{}", d.1);
    let status = wait_until("the run ends", || {
        of_kind(&events(&s.state, &run_id), "run_finished")
            .first()
            .map(|e| e["status"].clone())
    });
    assert_eq!(status, "succeeded");
    let ev = events(&s.state, &run_id);
    let decided = of_kind(&ev, "gate_decided");
    assert_eq!(decided.len(), 1, "{decided:?}");
    assert_eq!(decided[0]["rung"], "gentle");
    assert_eq!(decided[0]["by"], "ana");
}
