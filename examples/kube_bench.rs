//! Benchmark of the kube provider (run by scripts/bench-kube.sh, release build):
//! force-deleting pods stuck on a lost node, against the lab served over TCP.
//!
//! A. the runbook way, rate limit lifted (qps 0): one `get` finds the stuck pods,
//!    then one `delete … grace_period: 0, force: true` op per pod, 8 at a time (the
//!    engine's default `for_each` concurrency), through `connect()` and a kubeconfig;
//! B. the same with one op: `delete: pods, fields: spec.nodeName=…` (32 in flight);
//! C. A at the default limit (20 qps) on fewer pods, with the largest number of
//!    requests the lab saw in any one-second window;
//! D. the seed's method: its Python loop calling `kubectl delete pod NAME
//!    --grace-period=0 --force` once per pod (a real kubectl, `--kubectl PATH`), timed
//!    on the first `--sample` pods of a lab of the same size and extrapolated to the
//!    full count.
//!
//! Usage: kube_bench [--pods 1000] [--limited 200] [--sample 50] [--kubectl PATH]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use runbook::lab::{self, Lab};
use runbook::providers::kube::{KubeConnect, KubeProvider, connect};
use runbook::providers::{Defaults, ExecCtx, Provider};
use runbook::runbook::model::{KubeOp, OpRef};
use serde_json::{Value, json};

const NODE: &str = "gke-prod-a-ssd-pool-32-134a959a-lost";
const STUCK: &str = "pod.status.phase == 'Unknown' || (has(pod.status.reason) && pod.status.reason == 'NodeLost') || has(pod.metadata.deletionTimestamp)";

struct Args {
    pods: usize,
    limited: usize,
    sample: usize,
    kubectl: Option<PathBuf>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        pods: 1000,
        limited: 200,
        sample: 50,
        kubectl: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--pods" => a.pods = val()?.parse().map_err(|e| format!("--pods: {e}"))?,
            "--limited" => a.limited = val()?.parse().map_err(|e| format!("--limited: {e}"))?,
            "--sample" => a.sample = val()?.parse().map_err(|e| format!("--sample: {e}"))?,
            "--kubectl" => a.kubectl = Some(PathBuf::from(val()?)),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

/// A lab whose node `NODE` was lost 10 minutes ago with `n` pods on it.
fn lost_node_lab(n: usize) -> Result<Lab, Box<dyn std::error::Error>> {
    let lab = Lab::empty();
    lab.set_speed(0.0);
    lab.create(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
    )?;
    for i in 0..n {
        lab.create(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("jupyter-user-{i:04}"), "namespace": "prod",
                "labels": {"component": "singleuser-server"}},
            "spec": {"nodeName": NODE, "containers": [{"name": "notebook", "image": "r2d"}]},
            "status": {"phase": "Running"}}))?;
    }
    lab.lose_node(NODE);
    lab.advance(Duration::from_secs(600));
    Ok(lab)
}

/// A kube op as a runbook writes it (parsed by the real parser).
fn op(kube: &str) -> KubeOp {
    let src = format!(
        "version: 1\nname: b\ntitle: b\nsteps:\n  - action: a\n    id: a\n    for_each: \"[1]\"\n    kube: {kube}\n"
    );
    let rb = runbook::runbook::parse_str(&src, Path::new("bench.yaml"))
        .unwrap_or_else(|d| panic!("bench op does not parse: {d:?}"));
    rb.steps[0].kube.clone().expect("a kube op")
}

async fn exec(p: &KubeProvider, kube: &str, vars: Value) -> Result<Value, String> {
    let op = op(kube);
    let r = p
        .resolve(OpRef::Kube(&op), &vars, &Defaults::default())
        .map_err(|e| e.to_string())?;
    p.execute(&r, &ExecCtx::new(vars))
        .await
        .map_err(|e| e.to_string())
}

/// The runbook way: find the stuck pods, then one force-delete op per pod.
async fn per_pod(p: &KubeProvider, concurrency: usize) -> Result<(usize, Duration), String> {
    let t = Instant::now();
    let found = exec(
        p,
        &format!(r#"{{get: pods, namespace: prod, where: "{STUCK}"}}"#),
        json!({}),
    )
    .await?;
    let items = found.as_array().cloned().unwrap_or_default();
    let n = items.len();
    let results: Vec<Result<Value, String>> = futures::stream::iter(items.into_iter().map(|item| {
        let p = p.clone();
        async move {
            exec(
                &p,
                r#"{delete: pods, name: "{{item.metadata.name}}", namespace: "{{item.metadata.namespace}}", grace_period: 0, force: true}"#,
                json!({"item": item}),
            )
            .await
        }
    }))
    .buffer_unordered(concurrency)
    .collect()
    .await;
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        return Err(e);
    }
    Ok((n, t.elapsed()))
}

struct Served {
    lab: Lab,
    server: lab::LabServer,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

async fn serve(n: usize) -> Result<Served, Box<dyn std::error::Error>> {
    let lab = lost_node_lab(n)?;
    let (addr, server) = lab.serve("127.0.0.1:0").await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    lab::write_kubeconfig(addr, &kubeconfig)?;
    Ok(Served {
        lab,
        server,
        kubeconfig,
        _dir: dir,
    })
}

async fn provider(s: &Served, qps: f64) -> Result<KubeProvider, Box<dyn std::error::Error>> {
    Ok(connect(&KubeConnect {
        kubeconfig: Some(s.kubeconfig.clone()),
        qps,
        ..Default::default()
    })
    .await?)
}

fn remaining(lab: &Lab) -> usize {
    lab.list("pods", Some("prod")).len()
}

/// The largest number of requests in any one-second window of the lab's log.
fn max_per_second(lab: &Lab) -> usize {
    let at: Vec<_> = lab.requests().iter().map(|r| r.at).collect();
    (0..at.len())
        .map(|i| {
            at[i..]
                .iter()
                .take_while(|t| **t - at[i] < chrono::Duration::seconds(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// The seed's Python loop (seed/2018-03-13-pvc-hub-locked.md, 13:34), verbatim in
/// spirit: one `kubectl delete pod` process per pod.
const SEED_LOOP: &str = r#"
import subprocess, sys, time
kubectl = sys.argv[1]
names = sys.stdin.read().split()
t = time.time()
for nm in names:
    cmd = [kubectl, '--namespace=prod', 'delete', 'pod', nm, '--grace-period=0', '--force']
    subprocess.check_output(cmd, stderr=subprocess.STDOUT)
print(time.time() - t)
"#;

/// Time the seed's loop on the first `sample` of `total` stuck pods (a lab of the
/// same size as A and B, so the server does the same work per request).
async fn kubectl_loop(
    kubectl: &Path,
    total: usize,
    sample: usize,
) -> Result<(usize, Duration), Box<dyn std::error::Error>> {
    let s = serve(total).await?;
    let names: Vec<String> = s
        .lab
        .list("pods", Some("prod"))
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .take(sample)
        .collect();
    let home = tempfile::tempdir()?;
    let (kc, home_path) = (s.kubeconfig.clone(), home.path().to_path_buf());
    let env = move |c: &mut std::process::Command| {
        c.env("KUBECONFIG", &kc).env("HOME", &home_path);
    };
    // Fill kubectl's discovery cache first, as on an operator's laptop.
    let mut warm = std::process::Command::new(kubectl);
    warm.args(["get", "pods", "-n", "prod"])
        .stdout(std::process::Stdio::null());
    env(&mut warm);
    let kubectl = kubectl.to_path_buf();
    let names_text = names.join("\n");
    let out = tokio::task::spawn_blocking(move || -> std::io::Result<std::process::Output> {
        warm.status()?;
        let mut c = std::process::Command::new("python3");
        c.arg("-c").arg(SEED_LOOP).arg(&kubectl);
        env(&mut c);
        c.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let mut child = c.spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin.write_all(names_text.as_bytes())?;
        }
        child.wait_with_output()
    })
    .await??;
    if !out.status.success() {
        return Err(format!(
            "the kubectl loop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let secs: f64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
    let left = remaining(&s.lab);
    s.server.shutdown().await;
    if left != total - names.len() {
        return Err(format!(
            "{left} pods left after the kubectl loop, expected {}",
            total - names.len()
        )
        .into());
    }
    Ok((names.len(), Duration::from_secs_f64(secs)))
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    runbook::cli::install_crypto_provider();
    let a = args()?;
    println!("force-deleting pods stuck on a lost node; lab served over TCP on 127.0.0.1");

    // A
    let s = serve(a.pods).await?;
    let p = provider(&s, 0.0).await?;
    let (found, took_a) = per_pod(&p, 8).await?;
    assert_eq!(found, a.pods, "every pod on the lost node is found stuck");
    assert_eq!(remaining(&s.lab), 0);
    println!(
        "A runbook, qps 0, one op per pod (8 at a time):  {} pods in {}  ({:.0} pods/s)",
        found,
        secs(took_a),
        found as f64 / took_a.as_secs_f64()
    );
    s.server.shutdown().await;

    // B
    let s = serve(a.pods).await?;
    let p = provider(&s, 0.0).await?;
    let t = Instant::now();
    let r = exec(
        &p,
        &format!("{{delete: pods, namespace: prod, fields: spec.nodeName={NODE}, grace_period: 0, force: true}}"),
        json!({}),
    )
    .await?;
    let took_b = t.elapsed();
    let deleted = r["deleted"].as_array().map_or(0, Vec::len);
    assert_eq!(deleted, a.pods);
    assert_eq!(remaining(&s.lab), 0);
    println!(
        "B runbook, qps 0, one op by field selector:      {} pods in {}  ({:.0} pods/s)",
        deleted,
        secs(took_b),
        deleted as f64 / took_b.as_secs_f64()
    );
    s.server.shutdown().await;

    // C
    let s = serve(a.limited).await?;
    let p: KubeProvider = provider(&s, runbook::providers::kube::DEFAULT_QPS).await?;
    let (found, took_c) = per_pod(&p, 8).await?;
    let peak = max_per_second(&s.lab);
    println!(
        "C runbook, qps 20 (default), one op per pod:     {} pods in {}  ({:.1} req/s; busiest 1-s window in the lab's log: {} requests, limit 20)",
        found,
        secs(took_c),
        (found + 1) as f64 / took_c.as_secs_f64(),
        peak
    );
    assert!(
        peak <= 20,
        "the rate limit was exceeded: {peak} requests in one second"
    );
    s.server.shutdown().await;

    // D
    match &a.kubectl {
        None => println!("D seed's kubectl loop: skipped (pass --kubectl PATH)"),
        Some(k) => {
            let (n, took) = kubectl_loop(k, a.pods, a.sample).await?;
            let per = took.as_secs_f64() / n as f64;
            let projected = Duration::from_secs_f64(per * a.pods as f64);
            println!(
                "D seed's Python loop, one kubectl per pod:       {n} pods in {}  ({:.1} ms per pod; {} pods extrapolated: {})",
                secs(took),
                per * 1000.0,
                a.pods,
                secs(projected)
            );
            println!(
                "ratio (seed loop / runbook, qps 0): per-pod ops {:.0}x, one selector op {:.0}x  (target >= 50x)",
                projected.as_secs_f64() / took_a.as_secs_f64(),
                projected.as_secs_f64() / took_b.as_secs_f64()
            );
        }
    }
    Ok(())
}
