//! Issue 20 end to end, with real tools: the lab loaded with the seed scenario exposes
//! its metrics; a real Prometheus fires the seed's alert rule (`HubLaunchesFailing`,
//! launch success rate below 1); a real Alertmanager sends its version-4 webhook (with
//! its bearer token) to `runbook serve`; the run starts, runs its check and waits at
//! its gate; a webhook receiver is told, with the plan; a person logs in to the run page
//! in a real headless Chromium (driven over WebDriver) and clicks Approve; the run goes
//! on and the page, which nobody reloads, follows it to `succeeded` over server-sent
//! events; the postmortem takes the alert's start as the impact start.
//!
//! The test prints the latencies from the webhook's arrival (the run's `run_started`)
//! to the checks' end and to the "waiting" notification. With
//! RUNBOOK_REFRESH_SCREENSHOTS set it writes the run page's screenshots to
//! docs/serve-waiting.png and docs/serve-finished.png (the README shows them);
//! otherwise to a temporary folder, so a `--ignored` run leaves the tree clean.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use runbook::lab::Lab;
use serde_json::Value;

use crate::notify::{Answer, Receiver};
use crate::serve::{ANA, events, serve, waiting_gate};
use crate::support::alerting::{self, Alerting, AlertingOpts};
use crate::support::webdriver::{self, Browser};

/// Answers the seed's alert: a check, the gate, then a check that takes 2 s, so the
/// page is seen going from running to finished by itself.
const RUNBOOK: &str = r#"version: 1
name: hub-launches
title: Binder launches are failing
triggers:
  - alert: { alertname: HubLaunchesFailing, namespace: prod }
params:
  namespace: { default: nowhere }
params_from_alert:
  namespace: labels.namespace
steps:
  - check: Look at the hub
    id: look
    shell: { argv: [echo, "hub in {{params.namespace}}"] }
  - action: Cordon the hub's node
    id: cordon
    shell: { argv: [touch, cordoned] }
  - check: Launches recover
    id: recovered
    shell: { argv: [sleep, "2"] }
"#;

const WEBHOOK_TOKEN: &str = "am-webhook-token-0123456789";

fn ts(e: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(e["ts"].as_str().expect("ts"))
        .expect("an RFC 3339 ts")
        .with_timezone(&Utc)
}

fn first<'a>(ev: &'a [Value], kind: &str, step: Option<&str>) -> Option<&'a Value> {
    ev.iter()
        .find(|e| e["event"] == kind && step.is_none_or(|s| e["step"] == s))
}

/// Poll `f` every 20 ms for `secs` seconds.
fn within<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn screenshots_dir(tmp: &Path) -> PathBuf {
    if std::env::var_os("RUNBOOK_REFRESH_SCREENSHOTS").is_some() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs")
    } else {
        tmp.to_path_buf()
    }
}

fn save_png(path: &Path, png: &[u8]) {
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
        "{} is not a PNG ({} bytes)",
        path.display(),
        png.len()
    );
    std::fs::write(path, png).unwrap();
}

#[test]
#[ignore = "needs chromium, chromium-driver, prometheus and prometheus-alertmanager"]
fn a_real_alert_is_approved_in_a_real_browser_and_the_page_follows_the_run_to_its_end() {
    assert!(
        alerting::installed() && webdriver::installed(),
        "chromium, chromium-driver, prometheus and prometheus-alertmanager must be installed (scripts/test.sh does it)"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("runbooks")).unwrap();
    std::fs::write(dir.path().join("runbooks/hub-launches.yaml"), RUNBOOK).unwrap();
    std::fs::write(dir.path().join("tokens"), format!("ana:{ANA}\n")).unwrap();
    let hook = Receiver::start(Answer::Ok);
    let tokens = dir.path().join("tokens").display().to_string();
    let s = serve(
        dir.path(),
        &["--tokens-file", &tokens, "--notify", &hook.url],
        &[("RUNBOOK_SERVE_WEBHOOK_TOKEN", WEBHOOK_TOKEN)],
    );

    // The seed's lab, scraped by Prometheus, whose alert Alertmanager sends to serve.
    let lab = Lab::seed();
    let (lab_addr, lab_server) = rt.block_on(lab.serve("127.0.0.1:0")).unwrap();
    let stack = rt
        .block_on(Alerting::start(&AlertingOpts {
            scrape_target: lab_addr.to_string(),
            metrics_path: "/metrics".into(),
            rules: vec![alerting::seed_rules()],
            webhook_url: format!("http://{}/api/v1/alerts/alertmanager", s.addr),
            bearer_token: WEBHOOK_TOKEN.into(),
        }))
        .unwrap_or_else(|e| panic!("{e}"));
    let run_id = within(90, "Alertmanager's webhook starts a run", || {
        std::fs::read_dir(s.state.join("runs"))
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .next()
    });
    let digest = waiting_gate(&s, &run_id, "cordon");

    // The checks ran at once; people were told, with the plan and a link.
    let ev = events(&s.state, &run_id);
    let arrived = ts(first(&ev, "run_started", None).expect("run_started"));
    let checked = ts(first(&ev, "step_finished", Some("look")).expect("the check ran"));
    assert!(
        first(&ev, "gate_decided", None).is_none(),
        "a run from an alert never approves by itself"
    );
    let told = within(30, "the waiting notification", || {
        hook.got().into_iter().find(|g| g.json()["on"] == "waiting")
    });
    let waiting = told.json();
    assert_eq!(waiting["run_id"], run_id.as_str(), "{waiting}");
    assert_eq!(
        waiting["gate"]["plan"][0]["display"], "touch cordoned",
        "{waiting}"
    );
    let page = format!("http://{}/runs/{run_id}", s.addr);
    assert_eq!(waiting["links"]["approve"], page.as_str(), "{waiting}");
    let told_at = DateTime::<Utc>::from(told.at);

    // The impact start is the alert's `startsAt`: Prometheus sends when the alert
    // fired, `for: 1s` (and an evaluation or two) after it became active
    // (`ALERTS_FOR_STATE`), and before the webhook started the run.
    let for_state = rt
        .block_on(stack.query("ALERTS_FOR_STATE"))
        .unwrap_or_else(|e| panic!("{e}"));
    let active_at = for_state["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("ALERTS_FOR_STATE: {for_state}"));
    let incident = first(&ev, "incident_start", None).expect("incident_start");
    assert_eq!(incident["source"], "alert", "{incident}");
    let start = DateTime::parse_from_rfc3339(incident["at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc);
    let start_s = start.timestamp_millis() as f64 / 1000.0;
    assert!(
        active_at <= start_s + 0.001 && start_s < active_at + 10.0 && start < arrived,
        "incident start {start} is the alert's firing time: after its activeAt {active_at}, before the run {arrived}"
    );

    // A person opens the link on a phone-sized headless Chromium.
    let shots = screenshots_dir(dir.path());
    let b = Browser::start(412, 915).unwrap_or_else(|e| panic!("{e}"));
    let step = |r: Result<(), String>| r.unwrap_or_else(|e| panic!("{e}"));
    step(b.goto(&page));
    assert!(
        b.url().unwrap().ends_with("/login"),
        "reading needs a person when tokens are configured: {}",
        b.url().unwrap()
    );
    step(b.type_into("#token", ANA));
    step(b.click("form[action='/login'] button"));
    // The click returns before the login's redirect has landed: going to the run
    // page before then can be overtaken by that redirect (to the run list).
    within(30, "the login to land", || {
        (!b.url().ok()?.ends_with("/login")).then_some(())
    });
    step(b.goto(&page));
    within(30, "the run page", || (b.url().ok()? == page).then_some(()));
    let text = b.text().unwrap();
    assert!(text.contains("Plan waiting for approval"), "{text}");
    assert!(text.contains("touch cordoned"), "{text}");
    assert!(text.contains(&digest), "the page shows the digest: {text}");
    save_png(
        &shots.join("serve-waiting.png"),
        &b.screenshot().unwrap_or_else(|e| panic!("{e}")),
    );

    // Approve: the form posts with its CSRF token and comes back to the run page.
    step(b.click("button.approve"));
    within(30, "the browser is back on the run page", || {
        (b.url().ok()? == page).then_some(())
    });
    // The run still has 2 s to go; mark this page so a reload shows.
    let text = b.text().unwrap();
    assert!(
        !text.contains("Status: succeeded"),
        "the run is not finished yet when the page comes back: {text}"
    );
    b.eval("window.runbookTestMark = 1; return 1").unwrap();
    let text = within(60, "the page shows the run finished by itself", || {
        let t = b.text().ok()?;
        t.contains("Status: succeeded").then_some(t)
    });
    assert_eq!(
        b.url().unwrap(),
        page,
        "nobody navigated: the page followed the run"
    );
    assert!(
        text.contains("Launches recover"),
        "the timeline has the last step: {text}"
    );
    save_png(
        &shots.join("serve-finished.png"),
        &b.screenshot().unwrap_or_else(|e| panic!("{e}")),
    );

    // The journal: one approval, by the person who clicked, from the page.
    let ev = events(&s.state, &run_id);
    let decided: Vec<&Value> = ev.iter().filter(|e| e["event"] == "gate_decided").collect();
    assert_eq!(decided.len(), 1, "{decided:?}");
    assert_eq!(decided[0]["by"], "ana");
    assert_eq!(decided[0]["source"], "remote");
    assert_eq!(decided[0]["decision"], "approved");
    assert_eq!(
        first(&ev, "run_finished", None).expect("run_finished")["status"],
        "succeeded"
    );

    // The postmortem, from the page's link, takes the alert's start as impact start.
    step(b.goto(&format!("{page}/postmortem")));
    let pm = b.text().unwrap();
    let want = format!(
        "{} UTC (the alert's startsAt)",
        start.format("%Y-%m-%d %H:%M:%S")
    );
    assert!(pm.contains(&want), "postmortem without `{want}`:\n{pm}");

    eprintln!(
        "webhook arrival (run_started) -> checks done: {} ms; -> waiting notification received: {} ms",
        (checked - arrived).num_milliseconds(),
        (told_at - arrived).num_milliseconds()
    );
    drop(b);
    drop(stack);
    rt.block_on(lab_server.shutdown());
}
