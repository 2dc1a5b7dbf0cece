//! `--server URL`: `runbook show|note|abort` talk to a `runbook serve` instead of the
//! local run store. The person's token comes from `RUNBOOK_TOKEN` (never argv).

use serde_json::Value;

/// The `--server` flag, shared by the commands that can talk to a server.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerArgs {
    /// Talk to this `runbook serve` (http://host:port) instead of the local run
    /// store; your token comes from RUNBOOK_TOKEN.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

/// One request to the server's JSON API; the answer's JSON, or what went wrong in
/// words (the server's own `error` when it gave one).
pub fn call(
    server: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let token = std::env::var("RUNBOOK_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty());
    if method != reqwest::Method::GET && token.is_none() {
        return Err("set RUNBOOK_TOKEN to your token on the server (the server's token file has one line name:token per person)".into());
    }
    let url = format!("{}{path}", server.trim_end_matches('/'));
    let rt = super::runtime();
    rt.block_on(async move {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let mut req = client.request(method, &url);
        if let Some(t) = token {
            req = req.bearer_auth(t.trim());
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| format!("{url}: {e}"))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            Ok(value)
        } else {
            let why = value
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string());
            Err(format!("{url}: {status}: {why}"))
        }
    })
}

/// A path segment: a run id or query, percent-encoded.
pub fn seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
