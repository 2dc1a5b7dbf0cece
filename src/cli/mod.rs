//! Command-line front end: clap definitions and one file per subcommand.
//!
//! Each subcommand turns its flags into a call of the library and returns an exit
//! code from [`crate::exit`]; nothing here holds logic of its own.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub mod abort;
pub mod approve;
pub mod completions;
pub mod demo;
pub mod lab;
pub mod lint;
pub mod list;
pub mod operator;
pub mod postmortem;
pub mod rbac;
pub mod remote;
pub mod run;
pub mod runs;
pub mod schema;
pub mod serve;
pub mod show;
pub mod test;
pub mod undo;

/// `runbook --version`: the release and the commit it was built from (build.rs).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("RUNBOOK_COMMIT"), ")");

/// Runbook-as-code: run incident runbooks step by step, gated, verified and journaled.
#[derive(Debug, Parser)]
#[command(name = "runbook", version = VERSION, after_help = crate::exit::HELP_TABLE)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand understands.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Where runs are stored (journals, side files, locks) [default: .runbook at the
    /// git top level, else in the working directory].
    #[arg(
        long = "state-dir",
        id = "state_dir",
        value_name = "STATE_DIR",
        global = true,
        env = "RUNBOOK_STATE_DIR"
    )]
    pub state_dir_flag: Option<PathBuf>,
    /// The state directory in effect: the flag, else [`crate::store::default_state_dir`]
    /// (set by [`main`] after parsing).
    #[arg(skip)]
    pub state_dir: PathBuf,
    /// More detail on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only plain lines: no spinners or progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Format of the tracing logs on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Colour on stderr: `auto` (on a terminal, unless NO_COLOR is set), `always`,
    /// `never`. The same rule for the console and the tracing logs.
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

/// `--color`: when stderr gets ANSI colour, as `ls --color` and `cargo --color` decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
// No doc comments on the variants: clap would print every subcommand's help in its
// long form for them. The flag's help says what each value does.
pub enum ColorChoice {
    // On a terminal, unless `NO_COLOR` is set to a non-empty value (https://no-color.org).
    #[default]
    Auto,
    // Even into a pipe or a file, and in spite of `NO_COLOR`.
    Always,
    Never,
}

impl Global {
    /// Whether stderr gets colour: the one rule for the console reporter and the
    /// tracing logs.
    pub fn colour(&self) -> bool {
        use std::io::IsTerminal;
        colour_enabled(
            self.color,
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
        )
    }
}

/// Whether `error:` lines get colour: set once from `--color` before a subcommand runs.
static ERROR_COLOUR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// An `error: …` line on stderr, its `error:` in bold red when colour is on (the same
/// rule as the console's failures). Use through [`error_line!`].
pub fn print_error(line: &str) {
    match line.strip_prefix("error:") {
        Some(rest) if ERROR_COLOUR.load(std::sync::atomic::Ordering::Relaxed) => {
            eprintln!("\x1b[1;31merror:\x1b[0m{rest}")
        }
        _ => eprintln!("{line}"),
    }
}

/// `eprintln!` for a line that starts with `error:`.
macro_rules! error_line {
    ($($arg:tt)*) => {
        $crate::cli::print_error(&format!($($arg)*))
    };
}
pub(crate) use error_line;

/// `--color WHEN` with what the process sees: `auto` means a terminal without
/// `NO_COLOR`; an explicit `always`/`never` wins over both (as in cargo and ls).
pub fn colour_enabled(choice: ColorChoice, stderr_is_tty: bool, no_color: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => stderr_is_tty && !no_color,
    }
}

/// `-o`/`--output`: one spelling of machine output on every subcommand that lists
/// or reports something (`runs`, `list`, `lint`, `show`, `test`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// For people: tables and sentences.
    #[default]
    Text,
    /// For scripts: JSON (one object per line where there are several).
    Json,
}

#[derive(Debug, Clone, Copy, clap::Args)]
pub struct OutputArgs {
    /// Output format: `text` for people, `json` for scripts.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

impl OutputArgs {
    pub fn json(&self) -> bool {
        self.output == Output::Json
    }
}

/// Print one value as a line of JSON on stdout; an error is an internal one (every
/// type printed derives `Serialize` over strings, numbers and maps).
pub fn print_json(value: &impl serde::Serialize) -> i32 {
    match serde_json::to_string(value) {
        Ok(line) => {
            println!("{line}");
            crate::exit::OK
        }
        Err(e) => {
            error_line!("error: cannot write JSON: {e}");
            crate::exit::INTERNAL
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_follows_the_flag_then_the_terminal_and_no_color() {
        assert!(colour_enabled(ColorChoice::Auto, true, false));
        assert!(!colour_enabled(ColorChoice::Auto, false, false), "a pipe");
        assert!(!colour_enabled(ColorChoice::Auto, true, true), "NO_COLOR");
        assert!(colour_enabled(ColorChoice::Always, false, true));
        assert!(!colour_enabled(ColorChoice::Never, true, false));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check runbooks completely and report every problem.
    Lint(lint::Args),
    /// List runbooks with their title, step count and last commit.
    List(list::Args),
    /// Print the JSON Schema of the runbook format.
    Schema(schema::Args),
    /// Print the least-privilege Kubernetes Role/ClusterRole the runbooks need.
    Rbac(rbac::Args),
    /// Run a runbook.
    Run(run::RunArgs),
    /// Continue a paused or interrupted run.
    Resume(run::ResumeArgs),
    /// Undo a run's completed actions (their `undo:`), newest first, each gated.
    Undo(undo::Args),
    /// List past runs, newest first.
    Runs(runs::RunsArgs),
    /// Show one run: its status, where it waits, what it needs, how to continue.
    Show(show::Args),
    /// End a paused or interrupted run, from any terminal.
    Abort(abort::Args),
    /// Approve (or decline) a waiting gate of a run from another terminal.
    Approve(approve::Args),
    /// Add a timestamped operator note to a run's journal.
    Note(runs::NoteArgs),
    /// Render a run's journal as a markdown postmortem.
    Postmortem(postmortem::Args),
    /// Print a shell completion script (bash, zsh, fish, powershell).
    Completions(completions::Args),
    /// Print the man page (roff) of runbook and every subcommand.
    #[command(hide = true)]
    Man(completions::ManArgs),
    /// Serve a simulated Kubernetes cluster on 127.0.0.1, loaded from a scenario.
    Lab(lab::Args),
    /// Serve: Alertmanager webhooks start runbooks, people approve on a web page.
    Serve(serve::Args),
    /// Run the seed incident end to end against the embedded lab.
    Demo(demo::Args),
    /// Test runbooks against the scenarios they declare, in an in-process lab.
    Test(test::Args),
}

/// Entry point of the binary: parse, set up logging, dispatch, return the exit code.
pub fn main() -> i32 {
    install_panic_hook();
    // Internal, for tests only (tests/panic_hook.rs): a panic that no input can cause
    // once the known panics are fixed, so the hook stays tested.
    if std::env::var_os("RUNBOOK_TEST_PANIC").is_some_and(|v| v == "1") {
        panic!("RUNBOOK_TEST_PANIC=1 is set (an internal switch that tests the panic hook)");
    }
    let mut cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                crate::exit::USAGE
            } else {
                crate::exit::OK
            };
        }
    };
    ERROR_COLOUR.store(cli.global.colour(), std::sync::atomic::Ordering::Relaxed);
    init_tracing(&cli.global);
    cli.global.state_dir = match &cli.global.state_dir_flag {
        Some(dir) => dir.clone(),
        None => std::env::current_dir()
            .map(|cwd| crate::store::default_state_dir(&cwd))
            .unwrap_or_else(|_| PathBuf::from(".runbook")),
    };
    let g = &cli.global;
    match cli.command {
        Command::Lint(a) => lint::run(a, g),
        Command::List(a) => list::run(a, g),
        Command::Schema(a) => schema::run(a, g),
        Command::Rbac(a) => rbac::run(a, g),
        Command::Run(a) => run::run(a, g),
        Command::Resume(a) => run::resume(a, g),
        Command::Undo(a) => undo::run(a, g),
        Command::Runs(a) => runs::runs(a, g),
        Command::Show(a) => show::run(a, g),
        Command::Completions(a) => completions::completions(a),
        Command::Man(a) => completions::man(a),
        Command::Abort(a) => abort::run(a, g),
        Command::Approve(a) => approve::run(a, g),
        Command::Note(a) => runs::note(a, g),
        Command::Postmortem(a) => postmortem::run(a, g),
        Command::Lab(a) => lab::run(a, g),
        Command::Demo(a) => demo::run(a, g),
        Command::Serve(a) => serve::run(a, g),
        Command::Test(a) => test::run(a, g),
    }
}

fn init_tracing(g: &Global) {
    use tracing_subscriber::EnvFilter;
    let default = match g.verbose {
        0 => "warn",
        1 => "runbook=info",
        2 => "runbook=debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // The console's rule (`--color`, a terminal, NO_COLOR): tracing-subscriber
    // colours by default, which put escape codes into pipes and CI logs.
    let colour = g.colour();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = match g.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// A multi-threaded tokio runtime for the async subcommands. The rustls crypto
/// provider is installed first: kube (ring) and reqwest share one process-level
/// provider, and two would panic (see STYLE.md pitfalls).
pub fn runtime() -> tokio::runtime::Runtime {
    install_crypto_provider();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("invariant: a tokio runtime can be built on this platform")
}

/// The runtime of `run` and `resume`: one thread. A step is a chain of awaits on one
/// child process or request at a time (fan-out is concurrent, not parallel), so a
/// second thread buys nothing and costs a cross-thread wake-up for every event the
/// engine waits on (about 0.3 ms a step on a 2-core VM; docs/engine.md "Speed").
/// Ctrl-C is watched on a thread of its own (`cli::run::watch_ctrl_c`).
pub fn engine_runtime() -> tokio::runtime::Runtime {
    install_crypto_provider();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("invariant: a tokio runtime can be built on this platform")
}

/// A panic is a bug in runbook, not in the user's runbook: say so in words, ask for a
/// report, and exit 70 (internal error, as the README's exit-code table promises)
/// instead of Rust's 101 and a backtrace hint. The run's journal is already durable up
/// to its last synced event and the run lock dies with the process, so `runbook
/// resume` can continue the run once the bug is fixed or avoided.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned());
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "runbook hit a bug and stopped: {message}{location}\n\
             This is a bug in runbook {}, not in your runbook. Please report it with this \
             message, the command you ran and, if a run was going on, its journal \
             (`runbook runs` shows where it is); `runbook resume` continues the run.",
            env!("CARGO_PKG_VERSION")
        );
        std::process::exit(crate::exit::INTERNAL);
    }));
}

/// Install the process-wide rustls provider (kept here for callers of the old path;
/// the providers own it now).
pub use crate::providers::install_crypto_provider;
