//! The journal's event types: one JSON object per line, append-only.
//!
//! The journal is the single source of truth of a run: `resume` rebuilds the engine's
//! state from it and the postmortem renderer reads nothing else. So every event carries
//! what a reader needs without looking anywhere else, and new fields are only ever added
//! (readers ignore fields they do not know; `#[serde(default)]` on additions).
//!
//! Secrets never reach this file: a secret param is journaled as a reference
//! (`{"$secret": NAME, "from": SOURCE}`), and the engine masks secrets in the free-text
//! fields of every event (`engine/redact.rs`), never in its structure.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The current journal format; bump only with a reader for the old one.
pub const FORMAT: u32 = 1;

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// 1-based position in the journal; a gap means a corrupt file.
    pub seq: u64,
    /// When the event happened (UTC, millisecond precision on the wire).
    pub ts: DateTime<Utc>,
    #[serde(flatten)]
    pub event: Event,
}

/// Which part of a step an event is about: the step itself, one rung of its
/// escalation ladder, one `for_each` item, or its verification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Scope {
    pub step: String,
    /// Rung id (`free-hub-volume.2`) when inside an escalation ladder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rung: Option<String>,
    /// Index of the `for_each` item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
    /// True for the verification of an action (not for a verify step itself).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verification: bool,
}

/// The runbook a run executes, pinned by content hash and git commit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunbookRef {
    pub name: String,
    pub title: String,
    /// Path as given on the command line.
    pub path: String,
    /// sha256 of the file's bytes, hex.
    pub sha256: String,
    /// The commit the file is at, when git tracks it (absent outside a repository and
    /// for a file git does not track: such a file is not attributed to any commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitRef>,
    /// The file is inside a git repository that does not track it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub untracked: bool,
    /// sha256 of each step's definition (handlers included), by step id: what `resume
    /// --accept-changes` compares to tell which steps an edit changed, from the
    /// journal alone (no copy of the file is kept: a runbook may hold literal
    /// credentials). Absent in journals written before.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub step_digests: std::collections::BTreeMap<String, String>,
}

/// A page named by a runbook's `links:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub title: String,
    pub url: String,
}

impl RunbookRef {
    /// Why this version of the runbook cannot be found in git later, if it cannot:
    /// `has uncommitted changes` or `is not tracked by git`.
    pub fn version_warning(&self) -> Option<String> {
        if self.untracked {
            Some(format!(
                "{} is not tracked by git: this run is not attributed to a commit; it is pinned by its sha256 {} only",
                self.path, self.sha256
            ))
        } else {
            self.git.as_ref().filter(|g| g.dirty).map(|g| {
                format!(
                    "{} has uncommitted changes: this run uses a version that is not commit {} (sha256 {})",
                    self.path,
                    g.commit.get(..12).unwrap_or(&g.commit),
                    self.sha256
                )
            })
        }
    }
}

/// How a step of the runbook differs between two versions of its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepChange {
    pub step: String,
    /// `added`, `removed` or `changed`.
    pub change: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitRef {
    pub commit: String,
    /// The file differs from the commit.
    pub dirty: bool,
}

/// The Kubernetes cluster a run acts on, recorded when it starts so that `resume`
/// cannot continue it on another cluster by accident (a shell that points elsewhere)
/// and the postmortem can say which cluster was touched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeTarget {
    /// The kubeconfig file the client read (`--kubeconfig`, else `$KUBECONFIG`);
    /// `None` for `~/.kube/config` found by default or the in-cluster config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
    /// The context used (`--context`, the runbook's `kube.context`, else the
    /// kubeconfig's current context).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The API server's URL.
    pub server: String,
    /// The uid of the `kube-system` namespace: what tools use to tell clusters apart
    /// (a server URL can move; this uid lives as long as the cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_uid: Option<String>,
}

impl KubeTarget {
    /// One line for the gate's plan, the console and the postmortem's facts.
    pub fn describe(&self) -> String {
        format!(
            "context {}, server {}, cluster uid {}",
            self.context.as_deref().unwrap_or("(none)"),
            self.server,
            self.cluster_uid.as_deref().unwrap_or("(unknown)")
        )
    }

    /// Whether two targets are the same cluster: by `kube-system` uid when both have
    /// one, else by server URL.
    pub fn same_cluster(&self, other: &KubeTarget) -> bool {
        match (&self.cluster_uid, &other.cluster_uid) {
            (Some(a), Some(b)) => a == b,
            _ => self.server == other.server,
        }
    }
}

/// An operation fully resolved (templates rendered, `for_each` expanded), as shown in
/// the plan and journaled before it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedOp {
    pub scope: Scope,
    /// `shell`, `http`, `prometheus`, `kube` or `manual`.
    pub provider: String,
    /// One line a person can read and repeat by hand: the argv, `GET https://…`,
    /// `kubectl delete pod x --grace-period=0 --force -n prod`.
    pub display: String,
    /// The resolved operation as data (provider-specific), secrets redacted.
    pub op: Value,
    pub mutating: bool,
    /// What a fan-out operation (a delete by selector or filter) would touch, listed
    /// read-only when the gate was reached: shown in the plan and covered by its
    /// digest. Absent for operations that name their one object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact: Option<Impact>,
}

/// The objects an operation would touch, as a read-only list found them when its
/// plan was shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Impact {
    /// One line for the plan: `would delete 12 pods: hub-1, hub-2, … (and 7 more);
    /// ages 4h–2d, on 3 nodes`.
    pub summary: String,
    /// Every object it would touch (`name`, or `namespace/name` across namespaces),
    /// sorted; the approval covers exactly these.
    pub objects: Vec<String>,
    /// How many objects its selector (or name) matched before its `where`, the
    /// population `limit: { max_fraction }` is a share of. Not journaled: the plan
    /// line and the objects are what was approved.
    #[serde(skip)]
    pub matched: Option<usize>,
}

/// One request an operation sent to an API (Kubernetes), retried ones included, so
/// the postmortem can show exactly what was called and how it answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiCall {
    /// HTTP method: `GET`, `PATCH`, `DELETE`, `POST`, `PUT`.
    pub method: String,
    /// Path and query, e.g. `/api/v1/namespaces/prod/pods/hub-1?gracePeriodSeconds=0`.
    pub path: String,
    /// HTTP status of the answer; 0 when no answer came (connection error, timeout).
    pub status: u16,
    pub duration_ms: u64,
    /// The equivalent `kubectl` command line, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubectl: Option<String>,
}

/// How an operation, verification or step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Failed,
    Skipped,
    /// The expectation of a check did not hold: nothing to do.
    NotApplicable,
    /// The action started but the journal has no result (killed mid-action).
    Unknown,
    TimedOut,
    Aborted,
}

/// A gate decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approved,
    Declined,
    Skipped,
    Aborted,
    /// Nobody answered within the gate's `timeout:`: neither approved nor declined.
    Expired,
}

/// What opens a gate (`gate: { approvals: N, expires: D }`), journaled with its
/// request so that `runbook approve` from another process and the run state know
/// when the gate stops waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quorum {
    /// Distinct people who must approve the same digest.
    #[serde(default = "one")]
    pub approvals: u32,
    /// Milliseconds an approval counts for (on the run's clock); absent: forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

fn one() -> u32 {
    1
}

impl Default for Quorum {
    fn default() -> Quorum {
        Quorum {
            approvals: 1,
            expires_ms: None,
        }
    }
}

impl Quorum {
    /// One approval that never expires: the gate as it always was.
    pub fn is_single(&self) -> bool {
        *self == Quorum::default()
    }
}

/// Where an approval came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalSource {
    /// Answered at the terminal prompt.
    Prompt,
    /// `--yes`.
    Yes,
    /// `--approve STEP_ID`.
    Flag,
    /// `gate: auto` or listed in `unattended`.
    Unattended,
    /// Answered automatically by `runbook demo` / `runbook test`.
    Automatic,
    /// From another process while the run waited or was paused: `runbook approve`,
    /// or a web page (`runbook serve`).
    Remote,
}

/// Final status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Succeeded,
    Failed,
    Aborted,
    NotApplicable,
    Paused,
}

impl RunStatus {
    /// The status as the journal writes it (`not_applicable`).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Aborted => "aborted",
            RunStatus::NotApplicable => "not_applicable",
            RunStatus::Paused => "paused",
        }
    }
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Everything that can happen in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        format: u32,
        run_id: String,
        runbook: RunbookRef,
        /// Parameter values; secrets are `{"$secret": NAME, "from": SOURCE}` (`"***"`
        /// in journals of earlier versions).
        params: serde_json::Map<String, Value>,
        operator: String,
        host: String,
        tool_version: String,
        dry_run: bool,
        /// The cluster of the run's kube steps (absent in journals written before
        /// targets were recorded, and for runbooks without kube steps).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<KubeTarget>,
    },
    /// A later process took the run over (`runbook resume`).
    RunResumed { operator: String, host: String },
    /// `runbook resume --retry-failed`: the step that failed the run runs again (its
    /// earlier attempt stays in the journal; completed steps are not repeated). For a
    /// `for_each` step with failed items, only those run again: `failed` are the items
    /// whose operation failed, `kept` the ones that finished ok and are not repeated
    /// (both empty for a step run again whole).
    StepRetried {
        step: String,
        by: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        failed: Vec<usize>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        kept: Vec<usize>,
    },
    /// `runbook resume --accept-changes`: the runbook file was edited while the run
    /// waited, and the run continues with the edited file. Journaled right after
    /// `run_resumed`, before any step runs; from here on the run's runbook is the new
    /// version (a later resume compares against `new_sha256`).
    RunbookChanged {
        old_sha256: String,
        new_sha256: String,
        /// The new version's commit (absent when untracked or outside git).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        git: Option<GitRef>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        untracked: bool,
        /// The new version's step digests (see [`RunbookRef::step_digests`]).
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        step_digests: std::collections::BTreeMap<String, String>,
        /// The steps not yet run (handlers included) that were added, removed or
        /// changed, in the new file's order; empty when only steps already done, or
        /// nothing a step does, changed.
        steps: Vec<StepChange>,
        /// False when the journal has no step digests of the old version (a run
        /// started by an earlier version): the steps could not be compared.
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        compared: bool,
        by: String,
    },
    StepStarted {
        step: String,
        title: String,
        /// `check`, `action`, `verify` or `manual`.
        kind: String,
    },
    /// `when` did not hold, the gate was answered `skip`, or a dry run.
    StepSkipped { step: String, reason: String },
    /// The plan shown at a gate; `digest` is the sha256 of the canonical JSON of `ops`,
    /// so an approval can be bound to exactly what was shown.
    GateRequested {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rung: Option<String>,
        ops: Vec<PlannedOp>,
        digest: String,
        /// The `preview:` result shown with the plan (covered by the digest).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        preview: Option<String>,
        /// What opens the gate: how many distinct people must approve this digest,
        /// and for how long an approval counts (absent: one, forever).
        #[serde(default, skip_serializing_if = "Quorum::is_single")]
        quorum: Quorum,
    },
    /// Journaled (and fsynced) before the approved action starts. With a quorum,
    /// each person's approval is one of these, with the same digest.
    GateDecided {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rung: Option<String>,
        decision: Decision,
        by: String,
        source: ApprovalSource,
        digest: String,
    },
    /// The run stopped to wait for a person; `resume` continues from here.
    Paused {
        step: String,
        reason: String,
        /// The command that continues the run.
        resume: String,
    },
    /// An operation is about to run (written before the side effect).
    OpStarted { op: PlannedOp, attempt: u32 },
    /// The program of a shell action started in its own process group `pgid` (journaled
    /// right after it was spawned): after a crash, `resume` refuses to run the action
    /// again while that group still has live members. Absent in older journals.
    ProcessStarted {
        scope: Scope,
        attempt: u32,
        pgid: u32,
    },
    OpFinished {
        scope: Scope,
        attempt: u32,
        outcome: Outcome,
        duration_ms: u64,
        /// Bounded result (see `output_file` for the full output).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// Side file (relative to the run folder) holding output too large to inline.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output_file: Option<String>,
        /// API calls the operation made, in order (kube).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        calls: Vec<ApiCall>,
    },
    /// A person was asked to do something (manual step or rung).
    ManualRequested { scope: Scope, instruction: String },
    ManualConfirmed {
        scope: Scope,
        outcome: Outcome,
        by: String,
    },
    /// One poll of a verification.
    VerifyPolled {
        scope: Scope,
        attempt: u32,
        ok: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A rung of an escalation ladder starts (1-based `index` of `of`).
    RungStarted {
        step: String,
        rung: String,
        title: String,
        index: usize,
        of: usize,
    },
    /// The previous rung did not satisfy the verification; the next one starts.
    Escalated {
        step: String,
        from: String,
        to: String,
        reason: String,
    },
    /// A step's result kept under a name for later steps (bounded, secrets redacted).
    Saved {
        step: String,
        name: String,
        value: Value,
    },
    StepFinished {
        step: String,
        outcome: Outcome,
        duration_ms: u64,
        /// One line for the console and the timeline.
        summary: String,
        /// The rung that fixed it, for escalation ladders.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fixed_by: Option<String>,
    },
    /// An operator note (`runbook note`), possibly from another process.
    Note {
        text: String,
        by: String,
        /// When what the note says happened (`runbook note --at`), when that is
        /// earlier than the record's own time; the timeline places the note there.
        /// Absent in journals of earlier versions and for notes written as it happened.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<DateTime<Utc>>,
    },
    /// When users were first affected, journaled right after `run_started`. The
    /// postmortem measures time to detect and to mitigate from it.
    IncidentStart {
        at: DateTime<Utc>,
        by: String,
        /// Where the time came from, when not from the operator `by`
        /// (`run --incident-start`, no `source`): `scenario` (the lab scenario's first
        /// fault, `runbook demo`), `alert` (an alert's `startsAt`). Absent in journals
        /// of earlier versions, which render as before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
    },
    /// The runbook's `links:` (dashboards, alert source, chat), journaled right after
    /// `run_started` when it has any (its own event: `run_started` is already the
    /// largest, and every event in memory is as large as the largest). The
    /// postmortem lists them.
    RunbookLinks { links: Vec<Link> },
    /// The run's undo begins (`runbook undo`, or the runbook's `on_failure: undo`),
    /// journaled once, before its first `undo_started`/`undo_skipped`: how the run had
    /// ended (absent: it had not, a paused or interrupted run), which is how it ends
    /// again once every undo ran.
    UndoBegun {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<RunStatus>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        by: String,
    },
    /// `runbook undo` (or the runbook's `on_failure: undo`): the `undo:` of a
    /// completed action starts, for the `for_each` items in `items` (empty for a
    /// single operation). Journaled (fsynced) before its gate and its operations,
    /// whose scope is the step with the rung `STEP.undo`.
    UndoStarted {
        step: String,
        title: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        items: Vec<usize>,
        by: String,
    },
    /// How an undo ended: `ok`, `failed`, `skipped` (at its gate), `aborted`
    /// (declined or stopped).
    UndoFinished {
        step: String,
        outcome: Outcome,
        duration_ms: u64,
        summary: String,
    },
    /// A completed action that was not undone, and why (it has no `undo:`).
    UndoSkipped { step: String, reason: String },
    RunFinished {
        status: RunStatus,
        duration_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// Who accepted a `runbook_changed` (empty for any other event).
pub fn changed_by(event: &Event) -> &str {
    match event {
        Event::RunbookChanged { by, .. } => by,
        _ => "",
    }
}

/// One sentence for a `runbook_changed`, shared by the console and the postmortem:
/// `the runbook changed (sha256 ab12… then, cd34… now) and the run continued with it
/// (--accept-changes); steps not yet run: repair changed, cleanup added`.
pub fn describe_change(event: &Event) -> String {
    let Event::RunbookChanged {
        old_sha256,
        new_sha256,
        steps,
        compared,
        untracked,
        ..
    } = event
    else {
        return String::new();
    };
    let short = |s: &str| s.get(..12).unwrap_or(s).to_owned();
    let what = if !compared {
        "the steps could not be compared (the run was started by a version of runbook that did not record them)".to_owned()
    } else if steps.is_empty() {
        "no step still to run changed".to_owned()
    } else {
        format!(
            "steps not yet run: {}",
            steps
                .iter()
                .map(|c| format!("{} {}", c.step, c.change))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    format!(
        "the runbook changed since the run started (sha256 {} then, {} now{}) and the run continued with it (--accept-changes); {what}",
        short(old_sha256),
        short(new_sha256),
        if *untracked {
            ", not tracked by git"
        } else {
            ""
        }
    )
}
