//! POST pods/{name}/eviction: the eviction subresource's checks of
//! PodDisruptionBudgets, then a delete with the eviction's options.

use serde_json::{Value, json};

use super::json::{pod_ready, str_at};
use super::{DeleteOpts, State};
use crate::lab::resources;
use crate::lab::select::LabelSelector;
use crate::lab::status::{self, ApiError};

impl State {
    /// POST pods/{name}/eviction (`pkg/registry/core/pod/storage/eviction.go`, §1.2 step 4).
    pub fn evict(&mut self, ns: &str, name: &str, body: &Value) -> Result<Value, ApiError> {
        let pods = resources::by_key("pods").expect("invariant: pods are a served resource");
        let Some(pod) = self.store.get("pods", ns, name).cloned() else {
            return Err(ApiError::not_found(pods, name));
        };
        // kube 5's EvictParams sends `delete_options` (snake case): unknown to the real
        // server and ignored there, so ignored here too (§2 pitfall b).
        let opts = body
            .get("deleteOptions")
            .map(DeleteOpts::from_json)
            .unwrap_or_default();
        let phase = str_at(&pod, "/status/phase");
        let can_ignore_pdb = matches!(phase, "Succeeded" | "Failed" | "Pending")
            || pod.pointer("/metadata/deletionTimestamp").is_some();
        if !can_ignore_pdb {
            let matching: Vec<Value> = self
                .store
                .list("poddisruptionbudgets.policy", Some(ns))
                .filter(|pdb| {
                    pdb.pointer("/spec/selector")
                        .is_some_and(|s| LabelSelector::from_object(s).matches(&pod))
                })
                .cloned()
                .collect();
            if matching.len() > 1 {
                return Err(ApiError::new(
                    500,
                    "InternalError",
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                ));
            }
            if let Some(pdb) = matching.into_iter().next() {
                let allowed = pdb
                    .pointer("/status/disruptionsAllowed")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let healthy = pdb
                    .pointer("/status/currentHealthy")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let desired = pdb
                    .pointer("/status/desiredHealthy")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let pdb_name = str_at(&pdb, "/metadata/name").to_string();
                // IfHealthyBudget (the default unhealthyPodEvictionPolicy): an unready pod
                // may go when the budget is met without it.
                let unready_ok = !pod_ready(&pod) && healthy >= desired && desired > 0;
                if !unready_ok {
                    if allowed <= 0 {
                        return Err(ApiError::new(429, "TooManyRequests",
                            "Cannot evict pod as it would violate the pod's disruption budget.")
                            .with_details(json!({"causes": [{"reason": "DisruptionBudget",
                                "message": format!("The disruption budget {pdb_name} needs {desired} healthy pods and has {healthy} currently")}]})));
                    }
                    if !opts.dry_run {
                        let mut p = pdb.clone();
                        p["status"]["disruptionsAllowed"] = json!(allowed - 1);
                        self.store
                            .update("poddisruptionbudgets.policy", ns, &pdb_name, p);
                    }
                }
            }
        }
        self.delete(pods, ns, name, &opts)?;
        Ok(status::success(201, json!({"name": name, "kind": "pods"})))
    }
}
