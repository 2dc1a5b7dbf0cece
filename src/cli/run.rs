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
use crate::providers::{self, Providers};

/// Flags shared by `run` and `resume`: who approves what, and how to reach clusters.
#[derive(Debug, Clone, clap::Args)]
pub struct ApprovalArgs {
    /// Approve every gate.
    #[arg(long)]
    pub yes: bool,
    /// Approve the gate of this step (repeatable).
    #[arg(long = "approve", value_name = "STEP_ID")]
    pub approve: Vec<String>,
    /// Who approves (default: $USER).
    #[arg(long, env = "RUNBOOK_OPERATOR")]
    pub operator: Option<String>,
    /// Write the postmortem to this file when the run ends.
    #[arg(long, value_name = "FILE")]
    pub postmortem: Option<PathBuf>,
    #[command(flatten)]
    pub kube: KubeArgs,
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
    #[arg(long, default_value_t = 20.0)]
    pub kube_qps: f64,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The runbook file.
    pub file: PathBuf,
    /// A parameter, as name=value (repeatable).
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Run the checks and print the plan of every action without performing it.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub approval: ApprovalArgs,
}

#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    /// The run to continue (see `runbook runs`).
    pub run_id: String,
    /// A secret parameter, as name=value: secrets are not kept in the journal, so a
    /// run that has them needs them again (repeatable).
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    #[command(flatten)]
    pub approval: ApprovalArgs,
}

pub fn run(args: RunArgs, g: &Global) -> i32 {
    // The whole file is validated exactly as `lint` does before anything starts.
    let loaded = match crate::runbook::load(&args.file) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("the runbook did not start: fix the errors above (see `runbook lint`)");
            return exit::USAGE;
        }
    };
    let params = match parse_params(&args.params) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let base_dir = match args.file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let (opts, approver) = setup(&args.approval, g, params, base_dir, args.dry_run);
    let providers = build_providers(&args.approval.kube);
    let state_dir = g.state_dir.clone();
    drive(&args.approval, move |cancel| async move {
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

pub fn resume(args: ResumeArgs, g: &Global) -> i32 {
    let params = match parse_params(&args.params) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    // The runbook's folder is the working directory of shell steps; the journal
    // names the file.
    let base_dir = runbook_dir_of(&g.state_dir, &args.run_id).unwrap_or_else(|| PathBuf::from("."));
    let (opts, approver) = setup(&args.approval, g, params, base_dir, false);
    let providers = build_providers(&args.approval.kube);
    let state_dir = g.state_dir.clone();
    let run_id = args.run_id.clone();
    drive(&args.approval, move |cancel| async move {
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
    })
}

/// The providers of a real run, registered in one place.
pub fn build_providers(kube: &KubeArgs) -> Providers {
    let _ = kube;
    // TODO(lead): register the Kubernetes provider here, built from `kube`
    // (kubeconfig, context, namespace, kube_qps):
    //     .with("kube", Arc::new(providers::kube::Kube::from_args(kube)?))
    // Until then a kube step fails with "no Kubernetes provider is configured".
    Providers::empty().with("shell", Arc::new(providers::shell::Shell))
}

fn setup(
    a: &ApprovalArgs,
    g: &Global,
    params: Vec<(String, String)>,
    base_dir: PathBuf,
    dry_run: bool,
) -> (EngineOpts, Arc<dyn Approver>) {
    let operator = a
        .operator
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let tty = std::io::stderr().is_terminal();
    let printer = Arc::new(Printer::stderr(PrinterOpts {
        tty,
        quiet: g.quiet,
    }));
    let flags = FlagApprover::new(a.yes, &a.approve, operator.clone());
    let approver: Arc<dyn Approver> = if tty && std::io::stdin().is_terminal() {
        Arc::new(PromptApprover {
            flags,
            printer: Arc::clone(&printer),
        })
    } else {
        Arc::new(flags)
    };
    let mut opts = EngineOpts::new(operator, printer);
    opts.dry_run = dry_run;
    opts.params = params;
    opts.defaults.base_dir = base_dir;
    opts.defaults.namespace = a.kube.namespace.clone();
    (opts, approver)
}

/// Run the engine on a runtime with Ctrl-C wired to the cancellation token: the first
/// cancels the running step cleanly, a second exits at once.
fn drive<F, Fut>(a: &ApprovalArgs, f: F) -> i32
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<RunReport, engine::EngineError>>,
{
    let rt = super::runtime();
    let cancel = CancellationToken::new();
    let result = rt.block_on(async {
        let c = cancel.clone();
        let watcher = tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_err() {
                return;
            }
            eprintln!("\naborting: stopping the running step (Ctrl-C again to exit at once)");
            c.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(exit::ABORTED);
            }
        });
        let r = f(cancel.clone()).await;
        watcher.abort();
        r
    });
    // A prompt blocked on stdin must not keep the process alive.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(report) => {
            if let Some(path) = &a.postmortem {
                // TODO(lead): render the postmortem of `report.run_id` to `path` here
                // (crate::render), once the renderer lands.
                eprintln!(
                    "note: --postmortem {} is not written yet; use `runbook postmortem {}`",
                    path.display(),
                    report.run_id
                );
            }
            eprintln!("postmortem: runbook postmortem {}", report.run_id);
            report.exit_code
        }
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn parse_params(raw: &[String]) -> Result<Vec<(String, String)>, String> {
    raw.iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("`-p {p}`: write parameters as name=value")),
        })
        .collect()
}

fn runbook_dir_of(state_dir: &std::path::Path, run_id: &str) -> Option<PathBuf> {
    let j = crate::journal::reader::read(&engine::journal_path(state_dir, run_id)).ok()?;
    let r = crate::journal::replay::replay(&j.records).ok()?;
    let path = PathBuf::from(r.runbook.path);
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => Some(p.to_owned()),
        _ => Some(PathBuf::from(".")),
    }
}
