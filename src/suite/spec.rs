//! Test files: what a runbook must do against a scenario.
//!
//! A runbook `NAME.yaml` is tested by `NAME.test.yaml` beside it:
//!
//! ```yaml
//! version: 1
//! tests:
//!   - name: the seed incident is fixed by force-deleting the lost pods
//!     scenario: hub-pvc-locked.scenario.yaml     # relative to this file
//!     params: { prometheus: "{{lab.url}}" }       # {{lab.url}}: the lab's http://127.0.0.1:PORT
//!     approve: []                                 # steps or rungs with `gate: explicit` approved by id
//!     not_done: []                                # manual steps or rungs answered "not done", by id
//!     wait_for_approval: 30m                      # an unanswered gate waits (lab time), then pauses
//!     expect:
//!       status: succeeded                         # succeeded|failed|aborted|not_applicable|paused
//!       ran: [cordon, free-hub-volume]            # these steps (or rungs) started
//!       not_ran: [reset-node]                     # these never started (skipped ones count as not run)
//!       fixed_by: { free-hub-volume: force-delete-lost-pods }
//!       data_lost: false                          # the lab recorded no lost data
//!       cluster:                                  # CEL over the final cluster state
//!         the hub pod is Running: "pods.exists(p, p.metadata.labels.component == 'hub' && p.status.phase == 'Running')"
//! ```
//!
//! In `cluster` conditions every resource the lab serves is a variable holding all its
//! objects, by plural (`pods`, `nodes`, `volumeattachments`, `persistentvolumeclaims`,
//! ...), `data_losses` lists what the lab recorded as lost, and `now` is the lab's
//! time when the run ended.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::runbook::yaml;

use crate::journal::event::RunStatus;
use crate::runbook::model::Runbook;

/// A parsed `NAME.test.yaml`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// Always 1.
    pub version: u32,
    pub tests: Vec<Case>,
}

/// One test: a scenario, the answers to give, and the outcome to expect.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// Scenario file, relative to the test file.
    pub scenario: String,
    /// Parameter values; `{{lab.url}}` is replaced with the lab's base URL.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Steps or rungs with `gate: explicit` that this test approves by id. Every other gate
    /// and every manual step is answered automatically; an explicit gate not named
    /// here pauses the run, as it would without a person.
    #[serde(default)]
    pub approve: Vec<String>,
    /// Manual steps or rungs, by id, that this test answers "not done" (the person
    /// could not do or confirm it), as `runbook approve RUN ID --decline` reports a manual step failed.
    /// Every other manual step is confirmed automatically.
    #[serde(default)]
    pub not_done: Vec<String>,
    /// As `runbook run --wait-for-approval=D` (`30m`, `1h`): a gate the test does not
    /// approve waits this long on the lab's clock for another process's decision,
    /// then pauses. Without it such a gate pauses at once.
    #[serde(default)]
    pub wait_for_approval: Option<String>,
    pub expect: Expect,
}

/// The declared outcome of a test.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub status: RunStatus,
    #[serde(default)]
    pub ran: Vec<String>,
    #[serde(default)]
    pub not_ran: Vec<String>,
    /// Escalating step id → the rung id whose verification passed.
    #[serde(default)]
    pub fixed_by: BTreeMap<String, String>,
    #[serde(default)]
    pub data_lost: Option<bool>,
    /// A description → a CEL condition over the final cluster.
    #[serde(default)]
    pub cluster: BTreeMap<String, String>,
    /// The runbook's title as the run showed it (rendered with the params).
    #[serde(default)]
    pub title: Option<String>,
    /// Step or rung id → what the run showed for it: its rendered title, its
    /// `summary:` line, the `preview:` result at its gate. Each given text must be
    /// exactly what the journal recorded.
    #[serde(default)]
    pub shown: BTreeMap<String, Shown>,
    /// The titles of the runbook's `links:`, as journaled when the run started.
    #[serde(default)]
    pub links: Option<Vec<String>>,
}

/// What a run showed for one step or rung (each field optional, compared exactly).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Shown {
    /// The rendered title (`StepStarted`/`RungStarted`).
    #[serde(default)]
    pub title: Option<String>,
    /// The step's one-line outcome (`StepFinished.summary`): its `summary:` template's
    /// text when it has one.
    #[serde(default)]
    pub summary: Option<String>,
    /// The `preview:` result shown with the plan at the gate (`gate_requested.preview`).
    #[serde(default)]
    pub preview: Option<String>,
}

/// A test file that cannot be used, with its location.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: error: {message}", if *line == 0 { path.clone() } else { format!("{path}:{line}:{column}") })]
pub struct SpecError {
    pub path: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

/// The JSON schema of test files, as checked in at `schemas/test.schema.json`.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(TestFile);
    let mut s = serde_json::to_string_pretty(&schema).expect("invariant: a schema serialises");
    s.push('\n');
    s
}

/// The test file of a runbook: `NAME.test.yaml` beside `NAME.yaml`.
pub fn test_file_for(runbook: &Path) -> PathBuf {
    let stem = runbook
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    runbook.with_file_name(format!("{stem}.test.yaml"))
}

/// Parse a test file and check it against the runbook it tests: every step id it
/// names must exist, and every scenario file must exist.
pub fn load(path: &Path, runbook: &Runbook) -> Result<TestFile, SpecError> {
    let shown = path.display().to_string();
    let err = |line: u64, column: u64, message: String| SpecError {
        path: shown.clone(),
        line,
        column,
        message,
    };
    let text = yaml::read_input_text(path, "a test file (YAML)")
        .map_err(|e| err(0, 0, format!("cannot read: {e}")))?;
    // The one reader policy (duplicate keys, alias budget, strict booleans, tags).
    let file: TestFile = yaml::from_str(&text).map_err(|e| {
        let hint = e
            .help()
            .unwrap_or("a test file has `version: 1` and `tests:`, see docs/testing.md");
        err(e.line, e.column, format!("{} ({hint})", e.message))
    })?;
    if file.version != 1 {
        return Err(err(
            1,
            1,
            format!(
                "unsupported test file version {}: write `version: 1`",
                file.version
            ),
        ));
    }
    let ids: HashSet<&str> = runbook
        .steps
        .iter()
        .chain(&runbook.handlers)
        .map(|s| s.id.value.as_str())
        .collect();
    let rungs: HashSet<String> = runbook
        .steps
        .iter()
        .flat_map(|s| {
            s.escalate.iter().enumerate().map(move |(i, r)| {
                r.id.as_ref()
                    .map(|id| id.value.clone())
                    .unwrap_or_else(|| format!("{}.{}", s.id.value, i + 1))
            })
        })
        .collect();
    let line_of = |needle: &str| -> u64 {
        text.lines()
            .position(|l| l.contains(needle))
            .map_or(0, |i| i as u64 + 1)
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    for case in &file.tests {
        // `approve`, `ran` and `not_ran` take rung ids as well as step ids (as
        // `runbook run --approve RUNG` does); `fixed_by` keys are steps.
        let step_or_rung = case
            .approve
            .iter()
            .chain(&case.not_done)
            .chain(&case.expect.ran)
            .chain(&case.expect.not_ran)
            .chain(case.expect.shown.keys());
        for id in step_or_rung {
            if !ids.contains(id.as_str()) && !rungs.contains(id) {
                return Err(err(
                    line_of(id),
                    1,
                    format!(
                        "test `{}` names step `{id}`, which runbook `{}` does not have (nor a rung with that id)",
                        case.name, runbook.name.value
                    ),
                ));
            }
        }
        if let Some(w) = &case.wait_for_approval
            && let Err(e) = crate::runbook::model::Duration::parse(w)
        {
            return Err(err(
                line_of("wait_for_approval:"),
                1,
                format!(
                    "test `{}`: `wait_for_approval: {w}` is not a duration ({e}); write e.g. `wait_for_approval: 30m`",
                    case.name
                ),
            ));
        }
        for id in case.expect.fixed_by.keys() {
            if !ids.contains(id.as_str()) {
                return Err(err(
                    line_of(id),
                    1,
                    format!(
                        "test `{}` names step `{id}`, which runbook `{}` does not have",
                        case.name, runbook.name.value
                    ),
                ));
            }
        }
        for rung in case.expect.fixed_by.values() {
            if !rungs.contains(rung) {
                return Err(err(
                    line_of(rung),
                    1,
                    format!(
                        "test `{}` expects rung `{rung}`, which no escalation ladder of `{}` has",
                        case.name, runbook.name.value
                    ),
                ));
            }
        }
        // A param the runbook does not take, or a value of the wrong type, is the
        // test file's mistake: say so at its line, not as a `-p` error of the run.
        for (name, value) in &case.params {
            let needle = format!("{name}:");
            let at = line_of(&needle);
            // The column of the param's name on that line (1 when not found).
            let column = text
                .lines()
                .nth(at.saturating_sub(1) as usize)
                .and_then(|l| l.find(&needle))
                .map_or(1, |c| c as u64 + 1);
            let Some(param) = runbook.params.get(name) else {
                let known: Vec<&str> = runbook.params.keys().map(String::as_str).collect();
                return Err(err(
                    at,
                    column,
                    format!(
                        "test `{}` gives param `{name}`, which runbook `{}` does not take (it takes: {})",
                        case.name,
                        runbook.name.value,
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            };
            // `{{lab.url}}` is only known when the lab runs.
            if !value.contains("{{")
                && !param.secret
                && let Err(e) = param.value_from_text(value)
            {
                return Err(err(
                    at,
                    column,
                    format!("test `{}`: param `{name}` {e}", case.name),
                ));
            }
        }
        if !dir.join(&case.scenario).is_file() {
            return Err(err(
                line_of(&case.scenario),
                1,
                format!(
                    "test `{}`: scenario file {} does not exist",
                    case.name,
                    dir.join(&case.scenario).display()
                ),
            ));
        }
    }
    Ok(file)
}
