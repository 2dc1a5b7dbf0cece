//! `runbook completions SHELL` and `runbook man`: both generated from the clap
//! definition itself, so a new flag is completed and documented the day it is added.

use clap::CommandFactory;

use super::Cli;
use crate::exit;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  runbook completions bash > ~/.local/share/bash-completion/completions/runbook
  runbook completions zsh > \"${fpath[1]}/_runbook\"
  runbook completions fish > ~/.config/fish/completions/runbook.fish")]
pub struct Args {
    /// The shell to complete in.
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  runbook man > runbook.1 && man ./runbook.1
  runbook man run               the page of one subcommand (runbook-run.1)")]
pub struct ManArgs {
    /// A subcommand's page instead of the main one.
    pub subcommand: Option<String>,
}

pub fn completions(args: Args) -> i32 {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "runbook", &mut std::io::stdout());
    exit::OK
}

pub fn man(args: ManArgs) -> i32 {
    let top = Cli::command();
    let cmd = match &args.subcommand {
        None => top,
        Some(name) => match top.find_subcommand(name) {
            // `runbook-run(1)`, as git and cargo name their subcommand pages.
            Some(sub) => sub.clone().display_name(format!("runbook-{name}")),
            None => {
                crate::cli::error_line!("error: no subcommand `{name}` (see `runbook --help`)");
                return exit::USAGE;
            }
        },
    };
    let mut out = Vec::new();
    if let Err(e) = clap_mangen::Man::new(cmd).render(&mut out) {
        crate::cli::error_line!("error: cannot render the man page: {e}");
        return exit::INTERNAL;
    }
    use std::io::Write;
    match std::io::stdout().write_all(&out) {
        Ok(()) => exit::OK,
        Err(e) => {
            crate::cli::error_line!("error: cannot write the man page: {e}");
            exit::INTERNAL
        }
    }
}
