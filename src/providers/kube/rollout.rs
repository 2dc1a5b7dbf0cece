//! `rollout_undo` and `rollout_status` for Deployments, as kubectl performs them
//! (k8s.io/kubectl pkg/polymorphichelpers/rollback.go and rollout_status.go).

use http::Method;
use serde_json::{Value, json};

use super::client::{Req, api_error, query};
use super::display;
use super::read::ListScope;
use super::{ApiRes, Run, Target};
use crate::providers::OpError;

const JSON_PATCH: &str = "application/json-patch+json";

/// The label the Deployment controller adds to its ReplicaSets' templates.
const HASH_LABEL: &str = "pod-template-hash";
const REVISION: &str = "deployment.kubernetes.io/revision";

/// Annotations kubectl does not copy from a ReplicaSet back to its Deployment on a
/// rollback (rollback.go `annotationsToSkip`).
const SKIP_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

fn revision_of(obj: &Value) -> Option<u64> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
}

/// A pod template without the controller's `pod-template-hash` label.
fn without_hash(tpl: &Value) -> Value {
    let mut t = tpl.clone();
    if let Some(l) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        l.remove(HASH_LABEL);
    }
    t
}

/// The images of a pod template's containers, `name=image`.
fn images(tpl: &Value) -> Vec<String> {
    tpl.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{}={}",
                c["name"].as_str().unwrap_or(""),
                c["image"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// `matchLabels` as a label selector string (what kubectl lists ReplicaSets with).
fn selector_string(dep: &Value) -> Result<String, OpError> {
    if dep.pointer("/spec/selector/matchExpressions").is_some() {
        // The lab and every Deployment in this repository use matchLabels; say so
        // rather than list the wrong ReplicaSets.
        return Err(OpError::failed(
            "rollout_undo: a Deployment selector with matchExpressions is not supported yet",
        ));
    }
    let labels = dep
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .ok_or_else(|| OpError::failed("the Deployment has no spec.selector.matchLabels"))?;
    Ok(labels
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(","))
}

/// Where a Deployment's rollout stands, in kubectl's words; `true` when complete
/// (rollout_status.go `DeploymentStatusViewer.Status`).
pub(crate) fn deployment_status(dep: &Value) -> Result<(bool, String), OpError> {
    let name = dep
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let int = |p: &str| dep.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let generation = int("/metadata/generation");
    let observed = int("/status/observedGeneration");
    if generation > observed {
        return Ok((
            false,
            "Waiting for deployment spec update to be observed...".into(),
        ));
    }
    let progress_timed_out = dep
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded");
    if progress_timed_out {
        return Err(OpError::failed(format!(
            "deployment \"{name}\" exceeded its progress deadline"
        )));
    }
    let desired = dep
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let updated = int("/status/updatedReplicas");
    let replicas = int("/status/replicas");
    let available = int("/status/availableReplicas");
    if updated < desired {
        return Ok((
            false,
            format!(
                "Waiting for deployment \"{name}\" rollout to finish: {updated} out of {desired} new replicas have been updated..."
            ),
        ));
    }
    if replicas > updated {
        return Ok((
            false,
            format!(
                "Waiting for deployment \"{name}\" rollout to finish: {} old replicas are pending termination...",
                replicas - updated
            ),
        ));
    }
    if available < updated {
        return Ok((
            false,
            format!(
                "Waiting for deployment \"{name}\" rollout to finish: {available} of {updated} updated replicas are available..."
            ),
        ));
    }
    Ok((
        true,
        format!("deployment \"{name}\" successfully rolled out"),
    ))
}

impl Run<'_> {
    async fn deployment(&self, res: &ApiRes, name: &str) -> Result<Value, OpError> {
        let r = self.get_resp(res, self.ns(res), name).await?;
        if !r.ok() {
            return Err(api_error(&r));
        }
        Ok(r.body)
    }

    /// `rollout_undo`: find the ReplicaSet of the wanted revision (the previous one by
    /// default), and set the Deployment's template back to its template with a JSON
    /// patch, as kubectl does; the Deployment controller then scales that ReplicaSet
    /// up again and numbers it as the newest revision.
    pub async fn rollout_undo(&self) -> Result<Value, OpError> {
        let res = self.res().await?;
        let name = self.name()?.to_string();
        let dep = self.deployment(&res, &name).await?;
        if dep.pointer("/spec/paused") == Some(&Value::Bool(true)) {
            return Err(OpError::failed(format!(
                "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume deployment/{name}' and try again"
            )));
        }
        let rs_res = self
            .p
            .api_res(&Target::builtin("replicasets"), self.cx)
            .await?;
        let selector = selector_string(&dep)?;
        let scope = ListScope {
            ns: self.ns(&res),
            labels: Some(&selector),
            fields: None,
        };
        let uid = dep.pointer("/metadata/uid").cloned().unwrap_or(Value::Null);
        let mut history: Vec<(u64, Value)> = self
            .list_objects(&rs_res, &scope)
            .await?
            .into_iter()
            .filter(|rs| {
                rs.pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|o| o.iter().any(|o| o["controller"] == true && o["uid"] == uid))
            })
            .filter_map(|rs| revision_of(&rs).map(|r| (r, rs)))
            .collect();
        history.sort_by_key(|(r, _)| *r);
        let current = revision_of(&dep).or_else(|| history.last().map(|(r, _)| *r));
        let target = match self.spec.to_revision {
            Some(want) if want > 0 => history
                .iter()
                .find(|(r, _)| *r == u64::from(want))
                .ok_or_else(|| {
                    OpError::failed(format!(
                        "error: unable to find specified revision {want} in history"
                    ))
                })?,
            _ => {
                // The previous revision: the highest one below the current.
                if history.len() < 2 {
                    return Err(OpError::failed(format!(
                        "error: no rollout history found for deployment \"{name}\""
                    )));
                }
                &history[history.len() - 2]
            }
        };
        let (to, rs) = target;
        let template = without_hash(rs.pointer("/spec/template").unwrap_or(&Value::Null));
        let mut out = json!({"deployment": name, "from_revision": current, "to_revision": to,
            "replicaset": rs.pointer("/metadata/name"), "images": images(&template),
            "dry_run": self.cx.dry_run});
        if dep.pointer("/spec/template").map(without_hash) == Some(template.clone()) {
            out["changed"] = json!(false);
            out["message"] = json!(format!(
                "deployment.apps/{name} skipped rollback (current template already matches revision {to})"
            ));
            return Ok(out);
        }
        let mut annotations = dep
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(a) = rs
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
        {
            for (k, v) in a {
                if !SKIP_ANNOTATIONS.contains(&k.as_str()) {
                    annotations.insert(k.clone(), v.clone());
                }
            }
        }
        // rollback.go getDeploymentPatch: replace the template and the annotations.
        // `add` instead of `replace` for the annotations: the same on an object that
        // has them, and valid on one that has none.
        let patch = json!([
            {"op": "replace", "path": "/spec/template", "value": template},
            {"op": "add", "path": "/metadata/annotations", "value": annotations},
        ]);
        let req = Req::new(Method::PATCH, res.url(self.ns(&res), Some(&name), None))
            .json(JSON_PATCH, &patch)
            .kubectl(display::kubectl(self.spec));
        let r = self.send(req).await?;
        if !r.ok() {
            return Err(api_error(&r));
        }
        out["changed"] = json!(true);
        out["message"] = json!(format!("deployment.apps/{name} rolled back"));
        Ok(out)
    }

    /// `rollout_status`: poll the Deployment until kubectl would say "successfully
    /// rolled out", or fail at the deadline with where it stood.
    pub async fn rollout_status(&self) -> Result<Value, OpError> {
        let res = self.res().await?;
        let name = self.name()?.to_string();
        let line = display::kubectl(self.spec);
        loop {
            let r = self
                .send(
                    Req::get(format!(
                        "{}{}",
                        res.url(self.ns(&res), Some(&name), None),
                        query(&[])
                    ))
                    .kubectl(line.clone()),
                )
                .await?;
            if !r.ok() {
                return Err(api_error(&r));
            }
            let dep = r.body;
            let (done, message) = deployment_status(&dep)?;
            let int = |p: &str| dep.pointer(p).and_then(Value::as_i64).unwrap_or(0);
            let out = json!({"deployment": name, "complete": done, "message": message,
                "revision": revision_of(&dep),
                "replicas": dep.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1),
                "updated": int("/status/updatedReplicas"), "ready": int("/status/readyReplicas"),
                "available": int("/status/availableReplicas"), "total": int("/status/replicas")});
            if done {
                return Ok(out);
            }
            match self.pause().await {
                Ok(()) => {}
                Err(OpError::TimedOut(d)) => {
                    return Err(OpError::Failed {
                        message: format!(
                            "rollout of deployment \"{name}\" not complete after {}: {message}; to wait longer, set a longer `timeout:` on the step (e.g. `timeout: {}`)",
                            humantime(d),
                            crate::providers::yaml_duration(d.saturating_mul(2))
                        ),
                        result: Some(out),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn humantime(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match (s / 60, s % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(generation: i64, observed: i64, status: Value) -> Value {
        let mut d = json!({"metadata": {"name": "web", "generation": generation},
            "spec": {"replicas": 3}, "status": status});
        d["status"]["observedGeneration"] = json!(observed);
        d
    }

    #[test]
    fn rollout_status_follows_kubectls_order_of_checks() {
        let s = |d: &Value| deployment_status(d).unwrap();
        assert_eq!(
            s(&dep(2, 1, json!({}))).1,
            "Waiting for deployment spec update to be observed..."
        );
        assert!(
            s(&dep(2, 2, json!({"updatedReplicas": 1, "replicas": 3})))
                .1
                .contains("1 out of 3 new replicas have been updated")
        );
        assert!(
            s(&dep(2, 2, json!({"updatedReplicas": 3, "replicas": 4})))
                .1
                .contains("1 old replicas are pending termination")
        );
        assert!(
            s(&dep(
                2,
                2,
                json!({"updatedReplicas": 3, "replicas": 3, "availableReplicas": 2})
            ))
            .1
            .contains("2 of 3 updated replicas are available")
        );
        assert_eq!(
            s(&dep(
                2,
                2,
                json!({"updatedReplicas": 3, "replicas": 3, "availableReplicas": 3})
            )),
            (true, "deployment \"web\" successfully rolled out".into())
        );
    }
}
