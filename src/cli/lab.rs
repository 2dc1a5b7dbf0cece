use std::path::PathBuf;

use super::Global;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Scenario file (default: the seed incident).
    pub scenario: Option<PathBuf>,
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Write a kubeconfig for the lab to this file.
    #[arg(long, value_name = "FILE")]
    pub write_kubeconfig: Option<PathBuf>,
    /// How fast cluster time passes relative to wall time.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
}

pub fn run(_args: Args, _g: &Global) -> i32 {
    super::not_yet("lab")
}
