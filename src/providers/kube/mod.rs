//! The `kube` provider: Kubernetes operations the way kubectl performs them.
//!
//! - [`KubeProvider::resolve`] renders a runbook's `kube` mapping into a [`KubeSpec`]
//!   and the equivalent kubectl line ([`display::kubectl`]) the gate shows.
//! - [`KubeProvider::execute`] performs it with kube's raw client over any kind (the
//!   lab's in-process router or a real cluster), one request at a time through
//!   [`client::Transport`]: a rate limit shared by every concurrent execution, bounded
//!   retries of 429/5xx, every attempt journaled in `cx.calls`.
//!
//! What each verb sends, and why, is in docs/kube.md and reference/kubernetes.md §1.

pub mod client;
pub mod display;
mod drain;
mod edit;
mod impact;
mod logs;
mod read;
mod rollout;
pub mod spec;
pub mod target;
mod wait;
pub(crate) mod write;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

pub use client::{KubeConnect, KubeError, MAX_QPS, MIN_QPS, RateLimiter, RetryPolicy, parse_qps};
pub use spec::{KubeSpec, Target};
pub use target::connect_and_identify;

use crate::providers::{Defaults, ExecCtx, OpError, Provider, Resolved};
use crate::runbook::model::OpRef;
use crate::runbook::verbs::KubeVerb;
use client::{Req, Transport, api_error, encode};

/// Default client-side rate limit, requests per second.
pub const DEFAULT_QPS: f64 = 20.0;

/// Bound on `wait` and on drain's wait for deletion when the step sets no timeout.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);

/// kubectl drain evicts a pod again this long after its PodDisruptionBudget refused it
/// (pkg/drain/drain.go evictPods: "will retry after 5s").
pub const EVICT_RETRY: Duration = Duration::from_secs(5);

/// Connect to the cluster kubectl would talk to with the same flags
/// (`--kubeconfig`, `--context`, `--namespace`; `KUBECONFIG`; in-cluster config).
pub async fn connect(opts: &KubeConnect) -> Result<KubeProvider, KubeError> {
    if client::parse_qps(&opts.qps.to_string()).is_err() {
        return Err(KubeError::Qps(opts.qps));
    }
    let cfg = client::load_config(opts).await?;
    let ns = cfg.default_namespace.clone();
    super::install_crypto_provider();
    let client = kube::Client::try_from(cfg).map_err(|e| KubeError::Client(e.to_string()))?;
    Ok(KubeProvider::new(client, ns, opts.qps))
}

/// A resource as the server serves it (built in, or found by discovery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiRes {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub kind: String,
    pub singular: String,
    pub namespaced: bool,
}

impl ApiRes {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `/api/v1/namespaces/prod/pods/hub-1/eviction`; `ns` is ignored for
    /// cluster-scoped kinds.
    pub fn url(&self, ns: Option<&str>, name: Option<&str>, sub: Option<&str>) -> String {
        let mut u = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        if self.namespaced
            && let Some(ns) = ns
        {
            u.push_str("/namespaces/");
            u.push_str(&encode(ns));
        }
        u.push('/');
        u.push_str(&self.plural);
        if let Some(n) = name {
            u.push('/');
            u.push_str(&encode(n));
        }
        if let Some(s) = sub {
            u.push('/');
            u.push_str(s);
        }
        u
    }
}

/// The `kube` provider. Clones share the rate limiter and the discovery cache.
#[derive(Clone)]
pub struct KubeProvider {
    transport: Transport,
    default_namespace: String,
    default_wait: Duration,
    poll: Duration,
    evict_retry: Duration,
    concurrency: usize,
    discovered: Arc<Mutex<HashMap<String, ApiRes>>>,
}

impl KubeProvider {
    /// A provider over an existing client (the lab's: `lab.client()`). `qps` is the
    /// client-side rate limit (0 = unlimited). The client must not retry by itself:
    /// build it with `cfg.default_retry = false` (the lab's client has no retry layer).
    pub fn new(client: kube::Client, default_namespace: impl Into<String>, qps: f64) -> Self {
        KubeProvider {
            transport: Transport {
                client,
                limiter: RateLimiter::new(qps),
                retry: RetryPolicy::default(),
            },
            default_namespace: default_namespace.into(),
            default_wait: DEFAULT_WAIT,
            poll: Duration::from_secs(1),
            evict_retry: EVICT_RETRY,
            concurrency: 32,
            discovered: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Replace the retry policy of 429 and 5xx answers.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.transport.retry = retry;
        self
    }

    /// How often `wait` and drain poll (default 1 s, as kubectl's wait for delete).
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(1));
        self
    }

    /// How long drain waits before evicting again a pod whose PodDisruptionBudget
    /// refused it (default 5 s, kubectl drain's fixed interval).
    pub fn with_eviction_retry(mut self, every: Duration) -> Self {
        self.evict_retry = every.max(Duration::from_millis(1));
        self
    }

    /// Bound on `wait` and drain when the step has no timeout (default 5 min).
    pub fn with_default_wait(mut self, d: Duration) -> Self {
        self.default_wait = d;
        self
    }

    /// How many requests one operation keeps in flight when it acts on many objects
    /// (delete by selector, drain); the rate limit applies on top (default 32).
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// The namespace used when neither the operation nor the runbook names one.
    pub fn default_namespace(&self) -> &str {
        &self.default_namespace
    }

    /// Resolve a runbook `kube` op without the engine (tests, `runbook plan`).
    pub fn resolve_kube(
        &self,
        op: &crate::runbook::model::KubeOp,
        vars: &Value,
        defaults: &Defaults,
    ) -> Result<Resolved, OpError> {
        let ns = defaults
            .namespace
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| self.default_namespace.clone());
        let spec = spec::resolve(op, vars, &ns, &defaults.base_dir)?;
        Ok(Resolved {
            provider: "kube".into(),
            display: display::kubectl(&spec),
            mutating: spec.verb.mutates() && !spec.dry_run,
            op: serde_json::to_value(&spec).map_err(|e| OpError::Invalid(e.to_string()))?,
        })
    }

    /// Perform a resolved spec (what `execute` does after reading `Resolved::op`).
    pub async fn run(&self, spec: &KubeSpec, cx: &ExecCtx) -> Result<Value, OpError> {
        let bounded = matches!(
            spec.verb,
            KubeVerb::Wait | KubeVerb::Drain | KubeVerb::RolloutStatus
        );
        let limit = cx.timeout.or(bounded.then_some(self.default_wait));
        // `wait` and drain poll: they sleep on the run's clock and end themselves at
        // this deadline, measured by that clock (the lab's virtual time in `runbook
        // test`), drain with its own error (which pod, which budget).
        // Saturating: `now + TimeDelta::MAX` panics (issue 13 item 10).
        let deadline = limit.map(|d| {
            chrono::Duration::from_std(d)
                .ok()
                .and_then(|d| cx.clock.now().checked_add_signed(d))
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
        });
        let run = Run {
            p: self,
            cx,
            spec,
            limit,
            deadline,
        };
        let work = run.dispatch();
        // The wall-clock bound of everything else (one request that hangs), and a
        // backstop for the pollers, which end on their own first.
        let backstop = if bounded {
            POLLER_BACKSTOP
        } else {
            Duration::ZERO
        };
        let work = async {
            match limit {
                Some(d) => tokio::time::timeout(d + backstop, work)
                    .await
                    .unwrap_or(Err(OpError::TimedOut(d))),
                None => work.await,
            }
        };
        tokio::select! {
            r = work => r,
            _ = cx.cancel.cancelled() => Err(OpError::Cancelled),
        }
    }

    /// The server's view of a resource: built-in kinds as they are, custom resources
    /// through discovery (`/apis/GROUP`, then `/apis/GROUP/VERSION`), cached.
    pub(crate) async fn api_res(&self, t: &Target, cx: &ExecCtx) -> Result<ApiRes, OpError> {
        if let (Some(version), Some(kind), Some(namespaced)) = (&t.version, &t.kind, t.namespaced) {
            return Ok(ApiRes {
                group: t.group.clone(),
                version: version.clone(),
                plural: t.plural.clone(),
                kind: kind.clone(),
                singular: t.singular.clone(),
                namespaced,
            });
        }
        let key = format!("{}.{}", t.plural, t.group);
        if let Some(r) = self
            .discovered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(r.clone());
        }
        let not_served = || {
            OpError::failed(format!(
                "error: the server doesn't have a resource type \"{key}\""
            ))
        };
        let group = self
            .send(
                &Req::get(format!("/apis/{}", encode(&t.group))).kubectl("kubectl api-resources"),
                cx,
            )
            .await?;
        if group.status == 404 {
            return Err(not_served());
        }
        if !group.ok() {
            return Err(api_error(&group));
        }
        let version = group.body["preferredVersion"]["version"]
            .as_str()
            .or_else(|| group.body["versions"][0]["version"].as_str())
            .ok_or_else(not_served)?
            .to_string();
        let list = self
            .send(
                &Req::get(format!("/apis/{}/{}", encode(&t.group), encode(&version)))
                    .kubectl("kubectl api-resources"),
                cx,
            )
            .await?;
        if !list.ok() {
            return Err(api_error(&list));
        }
        let entry = list.body["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["name"] == t.plural.as_str())
            .ok_or_else(not_served)?;
        let res = ApiRes {
            group: t.group.clone(),
            version,
            plural: t.plural.clone(),
            kind: entry["kind"].as_str().unwrap_or_default().to_string(),
            singular: entry["singularName"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or(&t.singular)
                .to_string(),
            namespaced: entry["namespaced"].as_bool().unwrap_or(true),
        };
        self.discovered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, res.clone());
        Ok(res)
    }

    pub(crate) async fn send(&self, req: &Req, cx: &ExecCtx) -> Result<client::Resp, OpError> {
        self.transport.send(req, cx).await
    }
}

/// One execution: the provider, the context and the resolved spec.
pub(crate) struct Run<'a> {
    pub p: &'a KubeProvider,
    pub cx: &'a ExecCtx,
    pub spec: &'a KubeSpec,
    /// The operation's timeout (the step's, or the default bound of wait and drain).
    pub limit: Option<Duration>,
    /// When `limit` runs out, on the run's clock; None when nothing bounds it.
    pub deadline: Option<chrono::DateTime<chrono::Utc>>,
}

/// How long past their deadline on the wall clock the pollers (`wait`, drain) are
/// given to end on their own, with their own error, before the wall-clock bound
/// cuts them off.
const POLLER_BACKSTOP: Duration = Duration::from_secs(1);

impl Run<'_> {
    /// Sleep one poll interval on the run's clock (less when the deadline is nearer);
    /// `Cancelled` on Ctrl-C, `TimedOut` once the deadline has passed.
    pub async fn pause(&self) -> Result<(), OpError> {
        self.nap(self.p.poll).await?;
        match (self.limit, self.deadline) {
            (Some(limit), Some(d)) if self.cx.clock.now() >= d => Err(OpError::TimedOut(limit)),
            _ => Ok(()),
        }
    }

    /// Sleep `d` on the run's clock, but not past the deadline; `Cancelled` on Ctrl-C.
    pub async fn nap(&self, d: Duration) -> Result<(), OpError> {
        let d = match self.deadline {
            Some(at) => d.min((at - self.cx.clock.now()).to_std().unwrap_or_default()),
            None => d,
        };
        tokio::select! {
            () = self.cx.clock.sleep(d) => Ok(()),
            _ = self.cx.cancel.cancelled() => Err(OpError::Cancelled),
        }
    }

    /// Whether the deadline has passed on the run's clock.
    pub fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| self.cx.clock.now() >= d)
    }
}

impl Run<'_> {
    async fn dispatch(&self) -> Result<Value, OpError> {
        // Exhaustive: a verb added to `runbook::verbs` does not compile until it is
        // dispatched here.
        match self.spec.verb {
            KubeVerb::Get => self.get().await,
            KubeVerb::Cordon => self.cordon(true).await,
            KubeVerb::Uncordon => self.cordon(false).await,
            KubeVerb::Taint => self.taint().await,
            KubeVerb::Untaint => self.untaint().await,
            KubeVerb::Delete => self.delete().await,
            KubeVerb::Evict => self.evict().await,
            KubeVerb::Patch => self.patch().await,
            KubeVerb::Scale => self.scale().await,
            KubeVerb::RolloutRestart => self.rollout_restart().await,
            KubeVerb::Drain => self.drain().await,
            KubeVerb::Wait => self.wait().await,
            KubeVerb::RolloutUndo => self.rollout_undo().await,
            KubeVerb::RolloutStatus => self.rollout_status().await,
            KubeVerb::Logs => self.logs().await,
            KubeVerb::Label => self.edit_meta("labels").await,
            KubeVerb::Annotate => self.edit_meta("annotations").await,
            KubeVerb::SetImage => self.set_image().await,
            KubeVerb::Apply => self.apply().await,
        }
    }

    /// The operation's resource as the server serves it.
    pub async fn res(&self) -> Result<ApiRes, OpError> {
        let t = self
            .spec
            .resource
            .as_ref()
            .ok_or_else(|| OpError::Invalid("the kube operation names no resource".into()))?;
        self.p.api_res(t, self.cx).await
    }

    /// The operation's namespace, None for cluster-scoped kinds.
    pub fn ns(&self, res: &ApiRes) -> Option<&str> {
        if res.namespaced {
            self.spec.namespace.as_deref()
        } else {
            None
        }
    }

    pub fn name(&self) -> Result<&str, OpError> {
        self.spec
            .name
            .as_deref()
            .ok_or_else(|| OpError::Invalid(format!("kube `{}` needs a name", self.spec.verb)))
    }

    pub async fn send(&self, req: Req) -> Result<client::Resp, OpError> {
        self.p.send(&req, self.cx).await
    }
}

impl Provider for KubeProvider {
    fn lease<'a>(
        &'a self,
        ns: Option<&'a str>,
        name: &'a str,
        call: crate::providers::LeaseCall,
        cx: &'a ExecCtx,
    ) -> BoxFuture<'a, Result<(u16, Value), OpError>> {
        Box::pin(async move {
            use crate::providers::LeaseCall;
            let ns = ns.unwrap_or(&self.default_namespace);
            let base = format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases");
            let req = match call {
                LeaseCall::Get => Req::get(format!("{base}/{name}")),
                LeaseCall::Create(body) => {
                    Req::new(http::Method::POST, base).json("application/json", &body)
                }
                LeaseCall::Replace(body) => Req::new(http::Method::PUT, format!("{base}/{name}"))
                    .json("application/json", &body),
            };
            let r = self.send(&req, cx).await?;
            Ok((r.status, r.body))
        })
    }

    fn resolve(
        &self,
        op: OpRef<'_>,
        vars: &Value,
        defaults: &Defaults,
    ) -> Result<Resolved, OpError> {
        match op {
            OpRef::Kube(k) => self.resolve_kube(k, vars, defaults),
            other => Err(OpError::wrong_provider("kube", &other)),
        }
    }

    fn execute<'a>(
        &'a self,
        op: &'a Resolved,
        cx: &'a ExecCtx,
    ) -> BoxFuture<'a, Result<Value, OpError>> {
        Box::pin(async move {
            let spec: KubeSpec = op.decode()?;
            self.run(&spec, cx).await
        })
    }

    fn may_have_impact(&self, _op: &Resolved) -> bool {
        true
    }

    fn impact<'a>(
        &'a self,
        op: &'a Resolved,
        cx: &'a ExecCtx,
    ) -> BoxFuture<'a, Result<Option<crate::journal::event::Impact>, OpError>> {
        Box::pin(async move {
            let spec: KubeSpec = op.decode()?;
            tokio::select! {
                r = self.impact_of(&spec, cx) => r,
                _ = cx.cancel.cancelled() => Err(OpError::Cancelled),
            }
        })
    }
}
