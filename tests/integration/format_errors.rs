//! Misleading errors of issue 15: the kubeconfig error said twice, and lint that
//! stopped at the first YAML error.

use std::path::{Path, PathBuf};

use crate::support::cli::Cli;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a fixture");
    path
}

const KUBE: &str = "version: 1\nname: k\ntitle: k\nsteps:\n  - check: Pods\n    id: pods\n    kube: { get: pods }\n";

#[test]
fn a_missing_kubeconfig_is_named_once_with_one_hint() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let rb = write(tmp.path(), "k.yaml", KUBE);
    let missing = tmp.path().join("no-such-kubeconfig");
    let out = Cli::new()
        .state_dir(tmp.path().join("state"))
        .env("KUBECONFIG", &missing)
        .arg("run")
        .arg(&rb)
        .run();
    out.code(2).stderr_contains(format!(
        "error: cannot reach Kubernetes: cannot read kubeconfig {}: No such file or directory",
        missing.display()
    ));
    assert_eq!(out.stderr.matches("pass --kubeconfig").count(), 1, "{out}");
    assert!(!out.stderr.contains("in-cluster"), "{out}");
    assert!(!out.stderr.contains("'\""), "{out}");
}

#[test]
fn lint_reports_every_independent_yaml_error() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let rb = write(
        tmp.path(),
        "y.yaml",
        r#"version: 1
name: y
title: Three YAML errors
steps:
  - check: One
    id: one
    shell: { argv: [echo, "a" }
  - check: Two
    id: two
    shell: { argv: [echo] }
  - check: Three
    id: three
    shell: { argv: [echo, x: y: z] }
  - check: Four
    id: four
    id: dup
"#,
    );
    let out = Cli::new().arg("lint").arg(&rb).run();
    out.code(1)
        .stdout_contains("y.yaml:7:20: error: invalid YAML: mismatched bracket")
        .stdout_contains("y.yaml:13:31: error: invalid YAML")
        .stdout_contains("y.yaml:16:5: error: invalid YAML: the key `id` appears twice")
        .stderr_contains("3 errors in 1 file");
}
