//! Scenario model types added for issue 16 (node pools and the cluster autoscaler,
//! container logs, timing). Each validates itself while it is read, so a mistake is
//! reported with the file, line and column of the value, like every other key.

use std::collections::BTreeMap;

use chrono::Duration;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::clock::parse_duration;
use super::quantity;
use super::select::LabelSelector;

/// A duration written as `10s`, `5m`, `1h30m`; refused while reading when it is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(try_from = "String")]
#[schemars(with = "String")]
pub struct Span(pub Duration);

impl TryFrom<String> for Span {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match parse_duration(&s) {
            Ok(d) if d >= Duration::zero() => Ok(Span(d)),
            Ok(_) => Err(format!("{s:?}: a duration here cannot be negative")),
            Err(e) => Err(format!(
                "{e}; expected a duration such as `30s`, `10m` or `1h30m`"
            )),
        }
    }
}

/// A time relative to the scenario start, written as `90s`, `5m` or `-6h` (before
/// the start: a fault already under way); refused while reading when it is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(try_from = "String")]
#[schemars(with = "String")]
pub struct Offset(pub Duration);

impl TryFrom<String> for Offset {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        parse_duration(&s).map(Offset).map_err(|e| {
            format!("{e}; expected a time after the start such as `0s`, `90s`, `5m` or `-6h`")
        })
    }
}

/// A label selector written as kubectl takes it (`app=web,tier!=db`), checked on read.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(try_from = "String")]
#[schemars(with = "String")]
pub struct Selector(pub String, #[schemars(skip)] pub LabelSelector);

impl TryFrom<String> for Selector {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let sel = LabelSelector::parse(&s).map_err(|e| {
            format!(
                "selector {s:?}: {e}; expected a label selector as kubectl takes it, e.g. `component=hub`, `tier in (web,api)` or `app=web,tier!=db`"
            )
        })?;
        Ok(Selector(s, sel))
    }
}

/// A group of identical machines the cluster autoscaler grows and shrinks between
/// `min` and `max` (a GKE node pool, an EKS node group, an ASG).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodePool {
    /// Pool name; its nodes are called `<name>-<5 letters>` and carry the label
    /// `lab.runbook.dev/node-pool: <name>`.
    pub name: String,
    /// The autoscaler never shrinks the pool below this many nodes.
    #[serde(default)]
    pub min: u32,
    /// The autoscaler never grows the pool beyond this many nodes.
    pub max: u32,
    /// Nodes the pool has when the scenario starts (default `min`), created Ready.
    #[serde(default)]
    pub nodes: Option<u32>,
    /// What one node offers the scheduler (its allocatable).
    pub machine: Machine,
    /// Extra labels on the pool's nodes (e.g. `cloud.google.com/gke-nodepool`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Taints on the pool's nodes, written as in a Node's `spec.taints`.
    #[serde(default)]
    #[schemars(with = "Vec<serde_json::Map<String, Value>>")]
    pub taints: Vec<Value>,
}

/// A machine shape: `{ cpu: "4", memory: 16Gi, pods: 110 }`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, try_from = "MachineRaw")]
#[schemars(with = "MachineRaw")]
pub struct Machine {
    /// The allocatable resource list, as a Node's `status.allocatable` shows it.
    pub allocatable: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MachineRaw {
    /// CPUs, e.g. `"4"` or `3920m`.
    pub cpu: Value,
    /// Memory, e.g. `16Gi`.
    pub memory: Value,
    /// Most pods a node runs (default 110, the kubelet's default).
    #[serde(default)]
    pub pods: Option<u32>,
    /// Ephemeral storage (default `100Gi`).
    #[serde(default, rename = "ephemeral-storage")]
    pub ephemeral_storage: Option<Value>,
}

impl TryFrom<MachineRaw> for Machine {
    type Error = String;
    fn try_from(m: MachineRaw) -> Result<Self, String> {
        let mut a = serde_json::Map::new();
        let storage = m.ephemeral_storage.unwrap_or(Value::from("100Gi"));
        for (k, v) in [
            ("cpu", m.cpu),
            ("memory", m.memory),
            ("ephemeral-storage", storage),
        ] {
            if quantity::parse_milli(&v).is_none() {
                return Err(format!(
                    "machine.{k}: {v} is not a quantity (e.g. `4`, `500m`, `16Gi`)"
                ));
            }
            let s = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            a.insert(k.to_string(), Value::from(s));
        }
        a.insert(
            "pods".into(),
            Value::from(m.pods.unwrap_or(110).to_string()),
        );
        Ok(Machine { allocatable: a })
    }
}

/// The cluster autoscaler's timing. Every field has the real autoscaler's default.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Autoscaler {
    /// How long a pod is unschedulable before the autoscaler acts on it: its scan
    /// interval (`--scan-interval`, default `10s`).
    #[serde(default = "scan_interval")]
    pub scan_interval: Span,
    /// From scale-up to the new node being Ready (cloud VM boot and kubelet
    /// registration; default `90s`).
    #[serde(default = "node_startup")]
    pub node_startup: Span,
    /// How long a node must be unneeded before it is removed
    /// (`--scale-down-unneeded-time`, default `10m`).
    #[serde(default = "ten_minutes")]
    pub scale_down_unneeded_time: Span,
    /// No scale-down this long after a scale-up (`--scale-down-delay-after-add`,
    /// default `10m`).
    #[serde(default = "ten_minutes")]
    pub scale_down_delay_after_add: Span,
    /// A node whose cpu and memory requests are both below this share of its
    /// allocatable is unneeded (`--scale-down-utilization-threshold`, default 0.5).
    #[serde(default = "half")]
    pub scale_down_utilization_threshold: f64,
}

impl Default for Autoscaler {
    fn default() -> Self {
        Autoscaler {
            scan_interval: scan_interval(),
            node_startup: node_startup(),
            scale_down_unneeded_time: ten_minutes(),
            scale_down_delay_after_add: ten_minutes(),
            scale_down_utilization_threshold: half(),
        }
    }
}

fn scan_interval() -> Span {
    Span(Duration::seconds(10))
}
fn node_startup() -> Span {
    Span(Duration::seconds(90))
}
fn ten_minutes() -> Span {
    Span(Duration::minutes(10))
}
fn half() -> f64 {
    0.5
}

/// What containers log: `kubectl logs` (and `GET pods/{name}/log`) return these lines
/// instead of the lab's placeholder.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(try_from = "LogSpecRaw")]
#[schemars(with = "LogSpecRaw")]
pub struct LogSpec {
    pub namespace: String,
    /// One pod by name, or every pod matching a selector.
    pub target: PodTarget,
    pub container: Option<String>,
    pub lines: Vec<String>,
    pub timed: Vec<TimedLine>,
    pub previous: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum PodTarget {
    Name(String),
    Selector(LabelSelector),
}

impl LogSpec {
    /// Does this entry describe `container` of `pod`?
    pub fn applies(&self, pod: &Value, container: &str) -> bool {
        let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str);
        let name = pod.pointer("/metadata/name").and_then(Value::as_str);
        ns == Some(self.namespace.as_str())
            && self.container.as_deref().is_none_or(|c| c == container)
            && match &self.target {
                PodTarget::Name(n) => name == Some(n.as_str()),
                PodTarget::Selector(s) => s.matches(pod),
            }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogSpecRaw {
    /// Namespace of the pods (default `default`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// One pod by name. Exactly one of `pod` and `selector`.
    #[serde(default)]
    pub pod: Option<String>,
    /// Every pod matching a label selector, e.g. `component=hub`.
    #[serde(default)]
    pub selector: Option<Selector>,
    /// Only this container (default: every container of the pod).
    #[serde(default)]
    pub container: Option<String>,
    /// Lines logged when the container started.
    #[serde(default)]
    pub lines: Vec<String>,
    /// Lines logged later: each appears once `at` (after the scenario start) has come.
    #[serde(default)]
    pub timed: Vec<TimedLine>,
    /// The last words of the previous (crashed) container: `kubectl logs --previous`.
    #[serde(default)]
    pub previous: Vec<String>,
}

/// A log line that appears at a moment of the scenario.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimedLine {
    /// After the scenario start: `90s`, `5m`.
    pub at: Span,
    pub text: String,
}

impl TryFrom<LogSpecRaw> for LogSpec {
    type Error = String;
    fn try_from(r: LogSpecRaw) -> Result<Self, String> {
        let target = match (r.pod, r.selector) {
            (Some(p), None) => PodTarget::Name(p),
            (None, Some(s)) => PodTarget::Selector(s.1),
            _ => return Err("a logs entry names exactly one of `pod` and `selector`".into()),
        };
        Ok(LogSpec {
            namespace: r.namespace.unwrap_or_else(|| "default".into()),
            target,
            container: r.container,
            lines: r.lines,
            timed: r.timed,
            previous: r.previous,
        })
    }
}

/// Cluster timing the scenario may set (defaults keep older scenarios as they were).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// How long a started container takes to pass its readiness probe: the pod is
    /// Running but not Ready until then (default `0s`: Ready at once).
    #[serde(default)]
    pub ready_after: Option<Span>,
}

/// A fault on pods, with a scope and a time window (docs/lab.md, "Pod faults").
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(try_from = "PodFaultRaw")]
#[schemars(with = "PodFaultRaw")]
pub struct PodFault {
    pub at: Duration,
    pub until: Option<Duration>,
    pub namespace: String,
    pub scope: PodScope,
    pub kind: PodFaultKind,
}

/// Which pods a fault hits.
#[derive(Debug, Clone)]
pub enum PodScope {
    Pod(String),
    Selector(LabelSelector),
    Node(String),
    /// Pods with a container whose image is this one (`repo/name:tag`), or starts
    /// with it when it ends in `*`.
    Image(String),
}

impl PodScope {
    pub fn matches(&self, pod: &Value) -> bool {
        let at = |p: &str| pod.pointer(p).and_then(Value::as_str).unwrap_or("");
        match self {
            PodScope::Pod(n) => at("/metadata/name") == n,
            PodScope::Selector(s) => s.matches(pod),
            PodScope::Node(n) => at("/spec/nodeName") == n,
            PodScope::Image(i) => pod
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|c| image_matches(i, c["image"].as_str().unwrap_or(""))),
        }
    }
}

/// Does `image` match the pattern `pat` (exact, or a prefix when `pat` ends in `*`)?
pub fn image_matches(pat: &str, image: &str) -> bool {
    match pat.strip_suffix('*') {
        Some(prefix) => image.starts_with(prefix),
        None => image == pat,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum PodFaultKind {
    /// The container exits at once each time it starts (`reason` `Error` or
    /// `OOMKilled`), restarted with the kubelet's back-off.
    CrashLoop { exit_code: i64, reason: String },
    /// Running, but the readiness probe fails.
    NotReady,
    /// The image cannot be pulled: the pod stays Pending, its container waiting in
    /// `ErrImagePull`, then `ImagePullBackOff` between attempts (the kubelet's back-off).
    ImagePull,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PodFaultRaw {
    /// When the fault starts, after the scenario start (default `0s`).
    #[serde(default)]
    pub at: Option<Span>,
    /// When it ends (after the scenario start); absent: never.
    #[serde(default)]
    pub until: Option<Span>,
    /// Namespace of the pods (default `default`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// One pod by name. Exactly one of `pod`, `selector`, `node`.
    #[serde(default)]
    pub pod: Option<String>,
    /// Pods matching a label selector.
    #[serde(default)]
    pub selector: Option<Selector>,
    /// Every pod of the namespace on this node.
    #[serde(default)]
    pub node: Option<String>,
    /// Pods with a container running this image (`jupyterhub/k8s-hub:0.9`), or any
    /// image starting with it when it ends in `*`.
    #[serde(default)]
    pub image: Option<String>,
    /// The container crashes (exit code, default 1) and restarts with back-off.
    #[serde(default)]
    pub crash_loop: Option<CrashLoopRaw>,
    /// The container is killed for exceeding its memory limit (exit 137) and
    /// restarts with back-off; the node records an `OOMKilling` event.
    #[serde(default)]
    pub oom_killed: Option<Empty>,
    /// The container runs but its readiness probe fails.
    #[serde(default)]
    pub not_ready: Option<Empty>,
    /// The image cannot be pulled (`ErrImagePull`, then `ImagePullBackOff`); pods
    /// that start while it lasts stay Pending.
    #[serde(default)]
    pub image_pull: Option<Empty>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CrashLoopRaw {
    /// The exit code of each crash (default 1).
    #[serde(default)]
    pub exit_code: Option<i64>,
}

/// `{}`: a fault without settings.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

impl TryFrom<PodFaultRaw> for PodFault {
    type Error = String;
    fn try_from(r: PodFaultRaw) -> Result<Self, String> {
        let scope = match (r.pod, r.selector, r.node, r.image) {
            (Some(p), None, None, None) => PodScope::Pod(p),
            (None, Some(s), None, None) => PodScope::Selector(s.1),
            (None, None, Some(n), None) => PodScope::Node(n),
            (None, None, None, Some(i)) => PodScope::Image(i),
            _ => {
                return Err(
                    "a pod fault names exactly one of `pod`, `selector`, `node`, `image`".into(),
                );
            }
        };
        let kind = match (r.crash_loop, r.oom_killed, r.not_ready, r.image_pull) {
            (Some(c), None, None, None) => PodFaultKind::CrashLoop {
                exit_code: c.exit_code.unwrap_or(1),
                reason: "Error".into(),
            },
            (None, Some(_), None, None) => PodFaultKind::CrashLoop {
                exit_code: 137,
                reason: "OOMKilled".into(),
            },
            (None, None, Some(_), None) => PodFaultKind::NotReady,
            (None, None, None, Some(_)) => PodFaultKind::ImagePull,
            _ => {
                return Err(
                    "a pod fault sets exactly one of `crash_loop`, `oom_killed`, `not_ready`, `image_pull`"
                        .into(),
                );
            }
        };
        let at = r.at.map_or(Duration::zero(), |s| s.0);
        if let Some(u) = r.until
            && u.0 <= at
        {
            return Err("`until` must come after `at`".into());
        }
        Ok(PodFault {
            at,
            until: r.until.map(|s| s.0),
            namespace: r.namespace.unwrap_or_else(|| "default".into()),
            scope,
            kind,
        })
    }
}

/// A fault on nodes, with a scope and a time window (docs/lab.md, "Node faults").
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(try_from = "NodeFaultRaw")]
#[schemars(with = "NodeFaultRaw")]
pub struct NodeFault {
    pub at: Duration,
    pub until: Option<Duration>,
    pub scope: NodeScope,
    pub kind: NodeFaultKind,
    /// A pressure condition: at most this many pods the kubelet evicts per node while
    /// the fault lasts (None: every pod it may evict).
    pub evict: Option<u32>,
}

/// Which nodes a node fault hits.
#[derive(Debug, Clone)]
pub enum NodeScope {
    Name(String),
    Selector(LabelSelector),
}

impl NodeScope {
    pub fn matches(&self, node: &Value) -> bool {
        match self {
            NodeScope::Name(n) => node.pointer("/metadata/name").and_then(Value::as_str) == Some(n),
            NodeScope::Selector(s) => s.matches(node),
        }
    }
}

/// A node condition the kubelet (or the route controller) reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum NodeConditionType {
    DiskPressure,
    MemoryPressure,
    PIDPressure,
    NetworkUnavailable,
}

impl NodeConditionType {
    pub const ALL: [NodeConditionType; 4] = [
        NodeConditionType::DiskPressure,
        NodeConditionType::MemoryPressure,
        NodeConditionType::PIDPressure,
        NodeConditionType::NetworkUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeConditionType::DiskPressure => "DiskPressure",
            NodeConditionType::MemoryPressure => "MemoryPressure",
            NodeConditionType::PIDPressure => "PIDPressure",
            NodeConditionType::NetworkUnavailable => "NetworkUnavailable",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeFaultKind {
    /// The condition is True while the fault lasts (with its NoSchedule taint).
    Condition(NodeConditionType),
    /// `status.addresses` loses its InternalIP and ExternalIP.
    NoInternalIp,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeFaultRaw {
    /// When the fault starts, after the scenario start (default `0s`).
    #[serde(default)]
    pub at: Option<Span>,
    /// When it ends (after the scenario start); absent: never.
    #[serde(default)]
    pub until: Option<Span>,
    /// One node by name. Exactly one of `node` and `selector`.
    #[serde(default)]
    pub node: Option<String>,
    /// Nodes matching a label selector, e.g. `lab.runbook.dev/node-pool=user-pool`.
    #[serde(default)]
    pub selector: Option<Selector>,
    /// The node reports this condition True: `DiskPressure`, `MemoryPressure`,
    /// `PIDPressure` or `NetworkUnavailable`.
    #[serde(default)]
    pub condition: Option<NodeConditionType>,
    /// The node's `status.addresses` lose the InternalIP and ExternalIP (the API
    /// server can then not reach its kubelet: `kubectl logs` fails).
    #[serde(default)]
    pub no_internal_ip: Option<Empty>,
    /// With `MemoryPressure`, `DiskPressure` or `PIDPressure`: how many pods the
    /// kubelet evicts from each node (one every 10 s, lowest rank first) before its
    /// signal is back under the threshold. Default: every pod it may evict.
    #[serde(default)]
    pub evict: Option<u32>,
}

impl TryFrom<NodeFaultRaw> for NodeFault {
    type Error = String;
    fn try_from(r: NodeFaultRaw) -> Result<Self, String> {
        let scope = match (r.node, r.selector) {
            (Some(n), None) => NodeScope::Name(n),
            (None, Some(s)) => NodeScope::Selector(s.1),
            _ => return Err("a node fault names exactly one of `node` and `selector`".into()),
        };
        let kind = match (r.condition, r.no_internal_ip) {
            (Some(c), None) => NodeFaultKind::Condition(c),
            (None, Some(_)) => NodeFaultKind::NoInternalIp,
            _ => {
                return Err(
                    "a node fault sets exactly one of `condition` and `no_internal_ip`".into(),
                );
            }
        };
        let pressure = matches!(
            kind,
            NodeFaultKind::Condition(
                NodeConditionType::DiskPressure
                    | NodeConditionType::MemoryPressure
                    | NodeConditionType::PIDPressure
            )
        );
        if r.evict.is_some() && !pressure {
            return Err("`evict` goes with a pressure condition (`DiskPressure`, `MemoryPressure`, `PIDPressure`)".into());
        }
        let at = r.at.map_or(Duration::zero(), |s| s.0);
        if let Some(u) = r.until
            && u.0 <= at
        {
            return Err("`until` must come after `at`".into());
        }
        Ok(NodeFault {
            at,
            until: r.until.map(|s| s.0),
            scope,
            kind,
            evict: r.evict,
        })
    }
}

/// An object a controller outside the scenario keeps in place (a cloud provider's
/// managed ResourceQuota, an operator's managed ConfigMap): when it is deleted through
/// the API, the lab creates it again, as the scenario declared it, `recreate_after`
/// later on the lab's clock (docs/lab.md, "Managed objects").
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Managed {
    /// The object's kind as written in `objects` (`ResourceQuota`, `ConfigMap`).
    pub kind: String,
    /// Its namespace (omit for cluster-scoped kinds).
    #[serde(default)]
    pub namespace: String,
    /// Its name; the object must be one of the scenario's `objects`.
    pub name: String,
    /// How long after the deletion the manager puts it back (`30s`, `5m`).
    pub recreate_after: Span,
    /// The manager's name, shown in `metadata.managedFields` and as the source of the
    /// event announcing the re-creation (default `addon-manager`).
    #[serde(default = "default_manager")]
    pub manager: String,
}

fn default_manager() -> String {
    "addon-manager".into()
}
