//! A real kubectl 1.37 against a lab served over TCP (the tests using it are
//! `#[ignore]`d; scripts/test.sh installs kubectl and runs them).

use std::path::PathBuf;
use std::time::Duration;

use runbook::lab::{Lab, LabServer};

/// kubectl: $RUNBOOK_KUBECTL, else the repository's `.venv/bin/kubectl`.
pub fn kubectl_path() -> PathBuf {
    if let Some(p) = std::env::var_os("RUNBOOK_KUBECTL") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/kubectl")
}

/// A lab served over TCP with a kubeconfig for kubectl.
pub struct Kubectl {
    server: Option<LabServer>,
    /// Holds the kubeconfig (and may hold manifests).
    pub dir: tempfile::TempDir,
}

impl Kubectl {
    pub async fn start(lab: &Lab) -> Kubectl {
        let (addr, server) = lab.serve("127.0.0.1:0").await.expect("serve the lab");
        let dir = tempfile::tempdir().expect("temp dir");
        runbook::lab::write_kubeconfig(addr, &dir.path().join("kubeconfig")).expect("kubeconfig");
        Kubectl {
            server: Some(server),
            dir,
        }
    }

    /// Run kubectl; (success, stdout, stderr).
    pub async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(kubectl_path())
                .args(args)
                .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
                .env("HOME", self.dir.path())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish in 60 s"))
        .expect("kubectl runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Run kubectl, which must succeed; its stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args).await;
        assert!(ok, "kubectl {args:?} failed:\n{stdout}\n{stderr}");
        stdout
    }

    /// Run kubectl, which must fail; its stderr.
    pub async fn fails(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args).await;
        assert!(!ok, "kubectl {args:?} succeeded:\n{stdout}");
        stderr
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}
