//! The provider's HTTP side: connecting the way kubectl does, one shared client-side
//! rate limit, bounded retries of 429 and 5xx, and a record of every request sent.
//!
//! Requests go through [`kube::Client::send`] (raw request, raw response) rather than
//! kube's typed `Api<K>`: the provider needs the status code, the `Retry-After` header
//! and the `Status` body of every attempt for the journal, and works on JSON of any kind.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, header};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;

use crate::journal::event::ApiCall;
use crate::providers::{ExecCtx, OpError};

/// How to reach a cluster, as kubectl's flags say it.
#[derive(Debug, Clone, Default)]
pub struct KubeConnect {
    /// `--kubeconfig`; otherwise `KUBECONFIG`, `~/.kube/config`, then the in-cluster
    /// service account.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`; otherwise the kubeconfig's current context.
    pub context: Option<String>,
    /// `--namespace`; otherwise the context's namespace (or the pod's, in-cluster).
    pub namespace: Option<String>,
    /// Client-side requests per second; 0 = unlimited.
    pub qps: f64,
}

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("cannot read kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("no Kubernetes configuration found ({0}); pass --kubeconfig or set KUBECONFIG")]
    NoConfig(String),
    #[error("cannot use context {context:?}: {message}")]
    Context { context: String, message: String },
    #[error("cannot build a Kubernetes client: {0}")]
    Client(String),
    #[error("cannot reach the cluster at {server}: {message}")]
    Unreachable { server: String, message: String },
    #[error("invalid qps {0:?}: expected 0 (unlimited) or a number from {MIN_QPS} to {MAX_QPS}")]
    Qps(f64),
}

/// Load the configuration kubectl would use and turn kube's retry layer off.
pub(crate) async fn load_config(opts: &KubeConnect) -> Result<kube::Config, KubeError> {
    let kco = KubeConfigOptions {
        context: opts.context.clone(),
        ..Default::default()
    };
    let mut cfg = match (&opts.kubeconfig, &opts.context) {
        (Some(path), _) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| KubeError::Kubeconfig {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            kube::Config::from_custom_kubeconfig(kc, &kco)
                .await
                .map_err(|e| context_error(opts, e))?
        }
        (None, Some(_)) => {
            let kc = Kubeconfig::read().map_err(|e| KubeError::Kubeconfig {
                path: std::env::var("KUBECONFIG").unwrap_or_else(|_| "~/.kube/config".into()),
                message: e.to_string(),
            })?;
            kube::Config::from_custom_kubeconfig(kc, &kco)
                .await
                .map_err(|e| context_error(opts, e))?
        }
        // KUBECONFIG / ~/.kube/config, else the in-cluster service account.
        (None, None) => kube::Config::infer()
            .await
            .map_err(|e| KubeError::NoConfig(e.to_string()))?,
    };
    // kube 5 retries 429/503/504 up to 15 times (a PDB-blocked eviction took 6 min);
    // this provider retries itself, boundedly, and journals every attempt.
    cfg.default_retry = false;
    // A plain-HTTP API server (`runbook lab`) never uses TLS, but kube builds its TLS
    // settings anyway and, with no CA in the kubeconfig, loads the system's whole
    // root store for them (every file in /etc/ssl/certs: 20-45 ms of each run's
    // start, issue 18). An empty trust store is never consulted for `http://`.
    if cfg.cluster_url.scheme_str() == Some("http") && cfg.root_cert.is_none() {
        cfg.root_cert = Some(Vec::new());
    }
    if let Some(ns) = &opts.namespace {
        cfg.default_namespace = ns.clone();
    }
    Ok(cfg)
}

fn context_error(opts: &KubeConnect, e: kube::config::KubeconfigError) -> KubeError {
    match &opts.context {
        Some(c) => KubeError::Context {
            context: c.clone(),
            message: e.to_string(),
        },
        None => KubeError::Kubeconfig {
            path: opts
                .kubeconfig
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            message: e.to_string(),
        },
    }
}

/// A client-side rate limit shared by every execution of one provider (every
/// `for_each` item, every object of a selector delete). `qps == 0` means unlimited.
///
/// Two rules together:
/// - requests are spaced `1/qps` apart (a token bucket holding one token), so the
///   rate is smooth;
/// - at most `max(1, floor(qps))` requests are *in the window*: a request takes a
///   permit before it is sent and gives it back one second after its answer came.
///
/// The second rule is what makes the limit hold where it is measured, at the server:
/// a request arrives at the server between its sending and its answer, so two
/// requests that share a permit arrive more than a second apart, whatever the
/// delivery jitter of a loaded machine. Spacing alone let the server see `qps + 1`
/// requests in one second whenever the first was delivered late.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    interval: Option<Duration>,
    next: Arc<Mutex<Option<Instant>>>,
    window: Option<Arc<tokio::sync::Semaphore>>,
}

/// Held while a rate-limited request is in flight; [`Permit::answered`] returns it
/// to the window one second later.
#[derive(Debug)]
pub struct Permit(Option<tokio::sync::OwnedSemaphorePermit>);

impl Permit {
    /// The request was answered (or failed): its slot frees up in one second.
    pub fn answered(self) {
        if let Some(permit) = self.0 {
            // The task only sleeps and drops the permit; if the runtime shuts down
            // first, the permit is dropped with it, which is what we want.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                drop(permit);
            });
        }
    }
}

/// Slowest client-side rate accepted: one request every 1000 s. Below it the spacing
/// `1/qps` stops being a duration (`--kube-qps 1e-20` used to panic).
pub const MIN_QPS: f64 = 0.001;

/// Fastest client-side rate accepted (beyond it, pass 0: unlimited).
pub const MAX_QPS: f64 = 1e6;

/// `--kube-qps`: 0 (unlimited) or a number from [`MIN_QPS`] to [`MAX_QPS`].
pub fn parse_qps(s: &str) -> Result<f64, String> {
    let qps: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if qps == 0.0 || (MIN_QPS..=MAX_QPS).contains(&qps) {
        Ok(qps)
    } else {
        Err(KubeError::Qps(qps).to_string())
    }
}

impl RateLimiter {
    /// A limiter for `qps` requests per second; 0 (or anything not a positive number)
    /// means unlimited, and a rate outside [`MIN_QPS`]..=[`MAX_QPS`] is saturated to it.
    pub fn new(qps: f64) -> RateLimiter {
        let limited = qps.is_finite() && qps > 0.0;
        let qps = qps.clamp(MIN_QPS, MAX_QPS);
        RateLimiter {
            interval: limited.then(|| Duration::from_secs_f64(1.0 / qps)),
            next: Arc::new(Mutex::new(None)),
            window: limited.then(|| {
                let permits = (qps.floor() as usize).clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
                Arc::new(tokio::sync::Semaphore::new(permits))
            }),
        }
    }

    /// Wait for a permit in the window and for the next free slot; `Cancelled` if
    /// `cx` fires first.
    pub async fn acquire(&self, cx: &ExecCtx) -> Result<Permit, OpError> {
        let (Some(interval), Some(window)) = (self.interval, &self.window) else {
            return Ok(Permit(None));
        };
        let permit = tokio::select! {
            p = Arc::clone(window).acquire_owned() => {
                p.map_err(|_| OpError::Invalid("the rate limiter was closed".into()))?
            }
            _ = cx.cancel.cancelled() => return Err(OpError::Cancelled),
        };
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + interval);
            slot
        };
        tokio::select! {
            _ = tokio::time::sleep_until(slot.into()) => Ok(Permit(Some(permit))),
            _ = cx.cancel.cancelled() => Err(OpError::Cancelled),
        }
    }
}

/// Bounded retries of throttled (429) and failed (5xx) requests.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// Wait before the second attempt; doubles each time, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Upper bound on the sum of the waits of one request.
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            max_total: Duration::from_secs(30),
        }
    }
}

/// One request to send.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub method: Method,
    /// Path and query, already encoded.
    pub path: String,
    pub body: Option<(String, Vec<u8>)>,
    /// The equivalent kubectl command, for the journal.
    pub kubectl: Option<String>,
    /// A 5xx may be retried (not a JSON patch that appends, which could apply twice).
    pub idempotent: bool,
    /// Only the status of a successful (or 404) answer is wanted: its body is not
    /// parsed (a force DELETE answers with the whole object, read by nobody).
    pub status_only: bool,
}

impl Req {
    pub fn get(path: String) -> Req {
        Req {
            method: Method::GET,
            path,
            body: None,
            kubectl: None,
            idempotent: true,
            status_only: false,
        }
    }

    pub fn new(method: Method, path: String) -> Req {
        Req {
            method,
            path,
            body: None,
            kubectl: None,
            idempotent: true,
            status_only: false,
        }
    }

    pub fn json(mut self, content_type: &str, body: &Value) -> Req {
        self.body = Some((
            content_type.to_string(),
            serde_json::to_vec(body).unwrap_or_default(),
        ));
        self
    }

    /// See [`Req::status_only`].
    pub fn status_only(mut self) -> Req {
        self.status_only = true;
        self
    }

    pub fn kubectl(mut self, line: impl Into<String>) -> Req {
        self.kubectl = Some(line.into());
        self
    }
}

/// The answer to a request: its status and its JSON body (Null when it had none).
#[derive(Debug, Clone)]
pub(crate) struct Resp {
    pub status: u16,
    pub body: Value,
}

impl Resp {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A `kube::Client` with the provider's rate limit and retry policy.
#[derive(Clone)]
pub(crate) struct Transport {
    pub client: kube::Client,
    pub limiter: RateLimiter,
    pub retry: RetryPolicy,
}

impl Transport {
    /// Send `req`, retrying 429 and 5xx within the policy, recording every attempt
    /// in `cx.calls`. Returns the last answer whatever its status; `Err` only when no
    /// answer came (connection error, cancelled).
    pub async fn send(&self, req: &Req, cx: &ExecCtx) -> Result<Resp, OpError> {
        let mut waited = Duration::ZERO;
        let mut attempt = 1;
        loop {
            let permit = self.limiter.acquire(cx).await?;
            let answer = self.once(req, cx).await;
            permit.answered();
            let (resp, retry_after) = answer?;
            let retryable =
                resp.status == 429 || (resp.status >= 500 && req.idempotent && resp.status != 501);
            if !retryable || attempt >= self.retry.attempts.max(1) {
                return Ok(resp);
            }
            let backoff = self
                .retry
                .base_delay
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(self.retry.max_delay);
            let delay = retry_after.map_or(backoff, |r| r.min(self.retry.max_delay));
            if waited + delay > self.retry.max_total {
                return Ok(resp);
            }
            waited += delay;
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = cx.cancel.cancelled() => return Err(OpError::Cancelled),
            }
            attempt += 1;
        }
    }

    async fn once(&self, req: &Req, cx: &ExecCtx) -> Result<(Resp, Option<Duration>), OpError> {
        let mut path = req.path.clone();
        let mut kubectl = req.kubectl.clone();
        if cx.dry_run && req.method != Method::GET {
            path.push(if path.contains('?') { '&' } else { '?' });
            path.push_str("dryRun=All");
            kubectl = kubectl.map(|k| format!("{k} --dry-run=server"));
        }
        let mut builder = http::Request::builder()
            .method(req.method.clone())
            .uri(path.as_str())
            .header(header::ACCEPT, "application/json");
        let body = match &req.body {
            Some((ct, bytes)) => {
                builder = builder.header(header::CONTENT_TYPE, ct.as_str());
                bytes.clone()
            }
            None => Vec::new(),
        };
        let request = builder
            .body(kube::client::Body::from(body))
            .map_err(|e| OpError::Invalid(format!("invalid request {path}: {e}")))?;
        // Recorded when it ends however it ends: answered, refused, or dropped by a
        // timeout or Ctrl-C around this future (then with status 0, or the status
        // already received).
        let mut call = InFlight {
            cx,
            call: Some(ApiCall {
                method: req.method.to_string(),
                path: path.clone(),
                status: 0,
                duration_ms: 0,
                kubectl,
            }),
            started: Instant::now(),
        };
        let sent = tokio::select! {
            r = self.client.send(request) => r,
            _ = cx.cancel.cancelled() => return Err(OpError::Cancelled),
        };
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                return Err(OpError::failed(format!(
                    "{} {path}: cannot reach the API server: {e}",
                    req.method
                )));
            }
        };
        let status = response.status().as_u16();
        call.status(status);
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = tokio::select! {
            b = response.into_body().collect_bytes() => b,
            _ = cx.cancel.cancelled() => return Err(OpError::Cancelled),
        };
        drop(call);
        let bytes = bytes.map_err(|e| {
            OpError::failed(format!(
                "{} {path}: reading the answer failed: {e}",
                req.method
            ))
        })?;
        let unread = req.status_only && ((200..300).contains(&status) || status == 404);
        let body = if bytes.is_empty() || unread {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((Resp { status, body }, retry_after))
    }
}

/// A request being sent; pushed to the call log when dropped.
struct InFlight<'a> {
    cx: &'a ExecCtx,
    call: Option<ApiCall>,
    started: Instant,
}

impl InFlight<'_> {
    fn status(&mut self, status: u16) {
        if let Some(c) = self.call.as_mut() {
            c.status = status;
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(mut c) = self.call.take() {
            c.duration_ms = self.started.elapsed().as_millis() as u64;
            self.cx.calls.push(c);
        }
    }
}

/// The error for a non-2xx answer, worded as kubectl words it:
/// `Error from server (NotFound): pods "x" not found`; `result` carries the Status.
pub(crate) fn api_error(resp: &Resp) -> OpError {
    let reason = resp.body["reason"].as_str().unwrap_or("");
    let message = resp.body["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| match &resp.body {
            Value::String(s) => s.clone(),
            _ => format!("the server answered HTTP {}", resp.status),
        });
    let reason = if reason.is_empty() {
        default_reason(resp.status)
    } else {
        reason
    };
    OpError::Failed {
        message: format!("Error from server ({reason}): {message}"),
        result: Some(resp.body.clone()),
    }
}

fn default_reason(status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Gone",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}

/// Percent-encode one URL component (a path segment or a query value).
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `?a=1&b=2` from pairs, encoded; "" when empty.
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_keeps_unreserved_and_escapes_the_rest() {
        assert_eq!(encode("spec.nodeName=node-1"), "spec.nodeName%3Dnode-1");
        assert_eq!(encode("a/b?c"), "a%2Fb%3Fc");
        assert_eq!(
            query(&[("labelSelector", "a=b,c!=d"), ("x", "")]),
            "?labelSelector=a%3Db%2Cc%21%3Dd"
        );
        assert_eq!(query(&[]), "");
    }

    #[tokio::test]
    async fn rate_limiter_spaces_requests_by_one_over_qps() {
        let rl = RateLimiter::new(50.0);
        let cx = ExecCtx::new(Value::Null);
        let start = Instant::now();
        for _ in 0..6 {
            rl.acquire(&cx).await.unwrap();
        }
        // 6 requests at 50/s: the first at once, then 5 × 20 ms.
        assert!(
            start.elapsed() >= Duration::from_millis(95),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn a_permit_returns_to_the_window_one_second_after_its_answer() {
        // 2 qps: two requests may be in the window. The first is answered late
        // (after 800 ms), so the third waits until a second after that answer,
        // later than the 1/qps spacing alone (1 s) would let it go.
        let rl = RateLimiter::new(2.0);
        let cx = ExecCtx::new(Value::Null);
        let start = Instant::now();
        let first = rl.acquire(&cx).await.unwrap();
        let second = rl.acquire(&cx).await.unwrap();
        second.answered();
        tokio::time::sleep(Duration::from_millis(800)).await;
        first.answered();
        rl.acquire(&cx).await.unwrap().answered();
        assert!(
            start.elapsed() >= Duration::from_millis(1500),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn unlimited_rate_limiter_never_waits() {
        let rl = RateLimiter::new(0.0);
        let cx = ExecCtx::new(Value::Null);
        let start = Instant::now();
        for _ in 0..1000 {
            rl.acquire(&cx).await.unwrap();
        }
        assert!(start.elapsed() < Duration::from_millis(50));
    }

    #[tokio::test]
    async fn rate_limiter_wait_is_cancellable() {
        let rl = RateLimiter::new(0.5);
        let cx = ExecCtx::new(Value::Null);
        rl.acquire(&cx).await.unwrap();
        cx.cancel.cancel();
        assert!(matches!(rl.acquire(&cx).await, Err(OpError::Cancelled)));
    }
}
