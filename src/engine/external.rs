//! Decisions from outside the run's process: `runbook approve RUN ID` from another
//! terminal, or a web page (`runbook serve`). Each is one line appended to the run's
//! journal under its lock, checked against the run's state as the journal tells it
//! at that moment, so that
//!
//! - a decision answers only a gate that is waiting, for the plan (digest) it was
//!   shown; a plan that changed is refused, never approved by accident;
//! - two people answering at once are serialized by the lock: with one approval
//!   needed, exactly one decision is journaled and the other is told the gate is no
//!   longer waiting; with a quorum, each distinct person counts once;
//! - the run's own process, waiting at the gate, reads the line within a poll
//!   (`gate.rs`, every 200 ms while a gate waits) and goes on, or `runbook resume`
//!   finds it in the journal when the run was paused.

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::journal::event::{ApprovalSource, Decision, Event, Outcome, RunStatus, Scope};
use crate::journal::state::RunState;
use crate::journal::writer::{WriteError, append_if};
use crate::store::{DirStore, RunStore, StoreError};

/// What the person decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Approve the gate's plan (one approval of a quorum), or confirm a manual step
    /// as done.
    Approve,
    /// Decline the plan (the run ends as aborted), or report a manual step failed.
    Decline,
    /// Skip the step at its gate without running its plan (the run goes on), as the
    /// terminal prompt's `skip` does; or skip a manual step.
    Skip,
}

/// One decision to submit.
#[derive(Debug, Clone)]
pub struct Submission<'a> {
    /// The run as a person typed it: an id, a unique prefix or suffix, or `last`.
    pub run: &'a str,
    /// The step (or escalation rung) whose gate or manual confirmation waits.
    pub id: &'a str,
    /// Who decides (journaled).
    pub by: &'a str,
    pub verdict: Verdict,
    /// The digest (or a prefix of it, at least 8 characters) of the plan the person
    /// was shown: refused when the gate now asks about another plan. `None`: the plan
    /// the gate asks about now (`runbook approve` prints it).
    pub digest: Option<&'a str>,
    /// Where it comes from (journaled): [`ApprovalSource::Remote`] for `runbook
    /// approve` and a web page.
    pub source: ApprovalSource,
}

/// A decision journaled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub run_id: String,
    /// The step and, for a ladder, the rung.
    pub step: String,
    pub rung: Option<String>,
    /// The journal line's `seq`.
    pub seq: u64,
    /// The digest of the plan decided (empty for a manual confirmation).
    pub digest: String,
    /// Distinct people whose approvals of this plan count now, this one included
    /// (empty for a decline or a manual confirmation).
    pub approvers: Vec<String>,
    /// How many the gate needs.
    pub needed: u32,
    /// True when a process is driving the run and will read the decision within a
    /// second; false when the run is paused (`runbook resume` continues it).
    pub live: bool,
}

/// Why a decision was refused (nothing was journaled).
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Journal(String),
    #[error("run {run_id} has already ended ({status}); there is nothing to approve")]
    Ended { run_id: String, status: String },
    #[error("{0}")]
    NotWaiting(String),
    #[error(
        "the plan of `{id}` changed: you were shown digest {given}, the gate now asks about {now}; look at the new plan (`runbook show {run_id}`) and approve that"
    )]
    DigestChanged {
        run_id: String,
        id: String,
        given: String,
        now: String,
    },
    #[error(
        "{by} has already approved the plan of `{id}`; the same person counts once: another person must approve (`approvals: {needed}`)"
    )]
    SamePerson { by: String, id: String, needed: u32 },
}

/// Append a digest-bound gate decision (or a manual confirmation) for `sub.id` of
/// run `sub.run`, under the journal's lock, after checking that it still waits.
pub fn submit_decision(
    state_dir: &Path,
    sub: &Submission<'_>,
    now: DateTime<Utc>,
) -> Result<Submitted, SubmitError> {
    let store = DirStore::new(state_dir);
    let run_id = store.resolve(sub.run)?;
    let live = store.is_held(&run_id);
    let path = store.journal_path(&run_id);
    let mut out = None;
    let appended: Result<u64, SubmitError> = append_if(&path, now, |journal| {
        let state = RunState::from_records(&journal.records)
            .map_err(|e| SubmitError::Journal(format!("run {run_id}: {e}")))?;
        let (event, submitted) = decide(&state, &run_id, sub, live, now)?;
        out = Some(submitted);
        Ok(event)
    })
    .map_err(|e: WriteError| SubmitError::Journal(e.to_string()))?;
    let seq = appended?;
    let mut submitted = out.ok_or_else(|| {
        SubmitError::Journal("invariant: a decision appended was described".into())
    })?;
    submitted.seq = seq;
    Ok(submitted)
}

/// The event to journal for `sub`, checked against the run's state.
fn decide(
    state: &RunState,
    run_id: &str,
    sub: &Submission<'_>,
    live: bool,
    now: DateTime<Utc>,
) -> Result<(Event, Submitted), SubmitError> {
    match state.status {
        None | Some(RunStatus::Paused) => {}
        Some(s) => {
            return Err(SubmitError::Ended {
                run_id: run_id.into(),
                status: s.as_str().into(),
            });
        }
    }
    let mut base = Submitted {
        run_id: run_id.into(),
        step: String::new(),
        rung: None,
        seq: 0,
        digest: String::new(),
        approvers: Vec::new(),
        needed: 1,
        live,
    };
    if let Some((step, pending)) = waiting_gate(state, sub.id) {
        if let Some(given) = sub.digest
            && !(given.len() >= 8 && pending.digest.starts_with(given))
        {
            return Err(SubmitError::DigestChanged {
                run_id: run_id.into(),
                id: sub.id.into(),
                given: given.into(),
                now: pending.digest.clone(),
            });
        }
        let s = state.step(step).cloned().unwrap_or_default();
        let rung = pending.rung.as_deref();
        let mut approvers: Vec<String> = s
            .approvers(rung, &pending.digest, pending.quorum.expires_ms, now)
            .iter()
            .map(|g| g.by.clone())
            .collect();
        let decision = match sub.verdict {
            Verdict::Approve => {
                if approvers.iter().any(|a| a == sub.by) {
                    return Err(SubmitError::SamePerson {
                        by: sub.by.into(),
                        id: sub.id.into(),
                        needed: pending.quorum.approvals,
                    });
                }
                approvers.push(sub.by.into());
                Decision::Approved
            }
            Verdict::Decline => {
                approvers.clear();
                Decision::Declined
            }
            Verdict::Skip => {
                approvers.clear();
                Decision::Skipped
            }
        };
        base.step = step.into();
        base.rung = pending.rung.clone();
        base.digest = pending.digest.clone();
        base.approvers = approvers;
        base.needed = pending.quorum.approvals;
        let event = Event::GateDecided {
            step: step.into(),
            rung: pending.rung.clone(),
            decision,
            by: sub.by.into(),
            source: sub.source,
            digest: pending.digest.clone(),
        };
        return Ok((event, base));
    }
    if let Some((step, rung)) = waiting_manual(state, sub.id) {
        if !live {
            return Err(SubmitError::NotWaiting(format!(
                "run {run_id} is paused at the manual step `{}`: confirm it when you continue the run, `runbook resume {run_id} --approve {}`",
                sub.id, sub.id
            )));
        }
        base.step = step.clone();
        base.rung = rung.clone();
        let event = Event::ManualConfirmed {
            scope: Scope {
                step,
                rung,
                ..Scope::default()
            },
            outcome: match sub.verdict {
                Verdict::Approve => Outcome::Ok,
                Verdict::Decline => Outcome::Failed,
                Verdict::Skip => Outcome::Skipped,
            },
            by: sub.by.into(),
        };
        return Ok((event, base));
    }
    let waiting = waiting_ids(state);
    // Beaten by another answer (the terminal, another `runbook approve`): say whose.
    let decided = state
        .steps
        .iter()
        .flat_map(|(step, s)| s.gates.iter().map(move |g| (step, g)))
        .filter(|(step, g)| match &g.rung {
            Some(r) => r == sub.id,
            None => *step == sub.id,
        })
        .max_by_key(|(_, g)| g.decided);
    if let Some((_, g)) = decided {
        let how = serde_json::to_value(g.source)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let what = serde_json::to_value(g.decision)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let rest = if waiting.is_empty() {
            String::new()
        } else {
            format!("; waiting now: {}", waiting.join(", "))
        };
        return Err(SubmitError::NotWaiting(format!(
            "`{}` in run {run_id} was already decided: {what} by {} ({how}) at {}; your decision was not recorded{rest}",
            sub.id,
            g.by,
            g.decided.format("%H:%M:%S UTC")
        )));
    }
    Err(SubmitError::NotWaiting(if waiting.is_empty() {
        format!(
            "nothing in run {run_id} is waiting for a decision now (`{}` was answered, or has not been asked yet); `runbook show {run_id}` says where it is",
            sub.id
        )
    } else {
        format!(
            "`{}` is not waiting for a decision in run {run_id}; waiting: {}",
            sub.id,
            waiting.join(", ")
        )
    }))
}

/// The gate that `id` (a step id, or a rung id) names and that waits.
fn waiting_gate<'s>(
    state: &'s RunState,
    id: &str,
) -> Option<(&'s str, &'s crate::journal::state::PendingGate)> {
    if let Some((step, s)) = state.steps.get_key_value(id)
        && let Some(g) = s.pending_gate(None)
    {
        return Some((step.as_str(), g));
    }
    state.steps.iter().find_map(|(step, s)| {
        s.pending_gates
            .iter()
            .find(|g| g.rung.as_deref() == Some(id))
            .map(|g| (step.as_str(), g))
    })
}

/// The manual step (or rung) that `id` names and that waits for a confirmation:
/// asked since it (last) started and not answered since.
fn waiting_manual(state: &RunState, id: &str) -> Option<(String, Option<String>)> {
    state.steps.iter().find_map(|(step, s)| {
        s.manual_requested.iter().find_map(|(rung, at)| {
            let named = rung.as_deref() == Some(id) || (rung.is_none() && step == id);
            let answered = s
                .manual
                .iter()
                .any(|m| m.rung == *rung && m.confirmed >= *at);
            (named && !answered && !s.is_done()).then(|| (step.clone(), rung.clone()))
        })
    })
}

/// Every gate and manual step waiting, by id (for an error that names them).
fn waiting_ids(state: &RunState) -> Vec<String> {
    let mut ids: Vec<String> = state
        .steps
        .iter()
        .flat_map(|(step, s)| {
            s.pending_gates
                .iter()
                .map(move |g| g.rung.clone().unwrap_or_else(|| step.clone()))
        })
        .collect();
    for (step, s) in &state.steps {
        for (rung, _) in &s.manual_requested {
            let id = rung.clone().unwrap_or_else(|| step.clone());
            if waiting_manual(state, &id).is_some() {
                ids.push(id);
            }
        }
    }
    ids.sort();
    ids.dedup();
    ids
}
