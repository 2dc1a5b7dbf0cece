//! `shell`: run a program with an argv list — never through a shell unless the
//! runbook writes `sh -c` itself — with env, working directory, stdin and a timeout.
//!
//! The child runs in its own process group, so a timeout or Ctrl-C kills everything
//! it started (`kill(-pgid, SIGKILL)`), not just the direct child.
//!
//! Bounds (docs/limits.md): a step that names no `timeout` is killed after
//! [`DEFAULT_TIMEOUT`]; stdout and stderr are each kept up to
//! [`max_output`](super::limits::max_output) bytes, and a cut stream is recorded as
//! `stdout_truncated: true, stdout_bytes: N` (likewise for stderr).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::limits::{self, Captured};
use super::{Defaults, ExecCtx, OpError, Provider, Resolved};
use crate::runbook::model::OpRef;

/// The resolved form of a shell operation (`Resolved::op`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShellCall {
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    pub dir: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
}

/// Runs local programs.
#[derive(Debug, Clone, Default)]
pub struct Shell;

/// How long to wait for the pipes to close after killing a process group whose
/// grandchildren escaped it.
const REAP_GRACE: Duration = Duration::from_secs(2);

/// Bound on a shell operation whose step names no `timeout`: `yes` or a command
/// waiting on a prompt must not hold an incident run forever. A step that needs
/// longer says so with `timeout:`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);

impl Provider for Shell {
    fn resolve(
        &self,
        op: OpRef<'_>,
        vars: &Value,
        defaults: &Defaults,
    ) -> Result<Resolved, OpError> {
        let OpRef::Shell(op) = op else {
            return Err(OpError::wrong_provider("shell", &op));
        };
        let render = |t: &str, what: &str| super::render_field(t, vars, what);
        let argv = op
            .argv
            .iter()
            .enumerate()
            .map(|(i, a)| render(a, &format!("argv[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        if argv.first().is_none_or(String::is_empty) {
            return Err(OpError::Invalid("argv[0] (the program) is empty".into()));
        }
        let mut env = defaults.env.clone();
        for (k, v) in &op.env {
            env.insert(k.clone(), render(v, &format!("env.{k}"))?);
        }
        let dir = match &op.dir {
            Some(d) => defaults.base_dir.join(render(d, "dir")?),
            None => defaults.base_dir.clone(),
        };
        let stdin = op.stdin.as_ref().map(|s| render(s, "stdin")).transpose()?;
        let display = display(&argv);
        let call = ShellCall {
            argv,
            env,
            dir,
            stdin,
        };
        Ok(Resolved {
            provider: "shell".into(),
            display,
            op: serde_json::to_value(&call).map_err(|e| OpError::Invalid(e.to_string()))?,
            // A program can do anything; checks and verifications are read-only by
            // the runbook's contract and the engine treats them so.
            mutating: true,
        })
    }

    fn execute<'a>(
        &'a self,
        op: &'a Resolved,
        cx: &'a ExecCtx,
    ) -> BoxFuture<'a, Result<Value, OpError>> {
        Box::pin(async move {
            let call: ShellCall = op.decode()?;
            run(&call, cx).await
        })
    }
}

/// Why a program did not start, in words that point at the remedy: spawning reports a
/// missing working directory and a program missing from PATH alike as ENOENT, and
/// "No such file or directory" reads as "not installed" in both cases.
fn spawn_error(call: &ShellCall, e: &std::io::Error) -> String {
    let program = &call.argv[0];
    let dir = call.dir.display();
    if !call.dir.is_dir() {
        format!("cannot start `{program}`: its working directory {dir} does not exist")
    } else if e.kind() == std::io::ErrorKind::NotFound && !program.contains('/') {
        format!("cannot start `{program}`: not found on PATH (in {dir})")
    } else if e.kind() == std::io::ErrorKind::NotFound {
        format!("cannot start `{program}`: no such file (in {dir})")
    } else {
        format!("cannot start `{program}` (in {dir}): {e}")
    }
}

async fn run(call: &ShellCall, cx: &ExecCtx) -> Result<Value, OpError> {
    let cap = limits::max_output()?;
    let spill_cap = limits::max_spill()?;
    let limit = cx.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let mut cmd = tokio::process::Command::new(&call.argv[0]);
    cmd.args(&call.argv[1..])
        .envs(&call.env)
        .current_dir(&call.dir)
        .stdin(if call.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| OpError::failed(spawn_error(call, &e)))?;
    let pid = child.id();
    if let (Some(pid), Some(tx)) = (pid, &cx.spawned) {
        // The child leads its own group (`process_group(0)`): pgid = pid.
        let _ = tx.send(pid);
    }
    let _running = pid.map(Running::register);
    let stdin_pipe = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let input = call.stdin.clone();
    let io = async move {
        let feed = async {
            if let (Some(mut pipe), Some(text)) = (stdin_pipe, input) {
                // A program that does not read its stdin closes the pipe: not an error.
                let _ = pipe.write_all(text.as_bytes()).await;
            }
        };
        let spill = cx.spill.as_ref();
        let ((), out, err) = tokio::join!(
            feed,
            limits::read_capped(
                stdout.take(),
                cap,
                limits::Spiller::new(spill, "stdout", "txt", spill_cap)
            ),
            limits::read_capped(
                stderr.take(),
                cap,
                limits::Spiller::new(spill, "stderr", "txt", spill_cap)
            )
        );
        let status = child.wait().await;
        (out, err, status)
    };
    tokio::pin!(io);
    let timeout = tokio::time::sleep(limit);
    let stop = tokio::select! {
        (out, err, status) = &mut io => {
            return finish(call, out, err, status);
        }
        () = cx.cancel.cancelled() => OpError::Cancelled,
        () = timeout => OpError::TimedOut(limit),
    };
    if let Some(pid) = pid {
        kill_group(pid);
    }
    let _ = tokio::time::timeout(REAP_GRACE, io).await;
    Err(stop)
}

/// Process groups of the steps running now, so that a process that must exit at once
/// (a second Ctrl-C) kills them first: `std::process::exit` runs no destructor, and
/// the engine's own kill on cancellation may not have run yet on a loaded machine.
static RUNNING: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// One entry of `RUNNING`, removed when the step's future ends (or is dropped).
struct Running(u32);

impl Running {
    fn register(pid: u32) -> Self {
        RUNNING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(pid);
        Running(pid)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut running = RUNNING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        running.retain(|p| *p != self.0);
    }
}

/// Kill the process group of every step running now (SIGKILL). Called on the way out
/// when the process cannot wait for the engine to wind its steps down.
pub fn kill_running_groups() {
    let running = RUNNING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for pid in running.iter() {
        kill_group(*pid);
    }
}

/// Whether process group `pgid`, which a program started in at about `spawned`, still
/// has a live member. Used by `resume` after a crash, before it runs again an action
/// whose program may still be running.
///
/// Read from `/proc` where there is one: a member that is a zombie (exited, not yet
/// reaped: the engine that would have reaped it is gone) does not count, and a group
/// id is its leader's pid, which Linux does not reuse while a group of that id has
/// members; so the group is the program's own unless its leader is alive and started
/// well after `spawned` (the id was reused after the program's group ended).
/// Elsewhere, `kill(-pgid, 0)` (a group of another user's processes counts as live).
pub fn group_alive(pgid: u32, spawned: Option<std::time::SystemTime>) -> bool {
    let Ok(id) = i32::try_from(pgid) else {
        return false;
    };
    if id <= 1 {
        return false;
    }
    if let Some(members) = live_members(pgid) {
        return members
            && match (spawned, leader_start(pgid)) {
                (Some(spawned), Some(leader)) => leader <= spawned + RECYCLE_SLACK,
                _ => true,
            };
    }
    // SAFETY: signal 0 only checks that the group exists; nothing is delivered.
    let r = unsafe { libc::kill(-id, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Clock skew allowed between a leader's start (`/proc`, whole seconds of boot time)
/// and the journaled time of its `process_started`.
const RECYCLE_SLACK: Duration = Duration::from_secs(5);

/// The fields of `/proc/PID/stat` from field 3 (state) on; `comm` may hold spaces
/// and parentheses, so they start after the last `)`.
fn proc_stat(pid: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Whether a process of group `pgid` that is not a zombie exists; `None` without a
/// readable `/proc`.
fn live_members(pgid: u32) -> Option<bool> {
    let want = pgid.to_string();
    let entries = std::fs::read_dir("/proc").ok()?;
    let mut seen_self = false;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Some(f) = proc_stat(pid) else { continue };
        seen_self |= pid == std::process::id().to_string();
        if f.get(2) == Some(&want) && !matches!(f.first().map(String::as_str), Some("Z" | "X")) {
            return Some(true);
        }
    }
    // A `/proc` that does not list this process is not one to trust.
    seen_self.then_some(false)
}

/// When the process `pid` started, if it is alive and leads the group `pid` (Linux
/// `/proc`; `None` elsewhere).
fn leader_start(pid: u32) -> Option<std::time::SystemTime> {
    let fields = proc_stat(&pid.to_string())?;
    let pgrp: u32 = fields.get(2)?.parse().ok()?;
    if pgrp != pid {
        return None;
    }
    let ticks: u64 = fields.get(19)?.parse().ok()?;
    let btime: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf reads a constant of the system.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok()?;
    if hz == 0 {
        return None;
    }
    Some(
        std::time::UNIX_EPOCH
            + Duration::from_secs(btime)
            + Duration::from_millis(ticks.saturating_mul(1000) / hz),
    )
}

fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: signalling the process group we created for the child (pgid = pid).
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

fn finish(
    call: &ShellCall,
    out: Captured,
    err: Captured,
    status: std::io::Result<std::process::ExitStatus>,
) -> Result<Value, OpError> {
    let status =
        status.map_err(|e| OpError::failed(format!("waiting for `{}`: {e}", call.argv[0])))?;
    let stdout = limits::text(&out);
    let stderr = limits::text(&err);
    let mut result = serde_json::Map::new();
    result.insert(
        "exit_code".into(),
        status.code().map_or(Value::Null, Value::from),
    );
    let trimmed = stdout.trim();
    if !trimmed.is_empty()
        && !out.truncated()
        && let Ok(json) = serde_json::from_str::<Value>(trimmed)
    {
        result.insert("json".into(), json);
    }
    result.insert("stdout".into(), Value::String(stdout));
    result.insert("stderr".into(), Value::String(stderr.clone()));
    // Only a cut stream gets these fields, so results (and the journals and
    // postmortems pinned by snapshots) of every other step are unchanged.
    for (name, c) in [("stdout", &out), ("stderr", &err)] {
        if c.truncated() {
            result.insert(format!("{name}_truncated"), Value::Bool(true));
            result.insert(format!("{name}_bytes"), Value::from(c.total));
            limits::note_spill(&mut result, name, &c.spilled, c.total);
        }
    }
    let result = Value::Object(result);
    if status.success() {
        return Ok(result);
    }
    let why = match status.code() {
        Some(c) => format!("exit {c}"),
        None => {
            use std::os::unix::process::ExitStatusExt;
            format!("killed by signal {}", status.signal().unwrap_or(0))
        }
    };
    let detail = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    Err(OpError::Failed {
        message: if detail.is_empty() {
            format!("`{}` failed: {why}", call.argv[0])
        } else {
            format!("`{}` failed: {why}: {}", call.argv[0], detail.trim())
        },
        result: Some(result),
    })
}

/// The argv as a line a person can paste into a POSIX shell.
pub fn display(argv: &[String]) -> String {
    argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

fn quote(a: &str) -> String {
    let plain = !a.is_empty()
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::model::{ShellOp, Sp};
    use serde_json::json;

    fn op(argv: &[&str]) -> ShellOp {
        ShellOp {
            argv: argv.iter().map(|a| Sp::bare(a.to_string())).collect(),
            env: BTreeMap::new(),
            dir: None,
            stdin: None,
        }
    }

    fn defaults() -> Defaults {
        Defaults {
            namespace: None,
            base_dir: std::env::temp_dir(),
            env: BTreeMap::new(),
        }
    }

    #[test]
    fn templated_values_stay_one_argument_each() {
        let vars = json!({"params": {"name": "a b; rm -rf /"}});
        let r = Shell
            .resolve(
                OpRef::Shell(&op(&["echo", "{{params.name}}"])),
                &vars,
                &defaults(),
            )
            .unwrap();
        assert_eq!(r.op["argv"], json!(["echo", "a b; rm -rf /"]));
        assert_eq!(r.display, "echo 'a b; rm -rf /'");
    }

    #[tokio::test]
    async fn stdout_json_and_exit_code_are_the_result() {
        let vars = json!({});
        let r = Shell
            .resolve(
                OpRef::Shell(&op(&["sh", "-c", "echo '{\"n\": 3}'; echo warn >&2"])),
                &vars,
                &defaults(),
            )
            .unwrap();
        let out = Shell.execute(&r, &ExecCtx::new(vars)).await.unwrap();
        assert_eq!(out["exit_code"], 0);
        assert_eq!(out["json"]["n"], 3);
        assert_eq!(out["stderr"], "warn\n");
    }

    #[tokio::test]
    async fn a_non_zero_exit_fails_with_the_output_kept() {
        let vars = json!({});
        let r = Shell
            .resolve(
                OpRef::Shell(&op(&["sh", "-c", "echo partial; echo boom >&2; exit 3"])),
                &vars,
                &defaults(),
            )
            .unwrap();
        match Shell.execute(&r, &ExecCtx::new(vars)).await {
            Err(OpError::Failed { message, result }) => {
                assert!(message.contains("exit 3: boom"), "{message}");
                assert_eq!(result.unwrap()["stdout"], "partial\n");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_live_group_is_the_programs_unless_its_leader_started_after_it() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id();
        let now = std::time::SystemTime::now();
        assert!(group_alive(pgid, Some(now)));
        assert!(group_alive(pgid, None));
        // Journaled a minute before this leader started: the id was reused.
        let before = now - Duration::from_secs(60);
        assert!(!group_alive(pgid, Some(before)));
        child.kill().unwrap();
        // Killed and not yet reaped: a zombie is not a live member.
        let t0 = std::time::Instant::now();
        while group_alive(pgid, Some(now)) && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!group_alive(pgid, Some(now)), "a zombie leader is not live");
        child.wait().unwrap();
        assert!(!group_alive(pgid, Some(now)));
        assert!(!group_alive(0, None));
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        let script = format!("(sleep 1; touch {}) & sleep 30", marker.display());
        let vars = json!({});
        let r = Shell
            .resolve(
                OpRef::Shell(&op(&["sh", "-c", &script])),
                &vars,
                &defaults(),
            )
            .unwrap();
        let mut cx = ExecCtx::new(vars);
        cx.timeout = Some(Duration::from_millis(200));
        let t0 = std::time::Instant::now();
        let r = Shell.execute(&r, &cx).await;
        assert!(matches!(r, Err(OpError::TimedOut(_))), "{r:?}");
        assert!(t0.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert!(!marker.exists(), "a grandchild outlived the timeout");
    }

    #[tokio::test]
    async fn output_past_the_cap_is_drained_counted_and_marked_cut() {
        let vars = json!({});
        let script = "head -c 10000000 /dev/zero; echo done >&2";
        let r = Shell
            .resolve(OpRef::Shell(&op(&["sh", "-c", script])), &vars, &defaults())
            .unwrap();
        let out = Shell.execute(&r, &ExecCtx::new(vars)).await.unwrap();
        assert_eq!(
            out["stdout"].as_str().unwrap().len(),
            limits::DEFAULT_MAX_OUTPUT
        );
        assert_eq!(out["stdout_truncated"], true);
        assert_eq!(out["stdout_bytes"], 10_000_000);
        assert_eq!(out["stderr"], "done\n");
        assert!(out.get("stderr_truncated").is_none(), "{:?}", out["stderr"]);
    }

    #[tokio::test]
    async fn stdin_env_and_dir_reach_the_program() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = op(&["sh", "-c", "cat; echo \"$GREETING\"; pwd"]);
        o.stdin = Some(Sp::bare("from stdin\n".into()));
        o.env
            .insert("GREETING".into(), Sp::bare("hi {{params.who}}".into()));
        let vars = json!({"params": {"who": "ana"}});
        let d = Defaults {
            namespace: None,
            base_dir: dir.path().to_owned(),
            env: BTreeMap::new(),
        };
        let r = Shell.resolve(OpRef::Shell(&o), &vars, &d).unwrap();
        let out = Shell.execute(&r, &ExecCtx::new(vars)).await.unwrap();
        let stdout = out["stdout"].as_str().unwrap();
        assert!(stdout.starts_with("from stdin\nhi ana\n"), "{stdout}");
        let canon = dir.path().canonicalize().unwrap();
        assert!(
            stdout.trim_end().ends_with(canon.to_str().unwrap()),
            "{stdout}"
        );
    }
}
