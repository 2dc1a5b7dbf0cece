//! The one way tests run the `runbook` binary, a builder that reads like `just`'s
//! `Test`: `Cli::new().state_dir(dir).args(["runs"]).run().success()`.
//!
//! Every run starts from the same environment so a developer's shell cannot change a
//! result: `USER=ana` (the operator journaled), and none of `RUNBOOK_OPERATOR`,
//! `RUNBOOK_STATE_DIR`, `RUST_LOG`, `KUBECONFIG` or `RUNBOOK_PARAM_*` (a test must never reach the
//! developer's real cluster). Tests that need one of them set it with `.env`.

use std::ffi::OsStr;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// The binary cargo built for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_runbook");

/// A run of the binary being set up.
#[must_use = "a Cli does nothing until .run() or .spawn()"]
pub struct Cli {
    cmd: Command,
    args: Vec<String>,
    state_dir: Option<String>,
    stdin: Option<Vec<u8>>,
    terminal: bool,
    think: Duration,
    /// Type stdin only once stdout shows this (then think): a person answers a prompt
    /// they have seen, however long the program took to show it.
    after: Option<String>,
    discard_output: bool,
}

impl Default for Cli {
    fn default() -> Self {
        Self::new()
    }
}

impl Cli {
    pub fn new() -> Cli {
        let mut cmd = Command::new(BIN);
        cmd.env("USER", "ana");
        for var in [
            "RUNBOOK_OPERATOR",
            "RUNBOOK_STATE_DIR",
            "RUST_LOG",
            "KUBECONFIG",
        ] {
            cmd.env_remove(var);
        }
        // A developer's RUNBOOK_PARAM_* would set params of every run.
        for (var, _) in std::env::vars_os() {
            if var
                .to_str()
                .is_some_and(|v| v.starts_with("RUNBOOK_PARAM_"))
            {
                cmd.env_remove(var);
            }
        }
        Cli {
            cmd,
            args: Vec::new(),
            state_dir: None,
            stdin: None,
            terminal: false,
            think: Duration::ZERO,
            after: None,
            discard_output: false,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Cli {
        self.args.push(lossless(arg.as_ref()));
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Cli
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| lossless(a.as_ref())));
        self
    }

    /// `--state-dir DIR`, put before the subcommand as a user types it.
    pub fn state_dir(mut self, dir: impl AsRef<Path>) -> Cli {
        self.state_dir = Some(lossless(dir.as_ref().as_os_str()));
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Cli {
        self.cmd.env(key, value);
        self
    }

    pub fn env_remove(mut self, key: &str) -> Cli {
        self.cmd.env_remove(key);
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Cli {
        self.cmd.current_dir(dir);
        self
    }

    /// What the person types; without it stdin is empty (closed), as in CI.
    pub fn stdin(mut self, text: impl Into<Vec<u8>>) -> Cli {
        self.stdin = Some(text.into());
        self
    }

    /// Run on a pseudo-terminal (util-linux `script`), so the binary sees a TTY:
    /// gates ask, progress is drawn. The terminal's output arrives as stdout.
    pub fn on_a_terminal(mut self) -> Cli {
        self.terminal = true;
        self
    }

    /// Wait this long before typing stdin: a person thinking at a prompt.
    pub fn think(mut self, pause: Duration) -> Cli {
        self.think = pause;
        self
    }

    /// For `run`: wait until stdout shows `prompt` before thinking and typing (a fixed
    /// delay from the start races the program's start-up on a loaded machine).
    pub fn after_prompt(mut self, prompt: &str) -> Cli {
        self.after = Some(prompt.to_string());
        self
    }

    /// For `spawn`: send stdout and stderr nowhere instead of to pipes (a background
    /// run whose output nobody reads must not block on a full pipe).
    pub fn discard_output(mut self) -> Cli {
        self.discard_output = true;
        self
    }

    /// The arguments as the binary gets them.
    fn argv(&self) -> Vec<String> {
        let mut argv = Vec::new();
        if let Some(dir) = &self.state_dir {
            argv.extend(["--state-dir".to_string(), dir.clone()]);
        }
        argv.extend(self.args.iter().cloned());
        argv
    }

    fn command(mut self) -> (Command, Option<Vec<u8>>, Duration, Option<String>) {
        let argv = self.argv();
        let mut cmd = if self.terminal {
            // `script` needs one command line; single quotes keep every argument whole.
            let quote = |a: &str| format!("'{}'", a.replace('\'', r"'\''"));
            let line: Vec<String> = std::iter::once(BIN)
                .chain(argv.iter().map(String::as_str))
                .map(quote)
                .collect();
            let mut script = Command::new("script");
            script.args(["-qec", &line.join(" "), "/dev/null"]);
            copy_env_and_dir(&self.cmd, &mut script);
            script
        } else {
            self.cmd.args(&argv);
            self.cmd
        };
        let piped = self.stdin.is_some();
        cmd.stdin(if piped { Stdio::piped() } else { Stdio::null() });
        if self.discard_output {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        } else {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        (cmd, self.stdin, self.think, self.after)
    }

    /// Run to the end and collect what it printed.
    pub fn run(self) -> Output {
        let terminal = self.terminal;
        let (mut cmd, stdin, think, after) = self.command();
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            if terminal {
                panic!("util-linux `script` runs the binary on a terminal: {e}")
            }
            panic!("{BIN} starts: {e}")
        });
        let (seen, shown) = std::sync::mpsc::channel::<()>();
        let stdout_reader = after.map(|prompt| {
            let mut pipe = child.stdout.take().expect("stdout is piped");
            std::thread::spawn(move || {
                use std::io::Read;
                let mut all = Vec::new();
                let mut buf = [0u8; 4096];
                let mut told = false;
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    all.extend_from_slice(&buf[..n]);
                    if !told && String::from_utf8_lossy(&all).contains(&prompt) {
                        told = true;
                        let _ = seen.send(());
                    }
                }
                all
            })
        });
        let gate = stdout_reader.is_some().then_some(shown);
        let writer = type_input(&mut child, stdin, think, gate);
        let out = child
            .wait_with_output()
            .expect("the binary's output is read");
        if let Some(w) = writer {
            w.join().expect("the stdin writer does not panic");
        }
        let stdout = match stdout_reader {
            Some(r) => r.join().expect("the stdout reader does not panic"),
            None => out.stdout,
        };
        Output {
            status: out.status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Start in the background; stdout and stderr are pipes (read them or use
    /// `discard_output`) and stdin, when given, is typed in.
    pub fn spawn(self) -> Child {
        let (mut cmd, stdin, think, _) = self.command();
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{BIN} starts: {e}"));
        // The writer thread ends by itself when the input is written or the child exits.
        drop(type_input(&mut child, stdin, think, None));
        child
    }
}

/// Arguments are paths and texts the tests made, so UTF-8 in practice; a lossy
/// conversion would show in the assertion that used it.
fn lossless(s: &OsStr) -> String {
    s.to_str()
        .unwrap_or_else(|| panic!("test argument {s:?} is not UTF-8"))
        .to_string()
}

fn copy_env_and_dir(from: &Command, to: &mut Command) {
    for (k, v) in from.get_envs() {
        match v {
            Some(v) => to.env(k, v),
            None => to.env_remove(k),
        };
    }
    if let Some(dir) = from.get_current_dir() {
        to.current_dir(dir);
    }
}

/// Write `input` to the child's stdin from a thread (a big input must not deadlock
/// against a child that fills its stdout pipe first), after `think` — counted from
/// when `shown` says the prompt appeared, if given (bounded: a program that never
/// shows it gets the input after 60 s and the test's assertions tell what it printed).
fn type_input(
    child: &mut Child,
    input: Option<Vec<u8>>,
    think: Duration,
    shown: Option<std::sync::mpsc::Receiver<()>>,
) -> Option<std::thread::JoinHandle<()>> {
    let input = input?;
    let mut stdin = child
        .stdin
        .take()
        .expect("stdin is piped when input is given");
    Some(std::thread::spawn(move || {
        if let Some(shown) = shown {
            let _ = shown.recv_timeout(Duration::from_secs(60));
        }
        std::thread::sleep(think);
        // The child may exit without reading everything: that is its answer, not an error.
        let _ = stdin.write_all(&input);
    }))
}

/// What a finished run printed, with assertions that show all of it on failure.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Exit 0.
    #[track_caller]
    pub fn success(&self) -> &Output {
        self.code(0)
    }

    /// Any exit but 0.
    #[track_caller]
    pub fn failure(&self) -> &Output {
        assert!(!self.status.success(), "expected a failure\n{self}");
        self
    }

    #[track_caller]
    pub fn code(&self, code: i32) -> &Output {
        assert_eq!(self.status.code(), Some(code), "exit code\n{self}");
        self
    }

    #[track_caller]
    pub fn stdout_contains(&self, text: impl AsRef<str>) -> &Output {
        let text = text.as_ref();
        assert!(self.stdout.contains(text), "stdout lacks {text:?}\n{self}");
        self
    }

    #[track_caller]
    pub fn stderr_contains(&self, text: impl AsRef<str>) -> &Output {
        let text = text.as_ref();
        assert!(self.stderr.contains(text), "stderr lacks {text:?}\n{self}");
        self
    }

    #[track_caller]
    pub fn stdout_starts_with(&self, text: impl AsRef<str>) -> &Output {
        let text = text.as_ref();
        assert!(
            self.stdout.starts_with(text),
            "stdout does not start with {text:?}\n{self}"
        );
        self
    }

    #[track_caller]
    pub fn stdout_is(&self, text: impl AsRef<str>) -> &Output {
        assert_eq!(self.stdout, text.as_ref(), "stdout\n{self}");
        self
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "status {:?}\n--- stdout\n{}--- stderr\n{}",
            self.status.code(),
            self.stdout,
            self.stderr
        )
    }
}
