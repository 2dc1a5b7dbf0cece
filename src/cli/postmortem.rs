use std::path::PathBuf;

use super::Global;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run to render (see `runbook runs`).
    #[arg(required_unless_present = "print_template")]
    pub run_id: Option<String>,
    /// Write to this file; when it exists, human-written sections are kept.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// A handlebars template to use instead of the embedded one.
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,
    /// Time zone of the timeline, e.g. Europe/Berlin.
    #[arg(long, default_value = "UTC")]
    pub tz: String,
    /// Print the embedded template and exit.
    #[arg(long)]
    pub print_template: bool,
}

pub fn run(_args: Args, _g: &Global) -> i32 {
    super::not_yet("postmortem")
}
