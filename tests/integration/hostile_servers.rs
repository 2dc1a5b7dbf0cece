//! Issue 13, hostile servers: `http:` and `prometheus:` checks in a real `runbook run`
//! against in-test servers that never end their body, trickle one byte a second, send
//! garbage, send huge answers, lie about their length, never answer, close mid-body or
//! redirect forever. Each run must end within its bound with bounded memory (measured
//! from outside, support::measured), the step must fail (or, for an `http` body cut at
//! the cap, be journaled as cut) with a message that names the cap or timeout, and the
//! journal must be complete: it ends with `run_finished`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use runbook::journal::event::Event;

use crate::support::measured::Run;

const MAX_KB: i64 = 256 * 1024;

#[derive(Clone, Copy, Debug)]
enum Server {
    /// 200 with no length, then zeros for ever.
    Endless,
    /// 200, then one byte a second.
    Trickle,
    /// Random bytes that are not HTTP.
    Garbage,
    /// 200 with a 64 MiB body.
    Huge,
    /// `Content-Length: 1000000`, 10 bytes, then the connection stays open.
    LongerThanSent,
    /// `Content-Length: 5`, then 1 MiB.
    ShorterThanSent,
    /// Accepts, reads the request, never answers.
    Silent,
    /// `Content-Length: 100000`, half of it, then closes.
    ClosesMidBody,
    /// 302 to itself.
    RedirectLoop,
    /// 100 000 headers.
    HeaderFlood,
}

const ALL: [Server; 10] = [
    Server::Endless,
    Server::Trickle,
    Server::Garbage,
    Server::Huge,
    Server::LongerThanSent,
    Server::ShorterThanSent,
    Server::Silent,
    Server::ClosesMidBody,
    Server::RedirectLoop,
    Server::HeaderFlood,
];

fn serve(kind: Server) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || answer(kind, conn, port));
        }
    });
    port
}

fn answer(kind: Server, mut c: TcpStream, port: u16) {
    let mut req = [0u8; 8192];
    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = c.read(&mut req);
    let zeros = vec![b'0'; 64 * 1024];
    let _ = (|| -> std::io::Result<()> {
        match kind {
            Server::Endless => {
                c.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")?;
                loop {
                    c.write_all(&zeros)?;
                }
            }
            Server::Trickle => {
                c.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")?;
                for _ in 0..100 {
                    c.write_all(b" ")?;
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            Server::Garbage => {
                let mut x = 0x1234_5678u32;
                let bytes: Vec<u8> = (0..1 << 20)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect();
                c.write_all(&bytes)?;
            }
            Server::Huge => {
                c.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 67108864\r\n\r\n")?;
                for _ in 0..1024 {
                    c.write_all(&zeros)?;
                }
            }
            Server::LongerThanSent => {
                c.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{\"a\": 1, ")?;
                std::thread::sleep(Duration::from_secs(120));
            }
            Server::ShorterThanSent => {
                c.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n")?;
                for _ in 0..16 {
                    c.write_all(&zeros)?;
                }
            }
            Server::Silent => std::thread::sleep(Duration::from_secs(120)),
            Server::ClosesMidBody => {
                c.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")?;
                c.write_all(&zeros[..50_000])?;
            }
            Server::RedirectLoop => {
                c.write_all(
                    format!("HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/again\r\nContent-Length: 0\r\n\r\n")
                        .as_bytes(),
                )?;
            }
            Server::HeaderFlood => {
                c.write_all(b"HTTP/1.1 200 OK\r\n")?;
                for i in 0..100_000 {
                    c.write_all(format!("X-Flood-{i}: {}\r\n", "v".repeat(64)).as_bytes())?;
                }
                c.write_all(b"Content-Length: 2\r\n\r\n{}")?;
            }
        }
        Ok(())
    })();
}

fn runbook(dir: &Path, op: &str) -> std::path::PathBuf {
    let path = dir.join("hostile-server.yaml");
    std::fs::write(
        &path,
        format!(
            "version: 1\nname: hostile-server\ntitle: A check against a hostile server\nsteps:\n  - check: Ask the server\n    id: ask\n    timeout: 3s\n    {op}\n"
        ),
    )
    .unwrap();
    path
}

fn journal_events(state: &Path) -> Vec<Event> {
    crate::support::only_run_events(state)
}

fn one(kind: Server, provider: &str) -> Result<(), String> {
    let port = serve(kind);
    let dir = tempfile::tempdir().unwrap();
    let op = match provider {
        "http" => format!("http: {{ url: \"http://127.0.0.1:{port}/x\" }}"),
        _ => format!("prometheus: {{ server: \"http://127.0.0.1:{port}\", query: up }}"),
    };
    let rb = runbook(dir.path(), &op);
    let state = dir.path().join("state");
    let out = Run::new([
        std::ffi::OsStr::new("--state-dir"),
        state.as_os_str(),
        "run".as_ref(),
        rb.as_os_str(),
    ])
    .bound(Duration::from_secs(30))
    .run();
    let what = format!("{provider} against {kind:?}");
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        out.assert_sane(&what, MAX_KB)
    }))
    .map_err(|_| format!("{what}: not sane\n{out}"))?;
    let events = journal_events(&state);
    if !matches!(events.last(), Some(Event::RunFinished { .. })) {
        return Err(format!(
            "{what}: the journal does not end with run_finished\n{out}"
        ));
    }
    let finished = events.iter().find_map(|e| match e {
        Event::OpFinished { result, error, .. } => Some((result.clone(), error.clone())),
        _ => None,
    });
    let Some((result, error)) = finished else {
        return Err(format!("{what}: no op_finished journaled\n{out}"));
    };
    let cut = result
        .as_ref()
        .is_some_and(|r| r.get("body_truncated") == Some(&serde_json::Value::Bool(true)));
    // What the message must name: the timeout for servers that stall, the cap (and
    // the variable that raises it) for answers too large to read.
    let must = match kind {
        Server::Trickle | Server::LongerThanSent | Server::Silent => Some("timed out"),
        Server::Endless | Server::Huge if provider == "prometheus" => Some("RUNBOOK_MAX_OUTPUT"),
        _ => None,
    };
    match (out.code, error) {
        // An http body cut at the cap is a result, journaled as cut.
        (Some(0), None) if cut && must.is_none() => Ok(()),
        // A body longer than its Content-Length: the client reads what was declared.
        (Some(0), None) if matches!(kind, Server::ShorterThanSent) => Ok(()),
        (Some(1), Some(message)) if must.is_none_or(|w| message.contains(w)) => Ok(()),
        (code, error) => Err(format!(
            "{what}: exit {code:?}, error {error:?}, cut {cut}, wanted {must:?}\n{out}"
        )),
    }
}

#[test]
fn http_and_prometheus_against_hostile_servers_end_bounded_with_a_complete_journal() {
    let mut failures = Vec::new();
    for kind in ALL {
        for provider in ["http", "prometheus"] {
            if let Err(e) = one(kind, provider) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
