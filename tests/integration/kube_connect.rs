//! `connect` targets a cluster the way kubectl does: `--kubeconfig`, `--context`,
//! `--namespace`. Runs against the lab served over TCP, so the real HTTP client
//! (hyper + rustls, one crypto provider) is built and used.
//!
//! `KUBECONFIG` is tested through the binary (`kube_cli`), set for the child process
//! only: the tests of this binary share one environment, which none may change.

use runbook::lab::{self, Lab};
use runbook::providers::kube::{KubeConnect, KubeError, connect};
use runbook::providers::{ExecCtx, Provider};
use serde_json::json;

use crate::support::kube as support;

#[tokio::test]
async fn connect_targets_the_cluster_like_kubectl() {
    let lab = Lab::seed();
    lab.set_speed(0.0);
    let (addr, server) = lab.serve("127.0.0.1:0").await.expect("the lab listens");
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    lab::write_kubeconfig(addr, &kc).unwrap();

    // --kubeconfig: the context's namespace (`default`) is the default.
    let p = connect(&KubeConnect {
        kubeconfig: Some(kc.clone()),
        qps: 20.0,
        ..Default::default()
    })
    .await
    .expect("connects");
    assert_eq!(p.default_namespace(), "default");
    let op = support::op("{get: nodes}");
    let r = p
        .resolve(
            runbook::runbook::model::OpRef::Kube(&op),
            &json!({}),
            &Default::default(),
        )
        .unwrap();
    let cx = ExecCtx::new(json!({}));
    let nodes = p.execute(&r, &cx).await.expect("lists nodes over TCP");
    assert_eq!(nodes.as_array().unwrap().len(), 4);
    assert_eq!(cx.calls.take()[0].status, 200);

    // --context and --namespace.
    let p = connect(&KubeConnect {
        kubeconfig: Some(kc.clone()),
        context: Some("runbook-lab".into()),
        namespace: Some("prod".into()),
        qps: 0.0,
    })
    .await
    .expect("connects with a context");
    assert_eq!(p.default_namespace(), "prod");

    // Errors say what is wrong.
    let e = connect(&KubeConnect {
        kubeconfig: Some(kc.clone()),
        context: Some("nope".into()),
        ..Default::default()
    })
    .await
    .err()
    .expect("an unknown context fails");
    assert!(
        matches!(&e, KubeError::Context { context, .. } if context == "nope"),
        "{e}"
    );
    let missing = dir.path().join("missing");
    let e = connect(&KubeConnect {
        kubeconfig: Some(missing.clone()),
        ..Default::default()
    })
    .await
    .err()
    .expect("a missing file fails");
    assert!(
        e.to_string().contains(&missing.display().to_string()),
        "{e}"
    );
    let e = connect(&KubeConnect {
        kubeconfig: Some(kc.clone()),
        qps: -1.0,
        ..Default::default()
    })
    .await
    .err()
    .expect("a negative qps fails");
    assert!(matches!(e, KubeError::Qps(_)));

    server.shutdown().await;
}
