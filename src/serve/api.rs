//! The JSON API and Alertmanager's webhook.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Identity, Via};
use super::live::{self, Launch};
use super::{ALERT_BY, App, SERVE_BY, alerts};
use crate::engine::{ManualAnswer, Submission, SubmitError, Verdict};
use crate::journal::event::{ApprovalSource, Event, Record};
use crate::journal::state::RunState;
use crate::runbook::Loaded;
use crate::store::{self, DirStore, RunStore};

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// A request that changes a run: within the rate limit, from a known person, and,
/// when the person was recognised by something a browser sends by itself (the cookie,
/// the proxy's header), carrying their CSRF token and no foreign `Origin`.
// The refusal is the HTTP answer itself, returned at once by the handler.
#[allow(clippy::result_large_err)]
pub(crate) fn mutating(
    app: &App,
    headers: &HeaderMap,
    peer: SocketAddr,
    csrf: Option<&str>,
) -> Result<Identity, Response> {
    if !app.limit.allow(peer.ip()) {
        return Err(error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests from this address; wait a second",
        ));
    }
    let Some(who) = app.auth.person(headers) else {
        let why = if app.auth.people_configured() {
            "authentication required: send `Authorization: Bearer TOKEN` (RUNBOOK_TOKEN) or log in on the page"
        } else {
            "this server has no per-person tokens configured (RUNBOOK_SERVE_TOKENS_FILE), so nobody can change a run through it"
        };
        return Err(error(StatusCode::UNAUTHORIZED, why));
    };
    if who.via != Via::Bearer {
        let header = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
        if !app.auth.csrf_ok(&who.name, csrf.or(header)) {
            return Err(error(
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token: reload the page and submit the form again",
            ));
        }
        if !same_origin(headers) {
            return Err(error(
                StatusCode::FORBIDDEN,
                "cross-site request refused (Origin is not this server)",
            ));
        }
    }
    Ok(who)
}

/// No `Origin`, or one whose host is the `Host` the request was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.trim_end_matches('/') == host)
}

/// A read: open on a server without people configured (loopback only), else needs a
/// person.
// The refusal is the HTTP answer itself, returned at once by the handler.
#[allow(clippy::result_large_err)]
pub(crate) fn reader(app: &App, headers: &HeaderMap) -> Result<Option<Identity>, Response> {
    match app.auth.person(headers) {
        Some(who) => Ok(Some(who)),
        None if !app.auth.people_configured() => Ok(None),
        None => Err(error(
            StatusCode::UNAUTHORIZED,
            "authentication required: send `Authorization: Bearer TOKEN`",
        )),
    }
}

/// `POST /api/v1/alerts/alertmanager`.
pub async fn alertmanager(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !app.limit.allow(peer.ip()) {
        return error(StatusCode::TOO_MANY_REQUESTS, "too many requests");
    }
    if !app.auth.webhook_ok(&headers) {
        tracing::warn!(%peer, "webhook refused: missing or wrong bearer token");
        return error(
            StatusCode::UNAUTHORIZED,
            "the webhook needs `Authorization: Bearer TOKEN` (Alertmanager's http_config.authorization)",
        );
    }
    let payload = match alerts::parse(&body) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(%peer, "webhook refused: {e}");
            return error(StatusCode::BAD_REQUEST, e);
        }
    };
    if payload.truncated_alerts > 0 {
        tracing::warn!(group = %payload.group_key, truncated = payload.truncated_alerts, "Alertmanager left alerts out of this notification (max_alerts)");
    }
    tracing::debug!(receiver = %payload.receiver, group = %payload.group_key, status = %payload.status, "webhook");
    let mut groups = app.groups.lock().await;
    if let Some(run_id) = groups.get(&payload.group_key).cloned() {
        if payload.status == "resolved" {
            let text = alerts::resolved_note(&payload);
            append_note(&app, &run_id, text, ALERT_BY.into());
        }
        tracing::info!(run = %run_id, group = %payload.group_key, status = %payload.status, "alert group already has its run");
        return Json(json!({ "run_id": run_id, "started": false, "duplicate": true }))
            .into_response();
    }
    if payload.status == "resolved" {
        tracing::info!(group = %payload.group_key, "a resolved alert group with no run: nothing to do");
        return Json(json!({ "started": false, "reason": "resolved, and no run of this group" }))
            .into_response();
    }
    let catalog = app.catalog();
    let Some(m) = alerts::find(&payload, &catalog) else {
        tracing::warn!(
            group = %payload.group_key,
            alerts = %alerts::names(&payload),
            "no runbook answers this alert (no trigger matches its labels, no runbook_url names a runbook)"
        );
        return Json(json!({ "started": false, "reason": "no runbook matches the alert" }))
            .into_response();
    };
    let mut opts = app.opts(ALERT_BY, m.loaded);
    // After the server's `--param`s: the alert's win.
    opts.params.extend(alerts::params(&m, &payload));
    opts.incident_start = alerts::incident_start(&payload);
    if opts.incident_start.is_some() {
        opts.incident_start_source = Some("alert".to_owned());
    }
    opts.notes = vec![
        (alerts::started_note(&payload, &m), ALERT_BY.to_owned()),
        (
            "started by runbook serve: it waits at every gate and manual step for a person"
                .to_owned(),
            SERVE_BY.to_owned(),
        ),
    ];
    let name = m.loaded.runbook.name.value.clone();
    let launch = Launch {
        loaded: Loaded::clone(m.loaded),
        opts,
        resume: None,
    };
    match live::launch(
        &app.hub,
        Arc::clone(&app.factory),
        app.state_dir.clone(),
        launch,
    )
    .await
    {
        Ok(run_id) => {
            groups.insert(payload.group_key.clone(), run_id.clone());
            tracing::info!(run = %run_id, runbook = %name, group = %payload.group_key, "alert started a run");
            (
                StatusCode::ACCEPTED,
                Json(json!({ "run_id": run_id, "runbook": name, "started": true })),
            )
                .into_response()
        }
        Err(e) => {
            // Answered 200: Alertmanager retrying a start that cannot succeed helps
            // nobody; the log says why.
            tracing::error!(runbook = %name, group = %payload.group_key, "the alert's run could not start: {e}");
            Json(json!({ "started": false, "runbook": name, "error": e })).into_response()
        }
    }
}

/// Append a note to a run's journal (the engine may be writing it: one locked
/// append) and show it on the pages.
pub(crate) fn append_note(app: &App, run_id: &str, text: String, by: String) -> Option<u64> {
    let path = DirStore::new(&app.state_dir).journal_path(run_id);
    let event = Event::Note { text, by, at: None };
    match crate::journal::writer::append_once(&path, chrono::Utc::now(), event.clone()) {
        Ok(seq) => {
            app.hub.publish(run_id, seq, &event);
            Some(seq)
        }
        Err(e) => {
            tracing::error!(run = %run_id, "cannot journal a note: {e}");
            None
        }
    }
}

/// One run as the API and the page show it.
#[derive(Debug, serde::Serialize)]
pub struct RunView {
    #[serde(flatten)]
    pub summary: store::RunSummary,
    /// What the run waits for right now, when this server drives it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<live::Waiting>,
}

pub(crate) fn list_runs(app: &App) -> Vec<RunView> {
    let mut runs: Vec<RunView> = store::list_runs(&DirStore::new(&app.state_dir))
        .unwrap_or_default()
        .into_iter()
        .map(|summary| {
            let waiting = waiting_of(app, &summary.run_id, None);
            RunView { summary, waiting }
        })
        .collect();
    runs.reverse();
    runs
}

pub async fn list(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(r) = reader(&app, &headers) {
        return r;
    }
    Json(json!({ "runs": list_runs(&app) })).into_response()
}

/// A run's summary, state and journal (redacted), resolved from what a person typed.
pub(crate) struct RunData {
    pub view: RunView,
    pub records: Vec<Record>,
    pub state: RunState,
}

// The refusal is the HTTP answer itself, returned at once by the handler.
#[allow(clippy::result_large_err)]
pub(crate) fn load_run(app: &App, query: &str) -> Result<RunData, Response> {
    let store = DirStore::new(&app.state_dir);
    let run_id = store
        .resolve(query)
        .map_err(|e| error(StatusCode::NOT_FOUND, e.to_string()))?;
    let summary = store::summarize(&store, &run_id)
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let j = crate::journal::reader::read(&store.journal_path(&run_id))
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let state = RunState::from_records(&j.records)
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let waiting = waiting_of(app, &run_id, Some((&j.records, &state)));
    Ok(RunData {
        view: RunView { summary, waiting },
        records: j.records,
        state,
    })
}

/// What a run this server drives waits for: a manual step (in this process), or a
/// gate asked and not answered (from the journal: a decision is appended there).
fn waiting_of(
    app: &App,
    run_id: &str,
    known: Option<(&[Record], &RunState)>,
) -> Option<live::Waiting> {
    let live = app.hub.get(run_id)?;
    if live.finished.load(std::sync::atomic::Ordering::SeqCst)
        || !live.begun.load(std::sync::atomic::Ordering::SeqCst)
    {
        return None;
    }
    if let Some(w) = live.waiting_manual() {
        return Some(w);
    }
    let read;
    let (records, state) = match known {
        Some(k) => k,
        None => {
            let path = DirStore::new(&app.state_dir).journal_path(run_id);
            let j = crate::journal::reader::read(&path).ok()?;
            let state = RunState::from_records(&j.records).ok()?;
            read = (j.records, state);
            (&read.0[..], &read.1)
        }
    };
    if state.status.is_some() {
        return None;
    }
    // The last gate asked whose step still waits for it, asked by this process: a
    // gate asked before the run was resumed is not waited on until the resumed run
    // asks it again (a decision appended meanwhile would not be read).
    for r in records.iter().rev() {
        match &r.event {
            Event::RunResumed { .. } | Event::RunStarted { .. } => return None,
            Event::GateRequested {
                step, rung, digest, ..
            } => {
                let s = state.step(step)?;
                let waits = s.finished.is_none() && s.pending_gate(rung.as_deref()).is_some();
                return waits.then(|| live::Waiting {
                    kind: "gate",
                    step: step.clone(),
                    rung: rung.clone(),
                    digest: Some(digest.clone()),
                });
            }
            _ => {}
        }
    }
    None
}

/// The plan of the gate `waiting` names, as the journal has it (redacted).
pub(crate) fn plan_of<'a>(
    records: &'a [Record],
    w: &live::Waiting,
) -> Option<&'a crate::journal::event::Event> {
    records.iter().rev().map(|r| &r.event).find(|e| {
        matches!(e, Event::GateRequested { step, rung, digest, .. }
            if *step == w.step && *rung == w.rung && Some(digest) == w.digest.as_ref())
    })
}

pub async fn show(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = reader(&app, &headers) {
        return r;
    }
    let run = match load_run(&app, &id) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let plan = run
        .view
        .waiting
        .as_ref()
        .and_then(|w| plan_of(&run.records, w))
        .cloned();
    Json(json!({
        "run": run.view,
        "incident_start": run.state.incident_start,
        "plan": plan,
        "events": run.records,
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
pub struct DecisionBody {
    pub step: String,
    /// The digest of the plan the person read: a decision binds to it.
    pub digest: String,
    /// `approve`, `decline` or `skip`.
    pub decision: String,
}

/// Answer a gate for `who`: one line appended to the journal under its lock, bound
/// to the digest the person was shown (`engine::submit_decision`); the run's
/// process, waiting at the gate, reads it within a poll.
pub(crate) fn decide(app: &App, run: &str, who: &Identity, body: &DecisionBody) -> Response {
    let verdict = match body.decision.as_str() {
        "approve" => Verdict::Approve,
        "decline" => Verdict::Decline,
        "skip" => Verdict::Skip,
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("decision {other:?}: expected approve, decline or skip"),
            );
        }
    };
    if body.digest.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "`digest` is empty: a decision binds to the plan you were shown (its digest is on the page and in `GET /api/v1/runs/ID`)",
        );
    }
    // Only a gate the run's process is waiting at now (see `waiting_of`).
    let run_id = match DirStore::new(&app.state_dir).resolve(run) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::NOT_FOUND, e.to_string()),
    };
    let waiting = waiting_of(app, &run_id, None).filter(|w| {
        w.kind == "gate" && (w.step == body.step || w.rung.as_deref() == Some(&body.step))
    });
    // A ladder's rung is decided by the rung's id (the engine's gates are per rung);
    // the page and API callers may name the step.
    let id = match &waiting {
        Some(w) => w.rung.clone().unwrap_or_else(|| body.step.clone()),
        None => {
            return error(
                StatusCode::CONFLICT,
                format!(
                    "run {run_id} is not waiting at the gate of `{}` in this server (answered already, not reached yet, or not driven here)",
                    body.step
                ),
            );
        }
    };
    let sub = Submission {
        run: &run_id,
        id: &id,
        by: &who.name,
        verdict,
        digest: Some(&body.digest),
        source: ApprovalSource::Remote,
    };
    match crate::engine::submit_decision(&app.state_dir, &sub, chrono::Utc::now()) {
        Ok(done) => {
            tracing::info!(run = %done.run_id, step = %body.step, by = %who.name, decision = %body.decision, "gate decided");
            Json(json!({
                "decided": body.decision,
                "step": done.step,
                "by": who.name,
                "approvers": done.approvers,
                "needed": done.needed,
            }))
            .into_response()
        }
        Err(SubmitError::Store(e)) if e.is_usage() => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ SubmitError::Journal(_)) | Err(e @ SubmitError::Store(_)) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        Err(e @ SubmitError::DigestChanged { .. }) => error(
            StatusCode::CONFLICT,
            format!("{e} (reload the page and read the plan again)"),
        ),
        Err(e) => error(StatusCode::CONFLICT, e.to_string()),
    }
}

/// The live run a query names (resolved like the CLI does).
fn live_run(app: &App, query: &str) -> Option<Arc<live::Live>> {
    let id = DirStore::new(&app.state_dir).resolve(query).ok()?;
    app.hub.get(&id)
}

pub async fn decision(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<DecisionBody>,
) -> Response {
    let who = match mutating(&app, &headers, peer, None) {
        Ok(w) => w,
        Err(r) => return r,
    };
    decide(&app, &id, &who, &body)
}

#[derive(Debug, Deserialize)]
pub struct ConfirmBody {
    pub step: String,
    /// `done`, `failed` or `skip`.
    pub outcome: String,
}

pub(crate) fn confirm_manual(app: &App, run: &str, who: &Identity, body: &ConfirmBody) -> Response {
    let Some(live) = live_run(app, run) else {
        return error(
            StatusCode::CONFLICT,
            format!("run {run} has nothing waiting here"),
        );
    };
    let by = who.name.clone();
    let answer = match body.outcome.as_str() {
        "done" => ManualAnswer::Done {
            by,
            source: ApprovalSource::Remote,
        },
        "failed" => ManualAnswer::Failed { by },
        "skip" => ManualAnswer::Skip { by },
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("outcome {other:?}: expected done, failed or skip"),
            );
        }
    };
    match live.confirm(&body.step, answer) {
        Ok(()) => Json(json!({ "confirmed": body.outcome, "step": body.step, "by": who.name }))
            .into_response(),
        Err(m) => error(StatusCode::CONFLICT, m),
    }
}

pub async fn confirm(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<ConfirmBody>,
) -> Response {
    let who = match mutating(&app, &headers, peer, None) {
        Ok(w) => w,
        Err(r) => return r,
    };
    confirm_manual(&app, &id, &who, &body)
}

#[derive(Debug, Deserialize)]
pub struct NoteBody {
    pub text: String,
}

pub(crate) fn add_note(app: &App, run: &str, who: &Identity, text: &str) -> Response {
    if text.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "the note is empty");
    }
    let store = DirStore::new(&app.state_dir);
    let Ok(run_id) = store.resolve(run) else {
        return error(StatusCode::NOT_FOUND, format!("run {run} not found"));
    };
    match append_note(app, &run_id, text.to_owned(), who.name.clone()) {
        Some(seq) => Json(json!({ "run_id": run_id, "seq": seq })).into_response(),
        None => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the note could not be journaled",
        ),
    }
}

pub async fn note(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<NoteBody>,
) -> Response {
    let who = match mutating(&app, &headers, peer, None) {
        Ok(w) => w,
        Err(r) => return r,
    };
    add_note(&app, &id, &who, &body.text)
}

pub(crate) fn abort_run(app: &App, run: &str, who: &Identity) -> Response {
    let Some(live) = live_run(app, run) else {
        return error(
            StatusCode::CONFLICT,
            format!("run {run} is not going on in this server (`runbook abort` ends a paused run)"),
        );
    };
    if live.finished.load(std::sync::atomic::Ordering::SeqCst) {
        return error(StatusCode::CONFLICT, format!("run {run} has ended"));
    }
    if let Some(id) = live.run_id.get() {
        append_note(
            app,
            id,
            format!("abort requested by {} on runbook serve", who.name),
            who.name.clone(),
        );
    }
    live.abort();
    Json(json!({ "aborting": true, "by": who.name })).into_response()
}

pub async fn abort(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let who = match mutating(&app, &headers, peer, None) {
        Ok(w) => w,
        Err(r) => return r,
    };
    abort_run(&app, &id, &who)
}

#[derive(Debug, Deserialize)]
pub struct StartBody {
    pub runbook: String,
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
}

pub async fn start(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<StartBody>,
) -> Response {
    let who = match mutating(&app, &headers, peer, None) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let catalog = app.catalog();
    let Some(loaded) = catalog
        .iter()
        .find(|l| l.runbook.name.value == body.runbook)
    else {
        let names: Vec<&str> = catalog
            .iter()
            .map(|l| l.runbook.name.value.as_str())
            .collect();
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no runbook named {:?} in the runbooks folder (it has: {})",
                body.runbook,
                names.join(", ")
            ),
        );
    };
    let mut opts = app.opts(&who.name, loaded);
    // After the server's `--param`s: the request's win.
    opts.params.extend(body.params.iter().map(|(k, v)| {
        let v = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        (k.clone(), v)
    }));
    opts.notes = vec![(
        format!(
            "started by {} on runbook serve: it waits at every gate and manual step for a person",
            who.name
        ),
        SERVE_BY.to_owned(),
    )];
    let launch = Launch {
        loaded: Loaded::clone(loaded),
        opts,
        resume: None,
    };
    match live::launch(
        &app.hub,
        Arc::clone(&app.factory),
        app.state_dir.clone(),
        launch,
    )
    .await
    {
        Ok(run_id) => (StatusCode::CREATED, Json(json!({ "run_id": run_id }))).into_response(),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
    }
}
