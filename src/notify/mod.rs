//! The notifier: tells people about a run (it started, it waits for them, it failed,
//! it ended) through generic JSON webhooks and Slack-compatible incoming webhooks.
//!
//! It is a consumer of the event stream ([`Reporter`]) like the console, and obeys the
//! stream's rule: it hears an event only after the journal has it, and it can neither
//! fail nor slow the run. [`Reporter::record`] builds the payload from the journaled
//! (redacted) record and the run state, and pushes it on a bounded queue per receiver;
//! that is all the engine's thread does. Delivery happens on a thread of the
//! notifier's own (its own runtime, so an engine busy in a blocking call does not
//! hold notifications back either): each receiver has one task that sends its queue
//! in order, with a timeout per attempt and a bounded number of retries with backoff.
//! A notification that cannot be delivered, or that the queue had to drop (the
//! oldest goes when a receiver falls more than [`NotifyOpts::queue`] behind), is
//! journaled as a `note` by `runbook`, so the postmortem shows who was not told.
//!
//! At the end of a run [`Notifier::close`] gives the queues a bounded time
//! ([`NotifyOpts::drain`]) to empty, then journals what was not sent.

mod payload;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::engine::Reporter;
use crate::journal::event::{Event, Record};
use crate::journal::state::RunState;
use crate::runbook::model::{Notify, NotifyKind, NotifyOn, Runbook};

pub use payload::{Message, slack_payload, webhook_payload};

/// One receiver, resolved: its URL and credentials read from the environment.
#[derive(Clone)]
pub struct Target {
    url: String,
    kind: NotifyKind,
    on: Vec<NotifyOn>,
    headers: Vec<(String, String)>,
    secret: Option<String>,
    timeout: Duration,
    retries: u32,
}

/// Never the URL in full: a Slack webhook's URL is its credential.
impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("receiver", &self.label())
            .field("kind", &self.kind)
            .field("on", &self.on)
            .finish_non_exhaustive()
    }
}

/// Default time one attempt may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default attempts after the first.
pub const DEFAULT_RETRIES: u32 = 3;

impl Target {
    /// `--notify URL`: a generic webhook told of everything; a Slack incoming
    /// webhook (`https://hooks.slack.com/…`) gets Slack's format.
    pub fn from_flag(url: &str) -> Result<Target, String> {
        let parsed = url::Url::parse(url).map_err(|e| {
            format!(
                "--notify {:?}: {e} (expected an absolute http(s) URL)",
                redact_url(url)
            )
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(format!(
                "--notify {:?}: expected an absolute http:// or https:// URL",
                redact_url(url)
            ));
        }
        let kind = if parsed.host_str() == Some("hooks.slack.com") {
            NotifyKind::Slack
        } else {
            NotifyKind::Webhook
        };
        Ok(Target {
            url: url.to_owned(),
            kind,
            on: NotifyOn::ALL.to_vec(),
            headers: Vec::new(),
            secret: None,
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
        })
    }

    /// An entry of `notify:`, its `*_env` values read through `env`.
    pub fn from_runbook(
        n: &Notify,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Target, String> {
        let need = |var: &str, what: &str| {
            env(var)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{what}: the environment variable {var} is not set"))
        };
        let url = match (&n.url, &n.url_env) {
            (Some(u), _) => u.value.clone(),
            (None, Some(var)) => need(&var.value, "notify url_env")?,
            (None, None) => return Err("a notification has no url".into()),
        };
        let parsed = url::Url::parse(&url)
            .map_err(|e| format!("notification URL {:?}: {e}", redact_url(&url)))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "notification URL {:?}: expected http or https",
                redact_url(&url)
            ));
        }
        let mut headers: Vec<(String, String)> = n
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect();
        for (k, var) in &n.headers_env {
            headers.push((k.clone(), need(&var.value, &format!("notify header {k}"))?));
        }
        let secret = match &n.secret_env {
            Some(var) => Some(need(&var.value, "notify secret_env")?),
            None => None,
        };
        Ok(Target {
            url,
            kind: n.kind.as_ref().map_or(NotifyKind::Webhook, |k| k.value),
            on: if n.on.is_empty() {
                NotifyOn::ALL.to_vec()
            } else {
                n.on.iter().map(|o| o.value).collect()
            },
            headers,
            secret,
            timeout: n.timeout.as_ref().map_or(DEFAULT_TIMEOUT, |t| t.value.0),
            retries: n.retries.as_ref().map_or(DEFAULT_RETRIES, |r| r.value),
        })
    }

    /// How the journal and the console name this receiver: scheme, host and port,
    /// never the path or query (which may hold a token).
    pub fn label(&self) -> String {
        redact_url(&self.url)
    }

    /// The values a payload must never contain (headers' and the signing secret's
    /// are credentials, and so may be the URL).
    fn credentials(&self) -> Vec<String> {
        let mut out: Vec<String> = self.headers.iter().map(|(_, v)| v.clone()).collect();
        out.extend(self.secret.clone());
        out
    }
}

/// `https://hooks.slack.com/services/T/B/X` → `https://hooks.slack.com`.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}", u.scheme()),
            (Some(h), None) => format!("{}://{h}", u.scheme()),
            _ => "(a URL without a host)".into(),
        },
        Err(_) => "(not a URL)".into(),
    }
}

/// The receivers of a runbook's `notify:`, each resolved; a receiver whose variable
/// is not set is left out with a warning (a notification must never stop the fix).
pub fn targets_of(runbook: &Runbook) -> (Vec<Target>, Vec<String>) {
    let env = |k: &str| std::env::var(k).ok();
    let mut targets = Vec::new();
    let mut warnings = Vec::new();
    for n in &runbook.notify {
        match Target::from_runbook(n, &env) {
            Ok(t) => targets.push(t),
            Err(e) => warnings.push(format!("{e}; that receiver is not notified")),
        }
    }
    (targets, warnings)
}

/// The notifier of one run: the `extra` URLs (`--notify`) and the runbook's
/// `notify:`, started with `opts`; `None` when nobody is to be told. A bad `extra`
/// URL is an error; the warnings name runbook receivers left out (an unset variable).
pub fn for_run(
    extra: &[String],
    runbook: Option<&Runbook>,
    opts: NotifyOpts,
) -> Result<(Option<Arc<Notifier>>, Vec<String>), String> {
    let mut targets = extra
        .iter()
        .map(|u| Target::from_flag(u))
        .collect::<Result<Vec<_>, _>>()?;
    let mut warnings = Vec::new();
    if let Some(rb) = runbook {
        let (more, w) = targets_of(rb);
        targets.extend(more);
        warnings = w;
    }
    let notifier = (!targets.is_empty()).then(|| Notifier::start(targets, opts));
    Ok((notifier, warnings))
}

/// How the notifier runs.
#[derive(Debug, Clone)]
pub struct NotifyOpts {
    /// Where runs live: failures are journaled in the run's journal.
    pub state_dir: PathBuf,
    /// The address of `runbook serve` when there is one: payloads then link to the
    /// run's page (`BASE/runs/ID`, where its gate is approved) and its postmortem
    /// (`BASE/runs/ID/postmortem`).
    pub base_url: Option<String>,
    /// Notifications waiting per receiver before the oldest is dropped.
    pub queue: usize,
    /// How long [`Notifier::close`] waits for the queues to empty.
    pub drain: Duration,
    /// How long a `waiting` notification is held before it is sent: a gate decided
    /// (or a manual step confirmed) within this time — by `--yes`, `--approve`,
    /// `unattended:` — never waited for anyone, and is not announced.
    pub grace: Duration,
}

impl NotifyOpts {
    pub fn new(state_dir: impl Into<PathBuf>) -> NotifyOpts {
        NotifyOpts {
            state_dir: state_dir.into(),
            base_url: None,
            queue: 64,
            drain: Duration::from_secs(5),
            grace: Duration::from_millis(250),
        }
    }

    /// For `runbook serve`: links in payloads point at `base_url`.
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> NotifyOpts {
        self.base_url = Some(base_url.into().trim_end_matches('/').to_owned());
        self
    }
}

/// One notification waiting to be sent to one receiver.
struct Job {
    on: NotifyOn,
    body: Arc<Vec<u8>>,
    /// The gate or manual step (step, rung) a `waiting` is about: its decision
    /// withdraws the notification if it is still held.
    key: Option<WaitKey>,
    /// Not sent before (the grace of a `waiting`).
    not_before: Option<std::time::Instant>,
}

type WaitKey = (String, Option<String>);

/// The gate or manual step an event asks about or answers.
fn wait_key(event: &Event) -> Option<WaitKey> {
    match event {
        Event::GateRequested { step, rung, .. } | Event::GateDecided { step, rung, .. } => {
            Some((step.clone(), rung.clone()))
        }
        Event::ManualRequested { scope, .. } | Event::ManualConfirmed { scope, .. } => {
            Some((scope.step.clone(), scope.rung.clone()))
        }
        _ => None,
    }
}

/// A receiver's queue and what its task shares with the stream.
struct Lane {
    target: Target,
    queue: Mutex<VecDeque<Job>>,
    wake: tokio::sync::Notify,
    /// Dropped since the task last journaled it.
    dropped: AtomicU64,
    /// Jobs taken off the queue and not yet settled (sent or journaled).
    in_flight: AtomicUsize,
}

struct Shared {
    lanes: Vec<Lane>,
    opts: NotifyOpts,
    closed: AtomicBool,
    /// The journal notes go to, known from the first event.
    journal: Mutex<Option<PathBuf>>,
}

/// The notifier: hand [`Notifier::reporter`] to the engine's reporters, and call
/// [`Notifier::close`] when the run has ended.
pub struct Notifier {
    shared: Arc<Shared>,
    done: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("receivers", &self.shared.lanes.len())
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Start the delivery thread. With no targets nothing is started and the
    /// reporter ignores every event.
    pub fn start(targets: Vec<Target>, opts: NotifyOpts) -> Arc<Notifier> {
        let lanes = targets
            .into_iter()
            .map(|target| Lane {
                target,
                queue: Mutex::new(VecDeque::new()),
                wake: tokio::sync::Notify::new(),
                dropped: AtomicU64::new(0),
                in_flight: AtomicUsize::new(0),
            })
            .collect::<Vec<_>>();
        let shared = Arc::new(Shared {
            lanes,
            opts,
            closed: AtomicBool::new(false),
            journal: Mutex::new(None),
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let mut done = None;
        if !shared.lanes.is_empty() {
            let s = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name("notify".into())
                .spawn(move || deliver_all(s, tx));
            match spawned {
                Ok(_) => done = Some(rx),
                Err(e) => tracing::warn!("cannot start the notifier: {e}"),
            }
        }
        Arc::new(Notifier {
            shared,
            done: Mutex::new(done),
        })
    }

    /// This notifier as a consumer of the event stream.
    pub fn reporter(self: &Arc<Self>) -> Arc<dyn Reporter> {
        Arc::clone(self) as Arc<dyn Reporter>
    }

    /// No more events: wait up to [`NotifyOpts::drain`] for the queues to empty, then
    /// journal what was not sent. Blocking (call it from a blocking context).
    pub fn close(&self) {
        let Some(done) = self.done.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        self.shared.closed.store(true, Ordering::SeqCst);
        for lane in &self.shared.lanes {
            lane.wake.notify_one();
        }
        if done.recv_timeout(self.shared.opts.drain).is_ok() {
            return;
        }
        // The thread is abandoned (it ends with the process); say who was not told.
        for lane in &self.shared.lanes {
            let waiting = lane.queue.lock().unwrap_or_else(|e| e.into_inner()).len();
            let pending = waiting + lane.in_flight.load(Ordering::SeqCst);
            if pending > 0 {
                self.shared.journal_note(format!(
                    "{pending} notification(s) to {} not sent: still undelivered {} after the run ended",
                    lane.target.label(),
                    crate::engine::human_duration(self.shared.opts.drain)
                ));
            }
        }
    }
}

impl Reporter for Notifier {
    fn event(&self, _event: &Event, _state: &RunState) {}

    fn record(&self, record: &Record, state: &RunState) {
        if self.shared.lanes.is_empty() || state.dry_run {
            return;
        }
        if let Event::GateDecided { .. } | Event::ManualConfirmed { .. } = &record.event {
            // Answered at once: withdraw the `waiting` still held for it.
            let key = wait_key(&record.event);
            for lane in &self.shared.lanes {
                let mut q = lane.queue.lock().unwrap_or_else(|e| e.into_inner());
                q.retain(|j| !(j.on == NotifyOn::Waiting && j.key == key));
            }
            return;
        }
        let Some(message) = Message::of(record, state, self.shared.opts.base_url.as_deref()) else {
            return;
        };
        {
            let mut j = self
                .shared
                .journal
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if j.is_none() && !state.run_id.is_empty() {
                *j = Some(crate::store::RunStore::journal_path(
                    &crate::store::DirStore::new(&self.shared.opts.state_dir),
                    &state.run_id,
                ));
            }
        }
        let mut bodies: [Option<Arc<Vec<u8>>>; 2] = [None, None];
        for lane in &self.shared.lanes {
            if !lane.target.on.contains(&message.on) {
                continue;
            }
            let slot = match lane.target.kind {
                NotifyKind::Webhook => 0,
                NotifyKind::Slack => 1,
            };
            let body = bodies[slot]
                .get_or_insert_with(|| {
                    let v = match lane.target.kind {
                        NotifyKind::Webhook => webhook_payload(&message),
                        NotifyKind::Slack => slack_payload(&message),
                    };
                    Arc::new(serde_json::to_vec(&v).unwrap_or_default())
                })
                .clone();
            // A receiver's own credentials never travel in a body (they could only
            // get there through a runbook that printed them).
            let body = if lane
                .target
                .credentials()
                .iter()
                .any(|c| !c.is_empty() && contains(&body, c.as_bytes()))
            {
                Arc::new(mask_credentials(&body, &lane.target.credentials()))
            } else {
                body
            };
            let mut q = lane.queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.len() >= self.shared.opts.queue.max(1) {
                q.pop_front();
                lane.dropped.fetch_add(1, Ordering::Relaxed);
            }
            let waiting = message.on == NotifyOn::Waiting;
            q.push_back(Job {
                on: message.on,
                body,
                key: if waiting {
                    wait_key(&record.event)
                } else {
                    None
                },
                not_before: waiting.then(|| std::time::Instant::now() + self.shared.opts.grace),
            });
            drop(q);
            lane.wake.notify_one();
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn mask_credentials(body: &[u8], creds: &[String]) -> Vec<u8> {
    let mut text = String::from_utf8_lossy(body).into_owned();
    for c in creds.iter().filter(|c| !c.is_empty()) {
        text = text.replace(c.as_str(), "***");
    }
    text.into_bytes()
}

impl Shared {
    /// A note by `runbook` in the run's journal (appended the way `runbook note`
    /// appends from another process: locked, one line, fsynced).
    fn journal_note(&self, text: String) {
        tracing::warn!("{text}");
        let path = self
            .journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(path) = path else { return };
        let event = Event::Note {
            text,
            by: "runbook".into(),
            at: None,
        };
        if let Err(e) = crate::journal::writer::append_once(&path, chrono::Utc::now(), event) {
            tracing::warn!("cannot journal a notification failure: {e}");
        }
    }
}

/// The delivery thread: one task per receiver on a runtime of its own.
fn deliver_all(shared: Arc<Shared>, done: std::sync::mpsc::Sender<()>) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    crate::providers::install_crypto_provider();
    let client = match reqwest::Client::builder()
        .user_agent(concat!("runbook/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("cannot build the notifier's HTTP client: {e}");
            return;
        }
    };
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..shared.lanes.len() {
            let s = Arc::clone(&shared);
            let c = client.clone();
            tasks.spawn(async move { lane_loop(s, i, c).await });
        }
        while tasks.join_next().await.is_some() {}
    });
    let _ = done.send(());
}

async fn lane_loop(shared: Arc<Shared>, i: usize, client: reqwest::Client) {
    let lane = &shared.lanes[i];
    loop {
        let mut held = None;
        let job = {
            let mut q = lane.queue.lock().unwrap_or_else(|e| e.into_inner());
            match q.front().and_then(|j| j.not_before) {
                Some(t) if t > std::time::Instant::now() => {
                    held = Some(t);
                    None
                }
                _ => {
                    let job = q.pop_front();
                    if job.is_some() {
                        lane.in_flight.fetch_add(1, Ordering::SeqCst);
                    }
                    job
                }
            }
        };
        if let Some(t) = held {
            // Held for its grace; a decision meanwhile removes it from the queue.
            tokio::select! {
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(t)) => {}
                () = lane.wake.notified() => {}
            }
            continue;
        }
        let dropped = lane.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            note(
                &shared,
                format!(
                    "{dropped} notification(s) to {} dropped: more than {} were waiting to be sent",
                    lane.target.label(),
                    shared.opts.queue
                ),
            )
            .await;
        }
        let Some(job) = job else {
            if shared.closed.load(Ordering::SeqCst) {
                return;
            }
            lane.wake.notified().await;
            continue;
        };
        if let Err((attempts, why)) = send(&client, &lane.target, &job).await {
            note(
                &shared,
                format!(
                    "notification `{}` to {} ({}) not delivered after {attempts} attempt(s): {why}; the run goes on",
                    job.on.as_str(),
                    lane.target.label(),
                    match lane.target.kind {
                        NotifyKind::Webhook => "webhook",
                        NotifyKind::Slack => "slack",
                    }
                ),
            )
            .await;
        }
        lane.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn note(shared: &Arc<Shared>, text: String) {
    let s = Arc::clone(shared);
    let _ = tokio::task::spawn_blocking(move || s.journal_note(text)).await;
}

/// Send one notification: up to `1 + retries` attempts, each bounded by the
/// receiver's timeout, with exponential backoff between them (250 ms, 500 ms, … at
/// most 4 s). A 4xx other than 408 and 429 is not retried: the request itself is
/// wrong. Errors name the receiver only by host (the URL may be a credential).
async fn send(client: &reqwest::Client, t: &Target, job: &Job) -> Result<(), (u32, String)> {
    let mut last = String::new();
    let attempts = t.retries.saturating_add(1);
    for attempt in 1..=attempts {
        let mut req = client
            .post(&t.url)
            .timeout(t.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Runbook-Event", job.on.as_str());
        for (k, v) in &t.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(secret) = &t.secret {
            req = req.header(
                "X-Runbook-Signature",
                format!(
                    "sha256={}",
                    hex(&payload::hmac_sha256(secret.as_bytes(), &job.body))
                ),
            );
        }
        match req.body(job.body.as_ref().clone()).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => {
                let status = r.status();
                last = format!("HTTP {status}");
                if status.is_client_error()
                    && status != reqwest::StatusCode::REQUEST_TIMEOUT
                    && status != reqwest::StatusCode::TOO_MANY_REQUESTS
                {
                    return Err((attempt, last));
                }
            }
            Err(e) if e.is_timeout() => {
                last = format!(
                    "no answer within {}",
                    crate::engine::human_duration(t.timeout)
                );
            }
            Err(e) => last = e.without_url().to_string(),
        }
        if attempt < attempts {
            let backoff = Duration::from_millis(250u64 << (attempt - 1).min(4));
            tokio::time::sleep(backoff.min(Duration::from_secs(4))).await;
        }
    }
    Err((attempts, last))
}

use crate::journal::digest::hex;

#[cfg(test)]
mod tests;
