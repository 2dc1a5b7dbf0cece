//! The postmortem's data model: what a template sees.
//!
//! Built from the journal alone (see `build.rs`) and serialized to JSON for
//! handlebars. docs/postmortem.md documents every field; keep the two in step.
//! Strings are raw (unescaped) unless the field's doc says "markdown": templates
//! escape raw values with `{{value}}` (text), `{{code value}}`, `{{cell value}}` and
//! the other helpers, and insert markdown fields with `{{{field}}}`.

use serde::Serialize;

pub use super::format::{Millis, Time};

/// Everything a postmortem template can use.
#[derive(Debug, Clone, Serialize)]
pub struct Postmortem {
    /// Everyone who acted or wrote a note, in order of appearance.
    pub authors: Vec<String>,
    pub run: Run,
    /// The display time zone, e.g. `UTC` or `Europe/Berlin`.
    pub tz: String,
    pub params: Vec<Param>,
    pub metrics: Metrics,
    /// Significant events grouped by day (in the display zone), oldest first.
    pub timeline: Vec<Day>,
    /// One row per step, in the order they started. Boxed: the vector grows by
    /// doubling while the journal is read, and room for a row is 8 bytes, not 224
    /// (issue 18).
    #[allow(clippy::vec_box)] // the point: a pointer per row in the vector
    pub steps: Vec<Box<StepRow>>,
    pub approvals: Vec<Approval>,
    pub notes: Vec<Note>,
    /// Markdown: the body of a mermaid `gantt` chart (without the fence).
    pub gantt: String,
    pub drafts: Drafts,
    /// Things a reader must know about the journal itself (torn last line, unfinished run).
    pub warnings: Vec<String>,
    /// `full`, `summary` or `none` (`runbook postmortem --details`).
    pub detail_level: String,
    /// In summary and none: every API call, grouped by step and request (the appendix).
    pub api_calls: Vec<CallGroup>,
    /// The impact chart written beside the document (`-o FILE`), when the run asked
    /// Prometheus for a number; `null` otherwise (the gantt chart is shown then).
    pub chart: Option<ChartRef>,
    /// The chart's SVG, for the caller to write (not in the template's data).
    #[serde(skip)]
    pub chart_svg: Option<String>,
}

/// The impact chart as the document links it.
#[derive(Debug, Clone, Serialize)]
pub struct ChartRef {
    /// The SVG's file name relative to the document, URL-encoded for a link.
    pub file: String,
    /// The image's alt text.
    pub alt: String,
    /// The PromQL query drawn.
    pub query: String,
}

/// The API calls of one step (the appendix of a summary): each distinct request
/// once, as `METHOD path → answer`, with `(×n)` when repeated.
#[derive(Debug, Clone, Serialize)]
pub struct CallGroup {
    pub step: String,
    pub calls: Vec<String>,
}

/// A result as the summary shows it: `markdown` is a table or an excerpt, already
/// escaped; `raw` says where the whole result is.
#[derive(Debug, Clone, Serialize)]
pub struct Shown {
    pub what: String,
    pub markdown: String,
    pub source: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: String,
    pub runbook: Runbook,
    pub operator: String,
    pub host: String,
    pub tool_version: String,
    pub dry_run: bool,
    /// The cluster the run's kube steps acted on (`context X, server Y, cluster uid Z`).
    pub target: Option<String>,
    /// Steps run again with `runbook resume --retry-failed`, in order, with who asked.
    pub retried: Vec<Retry>,
    pub started: Option<Time>,
    pub ended: Option<Time>,
    /// From the first to the last event when the run has not finished.
    pub duration: Option<String>,
    /// `succeeded`, `failed`, `aborted`, `not_applicable`, `paused` or `unfinished`.
    pub status: String,
    /// The status for people: `Succeeded`, `Not applicable`, `Unfinished (no end in the journal)`.
    pub status_label: String,
    pub reason: Option<String>,
    /// Every time another process took the run over (`runbook resume`).
    pub resumed: Vec<Resume>,
    /// How many events the journal holds.
    pub events: usize,
}

/// A failed step run again (`runbook resume --retry-failed`).
#[derive(Debug, Clone, Serialize)]
pub struct Retry {
    pub step: String,
    pub by: String,
    pub at: Time,
    /// The `for_each` items run again (`1, 3`); empty when the whole step was.
    pub items: String,
    /// How many items had succeeded and were not repeated.
    pub kept: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Runbook {
    pub name: String,
    pub title: String,
    pub path: String,
    pub sha256: String,
    pub git_commit: Option<String>,
    pub git_dirty: bool,
    /// The runbook's `links:` as the run journaled them.
    pub links: Vec<Link>,
}

/// A page the runbook names (dashboard, alert source, chat).
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    pub title: String,
    /// The URL as written.
    pub url: String,
    /// The URL normalised (unsafe characters percent-encoded) for a markdown link;
    /// `None` when it is not an absolute http(s) URL (a hand-edited journal).
    pub href: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Resume {
    pub at: Time,
    pub by: String,
    pub host: String,
}

/// A run parameter. Secret values are `***` in the journal and stay so.
#[derive(Debug, Clone, Serialize)]
pub struct Param {
    pub name: String,
    /// Strings as they are, anything else as compact JSON.
    pub value: String,
    pub secret: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    /// When users were first affected (`--incident-start`); `null` when unknown.
    pub impact_start: Option<Time>,
    /// Where the impact start came from, in words (`the lab scenario's first fault`,
    /// `the alert's startsAt`); `null` when a person gave it (`--incident-start`).
    pub impact_start_source: Option<String>,
    /// The first mutating operation.
    pub first_action: Option<Time>,
    /// The run's end, when it succeeded.
    pub resolved: Option<Time>,
    /// The first check that found the problem, measured from the run's start.
    pub time_to_detect: Option<Milestone>,
    /// The first verification that passed, measured from the run's start.
    pub time_to_mitigate: Option<Milestone>,
    /// Waiting for a person at gates (requested → decided).
    pub gate_wait: Wait,
    /// Waiting for a person to carry out manual steps (requested → confirmed).
    pub manual_wait: Wait,
    /// Paused runs: from the pause to the resume.
    pub paused: Wait,
    pub counts: Counts,
    /// The deepest escalation any step reached.
    pub escalation: Option<Escalation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Milestone {
    /// From the impact start (`--incident-start`), when known.
    pub from_impact: Option<String>,
    /// Time since the run started, e.g. `4.2 s`.
    pub after: String,
    pub at: Time,
    pub step: String,
    pub title: String,
    /// `check`, `verification` (of an action, or of a rung) or `verify` (a verify step).
    pub what: String,
    /// The rung whose verification passed, for escalation ladders.
    pub rung: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Wait {
    pub total: String,
    pub total_ms: u64,
    pub count: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub steps: usize,
    pub checks: usize,
    pub actions: usize,
    pub verifies: usize,
    pub manual: usize,
    pub ok: usize,
    pub failed: usize,
    pub skipped: usize,
    pub operations: usize,
    pub api_calls: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Escalation {
    pub step: String,
    pub rung: String,
    pub title: String,
    pub index: usize,
    pub of: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Day {
    /// `YYYY-MM-DD` in the display zone.
    pub date: String,
    /// `Tuesday`.
    pub weekday: String,
    /// Boxed: built one at a time as the builder's are let go, without a block of
    /// room for every entry beside them (issue 18: memory at the journal's end).
    #[allow(clippy::vec_box)] // the point: a pointer per entry in the vector
    pub entries: Vec<Box<Entry>>,
}

/// One significant event: a step (with its gate, operations and verification), an
/// escalation rung, an escalation, a note, a pause, the run's start or end.
///
/// A template sees every field below and those of [`EntryMore`] beside them
/// (`milestones`, `fixed_by`, `gate`, `verification`, `manual`, `escalation`, `note`,
/// `pause`, `skip_reason`, `resumed`): they are kept apart, boxed, because most
/// entries have none of them and an entry is held per step to the end of the journal
/// (issue 18: 104 bytes each).
#[derive(Debug, Clone)]
pub struct Entry {
    /// Stable across re-renders: `evt-<seq>` of the event that opened the entry.
    pub id: EntryId,
    pub seq: u64,
    pub time: Time,
    /// `start`, `resume`, `step`, `rung`, `escalation`, `step_end`, `skip`, `note`,
    /// `pause`, `finish` or `undo`. Fixed words, not allocated (issue 18).
    pub kind: &'static str,
    /// The kind for people: `Check`, `Action`, `Rung 2 of 5`, `Escalation`, `Note`, ….
    pub label: Word,
    pub step: Option<String>,
    /// `check`, `action`, `verify` or `manual`, for step entries.
    pub step_kind: Option<Word>,
    pub title: String,
    /// Boxed, as the other parts most entries do not have: an entry is held per
    /// step for the whole journal (issue 18).
    pub rung: Option<Box<RungRef>>,
    pub outcome: Option<&'static Outcome>,
    pub duration: Option<Millis>,
    /// The engine's one-line summary of the step.
    pub summary: Option<String>,
    pub ops: Vec<Op>,
    /// Milestones, gate, verification, manual step, escalation, note, pause, skip
    /// reason, resume; `None` when it has none of them.
    pub more: Option<Box<EntryMore>>,
    /// Folded output: one block per operation result, error or long list of API calls.
    pub details: Vec<Detail>,
    /// In summary: results as tables and excerpts (markdown).
    pub results: Vec<Shown>,
    /// The step's or rung's entry again, after the run paused and resumed: what
    /// happened after the resume is stamped then.
    pub continued: bool,
}

/// What fewer entries have (see [`Entry`]); a template reads these as `Entry`'s fields.
#[derive(Debug, Clone, Default)]
pub struct EntryMore {
    /// Bold markers such as `DETECTED`, `MITIGATED`, `RUN ENDED`.
    pub milestones: Vec<String>,
    /// The rung that fixed an escalation ladder.
    pub fixed_by: Option<Box<RungRef>>,
    pub gate: Option<Box<Gate>>,
    pub verification: Option<Box<Verification>>,
    pub manual: Option<Box<Manual>>,
    pub escalation: Option<Box<EscalationStep>>,
    pub note: Option<Box<Note>>,
    pub pause: Option<Box<Pause>>,
    pub skip_reason: Option<String>,
    pub resumed: Option<Box<Resume>>,
}

impl EntryMore {
    const NONE: EntryMore = EntryMore {
        milestones: Vec::new(),
        fixed_by: None,
        gate: None,
        verification: None,
        manual: None,
        escalation: None,
        note: None,
        pause: None,
        skip_reason: None,
        resumed: None,
    };
}

impl Entry {
    /// The milestones, gate, verification, … (all empty when it has none).
    pub fn more(&self) -> &EntryMore {
        static NONE: EntryMore = EntryMore::NONE;
        self.more.as_deref().unwrap_or(&NONE)
    }

    /// The same, to change (made when it had none).
    pub fn more_mut(&mut self) -> &mut EntryMore {
        self.more.get_or_insert_with(Box::default)
    }

    /// The verification, to change, when there is one.
    pub fn verification_mut(&mut self) -> Option<&mut Verification> {
        self.more.as_deref_mut()?.verification.as_deref_mut()
    }
}

impl Serialize for Entry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let more = self.more();
        let mut e = s.serialize_struct("Entry", 26)?;
        e.serialize_field("id", &self.id)?;
        e.serialize_field("seq", &self.seq)?;
        e.serialize_field("time", &self.time)?;
        e.serialize_field("kind", &self.kind)?;
        e.serialize_field("label", &self.label)?;
        e.serialize_field("milestones", &more.milestones)?;
        e.serialize_field("step", &self.step)?;
        e.serialize_field("step_kind", &self.step_kind)?;
        e.serialize_field("title", &self.title)?;
        e.serialize_field("rung", &self.rung)?;
        e.serialize_field("outcome", &self.outcome)?;
        e.serialize_field("duration", &self.duration)?;
        e.serialize_field("summary", &self.summary)?;
        e.serialize_field("fixed_by", &more.fixed_by)?;
        e.serialize_field("gate", &more.gate)?;
        e.serialize_field("ops", &self.ops)?;
        e.serialize_field("verification", &more.verification)?;
        e.serialize_field("manual", &more.manual)?;
        e.serialize_field("escalation", &more.escalation)?;
        e.serialize_field("note", &more.note)?;
        e.serialize_field("pause", &more.pause)?;
        e.serialize_field("skip_reason", &more.skip_reason)?;
        e.serialize_field("resumed", &more.resumed)?;
        e.serialize_field("details", &self.details)?;
        e.serialize_field("results", &self.results)?;
        e.serialize_field("continued", &self.continued)?;
        e.end()
    }
}

/// A word from a small fixed set (a step kind, a provider), not allocated when it is
/// one of them: entries, operations and step rows each held one per step of the
/// journal (issue 18).
pub type Word = std::borrow::Cow<'static, str>;

/// `s` as a [`Word`]: borrowed when it is a step kind or a provider name.
pub fn word(s: &str) -> Word {
    const WORDS: [&str; 9] = [
        "check",
        "action",
        "verify",
        "manual",
        "shell",
        "http",
        "prometheus",
        "kube",
        "",
    ];
    match WORDS.iter().find(|w| **w == s) {
        Some(w) => Word::Borrowed(w),
        None => Word::Owned(s.to_owned()),
    }
}

/// An entry's id, `evt-<seq>`, written when serialized (issue 18: not a string per
/// entry of the journal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryId(pub u64);

impl Serialize for EntryId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("evt-{}", self.0))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RungRef {
    pub id: String,
    pub title: String,
    pub index: usize,
    pub of: usize,
}

/// One of a few fixed outcomes: entries, operations and step rows hold a reference
/// to it (8 bytes, where the words themselves were 40 each, per step: issue 18).
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// `ok`, `failed`, `skipped`, `not_applicable`, `unknown`, `timed_out`, `aborted`.
    /// Fixed words, not allocated: each step holds up to three outcomes (issue 18).
    pub code: &'static str,
    /// `OK`, `FAILED`, `TIMED OUT`, ….
    pub label: &'static str,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Gate {
    pub requested: Time,
    pub decided: Option<Time>,
    /// `approved`, `declined`, `skipped`, `aborted`; none while still waiting.
    pub decision: Option<String>,
    pub by: Option<String>,
    /// `prompt`, `yes`, `flag`, `unattended`, `automatic`.
    pub source: Option<String>,
    /// How it was answered, for people: `at the prompt`, `unattended (gate: auto)`, ….
    pub how: Option<String>,
    /// True when no person answered (unattended or automatic).
    pub automatic: bool,
    pub waited: Option<String>,
    pub waited_ms: u64,
    /// How many operations the plan shown at the gate held.
    pub planned: usize,
    /// The step's (or rung's) `preview:` result shown with the plan, as journaled.
    pub preview: Option<String>,
}

impl Gate {
    /// A gate asked at `requested` for a plan of `planned` operations, not yet answered.
    pub fn asked(requested: Time, planned: usize) -> Gate {
        Gate {
            requested,
            decided: None,
            decision: None,
            by: None,
            source: None,
            how: None,
            automatic: false,
            waited: None,
            waited_ms: 0,
            planned,
            preview: None,
        }
    }
}

/// An operation of an entry; repeated runs of the same line (retries, polls) are one
/// `Op` with `runs` > 1 and the last run's outcome.
///
/// A template sees every field below and those of [`OpMore`] beside them (`error`,
/// `error_line`, `calls`, `calls_folded`, `output_file`, `link`): they are kept apart,
/// boxed, because most operations have none of them and an operation is held per
/// step to the end of the journal (issue 18: 112 bytes each).
#[derive(Debug, Clone)]
pub struct Op {
    /// The line a person can repeat (for kube, the `kubectl` equivalent).
    pub display: String,
    pub provider: Word,
    pub mutating: bool,
    /// The `for_each` item index.
    pub item: Option<usize>,
    pub runs: u32,
    pub started: Time,
    pub outcome: Option<&'static Outcome>,
    pub duration: Option<Millis>,
    /// The error, API calls, side file and graph link; `None` when it has none.
    pub more: Option<Box<OpMore>>,
    /// A small result in one line (plain text): `deleted hub-0; already gone: none`.
    pub result_line: Option<String>,
    /// In summary: where the whole result is (markdown: `` `journal.ndjson` event 12 ``).
    pub source: Option<String>,
}

/// What fewer operations have (see [`Op`]); a template reads these as `Op`'s fields.
#[derive(Debug, Clone, Default)]
pub struct OpMore {
    pub error: Option<String>,
    /// The error's first line, at most 200 characters (the whole error is in `details`).
    pub error_line: Option<String>,
    /// API calls of the last run (kube).
    pub calls: Vec<Call>,
    /// True when the calls are too many to list inline: they are in `details`.
    pub calls_folded: bool,
    /// Side file in the run folder holding the full output.
    pub output_file: Option<String>,
    /// For PromQL: the Prometheus graph of the query.
    pub link: Option<String>,
}

impl OpMore {
    const NONE: OpMore = OpMore {
        error: None,
        error_line: None,
        calls: Vec::new(),
        calls_folded: false,
        output_file: None,
        link: None,
    };

    /// Whether it holds anything (else it is not kept).
    pub fn any(&self) -> bool {
        self.error.is_some()
            || self.error_line.is_some()
            || !self.calls.is_empty()
            || self.calls_folded
            || self.output_file.is_some()
            || self.link.is_some()
    }
}

impl Op {
    /// The error, calls, side file and link (all empty when there are none).
    pub fn more(&self) -> &OpMore {
        static NONE: OpMore = OpMore::NONE;
        self.more.as_deref().unwrap_or(&NONE)
    }

    /// Set them, keeping them only when there is something.
    pub fn set_more(&mut self, more: OpMore) {
        self.more = more.any().then(|| Box::new(more));
    }
}

impl Serialize for Op {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let more = self.more();
        let mut o = s.serialize_struct("Op", 16)?;
        o.serialize_field("display", &self.display)?;
        o.serialize_field("provider", &self.provider)?;
        o.serialize_field("mutating", &self.mutating)?;
        o.serialize_field("item", &self.item)?;
        o.serialize_field("runs", &self.runs)?;
        o.serialize_field("started", &self.started)?;
        o.serialize_field("outcome", &self.outcome)?;
        o.serialize_field("duration", &self.duration)?;
        o.serialize_field("error", &more.error)?;
        o.serialize_field("error_line", &more.error_line)?;
        o.serialize_field("calls", &more.calls)?;
        o.serialize_field("calls_folded", &more.calls_folded)?;
        o.serialize_field("output_file", &more.output_file)?;
        o.serialize_field("result_line", &self.result_line)?;
        o.serialize_field("link", &more.link)?;
        o.serialize_field("source", &self.source)?;
        o.end()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Call {
    /// `METHOD path`, e.g. `DELETE /api/v1/namespaces/prod/pods/hub-1`.
    pub line: String,
    pub method: String,
    pub path: String,
    /// 0 when no answer came.
    pub status: u16,
    /// The status for people: `200`, or `no answer`.
    pub answer: String,
    pub duration: String,
    /// The equivalent `kubectl` line, when it differs from the operation's `display`.
    pub kubectl: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// The line that was polled.
    pub display: Option<String>,
    pub polls: u32,
    pub passed: bool,
    pub first: Time,
    pub last: Time,
    /// From the first poll to the last.
    pub took: String,
    /// The last poll's detail (why it did not pass yet, or what it saw).
    pub detail: Option<String>,
    /// `passed`, `timed_out`, `failed` or `pending`.
    pub outcome: String,
    /// The outcome for people: `passed`, `TIMED OUT`, `did not pass`, `still polling`.
    pub label: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Manual {
    pub instruction: String,
    pub requested: Time,
    pub confirmed: Option<Time>,
    pub by: Option<String>,
    pub outcome: Option<&'static Outcome>,
    pub waited: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EscalationStep {
    pub step: String,
    pub from: RungRef,
    pub to: RungRef,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Note {
    pub at: Time,
    pub by: String,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pause {
    pub step: String,
    pub reason: String,
    pub resume: String,
}

/// A folded block of output.
#[derive(Debug, Clone, Serialize)]
pub struct Detail {
    pub summary: String,
    pub body: String,
    /// Info string of the fence: `text` or `json`.
    pub lang: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRow {
    pub id: String,
    pub title: String,
    pub kind: Word,
    pub started: Time,
    pub outcome: Option<&'static Outcome>,
    pub duration: Option<Millis>,
    pub summary: Option<String>,
    pub fixed_by: Option<String>,
    pub rungs: Vec<RungRef>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Approval {
    pub step: String,
    pub rung: Option<String>,
    pub title: String,
    pub gate: Gate,
}

/// Generated first drafts, in markdown, for the human sections to start from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Drafts {
    /// Markdown paragraph(s).
    pub summary: String,
    /// Markdown bullet lists; empty when there is nothing to suggest.
    pub questions: String,
    pub went_well: String,
    pub went_wrong: String,
    pub actions: ActionDrafts,
    /// Markdown: which check found the problem, what it saw (with the graph).
    pub detection: String,
    /// Markdown: what fixed it and what proved it.
    pub resolution: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ActionDrafts {
    /// Markdown: every item below as a row of the action-items table
    /// (`| item | type | priority | owner | issue |`), empty when there is none.
    pub table: String,
    pub investigation: String,
    pub process: String,
    pub documentation: String,
    pub technical: String,
}
