//! `keep:` on a kube action: before each item (and before a single operation) the
//! cluster is read, and the item starts only while more than the floor is healthy,
//! since the item may take one away (docs/engine.md, "Keep").

use serde_json::Value;

use super::ctx::Ctx;
use super::ops::Prepared;
use crate::providers::kube::spec::{KubeSpec, Target};
use crate::providers::{ExecCtx, Resolved, RunClock};
use crate::runbook::model::Keep;
use crate::runbook::verbs::KubeVerb;

/// How long one `keep:` read may take.
const KEEP_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Ctx<'_> {
    /// Ok when `next` may start under `keep`; else why not (what was read, the floor).
    /// A read that fails refuses too: what cannot be seen is not known to be healthy.
    pub(super) async fn keep_holds(&self, keep: &Keep, next: &Prepared) -> Result<(), String> {
        // The cluster is asked before anything is journaled: held events go first.
        self.events.flush().map_err(|e| e.to_string())?;
        let what = match next.planned.scope.item {
            Some(i) => format!("item {i}"),
            None => "the operation".to_string(),
        };
        if let Some(floor) = keep.ready_nodes {
            let spec = KubeSpec {
                verb: KubeVerb::Get,
                resource: Some(Target::builtin("nodes")),
                ..KubeSpec::default()
            };
            let nodes = self.keep_read(spec, next).await.map_err(|e| {
                format!(
                    "`keep: {{ ready_nodes: {floor} }}` could not be checked before {what} ({e})"
                )
            })?;
            let ready = nodes.as_array().map_or(0, |a| {
                a.iter().filter(|n| node_ready_schedulable(n)).count()
            });
            if ready <= floor as usize {
                return Err(format!(
                    "`keep: {{ ready_nodes: {floor} }}` stopped the step before {what}: {ready} node{} Ready and schedulable, and acting on one more could leave fewer than {floor}",
                    if ready == 1 { " is" } else { "s are" }
                ));
            }
        }
        if let (Some((plural, name, floor)), Some(text)) = (&keep.workload, &keep.ready_replicas) {
            let namespace = match &keep.namespace {
                Some(t) => Some(
                    crate::expr::render(&t.value, &next.vars)
                        .map_err(|e| format!("`keep` namespace: {e}"))?,
                ),
                // The action's own namespace, defaults applied when it was resolved.
                None => next
                    .resolved
                    .op
                    .get("namespace")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| self.opts.defaults.namespace.clone()),
            };
            let spec = KubeSpec {
                verb: KubeVerb::Get,
                resource: Some(Target::builtin(plural)),
                name: Some(name.clone()),
                namespace,
                ..KubeSpec::default()
            };
            let text = &text.value;
            let obj = self.keep_read(spec, next).await.map_err(|e| {
                format!(
                    "`keep: {{ ready_replicas: {text} }}` could not be checked before {what} ({e})"
                )
            })?;
            let ready = obj
                .pointer("/status/readyReplicas")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if ready <= u64::from(*floor) {
                return Err(format!(
                    "`keep: {{ ready_replicas: {text} }}` stopped the step before {what}: {plural}/{name} has {ready} Ready replica{}, and acting on one more could leave fewer than {floor}",
                    if ready == 1 { "" } else { "s" }
                ));
            }
        }
        Ok(())
    }

    /// One read-only kube request of a `keep:` check, through the run's provider.
    async fn keep_read(&self, spec: KubeSpec, next: &Prepared) -> Result<Value, String> {
        let provider = self
            .providers
            .get("kube")
            .ok_or_else(|| "no Kubernetes provider is configured for this run".to_string())?;
        let op = Resolved {
            provider: "kube".into(),
            display: crate::providers::kube::display::kubectl(&spec),
            op: serde_json::to_value(&spec).map_err(|e| e.to_string())?,
            mutating: false,
        };
        let cx = ExecCtx {
            cancel: self.cancel.child_token(),
            timeout: Some(KEEP_READ_TIMEOUT),
            dry_run: false,
            vars: std::sync::Arc::clone(&next.vars),
            calls: Default::default(),
            clock: RunClock(std::sync::Arc::clone(&self.clock)),
            approved: None,
            spill: None,
            spawned: None,
        };
        provider.execute(&op, &cx).await.map_err(|e| e.to_string())
    }
}

/// A node whose Ready condition is True and that is not cordoned.
fn node_ready_schedulable(n: &Value) -> bool {
    let ready = n
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
    let cordoned = n
        .pointer("/spec/unschedulable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    ready && !cordoned
}
