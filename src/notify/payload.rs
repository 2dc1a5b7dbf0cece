//! What a notification says: one [`Message`] built from a journaled record and the
//! run state, and its two shapes on the wire (a generic JSON document, and a
//! Slack-compatible incoming-webhook message).
//!
//! Everything here comes from the record as the journal has it and from the run state
//! that applied it: both are already redacted (the journal's `Recorder` masks secrets
//! before anyone hears of an event), so a payload can only repeat what the journal
//! says, and never a secret.

use serde_json::{Value, json};

use crate::journal::event::{Event, PlannedOp, Record, RunStatus};
use crate::journal::state::RunState;
use crate::runbook::model::NotifyOn;

/// Operations listed in a payload's plan; the rest are counted.
const MAX_OPS: usize = 50;
/// Objects listed in a payload's blast radius; the rest are counted.
const MAX_OBJECTS: usize = 100;
/// Slack's limit on a section's text is 3 000 characters.
const SLACK_SECTION: usize = 2_900;

/// A notification, before it has a shape.
#[derive(Debug, Clone)]
pub struct Message {
    pub on: NotifyOn,
    pub run_id: String,
    pub runbook: String,
    pub title: String,
    pub operator: String,
    /// `running`, `waiting`, or how the run ended (`succeeded`, `failed`, …).
    pub status: String,
    /// The journal line it is about: its `seq`, time and event name.
    pub seq: u64,
    pub ts: String,
    pub event: String,
    /// The step it is about (a gate's or a manual step's), with its title.
    pub step: Option<(String, String)>,
    pub gate: Option<Gate>,
    /// A manual step's instruction.
    pub manual: Option<String>,
    /// How long the run took and why it ended, when it ended.
    pub duration_ms: Option<u64>,
    pub reason: Option<String>,
    /// `runbook serve`'s page of the run and of its postmortem, when its address is
    /// known.
    pub run_url: Option<String>,
    pub postmortem_url: Option<String>,
    /// One line a person reads first.
    pub text: String,
}

/// The plan at a gate.
#[derive(Debug, Clone)]
pub struct Gate {
    pub digest: String,
    pub rung: Option<String>,
    pub preview: Option<String>,
    /// The first [`MAX_OPS`] operations.
    pub ops: Vec<PlannedOp>,
    pub total_ops: usize,
    pub mutating: usize,
    /// What the operations would touch: every impact's objects and the named object
    /// of each operation without one (its display line), the first [`MAX_OBJECTS`].
    pub objects: Vec<String>,
    pub total_objects: usize,
}

impl Message {
    /// The notification an event calls for, if any: `run_started`/`run_resumed`
    /// (started), `gate_requested`/`manual_requested` (waiting), `run_finished`
    /// (failed, or finished; a pause is not an end: its gate already said "waiting").
    pub fn of(record: &Record, state: &RunState, base_url: Option<&str>) -> Option<Message> {
        let mut step = None;
        let mut gate = None;
        let mut manual = None;
        let mut duration_ms = None;
        let mut reason = None;
        let title_of = |id: &str| {
            state
                .steps
                .get(id)
                .map(|s| s.title.clone())
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| id.to_owned())
        };
        let (on, status) = match &record.event {
            Event::RunStarted { .. } | Event::RunResumed { .. } => {
                (NotifyOn::Started, "running".to_owned())
            }
            Event::GateRequested {
                step: s,
                rung,
                ops,
                digest,
                preview,
                ..
            } => {
                step = Some((s.clone(), title_of(s)));
                gate = Some(Gate::of(ops, digest, rung.clone(), preview.clone()));
                (NotifyOn::Waiting, "waiting".to_owned())
            }
            Event::ManualRequested { scope, instruction } => {
                step = Some((scope.step.clone(), title_of(&scope.step)));
                manual = Some(instruction.clone());
                (NotifyOn::Waiting, "waiting".to_owned())
            }
            Event::RunFinished {
                status,
                duration_ms: d,
                reason: r,
            } => {
                duration_ms = Some(*d);
                reason = r.clone();
                let name = status_name(*status);
                match status {
                    RunStatus::Paused => return None,
                    RunStatus::Failed => (NotifyOn::Failed, name),
                    _ => (NotifyOn::Finished, name),
                }
            }
            _ => return None,
        };
        let event = serde_json::to_value(&record.event)
            .ok()
            .and_then(|v| v["event"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let run_url = base_url.map(|b| format!("{b}/runs/{}", state.run_id));
        let postmortem_url = match on {
            NotifyOn::Failed | NotifyOn::Finished => {
                base_url.map(|b| format!("{b}/runs/{}/postmortem", state.run_id))
            }
            _ => None,
        };
        let title = state.runbook.title.clone();
        let text = match (on, &step) {
            (NotifyOn::Started, _) => {
                format!("{}: run {} started", state.runbook.name, state.run_id)
            }
            (NotifyOn::Waiting, Some((id, t))) if gate.is_some() => format!(
                "{}: run {} waits for approval of `{id}` ({t})",
                state.runbook.name, state.run_id
            ),
            (NotifyOn::Waiting, Some((id, t))) => format!(
                "{}: run {} waits for a person at `{id}` ({t})",
                state.runbook.name, state.run_id
            ),
            _ => format!(
                "{}: run {} {status}{}",
                state.runbook.name,
                state.run_id,
                reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
        };
        Some(Message {
            on,
            run_id: state.run_id.clone(),
            runbook: state.runbook.name.clone(),
            title,
            operator: state.operator.clone(),
            status,
            seq: record.seq,
            ts: record
                .ts
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            event,
            step,
            gate,
            manual,
            duration_ms,
            reason,
            run_url,
            postmortem_url,
            text,
        })
    }
}

fn status_name(s: RunStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl Gate {
    fn of(ops: &[PlannedOp], digest: &str, rung: Option<String>, preview: Option<String>) -> Gate {
        let mut objects = Vec::new();
        for op in ops.iter().filter(|o| o.mutating) {
            match &op.impact {
                Some(i) => objects.extend(i.objects.iter().cloned()),
                None => objects.push(op.display.clone()),
            }
        }
        let total_objects = objects.len();
        objects.truncate(MAX_OBJECTS);
        Gate {
            digest: digest.to_owned(),
            rung,
            preview,
            ops: ops.iter().take(MAX_OPS).cloned().collect(),
            total_ops: ops.len(),
            mutating: ops.iter().filter(|o| o.mutating).count(),
            objects,
            total_objects,
        }
    }
}

/// The generic JSON webhook's body (`version: 1`).
pub fn webhook_payload(m: &Message) -> Value {
    let mut v = json!({
        "version": 1,
        "on": m.on.as_str(),
        "text": m.text,
        "run_id": m.run_id,
        "runbook": { "name": m.runbook, "title": m.title },
        "status": m.status,
        "operator": m.operator,
        "journal": { "seq": m.seq, "ts": m.ts, "event": m.event },
        "links": {},
    });
    if let Some((id, title)) = &m.step {
        v["step"] = json!({ "id": id, "title": title });
    }
    if let Some(g) = &m.gate {
        v["gate"] = json!({
            "digest": g.digest,
            "rung": g.rung,
            "preview": g.preview,
            "plan": g.ops.iter().map(|o| json!({
                "provider": o.provider,
                "display": o.display,
                "mutating": o.mutating,
                "impact": o.impact.as_ref().map(|i| i.summary.clone()),
            })).collect::<Vec<_>>(),
            "plan_truncated": g.total_ops > g.ops.len(),
            "blast_radius": {
                "operations": g.total_ops,
                "mutating": g.mutating,
                "objects": g.objects,
                "objects_total": g.total_objects,
            },
        });
        if let Some((id, _)) = &m.step {
            v["approve_command"] = json!(format!("runbook resume {} --approve {id}", m.run_id));
        }
    }
    if let Some(i) = &m.manual {
        v["manual"] = json!({ "instruction": i });
    }
    if let Some(d) = m.duration_ms {
        v["duration_ms"] = json!(d);
    }
    if let Some(r) = &m.reason {
        v["reason"] = json!(r);
    }
    if let Some(u) = &m.run_url {
        v["links"]["run"] = json!(u);
        if m.gate.is_some() || m.manual.is_some() {
            v["links"]["approve"] = json!(u);
        }
    }
    if let Some(u) = &m.postmortem_url {
        v["links"]["postmortem"] = json!(u);
    }
    v
}

/// A Slack-compatible incoming-webhook message: `text` (the notification's one line,
/// also what a client without blocks shows) and `blocks`.
pub fn slack_payload(m: &Message) -> Value {
    let mut blocks = vec![json!({
        "type": "section",
        "text": { "type": "mrkdwn", "text": cut(&format!(
            "*{}* ({})\n{}",
            escape(&m.title),
            escape(&m.runbook),
            escape(&m.text)
        ), SLACK_SECTION) }
    })];
    if let Some(g) = &m.gate {
        let mut plan = String::new();
        for o in &g.ops {
            plan.push_str(if o.mutating { "! " } else { "  " });
            plan.push_str(&o.display);
            if let Some(i) = &o.impact {
                plan.push_str("\n    ");
                plan.push_str(&i.summary);
            }
            plan.push('\n');
        }
        if g.total_ops > g.ops.len() {
            plan.push_str(&format!("… and {} more\n", g.total_ops - g.ops.len()));
        }
        let head = format!(
            "*Plan* ({} operation(s), {} mutating, {} object(s) touched)\n",
            g.total_ops, g.mutating, g.total_objects
        );
        // Leave room for the fences and the heading.
        let body = cut(&escape(&plan), SLACK_SECTION - head.len() - 8);
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": format!("{head}```{body}```") }
        }));
    }
    if let Some(i) = &m.manual {
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": cut(&format!("*Instruction*\n{}", escape(i)), SLACK_SECTION) }
        }));
    }
    let mut context = vec![format!("run `{}`", escape(&m.run_id))];
    if let Some(u) = &m.run_url {
        let label = if m.gate.is_some() || m.manual.is_some() {
            "Approve on the run's page"
        } else {
            "The run's page"
        };
        context.push(format!("<{u}|{label}>"));
    } else if let (Some(_), Some((id, _))) = (&m.gate, &m.step) {
        context.push(format!(
            "`runbook resume {} --approve {}`",
            escape(&m.run_id),
            escape(id)
        ));
    }
    if let Some(u) = &m.postmortem_url {
        context.push(format!("<{u}|Postmortem>"));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{ "type": "mrkdwn", "text": cut(&context.join(" · "), SLACK_SECTION) }]
    }));
    json!({ "text": cut(&m.text, SLACK_SECTION), "blocks": blocks })
}

/// Slack's mrkdwn escapes: `&`, `<` and `>` (its documentation, "Escaping text").
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// At most `max` characters, cut on a character boundary with an ellipsis.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// HMAC-SHA256 (RFC 2104) of `body` under `key`: the `X-Runbook-Signature` a
/// receiver checks with the shared secret.
pub(crate) fn hmac_sha256(key: &[u8], body: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        let d = Sha256::digest(key);
        k[..d.len()].copy_from_slice(&d);
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(body);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().to_vec()
}
