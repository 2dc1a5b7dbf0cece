//! `runbook lint [PATH...]`: check runbooks completely and report every problem.

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use serde::Serialize;

use super::Global;
use crate::exit;
use crate::runbook::{self, Diagnostic};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 clean, 1 a runbook has errors, 2 usage error (e.g. a path that does not exist).

Examples:
  runbook lint                      every runbook under runbooks/
  runbook lint rb.yaml -o json      diagnostics as JSON for CI annotations"
)]
pub struct Args {
    /// Runbook files or folders (default: runbooks/). Folders are searched
    /// recursively for *.yaml and *.yml, skipping lab scenarios (*.scenario.yaml) and
    /// test files (*.test.yaml).
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub output: super::OutputArgs,
    /// The old spelling of `-o`.
    #[arg(long, value_enum, hide = true)]
    pub format: Option<Format>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// One diagnostic in `--format json`, with the file it belongs to.
#[derive(Debug, Serialize)]
struct JsonDiagnostic<'a> {
    path: String,
    #[serde(flatten)]
    diagnostic: &'a Diagnostic,
}

#[derive(Debug, Serialize)]
struct JsonReport<'a> {
    files_checked: usize,
    errors: usize,
    warnings: usize,
    diagnostics: Vec<JsonDiagnostic<'a>>,
}

/// A file is a lab scenario or a runbook's test file, not a runbook, when named
/// `*.scenario.yaml` or `*.test.yaml`.
fn is_companion(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
        [".scenario.yaml", ".scenario.yml", ".test.yaml", ".test.yml"]
            .iter()
            .any(|suffix| n.ends_with(suffix))
    })
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// The runbook files under `path` (itself when it is a file), sorted.
pub(crate) fn runbook_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![path.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let p = entry?.path();
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if p.is_dir() {
                dirs.push(p);
            } else if is_yaml(&p) && !is_companion(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The runbooks named on the command line (files, or folders searched recursively;
/// `runbooks/` when none is given), or the usage error to print.
pub(crate) fn runbooks_in(paths: Vec<PathBuf>) -> Result<Vec<PathBuf>, String> {
    let paths = if paths.is_empty() {
        vec![PathBuf::from("runbooks")]
    } else {
        paths
    };
    let mut files = Vec::new();
    for p in &paths {
        match runbook_files(p) {
            Ok(found) => files.extend(found),
            Err(e) => return Err(format!("error: {}: {e}", p.display())),
        }
    }
    if files.is_empty() {
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(format!(
            "error: no runbooks (*.yaml, *.yml) found in {}",
            shown.join(", ")
        ));
    }
    Ok(files)
}

pub fn run(args: Args, _g: &Global) -> i32 {
    let files = match runbooks_in(args.paths) {
        Ok(f) => f,
        Err(e) => {
            crate::cli::print_error(&e.to_string());
            return exit::USAGE;
        }
    };

    let mut results: Vec<(PathBuf, String, Vec<Diagnostic>)> = Vec::new();
    for file in &files {
        match runbook::read_source(file) {
            Ok(runbook::Source::Text(source)) => {
                let diags = runbook::lint_str(&source);
                results.push((file.clone(), source, diags));
            }
            Ok(runbook::Source::NotUtf8 { lossy, diagnostic }) => {
                results.push((file.clone(), lossy, vec![diagnostic]));
            }
            Err(e) => {
                let d = Diagnostic::error(
                    "io",
                    runbook::model::Pos::UNKNOWN,
                    format!("cannot read the file: {e}"),
                );
                results.push((file.clone(), String::new(), vec![d]));
            }
        }
    }
    let errors: usize = results
        .iter()
        .map(|(_, _, d)| d.iter().filter(|d| d.is_error()).count())
        .sum();
    let bad_files = results
        .iter()
        .filter(|(_, _, d)| d.iter().any(Diagnostic::is_error))
        .count();

    let format = match (args.format, args.output.output) {
        (Some(f), _) => f,
        (None, super::Output::Json) => Format::Json,
        (None, super::Output::Text) => Format::Text,
    };
    match format {
        Format::Json => {
            let report = JsonReport {
                files_checked: results.len(),
                errors,
                warnings: results
                    .iter()
                    .map(|(_, _, d)| d.iter().filter(|d| !d.is_error()).count())
                    .sum(),
                diagnostics: results
                    .iter()
                    .flat_map(|(path, _, diags)| {
                        diags.iter().map(move |d| JsonDiagnostic {
                            path: path.display().to_string(),
                            diagnostic: d,
                        })
                    })
                    .collect(),
            };
            match serde_json::to_string_pretty(&report) {
                Ok(s) => println!("{s}"),
                Err(e) => {
                    crate::cli::error_line!("error: cannot encode the report: {e}");
                    return exit::INTERNAL;
                }
            }
        }
        Format::Text => {
            for (path, source, diags) in &results {
                if !diags.is_empty() {
                    print!("{}", runbook::diag::render(path, source, diags));
                }
            }
            let n = results.len();
            let plural = |k: usize, w: &str| format!("{k} {w}{}", if k == 1 { "" } else { "s" });
            let warnings: usize = results
                .iter()
                .map(|(_, _, d)| d.iter().filter(|d| !d.is_error()).count())
                .sum();
            if errors == 0 && warnings == 0 {
                eprintln!("{} checked: no problems", plural(n, "runbook"));
            } else if errors == 0 {
                eprintln!(
                    "{} checked: no errors, {}",
                    plural(n, "runbook"),
                    plural(warnings, "warning")
                );
            } else {
                eprintln!(
                    "{} checked: {} in {}{}",
                    plural(n, "runbook"),
                    plural(errors, "error"),
                    plural(bad_files, "file"),
                    if warnings > 0 {
                        format!(", {}", plural(warnings, "warning"))
                    } else {
                        String::new()
                    }
                );
            }
        }
    }
    if errors > 0 { exit::FAILED } else { exit::OK }
}
