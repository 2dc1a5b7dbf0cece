//! The commit `runbook --version` shows, so a bug report names the exact build.
//!
//! Read from git when the source is a checkout; a build from a source tarball (no
//! git, or no repository) says "unknown commit" instead of failing.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

fn main() {
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(hash) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some();
            if dirty {
                format!("{hash}, with uncommitted changes")
            } else {
                hash
            }
        }
        None => "unknown commit".to_owned(),
    };
    println!("cargo:rustc-env=RUNBOOK_COMMIT={commit}");
    // Rebuild when HEAD moves (a commit, a checkout); in a worktree HEAD lives in
    // the worktree's own git dir.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
