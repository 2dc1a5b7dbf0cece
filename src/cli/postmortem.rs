//! `runbook postmortem RUN_ID [-o FILE] [--template FILE] [--tz ZONE]`: render a run's
//! journal as a markdown postmortem.
use std::path::PathBuf;

use super::Global;
use crate::exit;
use crate::render::{self, RenderOpts};
use crate::store::{DirStore, RunStore};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  runbook postmortem last
  runbook postmortem 7f3a -o incidents/2026-03-13.md    keeps the human-written sections
  runbook postmortem last --tz Europe/Paris
  runbook postmortem last --details full             every result whole, as the journal has it
  runbook postmortem last --incident-start '2018-03-13 01:00'   times to detect/mitigate from the impact start")]
pub struct Args {
    /// The run to render: its id, a unique prefix of it, or `last` (see `runbook runs`).
    #[arg(required_unless_present = "print_template")]
    pub run_id: Option<String>,
    /// Write to this file; when it exists, human-written sections are kept. The impact
    /// chart (when the run asked Prometheus) goes beside it as FILE's name .impact.svg.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// A handlebars template to use instead of the embedded one.
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,
    /// Time zone of the timeline, e.g. Europe/Berlin.
    #[arg(long, default_value = "UTC")]
    pub tz: String,
    /// How much of each result to show: `summary` (tables as `kubectl get` prints
    /// them, values, excerpts; API calls in an appendix), `full` (every result whole,
    /// folded) or `none`.
    #[arg(long, default_value = "summary", value_parser = ["full", "summary", "none"])]
    pub details: String,
    /// When users were first affected (RFC 3339; `YYYY-MM-DD HH:MM[:SS]` or `HH:MM`
    /// today in the --tz zone; `-45m` before now): time to detect and to mitigate are
    /// counted from it. Overrides the run's own (`runbook run --incident-start`);
    /// without either they are "unknown".
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub incident_start: Option<String>,
    /// Print the embedded template and exit.
    #[arg(long)]
    pub print_template: bool,
}

pub fn run(args: Args, g: &Global) -> i32 {
    if args.print_template {
        print!("{}", render::DEFAULT_TEMPLATE);
        return exit::OK;
    }
    let tz = match args.tz.parse::<chrono_tz::Tz>() {
        Ok(tz) => tz,
        Err(_) => {
            crate::cli::error_line!(
                "error: unknown time zone {:?}: use an IANA name such as UTC, Europe/Berlin or America/New_York",
                args.tz
            );
            return exit::USAGE;
        }
    };
    let mut opts = RenderOpts {
        tz,
        details: match args.details.as_str() {
            "full" => render::Details::Full,
            "none" => render::Details::None,
            _ => render::Details::Summary,
        },
        ..RenderOpts::default()
    };
    if let Some(at) = &args.incident_start {
        match crate::clock::parse_when(at, tz, chrono::Utc::now()) {
            Some(t) => opts.incident_start = Some(t),
            None => {
                crate::cli::error_line!(
                    "error: --incident-start {at:?} is not a time: write 2018-03-13T01:00:00Z, 2018-03-13 01:00 or 14:02 (today) in the --tz zone, or -45m (before now)"
                );
                return exit::USAGE;
            }
        }
    }
    if let Some(path) = &args.template {
        match std::fs::read_to_string(path) {
            Ok(source) => {
                opts.template = Some(source);
                opts.template_name = Some(path.display().to_string());
            }
            Err(e) => {
                crate::cli::error_line!("error: cannot read template {}: {e}", path.display());
                return exit::USAGE;
            }
        }
    }
    let Some(run_id) = args.run_id.as_deref() else {
        crate::cli::error_line!("error: give a run id (or `last`)");
        return exit::USAGE;
    };
    // The impact chart goes beside a written document (stdout has nowhere to put it).
    if let Some(path) = &args.output {
        opts.chart_file = render::chart_path(path)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned());
    }
    let store = DirStore::new(&g.state_dir);
    let result = store
        .resolve(run_id)
        .map_err(render::RenderError::from)
        .and_then(|id| match &args.output {
            Some(path) => render::write_run(&store.run_dir(&id), &opts, path).map(|(report, chart)| {
                if !g.quiet {
                    eprintln!("wrote {}", path.display());
                    if let Some(chart) = chart {
                        eprintln!("wrote {} (the impact chart it links)", chart.display());
                    }
                }
                // Said even with --quiet: a section that stopped updating is news.
                for id in &report.kept_edits {
                    eprintln!(
                        "note: the generated section {id:?} was edited by hand: it is kept as yours and no longer rebuilt (delete its runbook:human markers and text to get it back)"
                    );
                }
                if let (Some(bak), false) = (&report.backup, g.quiet) {
                    eprintln!("the previous version is in {}", bak.display());
                }
            }),
            None => render::render_run(&store.run_dir(&id), &opts).map(|markdown| {
                print!("{markdown}");
            }),
        });
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            crate::cli::error_line!("error: {e}");
            if e.is_usage() {
                exit::USAGE
            } else {
                exit::FAILED
            }
        }
    }
}
