//! `runbook runs` (past runs, newest first, filtered) and `runbook note RUN TEXT` (an
//! operator note, also while the run is going on in another terminal).

use chrono::{DateTime, Utc};

use super::{Global, OutputArgs};
use crate::engine;
use crate::exit;
use crate::journal::event::Event;
use crate::store::{self, DirStore, RunStore, RunSummary};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  runbook runs                               every run, newest first
  runbook runs --status paused               runs waiting for a person
  runbook runs --runbook hub-pvc-locked --since 2d
  runbook runs -o json | jq -r .run_id       one JSON object per run")]
pub struct RunsArgs {
    /// Only runs with this status (succeeded, failed, aborted, not_applicable, paused,
    /// running, interrupted, or dry-run for dry runs).
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    /// Only runs of this runbook (its name).
    #[arg(long, value_name = "NAME")]
    pub runbook: Option<String>,
    /// Only runs started in the last DURATION (`90m`, `12h`, `7d`) or since a date
    /// (`2026-03-13`, or RFC 3339).
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
    #[command(flatten)]
    pub output: OutputArgs,
    /// The old spelling of `-o json`.
    #[arg(long, hide = true)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  runbook note last \"paged the storage team\"
  runbook note 7f3a \"customer impact ended\" --at 14:32 --operator lee
  runbook note last \"alert fired\" --at -45m            backdated: the timeline places it then")]
pub struct NoteArgs {
    /// The run to annotate: its id, a unique prefix or suffix of it, or `last`.
    pub run_id: String,
    /// The note.
    pub text: String,
    /// Who writes the note (default: $USER, then the login name, then `git config
    /// user.email`).
    #[arg(long, env = "RUNBOOK_OPERATOR")]
    pub operator: Option<String>,
    /// When what the note says happened, if earlier than now: RFC 3339,
    /// `YYYY-MM-DD HH:MM[:SS]` or `HH:MM` (today) in UTC, or `-45m` (before now).
    /// The postmortem's timeline places the note at that time.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub at: Option<String>,
    #[command(flatten)]
    pub remote: super::remote::ServerArgs,
}

/// `--since`: a duration back from now, or a date or time.
fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Some(unit) = s.chars().last().filter(|c| c.is_ascii_alphabetic())
        && let Ok(n) = s[..s.len() - 1].parse::<i64>()
    {
        let d = match unit {
            's' => chrono::Duration::try_seconds(n),
            'm' => chrono::Duration::try_minutes(n),
            'h' => chrono::Duration::try_hours(n),
            'd' => chrono::Duration::try_days(n),
            'w' => chrono::Duration::try_weeks(n),
            _ => None,
        };
        if let Some(d) = d {
            return Ok(Utc::now() - d);
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    Err(format!(
        "`{s}` is neither a duration (90m, 12h, 7d) nor a date (2026-03-13, or RFC 3339)"
    ))
}

fn keep(r: &RunSummary, args: &RunsArgs) -> bool {
    let status_ok = match args.status.as_deref() {
        None => true,
        Some(s) if s.replace('-', "_") == "dry_run" => r.dry_run,
        Some(s) => r.status == s.replace('-', "_"),
    };
    status_ok
        && args.runbook.as_ref().is_none_or(|n| &r.runbook == n)
        && args.since.is_none_or(|t| r.started >= t)
}

pub fn runs(args: RunsArgs, g: &Global) -> i32 {
    const STATUSES: [&str; 9] = [
        "succeeded",
        "failed",
        "aborted",
        "not_applicable",
        "paused",
        "running",
        "interrupted",
        "unreadable",
        "dry_run",
    ];
    if let Some(s) = &args.status
        && !STATUSES.contains(&s.replace('-', "_").as_str())
    {
        crate::cli::error_line!(
            "error: --status {s}: not a status; one of {}",
            STATUSES.join(", ")
        );
        return exit::USAGE;
    }
    let store = DirStore::new(&g.state_dir);
    let mut runs = match store::list_runs(&store) {
        Ok(r) => r,
        Err(e) => {
            crate::cli::error_line!("error: {e}");
            return exit::INTERNAL;
        }
    };
    // Newest first, as `kubectl get events --sort-by` users and `git log` readers
    // expect: the run someone asks about is almost always the latest.
    runs.reverse();
    runs.retain(|r| keep(r, &args));
    if args.json || args.output.json() {
        for r in &runs {
            let code = super::print_json(r);
            if code != exit::OK {
                return code;
            }
        }
        return exit::OK;
    }
    if runs.is_empty() {
        eprintln!("no runs in {}", store.location());
        return exit::OK;
    }
    print_table(&runs);
    for r in &runs {
        if let Some(stale) = &r.stale_lock {
            eprintln!("note: {stale}");
        }
    }
    exit::OK
}

fn print_table(runs: &[RunSummary]) {
    let rows: Vec<[String; 8]> = runs
        .iter()
        .map(|r| {
            [
                r.run_id.clone(),
                r.runbook.clone(),
                r.status_label(),
                // An unreadable journal has no start time.
                if r.started == DateTime::<Utc>::MIN_UTC {
                    "-".to_string()
                } else {
                    r.started.format("%Y-%m-%d %H:%M:%S").to_string()
                },
                engine::human_duration(std::time::Duration::from_millis(r.duration_ms)),
                operators(r),
                target(r),
                r.paused_at.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = [
        "RUN",
        "RUNBOOK",
        "STATUS",
        "STARTED (UTC)",
        "DURATION",
        "OPERATOR",
        "TARGET",
        "PAUSED AT",
    ]
    .map(String::from);
    let mut widths = [0usize; 8];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// The cluster as a person names it: `CONTEXT@SERVER`, the server alone without a
/// context, `-` for a run without kube steps (the uid is in `runs -o json`).
fn target(r: &RunSummary) -> String {
    match &r.target {
        Some(t) => match &t.context {
            Some(c) => format!("{c}@{}", t.server),
            None => t.server.clone(),
        },
        None => "-".into(),
    }
}

/// `ana`, or `ana, lee` when lee resumed it.
fn operators(r: &RunSummary) -> String {
    let mut names = vec![r.operator.clone()];
    for n in &r.resumed_by {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names.retain(|n| !n.is_empty());
    if names.is_empty() {
        "-".into()
    } else {
        names.join(", ")
    }
}

pub fn note(mut args: NoteArgs, g: &Global) -> i32 {
    if let Some(server) = &args.remote.server {
        if args.at.is_some() {
            crate::cli::error_line!(
                "error: --at is not supported with --server yet; the server journals the note at the time it receives it"
            );
            return exit::USAGE;
        }
        use super::remote::{call, seg};
        let path = format!("/api/v1/runs/{}/note", seg(&args.run_id));
        return match call(
            server,
            reqwest::Method::POST,
            &path,
            Some(serde_json::json!({ "text": args.text })),
        ) {
            Ok(v) => {
                eprintln!(
                    "noted in {} (event {})",
                    v["run_id"].as_str().unwrap_or_default(),
                    v["seq"]
                );
                exit::OK
            }
            Err(e) => {
                crate::cli::error_line!("error: {e}");
                exit::USAGE
            }
        };
    }
    args.run_id = match super::run::resolve_run_id(&g.state_dir, &args.run_id) {
        Ok(id) => id,
        Err(e) => {
            crate::cli::error_line!("error: {e}");
            return exit::USAGE;
        }
    };
    let path = DirStore::new(&g.state_dir).journal_path(&args.run_id);
    if !path.is_file() {
        crate::cli::error_line!(
            "error: run {} not found in {} (see `runbook runs`)",
            args.run_id,
            g.state_dir.display()
        );
        return exit::USAGE;
    }
    if args.text.trim().is_empty() {
        crate::cli::error_line!("error: the note is empty");
        return exit::USAGE;
    }
    // A note belongs to a run: a journal that does not begin with the run's start
    // (killed before its first event, or not a journal) gets none.
    match crate::journal::reader::read(&path) {
        Ok(j) if j.records.is_empty() => {
            crate::cli::error_line!(
                "error: run {} has no events (it was stopped before it started); there is no run to add a note to",
                args.run_id
            );
            return exit::USAGE;
        }
        Ok(_) => {}
        Err(e) => {
            crate::cli::error_line!("error: {e}");
            return exit::USAGE;
        }
    }
    let now = chrono::Utc::now();
    let at = match args.at.as_deref() {
        None => None,
        Some(s) => match crate::clock::parse_when(s, chrono_tz::UTC, now) {
            Some(t) if t <= now => Some(t),
            Some(t) => {
                eprintln!(
                    "error: --at {s:?} is {} in the future: a note can be backdated, not postdated (write it when it happens)",
                    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
                return exit::USAGE;
            }
            None => {
                eprintln!(
                    "error: --at {s:?} is not a time: write 2018-03-13T01:00:00Z, 2018-03-13 01:00 or 14:02 (today, UTC), or -45m (before now)"
                );
                return exit::USAGE;
            }
        },
    };
    let by = super::operator::operator_name(args.operator.as_deref());
    // The run may be going on in another process: one locked, appended, fsynced line.
    match crate::journal::writer::append_once(
        &path,
        now,
        Event::Note {
            text: args.text,
            by,
            at,
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
                    crate::cli::error_line!(
                        "error: cannot write {}: {source}{}",
                        path.display(),
                        exit::io_hint(&source, &path)
                    );
                    exit::IO_ERROR
                }
                e => {
                    crate::cli::error_line!("error: {e}");
                    exit::USAGE
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_dates() {
        let t = parse_since("2026-03-13").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-03-13T00:00:00+00:00");
        let hour_ago = parse_since("1h").unwrap();
        let d = Utc::now() - hour_ago;
        assert!(d.num_minutes() >= 59 && d.num_minutes() <= 61, "{d}");
        assert!(
            parse_since("soon")
                .unwrap_err()
                .contains("neither a duration")
        );
    }
}
