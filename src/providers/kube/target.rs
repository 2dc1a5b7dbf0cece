//! Which cluster a run acts on: the kubeconfig, context and server the client was
//! built from, and the cluster's identity, the uid of its `kube-system` namespace
//! (what tools use to tell clusters apart: a server URL can change, that uid lives
//! as long as the cluster).
//!
//! `runbook run` records it at start and `runbook resume` compares it, so a paused
//! run is never continued on whatever cluster the resuming shell happens to point at.

use std::time::Duration;

use http::header;
use kube::config::Kubeconfig;

use super::client::{KubeConnect, KubeError, load_config};
use super::{KubeProvider, connect};
use crate::journal::event::KubeTarget;

/// Bound on the identity request: a cluster that cannot answer one GET in this time
/// is not one to start (or continue) a run against.
pub const IDENTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connect as [`connect`] does, then ask the server for its identity: one `GET
/// /api/v1/namespaces/kube-system` (read only). An error here means the cluster is
/// not reachable (or not one this client may read), which is what `run` and
/// `resume` refuse to start on.
pub async fn connect_and_identify(
    opts: &KubeConnect,
) -> Result<(KubeProvider, KubeTarget), KubeError> {
    let provider = connect(opts).await?;
    let cfg = load_config(opts).await?;
    let server = cfg.cluster_url.to_string();
    let kubeconfig = opts
        .kubeconfig
        .as_ref()
        .map(|p| absolute(p))
        .or_else(|| std::env::var("KUBECONFIG").ok().filter(|v| !v.is_empty()));
    let context = match &opts.context {
        Some(c) => Some(c.clone()),
        None => current_context(opts),
    };
    let cluster_uid = kube_system_uid(&provider.transport.client, &server).await?;
    Ok((
        provider,
        KubeTarget {
            kubeconfig,
            context,
            server,
            cluster_uid,
        },
    ))
}

/// The kubeconfig's `current-context`, when a kubeconfig is in use.
fn current_context(opts: &KubeConnect) -> Option<String> {
    let kc = match &opts.kubeconfig {
        Some(p) => Kubeconfig::read_from(p).ok()?,
        None => Kubeconfig::read().ok()?,
    };
    kc.current_context.filter(|c| !c.is_empty())
}

/// The path as an absolute one, so that `resume` from another directory (and a shell
/// step, whose working directory is the runbook's folder) reads the same file.
fn absolute(p: &std::path::Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_owned())
        .display()
        .to_string()
}

/// The `kube-system` namespace's uid; `None` when the server answers but has no such
/// namespace or does not let this user read it (the server URL then identifies it).
async fn kube_system_uid(client: &kube::Client, server: &str) -> Result<Option<String>, KubeError> {
    let unreachable = |why: String| KubeError::Unreachable {
        server: server.to_string(),
        message: why,
    };
    let req = http::Request::builder()
        .method(http::Method::GET)
        .uri("/api/v1/namespaces/kube-system")
        .header(header::ACCEPT, "application/json")
        .body(kube::client::Body::from(Vec::new()))
        .map_err(|e| unreachable(e.to_string()))?;
    let resp = tokio::time::timeout(IDENTIFY_TIMEOUT, client.send(req))
        .await
        .map_err(|_| unreachable(format!("no answer in {}s", IDENTIFY_TIMEOUT.as_secs())))?
        .map_err(|e| unreachable(e.to_string()))?;
    let status = resp.status();
    if status.is_server_error() {
        return Err(unreachable(format!("the server answered {status}")));
    }
    if !status.is_success() {
        return Ok(None);
    }
    let body = tokio::time::timeout(
        IDENTIFY_TIMEOUT,
        http_body_util::BodyExt::collect(resp.into_body()),
    )
    .await
    .map_err(|_| unreachable("the answer did not complete".into()))?
    .map_err(|e| unreachable(e.to_string()))?
    .to_bytes();
    let ns: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| unreachable(format!("not JSON: {e}")))?;
    Ok(ns
        .pointer("/metadata/uid")
        .and_then(serde_json::Value::as_str)
        .filter(|u| !u.is_empty())
        .map(str::to_string))
}
