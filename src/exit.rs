//! Documented process exit codes. `--help` and the README list the same table.

/// The run finished and every verification passed (or lint found nothing).
pub const OK: i32 = 0;
/// A step or verification failed (or lint found errors).
pub const FAILED: i32 = 1;
/// Usage, parse or validation error: nothing was run.
pub const USAGE: i32 = 2;
/// The run paused, waiting for a person (a gate or a manual step without a TTY).
pub const PAUSED: i32 = 3;
/// The run was aborted: a declined gate or Ctrl-C.
pub const ABORTED: i32 = 4;
/// The checks found nothing to fix: the runbook does not apply.
pub const NOT_APPLICABLE: i32 = 5;
/// A bug in runbook itself.
pub const INTERNAL: i32 = 70;
/// The environment failed an input/output: a full disk, a quota, a file size limit,
/// a permission or a read-only file system under the state dir (sysexits' EX_IOERR).
/// Not a bug: the message says which path, and what to free or fix.
pub const IO_ERROR: i32 = 74;

/// The table printed at the end of `runbook --help`.
pub const HELP_TABLE: &str = "\
Exit codes:
  0   done (or lint clean)
  1   a step or verification failed (or lint found errors)
  2   usage, parse or validation error; nothing ran
  3   paused, waiting for a person (resume with `runbook resume RUN_ID`)
  4   aborted (declined gate, Ctrl-C)
  5   not applicable: the checks found nothing to fix
  70  internal error (a bug in runbook)
  74  input/output error: disk full, quota, permissions (the message names the path)";

/// What a person can do about an I/O error on `path`, to append to its message: free
/// space for a full disk or quota, fix permissions, or nothing to add.
pub fn io_hint(source: &std::io::Error, path: &std::path::Path) -> String {
    use std::io::ErrorKind;
    let dir = path.parent().unwrap_or(path).display();
    match source.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge => format!(
            "; free space on the file system holding {dir} (or raise the quota or file size limit), or point --state-dir elsewhere, then `runbook resume` the run"
        ),
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => {
            format!("; make {dir} writable, or point --state-dir elsewhere")
        }
        _ => String::new(),
    }
}
