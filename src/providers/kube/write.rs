//! Writes: cordon, taint, delete, evict, patch, scale, rollout restart — each sends
//! what kubectl sends (reference/kubernetes.md §1) and answers with JSON a later step
//! can use.

use futures::StreamExt;
use http::Method;
use serde_json::{Value, json};

use super::client::{Req, Resp, api_error};
use super::display::{self, quote};
use super::{ApiRes, Run};
use crate::providers::OpError;

const STRATEGIC: &str = "application/strategic-merge-patch+json";
const MERGE: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";

/// How many times a read-modify-write is retried after a 409 Conflict.
const CONFLICT_RETRIES: u32 = 5;

/// A policy/v1 Eviction, as kubectl drain sends it. kube 5's `Api::evict` sends
/// `delete_options` (snake case), which a real server ignores (reference §2 b).
pub(crate) fn eviction_body(name: &str, ns: &str, grace: Option<u32>) -> Value {
    let mut ev = json!({"apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": name, "namespace": ns}});
    if let Some(g) = grace {
        ev["deleteOptions"] = json!({"gracePeriodSeconds": g});
    }
    ev
}

/// The grace period kubectl actually sends (pkg/cmd/delete/delete.go `Complete`):
/// `--force` alone means 0; `--grace-period=0` without `--force` becomes 1.
pub(crate) fn effective_grace(force: bool, grace: Option<u32>) -> Option<u32> {
    match (force, grace) {
        (true, None | Some(0)) => Some(0),
        (false, Some(0)) => Some(1),
        (_, g) => g,
    }
}

/// `ns/name` for objects listed across namespaces, `name` otherwise.
pub(crate) fn label(obj: &Value, qualify: bool) -> String {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    match obj.pointer("/metadata/namespace").and_then(Value::as_str) {
        Some(ns) if qualify && !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

/// What an eviction's answer means: 2xx evicted, 404 already gone, else failed.
pub(crate) fn eviction_outcome(sent: Result<Resp, OpError>, who: String) -> Each {
    match sent {
        Ok(r) if r.ok() => Each::Done(who),
        Ok(r) if r.status == 404 => Each::Gone(who),
        Ok(r) => Each::Failed(who, api_error(&r)),
        Err(e) => Each::Failed(who, e),
    }
}

/// The outcome of acting on one object of many.
pub(crate) enum Each {
    Done(String),
    Gone(String),
    Failed(String, OpError),
}

impl Run<'_> {
    /// `cordon`/`uncordon`: kubectl decides "already (un)cordoned" from a GET and
    /// sends nothing then; otherwise a strategic merge patch of `spec.unschedulable`
    /// (pkg/drain/cordon.go), `null` to uncordon.
    pub async fn cordon(&self, desired: bool) -> Result<Value, OpError> {
        let node = self.name()?.to_string();
        let changed = self.set_unschedulable(&node, desired).await?;
        Ok(
            json!({"node": node, "unschedulable": desired, "changed": changed,
            "dry_run": self.cx.dry_run}),
        )
    }

    pub async fn set_unschedulable(&self, node: &str, desired: bool) -> Result<bool, OpError> {
        let res = self
            .p
            .api_res(&super::Target::builtin("nodes"), self.cx)
            .await?;
        let r = self.get_resp(&res, None, node).await?;
        if !r.ok() {
            return Err(api_error(&r));
        }
        let current = r
            .body
            .pointer("/spec/unschedulable")
            .and_then(Value::as_bool)
            == Some(true);
        if current == desired {
            return Ok(false);
        }
        let patch =
            json!({"spec": {"unschedulable": if desired { json!(true) } else { Value::Null }}});
        let verb = if desired { "cordon" } else { "uncordon" };
        let r = self
            .send(
                Req::new(Method::PATCH, res.url(None, Some(node), None))
                    .json(STRATEGIC, &patch)
                    .kubectl(format!("kubectl {verb} {}", quote(node))),
            )
            .await?;
        if !r.ok() {
            return Err(api_error(&r));
        }
        Ok(true)
    }

    /// `taint`: read-modify-write of the whole `spec.taints` list with the node's
    /// resourceVersion as a precondition, retried on 409 Conflict. A taint with the
    /// same key and effect is replaced (kubectl `--overwrite`); the same taint again
    /// changes nothing.
    pub async fn taint(&self) -> Result<Value, OpError> {
        let key = self.spec.key.clone().unwrap_or_default();
        let effect = self.spec.effect.clone().unwrap_or_default();
        let value = self.spec.value.clone().filter(|v| !v.is_empty());
        let mut taint = json!({"key": key, "effect": effect});
        if let Some(v) = &value {
            taint["value"] = json!(v);
        }
        let line = display::kubectl(self.spec);
        self.edit_taints(&line, |taints| {
            let same = |t: &Value| t["key"] == key.as_str() && t["effect"] == effect.as_str();
            if let Some(existing) = taints.iter_mut().find(|t| same(t)) {
                if existing.get("value").and_then(Value::as_str) == value.as_deref() {
                    return Vec::new();
                }
                *existing = taint.clone();
            } else {
                taints.push(taint.clone());
            }
            vec![taint.clone()]
        })
        .await
        .map(|(node, taints, changed)| {
            json!({"node": node, "taints": taints, "added": changed, "changed": !changed.is_empty(),
                "dry_run": self.cx.dry_run})
        })
    }

    /// `untaint`: remove the taints with `key` (and `effect`, when given). Removing a
    /// taint that is not there changes nothing and is not an error, so a runbook can
    /// run it twice (kubectl would say `taint "key" not found`).
    pub async fn untaint(&self) -> Result<Value, OpError> {
        let key = self.spec.key.clone().unwrap_or_default();
        let effect = self.spec.effect.clone();
        let line = display::kubectl(self.spec);
        self.edit_taints(&line, |taints| {
            let hit = |t: &Value| {
                t["key"] == key.as_str() && effect.as_deref().is_none_or(|e| t["effect"] == e)
            };
            let removed: Vec<Value> = taints.iter().filter(|t| hit(t)).cloned().collect();
            taints.retain(|t| !hit(t));
            removed
        })
        .await
        .map(|(node, taints, removed)| {
            json!({"node": node, "taints": taints, "removed": removed, "changed": !removed.is_empty(),
                "dry_run": self.cx.dry_run})
        })
    }

    /// GET the node, apply `edit` to its taints, PATCH them back with the
    /// resourceVersion precondition; on 409 start over. `edit` returns the taints it
    /// added or removed; none means nothing to send.
    async fn edit_taints(
        &self,
        line: &str,
        edit: impl Fn(&mut Vec<Value>) -> Vec<Value>,
    ) -> Result<(String, Vec<Value>, Vec<Value>), OpError> {
        let node = self.name()?.to_string();
        let res = self.res().await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = self.get_resp(&res, None, &node).await?;
            if !r.ok() {
                return Err(api_error(&r));
            }
            let rv = r
                .body
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(Value::Null);
            let mut taints: Vec<Value> = r
                .body
                .pointer("/spec/taints")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let changed = edit(&mut taints);
            if changed.is_empty() {
                return Ok((node, taints, changed));
            }
            let patch = json!({"metadata": {"resourceVersion": rv}, "spec": {"taints": taints}});
            let r = self
                .send(
                    Req::new(Method::PATCH, res.url(None, Some(&node), None))
                        .json(MERGE, &patch)
                        .kubectl(line),
                )
                .await?;
            if r.ok() {
                let taints = r
                    .body
                    .pointer("/spec/taints")
                    .and_then(Value::as_array)
                    .cloned();
                return Ok((node, taints.unwrap_or(taints_fallback(&patch)), changed));
            }
            if r.status != 409 || attempt >= CONFLICT_RETRIES {
                return Err(api_error(&r));
            }
        }
    }

    /// `delete`: by name (a 404 counts as done), or every object the selectors and
    /// `where` match, a bounded number at a time. DeleteOptions as kubectl sends them.
    pub async fn delete(&self) -> Result<Value, OpError> {
        let res = self.res().await?;
        let ns = self.ns(&res).map(str::to_string);
        let spec = self.spec;
        let mut gone_before = Vec::new();
        let targets: Vec<(Option<String>, String)> = match (&spec.name, &spec.where_) {
            (Some(name), None) => vec![(ns.clone(), name.clone())],
            _ => {
                let (objects, gone) = self.delete_matches(&res, ns.as_deref()).await?;
                gone_before.extend(gone.map(Each::Gone));
                self.within_approval(&res, &objects)?;
                objects
                    .iter()
                    .map(|o| {
                        let ns = o
                            .pointer("/metadata/namespace")
                            .and_then(Value::as_str)
                            .map(String::from);
                        (ns, label(o, false))
                    })
                    .collect()
            }
        };
        let grace = effective_grace(spec.force, spec.grace_period);
        let mut opts = json!({"propagationPolicy": "Background"});
        if let Some(g) = grace {
            opts["gracePeriodSeconds"] = json!(g);
        }
        if self.cx.dry_run {
            opts["dryRun"] = json!(["All"]);
        }
        let qualify = spec.all_namespaces;
        let outcomes = self
            .each(targets, |(ns, name)| {
                let res = &res;
                let opts = &opts;
                async move {
                    let who = match (&ns, qualify) {
                        (Some(ns), true) => format!("{ns}/{name}"),
                        _ => name.clone(),
                    };
                    let mut line = format!("kubectl delete {} {}", kind_word(res), quote(&name));
                    if let Some(ns) = &ns {
                        line.push_str(&format!(" -n {}", quote(ns)));
                    }
                    if let Some(g) = spec.grace_period {
                        line.push_str(&format!(" --grace-period={g}"));
                    }
                    if spec.force {
                        line.push_str(" --force");
                    }
                    let req = Req::new(Method::DELETE, res.url(ns.as_deref(), Some(&name), None))
                        .json("application/json", opts)
                        .kubectl(line)
                        .status_only();
                    match self.send(req).await {
                        Ok(r) if r.ok() => Each::Done(who),
                        Ok(r) if r.status == 404 => Each::Gone(who),
                        Ok(r) => Each::Failed(who, api_error(&r)),
                        Err(e) => Each::Failed(who, e),
                    }
                }
            })
            .await;
        summarize(
            gone_before.into_iter().chain(outcomes).collect(),
            "deleted",
            self.cx.dry_run,
        )
    }

    /// Run `f` over `items`, at most the provider's concurrency at a time.
    pub async fn each<T, F, Fut>(&self, items: Vec<T>, f: F) -> Vec<Each>
    where
        F: Fn(T) -> Fut,
        Fut: std::future::Future<Output = Each>,
    {
        futures::stream::iter(items.into_iter().map(f))
            .buffer_unordered(self.p.concurrency)
            .collect()
            .await
    }

    /// `evict`: POST a policy/v1 Eviction (PodDisruptionBudgets are respected: a 429
    /// is retried within the retry policy, then reported). A 404 counts as done.
    pub async fn evict(&self) -> Result<Value, OpError> {
        let res = self.res().await?;
        let name = self.name()?.to_string();
        let ns = self.ns(&res).unwrap_or("default").to_string();
        let outcome = self
            .evict_one(&res, &ns, &name, self.spec.grace_period, name.clone())
            .await;
        summarize(vec![outcome], "evicted", self.cx.dry_run)
    }

    pub async fn evict_one(
        &self,
        res: &ApiRes,
        ns: &str,
        name: &str,
        grace: Option<u32>,
        who: String,
    ) -> Each {
        let req = self.eviction_req(res, ns, name, grace);
        eviction_outcome(self.send(req).await, who)
    }

    /// POST `pods/NAME/eviction`, journaled as the kubectl line that sends the same.
    pub(crate) fn eviction_req(
        &self,
        res: &ApiRes,
        ns: &str,
        name: &str,
        grace: Option<u32>,
    ) -> Req {
        let mut body = eviction_body(name, ns, grace);
        if self.cx.dry_run {
            body["deleteOptions"]["dryRun"] = json!(["All"]);
        }
        let line = format!(
            "echo {} | kubectl create --raw {} -f -",
            quote(&eviction_body(name, ns, grace).to_string()),
            res.url(Some(ns), Some(name), Some("eviction"))
        );
        Req::new(
            Method::POST,
            res.url(Some(ns), Some(name), Some("eviction")),
        )
        .json("application/json", &body)
        .kubectl(line)
    }

    /// `patch`: strategic merge (default), JSON merge or JSON patch; the patched object.
    pub async fn patch(&self) -> Result<Value, OpError> {
        let (ct, idempotent) = match self.spec.patch_type.as_deref().unwrap_or("strategic") {
            "merge" => (MERGE, true),
            // Applying `add /spec/x/-` twice appends twice: never retry it on a 5xx.
            "json" => (JSON_PATCH, false),
            _ => (STRATEGIC, true),
        };
        let body = self.spec.body.clone().unwrap_or(Value::Null);
        let mut req = self.patch_req(ct, &body).await?;
        req.idempotent = idempotent;
        self.patched(req).await
    }

    /// `scale`: set `spec.replicas` (kubectl patches the `scale` subresource; the
    /// object itself has the same effect and every server serves it).
    pub async fn scale(&self) -> Result<Value, OpError> {
        let body = json!({"spec": {"replicas": self.spec.replicas.unwrap_or(0)}});
        let req = self.patch_req(MERGE, &body).await?;
        self.patched(req).await
    }

    /// `rollout_restart`: what kubectl does (pkg/polymorphichelpers/objectrestarter.go):
    /// stamp `kubectl.kubernetes.io/restartedAt` on the pod template.
    pub async fn rollout_restart(&self) -> Result<Value, OpError> {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let body = json!({"spec": {"template": {"metadata": {"annotations":
            {"kubectl.kubernetes.io/restartedAt": now}}}}});
        let req = self.patch_req(STRATEGIC, &body).await?;
        self.patched(req).await
    }

    async fn patch_req(&self, ct: &str, body: &Value) -> Result<Req, OpError> {
        let res = self.res().await?;
        let name = self.name()?;
        Ok(
            Req::new(Method::PATCH, res.url(self.ns(&res), Some(name), None))
                .json(ct, body)
                .kubectl(display::kubectl(self.spec)),
        )
    }

    async fn patched(&self, req: Req) -> Result<Value, OpError> {
        let r: Resp = self.send(req).await?;
        if r.ok() {
            Ok(r.body)
        } else {
            Err(api_error(&r))
        }
    }
}

fn taints_fallback(patch: &Value) -> Vec<Value> {
    patch
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// `pod`, `node`, `deployment`, or `widgets.example.com` for custom resources.
pub(crate) fn kind_word(res: &ApiRes) -> String {
    if super::spec::Target::builtin_named(&res.plural, &res.group) {
        res.singular.clone()
    } else {
        format!("{}.{}", res.plural, res.group)
    }
}

/// `{"deleted": [...], "already_gone": [...]}`; the first failure, if any, fails the
/// operation with the same lists (and `failed`) in its result.
pub(crate) fn summarize(
    outcomes: Vec<Each>,
    done_key: &str,
    dry_run: bool,
) -> Result<Value, OpError> {
    let mut done = Vec::new();
    let mut gone = Vec::new();
    let mut failed = Vec::new();
    let mut first: Option<OpError> = None;
    for o in outcomes {
        match o {
            Each::Done(n) => done.push(n),
            Each::Gone(n) => gone.push(n),
            Each::Failed(n, e) => {
                let (message, status) = match &e {
                    OpError::Failed { message, result } => (message.clone(), result.clone()),
                    other => (other.to_string(), None),
                };
                failed.push(json!({"name": n, "message": message, "status": status}));
                first.get_or_insert(e);
            }
        }
    }
    done.sort();
    gone.sort();
    let mut out = json!({done_key: done, "already_gone": gone});
    if dry_run {
        out["dry_run"] = json!(true);
    }
    match first {
        None => Ok(out),
        // Ctrl-C or the deadline: say so, not "failed".
        Some(e @ (OpError::Cancelled | OpError::TimedOut(_))) => Err(e),
        Some(e) => {
            out["failed"] = json!(failed);
            let n = failed.len();
            let message = match e {
                OpError::Failed { message, .. } if n == 1 => message,
                OpError::Failed { message, .. } => {
                    format!("{message} (and {} more failures)", n - 1)
                }
                other => other.to_string(),
            };
            Err(OpError::Failed {
                message,
                result: Some(out),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_period_follows_kubectl_delete_rules() {
        assert_eq!(effective_grace(true, None), Some(0));
        assert_eq!(effective_grace(true, Some(0)), Some(0));
        assert_eq!(effective_grace(false, Some(0)), Some(1));
        assert_eq!(effective_grace(false, Some(30)), Some(30));
        assert_eq!(effective_grace(false, None), None);
    }

    #[test]
    fn eviction_body_is_policy_v1_with_camel_case_delete_options() {
        assert_eq!(
            eviction_body("hub-1", "prod", Some(0)),
            json!({"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": "hub-1", "namespace": "prod"},
                "deleteOptions": {"gracePeriodSeconds": 0}})
        );
        assert!(
            eviction_body("hub-1", "prod", None)
                .get("deleteOptions")
                .is_none()
        );
    }

    #[test]
    fn many_outcomes_sum_up_and_the_first_failure_fails_the_op() {
        let ok = summarize(
            vec![
                Each::Done("b".into()),
                Each::Gone("c".into()),
                Each::Done("a".into()),
            ],
            "deleted",
            false,
        )
        .unwrap();
        assert_eq!(ok, json!({"deleted": ["a", "b"], "already_gone": ["c"]}));
        let err = summarize(
            vec![
                Each::Done("a".into()),
                Each::Failed(
                    "b".into(),
                    OpError::failed("Error from server (Forbidden): no"),
                ),
                Each::Failed(
                    "c".into(),
                    OpError::failed("Error from server (Forbidden): no"),
                ),
            ],
            "deleted",
            false,
        )
        .unwrap_err();
        match err {
            OpError::Failed { message, result } => {
                assert_eq!(
                    message,
                    "Error from server (Forbidden): no (and 1 more failures)"
                );
                let r = result.unwrap();
                assert_eq!(r["deleted"], json!(["a"]));
                assert_eq!(r["failed"].as_array().unwrap().len(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            summarize(
                vec![Each::Failed("a".into(), OpError::Cancelled)],
                "deleted",
                false
            ),
            Err(OpError::Cancelled)
        ));
    }
}
