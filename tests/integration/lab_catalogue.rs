//! The incidents of the catalogue (/work/shared/incidents/catalogue.md) that need the
//! lab's capacity, autoscaling, quotas, sites, logs, crash loops, disk pressure and
//! node addresses, each as a scenario (tests/fixtures/catalogue/, or beside its
//! runbook in runbooks/) checked with kubectl 1.37 against what the report describes.

use std::path::PathBuf;
use std::time::Duration;

use runbook::lab::Lab;
use tower::ServiceExt;

use crate::support::kubectl::Kubectl;

fn scenario(path: &str) -> Lab {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    Lab::from_scenario_file(&p).unwrap_or_else(|e| panic!("{e}"))
}

fn catalogue(name: &str) -> Lab {
    scenario(&format!("tests/fixtures/catalogue/{name}.scenario.yaml"))
}

#[test]
fn every_catalogue_scenario_loads() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/catalogue");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.to_string_lossy().ends_with(".scenario.yaml") {
            Lab::from_scenario_file(&p).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 4, "{n} scenarios");
}

#[test]
fn simultaneous_launches_leave_six_pods_pending_at_the_node_limit() {
    let lab = catalogue("2020-07-09-simultaneous-launches");
    lab.set_speed(0.0);
    lab.advance(Duration::from_secs(15));
    assert_eq!(lab.metric("pending_user_pods"), Some(6.0));
    assert_eq!(lab.metric("user_pool_nodes"), Some(3.0));
}

#[tokio::test]
#[ignore = "needs kubectl (scripts/test.sh installs it)"]
async fn kubectl_2020_07_09_pending_pods_with_failed_scheduling_and_no_scale_up() {
    let lab = catalogue("2020-07-09-simultaneous-launches");
    lab.set_speed(0.0);
    lab.advance(Duration::from_secs(15));
    let k = Kubectl::start(&lab).await;
    let out = k
        .ok(&[
            "get",
            "pods",
            "-n",
            "prod",
            "--field-selector",
            "status.phase=Pending",
        ])
        .await;
    assert_eq!(
        out.lines().filter(|l| l.contains("Pending")).count(),
        6,
        "{out}"
    );
    let out = k.ok(&["get", "events", "-n", "prod"]).await;
    assert!(
        out.contains("0/3 nodes are available: 3 Insufficient memory."),
        "{out}"
    );
    assert!(out.contains("NotTriggerScaleUp"), "{out}");
    assert!(out.contains("max node group size reached"), "{out}");
    let out = k.ok(&["get", "nodes"]).await;
    assert_eq!(
        out.lines().filter(|l| l.contains(" Ready ")).count(),
        3,
        "{out}"
    );
    k.stop().await;
}

#[tokio::test]
#[ignore = "needs kubectl (scripts/test.sh installs it)"]
async fn kubectl_2019_02_20_logs_fail_for_the_node_without_an_address() {
    let lab = catalogue("2019-02-20-no-logs");
    let k = Kubectl::start(&lab).await;
    let err = k
        .fails(&[
            "logs",
            "-n",
            "prod",
            "build-binder-examples-requirements-4a1e",
        ])
        .await;
    assert!(
        err.contains("no preferred addresses found; known addresses: [{Hostname gke-prod-user-pool-1-5f0b6c2a-rd5d}]"),
        "{err}"
    );
    let out = k
        .ok(&[
            "get",
            "node",
            "gke-prod-user-pool-1-5f0b6c2a-rd5d",
            "-o",
            "json",
        ])
        .await;
    assert!(
        !out.contains("InternalIP") && !out.contains("ExternalIP"),
        "{out}"
    );
    let out = k
        .ok(&["logs", "-n", "prod", "-l", "component=binder"])
        .await;
    assert!(
        out.contains("Build binder-examples/requirements started"),
        "{out}"
    );
    // The fix: cordon, drain, remove the node; the build pod goes with it.
    k.ok(&["cordon", "gke-prod-user-pool-1-5f0b6c2a-rd5d"])
        .await;
    k.ok(&["delete", "node", "gke-prod-user-pool-1-5f0b6c2a-rd5d"])
        .await;
    let out = k.ok(&["get", "pods", "-n", "prod"]).await;
    assert!(!out.contains("build-binder"), "{out}");
    k.stop().await;
}

#[tokio::test]
#[ignore = "needs kubectl (scripts/test.sh installs it)"]
async fn kubectl_2018_01_18_a_kube_system_pod_crash_loops_on_one_node() {
    let lab = catalogue("2018-01-18-reddit-hug");
    lab.set_speed(0.0);
    lab.advance(Duration::from_secs(5 * 60));
    let k = Kubectl::start(&lab).await;
    let out = k.ok(&["get", "pods", "-n", "prod"]).await;
    assert!(!out.contains("CrashLoopBackOff"), "prod looks fine: {out}");
    let out = k.ok(&["get", "pods", "-A", "-o", "wide"]).await;
    let line = out
        .lines()
        .find(|l| l.contains("fluentd-gcp-v2.0.9-68p79"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("CrashLoopBackOff") && line.contains("-2fhq"),
        "{line}"
    );
    let other = out
        .lines()
        .find(|l| l.contains("fluentd-gcp-v2.0.9-tq8vz"))
        .unwrap();
    assert!(other.contains("Running"), "{other}");
    let out = k
        .ok(&[
            "logs",
            "-n",
            "kube-system",
            "fluentd-gcp-v2.0.9-68p79",
            "--previous",
        ])
        .await;
    assert!(out.contains("No space left on device"), "{out}");
    k.stop().await;
}

#[tokio::test]
#[ignore = "needs kubectl (scripts/test.sh installs it)"]
async fn kubectl_2018_03_26_nodes_with_disk_pressure_and_their_taint() {
    let lab = scenario("runbooks/node-disk-pressure.scenario.yaml");
    let k = Kubectl::start(&lab).await;
    let out = k
        .ok(&["describe", "node", "gke-prod-a-ssd-pool-32-134a959a-wlmp"])
        .await;
    assert!(
        out.contains("DiskPressure") && out.contains("kubelet has disk pressure"),
        "{out}"
    );
    assert!(
        out.contains("node.kubernetes.io/disk-pressure:NoSchedule"),
        "{out}"
    );
    let out = k
        .ok(&[
            "get",
            "events",
            "--field-selector",
            "reason=NodeHasDiskPressure",
        ])
        .await;
    assert_eq!(out.lines().count(), 3, "a header and two nodes: {out}");
    k.stop().await;
}

#[tokio::test]
#[ignore = "needs kubectl (scripts/test.sh installs it)"]
async fn kubectl_2017_09_29_the_site_answers_504_while_the_hub_is_not_ready() {
    let lab = scenario("runbooks/hub-504.scenario.yaml");
    let k = Kubectl::start(&lab).await;
    let out = k.ok(&["get", "pods", "-n", "prod"]).await;
    assert!(out.contains("0/1") && out.contains("Running"), "{out}");
    let out = k.ok(&["get", "endpoints", "-n", "prod", "hub"]).await;
    assert!(out.contains("<none>"), "{out}");
    let out = k.ok(&["logs", "-n", "prod", "-l", "component=hub"]).await;
    assert!(
        out.contains("failed to start in 300 seconds, giving up"),
        "{out}"
    );
    let req = http::Request::builder()
        .uri("/run?repo=binder-examples/requirements")
        .header("host", "mybinder.org")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = lab.router().oneshot(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 504);
    k.ok(&["delete", "pod", "-n", "prod", "hub-5c8f7d6b9-qx2lw"])
        .await;
    lab.advance(Duration::from_secs(5));
    let out = k.ok(&["get", "endpoints", "-n", "prod", "hub"]).await;
    assert!(out.contains(":8081"), "{out}");
    k.stop().await;
}

#[tokio::test]
#[ignore = "needs kubectl (scripts/test.sh installs it)"]
async fn kubectl_2022_01_27_the_pod_quota_is_used_up_and_creates_are_refused() {
    let lab = catalogue("2022-01-27-prime-version");
    let k = Kubectl::start(&lab).await;
    let out = k.ok(&["get", "quota", "-n", "prod"]).await;
    assert!(out.contains("pods: 6/6"), "{out}");
    let out = k
        .ok(&[
            "get",
            "events",
            "-n",
            "prod",
            "--field-selector",
            "reason=FailedCreate",
        ])
        .await;
    assert!(out.contains("exceeded quota: user-pods"), "{out}");
    let out = k
        .ok(&["logs", "-n", "prod", "-l", "app=federation-redirect"])
        .await;
    assert!(
        out.contains("gke: full (pods 6/6), skipping version check"),
        "{out}"
    );
    assert_eq!(lab.metric("quota_pods_used"), Some(6.0));
    k.stop().await;
}
