//! The gate: the plan of an action shown, a decision asked for and journaled
//! (fsynced) before anything runs.

use super::EngineError;
use super::approve::{GateAnswer, GateRequest};
use super::ctx::Ctx;
use super::events::Notice;
use super::ops::Prepared;
use super::run::sha256_hex;
use crate::journal::event::{ApprovalSource, Decision, Event, PlannedOp};
use crate::journal::state::StepState;
use crate::runbook::model::{Gate, Step};

/// A gate's verdict.
pub(super) enum Pass {
    Go,
    Skip(String),
    Pause(String),
    Abort(String),
}

impl Ctx<'_> {
    /// Show the plan and get a decision, journaled before anything runs.
    pub(super) async fn gate(
        &mut self,
        step: &Step,
        rung: Option<&str>,
        title: &str,
        prepared: &[Prepared],
        gate: Gate,
        prior: Option<&StepState>,
    ) -> Result<Pass, EngineError> {
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
