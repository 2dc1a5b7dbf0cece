//! The `http` provider over TLS, through the binary: a real TLS server (`openssl
//! s_server`) with a certificate from a throwaway CA. Trusted through
//! `SSL_CERT_FILE` (rustls loads the system's roots, which that variable replaces),
//! the check succeeds; untrusted, the run fails and says it is the certificate.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::cli::{Cli, Output};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for localhost/127.0.0.1 signed by it.
fn certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=runbook test CA",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("writable temp dir");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `openssl s_server -www` answers any GET with `200 ok` and a status page.
fn serve(dir: &Path) -> Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-cert",
            "server.pem",
            "-key",
            "server.key",
        ])
        .args(["-accept", &format!("127.0.0.1:{port}")])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server starts");
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "s_server did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server { child, port }
}

const RUNBOOK: &str = r#"version: 1
name: tls-check
title: An https endpoint answers
params:
  url: { required: true, description: The endpoint }
steps:
  - check: The endpoint answers over TLS
    id: ping
    http: { url: "{{params.url}}" }
    timeout: 10s
    expect: "result.status == 200"
"#;

fn run(dir: &Path, url: &str, ca: Option<&Path>) -> Output {
    let cli = Cli::new()
        .state_dir(".state")
        .args(["run", "tls.yaml", "-p"])
        .arg(format!("url={url}"))
        .current_dir(dir)
        .env_remove("SSL_CERT_DIR");
    match ca {
        Some(ca) => cli.env("SSL_CERT_FILE", ca),
        None => cli.env_remove("SSL_CERT_FILE"),
    }
    .run()
}

#[test]
#[ignore = "needs openssl (scripts/test.sh installs it)"]
fn an_https_check_verifies_the_server_certificate() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let dir = tmp.path();
    certificates(dir);
    std::fs::write(dir.join("tls.yaml"), RUNBOOK).expect("writable temp dir");
    let server = serve(dir);

    let trusted = run(
        dir,
        &format!("https://localhost:{}/", server.port),
        Some(&dir.join("ca.pem")),
    );
    trusted.success();

    // The same server, its CA not trusted: the request fails, and says why.
    let untrusted = run(dir, &format!("https://localhost:{}/", server.port), None);
    untrusted.failure();
    let stderr = untrusted.stderr.to_lowercase();
    assert!(
        stderr.contains("certificate"),
        "the failure names the certificate: {}",
        untrusted
    );
}
