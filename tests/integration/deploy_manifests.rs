//! deploy/: the manifests of `runbook serve` parse as the Kubernetes types they claim
//! to be, with no key the type does not have (a misspelt key would be silently
//! ignored by a typed parse, so each file must read back equal to its typed form),
//! and they agree with each other: one namespace, the Deployment's pods carry the
//! labels the Deployment and the Service select, the Service targets a port the
//! container names, and the pods run as the ServiceAccount the file defines.

use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Service, ServiceAccount};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn load<T: DeserializeOwned + Serialize>(file: &str) -> T {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let typed: T = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    let raw: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        without_nulls(raw),
        without_nulls(back),
        "{file} has a key its Kubernetes type does not (misspelt?)"
    );
    typed
}

/// Serialized types leave out absent fields; written YAML may have `{}`.
fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(without_nulls).collect()),
        v => v,
    }
}

#[test]
fn the_deploy_manifests_are_valid_kubernetes_objects_that_agree_with_each_other() {
    let sa: ServiceAccount = load("serviceaccount.yaml");
    let deploy: Deployment = load("deployment.yaml");
    let svc: Service = load("service.yaml");
    let pvc: PersistentVolumeClaim = load("pvc.yaml");
    let ns = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| m.namespace.clone();
    let namespace = ns(&sa.metadata);
    assert_eq!(namespace.as_deref(), Some("runbook"));
    let own: Namespace = load("00-namespace.yaml");
    assert_eq!(
        own.metadata.name, namespace,
        "deploy/ creates its namespace"
    );
    for other in [&deploy.metadata, &svc.metadata, &pvc.metadata] {
        assert_eq!(
            ns(other),
            namespace,
            "{:?} is in another namespace",
            other.name
        );
    }

    let spec = &deploy.spec;
    assert_eq!(spec.replicas, Some(1), "the run store has one writer");
    assert_eq!(
        spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
        Some("Recreate")
    );
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .expect("pod labels");
    let selects = |sel: &std::collections::BTreeMap<String, String>| {
        sel.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
    };
    assert!(selects(
        spec.selector.match_labels.as_ref().expect("matchLabels")
    ));
    let svc_spec = svc.spec.as_ref().expect("a Service spec");
    assert!(selects(
        svc_spec.selector.as_ref().expect("a Service selector")
    ));

    let pod = spec.template.spec.as_ref().expect("a pod spec");
    assert_eq!(pod.service_account_name, sa.metadata.name);
    let c = &pod.containers[0];
    let args = c.args.clone().unwrap_or_default();
    assert_eq!(args.first().map(String::as_str), Some("serve"));
    let listen = args
        .iter()
        .find_map(|a| a.strip_prefix("--listen="))
        .expect("--listen");
    let port: i32 = listen.rsplit(':').next().unwrap().parse().unwrap();
    let http = c
        .ports
        .as_ref()
        .and_then(|p| p.iter().find(|p| p.name.as_deref() == Some("http")))
        .expect("a port named http");
    assert_eq!(
        http.container_port, port,
        "serve listens where the port says"
    );
    let target = &svc_spec.ports.as_ref().unwrap()[0].target_port;
    assert_eq!(
        target,
        &Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("http".into()))
    );
    // The state dir is the mounted claim.
    let state = args
        .iter()
        .find_map(|a| a.strip_prefix("--state-dir="))
        .expect("--state-dir");
    let mount = c
        .volume_mounts
        .as_ref()
        .and_then(|m| m.iter().find(|m| m.mount_path == state))
        .expect("the state dir is mounted");
    let volume = pod
        .volumes
        .as_ref()
        .and_then(|v| v.iter().find(|v| v.name == mount.name))
        .expect("its volume");
    assert_eq!(
        volume
            .persistent_volume_claim
            .as_ref()
            .map(|c| c.claim_name.clone()),
        pvc.metadata.name
    );
    // Hardened: non-root, read-only root, no privilege escalation, no capabilities.
    let psc = pod
        .security_context
        .as_ref()
        .expect("a pod securityContext");
    assert_eq!(psc.run_as_non_root, Some(true));
    let sc = c
        .security_context
        .as_ref()
        .expect("a container securityContext");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_string()])
    );
}

/// deploy/ applied for real: kubectl 1.37 applies the folder to the lab (loaded with
/// the seed incident's scenario), then the ConfigMap of runbooks and the Secret as
/// deploy/README.md says to make them; the Deployment rolls out as the
/// ServiceAccount, the Service finds its pod, and applying again changes nothing.
/// With kubectl's default validation: it finds in the lab's OpenAPI v3 that the
/// server validates fields, sends `fieldValidation=Strict`, and the lab checks each
/// object against its kind (docs/lab.md, "What kubectl sends").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl (scripts/test.sh installs it)"]
async fn kubectl_applies_the_deploy_folder_to_the_lab_and_the_deployment_rolls_out() {
    use crate::support::kubectl::Kubectl;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lab =
        runbook::lab::Lab::from_scenario_file(root.join("runbooks/hub-pvc-locked.scenario.yaml"))
            .unwrap();
    let k = Kubectl::start(&lab).await;
    let deploy = root.join("deploy").display().to_string();
    let out = k.ok(&["apply", "-f", &deploy]).await;
    for made in [
        "namespace/runbook created",
        "deployment.apps/runbook created",
        "persistentvolumeclaim/runbook-state created",
        "service/runbook created",
        "serviceaccount/runbook created",
    ] {
        assert!(out.contains(made), "no `{made}` in:\n{out}");
    }
    // What deploy/README.md has you add: the runbooks and the secrets.
    let runbook_file = root
        .join("runbooks/hub-pvc-locked.yaml")
        .display()
        .to_string();
    for (what, args) in [
        (
            "cm.yaml",
            vec![
                "-n",
                "runbook",
                "create",
                "configmap",
                "runbook-runbooks",
                "--from-file",
                &runbook_file,
                "--dry-run=client",
                "-o",
                "yaml",
            ],
        ),
        (
            "secret.yaml",
            vec![
                "-n",
                "runbook",
                "create",
                "secret",
                "generic",
                "runbook-secrets",
                "--from-literal=RUNBOOK_SERVE_WEBHOOK_TOKEN=am-token-0123456789",
                "--dry-run=client",
                "-o",
                "yaml",
            ],
        ),
    ] {
        let yaml = k.ok(&args).await;
        let file = k.dir.path().join(what);
        std::fs::write(&file, yaml).unwrap();
        let file = file.display().to_string();
        k.ok(&["apply", "-f", &file]).await;
    }

    k.ok(&[
        "-n",
        "runbook",
        "rollout",
        "status",
        "deployment/runbook",
        "--timeout=30s",
    ])
    .await;
    let sa = k
        .ok(&[
            "-n",
            "runbook",
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/name=runbook",
            "-o",
            "jsonpath={.items[*].spec.serviceAccountName}",
        ])
        .await;
    assert_eq!(sa.trim(), "runbook", "the pod runs as the ServiceAccount");
    let ip = k
        .ok(&[
            "-n",
            "runbook",
            "get",
            "endpoints",
            "runbook",
            "-o",
            "jsonpath={.subsets[0].addresses[0].ip}",
        ])
        .await;
    assert!(
        !ip.trim().is_empty(),
        "the Service selects the Deployment's pod"
    );
    let cm = k
        .ok(&[
            "-n",
            "runbook",
            "get",
            "configmap",
            "runbook-runbooks",
            "-o",
            "jsonpath={.data}",
        ])
        .await;
    assert!(cm.contains("hub-pvc-locked.yaml"), "{cm}");

    // Applying the same folder again is a no-op.
    let again = k.ok(&["apply", "-f", &deploy]).await;
    assert_eq!(
        again.matches(" unchanged").count(),
        5,
        "applying again changes nothing:\n{again}"
    );
    k.stop().await;
}
