use std::path::PathBuf;

use clap::ValueEnum;

use super::Global;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Runbook files or folders (default: runbooks/).
    pub paths: Vec<PathBuf>,
    /// Output format of the diagnostics.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn run(_args: Args, _g: &Global) -> i32 {
    super::not_yet("lint")
}
