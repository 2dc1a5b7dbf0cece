//! Run one runbook against one lab, and check a test case's declared outcome.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::clock::LabClock;
use super::shell::LabShell;
use super::spec::{Case, Shown};
use crate::engine::{self, Approver, EngineOpts, Printer, RunReport};
use crate::journal::event::{Event, RunStatus};
use crate::journal::reader;
use crate::lab::Lab;
use crate::providers::Providers;
use crate::providers::kube::KubeProvider;
use crate::runbook::Loaded;

/// A finished run against a lab.
pub struct LabRun {
    pub report: RunReport,
    /// The lab's base URL (`http://127.0.0.1:PORT`), serving the Kubernetes and
    /// Prometheus APIs.
    pub url: String,
}

/// Everything a run on a lab needs besides the runbook and the lab.
pub struct LabRunOpts {
    /// `-p` values; `{{lab.url}}` inside them is replaced with the lab's base URL.
    pub params: Vec<(String, String)>,
    pub approver: Arc<dyn Approver>,
    pub state_dir: PathBuf,
    pub operator: String,
    /// Where the run's console lines go (`Printer::silent()` for `runbook test`).
    pub printer: Arc<Printer>,
    pub cancel: CancellationToken,
}

/// The providers a lab run uses: http and prometheus as in production, shell as in
/// production but with `KUBECONFIG` set to `kubeconfig` (the lab's), and kube talking
/// to the lab in-process with no rate limit.
pub fn lab_providers(lab: &Lab, kubeconfig: &Path) -> Result<Providers, String> {
    let standard = crate::providers::standard()?;
    let shell = standard
        .get("shell")
        .cloned()
        .ok_or("invariant: the standard providers include shell")?;
    Ok(standard
        .with(
            "shell",
            Arc::new(LabShell {
                inner: shell,
                kubeconfig: kubeconfig.to_path_buf(),
            }),
        )
        .with(
            "kube",
            Arc::new(KubeProvider::new(lab.client(), "default".to_string(), 0.0)),
        ))
}

/// Write a kubeconfig for the lab served at `addr` into `state_dir`, for shell steps;
/// the name carries the port, unique while the lab is served.
fn write_lab_kubeconfig(state_dir: &Path, addr: std::net::SocketAddr) -> Result<PathBuf, String> {
    std::fs::create_dir_all(state_dir)
        .map_err(|e| format!("cannot create {}: {e}", state_dir.display()))?;
    let dir = std::fs::canonicalize(state_dir)
        .map_err(|e| format!("cannot resolve {}: {e}", state_dir.display()))?;
    let path = dir.join(format!("lab-{}.kubeconfig", addr.port()));
    crate::lab::write_kubeconfig(addr, &path)
        .map_err(|e| format!("cannot write the lab's kubeconfig {}: {e}", path.display()))?;
    Ok(path)
}

/// The folder shell steps run in when they name no `dir`: the runbook's, as for
/// `runbook run`.
fn runbook_dir(loaded: &Loaded) -> PathBuf {
    let dir = match loaded.path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

/// Serve `lab` on 127.0.0.1, run `loaded` against it with a [`LabClock`], and stop
/// serving. The journal's times are the lab's virtual times.
pub async fn run_on_lab(loaded: &Loaded, lab: &Lab, opts: LabRunOpts) -> Result<LabRun, String> {
    run_on_lab_with(loaded, lab, opts, None).await
}

/// [`run_on_lab`], journaling an impact start and its source (`runbook demo`: the
/// scenario's first fault, source `scenario`).
pub async fn run_on_lab_with(
    loaded: &Loaded,
    lab: &Lab,
    opts: LabRunOpts,
    incident_start: Option<(chrono::DateTime<chrono::Utc>, String)>,
) -> Result<LabRun, String> {
    let (addr, server) = lab
        .serve("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot serve the lab: {e}"))?;
    let url = format!("http://{addr}");
    let params = opts
        .params
        .iter()
        .map(|(k, v)| (k.clone(), v.replace("{{lab.url}}", &url)))
        .collect();
    let mut engine_opts = EngineOpts::new(opts.operator.clone(), opts.printer.clone());
    engine_opts.params = params;
    engine_opts.defaults.base_dir = runbook_dir(loaded);
    if let Some((at, source)) = incident_start {
        engine_opts.incident_start = Some(at);
        engine_opts.incident_start_source = Some(source);
    }
    let providers = match write_lab_kubeconfig(&opts.state_dir, addr)
        .and_then(|kc| Ok((lab_providers(lab, &kc)?, kc)))
    {
        Ok(p) => p,
        Err(e) => {
            server.shutdown().await;
            return Err(e);
        }
    };
    let (providers, kubeconfig) = providers;
    let result = engine::run(
        loaded,
        providers,
        opts.approver.clone(),
        Arc::new(LabClock::new(lab.clone())),
        &opts.state_dir,
        engine_opts,
        opts.cancel.clone(),
    )
    .await;
    server.shutdown().await;
    // The lab is gone, and so is what the kubeconfig points at.
    let _ = std::fs::remove_file(&kubeconfig);
    let report = result.map_err(|e| e.to_string())?;
    Ok(LabRun { report, url })
}

/// The outcome of one test case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub runbook: String,
    pub case: String,
    /// Empty when the case passed.
    pub failures: Vec<String>,
    /// When the case failed: how the run ended, from its journal (the step and rung
    /// that failed or paused, the error, the unmet verification). See
    /// [`super::explain::why_it_ended`].
    pub why: Vec<String>,
    pub status: Option<RunStatus>,
    pub journal: Option<PathBuf>,
    pub wall: std::time::Duration,
    /// Cluster time the run took.
    pub cluster_secs: i64,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Run one test case of a runbook in a fresh lab and check its expectations.
pub async fn run_case(
    loaded: &Loaded,
    test_dir: &Path,
    case: &Case,
    state_dir: &Path,
    cancel: CancellationToken,
) -> CaseResult {
    let started = Instant::now();
    let mut result = CaseResult {
        runbook: loaded.runbook.name.value.clone(),
        case: case.name.clone(),
        failures: Vec::new(),
        why: Vec::new(),
        status: None,
        journal: None,
        wall: std::time::Duration::ZERO,
        cluster_secs: 0,
    };
    let scenario = test_dir.join(&case.scenario);
    let lab = match Lab::from_scenario_file_at_incident_time(&scenario) {
        Ok(lab) => lab,
        Err(e) => {
            result
                .failures
                .push(format!("scenario {}: {e}", scenario.display()));
            return result;
        }
    };
    let t0 = lab.now();
    // Checked when the test file was read (a bad duration is an error at its line).
    let wait = case
        .wait_for_approval
        .as_deref()
        .and_then(|w| crate::runbook::model::Duration::parse(w).ok())
        .map(|d| d.0);
    let approver = Arc::new(
        engine::AutoApprover::new("runbook-test")
            .with_explicit(case.approve.iter().cloned())
            .with_not_done(case.not_done.iter().cloned())
            .with_wait(wait),
    );
    let opts = LabRunOpts {
        params: case.params.clone().into_iter().collect(),
        approver,
        state_dir: state_dir.to_path_buf(),
        operator: "runbook-test".to_string(),
        printer: Arc::new(Printer::silent()),
        cancel,
    };
    match run_on_lab(loaded, &lab, opts).await {
        Ok(run) => {
            result.status = Some(run.report.status);
            result.journal = Some(run.report.journal.clone());
            let why = check_outcome(case, &run.report, &lab, &mut result.failures);
            if !result.failures.is_empty() {
                result.why = why;
            }
        }
        Err(e) => result.failures.push(e),
    }
    result.cluster_secs = (lab.now() - t0).num_seconds();
    result.wall = started.elapsed();
    result
}

/// Compare a finished run with the case's `expect`; return how the run ended (for a
/// failing case's report).
fn check_outcome(
    case: &Case,
    report: &RunReport,
    lab: &Lab,
    failures: &mut Vec<String>,
) -> Vec<String> {
    let expect = &case.expect;
    if report.status != expect.status {
        failures.push(format!(
            "status: expected {}, got {}",
            expect.status.as_str(),
            report.status.as_str()
        ));
    }
    let journal = match reader::read(&report.journal) {
        Ok(j) => j,
        Err(e) => {
            failures.push(format!("cannot read the run's journal: {e}"));
            return Vec::new();
        }
    };
    let mut started = BTreeSet::new();
    let mut fixed_by = std::collections::BTreeMap::new();
    let mut seen: std::collections::BTreeMap<String, Shown> = Default::default();
    let mut run_title = None;
    let mut links = Vec::new();
    for r in &journal.records {
        match &r.event {
            Event::RunStarted { runbook, .. } => run_title = Some(runbook.title.clone()),
            Event::RunbookLinks { links: l } => {
                links.extend(l.iter().map(|l| l.title.clone()));
            }
            Event::StepStarted { step, title, .. } => {
                started.insert(step.clone());
                seen.entry(step.clone()).or_default().title = Some(title.clone());
            }
            // `ran`/`not_ran` may name a rung (its id is unique in the runbook).
            Event::RungStarted { rung, title, .. } => {
                started.insert(rung.clone());
                seen.entry(rung.clone()).or_default().title = Some(title.clone());
            }
            Event::GateRequested {
                step,
                rung,
                preview: Some(p),
                ..
            } => {
                let id = rung.as_ref().unwrap_or(step);
                seen.entry(id.clone()).or_default().preview = Some(p.clone());
            }
            Event::StepFinished {
                step,
                fixed_by: rung,
                summary,
                ..
            } => {
                if let Some(rung) = rung {
                    fixed_by.insert(step.clone(), rung.clone());
                }
                seen.entry(step.clone()).or_default().summary = Some(summary.clone());
            }
            _ => {}
        }
    }
    if let Some(want) = &expect.title {
        let got = run_title.as_deref().unwrap_or("(no run started)");
        if got != want {
            failures.push(format!("title: expected {want:?}, the run showed {got:?}"));
        }
    }
    if let Some(want) = &expect.links
        && want != &links
    {
        failures.push(format!(
            "links: expected {want:?}, the run journaled {links:?}"
        ));
    }
    for (id, want) in &expect.shown {
        let got = seen.get(id).cloned().unwrap_or_default();
        let fields = [
            ("title", &want.title, &got.title),
            ("summary", &want.summary, &got.summary),
            ("preview", &want.preview, &got.preview),
        ];
        for (what, want, got) in fields {
            let Some(want) = want else { continue };
            match got {
                Some(got) if got == want => {}
                Some(got) => failures.push(format!(
                    "`{id}` {what}: expected {want:?}, the run showed {got:?}"
                )),
                None => failures.push(format!("`{id}` {what}: expected {want:?}, none was shown")),
            }
        }
    }
    for id in &expect.ran {
        if !started.contains(id) {
            failures.push(format!("`{id}` was expected to run but did not"));
        }
    }
    for id in &expect.not_ran {
        if started.contains(id) {
            failures.push(format!("`{id}` was expected not to run but ran"));
        }
    }
    for (step, rung) in &expect.fixed_by {
        match fixed_by.get(step) {
            Some(got) if got == rung => {}
            Some(got) => failures.push(format!(
                "`{step}` was expected to be fixed by rung `{rung}`, but `{got}` fixed it"
            )),
            None => failures.push(format!(
                "`{step}` was expected to be fixed by rung `{rung}`, but no rung fixed it"
            )),
        }
    }
    let losses = lab.data_losses();
    match expect.data_lost {
        Some(false) if !losses.is_empty() => {
            let what: Vec<String> = losses
                .iter()
                .map(|l| format!("{}/{} volume {}", l.namespace, l.pod, l.volume))
                .collect();
            failures.push(format!("data was lost, expected none: {}", what.join(", ")));
        }
        Some(true) if losses.is_empty() => {
            failures.push("expected data to be lost, but the lab recorded no loss".to_string())
        }
        _ => {}
    }
    if !expect.cluster.is_empty() {
        let ctx = cluster_vars(lab);
        // `now` is the cluster's time, as during the run (the run already stopped the
        // lab's clock, so this LabClock changes nothing).
        let clock: Arc<dyn crate::clock::Clock> = Arc::new(LabClock::new(lab.clone()));
        crate::expr::with_clock_sync(clock, || {
            for (what, cond) in &expect.cluster {
                match crate::expr::eval_bool(cond, &ctx) {
                    Ok(true) => {}
                    Ok(false) => failures.push(format!("cluster: {what}: does not hold ({cond})")),
                    Err(e) => {
                        failures.push(format!("cluster: {what}: cannot evaluate `{cond}`: {e}"))
                    }
                }
            }
        });
    }
    super::explain::why_it_ended(&journal.records)
}

/// Every resource the lab serves, by plural, with all its objects; and `data_losses`.
pub fn cluster_vars(lab: &Lab) -> Value {
    let mut vars = Map::new();
    for def in crate::lab::resources::RESOURCES {
        vars.insert(
            def.plural.to_string(),
            Value::Array(lab.list(def.plural, None)),
        );
    }
    let losses = serde_json::to_value(lab.data_losses()).unwrap_or(Value::Array(Vec::new()));
    vars.insert("data_losses".to_string(), losses);
    Value::Object(vars)
}
