//! `runbook serve`: one long-lived process that starts runs from Alertmanager's
//! webhook, runs their checks at once, waits at gates and manual steps for a person,
//! and shows the runs as a web page and a JSON API.
//!
//! Runs are the engine's, unchanged: each runs on a thread of its own with an
//! approver that waits for a decision arriving over HTTP ([`live`]). Everything a
//! page shows is read from the journal (secrets already redacted) or streamed from
//! the engine's event stream after the journal has it.

mod alerts;
mod api;
mod auth;
mod live;
pub(crate) mod page;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use auth::{TokenError, load_tokens, parse_tokens};
pub use live::ProviderFactory;

use crate::engine::{EngineOpts, Printer};
use crate::journal::event::Event;
use crate::runbook::Loaded;
use crate::store::{DirStore, RunStore};

/// Who wrote the note that marks a run as driven by `runbook serve` (read back on
/// restart to find the runs to wait at again).
pub const SERVE_BY: &str = "runbook serve";
/// Who the notes of an alert and the incident start are by.
pub const ALERT_BY: &str = "alertmanager";

/// Everything `runbook serve` is told.
pub struct Config {
    pub listen: SocketAddr,
    pub runbooks: PathBuf,
    pub state_dir: PathBuf,
    /// token → person (`RUNBOOK_SERVE_TOKENS_FILE`).
    pub tokens: HashMap<String, String>,
    /// A header an authenticating proxy sets to the person's name.
    pub trusted_header: Option<String>,
    /// The bearer token Alertmanager sends (`http_config.authorization`).
    pub webhook_token: Option<String>,
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// Mutating requests a second from one address.
    pub rate_limit: u32,
    pub providers: Arc<dyn ProviderFactory>,
    /// `--notify URL`: receivers told about every run, besides each runbook's `notify:`.
    pub notify: Vec<String>,
    /// `--public-url`: where people reach this server, for the links in
    /// notifications (default `http://` and the bound address).
    pub public_url: Option<String>,
    /// `--param name=value`: params of every run it starts whose runbook declares them.
    pub params: Vec<(String, String)>,
}

/// Why the server does not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(String),
}

/// A non-loopback address needs authentication for people and for the webhook:
/// anyone who can reach the port could otherwise approve a deletion.
pub fn check_bind(addr: &SocketAddr, people: bool, webhook: bool) -> Result<(), ServeError> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    let mut missing = Vec::new();
    if !people {
        missing.push(
            "per-person tokens (RUNBOOK_SERVE_TOKENS_FILE or --tokens-file) or --trusted-header",
        );
    }
    if !webhook {
        missing.push("a webhook token (RUNBOOK_SERVE_WEBHOOK_TOKEN or --webhook-token-file)");
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(ServeError::Config(format!(
        "refusing to listen on {addr} (not a loopback address) without authentication: configure {}; or listen on 127.0.0.1 behind a proxy",
        missing.join(" and ")
    )))
}

/// The server's shared state.
pub(crate) struct App {
    pub runbooks: PathBuf,
    pub state_dir: PathBuf,
    pub auth: auth::Auth,
    pub limit: auth::RateLimit,
    pub hub: Arc<live::Hub>,
    pub factory: Arc<dyn ProviderFactory>,
    /// Alert group key → the run it started. A tokio mutex: held while a run starts,
    /// so a group re-sent meanwhile waits and then finds its run.
    pub groups: tokio::sync::Mutex<HashMap<String, String>>,
    /// Loaded runbooks by file, with the modification time and size they had.
    pub loaded: std::sync::Mutex<HashMap<PathBuf, CachedRunbook>>,
    /// `--param`: the server's params, for the runbooks that declare them.
    pub params: Vec<(String, String)>,
}

/// A runbook file as last loaded (or why it did not load).
pub(crate) struct CachedRunbook {
    stamp: (std::time::SystemTime, u64),
    loaded: Option<Arc<Loaded>>,
}

impl App {
    /// The runbooks in the folder, so an edit needs no restart: a file is parsed
    /// again only when its modification time or size changed. Files that do not load
    /// are logged (once per change) and left out.
    pub fn catalog(&self) -> Vec<Arc<Loaded>> {
        let mut cache = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let paths = runbook_files(&self.runbooks);
        cache.retain(|p, _| paths.contains(p));
        let mut out = Vec::new();
        for p in paths {
            let Ok(meta) = std::fs::metadata(&p) else {
                continue;
            };
            let stamp = (meta.modified().unwrap_or(std::time::UNIX_EPOCH), meta.len());
            let fresh = cache.get(&p).is_some_and(|c| c.stamp == stamp);
            if !fresh {
                let loaded = load_logged(&p).map(Arc::new);
                cache.insert(p.clone(), CachedRunbook { stamp, loaded });
            }
            if let Some(l) = cache.get(&p).and_then(|c| c.loaded.as_ref()) {
                out.push(Arc::clone(l));
            }
        }
        out
    }

    /// Base options of a run this server drives.
    pub fn opts(&self, operator: &str, loaded: &Loaded) -> EngineOpts {
        let mut opts = EngineOpts::new(operator, Arc::new(Printer::silent()));
        opts.defaults.base_dir = live::base_dir(&loaded.path);
        opts.params = self
            .params
            .iter()
            .filter(|(name, _)| loaded.runbook.params.contains_key(name))
            .cloned()
            .collect();
        opts
    }
}

/// Every `*.yaml`/`*.yml` in `dir`, in file-name order.
fn runbook_files(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect(),
        Err(e) => {
            tracing::error!("cannot read the runbooks folder {}: {e}", dir.display());
            return Vec::new();
        }
    };
    paths.sort();
    paths
}

fn load_logged(p: &Path) -> Option<Loaded> {
    match crate::runbook::load(p) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!("{} does not load and answers no alert: {e}", p.display());
            None
        }
    }
}

/// Serve until `cancel`: bind, pick up the runs that waited when the server last
/// stopped, and answer requests. `ready` hears the bound address.
pub async fn serve(
    cfg: Config,
    cancel: tokio_util::sync::CancellationToken,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let trusted_header = match &cfg.trusted_header {
        Some(h) => Some(http::HeaderName::try_from(h.as_str()).map_err(|_| {
            ServeError::Config(format!("--trusted-header {h:?} is not a valid header name"))
        })?),
        None => None,
    };
    if !cfg.runbooks.is_dir() {
        return Err(ServeError::Config(format!(
            "--runbooks {}: not a folder (give the folder of your runbook files)",
            cfg.runbooks.display()
        )));
    }
    let auth = auth::Auth::new(cfg.tokens, trusted_header, cfg.webhook_token)
        .map_err(|e| ServeError::Io(format!("cannot read /dev/urandom: {e}")))?;
    check_bind(
        &cfg.listen,
        auth.people_configured(),
        auth.webhook_configured(),
    )?;
    let app = Arc::new(App {
        runbooks: cfg.runbooks,
        state_dir: cfg.state_dir,
        auth,
        limit: auth::RateLimit::new(cfg.rate_limit),
        hub: Arc::new(live::Hub::new(cfg.notify.clone())),
        factory: cfg.providers,
        groups: tokio::sync::Mutex::new(HashMap::new()),
        loaded: std::sync::Mutex::new(HashMap::new()),
        params: cfg.params,
    });
    // Parse the runbooks once now, not on the first alert.
    let _ = app.catalog();
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServeError::Io(format!("cannot read the bound address: {e}")))?;
    let public = cfg
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let _ = app
        .hub
        .base_url
        .set(public.trim_end_matches('/').to_owned());
    pick_up(&app).await;
    ready(addr);
    let router = router(Arc::clone(&app), cfg.max_body);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { cancel.cancelled().await })
    .await
    .map_err(|e| ServeError::Io(format!("the server stopped: {e}")))
}

fn router(app: Arc<App>, max_body: usize) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/login", get(page::login_form).post(page::login))
        .route("/events", get(page::events_all))
        .route("/runs/{id}", get(page::run))
        .route("/runs/{id}/events", get(page::events_of_run))
        .route("/runs/{id}/postmortem", get(page::postmortem))
        .route("/runs/{id}/decision", post(page::decision))
        .route("/runs/{id}/confirm", post(page::confirm))
        .route("/runs/{id}/note", post(page::note))
        .route("/runs/{id}/abort", post(page::abort))
        .route("/api/v1/alerts/alertmanager", post(api::alertmanager))
        .route("/api/v1/runs", get(api::list).post(api::start))
        .route("/api/v1/runs/{id}", get(api::show))
        .route("/api/v1/runs/{id}/decision", post(api::decision))
        .route("/api/v1/runs/{id}/confirm", post(api::confirm))
        .route("/api/v1/runs/{id}/note", post(api::note))
        .route("/api/v1/runs/{id}/abort", post(api::abort))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(app)
}

/// On start: remember which alert group started which run, and resume every run this
/// server drove that was waiting (or busy) when it stopped, so it waits again.
async fn pick_up(app: &Arc<App>) {
    let store = DirStore::new(&app.state_dir);
    let Ok(runs) = store.list() else {
        return;
    };
    let mut groups = app.groups.lock().await;
    for run in runs {
        let Ok(j) = crate::journal::reader::read(&run.journal) else {
            continue;
        };
        let mut ours = false;
        for rec in &j.records {
            if let Event::Note { text, by, .. } = &rec.event {
                if by == ALERT_BY
                    && let Some(g) = alerts::group_of_note(text)
                {
                    groups.insert(g.to_owned(), run.run_id.clone());
                }
                ours |= by == SERVE_BY;
            }
        }
        if !ours {
            continue;
        }
        let Ok(state) = crate::journal::state::RunState::from_records(&j.records) else {
            continue;
        };
        let open = matches!(
            state.status,
            None | Some(crate::journal::event::RunStatus::Paused)
        );
        if !open || store.is_held(&run.run_id) {
            continue;
        }
        let loaded = match crate::runbook::load(Path::new(&state.runbook.path)) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(run = %run.run_id, "cannot resume: its runbook no longer loads: {e}");
                continue;
            }
        };
        let opts = app.opts(SERVE_BY, &loaded);
        let launch = live::Launch {
            loaded,
            opts,
            resume: Some(run.run_id.clone()),
        };
        match live::launch(
            &app.hub,
            Arc::clone(&app.factory),
            app.state_dir.clone(),
            launch,
        )
        .await
        {
            Ok(id) => {
                tracing::info!(run = %id, "resumed a run that waited when the server stopped")
            }
            Err(e) => tracing::error!(run = %run.run_id, "cannot resume: {e}"),
        }
    }
}
