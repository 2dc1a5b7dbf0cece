//! A verify step: its operation polled every `every` until `expect` holds or
//! `within` runs out (the polling itself is `engine/verify.rs`, shared with the
//! verifications of actions and rungs).

use serde_json::Value;

use crate::engine::EngineError;
use crate::engine::ctx::Ctx;
use crate::engine::steps::{End, failed, ok, scope, timeout};
use crate::engine::verify::{DEFAULT_EVERY, DEFAULT_WITHIN, Verdict};
use crate::runbook::model::Step;

/// Run a verify step.
pub(super) async fn run(cx: &mut Ctx<'_>, step: &Step) -> Result<(End, Value), EngineError> {
    let Some(op) = step.op() else {
        return Ok((
            failed("the verify step has no operation".into()),
            Value::Null,
        ));
    };
    if cx.opts.dry_run {
        return Ok((End::Skipped("dry run: would verify".into()), Value::Null));
    }
    let within = step
        .within
        .as_deref()
        .map(|d| d.0)
        .unwrap_or(DEFAULT_WITHIN);
    let every = step.every.as_deref().map(|d| d.0).unwrap_or(DEFAULT_EVERY);
    let expect = step.expect.as_deref().map(String::as_str);
    let s = scope(step, None);
    Ok(
        match cx.poll(s, op, expect, within, every, timeout(step)).await? {
            Verdict::Holds => (ok("holds".into()), Value::Null),
            Verdict::Fails(d) => (failed(d), Value::Null),
            Verdict::Aborted => (End::Aborted("aborted by operator".into()), Value::Null),
        },
    )
}
