//! The gate: the plan of an action shown, a decision asked for and journaled
//! (fsynced) before anything runs.

use super::EngineError;
use super::approve::{GateAnswer, GateRequest};
use super::ctx::Ctx;
use super::events::Notice;
use super::ops::Prepared;
use super::run::sha256_hex;
use futures::StreamExt;

use crate::journal::event::{ApprovalSource, Decision, Event, Impact, PlannedOp};
use crate::journal::state::StepState;
use crate::providers::{ExecCtx, OpError, RunClock};
use crate::runbook::model::{Gate, Step};

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

    /// Show the plan and get a decision, journaled before anything runs.
    pub(super) async fn gate(
        &mut self,
        step: &Step,
        rung: Option<&str>,
        title: &str,
        prepared: &mut [Prepared],
        gate: Gate,
        prior: Option<&StepState>,
    ) -> Result<Pass, EngineError> {
        if !self.assess(prepared).await {
            return Ok(Pass::Abort("aborted by operator".into()));
        }
        let ops: Vec<PlannedOp> = prepared.iter().map(|p| p.planned.clone()).collect();
        // A kube plan is a plan for one cluster: its digest covers the target, so an
        // approval given for one cluster never approves the same plan on another. A
        // plan without kube operations keeps the digest of its operations alone.
        let target = self
            .opts
            .target
            .as_ref()
            .filter(|_| ops.iter().any(|o| o.provider == "kube"));
        let digest = match target {
            Some(t) => sha256_hex(
                &serde_json::to_vec(&serde_json::json!({"ops": &ops, "target": t.describe()}))
                    .unwrap_or_default(),
            ),
            None => sha256_hex(&serde_json::to_vec(&ops).unwrap_or_default()),
        };
        let req = GateRequest {
            target: target.map(|t| t.describe()),
            step: step.id.value.clone(),
            rung: rung.map(str::to_string),
            title: title.to_string(),
            ops,
            digest: digest.clone(),
            explicit: gate == Gate::Explicit,
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
