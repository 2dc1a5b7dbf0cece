//! The web page: server-rendered HTML that works without JavaScript (a few lines of
//! plain JS follow the run live over server-sent events). Everything shown comes
//! from the journal, whose secrets are already redacted.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Form;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::App;
use super::api::{self, ConfirmBody, DecisionBody};
use super::auth::{COOKIE, Identity};
use crate::journal::event::{Event, Outcome};
use crate::store::{DirStore, RunStore};

/// One line a person reads for an event (the live timeline and the page's).
pub fn describe(event: &Event) -> String {
    match event {
        Event::RunStarted {
            runbook, operator, ..
        } => format!("run of {} started by {operator}", runbook.name),
        Event::RunResumed { operator, .. } => format!("run resumed by {operator}"),
        Event::StepStarted { step, title, kind } => format!("{kind} `{step}` started: {title}"),
        Event::StepSkipped { step, reason } => format!("`{step}` skipped: {reason}"),
        Event::GateRequested { step, ops, .. } => {
            format!(
                "`{step}` waits for approval ({} operation(s) planned)",
                ops.len()
            )
        }
        Event::GateDecided {
            step,
            decision,
            by,
            source,
            ..
        } => format!(
            "`{step}`: {} by {by} ({})",
            serde_json::to_value(decision)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            serde_json::to_value(source)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        ),
        Event::Paused { step, reason, .. } => format!("paused at `{step}`: {reason}"),
        Event::OpStarted { op, .. } => format!("started: {}", op.display),
        Event::OpFinished {
            scope,
            outcome,
            duration_ms,
            error,
            ..
        } => format!(
            "`{}` operation {} in {duration_ms} ms{}",
            scope.step,
            outcome_word(*outcome),
            error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
        ),
        Event::ManualRequested { scope, instruction } => {
            format!("`{}` waits for a person: {instruction}", scope.step)
        }
        Event::ManualConfirmed { scope, outcome, by } => {
            format!(
                "`{}` confirmed {} by {by}",
                scope.step,
                outcome_word(*outcome)
            )
        }
        Event::VerifyPolled { scope, ok, .. } => format!(
            "`{}` verification {}",
            scope.step,
            if *ok { "holds" } else { "does not hold yet" }
        ),
        Event::RungStarted { rung, title, .. } => format!("rung `{rung}` started: {title}"),
        Event::Escalated { from, to, .. } => format!("escalated from `{from}` to `{to}`"),
        Event::Saved { step, name, .. } => format!("`{step}` saved `{name}`"),
        Event::StepFinished { step, summary, .. } => format!("`{step}` finished: {summary}"),
        Event::Note { text, by, .. } => format!("note by {by}: {text}"),
        Event::IncidentStart { at, by, .. } => format!(
            "incident start {} (from {by})",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        Event::RunFinished { status, reason, .. } => format!(
            "run {}{}",
            status.as_str(),
            reason
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        other => serde_json::to_value(other)
            .ok()
            .and_then(|v| v.get("event").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| "event".into())
            .replace('_', " "),
    }
}

fn outcome_word(o: Outcome) -> String {
    serde_json::to_value(o)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// HTML-escape a value for text and attribute context.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:0 1rem;color:#111;background:#fff}\
a{color:#0645ad}table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ccc}\
.waiting{background:#fff3bf}.failed,.aborted{color:#a00}.succeeded{color:#064}\
pre{white-space:pre-wrap;background:#f4f4f4;padding:.5rem;overflow-x:auto}\
button{font-size:1rem;padding:.5rem 1rem;margin:.2rem}.approve{background:#064;color:#fff}.decline{background:#a00;color:#fff}\
label{display:block;margin-top:.5rem}textarea,input[type=text],input[type=password]{width:100%;font-size:1rem}\
ol{padding-left:1.5rem}.mut{font-weight:bold}code{overflow-wrap:anywhere}h1 small{font-size:.6em;overflow-wrap:anywhere}";

fn layout(title: &str, who: Option<&Identity>, body: &str, script: Option<&str>) -> Html<String> {
    let user = who.map_or_else(
        || "<a href=\"/login\">log in</a>".to_owned(),
        |w| format!("signed in as {}", esc(&w.name)),
    );
    let script = script.map_or_else(String::new, |s| format!("<script>{s}</script>"));
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{t} · runbook</title><style>{STYLE}</style></head><body>\
<header><p><a href=\"/\">runbook serve</a> · {user}</p></header><main>{body}</main>{script}</body></html>",
        t = esc(title)
    ))
}

/// A page read: a person, or none when the server has no people configured; a
/// browser without a session is sent to the login form.
// The refusal is the HTTP answer itself, returned at once by the handler.
#[allow(clippy::result_large_err)]
fn page_reader(app: &App, headers: &HeaderMap) -> Result<Option<Identity>, Response> {
    api::reader(app, headers).map_err(|_| Redirect::to("/login").into_response())
}

fn error_page(status: StatusCode, message: &str) -> Response {
    (
        status,
        layout(
            "error",
            None,
            &format!("<h1>Not done</h1><p role=\"alert\">{}</p><p><a href=\"javascript:history.back()\">back</a></p>", esc(message)),
            None,
        ),
    )
        .into_response()
}

pub async fn index(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let who = match page_reader(&app, &headers) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let mut rows = String::new();
    for r in api::list_runs(&app) {
        let s = &r.summary;
        let (status, class) = match &r.waiting {
            Some(w) => (format!("waiting at {} `{}`", w.kind, w.step), "waiting"),
            None => (s.status_label(), s.status.as_str()),
        };
        let _ = write!(
            rows,
            "<tr class=\"{}\"><td><a href=\"/runs/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{} UTC</td><td>{}</td></tr>",
            esc(class),
            esc(&s.runbook),
            esc(&status),
            s.started.format("%Y-%m-%d %H:%M:%S"),
            esc(&s.operator),
            id = esc(&s.run_id),
        );
    }
    let body = if rows.is_empty() {
        "<h1>Runs</h1><p>No runs yet. An alert from Alertmanager or <code>POST /api/v1/runs</code> starts one.</p>".to_owned()
    } else {
        format!(
            "<h1>Runs</h1><table><caption>Newest first; the list follows the runs live.</caption>\
<thead><tr><th scope=\"col\">run</th><th scope=\"col\">runbook</th><th scope=\"col\">status</th><th scope=\"col\">started</th><th scope=\"col\">by</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    let script = "if(window.EventSource){new EventSource('/events').onmessage=function(e){\
if(JSON.parse(e.data).some(function(d){return d.reload}))location.reload()}}";
    layout("runs", who.as_ref(), &body, Some(script)).into_response()
}

pub async fn run(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let who = match page_reader(&app, &headers) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let run = match api::load_run(&app, &id) {
        Ok(r) => r,
        Err(_) => return error_page(StatusCode::NOT_FOUND, &format!("run {id} not found")),
    };
    let s = &run.view.summary;
    let rid = esc(&s.run_id);
    let mut body = format!("<h1>{} <small>{rid}</small></h1>", esc(&s.runbook));
    let status = match &run.view.waiting {
        Some(w) => format!("waiting at {} `{}`", w.kind, w.step),
        None => s.status_label(),
    };
    let _ = write!(
        body,
        "<p>Status: <strong>{}</strong>. Started {} UTC by {}.{}</p>",
        esc(&status),
        s.started.format("%Y-%m-%d %H:%M:%S"),
        esc(&s.operator),
        run.state
            .incident_start
            .map(|t| format!(" Incident start {} UTC.", t.format("%Y-%m-%d %H:%M:%S")))
            .unwrap_or_default()
    );
    let csrf = who
        .as_ref()
        .map(|w| app.auth.csrf_for(&w.name))
        .unwrap_or_default();
    let hidden = format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&csrf)
    );
    if let Some(w) = &run.view.waiting {
        let step = esc(&w.step);
        if w.kind == "gate" {
            body.push_str(
                "<section aria-labelledby=\"plan\"><h2 id=\"plan\">Plan waiting for approval</h2>",
            );
            if let Some(Event::GateRequested {
                ops,
                digest,
                preview,
                ..
            }) = api::plan_of(&run.records, w)
            {
                body.push_str("<ol>");
                for op in ops {
                    let _ = write!(
                        body,
                        "<li><code class=\"{}\">{}</code>{}{}</li>",
                        if op.mutating { "mut" } else { "" },
                        esc(&op.display),
                        if op.mutating {
                            " (changes something)"
                        } else {
                            ""
                        },
                        op.impact
                            .as_ref()
                            .map(|i| format!("<br>{}", esc(&i.summary)))
                            .unwrap_or_default()
                    );
                }
                body.push_str("</ol>");
                if let Some(p) = preview {
                    let _ = write!(body, "<h3>Preview</h3><pre>{}</pre>", esc(p));
                }
                let _ = write!(
                    body,
                    "<p>Plan digest <code>{d}</code>: the decision binds to exactly this plan.</p>\
<form method=\"post\" action=\"/runs/{rid}/decision\">{hidden}\
<input type=\"hidden\" name=\"step\" value=\"{step}\"><input type=\"hidden\" name=\"digest\" value=\"{d}\">\
<button class=\"approve\" name=\"decision\" value=\"approve\">Approve</button>\
<button class=\"decline\" name=\"decision\" value=\"decline\">Decline</button>\
<button class=\"skip\" name=\"decision\" value=\"skip\">Skip this step</button></form>",
                    d = esc(digest)
                );
            }
            body.push_str("</section>");
        } else {
            let instruction = run
                .records
                .iter()
                .rev()
                .find_map(|r| match &r.event {
                    Event::ManualRequested { scope, instruction } if scope.step == w.step => {
                        Some(instruction.clone())
                    }
                    _ => None,
                })
                .unwrap_or_default();
            let _ = write!(
                body,
                "<section aria-labelledby=\"manual\"><h2 id=\"manual\">A person must do this</h2><pre>{}</pre>\
<form method=\"post\" action=\"/runs/{rid}/confirm\">{hidden}<input type=\"hidden\" name=\"step\" value=\"{step}\">\
<button class=\"approve\" name=\"outcome\" value=\"done\">Done</button>\
<button class=\"decline\" name=\"outcome\" value=\"failed\">It failed</button>\
<button name=\"outcome\" value=\"skip\">Skip</button></form></section>",
                esc(&instruction)
            );
        }
    }
    body.push_str(
        "<section aria-labelledby=\"tl\"><h2 id=\"tl\">Timeline</h2><ol id=\"timeline\">",
    );
    for r in &run.records {
        let _ = write!(
            body,
            "<li><time datetime=\"{}\">{}</time> {}</li>",
            r.ts.to_rfc3339(),
            r.ts.format("%H:%M:%S"),
            esc(&describe(&r.event))
        );
    }
    body.push_str("</ol></section>");
    let _ = write!(
        body,
        "<section aria-labelledby=\"act\"><h2 id=\"act\">Act</h2>\
<form method=\"post\" action=\"/runs/{rid}/note\">{hidden}<label for=\"note\">Note for the timeline</label>\
<textarea id=\"note\" name=\"text\" rows=\"2\" required></textarea><button>Add note</button></form>"
    );
    if s.status == "running" || run.view.waiting.is_some() {
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/runs/{rid}/abort\">{hidden}<button class=\"decline\">Abort the run</button></form>"
        );
    }
    let _ = write!(
        body,
        "<p><a href=\"/runs/{rid}/postmortem\">Postmortem</a></p></section>"
    );
    let script = format!(
        "if(window.EventSource){{new EventSource('/runs/{rid}/events').onmessage=function(e){{\
JSON.parse(e.data).forEach(function(d){{if(d.reload){{location.reload();return}}\
var li=document.createElement('li');li.textContent=d.ts+' '+d.text;\
document.getElementById('timeline').appendChild(li)}})}}}}"
    );
    layout(&s.runbook, who.as_ref(), &body, Some(&script)).into_response()
}

pub async fn postmortem(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let who = match page_reader(&app, &headers) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let store = DirStore::new(&app.state_dir);
    let Ok(run_id) = store.resolve(&id) else {
        return error_page(StatusCode::NOT_FOUND, &format!("run {id} not found"));
    };
    let text = match crate::render::render_run(&store.run_dir(&run_id), &Default::default()) {
        Ok(t) => t,
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let body = format!(
        "<h1>Postmortem of {}</h1><p><a href=\"/runs/{0}\">back to the run</a></p><pre>{}</pre>",
        esc(&run_id),
        esc(&text)
    );
    layout("postmortem", who.as_ref(), &body, None).into_response()
}

pub async fn login_form() -> Response {
    layout(
        "log in",
        None,
        "<h1>Log in</h1><form method=\"post\" action=\"/login\"><label for=\"token\">Your token</label>\
<input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required><button>Log in</button></form>",
        None,
    )
    .into_response()
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
}

pub async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(f): Form<LoginForm>,
) -> Response {
    if !app.limit.allow(peer.ip()) {
        return error_page(
            StatusCode::TOO_MANY_REQUESTS,
            "too many attempts; wait a second",
        );
    }
    if app.auth.name_of(f.token.trim()).is_none() {
        return error_page(
            StatusCode::UNAUTHORIZED,
            "that token is not known to this server",
        );
    }
    (
        StatusCode::SEE_OTHER,
        [
            (
                header::SET_COOKIE,
                format!(
                    "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
                    f.token.trim()
                ),
            ),
            (header::LOCATION, "/".to_owned()),
        ],
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    csrf: String,
    step: String,
    digest: String,
    decision: String,
}

/// A form post's answer: back to the run page, or the error as a page.
fn after(result: Response, run: &str) -> Response {
    if result.status().is_success() {
        Redirect::to(&format!("/runs/{run}")).into_response()
    } else {
        let status = result.status();
        error_page(status, status.canonical_reason().unwrap_or("refused"))
    }
}

pub async fn decision(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<DecisionForm>,
) -> Response {
    let who = match api::mutating(&app, &headers, peer, Some(&f.csrf)) {
        Ok(w) => w,
        Err(r) => return after(r, &id),
    };
    let body = DecisionBody {
        step: f.step,
        digest: f.digest,
        decision: f.decision,
    };
    after(api::decide(&app, &id, &who, &body), &id)
}

#[derive(Debug, Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    csrf: String,
    step: String,
    outcome: String,
}

pub async fn confirm(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<ConfirmForm>,
) -> Response {
    let who = match api::mutating(&app, &headers, peer, Some(&f.csrf)) {
        Ok(w) => w,
        Err(r) => return after(r, &id),
    };
    let body = ConfirmBody {
        step: f.step,
        outcome: f.outcome,
    };
    after(api::confirm_manual(&app, &id, &who, &body), &id)
}

#[derive(Debug, Deserialize)]
pub struct NoteForm {
    #[serde(default)]
    csrf: String,
    text: String,
}

pub async fn note(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<NoteForm>,
) -> Response {
    let who = match api::mutating(&app, &headers, peer, Some(&f.csrf)) {
        Ok(w) => w,
        Err(r) => return after(r, &id),
    };
    after(api::add_note(&app, &id, &who, &f.text), &id)
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn abort(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let who = match api::mutating(&app, &headers, peer, Some(&f.csrf)) {
        Ok(w) => w,
        Err(r) => return after(r, &id),
    };
    after(api::abort_run(&app, &id, &who), &id)
}

/// How long a viewer's stream gathers lines before it sends them: a person does not
/// see 100 ms, and a hundred viewers of a fast run cost a hundred writes a batch
/// rather than a hundred writes an event.
const BATCH: std::time::Duration = std::time::Duration::from_millis(100);

/// The event stream of one run (or all): each message is a JSON array of lines.
fn stream(app: &App, run: Option<String>) -> Response {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    const RELOAD: &str = "{\"reload\":true}";
    let rx = app.hub.lines.subscribe();
    let events = futures::stream::unfold(rx, move |mut rx| {
        let run = run.clone();
        async move {
            let wanted = |l: &super::live::Line| run.as_ref().is_none_or(|r| *r == l.run_id);
            let mut batch: Vec<String> = Vec::new();
            loop {
                match rx.recv().await {
                    Ok(line) if wanted(&line) => {
                        batch.push(line.json.clone());
                        break;
                    }
                    Ok(_) => {}
                    // A slow reader missed lines: have the page reload.
                    Err(RecvError::Lagged(_)) => {
                        batch.push(RELOAD.into());
                        break;
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
            tokio::time::sleep(BATCH).await;
            loop {
                match rx.try_recv() {
                    Ok(line) if wanted(&line) => batch.push(line.json.clone()),
                    Ok(_) => {}
                    Err(TryRecvError::Lagged(_)) => batch.push(RELOAD.into()),
                    Err(_) => break,
                }
            }
            let ev = SseEvent::default().data(format!("[{}]", batch.join(",")));
            Some((Ok::<_, Infallible>(ev), rx))
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

pub async fn events_all(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(r) = api::reader(&app, &headers) {
        return r;
    }
    stream(&app, None)
}

pub async fn events_of_run(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = api::reader(&app, &headers) {
        return r;
    }
    let Ok(run_id) = DirStore::new(&app.state_dir).resolve(&id) else {
        return api::error(StatusCode::NOT_FOUND, format!("run {id} not found"));
    };
    stream(&app, Some(run_id))
}
