//! `runbook lab` through the real binary.

use std::io::{BufRead, BufReader, Read, Write};

use crate::support::cli::Cli;

#[test]
fn lab_serves_on_loopback_prints_the_port_and_writes_a_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    let mut child = Cli::new()
        .args(["lab", "--port", "0", "--write-kubeconfig"])
        .arg(&kc)
        .spawn();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.starts_with("export KUBECONFIG=");
        seen.push(line);
        if done {
            break;
        }
    }
    let text = seen.join("\n");
    assert!(text.contains("(127.0.0.1 only"), "{text}");
    assert!(
        text.contains("hub-pvc-locked"),
        "the seed scenario by default:\n{text}"
    );
    let port: u16 = seen
        .iter()
        .find_map(|l| l.strip_prefix("port: "))
        .expect("a port line")
        .parse()
        .unwrap();
    assert_ne!(port, 0);
    assert!(
        text.contains(&format!(
            "export KUBECONFIG={}",
            std::fs::canonicalize(&kc).unwrap().display()
        )),
        "{text}"
    );
    let config = std::fs::read_to_string(&kc).unwrap();
    assert!(
        config.contains(&format!("server: http://127.0.0.1:{port}")),
        "{config}"
    );

    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /api/v1/query?query=launch_success_rate HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(
        resp.contains("\"__name__\":\"launch_success_rate\""),
        "{resp}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn lab_rejects_a_bad_scenario_with_its_location_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.scenario.yaml");
    std::fs::write(&path, "version: 1\nname: bad\nobjects:\n  - apiVersion: v1\n    kind: Pood\n    metadata: { name: x }\n").unwrap();
    let out = Cli::new().arg("lab").arg(&path).run();
    let err = &out.code(2).stderr;
    assert!(err.contains(&format!("{}:4:", path.display())), "{err}");
    assert!(
        err.contains("unknown object kind v1/Pood") && err.contains("hint:"),
        "{err}"
    );
}
