//! Issue 20, the real alerting pipeline: the lab loaded with the seed scenario
//! exposes its metrics at `/metrics`; a real Prometheus scrapes them and fires the
//! seed's alert (`HubLaunchesFailing`, on `launch_success_rate`); a real Alertmanager
//! delivers its version-4 webhook, with the configured bearer token, to a local
//! receiver. The payload it delivered is saved as
//! tests/fixtures/alerting/alertmanager-v4.json for the tests of `runbook serve` when
//! RUNBOOK_REFRESH_ALERT_FIXTURE is set.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runbook::lab::Lab;
use serde_json::Value;

use crate::support::alerting::{self, Alerting, AlertingOpts};

/// The lab's `/metrics` is Prometheus' text format with the seed's metrics: the
/// hub cannot start, so launches fail.
#[tokio::test]
async fn the_lab_exposes_the_seed_scenarios_metrics_in_the_text_format() {
    let lab = Lab::seed();
    let (addr, server) = lab.serve("127.0.0.1:0").await.unwrap();
    let (code, body) = alerting::http_get(&format!("http://{addr}/metrics"))
        .await
        .unwrap();
    server.shutdown().await;
    assert_eq!(code, 200);
    assert!(
        body.contains("# TYPE launch_success_rate gauge\n"),
        "{body}"
    );
    assert!(body.contains("\nlaunch_success_rate 0\n"), "{body}");
    assert!(body.contains("hub_up{job=\"hub\"} 0\n"), "{body}");
}

/// What the receiver got: the Authorization header and the body.
type Got = Arc<Mutex<Vec<(String, Value)>>>;

async fn receiver() -> (String, Got) {
    let got: Got = Arc::default();
    let store = Arc::clone(&got);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/api/v1/alerts/alertmanager",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: String| async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                if let Ok(v) = serde_json::from_str(&body) {
                    store.lock().unwrap().push((auth, v));
                }
                axum::http::StatusCode::OK
            },
        ),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/api/v1/alerts/alertmanager"), got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus and alertmanager"]
async fn real_alertmanager_delivers_the_seed_alert_as_a_version_4_webhook() {
    assert!(
        alerting::installed(),
        "prometheus and prometheus-alertmanager must be installed (scripts/test.sh does it)"
    );
    let lab = Lab::seed();
    let (lab_addr, server) = lab.serve("127.0.0.1:0").await.unwrap();
    let (url, got) = receiver().await;
    let t0 = Instant::now();
    let stack = Alerting::start(&AlertingOpts {
        scrape_target: lab_addr.to_string(),
        metrics_path: "/metrics".into(),
        rules: vec![alerting::seed_rules()],
        webhook_url: url,
        bearer_token: "am-webhook-token-7".into(),
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let started = t0.elapsed();

    // group_wait 1s, rule `for: 1s`, scrape and evaluation every second: seconds.
    let deadline = Instant::now() + Duration::from_secs(90);
    let payload = loop {
        let first = got.lock().unwrap().first().cloned();
        if let Some(p) = first {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "no webhook within 90 s; Prometheus says {:?}\n{}",
            stack.query("ALERTS").await,
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let delivered = t0.elapsed();
    let (auth, body) = payload;
    assert_eq!(auth, "Bearer am-webhook-token-7");
    assert_eq!(body["version"], "4");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["receiver"], "runbook");
    assert!(
        body["groupKey"]
            .as_str()
            .is_some_and(|k| k.contains("HubLaunchesFailing"))
    );
    let alert = &body["alerts"][0];
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["labels"]["alertname"], "HubLaunchesFailing");
    assert_eq!(alert["labels"]["namespace"], "prod");
    assert!(
        alert["annotations"]["runbook_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("runbooks/hub-pvc-locked.yaml"))
    );
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
    assert!(
        alert["startsAt"]
            .as_str()
            .is_some_and(|s| s.starts_with("20"))
    );
    assert!(alert["fingerprint"].as_str().is_some_and(|f| !f.is_empty()));
    // `ALERTS_FOR_STATE` holds when the alert became active (the detectable start).
    let for_state = stack.query("ALERTS_FOR_STATE").await.unwrap();
    assert_eq!(
        for_state["data"]["result"][0]["metric"]["alertname"],
        "HubLaunchesFailing"
    );

    // The checked-in fixture is a payload captured from real Alertmanager; it is
    // refreshed only on request, so an `--ignored` run leaves the tree clean.
    let saved = if std::env::var_os("RUNBOOK_REFRESH_ALERT_FIXTURE").is_some() {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/alerting/alertmanager-v4.json");
        let mut text = serde_json::to_string_pretty(&body).unwrap();
        text.push('\n');
        std::fs::write(&fixture, text).unwrap();
        format!("; saved {}", fixture.display())
    } else {
        String::new()
    };
    eprintln!(
        "alerting harness: ready after {started:?}, webhook delivered {delivered:?} after start{saved}"
    );
    drop(stack);
    server.shutdown().await;
}
