//! `runbook runs` (past runs) and `runbook note RUN_ID TEXT` (an operator note, also
//! while the run is going on in another terminal).

use super::Global;
use crate::engine;
use crate::exit;
use crate::journal::event::Event;
use crate::store::{self, DirStore, RunStore};

#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct NoteArgs {
    /// The run to annotate: its id, a unique prefix of it, or `last`.
    pub run_id: String,
    /// The note.
    pub text: String,
    /// Who writes the note (default: $USER).
    #[arg(long, env = "RUNBOOK_OPERATOR")]
    pub operator: Option<String>,
}

pub fn runs(args: RunsArgs, g: &Global) -> i32 {
    let store = DirStore::new(&g.state_dir);
    let runs = match store::list_runs(&store) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INTERNAL;
        }
    };
    if args.json {
        for r in &runs {
            match serde_json::to_string(r) {
                Ok(line) => println!("{line}"),
                Err(e) => {
                    eprintln!("error: {e}");
                    return exit::INTERNAL;
                }
            }
        }
        return exit::OK;
    }
    if runs.is_empty() {
        eprintln!("no runs in {}", store.location());
        return exit::OK;
    }
    let id_w = runs
        .iter()
        .map(|r| r.run_id.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let rb_w = runs
        .iter()
        .map(|r| r.runbook.len())
        .max()
        .unwrap_or(7)
        .max(7);
    println!(
        "{:id_w$}  {:rb_w$}  {:14}  {:20}  DURATION",
        "RUN", "RUNBOOK", "STATUS", "STARTED (UTC)"
    );
    for r in &runs {
        println!(
            "{:id_w$}  {:rb_w$}  {:14}  {:20}  {}",
            r.run_id,
            r.runbook,
            r.status,
            // An unreadable journal has no start time (list_runs sorts it first).
            if r.started == chrono::DateTime::<chrono::Utc>::MIN_UTC {
                "-".to_string()
            } else {
                r.started.format("%Y-%m-%d %H:%M:%S").to_string()
            },
            engine::human_duration(std::time::Duration::from_millis(r.duration_ms)),
        );
    }
    exit::OK
}

pub fn note(mut args: NoteArgs, g: &Global) -> i32 {
    args.run_id = match super::run::resolve_run_id(&g.state_dir, &args.run_id) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let path = DirStore::new(&g.state_dir).journal_path(&args.run_id);
    if !path.is_file() {
        eprintln!(
            "error: run {} not found in {} (see `runbook runs`)",
            args.run_id,
            g.state_dir.display()
        );
        return exit::USAGE;
    }
    if args.text.trim().is_empty() {
        eprintln!("error: the note is empty");
        return exit::USAGE;
    }
    // A note belongs to a run: a journal that does not begin with the run's start
    // (killed before its first event, or not a journal) gets none.
    match crate::journal::reader::read(&path) {
        Ok(j) if j.records.is_empty() => {
            eprintln!(
                "error: run {} has no events (it was stopped before it started); there is no run to add a note to",
                args.run_id
            );
            return exit::USAGE;
        }
        Ok(_) => {}
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    }
    let by = args
        .operator
        .or_else(|| std::env::var("USER").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    // The run may be going on in another process: one locked, appended, fsynced line.
    match crate::journal::writer::append_once(
        &path,
        chrono::Utc::now(),
        Event::Note {
            text: args.text,
            by,
        },
    ) {
        Ok(seq) => {
            eprintln!("noted in {} (event {seq})", args.run_id);
            exit::OK
        }
        Err(e) => {
            use crate::journal::writer::WriteError;
            match e {
                WriteError::Io { path, source } => {
                    eprintln!(
                        "error: cannot write {}: {source}{}",
                        path.display(),
                        exit::io_hint(&source, &path)
                    );
                    exit::IO_ERROR
                }
                e => {
                    eprintln!("error: {e}");
                    exit::USAGE
                }
            }
        }
    }
}
