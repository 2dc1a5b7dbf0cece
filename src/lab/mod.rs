//! The lab: a simulated Kubernetes cluster embedded in the binary.
//!
//! It speaks the real REST/JSON protocol, so both `kube::Client` (in-process, through
//! [`Lab::client`], no socket) and a real `kubectl` (over TCP, through [`Lab::serve`]
//! and a kubeconfig) work against it. A scenario file describes the incident; the
//! controllers in [`controllers`] make the world react the way Kubernetes does; a
//! virtual clock makes minutes of cluster time pass instantly in tests.
//!
//! What a real kubectl 1.37 can do against it (tests/lab_kubectl.rs runs each):
//! `get` (server-side Tables for pods, nodes, events, PVCs, PVs, VolumeAttachments,
//! Deployments, ReplicaSets, PDBs, namespaces; NAME/CREATED AT for other kinds),
//! `-o wide|json|yaml|name|jsonpath`, `--field-selector`, `-l`, `-w`, `describe`,
//! `cordon`/`uncordon`, `taint`, `drain` (filters, eviction, PDBs), `delete` (hangs
//! for a pod on a lost node, as in the incident), `delete --grace-period=0 --force`,
//! `wait --for=delete`, `rollout restart`, `label`, `annotate`. The lab serves no
//! OpenAPI document, so `kubectl create|apply -f` need `--validate=false`.
//!
//! Admin routes for a lab in another process: `POST /lab/v1/advance?by=6m`,
//! `POST /lab/v1/nodes/{name}/lose|recover`, `GET /lab/v1/requests|data-losses|time`,
//! `POST|GET|DELETE /lab/v1/faults` (API fault injection, see [`faults`]).
//! Prometheus' query API is at `/api/v1/query` on the same address (see [`metrics`]),
//! and the scenario's HTTP sites at `/sites/<name>` or by their `Host` (see [`sites`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use runbook::lab::Lab;
//! let lab = Lab::seed();
//! let client = lab.client();                    // kube::Client over the router
//! let (addr, server) = lab.serve("127.0.0.1:0").await?;
//! lab.advance(std::time::Duration::from_secs(6 * 60));
//! let hub = lab.get("pods", Some("prod"), "hub-65d9f46698-dj4jb");
//! server.shutdown().await;
//! # Ok(()) }
//! ```

pub mod alerting;
pub mod api;
pub mod clock;
pub mod controllers;
pub mod faults;
pub mod history;
pub mod index;
pub mod limits;
mod load;
pub mod metrics;
pub mod names;
pub mod patch;
pub mod promql;
pub mod quantity;
pub mod rbac;
pub mod resources;
pub mod scenario;
pub mod scenario_model;
pub mod select;
pub mod sites;
pub mod state;
pub mod status;
pub mod store;
pub mod table;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub use faults::ApiFault;
pub use scenario::{Scenario, ScenarioError};
pub use state::DataLoss;

/// The seed incident, served by `runbook lab` without a scenario argument.
pub const SEED_SCENARIO: &str = include_str!("../../runbooks/hub-pvc-locked.scenario.yaml");

/// One request the lab served, for rate and ordering assertions.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RequestRecord {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// Wall-clock time of arrival.
    pub at: DateTime<Utc>,
    /// The HTTP status answered (200 for a watch that started streaming; an injected
    /// fault's status for a faulted request). 0 while the request is being served.
    #[serde(default)]
    pub status: u16,
}

/// The request log, in order of arrival. `first` is the sequence number of
/// `items[0]`, so a request's status can be filled in after older entries were dropped.
#[derive(Default)]
struct RequestLog {
    first: u64,
    items: Vec<RequestRecord>,
}

struct Inner {
    /// Read-write: lists, gets and watches' catch-up read in parallel; writes, the
    /// controllers and the ticker take it exclusively.
    state: RwLock<state::State>,
    requests: Mutex<RequestLog>,
    faults: Mutex<faults::Faults>,
    /// The metrics' samples over time (locked after `state`, never before).
    history: Mutex<history::History>,
    ticker: AtomicBool,
    name: String,
}

/// A simulated cluster. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Lab {
    inner: Arc<Inner>,
}

/// A running TCP server; dropping it does not stop the server, [`LabServer::shutdown`] does.
pub struct LabServer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl LabServer {
    /// Stop accepting connections and wait for the server task.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// Wait until the server stops (it does not by itself).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Errors of [`Lab::serve`].
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the lab listens on 127.0.0.1 only; {0} is not a loopback address")]
    NotLoopback(String),
    #[error("invalid listen address {0:?}: expected e.g. 127.0.0.1:0")]
    BadAddress(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

impl Lab {
    /// An empty cluster (no objects, no faults), clock at the wall time.
    pub fn empty() -> Lab {
        Self::from_loaded(
            scenario::parse("version: 1\nname: empty\n", "<empty>")
                .expect("invariant: the empty scenario parses"),
            1.0,
        )
    }

    /// The seed incident (runbooks/hub-pvc-locked.scenario.yaml, embedded).
    pub fn seed() -> Lab {
        // tests/lab_scenarios.rs loads every shipped scenario, this one included.
        Self::from_scenario_str(SEED_SCENARIO)
            .expect("invariant: the embedded seed scenario is valid")
    }

    pub fn from_scenario_str(yaml: &str) -> Result<Lab, ScenarioError> {
        Ok(Self::from_loaded(scenario::parse(yaml, "<scenario>")?, 1.0))
    }

    pub fn from_scenario_file(path: impl AsRef<Path>) -> Result<Lab, ScenarioError> {
        Ok(Self::from_loaded(scenario::load_file(path.as_ref())?, 1.0))
    }

    /// Like [`Lab::from_scenario_file`], but cluster time starts at the scenario's own
    /// `start` (the incident's date) instead of now, with the clock stopped: for
    /// `runbook demo` and `runbook test`, whose journals then carry the incident's
    /// times. Not for kubectl, which computes some ages from the wall clock.
    pub fn from_scenario_file_at_incident_time(
        path: impl AsRef<Path>,
    ) -> Result<Lab, ScenarioError> {
        let loaded = scenario::load_file(path.as_ref())?;
        let start = loaded.start;
        Ok(Self::build(loaded, 0.0, start))
    }

    /// The seed incident at its own time (2018-03-13 06:28 UTC), clock stopped.
    pub fn seed_at_incident_time() -> Lab {
        let loaded = scenario::parse(SEED_SCENARIO, "<seed>")
            .expect("invariant: the embedded seed scenario is valid");
        let start = loaded.start;
        Self::build(loaded, 0.0, start)
    }

    fn from_loaded(loaded: scenario::Loaded, speed: f64) -> Lab {
        Self::build(loaded, speed, None)
    }

    /// The scenario's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The state, exclusively: for anything that changes it.
    pub(crate) fn lock(&self) -> RwLockWriteGuard<'_, state::State> {
        // A panic while holding the lock leaves consistent JSON behind; keep serving.
        self.inner.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The state, shared with other readers: for requests that only read it (a
    /// list takes its items here and encodes them after releasing it).
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, state::State> {
        self.inner.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// How fast cluster time passes relative to wall time (1.0 = real time; 0 = only
    /// [`Lab::advance`] moves it).
    pub fn set_speed(&self, speed: f64) {
        self.lock().clock.set_speed(speed);
    }

    /// Move cluster time forward at once and let the controllers react.
    pub fn advance(&self, d: std::time::Duration) {
        let mut st = self.lock();
        self.history().scrape(&st);
        st.clock
            .advance(chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX));
        // Until the controllers react, the world is as it was: the points in between
        // have the old values.
        self.history().scrape(&st);
        controllers::reconcile_all(&mut st);
    }

    /// The Prometheus history, locked (take it after the state's lock, if at all).
    pub(crate) fn history(&self) -> MutexGuard<'_, history::History> {
        self.inner.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record the metrics at every scrape point due since the last one, with the
    /// state as it is now: called before anything changes the state.
    pub(crate) fn scrape(&self) {
        let st = self.read();
        self.history().scrape(&st);
    }

    /// [`Lab::scrape`], and with the clock exactly on a scrape point, that point
    /// re-read (see [`history::History::refresh`]): before answering a query.
    pub(crate) fn scrape_for_query(&self) {
        let st = self.read();
        let mut h = self.history();
        h.scrape(&st);
        h.refresh(&st);
    }

    /// Run every controller over every object now (writes through the API already
    /// reconcile what they touched).
    pub fn reconcile(&self) {
        controllers::reconcile_all(&mut self.lock());
    }

    /// Current cluster time.
    pub fn now(&self) -> DateTime<Utc> {
        self.read().now()
    }

    /// The lab's Prometheus, in process: `query` at the current cluster time, as
    /// `/api/v1/query` answers it (HTTP code, body).
    pub fn prometheus_query(&self, query: &str) -> (u16, Value) {
        self.scrape_for_query();
        let t = self.now().timestamp_millis();
        metrics::query(&self.history().series, query, t)
    }

    /// When the scenario's alerts became active, from `ALERTS_FOR_STATE` (as a
    /// Prometheus alerting on the scenario would tell): the earliest, with its
    /// alert's name; `None` when no alert is active.
    pub fn earliest_active_alert(&self) -> Option<(DateTime<Utc>, String)> {
        let (_, v) = self.prometheus_query("ALERTS_FOR_STATE");
        v["data"]["result"]
            .as_array()?
            .iter()
            .filter_map(|s| {
                let secs: f64 = s["value"][1].as_str()?.parse().ok()?;
                let name = s["metric"]["alertname"].as_str()?.to_owned();
                Some((DateTime::from_timestamp(secs as i64, 0)?, name))
            })
            .min()
    }

    pub(crate) fn rv(&self) -> u64 {
        self.read().store.rv()
    }

    /// The latest resourceVersion handed out: it changes on every change to any object.
    pub fn resource_version(&self) -> u64 {
        self.rv()
    }

    /// Read an object directly. `resource` is a plural (`pods`, `volumeattachments`),
    /// a qualified plural (`deployments.apps`) or a short name (`pvc`); `ns` is
    /// ignored for cluster-scoped kinds.
    pub fn get(&self, resource: &str, ns: Option<&str>, name: &str) -> Option<Value> {
        let def = resolve(resource)?;
        let ns = if def.namespaced {
            ns.unwrap_or("default")
        } else {
            ""
        };
        self.read().store.get(&def.key(), ns, name).cloned()
    }

    /// All objects of a resource, in one namespace or (None) all.
    pub fn list(&self, resource: &str, ns: Option<&str>) -> Vec<Value> {
        let Some(def) = resolve(resource) else {
            return Vec::new();
        };
        let ns = if def.namespaced { ns } else { None };
        self.read().store.list_owned(&def.key(), ns)
    }

    /// Create an object directly (no HTTP), as the API would: `apiVersion` and `kind`
    /// pick the resource, `metadata.namespace` the namespace (default `default`).
    /// Controllers run afterwards.
    pub fn create(&self, obj: Value) -> Result<Value, status::ApiError> {
        let api = obj["apiVersion"].as_str().unwrap_or_default();
        let kind = obj["kind"].as_str().unwrap_or_default();
        let def = resources::by_kind(api, kind).ok_or_else(|| {
            status::ApiError::bad_request(format!(
                "unknown kind {api}/{kind}; the lab serves {}",
                resources::known_kinds()
            ))
        })?;
        let ns = if def.namespaced {
            obj.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_string()
        } else {
            String::new()
        };
        let mut st = self.lock();
        self.history().scrape(&st);
        if def.namespaced && st.store.get("namespaces", "", &ns).is_none() {
            let ns_def = resources::by_key("namespaces").expect("invariant: namespaces are served");
            let now = st.now();
            let _ = st.store.create(
                ns_def,
                "",
                json!({"metadata": {"name": ns}, "status": {"phase": "Active"}}),
                now,
                false,
            );
        }
        let created = st.create(def, &ns, obj, false)?;
        controllers::reconcile(&mut st);
        Ok(created)
    }

    /// The current value of a scenario metric.
    pub fn metric(&self, name: &str) -> Option<f64> {
        metrics::evaluate(&self.lock())
            .into_iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, v)| v)
    }

    /// Data lost so far (pods with an emptyDir data volume that were deleted).
    pub fn data_losses(&self) -> Vec<DataLoss> {
        self.lock().data_losses.clone()
    }

    /// The requests served so far: the most recent [`limits::REQUEST_LOG`] to twice
    /// that many (older ones are dropped in blocks, so logging stays O(1)).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.request_log().items.clone()
    }

    fn request_log(&self) -> MutexGuard<'_, RequestLog> {
        self.inner
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Record an arriving request; the returned number identifies it for
    /// [`Lab::log_status`].
    pub(crate) fn log_request(&self, method: &str, path: &str) -> u64 {
        let mut r = self.request_log();
        if r.items.len() >= 2 * limits::REQUEST_LOG {
            r.items.drain(..limits::REQUEST_LOG);
            r.first += limits::REQUEST_LOG as u64;
        }
        // A URI can be tens of kilobytes; the log keeps a bounded prefix of each.
        let mut cut = path.len().min(limits::LOGGED_URI);
        while !path.is_char_boundary(cut) {
            cut -= 1;
        }
        r.items.push(RequestRecord {
            method: method.chars().take(16).collect(),
            path: path[..cut].to_string(),
            at: Utc::now(),
            status: 0,
        });
        r.first + r.items.len() as u64 - 1
    }

    pub(crate) fn log_status(&self, seq: u64, status: u16) {
        let mut r = self.request_log();
        if let Some(i) = seq.checked_sub(r.first)
            && let Some(rec) = r.items.get_mut(i as usize)
        {
            rec.status = status;
        }
    }

    /// Answer the next `f.times` requests matching `f` with an error `Status` (see
    /// [`faults`]); they change nothing. Faults fire in injection order. A status
    /// outside 400–599 is answered as 500.
    pub fn inject_fault(&self, f: ApiFault) {
        self.api_faults().push(f);
    }

    /// Drop every pending fault.
    pub fn clear_faults(&self) {
        self.api_faults().clear();
    }

    /// The faults not used up yet, with their remaining `times`.
    pub fn pending_faults(&self) -> Vec<ApiFault> {
        self.api_faults().pending()
    }

    fn api_faults(&self) -> MutexGuard<'_, faults::Faults> {
        self.inner.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fault answering this request, if one matches (uses it up once).
    pub(crate) fn take_fault(&self, method: &str, path: &str) -> Option<ApiFault> {
        self.api_faults().take(method, path)
    }

    /// Make a node's kubelet stop posting status now (the `node_lost` fault).
    pub fn lose_node(&self, node: &str) {
        let mut st = self.lock();
        self.history().scrape(&st);
        let now = st.now();
        st.lost_nodes.entry(node.to_string()).or_insert(now);
        controllers::reconcile_all(&mut st);
    }

    /// Bring a lost node back (the incident's "reset the node"): its kubelet reports
    /// Ready again and finishes pending deletions.
    pub fn recover_node(&self, node: &str) {
        let mut st = self.lock();
        self.history().scrape(&st);
        st.lost_nodes.remove(node);
        if let Some(mut n) = st.store.get("nodes", "", node).cloned()
            && let Some(conds) = n
                .pointer_mut("/status/conditions")
                .and_then(Value::as_array_mut)
        {
            for c in conds.iter_mut() {
                let ready = c["type"] == "Ready";
                c["status"] = json!(if ready { "True" } else { "False" });
                c["reason"] = json!(if ready {
                    "KubeletReady"
                } else {
                    "KubeletHasNoPressure"
                });
                c["message"] = json!(if ready {
                    "kubelet is posting ready status"
                } else {
                    ""
                });
            }
            st.store.update("nodes", "", node, n);
        }
        controllers::reconcile_all(&mut st);
    }

    /// The API as an axum Router (a `tower::Service`).
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .fallback(api::handle)
            .with_state(self.clone())
    }

    /// A `kube::Client` talking to the lab in-process (no socket). Call it inside a
    /// tokio runtime (kube's client spawns its request buffer there); it also starts
    /// the controller ticker. kube's retry layer is not installed (`Client::new`), so
    /// a 429 from a PDB-blocked eviction comes back at once (STYLE.md pitfall).
    pub fn client(&self) -> kube::Client {
        self.start_ticker();
        kube::Client::new(self.router(), "default")
    }

    /// Serve over TCP on a loopback address (`127.0.0.1:0` picks a free port).
    pub async fn serve(&self, addr: &str) -> Result<(SocketAddr, LabServer), ServeError> {
        let sock: SocketAddr = addr
            .parse()
            .map_err(|_| ServeError::BadAddress(addr.to_string()))?;
        if !sock.ip().is_loopback() {
            return Err(ServeError::NotLoopback(sock.ip().to_string()));
        }
        let listener = tokio::net::TcpListener::bind(sock)
            .await
            .map_err(|source| ServeError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let local = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        self.start_ticker();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = self.router();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok((
            local,
            LabServer {
                stop: Some(stop),
                task,
            },
        ))
    }

    /// Controllers also run on a timer, so time-driven changes (a kubelet finishing
    /// a graceful deletion, the forced-detach timer) happen while clients only watch.
    /// A tick costs nothing unless a controller's timer is due (`State::next_wake`).
    fn start_ticker(&self) {
        if tokio::runtime::Handle::try_current().is_err()
            || self.inner.ticker.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                // A stopped clock is seen under the shared lock, without holding up
                // readers.
                if !inner
                    .state
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .clock
                    .running()
                {
                    continue;
                }
                let mut st = inner.state.write().unwrap_or_else(|e| e.into_inner());
                // A stopped clock changes nothing by itself: every mutation and every
                // `advance` already reconciles. A running one runs a full pass when
                // a timer is due.
                if st.clock.running() {
                    inner
                        .history
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .scrape(&st);
                    controllers::reconcile(&mut st);
                }
            }
        });
    }
}

/// Resolve `pods`, `deployments.apps`, `deployments`, `pvc`, `Pod` to a resource.
pub fn resolve(name: &str) -> Option<&'static resources::ResourceDef> {
    let lower = name.to_ascii_lowercase();
    resources::RESOURCES.iter().find(|r| {
        r.key() == lower
            || r.plural == lower
            || r.singular == lower
            || r.short_names.contains(&lower.as_str())
    })
}

/// A kubeconfig for a lab at `addr` (plain http, a dummy token: the lab has no auth).
pub fn kubeconfig_yaml(addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: runbook-lab\n  cluster:\n    server: http://{addr}\ncontexts:\n- name: runbook-lab\n  context:\n    cluster: runbook-lab\n    user: runbook-lab\n    namespace: default\ncurrent-context: runbook-lab\nusers:\n- name: runbook-lab\n  user:\n    token: lab-dummy-token\n"
    )
}

/// Write [`kubeconfig_yaml`] to `path`.
pub fn write_kubeconfig(addr: SocketAddr, path: &Path) -> std::io::Result<()> {
    std::fs::write(path, kubeconfig_yaml(addr))
}
