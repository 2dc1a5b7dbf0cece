use std::path::PathBuf;

use super::Global;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder of runbooks (default: runbooks/).
    pub dir: Option<PathBuf>,
}

pub fn run(_args: Args, _g: &Global) -> i32 {
    super::not_yet("list")
}
