//! Figures for the README, not a test of speed: run with
//!
//! ```sh
//! cargo test --release --test integration lint_bench -- --ignored --nocapture
//! ```
//!
//! It prints what templates, conditions and parsing cost on realistic data (the
//! seed scenario's pods, repeated to 200) and asserts only that the results are right.

use std::time::Instant;
#[test]
#[ignore = "a benchmark for the README's figures, not a test (scripts/test.sh skips it)"]
fn expression_and_parse_costs() {
    let lab = runbook::lab::Lab::seed();
    lab.reconcile();
    let base = lab.list("pods", None);
    let pods: Vec<serde_json::Value> = (0..200).map(|i| base[i % base.len()].clone()).collect();
    let bytes = serde_json::to_string(&pods).unwrap().len();
    eprintln!("200 lab pods = {bytes} bytes of JSON");
    let nodes = lab.list("nodes", None);
    let ctx = serde_json::json!({"params": {"namespace": "prod", "hub_selector": "component=hub"}, "lost_pods": pods, "bad_nodes": nodes, "item": pods[3].clone()});
    let n = 20000;
    let t = Instant::now();
    for _ in 0..n {
        runbook::expr::render("{{item.metadata.name}}", &ctx).unwrap();
    }
    eprintln!(
        "render item template, ctx with 200 pods: {:?}/call",
        t.elapsed() / n
    );
    let t = Instant::now();
    for _ in 0..n {
        runbook::expr::render("-n {{params.namespace}} -l {{params.hub_selector}}", &ctx).unwrap();
    }
    eprintln!("render params template: {:?}/call", t.elapsed() / n);
    let t = Instant::now();
    for _ in 0..n {
        runbook::expr::eval_bool(
            "item.status.phase == 'Unknown' || item.spec.nodeName == 'node-1'",
            &ctx,
        )
        .unwrap();
    }
    eprintln!("eval_bool on one pod: {:?}/call", t.elapsed() / n);
    let t = Instant::now();
    for _ in 0..200 {
        runbook::expr::eval_bool("size(lost_pods) > 0", &ctx).unwrap();
    }
    eprintln!(
        "eval_bool size(lost_pods), 200 lab pods: {:?}/call",
        t.elapsed() / 200
    );
    let w = "bad_nodes.exists(n, n.metadata.name == pod.spec.nodeName) && pod.status.phase == 'Unknown'";
    let t = Instant::now();
    for _ in 0..20 {
        for p in &pods {
            let mut c = ctx.as_object().unwrap().clone();
            c.insert("pod".into(), p.clone());
            runbook::expr::eval_bool(w, &serde_json::Value::Object(c)).unwrap();
        }
    }
    eprintln!(
        "where over 200 pods via eval_bool per pod (incl. ctx clone): {:?}/filter",
        t.elapsed() / 20
    );
    let t = Instant::now();
    for _ in 0..20 {
        runbook::expr::eval_bool_each(w, &ctx, &["object", "pod"], &pods).unwrap();
    }
    eprintln!(
        "where over 200 pods via eval_bool_each: {:?}/filter",
        t.elapsed() / 20
    );
    for f in [
        "hub-pvc-locked",
        "prometheus-node-lost",
        "ingress-on-cordoned-nodes",
    ] {
        let src =
            std::fs::read_to_string(format!("{}/runbooks/{f}.yaml", env!("CARGO_MANIFEST_DIR")))
                .unwrap();
        let t = Instant::now();
        for _ in 0..200 {
            runbook::runbook::parse_str(&src, std::path::Path::new("x")).unwrap();
        }
        eprintln!(
            "parse+validate {f}.yaml ({} lines): {:?}/call",
            src.lines().count(),
            t.elapsed() / 200
        );
    }
}
