//! The engine: a state machine over a runbook's steps.
//!
//! It never touches the outside world itself. Operations go through
//! [`crate::providers::Provider`]s, decisions of people through an [`Approver`], time
//! through a [`Clock`], and every event goes through one stream ([`events`]): the
//! journal first (written before the engine acts on it), then the run state, then
//! reporters such as the console. So the same engine runs a real incident (`runbook run`), the
//! embedded lab (`runbook demo`, `runbook test`, with a virtual clock and an
//! [`AutoApprover`]) and its own tests (scripted providers, milliseconds per run).
//!
//! Where a run lives (its id, folder, lock and side files) is the run store's business
//! ([`crate::store`]); the journal is the single source of truth, and [`resume`]
//! rebuilds the state from the journal alone.

mod approve;
mod clock;
mod console;
mod ctx;
mod events;
pub mod external;
mod gate;
mod handlers;
mod keep;
mod lock;
mod ops;
mod record;
mod redact;
mod run;
mod siblings;
mod state;
mod steps;
mod titles;
mod undo;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use approve::{
    Approver, AutoApprover, FlagApprover, GateAnswer, GateRequest, ManualAnswer, ManualRequest,
    PromptApprover,
};
pub use clock::{Clock, SystemClock};
pub use console::{Printer, PrinterOpts, human as human_duration};
pub use events::{BarId, BarKind, BarUpdate, JsonLines, Notice, Progress, Quiet, Reporter};
pub use external::{Submission, SubmitError, Submitted, Verdict, submit_decision};
pub use run::{ParamInputs, SecretInputs, git_ref, param_env_var, secret_env_var};
pub use state::{RunSummary, list_runs, new_run_id};

use crate::journal::event::{KubeTarget, RunStatus};
use crate::providers::{Defaults, Providers};

/// Everything about a run that is not the runbook, the providers, the approver or the
/// clock.
#[derive(Clone)]
pub struct EngineOpts {
    /// Run checks, print the plan of every action, perform nothing mutating.
    pub dry_run: bool,
    /// Who runs it (`$USER` or `--operator`); journaled.
    pub operator: String,
    /// Provider defaults (namespace, working directory).
    pub defaults: Defaults,
    /// `-p name=value` pairs, in the order given. On resume only secret params are
    /// read from here (the journal has every other value).
    pub params: Vec<(String, String)>,
    /// Secret params from `--secret-file` and `RUNBOOK_SECRET_*` (not argv).
    pub secrets: SecretInputs,
    /// Params from `-p @FILE` and `RUNBOOK_PARAM_*` (a new run only: a resumed run
    /// keeps the params it started with).
    pub param_inputs: ParamInputs,
    /// The console reporter: where console lines, plans and progress bars go. It
    /// hears the run's events after the journal has them, before `reporters`.
    pub printer: Arc<Printer>,
    /// Further consumers of the run's events, after the console, in order.
    pub reporters: Vec<Arc<dyn Reporter>>,
    /// `for_each` items run at once when the step says nothing (default 8).
    pub default_concurrency: usize,
    /// Results larger than this many bytes (serialized) go to a side file; the journal
    /// keeps a truncated copy.
    pub max_inline_output: usize,
    /// The cluster the kube provider is connected to, when it is: `run` journals it,
    /// `resume` refuses to continue a run on another one, and a kube plan's digest
    /// covers it (an approval is of an action on one cluster).
    pub target: Option<KubeTarget>,
    /// `resume --retry-failed`: a failed run continues from the step that failed it.
    pub retry_failed: bool,
    /// `resume --accept-changes`: continue a run whose runbook file was edited (the
    /// change is journaled as `runbook_changed`); without it such a resume is refused.
    pub accept_changes: bool,
    /// `resume --rerun-unknown`: continue although the process group of an action
    /// whose outcome is unknown still runs (journaled as a note naming the operator);
    /// without it such a resume is refused.
    pub rerun_unknown: bool,
    /// `run --incident-start`: when users were first affected, journaled as
    /// `incident_start` right after `run_started`.
    pub incident_start: Option<chrono::DateTime<chrono::Utc>>,
    /// Where `incident_start` came from when not from the operator (`scenario`,
    /// `alert`): journaled as its `source`.
    pub incident_start_source: Option<String>,
    /// Notes journaled right after `run_started` (text, by): what started the run
    /// when it was not a person at a terminal (`runbook serve`: the alert).
    pub notes: Vec<(String, String)>,
    /// `runbook undo RUN [STEP]`: instead of continuing the run's steps, run the
    /// `undo:` of its completed actions (or of STEP only), newest first.
    pub undo: Option<UndoRequest>,
}

/// What `runbook undo` undoes.
#[derive(Debug, Clone, Default)]
pub struct UndoRequest {
    /// One step's undo only; `None`: every completed action's, newest first.
    pub step: Option<String>,
}

impl EngineOpts {
    pub fn new(operator: impl Into<String>, printer: Arc<Printer>) -> EngineOpts {
        EngineOpts {
            dry_run: false,
            operator: operator.into(),
            defaults: Defaults::default(),
            params: Vec::new(),
            secrets: SecretInputs::default(),
            param_inputs: ParamInputs::default(),
            printer,
            reporters: Vec::new(),
            default_concurrency: 8,
            max_inline_output: 16 * 1024,
            target: None,
            retry_failed: false,
            accept_changes: false,
            rerun_unknown: false,
            incident_start: None,
            incident_start_source: None,
            notes: Vec::new(),
            undo: None,
        }
    }
}

impl std::fmt::Debug for EngineOpts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineOpts")
            .field("dry_run", &self.dry_run)
            .field("operator", &self.operator)
            .field("defaults", &self.defaults)
            .finish_non_exhaustive()
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub run_id: String,
    pub run_dir: PathBuf,
    pub journal: PathBuf,
    pub status: RunStatus,
    /// The process exit code for this status ([`crate::exit`]).
    pub exit_code: i32,
}

/// Why a run could not start or continue. Failures *of steps* are not errors: they end
/// the run with a status and are in the journal.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Params(String),
    #[error("{0}")]
    Journal(String),
    #[error("run {0} not found (see `runbook runs`)")]
    NoSuchRun(String),
    #[error("run {run_id} is in use by another process (lock {lock})")]
    Locked { run_id: String, lock: PathBuf },
    #[error("run {0} has already finished ({1}); there is nothing to resume")]
    Finished(String, String),
    #[error("cannot resume: {0}")]
    Resume(String),
    /// A provider could not be set up (e.g. no cluster reachable for kube steps).
    #[error("{0}")]
    Setup(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// The journal or a file of the run could not be written: a full disk, a quota,
    /// permissions. The message says what to free (exit 74, not "a bug").
    #[error("cannot write {}: {source}{}", path.display(), crate::exit::io_hint(source, path))]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl EngineError {
    /// The exit code the binary should use for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            EngineError::Params(_)
            | EngineError::NoSuchRun(_)
            | EngineError::Finished(..)
            | EngineError::Resume(_)
            | EngineError::Locked { .. }
            | EngineError::Setup(_) => crate::exit::USAGE,
            EngineError::Io { .. } | EngineError::Write { .. } => crate::exit::IO_ERROR,
            EngineError::Journal(_) => crate::exit::INTERNAL,
        }
    }
}

/// The exit code of a final status.
pub fn exit_code(status: RunStatus) -> i32 {
    match status {
        RunStatus::Succeeded => crate::exit::OK,
        RunStatus::Failed => crate::exit::FAILED,
        RunStatus::Aborted => crate::exit::ABORTED,
        RunStatus::NotApplicable => crate::exit::NOT_APPLICABLE,
        RunStatus::Paused => crate::exit::PAUSED,
    }
}

/// Execute a validated runbook as a new run under `state_dir`.
pub async fn run(
    loaded: &crate::runbook::Loaded,
    providers: Providers,
    approver: Arc<dyn Approver>,
    clock: Arc<dyn Clock>,
    state_dir: &Path,
    opts: EngineOpts,
    cancel: CancellationToken,
) -> Result<RunReport, EngineError> {
    // Conditions read `now` from the run's clock (the lab's in `demo` and `test`).
    let scope = Arc::clone(&clock);
    crate::expr::with_clock(
        scope,
        run::start(loaded, providers, approver, clock, state_dir, opts, cancel),
    )
    .await
}

/// Continue a paused or interrupted run from its journal: completed steps are not run
/// again; an action whose result was never journaled is re-verified before anything
/// is retried.
pub async fn resume(
    state_dir: &Path,
    run_id: &str,
    providers: Providers,
    approver: Arc<dyn Approver>,
    clock: Arc<dyn Clock>,
    opts: EngineOpts,
    cancel: CancellationToken,
) -> Result<RunReport, EngineError> {
    let scope = Arc::clone(&clock);
    crate::expr::with_clock(
        scope,
        run::resume(state_dir, run_id, providers, approver, clock, opts, cancel),
    )
    .await
}

/// The folder of a run.
pub fn run_dir(state_dir: &Path, run_id: &str) -> PathBuf {
    crate::store::DirStore::new(state_dir).run_dir(run_id)
}

/// The journal of a run.
pub fn journal_path(state_dir: &Path, run_id: &str) -> PathBuf {
    crate::store::RunStore::journal_path(&crate::store::DirStore::new(state_dir), run_id)
}
