//! A gated action's `preview:`: a read-only operation run when the plan is built,
//! its result shown at the gate, journaled with it and covered by the plan digest.

use std::path::Path;

use runbook::journal::event::Event;
use runbook::journal::reader;

use crate::support::cli::Cli;

const CLEANUP: &str = r#"version: 1
name: cleanup
title: Old logs fill the disk
params:
  dir: { required: true, description: The log folder }
steps:
  - action: Delete the old logs
    id: clean
    shell: { argv: [sh, -c, 'rm -f "$1"/*.old', sh, "{{params.dir}}"] }
    preview:
      shell: { argv: [ls, "{{params.dir}}"] }
"#;

struct Sys {
    dir: tempfile::TempDir,
    logs: std::path::PathBuf,
}

impl Sys {
    fn new() -> Sys {
        let dir = tempfile::tempdir().expect("a temp dir");
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        for f in ["a.old", "b.old"] {
            std::fs::write(logs.join(f), "x").unwrap();
        }
        std::fs::write(dir.path().join("cleanup.yaml"), CLEANUP).unwrap();
        Sys { dir, logs }
    }

    fn run(&self, extra: &[&str]) -> crate::support::cli::Output {
        let file = self.dir.path().join("cleanup.yaml");
        let param = format!("dir={}", self.logs.display());
        let mut args = vec!["run", file.to_str().unwrap(), "-p", &param];
        args.extend(extra);
        Cli::new()
            .state_dir(self.dir.path().join(".runbook"))
            .args(args)
            .run()
    }

    fn gate_requests(&self) -> Vec<(Option<String>, String)> {
        let runs = self.dir.path().join(".runbook/runs");
        let run = std::fs::read_dir(&runs).unwrap().flatten().next().unwrap();
        reader::read(&run.path().join("journal.ndjson"))
            .unwrap()
            .records
            .into_iter()
            .filter_map(|r| match r.event {
                Event::GateRequested {
                    preview, digest, ..
                } => Some((preview, digest)),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn dry_run_shows_the_preview_under_the_plan_and_deletes_nothing() {
    let sys = Sys::new();
    let out = sys.run(&["--dry-run", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{out}");
    let stderr = out.stderr.as_str();
    assert!(stderr.contains("preview: a.old\n      b.old\n"), "{stderr}");
    assert!(sys.logs.join("a.old").exists(), "a dry run deletes nothing");
}

#[test]
fn a_pausing_gate_shows_and_journals_the_preview_and_its_digest_covers_it() {
    let sys = Sys::new();
    let out = sys.run(&[]);
    assert_eq!(out.status.code(), Some(3), "{out}");
    let stderr = out.stderr.as_str();
    assert!(stderr.contains("preview: a.old\n      b.old\n"), "{stderr}");
    assert!(sys.logs.join("a.old").exists(), "nothing ran unapproved");
    let first = sys.gate_requests();
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].0.as_deref(), Some("a.old\nb.old"), "{first:?}");

    // More to delete now: the same operations, another plan.
    std::fs::write(sys.logs.join("c.old"), "x").unwrap();
    let again = Cli::new()
        .state_dir(sys.dir.path().join(".runbook"))
        .args(["resume", "last"])
        .run();
    assert_eq!(again.status.code(), Some(3), "{again}");
    let both = sys.gate_requests();
    assert_eq!(both.len(), 2, "{both:?}");
    assert_eq!(both[1].0.as_deref(), Some("a.old\nb.old\nc.old"));
    assert_ne!(both[0].1, both[1].1, "the digest covers the preview");
}

fn lint(dir: &Path, yaml: &str) -> crate::support::cli::Output {
    std::fs::write(dir.join("p.yaml"), yaml).unwrap();
    Cli::new().current_dir(dir).args(["lint", "p.yaml"]).run()
}

#[test]
fn a_mutating_preview_is_a_lint_error_and_one_never_shown_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let head = "version: 1\nname: p\ntitle: t\nsteps:\n  - action: Delete pods\n    id: del\n    kube: { delete: pods, selector: app=x }\n";
    let out = lint(
        dir.path(),
        &format!("{head}    preview: {{ kube: {{ delete: pods, selector: app=x }} }}\n"),
    );
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(
        out.stdout.as_str().contains(
            "p.yaml:8:32: error: a preview is read-only, but `kube: delete` changes the cluster"
        ),
        "{out}"
    );
    let out = lint(
        dir.path(),
        &format!(
            "{head}    gate: auto\n    preview: {{ kube: {{ get: pods, selector: app=x }} }}\n"
        ),
    );
    assert!(
        out.stdout
            .as_str()
            .contains("warning: `preview` is shown at a gate"),
        "{out}"
    );
    assert!(!out.stdout.as_str().contains("error"), "{out}");
}
