//! Providers: the only code that touches the outside world.
//!
//! The engine never runs a command, sends a request or calls the Kubernetes API
//! itself. For every operation of a step it asks the provider named by the operation's
//! key (`shell`, `http`, `prometheus`, `kube`) to
//!
//! 1. [`Provider::resolve`] it: render its templates against the run's variables and
//!    return a [`Resolved`] operation — the data that will run, one line a person can
//!    read and repeat by hand (`display`), and whether it changes anything. This is
//!    pure: the gate's plan, `--dry-run` and the journal show exactly this value.
//! 2. [`Provider::execute`] it: perform the resolved operation, bounded by the
//!    cancellation token and the timeout in [`ExecCtx`], and return its result as JSON.
//!
//! Engine tests register a scripted provider under every name ([`Providers::with`]),
//! so they run in milliseconds with no process, socket or cluster.
//!
//! `manual` operations are not a provider: they need a person, and the engine asks
//! its approver for them.

pub mod kube;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::journal::event::{ApiCall, Impact};

pub mod http;
pub mod limits;
pub mod prometheus;
pub mod shell;
use crate::runbook::model::OpRef;

/// An operation with every template rendered: what the plan shows, what the journal
/// records before it runs, and what [`Provider::execute`] performs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolved {
    /// `shell`, `http`, `prometheus` or `kube`.
    pub provider: String,
    /// One line a person can read and repeat by hand: the argv, `GET https://…`,
    /// `kubectl delete pod x --grace-period=0 --force -n prod`.
    pub display: String,
    /// The resolved operation as data (provider-specific). Conditions that a provider
    /// evaluates per object (`kube` `where`, `wait.for`) stay unevaluated here: they
    /// are evaluated at execution against [`ExecCtx::vars`].
    pub op: Value,
    /// True when running it may change the outside world.
    pub mutating: bool,
}

impl Resolved {
    /// The provider-specific data of this operation, as its provider wrote it in
    /// [`Provider::resolve`] (and as the journal keeps it for `resume`).
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, OpError> {
        // Read from the value where it is (no copy of the operation per decode).
        T::deserialize(&self.op).map_err(|e| {
            OpError::Invalid(format!("not a resolved {} operation: {e}", self.provider))
        })
    }
}

/// Render one templated field of an operation; the error names the field.
pub fn render_field(template: &str, vars: &Value, field: &str) -> Result<String, OpError> {
    crate::expr::render(template, vars).map_err(|e| OpError::Invalid(format!("{field}: {e}")))
}

/// What a provider needs to know besides the operation and the variables.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    /// Default Kubernetes namespace (command line, then the runbook's `kube.namespace`,
    /// then the kubeconfig's).
    pub namespace: Option<String>,
    /// Working directory of shell steps that name none: the runbook's folder.
    pub base_dir: PathBuf,
    /// Environment every shell step gets under its own `env` (which wins): the run's
    /// `KUBECONFIG` and `RUNBOOK_KUBE_CONTEXT`, so `kubectl` in a shell step talks to
    /// the cluster the run's kube steps act on.
    pub env: std::collections::BTreeMap<String, String>,
}

/// How one execution of a resolved operation is bounded and observed.
#[derive(Debug, Clone)]
pub struct ExecCtx {
    /// Cancelled on Ctrl-C or when the step's deadline passes: kill the child process,
    /// drop the request, and return [`OpError::Cancelled`] promptly.
    pub cancel: CancellationToken,
    /// Bound on this attempt (the step's `timeout`), when it has one.
    pub timeout: Option<Duration>,
    /// Ask the server for a dry run of writes (`dryRun=All`) where it supports one.
    pub dry_run: bool,
    /// The run's variables (`params`, saved values, `item`, `index`), for conditions
    /// that a provider evaluates itself. Shared, not copied, by every attempt of
    /// an operation (an item of a `for_each` holds a whole object).
    pub vars: std::sync::Arc<Value>,
    /// API calls made so far by this execution, in order; the engine journals them.
    pub calls: CallLog,
    /// The run's clock. Waits inside an operation (polling, retry cadences) sleep on
    /// it and measure their deadline by it, so that against the lab's virtual time
    /// (`runbook demo`, `runbook test`) they follow the cluster's time.
    pub clock: RunClock,
    /// Told the process group id of a program the execution started (shell), so
    /// the engine can journal it before the program's outcome is known.
    pub spawned: Option<tokio::sync::mpsc::UnboundedSender<u32>>,
    /// The objects the approver saw in the plan's impact ([`Provider::impact`]): a
    /// fan-out operation acts on no object outside them.
    pub approved: Option<Vec<String>>,
    /// Where a stream past the in-memory cap is written whole (the run's side
    /// files); `None` outside a run, where such a stream is only counted.
    pub spill: Option<limits::SpillTo>,
}

impl ExecCtx {
    pub fn new(vars: Value) -> ExecCtx {
        ExecCtx {
            cancel: CancellationToken::new(),
            timeout: None,
            dry_run: false,
            vars: std::sync::Arc::new(vars),
            calls: CallLog::default(),
            clock: RunClock::default(),
            spawned: None,
            approved: None,
            spill: None,
        }
    }
}

/// The clock an operation waits on: the run's [`Clock`](crate::clock::Clock)
/// (the wall clock by default).
#[derive(Clone)]
pub struct RunClock(pub Arc<dyn crate::clock::Clock>);

impl Default for RunClock {
    fn default() -> RunClock {
        RunClock(Arc::new(crate::clock::SystemClock))
    }
}

impl std::fmt::Debug for RunClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunClock")
    }
}

impl RunClock {
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.now()
    }

    pub async fn sleep(&self, d: Duration) {
        self.0.sleep(d).await;
    }
}

/// Shared, append-only list of the API calls one execution made (including retried
/// ones), so a timed-out or cancelled execution still reports what it sent.
#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<Mutex<Vec<ApiCall>>>);

impl CallLog {
    pub fn push(&self, call: ApiCall) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(call);
    }

    pub fn take(&self) -> Vec<ApiCall> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// How to give an operation that timed out after `d` longer, in the runbook's own
/// words: every timeout message says which key raises it (issue 13).
pub fn raise_timeout(d: Duration) -> String {
    format!(
        "to allow longer, set a longer `timeout:` on the step (e.g. `timeout: {}`)",
        yaml_duration(d.saturating_mul(2).max(Duration::from_secs(1)))
    )
}

/// A duration as a runbook writes it: `90s`, `4m`, `2h`.
pub fn yaml_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s > 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s > 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else if d.subsec_millis() == 0 {
        format!("{s}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Why an operation did not produce a result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OpError {
    /// The operation ran and failed (non-zero exit, unexpected status, API error).
    /// `result` carries what it returned anyway (stdout, the Status body), for the journal.
    #[error("{message}")]
    Failed {
        message: String,
        result: Option<Value>,
    },
    /// The timeout in [`ExecCtx`] ran out.
    #[error("timed out after {}; {}", yaml_duration(*.0), raise_timeout(*.0))]
    TimedOut(Duration),
    /// The cancellation token fired (Ctrl-C).
    #[error("cancelled")]
    Cancelled,
    /// The operation could not be resolved or is invalid for this provider.
    #[error("{0}")]
    Invalid(String),
}

impl OpError {
    pub fn failed(message: impl Into<String>) -> OpError {
        OpError::Failed {
            message: message.into(),
            result: None,
        }
    }

    /// A provider was handed another provider's operation (an engine bug).
    pub fn wrong_provider(provider: &str, op: &OpRef<'_>) -> OpError {
        OpError::Invalid(format!(
            "the {provider} provider cannot run a `{}` operation",
            op.provider()
        ))
    }
}

/// One kind of operation: `shell`, `http`, `prometheus` or `kube`.
pub trait Provider: Send + Sync {
    /// Render `op`'s templates against `vars` and describe the result. Pure: no I/O.
    fn resolve(
        &self,
        op: OpRef<'_>,
        vars: &Value,
        defaults: &Defaults,
    ) -> Result<Resolved, OpError>;

    /// Perform a resolved operation. Must return promptly with [`OpError::Cancelled`]
    /// when `cx.cancel` fires and with [`OpError::TimedOut`] when `cx.timeout` passes.
    fn execute<'a>(
        &'a self,
        op: &'a Resolved,
        cx: &'a ExecCtx,
    ) -> BoxFuture<'a, Result<Value, OpError>>;

    /// Whether [`Provider::impact`] may find something for this operation: the
    /// engine asks for an impact (and waits for it) only when this is true. A
    /// provider that overrides `impact` overrides this too.
    fn may_have_impact(&self, _op: &Resolved) -> bool {
        false
    }

    /// What a resolved operation would touch, found by read-only requests when its
    /// plan is shown (a delete by selector lists what matches). None for operations
    /// that name what they touch.
    fn impact<'a>(
        &'a self,
        _op: &'a Resolved,
        _cx: &'a ExecCtx,
    ) -> BoxFuture<'a, Result<Option<Impact>, OpError>> {
        Box::pin(async { Ok(None) })
    }

    /// One request on the Lease `name` of the run's `lock:` (in namespace `ns`, else
    /// the provider's default): its HTTP status and body. Only `kube` holds leases.
    fn lease<'a>(
        &'a self,
        _ns: Option<&'a str>,
        _name: &'a str,
        _call: LeaseCall,
        _cx: &'a ExecCtx,
    ) -> BoxFuture<'a, Result<(u16, Value), OpError>> {
        Box::pin(async { Err(OpError::Invalid("this provider holds no leases".into())) })
    }
}

/// A request of the `lock:` protocol on a `coordination.k8s.io/v1` Lease.
#[derive(Debug, Clone)]
pub enum LeaseCall {
    Get,
    /// POST: 409 when it exists.
    Create(Value),
    /// PUT with the `metadata.resourceVersion` read: 409 when it changed since.
    Replace(Value),
}

/// The providers a run may use, by name.
#[derive(Clone, Default)]
pub struct Providers {
    map: HashMap<String, Arc<dyn Provider>>,
}

impl Providers {
    /// No providers: every operation fails with "no provider".
    pub fn empty() -> Providers {
        Providers::default()
    }

    /// Register (or replace) the provider for `name`.
    pub fn with(mut self, name: &str, provider: Arc<dyn Provider>) -> Providers {
        self.map.insert(name.to_string(), provider);
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Provider>> {
        self.map.get(name)
    }
}

/// The providers every real run has: shell, http and prometheus. Kubernetes is added
/// by the caller, because connecting needs flags (`runbook run`) or a lab (`runbook
/// test`). Built here rather than in the CLI so that `suite` and `cli` share one set
/// without `suite` importing `cli` (docs/architecture.md, "Modules").
pub fn standard() -> Result<Providers, String> {
    Ok(Providers::empty()
        .with("shell", Arc::new(shell::Shell))
        .with("http", Arc::new(http::Http::new()?))
        .with("prometheus", Arc::new(prometheus::Prometheus::new()?)))
}

/// Install ring as the process-wide rustls provider; harmless when already installed.
/// kube and reqwest each could pick a provider of their own, and two in one process
/// make `kube::Client::try_from` panic (docs: STYLE.md "Two TLS crypto providers
/// panic"), so every client this crate builds calls this first.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.map.keys().collect();
        names.sort();
        f.debug_struct("Providers").field("names", &names).finish()
    }
}
