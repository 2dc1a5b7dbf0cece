//! The lab's Prometheus: a history on the virtual clock (`query_range` answers a
//! matrix at the requested steps, from the scenario's declared past and from what
//! the lab's state was at each scrape), PromQL binary expressions, and a `detects:`
//! check against `runbook lab` finding when the seed's condition began.

use std::io::{BufRead, BufReader};
use std::path::Path;

use runbook::lab::Lab;
use serde_json::Value;
use tower::ServiceExt;

use crate::support::cli::Cli;

fn enc(q: &str) -> String {
    let mut out = String::new();
    for b in q.bytes() {
        if b.is_ascii_alphanumeric() || b"_.-:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn get(lab: &Lab, uri: &str) -> (u16, Value) {
    let resp = lab
        .router()
        .oneshot(
            http::Request::get(uri)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    (code, serde_json::from_slice(&body).unwrap())
}

fn values(v: &Value, series: usize) -> Vec<(i64, String)> {
    v["data"]["result"][series]["values"]
        .as_array()
        .unwrap_or_else(|| panic!("a matrix: {v}"))
        .iter()
        .map(|p| {
            (
                p[0].as_i64()
                    .unwrap_or_else(|| panic!("whole seconds: {p}")),
                p[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn query_range_answers_the_seeds_history_as_a_matrix_at_the_requested_steps() {
    let lab = Lab::seed_at_incident_time();
    let start = lab.now().timestamp(); // 2018-03-13T06:28:00Z
    let (code, v) = get(
        &lab,
        &format!(
            "/api/v1/query_range?query=launch_success_rate&start={}&end={start}&step=15m",
            start - 6 * 3600
        ),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["resultType"], "matrix");
    assert_eq!(
        v["data"]["result"][0]["metric"]["__name__"],
        "launch_success_rate"
    );
    let pts = values(&v, 0);
    assert_eq!(pts.len(), 25, "6 hours at 15 minutes, both ends: {pts:?}");
    for (i, (t, val)) in pts.iter().enumerate() {
        assert_eq!(*t, start - 6 * 3600 + i as i64 * 900);
        // Fine until the hub's node was lost 5 hours before the start.
        let want = if *t < start - 5 * 3600 { "1" } else { "0" };
        assert_eq!(val, want, "at {t}");
    }
    // A filter finds when the condition began: the first point of its last run.
    let (_, v) = get(
        &lab,
        &format!(
            "/api/v1/query_range?query={}&start={}&end={start}&step=15s",
            enc("launch_success_rate < 0.5"),
            start - 6 * 3600
        ),
    )
    .await;
    assert_eq!(values(&v, 0)[0].0, start - 5 * 3600);
    // RFC 3339 times and a duration step work too; a range before any sample is empty.
    let (code, v) = get(
        &lab,
        "/api/v1/query_range?query=hub_up&start=2018-03-12T00:00:00Z&end=2018-03-12T01:00:00Z&step=1m",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(v["data"]["result"], serde_json::json!([]));
}

#[tokio::test]
async fn the_history_follows_what_the_lab_did_at_the_time_it_did_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("h.scenario.yaml");
    std::fs::write(
        &file,
        "version: 1\nname: h\nstart: \"2026-01-03T00:00:00Z\"\nmetrics:\n  - { name: pods, value: { pods: { namespace: default } } }\n",
    )
    .unwrap();
    // At the scenario's own start, clock stopped: only `advance` moves it.
    let lab = Lab::from_scenario_file_at_incident_time(&file).unwrap();
    let t0 = lab.now().timestamp();
    lab.advance(std::time::Duration::from_secs(600));
    lab.create(serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "i"}]}}))
        .unwrap();
    lab.advance(std::time::Duration::from_secs(300));
    let (_, v) = get(
        &lab,
        &format!(
            "/api/v1/query_range?query=pods&start={t0}&end={}&step=60",
            t0 + 900
        ),
    )
    .await;
    let pts = values(&v, 0);
    assert_eq!(pts.len(), 16);
    for (t, val) in pts {
        // The point at 600 s was recorded before the pod was created.
        let want = if t - t0 <= 600 { "0" } else { "1" };
        assert_eq!(val, want, "{}s after the start", t - t0);
    }
    // An instant query at an earlier `time` sees the value then.
    let (_, v) = get(&lab, &format!("/api/v1/query?query=pods&time={}", t0 + 300)).await;
    assert_eq!(v["data"]["result"][0]["value"][1], "0");
    assert_eq!(v["data"]["result"][0]["value"][0], t0 + 300);
    // Rate over the history: one pod more over the last 15 minutes.
    let (_, v) = get(
        &lab,
        &format!("/api/v1/query?query={}", enc("increase(pods[15m])")),
    )
    .await;
    let inc: f64 = v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((0.9..=1.2).contains(&inc), "{v}");
}

#[tokio::test]
async fn binary_expressions_are_answered_as_prometheus_does() {
    let lab = Lab::seed_at_incident_time();
    let ask = |q: &str| {
        let lab = lab.clone();
        let uri = format!("/api/v1/query?query={}", enc(q));
        async move { get(&lab, &uri).await }
    };
    // A ratio of sums: one series without labels.
    let (code, v) = ask("sum(hub_up) / count(hub_up)").await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(v["data"]["result"][0]["metric"], serde_json::json!({}));
    assert_eq!(v["data"]["result"][0]["value"][1], "0");
    // A comparison filters and keeps the name; with bool it answers 0 or 1.
    let (_, v) = ask("hub_up < 0.5").await;
    assert_eq!(v["data"]["result"][0]["metric"]["__name__"], "hub_up");
    let (_, v) = ask("hub_up > 0.5").await;
    assert_eq!(v["data"]["result"], serde_json::json!([]));
    let (_, v) = ask("hub_up > bool 0.5").await;
    assert_eq!(
        v["data"]["result"][0]["metric"],
        serde_json::json!({"job": "hub"})
    );
    assert_eq!(v["data"]["result"][0]["value"][1], "0");
    // Scalars: a scalar result, and a comparison that needs bool.
    let (_, v) = ask("1 + 2 * 3").await;
    assert_eq!(v["data"]["resultType"], "scalar");
    assert_eq!(v["data"]["result"][1], "7");
    let (code, v) = ask("1 > 0").await;
    assert_eq!(code, 400);
    assert_eq!(v["errorType"], "bad_data");
    // One-to-one matching on labels: launch_success_rate has none, hub_up has job.
    let (_, v) = ask("launch_success_rate / ignoring(job) hub_up").await;
    assert_eq!(v["data"]["result"][0]["value"][1], "NaN");
    // What the lab does not evaluate is refused, saying what it does.
    let (code, v) = ask("histogram_quantile(0.9, x)").await;
    assert_eq!(code, 400);
    assert!(
        v["error"].as_str().unwrap().contains("the lab evaluates"),
        "{v}"
    );
}

/// `runbook lab` (the seed, clock at the wall time); its port and the child.
fn lab_process(dir: &Path) -> (u16, std::process::Child) {
    let mut child = Cli::new()
        .state_dir(dir.join("lab-state"))
        .arg("lab")
        .args(["--port", "0"])
        .spawn();
    let mut lines = BufReader::new(child.stdout.take().expect("the lab's stdout")).lines();
    let mut port = None;
    for line in lines.by_ref() {
        let line = line.expect("a line");
        if let Some(p) = line.strip_prefix("port: ") {
            port = Some(p.parse().expect("a port"));
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    (port.expect("the lab prints its port"), child)
}

/// Issue 17 against the lab: a `detects:` check asks the lab's Prometheus
/// (`query_range` over 6 hours) when launches started failing; the seed's history
/// says 5 hours before the lab opened, and the postmortem measures from there.
#[test]
fn a_detecting_check_against_the_lab_finds_when_the_seeds_launches_began_to_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, mut child) = lab_process(dir.path());
    let rb = dir.path().join("rb.yaml");
    std::fs::write(
        &rb,
        format!(
            r#"version: 1
name: detects-lab
title: Launches fail
steps:
  - check: Launch success rate is low
    id: launch-rate
    prometheus: {{ server: "http://127.0.0.1:{port}", query: "launch_success_rate < 0.5", detects: 6h }}
    save: rate
    expect: "size(rate.samples) > 0"
"#
        ),
    )
    .expect("runbook written");
    let st = dir.path().join("state");
    let before = chrono::Utc::now();
    let run = Cli::new().state_dir(&st).arg("run").arg(&rb).run();
    let _ = child.kill();
    let _ = child.wait();
    run.code(0);
    let out = dir.path().join("pm.md");
    Cli::new()
        .env("RUNBOOK_STATE_DIR", &st)
        .arg("postmortem")
        .arg("last")
        .arg("-o")
        .arg(&out)
        .run()
        .code(0);
    let md = std::fs::read_to_string(&out).expect("written");
    let row = md
        .lines()
        .find(|l| l.starts_with("| Impact start |"))
        .expect("an impact start row");
    assert!(row.contains("by Prometheus"), "{row}");
    let at = chrono::NaiveDateTime::parse_from_str(&row[17..36], "%Y-%m-%d %H:%M:%S")
        .expect("a time")
        .and_utc();
    // The look-back's step is 90 s (6 h / 240): the first point at or after -5h.
    let five = before - chrono::Duration::hours(5);
    assert!(
        at >= five - chrono::Duration::seconds(5) && at <= five + chrono::Duration::seconds(120),
        "{row}, lab opened at about {before}"
    );
    let ttd = md
        .lines()
        .find(|l| l.starts_with("| Time to detect |"))
        .expect("a time to detect");
    assert!(
        ttd.starts_with("| Time to detect | 4h 5") || ttd.starts_with("| Time to detect | 5h 00m"),
        "{ttd}"
    );
}

async fn send(lab: &Lab, method: &str, uri: &str) -> u16 {
    lab.router()
        .oneshot(
            http::Request::builder()
                .method(method)
                .uri(uri)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The instant vector of `q` at `t` (Unix seconds): (labels as `{k="v",…}`, value).
async fn instant(lab: &Lab, q: &str, t: i64) -> Vec<(String, String)> {
    let (code, v) = get(lab, &format!("/api/v1/query?query={}&time={t}", enc(q))).await;
    assert_eq!(code, 200, "{q}: {v}");
    let mut out: Vec<(String, String)> = v["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("a vector: {v}"))
        .iter()
        .map(|s| {
            let m = s["metric"].as_object().expect("labels");
            let name = m.get("__name__").and_then(Value::as_str).unwrap_or("");
            let labels: Vec<String> = m
                .iter()
                .filter(|(k, _)| *k != "__name__")
                .map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap()))
                .collect();
            (
                format!("{name}{{{}}}", labels.join(",")),
                s["value"][1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// A scenario whose `pods` were 1 until 30 minutes before its start (an hour
/// after the Unix epoch, so `promtool test rules` can replay the same input), then
/// 0, with a rule that waits 10 minutes and one that fires at once.
const ALERTING: &str = r#"version: 1
name: alerting
start: "1970-01-01T01:00:00Z"
metrics:
  - { name: pods, value: { pods: { namespace: default } }, history: [ { at: -1h, value: 1 }, { at: -30m, value: 0 } ] }
alerts:
  - { name: NoPods, expr: "pods < 1", for: 10m, labels: { severity: page } }
  - { name: NoPodsNow, expr: "pods < 1" }
"#;

/// Prometheus' alerting semantics (docs: prometheus.io/docs/prometheus/latest/
/// configuration/alerting_rules/, "Inspecting alerts during runtime"; code:
/// rules/alerting.go `AlertingRule.Eval`): an answer becomes a pending alert with
/// `ActiveAt` = that evaluation; it fires at the first evaluation with
/// `ts - ActiveAt >= for`; `ALERTS{alertstate}` is 1 while in that state and marked
/// stale when it leaves it; `ALERTS_FOR_STATE` is `ActiveAt` in Unix seconds; when
/// the condition stops the alert is gone, and when it comes back it is a new alert.
#[tokio::test]
async fn alerting_rules_go_pending_then_fire_after_for_and_serve_alerts_as_prometheus_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a.scenario.yaml");
    std::fs::write(&file, ALERTING).unwrap();
    let lab = Lab::from_scenario_file_at_incident_time(&file).unwrap();
    let t0 = lab.now().timestamp();
    assert_eq!(t0, 3600);
    let active_at = t0 - 1800;
    // Before the condition: nothing.
    assert_eq!(instant(&lab, "ALERTS", active_at - 15).await, vec![]);
    // The first evaluation that sees pods = 0: pending (10m), and the `for: 0` rule firing.
    let pending = |state: &str| {
        vec![
            (
                format!("ALERTS{{alertname=\"NoPods\",alertstate=\"{state}\",severity=\"page\"}}"),
                "1".to_owned(),
            ),
            (
                "ALERTS{alertname=\"NoPodsNow\",alertstate=\"firing\"}".to_owned(),
                "1".to_owned(),
            ),
        ]
    };
    assert_eq!(instant(&lab, "ALERTS", active_at).await, pending("pending"));
    // Still pending 15 s before `for` has passed ...
    assert_eq!(
        instant(&lab, "ALERTS", active_at + 585).await,
        pending("pending")
    );
    // ... firing from the evaluation where it has, and the pending series is stale at
    // once (a minute later the look-back would still see it without the marker).
    assert_eq!(
        instant(&lab, "ALERTS", active_at + 600).await,
        pending("firing")
    );
    assert_eq!(
        instant(&lab, "ALERTS", active_at + 660).await,
        pending("firing")
    );
    assert_eq!(
        instant(&lab, "ALERTS{alertstate=\"pending\"}", active_at + 660).await,
        vec![]
    );
    // ALERTS_FOR_STATE: when each alert became active, in Unix seconds, no alertstate.
    let for_state = |at: i64| {
        vec![
            (
                "ALERTS_FOR_STATE{alertname=\"NoPods\",severity=\"page\"}".to_owned(),
                at.to_string(),
            ),
            (
                "ALERTS_FOR_STATE{alertname=\"NoPodsNow\"}".to_owned(),
                at.to_string(),
            ),
        ]
    };
    assert_eq!(
        instant(&lab, "ALERTS_FOR_STATE", t0).await,
        for_state(active_at)
    );
    // A range query over the pending window: exactly the 40 points from ActiveAt to
    // ActiveAt + 9m45s at a 15 s step.
    let (_, v) = get(
        &lab,
        &format!(
            "/api/v1/query_range?query={}&start={}&end={t0}&step=15",
            enc("ALERTS{alertstate=\"pending\"}"),
            active_at - 300
        ),
    )
    .await;
    let pts = values(&v, 0);
    assert_eq!(pts.first().map(|p| p.0), Some(active_at), "{pts:?}");
    assert_eq!(pts.last().map(|p| p.0), Some(active_at + 585), "{pts:?}");
    assert_eq!(pts.len(), 40);

    // The condition stops (a pod appears): resolved at the next evaluation.
    lab.advance(std::time::Duration::from_secs(60));
    lab.create(serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "i"}]}}))
        .unwrap();
    lab.advance(std::time::Duration::from_secs(60));
    let now = lab.now().timestamp();
    assert_eq!(instant(&lab, "ALERTS", now).await, vec![]);
    assert_eq!(instant(&lab, "ALERTS_FOR_STATE", now).await, vec![]);
    // It comes back: a new alert, active from the evaluation that saw it again (the
    // scrape point at the instant of the delete was recorded before it: the next one).
    assert_eq!(
        send(
            &lab,
            "DELETE",
            "/api/v1/namespaces/default/pods/p?gracePeriodSeconds=0"
        )
        .await,
        200
    );
    let again = lab.now().timestamp() + 15;
    lab.advance(std::time::Duration::from_secs(60));
    let now = lab.now().timestamp();
    assert_eq!(
        instant(&lab, "ALERTS_FOR_STATE", now).await,
        for_state(again)
    );
    assert_eq!(
        instant(&lab, "ALERTS{alertname=\"NoPods\"}", now).await,
        vec![(
            "ALERTS{alertname=\"NoPods\",alertstate=\"pending\",severity=\"page\"}".to_owned(),
            "1".to_owned()
        )]
    );
}

#[test]
fn an_alert_with_a_bad_expression_is_refused_with_its_line_and_column() {
    let text = "version: 1\nname: bad\nalerts:\n  - { name: X, expr: \"pods <\" }\n";
    let e = runbook::lab::scenario::parse(text, "bad.scenario.yaml")
        .expect_err("a bad expression is refused")
        .to_string();
    assert!(e.contains("bad.scenario.yaml:4:"), "{e}");
    assert!(e.contains("alert expression \"pods <\""), "{e}");
    let text = "version: 1\nname: bad\nalerts:\n  - { name: X, expr: \"pods\", labels: { alertstate: x } }\n";
    let e = runbook::lab::scenario::parse(text, "bad.scenario.yaml")
        .expect_err("a reserved label is refused")
        .to_string();
    assert!(
        e.contains("label name \"alertstate\" is not allowed"),
        "{e}"
    );
}

/// The same input, rules and queries through Prometheus' own rule evaluator
/// (`promtool test rules`, Debian's `prometheus` package): every answer the lab gives
/// for `ALERTS` and `ALERTS_FOR_STATE` is written as promtool's expected samples, and
/// promtool passes only if Prometheus computes the same.
#[tokio::test]
#[ignore = "needs promtool (Debian package prometheus)"]
async fn promtool_computes_the_same_alerts_as_the_lab() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a.scenario.yaml");
    std::fs::write(&file, ALERTING).unwrap();
    let lab = Lab::from_scenario_file_at_incident_time(&file).unwrap();
    let t0 = lab.now().timestamp();
    let mut tests = String::new();
    for t in [1785, 1800, 1815, 2385, 2400, 2415, 2460, 3000, t0] {
        for q in [
            "ALERTS",
            "ALERTS{alertstate=\"pending\"}",
            "ALERTS_FOR_STATE",
        ] {
            let got = instant(&lab, q, t).await;
            tests.push_str(&format!(
                "      - expr: '{q}'\n        eval_time: {t}s\n        exp_samples:\n"
            ));
            if got.is_empty() {
                tests.truncate(tests.len() - "        exp_samples:\n".len());
                tests.push_str("        exp_samples: []\n");
            }
            for (labels, value) in got {
                tests.push_str(&format!(
                    "          - labels: '{labels}'\n            value: {value}\n"
                ));
            }
        }
    }
    std::fs::write(
        dir.path().join("rules.yaml"),
        "groups:\n  - name: lab\n    interval: 15s\n    rules:\n      - { alert: NoPods, expr: 'pods < 1', for: 10m, labels: { severity: page } }\n      - { alert: NoPodsNow, expr: 'pods < 1' }\n",
    )
    .unwrap();
    // pods: 1 for the first 30 minutes (120 points at 15 s), then 0.
    std::fs::write(
        dir.path().join("test.yaml"),
        format!(
            "rule_files: [rules.yaml]\nevaluation_interval: 15s\ntests:\n  - interval: 15s\n    input_series:\n      - series: 'pods'\n        values: '1x119 0x360'\n    promql_expr_test:\n{tests}"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(
        std::env::var("RUNBOOK_PROMTOOL").unwrap_or_else(|_| "promtool".into()),
    )
    .current_dir(dir.path())
    .args(["test", "rules", "test.yaml"])
    .output()
    .expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool disagrees with the lab:\n{}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.path().join("test.yaml")).unwrap()
    );
}
