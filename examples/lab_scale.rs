//! The lab at scale (issue 18), over TCP with a plain HTTP client: load a scenario
//! (e.g. 10 000 pods from `scripts/gen-scenario.py`), then time field-selector lists
//! served from the index and compare the throughput of 50 concurrent clients with
//! one client. Run by `scripts/bench-lab.sh` (release build):
//!
//!     cargo run --release --example lab_scale -- /tmp/big.scenario.yaml

use std::time::{Duration, Instant};

use runbook::lab::Lab;

fn rss_peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

/// The requests of the throughput test: lists with a field selector on an indexed
/// field (40 of the pods), gets of one pod, a label-selected page.
fn mixed(base: &str, i: usize, nodes: usize) -> String {
    match i % 3 {
        0 => format!(
            "{base}/api/v1/pods?fieldSelector=spec.nodeName=node-{:04}",
            i % nodes
        ),
        1 => format!(
            "{base}/api/v1/namespaces/prod/pods/user-{:05}",
            (i * 37) % 1000
        ),
        _ => format!(
            "{base}/api/v1/namespaces/prod/pods?labelSelector=shard=s{}&limit=50",
            i % 16
        ),
    }
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<usize, String> {
    let r = client.get(url).send().await.map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("{url}: {}", r.status()));
    }
    r.bytes().await.map(|b| b.len()).map_err(|e| e.to_string())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    runbook::cli::install_crypto_provider();
    let path = std::env::args().nth(1).ok_or("usage: lab_scale SCENARIO")?;
    let t = Instant::now();
    let lab = Lab::from_scenario_file(&path)?;
    let loaded = t.elapsed();
    let pods = lab.list("pods", None).len();
    let nodes = lab.list("nodes", None).len().max(1);
    println!(
        "loaded {path}: {pods} pods, {nodes} nodes in {:.2} s, peak RSS {:.0} MiB (in-process)",
        loaded.as_secs_f64(),
        rss_peak_mib()
    );
    let (addr, server) = lab.serve("127.0.0.1:0").await?;
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder().build()?;

    for (what, sel) in [
        (
            "spec.nodeName=node-0001 (40 match)",
            "spec.nodeName=node-0001",
        ),
        ("status.phase=Failed (0 match)", "status.phase=Failed"),
    ] {
        let url = format!("{base}/api/v1/pods?fieldSelector={sel}");
        let mut lat = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            fetch(&client, &url).await?;
            lat.push(t.elapsed());
        }
        lat.sort();
        println!(
            "list of {pods} pods with fieldSelector {what}: p50 {:.2} ms, p99 {:.2} ms (200 requests over TCP)",
            pct(&lat, 0.5).as_secs_f64() * 1e3,
            pct(&lat, 0.99).as_secs_f64() * 1e3
        );
    }

    let rounds = 3;
    for round in 1..=rounds {
        let n = 600;
        let t = Instant::now();
        let mut errors = 0;
        for i in 0..n {
            if fetch(&client, &mixed(&base, i, nodes)).await.is_err() {
                errors += 1;
            }
        }
        let one = n as f64 / t.elapsed().as_secs_f64();

        let clients = 50;
        let per = 40;
        let t = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let client = client.clone();
                let base = base.clone();
                tokio::spawn(async move {
                    let mut errors = 0;
                    for k in 0..per {
                        if fetch(&client, &mixed(&base, c * per + k, nodes))
                            .await
                            .is_err()
                        {
                            errors += 1;
                        }
                    }
                    errors
                })
            })
            .collect();
        let mut conc_errors = 0;
        for task in tasks {
            conc_errors += task.await?;
        }
        let many = (clients * per) as f64 / t.elapsed().as_secs_f64();
        println!(
            "round {round}: 1 client {one:.0} req/s ({errors} errors); 50 clients {many:.0} req/s ({conc_errors} errors): {:.2}x",
            many / one
        );
    }
    server.shutdown().await;
    Ok(())
}
