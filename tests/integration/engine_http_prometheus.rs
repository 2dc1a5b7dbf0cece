//! The `http` provider against a local server and the `prometheus` provider against a
//! real Prometheus (Debian's `prometheus`; in CI a missing binary fails the test).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use runbook::providers::http::Http;
use runbook::providers::prometheus::Prometheus;
use runbook::providers::{Defaults, ExecCtx, OpError, Provider};
use runbook::runbook::model::{HttpOp, OpRef, PrometheusOp, Sp};
use serde_json::{Value, json};

async fn serve() -> String {
    let app = Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(json!({"healthy": true})) }),
        )
        .route(
            "/echo",
            post(|headers: HeaderMap, body: String| async move {
                let token = headers
                    .get("x-token")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                axum::Json(json!({"got": body, "token": token}))
            }),
        )
        .route(
            "/down",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "maintenance") }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn op(url: &str) -> HttpOp {
    HttpOp {
        method: None,
        url: Sp::bare(url.to_string()),
        headers: Default::default(),
        body: None,
        json: None,
        status: Vec::new(),
    }
}

async fn call(
    http: &Http,
    op: &HttpOp,
    vars: Value,
    cx: Option<ExecCtx>,
) -> Result<Value, OpError> {
    let r = http.resolve(OpRef::Http(op), &vars, &Defaults::default())?;
    let cx = cx.unwrap_or_else(|| ExecCtx::new(vars));
    http.execute(&r, &cx).await
}

#[tokio::test]
async fn a_get_returns_status_headers_body_and_json() {
    let base = serve().await;
    let http = Http::new().unwrap();
    let r = call(&http, &op(&format!("{base}/health")), json!({}), None)
        .await
        .unwrap();
    assert_eq!(r["status"], 200);
    assert_eq!(r["json"]["healthy"], true);
    assert_eq!(r["headers"]["content-type"], "application/json");
}

#[tokio::test]
async fn templated_headers_and_json_bodies_are_sent_and_posts_are_mutating() {
    let base = serve().await;
    let http = Http::new().unwrap();
    let mut o = op(&format!("{base}/echo"));
    o.method = Some(Sp::bare("POST".into()));
    o.headers
        .insert("x-token".into(), Sp::bare("{{params.token}}".into()));
    o.json = Some(Sp::bare(json!({"text": "restarted {{params.ns}}"})));
    let vars = json!({"params": {"token": "t0k", "ns": "prod"}});
    let resolved = http
        .resolve(OpRef::Http(&o), &vars, &Defaults::default())
        .unwrap();
    assert!(resolved.mutating);
    assert!(
        !resolved.display.contains("t0k"),
        "headers stay out of the display"
    );
    let r = http.execute(&resolved, &ExecCtx::new(vars)).await.unwrap();
    assert_eq!(r["json"]["token"], "t0k");
    let sent: Value = serde_json::from_str(r["json"]["got"].as_str().unwrap()).unwrap();
    assert_eq!(sent, json!({"text": "restarted prod"}));
}

#[tokio::test]
async fn an_unexpected_status_fails_and_keeps_the_response_unless_it_is_accepted() {
    let base = serve().await;
    let http = Http::new().unwrap();
    let mut o = op(&format!("{base}/down"));
    match call(&http, &o, json!({}), None).await {
        Err(OpError::Failed { message, result }) => {
            assert!(message.contains("answered 503, expected 2xx"), "{message}");
            assert_eq!(result.unwrap()["body"], "maintenance");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    // The accepted statuses are named in words, not as a Rust list (`[200, 204]`).
    o.status = vec![Sp::bare(200), Sp::bare(201), Sp::bare(204)];
    match call(&http, &o, json!({}), None).await {
        Err(OpError::Failed { message, .. }) => assert!(
            message.contains("answered 503, expected 200, 201 or 204"),
            "{message}"
        ),
        other => panic!("expected a failure, got {other:?}"),
    }
    o.status = vec![Sp::bare(503)];
    assert_eq!(
        call(&http, &o, json!({}), None).await.unwrap()["status"],
        503
    );
}

#[tokio::test]
async fn a_slow_request_times_out_and_a_cancelled_one_returns_at_once() {
    let base = serve().await;
    let http = Http::new().unwrap();
    let o = op(&format!("{base}/slow"));
    let mut cx = ExecCtx::new(json!({}));
    cx.timeout = Some(Duration::from_millis(200));
    let r = call(&http, &o, json!({}), Some(cx)).await;
    assert!(matches!(r, Err(OpError::TimedOut(_))), "{r:?}");

    let cx = ExecCtx::new(json!({}));
    let cancel = cx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    });
    let t0 = Instant::now();
    let r = call(&http, &o, json!({}), Some(cx)).await;
    assert!(matches!(r, Err(OpError::Cancelled)), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_connection_error_names_the_url_and_the_cause() {
    let port = free_port();
    let http = Http::new().unwrap();
    let r = call(
        &http,
        &op(&format!("http://127.0.0.1:{port}/x")),
        json!({}),
        None,
    )
    .await;
    match r {
        Err(OpError::Failed { message, .. }) => {
            assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
            assert!(message.to_lowercase().contains("connect"), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus server on a free port with its own storage, killed on drop.
struct PromServer {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for PromServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_binary() -> String {
    let found = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .find_map(|d| {
            let p = Path::new(d).join("prometheus");
            p.is_file().then(|| p.display().to_string())
        });
    found.expect("prometheus is not on PATH (scripts/test.sh installs Debian's `prometheus`)")
}

async fn start_prometheus(bin: &str) -> PromServer {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nscrape_configs:\n  - job_name: self\n    static_configs: [{{ targets: ['127.0.0.1:{port}'] }}]\n"
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus starts");
    let server = PromServer {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let client = reqwest::Client::new();
    let t0 = Instant::now();
    loop {
        let ready = client.get(format!("{}/-/ready", server.url)).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return server;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "prometheus did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn query(p: &Prometheus, server: &str, q: &str) -> Result<Value, OpError> {
    let o = PrometheusOp {
        server: Sp::bare(server.to_string()),
        query: Sp::bare(q.to_string()),
        detects: None,
    };
    let r = p.resolve(OpRef::Prometheus(&o), &json!({}), &Defaults::default())?;
    p.execute(&r, &ExecCtx::new(json!({}))).await
}

#[tokio::test]
#[ignore = "needs prometheus (scripts/test.sh installs it)"]
async fn instant_queries_against_a_real_prometheus() {
    runbook::cli::install_crypto_provider();
    let bin = prometheus_binary();
    let server = start_prometheus(&bin).await;
    let p = Prometheus::new().unwrap();

    let r = query(&p, &server.url, "vector(42)").await.unwrap();
    assert_eq!(r["value"], json!(42.0));
    assert_eq!(r["samples"].as_array().unwrap().len(), 1);

    // Its own build info appears after the first self-scrape (1s interval).
    let t0 = Instant::now();
    let info = loop {
        let r = query(&p, &server.url, "prometheus_build_info")
            .await
            .unwrap();
        if r["samples"].as_array().is_some_and(|s| !s.is_empty()) {
            break r;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no self-scrape: {r}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(info["value"], json!(1.0));
    assert!(
        info["samples"][0]["metric"]["version"].is_string(),
        "{info}"
    );

    let up = query(&p, &server.url, "up").await.unwrap();
    assert_eq!(up["samples"][0]["metric"]["job"], "self");

    match query(&p, &server.url, "rate(").await {
        Err(OpError::Failed { message, .. }) => assert!(message.contains("bad_data"), "{message}"),
        other => panic!("a bad query must fail, got {other:?}"),
    }
}
