//! `drain`: kubectl drain's steps (pkg/drain/{drain,filters}.go, reference §1.2):
//! cordon, list the node's pods, apply kubectl's filters, evict (or delete) what
//! remains, then wait until those pods are gone.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Value, json};

use super::read::ListScope;
use super::write::{Each, label};
use super::{Run, Target};
use crate::providers::OpError;

const DAEMONSET: &str = "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)";
const LOCAL_STORAGE: &str =
    "cannot delete Pods with local storage (use --delete-emptydir-data to override)";
const UNREPLICATED: &str =
    "cannot delete Pods that declare no controller (use --force to override)";

/// What kubectl's filters decide for one pod.
enum Verdict {
    Evict(Option<String>),
    Skip(&'static str),
    Refuse(&'static str),
}

/// kubectl's filters, in kubectl's order: DaemonSet, mirror, local storage, unreplicated.
fn verdict(pod: &Value, ignore_daemonsets: bool, delete_emptydir: bool, force: bool) -> Verdict {
    let who = label(pod, true);
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    let finished = matches!(phase, "Succeeded" | "Failed");
    let controller = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|refs| refs.iter().find(|r| r["controller"] == true));
    if controller.is_some_and(|c| c["kind"] == "DaemonSet") {
        return if ignore_daemonsets {
            Verdict::Skip("DaemonSet-managed")
        } else {
            Verdict::Refuse(DAEMONSET)
        };
    }
    if pod
        .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
        .is_some()
    {
        return Verdict::Skip("mirror pod");
    }
    let mut warning = None;
    let empty_dir = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .is_some_and(|vs| vs.iter().any(|v| v.get("emptyDir").is_some()));
    if !finished && empty_dir {
        if !delete_emptydir {
            return Verdict::Refuse(LOCAL_STORAGE);
        }
        warning = Some(format!("deleting Pods with local storage: {who}"));
    }
    if !finished && controller.is_none() {
        if !force {
            return Verdict::Refuse(UNREPLICATED);
        }
        warning = Some(format!("deleting Pods that declare no controller: {who}"));
    }
    Verdict::Evict(warning)
}

impl Run<'_> {
    pub async fn drain(&self) -> Result<Value, OpError> {
        let spec = self.spec;
        let node = self.name()?.to_string();
        let cordoned = self.set_unschedulable(&node, true).await?;
        let pods_res = self.p.api_res(&Target::builtin("pods"), self.cx).await?;
        let fields = format!("spec.nodeName={node}");
        let scope = ListScope {
            ns: None,
            labels: spec.pod_selector.as_deref(),
            fields: Some(&fields),
        };
        let pods = self.list_objects(&pods_res, &scope).await?;

        let mut evict = Vec::new();
        let mut skipped = Vec::new();
        let mut warnings = Vec::new();
        let mut refused: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for pod in pods {
            match verdict(
                &pod,
                spec.ignore_daemonsets,
                spec.delete_emptydir_data,
                spec.force,
            ) {
                Verdict::Evict(w) => {
                    warnings.extend(w);
                    evict.push(pod);
                }
                Verdict::Skip(reason) => {
                    skipped.push(json!({"pod": label(&pod, true), "reason": reason}))
                }
                Verdict::Refuse(why) => refused.entry(why).or_default().push(label(&pod, true)),
            }
        }
        if !refused.is_empty() {
            let errors: Vec<String> = refused
                .iter()
                .map(|(why, pods)| format!("{why}: {}", pods.join(", ")))
                .collect();
            return Err(OpError::Failed {
                message: format!(
                    "error: unable to drain node \"{node}\" due to error: [{}]",
                    errors.join(", ")
                ),
                result: Some(json!({"node": node, "cordoned": true, "errors": errors,
                    "skipped": skipped})),
            });
        }

        let uids: HashSet<String> = evict
            .iter()
            .filter_map(|p| p.pointer("/metadata/uid").and_then(Value::as_str))
            .map(String::from)
            .collect();
        let outcomes = self
            .each(evict, |pod| {
                let pods_res = &pods_res;
                async move {
                    let ns = pod
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .unwrap_or("default")
                        .to_string();
                    let name = label(&pod, false);
                    let who = label(&pod, true);
                    if spec.disable_eviction {
                        self.delete_pod(pods_res, &ns, &name, who).await
                    } else {
                        self.evict_one(pods_res, &ns, &name, spec.grace_period, who)
                            .await
                    }
                }
            })
            .await;
        let method = if spec.disable_eviction {
            "delete"
        } else {
            "eviction"
        };
        let mut result = match super::write::summarize(outcomes, "evicted", self.cx.dry_run) {
            Ok(v) => v,
            Err(OpError::Failed { message, result }) => {
                let mut r = result.unwrap_or_else(|| json!({}));
                r["node"] = json!(node);
                r["skipped"] = json!(skipped);
                return Err(OpError::Failed {
                    message: format!("error when evicting pods on node \"{node}\": {message}"),
                    result: Some(r),
                });
            }
            Err(e) => return Err(e),
        };
        if !self.cx.dry_run {
            self.wait_pods_gone(&pods_res, &scope, &uids).await?;
        }
        result["node"] = json!(node);
        result["cordoned"] = json!(cordoned);
        result["method"] = json!(method);
        result["skipped"] = json!(skipped);
        result["warnings"] = json!(warnings);
        Ok(result)
    }

    /// `--disable-eviction`: a plain DELETE with the same options.
    async fn delete_pod(&self, res: &super::ApiRes, ns: &str, name: &str, who: String) -> Each {
        // Drain sends its --grace-period as is (pkg/drain/drain.go makeDeleteOptions);
        // only `kubectl delete` turns 0 into 1.
        let grace = self.spec.grace_period;
        let mut opts = json!({"propagationPolicy": "Background"});
        if let Some(g) = grace {
            opts["gracePeriodSeconds"] = json!(g);
        }
        if self.cx.dry_run {
            opts["dryRun"] = json!(["All"]);
        }
        let req =
            super::client::Req::new(http::Method::DELETE, res.url(Some(ns), Some(name), None))
                .json("application/json", &opts)
                .kubectl(super::display::kubectl(self.spec));
        match self.send(req).await {
            Ok(r) if r.ok() => Each::Done(who),
            Ok(r) if r.status == 404 => Each::Gone(who),
            Ok(r) => Each::Failed(who, super::client::api_error(&r)),
            Err(e) => Each::Failed(who, e),
        }
    }

    /// kubectl's waitForDelete: poll until none of `uids` is on the node any more.
    /// On a lost node with a grace period this never ends by itself; the operation's
    /// timeout bounds it.
    async fn wait_pods_gone(
        &self,
        res: &super::ApiRes,
        scope: &ListScope<'_>,
        uids: &HashSet<String>,
    ) -> Result<(), OpError> {
        if uids.is_empty() {
            return Ok(());
        }
        loop {
            let left = self.list_objects(res, scope).await?;
            if !left.iter().any(|p| {
                p.pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .is_some_and(|u| uids.contains(u))
            }) {
                return Ok(());
            }
            self.pause().await?;
        }
    }

    /// Sleep one poll interval, or return `Cancelled`.
    pub async fn pause(&self) -> Result<(), OpError> {
        tokio::select! {
            _ = tokio::time::sleep(self.p.poll) => Ok(()),
            _ = self.cx.cancel.cancelled() => Err(OpError::Cancelled),
        }
    }
}
