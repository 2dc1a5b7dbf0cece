//! Operations: resolved through their provider (the plan), then run with bounded
//! concurrency, retries, timeouts and cancellation, each start journaled first.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use super::EngineError;
use super::console::human;
use super::ctx::Ctx;
use super::events::BarKind;
use crate::expr;
use crate::journal::event::{Event, Outcome, PlannedOp, Scope};
use crate::providers::{ExecCtx, OpError, Resolved};
use crate::runbook::model::{OpRef, Retry};

/// An operation ready to run: as planned (redacted, journaled) and as resolved.
pub(super) struct Prepared {
    pub(super) planned: PlannedOp,
    pub(super) resolved: Resolved,
    /// The item's variables, shared with every attempt's [`ExecCtx`].
    pub(super) vars: std::sync::Arc<Value>,
}

/// An operation as text, to see which variables it names.
pub(super) fn op_text(op: OpRef<'_>) -> String {
    match op {
        OpRef::Shell(o) => serde_json::to_string(o),
        OpRef::Http(o) => serde_json::to_string(o),
        OpRef::Prometheus(o) => serde_json::to_string(o),
        OpRef::Kube(o) => serde_json::to_string(o),
        OpRef::Manual(o) => serde_json::to_string(o),
    }
    .unwrap_or_default()
}

/// A failed operation's result as the step keeps it (what a failing program printed,
/// else null) and its error in words.
fn failure(e: OpError) -> (Value, String) {
    let why = e.to_string();
    match e {
        OpError::Failed {
            result: Some(r), ..
        } => (r, why),
        _ => (Value::Null, why),
    }
}

/// How long a cancelled operation gets to wind down (longer than the shell
/// provider's wait for a killed program's pipes to close).
const CANCEL_GRACE: Duration = Duration::from_secs(5);

impl Ctx<'_> {
    /// Resolve an operation, once or per `for_each` item, into planned operations.
    /// `also`: the text of the step's other templates that read an item's
    /// variables (a `keep:` namespace), so that nothing they read is left out.
    pub(super) fn prepare(
        &self,
        base: &Scope,
        op: OpRef<'_>,
        for_each: Option<&String>,
        read_only: bool,
        also: &str,
    ) -> Result<Vec<Prepared>, String> {
        let vars = self.vars_named_in(&op_text(op));
        let name = op.provider();
        let Some(provider) = self.providers.get(name) else {
            return Err(match name {
                "kube" => "no Kubernetes provider is configured for this run (kube steps need a cluster: --kubeconfig/--context)".to_string(),
                other => format!("no `{other}` provider is configured for this run"),
            });
        };
        let items: Vec<(Option<usize>, Value)> = match for_each {
            None => vec![(None, vars)],
            Some(expr_src) => {
                // What of each item the operation (and `also`) can read: the whole
                // item, or only the paths it names (`item.metadata.name` of a
                // 1 000-pod list: a name per item, not a copy of every pod).
                let text = format!("{}\n{also}", op_text(op));
                let paths = item_paths(&text);
                let with_item = |i: usize, item: Value| {
                    let mut v = vars.clone();
                    if let Value::Object(m) = &mut v {
                        m.insert("item".into(), item);
                        m.insert("index".into(), Value::from(i));
                    }
                    (Some(i), v)
                };
                // `for_each: pods` (a saved list) is read where it is, not copied
                // whole, nor converted to CEL and back.
                match expr::bare_variable(expr_src, &self.vars) {
                    Some(Value::Array(list)) => list
                        .iter()
                        .enumerate()
                        .map(|(i, item)| with_item(i, pruned(item, paths.as_deref())))
                        .collect(),
                    Some(_) => {
                        return Err(format!("for_each `{expr_src}` did not give a list"));
                    }
                    None => {
                        let list = expr::eval(expr_src, &self.vars_named_in(expr_src))
                            .map_err(|e| format!("for_each: {e}"))?;
                        let Value::Array(list) = list else {
                            return Err(format!("for_each `{expr_src}` did not give a list"));
                        };
                        list.into_iter()
                            .enumerate()
                            .map(|(i, item)| match &paths {
                                None => with_item(i, item),
                                Some(p) => with_item(i, pruned(&item, Some(p))),
                            })
                            .collect()
                    }
                }
            }
        };
        items
            .into_iter()
            .map(|(item, vars)| {
                let mut resolved =
                    provider
                        .resolve(op, &vars, &self.opts.defaults)
                        .map_err(|e| match item {
                            Some(i) => format!("item {i}: {e}"),
                            None => e.to_string(),
                        })?;
                // Checks and verifications are read-only by the runbook's contract
                // (lint rejects mutating kube verbs there).
                if read_only {
                    resolved.mutating = false;
                }
                let mut scope = base.clone();
                scope.item = item;
                let planned = PlannedOp {
                    scope,
                    provider: resolved.provider.clone(),
                    display: self.events.redact(&resolved.display),
                    op: self.events.redact_value(&resolved.op),
                    mutating: resolved.mutating,
                    impact: None,
                };
                Ok(Prepared {
                    planned,
                    resolved,
                    vars: std::sync::Arc::new(vars),
                })
            })
            .collect()
    }

    /// The variables a text (an operation, a `for_each`) can read: those whose name
    /// appears in it. Copying only these keeps a 500-item `for_each` from copying
    /// every saved list 500 times; a name that merely appears in a string is copied
    /// too, which is harmless.
    pub(super) fn vars_named_in(&self, text: &str) -> Value {
        Value::Object(
            self.vars
                .iter()
                .filter(|(k, _)| text.contains(k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    /// Run prepared operations, `concurrency` at a time; every item's outcome is kept.
    /// Returns the step's result (a list for `for_each`) and one message per failure.
    pub(super) async fn execute_all(
        &self,
        prepared: Vec<Prepared>,
        how: FanOut<'_>,
        done_items: &[Option<usize>],
    ) -> Result<(Value, Vec<String>), EngineError> {
        let FanOut {
            is_list,
            concurrency,
            timeout: t,
            retry,
            max_failures,
            keep,
        } = how;
        // A step of one operation (most steps): started, run and ended in place, with
        // none of the fan-out's machinery (a set of running futures, a select over
        // it and a look-ahead, a result list to sort), which it would go through
        // once each. The same events, bar and result as the fan-out gives it.
        if let [p] = prepared.as_slice()
            && !is_list
            && done_items.is_empty()
            && keep.is_none()
            && max_failures.is_none()
        {
            return self.execute_single(p, t, retry).await;
        }
        let total = prepared.len() + done_items.len();
        // `limit: { max_failures }`: once this many items failed, no more start.
        let stop_at = max_failures.map(|m| (m, m.threshold(total)));
        let bar = if is_list {
            self.events.bar(BarKind::Items {
                total: total as u64,
            })
        } else {
            match prepared.first() {
                Some(p) => self.events.bar(BarKind::Spinner {
                    message: p.planned.display.clone(),
                }),
                None => self.events.no_bar(),
            }
        };
        bar.set_position(done_items.len() as u64);
        let failures = std::sync::atomic::AtomicUsize::new(0);
        // Group commit: operations are started in groups that share one fsync of
        // their `op_started` records (each start is still durable before its
        // operation runs). A group fills every free slot, and a new one is started
        // only once at least half the slots are free (or none is running), so a
        // batch of N under `concurrency` C costs at most about 2N/C fsyncs, not N,
        // while one slow operation never holds up the others.
        // Each `keep:` check must see what the item before did: one item at a time.
        let concurrency = if keep.is_some() {
            1
        } else {
            concurrency.max(1)
        };
        let mut kept: Option<String> = None;
        let refill_at = concurrency.div_ceil(2);
        let mut pending = prepared.iter();
        let mut running = futures::stream::FuturesUnordered::new();
        #[allow(clippy::type_complexity)]
        let mut results: Vec<(Option<usize>, Result<Result<Value, OpError>, EngineError>)> =
            Vec::with_capacity(prepared.len());
        let mut journal_error = None;
        // Pipelining: while a group runs, the starts of the next `concurrency`
        // operations are journaled and their fsync runs on a blocking thread, so that
        // when slots free up they start at once instead of waiting for the disk (each
        // start is still durable before its operation runs), and a batch of N costs
        // about N/concurrency fsyncs. Not with `keep:` (one item at a time, each
        // checked first) or one slot.
        let lookahead = keep.is_none() && concurrency > 1;
        // A step of one operation ends right after it: its `op_finished` is held
        // and written with the step's next event (its end, or the verification's
        // start), one append fewer per step. Never with others still running, which
        // the engine would wait on with the line unwritten.
        let hold_end = !is_list && prepared.len() == 1;
        let mut ahead: Vec<&Prepared> = Vec::new();
        let mut ahead_sync: Option<Syncing<'_>> = None;
        let mut ahead_synced: Option<Result<(), EngineError>> = None;
        loop {
            let free = concurrency - running.len();
            let stopped = stop_at
                .is_some_and(|(_, n)| failures.load(std::sync::atomic::Ordering::Relaxed) >= n);
            if let Some(keep) = keep
                && journal_error.is_none()
                && !stopped
                && kept.is_none()
                && running.is_empty()
                && let Some(next) = pending.as_slice().first()
                && let Err(why) = self.keep_holds(keep, next).await
            {
                kept = Some(why);
            }
            let may_start = journal_error.is_none() && !stopped && kept.is_none();
            if may_start && free > 0 && (free >= refill_at || running.is_empty()) {
                let (group, started) = if ahead.is_empty() {
                    let group: Vec<&Prepared> = pending.by_ref().take(free).collect();
                    // While the group's starts are made durable, the operations
                    // already running are driven and their results kept.
                    let start = self.start_group(&group, !running.is_empty());
                    let started = drive(start, &mut running, &mut results).await;
                    (group, started)
                } else {
                    let started = match (ahead_synced.take(), ahead_sync.take()) {
                        (Some(r), _) => r,
                        (None, Some(sync)) => drive(sync, &mut running, &mut results).await,
                        (None, None) => Ok(()),
                    };
                    // The rest of a group journaled ahead stays ahead: durable, it
                    // starts at the next refill without a sync of its own.
                    let n = free.min(ahead.len());
                    (ahead.drain(..n).collect(), started)
                };
                match started {
                    Ok(()) => {
                        for p in group {
                            let (bar, failures) = (&bar, &failures);
                            running.push(async move {
                                // The first attempt's start was journaled with its group.
                                let r = self.execute_retrying(p, t, retry, true, hold_end).await;
                                if !matches!(r, Ok(Ok(_))) {
                                    let n = failures
                                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                                        + 1;
                                    bar.set_message(format!("{n} failed"));
                                }
                                bar.inc();
                                (p.planned.scope.item, r)
                            });
                        }
                    }
                    // Nothing more starts; what runs is let finish and journaled.
                    Err(e) => journal_error = Some(e),
                }
            }
            if lookahead
                && may_start
                && journal_error.is_none()
                && ahead.is_empty()
                && !running.is_empty()
                && pending
                    .as_slice()
                    .iter()
                    .take(concurrency)
                    .any(|p| p.resolved.mutating)
            {
                ahead = pending.by_ref().take(concurrency).collect();
                ahead_sync = Some(Box::pin(self.events.emit_all_durable(group_starts(&ahead))));
            }
            if running.is_empty() && ahead_sync.is_none() {
                if ahead.is_empty() || !may_start {
                    break;
                }
                continue;
            }
            tokio::select! {
                biased;
                r = async { ahead_sync.as_mut().expect("checked").await }, if ahead_sync.is_some() => {
                    ahead_sync = None;
                    ahead_synced = Some(r);
                }
                Some(r) = running.next(), if !running.is_empty() => results.push(r),
            }
        }
        // A group journaled ahead that will not run (a failure limit was reached, or
        // the journal failed): its starts are closed as not started, so that neither
        // `resume` nor the postmortem reads them as operations of unknown outcome.
        let never_ran = ahead.len();
        // A sync of those starts that failed is the run's journal error all the same.
        if let Some(Err(e)) = ahead_synced.take()
            && journal_error.is_none()
        {
            journal_error = Some(e);
        }
        if journal_error.is_none() && !ahead.is_empty() {
            let why = "not started: the fan-out stopped before this item's turn".to_string();
            let ends = ahead
                .iter()
                .map(|p| Event::OpFinished {
                    scope: p.planned.scope.clone(),
                    attempt: 1,
                    outcome: Outcome::Skipped,
                    duration_ms: 0,
                    result: None,
                    error: Some(why.clone()),
                    output_file: None,
                    calls: Vec::new(),
                })
                .collect();
            if let Err(e) = self.events.emit_all(ends, false) {
                journal_error = Some(e);
            }
        }
        if let Some(e) = journal_error {
            return Err(e);
        }
        let not_started = pending.count() + never_ran;
        // The plan of a long fan-out (each item's variables hold a whole object) is
        // freed off the engine's thread; a short one is not worth a thread.
        drop(running);
        if prepared.len() >= 256 {
            super::run::drop_later(prepared);
        }
        bar.finish();
        results.sort_by_key(|(i, _)| *i);
        let mut errors = Vec::new();
        let mut values = Vec::new();
        for (item, r) in results {
            let r = r?;
            match r {
                Ok(v) => values.push(v),
                Err(e) => {
                    let (value, why) = failure(e);
                    values.push(value);
                    errors.push(match item {
                        Some(i) => format!("item {i}: {why}"),
                        None => why,
                    });
                }
            }
        }
        let failed = errors.len();
        if is_list && failed > 1 {
            errors.insert(0, format!("{failed} of {total} items failed"));
        }
        if let Some((m, _)) = stop_at.filter(|_| not_started > 0) {
            errors.insert(
                0,
                format!(
                    "stopped after {failed} failed items (`limit: {{ max_failures: {m} }}`): {not_started} of {total} items were not started"
                ),
            );
        }
        if let Some(why) = kept {
            let which = if is_list {
                format!(": {not_started} of {total} items were not started")
            } else {
                ": nothing was done".to_string()
            };
            errors.insert(0, format!("{why}{which}"));
        }
        let result = if is_list {
            Value::Array(values)
        } else {
            values.into_iter().next().unwrap_or(Value::Null)
        };
        Ok((result, errors))
    }

    /// [`Ctx::execute_all`] of a step's only operation: its start journaled (synced
    /// when it mutates), run with its retries, its end held for the step's next event.
    async fn execute_single(
        &self,
        p: &Prepared,
        t: Option<Duration>,
        retry: Option<&Retry>,
    ) -> Result<(Value, Vec<String>), EngineError> {
        let bar = self.events.bar(BarKind::Spinner {
            message: p.planned.display.clone(),
        });
        bar.set_position(0);
        self.start_group(&[p], false).await?;
        let r = self.execute_retrying(p, t, retry, true, true).await;
        if !matches!(r, Ok(Ok(_))) {
            bar.set_message("1 failed".to_string());
        }
        bar.inc();
        bar.finish();
        Ok(match r? {
            Ok(v) => (v, Vec::new()),
            Err(e) => {
                let (value, why) = failure(e);
                (value, vec![why])
            }
        })
    }

    pub(super) async fn execute_retrying(
        &self,
        p: &Prepared,
        t: Option<Duration>,
        retry: Option<&Retry>,
        first_journaled: bool,
        hold_end: bool,
    ) -> Result<Result<Value, OpError>, EngineError> {
        let attempts = retry.map(|r| r.attempts.value.max(1)).unwrap_or(1);
        let mut backoff = retry
            .and_then(|r| r.backoff.as_deref())
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(1));
        let max_backoff = retry
            .and_then(|r| r.max_backoff.as_deref())
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(60));
        let mut attempt = 1;
        loop {
            let journaled = first_journaled && attempt == 1;
            let r = self.execute_one(p, attempt, t, journaled, hold_end).await?;
            match &r {
                Err(OpError::Failed { .. } | OpError::TimedOut(_)) if attempt < attempts => {
                    // The attempt's end is written before the back-off.
                    self.events.flush()?;
                    tokio::select! {
                        () = self.clock.sleep(backoff) => {}
                        () = self.cancel.cancelled() => return Ok(Err(OpError::Cancelled)),
                    }
                    backoff = (backoff * 2).min(max_backoff);
                    attempt += 1;
                }
                _ => return Ok(r),
            }
        }
    }

    /// Journal the first attempt's start of each operation of a group, then make
    /// them durable with one fsync when any of them mutates (read-only starts ride
    /// along with the next sync, as before).
    ///
    /// One lock and one write for the group. When operations of earlier groups are
    /// `running`, the fsync runs on a blocking thread while they go on (their answers
    /// are read and journaled meanwhile); with nothing running it is done in place,
    /// which costs a one-operation step no hand-off to another thread. Either way the
    /// group starts once it is done.
    async fn start_group(&self, group: &[&Prepared], running: bool) -> Result<(), EngineError> {
        let starts = group_starts(group);
        let mutating = group.iter().any(|p| p.resolved.mutating);
        if mutating && running {
            self.events.emit_all_durable(starts).await
        } else {
            self.events.emit_all(starts, mutating)
        }
    }

    /// One attempt: journal the start (synced before a side effect) unless its group
    /// did (`journaled`), run it bounded by the timeout and Ctrl-C, journal the end
    /// (held for the next append when `hold_end`: see `execute_all`).
    pub(super) async fn execute_one(
        &self,
        p: &Prepared,
        attempt: u32,
        t: Option<Duration>,
        journaled: bool,
        hold_end: bool,
    ) -> Result<Result<Value, OpError>, EngineError> {
        let mutating = p.resolved.mutating;
        if !journaled {
            self.events.emit(
                Event::OpStarted {
                    op: p.planned.clone(),
                    attempt,
                },
                mutating,
            )?;
        }
        let Some(provider) = self.providers.get(&p.resolved.provider) else {
            return Ok(Err(OpError::Invalid(format!(
                "no `{}` provider",
                p.resolved.provider
            ))));
        };
        // An action's program is journaled with its process group as soon as it
        // starts, so that `resume` after a crash can tell whether it still runs.
        let (tx, mut spawned) = tokio::sync::mpsc::unbounded_channel();
        let scope = &p.planned.scope;
        let track = !scope.verification
            && self
                .events
                .state()
                .step(&scope.step)
                .is_some_and(|s| s.kind == "action");
        let spill = self.events.spill(scope);
        let cx = ExecCtx {
            cancel: self.cancel.child_token(),
            timeout: t,
            dry_run: false,
            vars: std::sync::Arc::clone(&p.vars),
            calls: Default::default(),
            clock: crate::providers::RunClock(std::sync::Arc::clone(&self.clock)),
            spawned: track.then_some(tx),
            approved: p.planned.impact.as_ref().map(|i| i.objects.clone()),
            spill: Some(spill.clone()),
        };
        // Not synced: a crash of the machine ends the group too; the engine killed
        // alone leaves the line written.
        let journal_group = |pgid| {
            self.events.emit(
                Event::ProcessStarted {
                    scope: scope.clone(),
                    attempt,
                    pgid,
                },
                false,
            )
        };
        let started = std::time::Instant::now();
        let fut = provider.execute(&p.resolved, &cx);
        tokio::pin!(fut);
        // The operation is polled before the channel: the program's group, sent
        // while the operation starts it, is then read in the same pass instead of
        // waking the engine for one more (a wake-up and a walk of the whole step's
        // future per action).
        let r = loop {
            tokio::select! {
                biased;
                r = &mut fut => break r,
                Some(pgid) = spawned.recv() => journal_group(pgid)?,
                // The provider sees the same cancellation and winds down itself (a
                // shell command's whole process group is killed, a request dropped):
                // let it, rather than drop it half-way and leave grandchildren
                // running. One that does not answer in time is dropped.
                () = self.cancel.cancelled() => break tokio::time::timeout(CANCEL_GRACE, &mut fut)
                    .await
                    .unwrap_or(Err(OpError::Cancelled)),
            }
        };
        // A program that ended before its group was read is journaled all the same,
        // before its end.
        while let Ok(pgid) = spawned.try_recv() {
            journal_group(pgid)?;
        }
        let r = match (r, t) {
            // A provider that ignored its timeout still reports it as one.
            (Err(OpError::Cancelled), Some(t)) if !self.cancel.is_cancelled() => {
                Err(OpError::TimedOut(t))
            }
            (r, _) => r,
        };
        let took = started.elapsed().as_millis() as u64;
        // Borrowed where the operation gave one: a 1 000-pod list is not copied to
        // be journaled.
        let spilled;
        let (outcome, result, error): (_, Option<&Value>, _) = match &r {
            Ok(v) => (Outcome::Ok, Some(v), None),
            Err(OpError::Failed { message, result }) => {
                (Outcome::Failed, result.as_ref(), Some(message.clone()))
            }
            // What it streamed to side files before it was stopped is journaled,
            // so that no file in the run folder is left unreferenced.
            Err(OpError::TimedOut(d)) => {
                spilled = spilled_so_far(&spill);
                (
                    Outcome::TimedOut,
                    spilled.as_ref(),
                    Some(timed_out(*d, t.is_some(), &p.planned.scope.step)),
                )
            }
            Err(OpError::Cancelled) => {
                spilled = spilled_so_far(&spill);
                (
                    Outcome::Aborted,
                    spilled.as_ref(),
                    Some("aborted by operator".into()),
                )
            }
            Err(OpError::Invalid(m)) => (Outcome::Failed, None, Some(m.clone())),
        };
        let (result, output_file) = match result {
            Some(v) => {
                let (v, f) = self.events.bounded(&p.planned.scope, v);
                (Some(v), f)
            }
            None => (None, None),
        };
        let end = Event::OpFinished {
            scope: p.planned.scope.clone(),
            attempt,
            outcome,
            duration_ms: took,
            result,
            error: error.map(|e| self.events.redact(&e)),
            output_file,
            calls: cx.calls.take(),
        };
        if hold_end {
            self.events.defer(end);
        } else {
            // Not synced: the next side effect's start (or the run's end) syncs it.
            // Lost in a crash, it reads as "outcome unknown", which resume
            // re-verifies before retrying: safe, one fsync per operation.
            self.events.emit(end, false)?;
        }
        Ok(r)
    }
}

/// A group's starts being made durable (see `execute_all`'s pipelining).
type Syncing<'a> = std::pin::Pin<Box<dyn Future<Output = Result<(), EngineError>> + 'a>>;

/// The first attempt's start of each operation of a group.
fn group_starts(group: &[&Prepared]) -> Vec<Event> {
    group
        .iter()
        .map(|p| Event::OpStarted {
            op: p.planned.clone(),
            attempt: 1,
        })
        .collect()
}

/// Await `fut` while driving the operations already `running`, keeping their
/// results: the engine's one thread goes on reading answers while the disk works.
async fn drive<F, R>(
    fut: F,
    running: &mut futures::stream::FuturesUnordered<R>,
    results: &mut Vec<R::Output>,
) -> F::Output
where
    F: Future,
    R: Future,
{
    tokio::pin!(fut);
    loop {
        tokio::select! {
            biased;
            r = &mut fut => break r,
            Some(r) = running.next(), if !running.is_empty() => results.push(r),
        }
    }
}

/// The side files an operation that ended without a result had finished (a shell
/// step timed out after its output passed `RUNBOOK_MAX_OUTPUT`), as its result.
fn spilled_so_far(spill: &crate::providers::limits::SpillTo) -> Option<Value> {
    let cap = crate::providers::limits::max_spill().unwrap_or(u64::MAX);
    spill.partial_result(cap)
}

/// A step's timeout message: how long, whether it was the step's own `timeout:` or
/// the provider's default, and the key that raises it (docs/limits.md, "Timeouts").
fn timed_out(d: Duration, own: bool, step: &str) -> String {
    let example = crate::providers::yaml_duration(d.saturating_mul(2).max(Duration::from_secs(1)));
    if own {
        format!(
            "timed out after {}; to allow longer, raise `timeout:` on step `{step}` (e.g. `timeout: {example}`)",
            human(d)
        )
    } else {
        format!(
            "timed out after {} (the default for a step without `timeout:`); to allow longer, set `timeout:` on step `{step}` (e.g. `timeout: {example}`)",
            human(d)
        )
    }
}

/// How a step's operations run: one or a list (`for_each`), how many at once, each
/// one's timeout and retries, and when failures stop the rest.
pub(super) struct FanOut<'a> {
    pub is_list: bool,
    pub concurrency: usize,
    pub timeout: Option<Duration>,
    pub retry: Option<&'a Retry>,
    /// `limit: { max_failures }`.
    pub max_failures: Option<crate::runbook::model::MaxFailures>,
    /// `keep:`: checked against the cluster before each item starts.
    pub keep: Option<&'a crate::runbook::model::Keep>,
}

/// The paths of `item` a text (an operation serialized, templates and conditions
/// in it) can read, when every mention of `item` is a plain dotted path
/// (`item.metadata.name`); `None` when any is not (`{{json item}}`, `item["x"]`,
/// `item.all(…)`, `{{#with item}}`): the whole item is kept. A path ends before a
/// segment a call follows (`item.spec.containers.size()` reads the list).
fn item_paths(text: &str) -> Option<Vec<Vec<&str>>> {
    const WORD: &str = "item";
    // What may follow a path's last segment (in a template, a condition, or the
    // JSON that quotes them) for that segment to be whole.
    const PATH_END: &[u8] = b".}])[,\"\\=!<>&|+*/%?: \t\r\n";
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let bytes = text.as_bytes();
    let mut paths = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(WORD) {
        let start = from + at;
        let mut end = start + WORD.len();
        from = end;
        if start > 0 && ident(bytes[start - 1]) || end < bytes.len() && ident(bytes[end]) {
            continue; // part of another word (`items`, `line_item`)
        }
        let mut path = Vec::new();
        while end + 1 < bytes.len() && bytes[end] == b'.' && ident(bytes[end + 1]) {
            let seg = end + 1;
            let mut stop = seg;
            while stop < bytes.len() && ident(bytes[stop]) {
                stop += 1;
            }
            path.push(&text[seg..stop]);
            end = stop;
        }
        match bytes.get(end) {
            // A method or macro of the value before it.
            Some(b'(') => {
                path.pop();
            }
            // A segment that may go on in a template's spelling (`foo-bar`,
            // non-ASCII): the value before it is kept whole.
            Some(c) if !PATH_END.contains(c) => {
                path.pop();
            }
            _ => {}
        }
        if path.is_empty() {
            return None;
        }
        paths.push(path);
    }
    Some(paths)
}

/// `item` with only `paths` kept (all of it for `None`). A path that meets a
/// missing key or a value that is not a map keeps the whole value it was in, so
/// that what a condition tests (`has(item.metadata.labels.app)`) or indexes
/// (`item.spec.containers.0`) reads as it would on the whole item.
fn pruned(item: &Value, paths: Option<&[Vec<&str>]>) -> Value {
    let Some(paths) = paths else {
        return item.clone();
    };
    let mut out = Value::Object(serde_json::Map::new());
    for path in paths {
        keep_path(item, &mut out, path);
    }
    out
}

fn keep_path(from: &Value, into: &mut Value, path: &[&str]) {
    let (Some((first, rest)), Value::Object(src)) = (path.split_first(), from) else {
        *into = from.clone();
        return;
    };
    let Some(next) = src.get(*first) else {
        *into = from.clone();
        return;
    };
    let Value::Object(dst) = into else {
        return; // already the whole value
    };
    let slot = dst
        .entry(first.to_string())
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if rest.is_empty() {
        *slot = next.clone();
    } else if slot.is_object() && next.is_object() {
        keep_path(next, slot, rest);
    } else {
        *slot = next.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::{item_paths, pruned};
    use serde_json::json;

    fn pod() -> serde_json::Value {
        json!({
            "metadata": {"name": "web-1", "namespace": "prod",
                         "labels": {"app": "web", "size": "l", "foo-bar": "x", "foo": "y"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running"}
        })
    }

    /// What a template or condition reads gives the same value from the pruned
    /// item as from the whole one.
    fn same(text: &str, reads: &[&str]) {
        let item = pod();
        let paths = item_paths(text);
        let small = pruned(&item, paths.as_deref());
        for r in reads {
            assert_eq!(small.pointer(r), item.pointer(r), "{text}: {r} in {small}");
        }
    }

    #[test]
    fn dotted_paths_keep_only_what_they_name() {
        let text = r#"{"name":"{{item.metadata.name}}","namespace":"{{item.metadata.namespace}}"}"#;
        assert_eq!(
            item_paths(text),
            Some(vec![
                vec!["metadata", "name"],
                vec!["metadata", "namespace"]
            ])
        );
        let small = pruned(&pod(), item_paths(text).as_deref());
        assert_eq!(
            small,
            json!({"metadata": {"name": "web-1", "namespace": "prod"}})
        );
    }

    #[test]
    fn any_other_mention_keeps_the_whole_item() {
        for text in [
            r#"{"x":"{{json item}}"}"#,
            r#"{"x":"{{#with item}}{{metadata.name}}{{/with}}"}"#,
            r#"{"where":"item[\"metadata\"].name == 'a'"}"#,
            r#"{"where":"item.all(k, k != '')"}"#,
            r#"{"argv":["echo","item"]}"#,
            r#"{"x":"{{item/metadata/name}}"}"#,
            r#"{"x":"{{item.[metadata].name}}"}"#,
            r#"{"where":"item . metadata"}"#,
        ] {
            assert_eq!(item_paths(text), None, "{text}");
            assert_eq!(pruned(&pod(), item_paths(text).as_deref()), pod());
        }
        // Words that contain it are not it.
        assert_eq!(
            item_paths(r#"{"x":"{{items}} {{line_item}}"}"#),
            Some(vec![])
        );
    }

    #[test]
    fn calls_indexes_and_odd_segments_keep_the_value_around_them() {
        // A method reads the value it is called on.
        same(
            r#"{"where":"item.spec.containers.size() == 2"}"#,
            &["/spec/containers"],
        );
        same(
            r#"{"where":"item.metadata.labels.exists(k, k == 'app')"}"#,
            &["/metadata/labels"],
        );
        // `size` is also a key of the labels: the call still reads the whole map.
        same(
            r#"{"where":"item.metadata.labels.size() > 3"}"#,
            &["/metadata/labels"],
        );
        // An index into a list keeps the list.
        same(
            r#"{"x":"{{item.spec.containers.0.name}}"}"#,
            &["/spec/containers"],
        );
        same(
            r#"{"x":"{{item.spec.containers.[1].name}}"}"#,
            &["/spec/containers"],
        );
        same(
            r#"{"where":"item.metadata.labels[\"app\"] == 'web'"}"#,
            &["/metadata/labels"],
        );
        // A template segment may go on past `-`: `foo-bar` is not `foo`.
        same(
            r#"{"x":"{{item.metadata.labels.foo-bar}}"}"#,
            &["/metadata/labels"],
        );
        // A key that is missing keeps the map it was looked up in (`has()` tests it).
        same(
            r#"{"where":"has(item.metadata.annotations.x) || item.status.phase == 'Running'"}"#,
            &["/metadata", "/status/phase"],
        );
        // A shorter and a longer path over the same value.
        same(
            r#"{"a":"{{item.metadata.name}}","b":"{{json item.metadata}}"}"#,
            &["/metadata"],
        );
        same(
            r#"{"b":"{{json item.metadata}}","a":"{{item.metadata.name}}"}"#,
            &["/metadata"],
        );
    }

    #[test]
    fn an_item_that_is_not_a_map_is_kept_whole() {
        let paths = item_paths(r#"{"x":"{{item.name}}"}"#);
        assert_eq!(pruned(&json!("node-1"), paths.as_deref()), json!("node-1"));
        assert_eq!(pruned(&json!([1, 2]), paths.as_deref()), json!([1, 2]));
    }
}
