//! The object store: JSON objects of any kind keyed by (resource, namespace, name),
//! a monotonic resourceVersion counter, and the bounded history of changes that
//! watches read (woken by a `tokio::sync::watch` of the latest resourceVersion).
//!
//! Objects stay `serde_json::Value` so any kind round-trips (reference/kubernetes.md §4).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::clock::ts;
use super::index::Indexes;
use super::resources::ResourceDef;
use super::status::ApiError;
use super::{limits, names};

/// (resource key such as `pods` or `deployments.apps`, namespace or "", name).
pub type Key = (String, String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it. `old` lets a watch with a selector turn a MODIFIED
/// into ADDED/DELETED when the object enters or leaves the selection, as the
/// apiserver's cacher does.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub rv: u64,
    pub etype: EventType,
    pub resource: String,
    pub namespace: String,
    /// Shared with the store (and with the next version's `old`), not a deep copy.
    pub object: Arc<Value>,
    pub old: Option<Arc<Value>>,
}

pub struct Store {
    /// Shared, so a list takes its items under the lab's read lock by reference
    /// count and encodes them after the lock is released.
    objects: BTreeMap<Key, Arc<Value>>,
    rv: u64,
    /// The latest resourceVersion, for watches to wake on. Watches read the events
    /// themselves from `history`, so what they hold is bounded by the history's
    /// bounds, however slow they are.
    tx: watch::Sender<u64>,
    rng: u64,
    /// Recent events with their estimated size, so a watch from a resourceVersion a
    /// list returned misses nothing. Bounded by [`limits::HISTORY_EVENTS`] and
    /// [`limits::HISTORY_BYTES`].
    history: VecDeque<(Arc<WatchEvent>, usize)>,
    /// Sum of the sizes in `history`.
    history_bytes: usize,
    /// Watches from before this resourceVersion get 410 Gone.
    history_floor: u64,
    /// Changes not yet seen by the controllers (drained by [`Store::take_changes`]).
    changes: Vec<Arc<WatchEvent>>,
    pub index: Indexes,
}

const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

impl Store {
    pub fn new(seed: u64) -> Self {
        let (tx, _) = watch::channel(1000);
        Store {
            objects: BTreeMap::new(),
            rv: 1000,
            tx,
            rng: seed | 1,
            history: VecDeque::new(),
            history_bytes: 0,
            history_floor: 1000,
            changes: Vec::new(),
            index: Indexes::default(),
        }
    }

    /// Wakes when the store changes; then read the change with [`Store::history_since`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    /// The latest resourceVersion handed out.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*: good enough for names and uids, no dependency.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A random suffix like the ones generateName and ReplicaSets use.
    pub fn suffix(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| NAME_CHARS[(self.next_rand() % NAME_CHARS.len() as u64) as usize] as char)
            .collect()
    }

    pub fn uid(&mut self) -> String {
        let a = self.next_rand();
        let b = self.next_rand();
        let hex = format!("{a:016x}{b:016x}");
        format!(
            "{}-{}-4{}-a{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[13..16],
            &hex[17..20],
            &hex[20..32]
        )
    }

    pub fn get(&self, res: &str, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&(res.to_string(), ns.to_string(), name.to_string()))
            .map(|v| &**v)
    }

    /// A shared handle on one object, to read after the lab's lock is released.
    pub fn get_shared(&self, res: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(&(res.to_string(), ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of one resource, in one namespace or all, ordered by namespace and name.
    pub fn list<'a>(
        &'a self,
        res: &'a str,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        self.list_shared(res, ns).map(|v| &**v)
    }

    /// [`Store::list`] as shared handles, to encode after the lab's lock is released.
    pub fn list_shared<'a>(
        &'a self,
        res: &'a str,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Arc<Value>> + 'a {
        let start = (res.to_string(), ns.unwrap_or("").to_string(), String::new());
        self.objects
            .range(start..)
            .take_while(move |((r, n, _), _)| r == res && ns.is_none_or(|ns| n == ns))
            .map(|(_, v)| v)
    }

    /// The pods whose indexed `field` (`spec.nodeName`, `status.phase`) renders as
    /// `value`, in one namespace or all, in (namespace, name) order: a field-selector
    /// list served from the index instead of a scan. `None` when the field is not
    /// indexed.
    pub fn pods_where<'a>(
        &'a self,
        field: &str,
        value: &str,
        ns: Option<&'a str>,
    ) -> Option<impl Iterator<Item = &'a Arc<Value>> + 'a> {
        let keys = self.index.pods_where(field, value)?;
        Some(
            keys.filter(move |(n, _)| ns.is_none_or(|ns| n == ns))
                .filter_map(|(n, name)| {
                    self.objects
                        .get(&("pods".to_string(), n.clone(), name.clone()))
                }),
        )
    }

    /// The pods (of `ns`, or all) that may match a label selector, from the label
    /// index, in (namespace, name) order; the caller checks the whole selector.
    /// `None` when no requirement narrows it (see [`Indexes::pods_matching_labels`]).
    pub fn pods_labelled(
        &self,
        ns: Option<&str>,
        sel: &crate::lab::select::LabelSelector,
    ) -> Option<Vec<&Arc<Value>>> {
        let keys = self.index.pods_matching_labels(ns, sel)?;
        let mut key = ("pods".to_string(), String::new(), String::new());
        Some(
            keys.into_iter()
                .filter_map(|(n, name)| {
                    key.1 = n;
                    key.2 = name;
                    self.objects.get(&key)
                })
                .collect(),
        )
    }

    /// The objects of one resource named `name`, in `ns` or in every namespace (in
    /// namespace order): a `metadata.name=` field selector read by key, one lookup per
    /// namespace holding that resource, instead of a scan.
    pub fn named(&self, res: &str, ns: Option<&str>, name: &str) -> Vec<&Arc<Value>> {
        let key = |ns: &str| (res.to_string(), ns.to_string(), name.to_string());
        if let Some(ns) = ns {
            return self.objects.get(&key(ns)).into_iter().collect();
        }
        let mut out = Vec::new();
        // Jump from namespace to namespace: the first key at or after (res, ns, "")
        // names the next namespace holding this resource.
        let mut from = (res.to_string(), String::new(), String::new());
        while let Some(((r, n, _), _)) = self.objects.range(from.clone()..).next() {
            if r != res {
                break;
            }
            if let Some(v) = self.objects.get(&key(n)) {
                out.push(v);
            }
            // The least namespace after `n`.
            from.1 = format!("{n}\0");
        }
        out
    }

    /// Clones of the objects of one resource (for controllers that mutate while iterating).
    pub fn list_owned(&self, res: &str, ns: Option<&str>) -> Vec<Value> {
        self.list(res, ns).cloned().collect()
    }

    fn emit(
        &mut self,
        etype: EventType,
        res: &str,
        ns: &str,
        object: Arc<Value>,
        old: Option<Arc<Value>>,
    ) {
        let ev = Arc::new(WatchEvent {
            rv: self.rv,
            etype,
            resource: res.to_string(),
            namespace: ns.to_string(),
            object,
            old,
        });
        let size =
            limits::approx_size(&ev.object) + ev.old.as_deref().map_or(0, limits::approx_size);
        self.history.push_back((ev.clone(), size));
        self.history_bytes += size;
        while self.history.len() > limits::HISTORY_EVENTS
            || (self.history_bytes > limits::HISTORY_BYTES && self.history.len() > 1)
        {
            let Some((dropped, n)) = self.history.pop_front() else {
                break;
            };
            self.history_bytes -= n;
            self.history_floor = dropped.rv;
        }
        self.changes.push(ev.clone());
        // No receivers is fine: nobody is watching.
        self.tx.send_replace(self.rv);
    }

    /// Every change since the last call, in order: what the controllers must look at.
    pub fn take_changes(&mut self) -> Vec<Arc<WatchEvent>> {
        std::mem::take(&mut self.changes)
    }

    /// Is there a change the controllers have not seen?
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// Events after `rv`, or `None` when they are no longer kept (410 Gone).
    pub fn history_since(&self, rv: u64) -> Option<Vec<Arc<WatchEvent>>> {
        if rv < self.history_floor {
            return None;
        }
        // The history is in resourceVersion order.
        let from = self.history.partition_point(|(e, _)| e.rv <= rv);
        Some(self.history.range(from..).map(|(e, _)| e.clone()).collect())
    }

    /// Create an object: fills kind/apiVersion, namespace, name from generateName,
    /// uid, creationTimestamp (unless `keep_timestamp` and one is given),
    /// resourceVersion and generation. 409 AlreadyExists when the name is taken.
    pub fn create(
        &mut self,
        res: &ResourceDef,
        ns: &str,
        mut obj: Value,
        now: DateTime<Utc>,
        keep_timestamp: bool,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        obj["apiVersion"] = json!(res.api_version());
        obj["kind"] = json!(res.kind);
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        let mut name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            let Some(prefix) = obj["metadata"]["generateName"].as_str().map(String::from) else {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!(
                        "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                        res.kind
                    ),
                ));
            };
            name = format!("{prefix}{}", self.suffix(5));
        }
        check_names(res, ns, &name)?;
        let key = (res.key(), ns.to_string(), name.clone());
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(res, &name));
        }
        self.rv += 1;
        let uid = self.uid();
        let m = &mut obj["metadata"];
        m["name"] = json!(name);
        if res.namespaced {
            m["namespace"] = json!(ns);
        } else if let Some(map) = m.as_object_mut() {
            map.remove("namespace");
        }
        m["uid"] = json!(uid);
        if !(keep_timestamp && m["creationTimestamp"].is_string()) {
            m["creationTimestamp"] = json!(ts(now));
        }
        m["resourceVersion"] = json!(self.rv.to_string());
        if obj.get("spec").is_some() && obj["metadata"].get("generation").is_none() {
            obj["metadata"]["generation"] = json!(1);
        }
        self.index.insert(&key, &obj);
        let shared = Arc::new(obj);
        self.objects.insert(key, shared.clone());
        let obj = Value::clone(&shared);
        self.emit(EventType::Added, &res.key(), ns, shared, None);
        Ok(obj)
    }

    /// Store a new version of an existing object (the caller has checked preconditions);
    /// bumps resourceVersion, and generation when anything outside metadata/status changed.
    pub fn update(&mut self, res: &str, ns: &str, name: &str, obj: Value) -> Option<Value> {
        self.update_shared(res, ns, name, obj)
            .map(Arc::unwrap_or_clone)
    }

    /// [`Store::update`] returning the stored version by reference count (no copy of
    /// it for a caller that only reads or encodes it).
    pub fn update_shared(
        &mut self,
        res: &str,
        ns: &str,
        name: &str,
        mut obj: Value,
    ) -> Option<Arc<Value>> {
        let key = (res.to_string(), ns.to_string(), name.to_string());
        let old = self.objects.get(&key)?;
        if **old == obj {
            return Some(Arc::clone(old));
        }
        let old = Arc::clone(old);
        let changed_spec = spec_changed(&old, &obj);
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        obj["metadata"]["uid"] = old["metadata"]["uid"].clone();
        obj["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
        if changed_spec {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(0);
            obj["metadata"]["generation"] = json!(g.saturating_add(1));
        } else if let Some(g) = old["metadata"].get("generation") {
            obj["metadata"]["generation"] = g.clone();
        }
        self.index.remove(&key, &old);
        self.index.insert(&key, &obj);
        let shared = Arc::new(obj);
        self.objects.insert(key, shared.clone());
        self.emit(EventType::Modified, res, ns, shared.clone(), Some(old));
        Some(shared)
    }

    /// Remove an object for good; watchers see DELETED with a new resourceVersion.
    /// The removed version (with that resourceVersion) is returned shared with the
    /// watch event: the one copy a removal makes is the one that carries the new
    /// resourceVersion (the stored version is still held by the history).
    pub fn remove(&mut self, res: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        let key = (res.to_string(), ns.to_string(), name.to_string());
        let old = self.objects.remove(&key)?;
        self.index.remove(&key, &old);
        let mut obj = Arc::unwrap_or_clone(old);
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let shared = Arc::new(obj);
        self.emit(EventType::Deleted, res, ns, shared.clone(), None);
        Some(shared)
    }

    /// Every object, for finding owners by uid.
    pub fn all(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.objects.iter().map(|(k, v)| (k, &**v))
    }
}

/// 422 Invalid for a name or namespace the API server would refuse (`..`,
/// `../../x`, `Hub`): names become path segments.
pub fn check_names(res: &ResourceDef, ns: &str, name: &str) -> Result<(), ApiError> {
    let name_ok = if res.key() == "namespaces" {
        names::dns_label(name)
    } else {
        names::dns_subdomain(name)
    };
    let invalid = |field: &str, why: String| {
        ApiError::new(
            422,
            "Invalid",
            format!(
                "{} {name:?} is invalid: {field}: Invalid value: {why}",
                res.kind
            ),
        )
    };
    name_ok.map_err(|why| invalid("metadata.name", why))?;
    if res.namespaced {
        names::dns_label(ns).map_err(|why| invalid("metadata.namespace", why))?;
    }
    Ok(())
}

/// Did anything but metadata and status change? That bumps `metadata.generation`.
fn spec_changed(old: &Value, new: &Value) -> bool {
    let (Some(a), Some(b)) = (old.as_object(), new.as_object()) else {
        return old != new;
    };
    let outside = |k: &String| k != "metadata" && k != "status";
    a.iter()
        .filter(|(k, _)| outside(k))
        .any(|(k, v)| b.get(k) != Some(v))
        || b.keys().filter(|k| outside(k)).any(|k| !a.contains_key(k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::resources;
    use crate::lab::select::FieldSelector;

    fn pod(name: &str, node: &str, phase: &str) -> Value {
        json!({"metadata": {"name": name}, "spec": {"nodeName": node}, "status": {"phase": phase}})
    }

    /// Names of the pods `pods_where` gives, and of those a scan with the same
    /// selector finds: they must be the same, in the same order.
    fn both(
        store: &Store,
        field: &str,
        value: &str,
        ns: Option<&str>,
    ) -> (Vec<String>, Vec<String>) {
        let name = |v: &Value| str_name(v);
        let indexed = store
            .pods_where(field, value, ns)
            .expect("indexed field")
            .map(|v| name(v))
            .collect();
        let sel = FieldSelector::parse(&format!("{field}={value}")).unwrap();
        let scanned = store
            .list("pods", ns)
            .filter(|o| sel.matches(o))
            .map(name)
            .collect();
        (indexed, scanned)
    }

    fn str_name(v: &Value) -> String {
        v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A change is recorded by reference count, not as deep copies: the watch event of
    /// a write holds the very version the store holds, and the next update's `old` is
    /// that same version, so a bulk load keeps one copy of each object.
    #[test]
    fn watch_events_share_the_stored_versions() {
        let pods = resources::by_key("pods").unwrap();
        let now = Utc::now();
        let mut store = Store::new(1);
        store
            .create(pods, "prod", pod("a", "", "Pending"), now, false)
            .unwrap();
        let key = ("pods".to_string(), "prod".to_string(), "a".to_string());
        let added = store.take_changes().pop().unwrap();
        assert!(Arc::ptr_eq(&added.object, &store.objects[&key]));
        store.update("pods", "prod", "a", pod("a", "n1", "Running"));
        let modified = store.take_changes().pop().unwrap();
        assert!(Arc::ptr_eq(&modified.object, &store.objects[&key]));
        assert!(Arc::ptr_eq(modified.old.as_ref().unwrap(), &added.object));
        assert_eq!(modified.object["spec"]["nodeName"], "n1");
        assert_eq!(modified.old.as_ref().unwrap()["spec"]["nodeName"], "");
        let removed = store.remove("pods", "prod", "a").unwrap();
        let deleted = store.take_changes().pop().unwrap();
        assert!(Arc::ptr_eq(&deleted.object, &removed));
        assert_ne!(
            deleted.object["metadata"]["resourceVersion"],
            modified.object["metadata"]["resourceVersion"]
        );
        assert!(matches!(deleted.etype, EventType::Deleted));
    }

    #[test]
    fn field_selector_lists_on_indexed_pod_fields_follow_every_write() {
        let pods = resources::by_key("pods").unwrap();
        let now = Utc::now();
        let mut store = Store::new(1);
        for (ns, name, node, phase) in [
            ("prod", "b", "n1", "Running"),
            ("prod", "a", "n1", "Unknown"),
            ("dev", "c", "n1", "Running"),
            ("prod", "d", "n2", "Running"),
        ] {
            store
                .create(pods, ns, pod(name, node, phase), now, false)
                .unwrap();
        }
        store
            .create(pods, "prod", json!({"metadata": {"name": "e"}}), now, false)
            .unwrap();
        let (indexed, scanned) = both(&store, "spec.nodeName", "n1", None);
        assert_eq!(indexed, ["c", "a", "b"]);
        assert_eq!(indexed, scanned);
        let (indexed, _) = both(&store, "spec.nodeName", "n1", Some("prod"));
        assert_eq!(indexed, ["a", "b"]);
        // A pod without a node or phase is where a selector for "" finds it.
        assert_eq!(both(&store, "spec.nodeName", "", None).0, ["e"]);
        assert_eq!(both(&store, "status.phase", "", None).0, ["e"]);
        // An update moves the pod between index entries; a delete takes it out.
        store.update("pods", "prod", "b", pod("b", "n2", "Failed"));
        store.remove("pods", "prod", "a");
        for (field, value) in [
            ("spec.nodeName", "n1"),
            ("spec.nodeName", "n2"),
            ("status.phase", "Running"),
            ("status.phase", "Failed"),
            ("status.phase", "Unknown"),
        ] {
            let (indexed, scanned) = both(&store, field, value, None);
            assert_eq!(indexed, scanned, "{field}={value}");
        }
        assert_eq!(both(&store, "spec.nodeName", "n2", None).0, ["b", "d"]);
        assert!(store.pods_where("metadata.name", "b", None).is_none());
    }
}
