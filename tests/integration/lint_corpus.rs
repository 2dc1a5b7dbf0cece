//! Snapshots of what `runbook lint` says about each broken runbook in tests/lint/.
//!
//! Every file there is broken on purpose; its snapshot is the exact text (and JSON) a
//! user reads. A change of wording or position shows up as a snapshot diff. Review
//! with `cargo insta review`, or accept with `INSTA_UPDATE=always cargo test --test integration lint_corpus`.

use std::path::{Path, PathBuf};

use runbook::runbook::{diag, lint_str};

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lint");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/lint exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn lint(path: &Path) -> (String, Vec<diag::Diagnostic>) {
    let source = std::fs::read_to_string(path).expect("readable corpus file");
    let shown = Path::new("tests/lint").join(path.file_name().expect("a file name"));
    let diags = lint_str(&source);
    (diag::render(&shown, &source, &diags), diags)
}

#[test]
fn corpus_has_every_documented_mistake() {
    let names: Vec<String> = corpus()
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for required in [
        "tab-indentation",
        "duplicate-keys",
        "bad-indentation",
        "unknown-key",
        "wrong-type",
        "missing-field",
        "duplicate-id",
        "undefined-param",
        "saved-later",
        "handlebars-syntax",
        "cel-syntax",
        "unknown-kube-verb",
        "unknown-kind",
        "for-each-not-list",
        "within-on-action",
        "bad-duration",
        "several-errors",
    ] {
        assert!(
            names.iter().any(|n| n == required),
            "tests/lint/{required}.yaml is missing"
        );
    }
}

#[test]
fn every_broken_runbook_is_rejected_with_positions() {
    for path in corpus() {
        let (_, diags) = lint(&path);
        assert!(
            !diags.is_empty(),
            "{} lints clean but is meant to be broken",
            path.display()
        );
        for d in &diags {
            assert!(
                d.line > 0 && d.column > 0,
                "{}: no position for {:?}",
                path.display(),
                d
            );
        }
    }
}

#[test]
fn lint_text_output_matches_snapshots() {
    for path in corpus() {
        let (text, _) = lint(&path);
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        insta::with_settings!({snapshot_path => "../lint/snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!(format!("{name}.text"), text);
        });
    }
}

#[test]
fn lint_json_output_matches_snapshots() {
    for path in corpus() {
        let (_, diags) = lint(&path);
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        insta::with_settings!({snapshot_path => "../lint/snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_json_snapshot!(format!("{name}.json"), diags);
        });
    }
}

#[test]
fn several_errors_are_all_reported_in_one_pass() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lint/several-errors.yaml");
    let (_, diags) = lint(&path);
    assert!(
        diags.len() >= 10,
        "only {} diagnostics: {diags:#?}",
        diags.len()
    );
    let codes: Vec<&str> = diags.iter().map(|d| d.code).collect();
    for code in [
        "name-slug",
        "unknown-id",
        "gate-not-action",
        "kube-effect",
        "mutating-check",
        "http-method",
    ] {
        assert!(codes.contains(&code), "{code} missing from {codes:?}");
    }
}
