//! Issue 13 items 9, 10, 14 and 16, lab side: the lab's memory is bounded against a
//! hostile client (request bodies, the watch history, watchers that stop reading),
//! `--speed` is validated, and object names are checked as the API server checks
//! them (no `../../x`, no duplicates).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use runbook::lab::Lab;
use runbook::lab::limits::HISTORY_EVENTS;
use serde_json::{Value, json};

/// One raw HTTP/1.1 request to `addr`; returns (status, body). Raw so that the
/// test controls exactly what is sent (a 10 MB body, a chunked one).
fn request(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).expect("the lab listens");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    // The lab may answer (and close) before the whole body is sent: that is the point.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn pod(name: &str, pad: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "default",
                        "annotations": {"pad": "x".repeat(pad)}},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
}

#[tokio::test]
async fn a_body_over_3_mib_is_refused_with_413_as_the_api_server_does() {
    let lab = Lab::empty();
    let (addr, server) = lab.serve("127.0.0.1:0").await.unwrap();
    let big = serde_json::to_vec(&pod("big", 10 << 20)).unwrap();
    let (status, body) = tokio::task::spawn_blocking(move || {
        let head = format!(
            "POST /api/v1/namespaces/default/pods HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            big.len()
        );
        request(addr, &head, &big)
    })
    .await
    .unwrap();
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "RequestEntityTooLarge");
    assert_eq!(body["code"], 413);
    // Without Content-Length (chunked) the body is cut at the limit as well.
    let (status, _) = tokio::task::spawn_blocking(move || {
        let chunk = vec![b' '; 1 << 20];
        let mut body = Vec::new();
        for _ in 0..5 {
            body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            body.extend_from_slice(&chunk);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
        let head = "POST /api/v1/namespaces/default/pods HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        request(addr, head, &body)
    })
    .await
    .unwrap();
    assert_eq!(status, 413);
    assert!(lab.get("pods", Some("default"), "big").is_none());
    server.shutdown().await;
}

#[test]
fn a_pod_named_like_a_path_is_invalid_and_a_duplicate_already_exists() {
    let lab = Lab::empty();
    for bad in ["../../x", "..", "Hub", "a/b"] {
        let e = lab.create(pod(bad, 0)).expect_err(bad);
        assert_eq!((e.code, e.reason), (422, "Invalid"), "{bad}: {e}");
        assert!(e.message.contains("metadata.name"), "{e}");
    }
    let mut in_bad_ns = pod("ok", 0);
    in_bad_ns["metadata"]["namespace"] = json!("..");
    let e = lab.create(in_bad_ns).expect_err("namespace ..");
    assert_eq!(e.code, 422, "{e}");
    lab.create(pod("hub-0", 0)).unwrap();
    let e = lab.create(pod("hub-0", 0)).expect_err("a duplicate");
    assert_eq!((e.code, e.reason), (409, "AlreadyExists"));
}

#[test]
fn a_scenario_with_a_duplicate_or_a_path_name_does_not_load_and_says_where() {
    let dup = "version: 1\nname: dup\nobjects:\n  - {apiVersion: v1, kind: Node, metadata: {name: n1}}\n  - {apiVersion: v1, kind: Node, metadata: {name: n1}}\n";
    let e = Lab::from_scenario_str(dup)
        .err()
        .expect("a duplicate is refused");
    let msg = e.to_string();
    assert!(msg.contains("defined twice"), "{msg}");
    assert!(msg.contains("line 4"), "{msg}");
    assert_eq!(e.line, 5, "{msg}");
    let path = "version: 1\nname: path\nobjects:\n  - {apiVersion: v1, kind: Pod, metadata: {name: ../../x}, spec: {containers: [{name: c, image: i}]}}\n";
    let e = Lab::from_scenario_str(path)
        .err()
        .expect("a path name is refused");
    assert_eq!(e.line, 4, "{e}");
    assert!(e.to_string().contains("RFC 1123"), "{e}");
}

#[test]
fn the_watch_history_is_bounded_and_an_older_watch_gets_410_gone() {
    let lab = Lab::empty();
    let first = lab.resource_version();
    for i in 0..HISTORY_EVENTS + 10 {
        lab.create(pod(&format!("p-{i}"), 0)).unwrap();
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (addr, server) = lab.serve("127.0.0.1:0").await.unwrap();
        let (status, body) = tokio::task::spawn_blocking(move || {
            let head = format!(
                "GET /api/v1/namespaces/default/pods?watch=true&resourceVersion={first} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n"
            );
            request(addr, &head, b"")
        })
        .await
        .unwrap();
        assert_eq!(status, 410, "{body}");
        assert_eq!(body["reason"], "Expired");
        assert!(
            body["message"].as_str().unwrap().contains("too old resource version"),
            "{body}"
        );
        server.shutdown().await;
    });
}

#[tokio::test]
async fn a_watcher_that_stops_reading_is_closed_with_410_once_it_falls_behind() {
    let lab = Lab::empty();
    lab.create(pod("seed", 0)).unwrap();
    let (addr, server) = lab.serve("127.0.0.1:0").await.unwrap();
    let rv = lab.resource_version();
    let mut watch = TcpStream::connect(addr).unwrap();
    watch
        .write_all(
            format!("GET /api/v1/namespaces/default/pods?watch=true&resourceVersion={rv} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    // The watcher reads nothing while objects of ~200 KB each are created: far more
    // than its socket and its line buffer hold, and more than the history keeps.
    let lab2 = lab.clone();
    tokio::task::spawn_blocking(move || {
        for i in 0..600 {
            lab2.create(pod(&format!("big-{i}"), 200 << 10)).unwrap();
        }
    })
    .await
    .unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        watch
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut last = String::new();
        let mut added = 0;
        for line in BufReader::new(watch).lines() {
            let Ok(line) = line else { break };
            if line.contains("\"type\":\"ADDED\"") {
                added += 1;
            }
            if line.starts_with('{') {
                last = line;
            }
        }
        (added, last)
    })
    .await
    .unwrap();
    let (added, last) = lines;
    assert!(added < 600, "the slow watcher got every event ({added})");
    let last: Value = serde_json::from_str(&last).expect("a JSON line");
    assert_eq!(last["type"], "ERROR", "{last}");
    assert_eq!(last["object"]["code"], 410);
    server.shutdown().await;
}

#[test]
fn lab_speed_beyond_the_maximum_is_a_usage_error_not_a_panic() {
    for speed in ["1e12", "1e308", "-1", "NaN"] {
        let flag = format!("--speed={speed}");
        let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
            .args(["lab", &flag])
            .output()
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--speed {speed}: {stderr}");
        assert!(stderr.contains("--speed"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// Issue 13 (hostile lab requests): what the real API server refuses with 400 and a
/// `Status` of reason `BadRequest`, the lab refuses the same way, instead of
/// answering 200 as if the request had meant something.
#[tokio::test]
async fn malformed_selectors_continue_tokens_and_names_in_paths_get_400_bad_request() {
    let lab = Lab::empty();
    let (addr, _server) = lab.serve("127.0.0.1:0").await.unwrap();
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n");
    let post = |path: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: lab\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
    };
    let cases = [
        // `spec.nodeName===x`: the value `=x` holds an unescaped `=`.
        (
            "a value with an unescaped =",
            get("/api/v1/pods?fieldSelector=spec.nodeName%3D%3D%3Dx"),
            "unescaped character",
        ),
        (
            "an unknown escape",
            get("/api/v1/pods?fieldSelector=spec.nodeName%3Da%5Cq"),
            "invalid escape sequence",
        ),
        (
            "a selector without a field",
            get("/api/v1/pods?fieldSelector=%3Dx"),
            "invalid field selector",
        ),
        (
            "a garbage continue token",
            get("/api/v1/pods?limit=1&continue=%25%25%25garbage"),
            "invalid continue token",
        ),
        (
            "a negative continue token",
            get("/api/v1/pods?limit=1&continue=-1"),
            "invalid continue token",
        ),
        (
            "losing a node named ..%2f..",
            post("/lab/v1/nodes/..%2f../lose"),
            "invalid node name",
        ),
        (
            "recovering a node named ..",
            post("/lab/v1/nodes/../recover"),
            "invalid node name",
        ),
    ];
    for (what, head, says) in cases {
        let (status, body) = tokio::task::spawn_blocking(move || request(addr, &head, b""))
            .await
            .unwrap();
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["kind"], "Status", "{what}: {body}");
        assert_eq!(body["reason"], "BadRequest", "{what}: {body}");
        assert_eq!(body["code"], 400, "{what}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{what}: {message}");
    }
    // What they stand in for still works: an escaped value, a token the lab gave.
    let (status, body) = tokio::task::spawn_blocking(move || {
        request(
            addr,
            &get("/api/v1/pods?fieldSelector=spec.nodeName%3Da%5C%3Db"),
            b"",
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        tokio::task::spawn_blocking(move || request(addr, &post("/lab/v1/nodes/node-1/lose"), b""))
            .await
            .unwrap();
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_continue_token_the_lab_gave_reads_the_next_page() {
    let lab = Lab::empty();
    for name in ["a", "b", "c"] {
        lab.create(pod(name, 0)).unwrap();
    }
    let (addr, _server) = lab.serve("127.0.0.1:0").await.unwrap();
    let get =
        |path: String| format!("GET {path} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n");
    let (status, first) = tokio::task::spawn_blocking(move || {
        request(
            addr,
            &get("/api/v1/namespaces/default/pods?limit=2".into()),
            b"",
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{first}");
    let token = first["metadata"]["continue"]
        .as_str()
        .expect("a continue token")
        .to_owned();
    let (status, next) = tokio::task::spawn_blocking(move || {
        request(
            addr,
            &get(format!(
                "/api/v1/namespaces/default/pods?limit=2&continue={token}"
            )),
            b"",
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["items"][0]["metadata"]["name"], "c");
}

/// Issue 13: a fault `at` too far away to represent and a metric's bad selector are
/// refused at their line and column, saying what was expected (they used to name
/// only the file and the field).
#[test]
fn a_fault_at_10_12_days_and_a_bad_metric_selector_are_refused_at_their_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "fault.yaml",
            "version: 1\nname: far\nfaults:\n  - at: 1000000000000d\n    node_lost: { node: n }\nobjects: []\n",
            ":4:9:",
            "expected a time after the start such as `0s`",
        ),
        (
            "metric.yaml",
            "version: 1\nname: sel\nmetrics:\n  - name: m\n    help: h\n    value: { pods_running: { namespace: default, selector: \"a in (\" } }\nobjects: []\n",
            ":6:60:",
            "expected a label selector as kubectl takes it, e.g. `component=hub`",
        ),
        (
            "count.yaml",
            "version: 1\nname: sel\nmetrics:\n  - name: m\n    value:\n      pods: { selector: \"=x\" }\nobjects: []\n",
            ":6:25:",
            "expected a label selector",
        ),
        (
            "crash.yaml",
            "version: 1\nname: sel\nfaults:\n  - at: 1m\n    crash_loop: { namespace: default, selector: \"a in (\" }\nobjects: []\n",
            ":5:49:",
            "expected a label selector",
        ),
    ];
    for (name, text, at, expected) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
            .arg("lab")
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("{}{at}", file.display())),
            "{name}: wants {at}: {stderr}"
        );
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(stderr.contains("hint:"), "{name}: {stderr}");
    }
}
