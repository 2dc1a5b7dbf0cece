//! Starting, resuming and finishing a run; the loop over steps.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::ctx::Ctx;
use super::events::{Events, Reporter};
use super::record::Recorder;
use super::steps::End;
use super::{Approver, Clock, EngineError, EngineOpts, RunReport};
use crate::journal::event::{self, Event, GitRef, KubeTarget, Outcome, RunStatus, RunbookRef};
use crate::journal::state::{OpState, RunState, StepState};
use crate::journal::{reader, writer::Writer};
use crate::providers::Providers;
use crate::runbook::model::{FailurePolicy, OnFailure, Param, RunFailure, Runbook, Step};
use crate::store::{DirStore, RunStore, SideFiles};

pub(crate) async fn start(
    loaded: &crate::runbook::Loaded,
    providers: Providers,
    approver: Arc<dyn Approver>,
    clock: Arc<dyn Clock>,
    state_dir: &Path,
    opts: EngineOpts,
    cancel: CancellationToken,
) -> Result<RunReport, EngineError> {
    let rb = &loaded.runbook;
    let resolved = resolve_params(rb, &opts.params, &opts.secrets, &opts.param_inputs)?;
    warn_about_secrets(&opts, &resolved.secrets);
    let secrets = resolved.secret_values();
    let params = resolved.params;
    let titled = super::titles::titled(rb, &params);
    let rb = &titled;
    let now = clock.now();
    let git = git_ref_off_thread(&loaded.path).await;
    let held = DirStore::new(state_dir).create(now, &rb.name)?;
    let (run_id, run_dir, journal) = (held.run_id.clone(), held.dir.clone(), held.journal.clone());
    let writer = Writer::create(&journal)?;
    let rec = Recorder::new(
        writer,
        Arc::clone(&clock),
        secrets.clone(),
        &run_dir,
        opts.max_inline_output,
    );
    let journaled_params = resolved.journaled;
    let runbook = runbook_ref(loaded, &rb.title.value, git);
    let version_warning = runbook.version_warning();
    let events = Events::new(rec, RunState::default(), reporters(&opts));
    events.emit(
        Event::RunStarted {
            format: event::FORMAT,
            run_id: run_id.clone(),
            runbook,
            params: journaled_params,
            operator: opts.operator.clone(),
            host: host(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            dry_run: opts.dry_run,
            target: opts.target.clone(),
        },
        true,
    )?;
    if !rb.links.is_empty() {
        let links = rb
            .links
            .iter()
            .map(|l| crate::journal::event::Link {
                title: l.title.value.clone(),
                url: l.url.value.clone(),
            })
            .collect();
        events.emit(Event::RunbookLinks { links }, false)?;
    }
    if let Some(at) = opts.incident_start {
        let by = opts.operator.clone();
        let source = opts.incident_start_source.clone();
        events.emit(Event::IncidentStart { at, by, source }, false)?;
    }
    for (text, by) in opts.notes.clone() {
        events.emit(Event::Note { text, by, at: None }, false)?;
    }
    // A version git cannot give back later: said on the console and journaled as a
    // note (the postmortem shows it), besides the flags on `run_started`.
    if let Some(text) = version_warning {
        opts.printer.line(&format!("warning: {text}"));
        let by = "runbook".to_string();
        events.emit(Event::Note { text, by, at: None }, false)?;
    }
    let others = super::siblings::unfinished_runs_of(&DirStore::new(state_dir), &rb.name, &run_id);
    if let Some(text) = super::siblings::warning(&rb.name, &others) {
        opts.printer.line(&format!("warning: {text}"));
        let by = "runbook".to_string();
        events.emit(Event::Note { text, by, at: None }, false)?;
    }
    let mut vars = Map::new();
    vars.insert("params".into(), Value::Object(params));
    vars.insert("steps".into(), Value::Object(Map::new()));
    let mut engine = Runner::new(Ctx {
        rb,
        providers,
        approver,
        clock,
        events,
        opts,
        cancel,
        run_id: run_id.clone(),
        vars,
    });
    let status = engine.run_steps(now).await?;
    drop_later(std::mem::take(&mut engine.cx.vars));
    Ok(report(run_id, run_dir, journal, status))
}

pub(crate) async fn resume(
    state_dir: &Path,
    run_id: &str,
    providers: Providers,
    approver: Arc<dyn Approver>,
    clock: Arc<dyn Clock>,
    opts: EngineOpts,
    cancel: CancellationToken,
) -> Result<RunReport, EngineError> {
    let held = DirStore::new(state_dir).hold(run_id)?;
    let (run_dir, journal) = (held.dir.clone(), held.journal.clone());
    // A corrupt line is bad input (an edited or damaged file), not a bug: exit 2.
    let j = reader::read(&journal).map_err(|e| match e {
        reader::ReadError::Io { path, source } => EngineError::Io {
            context: format!("cannot read journal {}", path.display()),
            source,
        },
        e => EngineError::Resume(e.to_string()),
    })?;
    if let Some((line, what)) = j.seq_faults.first() {
        // Lines were removed, repeated or reordered: what ran cannot be told, so
        // continuing could repeat a side effect. The postmortem still renders it.
        return Err(EngineError::Resume(format!(
            "{}:{line}: {what}; the journal was edited or damaged, so what already ran cannot be told. Start a new run (`runbook postmortem {run_id}` still renders this one)",
            journal.display()
        )));
    }
    let r = RunState::from_records(&j.records).map_err(|e| EngineError::Resume(e.to_string()))?;
    // A run that is being undone continues its undo, never its steps: `resume` of a
    // run paused at an undo's gate is `runbook undo`.
    let mut opts = opts;
    if opts.undo.is_none() && !r.undo_order.is_empty() {
        opts.undo = Some(super::UndoRequest::default());
    }
    let before = r
        .undo_from
        .clone()
        .unwrap_or_else(|| (r.status, r.reason.clone()));
    let retry = match r.status {
        _ if opts.undo.is_some() => None,
        Some(RunStatus::Failed) if opts.retry_failed => Some(()),
        Some(s) if !matches!(s, RunStatus::Paused | RunStatus::Aborted) => {
            let hint = if s == RunStatus::Failed {
                " (add --retry-failed to run the failed step again)"
            } else {
                ""
            };
            return Err(EngineError::Finished(
                run_id.to_string(),
                format!("{}{hint}", s.as_str()),
            ));
        }
        _ => None,
    };
    check_target(&r, opts.target.as_ref())?;
    let running = running_unknown(&r);
    if let Some((step, pgid)) = running.first()
        && !opts.rerun_unknown
    {
        return Err(EngineError::Resume(format!(
            "the process group {pgid} of step {step} is still running: the run stopped before its outcome was journaled, and running the step again now would put a second execution next to it; wait for it to end, or stop it with `kill -- -{pgid}`, or re-run anyway with `runbook resume {run_id} --rerun-unknown`; the run is unchanged"
        )));
    }
    let path = PathBuf::from(&r.runbook.path);
    let loaded = crate::runbook::load(&path).map_err(|e| {
        EngineError::Resume(format!("the runbook of this run no longer loads:\n{e}"))
    })?;
    let sha = sha256_hex(loaded.source.as_bytes());
    let changed = if sha == r.runbook.sha256 {
        None
    } else if opts.accept_changes {
        let git = git_ref_off_thread(&loaded.path).await;
        let new = runbook_ref(&loaded, &loaded.runbook.title.value, git);
        let compared = !r.runbook.step_digests.is_empty();
        let steps = if compared {
            changed_steps(
                &r.runbook.step_digests,
                &new.step_digests,
                &loaded.runbook,
                &r,
            )
        } else {
            Vec::new()
        };
        Some(Event::RunbookChanged {
            old_sha256: r.runbook.sha256.clone(),
            new_sha256: sha,
            git: new.git,
            untracked: new.untracked,
            step_digests: new.step_digests,
            steps,
            compared,
            by: opts.operator.clone(),
        })
    } else {
        return Err(EngineError::Resume(format!(
            "{} changed since the run started (sha256 {} then, {} now); `runbook resume {run_id} --accept-changes` continues with the edited file (the steps not yet run that changed are journaled, and their gates ask again), or start a new run",
            path.display(),
            r.runbook.sha256,
            sha
        )));
    };
    let rb = &loaded.runbook;
    let retry = match retry {
        Some(()) => Some(failed_step(rb, &r).ok_or_else(|| {
            EngineError::Resume(format!(
                "run {run_id} failed, but its journal names no failed step to retry"
            ))
        })?),
        None => None,
    };
    let undo_order = match &opts.undo {
        Some(u) => Some(
            super::undo::undo_order(rb, &r, u.step.as_deref())
                .map_err(|e| EngineError::Resume(format!("nothing was undone: {e}")))?,
        ),
        None => None,
    };
    if let Some(order) = &undo_order {
        if order.is_empty() {
            return Err(EngineError::Resume(format!(
                "nothing was undone: no action of run {run_id} completed anything"
            )));
        }
        // Everything already undone (or named as not undoable): nothing is journaled.
        if super::undo::all_done(&r, order) {
            opts.printer.line(&format!(
                "run {run_id}: nothing left to undo ({} already undone or without `undo:`)",
                order.join(", ")
            ));
            let status = r.status.unwrap_or(RunStatus::Aborted);
            let mut done = report(run_id.to_string(), run_dir, journal, status);
            done.exit_code = crate::exit::OK;
            return Ok(done);
        }
    }
    // The journal has every param except secrets, which it names by reference
    // (`{"$secret": NAME, "from": SOURCE}`): each is read again from a source.
    let (params, secrets) = resume_params(rb, &r.params, &opts)?;
    let titled = super::titles::titled(rb, &params);
    let rb = &titled;
    warn_about_secrets(&opts, &secrets);
    let secrets = secrets.into_iter().map(|s| s.value).collect();
    let mut writer = Writer::open(&journal)?;
    if j.torn_tail {
        // Writer::open cut the torn line; make that durable before appending.
        writer.sync()?;
    }
    let rec = Recorder::new(
        writer,
        Arc::clone(&clock),
        secrets,
        &run_dir,
        opts.max_inline_output,
    );
    let now = clock.now();
    let mut vars = Map::new();
    vars.insert("params".into(), Value::Object(params));
    let mut steps = Map::new();
    for step in rb.steps.iter().chain(&rb.handlers) {
        if let Some(s) = r.steps.get(&step.id.value)
            && s.is_done()
        {
            let status = s
                .skipped
                .as_ref()
                .map(|_| "skipped")
                .unwrap_or_else(|| s.finished.map(outcome_word).unwrap_or("ok"));
            let result = step
                .save
                .as_ref()
                .and_then(|name| r.saved.get(&name.value).cloned())
                .unwrap_or(Value::Null);
            steps.insert(step.id.value.clone(), step_var(status, result));
        }
    }
    // A manual rung's answer, which later rungs of its ladder may require.
    for s in r.steps.values() {
        for m in &s.manual {
            if let Some(rung) = &m.rung {
                steps.insert(rung.clone(), step_var(outcome_word(m.outcome), Value::Null));
            }
        }
    }
    vars.insert("steps".into(), Value::Object(steps));
    for (name, value) in &r.saved {
        vars.insert(name.clone(), load_saved(&run_dir, value));
    }
    // The engine continues with the state the journal folded into.
    let events = Events::new(rec, r, reporters(&opts));
    events.emit(
        Event::RunResumed {
            operator: opts.operator.clone(),
            host: host(),
        },
        true,
    )?;
    for (step, pgid) in &running {
        // Said on the console and journaled, so the postmortem shows who chose to
        // run an action again next to the execution that may still be running.
        let text = format!(
            "resumed with --rerun-unknown while the process group {pgid} of step {step} was still running"
        );
        opts.printer.line(&format!("warning: {text}"));
        let by = opts.operator.clone();
        events.emit(Event::Note { text, by, at: None }, true)?;
    }
    if let Some(change) = changed {
        // Durable before any step of the edited runbook runs.
        events.emit(change, true)?;
    }
    if let Some(step) = retry {
        let (failed, kept) = events
            .state()
            .step(&step)
            .map(retried_items)
            .unwrap_or_default();
        events.emit(
            Event::StepRetried {
                step,
                by: opts.operator.clone(),
                failed,
                kept,
            },
            true,
        )?;
    }
    let mut engine = Runner::new(Ctx {
        rb,
        providers,
        approver,
        clock,
        events,
        opts,
        cancel,
        run_id: run_id.to_string(),
        vars,
    });
    if let Some(order) = undo_order {
        let (status, code) = engine.undo_run(now, &order, before).await?;
        let mut r = report(run_id.to_string(), run_dir, journal, status);
        r.exit_code = code;
        return Ok(r);
    }
    let status = engine.run_steps(now).await?;
    drop_later(std::mem::take(&mut engine.cx.vars));
    Ok(report(run_id.to_string(), run_dir, journal, status))
}

/// Free `v` on a thread of its own: the variables of a finished run (saved lists of
/// a thousand objects, twice) or a finished fan-out's plan take milliseconds to
/// free node by node, which the run's end (or its next step) need not wait for.
pub(crate) fn drop_later<T: Send + 'static>(v: T) {
    // When no thread can be had, the closure (and `v` with it) is dropped here, as
    // it would have been.
    let _ = std::thread::Builder::new()
        .name("runbook-free".into())
        .spawn(move || drop(v));
}

/// The step whose failure ended a failed run, which `--retry-failed` runs again: the
/// first step of the main sequence that finished failed (or timed out) and does not
/// `continue` on failure — where the loop over steps stopped.
fn failed_step(rb: &Runbook, r: &RunState) -> Option<String> {
    rb.steps
        .iter()
        .find(|step| {
            !continues(step)
                && r.step(&step.id.value).is_some_and(|s| {
                    matches!(
                        s.finished,
                        Some(Outcome::Failed | Outcome::TimedOut | Outcome::Unknown)
                    )
                })
        })
        .map(|step| step.id.value.clone())
}

/// The `for_each` items of a failed step that `--retry-failed` runs again (their
/// operation did not finish ok) and those it keeps (finished ok: never repeated).
/// Both empty when no item failed (the step failed after its items, e.g. in its
/// verification, or it is not a fan-out): then the whole step runs again.
fn retried_items(s: &crate::journal::state::StepState) -> (Vec<usize>, Vec<usize>) {
    let (mut failed, mut kept) = (Vec::new(), Vec::new());
    for (k, o) in &s.ops {
        let (None, false, Some(i)) = (&k.rung, k.verification, k.item) else {
            continue;
        };
        let ok = o.state
            == crate::journal::state::OpState::Finished {
                outcome: Outcome::Ok,
            };
        if ok { &mut kept } else { &mut failed }.push(i);
    }
    if failed.is_empty() {
        kept.clear();
    }
    (failed, kept)
}

/// A run continues on the cluster it started on, or not at all: a shell whose
/// KUBECONFIG now points elsewhere must not roll back another cluster. Checked before
/// anything is journaled, so a refused resume changes nothing.
/// The actions not done whose outcome is unknown and whose program's process group,
/// journaled by `process_started`, still has live members: `(step, pgid)`, in step
/// order of the journal (by step id for a stable message).
fn running_unknown(r: &RunState) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = Vec::new();
    for (id, s) in &r.steps {
        if s.is_done() || s.kind != "action" {
            continue;
        }
        for (key, op) in &s.ops {
            let unknown = matches!(
                op.state,
                OpState::Started
                    | OpState::Finished {
                        outcome: Outcome::Aborted | Outcome::Unknown,
                    }
            );
            if let Some(pgid) = op.pgid
                && unknown
                && !key.verification
                && crate::providers::shell::group_alive(pgid, op.spawned.map(Into::into))
            {
                out.push((id.clone(), pgid));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn check_target(r: &RunState, now: Option<&KubeTarget>) -> Result<(), EngineError> {
    let (Some(then), Some(now)) = (r.target.as_ref(), now) else {
        return Ok(());
    };
    if then.same_cluster(now) {
        return Ok(());
    }
    let mut how = Vec::new();
    if let Some(k) = &then.kubeconfig {
        how.push(format!("--kubeconfig {k} (or KUBECONFIG={k})"));
    }
    if let Some(c) = &then.context {
        how.push(format!("--context {c}"));
    }
    Err(EngineError::Resume(format!(
        "run {} started on another cluster: {} then, {} now{}. Nothing was done; point at the run's cluster with {}",
        r.run_id,
        then.describe(),
        now.describe(),
        now.kubeconfig
            .as_ref()
            .map(|k| format!(" (from {k})"))
            .unwrap_or_default(),
        if how.is_empty() {
            "--kubeconfig/--context or KUBECONFIG".to_string()
        } else {
            how.join(" ")
        }
    )))
}

/// The console first, then the other reporters, in the order given.
fn reporters(opts: &EngineOpts) -> Vec<Arc<dyn Reporter>> {
    let console: Arc<dyn Reporter> = opts.printer.clone();
    std::iter::once(console)
        .chain(opts.reporters.iter().cloned())
        .collect()
}

fn report(run_id: String, run_dir: PathBuf, journal: PathBuf, status: RunStatus) -> RunReport {
    RunReport {
        run_id,
        run_dir,
        journal,
        status,
        exit_code: super::exit_code(status),
    }
}

/// The loop over a run's steps: the one place that knows which steps this process
/// started, so a handler gets the run state of its step only when it continues what
/// an earlier process began.
pub(crate) struct Runner<'r> {
    pub cx: Ctx<'r>,
    /// Steps this process started: what the run state says about any other step
    /// comes from an earlier process (resume), and is what this one continues from.
    pub(super) ran_here: HashSet<String>,
}

impl<'r> Runner<'r> {
    fn new(cx: Ctx<'r>) -> Runner<'r> {
        Runner {
            cx,
            ran_here: HashSet::new(),
        }
    }

    /// Run every step not done yet, in order, and journal how the run ended.
    async fn run_steps(
        &mut self,
        t0: chrono::DateTime<chrono::Utc>,
    ) -> Result<RunStatus, EngineError> {
        let rb = self.cx.rb;
        // `lock:`: held from before the first step to the run's end; a run that
        // cannot take it pauses saying who holds it (an engine error on the way
        // leaves it to expire after its `ttl`).
        let mut held = None;
        let (status, reason) = 'run: {
            match self.cx.take_lock().await {
                Ok(h) => held = h,
                Err(why) => {
                    self.cx.opts.printer.line(&format!("⏸ {why}"));
                    break 'run (RunStatus::Paused, Some(why));
                }
            }
            for step in &rb.steps {
                if self.done_before(step) {
                    continue;
                }
                let end = self.run_step(step).await?;
                match end {
                    End::Done {
                        outcome: Outcome::Ok,
                        ..
                    }
                    | End::Skipped(_) => {}
                    End::Done {
                        outcome: Outcome::NotApplicable,
                        summary,
                        ..
                    } => {
                        if !continues(step) {
                            break 'run (
                                RunStatus::NotApplicable,
                                Some(format!("{}: {summary}", step.id.value)),
                            );
                        }
                    }
                    End::Done { summary, .. } => {
                        match &step.on_failure.as_ref().map(|o| &o.value) {
                            Some(OnFailure::Policy(FailurePolicy::Continue)) => {}
                            Some(OnFailure::Run(ids)) => {
                                let ids: Vec<String> =
                                    ids.iter().map(|i| i.value.clone()).collect();
                                if let Some(stop) = self.run_handlers(&ids).await? {
                                    break 'run stop;
                                }
                                break 'run (
                                    RunStatus::Failed,
                                    Some(format!("{}: {summary}", step.id.value)),
                                );
                            }
                            _ => {
                                break 'run (
                                    RunStatus::Failed,
                                    Some(format!("{}: {summary}", step.id.value)),
                                );
                            }
                        }
                    }
                    End::Paused { reason, approve } => {
                        let resume =
                            format!("runbook resume {} --approve {approve}", self.cx.run_id);
                        self.cx.events.emit(
                            Event::Paused {
                                step: step.id.value.clone(),
                                reason: reason.clone(),
                                resume,
                            },
                            false,
                        )?;
                        break 'run (RunStatus::Paused, Some(reason));
                    }
                    End::Aborted(reason) => break 'run (RunStatus::Aborted, Some(reason)),
                }
            }
            (RunStatus::Succeeded, None)
        };
        // The runbook's `on_failure: undo`: still under the run's lock.
        let (status, reason) = if status == RunStatus::Failed
            && !self.cx.opts.dry_run
            && rb.on_failure.as_deref() == Some(&RunFailure::Undo)
        {
            self.undo_on_failure(reason).await?
        } else {
            (status, reason)
        };
        if let Some(h) = held {
            self.cx.release_lock(h).await;
        }
        self.finish_run(t0, status, reason)?;
        Ok(status)
    }

    /// Journal how the run (or its undo, from `t0`) ended, durably.
    pub(super) fn finish_run(
        &mut self,
        t0: chrono::DateTime<chrono::Utc>,
        status: RunStatus,
        reason: Option<String>,
    ) -> Result<(), EngineError> {
        let took = (self.cx.clock.now() - t0).num_milliseconds().max(0) as u64;
        self.cx.events.emit(
            Event::RunFinished {
                status,
                duration_ms: took,
                reason,
            },
            true,
        )?;
        self.cx.events.sync()
    }

    /// Run the handlers a failing step names; `Some` when one of them pauses or aborts.
    async fn run_handlers(
        &mut self,
        ids: &[String],
    ) -> Result<Option<(RunStatus, Option<String>)>, EngineError> {
        let rb = self.cx.rb;
        for id in ids {
            let Some(step) = rb
                .handlers
                .iter()
                .chain(&rb.steps)
                .find(|s| &s.id.value == id)
            else {
                continue;
            };
            match self.run_step(step).await? {
                End::Aborted(r) => return Ok(Some((RunStatus::Aborted, Some(r)))),
                End::Paused { reason, .. } => return Ok(Some((RunStatus::Paused, Some(reason)))),
                _ => {}
            }
        }
        Ok(None)
    }

    /// What earlier processes journaled about a step this process has not started:
    /// what a resumed step continues from. `None` for a step this process ran.
    pub(crate) fn prior(&self, step: &Step) -> Option<StepState> {
        if self.ran_here.contains(&step.id.value) {
            return None;
        }
        self.cx.events.state().step(&step.id.value).cloned()
    }

    /// The step was done by an earlier process (resume does not run it again).
    fn done_before(&self, step: &Step) -> bool {
        // The run state first: a step not run yet (every step of a fresh run) is not
        // in it, and the set of steps run here is not looked up at all.
        self.cx
            .events
            .state()
            .step(&step.id.value)
            .is_some_and(StepState::is_done)
            && !self.ran_here.contains(&step.id.value)
    }
}

impl Ctx<'_> {
    /// Record a step's outcome under `steps.ID` for later conditions and templates.
    pub(crate) fn set_step_var(&mut self, id: &str, status: &str, result: Value) {
        if let Some(Value::Object(steps)) = self.vars.get_mut("steps") {
            steps.insert(id.to_string(), step_var(status, result));
        }
    }
}

fn continues(step: &Step) -> bool {
    matches!(
        step.on_failure.as_ref().map(|o| &o.value),
        Some(OnFailure::Policy(FailurePolicy::Continue))
    )
}

fn step_var(status: &str, result: Value) -> Value {
    let mut m = Map::new();
    m.insert("status".into(), Value::String(status.into()));
    m.insert("result".into(), result);
    Value::Object(m)
}

pub(crate) fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Failed => "failed",
        Outcome::Skipped => "skipped",
        Outcome::NotApplicable => "not_applicable",
        Outcome::Unknown => "unknown",
        Outcome::TimedOut => "timed_out",
        Outcome::Aborted => "aborted",
    }
}

/// A saved value as journaled: inline, or `{"$output_file": "outputs/…"}` when it was
/// too large and lives in a side file.
fn load_saved(run_dir: &Path, value: &Value) -> Value {
    if let Some(file) = value.get("$output_file").and_then(Value::as_str)
        && let Some(bytes) = SideFiles::read(run_dir, file)
        && let Ok(v) = serde_json::from_slice(&bytes)
    {
        return v;
    }
    value.clone()
}

/// Where secret params come from besides `-p` (which shows in `ps` and shell
/// history): files named with `--secret-file NAME=PATH` and `RUNBOOK_SECRET_<NAME>`
/// environment variables. The CLI reads them; the engine only picks.
#[derive(Debug, Clone, Default)]
pub struct SecretInputs {
    /// `(param name, file content with its trailing newline trimmed, path)`.
    pub files: Vec<(String, String, String)>,
    /// Every `RUNBOOK_SECRET_*` environment variable, by its full name.
    pub env: std::collections::BTreeMap<String, String>,
}

/// Where non-secret ways of giving params besides `-p name=value` put them: `-p
/// @FILE` (a YAML/JSON mapping of params) and `RUNBOOK_PARAM_<NAME>` environment
/// variables. The CLI reads them (only for `run`: a resumed run keeps its params);
/// the engine picks, `-p` first, then the files, then the environment, then the
/// default.
#[derive(Debug, Clone, Default)]
pub struct ParamInputs {
    /// `(param name, value as the file typed it, "FILE:LINE:COL")`, in the order given.
    pub files: Vec<(String, Value, String)>,
    /// Every `RUNBOOK_PARAM_*` environment variable, by its full name.
    pub env: std::collections::BTreeMap<String, String>,
}

/// The environment variable a param is read from: `RUNBOOK_PARAM_` and the param's
/// name upper-cased (`-` and `.` as `_`), like [`secret_env_var`].
pub fn param_env_var(param: &str) -> String {
    let mut var = secret_env_var(param);
    var.replace_range(.."RUNBOOK_SECRET".len(), "RUNBOOK_PARAM");
    var
}

/// The environment variable a secret param is read from: `RUNBOOK_SECRET_` and the
/// param's name upper-cased (`-` and `.` as `_`).
pub fn secret_env_var(param: &str) -> String {
    let name: String = param
        .chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect();
    format!("RUNBOOK_SECRET_{name}")
}

/// A secret param's value and where it came from.
#[derive(Debug, Clone)]
pub(crate) struct SecretParam {
    pub name: String,
    pub value: String,
    /// `-p`, `--secret-file`, `env RUNBOOK_SECRET_X` or `default`: journaled in the
    /// reference, so resume can say where to give it again.
    pub from: String,
}

/// Params as a run uses them, as the journal keeps them, and the secrets.
pub(crate) struct ResolvedParams {
    pub params: Map<String, Value>,
    pub journaled: Map<String, Value>,
    pub secrets: Vec<SecretParam>,
}

impl ResolvedParams {
    pub(crate) fn secret_values(&self) -> Vec<String> {
        self.secrets.iter().map(|s| s.value.clone()).collect()
    }
}

/// What the journal keeps of a secret param: a reference, never its value (nor a
/// rewritten copy of it).
fn secret_ref(name: &str, from: &str) -> Value {
    serde_json::json!({ "$secret": name, "from": from })
}

/// True for a journaled param value that stands for a secret: a reference, or the
/// `"***"` of journals written before references.
pub(crate) fn is_secret_ref(v: &Value) -> bool {
    v.get("$secret").is_some() || v.as_str() == Some("***")
}

/// A secret param's value from `--secret-file`, then the environment (`-p` is looked
/// up by the caller first).
fn secret_from_inputs(name: &str, inputs: &SecretInputs) -> Option<(String, String)> {
    if let Some((_, v, _)) = inputs.files.iter().rev().find(|(n, _, _)| n == name) {
        return Some((v.clone(), "--secret-file".to_string()));
    }
    let var = secret_env_var(name);
    inputs
        .env
        .get(&var)
        .map(|v| (v.clone(), format!("env {var}")))
}

/// How to give a secret param, for error messages.
fn how_to_give(name: &str) -> String {
    format!(
        "set {}=..., or pass --secret-file {name}=PATH (or -p {name}=..., which shows in `ps`)",
        secret_env_var(name)
    )
}

/// `--secret-file` may only name params marked `secret: true`.
fn check_secret_files(rb: &Runbook, inputs: &SecretInputs) -> Result<(), EngineError> {
    for (name, _, path) in &inputs.files {
        match rb.params.get(name) {
            Some(p) if p.secret => {}
            Some(_) => {
                return Err(EngineError::Params(format!(
                    "--secret-file {name}={path}: `{name}` is not marked `secret: true` in the runbook; give it with -p {name}=..."
                )));
            }
            None => {
                return Err(EngineError::Params(format!(
                    "--secret-file {name}={path}: unknown parameter `{name}`"
                )));
            }
        }
    }
    Ok(())
}

/// A value of the wrong type: "`threshold` takes an integer; got `abc` (from -p)".
/// A secret's value is not repeated.
fn param_error(p: &Param, name: &str, e: &str, from: &str) -> EngineError {
    let e = if p.secret {
        e.split("; got").next().unwrap_or(e)
    } else {
        e
    };
    EngineError::Params(format!("`{name}` {e} (from {from})"))
}

/// Params from `-p`, `-p @FILE`, the environment, secret sources and defaults.
pub(crate) fn resolve_params(
    rb: &Runbook,
    given: &[(String, String)],
    inputs: &SecretInputs,
    param_inputs: &ParamInputs,
) -> Result<ResolvedParams, EngineError> {
    check_secret_files(rb, inputs)?;
    for (name, _, at) in &param_inputs.files {
        if !rb.params.contains_key(name) {
            let known: Vec<&str> = rb.params.keys().map(String::as_str).collect();
            let hint = crate::runbook::diag::suggest(name, known.iter().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            return Err(EngineError::Params(format!(
                "{at}: unknown parameter `{name}` (this runbook takes: {}){hint}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
    }
    let mut out = Map::new();
    let mut from_p = HashSet::new();
    for (name, value) in given {
        let Some(p) = rb.params.get(name) else {
            let known: Vec<&str> = rb.params.keys().map(String::as_str).collect();
            return Err(EngineError::Params(format!(
                "unknown parameter `{name}` (this runbook takes: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        };
        let typed = p
            .value_from_text(value)
            .map_err(|e| param_error(p, name, &e, "-p"))?;
        out.insert(name.clone(), typed);
        from_p.insert(name.clone());
    }
    let mut secrets = Vec::new();
    let mut journaled = Map::new();
    for (name, p) in &rb.params {
        let mut from = if from_p.contains(name) { "-p" } else { "" }.to_string();
        if !out.contains_key(name) {
            let secret = p.secret.then(|| secret_from_inputs(name, inputs)).flatten();
            let in_file = param_inputs.files.iter().rev().find(|(n, _, _)| n == name);
            let env_var = param_env_var(name);
            if let Some((v, src)) = secret {
                let typed = p
                    .value_from_text(&v)
                    .map_err(|e| param_error(p, name, &e, &src))?;
                out.insert(name.clone(), typed);
                from = src;
            } else if let Some((_, v, at)) = in_file {
                let typed = p.check_value(v).map_err(|e| param_error(p, name, &e, at))?;
                out.insert(name.clone(), typed);
                from = at.clone();
            } else if let Some(v) = param_inputs.env.get(&env_var) {
                let typed = p
                    .value_from_text(v)
                    .map_err(|e| param_error(p, name, &e, &format!("env {env_var}")))?;
                out.insert(name.clone(), typed);
                from = format!("env {env_var}");
            } else {
                match &p.default {
                    Some(d) => {
                        // Lint checked that the default fits; this gives it the
                        // param's form (a `number`'s `80` is the double 80.0).
                        let typed = p.check_value(&d.value).unwrap_or_else(|_| d.value.clone());
                        out.insert(name.clone(), typed);
                        from = "default".into();
                    }
                    None if p.required && p.secret => {
                        return Err(EngineError::Params(format!(
                            "secret parameter `{name}` is required: {}",
                            how_to_give(name)
                        )));
                    }
                    None if p.required => {
                        return Err(EngineError::Params(format!(
                            "parameter `{name}` is required: give it with -p {name}=..."
                        )));
                    }
                    None => {}
                }
            }
        }
        let Some(v) = out.get(name) else { continue };
        if p.secret {
            secrets.push(SecretParam {
                name: name.clone(),
                value: match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
                from: from.clone(),
            });
            journaled.insert(name.clone(), secret_ref(name, &from));
        } else {
            journaled.insert(name.clone(), v.clone());
        }
    }
    Ok(ResolvedParams {
        params: out,
        journaled,
        secrets,
    })
}

/// The params of a resumed run: the journal's, with each secret read again from
/// `-p`, `--secret-file` or the environment (a secret that came from the runbook's
/// default comes from it again). Only secret params may be given on resume.
fn resume_params(
    rb: &Runbook,
    journaled: &Map<String, Value>,
    opts: &EngineOpts,
) -> Result<(Map<String, Value>, Vec<SecretParam>), EngineError> {
    check_secret_files(rb, &opts.secrets)?;
    if let Some((n, _)) = opts
        .params
        .iter()
        .find(|(n, _)| !rb.params.get(n).is_some_and(|p| p.secret))
    {
        return Err(EngineError::Params(format!(
            "`{n}` cannot be changed on resume: a run keeps the params it started with (only secret params are given again)"
        )));
    }
    let mut params = journaled.clone();
    let mut secrets = Vec::new();
    for (name, p) in &rb.params {
        if !p.secret {
            continue;
        }
        let Some(stored) = journaled.get(name) else {
            continue;
        };
        if !is_secret_ref(stored) {
            // Journaled in the clear by a build that did not know it was secret: keep
            // what ran, and mask it.
            secrets.push(SecretParam {
                name: name.clone(),
                value: stored
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| stored.to_string()),
                from: "journal".into(),
            });
            continue;
        }
        let was_from = stored.get("from").and_then(Value::as_str).unwrap_or("");
        let found = match opts.params.iter().rev().find(|(n, _)| n == name) {
            Some((_, v)) => Some((v.clone(), "-p".to_string())),
            None => secret_from_inputs(name, &opts.secrets),
        }
        .or_else(|| {
            (was_from == "default")
                .then_some(p.default.as_ref())
                .flatten()
                .map(|d| {
                    (
                        d.value
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| d.value.to_string()),
                        "default".to_string(),
                    )
                })
        });
        let Some((value, from)) = found else {
            let then = if was_from.is_empty() {
                String::new()
            } else {
                format!(" (the run got it from {was_from})")
            };
            return Err(EngineError::Params(format!(
                "secret parameter `{name}` is not kept in the journal{then}; give it again: {}",
                how_to_give(name)
            )));
        };
        params.insert(name.clone(), Value::String(value.clone()));
        secrets.push(SecretParam {
            name: name.clone(),
            value,
            from,
        });
    }
    Ok((params, secrets))
}

/// Warn, before the first step, about secrets given where they show (`-p`) and
/// secrets too short to be masked inside text.
fn warn_about_secrets(opts: &EngineOpts, secrets: &[SecretParam]) {
    for s in secrets {
        if s.from == "-p" {
            opts.printer.line(&format!(
                "warning: secret parameter `{}` was given with -p, which shows in `ps` and shell history; prefer {} or --secret-file {}=PATH",
                s.name,
                secret_env_var(&s.name),
                s.name
            ));
        }
        if !s.value.is_empty() && s.value.chars().count() < super::redact::MIN_MASKABLE {
            opts.printer.line(&format!(
                "warning: secret parameter `{}` is shorter than {} characters: it is masked only where a whole value equals it, not inside other text",
                s.name,
                super::redact::MIN_MASKABLE
            ));
        }
    }
}

/// The runbook as the journal names it; `title` is the rendered one.
fn runbook_ref(loaded: &crate::runbook::Loaded, title: &str, git: Option<GitInfo>) -> RunbookRef {
    let untracked = matches!(git, Some(GitInfo::Untracked));
    RunbookRef {
        name: loaded.runbook.name.value.clone(),
        title: title.to_owned(),
        path: loaded.path.display().to_string(),
        sha256: sha256_hex(loaded.source.as_bytes()),
        git: match git {
            Some(GitInfo::Tracked(g)) => Some(g),
            _ => None,
        },
        untracked,
        step_digests: step_digests(&loaded.runbook),
    }
}

/// sha256 of each step's definition (handlers included) as the model parses it, so
/// comments, formatting and line numbers do not count.
fn step_digests(rb: &Runbook) -> std::collections::BTreeMap<String, String> {
    rb.steps
        .iter()
        .chain(&rb.handlers)
        .map(|s| {
            let json = serde_json::to_vec(s).unwrap_or_default();
            (s.id.value.clone(), sha256_hex(&json))
        })
        .collect()
}

/// The steps not yet done that an edit added, changed (another digest) or removed:
/// the new file's steps in order, then the removed ones by id.
fn changed_steps(
    old: &std::collections::BTreeMap<String, String>,
    new: &std::collections::BTreeMap<String, String>,
    rb: &Runbook,
    r: &RunState,
) -> Vec<event::StepChange> {
    let done = |id: &str| r.step(id).is_some_and(StepState::is_done);
    let change = |step: &str, change: &str| event::StepChange {
        step: step.to_owned(),
        change: change.to_owned(),
    };
    let mut changes = Vec::new();
    for step in rb.steps.iter().chain(&rb.handlers) {
        let id = step.id.value.as_str();
        if done(id) {
            continue;
        }
        match old.get(id) {
            None => changes.push(change(id, "added")),
            Some(d) if Some(d) != new.get(id) => changes.push(change(id, "changed")),
            Some(_) => {}
        }
    }
    for id in old.keys() {
        if !done(id) && !new.contains_key(id) {
            changes.push(change(id, "removed"));
        }
    }
    changes
}

pub(crate) use crate::journal::digest::sha256_hex;

pub(super) fn host() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// [`git_ref`] on tokio's blocking pool: it waits for two `git` processes, which must
/// not stall the runtime's only thread (`engine_runtime` is current-thread).
async fn git_ref_off_thread(path: &Path) -> Option<GitInfo> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || git_ref(&path))
        .await
        .ok()
        .flatten()
}

/// What git says about a runbook file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitInfo {
    /// Tracked: the commit, and whether the file differs from it.
    Tracked(GitRef),
    /// In a repository that does not track it: no commit has this file.
    Untracked,
}

/// The git commit the runbook file is at and whether it differs from it, or that git
/// does not track it. Runs `git` (metadata only, before the first step); `None`
/// outside a repository.
pub fn git_ref(path: &Path) -> Option<GitInfo> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file = path.file_name()?;
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let commit = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // `ls-files --error-unmatch` fails for a file the index does not have: an
    // untracked file must not be recorded "at commit X (with changes)" as if X had it.
    let tracked = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["ls-files", "--error-unmatch", "--"])
        .arg(file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?;
    if !tracked.success() {
        return Some(GitInfo::Untracked);
    }
    let status = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["status", "--porcelain", "--"])
        .arg(file)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    Some(GitInfo::Tracked(GitRef {
        commit,
        dirty: !status.stdout.is_empty(),
    }))
}
