//! Run the binary under a time bound and measure its peak memory from outside.
//!
//! The peak comes from two places, because neither alone is exact:
//! - `VmHWM` in /proc/PID/status, polled every few milliseconds while the child
//!   runs: the high-water mark of the image it exec'ed, but a child that exits
//!   between two polls is missed;
//! - `wait4`'s `ru_maxrss`: exact for the whole life of the child, but Linux counts
//!   in it the memory image the child had before `exec` (a copy of this test binary,
//!   with every other test running in it), so it only ever over-states the peak.
//!
//! [`Measured::assert_bounded`] takes `ru_maxrss` under the bound as proof, and
//! otherwise needs a VmHWM sample under it. When `python3` is on the machine, the
//! binary is started by a small Python launcher that forks it and reports its
//! `ru_maxrss`: a fork of a 10 MB process, so that figure is exact and clean.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cli::BIN;

/// Forks and execs the binary from a small process, waits for it and writes
/// "STATUS MAXRSS" to the file named by `RUNBOOK_MEASURE_OUT`. The binary's
/// `ru_maxrss` then starts from the launcher's few megabytes, not from this test
/// binary's image.
const LAUNCHER: &str = "import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
with open(os.environ['RUNBOOK_MEASURE_OUT'], 'w') as f:
    f.write('%d %d' % (status, ru.ru_maxrss))
";

/// `python3` when this machine has it (scripts/test.sh needs it too).
fn python3() -> Option<&'static str> {
    static FOUND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| {
            Command::new("python3")
                .args(["-c", "pass"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .then_some("python3")
}

/// Output kept per stream; the rest is read and dropped (a hostile case may print
/// gigabytes, which must not fill the test's memory).
const KEEP: usize = 256 * 1024;

/// A run of the binary with a bound on its time.
pub struct Run {
    cmd: Command,
    /// Started by [`LAUNCHER`], which reports the binary's exit and rusage on fd 3.
    launched: bool,
    bound: Duration,
}

/// What a measured run did.
#[derive(Debug)]
pub struct Measured {
    /// The exit code; None when killed by a signal (ours at the bound, or a crash).
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Killed by us because it outlived its bound.
    pub timed_out: bool,
    pub elapsed: Duration,
    /// Highest VmHWM sampled, KiB (0: never sampled).
    pub sampled_kb: i64,
    /// `ru_maxrss` from wait4, KiB (an over-estimate; see the module doc).
    pub maxrss_kb: i64,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn new<I, S>(args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        // Through a small launcher when there is one (see the module doc): its fork
        // gives the binary a clean `ru_maxrss`.
        let launcher = python3();
        let mut cmd = match launcher {
            Some(py) => {
                let mut c = Command::new(py);
                c.args(["-c", LAUNCHER]).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        cmd.args(args).env("USER", "ana");
        for var in [
            "RUNBOOK_OPERATOR",
            "RUNBOOK_STATE_DIR",
            "RUST_LOG",
            "KUBECONFIG",
        ] {
            cmd.env_remove(var);
        }
        Run {
            cmd,
            launched: launcher.is_some(),
            bound: Duration::from_secs(20),
        }
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Run {
        self.cmd.current_dir(dir);
        self
    }

    pub fn bound(mut self, bound: Duration) -> Run {
        self.bound = bound;
        self
    }

    /// Run to the end or to the bound (then the whole process group is killed).
    // The child is reaped by wait4 (for its rusage), not by Child::wait.
    #[allow(clippy::zombie_processes)]
    pub fn run(mut self) -> Measured {
        self.cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so a step's children die with it at the bound.
            .process_group(0);
        let report = tempfile::NamedTempFile::new().expect("a temp file");
        self.cmd.env("RUNBOOK_MEASURE_OUT", report.path());
        let t0 = Instant::now();
        let mut child = self.cmd.spawn().expect("the binary starts");
        let pid = child.id() as i32;
        let drain = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                let mut buf = [0u8; 16384];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let room = KEEP.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
                String::from_utf8_lossy(&kept).into_owned()
            })
        };
        let out = drain(Box::new(child.stdout.take().expect("piped")));
        let err = drain(Box::new(child.stderr.take().expect("piped")));
        let status_file = format!("/proc/{pid}/status");
        let mut sampled_kb = 0i64;
        let mut timed_out = false;
        let (status, maxrss_kb) = loop {
            if let Ok(status) = std::fs::read_to_string(&status_file)
                && let Some(kb) = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            {
                sampled_kb = sampled_kb.max(kb);
            }
            let mut status = 0;
            // SAFETY: an all-zero rusage is valid; wait4 on our own child.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            let got = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
            if got == pid {
                break (status, usage.ru_maxrss);
            }
            if !timed_out && t0.elapsed() > self.bound {
                timed_out = true;
                // SAFETY: killing the process group we created.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(3));
        };
        // Anything the binary left in its group goes too.
        // SAFETY: as above.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let elapsed = t0.elapsed();
        let (mut status, mut maxrss_kb) = (status, maxrss_kb);
        if self.launched {
            // The launcher's own numbers are its; the binary's are in the report
            // (absent when the bound killed both).
            sampled_kb = 0;
            let reported = std::fs::read_to_string(report.path()).unwrap_or_default();
            let mut parts = reported.split_whitespace().map(|p| p.parse::<i64>().ok());
            if let (Some(Some(st)), Some(Some(rss))) = (parts.next(), parts.next()) {
                status = st as i32;
                maxrss_kb = rss;
            }
        }
        let (code, signal) = if libc::WIFEXITED(status) {
            (Some(libc::WEXITSTATUS(status)), None)
        } else {
            (None, Some(libc::WTERMSIG(status)))
        };
        Measured {
            code,
            signal,
            timed_out,
            elapsed,
            sampled_kb,
            maxrss_kb,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        }
    }
}

impl Measured {
    /// The peak to report, KiB: the sampled VmHWM when there is one, else
    /// `ru_maxrss`.
    pub fn peak_kb(&self) -> i64 {
        if self.sampled_kb > 0 {
            self.sampled_kb
        } else {
            self.maxrss_kb
        }
    }

    /// No panic, not killed, within the time bound, peak memory under `max_kb`.
    #[track_caller]
    pub fn assert_sane(&self, what: &str, max_kb: i64) {
        assert!(
            !self.timed_out,
            "{what}: still running after its bound\n{self}"
        );
        assert!(
            self.signal.is_none(),
            "{what}: killed by signal {:?}\n{self}",
            self.signal
        );
        assert!(
            !matches!(self.code, Some(70 | 101)),
            "{what}: exit {:?} (a bug)\n{self}",
            self.code
        );
        assert!(
            !self.stderr.contains("panicked"),
            "{what}: panicked\n{self}"
        );
        self.assert_bounded(what, max_kb);
    }

    /// Peak memory under `max_kb`: `ru_maxrss` (an over-estimate) under it proves
    /// it; otherwise (the parent's image inflated it) a VmHWM sample must have been
    /// taken, and be under it.
    #[track_caller]
    pub fn assert_bounded(&self, what: &str, max_kb: i64) {
        if self.maxrss_kb < max_kb {
            return;
        }
        assert!(
            self.sampled_kb > 0 && self.sampled_kb < max_kb,
            "{what}: peak RSS over {max_kb} KiB (sampled {} KiB, ru_maxrss {} KiB)\n{self}",
            self.sampled_kb,
            self.maxrss_kb
        );
    }
}

impl std::fmt::Display for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cut = |s: &str| s.chars().take(3000).collect::<String>();
        write!(
            f,
            "exit {:?} signal {:?} after {:?} (peak {} KiB)\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            self.signal,
            self.elapsed,
            self.peak_kb(),
            cut(&self.stdout),
            cut(&self.stderr)
        )
    }
}
