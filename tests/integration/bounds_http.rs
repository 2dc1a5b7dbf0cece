//! Issue 13 item 1, HTTP side: a response body is kept up to the cap
//! (`RUNBOOK_MAX_OUTPUT`, 4 MiB by default) and the connection dropped there, so an
//! endless body ends at the cap instead of growing until the timeout; a Prometheus
//! answer past the cap fails with a message that says so.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use runbook::providers::http::Http;
use runbook::providers::limits::DEFAULT_MAX_OUTPUT;
use runbook::providers::prometheus::Prometheus;
use runbook::providers::{Defaults, ExecCtx, OpError, Provider};
use runbook::runbook::model::{HttpOp, OpRef, PrometheusOp, Sp};
use serde_json::json;

/// A server that answers every connection with `head` and then `unit` repeated
/// forever (about 64 MB/s, so that a client without a cap would still be reading,
/// and growing, when its timeout fires). Returns its base URL.
fn endless(head: &'static str, unit: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a local port");
    let addr = listener.local_addr().expect("a bound address");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut req = [0u8; 4096];
                let _ = conn.read(&mut req);
                let header = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
                if conn.write_all(header.as_bytes()).is_err()
                    || conn.write_all(head.as_bytes()).is_err()
                {
                    return;
                }
                let chunk = unit.repeat((64 << 10) / unit.len());
                // Ends when the client hangs up.
                while conn.write_all(chunk.as_bytes()).is_ok() {
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
        }
    });
    format!("http://{addr}")
}

fn cx(timeout: Duration) -> ExecCtx {
    let mut cx = ExecCtx::new(json!({}));
    cx.timeout = Some(timeout);
    cx
}

#[tokio::test]
async fn an_endless_body_ends_at_the_cap_and_is_marked_cut() {
    let url = endless("", "y");
    let op = HttpOp {
        method: None,
        url: Sp::bare(format!("{url}/stream")),
        headers: Default::default(),
        body: None,
        json: None,
        status: Vec::new(),
    };
    let http = Http::new().unwrap();
    let r = http
        .resolve(OpRef::Http(&op), &json!({}), &Defaults::default())
        .unwrap();
    let t0 = Instant::now();
    let out = http
        .execute(&r, &cx(Duration::from_secs(20)))
        .await
        .expect("a cut body is still an answer");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert_eq!(out["status"], 200);
    assert_eq!(out["body_truncated"], true);
    assert_eq!(out["body"].as_str().unwrap().len(), DEFAULT_MAX_OUTPUT);
    // No Content-Length was sent, so the total size is not known.
    assert!(out.get("body_bytes").is_none());
    assert!(out.get("json").is_none());
}

#[tokio::test]
async fn a_prometheus_answer_past_the_cap_fails_saying_so() {
    let url = endless(
        r#"{"status":"success","data":{"resultType":"vector","result":["#,
        r#"{"metric":{"job":"x"},"value":[1,"1"]},"#,
    );
    let op = PrometheusOp {
        server: Sp::bare(url),
        query: Sp::bare("up".into()),
        detects: None,
    };
    let prom = Prometheus::new().unwrap();
    let r = prom
        .resolve(OpRef::Prometheus(&op), &json!({}), &Defaults::default())
        .unwrap();
    let t0 = Instant::now();
    match prom.execute(&r, &cx(Duration::from_secs(20))).await {
        Err(OpError::Failed { message, .. }) => {
            assert!(
                message.contains(&format!(
                    "Prometheus answer exceeds {DEFAULT_MAX_OUTPUT} bytes"
                )),
                "{message}"
            );
            assert!(message.contains("RUNBOOK_MAX_OUTPUT"), "{message}");
        }
        other => panic!("expected a clear failure, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
}
