//! The typed runbook model, format v1.
//!
//! The structs mirror the YAML exactly (a field is named as its key), so the JSON
//! Schema derived from them with schemars is the schema editors see. They are built by
//! `parse.rs`, never by serde's `Deserialize`: the parser walks a YAML tree that keeps
//! positions and collects *every* problem instead of stopping at the first one.
//! `Serialize` is derived for plans and the journal; [`Sp`] serializes as its value.
//!
//! A step names its kind by the key that carries its title (`check:`, `action:`,
//! `verify:`, `manual:`), and its operation by the key of the provider (`shell:`,
//! `http:`, `prometheus:`, `kube:`). `verify:` is also the key of an action's own
//! verification block; a string there is a step title, a mapping is a block.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Serialize, Serializer};

pub use super::verbs::KubeVerb;

/// A position in a runbook file: 1-based line and column; 0 means unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    pub const UNKNOWN: Pos = Pos { line: 0, col: 0 };
}

/// A value with the position of the YAML node it came from, so a semantic check
/// (an unknown param in a template, a duplicate id) can point at the right place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sp<T> {
    pub pos: Pos,
    pub value: T,
}

impl<T> Sp<T> {
    pub fn new(pos: Pos, value: T) -> Self {
        Sp { pos, value }
    }

    /// A value made in code (tests, defaults), with no source position.
    pub fn bare(value: T) -> Self {
        Sp {
            pos: Pos::UNKNOWN,
            value,
        }
    }
}

impl<T> std::ops::Deref for Sp<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Serialize> Serialize for Sp<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<T: JsonSchema> JsonSchema for Sp<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// A duration written as `30s`, `5m`, `1h30m`, `250ms` or `2d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// Parse `1h30m`-style text: one or more `<digits><unit>` with units ms, s, m, h, d.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("an empty duration".into());
        }
        let mut total: u128 = 0;
        let mut rest = t;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(format!(
                    "`{t}` is not a duration: expected a number before `{rest}`"
                ));
            }
            let n: u128 = rest[..digits]
                .parse()
                .map_err(|_| format!("`{t}` has a number too large"))?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..unit_len];
            let ms = match unit {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "" => {
                    return Err(format!(
                        "`{t}` needs a unit after {n}: one of ms, s, m, h, d"
                    ));
                }
                other => {
                    return Err(format!(
                        "`{t}` has an unknown unit `{other}`: use ms, s, m, h or d"
                    ));
                }
            };
            total = total.saturating_add(n.saturating_mul(ms));
            rest = &rest[unit_len..];
        }
        let ms = u64::try_from(total).map_err(|_| format!("`{t}` is too long"))?;
        Ok(Duration(std::time::Duration::from_millis(ms)))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(ms|s|m|h|d))+$",
            "description": "A duration such as 30s, 5m, 1h30m, 250ms or 2d.",
            "examples": ["30s", "5m", "1h30m"]
        })
    }
}

/// A whole runbook file.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Runbook {
    /// Format version; always 1.
    pub version: Sp<u32>,
    /// A slug: lowercase letters, digits and dashes (`hub-pvc-locked`).
    pub name: Sp<String>,
    /// One line saying what this runbook fixes.
    pub title: Sp<String>,
    /// Free text: when to use it, what it does, what to read first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Sp<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Sp<String>>,
    /// Who maintains this runbook (people, teams, addresses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<Sp<String>>,
    /// Pages to open during the incident (dashboards, the alert's source, the chat
    /// channel); the postmortem lists them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// Who is told when a run starts, waits for a person, fails or ends: generic JSON
    /// webhooks and Slack-compatible incoming webhooks (docs/format.md, Notifications).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<Notify>,
    /// Inputs, set with `-p name=value`; referenced as `{{params.name}}` in templates
    /// and `params.name` in conditions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Param>,
    /// Alerts this runbook answers (`runbook serve`): an Alertmanager alert whose
    /// labels include every label of one trigger starts a run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<Trigger>,
    /// Params taken from the alert that started a run (`runbook serve`): parameter
    /// name → `labels.NAME` or `annotations.NAME`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params_from_alert: BTreeMap<String, Sp<String>>,
    /// Ids of actions that may run without approval (in addition to `gate: auto`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unattended: Vec<Sp<String>>,
    /// Defaults for `kube` steps; command-line flags override them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube: Option<KubeDefaults>,
    /// The steps, run in order.
    pub steps: Vec<Step>,
    /// Steps that run only when a failing step names them in `on_failure`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handlers: Vec<Step>,
    /// One remediation at a time: a run holds this lock (a Kubernetes Lease in the
    /// target cluster) from its start to its end, and a second run is told who holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<Sp<Lock>>,
    /// What a failed run does: `stop` (the default) or `undo`: run the `undo:` of
    /// every completed action, newest first, each behind its own gate (an undo with
    /// `gate: auto` runs unattended), as `runbook undo RUN` would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<Sp<RunFailure>>,
}

/// The runbook-level `on_failure:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunFailure {
    /// The run ends as failed; nothing is undone (`runbook undo RUN` still can).
    Stop,
    /// The completed actions' `undo:` run, newest first, each behind its gate.
    Undo,
}

/// `undo:`: an action's compensation, an operation of the same shape as the
/// action's, rendered with the action's `item` (per `for_each` item that completed),
/// `index` and `result` (that item's result). `runbook undo RUN [STEP]` runs it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Undo {
    /// Position of the `undo` mapping (not part of the YAML).
    #[serde(skip)]
    #[schemars(skip)]
    pub pos: Pos,
    /// What the undo does, for the gate and the postmortem (default: `undo` and the
    /// action's title).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Sp<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<ShellOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube: Option<KubeOp>,
    /// `approve` (the default) stops for approval; `auto` undoes unattended;
    /// `explicit` needs an approval naming `ID.undo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<Sp<Gate>>,
}

impl Undo {
    pub fn op(&self) -> Option<OpRef<'_>> {
        OpRef::pick(&self.shell, &self.http, &None, &self.kube, &None)
    }
}

/// `lock: { scope: runbook | target, name: NAME, ttl: 30s, wait: 10m }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// `runbook` (default): runs of this runbook exclude each other; `target`: every
    /// runbook with `scope: target` on the same cluster (and namespace).
    #[serde(default)]
    pub scope: LockScope,
    /// The lock's name (default: the runbook's name, or `target`); the Lease is
    /// `runbook-lock-NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Sp<String>>,
    /// How long the lock outlives its holder's last renewal (default 30s): a run
    /// killed with SIGKILL frees it after this long. Renewed every third of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Sp<Duration>>,
    /// How long a run waits for a lock another run holds (default: it does not wait;
    /// it pauses, exit 3, saying who holds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Sp<Duration>>,
}

/// What a `lock:` excludes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LockScope {
    #[default]
    Runbook,
    Target,
}

/// An alert a runbook answers (`triggers:`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// Label name → value; the alert must carry every one of them with exactly this
    /// value (`{ alertname: HubPodNotReady, namespace: prod }`).
    pub alert: BTreeMap<String, Sp<String>>,
}

/// A page named in `links:`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// What it is (`Hub dashboard`, `#ops-incidents`).
    pub title: Sp<String>,
    /// An absolute `http://` or `https://` URL.
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: Sp<String>,
}

/// One receiver of notifications (`notify:`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// An absolute `http://` or `https://` URL. Exactly one of `url` and `url_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: Option<Sp<String>>,
    /// The environment variable holding the URL, for URLs that are themselves
    /// credentials (a Slack incoming webhook's URL is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<Sp<String>>,
    /// `webhook` (a JSON document, the default) or `slack` (`text` and `blocks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Sp<NotifyKind>>,
    /// When to send: any of `started`, `waiting`, `failed`, `finished` (default: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<Sp<NotifyOn>>,
    /// Extra request headers, as written (not for credentials: use `headers_env`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Sp<String>>,
    /// Request headers whose value is read from an environment variable when the run
    /// starts (`Authorization: NOTIFY_TOKEN`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers_env: BTreeMap<String, Sp<String>>,
    /// An environment variable holding a shared secret: each request carries
    /// `X-Runbook-Signature: sha256=HEX`, the HMAC-SHA256 of its body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<Sp<String>>,
    /// How long one attempt may take (default 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Sp<Duration>>,
    /// Attempts after the first when one fails (default 3, at most 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Sp<u32>>,
}

/// The shape of a notification's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotifyKind {
    /// A JSON document: run, status, step, the plan at a gate, links.
    Webhook,
    /// A Slack-compatible incoming webhook message: `text` and `blocks`.
    Slack,
}

impl NotifyKind {
    pub const NAMES: &'static [&'static str] = &["webhook", "slack"];

    pub fn parse(s: &str) -> Option<NotifyKind> {
        match s {
            "webhook" => Some(NotifyKind::Webhook),
            "slack" => Some(NotifyKind::Slack),
            _ => None,
        }
    }
}

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    /// The run started (or was resumed).
    Started,
    /// The run waits for a person: a gate's plan, or a manual step.
    Waiting,
    /// The run ended failed.
    Failed,
    /// The run ended any other way (succeeded, aborted, not applicable).
    Finished,
}

impl NotifyOn {
    pub const NAMES: &'static [&'static str] = &["started", "waiting", "failed", "finished"];
    pub const ALL: [NotifyOn; 4] = [
        NotifyOn::Started,
        NotifyOn::Waiting,
        NotifyOn::Failed,
        NotifyOn::Finished,
    ];

    pub fn parse(s: &str) -> Option<NotifyOn> {
        match s {
            "started" => Some(NotifyOn::Started),
            "waiting" => Some(NotifyOn::Waiting),
            "failed" => Some(NotifyOn::Failed),
            "finished" => Some(NotifyOn::Finished),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// A runbook parameter.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Param {
    /// Position of the parameter's name (not part of the YAML).
    #[serde(skip)]
    #[schemars(skip)]
    pub pos: Pos,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Sp<String>>,
    /// What values the parameter takes; a value of another type is refused when the
    /// run starts. Without `type`, a default's type is the parameter's type.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub ty: Option<Sp<ParamType>>,
    /// Used when `-p`, `-p @FILE` and `RUNBOOK_PARAM_<NAME>` do not set the parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Sp<serde_json::Value>>,
    /// The run refuses to start without a value (from `-p` or `default`).
    #[serde(default)]
    pub required: bool,
    /// Never printed, journaled or rendered: shown as `***`.
    #[serde(default)]
    pub secret: bool,
}

/// The type of a runbook parameter (`type:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// A whole number: `-p threshold=80`.
    Integer,
    /// Any number: `-p ratio=0.75`.
    Number,
    /// `true` or `false`.
    Boolean,
    /// Text, taken as given.
    String,
    /// A list: `-p nodes=a,b` or `-p 'nodes=["a","b"]'`.
    List,
    /// A runbook duration such as `90s` or `1h30m`, kept as that text.
    Duration,
}

impl ParamType {
    pub const NAMES: &'static [&'static str] =
        &["integer", "number", "boolean", "string", "list", "duration"];

    pub fn parse(name: &str) -> Option<ParamType> {
        Some(match name {
            "integer" => ParamType::Integer,
            "number" => ParamType::Number,
            "boolean" => ParamType::Boolean,
            "string" => ParamType::String,
            "list" => ParamType::List,
            "duration" => ParamType::Duration,
            _ => return None,
        })
    }

    /// "an integer", "a list"...: for "takes X" messages.
    pub fn article(self) -> &'static str {
        match self {
            ParamType::Integer => "an integer",
            ParamType::Number => "a number",
            ParamType::Boolean => "a boolean (`true` or `false`)",
            ParamType::String => "a string",
            ParamType::List => "a list (`a,b` or `[\"a\", \"b\"]`)",
            ParamType::Duration => "a duration such as `90s` or `1h30m`",
        }
    }
}

/// Defaults for every `kube` operation of the runbook.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubeDefaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Sp<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Sp<String>>,
}

/// What a step is for; named by the key that carries its title.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// Read-only: gathers facts, may end the run as not applicable.
    Check,
    /// Mutating: stops at a gate unless allowed to run unattended.
    Action,
    /// A post-condition polled until it holds or `within` runs out.
    Verify,
    /// An instruction a person carries out and confirms.
    Manual,
}

impl StepKind {
    pub fn key(self) -> &'static str {
        match self {
            StepKind::Check => "check",
            StepKind::Action => "action",
            StepKind::Verify => "verify",
            StepKind::Manual => "manual",
        }
    }
}

/// One step. Exactly one of `check`, `action`, `verify` (as a title string) or
/// `manual` is present; `parse.rs` guarantees it, and [`Step::kind`] reads it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Position of the step's mapping (not part of the YAML).
    #[serde(skip)]
    #[schemars(skip)]
    pub pos: Pos,
    /// A read-only step; the value is its title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Sp<String>>,
    /// A mutating step; the value is its title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Sp<String>>,
    /// A string: this is a verify step and the value is its title. A mapping: the
    /// verification that proves this action worked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyField>,
    /// A step for a person; the value is its title (details go in `instructions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<Sp<String>>,
    /// Stable, unique id: used by the journal, the postmortem and `--approve`.
    pub id: Sp<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Sp<String>>,
    /// What a person must do (manual steps); a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<Sp<String>>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<ShellOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube: Option<KubeOp>,

    /// A condition: the step is skipped unless it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Sp<String>>,
    /// A precondition (a condition over params, saved values and `steps`): this
    /// never runs before it holds. A step whose precondition does not hold fails
    /// before it starts; a rung is not run and the ladder goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires: Option<Sp<String>>,
    /// A condition that evaluates to a list; the operation runs once per element,
    /// bound to `item` (and its position to `index`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<Sp<String>>,
    /// How many `for_each` items run at once (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Sp<u32>>,
    /// Name under which the step's result is kept for later steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save: Option<Sp<String>>,
    /// A condition on `result` that must hold for the step to succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Sp<String>>,
    /// A template for the step's one-line outcome on the console and in the
    /// postmortem (`{{result.used}} % used` instead of `exit 0: 90`); it sees
    /// `result` and everything `expect` sees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Sp<String>>,
    /// Actions only: one read-only operation run when the plan is built, its result
    /// shown at the gate (what a cleanup would delete, how much it frees) and covered
    /// by the plan's digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<Box<Preview>>,
    /// Bound on one attempt of the operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Sp<Duration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// Verify steps only: how long to keep polling before failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Sp<Duration>>,
    /// Verify steps only: how often to poll (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<Sp<Duration>>,
    /// Actions only: `approve` (the default) stops for approval; `auto` runs unattended;
    /// `explicit` accepts only an approval that names the step (`--approve ID`); or
    /// `{ approvals: N, explicit: BOOL, expires: DURATION }`: N distinct people must
    /// approve the same plan, each approval counting for `expires`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<GateForm>")]
    pub gate: Option<Sp<Gate>>,
    /// The mapping form of `gate:` (its `gate` is then `approve` or `explicit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub gate_rule: Option<Sp<GateRule>>,
    /// Actions only: remedies, gentlest first, sharing the step's `verify` block; the
    /// run stops escalating at the first remedy the verification accepts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalate: Vec<Rung>,
    /// What happens when the step fails: `stop` (default), `continue`, or a list of
    /// handler ids to run before stopping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<Sp<OnFailure>>,
    /// Actions only: the blast radius a plan may have, checked when the plan is
    /// built, before anyone is asked (`limit: { max_targets: 20 }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Sp<Limit>>,
    /// Actions only: what a plan over its `limit` does: `refuse` (the default; the
    /// step fails before anything is asked) or `explicit` (only an approval that
    /// names the step opens it, as `gate: explicit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over_limit: Option<Sp<OverLimit>>,
    /// Kube actions only: what must stay healthy, read from the cluster before each
    /// item (and before a single operation): `keep: { ready_nodes: 3 }` or
    /// `keep: { ready_replicas: "deployment/hub >= 1" }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<Sp<Keep>>,
    /// Actions only: the operation that compensates this one (`runbook undo`):
    /// `undo: { kube: { uncordon: "{{item}}" } }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<Box<Undo>>,
}

/// `keep:`: a floor of healthy capacity an action never goes below. Each item may
/// take one away, so an item starts only while more than the floor is healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Keep {
    /// Nodes that are Ready and schedulable (not cordoned) that must remain.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub ready_nodes: Option<u32>,
    /// `KIND/NAME >= N`: Ready replicas of a deployment, stateful set or replica
    /// set (its `status.readyReplicas`) that must remain.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^(deployment|deployments|statefulset|statefulsets|replicaset|replicasets)/[^\s]+\s*>=\s*[0-9]+$"
    ))]
    pub ready_replicas: Option<Sp<String>>,
    /// The namespace of `ready_replicas`' workload (a template; default: the action's own, else the run's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Sp<String>>,
    /// `ready_replicas` read: (plural, name, floor).
    #[serde(skip)]
    #[schemars(skip)]
    pub workload: Option<(String, String, u32)>,
}

impl Step {
    /// The step's kind, read from whichever title key is present.
    pub fn kind(&self) -> StepKind {
        if self.check.is_some() {
            StepKind::Check
        } else if self.manual.is_some() {
            StepKind::Manual
        } else if matches!(self.verify, Some(VerifyField::Title(_))) {
            StepKind::Verify
        } else {
            StepKind::Action
        }
    }

    /// The human title, whichever key carries it.
    pub fn title(&self) -> &str {
        let title = match (&self.check, &self.action, &self.verify, &self.manual) {
            (Some(t), ..) | (_, Some(t), ..) | (_, _, Some(VerifyField::Title(t)), _) => t,
            (.., Some(t)) => t,
            _ => return "",
        };
        &title.value
    }

    /// The step's own operation, if it has one.
    pub fn op(&self) -> Option<OpRef<'_>> {
        OpRef::pick(&self.shell, &self.http, &self.prometheus, &self.kube, &None)
    }

    /// An action's verification block, when it has one.
    pub fn verification(&self) -> Option<&Verification> {
        match &self.verify {
            Some(VerifyField::Block(v)) => Some(v),
            _ => None,
        }
    }
}

/// The two shapes of the `verify` key.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum VerifyField {
    /// This step is a verify step with this title.
    Title(Sp<String>),
    /// This action's verification.
    Block(Box<Verification>),
}

/// A verification attached to an action (or its escalation ladder).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Verification {
    /// Position of the block (not part of the YAML).
    #[serde(skip)]
    #[schemars(skip)]
    pub pos: Pos,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Sp<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<ShellOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube: Option<KubeOp>,
    /// A condition on `result` that proves the fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Sp<String>>,
    /// How long to keep polling (default 1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Sp<Duration>>,
    /// How often to poll (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<Sp<Duration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Sp<Duration>>,
}

impl Verification {
    pub fn op(&self) -> Option<OpRef<'_>> {
        OpRef::pick(&self.shell, &self.http, &self.prometheus, &self.kube, &None)
    }
}

/// A read-only operation whose result is shown at an action's gate.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Preview {
    /// Position of the block (not part of the YAML).
    #[serde(skip)]
    #[schemars(skip)]
    pub pos: Pos,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<ShellOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube: Option<KubeOp>,
    /// A template for the line shown at the gate; it sees `result` (default: the
    /// first lines of the output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Sp<String>>,
}

impl Preview {
    pub fn op(&self) -> Option<OpRef<'_>> {
        OpRef::pick(&self.shell, &self.http, &self.prometheus, &self.kube, &None)
    }
}

/// One remedy of an escalation ladder.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rung {
    /// Position of the rung's mapping (not part of the YAML).
    #[serde(skip)]
    #[schemars(skip)]
    pub pos: Pos,
    /// Defaults to `<step id>.<n>`, counting from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Sp<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Sp<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<ShellOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube: Option<KubeOp>,
    /// An instruction for a person; the run waits for them to confirm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<Sp<String>>,
    /// A read-only operation whose result is shown at this rung's gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<Box<Preview>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Sp<String>>,
    /// A precondition (a condition over params, saved values and `steps`): this
    /// never runs before it holds. A step whose precondition does not hold fails
    /// before it starts; a rung is not run and the ladder goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires: Option<Sp<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<Sp<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Sp<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Sp<Duration>>,
    /// Overrides the verification's `within` after this rung: a plain delete shows
    /// its effect in seconds, a forced detach only after minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Sp<Duration>>,
    /// Overrides the step's gate for this rung (a string, or the mapping form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<GateForm>")]
    pub gate: Option<Sp<Gate>>,
    /// The mapping form of this rung's `gate:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub gate_rule: Option<Sp<GateRule>>,
    /// This rung's own proof of success, used instead of the step's `verify` after
    /// it ("scale to zero" and "roll back" are proven differently).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Box<Verification>>,
}

impl Rung {
    pub fn op(&self) -> Option<OpRef<'_>> {
        OpRef::pick(
            &self.shell,
            &self.http,
            &self.prometheus,
            &self.kube,
            &self.manual,
        )
    }
}

/// A borrowed view of whichever operation a step, rung or verification carries.
#[derive(Debug, Clone, Copy)]
pub enum OpRef<'a> {
    Shell(&'a ShellOp),
    Http(&'a HttpOp),
    Prometheus(&'a PrometheusOp),
    Kube(&'a KubeOp),
    Manual(&'a Sp<String>),
}

impl<'a> OpRef<'a> {
    fn pick(
        shell: &'a Option<ShellOp>,
        http: &'a Option<HttpOp>,
        prometheus: &'a Option<PrometheusOp>,
        kube: &'a Option<KubeOp>,
        manual: &'a Option<Sp<String>>,
    ) -> Option<OpRef<'a>> {
        if let Some(op) = shell {
            Some(OpRef::Shell(op))
        } else if let Some(op) = http {
            Some(OpRef::Http(op))
        } else if let Some(op) = prometheus {
            Some(OpRef::Prometheus(op))
        } else if let Some(op) = kube {
            Some(OpRef::Kube(op))
        } else {
            manual.as_ref().map(OpRef::Manual)
        }
    }

    /// The provider key: `shell`, `http`, `prometheus`, `kube` or `manual`.
    pub fn provider(&self) -> &'static str {
        match self {
            OpRef::Shell(_) => "shell",
            OpRef::Http(_) => "http",
            OpRef::Prometheus(_) => "prometheus",
            OpRef::Kube(_) => "kube",
            OpRef::Manual(_) => "manual",
        }
    }
}

/// Whether an action stops for approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// Stop and ask (the default for actions).
    Approve,
    /// Run without asking.
    Auto,
    /// Ask, and accept only an approval that names this step: `--approve ID`, or the
    /// step id typed at the prompt. `--yes`, `runbook demo` and `runbook test` do not
    /// approve it. For actions whose harm cannot be undone (data that would be lost).
    Explicit,
}

/// `gate: { approvals: 2, explicit: true, expires: 15m }`: a quorum of distinct people
/// approving the same plan digest, each approval counting for `expires`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateRule {
    /// How many distinct people must approve the same plan (default 1). `--yes`
    /// counts as one person; the same person twice counts once.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 10))]
    pub approvals: u32,
    /// Only approvals that name the step count (`runbook approve RUN ID`,
    /// `--approve ID`, the id typed at the prompt); `--yes` does not.
    #[serde(default)]
    pub explicit: bool,
    /// An approval older than this no longer counts (it is asked again). Measured
    /// on the run's clock (virtual under `runbook test`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Duration>,
    /// How long the gate waits for an answer (from when it was first asked, on the
    /// run's clock); then it is journaled as expired and `on_timeout` decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// What an expired gate does (default `abort`; needs `timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<OnTimeout>,
}

/// What a gate nobody answered in time does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// End the run as aborted (exit 4).
    Abort,
    /// Do not run the action and go on (as `skip` at the prompt).
    Skip,
    /// In an escalation rung: go on to the next rung. Elsewhere: pause the run
    /// (exit 3) for someone else to pick it up.
    Escalate,
}

fn one() -> u32 {
    1
}

impl Default for GateRule {
    fn default() -> GateRule {
        GateRule {
            approvals: 1,
            explicit: false,
            expires: None,
            timeout: None,
            on_timeout: None,
        }
    }
}

/// `limit: { max_targets: N, max_failures: N | "P%" }`: the most objects one
/// action's plan may act on, and how many failed items stop its fan-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// The most objects the plan may touch: each object a fan-out operation's
    /// impact lists (a delete by selector), else one per operation (`for_each`
    /// expanded).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_targets: Option<u32>,
    /// Stop starting the items of a `for_each` once this many have failed: a count
    /// (`3`) or a share of the items (`"10%"`, at least one). The items already
    /// running finish; the rest are not started and the step fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_failures: Option<MaxFailures>,
    /// The largest share of what a fan-out operation's selector matches that its
    /// plan may act on (`"30%"`): a delete whose `where` keeps 9 of the 10 pods its
    /// selector matches is 90 %. Checked with `max_targets`, before anyone is asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_fraction: Option<Fraction>,
}

/// `max_fraction: "30%"`: a share from 1 % to 100 %.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(with = "FractionSchema")]
pub struct Fraction(pub u32);

#[allow(dead_code)]
#[derive(JsonSchema)]
struct FractionSchema(#[schemars(regex(pattern = r"^[0-9]{1,3}%$"))] String);

impl Fraction {
    /// True when acting on `acted` of `of` objects is more than this share.
    pub fn exceeded(self, acted: usize, of: usize) -> bool {
        acted * 100 > of * self.0 as usize
    }
}

impl std::fmt::Display for Fraction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}%", self.0)
    }
}

impl Serialize for Fraction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// `max_failures: 3` or `max_failures: "10%"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(with = "MaxFailuresSchema")]
pub enum MaxFailures {
    Count(u32),
    Percent(u32),
}

#[allow(dead_code)]
#[derive(JsonSchema)]
#[serde(untagged)]
enum MaxFailuresSchema {
    Count(#[schemars(range(min = 1))] u32),
    Percent(#[schemars(regex(pattern = r"^[0-9]{1,3}%$"))] String),
}

impl MaxFailures {
    /// How many failed items of `total` stop the fan-out.
    pub fn threshold(self, total: usize) -> usize {
        match self {
            MaxFailures::Count(n) => n as usize,
            MaxFailures::Percent(p) => (total * p as usize).div_ceil(100).max(1),
        }
    }
}

impl std::fmt::Display for MaxFailures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxFailures::Count(n) => write!(f, "{n}"),
            MaxFailures::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for MaxFailures {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MaxFailures::Count(n) => s.serialize_u32(*n),
            MaxFailures::Percent(_) => s.serialize_str(&self.to_string()),
        }
    }
}

/// What a plan over its `limit` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OverLimit {
    /// The step fails before anyone is asked.
    Refuse,
    /// Only an approval that names the step opens it.
    Explicit,
}

/// The two spellings of `gate:` (for the schema only; the converter reads them).
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum GateForm {
    Mode(Gate),
    Rule(GateRule),
}

/// What happens when a step fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum OnFailure {
    /// `stop` or `continue`.
    Policy(FailurePolicy),
    /// Ids of handlers (or earlier steps) to run, then stop.
    Run(Vec<Sp<String>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    Stop,
    Continue,
}

/// Retries of a failed attempt, with exponential backoff.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Total attempts, including the first (at least 1).
    pub attempts: Sp<u32>,
    /// Wait before the second attempt; doubles each time (default 1s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Sp<Duration>>,
    /// Upper bound on one wait (default 1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff: Option<Sp<Duration>>,
}

/// Run a program. The argv list is passed as is: templated values become separate
/// arguments and are never interpreted by a shell unless the runbook writes `sh -c`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellOp {
    /// Program and arguments; each a template.
    pub argv: Vec<Sp<String>>,
    /// Extra environment variables; values are templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, Sp<String>>,
    /// Working directory (default: the runbook's folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<Sp<String>>,
    /// Text written to the program's standard input; a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<Sp<String>>,
}

/// An HTTP request. The result has `status`, `headers`, `body` and `json` (when the
/// body is JSON).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpOp {
    /// GET (default), HEAD, POST, PUT, PATCH or DELETE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Sp<String>>,
    /// A template.
    pub url: Sp<String>,
    /// Header values are templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Sp<String>>,
    /// A request body; a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Sp<String>>,
    /// A JSON request body; every string inside is a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Sp<serde_json::Value>>,
    /// Accepted status codes (default: any 2xx).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status: Vec<Sp<u16>>,
}

/// An instant query against Prometheus' HTTP API (`/api/v1/query`). The result has
/// `samples` (a list of `{metric, value}`) and `value` (the single sample's value,
/// or null when there is not exactly one).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusOp {
    /// Base URL of the server, e.g. `http://prometheus:9090`; a template.
    pub server: Sp<String>,
    /// PromQL; a template.
    pub query: Sp<String>,
    /// This query detects the incident: look back this long (`6h`) for when it
    /// started to hold. After the instant query, Prometheus' `query_range` over the
    /// look-back is asked; the result gains `since` (the first point of the last
    /// unbroken run of points up to now, or null) and `range` (the points), and the
    /// postmortem takes `since` as the impact start when nothing else gave one. Write
    /// the query as a condition (`launch_success_rate < 0.5`): PromQL keeps a point
    /// only where a comparison holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detects: Option<Sp<Duration>>,
}

/// A Kubernetes operation. Exactly one verb key is present; it carries the resource
/// kind (`get`, `delete`, `patch`, `wait`, `scale`, `rollout_restart`) or the object's
/// name (`cordon`, `uncordon`, `drain`, `taint`, `untaint` take a node; `evict` a pod).
/// The other keys qualify the verb; `validate.rs` rejects keys a verb does not use.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubeOp {
    /// Position of the `kube` mapping (not part of the YAML).
    #[serde(skip)]
    #[schemars(skip)]
    pub pos: Pos,
    /// The verb and its value (a kind or an object's name). The converter guarantees
    /// exactly one per operation; the schema lists the verbs from
    /// [`super::verbs::VERBS`], so each is described there, not here.
    #[serde(flatten, serialize_with = "verb_entry")]
    #[schemars(skip)]
    pub verb: Option<(KubeVerb, Sp<String>)>,

    /// Object name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Sp<String>>,
    /// Namespace (default: the runbook's or the command line's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Sp<String>>,
    /// Every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_namespaces: Option<Sp<bool>>,
    /// Label selector, e.g. `component=hub,tier!=canary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Sp<String>>,
    /// Field selector, e.g. `spec.nodeName=node-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Sp<String>>,
    /// A condition per object; the object is bound to `object` and to the singular
    /// kind name (`pod`, `node`, …). Only matching objects are kept.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub where_: Option<Sp<String>>,

    /// delete, drain, evict: seconds to wait for graceful termination (0 = immediately).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<Sp<u32>>,
    /// delete: with `grace_period: 0`, remove without waiting for the kubelet
    /// (`kubectl delete --grace-period=0 --force`); drain: also pods without a controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<Sp<bool>>,
    /// drain: skip DaemonSet-managed pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_daemonsets: Option<Sp<bool>>,
    /// drain: also evict pods with emptyDir volumes (their data is lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_emptydir_data: Option<Sp<bool>>,
    /// drain: delete instead of evicting (bypasses PodDisruptionBudgets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_eviction: Option<Sp<bool>>,
    /// drain: only pods matching this label selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<Sp<String>>,

    /// patch: `strategic` (default), `merge` or `json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<Sp<String>>,
    /// patch: the patch document; every string inside is a template.
    #[serde(default, rename = "body", skip_serializing_if = "Option::is_none")]
    pub body: Option<Sp<serde_json::Value>>,

    /// taint, untaint: the taint key, e.g. `node.kubernetes.io/out-of-service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Sp<String>>,
    /// taint: the taint value, e.g. `nodeshutdown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Sp<String>>,
    /// taint, untaint: `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<Sp<String>>,

    /// wait: `delete`, `condition=Ready` (any status condition type), or a condition
    /// over the object like `where`.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<Sp<String>>,
    /// scale: the desired replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Sp<u32>>,

    /// rollout_undo: the revision to go back to (default: the previous one), as
    /// `kubectl rollout history` numbers them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_revision: Option<Sp<u32>>,

    /// logs: the container (needed when the pod has several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Sp<String>>,
    /// logs: only the last N lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<Sp<u32>>,
    /// logs: only lines newer than this, e.g. `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Sp<Duration>>,
    /// logs: the previous (crashed) container's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Sp<bool>>,

    /// label, annotate: keys to set, with their values (templates).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, Sp<String>>,
    /// label, annotate: keys to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<Sp<String>>,
    /// label, annotate: allow changing a key that already has another value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overwrite: Option<Sp<bool>>,

    /// set_image: container name → image; `*` means every container.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, Sp<String>>,

    /// apply: ask the server what would change (`dryRun=All`) and change nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<Sp<bool>>,
}

/// Serialises the verb as the key the runbook wrote (`cordon: NODE`).
fn verb_entry<S: Serializer>(
    verb: &Option<(KubeVerb, Sp<String>)>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(None)?;
    if let Some((verb, value)) = verb {
        map.serialize_entry(verb.name(), value)?;
    }
    map.end()
}

impl Param {
    /// The declared `type`, else the type of the default (a list default makes a list
    /// param); None when the param takes any value (no type, no default, or a
    /// mapping default).
    pub fn effective_type(&self) -> Option<ParamType> {
        use serde_json::Value as V;
        if let Some(t) = &self.ty {
            return Some(t.value);
        }
        Some(match &self.default.as_ref()?.value {
            V::Bool(_) => ParamType::Boolean,
            V::Number(n) if n.is_i64() || n.is_u64() => ParamType::Integer,
            V::Number(_) => ParamType::Number,
            V::String(_) => ParamType::String,
            V::Array(_) => ParamType::List,
            V::Null | V::Object(_) => return None,
        })
    }

    /// The value of a parameter given as text (`-p name=value`, the environment),
    /// converted to the param's type. The error reads after the param's name:
    /// "`threshold` takes an integer; got `abc`".
    pub fn value_from_text(&self, raw: &str) -> Result<serde_json::Value, String> {
        use serde_json::Value as V;
        let Some(ty) = self.effective_type() else {
            // A mapping default: the value is JSON of the same shape.
            if let Some(d) = self.default.as_ref().filter(|d| d.value.is_object()) {
                return match serde_json::from_str::<V>(raw) {
                    Ok(v @ V::Object(_)) => Ok(v),
                    _ => Err(format!(
                        "takes a mapping written as JSON, like its default `{}`; got `{raw}`",
                        d.value
                    )),
                };
            }
            return Ok(V::String(raw.to_owned()));
        };
        let got = || format!("takes {}; got `{raw}`", ty.article());
        let text = raw.trim();
        match ty {
            ParamType::String => Ok(V::String(raw.to_owned())),
            ParamType::Integer => text.parse::<i64>().map(V::from).map_err(|_| got()),
            // Always a double, `80` too: in CEL `int * double` and `int + double`
            // have no overload, so `params.ratio * 2.0` would fail at run time for
            // `-p ratio=80` and work for `-p ratio=0.8`.
            ParamType::Number => text
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .and_then(serde_json::Number::from_f64)
                .map(V::Number)
                .ok_or_else(got),
            ParamType::Boolean => match text {
                "true" => Ok(V::Bool(true)),
                "false" => Ok(V::Bool(false)),
                _ => Err(got()),
            },
            ParamType::List if text.starts_with('[') => match serde_json::from_str::<V>(text) {
                Ok(v @ V::Array(_)) => Ok(v),
                _ => Err(format!(
                    "takes a list; got `{raw}`, which is not a JSON list (or write it as `a,b`)"
                )),
            },
            // `{...}` is a mapping written as JSON, not one list item.
            ParamType::List if text.starts_with('{') => {
                Err(format!("takes a list; got a mapping `{raw}`"))
            }
            ParamType::List if text.is_empty() => Ok(V::Array(Vec::new())),
            ParamType::List => Ok(V::Array(
                text.split(',')
                    .map(|s| V::String(s.trim().to_owned()))
                    .collect(),
            )),
            // Days are ours, not CEL's or Go's: `2d` is handed on as `48h`, so
            // `duration(params.window)` in a condition and `--since={{params.window}}`
            // for kubectl take every value the param accepts.
            ParamType::Duration => match Duration::parse(text) {
                Ok(d) if text.contains('d') => Ok(V::String(d.to_string())),
                Ok(_) => Ok(V::String(text.to_owned())),
                Err(e) => Err(format!("{}: {e}", got())),
            },
        }
    }

    /// A value that already has a YAML/JSON type (from `-p @FILE` or the default),
    /// checked against the param's type: text is read as with [`value_from_text`]
    /// (`threshold: "80"` is 80), other values must have the type. The error reads
    /// after the param's name, like [`value_from_text`]'s.
    ///
    /// [`value_from_text`]: Param::value_from_text
    pub fn check_value(&self, value: &serde_json::Value) -> Result<serde_json::Value, String> {
        use serde_json::Value as V;
        let kind = |v: &V| match v {
            V::Null => "null",
            V::Bool(_) => "a boolean",
            V::Number(_) => "a number",
            V::String(_) => "a string",
            V::Array(_) => "a list",
            V::Object(_) => "a mapping",
        };
        let Some(ty) = self.effective_type() else {
            return match self.default.as_ref().map(|d| &d.value) {
                Some(d) if d.is_object() && !value.is_object() => Err(format!(
                    "takes a mapping like its default `{d}`, not {}",
                    kind(value)
                )),
                _ => Ok(value.clone()),
            };
        };
        let mismatch = || format!("takes {}; got {} `{value}`", ty.article(), kind(value));
        match (ty, value) {
            (ParamType::String, V::String(_)) => Ok(value.clone()),
            (ParamType::String, V::Number(_) | V::Bool(_)) => Ok(V::String(value.to_string())),
            (_, V::String(s)) if ty != ParamType::List => self.value_from_text(s),
            (ParamType::Integer, V::Number(n)) if n.is_i64() || n.is_u64() => Ok(value.clone()),
            (ParamType::Number, V::Number(n)) => n
                .as_f64()
                .and_then(serde_json::Number::from_f64)
                .map(V::Number)
                .ok_or_else(mismatch),
            (ParamType::Boolean, V::Bool(_)) | (ParamType::List, V::Array(_)) => Ok(value.clone()),
            _ => Err(mismatch()),
        }
    }
}

impl KubeOp {
    /// The verb and its value (kind or object name).
    pub fn verb(&self) -> Option<(KubeVerb, &Sp<String>)> {
        self.verb.as_ref().map(|(v, value)| (*v, value))
    }

    /// True for verbs that change the cluster.
    pub fn is_mutating(&self) -> bool {
        // A server-side dry run of `apply` changes nothing: it may be a check.
        if self.dry_run.as_ref().is_some_and(|d| d.value) {
            return false;
        }
        self.verb().is_some_and(|(v, _)| v.mutates())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_compound_units() {
        let d = |s: &str| Duration::parse(s).map(|d| d.0.as_millis());
        assert_eq!(d("30s"), Ok(30_000));
        assert_eq!(d("5m"), Ok(300_000));
        assert_eq!(d("1h30m"), Ok(5_400_000));
        assert_eq!(d("250ms"), Ok(250));
        assert!(d("5").unwrap_err().contains("needs a unit"));
        assert!(d("5x").unwrap_err().contains("unknown unit `x`"));
        assert!(d("m5").unwrap_err().contains("expected a number"));
        assert!(d("").is_err());
    }

    #[test]
    fn a_param_value_must_have_its_defaults_shape() {
        let param = |d: serde_json::Value| Param {
            pos: Pos::UNKNOWN,
            description: None,
            ty: None,
            default: Some(Sp::new(Pos::UNKNOWN, d)),
            required: false,
            secret: false,
        };
        let list = param(serde_json::json!(["a"]));
        assert!(list.check_value(&serde_json::json!(["b", "c"])).is_ok());
        let e = list.check_value(&serde_json::json!({"a": 1})).unwrap_err();
        assert!(e.contains("a list") && e.contains("got a mapping"), "{e}");
        let text = param(serde_json::json!("x"));
        assert!(text.check_value(&serde_json::json!("y")).is_ok());
    }

    #[test]
    fn param_text_is_read_by_the_params_type() {
        use serde_json::json;
        let typed = |t: ParamType| Param {
            pos: Pos::UNKNOWN,
            description: None,
            ty: Some(Sp::new(Pos::UNKNOWN, t)),
            default: None,
            required: false,
            secret: false,
        };
        let int = typed(ParamType::Integer);
        assert_eq!(int.value_from_text("80"), Ok(json!(80)));
        assert_eq!(
            int.value_from_text("abc"),
            Err("takes an integer; got `abc`".to_owned())
        );
        assert_eq!(
            typed(ParamType::Number).value_from_text("0.5"),
            Ok(json!(0.5))
        );
        assert!(typed(ParamType::Number).value_from_text("NaN").is_err());
        assert_eq!(
            typed(ParamType::Boolean).value_from_text("true"),
            Ok(json!(true))
        );
        assert!(typed(ParamType::Boolean).value_from_text("yes").is_err());
        let list = typed(ParamType::List);
        assert_eq!(list.value_from_text("a, b"), Ok(json!(["a", "b"])));
        assert_eq!(list.value_from_text(r#"[1, "x"]"#), Ok(json!([1, "x"])));
        let e = list.value_from_text(r#"{"a": 1}"#).unwrap_err();
        assert!(e.contains("takes a list; got a mapping"), "{e}");
        assert!(list.value_from_text("[1,").is_err());
        let d = typed(ParamType::Duration);
        assert_eq!(d.value_from_text("1h30m"), Ok(json!("1h30m")));
        assert!(
            d.value_from_text("soon")
                .unwrap_err()
                .contains("a duration")
        );
        // A type inferred from the default: an integer default takes integers.
        let mut inferred = typed(ParamType::String);
        inferred.ty = None;
        inferred.default = Some(Sp::new(Pos::UNKNOWN, json!(80)));
        assert_eq!(
            inferred.value_from_text("abc"),
            Err("takes an integer; got `abc`".to_owned())
        );
        assert_eq!(inferred.check_value(&json!("90")), Ok(json!(90)));
        assert!(inferred.check_value(&json!([1])).is_err());
    }

    #[test]
    fn durations_display_round_trips() {
        for s in ["30s", "5m", "1h30m", "250ms", "1h0m1s"] {
            let d = Duration::parse(s).unwrap();
            assert_eq!(Duration::parse(&d.to_string()).unwrap(), d);
        }
        assert_eq!(Duration::parse("90s").unwrap().to_string(), "1m30s");
    }
}

#[cfg(test)]
mod size_tests {
    /// A runbook of 50 000 steps is held whole while it is linted (hostile_input's
    /// bound is 256 MiB): a rarely used, large field of a step is boxed, so it costs
    /// a pointer when absent. `preview` inline made a step 3 144 bytes.
    #[test]
    fn a_step_and_a_rung_stay_small() {
        assert!(
            std::mem::size_of::<super::Step>() <= 2048,
            "{}",
            std::mem::size_of::<super::Step>()
        );
        assert!(
            std::mem::size_of::<super::Rung>() <= 1536,
            "{}",
            std::mem::size_of::<super::Rung>()
        );
    }
}
