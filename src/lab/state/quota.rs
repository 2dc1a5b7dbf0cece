//! ResourceQuota: what a namespace's pods use of each quota'd resource, and the
//! admission check that refuses a pod pushing a quota over its `hard` limit with the
//! API server's own message (plugin/pkg/admission/resourcequota/controller.go).

use std::collections::BTreeMap;

use serde_json::Value;

use super::State;
use super::json::str_at;
use crate::lab::quantity;
use crate::lab::status::ApiError;

/// The quota resources the lab counts for pods (`core/v1` pod evaluator): the pod
/// count, and requests and limits of cpu, memory and ephemeral storage. Others in a
/// quota's `hard` are kept but never enforced.
pub fn pod_usage(pod: &Value) -> BTreeMap<String, i128> {
    let mut u = BTreeMap::new();
    u.insert("pods".to_string(), 1000);
    u.insert("count/pods".to_string(), 1000);
    let req = quantity::pod_requests(pod);
    let lim = quantity::pod_limits(pod);
    for r in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(v) = req.get(r) {
            u.insert(r.to_string(), *v);
            u.insert(format!("requests.{r}"), *v);
        }
        if let Some(v) = lim.get(r) {
            u.insert(format!("limits.{r}"), *v);
        }
    }
    u
}

/// Does a pod count against quota? Succeeded and Failed pods do not (the evaluator's
/// `QuotaV1Pod`); pods still terminating do.
fn counts(pod: &Value) -> bool {
    let phase = str_at(pod, "/status/phase");
    phase != "Succeeded" && phase != "Failed"
}

impl State {
    /// What the pods of `ns` use now, for every resource the lab counts.
    pub fn quota_used(&self, ns: &str) -> BTreeMap<String, i128> {
        let mut used = BTreeMap::new();
        for p in self.store.list("pods", Some(ns)).filter(|p| counts(p)) {
            for (k, v) in pod_usage(p) {
                *used.entry(k).or_default() += v;
            }
        }
        used
    }

    /// Admission: refuse a pod that would take any quota of its namespace past a hard
    /// limit. The first quota (by name) exceeded answers, as the admission plugin
    /// checks them in order.
    pub(super) fn admit_pod_quota(&self, ns: &str, pod: &Value) -> Result<(), ApiError> {
        let quotas: Vec<&Value> = self.store.list("resourcequotas", Some(ns)).collect();
        if quotas.is_empty() {
            return Ok(());
        }
        let requested = pod_usage(pod);
        let used = self.quota_used(ns);
        for q in quotas {
            let hard_raw = q.pointer("/spec/hard").and_then(Value::as_object);
            let hard = quantity::list(q.pointer("/spec/hard"));
            let exceeded: Vec<&String> = hard
                .iter()
                .filter(|(k, limit)| {
                    requested
                        .get(*k)
                        .is_some_and(|r| used.get(*k).copied().unwrap_or(0) + r > **limit)
                })
                .map(|(k, _)| k)
                .collect();
            if exceeded.is_empty() {
                continue;
            }
            // prettyPrint: `name=value` pairs sorted by name, joined by commas.
            let show = |f: &dyn Fn(&str) -> String| {
                exceeded
                    .iter()
                    .map(|k| format!("{k}={}", f(k)))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let requested = show(&|k| quantity::format(k, requested[k]));
            let used = show(&|k| quantity::format(k, used.get(k).copied().unwrap_or(0)));
            let limited = show(&|k| match hard_raw.and_then(|h| h.get(k)) {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            });
            // admission.NewForbidden names the pod, or its generateName prefix when
            // the name is still to be generated (a ReplicaSet's pods).
            let name = match str_at(pod, "/metadata/generateName") {
                "" => str_at(pod, "/metadata/name"),
                g => g,
            };
            return Err(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "pods \"{name}\" is forbidden: exceeded quota: {}, requested: {requested}, used: {used}, limited: {limited}",
                    str_at(q, "/metadata/name")
                ),
            )
            .with_details(serde_json::json!({"name": name, "kind": "pods"})));
        }
        Ok(())
    }
}
