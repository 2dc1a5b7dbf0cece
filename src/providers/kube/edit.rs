//! `label`, `annotate`, `set_image` and `apply`: the edits kubectl makes to one object,
//! each answering with what changed.

use http::Method;
use serde_json::{Map, Value, json};

use super::Run;
use super::client::{Req, api_error, query};
use super::display;
use crate::providers::OpError;

const MERGE: &str = "application/merge-patch+json";
const STRATEGIC: &str = "application/strategic-merge-patch+json";
const APPLY: &str = "application/apply-patch+yaml";

/// The field manager of `apply` (kubectl's is `kubectl`).
pub const FIELD_MANAGER: &str = "runbook";

/// Where `new` differs from `old`, as paths (`spec.template.spec.containers[0].image`);
/// what the server maintains itself (resourceVersion, managedFields, status...) is left out.
pub(crate) fn changes(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff("", old, new, &mut out);
    out.retain(|p| {
        ![
            "metadata.resourceVersion",
            "metadata.generation",
            "metadata.managedFields",
            "metadata.uid",
            "metadata.creationTimestamp",
            "status",
        ]
        .iter()
        .any(|skip| {
            p == skip || p.starts_with(&format!("{skip}.")) || p.starts_with(&format!("{skip}["))
        })
    });
    out
}

fn diff(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff(
                    &p,
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(&format!("{path}[{i}]"), x, y, out);
            }
        }
        (a, b) if a != b => out.push(path.to_string()),
        _ => {}
    }
}

impl Run<'_> {
    /// `label` / `annotate` (`field` is `labels` or `annotations`): kubectl's rules —
    /// a key that has another value is refused without `overwrite`; removing a key
    /// that is not there is not an error. One JSON merge patch, as kubectl sends.
    pub async fn edit_meta(&self, field: &str) -> Result<Value, OpError> {
        let res = self.res().await?;
        let name = self.name()?.to_string();
        let r = self.get_resp(&res, self.ns(&res), &name).await?;
        if !r.ok() {
            return Err(api_error(&r));
        }
        let current: Map<String, Value> = r
            .body
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut patch = Map::new();
        let mut set = Vec::new();
        for (k, v) in &self.spec.set {
            match current.get(k).and_then(Value::as_str) {
                Some(cur) if cur == v => {}
                Some(cur) if !self.spec.overwrite => {
                    return Err(OpError::failed(format!(
                        "error: '{k}' already has a value ({cur}), and --overwrite is false"
                    )));
                }
                _ => {
                    patch.insert(k.clone(), json!(v));
                    set.push(k.clone());
                }
            }
        }
        let mut removed = Vec::new();
        for k in &self.spec.remove {
            if current.contains_key(k) {
                patch.insert(k.clone(), Value::Null);
                removed.push(k.clone());
            }
        }
        let mut out = json!({"name": name, "set": set, "removed": removed,
            "changed": !patch.is_empty(), "dry_run": self.cx.dry_run});
        if patch.is_empty() {
            out[field] = Value::Object(current);
            return Ok(out);
        }
        let body = json!({"metadata": {field: patch}});
        let req = Req::new(Method::PATCH, res.url(self.ns(&res), Some(&name), None))
            .json(MERGE, &body)
            .kubectl(display::kubectl(self.spec));
        let r = self.send(req).await?;
        if !r.ok() {
            return Err(api_error(&r));
        }
        out[field] = r
            .body
            .pointer(&format!("/metadata/{field}"))
            .cloned()
            .unwrap_or(json!({}));
        Ok(out)
    }

    /// `set_image`: kubectl set image — every named container must exist (`*` means
    /// all); a strategic merge patch of the containers by name. Nothing is sent when
    /// every image is already the one asked for.
    pub async fn set_image(&self) -> Result<Value, OpError> {
        let res = self.res().await?;
        let name = self.name()?.to_string();
        let r = self.get_resp(&res, self.ns(&res), &name).await?;
        if !r.ok() {
            return Err(api_error(&r));
        }
        let pod_spec = if res.plural == "pods" {
            "/spec"
        } else {
            "/spec/template/spec"
        };
        let mut containers = Vec::new();
        let mut previous = Map::new();
        let mut found = std::collections::BTreeSet::new();
        for list in ["initContainers", "containers"] {
            for c in r
                .body
                .pointer(&format!("{pod_spec}/{list}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let cname = c["name"].as_str().unwrap_or("").to_string();
                let image = self
                    .spec
                    .images
                    .get(&cname)
                    .or_else(|| self.spec.images.get("*"));
                if let Some(image) = image {
                    found.insert(cname.clone());
                    if c["image"].as_str() != Some(image) {
                        previous.insert(cname.clone(), c["image"].clone());
                        containers.push((list, json!({"name": cname, "image": image})));
                    }
                }
            }
        }
        if let Some(missing) = self
            .spec
            .images
            .keys()
            .find(|k| *k != "*" && !found.contains(*k))
        {
            return Err(OpError::failed(format!(
                "error: unable to find container named \"{missing}\""
            )));
        }
        let mut out = json!({"name": name, "images": self.spec.images, "previous": previous,
            "changed": !containers.is_empty(), "dry_run": self.cx.dry_run});
        if containers.is_empty() {
            return Ok(out);
        }
        let mut spec = Map::new();
        for (list, c) in containers {
            spec.entry(list)
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .expect("invariant: inserted as an array")
                .push(c);
        }
        let body = if res.plural == "pods" {
            json!({"spec": spec})
        } else {
            json!({"spec": {"template": {"spec": spec}}})
        };
        let req = Req::new(Method::PATCH, res.url(self.ns(&res), Some(&name), None))
            .json(STRATEGIC, &body)
            .kubectl(display::kubectl(self.spec));
        let r = self.send(req).await?;
        if !r.ok() {
            return Err(api_error(&r));
        }
        out["generation"] = r
            .body
            .pointer("/metadata/generation")
            .cloned()
            .unwrap_or(Value::Null);
        Ok(out)
    }

    /// `apply`: server-side apply (PATCH `application/apply-patch+yaml`, field manager
    /// `runbook`), as `kubectl apply --server-side`; with `dry_run: true` the server
    /// only answers what the object would become. The result lists the paths that
    /// change (`changes`) and whether the object is new (`created`).
    pub async fn apply(&self) -> Result<Value, OpError> {
        let res = self.res().await?;
        let name = self.name()?.to_string();
        let ns = self.ns(&res);
        let live = self.get_object(&res, ns, &name).await?;
        // The run's `--dry-run` already asks for `dryRun=All` on every write.
        let dry = if self.spec.dry_run && !self.cx.dry_run {
            "All"
        } else {
            ""
        };
        let q = query(&[("fieldManager", FIELD_MANAGER), ("dryRun", dry)]);
        let body = self.spec.body.clone().unwrap_or(Value::Null);
        let req = Req::new(
            Method::PATCH,
            format!("{}{q}", res.url(ns, Some(&name), None)),
        )
        .json(APPLY, &body)
        .kubectl(display::kubectl(self.spec));
        let r = self.send(req).await?;
        if !r.ok() {
            return Err(api_error(&r));
        }
        // A new object: everything changes, the paths would say nothing more.
        let diffs = live
            .as_ref()
            .map(|old| changes(old, &r.body))
            .unwrap_or_default();
        Ok(json!({"kind": res.kind, "name": name, "namespace": ns,
            "created": live.is_none(), "changed": live.is_none() || !diffs.is_empty(),
            "changes": diffs,
            "object": r.body, "dry_run": self.spec.dry_run || self.cx.dry_run}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_the_paths_that_differ_and_not_what_the_server_keeps() {
        let old = json!({"metadata": {"resourceVersion": "1", "labels": {"a": "1"}},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "app", "image": "web:1"}]}}},
            "status": {"replicas": 3}});
        let new = json!({"metadata": {"resourceVersion": "2", "labels": {"a": "1", "b": "2"}},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "app", "image": "web:2"}]}}},
            "status": {"replicas": 1}});
        assert_eq!(
            changes(&old, &new),
            [
                "metadata.labels.b",
                "spec.template.spec.containers[0].image"
            ]
        );
        assert!(changes(&old, &old).is_empty());
    }
}
