//! The gate: the plan of an action shown, a decision asked for and journaled
//! (fsynced) before anything runs.

use super::EngineError;
use super::approve::{GateAnswer, GateRequest};
use super::ctx::Ctx;
use super::events::Notice;
use super::ops::Prepared;
use super::run::sha256_hex;
use futures::StreamExt;

use crate::journal::event::Scope;
use crate::journal::event::{ApprovalSource, Decision, Event, Impact, PlannedOp};
use crate::journal::state::StepState;
use crate::providers::{ExecCtx, OpError, RunClock};
use crate::runbook::model::{Gate, Preview, Step};
use serde_json::Value;
use std::time::Duration;

/// A gate's verdict.
pub(super) enum Pass {
    Go,
    Skip(String),
    Pause(String),
    Abort(String),
}

/// How many impact lists run at once for a `for_each` of fan-out operations.
const ASSESS_CONCURRENCY: usize = 8;

impl Ctx<'_> {
    /// Find what each fan-out operation would touch (a delete by selector lists what
    /// matches, read-only) and put it in its plan, so the approver sees it, the digest
    /// covers it and execution acts on nothing else. A list that fails is shown as
    /// such and approves no object. False when the run was aborted meanwhile.
    async fn assess(&self, prepared: &mut [Prepared]) -> bool {
        let found: Vec<_> = futures::stream::iter(prepared.iter().map(|p| async move {
            let provider = self.providers.get(&p.resolved.provider)?;
            if !p.resolved.mutating {
                return None;
            }
            let cx = ExecCtx {
                cancel: self.cancel.child_token(),
                timeout: None,
                dry_run: false,
                vars: p.vars.clone(),
                calls: Default::default(),
                clock: RunClock(std::sync::Arc::clone(&self.clock)),
                approved: None,
                spill: None,
                spawned: None,
            };
            match provider.impact(&p.resolved, &cx).await {
                Ok(i) => i.map(Ok),
                Err(OpError::Cancelled) => Some(Err(())),
                Err(e) => Some(Ok(Impact {
                    summary: format!(
                        "cannot list what it would touch ({e}); it will act on nothing that matches"
                    ),
                    objects: Vec::new(),
                })),
            }
        }))
        .buffered(ASSESS_CONCURRENCY)
        .collect()
        .await;
        for (p, i) in prepared.iter_mut().zip(found) {
            match i {
                Some(Ok(mut i)) => {
                    i.summary = self.events.redact(&i.summary);
                    p.planned.impact = Some(i);
                }
                Some(Err(())) => return false,
                None => {}
            }
        }
        !self.cancel.is_cancelled()
    }

    /// Run a step's (or rung's) read-only `preview:` and describe its result for the
    /// gate: the `summary` template, or the first lines of its output. A preview that
    /// fails is shown as such; it never stops the gate. None when aborted meanwhile.
    async fn preview(&mut self, base: &Scope, p: &Preview) -> Option<String> {
        let op = p.op()?;
        let prepared = match self.prepare(base, op, None, true) {
            Ok(mut v) if !v.is_empty() => v.remove(0),
            Ok(_) => return Some("preview: nothing to run".into()),
            Err(e) => {
                return Some(
                    self.events
                        .redact(&format!("preview could not be planned: {e}")),
                );
            }
        };
        let provider = self.providers.get(&prepared.resolved.provider)?;
        let cx = ExecCtx {
            cancel: self.cancel.child_token(),
            timeout: Some(PREVIEW_TIMEOUT),
            dry_run: false,
            vars: prepared.vars.clone(),
            calls: Default::default(),
            clock: RunClock(std::sync::Arc::clone(&self.clock)),
            approved: None,
            spill: None,
            spawned: None,
        };
        let result = match provider.execute(&prepared.resolved, &cx).await {
            Ok(r) => r,
            Err(OpError::Cancelled) => return None,
            Err(e) => return Some(self.events.redact(&format!("preview failed: {e}"))),
        };
        let text = match &p.summary {
            Some(t) => self
                .with_vars(Some(result.clone()), |vars| crate::expr::render(t, vars))
                .unwrap_or_else(|e| format!("{} (summary: {e})", first_lines(&result))),
            None => first_lines(&result),
        };
        Some(self.events.redact(&text))
    }

    /// Show the plan and get a decision, journaled before anything runs.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn gate(
        &mut self,
        step: &Step,
        rung: Option<&str>,
        title: &str,
        prepared: &mut [Prepared],
        gate: Gate,
        prior: Option<&StepState>,
        preview: Option<&Preview>,
    ) -> Result<Pass, EngineError> {
        if !self.assess(prepared).await {
            return Ok(Pass::Abort("aborted by operator".into()));
        }
        let preview = match preview {
            Some(p) => {
                let base = Scope {
                    step: step.id.value.clone(),
                    rung: rung.map(str::to_string),
                    ..Scope::default()
                };
                match self.preview(&base, p).await {
                    Some(text) => Some(text),
                    None => return Ok(Pass::Abort("aborted by operator".into())),
                }
            }
            None => None,
        };
        let ops: Vec<PlannedOp> = prepared.iter().map(|p| p.planned.clone()).collect();
        // A kube plan is a plan for one cluster: its digest covers the target, so an
        // approval given for one cluster never approves the same plan on another. A
        // plan without kube operations keeps the digest of its operations alone.
        let target = self
            .opts
            .target
            .as_ref()
            .filter(|_| ops.iter().any(|o| o.provider == "kube"));
        // A preview is part of what was approved: when its result differs at run
        // time (more to delete, less to free), the approval does not carry over.
        let digest = match (target, &preview) {
            (Some(t), None) => sha256_hex(
                &serde_json::to_vec(&serde_json::json!({"ops": &ops, "target": t.describe()}))
                    .unwrap_or_default(),
            ),
            (None, None) => sha256_hex(&serde_json::to_vec(&ops).unwrap_or_default()),
            (t, Some(p)) => sha256_hex(
                &serde_json::to_vec(&serde_json::json!({
                    "ops": &ops,
                    "target": t.map(|t| t.describe()),
                    "preview": p,
                }))
                .unwrap_or_default(),
            ),
        };
        let req = GateRequest {
            target: target.map(|t| t.describe()),
            step: step.id.value.clone(),
            rung: rung.map(str::to_string),
            title: title.to_string(),
            ops,
            digest: digest.clone(),
            explicit: gate == Gate::Explicit,
            preview: preview.clone(),
        };
        if self.opts.dry_run {
            self.events.notice(Notice::Plan {
                request: req,
                header: "would run",
            });
            return Ok(Pass::Skip(
                "dry run: plan printed, nothing performed".into(),
            ));
        }
        if let Some(g) = prior.and_then(|p| p.approval(rung, &digest)) {
            self.events
                .notice(Notice::ApprovedEarlier { by: g.by.clone() });
            return Ok(Pass::Go);
        }
        if let Some(g) = prior.and_then(|p| p.stale_approval(rung, &digest)) {
            // An approval is of a plan, not of a step: the operations resolve
            // differently now (other flags, other defaults), so it is asked again.
            self.events.notice(Notice::StaleApproval {
                by: g.by.clone(),
                then: g.digest.clone(),
                now: digest.clone(),
            });
        }
        let decided = |decision, by: String, source| Event::GateDecided {
            step: req.step.clone(),
            rung: req.rung.clone(),
            decision,
            by,
            source,
            digest: digest.clone(),
        };
        let requested = Event::GateRequested {
            step: req.step.clone(),
            rung: req.rung.clone(),
            ops: req.ops.clone(),
            digest: digest.clone(),
            preview: req.preview.clone(),
        };
        if gate == Gate::Auto {
            self.events.emit(requested, false)?;
            self.events.emit(
                decided(
                    Decision::Approved,
                    self.opts.operator.clone(),
                    ApprovalSource::Unattended,
                ),
                false,
            )?;
            return Ok(Pass::Go);
        }
        self.events.emit(requested, true)?;
        self.events.notice(Notice::Plan {
            request: req.clone(),
            header: "plan of",
        });
        let answer = tokio::select! {
            a = self.approver.gate(&req) => a,
            () = self.cancel.cancelled() => return Ok(Pass::Abort("aborted by operator".into())),
        };
        Ok(match answer {
            GateAnswer::Approve { by, source } => {
                self.events
                    .emit(decided(Decision::Approved, by, source), true)?;
                Pass::Go
            }
            GateAnswer::Skip { by, source } => {
                self.events
                    .emit(decided(Decision::Skipped, by.clone(), source), true)?;
                Pass::Skip(format!("skipped at the gate by {by}"))
            }
            GateAnswer::Decline { by } => {
                self.events.emit(
                    decided(Decision::Declined, by.clone(), ApprovalSource::Prompt),
                    true,
                )?;
                Pass::Abort(format!("gate declined by {by}"))
            }
            GateAnswer::Abort { by } => {
                self.events.emit(
                    decided(Decision::Aborted, by.clone(), ApprovalSource::Prompt),
                    true,
                )?;
                Pass::Abort(format!("aborted at the gate by {by}"))
            }
            GateAnswer::Pause { reason } => Pass::Pause(reason),
        })
    }
}

/// Bound on a preview: it runs before the question is asked.
const PREVIEW_TIMEOUT: Duration = Duration::from_secs(30);

/// A preview's output for the gate: a shell's first lines of stdout, else the
/// result's one-line summary.
fn first_lines(result: &Value) -> String {
    const LINES: usize = 5;
    match result.get("stdout").and_then(Value::as_str) {
        Some(out) if !out.trim().is_empty() => {
            let lines: Vec<&str> = out.trim_end().lines().collect();
            let mut text = lines
                .iter()
                .take(LINES)
                .map(|l| super::steps::clip(l, 160))
                .collect::<Vec<_>>()
                .join("\n");
            if lines.len() > LINES {
                text.push_str(&format!("\n… {} more lines", lines.len() - LINES));
            }
            text
        }
        _ => super::steps::summarize(result),
    }
}
