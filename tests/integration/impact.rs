//! Impact at the gate (issue 15): a delete by selector shows, in its plan and in the
//! dry run, the objects it would delete and their count; the plan digest covers them,
//! and execution deletes nothing outside the approved list.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use runbook::providers::ExecCtx;
use serde_json::json;

use crate::support::cli::{Cli, Output};
use crate::support::kube::{provider, run, run_with, scenario};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/impact")
        .join(name)
}

/// `runbook lab` on the hubs scenario; its port, the child and the kubeconfig path.
fn lab(dir: &Path) -> (u16, std::process::Child, PathBuf) {
    let kc = dir.join("kubeconfig");
    let mut child = Cli::new()
        .state_dir(dir.join("lab-state"))
        .arg("lab")
        .arg(fixture("hubs.scenario.yaml"))
        .args(["--port", "0", "--write-kubeconfig"])
        .arg(&kc)
        .spawn();
    let mut lines = BufReader::new(child.stdout.take().expect("the lab's stdout")).lines();
    let mut port = None;
    for line in lines.by_ref() {
        let line = line.expect("a line");
        if let Some(p) = line.strip_prefix("port: ") {
            port = Some(p.parse().expect("a port"));
        }
        if line.starts_with("export KUBECONFIG=") {
            break;
        }
    }
    // Keep reading what it prints: a closed pipe would end it.
    std::thread::spawn(move || lines.for_each(drop));
    (port.expect("the lab prints its port"), child, kc)
}

fn relaunch(dir: &Path, kc: &Path, extra: &[&str]) -> Output {
    Cli::new()
        .state_dir(dir.join("state"))
        .arg("run")
        .arg(fixture("relaunch-hubs.yaml"))
        .arg("--kubeconfig")
        .arg(kc)
        .args(extra)
        .run()
}

fn digest(out: &str) -> String {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("plan digest "))
        .unwrap_or_else(|| panic!("no plan digest in:\n{out}"))
        .to_string()
}

/// POST a pod to the lab over HTTP, as kubectl create would.
fn create_pod(port: u16, name: &str) {
    let body = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"component": "hub"}},
        "spec": {"nodeName": "n2", "containers": [{"name": "hub", "image": "hub:1"}]}})
    .to_string();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the lab answers");
    write!(
        s,
        "POST /api/v1/namespaces/prod/pods HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("the request is sent");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("an answer");
    assert!(
        resp.starts_with("HTTP/1.0 201") || resp.starts_with("HTTP/1.1 201"),
        "{resp}"
    );
}

const SEVEN: &str =
    "would delete 7 pods: hub-1, hub-2, hub-3, hub-4, hub-5 (and 2 more); ages 4h–2d, on 3 nodes";

#[test]
fn a_selector_delete_shows_its_count_names_ages_and_nodes_and_its_digest_covers_them() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (port, mut child, kc) = lab(dir.path());

    // The dry run lists what matches, and deletes nothing.
    let dry = relaunch(dir.path(), &kc, &["--dry-run"]);
    dry.success();
    let text = dry.stderr.clone();
    assert!(
        text.contains("kubectl delete pods -n prod -l component=hub"),
        "{text}"
    );
    assert!(text.contains(SEVEN), "{text}");
    assert!(
        !text.contains("proxy-1"),
        "the proxy pod does not match:\n{text}"
    );

    // The gate shows the same, and pauses without an approval.
    let gate = relaunch(dir.path(), &kc, &[]);
    gate.code(3);
    let first = gate.stderr.clone();
    assert!(first.contains(SEVEN), "{first}");
    assert_eq!(
        digest(&first),
        digest(&text),
        "the same objects, the same plan"
    );

    // An eighth pod matches now: another plan, another digest.
    create_pod(port, "hub-8");
    let again = relaunch(dir.path(), &kc, &[]);
    again.code(3);
    let second = again.stderr.clone();
    assert!(
        second.contains("would delete 8 pods: hub-1, hub-2, hub-3, hub-4, hub-5 (and 3 more)"),
        "{second}"
    );
    assert_ne!(
        digest(&first),
        digest(&second),
        "the digest covers the objects"
    );

    child.kill().expect("the lab stops");
    child.wait().expect("the lab ends");
}

const HUBS: &str = include_str!("../fixtures/impact/hubs.scenario.yaml");

#[tokio::test]
async fn a_delete_refuses_objects_the_approved_plan_did_not_list() {
    let lab = scenario(HUBS);
    let p = provider(&lab);
    let op = "{delete: pods, namespace: prod, selector: component=hub}";
    let mut cx = ExecCtx::new(json!({}));
    cx.approved = Some((1..=6).map(|i| format!("hub-{i}")).collect());
    let ran = run_with(&p, op, cx).await;
    let (message, _) = ran.err();
    assert!(
        message.starts_with(
            "1 pod matches now that the approved plan did not list (hub-7): nothing was deleted"
        ),
        "{message}"
    );
    assert!(
        ran.calls.iter().all(|c| c.method != "DELETE"),
        "nothing deleted: {:?}",
        ran.trace()
    );
    let left = run(&p, "{get: pods, namespace: prod, selector: component=hub}").await;
    assert_eq!(left.ok().as_array().map(Vec::len), Some(7));

    // The approved list covering what matches (and more, gone since): it deletes.
    let mut cx = ExecCtx::new(json!({}));
    cx.approved = Some((1..=9).map(|i| format!("hub-{i}")).collect());
    let ran = run_with(&p, op, cx).await;
    assert_eq!(ran.ok()["deleted"].as_array().map(Vec::len), Some(7));
}
