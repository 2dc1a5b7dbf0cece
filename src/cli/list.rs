//! `runbook list [DIR]`: each runbook's name, title, step count and last commit.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::Global;
use crate::exit;
use crate::runbook;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  runbook list                     the runbooks in runbooks/
  runbook list ops/runbooks -o json")]
pub struct Args {
    /// Folder of runbooks (default: runbooks/).
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub output: super::OutputArgs,
}

/// One row of the listing.
struct Row {
    name: String,
    title: String,
    steps: String,
    commit: String,
}

/// One runbook in `list -o json`.
#[derive(serde::Serialize)]
struct JsonRow<'a> {
    path: String,
    name: &'a str,
    /// False when the runbook does not lint (`title` then says how many problems).
    valid: bool,
    title: &'a str,
    steps: Option<usize>,
    /// `<short hash> <date> <subject>`, or null outside git or for an untracked file.
    last_commit: Option<&'a str>,
}

/// `<short hash> <date> <subject>` of the last commit touching `file`; None outside
/// a git repository, for an untracked file, or without git.
fn last_commit(file: &Path) -> Option<String> {
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = file.file_name()?;
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["log", "-1", "--format=%h %cs %s", "--"])
        .arg(name)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!line.is_empty()).then_some(line)
}

pub fn run(args: Args, _g: &Global) -> i32 {
    let dir = args.dir.unwrap_or_else(|| PathBuf::from("runbooks"));
    let files = match super::lint::runbook_files(&dir) {
        Ok(f) => f,
        Err(e) => {
            crate::cli::error_line!("error: {}: {e}", dir.display());
            return exit::USAGE;
        }
    };
    let mut rows = Vec::new();
    for file in &files {
        let commit = last_commit(file).unwrap_or_default();
        let row = match runbook::load(file) {
            Ok(l) => Row {
                name: l.runbook.name.value.clone(),
                title: l.runbook.title.value.clone(),
                steps: l.runbook.steps.len().to_string(),
                commit,
            },
            Err(e) => Row {
                name: file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                title: format!(
                    "(invalid: {} problems; run `runbook lint {}`)",
                    e.diagnostics().len(),
                    file.display()
                ),
                steps: "-".into(),
                commit,
            },
        };
        rows.push(row);
    }
    if args.output.json() {
        for (file, r) in files.iter().zip(&rows) {
            let code = super::print_json(&JsonRow {
                path: file.display().to_string(),
                name: &r.name,
                valid: r.steps != "-",
                title: &r.title,
                steps: r.steps.parse().ok(),
                last_commit: (!r.commit.is_empty()).then_some(r.commit.as_str()),
            });
            if code != exit::OK {
                return code;
            }
        }
        return exit::OK;
    }
    let header = Row {
        name: "NAME".into(),
        title: "TITLE".into(),
        steps: "STEPS".into(),
        commit: "LAST COMMIT".into(),
    };
    let w_name = rows
        .iter()
        .chain([&header])
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(4);
    let w_title = rows
        .iter()
        .chain([&header])
        .map(|r| r.title.chars().count())
        .max()
        .unwrap_or(5);
    for r in [&header].into_iter().chain(&rows) {
        let line = format!(
            "{:<w_name$}  {:<w_title$}  {:>5}  {}",
            r.name, r.title, r.steps, r.commit
        );
        println!("{}", line.trim_end());
    }
    exit::OK
}
