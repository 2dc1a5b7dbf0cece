use std::path::PathBuf;

use super::Global;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Runbook files or folders (default: runbooks/).
    pub paths: Vec<PathBuf>,
}

pub fn run(_args: Args, _g: &Global) -> i32 {
    super::not_yet("test")
}
