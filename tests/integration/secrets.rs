//! Secrets through the binary: redaction by structure (the journal's structure and
//! the other params are never rewritten, so resume runs what ran), secrets given
//! without argv (`--secret-file`, `RUNBOOK_SECRET_<NAME>`), and a grep over everything
//! a run leaves behind for the secret in each of its encoded forms.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::cli::Cli;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a fixture");
    path
}

/// Every event of the only run in `state`.
fn events(state: &Path) -> Vec<Value> {
    let runs = state.join("runs");
    let run = std::fs::read_dir(&runs)
        .expect("the runs folder")
        .next()
        .expect("one run")
        .expect("a run folder")
        .path();
    std::fs::read_to_string(run.join("journal.ndjson"))
        .expect("the journal")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a journal line"))
        .collect()
}

fn run_started_params(state: &Path) -> Value {
    events(state)
        .into_iter()
        .find(|e| e["event"] == "run_started")
        .expect("run_started")["params"]
        .clone()
}

const PAUSING: &str = r#"version: 1
name: secret-resume
title: A secret param and another param containing it
params:
  token: { required: true, secret: true }
  dir: { default: /tmp }
steps:
  - action: Write the dir
    id: write
    shell: { argv: [sh, -c, 'printf %s "$1" > out.txt', sh, "{{params.dir}}"] }
"#;

#[test]
fn another_param_containing_the_secret_is_journaled_whole_and_resume_runs_with_it() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let rb = write(tmp.path(), "rb.yaml", PAUSING);
    let state = tmp.path().join("state");
    let dir = "/x/work-hunter22";
    // No approval and no terminal: the run pauses at the gate.
    Cli::new()
        .state_dir(&state)
        .env("RUNBOOK_SECRET_TOKEN", "hunter22")
        .arg("run")
        .arg(&rb)
        .args(["-p", &format!("dir={dir}")])
        .run()
        .code(3);
    let params = run_started_params(&state);
    assert_eq!(params["dir"], dir, "{params}");
    assert_eq!(
        params["token"],
        json!({"$secret": "token", "from": "env RUNBOOK_SECRET_TOKEN"})
    );

    // Without the secret, resume names the param and how to give it.
    Cli::new()
        .state_dir(&state)
        .args(["resume", "last", "--approve", "write"])
        .run()
        .code(2)
        .stderr_contains("secret parameter `token`")
        .stderr_contains("RUNBOOK_SECRET_TOKEN")
        .stderr_contains("--secret-file token=PATH");

    Cli::new()
        .state_dir(&state)
        .env("RUNBOOK_SECRET_TOKEN", "hunter22")
        .args(["resume", "last", "--approve", "write"])
        .run()
        .success();
    let written = std::fs::read_to_string(tmp.path().join("out.txt")).expect("out.txt");
    assert_eq!(written, dir);
}

#[test]
fn secrets_equal_to_an_enum_tag_or_a_step_id_leave_the_journal_readable() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let rb = write(
        tmp.path(),
        "rb.yaml",
        r#"version: 1
name: short-secrets
title: Secrets that look like structure
params:
  short: { required: true, secret: true }
  named: { required: true, secret: true }
steps:
  - check: Greet
    id: greet
    shell: { argv: [echo, "{{params.short}}"] }
  - check: Again
    id: again
    shell: { argv: [echo, "{{params.named}} and {{params.short}}"] }
"#,
    );
    let state = tmp.path().join("state");
    let out = Cli::new()
        .state_dir(&state)
        .arg("run")
        .arg(&rb)
        .args(["-p", "short=ok", "-p", "named=greet"])
        .run();
    out.success()
        .stderr_contains("`short` is shorter than 4 characters")
        .stderr_contains("`named` was given with -p, which shows in `ps`");
    let events = events(&state);
    let steps: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "step_finished")
        .map(|e| e["step"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(steps, ["greet", "again"]);
    assert!(
        events
            .iter()
            .filter(|e| e["event"] == "step_finished")
            .all(|e| e["outcome"] == "ok")
    );
    // The short secret is masked where a whole value equals it; the longer one inside text.
    let again = events
        .iter()
        .find(|e| e["event"] == "op_finished" && e["scope"]["step"] == "again")
        .expect("again's result");
    assert_eq!(again["result"]["stdout"], "*** and ok\n");
}

#[test]
fn a_secret_file_must_name_a_secret_param() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let rb = write(tmp.path(), "rb.yaml", PAUSING);
    let file = write(tmp.path(), "dir.txt", "/x\n");
    Cli::new()
        .state_dir(tmp.path().join("state"))
        .arg("run")
        .arg(&rb)
        .args(["--secret-file", &format!("dir={}", file.display())])
        .run()
        .code(2)
        .stderr_contains("`dir` is not marked `secret: true`");
}

/// A server that answers Prometheus queries with the query it got, and any other
/// request with a JSON object whose keys are the request line and the whole request
/// (headers included): a secret anywhere in the request comes back in a result, as
/// a key.
fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("an address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                request.push_str(&line);
            }
            let first = request.lines().next().unwrap_or_default().to_string();
            let body = if first.contains("/api/v1/query") {
                json!({"status": "success", "data": {"resultType": "vector", "result": [
                    {"metric": {"query": first}, "value": [1.0, "1"]}]}})
            } else {
                json!({ first: {"request": request}, request.clone(): 1 })
            }
            .to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let word = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..=chunk.len() {
            out.push(alphabet[((word >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn percent(s: &str, keep: impl Fn(u8) -> bool, space: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b' ' => space.to_string(),
            b if keep(b) => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// The secret and every form of it the grep looks for.
pub(crate) fn forms(secret: &str) -> Vec<(String, String)> {
    let strict = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    let path = |b: u8| b.is_ascii_graphic() && !b"\"<>`{}".contains(&b);
    let json = serde_json::to_string(secret).expect("json");
    vec![
        ("raw".into(), secret.to_string()),
        ("url %20".into(), percent(secret, strict, "%20")),
        ("url +".into(), percent(secret, strict, "+")),
        ("url as a path".into(), percent(secret, path, "%20")),
        ("url as a query".into(), percent(secret, path, "+")),
        (
            "base64".into(),
            base64(
                secret.as_bytes(),
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            ),
        ),
        (
            "base64url".into(),
            base64(
                secret.as_bytes(),
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
            ),
        ),
        ("json".into(), json[1..json.len() - 1].to_string()),
    ]
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a folder").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn no_form_of_a_secret_is_left_in_any_file_or_output_of_a_run() {
    let secret = "Sup er/Sec+r3t\"x";
    let api_key = "literal-api-key-9f8e7d";
    let server = echo_server();
    let tmp = tempfile::tempdir().expect("a temp dir");
    let secret_file = write(tmp.path(), "token.txt", &format!("{secret}\n"));
    let rb = write(
        tmp.path(),
        "rb.yaml",
        &format!(
            r#"version: 1
name: secrets-everywhere
title: A secret in every position
params:
  token: {{ required: true, secret: true }}
  server: {{ default: "{server}" }}
steps:
  - check: Argv, env, stdin and base64
    id: shell
    shell:
      argv: [sh, -c, 'printf "%s|%s|" "$1" "$TOK"; cat; printf %s "$1" | base64', sh, "{{{{params.token}}}}"]
      env: {{ TOK: "{{{{params.token}}}}" }}
      stdin: "{{{{params.token}}}}"
  - check: A header, the path and the query
    id: http
    http:
      url: "{{{{params.server}}}}/p/{{{{params.token}}}}?q={{{{params.token}}}}"
      headers:
        Authorization: "Bearer {{{{params.token}}}}"
        X-Api-Key: "{api_key}"
  - check: PromQL
    id: promql
    prometheus: {{ server: "{{{{params.server}}}}", query: 'vector(1) # {{{{params.token}}}}' }}
"#
        ),
    );
    let state = tmp.path().join("state");
    let run = Cli::new()
        .state_dir(&state)
        .args(["-vv", "run"])
        .arg(&rb)
        .args(["--secret-file", &format!("token={}", secret_file.display())])
        .run();
    run.success();
    let postmortem = Cli::new()
        .state_dir(&state)
        .args(["-vv", "postmortem", "last"])
        .run();
    postmortem.success();
    // Written to a file too: the impact chart of the PromQL check goes beside it (its
    // title and description name the query) and is searched with the rest.
    let written = Cli::new()
        .state_dir(&state)
        .args(["postmortem", "last", "-o"])
        .arg(state.join("pm.md"))
        .run();
    written.success();
    assert!(
        state.join("pm.impact.svg").is_file(),
        "the chart is written"
    );

    let mut texts = vec![
        ("run stdout".to_string(), run.stdout.clone()),
        ("run stderr and debug log".to_string(), run.stderr.clone()),
        ("postmortem".to_string(), postmortem.stdout.clone()),
        ("postmortem stderr".to_string(), postmortem.stderr.clone()),
        ("postmortem -o stderr".to_string(), written.stderr.clone()),
    ];
    let mut files = Vec::new();
    files_under(&state, &mut files);
    for f in files {
        let bytes = std::fs::read(&f).expect("a run file");
        texts.push((
            f.display().to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    // The steps did see the secret: the masks stand where it was.
    let journal = texts
        .iter()
        .find(|(name, _)| name.ends_with("journal.ndjson"))
        .expect("the journal");
    assert!(journal.1.contains("***|***|***"), "{}", journal.1);
    assert!(run.stderr.contains("journal"), "the -vv log is on");

    let mut hits = Vec::new();
    for (form, needle) in forms(secret)
        .into_iter()
        .chain([("unmarked X-Api-Key".to_string(), api_key.to_string())])
    {
        for (name, text) in &texts {
            if text.contains(&needle) {
                hits.push(format!("{form} `{needle}` in {name}"));
            }
        }
    }
    assert!(hits.is_empty(), "{}", hits.join("\n"));
}

/// `runbook lab` in the background, serving `scenario`; killed on drop.
struct LabProcess {
    child: std::process::Child,
    kubeconfig: PathBuf,
}

impl LabProcess {
    fn start(dir: &Path, scenario: &Path) -> LabProcess {
        let kubeconfig = dir.join("kubeconfig");
        let mut child = Cli::new()
            .args(["lab", "--port", "0", "--write-kubeconfig"])
            .arg(&kubeconfig)
            .arg(scenario)
            .spawn();
        let mut lines = BufReader::new(child.stdout.take().expect("the lab's stdout")).lines();
        let ready = lines
            .by_ref()
            .any(|l| l.is_ok_and(|l| l.starts_with("export KUBECONFIG=")));
        assert!(ready, "the lab printed its kubeconfig line");
        // Keep reading: a closed pipe would end the lab at its next line.
        std::thread::spawn(move || lines.for_each(drop));
        LabProcess { child, kubeconfig }
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SECRET_APPLY: &str = r#"version: 1
name: secret-apply
title: Apply Secrets and read them back
params:
  db_password: { required: true, secret: true }
steps:
  - action: Apply the database Secret from a secret param
    id: db
    kube:
      namespace: prod
      apply: |
        apiVersion: v1
        kind: Secret
        metadata: { name: db }
        stringData:
          password: "{{params.db_password}}"
    verify:
      kube: { get: secrets, name: db, namespace: prod }
      expect: "result.metadata.name == 'db'"
  - action: Apply the API Secret from a file
    id: api
    kube: { apply: api-secret.yaml, namespace: prod }
    verify:
      kube: { get: secrets, name: api, namespace: prod }
      expect: "'token' in result.data"
  - check: Every Secret of prod
    id: all
    kube: { get: secrets, namespace: prod }
    expect: "size(result) == 3"
    save: prod_secrets
"#;

/// A Secret applied with `kube: apply` — inline from a secret param, from a file with
/// literal data, and one already in the cluster that `kubectl apply` annotated with
/// its last-applied configuration — leaves no value and no base64 of one in the run
/// folder, the console, the -vv log or the postmortem; the Secrets' keys are shown.
#[test]
fn secrets_applied_or_read_with_kube_leave_no_value_anywhere() {
    let password = "Db-Passw0rd-from-param";
    let file_token = "api-token-from-a-file-4711";
    let annotated = "annotated-old-secret-0815";
    let std64 = |s: &str| {
        base64(
            s.as_bytes(),
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        )
    };
    let tmp = tempfile::tempdir().expect("a temp dir");
    let scenario = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/bad-deploy.scenario.yaml"),
    )
    .expect("the bad-deploy scenario");
    let last_applied = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "legacy", "namespace": "prod"},
        "data": {"key": std64(annotated)}})
    .to_string();
    let scenario = format!(
        "{scenario}\n  - apiVersion: v1\n    kind: Secret\n    metadata:\n      name: legacy\n      namespace: prod\n      annotations:\n        kubectl.kubernetes.io/last-applied-configuration: {}\n    type: Opaque\n    data: {{ key: {} }}\n",
        serde_json::to_string(&last_applied).expect("json"),
        std64(annotated)
    );
    let scenario = write(tmp.path(), "lab.scenario.yaml", &scenario);
    let lab = LabProcess::start(tmp.path(), &scenario);
    write(
        tmp.path(),
        "api-secret.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{ name: api }}\ndata:\n  token: {}\n",
            std64(file_token)
        ),
    );
    let rb = write(tmp.path(), "rb.yaml", SECRET_APPLY);
    let state = tmp.path().join("state");
    let run = Cli::new()
        .state_dir(&state)
        .env("KUBECONFIG", &lab.kubeconfig)
        .env("RUNBOOK_SECRET_DB_PASSWORD", password)
        .args(["-vv", "run", "--yes"])
        .arg(&rb)
        .run();
    run.success();
    let postmortem = Cli::new()
        .state_dir(&state)
        .args(["-vv", "postmortem", "last"])
        .run();
    postmortem.success();
    drop(lab);

    let mut texts = vec![
        ("run stdout".to_string(), run.stdout.clone()),
        ("run stderr and debug log".to_string(), run.stderr.clone()),
        ("postmortem".to_string(), postmortem.stdout.clone()),
        ("postmortem stderr".to_string(), postmortem.stderr.clone()),
    ];
    let mut files = Vec::new();
    files_under(&state, &mut files);
    for f in files {
        let bytes = std::fs::read(&f).expect("a run file");
        texts.push((
            f.display().to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    let mut hits = Vec::new();
    for secret in [password, file_token, annotated] {
        for (form, needle) in forms(secret) {
            for (name, text) in &texts {
                if text.contains(&needle) {
                    hits.push(format!("{form} of `{secret}` (`{needle}`) in {name}"));
                }
            }
        }
    }
    assert!(hits.is_empty(), "{}", hits.join("\n"));

    // The Secrets were applied and read (the keys are there, the values masked).
    let results: Vec<Value> = events(&state)
        .into_iter()
        .filter(|e| e["event"] == "op_finished")
        .filter_map(|e| e.get("result").cloned())
        .collect();
    let all = results
        .iter()
        .find(|r| r.as_array().is_some_and(|a| a.len() == 3))
        .expect("the three Secrets of prod");
    let by_name = |n: &str| {
        all.as_array()
            .unwrap()
            .iter()
            .find(|s| s["metadata"]["name"] == n)
            .unwrap_or_else(|| panic!("Secret {n} in {all}"))
            .clone()
    };
    assert_eq!(by_name("api")["data"], json!({"token": "***"}));
    assert_eq!(by_name("legacy")["data"], json!({"key": "***"}));
    assert_eq!(
        by_name("legacy")["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "***"
    );
    let db = by_name("db");
    let masked = db["stringData"]["password"] == "***" || db["data"]["password"] == "***";
    assert!(masked, "{db}");
}
