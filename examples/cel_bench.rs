//! Microbenchmark (in-process, not end to end) of conditions over a large saved
//! list: the cost of `expr::eval_bool` when a condition names a list of 1 000 pods
//! (issue 18), each condition evaluated many times and the median time reported.
//!
//! The pods are the `Pod` objects of a scenario file (default
//! /tmp/p18/stuck.scenario.yaml, e.g. from scripts/gen-scenario.py); without one,
//! 1 000 pods of the same shape are generated.
//!
//! Usage: cargo run --release --example cel_bench [-- SCENARIO.yaml [ROUNDS]]

use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "/tmp/p18/stuck.scenario.yaml".to_owned());
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(200);
    let pods = load(&path).unwrap_or_else(generated);
    let n = pods.len();
    let ctx = json!({ "stuck": pods, "params": { "phase": "Running" } });
    let last = format!("user-{:05}", n - 1);
    let conditions = [
        format!("size(stuck) == {n}"),
        "stuck.all(p, p.status.phase == 'Running')".to_owned(),
        "stuck.exists(p, p.metadata.name == 'no-such-pod')".to_owned(),
        "stuck[3].metadata.name == 'user-00003'".to_owned(),
        format!("stuck.filter(p, p.spec.nodeName == 'node-0000').size() == {n}"),
        format!("'{last}' in stuck.map(p, p.metadata.name)"),
    ];
    println!("{n} pods from {path}; median of {rounds} evaluations each (eval_bool)");
    for c in &conditions {
        // Checked once: a benchmark of a failing condition measures nothing.
        let value = runbook::expr::eval_bool(c, &ctx).unwrap_or_else(|e| panic!("{c}: {e}"));
        let t = median(rounds, || {
            let _ = runbook::expr::eval_bool(c, &ctx);
        });
        println!("{:>10.1} µs  {c}  (= {value})", t.as_secs_f64() * 1e6);
    }
    // The kube `where` path: one condition per listed object, context converted once.
    let items = ctx["stuck"].as_array().cloned().unwrap_or_default();
    let cond = "object.status.phase == params.phase && !has(pod.metadata.deletionTimestamp)";
    let t = median(rounds.div_ceil(4), || {
        let _ = runbook::expr::eval_bool_each(cond, &ctx, &["object", "pod"], &items);
    });
    println!(
        "{:>10.1} µs  eval_bool_each over {n} items: {cond}",
        t.as_secs_f64() * 1e6
    );
}

fn median(rounds: usize, mut f: impl FnMut()) -> Duration {
    f();
    let mut times: Vec<Duration> = (0..rounds.max(1))
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// The `Pod` objects of a scenario file, as JSON.
fn load(path: &str) -> Option<Vec<Value>> {
    let text = std::fs::read_to_string(path).ok()?;
    let doc: Value = serde_saphyr::from_str(&text).ok()?;
    let pods: Vec<Value> = doc
        .get("objects")?
        .as_array()?
        .iter()
        .filter(|o| o.get("kind").and_then(Value::as_str) == Some("Pod"))
        .cloned()
        .collect();
    (!pods.is_empty()).then_some(pods)
}

fn generated() -> Vec<Value> {
    (0..1000)
        .map(|i| {
            json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": format!("user-{i:05}"),
                    "namespace": "prod",
                    "creationTimestamp": "2018-03-13T00:10:00Z",
                    "labels": {"component": "singleuser-server", "app": "jupyterhub", "shard": format!("s{}", i % 8)}
                },
                "spec": {
                    "nodeName": "node-0000",
                    "containers": [{"name": "notebook", "image": "gcr.io/binder-prod/r2d-binder-examples-r:1"}]
                },
                "status": {
                    "phase": "Running",
                    "podIP": format!("10.8.{}.{}", i / 250, i % 250 + 2),
                    "containerStatuses": [{"name": "notebook", "ready": true, "restartCount": 0,
                        "state": {"running": {"startedAt": "2018-03-13T00:10:10Z"}}}]
                }
            })
        })
        .collect()
}
