//! The lab's whole world behind one lock: the object store, the virtual clock, the
//! scenario's faults and metrics, and the bits of controller memory that Kubernetes
//! keeps outside objects (which nodes' kubelets are dead, detach timers).
//!
//! The operations on it are shared by the HTTP handlers and the controllers, so a
//! controller's force delete follows the same rules as kubectl's. Each has its file:
//! [`writes`] (create, replace, delete with the registries' rules, data losses),
//! [`eviction`] (the eviction subresource and PodDisruptionBudgets), [`events`]
//! (core/v1 Events), [`shape`] (what the API validates and defaults on create), and
//! [`json`] (small readers of JSON objects every controller uses).

mod events;
mod eviction;
mod json;
mod quota;
mod shape;
mod writes;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

use super::clock::Clock;
use super::scenario::{Fault, MetricDef};
use super::store::Store;

pub use json::{at, controller_of, finalizers, owner_uids, pod_ready, str_at};
pub use quota::pod_usage;
pub use shape::check_shape;
pub(crate) use shape::default_pod;
pub use writes::{DATA_VOLUME_ANNOTATION, DataLoss, DeleteOpts};

/// A pod fault in cluster time: which pods, what, from when, until when.
#[derive(Debug, Clone)]
pub struct ActivePodFault {
    pub namespace: String,
    pub scope: crate::lab::scenario_model::PodScope,
    pub kind: crate::lab::scenario_model::PodFaultKind,
    pub from: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
}

/// A node fault in cluster time.
#[derive(Debug, Clone)]
pub struct ActiveNodeFault {
    pub scope: crate::lab::scenario_model::NodeScope,
    pub kind: crate::lab::scenario_model::NodeFaultKind,
    pub from: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
    /// Pods the kubelet evicts per node under this pressure (None: all it may).
    pub evict: Option<u32>,
}

impl ActiveNodeFault {
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        self.from <= now && self.until.is_none_or(|u| now < u)
    }
}

pub struct State {
    pub store: Store,
    pub clock: Clock,
    pub faults: Vec<(Duration, Fault)>,
    pub applied: Vec<bool>,
    pub metrics: Vec<MetricDef>,
    /// Nodes whose kubelet stopped posting status, and since when.
    pub lost_nodes: BTreeMap<String, DateTime<Utc>>,
    /// Nodes whose disk filled up.
    pub full_disks: BTreeSet<String>,
    /// Nodes whose capacity the lab made up because the scenario gave none: the
    /// scheduler treats them as unlimited, so scenarios written before capacity was
    /// modelled schedule as they always did.
    pub default_capacity: BTreeSet<String>,
    /// Pod faults (crash loops, OOM kills, failing readiness) and their windows.
    pub pod_faults: Vec<ActivePodFault>,
    /// Node faults (conditions, a lost InternalIP) and their windows.
    pub node_faults: Vec<ActiveNodeFault>,
    /// Addresses a `no_internal_ip` fault took from a node, to give back when it ends.
    pub hidden_ips: BTreeMap<String, Vec<serde_json::Value>>,
    /// The scenario's HTTP sites and what they answered.
    pub sites: crate::lab::sites::Sites,
    /// The scenario's `rbac:`: who the tokens are and what they may do.
    pub rbac: Option<crate::lab::rbac::Rbac>,
    /// How long a started container takes to become Ready (scenario `timing`).
    pub ready_after: Duration,
    /// VolumeAttachment name → when its last holder pod disappeared (forced-detach timer).
    pub detach_since: BTreeMap<String, DateTime<Utc>>,
    pub data_losses: Vec<DataLoss>,
    pub next_ip: u32,
    /// The scenario's node pools and autoscaler timing (`controllers/autoscaler.rs`).
    pub node_pools: Vec<crate::lab::scenario_model::NodePool>,
    pub autoscaler: crate::lab::scenario_model::Autoscaler,
    /// Nodes the autoscaler added that are still booting, and when they become Ready.
    pub provisioning: BTreeMap<String, DateTime<Utc>>,
    /// Nodes the autoscaler finds unneeded, and since when.
    pub unneeded: BTreeMap<String, DateTime<Utc>>,
    /// The last scale-up (scale-down waits `scale_down_delay_after_add` after it).
    pub last_scale_up: Option<DateTime<Utc>>,
    /// What containers log, from the scenario.
    pub logs: Vec<crate::lab::scenario_model::LogSpec>,
    /// The earliest cluster time at which a time-driven controller has something to do
    /// (an eviction timeout, a detach timer, a kubelet finishing a deletion, a fault):
    /// a write after it runs a full pass instead of an incremental one.
    pub next_wake: Option<DateTime<Utc>>,
    /// Objects a manager outside the cluster recreates after deletion (`controllers/managed.rs`).
    pub managed: Vec<ManagedSlot>,
    /// Node-pressure eviction per node: when the kubelet last evicted and how many
    /// pods it evicted since the pressure began (`controllers/pressure.rs`).
    pub pressure_evictions: BTreeMap<String, (DateTime<Utc>, u32)>,
}

/// One managed object: what to recreate, and since when it has been gone.
#[derive(Debug, Clone)]
pub struct ManagedSlot {
    pub rule: crate::lab::scenario_model::Managed,
    /// The store key of its kind (`resourcequotas`).
    pub resource: String,
    /// The resolved namespace ("" for cluster-scoped kinds).
    pub namespace: String,
    /// The object as declared, without uid, resourceVersion, creationTimestamp, status.
    pub template: serde_json::Value,
    /// When the manager noticed it gone.
    pub gone_since: Option<DateTime<Utc>>,
}

impl State {
    pub fn new(clock: Clock, faults: Vec<(Duration, Fault)>, metrics: Vec<MetricDef>) -> Self {
        let seed = clock.now().timestamp_nanos_opt().unwrap_or(42) as u64;
        let n = faults.len();
        State {
            store: Store::new(seed),
            clock,
            faults,
            applied: vec![false; n],
            metrics,
            lost_nodes: BTreeMap::new(),
            full_disks: BTreeSet::new(),
            default_capacity: BTreeSet::new(),
            pod_faults: Vec::new(),
            node_faults: Vec::new(),
            hidden_ips: BTreeMap::new(),
            sites: Default::default(),
            rbac: None,
            ready_after: Duration::zero(),
            detach_since: BTreeMap::new(),
            data_losses: Vec::new(),
            next_ip: 10,
            node_pools: Vec::new(),
            autoscaler: Default::default(),
            provisioning: BTreeMap::new(),
            unneeded: BTreeMap::new(),
            last_scale_up: None,
            logs: Vec::new(),
            next_wake: None,
            managed: Vec::new(),
            pressure_evictions: BTreeMap::new(),
        }
    }

    /// A controller will have work at `t` without any write: make sure a pass runs then.
    pub fn wake_at(&mut self, t: DateTime<Utc>) {
        if self.next_wake.is_none_or(|w| t < w) {
            self.next_wake = Some(t);
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn node_lost(&self, node: &str) -> bool {
        self.lost_nodes.contains_key(node)
    }
}
