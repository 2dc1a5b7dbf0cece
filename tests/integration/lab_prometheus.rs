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
