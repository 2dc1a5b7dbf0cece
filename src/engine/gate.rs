//! The gate: the plan of an action shown, a decision asked for and journaled
//! (fsynced) before anything runs.

use super::EngineError;
use super::approve::{GateAnswer, GateRequest};
use super::ctx::Ctx;
use super::events::Notice;
use super::ops::Prepared;
use futures::StreamExt;

use crate::journal::event::Scope;
use crate::journal::event::{ApprovalSource, Decision, Event, Impact, PlannedOp, Quorum, Record};
use crate::journal::state::{StepState, between_ms};
use crate::providers::{ExecCtx, OpError, RunClock};
use crate::runbook::model::{Gate, GateRule, OnTimeout, OverLimit, Preview, Step};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::time::Duration;

/// A gate's verdict.
pub(super) enum Pass {
    Go,
    Skip(String),
    Pause(String),
    Abort(String),
    /// The plan is over the step's `limit:`: refused before anyone was asked.
    Refuse(String),
}

/// Why the plan `ops` of `step` (or of its `rung`) is over the step's `limit:`, if
/// it is: more objects than `max_targets`, or a fan-out operation acting on more
/// than `max_fraction` of what its selector matches.
fn over_limit(step: &Step, rung: Option<&str>, ops: &[PlannedOp]) -> Option<String> {
    let limit = step.limit.as_deref()?;
    let id = rung.unwrap_or(&step.id.value);
    if let Some(max_targets) = limit.max_targets {
        let targets: usize = ops
            .iter()
            .map(|o| o.impact.as_ref().map_or(1, |i| i.objects.len()))
            .sum();
        if targets > max_targets as usize {
            let what = ops
                .iter()
                .find_map(|o| o.impact.as_ref().map(|i| i.summary.clone()))
                .unwrap_or_else(|| format!("{} operation(s)", ops.len()));
            return Some(format!(
                "the plan of `{id}` would act on {targets} objects ({what}); the limit is {max_targets} (`limit: {{ max_targets: {max_targets} }}`)"
            ));
        }
    }
    if let Some(max) = limit.max_fraction {
        for i in ops.iter().filter_map(|o| o.impact.as_ref()) {
            let Some(of) = i.matched else { continue };
            let acted = i.objects.len();
            if max.exceeded(acted, of) {
                return Some(format!(
                    "the plan of `{id}` would act on {acted} of the {of} objects its selector matches ({}%; {}); the limit is {max} (`limit: {{ max_fraction: {max} }}`)",
                    acted * 100 / of.max(1),
                    i.summary
                ));
            }
        }
    }
    None
}

/// How many impact lists run at once for a `for_each` of fan-out operations.
const ASSESS_CONCURRENCY: usize = 8;

impl Ctx<'_> {
    /// Find what each fan-out operation would touch (a delete by selector lists what
    /// matches, read-only) and put it in its plan, so the approver sees it, the digest
    /// covers it and execution acts on nothing else. A list that fails is shown as
    /// such and approves no object. False when the run was aborted meanwhile.
    async fn assess(&self, prepared: &mut [Prepared]) -> bool {
        let assessed = |p: &Prepared| {
            p.resolved.mutating
                && self
                    .providers
                    .get(&p.resolved.provider)
                    .is_some_and(|provider| provider.may_have_impact(&p.resolved))
        };
        // Most plans name what they touch: nothing to ask, no list to wait for.
        if !prepared.iter().any(assessed) {
            return !self.cancel.is_cancelled();
        }
        // A step's held start is written before the cluster is asked; an error here
        // is the next emit's to report.
        let _ = self.events.flush();
        let found: Vec<_> = futures::stream::iter(prepared.iter().map(|p| async move {
            let provider = self.providers.get(&p.resolved.provider)?;
            if !assessed(p) {
                return None;
            }
            let cx = ExecCtx {
                cancel: self.cancel.child_token(),
                timeout: None,
                dry_run: false,
                vars: std::sync::Arc::clone(&p.vars),
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
                    matched: None,
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
        let prepared = match self.prepare(base, op, None, true, "") {
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
            vars: std::sync::Arc::clone(&prepared.vars),
            calls: Default::default(),
            clock: RunClock(std::sync::Arc::clone(&self.clock)),
            approved: None,
            spill: None,
            spawned: None,
        };
        // A step's held start is written before the preview runs (it may take a
        // while); an error here is the next emit's to report.
        let _ = self.events.flush();
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
        policy: GatePolicy,
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
        let mut policy = policy;
        if let Some(told) = over_limit(step, rung, &ops) {
            let id = rung.unwrap_or(&step.id.value);
            if step.over_limit.as_deref() == Some(&OverLimit::Explicit) {
                self.events.notice(Notice::OverLimit {
                    message: format!("{told}: only an approval naming `{id}` opens it"),
                });
                policy.mode = Gate::Explicit;
            } else {
                return Ok(Pass::Refuse(format!(
                    "{told}; nothing was asked or done (`over_limit: explicit` lets an explicit approval open it)"
                )));
            }
        }
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
        let described = target.map(|t| t.describe());
        let digest =
            crate::journal::digest::plan_digest(&ops, described.as_deref(), preview.as_deref());
        let req = GateRequest {
            target: described,
            step: step.id.value.clone(),
            rung: rung.map(str::to_string),
            title: title.to_string(),
            ops,
            digest: digest.clone(),
            explicit: policy.mode == Gate::Explicit,
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
        let needed = policy.rule.approvals.max(1) as usize;
        let expires_ms = policy
            .rule
            .expires
            .map(|d| u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX));
        // Approvals that count: (person, when), from before this process asked (a
        // resume) and from while it waits. One per person; an expired one drops out.
        let mut have: Vec<(String, DateTime<Utc>)> = Vec::new();
        if let Some(p) = prior {
            // Declined (or skipped) from another terminal while the run was paused:
            // the run does what its own gate would have done with that answer.
            if let Some(g) = p.gates.iter().rev().find(|g| g.rung.as_deref() == rung)
                && g.source == ApprovalSource::Remote
                && g.digest == digest
                && g.decision != Decision::Approved
            {
                return Ok(match g.decision {
                    Decision::Skipped => {
                        Pass::Skip(format!("skipped at the gate by {} (runbook approve)", g.by))
                    }
                    _ => Pass::Abort(format!("gate declined by {} (runbook approve)", g.by)),
                });
            }
            let now = self.clock.now();
            if let Some(ms) = expires_ms {
                for g in p.expired_approvals(rung, &digest, ms, now) {
                    self.events.notice(Notice::ExpiredApproval {
                        by: g.by.clone(),
                        at: g.decided,
                    });
                }
            }
            have = p
                .approvers(rung, &digest, expires_ms, now)
                .into_iter()
                .map(|g| (g.by.clone(), g.decided))
                .collect();
            if have.len() >= needed {
                self.events
                    .notice(Notice::ApprovedEarlier { by: names(&have) });
                return Ok(Pass::Go);
            }
            if have.is_empty()
                && let Some(g) = p.stale_approval(rung, &digest)
            {
                // An approval is of a plan, not of a step: the operations resolve
                // differently now (other flags, other defaults), so it is asked again.
                self.events.notice(Notice::StaleApproval {
                    by: g.by.clone(),
                    then: g.digest.clone(),
                    now: digest.clone(),
                });
            }
        }
        if policy.mode == Gate::Auto {
            // The plan is journaled as it is, moved rather than copied again (a
            // 1 000-item `for_each` plan is 1 000 operations).
            let approved = Event::GateDecided {
                step: req.step.clone(),
                rung: req.rung.clone(),
                decision: Decision::Approved,
                by: self.opts.operator.clone(),
                source: ApprovalSource::Unattended,
                digest: digest.clone(),
            };
            let requested = Event::GateRequested {
                step: req.step,
                rung: req.rung,
                ops: req.ops,
                digest,
                preview: req.preview,
                quorum: Quorum {
                    approvals: needed as u32,
                    expires_ms,
                },
            };
            // Held: nobody waits on an unattended gate, and the operations' starts
            // (fsynced before they run) come next and carry it to the journal.
            self.events.defer(requested);
            self.events.defer(approved);
            return Ok(Pass::Go);
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
            quorum: Quorum {
                approvals: needed as u32,
                expires_ms,
            },
        };
        self.events.emit(requested, true)?;
        self.events.notice(Notice::Plan {
            request: req.clone(),
            header: "plan of",
        });
        // From here, decisions may also come from other processes (`runbook approve`,
        // a web page): appended to the journal after this point, read back every
        // POLL while the gate waits (and only then).
        let (journal, mut offset) = self.events.journal_end();
        let approver = std::sync::Arc::clone(&self.approver);
        let mut local = Some(approver.gate(&req));
        let wait = approver.wait_limit();
        let present = approver.present();
        // `--wait-for-approval=D` counts on the run's clock, like `timeout:` (virtual
        // in `runbook test`); waiting "forever" has no deadline.
        let deadline = wait
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .and_then(|d| self.clock.now().checked_add_signed(d));
        let id = req.rung.clone().unwrap_or_else(|| req.step.clone());
        // `timeout:` counts from when the gate was first asked (kept across a
        // resume), on the run's clock.
        let expires_at = policy.rule.timeout.map(|t| {
            let asked = self
                .events
                .state()
                .step(&req.step)
                .and_then(|s| s.pending_gate(rung).map(|g| g.asked))
                .unwrap_or_else(|| self.clock.now());
            asked + chrono::Duration::from_std(t.0).unwrap_or(chrono::Duration::MAX)
        });
        let mut told = 0usize;
        loop {
            let now = self.clock.now();
            if let Some(at) = expires_at
                && now >= at
            {
                return self.expire(&req, &digest, policy);
            }
            if let Some(ms) = expires_ms {
                for (by, at) in have.iter().filter(|(_, at)| between_ms(*at, now) > ms) {
                    self.events.notice(Notice::ExpiredApproval {
                        by: by.clone(),
                        at: *at,
                    });
                }
                have.retain(|(_, at)| between_ms(*at, now) <= ms);
            }
            if have.len() >= needed {
                return Ok(Pass::Go);
            }
            let can_wait = wait.is_some() || (present && local.is_none());
            if local.is_none() && !can_wait {
                return Ok(Pass::Pause(format!(
                    "waiting for {} more approval(s) of this plan (`approvals: {needed}`; approved by {}): another person runs `runbook approve {} {id}`",
                    needed - have.len(),
                    names(&have),
                    self.run_id
                )));
            }
            if local.is_none() && told != have.len() {
                told = have.len();
                self.events.notice(Notice::AwaitingApprovals {
                    have: have.iter().map(|(b, _)| b.clone()).collect(),
                    needed: needed as u32,
                    how: format!("`runbook approve {} {id}`", self.run_id),
                });
            }
            let idle_now = local.is_none();
            let asked = async {
                match local.as_mut() {
                    Some(f) => f.await,
                    None => std::future::pending().await,
                }
            };
            let foreign = async {
                if wait.is_none() && !present {
                    // Nobody waits in this process: the run pauses, and decisions
                    // from elsewhere are read when it resumes.
                    return std::future::pending().await;
                }
                foreign_decisions(&journal, &mut offset, &req.step, req.rung.as_deref()).await
            };
            let idle = idle_now;
            let wait_clock = std::sync::Arc::clone(&self.clock);
            let timeout = async move {
                match deadline {
                    Some(at) if idle || wait.is_some() => {
                        let left = (at - wait_clock.now()).to_std().unwrap_or_default();
                        wait_clock.sleep(left).await;
                    }
                    _ => std::future::pending().await,
                }
            };
            let clock = std::sync::Arc::clone(&self.clock);
            let expiry = async move {
                match expires_at {
                    Some(at) => {
                        let left = (at - clock.now()).to_std().unwrap_or_default();
                        clock.sleep(left).await;
                    }
                    None => std::future::pending().await,
                }
            };
            let step_answer = tokio::select! {
                a = asked => Answer::Local(a),
                recs = foreign => Answer::Foreign(recs),
                () = timeout => Answer::TimedOut,
                () = expiry => continue,
                () = self.cancel.cancelled() => return Ok(Pass::Abort("aborted by operator".into())),
            };
            match step_answer {
                Answer::Local(answer) => {
                    local = None;
                    let (decision, by, source) = match answer {
                        GateAnswer::Approve { by, source } => {
                            if have.iter().any(|(b, _)| *b == by) {
                                self.events.notice(Notice::SamePerson { by });
                                continue;
                            }
                            (Decision::Approved, by, source)
                        }
                        GateAnswer::Skip { by, source } => (Decision::Skipped, by, source),
                        GateAnswer::Decline { by } => {
                            (Decision::Declined, by, ApprovalSource::Prompt)
                        }
                        GateAnswer::Abort { by } => (Decision::Aborted, by, ApprovalSource::Prompt),
                        GateAnswer::Pause { reason } => {
                            if wait.is_none() {
                                return Ok(Pass::Pause(reason));
                            }
                            self.events.notice(Notice::AwaitingApprovals {
                                have: have.iter().map(|(b, _)| b.clone()).collect(),
                                needed: needed as u32,
                                how: format!("`runbook approve {} {id}`", self.run_id),
                            });
                            told = have.len();
                            continue;
                        }
                    };
                    // Lock and re-check: a decision another process (`runbook
                    // approve`, `runbook serve`) appended since this gate last looked
                    // wins over this answer, which is then not journaled; exactly one
                    // decision settles the gate.
                    let rung = req.rung.as_deref();
                    let (written, tail, next) = self.events.emit_checked(
                        decided(decision, by.clone(), source),
                        true,
                        offset,
                        |tail| {
                            let mut approvers: Vec<&str> =
                                have.iter().map(|(b, _)| b.as_str()).collect();
                            for r in tail {
                                let Some((d, b)) = remote_decision(r, &req.step, rung, &digest)
                                else {
                                    continue;
                                };
                                if d != Decision::Approved {
                                    return false;
                                }
                                if !approvers.contains(&b) {
                                    approvers.push(b);
                                }
                            }
                            let same =
                                decision == Decision::Approved && approvers.contains(&by.as_str());
                            approvers.len() < needed && !same
                        },
                    )?;
                    offset = next;
                    let theirs: Vec<Record> = tail
                        .into_iter()
                        .filter(|r| remote_decision(r, &req.step, rung, &digest).is_some())
                        .collect();
                    if !written {
                        self.events.notice(Notice::DecidedElsewhere {
                            by: theirs
                                .iter()
                                .filter_map(|r| remote_decision(r, &req.step, rung, &digest))
                                .map(|(d, b)| format!("{b} ({})", decision_word(d)))
                                .collect::<Vec<_>>()
                                .join(", "),
                            yours: by.clone(),
                        });
                    }
                    if let Some(pass) = self.take_foreign(theirs, &digest, &mut have) {
                        return Ok(pass);
                    }
                    if written {
                        match decision {
                            Decision::Approved => have.push((by, self.clock.now())),
                            Decision::Skipped => {
                                return Ok(Pass::Skip(format!("skipped at the gate by {by}")));
                            }
                            Decision::Declined => {
                                return Ok(Pass::Abort(format!("gate declined by {by}")));
                            }
                            Decision::Aborted | Decision::Expired => {
                                return Ok(Pass::Abort(format!("aborted at the gate by {by}")));
                            }
                        }
                    }
                }
                Answer::Foreign(records) => {
                    let asking = local.is_some();
                    let who = records
                        .iter()
                        .filter_map(|r| remote_decision(r, &req.step, req.rung.as_deref(), &digest))
                        .map(|(d, b)| format!("{b} ({})", decision_word(d)))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let pass = self.take_foreign(records, &digest, &mut have);
                    if asking && (pass.is_some() || have.len() >= needed) {
                        // The question at the terminal is closed: what the operator
                        // types next answers the next question, not this one.
                        self.events.notice(Notice::PromptClosed { by: who });
                    }
                    if let Some(pass) = pass {
                        return Ok(pass);
                    }
                }
                Answer::TimedOut => {
                    return Ok(Pass::Pause(format!(
                        "no {} approval(s) within the wait (--wait-for-approval); approved by {}",
                        needed - have.len(),
                        names(&have)
                    )));
                }
            }
        }
    }
}

impl Ctx<'_> {
    /// Nobody answered within the gate's `timeout:`: journal it as expired (never as
    /// approved or declined) and do what `on_timeout` says.
    fn expire(
        &self,
        req: &GateRequest,
        digest: &str,
        policy: GatePolicy,
    ) -> Result<Pass, EngineError> {
        let after = policy
            .rule
            .timeout
            .map(|t| super::console::human(t.0))
            .unwrap_or_default();
        self.events.emit(
            Event::GateDecided {
                step: req.step.clone(),
                rung: req.rung.clone(),
                decision: Decision::Expired,
                by: "runbook".into(),
                source: ApprovalSource::Unattended,
                digest: digest.into(),
            },
            true,
        )?;
        let id = req.rung.as_deref().unwrap_or(&req.step);
        Ok(match policy.rule.on_timeout.unwrap_or(OnTimeout::Abort) {
            OnTimeout::Abort => Pass::Abort(format!(
                "the gate of `{id}` expired: nobody answered within {after} (on_timeout: abort)"
            )),
            OnTimeout::Skip => Pass::Skip(format!(
                "the gate expired: nobody answered within {after} (on_timeout: skip)"
            )),
            OnTimeout::Escalate if req.rung.is_some() => Pass::Skip(format!(
                "the gate expired: nobody answered within {after}; escalating to the next rung"
            )),
            OnTimeout::Escalate => Pass::Pause(format!(
                "the gate of `{id}` expired: nobody answered within {after}; escalated: someone else continues it with `runbook resume`"
            )),
        })
    }
}

/// What ended one turn of a gate's wait.
enum Answer {
    Local(GateAnswer),
    Foreign(Vec<Record>),
    TimedOut,
}

impl Ctx<'_> {
    /// Apply decisions other processes appended for this gate (already filtered to
    /// it): approvals of this plan join `have` (one per person); a skip, decline or
    /// abort ends the gate.
    fn take_foreign(
        &self,
        records: Vec<Record>,
        digest: &str,
        have: &mut Vec<(String, DateTime<Utc>)>,
    ) -> Option<Pass> {
        for rec in records {
            self.events.observe(&rec);
            let Event::GateDecided {
                decision,
                by,
                digest: theirs,
                ..
            } = &rec.event
            else {
                continue;
            };
            if theirs != digest {
                continue;
            }
            match decision {
                Decision::Approved => {
                    if !have.iter().any(|(b, _)| b == by) {
                        have.push((by.clone(), rec.ts));
                    }
                }
                Decision::Skipped => {
                    return Some(Pass::Skip(format!(
                        "skipped at the gate by {by} (runbook approve)"
                    )));
                }
                Decision::Declined => {
                    return Some(Pass::Abort(format!(
                        "gate declined by {by} (runbook approve)"
                    )));
                }
                Decision::Aborted | Decision::Expired => {
                    return Some(Pass::Abort(format!(
                        "aborted at the gate by {by} (runbook approve)"
                    )));
                }
            }
        }
        None
    }
}

/// A decision another process journaled for this gate and plan: (decision, by).
fn remote_decision<'r>(
    r: &'r Record,
    step: &str,
    rung: Option<&str>,
    digest: &str,
) -> Option<(Decision, &'r str)> {
    match &r.event {
        Event::GateDecided {
            step: s,
            rung: g,
            decision,
            by,
            source: ApprovalSource::Remote,
            digest: d,
        } if s == step && g.as_deref() == rung && d == digest => Some((*decision, by.as_str())),
        _ => None,
    }
}

fn decision_word(d: Decision) -> &'static str {
    match d {
        Decision::Approved => "approved",
        Decision::Declined => "declined",
        Decision::Skipped => "skipped",
        Decision::Aborted => "aborted",
        Decision::Expired => "expired",
    }
}

/// How often a waiting gate looks for decisions other processes appended.
const POLL: Duration = Duration::from_millis(200);

/// Wait until another process appends a decision for this gate (`runbook approve`,
/// a web page): read only the journal's new tail every [`POLL`], from `offset` on.
async fn foreign_decisions(
    journal: &std::path::Path,
    offset: &mut u64,
    step: &str,
    rung: Option<&str>,
) -> Vec<Record> {
    foreign_records(journal, offset, |e| {
        matches!(e, Event::GateDecided { step: s, rung: g, source: ApprovalSource::Remote, .. }
            if s == step && g.as_deref() == rung)
    })
    .await
}

/// Wait until another process appends records `wanted` picks: the journal's new
/// tail from `offset` on, read every [`POLL`]. Only while something waits for a
/// person; never on a step's path.
pub(super) async fn foreign_records(
    journal: &std::path::Path,
    offset: &mut u64,
    wanted: impl Fn(&Event) -> bool,
) -> Vec<Record> {
    loop {
        if let Ok((records, next)) = crate::journal::reader::read_tail(journal, *offset) {
            *offset = next;
            let ours: Vec<Record> = records.into_iter().filter(|r| wanted(&r.event)).collect();
            if !ours.is_empty() {
                return ours;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `ana, lee` (or `nobody yet`).
fn names(have: &[(String, DateTime<Utc>)]) -> String {
    if have.is_empty() {
        "nobody yet".into()
    } else {
        have.iter()
            .map(|(b, _)| b.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How a step's (or rung's) gate is to be passed: its mode (`approve`, `auto`,
/// `explicit`) and, from the mapping form, its quorum and expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct GatePolicy {
    pub mode: Gate,
    pub rule: GateRule,
}

impl From<Gate> for GatePolicy {
    fn from(mode: Gate) -> GatePolicy {
        GatePolicy {
            mode,
            rule: GateRule::default(),
        }
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
