//! Verifications: poll an operation every `every` until `expect` holds or `within`
//! runs out, on the engine's clock.

use std::time::Duration;

use super::EngineError;
use super::console::human;
use super::ctx::Ctx;
use super::events::{BarKind, Notice};
use super::steps::{scope, summarize};
use crate::journal::event::{Event, Scope};
use crate::providers::OpError;
use crate::runbook::model::{OpRef, Step, Verification};

/// How a verification ended.
pub(super) enum Verdict {
    Holds,
    Fails(String),
    Aborted,
}

pub(super) const DEFAULT_WITHIN: Duration = Duration::from_secs(60);
pub(super) const DEFAULT_EVERY: Duration = Duration::from_secs(10);

impl Ctx<'_> {
    /// Poll a verification (an action's block, `verification = true`) until `expect`
    /// holds or `within` runs out. `within` zero polls exactly once.
    pub(super) async fn verify(
        &mut self,
        step: &Step,
        rung: Option<&str>,
        v: &Verification,
        within: Duration,
        quiet: bool,
    ) -> Result<Verdict, EngineError> {
        let Some(op) = v.op() else {
            return Ok(Verdict::Fails("the verification has no operation".into()));
        };
        let mut s = scope(step, rung.map(str::to_string));
        s.verification = true;
        let every = v.every.as_deref().map(|d| d.0).unwrap_or(DEFAULT_EVERY);
        let t = v.timeout.as_deref().map(|d| d.0);
        let title = v
            .title
            .as_ref()
            .map(|t| t.value.clone())
            .unwrap_or_else(|| "verification".into());
        if !quiet {
            self.events.notice(Notice::Verifying { title, within });
        }
        self.poll(
            s,
            op,
            v.expect.as_deref().map(String::as_str),
            within,
            every,
            t,
        )
        .await
    }

    pub(super) async fn poll(
        &mut self,
        s: Scope,
        op: OpRef<'_>,
        expect: Option<&str>,
        within: Duration,
        every: Duration,
        t: Option<Duration>,
    ) -> Result<Verdict, EngineError> {
        let prepared = match self.prepare(&s, op, None, true, "") {
            Ok(mut p) if p.len() == 1 => p.remove(0),
            Ok(_) => return Ok(Verdict::Fails("a verification runs one operation".into())),
            Err(e) => return Ok(Verdict::Fails(e)),
        };
        let start = self.clock.now();
        // Saturating: `start + TimeDelta::MAX` panics (issue 13 item 10, `within: 100000000d`).
        let deadline = chrono::Duration::from_std(within)
            .ok()
            .and_then(|d| start.checked_add_signed(d))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        let bar = self.events.bar(BarKind::Countdown {
            within,
            message: format!("{} polling", s.step),
        });
        let mut attempt = 0;
        loop {
            attempt += 1;
            let out = self
                .execute_one(&prepared, attempt, t, false, false)
                .await?;
            let (holds, detail) = match &out {
                Err(OpError::Cancelled) => {
                    bar.finish();
                    return Ok(Verdict::Aborted);
                }
                Err(e) => (false, e.to_string()),
                Ok(result) => match expect {
                    None => (true, summarize(result)),
                    Some(x) => match self.eval_bool(x, Some(result.clone())) {
                        Ok(true) => (true, format!("{x} holds")),
                        Ok(false) => (false, format!("{x} does not hold ({})", summarize(result))),
                        Err(e) => (false, format!("expect: {e}")),
                    },
                },
            };
            self.events.emit(
                Event::VerifyPolled {
                    scope: s.clone(),
                    attempt,
                    ok: holds,
                    detail: Some(self.events.redact(&detail)),
                },
                false,
            )?;
            if holds {
                bar.finish();
                return Ok(Verdict::Holds);
            }
            let now = self.clock.now();
            if now >= deadline {
                bar.finish();
                return Ok(Verdict::Fails(format!(
                    "{detail}, after {attempt} poll(s) within {}",
                    human(within)
                )));
            }
            let left = (deadline - now).to_std().unwrap_or(Duration::ZERO);
            bar.set_position((now - start).num_seconds().max(0) as u64);
            tokio::select! {
                () = self.clock.sleep(every.min(left)) => {}
                () = self.cancel.cancelled() => {
                    bar.finish();
                    return Ok(Verdict::Aborted);
                }
            }
        }
    }
}
