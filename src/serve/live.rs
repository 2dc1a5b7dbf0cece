//! The runs this server drives: each on a thread of its own (the engine's one-thread
//! runtime, so a busy web page does not slow a step), waiting at gates and manual
//! steps for a decision that arrives over HTTP.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use futures::future::BoxFuture;
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;

use crate::engine::{
    self, Approver, EngineOpts, GateAnswer, GateRequest, ManualAnswer, ManualRequest, Printer,
    Reporter, SystemClock,
};
use crate::journal::event::{Event, Record};
use crate::journal::state::RunState;
use crate::providers::Providers;
use crate::runbook::Loaded;

/// What the server does to connect a run's providers (the CLI owns how Kubernetes
/// is reached, so it hands the server this).
pub trait ProviderFactory: Send + Sync {
    /// The providers of a run of `loaded`; may set `opts.target` and
    /// `opts.defaults` (the cluster and its kubeconfig).
    fn providers<'a>(
        &'a self,
        loaded: &'a Loaded,
        opts: &'a mut EngineOpts,
    ) -> BoxFuture<'a, Result<Providers, String>>;
}

/// One line of a run's live timeline, as the page's event stream sends it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LiveLine {
    pub run_id: String,
    pub seq: u64,
    pub ts: String,
    pub text: String,
    /// The page should be reloaded: a gate or manual step now waits, was answered,
    /// or the run ended.
    pub reload: bool,
}

/// A [`LiveLine`] serialized once for every viewer.
pub struct Line {
    pub run_id: String,
    pub json: String,
}

impl Line {
    fn new(line: LiveLine) -> Arc<Line> {
        Arc::new(Line {
            json: serde_json::to_string(&line).unwrap_or_else(|_| "{}".into()),
            run_id: line.run_id,
        })
    }
}

/// Every run this process drives, and the stream of their events.
pub struct Hub {
    pub runs: Mutex<HashMap<String, Arc<Live>>>,
    pub lines: broadcast::Sender<Arc<Line>>,
    /// `serve --notify` receivers, told about every run.
    pub notify: Vec<String>,
    /// Where people reach the server: the base of the links in notifications.
    pub base_url: OnceLock<String>,
}

impl Hub {
    pub fn new(notify: Vec<String>) -> Hub {
        Hub {
            runs: Mutex::new(HashMap::new()),
            lines: broadcast::channel(1024).0,
            notify,
            base_url: OnceLock::new(),
        }
    }

    pub fn get(&self, run_id: &str) -> Option<Arc<Live>> {
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(run_id)
            .cloned()
    }

    /// Tell the pages about an event this process appended itself (a note).
    pub fn publish(&self, run_id: &str, seq: u64, event: &Event) {
        if self.lines.receiver_count() == 0 {
            return;
        }
        let _ = self.lines.send(Line::new(LiveLine {
            run_id: run_id.to_owned(),
            seq,
            ts: chrono::Utc::now().format("%H:%M:%S").to_string(),
            text: super::page::describe(event),
            reload: reloads(event),
        }));
    }
}

fn reloads(event: &Event) -> bool {
    matches!(
        event,
        Event::GateRequested { .. }
            | Event::GateDecided { .. }
            | Event::ManualRequested { .. }
            | Event::ManualConfirmed { .. }
            | Event::RunFinished { .. }
            | Event::Paused { .. }
    )
}

/// A manual step waiting for a person (gates wait in the journal: a decision is
/// appended with [`crate::engine::submit_decision`] and the engine reads it).
pub struct Pending {
    step: String,
    rung: Option<String>,
    answer: oneshot::Sender<ManualAnswer>,
}

/// A run driven by this process.
pub struct Live {
    pub run_id: OnceLock<String>,
    pub runbook: String,
    pub pending: Mutex<Option<Pending>>,
    pub cancel: CancellationToken,
    pub finished: AtomicBool,
    /// This process's engine has journaled `run_started` or `run_resumed`: before
    /// that, a gate in the journal was asked by an earlier process (a server that
    /// stopped) and a decision appended now could be missed by the resumed run.
    pub begun: AtomicBool,
    started: Mutex<Option<oneshot::Sender<String>>>,
}

/// What is waiting, for the API and the page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Waiting {
    /// `gate` or `manual`.
    pub kind: &'static str,
    pub step: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rung: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl Live {
    /// The manual step waiting for a person in this process, if any.
    pub fn waiting_manual(&self) -> Option<Waiting> {
        let p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.as_ref().map(|p| Waiting {
            kind: "manual",
            step: p.step.clone(),
            rung: p.rung.clone(),
            digest: None,
        })
    }

    /// Confirm (or fail, or skip) the waiting manual step `step`; of two racing
    /// answers exactly one finds it waiting (the sender is taken under the lock).
    pub fn confirm(&self, step: &str, answer: ManualAnswer) -> Result<(), String> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !p
            .as_ref()
            .is_some_and(|p| p.step == step || p.rung.as_deref() == Some(step))
        {
            return Err(format!(
                "no manual step `{step}` is waiting for a confirmation"
            ));
        }
        if let Some(p) = p.take() {
            let _ = p.answer.send(answer);
        }
        Ok(())
    }

    /// Stop the run: the engine journals the abort (the caller notes who asked).
    pub fn abort(&self) {
        self.cancel.cancel();
    }
}

/// Waits for a decision from the page or the API; never decides by itself.
struct ServeApprover {
    live: Arc<Live>,
}

impl Approver for ServeApprover {
    /// Nobody answers in this process: the gate waits (without limit) for a decision
    /// appended to the journal by the page or the API.
    fn wait_limit(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::MAX)
    }

    fn gate<'a>(&'a self, _req: &'a GateRequest) -> BoxFuture<'a, GateAnswer> {
        Box::pin(async move {
            GateAnswer::Pause {
                reason: "waiting for a decision on runbook serve's page or API".into(),
            }
        })
    }

    fn manual<'a>(&'a self, req: &'a ManualRequest) -> BoxFuture<'a, ManualAnswer> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            *self.live.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(Pending {
                step: req.step.clone(),
                rung: req.rung.clone(),
                answer: tx,
            });
            rx.await.unwrap_or_else(|_| ManualAnswer::Pause {
                reason: "runbook serve stopped waiting".into(),
            })
        })
    }
}

/// Registers the run when it starts and streams its events to the pages. Sending
/// on a broadcast channel never blocks; with nobody watching nothing is formatted.
struct LiveReporter {
    hub: Arc<Hub>,
    live: Arc<Live>,
}

impl Reporter for LiveReporter {
    fn event(&self, _event: &Event, _state: &RunState) {}

    fn record(&self, record: &Record, state: &RunState) {
        if matches!(
            record.event,
            Event::RunStarted { .. } | Event::RunResumed { .. }
        ) {
            self.live.begun.store(true, Ordering::SeqCst);
        }
        if let Event::RunStarted { run_id, .. } = &record.event {
            let _ = self.live.run_id.set(run_id.clone());
            self.hub
                .runs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(run_id.clone(), Arc::clone(&self.live));
            if let Some(tx) = self
                .live
                .started
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            {
                let _ = tx.send(run_id.clone());
            }
        }
        if self.hub.lines.receiver_count() == 0 {
            return;
        }
        let _ = self.hub.lines.send(Line::new(LiveLine {
            run_id: state.run_id.clone(),
            seq: record.seq,
            ts: record.ts.format("%H:%M:%S").to_string(),
            text: super::page::describe(&record.event),
            reload: reloads(&record.event),
        }));
    }
}

/// What starts or resumes a run.
pub struct Launch {
    pub loaded: Loaded,
    pub opts: EngineOpts,
    /// `Some(id)`: resume this run; `None`: a new run.
    pub resume: Option<String>,
}

/// Start (or resume) a run on a thread of its own; returns its id once the engine
/// journaled `run_started` (or `run_resumed`), or why it could not start.
pub async fn launch(
    hub: &Arc<Hub>,
    factory: Arc<dyn ProviderFactory>,
    state_dir: PathBuf,
    launch: Launch,
) -> Result<String, String> {
    let live = Arc::new(Live {
        run_id: OnceLock::new(),
        runbook: launch.loaded.runbook.name.value.clone(),
        pending: Mutex::new(None),
        cancel: CancellationToken::new(),
        finished: AtomicBool::new(false),
        begun: AtomicBool::new(false),
        started: Mutex::new(None),
    });
    let (started_tx, started_rx) = oneshot::channel();
    let (failed_tx, failed_rx) = oneshot::channel::<String>();
    if let Some(id) = &launch.resume {
        let _ = live.run_id.set(id.clone());
        hub.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), Arc::clone(&live));
        let _ = started_tx.send(id.clone());
    } else {
        *live.started.lock().unwrap_or_else(|e| e.into_inner()) = Some(started_tx);
    }
    let mut opts = launch.opts;
    opts.printer = Arc::new(Printer::silent());
    opts.reporters.push(Arc::new(LiveReporter {
        hub: Arc::clone(hub),
        live: Arc::clone(&live),
    }));
    let notifier = notifier(hub, &state_dir, &launch.loaded);
    opts.reporters
        .extend(notifier.as_ref().map(|n| n.reporter()));
    let approver: Arc<dyn Approver> = Arc::new(ServeApprover {
        live: Arc::clone(&live),
    });
    let name = format!("run {}", live.runbook);
    let thread_live = Arc::clone(&live);
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = failed_tx.send(format!("cannot start a runtime for the run: {e}"));
                return;
            }
        };
        let result = rt.block_on(drive(
            launch.loaded,
            factory,
            approver,
            state_dir,
            opts,
            launch.resume,
            thread_live.cancel.clone(),
        ));
        if let Some(n) = &notifier {
            // Bounded: what cannot be sent in time is journaled as not sent.
            n.close();
        }
        thread_live.finished.store(true, Ordering::SeqCst);
        *thread_live
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        match result {
            Ok(report) => tracing::info!(
                run = %report.run_id,
                status = report.status.as_str(),
                "run ended"
            ),
            Err(e) => {
                tracing::error!(runbook = %thread_live.runbook, "run could not go on: {e}");
                let _ = failed_tx.send(e);
            }
        }
    });
    if let Err(e) = spawned {
        return Err(format!("cannot start a thread for the run: {e}"));
    }
    tokio::select! {
        id = started_rx => id.map_err(|_| "the run stopped before it started".to_owned()),
        e = failed_rx => Err(e.unwrap_or_else(|_| "the run stopped before it started".into())),
    }
}

async fn drive(
    loaded: Loaded,
    factory: Arc<dyn ProviderFactory>,
    approver: Arc<dyn Approver>,
    state_dir: PathBuf,
    mut opts: EngineOpts,
    resume: Option<String>,
    cancel: CancellationToken,
) -> Result<engine::RunReport, String> {
    let providers = factory.providers(&loaded, &mut opts).await?;
    let clock = Arc::new(SystemClock);
    let report = match resume {
        None => {
            engine::run(
                &loaded, providers, approver, clock, &state_dir, opts, cancel,
            )
            .await
        }
        Some(id) => engine::resume(&state_dir, &id, providers, approver, clock, opts, cancel).await,
    };
    report.map_err(|e| e.to_string())
}

/// The folder shell steps of a runbook run in.
pub fn base_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The notifier of a run the server drives: `serve --notify` (checked at start) and
/// the runbook's `notify:`, with links to this server's run page. A receiver that
/// cannot be used is logged and left out: a notification never stops the fix.
fn notifier(
    hub: &Hub,
    state_dir: &std::path::Path,
    loaded: &Loaded,
) -> Option<Arc<crate::notify::Notifier>> {
    let mut opts = crate::notify::NotifyOpts::new(state_dir);
    if let Some(base) = hub.base_url.get() {
        opts = opts.with_base_url(base.clone());
    }
    match crate::notify::for_run(&hub.notify, Some(&loaded.runbook), opts) {
        Ok((notifier, warnings)) => {
            for w in warnings {
                tracing::warn!(runbook = %loaded.runbook.name.value, "{w}");
            }
            notifier
        }
        Err(e) => {
            tracing::warn!("{e}");
            None
        }
    }
}
