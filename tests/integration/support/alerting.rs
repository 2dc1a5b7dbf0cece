//! A real alerting pipeline for tests: Debian's `prometheus` scraping a target (the
//! lab's `/metrics`) and evaluating a rule file, and `prometheus-alertmanager`
//! sending its webhook (payload version 4, `http_config` with a bearer token) to a URL
//! the test gives. Both run on free loopback ports with configs and storage in a
//! temporary folder, and are killed when the [`Alerting`] is dropped.
//!
//! Tests that use it are `#[ignore = "needs prometheus and alertmanager"]`;
//! scripts/test.sh installs both packages and runs them.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What to wire together.
pub struct AlertingOpts {
    /// `host:port` Prometheus scrapes.
    pub scrape_target: String,
    /// The path it scrapes there (`/metrics`).
    pub metrics_path: String,
    /// Alerting rule files (absolute paths).
    pub rules: Vec<PathBuf>,
    /// Where Alertmanager POSTs its webhook.
    pub webhook_url: String,
    /// The bearer token Alertmanager sends (`http_config.authorization`).
    pub bearer_token: String,
}

/// Running Prometheus and Alertmanager.
pub struct Alerting {
    pub prometheus_url: String,
    pub alertmanager_url: String,
    prometheus: Child,
    alertmanager: Child,
    dir: tempfile::TempDir,
}

/// The rule file of the seed incident's alert (`HubLaunchesFailing`).
pub fn seed_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/alerting/rules.yaml")
}

/// A free loopback port (bound, then released for the child to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Alerting {
    /// Start Alertmanager, then Prometheus, and wait until both answer their
    /// readiness endpoints (at most 30 s each).
    pub async fn start(opts: &AlertingOpts) -> Result<Alerting, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let am_port = free_port();
        let prom_port = free_port();
        let token_file = dir.path().join("webhook-token");
        std::fs::write(&token_file, &opts.bearer_token).map_err(|e| e.to_string())?;
        let am_config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &am_config,
            format!(
                "route:
  receiver: runbook
  group_by: [alertname, namespace]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: runbook
    webhook_configs:
      - url: {url:?}
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials_file: {token:?}
",
                url = opts.webhook_url,
                token = token_file.display().to_string(),
            ),
        )
        .map_err(|e| e.to_string())?;
        let prom_config = dir.path().join("prometheus.yml");
        let rules: Vec<String> = opts
            .rules
            .iter()
            .map(|r| format!("{:?}", r.display().to_string()))
            .collect();
        std::fs::write(
            &prom_config,
            format!(
                "global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [{rules}]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['127.0.0.1:{am_port}']
scrape_configs:
  - job_name: lab
    metrics_path: {path:?}
    static_configs:
      - targets: [{target:?}]
",
                rules = rules.join(", "),
                path = opts.metrics_path,
                target = opts.scrape_target,
            ),
        )
        .map_err(|e| e.to_string())?;
        let log = |name: &str| {
            std::fs::File::create(dir.path().join(name))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null())
        };
        let alertmanager = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", am_config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            // No gossip: it would bind a second port.
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(log("alertmanager.log"))
            .spawn()
            .map_err(|e| format!("cannot start prometheus-alertmanager: {e}"))?;
        let prometheus = Command::new("prometheus")
            .arg(format!("--config.file={}", prom_config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("prom-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(log("prometheus.log"))
            .spawn();
        let prometheus = match prometheus {
            Ok(p) => p,
            Err(e) => {
                let mut am = alertmanager;
                let _ = am.kill();
                let _ = am.wait();
                return Err(format!("cannot start prometheus: {e}"));
            }
        };
        // From here Drop kills both.
        let me = Alerting {
            prometheus_url: format!("http://127.0.0.1:{prom_port}"),
            alertmanager_url: format!("http://127.0.0.1:{am_port}"),
            alertmanager,
            prometheus,
            dir,
        };
        me.wait_ready(&format!("{}/-/ready", me.alertmanager_url), "alertmanager")
            .await?;
        me.wait_ready(&format!("{}/-/ready", me.prometheus_url), "prometheus")
            .await?;
        Ok(me)
    }

    async fn wait_ready(&self, url: &str, what: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http_get(url).await.is_ok_and(|(code, _)| code == 200) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "{what} was not ready within 30 s:\n{}",
            self.logs()
        ))
    }

    /// Both servers' logs, for a failure message.
    pub fn logs(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "--- prometheus.log\n{}\n--- alertmanager.log\n{}",
            read("prometheus.log"),
            read("alertmanager.log")
        )
    }

    /// Prometheus' answer to an instant query (the JSON body).
    pub async fn query(&self, promql: &str) -> Result<serde_json::Value, String> {
        let q: String = url_encode(promql);
        let (code, body) =
            http_get(&format!("{}/api/v1/query?query={q}", self.prometheus_url)).await?;
        if code != 200 {
            return Err(format!("HTTP {code}: {body}"));
        }
        serde_json::from_str(&body).map_err(|e| e.to_string())
    }
}

impl Drop for Alerting {
    fn drop(&mut self) {
        for child in [&mut self.prometheus, &mut self.alertmanager] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// True when both binaries are on PATH.
pub fn installed() -> bool {
    ["prometheus", "prometheus-alertmanager"].iter().all(|b| {
        Command::new(b)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// GET `url`: (status, body).
pub async fn http_get(url: &str) -> Result<(u16, String), String> {
    runbook::providers::install_crypto_provider();
    let r = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let code = r.status().as_u16();
    let body = r.text().await.map_err(|e| e.to_string())?;
    Ok((code, body))
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
