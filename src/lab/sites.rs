//! HTTP sites: what a scenario's users see. A site is a host (or a path on the lab's
//! own address, `/sites/<name>`) in front of a Service, as an ingress controller
//! puts it: it answers 200 while the Service has ready endpoints, and the ingress'
//! error (502, 503, 504, or a slow answer) when it has none or while an outage of
//! the scenario lasts. So a runbook's `http:` checks and verifications test against
//! the lab, and `site_success_rate` metrics follow what the runbook does.

use std::collections::VecDeque;

use axum::body::Body;
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use http::{StatusCode, header};
use schemars::JsonSchema;
use serde::Deserialize;

use super::Lab;
use super::controllers::endpoints::ready_endpoints;
use super::scenario_model::Span;
use super::state::State;

/// The longest a slow answer waits (wall-clock), whatever the scenario says.
pub const MAX_SLOW: std::time::Duration = std::time::Duration::from_secs(120);

/// Requests remembered per site for `site_success_rate`.
const SITE_LOG: usize = 10_000;

/// A site in a scenario: `{ name: hub, host: hub.mybinder.org, namespace: prod,
/// service: proxy-public }`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// The site's name: it is served at `<lab url>/sites/<name>` (and below).
    pub name: String,
    /// A host name: requests to the lab's address with this `Host` header are this
    /// site's too (`curl -H 'Host: hub.mybinder.org' http://127.0.0.1:PORT/`).
    #[serde(default)]
    pub host: Option<String>,
    /// Namespace of the service (default `default`).
    #[serde(default = "default_ns")]
    pub namespace: String,
    /// The Service behind the site: the site is up while it has ready endpoints.
    pub service: String,
    /// The answer while the service has no ready endpoints (default 503 at once).
    #[serde(default)]
    pub when_down: Failure,
    /// Times the site fails by itself, whatever the service's endpoints (a broken
    /// ingress, a cloud load balancer outage).
    #[serde(default)]
    pub outages: Vec<Outage>,
}

fn default_ns() -> String {
    "default".into()
}

/// A failed answer: a status, optionally after a delay (a slow answer).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    /// The HTTP status (500–599; default 503, an ingress without backends).
    #[serde(default = "s503")]
    pub status: ErrorStatus,
    /// Answer only after this long (wall-clock, at most 2 minutes): a client with a
    /// shorter timeout sees a timeout, as with a hanging backend.
    #[serde(default)]
    pub after: Option<Span>,
}

impl Default for Failure {
    fn default() -> Self {
        Failure {
            status: s503(),
            after: None,
        }
    }
}

fn s503() -> ErrorStatus {
    ErrorStatus(503)
}

/// A server-error status, 500–599, checked on read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(try_from = "u16")]
#[schemars(with = "u16")]
pub struct ErrorStatus(pub u16);

impl TryFrom<u16> for ErrorStatus {
    type Error = String;
    fn try_from(s: u16) -> Result<Self, String> {
        if (500..=599).contains(&s) {
            Ok(ErrorStatus(s))
        } else {
            Err(format!(
                "status {s}: a site fails with a server error, 500-599 (e.g. 502, 503, 504)"
            ))
        }
    }
}

/// A window in which the site fails by itself.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Outage {
    /// From (after the scenario start; default `0s`).
    #[serde(default)]
    pub at: Option<Span>,
    /// Until (after the scenario start); absent: never ends.
    #[serde(default)]
    pub until: Option<Span>,
    /// The HTTP status (default 503).
    #[serde(default = "s503")]
    pub status: ErrorStatus,
    /// Answer only after this long (wall-clock).
    #[serde(default)]
    pub after: Option<Span>,
}

/// The sites of a running lab and what they answered.
#[derive(Debug, Default)]
pub struct Sites {
    pub sites: Vec<Site>,
    /// Per site (same order): the cluster time of each answer and whether it was 2xx.
    pub log: Vec<VecDeque<(DateTime<Utc>, bool)>>,
    next: usize,
}

impl Sites {
    pub fn new(sites: Vec<Site>) -> Self {
        let log = sites.iter().map(|_| VecDeque::new()).collect();
        Sites {
            sites,
            log,
            next: 0,
        }
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.sites.iter().position(|s| s.name == name)
    }

    /// The site for a `Host` header (its port ignored).
    pub fn by_host(&self, host: &str) -> Option<&str> {
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        self.sites
            .iter()
            .find(|s| {
                s.host
                    .as_deref()
                    .is_some_and(|h| h.eq_ignore_ascii_case(host))
            })
            .map(|s| s.name.as_str())
    }
}

/// What a site answers now.
enum Answer {
    Up {
        pod: String,
        ip: String,
    },
    Down {
        status: u16,
        after: Option<Duration>,
    },
}

fn decide(st: &State, site: &Site) -> Answer {
    let now = st.now();
    let start = st.clock.start();
    if let Some(o) = site.outages.iter().find(|o| {
        let from = start + o.at.map_or(Duration::zero(), |s| s.0);
        from <= now && o.until.is_none_or(|u| now < start + u.0)
    }) {
        return Answer::Down {
            status: o.status.0,
            after: o.after.map(|s| s.0),
        };
    }
    let ready = ready_endpoints(st, &site.namespace, &site.service);
    let pick = st.sites.next % ready.len().max(1);
    match ready.into_iter().nth(pick) {
        Some((pod, ip)) => Answer::Up { pod, ip },
        None => Answer::Down {
            status: site.when_down.status.0,
            after: site.when_down.after.map(|s| s.0),
        },
    }
}

/// Would the site answer 200 now? (`site_success_rate` when nobody asked lately.)
pub fn up(st: &State, name: &str) -> Option<bool> {
    let site = st.sites.sites.iter().find(|s| s.name == name)?;
    Some(matches!(decide(st, site), Answer::Up { .. }))
}

/// The share of the site's answers in the last `window` of cluster time that were
/// 200; when there were none, whether it would answer 200 now.
pub fn success_rate(st: &State, name: &str, window: Duration) -> Option<f64> {
    let i = st.sites.index(name)?;
    let since = st.now() - window;
    let recent: Vec<bool> = st.sites.log[i]
        .iter()
        .filter(|(t, _)| *t > since)
        .map(|(_, ok)| *ok)
        .collect();
    if recent.is_empty() {
        return up(st, name).map(|u| if u { 1.0 } else { 0.0 });
    }
    Some(recent.iter().filter(|ok| **ok).count() as f64 / recent.len() as f64)
}

/// The ingress controller's (nginx) reason phrase for an error status.
fn reason(status: u16) -> &'static str {
    match status {
        502 => "Bad Gateway",
        503 => "Service Temporarily Unavailable",
        504 => "Gateway Time-out",
        _ => StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error"),
    }
}

/// Answer a request for site `name`.
pub async fn serve(lab: &Lab, name: &str) -> Response {
    let (status, body, delay) = {
        let mut st = lab.lock();
        let Some(i) = st.sites.index(name) else {
            let known: Vec<String> = st.sites.sites.iter().map(|s| s.name.clone()).collect();
            let body = format!(
                "no site named {name:?} in this scenario; its sites: [{}]\n",
                known.join(", ")
            );
            return text(404, body);
        };
        let site = st.sites.sites[i].clone();
        let answer = decide(&st, &site);
        st.sites.next = st.sites.next.wrapping_add(1);
        let now = st.now();
        let ok = matches!(answer, Answer::Up { .. });
        let log = &mut st.sites.log[i];
        if log.len() >= SITE_LOG {
            log.pop_front();
        }
        log.push_back((now, ok));
        match answer {
            Answer::Up { pod, ip } => (
                200,
                format!("{}: served by pod {pod} ({ip})\n", site.name),
                None,
            ),
            Answer::Down { status, after } => (
                status,
                format!(
                    "<html>\r\n<head><title>{status} {r}</title></head>\r\n<body>\r\n<center><h1>{status} {r}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
                    r = reason(status)
                ),
                after,
            ),
        }
    };
    if let Some(d) = delay.and_then(|d| d.to_std().ok()) {
        tokio::time::sleep(d.min(MAX_SLOW)).await;
    }
    text(status, body)
}

fn text(status: u16, body: String) -> Response {
    let content = if body.starts_with("<html>") {
        "text/html"
    } else {
        "text/plain; charset=utf-8"
    };
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, content)
        .body(Body::from(body))
        .unwrap_or_default()
}
