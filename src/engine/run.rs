//! Starting, resuming and finishing a run; the loop over steps.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::events::{Events, Reporter};
use super::record::Recorder;
use super::steps::End;
use super::{Approver, Clock, EngineError, EngineOpts, RunReport};
use crate::journal::event::{self, Event, GitRef, Outcome, RunStatus, RunbookRef};
use crate::journal::state::{RunState, StepState};
use crate::journal::{reader, writer::Writer};
use crate::providers::Providers;
use crate::runbook::model::{FailurePolicy, OnFailure, Runbook, Step};
use crate::store::{DirStore, RunStore, SideFiles};

/// A run in progress: everything the step functions need.
pub(crate) struct Engine<'r> {
    pub rb: &'r Runbook,
    pub providers: Providers,
    pub approver: Arc<dyn Approver>,
    pub clock: Arc<dyn Clock>,
    /// The event stream: journal, run state, reporters.
    pub events: Events,
    pub opts: EngineOpts,
    pub cancel: CancellationToken,
    pub run_id: String,
    /// `params`, saved values and `steps`.
    pub vars: Map<String, Value>,
    /// Steps this process started: what the run state says about any other step
    /// comes from an earlier process (resume), and is what this one continues from.
    pub ran_here: HashSet<String>,
    /// The rung that fixed the current step's ladder, for its `step_finished`.
    pub fixed_by: Option<String>,
}

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
    let (params, secrets) = resolve_params(rb, &opts.params)?;
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
    let journaled_params = redact_params(rb, &params);
    let events = Events::new(rec, RunState::default(), reporters(&opts));
    events.emit(
        Event::RunStarted {
            format: event::FORMAT,
            run_id: run_id.clone(),
            runbook: runbook_ref(loaded, git),
            params: journaled_params,
            operator: opts.operator.clone(),
            host: host(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            dry_run: opts.dry_run,
        },
        true,
    )?;
    let others = super::siblings::unfinished_runs_of(&DirStore::new(state_dir), &rb.name, &run_id);
    if let Some(text) = super::siblings::warning(&rb.name, &others) {
        eprintln!("warning: {text}");
        let by = "runbook".to_string();
        events.emit(Event::Note { text, by }, false)?;
    }
    let mut vars = Map::new();
    vars.insert("params".into(), Value::Object(params));
    vars.insert("steps".into(), Value::Object(Map::new()));
    let mut engine = Engine {
        rb,
        providers,
        approver,
        clock,
        events,
        opts,
        cancel,
        run_id: run_id.clone(),
        vars,
        ran_here: HashSet::new(),
        fixed_by: None,
    };
    let status = engine.run_steps(now).await?;
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
    if let Some(s) = r.status
        && !matches!(s, RunStatus::Paused | RunStatus::Aborted)
    {
        return Err(EngineError::Finished(
            run_id.to_string(),
            s.as_str().to_string(),
        ));
    }
    let path = PathBuf::from(&r.runbook.path);
    let loaded = crate::runbook::load(&path).map_err(|e| {
        EngineError::Resume(format!("the runbook of this run no longer loads:\n{e}"))
    })?;
    let sha = sha256_hex(loaded.source.as_bytes());
    if sha != r.runbook.sha256 {
        return Err(EngineError::Resume(format!(
            "{} changed since the run started (sha256 {} then, {} now); start a new run",
            path.display(),
            short(&r.runbook.sha256),
            short(&sha)
        )));
    }
    let rb = &loaded.runbook;
    // The journal has every param except secrets, which must be given again.
    let mut params = r.params.clone();
    let mut secrets = Vec::new();
    for (name, p) in &rb.params {
        if !p.secret {
            continue;
        }
        match opts.params.iter().rev().find(|(n, _)| n == name) {
            Some((_, v)) => {
                secrets.push(v.clone());
                params.insert(name.clone(), Value::String(v.clone()));
            }
            None if params.get(name).is_some_and(|v| v == "***") => {
                return Err(EngineError::Params(format!(
                    "secret parameter `{name}` is not kept in the journal; give it again with -p {name}=..."
                )));
            }
            None => {}
        }
    }
    if let Some((n, _)) = opts
        .params
        .iter()
        .find(|(n, _)| !rb.params.get(n).is_some_and(|p| p.secret))
    {
        return Err(EngineError::Params(format!(
            "`{n}` cannot be changed on resume: a run keeps the params it started with (only secret params are given again)"
        )));
    }
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
    let mut engine = Engine {
        rb,
        providers,
        approver,
        clock,
        events,
        opts,
        cancel,
        run_id: run_id.to_string(),
        vars,
        ran_here: HashSet::new(),
        fixed_by: None,
    };
    let status = engine.run_steps(now).await?;
    Ok(report(run_id.to_string(), run_dir, journal, status))
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

impl Engine<'_> {
    /// Run every step not done yet, in order, and journal how the run ended.
    async fn run_steps(
        &mut self,
        t0: chrono::DateTime<chrono::Utc>,
    ) -> Result<RunStatus, EngineError> {
        let rb = self.rb;
        let (status, reason) = 'run: {
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
                        let resume = format!("runbook resume {} --approve {approve}", self.run_id);
                        self.events.emit(
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
        let took = (self.clock.now() - t0).num_milliseconds().max(0) as u64;
        self.events.emit(
            Event::RunFinished {
                status,
                duration_ms: took,
                reason,
            },
            true,
        )?;
        self.events.sync()?;
        Ok(status)
    }

    /// Run the handlers a failing step names; `Some` when one of them pauses or aborts.
    async fn run_handlers(
        &mut self,
        ids: &[String],
    ) -> Result<Option<(RunStatus, Option<String>)>, EngineError> {
        let rb = self.rb;
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
        self.events.state().step(&step.id.value).cloned()
    }

    /// The step was done by an earlier process (resume does not run it again).
    fn done_before(&self, step: &Step) -> bool {
        !self.ran_here.contains(&step.id.value)
            && self
                .events
                .state()
                .step(&step.id.value)
                .is_some_and(StepState::is_done)
    }

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

/// Params from defaults and `-p`; returns the values and the secret values.
pub(crate) fn resolve_params(
    rb: &Runbook,
    given: &[(String, String)],
) -> Result<(Map<String, Value>, Vec<String>), EngineError> {
    let mut out = Map::new();
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
        // A param whose default is not a string (a list, a number) takes JSON.
        let typed = match p.default.as_ref().map(|d| &d.value) {
            Some(d) if !d.is_string() => serde_json::from_str(value).map_err(|e| {
                EngineError::Params(format!("`{name}` takes JSON like its default `{d}`: {e}"))
            })?,
            _ => Value::String(value.clone()),
        };
        p.check_value(&typed)
            .map_err(|e| EngineError::Params(format!("`{name}` {e}")))?;
        out.insert(name.clone(), typed);
    }
    let mut secrets = Vec::new();
    for (name, p) in &rb.params {
        if !out.contains_key(name) {
            match &p.default {
                Some(d) => {
                    out.insert(name.clone(), d.value.clone());
                }
                None if p.required => {
                    return Err(EngineError::Params(format!(
                        "parameter `{name}` is required: give it with -p {name}=..."
                    )));
                }
                None => {}
            }
        }
        if p.secret
            && let Some(v) = out.get(name)
        {
            secrets.push(match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
    }
    Ok((out, secrets))
}

fn redact_params(rb: &Runbook, params: &Map<String, Value>) -> Map<String, Value> {
    params
        .iter()
        .map(|(k, v)| {
            let secret = rb.params.get(k).is_some_and(|p| p.secret);
            (
                k.clone(),
                if secret {
                    Value::String("***".into())
                } else {
                    v.clone()
                },
            )
        })
        .collect()
}

fn runbook_ref(loaded: &crate::runbook::Loaded, git: Option<GitRef>) -> RunbookRef {
    RunbookRef {
        name: loaded.runbook.name.value.clone(),
        title: loaded.runbook.title.value.clone(),
        path: loaded.path.display().to_string(),
        sha256: sha256_hex(loaded.source.as_bytes()),
        git,
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn short(s: &str) -> &str {
    s.get(..12).unwrap_or(s)
}

fn host() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// [`git_ref`] on tokio's blocking pool: it waits for two `git` processes, which must
/// not stall the runtime's only thread (`engine_runtime` is current-thread).
async fn git_ref_off_thread(path: &Path) -> Option<GitRef> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || git_ref(&path))
        .await
        .ok()
        .flatten()
}

/// The git commit the runbook file is at, and whether it differs from it. Runs `git`
/// (metadata only, before the first step); `None` outside a repository.
pub fn git_ref(path: &Path) -> Option<GitRef> {
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
    let status = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["status", "--porcelain", "--"])
        .arg(file)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    Some(GitRef {
        commit,
        dirty: !status.stdout.is_empty(),
    })
}
