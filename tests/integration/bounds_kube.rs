//! Issue 13 items 10 and 14, kube side: a namespace that is not a DNS label (`..`)
//! is refused before any request is sent, and `--kube-qps` out of range is a usage
//! error instead of a panic.

use std::process::{Command, Stdio};

use runbook::lab::Lab;

#[tokio::test]
async fn a_namespace_like_dotdot_is_refused_before_anything_is_sent() {
    let lab = Lab::seed();
    let (addr, server) = lab.serve("127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    runbook::lab::write_kubeconfig(addr, &kubeconfig).unwrap();
    let file = dir.path().join("ns.yaml");
    std::fs::write(
        &file,
        "version: 1\nname: ns\ntitle: List pods in a namespace\nparams:\n  ns: { required: true }\nsteps:\n  - action: List\n    id: list\n    gate: auto\n    kube: { get: pods, namespace: \"{{params.ns}}\" }\n",
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_runbook"))
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("run")
            .arg(&file)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["-p", "ns=.."])
            .env("USER", "ana")
            .stdin(Stdio::null())
            .output()
            .expect("the binary runs")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_ne!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("not a valid namespace name"),
        "{stdout}{stderr}"
    );
    let sent: Vec<String> = lab.requests().into_iter().map(|r| r.path).collect();
    assert!(
        !sent.iter().any(|p| p.contains("/namespaces/../")),
        "sent {sent:?}"
    );
    server.shutdown().await;
}

#[test]
fn kube_qps_out_of_range_is_a_usage_error_not_a_panic() {
    for qps in ["1e-20", "-1", "1e300", "NaN"] {
        let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
            .args(["run", "/nonexistent.yaml", &format!("--kube-qps={qps}")])
            .stdin(Stdio::null())
            .output()
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--kube-qps {qps}: {stderr}");
        assert!(stderr.contains("qps"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
