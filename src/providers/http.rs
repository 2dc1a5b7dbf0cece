//! `http`: one HTTP request with templated URL, headers and body, over rustls.
//! The result is `{status, headers, body, json?}`; a status the operation does not
//! accept (default: any 2xx) is a failure that keeps the response for the journal.
//!
//! The body is kept in memory up to [`max_output`](super::limits::max_output) bytes;
//! in a run, a longer body is streamed whole to a side file (`body_file`) up to
//! [`max_spill`](super::limits::max_spill) bytes, and the connection is dropped
//! there: an endless or huge body ends at a cap (or at the timeout). The result says
//! `body_truncated: true` with `body_bytes`, the body's size when it was read to its
//! end, else the declared `Content-Length` when the server sent one.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::limits::Spiller;
use super::{Defaults, ExecCtx, OpError, Provider, Resolved};
use crate::expr;
use crate::runbook::model::OpRef;

/// The resolved form of an HTTP operation (`Resolved::op`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpCall {
    pub method: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    /// Accepted statuses; empty means any 2xx.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status: Vec<u16>,
}

/// Sends HTTP requests; one connection pool per run.
#[derive(Debug, Clone)]
pub struct Http {
    client: LazyClient,
}

/// Bound on a request that names no timeout: a runbook step must never hang forever.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

impl Http {
    /// A client over rustls (ring); installs the process-wide crypto provider first.
    pub fn new() -> Result<Http, String> {
        Ok(Http {
            client: LazyClient::default(),
        })
    }
}

/// A client built on first use: loading the system's root certificates costs a few
/// milliseconds that a run without HTTP steps should not pay.
#[derive(Debug, Clone, Default)]
pub(crate) struct LazyClient(std::sync::Arc<std::sync::OnceLock<Result<reqwest::Client, String>>>);

impl LazyClient {
    pub(crate) fn get(&self) -> Result<&reqwest::Client, OpError> {
        self.0
            .get_or_init(client)
            .as_ref()
            .map_err(|e| OpError::failed(e.clone()))
    }
}

/// The shared reqwest client configuration of `http` and `prometheus`.
pub(crate) fn client() -> Result<reqwest::Client, String> {
    super::install_crypto_provider();
    reqwest::Client::builder()
        .user_agent(concat!("runbook/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

impl Provider for Http {
    fn resolve(&self, op: OpRef<'_>, vars: &Value, _: &Defaults) -> Result<Resolved, OpError> {
        let OpRef::Http(op) = op else {
            return Err(OpError::wrong_provider("http", &op));
        };
        let render = |t: &str, what: &str| super::render_field(t, vars, what);
        let method = op
            .method
            .as_ref()
            .map(|m| m.value.to_uppercase())
            .unwrap_or_else(|| "GET".into());
        let url = render(&op.url, "url")?;
        reqwest::Url::parse(&url).map_err(|e| OpError::Invalid(format!("url `{url}`: {e}")))?;
        let headers = op
            .headers
            .iter()
            .map(|(k, v)| Ok((k.clone(), render(v, &format!("headers.{k}"))?)))
            .collect::<Result<BTreeMap<_, _>, OpError>>()?;
        let body = op.body.as_ref().map(|b| render(b, "body")).transpose()?;
        let json = op
            .json
            .as_ref()
            .map(|j| expr::render_json(j, vars).map_err(|e| OpError::Invalid(format!("json: {e}"))))
            .transpose()?;
        let call = HttpCall {
            method: method.clone(),
            url: url.clone(),
            headers,
            body,
            json,
            status: op.status.iter().map(|s| s.value).collect(),
        };
        let display = match (&call.json, &call.body) {
            (Some(_), _) => format!("{method} {url} (JSON body)"),
            (None, Some(b)) => format!("{method} {url} ({} byte body)", b.len()),
            _ => format!("{method} {url}"),
        };
        Ok(Resolved {
            provider: "http".into(),
            display,
            op: serde_json::to_value(&call).map_err(|e| OpError::Invalid(e.to_string()))?,
            mutating: !matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS"),
        })
    }

    fn execute<'a>(
        &'a self,
        op: &'a Resolved,
        cx: &'a ExecCtx,
    ) -> BoxFuture<'a, Result<Value, OpError>> {
        Box::pin(async move {
            let call: HttpCall = op.decode()?;
            let result = send(self.client.get()?, &call, cx).await?;
            let status = result["status"].as_u64().unwrap_or(0) as u16;
            let accepted = if call.status.is_empty() {
                (200..300).contains(&status)
            } else {
                call.status.contains(&status)
            };
            if accepted {
                Ok(result)
            } else {
                Err(OpError::Failed {
                    message: format!(
                        "{} {} answered {status}, expected {}",
                        call.method,
                        call.url,
                        if call.status.is_empty() {
                            "2xx".to_string()
                        } else {
                            or_list(&call.status)
                        }
                    ),
                    result: Some(result),
                })
            }
        })
    }
}

/// Send one request, bounded by the timeout and the cancellation token (dropping the
/// future drops the connection).
pub(crate) async fn send(
    client: &reqwest::Client,
    call: &HttpCall,
    cx: &ExecCtx,
) -> Result<Value, OpError> {
    let method = reqwest::Method::from_bytes(call.method.as_bytes())
        .map_err(|_| OpError::Invalid(format!("bad HTTP method `{}`", call.method)))?;
    let mut req = client.request(method, &call.url);
    for (k, v) in &call.headers {
        req = req.header(k, v);
    }
    if let Some(j) = &call.json {
        req = req.json(j);
    } else if let Some(b) = &call.body {
        req = req.body(b.clone());
    }
    let timeout = cx.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let cap = super::limits::max_output()?;
    let spill_cap = super::limits::max_spill()?;
    // Until the body passes the cap, the deadline is a timeout. Past it, what was
    // kept is a result: the deadline only ends the streaming of the rest to the side
    // file (an endless body is cut there rather than failing the step).
    let deadline = tokio::time::Instant::now() + timeout;
    let exchange = async {
        let mut resp = match tokio::time::timeout_at(deadline, req.send()).await {
            Ok(r) => r.map_err(Fail::Http)?,
            Err(_) => return Err(Fail::TimedOut),
        };
        let status = resp.status().as_u16();
        let headers: serde_json::Map<String, Value> = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
                )
            })
            .collect();
        let declared = resp.content_length();
        let mut kept: Vec<u8> = Vec::new();
        let mut read: u64 = 0;
        let mut truncated = false;
        let mut ended = true;
        let mut spill = Spiller::new(cx.spill.as_ref(), "body", "txt", spill_cap);
        loop {
            let chunk = match tokio::time::timeout_at(deadline, resp.chunk()).await {
                Ok(Ok(Some(chunk))) => chunk,
                Ok(Ok(None)) => break,
                Ok(Err(e)) if !truncated => return Err(Fail::Http(e)),
                Err(_) if !truncated => return Err(Fail::TimedOut),
                // Past the cap, a failed or late rest of the body ends the side file.
                Ok(Err(_)) | Err(_) => {
                    ended = false;
                    break;
                }
            };
            read += chunk.len() as u64;
            if truncated {
                spill.write(&[], &chunk).await;
            } else {
                let room = cap - kept.len();
                if chunk.len() <= room {
                    kept.extend_from_slice(&chunk);
                    continue;
                }
                // Past the cap: the side file starts with what was kept so far.
                spill.write(&kept, &chunk).await;
                kept.extend_from_slice(&chunk[..room]);
                truncated = true;
            }
            if !spill.open() {
                // Nothing more will be written (no run folder, the spill cap, a full
                // disk): stop reading. Dropping the response closes the connection,
                // so an endless body costs nothing more.
                ended = false;
                break;
            }
        }
        let spilled = spill.finish().await;
        let cut = truncated.then(|| {
            let total = if ended { Some(read) } else { declared };
            (total, spilled)
        });
        Ok::<_, Fail>((status, headers, kept, cut))
    };
    let (status, headers, kept, cut) = tokio::select! {
        r = exchange => match r {
            Ok(x) => x,
            Err(Fail::Http(e)) => return Err(OpError::failed(describe(call, &e))),
            Err(Fail::TimedOut) => return Err(OpError::TimedOut(timeout)),
        },
        () = cx.cancel.cancelled() => return Err(OpError::Cancelled),
    };
    let body = super::limits::cut_text(&kept, cut.is_some());
    let mut result = serde_json::Map::new();
    result.insert("status".into(), Value::from(status));
    result.insert("headers".into(), Value::Object(headers));
    // A cut body is not JSON, whatever it starts with.
    if cut.is_none()
        && let Ok(json) = serde_json::from_str::<Value>(&body)
    {
        result.insert("json".into(), json);
    }
    result.insert("body".into(), Value::String(body));
    if let Some((total, spilled)) = cut {
        result.insert("body_truncated".into(), Value::Bool(true));
        if let Some(n) = total {
            result.insert("body_bytes".into(), Value::from(n));
        }
        // Read to its end, the file holds the whole body; cut at the spill cap (or
        // of unknown length), `body_file_truncated` says the file is not all of it.
        super::limits::note_spill(&mut result, "body", &spilled, total.unwrap_or(u64::MAX));
    }
    Ok(Value::Object(result))
}

/// `200`, `200 or 204`, `200, 201 or 204`: the statuses a step accepts, in words.
fn or_list(statuses: &[u16]) -> String {
    match statuses {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!(
            "{} or {last}",
            rest.iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Why an exchange ended without a response.
enum Fail {
    Http(reqwest::Error),
    TimedOut,
}

/// What went wrong, naming the request once.
fn describe(call: &HttpCall, e: &reqwest::Error) -> String {
    let chain = error_chain(e);
    if chain.contains(&call.url) {
        format!("{}: {chain}", call.method)
    } else {
        format!("{} {}: {chain}", call.method, call.url)
    }
}

/// reqwest's top-level message hides the cause ("error sending request"): add it.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
