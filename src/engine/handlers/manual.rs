//! A manual step: an instruction a person carries out and confirms, journaled with
//! who and when. Asking a person is also what a manual rung of a ladder does.

use crate::engine::EngineError;
use crate::engine::approve::{ManualAnswer, ManualRequest};
use crate::engine::ctx::Ctx;
use crate::engine::events::Notice;
use crate::engine::gate::foreign_records;
use crate::engine::steps::{End, failed, ok, scope};
use crate::journal::event::{Event, Outcome};
use crate::runbook::model::Step;

/// How asking a person ended.
pub(crate) enum ManualEnd {
    Done,
    Failed(String),
    Skipped(String),
    Paused(String),
    Aborted(String),
}

/// Run a manual step.
pub(super) async fn run(cx: &mut Ctx<'_>, step: &Step) -> Result<End, EngineError> {
    let text = step
        .instructions
        .as_ref()
        .map(|i| i.value.as_str())
        .unwrap_or(step.title());
    let instruction = match cx.render(text) {
        Ok(t) => t,
        Err(e) => return Ok(failed(format!("instructions: {e}"))),
    };
    if cx.opts.dry_run {
        cx.events.notice(Notice::WouldAsk { instruction });
        return Ok(End::Skipped("dry run: manual step not asked".into()));
    }
    Ok(
        match cx.manual(step, None, step.title(), instruction).await? {
            ManualEnd::Done => ok("confirmed done".into()),
            ManualEnd::Failed(r) => failed(r),
            ManualEnd::Skipped(r) => End::Skipped(r),
            ManualEnd::Paused(r) => End::Paused {
                reason: r,
                approve: step.id.value.clone(),
            },
            ManualEnd::Aborted(r) => End::Aborted(r),
        },
    )
}

impl Ctx<'_> {
    /// Ask a person to do something and wait for the answer (or cancellation); the
    /// request and the confirmation are journaled and fsynced.
    pub(crate) async fn manual(
        &mut self,
        step: &Step,
        rung: Option<&str>,
        title: &str,
        instruction: String,
    ) -> Result<ManualEnd, EngineError> {
        let s = scope(step, rung.map(str::to_string));
        let instruction = self.events.redact(&instruction);
        if self.opts.dry_run {
            self.events.notice(Notice::WouldAskPerson { instruction });
            return Ok(ManualEnd::Skipped("dry run".into()));
        }
        self.events.emit(
            Event::ManualRequested {
                scope: s.clone(),
                instruction: instruction.clone(),
            },
            true,
        )?;
        let req = ManualRequest {
            step: step.id.value.clone(),
            rung: rung.map(str::to_string),
            title: title.to_string(),
            instruction,
        };
        // Besides the approver, a confirmation may come from another process
        // (`runbook approve RUN ID`) while a person or `--wait-for-approval` waits
        // here: it is already journaled, so it is only applied.
        let approver = std::sync::Arc::clone(&self.approver);
        let wait = approver.wait_limit();
        let watch = wait.is_some() || approver.present();
        let (journal, mut offset) = self.events.journal_end();
        let deadline = wait.and_then(|d| tokio::time::Instant::now().checked_add(d));
        let mut local = Some(approver.manual(&req));
        let answer = loop {
            let asked = async {
                match local.as_mut() {
                    Some(f) => f.await,
                    None => std::future::pending().await,
                }
            };
            let foreign = async {
                if !watch {
                    return std::future::pending().await;
                }
                foreign_records(&journal, &mut offset, |e| {
                    matches!(e, Event::ManualConfirmed { scope: c, .. }
                        if c.step == s.step && c.rung == s.rung)
                })
                .await
            };
            let timeout = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                a = asked => {
                    local = None;
                    match a {
                        ManualAnswer::Pause { .. } if wait.is_some() => {}
                        a => break a,
                    }
                }
                recs = foreign => {
                    for rec in &recs {
                        self.events.observe(rec);
                    }
                    if let Some(Event::ManualConfirmed { outcome, by, .. }) =
                        recs.last().map(|r| &r.event)
                    {
                        return Ok(match outcome {
                            Outcome::Ok => ManualEnd::Done,
                            Outcome::Skipped => ManualEnd::Skipped(format!("skipped by {by}")),
                            _ => ManualEnd::Failed(format!(
                                "{by} reported the manual step failed (runbook approve)"
                            )),
                        });
                    }
                }
                () = timeout => {
                    break ManualAnswer::Pause {
                        reason: "no confirmation within the wait (--wait-for-approval)".into(),
                    };
                }
                () = self.cancel.cancelled() => {
                    return Ok(ManualEnd::Aborted("aborted by operator".into()));
                }
            }
        };
        let (outcome, by, end) = match answer {
            ManualAnswer::Done { by, .. } => (Outcome::Ok, by, ManualEnd::Done),
            ManualAnswer::Failed { by } => (
                Outcome::Failed,
                by.clone(),
                ManualEnd::Failed(format!("{by} reported the manual step failed")),
            ),
            ManualAnswer::Skip { by } => (
                Outcome::Skipped,
                by.clone(),
                ManualEnd::Skipped(format!("skipped by {by}")),
            ),
            ManualAnswer::Pause { reason } => return Ok(ManualEnd::Paused(reason)),
        };
        self.events.emit(
            Event::ManualConfirmed {
                scope: s,
                outcome,
                by,
            },
            true,
        )?;
        Ok(end)
    }
}
