//! Shared helpers of the kube provider tests.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use runbook::journal::event::ApiCall;
use runbook::lab::Lab;
use runbook::providers::kube::{KubeProvider, RetryPolicy};
use runbook::providers::{Defaults, ExecCtx, OpError, Provider, Resolved};
use runbook::runbook::model::{KubeOp, OpRef};
use serde_json::{Value, json};

pub const LOST: &str = "gke-prod-a-ssd-pool-32-134a959a-n2sk";
pub const HEALTHY: &str = "gke-prod-a-ssd-pool-32-134a959a-1j33";
pub const OLD_HUB: &str = "hub-65d9f46698-dj4jb";
pub const NEW_HUB: &str = "hub-65d9f46698-dmlcv";

/// The seed lab with its clock stopped (only `advance` moves cluster time).
pub fn seed() -> Lab {
    let lab = Lab::seed();
    lab.set_speed(0.0);
    lab
}

pub fn scenario(yaml: &str) -> Lab {
    let lab = Lab::from_scenario_str(yaml).expect("test scenario parses");
    lab.set_speed(0.0);
    lab
}

/// A fast retry policy so throttling tests take milliseconds.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        max_total: Duration::from_secs(2),
    }
}

/// A provider over the lab's in-process client, unlimited rate, fast polls/retries
/// (drain re-evicts a PDB-blocked pod every 50 ms instead of kubectl's 5 s).
pub fn provider(lab: &Lab) -> KubeProvider {
    KubeProvider::new(lab.client(), "default", 0.0)
        .with_retry(fast_retry())
        .with_poll_interval(Duration::from_millis(20))
        .with_eviction_retry(Duration::from_millis(50))
        .with_default_wait(Duration::from_secs(20))
}

/// A `kube` op as a runbook writes it, e.g. `{get: pods, namespace: prod}`; parsed
/// and validated by the real parser.
pub fn op(kube: &str) -> KubeOp {
    let src = format!(
        "version: 1\nname: t\ntitle: t\nparams:\n  node: {{ default: x }}\n  n: {{ default: x }}\nsteps:\n  - action: a\n    id: a\n    for_each: \"[1]\"\n    kube: {kube}\n"
    );
    let rb = runbook::runbook::parse_str(&src, Path::new("t.yaml"))
        .unwrap_or_else(|d| panic!("test op {kube} does not parse: {d:?}"));
    rb.steps[0].kube.clone().expect("the step has a kube op")
}

pub fn resolve(p: &KubeProvider, kube: &str, vars: &Value) -> Result<Resolved, OpError> {
    let op = op(kube);
    p.resolve(OpRef::Kube(&op), vars, &Defaults::default())
}

/// What one execution gave and the API calls it recorded.
pub struct Ran {
    pub resolved: Resolved,
    pub result: Result<Value, OpError>,
    pub calls: Vec<ApiCall>,
}

impl Ran {
    pub fn ok(&self) -> &Value {
        match &self.result {
            Ok(v) => v,
            Err(e) => panic!("{} failed: {e:?}", self.resolved.display),
        }
    }

    pub fn err(&self) -> (&str, Option<&Value>) {
        match &self.result {
            Err(OpError::Failed { message, result }) => (message, result.as_ref()),
            other => panic!("{} should fail, gave {other:?}", self.resolved.display),
        }
    }

    /// `METHOD status` of every call, in order.
    pub fn trace(&self) -> Vec<String> {
        self.calls
            .iter()
            .map(|c| format!("{} {}", c.method, c.status))
            .collect()
    }
}

pub async fn run_with(p: &KubeProvider, kube: &str, cx: ExecCtx) -> Ran {
    let resolved = resolve(p, kube, &cx.vars).expect("the op resolves");
    let result = p.execute(&resolved, &cx).await;
    Ran {
        resolved,
        result,
        calls: cx.calls.take(),
    }
}

pub async fn run(p: &KubeProvider, kube: &str) -> Ran {
    run_with(p, kube, ExecCtx::new(json!({}))).await
}

pub fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|o| {
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

pub fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}
