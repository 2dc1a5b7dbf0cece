//! `drain`: kubectl drain's steps (pkg/drain/{drain,filters}.go, reference §1.2):
//! cordon, list the node's pods, apply kubectl's filters, evict (or delete) what
//! remains, then wait until those pods are gone. An eviction a PodDisruptionBudget
//! refuses is tried again every 5 s until the budget allows it or the step's timeout
//! (kubectl drain retries it until its `--timeout`).

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use serde_json::{Value, json};

use super::client::{Req, Resp, RetryPolicy, Transport};
use super::read::ListScope;
use super::write::{Each, eviction_outcome, label};
use super::{ApiRes, Run, Target};
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
        // Pods a budget held back for a while before letting them go: kubectl prints
        // "(will retry after 5s)" for each refusal; the result keeps one line per pod.
        let held = Mutex::new(BTreeMap::<String, u32>::new());
        let outcomes = self
            .each(evict, |pod| {
                let pods_res = &pods_res;
                let held = &held;
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
                        self.evict_until_allowed(pods_res, &ns, &name, who, held)
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
        let held = held.into_inner().unwrap_or_else(|e| e.into_inner());
        warnings.extend(held.iter().map(|(who, n)| {
            format!("eviction of {who} refused by its disruption budget {n} time(s), retried every {} until allowed", go_duration(self.p.evict_retry))
        }));
        result["warnings"] = json!(warnings);
        Ok(result)
    }

    /// kubectl drain's eviction of one pod (pkg/drain/drain.go `evictPods`): a 429 —
    /// the pod's PodDisruptionBudget allows no disruption now — is not an error but
    /// "will retry after 5s", again and again, until the budget allows it (another
    /// pod of the set became ready, the budget was changed) or the operation's
    /// deadline, which fails with the pod, the budget and how often it was refused.
    /// Every attempt is a journaled API call. A dry run asks once: a plan must not
    /// wait for a budget.
    async fn evict_until_allowed(
        &self,
        res: &ApiRes,
        ns: &str,
        name: &str,
        who: String,
        held: &Mutex<BTreeMap<String, u32>>,
    ) -> Each {
        let req = self.eviction_req(res, ns, name, self.spec.grace_period);
        let mut refused: u32 = 0;
        loop {
            let resp = match self.send_eviction(&req).await {
                Ok(r) if r.status == 429 && !self.cx.dry_run => r,
                other => {
                    if refused > 0 {
                        held.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(who.clone(), refused);
                    }
                    return eviction_outcome(other, who);
                }
            };
            refused += 1;
            if let Err(e) = self.nap(self.p.evict_retry).await {
                return Each::Failed(who, e);
            }
            if self.past_deadline() {
                let limit = self.cx.timeout.unwrap_or(self.p.default_wait);
                return Each::Failed(
                    who,
                    OpError::Failed {
                        message: blocked_message(ns, name, limit, refused, &resp),
                        result: Some(resp.body),
                    },
                );
            }
        }
    }

    /// Send an eviction without the transport's quick retries of a 429: a refusing
    /// budget does not change in milliseconds, and [`Self::evict_until_allowed`] owns
    /// the cadence. A 5xx still gets the provider's bounded retries.
    async fn send_eviction(&self, req: &Req) -> Result<Resp, OpError> {
        let t = &self.p.transport;
        let once = Transport {
            client: t.client.clone(),
            limiter: t.limiter.clone(),
            retry: RetryPolicy {
                attempts: 1,
                ..t.retry
            },
        };
        let first = once.send(req, self.cx).await?;
        if first.status >= 500 && first.status != 501 {
            let rest = Transport {
                retry: RetryPolicy {
                    attempts: t.retry.attempts.saturating_sub(1).max(1),
                    ..t.retry
                },
                ..once
            };
            return rest.send(req, self.cx).await;
        }
        Ok(first)
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
}

/// The error of an eviction still refused at the deadline, in kubectl's words
/// ("error when evicting pods/\"web-1\" -n \"prod\": global timeout reached: 5m0s")
/// plus what the server said last, which names the budget.
fn blocked_message(
    ns: &str,
    name: &str,
    limit: std::time::Duration,
    refused: u32,
    resp: &Resp,
) -> String {
    let said = resp.body["message"]
        .as_str()
        .unwrap_or("the server answered HTTP 429 Too Many Requests");
    let causes: Vec<&str> = resp.body["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["message"].as_str())
        .collect();
    let times = if refused == 1 { "once" } else { "times" };
    let count = if refused == 1 {
        String::new()
    } else {
        format!("{refused} ")
    };
    let mut m = format!(
        "error when evicting pods/\"{name}\" -n \"{ns}\": global timeout reached: {}; refused {count}{times}: {said}",
        go_duration(limit)
    );
    if !causes.is_empty() {
        m.push_str(&format!(" ({})", causes.join("; ")));
    }
    m
}

/// A duration as kubectl (Go's `time.Duration`) prints it: `600ms`, `5s`, `1.5s`,
/// `2m0s`, `1h0m0s`, for messages that quote kubectl's.
fn go_duration(d: std::time::Duration) -> String {
    if d < std::time::Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let total = d.as_secs();
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    let secs = match d.subsec_millis() {
        0 => format!("{s}s"),
        ms => format!("{s}.{}s", format!("{ms:03}").trim_end_matches('0')),
    };
    if h > 0 {
        format!("{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{m}m{secs}")
    } else {
        secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(causes: Value) -> Resp {
        Resp {
            status: 429,
            body: json!({"kind": "Status", "code": 429, "reason": "TooManyRequests",
                "message": "Cannot evict pod as it would violate the pod's disruption budget.",
                "details": {"causes": causes}}),
        }
    }

    #[test]
    fn blocked_message_names_the_pod_the_timeout_and_the_budget() {
        let r = refusal(json!([{"reason": "DisruptionBudget",
            "message": "The disruption budget web needs 1 healthy pods and has 1 currently"}]));
        assert_eq!(
            blocked_message("prod", "web-1", std::time::Duration::from_secs(120), 24, &r),
            "error when evicting pods/\"web-1\" -n \"prod\": global timeout reached: 2m0s; refused 24 times: \
             Cannot evict pod as it would violate the pod's disruption budget. \
             (The disruption budget web needs 1 healthy pods and has 1 currently)"
        );
    }

    #[test]
    fn blocked_message_without_causes_says_what_the_server_said() {
        let r = refusal(json!([]));
        assert_eq!(
            blocked_message("prod", "web-1", std::time::Duration::from_secs(5), 1, &r),
            "error when evicting pods/\"web-1\" -n \"prod\": global timeout reached: 5s; refused once: \
             Cannot evict pod as it would violate the pod's disruption budget."
        );
    }
}
