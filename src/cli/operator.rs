//! Who is doing it: the name journaled for every run, resume, approval, note and abort.
//!
//! In order: `--operator`, `RUNBOOK_OPERATOR` (clap reads both into the flag),
//! `$USER`, the OS login name of the effective user, then `git config user.email`.
//! `$USER` is unset in containers, under `kubectl exec` and on many jump hosts; the
//! passwd entry is there whenever the uid has one, and the git e-mail is the name a
//! team already knows a person by when it has neither.

use std::ffi::CStr;
use std::path::Path;

/// The operator's name; "unknown" only when every source above is empty.
pub fn operator_name(flag: Option<&str>) -> String {
    let non_empty = |s: String| (!s.trim().is_empty()).then(|| s.trim().to_owned());
    flag.map(str::to_owned)
        .and_then(non_empty)
        .or_else(|| std::env::var("USER").ok().and_then(non_empty))
        .or_else(|| login_name().and_then(non_empty))
        .or_else(|| git_email(Path::new(".")).and_then(non_empty))
        .unwrap_or_else(|| "unknown".into())
}

/// The login name of the effective uid from the passwd database (getpwuid_r).
///
/// Through `libc`, which the binary already links for process-group kills, rather
/// than a `whoami`-style crate: one re-entrant call does not justify a dependency.
fn login_name() -> Option<String> {
    // SAFETY: geteuid cannot fail and has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: an all-zero passwd is a valid value of this plain C struct.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, buf's length is passed with it,
    // and `result` is only read when getpwuid_r says it points at `pwd`.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name points into `buf`, NUL-terminated by getpwuid_r.
    let name = unsafe { CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// `git config user.email` as seen from `dir`; `None` without git or without one set.
fn git_email(dir: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["config", "user.email"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_and_blank_names_do_not_count() {
        assert_eq!(operator_name(Some("lee")), "lee");
        // A blank flag falls through to the next source, never to a blank actor.
        assert_ne!(operator_name(Some("  ")).trim(), "");
    }

    #[test]
    fn the_login_name_of_this_process_is_found() {
        // Every uid the tests run as has a passwd entry on the machines we build on.
        let name = login_name().expect("the test user has a passwd entry");
        assert!(!name.is_empty());
    }
}
