//! Benchmark of the lab's API server (run by scripts/bench-lab.sh, release build).
//!
//! 1. 1 000 pods on 20 nodes; list all pods with `fieldSelector=spec.nodeName=…`
//!    over TCP (what `kubectl drain` and the runbooks do), as JSON and as a Table.
//! 2. 50 concurrent clients, each making 40 requests (list with selectors, get,
//!    table list), counting errors.
//! 3. Force-deleting 1 000 pods stuck Terminating on a lost node, one DELETE each
//!    (`gracePeriodSeconds: 0`, what a runbook's for-each does), through `Lab::client`
//!    (in-process) and over TCP: the lab's cost per write with 1 000 pods.
//! 4. 10 000 pods (100 nodes with declared capacity from a scenario, every pod with
//!    requests, created unbound through the API, a Service over 1 000 of them):
//!    schedule, start, then list with a field selector over TCP. `--big-only` runs
//!    only this part. (The scenario reader's 100 000-node budget refuses 10 000 pods
//!    written out in one YAML file.)

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
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

const LOST: &str = "node-lost";

/// CPU time of the calling thread: the lab's own cost of a request, unaffected by
/// other processes competing for the CPU.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Serve `reqs` one by one straight through the lab's router on a dedicated
/// single-threaded runtime, measuring the thread CPU time of each (request parsing,
/// the store, the controllers, the response body): the lab time of a request.
fn lab_cpu_times(
    lab: &Lab,
    reqs: Vec<http::Request<axum::body::Body>>,
) -> Result<Vec<Duration>, String> {
    use tower::ServiceExt;
    let lab = lab.clone();
    let worker = std::thread::spawn(move || -> Result<Vec<Duration>, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let mut out = Vec::new();
            for req in reqs {
                let router = lab.router();
                let c0 = thread_cpu();
                let resp = router.oneshot(req).await.map_err(|e| e.to_string())?;
                let code = resp.status();
                axum::body::to_bytes(resp.into_body(), 64 << 20)
                    .await
                    .map_err(|e| e.to_string())?;
                out.push(thread_cpu() - c0);
                if !code.is_success() {
                    return Err(format!("lab answered {code}"));
                }
            }
            Ok(out)
        })
    });
    worker
        .join()
        .map_err(|_| "the measuring thread panicked".to_string())?
}

/// 1 000 pods on a node that was lost more than 5 minutes ago: the taint-eviction
/// controller deleted them gracefully, so they are stuck Terminating (§1.3), plus
/// 19 healthy nodes.
fn stuck_lab() -> Result<Lab, Box<dyn std::error::Error>> {
    let lab = Lab::empty();
    lab.set_speed(0.0);
    for n in 0..19 {
        lab.create(
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("node-{n}")},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        )?;
    }
    lab.create(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": LOST},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
    )?;
    let t = Instant::now();
    for i in 0..1000 {
        lab.create(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("stuck-{i:04}"), "namespace": "prod", "labels": {"app": "stuck"}},
            "spec": {"nodeName": LOST, "containers": [{"name": "c", "image": "busybox"}]}}))?;
    }
    let created = t.elapsed();
    let t = Instant::now();
    lab.lose_node(LOST);
    let lost = t.elapsed();
    let t = Instant::now();
    lab.advance(Duration::from_secs(6 * 60));
    println!(
        "setup: 1000 creates {}, node lost (1000 pods NodeLost) {}, advance 6 min (1000 graceful deletes) {}",
        ms(created),
        ms(lost),
        ms(t.elapsed())
    );
    let terminating = lab
        .list("pods", Some("prod"))
        .iter()
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_some())
        .count();
    if terminating != 1000 {
        return Err(format!("expected 1000 Terminating pods, found {terminating}").into());
    }
    Ok(lab)
}

async fn force_delete_all(
    lab: &Lab,
    client: kube::Client,
    how: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let pods: Api<Pod> = Api::namespaced(client, "prod");
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        propagation_policy: Some(kube::api::PropagationPolicy::Background),
        ..Default::default()
    };
    let mut lat = Vec::new();
    let t = Instant::now();
    for i in 0..1000 {
        let t = Instant::now();
        pods.delete(&format!("stuck-{i:04}"), &dp).await?;
        lat.push(t.elapsed());
    }
    let wall = t.elapsed();
    let left = lab.list("pods", Some("prod")).len();
    if left != 0 {
        return Err(format!("{left} pods left after force-deleting all").into());
    }
    report(
        &format!("force delete 1000 Terminating pods, one DELETE each, {how}"),
        lat,
    );
    println!(
        "  {how}: 1000 DELETEs in {} ({:.3} ms per DELETE; kubectl per pod ~45 ms => {:.0}x)",
        ms(wall),
        wall.as_secs_f64() * 1000.0 / 1000.0,
        0.045 * 1000.0 / wall.as_secs_f64()
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    runbook::cli::install_crypto_provider();
    let only_delete = std::env::args().any(|a| a == "--force-delete-only");
    if std::env::args().any(|a| a == "--big-only") {
        return big_cluster().await;
    }

    let t = Instant::now();
    let lab = stuck_lab()?;
    println!(
        "created 1000 pods on a lost node, advanced 6 min (all Terminating) in {}",
        ms(t.elapsed())
    );
    let reqs = (0..1000)
        .map(|i| {
            http::Request::delete(format!("/api/v1/namespaces/prod/pods/stuck-{i:04}"))
                .header("content-type", "application/json")
                .body(axum::body::Body::from(
                    r#"{"gracePeriodSeconds":0,"propagationPolicy":"Background"}"#,
                ))
        })
        .collect::<Result<Vec<_>, _>>()?;
    report(
        "force delete 1000 Terminating pods: lab CPU time per DELETE",
        lab_cpu_times(&lab, reqs)?,
    );
    let lab = stuck_lab()?;
    force_delete_all(&lab, lab.client(), "in-process (Lab::client)").await?;
    let lab = stuck_lab()?;
    let (addr, server) = lab.serve("127.0.0.1:0").await?;
    let client = kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse()?))?;
    force_delete_all(&lab, client, "over TCP").await?;
    server.shutdown().await;
    if only_delete {
        return Ok(());
    }

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
    let reqs = (0..300)
        .map(|i| {
            http::Request::get(format!(
                "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-{}",
                i % 20
            ))
            .body(axum::body::Body::empty())
        })
        .collect::<Result<Vec<_>, _>>()?;
    report(
        "  the same list: lab CPU time per request",
        lab_cpu_times(&lab, reqs)?,
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
    big_cluster().await
}

/// Part 4: 10 000 pods with requests on 100 nodes with capacity, loaded from a scenario.
async fn big_cluster() -> Result<(), Box<dyn std::error::Error>> {
    use std::fmt::Write as _;
    let mut y = String::from("version: 1\nname: big\nobjects:\n");
    for n in 0..100 {
        writeln!(
            y,
            "  - {{ apiVersion: v1, kind: Node, metadata: {{ name: node-{n} }}, status: {{ allocatable: {{ cpu: \"32\", memory: 128Gi, pods: \"110\" }} }} }}"
        )?;
    }
    writeln!(
        y,
        "  - {{ apiVersion: v1, kind: Service, metadata: {{ name: app-0, namespace: prod }}, spec: {{ selector: {{ app: app-0 }}, ports: [ {{ port: 80 }} ] }} }}"
    )?;
    // The scenario reader's budget (100 000 YAML nodes) refuses 10 000 pods written
    // out in one file, so the nodes and the service come from a scenario and the
    // pods through the API: each create is scheduled and started at once.
    let t = Instant::now();
    let lab = Lab::from_scenario_str(&y)?;
    lab.set_speed(0.0);
    for i in 0..10_000 {
        lab.create(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("pod-{i:05}"), "namespace": "prod", "labels": {"app": format!("app-{}", i % 10)}},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}}}]}}))?;
    }
    let loaded = t.elapsed();
    let pods = lab.list("pods", Some("prod"));
    let running = pods
        .iter()
        .filter(|p| p["status"]["phase"] == "Running")
        .count();
    let on_7 = pods
        .iter()
        .filter(|p| p["spec"]["nodeName"] == "node-7")
        .count();
    let ready_eps = lab
        .get("endpoints", Some("prod"), "app-0")
        .and_then(|e| e.pointer("/subsets/0/addresses").cloned())
        .and_then(|a| a.as_array().map(Vec::len))
        .unwrap_or(0);
    println!(
        "10 000 pods created one by one on a 100-node scenario, each scheduled and started: {} in all ({running} Running, {on_7} on node-7, {ready_eps} endpoints behind app-0)",
        ms(loaded)
    );
    if running != 10_000 || ready_eps != 1000 {
        return Err(format!(
            "expected 10000 Running and 1000 endpoints, got {running} and {ready_eps}"
        )
        .into());
    }
    let t = Instant::now();
    lab.reconcile();
    println!(
        "a full reconcile pass over the 10 000 pods: {}",
        ms(t.elapsed())
    );
    let (addr, server) = lab.serve("127.0.0.1:0").await?;
    let client = kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse()?))?;
    let api: Api<Pod> = Api::all(client);
    for _ in 0..5 {
        api.list(&ListParams::default().fields("spec.nodeName=node-7"))
            .await?;
    }
    let mut sel = Vec::new();
    for i in 0..100 {
        let t = Instant::now();
        let l = api
            .list(&ListParams::default().fields(&format!("spec.nodeName=node-{}", i % 100)))
            .await?;
        sel.push(t.elapsed());
        assert_eq!(l.items.len(), 100);
    }
    report(
        "list 10000 pods, fieldSelector spec.nodeName (100 match), JSON",
        sel,
    );
    // One more pod that fits nowhere: what a write costs the scheduler with 10 000 pods.
    let t = Instant::now();
    lab.create(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "too-big", "namespace": "prod"},
        "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"memory": "1Ti"}}}]}}))?;
    println!(
        "create an unschedulable pod among 10 000 (FailedScheduling over 100 nodes): {}",
        ms(t.elapsed())
    );
    server.shutdown().await;
    Ok(())
}
