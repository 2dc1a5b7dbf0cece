//! `runbook run FILE` and `runbook resume RUN_ID`: turn flags into engine options,
//! providers and an approver, handle Ctrl-C, and map the run's status to an exit code.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Global;
use crate::engine::{
    self, Approver, EngineOpts, FlagApprover, Printer, PrinterOpts, PromptApprover, RunReport,
    SystemClock,
};
use crate::exit;
use crate::notify::{self, Notifier};
use crate::providers::{self, Providers};
use crate::store::{DirStore, RunStore};

/// Flags shared by `run` and `resume`: who approves what, and how to reach clusters.
#[derive(Debug, Clone, clap::Args)]
pub struct ApprovalArgs {
    /// Approve every gate.
    #[arg(long)]
    pub yes: bool,
    /// Approve the gate of this step (repeatable).
    #[arg(long = "approve", value_name = "STEP_ID")]
    pub approve: Vec<String>,
    /// At a gate nobody here answers, wait (up to TIMEOUT, e.g. `30m`; without it,
    /// until answered) for a decision from another terminal (`runbook approve RUN
    /// ID`) instead of pausing. A `gate: { approvals: N }` waits for the others too.
    #[arg(
        long,
        value_name = "TIMEOUT",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "forever",
        value_parser = parse_wait
    )]
    pub wait_for_approval: Option<std::time::Duration>,
    /// Who does it, journaled with every approval (default: $USER, then the login
    /// name, then `git config user.email`).
    #[arg(long, env = "RUNBOOK_OPERATOR")]
    pub operator: Option<String>,
    /// Write the postmortem to this file when the run ends (and its impact chart beside
    /// it, FILE's name .impact.svg, when the run asked Prometheus).
    #[arg(long, value_name = "FILE")]
    pub postmortem: Option<PathBuf>,
    /// Stream every journaled event as one JSON line on stdout (the journal's own
    /// lines, secrets redacted), instead of printing only the run id there.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub events: Option<EventsFormat>,
    /// Tell this webhook when the run starts, waits for a person, fails or ends
    /// (repeatable; in addition to the runbook's `notify:`). A generic JSON webhook,
    /// or Slack's format for https://hooks.slack.com/… URLs.
    #[arg(long = "notify", value_name = "URL")]
    pub notify: Vec<String>,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// `--events FORMAT`: how the event stream is written on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EventsFormat {
    // One JSON object per line, as in the journal (no doc comment: clap would switch
    // the help of `run` and `resume` to its long form).
    Json,
}

/// How to reach Kubernetes, the way kubectl does it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KubeArgs {
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context.
    #[arg(long)]
    pub context: Option<String>,
    /// Default namespace for kube steps that name none.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Client-side limit of Kubernetes API requests per second (0 = unlimited).
    #[arg(long, default_value_t = 20.0, value_parser = crate::providers::kube::parse_qps)]
    pub kube_qps: f64,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  runbook run runbooks/hub-pvc-locked.yaml -p namespace=hub
  runbook run rb.yaml -p @incident.yaml -p ns=hub  params from a YAML/JSON file, -p wins
  RUNBOOK_PARAM_NS=hub runbook run rb.yaml         params from the environment
  runbook run rb.yaml --dry-run                    checks and plans, changes nothing
  runbook run rb.yaml --approve scale-down          approve one gate; others pause (exit 3)
  id=$(runbook run rb.yaml --yes)                   the run id is the only line on stdout
  runbook run rb.yaml --yes --events json | jq -c 'select(.event == \"step_finished\")'")]
pub struct RunArgs {
    /// The runbook file.
    pub file: PathBuf,
    /// A parameter, as name=value, or @FILE: a YAML/JSON mapping of params
    /// (repeatable). Also RUNBOOK_PARAM_<NAME>; -p wins over @FILE, which wins over
    /// the environment, which wins over the default.
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE|@FILE")]
    pub params: Vec<String>,
    /// A secret parameter from a file's content (trailing newline trimmed), as
    /// name=path (repeatable); or set RUNBOOK_SECRET_<NAME>. Neither shows in `ps`.
    #[arg(long = "secret-file", value_name = "NAME=PATH")]
    pub secret_files: Vec<String>,
    /// Run the checks and print the plan of every action without performing it.
    #[arg(long)]
    pub dry_run: bool,
    /// When users were first affected, journaled for the postmortem's time to detect
    /// and to mitigate: RFC 3339, `YYYY-MM-DD HH:MM[:SS]` or `HH:MM` (today) in UTC,
    /// or `-45m` (before now).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub incident_start: Option<String>,
    #[command(flatten)]
    pub approval: ApprovalArgs,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  runbook resume last --approve scale-down
  runbook resume 7f3a --yes
  runbook resume 7f3a --accept-changes             continue with the edited runbook
  runbook resume 7f3a -p token=$TOKEN              secrets are not journaled: give them again")]
pub struct ResumeArgs {
    /// The run to continue: its id, a unique prefix of it, or `last` (see `runbook runs`).
    pub run_id: String,
    /// A secret parameter, as name=value: secrets are not kept in the journal, so a
    /// run that has them needs them again (repeatable). Prefer `--secret-file` or
    /// `RUNBOOK_SECRET_<NAME>`, which do not show in `ps`.
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// A secret parameter from a file's content (trailing newline trimmed), as
    /// name=path (repeatable); or set RUNBOOK_SECRET_<NAME>.
    #[arg(long = "secret-file", value_name = "NAME=PATH")]
    pub secret_files: Vec<String>,
    /// Resume a failed run: the step that failed it runs again (completed steps are
    /// not repeated; the retry is journaled).
    #[arg(long)]
    pub retry_failed: bool,
    /// Continue although the runbook file was edited since the run started: the old
    /// and new sha256 and the steps not yet run that changed are journaled, and the
    /// gates of changed plans ask again.
    #[arg(long)]
    pub accept_changes: bool,
    /// Continue although the process group of an action whose outcome is unknown
    /// (the run was killed while it ran) still runs: the action may run a second
    /// time next to the first. Journaled as a note naming you.
    #[arg(long)]
    pub rerun_unknown: bool,
    #[command(flatten)]
    pub approval: ApprovalArgs,
}

pub fn run(args: RunArgs, g: &Global) -> i32 {
    // The whole file is validated exactly as `lint` does before anything starts.
    let loaded = match crate::runbook::load(&args.file) {
        Ok(l) => l,
        Err(e) => {
            crate::cli::print_error(&e.to_string());
            eprintln!("the runbook did not start: fix the errors above (see `runbook lint`)");
            return exit::USAGE;
        }
    };
    let (params, param_files) = match parse_params(&args.params) {
        Ok(p) => p,
        Err(e) => {
            crate::cli::error_line!("error: {e}");
            return exit::USAGE;
        }
    };
    let param_inputs = match param_inputs(&param_files) {
        Ok(p) => p,
        Err(e) => {
            crate::cli::print_error(&e.to_string());
            return exit::USAGE;
        }
    };
    if let Err(e) = check_approvals(&args.approval.approve, &loaded.runbook) {
        crate::cli::error_line!("error: {e}");
        return exit::USAGE;
    }
    let incident_start = match args.incident_start.as_deref().map(parse_incident_start) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let base_dir = match args.file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    // Absolute, so the journaled working directory means the same thing on resume.
    let base_dir = std::fs::canonicalize(&base_dir).unwrap_or(base_dir);
    let secrets = match secret_inputs(&args.secret_files) {
        Ok(s) => s,
        Err(e) => {
            crate::cli::error_line!("error: {e}");
            return exit::USAGE;
        }
    };
    let notifier = match notifier(&args.approval, Some(&loaded.runbook), g) {
        Ok(n) => n,
        Err(e) => {
            crate::cli::error_line!("error: {e}");
            return exit::USAGE;
        }
    };
    let (mut opts, approver) = setup(&args.approval, g, params, base_dir, args.dry_run);
    opts.reporters
        .extend(notifier.as_ref().map(|n| n.reporter()));
    opts.secrets = secrets;
    opts.param_inputs = param_inputs;
    opts.incident_start = incident_start;
    let providers = match build_providers() {
        Ok(p) => p,
        Err(e) => {
            crate::cli::error_line!("error: {e}");
            return exit::INTERNAL;
        }
    };
    let state_dir = g.state_dir.clone();
    let kube_args = args.approval.kube.clone();
    drive(&args.approval, notifier, move |cancel| async move {
        let mut opts = opts;
        let needs_kube = uses_kube(&loaded.runbook);
        let providers = add_kube(
            providers,
            &kube_args,
            loaded.runbook.kube.as_ref(),
            needs_kube,
            &mut opts,
        )
        .await
        .map_err(engine::EngineError::Setup)?;
        engine::run(
            &loaded,
            providers,
            approver,
            Arc::new(SystemClock),
            &state_dir,
            opts,
            cancel,
        )
        .await
    })
}

/// `-p` of a run that continues (`resume`, `undo`): it keeps the params it started
/// with, so only `NAME=VALUE` (secret params given again) is taken, never `@FILE`.
pub(crate) fn continued_params(raw: &[String]) -> Result<Vec<(String, String)>, String> {
    match parse_params(raw)? {
        (_, files) if !files.is_empty() => Err(format!(
            "`-p @{}`: a resumed run keeps the params it started with; only secret params are given again, as -p NAME=VALUE",
            files[0].display()
        )),
        (pairs, _) => Ok(pairs),
    }
}

/// What `resume` and `undo` set up before driving a run on, with the journal read
/// and the runbook loaded once: RUN resolved, a held run refused, `--approve` checked
/// against the run's runbook, secrets read again, the notifier, the engine's options
/// and approver, the providers.
pub(super) struct Continuation {
    pub run_id: String,
    /// The run's state and its runbook as the file reads now (`None` when either
    /// cannot be read: the engine then says why).
    pub found: Option<(crate::journal::state::RunState, crate::runbook::Loaded)>,
    pub opts: EngineOpts,
    pub approver: Arc<dyn Approver>,
    pub notifier: Option<Arc<Notifier>>,
    pub providers: Providers,
}

/// [`Continuation`] for RUN, or the exit code after the error is printed.
pub(super) fn continuation(
    run_id: &str,
    params: &[String],
    secret_files: &[String],
    approval: &ApprovalArgs,
    g: &Global,
) -> Result<Continuation, i32> {
    let usage = |e: String| {
        crate::cli::error_line!("error: {e}");
        exit::USAGE
    };
    let params = continued_params(params).map_err(usage)?;
    let run_id = resolve_run_id(&g.state_dir, run_id).map_err(usage)?;
    check_resume_hold(&g.state_dir, &run_id).map_err(usage)?;
    let journal =
        crate::journal::reader::read(&DirStore::new(&g.state_dir).journal_path(&run_id)).ok();
    let state =
        journal.and_then(|j| crate::journal::state::RunState::from_records(&j.records).ok());
    // The runbook's folder is the working directory of shell steps; the journal
    // names the file.
    let base_dir = state
        .as_ref()
        .map_or_else(|| PathBuf::from("."), |s| runbook_dir(&s.runbook.path));
    let found = state.and_then(|state| {
        let loaded = crate::runbook::load(&PathBuf::from(&state.runbook.path)).ok()?;
        Some((state, loaded))
    });
    let runbook = found.as_ref().map(|(_, l)| &l.runbook);
    if !approval.approve.is_empty()
        && let Some(rb) = runbook
    {
        check_approvals(&approval.approve, rb).map_err(usage)?;
    }
    let secrets = secret_inputs(secret_files).map_err(usage)?;
    let notifier = notifier(approval, runbook, g).map_err(usage)?;
    let (mut opts, approver) = setup(approval, g, params, base_dir, false);
    opts.reporters
        .extend(notifier.as_ref().map(|n| n.reporter()));
    opts.secrets = secrets;
    let providers = build_providers().map_err(|e| {
        crate::cli::error_line!("error: {e}");
        exit::INTERNAL
    })?;
    Ok(Continuation {
        run_id,
        found,
        opts,
        approver,
        notifier,
        providers,
    })
}

pub fn resume(args: ResumeArgs, g: &Global) -> i32 {
    let c = match continuation(
        &args.run_id,
        &args.params,
        &args.secret_files,
        &args.approval,
        g,
    ) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Continuation {
        run_id,
        found,
        mut opts,
        approver,
        notifier,
        providers,
    } = c;
    opts.retry_failed = args.retry_failed;
    opts.accept_changes = args.accept_changes;
    opts.rerun_unknown = args.rerun_unknown;
    let state_dir = g.state_dir.clone();
    let kube_args = args.approval.kube.clone();
    let kube_needed = found
        .as_ref()
        .is_some_and(|(state, loaded)| run_needs_kube(state, &loaded.runbook, args.retry_failed));
    drive(&args.approval, notifier, move |cancel| {
        resume_on_its_cluster(
            Resume {
                state_dir,
                run_id,
                kube_args,
                kube_needed,
                providers,
                approver,
                opts,
            },
            cancel,
            "the run is unchanged",
        )
    })
}

/// What [`resume_on_its_cluster`] continues.
pub(crate) struct Resume {
    pub state_dir: PathBuf,
    pub run_id: String,
    pub kube_args: KubeArgs,
    pub kube_needed: bool,
    pub providers: Providers,
    pub approver: Arc<dyn Approver>,
    pub opts: EngineOpts,
}

/// Continue a run (`resume`, `undo`) connected to its cluster as strictly as `run`:
/// when a step still to run needs a cluster, one that cannot be reached refuses
/// before anything is journaled (exit 2; `unchanged` says what that left as it
/// was). The engine then refuses a cluster other than the run's own
/// (`EngineOpts::target`).
pub(crate) async fn resume_on_its_cluster(
    r: Resume,
    cancel: CancellationToken,
    unchanged: &str,
) -> Result<RunReport, engine::EngineError> {
    let Resume {
        state_dir,
        run_id,
        kube_args,
        kube_needed,
        providers,
        approver,
        mut opts,
    } = r;
    let defaults = kube_defaults_of(&state_dir, &run_id);
    let providers = add_kube(
        providers,
        &kube_args,
        defaults.as_ref(),
        kube_needed,
        &mut opts,
    )
    .await
    .map_err(|e| engine::EngineError::Resume(format!("{e}; {unchanged}")))?;
    engine::resume(
        &state_dir,
        &run_id,
        providers,
        approver,
        Arc::new(SystemClock),
        opts,
        cancel,
    )
    .await
}

/// The notifier of a run: `--notify` URLs and the runbook's `notify:`; `None` when
/// nobody is to be told. A receiver whose environment variable is unset is left out
/// with a warning: a notification never stops the fix.
pub(super) fn notifier(
    a: &ApprovalArgs,
    runbook: Option<&crate::runbook::model::Runbook>,
    g: &Global,
) -> Result<Option<Arc<Notifier>>, String> {
    let (notifier, warnings) =
        notify::for_run(&a.notify, runbook, notify::NotifyOpts::new(&g.state_dir))?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    Ok(notifier)
}

/// The providers of a real run, registered in one place.
pub fn build_providers() -> Result<Providers, String> {
    // The Kubernetes provider needs a runtime to connect: see `add_kube`.
    providers::standard()
}

pub(super) fn setup(
    a: &ApprovalArgs,
    g: &Global,
    params: Vec<(String, String)>,
    base_dir: PathBuf,
    dry_run: bool,
) -> (EngineOpts, Arc<dyn Approver>) {
    let operator = operator_name(a.operator.as_deref());
    let tty = std::io::stderr().is_terminal();
    let printer = Arc::new(Printer::stderr(PrinterOpts {
        tty,
        quiet: g.quiet,
        colour: g.colour(),
    }));
    let mut flags = FlagApprover::new(a.yes, &a.approve, operator.clone());
    if let Some(limit) = a.wait_for_approval {
        flags = flags.waiting(Some(limit));
    }
    let approver: Arc<dyn Approver> = if tty && std::io::stdin().is_terminal() {
        Arc::new(PromptApprover::new(flags, Arc::clone(&printer)))
    } else {
        Arc::new(flags)
    };
    let mut opts = EngineOpts::new(operator, printer);
    if a.events == Some(EventsFormat::Json) {
        opts.reporters.push(Arc::new(engine::JsonLines::stdout()));
    }
    opts.dry_run = dry_run;
    opts.params = params;
    opts.defaults.base_dir = base_dir;
    opts.defaults.namespace = a.kube.namespace.clone();
    (opts, approver)
}

/// Run the engine on a runtime with Ctrl-C wired to the cancellation token: the first
/// cancels the running step cleanly, a second exits at once.
pub(super) fn drive<F, Fut>(a: &ApprovalArgs, notifier: Option<Arc<Notifier>>, f: F) -> i32
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<RunReport, engine::EngineError>>,
{
    let rt = super::engine_runtime();
    let cancel = CancellationToken::new();
    watch_ctrl_c(cancel.clone());
    let result = rt.block_on(f(cancel.clone()));
    // Bounded: a receiver that hangs costs at most the notifier's drain time, and
    // what was not sent is journaled.
    if let Some(n) = notifier {
        n.close();
    }
    // The run is over and its journal durable: the process ends right after this.
    // The runtime is not shut down but left to the exit, which closes its sockets
    // (the kube client's pooled connections) and ends its threads at once: shutting
    // it down dropped each connection's task and closed each socket in turn, 10-20 ms
    // after the run's last event for a 32-connection fan-out. A prompt blocked on
    // stdin does not keep the process alive either way.
    std::mem::forget(rt);
    match result {
        Ok(report) => {
            match &a.postmortem {
                // Every ending writes it: failed, aborted and paused runs too. A file
                // that exists keeps its human-written sections.
                Some(path) => {
                    let opts = crate::render::RenderOpts {
                        chart_file: crate::render::chart_path(path)
                            .file_name()
                            .map(|f| f.to_string_lossy().into_owned()),
                        ..crate::render::RenderOpts::default()
                    };
                    match crate::render::write_run(&report.run_dir, &opts, path) {
                        Ok((_, chart)) => {
                            eprintln!("postmortem written to {}", path.display());
                            if let Some(chart) = chart {
                                eprintln!("impact chart written to {}", chart.display());
                            }
                        }
                        Err(e) => eprintln!(
                            "warning: cannot write the postmortem to {}: {e} (try `runbook postmortem {}`)",
                            path.display(),
                            report.run_id
                        ),
                    }
                }
                None => eprintln!("postmortem: runbook postmortem {}", report.run_id),
            }
            // The one thing on stdout: scripts take the run id from here, not from
            // the human text on stderr. With `--events json` stdout is the event
            // stream only (`run_started` and every other event name the run).
            if a.events.is_none() {
                println!("{}", report.run_id);
            }
            report.exit_code
        }
        Err(e) => {
            crate::cli::error_line!("error: {e}");
            e.exit_code()
        }
    }
}

/// Ctrl-C, SIGTERM and SIGHUP, watched on a thread of its own so that they are heard even
/// while the engine's thread is inside a blocking call (an fsync on a hung disk, a slow
/// write to a pipe). The first of them cancels the running step: the engine kills its
/// process group, journals the step as aborted and the run exits 4, resumable. SIGTERM
/// (a service manager, `kill`) and SIGHUP (the SSH connection dropped mid-incident) get
/// exactly that treatment instead of the default, which ended the process with nothing
/// journaled and the step's processes still running. A second signal of any of the
/// three kills the running steps' process groups and exits at once.
///
/// The handlers are registered before this returns, and one stream per signal hears
/// every delivery: a second signal arriving while the first is being reported is not
/// lost (with two separate `ctrl_c()` futures, one arriving before the second was
/// polled was).
fn watch_ctrl_c(cancel: CancellationToken) {
    let (registered, is_registered) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                    signal(SignalKind::hangup()),
                ) else {
                    return;
                };
                let _ = registered.send(());
                let next =
                    async |int: &mut tokio::signal::unix::Signal,
                           term: &mut tokio::signal::unix::Signal,
                           hup: &mut tokio::signal::unix::Signal| {
                        tokio::select! {
                            Some(()) = int.recv() => "Ctrl-C",
                            Some(()) = term.recv() => "SIGTERM",
                            Some(()) = hup.recv() => "SIGHUP",
                            else => "",
                        }
                    };
                let first = next(&mut int, &mut term, &mut hup).await;
                if first.is_empty() {
                    return;
                }
                if first == "Ctrl-C" {
                    eprintln!(
                        "\naborting: stopping the running step (Ctrl-C again to exit at once)"
                    );
                } else {
                    eprintln!("\naborting on {first}: stopping the running step");
                }
                cancel.cancel();
                if !next(&mut int, &mut term, &mut hup).await.is_empty() {
                    crate::providers::shell::kill_running_groups();
                    std::process::exit(exit::ABORTED);
                }
            });
        });
    match spawned {
        Ok(_) => {
            // Bounded: a thread that failed to build its runtime drops the sender.
            let _ = is_registered.recv_timeout(std::time::Duration::from_secs(5));
        }
        Err(e) => tracing::warn!("cannot watch for signals: {e}"),
    }
}

/// A run named as `runbook postmortem` takes it: its id, `last` (the newest run), or
/// a unique prefix or suffix of an id (see [`RunStore::resolve`]).
pub fn resolve_run_id(state_dir: &std::path::Path, id: &str) -> Result<String, String> {
    DirStore::new(state_dir)
        .resolve(id)
        .map_err(|e| e.to_string())
}

/// `--wait-for-approval[=TIMEOUT]`: a duration (`30m`, `1h30m`), or `forever`.
fn parse_wait(s: &str) -> Result<std::time::Duration, String> {
    if s == "forever" {
        return Ok(std::time::Duration::MAX);
    }
    crate::runbook::model::Duration::parse(s)
        .map(|d| d.0)
        .map_err(|e| {
            format!("{e}; write e.g. `--wait-for-approval=30m`, or no value to wait until answered")
        })
}

/// `--incident-start`: a time in UTC (see [`crate::clock::parse_when`]), not in the
/// future.
fn parse_incident_start(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let now = chrono::Utc::now();
    match crate::clock::parse_when(s, chrono_tz::UTC, now) {
        Some(t) if t <= now => Ok(t),
        Some(t) => Err(format!(
            "--incident-start {s:?} is {} in the future: give when users were first affected, at or before now",
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )),
        None => Err(format!(
            "--incident-start {s:?} is not a time: write 2018-03-13T01:00:00Z, 2018-03-13 01:00 or 14:02 (today, UTC), or -45m (before now)"
        )),
    }
}

/// Who runs it (see [`super::operator`] for the order of sources).
pub use super::operator::operator_name;

/// True when any step, rung, verification or handler has a `kube` operation.
pub(crate) fn uses_kube(rb: &crate::runbook::Runbook) -> bool {
    rb.steps.iter().chain(&rb.handlers).any(|s| {
        s.kube.is_some()
            || s.verification().is_some_and(|v| v.kube.is_some())
            || s.escalate.iter().any(|r| r.kube.is_some())
    })
}

/// Register the Kubernetes provider, connected the way kubectl would be with the same
/// flags; the runbook's `kube:` defaults apply where no flag is given. When the
/// runbook has kube steps (still to run, on resume), the cluster must answer one read
/// (its identity), else this is an error; otherwise an unreachable cluster is not.
///
/// On success the cluster's identity goes into `opts.target` (journaled by `run`,
/// compared by `resume`), and shell steps get `KUBECONFIG` (the file the client read,
/// absolute) and, when a context was chosen, `RUNBOOK_KUBE_CONTEXT`: kubectl has no
/// environment variable for a context, so a shell step that must use the same
/// context passes `--context "$RUNBOOK_KUBE_CONTEXT"` (docs/engine.md).
pub(crate) async fn add_kube(
    providers: Providers,
    args: &KubeArgs,
    defaults: Option<&crate::runbook::model::KubeDefaults>,
    needed: bool,
    opts: &mut EngineOpts,
) -> Result<Providers, String> {
    let from_runbook = |f: fn(
        &crate::runbook::model::KubeDefaults,
    ) -> Option<&crate::runbook::model::Sp<String>>| {
        defaults.and_then(f).map(|v| v.value.clone())
    };
    let connect = providers::kube::KubeConnect {
        kubeconfig: args.kubeconfig.clone(),
        context: args
            .context
            .clone()
            .or_else(|| from_runbook(|d| d.context.as_ref())),
        namespace: args
            .namespace
            .clone()
            .or_else(|| from_runbook(|d| d.namespace.as_ref())),
        qps: args.kube_qps,
    };
    if let Some(k) = &args.kubeconfig {
        let abs = std::path::absolute(k).unwrap_or_else(|_| k.clone());
        opts.defaults
            .env
            .insert("KUBECONFIG".into(), abs.display().to_string());
    }
    if let Some(c) = &connect.context {
        opts.defaults
            .env
            .insert("RUNBOOK_KUBE_CONTEXT".into(), c.clone());
    }
    if !needed {
        // No kube step: the cluster is not contacted, and no target is recorded.
        return Ok(providers);
    }
    match providers::kube::connect_and_identify(&connect).await {
        Ok((kube, target)) => {
            if let Some(k) = &target.kubeconfig {
                opts.defaults.env.insert("KUBECONFIG".into(), k.clone());
            }
            opts.target = Some(target);
            Ok(providers.with("kube", Arc::new(kube)))
        }
        Err(e) => Err(kube_error_message(&e)),
    }
}

/// Why the runbook cannot reach Kubernetes, said once: kube's own errors nest
/// ("failed to infer config: in-cluster: (...), kubeconfig: (failed to read
/// kubeconfig from '\"/x\"': ...)"), and the provider's already carry a hint.
fn kube_error_message(e: &providers::kube::KubeError) -> String {
    use providers::kube::KubeError;
    const HINT: &str = "the runbook has kube steps; pass --kubeconfig/--context, set KUBECONFIG, or try `runbook lab`";
    let what = match e {
        KubeError::NoConfig(inner) => {
            let from_kubeconfig = inner
                .split_once("kubeconfig: (")
                .map(|(_, rest)| rest.strip_suffix(')').unwrap_or(rest));
            match from_kubeconfig.map(kube_detail) {
                Some((Some(path), why)) => format!("cannot read kubeconfig {path}: {why}"),
                Some((None, why)) if why.contains("current context") => {
                    "the kubeconfig names no current context".to_owned()
                }
                Some((None, why)) => format!("no usable kubeconfig: {why}"),
                None => format!("no Kubernetes configuration ({})", kube_detail(inner).1),
            }
        }
        KubeError::Kubeconfig { path, message } => {
            format!("cannot read kubeconfig {path}: {}", kube_detail(message).1)
        }
        other => other.to_string(),
    };
    format!("cannot reach Kubernetes: {what} ({HINT})")
}

/// kube's "failed to read kubeconfig from '\"PATH\"': WHY" as (PATH, WHY).
fn kube_detail(text: &str) -> (Option<&str>, &str) {
    if let Some(rest) = text.strip_prefix("failed to read kubeconfig from '\"")
        && let Some((path, why)) = rest.split_once("\"': ")
    {
        return (Some(path), why);
    }
    (None, text)
}

/// `-p name=value` pairs and `-p @FILE` paths, each in the order given.
type ParsedParams = (Vec<(String, String)>, Vec<PathBuf>);

fn parse_params(raw: &[String]) -> Result<ParsedParams, String> {
    let mut pairs = Vec::new();
    let mut files = Vec::new();
    for p in raw {
        if let Some(file) = p.strip_prefix('@') {
            if file.is_empty() {
                return Err("`-p @`: name the params file, e.g. `-p @params.yaml`".into());
            }
            files.push(PathBuf::from(file));
            continue;
        }
        match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => pairs.push((k.to_string(), v.to_string())),
            _ => {
                return Err(format!(
                    "`-p {p}`: write parameters as name=value, or @FILE for a YAML/JSON file of them"
                ));
            }
        }
    }
    Ok((pairs, files))
}

/// The params of `-p @FILE`s and every `RUNBOOK_PARAM_*` variable; which ones a run
/// uses is the engine's business (the runbook's params, in the documented order).
fn param_inputs(files: &[PathBuf]) -> Result<engine::ParamInputs, String> {
    let mut inputs = engine::ParamInputs::default();
    for f in files {
        inputs.files.extend(crate::runbook::read_param_file(f)?);
    }
    for (k, v) in std::env::vars_os() {
        if let (Some(k), Some(v)) = (k.to_str(), v.to_str())
            && k.starts_with("RUNBOOK_PARAM_")
        {
            inputs.env.insert(k.to_string(), v.to_string());
        }
    }
    Ok(inputs)
}

/// A secret file larger than this is not a secret but a mistake (a binary, a log).
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// How long `--secret-file` waits for its file to give its contents (a FIFO).
const SECRET_FILE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// `--secret-file NAME=PATH` contents and the `RUNBOOK_SECRET_*` environment: the ways
/// to give a secret param without it showing in argv. Which params they fill is the
/// engine's business (only params marked `secret: true`).
pub(super) fn secret_inputs(files: &[String]) -> Result<engine::SecretInputs, String> {
    use std::io::Read;
    let mut inputs = engine::SecretInputs::default();
    for f in files {
        let Some((name, path)) = f
            .split_once('=')
            .filter(|(n, p)| !n.is_empty() && !p.is_empty())
        else {
            return Err(format!("`--secret-file {f}`: write it as name=path"));
        };
        // Read on a thread with a deadline: a FIFO (`<(vault read …)` is a pipe too)
        // whose writer never comes must not hang the run before it starts.
        let (tx, rx) = std::sync::mpsc::channel();
        let owned = path.to_string();
        std::thread::spawn(move || {
            let read = std::fs::File::open(&owned).and_then(|file| {
                let mut content = String::new();
                file.take(MAX_SECRET_FILE + 1)
                    .read_to_string(&mut content)
                    .map(|_| content)
            });
            let _ = tx.send(read);
        });
        let content = match rx.recv_timeout(SECRET_FILE_WAIT) {
            Ok(read) => {
                read.map_err(|e| format!("--secret-file {name}={path}: cannot read {path}: {e}"))?
            }
            Err(_) => {
                return Err(format!(
                    "--secret-file {name}={path}: nothing could be read from {path} in {} s (a FIFO nobody writes?)",
                    SECRET_FILE_WAIT.as_secs()
                ));
            }
        };
        if content.is_empty() {
            return Err(format!(
                "--secret-file {name}={path}: {path} is empty; write the secret into it"
            ));
        }
        if content.len() as u64 > MAX_SECRET_FILE {
            return Err(format!(
                "--secret-file {name}={path}: {path} is larger than {MAX_SECRET_FILE} bytes"
            ));
        }
        let value = content
            .strip_suffix('\n')
            .map(|c| c.strip_suffix('\r').unwrap_or(c))
            .unwrap_or(&content)
            .to_string();
        inputs
            .files
            .push((name.to_string(), value, path.to_string()));
    }
    for (k, v) in std::env::vars_os() {
        if let (Some(k), Some(v)) = (k.to_str(), v.to_str())
            && k.starts_with("RUNBOOK_SECRET_")
        {
            inputs.env.insert(k.to_string(), v.to_string());
        }
    }
    Ok(inputs)
}

/// Whether a step still to run has a kube operation. With `retry_failed`, failed
/// steps count as still to run. False when the journal or the runbook cannot be read:
/// the engine then refuses the resume with the reason (an empty journal, a runbook
/// that no longer loads) before anything runs, which a "cannot reach Kubernetes"
/// here would hide.
fn run_needs_kube(
    state: &crate::journal::state::RunState,
    rb: &crate::runbook::Runbook,
    retry_failed: bool,
) -> bool {
    rb.steps.iter().chain(&rb.handlers).any(|s| {
        let has_kube = s.kube.is_some()
            || s.verification().is_some_and(|v| v.kube.is_some())
            || s.escalate.iter().any(|r| r.kube.is_some());
        let done = state.step(&s.id.value).is_some_and(|st| {
            st.is_done()
                && !(retry_failed
                    && matches!(
                        st.finished,
                        Some(
                            crate::journal::event::Outcome::Failed
                                | crate::journal::event::Outcome::TimedOut
                        )
                    ))
        });
        has_kube && !done
    })
}

/// The runbook's `kube:` defaults (its context, its namespace), so `resume` connects
/// as `run` did.
pub(super) fn kube_defaults_of(
    state_dir: &std::path::Path,
    run_id: &str,
) -> Option<crate::runbook::model::KubeDefaults> {
    run_and_runbook(state_dir, run_id).and_then(|(_, l)| l.runbook.kube)
}

pub(super) fn run_and_runbook(
    state_dir: &std::path::Path,
    run_id: &str,
) -> Option<(crate::journal::state::RunState, crate::runbook::Loaded)> {
    let j = crate::journal::reader::read(&DirStore::new(state_dir).journal_path(run_id)).ok()?;
    let state = crate::journal::state::RunState::from_records(&j.records).ok()?;
    let loaded = crate::runbook::load(&PathBuf::from(&state.runbook.path)).ok()?;
    Some((state, loaded))
}

/// `--approve ID` must name something that can be approved: a step with a gate or a
/// confirmation (an action or a manual step, handlers included) or a rung of an
/// escalation ladder. A typo used to be ignored and the run paused again at the gate
/// the person meant to approve.
pub(super) fn check_approvals(
    approve: &[String],
    rb: &crate::runbook::Runbook,
) -> Result<(), String> {
    use crate::runbook::model::StepKind;
    let mut ids: Vec<String> = Vec::new();
    for step in rb.steps.iter().chain(&rb.handlers) {
        if matches!(step.kind(), StepKind::Action | StepKind::Manual) {
            ids.push(step.id.value.clone());
        }
        if step.undo.is_some() {
            ids.push(format!("{}.undo", step.id.value));
        }
        for (n, rung) in step.escalate.iter().enumerate() {
            ids.push(match &rung.id {
                Some(id) => id.value.clone(),
                None => format!("{}.{}", step.id.value, n + 1),
            });
        }
    }
    let unknown: Vec<&String> = approve.iter().filter(|a| !ids.contains(a)).collect();
    let Some(first) = unknown.first() else {
        return Ok(());
    };
    let mut close: Vec<&String> = ids
        .iter()
        .filter(|id| strsim::jaro_winkler(id, first) > 0.8)
        .collect();
    close.sort_by(|a, b| strsim::jaro_winkler(b, first).total_cmp(&strsim::jaro_winkler(a, first)));
    let hint = match close.first() {
        Some(c) => format!("did you mean `{c}`? "),
        None => String::new(),
    };
    let list = if ids.is_empty() {
        "this runbook has no gates".to_string()
    } else {
        format!("the gates of `{}` are: {}", rb.name.value, ids.join(", "))
    };
    Err(format!(
        "--approve {first}: no step or rung of that id can be approved; {hint}({list})"
    ))
}

/// Resume refuses a run a live process holds, naming it, and reports a run left by
/// a process that died instead of taking it over without a word.
pub(super) fn check_resume_hold(state_dir: &std::path::Path, run_id: &str) -> Result<(), String> {
    use crate::store::HoldState;
    match DirStore::new(state_dir).hold_state(run_id) {
        HoldState::Held(holder) => Err(format!(
            "run {run_id} is in use by another process{} (it is being driven there; `runbook show {run_id}` says where it is)",
            holder.map_or_else(String::new, |h| format!(", {}", h.describe()))
        )),
        HoldState::Stale(holder) => {
            eprintln!(
                "note: {}; taking it over",
                HoldState::stale_message(&holder, run_id)
            );
            Ok(())
        }
        HoldState::Free => Ok(()),
    }
}

/// The folder of the runbook at `path` (as the journal names it), made absolute.
fn runbook_dir(path: &str) -> PathBuf {
    let path = std::path::Path::new(path);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::canonicalize(&dir).unwrap_or(dir)
}
