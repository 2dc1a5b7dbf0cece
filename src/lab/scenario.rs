//! Scenario files: an incident as the lab should play it. The initial objects (any
//! served kind, written as Kubernetes YAML), faults over time, and the metrics the
//! lab's Prometheus endpoint answers.
//!
//! ```yaml
//! # yaml-language-server: $schema=../schemas/scenario.schema.json
//! version: 1
//! name: hub-pvc-locked
//! objects: [ {apiVersion: v1, kind: Node, metadata: {name: n1}} ]
//! faults:
//!   - at: 0s
//!     node_lost: { node: n1 }
//! metrics:
//!   - name: launch_success_rate
//!     value: { pods_running: { namespace: prod, selector: component=hub } }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::clock::parse_ts;
use super::resources;
use super::scenario_model::{Offset, Selector};
use crate::runbook::yaml::{self, Spanned};

/// A scenario file (version 1).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "runbook lab scenario",
    description = "An incident for the runbook lab: initial Kubernetes objects, faults over time, and Prometheus metrics computed from the simulated state."
)]
pub struct Scenario {
    /// Format version; must be 1.
    pub version: u32,
    /// Short identifier, e.g. `hub-pvc-locked`.
    pub name: String,
    /// What the scenario reproduces.
    #[serde(default)]
    pub description: String,
    /// The moment (RFC 3339) the scenario's timestamps are written against; faults'
    /// `at` count from it. The lab re-bases every timestamp in `objects` so that this
    /// moment is "now" when the lab starts: ages stay as the incident had them.
    #[serde(default)]
    pub start: Option<String>,
    /// Initial objects, written as Kubernetes would return them (apiVersion, kind,
    /// metadata, spec, status). Controllers fill in what is missing (node conditions,
    /// pod status) on the first reconcile.
    #[serde(default)]
    #[schemars(with = "Vec<serde_json::Map<String, Value>>")]
    pub objects: Vec<Spanned<Value>>,
    /// What goes wrong, and when.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// Metrics served at `/api/v1/query`.
    #[serde(default)]
    pub metrics: Vec<MetricDef>,
    /// Alerting rules the lab's Prometheus evaluates over the metrics' history at
    /// every scrape point (15 s), serving `ALERTS` and `ALERTS_FOR_STATE` as
    /// Prometheus does (docs/lab.md, "Alerting rules").
    #[serde(default)]
    pub alerts: Vec<super::alerting::AlertRule>,
    /// API faults active from the start: each answers its next `times` matching
    /// requests with an error Status (forbidden, not found, conflict, throttled,
    /// server errors) and changes nothing.
    #[serde(default)]
    pub api_faults: Vec<super::faults::ApiFault>,
    /// Node pools the cluster autoscaler grows and shrinks (docs/lab.md, "Capacity
    /// and autoscaling").
    #[serde(default)]
    pub node_pools: Vec<super::scenario_model::NodePool>,
    /// The cluster autoscaler's timing (defaults: the real autoscaler's). It runs
    /// when `node_pools` is not empty.
    #[serde(default)]
    pub autoscaler: super::scenario_model::Autoscaler,
    /// What containers log (`kubectl logs`, with `--previous`, `--tail`, `--since`).
    #[serde(default)]
    pub logs: Vec<super::scenario_model::LogSpec>,
    /// Faults on pods with a scope (pod, selector, node) and a window (`at`, `until`):
    /// crash loops with the kubelet's back-off, OOM kills, failing readiness.
    #[serde(default)]
    pub pod_faults: Vec<super::scenario_model::PodFault>,
    /// Cluster timing: how long new containers take to become Ready.
    #[serde(default)]
    pub timing: super::scenario_model::Timing,
    /// Faults on nodes with a scope (node, selector) and a window (`at`, `until`):
    /// node conditions (DiskPressure, MemoryPressure, PIDPressure, NetworkUnavailable)
    /// with their taints and events, a node losing its InternalIP.
    #[serde(default)]
    pub node_faults: Vec<super::scenario_model::NodeFault>,
    /// HTTP sites in front of Services, answered on the lab's own address
    /// (`/sites/<name>`, or the site's `host` in a Host header).
    #[serde(default)]
    pub sites: Vec<super::sites::Site>,
    /// Objects a controller recreates some time after they are deleted (a cloud
    /// provider's managed quota, an operator's managed config).
    #[serde(default)]
    pub managed: Vec<super::scenario_model::Managed>,
    /// RBAC for token-authenticated clients: bearer tokens and the Roles and bindings
    /// that restrict them (docs/lab.md, "RBAC"). Without it every client is admin.
    #[serde(default)]
    pub rbac: Option<super::rbac::Rbac>,
}

/// One fault. Exactly one of `node_lost`, `disk_fills`, `crash_loop` is set.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// When, after the scenario start: `0s`, `90s`, `5m`, `1h30m` (negative: before it).
    pub at: Offset,
    /// The node's kubelet stops posting status: conditions go Unknown, unreachable
    /// taints are added, its pods become Unknown/NodeLost, and graceful deletions of
    /// its pods never finish.
    #[serde(default)]
    pub node_lost: Option<NodeRef>,
    /// The node's disk fills: DiskPressure=True and the disk-pressure NoSchedule taint.
    #[serde(default)]
    pub disk_fills: Option<NodeRef>,
    /// Matching pods crash-loop: container waiting in CrashLoopBackOff, not Ready.
    #[serde(default)]
    pub crash_loop: Option<PodsRef>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeRef {
    pub node: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PodsRef {
    pub namespace: String,
    /// A label selector, e.g. `component=hub`.
    pub selector: Selector,
}

/// A metric: a name, constant labels, and how its value follows from the state.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricDef {
    pub name: String,
    #[serde(default)]
    pub help: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub value: MetricValue,
    /// What the metric was before the scenario's start, for the lab's Prometheus
    /// history (`query_range`, `rate(x[5m])`, a `detects:` look-back): steps in
    /// time order, each holding from its `at` (before the start, e.g. `-6h`) to the
    /// next one or to the start. Without it the metric has no samples before the start.
    #[serde(default)]
    pub history: Vec<HistoryPoint>,
}

/// One step of a metric's past: from `at` (relative to the start, not after it) on,
/// the metric was `value`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryPoint {
    pub at: super::scenario_model::Offset,
    pub value: f64,
}

/// How a metric's value is computed, on every query, from the simulated cluster.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MetricValue {
    /// 1 when at least `min` matching pods are Running and Ready and not being
    /// deleted (optionally only on schedulable nodes), else 0.
    PodsRunning(PodsRunning),
    /// The number of matching pods that are Running and Ready and not being deleted.
    CountRunning(PodsRunning),
    /// 1 once matching data was lost, else 0: a matching pod holding its data on an
    /// emptyDir (named by the `lab.runbook.dev/data-volume` annotation) was deleted,
    /// or a PersistentVolumeClaim with matching labels was deleted.
    DataLost(PodsRef),
    /// A fixed value.
    Constant(f64),
    /// The number of pods matching every filter given (namespace, selector, phase,
    /// readiness): `{ phase: Pending }` counts pending pods.
    Pods(PodCount),
    /// The number of nodes matching every filter given (pool, selector, readiness):
    /// `{ pool: user-pool }` is the autoscaler's node count of a pool.
    Nodes(NodeCount),
    /// A ResourceQuota's `status.used` of one resource, in base units (cores, bytes,
    /// objects).
    QuotaUsed(QuotaRef),
    /// A ResourceQuota's `status.hard` of one resource, in base units.
    QuotaHard(QuotaRef),
    /// The share (0–1) of a site's answers in the last `window` that were 200; when
    /// nobody asked in that window, 1 if it would answer 200 now, else 0.
    SiteSuccessRate(SiteRate),
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PodCount {
    /// Only this namespace (default: all).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Only pods matching this label selector.
    #[serde(default)]
    pub selector: Option<Selector>,
    /// Only pods in this phase: `Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`.
    #[serde(default)]
    pub phase: Option<String>,
    /// Only Ready pods (`true`) or pods that are not Ready (`false`).
    #[serde(default)]
    pub ready: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeCount {
    /// Only nodes of this node pool (`lab.runbook.dev/node-pool` label).
    #[serde(default)]
    pub pool: Option<String>,
    /// Only nodes matching this label selector.
    #[serde(default)]
    pub selector: Option<Selector>,
    /// Only Ready nodes (`true`) or nodes that are not Ready (`false`).
    #[serde(default)]
    pub ready: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaRef {
    pub namespace: String,
    /// The ResourceQuota's name.
    pub name: String,
    /// A key of its `hard`, e.g. `pods`, `requests.memory`.
    pub resource: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteRate {
    /// The site's name (`sites[].name`).
    pub site: String,
    /// How far back answers count (default `5m` of cluster time).
    #[serde(default)]
    pub window: Option<super::scenario_model::Span>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PodsRunning {
    pub namespace: String,
    /// A label selector, e.g. `component=hub`.
    pub selector: Selector,
    /// How many pods must run for the value to be 1 (default 1).
    #[serde(default = "one")]
    pub min: u32,
    /// Count only pods on nodes that are not cordoned (a cloud load balancer drops
    /// cordoned nodes from its pool: the 2019-04-03 outage).
    #[serde(default)]
    pub on_schedulable_node: bool,
}

fn one() -> u32 {
    1
}

/// A scenario that could not be loaded: where, what, and what to do about it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}{}", location(path, *line, *column), hint.as_ref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
pub struct ScenarioError {
    pub path: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
    pub hint: Option<String>,
}

/// `path:line:column`, or only the path when there is no line (the file could not be
/// read): a made-up `:0:0` would send an editor to nowhere.
fn location(path: &str, line: u64, column: u64) -> String {
    if line == 0 {
        path.to_string()
    } else {
        format!("{path}:{line}:{column}")
    }
}

/// A checked scenario: objects with their kind resolved, faults with their offsets.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub scenario: Scenario,
    pub start: Option<chrono::DateTime<chrono::Utc>>,
    /// (store key, namespace, object)
    pub objects: Vec<(&'static resources::ResourceDef, String, Value)>,
    pub fault_offsets: Vec<chrono::Duration>,
}

/// Parse and check a scenario. `origin` names the source in errors (a path, or
/// `<seed scenario>`).
pub fn parse(text: &str, origin: &str) -> Result<Loaded, ScenarioError> {
    // The one reader policy (duplicate keys, alias budget, strict booleans, tags).
    let mut scenario: Scenario = yaml::from_str(text).map_err(|e| ScenarioError {
        path: origin.to_string(),
        line: e.line,
        column: e.column,
        hint: Some(e.help().map_or_else(
            || {
                "compare with schemas/scenario.schema.json (`runbook lab --help` lists the fields)"
                    .to_owned()
            },
            str::to_owned,
        )),
        message: e.message,
    })?;
    let err = |line: u64, column: u64, message: String, hint: &str| ScenarioError {
        path: origin.to_string(),
        line,
        column,
        message,
        hint: Some(hint.to_string()),
    };
    if scenario.version != 1 {
        return Err(err(
            1,
            1,
            format!("unsupported scenario version {}", scenario.version),
            "write `version: 1`",
        ));
    }
    let start = match &scenario.start {
        None => None,
        Some(s) => Some(parse_ts(s).ok_or_else(|| {
            err(
                1,
                1,
                format!("invalid start time {s:?}"),
                "use RFC 3339, e.g. 2018-03-13T06:28:00Z",
            )
        })?),
    };
    let mut objects = Vec::new();
    let mut seen = std::collections::HashMap::new();
    // The objects move into `Loaded` (a 10 000-pod scenario must not be held twice).
    for o in std::mem::take(&mut scenario.objects) {
        let (line, col) = (o.referenced.line(), o.referenced.column());
        let v = &o.value;
        let api = v
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = v.get("kind").and_then(Value::as_str).unwrap_or_default();
        let Some(def) = resources::by_kind(api, kind) else {
            return Err(err(
                line,
                col,
                format!("unknown object kind {api}/{kind}"),
                &format!("the lab serves: {}", resources::known_kinds()),
            ));
        };
        if let Err(why) = super::state::check_shape(v) {
            return Err(err(
                line,
                col,
                format!("{kind}: {why}"),
                "write the field as Kubernetes does (see `kubectl explain`)",
            ));
        }
        let name = v
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if name.is_empty() {
            return Err(err(
                line,
                col,
                format!("{kind} without metadata.name"),
                "give every object a name",
            ));
        }
        let ns = if def.namespaced {
            v.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_string()
        } else {
            String::new()
        };
        if let Err(e) = super::store::check_names(def, &ns, name) {
            return Err(err(
                line,
                col,
                e.message,
                "object names are lowercase DNS names, e.g. `hub-0` or `node-1.example.com`",
            ));
        }
        let key = (def.key(), ns.clone(), name.to_string());
        if let Some((l, c)) = seen.insert(key, (line, col)) {
            return Err(err(
                line,
                col,
                format!("{kind} {name:?} is defined twice (first at line {l}, column {c})"),
                "remove one of them or give it another name",
            ));
        }
        objects.push((def, ns, o.value));
    }
    let mut fault_offsets = Vec::new();
    for (i, f) in scenario.faults.iter().enumerate() {
        // Checked while reading (with its line and column), as the selectors are.
        let at = f.at.0;
        let set = [
            f.node_lost.is_some(),
            f.disk_fills.is_some(),
            f.crash_loop.is_some(),
        ];
        if set.iter().filter(|x| **x).count() != 1 {
            return Err(err(
                0,
                0,
                format!("faults[{i}] must set exactly one of node_lost, disk_fills, crash_loop"),
                "split it into one fault per entry",
            ));
        }
        fault_offsets.push(at);
    }
    for (i, f) in scenario.api_faults.iter().enumerate() {
        f.check().map_err(|m| {
            err(
                0,
                0,
                format!("api_faults[{i}]: {m}"),
                "e.g. `{ path_contains: /pods/hub-, status: 403, times: 1 }`",
            )
        })?;
    }
    // Metric selectors are checked while reading, with their line and column.
    for m in &scenario.metrics {
        let mut prev: Option<chrono::Duration> = None;
        for p in &m.history {
            if p.at.0 > chrono::Duration::zero() || prev.is_some_and(|q| p.at.0 <= q) {
                return Err(err(
                    0,
                    0,
                    format!(
                        "metric {}: history step at {:?} is {}",
                        m.name,
                        p.at.0.to_string(),
                        if p.at.0 > chrono::Duration::zero() {
                            "after the start"
                        } else {
                            "not after the step before it"
                        }
                    ),
                    "list the steps in time order, each before the start: `history: [ { at: -6h, value: 1 }, { at: -5h, value: 0 } ]`",
                ));
            }
            prev = Some(p.at.0);
        }
        if let MetricValue::SiteSuccessRate(r) = &m.value
            && !scenario.sites.iter().any(|s| s.name == r.site)
        {
            return Err(err(
                0,
                0,
                format!("metric {}: no site named {:?}", m.name, r.site),
                "name one of the scenario's `sites`",
            ));
        }
    }
    for a in &scenario.alerts {
        a.check().map_err(|m| {
            err(
                0,
                0,
                m,
                "e.g. `alerts: [ { name: HubLaunchesFailing, expr: launch_success_rate < 0.5, for: 5m, labels: { severity: page } } ]`",
            )
        })?;
    }
    for m in &scenario.managed {
        let declared = objects.iter().any(|(def, ns, o)| {
            def.kind == m.kind
                && o.pointer("/metadata/name").and_then(Value::as_str) == Some(&m.name)
                && (ns == &m.namespace || (m.namespace.is_empty() && ns == "default"))
        });
        if !declared {
            return Err(err(
                0,
                0,
                format!(
                    "managed: no {} {:?} in namespace {:?} among the scenario's objects",
                    m.kind, m.name, m.namespace
                ),
                "declare the object under `objects` and name it here by kind, namespace and name",
            ));
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for site in &scenario.sites {
        if let Err(e) = super::names::dns_label(&site.name) {
            return Err(err(
                0,
                0,
                format!("site {:?}: {e}", site.name),
                "a site's name is a lowercase DNS label, e.g. `hub`",
            ));
        }
        if !names.insert(site.name.clone()) {
            return Err(err(
                0,
                0,
                format!("site {:?} is defined twice", site.name),
                "give every site its own name",
            ));
        }
    }
    Ok(Loaded {
        scenario,
        start,
        objects,
        fault_offsets,
    })
}

/// Read and parse a scenario file.
pub fn load_file(path: &Path) -> Result<Loaded, ScenarioError> {
    let text =
        yaml::read_input_text(path, "a scenario (YAML file)").map_err(|e| ScenarioError {
            path: path.display().to_string(),
            line: 0,
            column: 0,
            message: format!("cannot read the scenario: {e}"),
            hint: Some("check the path; scenarios live in runbooks/*.scenario.yaml".into()),
        })?;
    parse(&text, &path.display().to_string())
}

/// The JSON schema of scenario files, as checked in at `schemas/scenario.schema.json`.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(Scenario);
    let mut s = serde_json::to_string_pretty(&schema).expect("invariant: a schema serialises");
    s.push('\n');
    s
}

/// Where the checked-in schema lives, relative to the repository root.
pub fn schema_path() -> PathBuf {
    PathBuf::from("schemas/scenario.schema.json")
}
