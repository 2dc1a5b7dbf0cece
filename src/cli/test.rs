//! `runbook test`: run runbooks against the scenarios their test files declare.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::Global;
use crate::suite::{self, CaseResult, spec};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Runbook files or folders (default: runbooks/). A runbook NAME.yaml is tested by
    /// NAME.test.yaml beside it.
    pub paths: Vec<PathBuf>,
    /// Only run test cases whose name contains this text.
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,
}

pub fn run(args: Args, g: &Global) -> i32 {
    let files = match super::lint::runbooks_in(args.paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return crate::exit::USAGE;
        }
    };
    let rt = super::runtime();
    let state_dir = g.state_dir.join("test-runs");
    let cancel = CancellationToken::new();
    let (mut passed, mut failed, mut untested) = (0usize, 0usize, Vec::new());
    for file in &files {
        let loaded = match crate::runbook::load(file) {
            Ok(l) => l,
            Err(e) => {
                println!("FAIL  {}: the runbook does not lint", file.display());
                for line in e.to_string().lines() {
                    println!("      {line}");
                }
                failed += 1;
                continue;
            }
        };
        let test_path = spec::test_file_for(file);
        if !test_path.is_file() {
            untested.push(file.clone());
            continue;
        }
        let tests = match spec::load(&test_path, &loaded.runbook) {
            Ok(t) => t,
            Err(e) => {
                println!("FAIL  {}", loaded.runbook.name.value);
                println!("      {e}");
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
            print_result(&result);
            if result.passed() {
                passed += 1;
            } else {
                failed += 1;
            }
        }
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
