//! Issue 20 end to end, with real tools and the seed incident: the lab loaded with the
//! seed scenario exposes its metrics; a real Prometheus fires the seed's alert rule
//! (`HubLaunchesFailing`, launch success rate below 1, whose `runbook_url` names
//! `hub-pvc-locked`); a real Alertmanager sends its version-4 webhook (with its
//! bearer token) to `runbook serve`, which serves the shipped seed runbook
//! (runbooks/hub-pvc-locked.yaml, unchanged) against the lab; the run runs its six
//! checks and waits at the cordon gate; a webhook receiver is told, with the plan; a
//! person logs in to the run page in a real headless Chromium (driven over WebDriver)
//! and clicks Approve there at the cordon gate and at every gate (or Done at every
//! manual step) the run asks next; the page, not reloaded by anyone after the last
//! click, follows the run to `succeeded` over server-sent events; the postmortem takes
//! the alert's start as the impact start.
//!
//! The lab runs at 60× (a minute of cluster time a second), so the 6-minute forced
//! detach after the force-delete takes 6 s; the engine's waits (the first rung's
//! `within: 1m`, polls `every: 10s`) are real time, so the test takes a minute or two.
//!
//! The test prints the latencies from the webhook's arrival (the run's `run_started`)
//! to the checks' end and to the "waiting" notification, and writes them to
//! `serve-e2e-latency.txt` beside the screenshots. With RUNBOOK_REFRESH_SCREENSHOTS set
//! that is docs/ (docs/serve-waiting.png, docs/serve-finished.png and the latency file,
//! which the README cites); otherwise a temporary folder, so a `--ignored` run leaves
//! the tree clean.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use runbook::lab::Lab;
use serde_json::Value;

use crate::notify::{Answer, Receiver};
use crate::serve::{ANA, events, get_json, serve, waiting_gate};
use crate::support::alerting::{self, Alerting, AlertingOpts};
use crate::support::webdriver::{self, Browser};

/// The seed's checks, in order: all of them run before the first gate.
const CHECKS: [&str; 6] = [
    "launch-rate",
    "lost-pods",
    "bad-nodes",
    "multi-attach",
    "hub-claim",
    "hub-attachment",
];

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

/// What the run waits for now, as the API says: `(kind, step, digest)`, or `None`
/// while it runs (or once it ended).
fn waiting(addr: &str, run_id: &str) -> Option<(String, String, String)> {
    let (_, v) = get_json(addr, &format!("/api/v1/runs/{run_id}"), Some(ANA));
    let w = &v["run"]["waiting"];
    Some((
        w["kind"].as_str()?.to_owned(),
        w["step"].as_str()?.to_owned(),
        w["digest"].as_str().unwrap_or_default().to_owned(),
    ))
}

fn finished(state: &Path, run_id: &str) -> Option<String> {
    events(state, run_id)
        .iter()
        .find(|e| e["event"] == "run_finished")
        .map(|e| e["status"].as_str().unwrap_or_default().to_owned())
}

/// How many gate decisions and manual answers the journal has.
fn answers(state: &Path, run_id: &str) -> usize {
    events(state, run_id)
        .iter()
        .filter(|e| e["event"] == "gate_decided" || e["event"] == "manual_confirmed")
        .count()
}

#[test]
#[ignore = "needs chromium, chromium-driver, prometheus and prometheus-alertmanager"]
fn the_seed_alert_stops_the_seed_runbook_at_the_cordon_gate_and_a_real_browser_approves_it_to_the_end()
 {
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
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/hub-pvc-locked.yaml");
    std::fs::copy(&seed, dir.path().join("runbooks/hub-pvc-locked.yaml")).unwrap();
    std::fs::write(dir.path().join("tokens"), format!("ana:{ANA}\n")).unwrap();

    // The seed's lab at 60x: its API server for the runbook's kube steps (a
    // kubeconfig, as `runbook lab --write-kubeconfig` writes), its Prometheus API for
    // the runbook's queries, and its /metrics for the real Prometheus.
    let lab = Lab::seed();
    lab.set_speed(60.0);
    let (lab_addr, lab_server) = rt.block_on(lab.serve("127.0.0.1:0")).unwrap();
    let kubeconfig = dir.path().join("lab.kubeconfig");
    runbook::lab::write_kubeconfig(lab_addr, &kubeconfig).unwrap();

    let hook = Receiver::start(Answer::Ok);
    let tokens = dir.path().join("tokens").display().to_string();
    let prometheus = format!("prometheus=http://{lab_addr}");
    let s = serve(
        dir.path(),
        &[
            "--tokens-file",
            &tokens,
            "--notify",
            &hook.url,
            "--kubeconfig",
            &kubeconfig.display().to_string(),
            "--param",
            &prometheus,
        ],
        &[("RUNBOOK_SERVE_WEBHOOK_TOKEN", WEBHOOK_TOKEN)],
    );
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
    assert!(run_id.contains("hub-pvc-locked"), "{run_id}");
    let digest = waiting_gate(&s, &run_id, "cordon");

    // Every check ran at once, and passed; nothing was approved by itself.
    let ev = events(&s.state, &run_id);
    let arrived = ts(first(&ev, "run_started", None).expect("run_started"));
    for id in CHECKS {
        let done = first(&ev, "step_finished", Some(id))
            .unwrap_or_else(|| panic!("check {id} did not run: {ev:?}"));
        assert_eq!(done["outcome"], "ok", "check {id}: {done}");
    }
    let checked = ts(first(&ev, "step_finished", Some(CHECKS[5])).unwrap());
    assert!(
        first(&ev, "gate_decided", None).is_none(),
        "a run from an alert never approves by itself"
    );
    // People were told, with the plan (the two lost nodes to cordon) and a link.
    let told = within(30, "the waiting notification", || {
        hook.got().into_iter().find(|g| g.json()["on"] == "waiting")
    });
    let note = told.json();
    assert_eq!(note["run_id"], run_id.as_str(), "{note}");
    assert_eq!(note["step"]["id"], "cordon", "{note}");
    let plan: Vec<&str> = note["gate"]["plan"]
        .as_array()
        .unwrap_or_else(|| panic!("no plan: {note}"))
        .iter()
        .filter_map(|o| o["display"].as_str())
        .collect();
    assert_eq!(
        plan,
        [
            "kubectl cordon gke-prod-a-ssd-pool-32-134a959a-6hmq",
            "kubectl cordon gke-prod-a-ssd-pool-32-134a959a-n2sk"
        ],
        "{note}"
    );
    let page = format!("http://{}/runs/{run_id}", s.addr);
    assert_eq!(note["links"]["approve"], page.as_str(), "{note}");
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

    // A person opens the link on a phone-sized headless Chromium and logs in.
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

    // Answer what the run asks, from the page, as the person would: Approve at every
    // gate, Done at every manual step, until it asks nothing more.
    let mut asked = Vec::new();
    let mut answered: Vec<(String, String, String)> = Vec::new();
    loop {
        // What the run waits for next: not what was just answered, which the API
        // still shows until the run has read the answer (within a poll).
        let next = within(300, "the run waits for a person or ends", || {
            if let Some(w) = waiting(&s.addr, &run_id) {
                return (!answered.contains(&w)).then_some(Some(w));
            }
            finished(&s.state, &run_id).map(|_| None)
        });
        let Some((kind, step_id, digest_now)) = next else {
            break;
        };
        let before = answers(&s.state, &run_id);
        asked.push(format!("{kind} {step_id}"));
        // Load the page until it shows this very request (its digest, or the step's
        // manual form), then click.
        let text = within(30, "the run page shows what waits", || {
            b.goto(&page).ok()?;
            (b.url().ok()? == page).then_some(())?;
            let t = b.text().ok()?;
            let shown = if kind == "gate" {
                t.contains("Plan waiting for approval") && t.contains(&digest_now)
            } else {
                b.find("form[action$='/confirm'] button.approve").is_ok()
            };
            shown.then_some(t)
        });
        if asked.len() == 1 {
            assert_eq!((kind.as_str(), step_id.as_str()), ("gate", "cordon"));
            assert_eq!(digest_now, digest);
            assert!(
                text.contains("kubectl cordon gke-prod-a-ssd-pool-32-134a959a-6hmq"),
                "{text}"
            );
            save_png(
                &shots.join("serve-waiting.png"),
                &b.screenshot().unwrap_or_else(|e| panic!("{e}")),
            );
        }
        let button = if kind == "gate" {
            "form[action$='/decision'] button.approve"
        } else {
            "form[action$='/confirm'] button.approve"
        };
        step(b.click(button));
        let deadline = Instant::now() + Duration::from_secs(30);
        while answers(&s.state, &run_id) == before {
            assert!(
                Instant::now() < deadline,
                "clicking {button} for {kind} {step_id} journaled nothing; the page:\n{}",
                b.text().unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        answered.push((kind, step_id, digest_now));
    }
    // The page the last click came back to follows the run to its end by itself.
    let text = within(300, "the page shows the run finished by itself", || {
        let t = b.text().ok()?;
        t.contains("Status: succeeded").then_some(t)
    });
    assert_eq!(
        b.url().unwrap(),
        page,
        "nobody navigated: the page followed the run"
    );
    assert!(
        text.contains("Launches succeed again"),
        "the timeline has the last step: {text}"
    );
    save_png(
        &shots.join("serve-finished.png"),
        &b.screenshot().unwrap_or_else(|e| panic!("{e}")),
    );

    // The journal: every decision by the person who clicked, from the page; the hub
    // volume freed by a rung of the ladder; the run succeeded.
    let ev = events(&s.state, &run_id);
    let decided: Vec<&Value> = ev.iter().filter(|e| e["event"] == "gate_decided").collect();
    assert!(
        decided.len() >= 2,
        "cordon and at least one rung: {decided:?}"
    );
    for d in &decided {
        assert_eq!(d["by"], "ana", "{d}");
        assert_eq!(d["source"], "remote", "{d}");
        assert_eq!(d["decision"], "approved", "{d}");
    }
    assert_eq!(decided[0]["step"], "cordon");
    for id in ["cordon", "free-hub-volume", "launches-recovered"] {
        let done =
            first(&ev, "step_finished", Some(id)).unwrap_or_else(|| panic!("{id} did not finish"));
        assert_eq!(done["outcome"], "ok", "{id}: {done}");
    }
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

    let report = format!(
        "runbook serve, seed runbook on the seed lab, real Prometheus and Alertmanager (serve_browser::{}):\n\
         webhook arrival (run_started) -> the 6 checks done: {} ms\n\
         webhook arrival (run_started) -> waiting notification received: {} ms\n\
         asked of the person, in order: {}\n",
        "the_seed_alert_stops_the_seed_runbook_at_the_cordon_gate_and_a_real_browser_approves_it_to_the_end",
        (checked - arrived).num_milliseconds(),
        (told_at - arrived).num_milliseconds(),
        asked.join(", ")
    );
    eprint!("{report}");
    std::fs::write(shots.join("serve-e2e-latency.txt"), &report).unwrap();
    drop(b);
    drop(stack);
    rt.block_on(lab_server.shutdown());
}
