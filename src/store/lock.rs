//! Who holds a run: the `flock` on `<run>/lock` says *whether* someone does, and the
//! file's one line (`<pid> <host>`) says *who*, so a run that is busy, or was left
//! behind by a process that died, can be explained to the person asking instead of
//! being taken over in silence.
//!
//! The line is written when a process takes the lock and emptied when it lets go
//! normally. A line that is still there while nobody holds the lock was left by a
//! process that died holding the run (SIGKILL, a crash, a lost machine): the run was
//! interrupted, and `runbook resume` takes it over.

use std::fs::File;
use std::io::{Seek, Write};
use std::path::Path;

/// The process named in a run's lock file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LockHolder {
    pub pid: u32,
    pub host: String,
}

/// What a run's lock says, for `runbook runs`, `show`, `abort` and `resume`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldState {
    /// Nobody holds the run, and the last holder let go of it normally.
    Free,
    /// A live process holds it (`None` when its lock file names nobody, as runs
    /// written before the holder line was kept do).
    Held(Option<LockHolder>),
    /// Nobody holds it, but the lock file still names the process that held it last:
    /// that process died while driving the run.
    Stale(LockHolder),
}

impl LockHolder {
    /// This process on this host.
    pub fn me() -> LockHolder {
        LockHolder {
            pid: std::process::id(),
            host: this_host(),
        }
    }

    /// `pid 4242 on this host` or `pid 4242 on host ci-7`.
    pub fn describe(&self) -> String {
        if self.host == this_host() {
            format!("pid {} on this host", self.pid)
        } else {
            format!("pid {} on host {}", self.pid, self.host)
        }
    }

    /// The lock file's line.
    fn line(&self) -> String {
        format!("{} {}\n", self.pid, self.host)
    }

    /// The holder a lock file names; `None` for an empty or foreign file.
    pub fn read(lock: &Path) -> Option<LockHolder> {
        let text = std::fs::read_to_string(lock).ok()?;
        let (pid, host) = text.trim().split_once(' ')?;
        Some(LockHolder {
            pid: pid.parse().ok()?,
            host: host.to_owned(),
        })
    }

    /// Whether the process still runs, when that can be told (same host only).
    pub fn is_running(&self) -> Option<bool> {
        if self.host != this_host() {
            return None;
        }
        let Ok(pid) = libc::pid_t::try_from(self.pid) else {
            return Some(false);
        };
        // kill(pid, 0) checks without signalling: ESRCH means no such process; EPERM
        // means it exists but belongs to someone else.
        // SAFETY: signal 0 sends nothing; the call only reads the process table.
        let rc = unsafe { libc::kill(pid, 0) };
        Some(rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
    }
}

impl HoldState {
    /// The sentence `runs`, `show`, `abort` and `resume` print for a stale lock.
    pub fn stale_message(holder: &LockHolder, run_id: &str) -> String {
        let gone = match holder.is_running() {
            Some(false) => "which is no longer running",
            // A live pid that does not hold the flock is another process that was
            // given the same number.
            Some(true) => "which no longer holds it (that pid is now another process)",
            None => "which no longer holds it",
        };
        format!(
            "the run's lock was held by {}, {gone}: run {run_id} was interrupted; `runbook resume {run_id}` takes it over",
            holder.describe()
        )
    }
}

/// Write this process into a lock file it has just locked.
pub(crate) fn claim(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(LockHolder::me().line().as_bytes())?;
    file.flush()
}

/// Empty a lock file this process is about to unlock normally.
pub(crate) fn release(file: &mut File) {
    let _ = file.set_len(0);
}

fn this_host() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_line_round_trips_and_this_process_is_running() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("lock");
        let mut f = File::create(&path).unwrap();
        claim(&mut f).unwrap();
        let me = LockHolder::read(&path).unwrap();
        assert_eq!(me, LockHolder::me());
        assert_eq!(me.is_running(), Some(true));
        assert_eq!(me.describe(), format!("pid {} on this host", me.pid));
        release(&mut f);
        assert_eq!(LockHolder::read(&path), None);
    }

    #[test]
    fn a_dead_pid_is_reported_as_no_longer_running() {
        // pid_max is at most 2^22 on Linux: this pid cannot exist.
        let dead = LockHolder {
            pid: 4_194_304 + 7,
            host: this_host(),
        };
        assert_eq!(dead.is_running(), Some(false));
        let msg = HoldState::stale_message(&dead, "r-7f3a");
        assert!(
            msg.contains("which is no longer running: run r-7f3a was interrupted; `runbook resume r-7f3a` takes it over"),
            "{msg}"
        );
        let far = LockHolder {
            pid: 1,
            host: "elsewhere-host".into(),
        };
        assert_eq!(far.is_running(), None);
        assert!(far.describe().contains("on host elsewhere-host"));
    }
}
