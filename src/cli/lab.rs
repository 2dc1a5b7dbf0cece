//! `runbook lab`: serve a simulated Kubernetes cluster on 127.0.0.1 until Ctrl-C.
use std::path::PathBuf;

use super::Global;
use crate::lab::Lab;

/// Serve the lab. Without SCENARIO it plays the seed incident
/// (runbooks/hub-pvc-locked.scenario.yaml, embedded in the binary).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  runbook lab                                  the seed incident on a free port
  runbook lab runbooks/disk-full.scenario.yaml
  KUBECONFIG=.runbook/lab.kubeconfig kubectl get pods -A")]
pub struct Args {
    /// Scenario file (default: the seed incident).
    pub scenario: Option<PathBuf>,
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Write a kubeconfig for the lab to this file.
    #[arg(long, value_name = "FILE")]
    pub write_kubeconfig: Option<PathBuf>,
    /// How fast cluster time passes relative to wall time (e.g. 60: a minute per second).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
}

pub fn run(args: Args, _g: &Global) -> i32 {
    let max = crate::lab::limits::MAX_SPEED;
    if !(args.speed.is_finite() && (0.0..=max).contains(&args.speed)) {
        crate::cli::error_line!(
            "error: --speed must be a number from 0 to {max} (got {}); cluster time past \
             a century after the start cannot be represented",
            args.speed
        );
        return crate::exit::USAGE;
    }
    let lab = match &args.scenario {
        None => Lab::seed(),
        Some(p) => match Lab::from_scenario_file(p) {
            Ok(l) => l,
            Err(e) => {
                crate::cli::error_line!("error: {e}");
                return crate::exit::USAGE;
            }
        },
    };
    lab.set_speed(args.speed);
    let rt = super::runtime();
    rt.block_on(async move {
        let (addr, server) = match lab.serve(&format!("127.0.0.1:{}", args.port)).await {
            Ok(x) => x,
            Err(e) => {
                crate::cli::error_line!("error: {e}");
                return crate::exit::USAGE;
            }
        };
        println!(
            "lab {:?} serving the Kubernetes API on http://{addr} (127.0.0.1 only, no auth)",
            lab.name()
        );
        println!("port: {}", addr.port());
        println!("prometheus: http://{addr}/api/v1/query?query=...");
        if let Some(path) = &args.write_kubeconfig {
            if let Err(e) = crate::lab::write_kubeconfig(addr, path) {
                crate::cli::error_line!(
                    "error: cannot write the kubeconfig {}: {e}",
                    path.display()
                );
                server.shutdown().await;
                return crate::exit::USAGE;
            }
            let shown = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            println!("export KUBECONFIG={}", shown.display());
        } else {
            println!("(pass --write-kubeconfig FILE to get a kubeconfig for kubectl)");
        }
        println!("press Ctrl-C to stop");
        let _ = tokio::signal::ctrl_c().await;
        server.shutdown().await;
        eprintln!("lab stopped");
        crate::exit::OK
    })
}
