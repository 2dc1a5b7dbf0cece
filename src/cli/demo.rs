//! `runbook demo`: the seed incident, end to end, on the embedded lab.
//!
//! The lab starts in-process with the seed scenario (two nodes lost, the hub's volume
//! held by a pod on one of them), `runbooks/hub-pvc-locked.yaml` runs against it with
//! every gate answered automatically (and journaled as such), and the postmortem is
//! written to a file whose path is printed. Cluster time is virtual: the 6-minute
//! forced detach passes in milliseconds, and the timeline shows cluster times.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Global;
use futures::future::BoxFuture;

use crate::engine::{
    self, Approver, FlagApprover, GateAnswer, GateRequest, ManualAnswer, ManualRequest, Printer,
    PrinterOpts, PromptApprover,
};
use crate::lab::Lab;
use crate::suite::{self, runner::LabRunOpts};

/// The seed runbook, embedded so the demo also runs outside a checkout.
const SEED_RUNBOOK: &str = include_str!("../../runbooks/hub-pvc-locked.yaml");
const SEED_PATH: &str = "runbooks/hub-pvc-locked.yaml";

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  runbook demo                     the seed incident, approved automatically
  runbook demo --interactive       stop at every gate and ask")]
pub struct Args {
    /// Stop at every gate for a person to approve.
    #[arg(long)]
    pub interactive: bool,
    /// Write the postmortem here (default: the run's folder, postmortem.md).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(args: Args, g: &Global) -> i32 {
    let loaded = match load_seed() {
        Ok(l) => l,
        Err(e) => {
            crate::cli::print_error(&e.to_string());
            return crate::exit::USAGE;
        }
    };
    let rt = super::runtime();
    rt.block_on(async move {
        let lab = Lab::seed_at_incident_time();
        eprintln!(
            "demo: the seed incident (2018-03-13, \"PVC for hub is locked\") in the embedded lab; cluster time starts at {}",
            lab.now().format("%Y-%m-%d %H:%M UTC")
        );
        let operator = super::run::operator_name(None);
        let printer = Arc::new(Printer::stderr(PrinterOpts {
            tty: std::io::stderr().is_terminal(),
            quiet: g.quiet,
            colour: g.colour(),
        }));
        let approver: Arc<dyn Approver> = if args.interactive {
            Arc::new(PersonTakesTime {
                inner: Arc::new(PromptApprover::new(
                    FlagApprover::new(false, &[], operator.clone()),
                    printer.clone(),
                )),
                lab: lab.clone(),
            })
        } else {
            eprintln!("demo: gates are approved automatically and journaled as such (use --interactive to answer them)");
            Arc::new(engine::AutoApprover::new(operator.clone()))
        };
        let cancel = CancellationToken::new();
        let on_ctrl_c = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_ctrl_c.cancel();
            }
        });
        let opts = LabRunOpts {
            params: vec![("prometheus".to_string(), "{{lab.url}}".to_string())],
            approver,
            state_dir: g.state_dir.clone(),
            operator,
            printer,
            cancel,
        };
        let run = match suite::runner::run_on_lab_with(&loaded, &lab, opts, seed_incident_start(&lab)).await {
            Ok(r) => r,
            Err(e) => {
                crate::cli::error_line!("error: {e}");
                return crate::exit::INTERNAL;
            }
        };
        let out = args
            .output
            .clone()
            .unwrap_or_else(|| run.report.run_dir.join("postmortem.md"));
        let render_opts = crate::render::RenderOpts {
            chart_file: crate::render::chart_path(&out)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned()),
            ..crate::render::RenderOpts::default()
        };
        let written = crate::render::write_run(&run.report.run_dir, &render_opts, &out);
        match written {
            Ok((_, chart)) => {
                println!("postmortem written to {}", out.display());
                if let Some(chart) = chart {
                    println!("impact chart written to {}", chart.display());
                }
            }
            Err(e) => {
                crate::cli::error_line!("error: cannot write the postmortem: {e}");
                return crate::exit::INTERNAL;
            }
        }
        run.report.exit_code
    })
}

/// When users were first affected in the seed scenario, as its Prometheus knows it:
/// `ALERTS_FOR_STATE` of the seed's `HubLaunchesFailing` alert (active since launches
/// began to fail, 5 hours before the scenario's start), journaled with that alert as
/// its source so the postmortem measures time to detect and mitigate from it.
fn seed_incident_start(lab: &Lab) -> Option<(chrono::DateTime<chrono::Utc>, String)> {
    let (at, alert) = lab.earliest_active_alert()?;
    Some((at, format!("the lab's ALERTS_FOR_STATE of alert {alert}")))
}

/// In `--interactive`, the time a person takes at a gate or a manual step is real:
/// the lab's clock (virtual, moved only by the engine's waits) is advanced by it, so
/// the cluster moves on meanwhile, as a real one would, and the postmortem shows how
/// long the gate waited.
struct PersonTakesTime {
    inner: Arc<dyn Approver>,
    lab: Lab,
}

impl Approver for PersonTakesTime {
    fn gate<'a>(&'a self, req: &'a GateRequest) -> BoxFuture<'a, GateAnswer> {
        Box::pin(async move {
            let t0 = std::time::Instant::now();
            let answer = self.inner.gate(req).await;
            self.lab.advance(t0.elapsed());
            answer
        })
    }

    fn manual<'a>(&'a self, req: &'a ManualRequest) -> BoxFuture<'a, ManualAnswer> {
        Box::pin(async move {
            let t0 = std::time::Instant::now();
            let answer = self.inner.manual(req).await;
            self.lab.advance(t0.elapsed());
            answer
        })
    }
}

/// The seed runbook from the checkout when it is there (so the journal records its
/// git commit), else the copy built into the binary.
fn load_seed() -> Result<crate::runbook::Loaded, crate::runbook::LoadError> {
    let path = Path::new(SEED_PATH);
    if path.is_file() {
        return crate::runbook::load(path);
    }
    match crate::runbook::parse_str(SEED_RUNBOOK, path) {
        Ok(runbook) => Ok(crate::runbook::Loaded {
            runbook,
            source: SEED_RUNBOOK.to_string(),
            path: path.to_owned(),
            warnings: Vec::new(),
        }),
        Err(diagnostics) => Err(crate::runbook::LoadError::Invalid {
            path: path.to_owned(),
            source: SEED_RUNBOOK.to_string(),
            diagnostics,
        }),
    }
}
