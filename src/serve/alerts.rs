//! Alertmanager's webhook payload (version 4) and which runbook an alert starts.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::runbook::Loaded;

/// The body Alertmanager's `webhook_config` POSTs (version "4").
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    pub version: String,
    /// Identifies the alert group: the same group is sent again and again.
    pub group_key: String,
    /// `firing` or `resolved`, of the group.
    pub status: String,
    #[serde(default)]
    pub receiver: String,
    pub alerts: Vec<Alert>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub truncated_alerts: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: Option<String>,
}

/// Why a body is not a payload this server takes.
pub fn parse(body: &[u8]) -> Result<Payload, String> {
    let p: Payload = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the body is not an Alertmanager webhook payload: {e} (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    if p.version != "4" {
        return Err(format!(
            "payload version {:?} is not supported: expected \"4\" (Alertmanager's webhook_config)",
            p.version
        ));
    }
    if p.group_key.trim().is_empty() {
        return Err("`groupKey` is empty: one alert group starts one run, so it is needed".into());
    }
    if !matches!(p.status.as_str(), "firing" | "resolved") {
        return Err(format!(
            "`status` is {:?}: expected \"firing\" or \"resolved\"",
            p.status
        ));
    }
    Ok(p)
}

/// The runbook an alert group starts, with the alert that matched it.
pub struct Match<'a> {
    pub loaded: &'a Loaded,
    pub alert: &'a Alert,
    /// `trigger` or `runbook_url`.
    pub how: &'static str,
}

/// The first runbook (in file-name order) that a firing alert of the group names:
/// by a trigger whose labels the alert carries, else by the alert's `runbook_url`
/// annotation (its last path segment, without `.yaml`/`.yml`/`.md`/`.html`, is the
/// runbook's name or file stem).
pub fn find<'a>(payload: &'a Payload, catalog: &'a [Arc<Loaded>]) -> Option<Match<'a>> {
    let firing = payload.alerts.iter().filter(|a| a.status == "firing");
    for alert in firing.clone() {
        for loaded in catalog {
            let hit = loaded.runbook.triggers.iter().any(|t| {
                t.alert
                    .iter()
                    .all(|(k, v)| alert.labels.get(k) == Some(&v.value))
            });
            if hit {
                return Some(Match {
                    loaded,
                    alert,
                    how: "trigger",
                });
            }
        }
    }
    for alert in firing {
        let Some(url) = alert
            .annotations
            .get("runbook_url")
            .or_else(|| payload.common_annotations.get("runbook_url"))
        else {
            continue;
        };
        let key = url_key(url);
        for loaded in catalog {
            let stem = loaded
                .path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            if !key.is_empty() && (key == loaded.runbook.name.value || key == stem) {
                return Some(Match {
                    loaded,
                    alert,
                    how: "runbook_url",
                });
            }
        }
    }
    None
}

/// `https://git.example.org/ops/runbooks/blob/main/hub-pvc-locked.yaml#x` →
/// `hub-pvc-locked`.
fn url_key(url: &str) -> &str {
    let path = url.split(['#', '?']).next().unwrap_or_default();
    let last = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    for ext in [".yaml", ".yml", ".md", ".html"] {
        if let Some(s) = last.strip_suffix(ext) {
            return s;
        }
    }
    last
}

/// The params `params_from_alert:` takes from the alert (then the group's common
/// labels and annotations); a label the alert lacks sets nothing (the default
/// applies, and a required param without one refuses the start).
pub fn params(m: &Match<'_>, payload: &Payload) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (param, source) in &m.loaded.runbook.params_from_alert {
        let v = &source.value;
        let value = if let Some(l) = v.strip_prefix("labels.") {
            m.alert
                .labels
                .get(l)
                .or_else(|| payload.common_labels.get(l))
        } else if let Some(a) = v.strip_prefix("annotations.") {
            m.alert
                .annotations
                .get(a)
                .or_else(|| payload.common_annotations.get(a))
        } else {
            None
        };
        if let Some(value) = value {
            out.push((param.clone(), value.clone()));
        }
    }
    out
}

/// When the incident became detectable: the earliest `startsAt` of the group's
/// firing alerts.
pub fn incident_start(payload: &Payload) -> Option<DateTime<Utc>> {
    payload
        .alerts
        .iter()
        .filter(|a| a.status == "firing")
        .map(|a| a.starts_at)
        .min()
}

/// The alert names of a group, for notes and logs (`HubPodNotReady`, or
/// `HubPodNotReady and 2 more`).
pub fn names(payload: &Payload) -> String {
    let mut names: Vec<&str> = payload
        .alerts
        .iter()
        .filter_map(|a| a.labels.get("alertname").map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    match names.as_slice() {
        [] => "(unnamed alert)".into(),
        [one] => (*one).to_owned(),
        [first, rest @ ..] => format!("{first} and {} more", rest.len()),
    }
}

/// The marker at the end of the note that records which alert group started a run;
/// read back on restart so a re-sent group does not start a second run.
const GROUP_MARK: &str = " (Alertmanager group ";

/// The note journaled when an alert group starts a run.
pub fn started_note(payload: &Payload, m: &Match<'_>) -> String {
    let summary = m
        .alert
        .annotations
        .get("summary")
        .map(|s| format!(": {s}"))
        .unwrap_or_default();
    let source = m
        .alert
        .generator_url
        .as_ref()
        .map(|u| format!("; source {u}"))
        .unwrap_or_default();
    format!(
        "alert {} firing since {}{summary}{source}; runbook found by {}{GROUP_MARK}{})",
        names(payload),
        m.alert
            .starts_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        m.how,
        payload.group_key
    )
}

/// The group key a `started_note` names.
pub fn group_of_note(text: &str) -> Option<&str> {
    let (_, rest) = text.rsplit_once(GROUP_MARK)?;
    rest.strip_suffix(')')
}

/// The note journaled in a run when its alert group resolves.
pub fn resolved_note(payload: &Payload) -> String {
    let ended = payload
        .alerts
        .iter()
        .filter_map(|a| a.ends_at)
        .filter(|t| t.timestamp() > 0)
        .max()
        .map(|t| {
            format!(
                " at {}",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        })
        .unwrap_or_default();
    format!("alert {} resolved{ended} (Alertmanager)", names(payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runbook_url_names_the_runbook_by_its_last_segment() {
        assert_eq!(
            url_key("https://git.example.org/ops/runbooks/blob/main/hub-pvc-locked.yaml#x"),
            "hub-pvc-locked"
        );
        assert_eq!(url_key("https://wiki/runbooks/hub-down/"), "hub-down");
    }

    #[test]
    fn the_group_key_is_read_back_from_the_note() {
        let text = "alert X firing since T; runbook found by trigger (Alertmanager group {}/{alertname=\"X\"}:{ns=\"p (1)\"})";
        assert_eq!(
            group_of_note(text),
            Some("{}/{alertname=\"X\"}:{ns=\"p (1)\"}")
        );
    }

    #[test]
    fn a_payload_of_another_version_or_without_a_group_is_refused() {
        let ok = r#"{"version":"4","groupKey":"g","status":"firing","alerts":[]}"#;
        assert!(parse(ok.as_bytes()).is_ok());
        let v3 = ok.replace("\"4\"", "\"3\"");
        assert!(parse(v3.as_bytes()).unwrap_err().contains("expected \"4\""));
        let nogroup = ok.replace("\"g\"", "\"\"");
        assert!(parse(nogroup.as_bytes()).is_err());
        assert!(parse(b"{not json").unwrap_err().contains("line 1"));
    }
}
