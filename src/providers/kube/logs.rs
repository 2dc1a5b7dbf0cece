//! `logs`: a container's log through `GET pods/{name}/log`, as `kubectl logs` reads
//! it; for `deployment/NAME` (or another workload) one of its pods, as kubectl picks.

use serde_json::{Value, json};

use super::client::{Req, api_error, query};
use super::display;
use super::read::ListScope;
use super::{Run, Target};
use crate::providers::OpError;

/// The container kubectl reads when none is named: the
/// `kubectl.kubernetes.io/default-container` annotation, else the first.
fn default_container(pod: &Value) -> Option<String> {
    pod.pointer("/metadata/annotations")
        .and_then(|a| a.get("kubectl.kubernetes.io/default-container"))
        .and_then(Value::as_str)
        .or_else(|| {
            pod.pointer("/spec/containers/0/name")
                .and_then(Value::as_str)
        })
        .map(String::from)
}

/// How "active" a pod is, for choosing the one `kubectl logs deployment/x` reads
/// (kubectl sorts by podutils.ActivePods, most active first): scheduled, Running,
/// Ready; then the oldest.
fn activity(pod: &Value) -> (bool, bool, bool) {
    let ready = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    (
        pod.pointer("/spec/nodeName").is_some(),
        pod.pointer("/status/phase") == Some(&json!("Running")),
        ready,
    )
}

impl Run<'_> {
    pub async fn logs(&self) -> Result<Value, OpError> {
        let res = self.res().await?;
        let name = self.name()?.to_string();
        let ns = self.ns(&res).map(str::to_string);
        let pods = self.p.api_res(&Target::builtin("pods"), self.cx).await?;
        let (pod, candidates) = if res.plural == "pods" {
            (self.get_resp(&pods, ns.as_deref(), &name).await?, 1)
        } else {
            let r = self.get_resp(&res, ns.as_deref(), &name).await?;
            if !r.ok() {
                return Err(api_error(&r));
            }
            let labels = r
                .body
                .pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let scope = ListScope {
                ns: ns.as_deref(),
                labels: Some(&labels).filter(|l| !l.is_empty()).map(|l| l.as_str()),
                fields: None,
            };
            let mut all = self.list_objects(&pods, &scope).await?;
            let n = all.len();
            all.sort_by(|a, b| {
                activity(b).cmp(&activity(a)).then_with(|| {
                    let created = |p: &Value| {
                        p.pointer("/metadata/creationTimestamp")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string()
                    };
                    created(a).cmp(&created(b))
                })
            });
            let Some(first) = all.into_iter().next() else {
                return Err(OpError::failed(format!(
                    "error: no pods found for {}/{name}",
                    res.singular
                )));
            };
            (
                super::client::Resp {
                    status: 200,
                    body: first,
                },
                n,
            )
        };
        if !pod.ok() {
            return Err(api_error(&pod));
        }
        let pod_name = pod
            .body
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or(&name)
            .to_string();
        let container = self
            .spec
            .container
            .clone()
            .or_else(|| default_container(&pod.body))
            .unwrap_or_default();
        let tail = self.spec.tail.map(|t| t.to_string()).unwrap_or_default();
        let since = self
            .spec
            .since_seconds
            .map(|s| s.to_string())
            .unwrap_or_default();
        let q = query(&[
            ("container", &container),
            ("tailLines", &tail),
            ("sinceSeconds", &since),
            ("previous", if self.spec.previous { "true" } else { "" }),
        ]);
        let url = format!(
            "{}{q}",
            pods.url(ns.as_deref(), Some(&pod_name), Some("log"))
        );
        let r = self
            .send(Req::get(url).kubectl(display::kubectl(self.spec)))
            .await?;
        if !r.ok() {
            return Err(api_error(&r));
        }
        // The transport decodes JSON bodies: a log of one JSON line arrives as a value.
        let text = match r.body {
            Value::String(s) => s,
            Value::Null => String::new(),
            other => other.to_string(),
        };
        let lines: Vec<&str> = text.lines().collect();
        Ok(
            json!({"pod": pod_name, "container": container, "lines": lines,
            "text": text, "pods": candidates}),
        )
    }
}
