//! `runbook test`: run runbooks against the scenarios their test files declare.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::Global;
use crate::suite::{self, CaseResult, spec};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  runbook test                                 every runbook in runbooks/ with a test file
  runbook test runbooks/hub-pvc-locked.yaml --filter locked
  runbook test -o json | jq 'select(.passed | not)'")]
pub struct Args {
    /// Runbook files or folders (default: runbooks/). A runbook NAME.yaml is tested by
    /// NAME.test.yaml beside it.
    pub paths: Vec<PathBuf>,
    /// Only run test cases whose name contains this text.
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,
    #[command(flatten)]
    pub output: super::OutputArgs,
}

/// One line of `test -o json`: a case's result, or (last) the totals.
#[derive(serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum JsonLine<'a> {
    Case {
        runbook: &'a str,
        case: &'a str,
        passed: bool,
        status: Option<&'static str>,
        failures: &'a [String],
        wall_ms: u128,
        cluster_secs: i64,
        journal: Option<String>,
    },
    /// A runbook that could not be tested (it does not lint, or its test file does not load).
    Error {
        path: String,
        error: String,
    },
    Untested {
        path: String,
    },
    Summary {
        passed: usize,
        failed: usize,
    },
}

pub fn run(args: Args, g: &Global) -> i32 {
    let files = match super::lint::runbooks_in(args.paths) {
        Ok(f) => f,
        Err(e) => {
            crate::cli::print_error(&e.to_string());
            return crate::exit::USAGE;
        }
    };
    let json = args.output.json();
    let rt = super::runtime();
    let state_dir = g.state_dir.join("test-runs");
    let cancel = CancellationToken::new();
    let (mut passed, mut failed, mut untested) = (0usize, 0usize, Vec::new());
    for file in &files {
        let loaded = match crate::runbook::load(file) {
            Ok(l) => l,
            Err(e) => {
                if json {
                    super::print_json(&JsonLine::Error {
                        path: file.display().to_string(),
                        error: e.to_string(),
                    });
                } else {
                    println!("FAIL  {}: the runbook does not lint", file.display());
                    for line in e.to_string().lines() {
                        println!("      {line}");
                    }
                }
                failed += 1;
                continue;
            }
        };
        let test_path = spec::test_file_for(file);
        // Only a missing test file means "untested": one that is a directory, a
        // device or a FIFO is an error of its own (loading it says which), not a
        // silent pass with nothing tested.
        if test_path.symlink_metadata().is_err() {
            untested.push(file.clone());
            continue;
        }
        let tests = match spec::load(&test_path, &loaded.runbook) {
            Ok(t) => t,
            Err(e) => {
                if json {
                    super::print_json(&JsonLine::Error {
                        path: test_path.display().to_string(),
                        error: e.to_string(),
                    });
                } else {
                    println!("FAIL  {}", loaded.runbook.name.value);
                    println!("      {e}");
                }
                failed += 1;
                continue;
            }
        };
        let dir = test_path.parent().unwrap_or(Path::new("."));
        for case in &tests.tests {
            if args
                .filter
                .as_ref()
                .is_some_and(|f| !case.name.contains(f.as_str()))
            {
                continue;
            }
            let result = rt.block_on(suite::run_case(
                &loaded,
                dir,
                case,
                &state_dir,
                cancel.clone(),
            ));
            if json {
                super::print_json(&JsonLine::Case {
                    runbook: &result.runbook,
                    case: &result.case,
                    passed: result.passed(),
                    status: result.status.map(|s| s.as_str()),
                    failures: &result.failures,
                    wall_ms: result.wall.as_millis(),
                    cluster_secs: result.cluster_secs,
                    journal: result.journal.as_ref().map(|j| j.display().to_string()),
                });
            } else {
                print_result(&result);
            }
            if result.passed() {
                passed += 1;
            } else {
                failed += 1;
            }
        }
    }
    if json {
        for f in &untested {
            super::print_json(&JsonLine::Untested {
                path: f.display().to_string(),
            });
        }
        super::print_json(&JsonLine::Summary { passed, failed });
        return if failed > 0 {
            crate::exit::FAILED
        } else {
            crate::exit::OK
        };
    }
    for f in &untested {
        println!(
            "note: {} has no test file ({} is missing)",
            f.display(),
            spec::test_file_for(f).display()
        );
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        crate::exit::FAILED
    } else {
        crate::exit::OK
    }
}

fn print_result(r: &CaseResult) {
    let status = r.status.map(|s| s.as_str()).unwrap_or("did not run");
    let cluster = crate::runbook::model::Duration(std::time::Duration::from_secs(
        r.cluster_secs.max(0) as u64,
    ));
    let verdict = if r.passed() { "PASS" } else { "FAIL" };
    println!(
        "{verdict}  {} :: {} ({status}; {:.2}s wall, {cluster} of cluster time)",
        r.runbook,
        r.case,
        r.wall.as_secs_f64()
    );
    for f in &r.failures {
        println!("      - {f}");
    }
    for (i, line) in r.why.iter().enumerate() {
        let label = if i == 0 { "why: " } else { "     " };
        println!("      {label}{line}");
    }
    if !r.passed()
        && let Some(j) = &r.journal
    {
        println!("      journal: {}", j.display());
    }
}
