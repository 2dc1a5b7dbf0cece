//! Benchmark of the lab's API server (run by scripts/bench-lab.sh, release build).
//!
//! 1. 1 000 pods on 20 nodes; list all pods with `fieldSelector=spec.nodeName=…`
//!    over TCP (what `kubectl drain` and the runbooks do), as JSON and as a Table.
//! 2. 50 concurrent clients, each making 40 requests (list with selectors, get,
//!    table list), counting errors.

use std::time::{Duration, Instant};

use kube::api::{Api, ListParams};
use runbook::lab::Lab;
use serde_json::json;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name:<58} n={:<5} p50={:<10} p90={:<10} p99={:<10} max={}",
        samples.len(),
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.9)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap())
    );
}

async fn table_list(client: &kube::Client, path: &str) -> Result<usize, kube::Error> {
    let req = http::Request::get(path)
        .header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .map_err(kube::Error::HttpError)?;
    let text = client.request_text(req).await?;
    Ok(text.len())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    runbook::cli::install_crypto_provider();
    let lab = Lab::empty();
    lab.set_speed(0.0);
    for n in 0..20 {
        lab.create(
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("node-{n}")},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        )?;
    }
    let t = Instant::now();
    for i in 0..1000 {
        lab.create(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("pod-{i:04}"), "namespace": "prod", "labels": {"app": format!("app-{}", i % 10)}},
            "spec": {"nodeName": format!("node-{}", i % 20), "containers": [{"name": "c", "image": "busybox"}]}}))?;
    }
    println!("created 1000 pods on 20 nodes in {}", ms(t.elapsed()));

    let (addr, server) = lab.serve("127.0.0.1:0").await?;
    let config = kube::Config::new(format!("http://{addr}").parse()?);
    let client = kube::Client::try_from(config)?;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::all(client.clone());

    // Warm-up.
    for _ in 0..20 {
        pods.list(&ListParams::default().fields("spec.nodeName=node-7"))
            .await?;
    }
    let mut sel = Vec::new();
    for i in 0..300 {
        let t = Instant::now();
        let l = pods
            .list(&ListParams::default().fields(&format!("spec.nodeName=node-{}", i % 20)))
            .await?;
        sel.push(t.elapsed());
        assert_eq!(l.items.len(), 50);
    }
    report(
        "list 1000 pods, fieldSelector spec.nodeName (50 match), JSON",
        sel,
    );

    let mut all = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let l = pods.list(&ListParams::default()).await?;
        all.push(t.elapsed());
        assert_eq!(l.items.len(), 1000);
    }
    report("list 1000 pods, no selector (all returned), JSON", all);

    let mut tab = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        table_list(
            &client,
            &format!("/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-{}", i % 20),
        )
        .await?;
        tab.push(t.elapsed());
    }
    report("list 1000 pods, fieldSelector, Table (kubectl get)", tab);

    // 50 concurrent clients.
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..50 {
        let client = kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse()?))?;
        tasks.push(tokio::spawn(async move {
            let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::all(client.clone());
            let ns: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), "prod");
            let mut lat = Vec::new();
            let mut errors = 0usize;
            for i in 0..40 {
                let t = Instant::now();
                let r = match i % 4 {
                    0 => pods
                        .list(
                            &ListParams::default()
                                .fields(&format!("spec.nodeName=node-{}", (c + i) % 20)),
                        )
                        .await
                        .map(|_| ()),
                    1 => ns
                        .list(&ListParams::default().labels(&format!("app=app-{}", i % 10)))
                        .await
                        .map(|_| ()),
                    2 => ns
                        .get(&format!("pod-{:04}", (c * 40 + i) % 1000))
                        .await
                        .map(|_| ()),
                    _ => table_list(
                        &client,
                        "/api/v1/namespaces/prod/pods?fieldSelector=spec.nodeName%3Dnode-3",
                    )
                    .await
                    .map(|_| ()),
                };
                if r.is_err() {
                    errors += 1;
                }
                lat.push(t.elapsed());
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await?;
        lat.extend(l);
        errors += e;
    }
    let wall = t.elapsed();
    let n = lat.len();
    report("50 concurrent clients x 40 mixed requests", lat);
    println!(
        "concurrent: {n} requests in {} ({:.0} req/s), errors: {errors}",
        ms(wall),
        n as f64 / wall.as_secs_f64()
    );
    server.shutdown().await;
    if errors > 0 {
        return Err(format!("{errors} requests failed").into());
    }
    Ok(())
}
