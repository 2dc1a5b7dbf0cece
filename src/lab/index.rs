//! Secondary indexes of the store, kept up to date on every write, so controllers find
//! what a change affects without scanning every object: pods by node and by claim,
//! objects by uid and by owner uid, events by the object they are about.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use super::quantity::pod_requests;
use super::select::{LabelReq, LabelSelector, field_value};
use super::state::str_at;
use super::store::Key;

/// (namespace, name) of a pod.
pub type PodKey = (String, String);

#[derive(Debug, Default)]
pub struct Indexes {
    /// `spec.nodeName` → pods; unscheduled pods are under "".
    pods_by_node: HashMap<String, BTreeSet<PodKey>>,
    /// (namespace, claimName) → pods mounting that PersistentVolumeClaim.
    pods_by_claim: HashMap<(String, String), BTreeSet<PodKey>>,
    /// `metadata.uid` → object.
    by_uid: HashMap<String, Key>,
    /// Owner uid (any `ownerReferences` entry) → dependents.
    dependents: HashMap<String, BTreeSet<Key>>,
    /// `involvedObject.uid` → events about that object.
    events_by_uid: HashMap<String, BTreeSet<Key>>,
    /// (field, value as a field selector sees it) → pods, for the fields in
    /// [`INDEXED_POD_FIELDS`]: a list with `fieldSelector=spec.nodeName=X` reads the
    /// pods on X, not every pod.
    pods_by_field: HashMap<(&'static str, String), BTreeSet<PodKey>>,
    /// (label key, label value) → pods carrying that label, in (namespace, name)
    /// order: a Service's selector finds its pods from the rarest of its labels (the
    /// endpoints controllers), and a list's `labelSelector` (`=`, `in`, exists) reads
    /// only the pods its narrowest requirement names.
    pods_by_label: HashMap<(String, String), BTreeSet<PodKey>>,
    /// Label key → the values some pod has for it, for `in` and exists requirements.
    label_values: HashMap<String, BTreeSet<String>>,
    /// Node → requests summed over the pods bound to it that hold resources, kept
    /// as pods are written instead of summed again at each scheduling pass.
    usage: HashMap<String, NodeUsage>,
}

/// What the pods bound to a node request: requests summed in milli-units, and how
/// many pods. Pods that ended (Succeeded, Failed) hold nothing; terminating pods still
/// count, as in the scheduler's cache.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NodeUsage {
    pub requested: BTreeMap<String, i128>,
    pub pods: i128,
}

/// The node a pod holds resources on, if any.
fn holding_node(pod: &Value) -> Option<&str> {
    let node = str_at(pod, "/spec/nodeName");
    let phase = str_at(pod, "/status/phase");
    (!node.is_empty() && phase != "Succeeded" && phase != "Failed").then_some(node)
}

/// A pod's labels as (key, value) pairs.
fn labels_of(obj: &Value) -> impl Iterator<Item = (&str, &str)> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
}

/// Pod fields whose field-selector equalities are served from an index.
pub const INDEXED_POD_FIELDS: [&str; 2] = ["spec.nodeName", "status.phase"];

/// The pods of a set in `ns` (all when `None`), in (namespace, name) order.
fn in_namespace<'a>(
    set: &'a BTreeSet<PodKey>,
    ns: Option<&'a str>,
) -> impl Iterator<Item = &'a PodKey> + 'a {
    let from = (ns.unwrap_or("").to_string(), String::new());
    set.range(from..)
        .take_while(move |(n, _)| ns.is_none_or(|ns| n == ns))
}

fn add<K: std::hash::Hash + Eq, V: Ord>(m: &mut HashMap<K, BTreeSet<V>>, k: K, v: V) {
    m.entry(k).or_default().insert(v);
}

fn del<K: std::hash::Hash + Eq, V: Ord>(m: &mut HashMap<K, BTreeSet<V>>, k: &K, v: &V) {
    if let Some(set) = m.get_mut(k) {
        set.remove(v);
        if set.is_empty() {
            m.remove(k);
        }
    }
}

/// The claim names a pod mounts.
pub fn claims_of(pod: &Value) -> impl Iterator<Item = &str> {
    pod.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| {
            v.pointer("/persistentVolumeClaim/claimName")
                .and_then(Value::as_str)
        })
}

fn owner_uids(obj: &Value) -> impl Iterator<Item = &str> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|o| o["uid"].as_str())
        .filter(|u| !u.is_empty())
}

impl Indexes {
    pub fn insert(&mut self, key: &Key, obj: &Value) {
        let uid = str_at(obj, "/metadata/uid");
        if !uid.is_empty() {
            self.by_uid.insert(uid.to_string(), key.clone());
        }
        for o in owner_uids(obj) {
            add(&mut self.dependents, o.to_string(), key.clone());
        }
        match key.0.as_str() {
            "pods" => {
                let pk = (key.1.clone(), key.2.clone());
                if let Some(node) = holding_node(obj) {
                    let u = self.usage.entry(node.to_string()).or_default();
                    u.pods += 1;
                    for (r, q) in pod_requests(obj) {
                        *u.requested.entry(r).or_default() += q;
                    }
                }
                add(
                    &mut self.pods_by_node,
                    str_at(obj, "/spec/nodeName").to_string(),
                    pk.clone(),
                );
                for c in claims_of(obj) {
                    add(
                        &mut self.pods_by_claim,
                        (key.1.clone(), c.to_string()),
                        pk.clone(),
                    );
                }
                for f in INDEXED_POD_FIELDS {
                    add(
                        &mut self.pods_by_field,
                        (f, field_value(obj, f)),
                        pk.clone(),
                    );
                }
                for (k, v) in labels_of(obj) {
                    let lk = (k.to_string(), v.to_string());
                    if !self.pods_by_label.contains_key(&lk) {
                        add(&mut self.label_values, lk.0.clone(), lk.1.clone());
                    }
                    add(&mut self.pods_by_label, lk, pk.clone());
                }
            }
            "events" => {
                let about = str_at(obj, "/involvedObject/uid");
                if !about.is_empty() {
                    add(&mut self.events_by_uid, about.to_string(), key.clone());
                }
            }
            _ => {}
        }
    }

    pub fn remove(&mut self, key: &Key, obj: &Value) {
        let uid = str_at(obj, "/metadata/uid");
        if self.by_uid.get(uid) == Some(key) {
            self.by_uid.remove(uid);
        }
        for o in owner_uids(obj) {
            del(&mut self.dependents, &o.to_string(), key);
        }
        match key.0.as_str() {
            "pods" => {
                let pk = (key.1.clone(), key.2.clone());
                if let Some(node) = holding_node(obj)
                    && let Some(u) = self.usage.get_mut(node)
                {
                    u.pods -= 1;
                    for (r, q) in pod_requests(obj) {
                        if let Some(sum) = u.requested.get_mut(&r) {
                            *sum -= q;
                            if *sum == 0 {
                                u.requested.remove(&r);
                            }
                        }
                    }
                    if u.pods <= 0 {
                        self.usage.remove(node);
                    }
                }
                del(
                    &mut self.pods_by_node,
                    &str_at(obj, "/spec/nodeName").to_string(),
                    &pk,
                );
                for c in claims_of(obj) {
                    del(
                        &mut self.pods_by_claim,
                        &(key.1.clone(), c.to_string()),
                        &pk,
                    );
                }
                for f in INDEXED_POD_FIELDS {
                    del(&mut self.pods_by_field, &(f, field_value(obj, f)), &pk);
                }
                for (k, v) in labels_of(obj) {
                    let lk = (k.to_string(), v.to_string());
                    del(&mut self.pods_by_label, &lk, &pk);
                    if !self.pods_by_label.contains_key(&lk) {
                        del(&mut self.label_values, &lk.0, &lk.1);
                    }
                }
            }
            "events" => {
                let about = str_at(obj, "/involvedObject/uid");
                del(&mut self.events_by_uid, &about.to_string(), key);
            }
            _ => {}
        }
    }

    /// Pods bound to `node` ("" = unscheduled).
    pub fn pods_on(&self, node: &str) -> Vec<PodKey> {
        self.pods_by_node
            .get(node)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// What the pods holding resources on `node` request (zero when none do).
    pub fn usage_on(&self, node: &str) -> NodeUsage {
        self.usage.get(node).cloned().unwrap_or_default()
    }

    /// How many pods are bound to `node`.
    pub fn pod_count_on(&self, node: &str) -> usize {
        self.pods_by_node.get(node).map_or(0, BTreeSet::len)
    }

    /// Pods in `ns` mounting the claim `claim`.
    pub fn pods_with_claim(&self, ns: &str, claim: &str) -> Vec<PodKey> {
        self.pods_by_claim
            .get(&(ns.to_string(), claim.to_string()))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The pods whose `field` (one of [`INDEXED_POD_FIELDS`]) renders as `value`
    /// for a field selector, in (namespace, name) order; `None` when the field is not
    /// indexed.
    pub fn pods_where(
        &self,
        field: &str,
        value: &str,
    ) -> Option<impl Iterator<Item = &PodKey> + '_> {
        let f = INDEXED_POD_FIELDS.into_iter().find(|f| *f == field)?;
        Some(
            self.pods_by_field
                .get(&(f, value.to_string()))
                .into_iter()
                .flatten(),
        )
    }

    /// The pods of `ns` that may match an equality selector (`{app: web, tier: fe}`):
    /// those carrying its rarest label, for the caller to check against the whole
    /// selector. Empty when some label is on no pod; `None` for an empty selector
    /// (which the index cannot narrow).
    pub fn pods_with_labels<'a>(
        &'a self,
        ns: &str,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Option<Vec<PodKey>> {
        let mut rarest: Option<&BTreeSet<PodKey>> = None;
        for (k, v) in labels {
            let Some(set) = self.pods_by_label.get(&(k.to_string(), v.to_string())) else {
                return Some(Vec::new());
            };
            if rarest.is_none_or(|r| set.len() < r.len()) {
                rarest = Some(set);
            }
        }
        rarest.map(|s| in_namespace(s, Some(ns)).cloned().collect())
    }

    /// The pods (of `ns`, or all) that may match a label selector, in (namespace,
    /// name) order: those its narrowest `=`, `in` or exists requirement admits, for
    /// the caller to check against the whole selector. `None` when no requirement can
    /// be served from the index (only `!=`, `notin`, `!key`, or an empty selector).
    pub fn pods_matching_labels(
        &self,
        ns: Option<&str>,
        sel: &LabelSelector,
    ) -> Option<Vec<PodKey>> {
        // Each narrowing requirement as the index sets it is the union of.
        let sets = |r: &LabelReq| -> Option<Vec<&BTreeSet<PodKey>>> {
            let of = |k: &str, v: &str| self.pods_by_label.get(&(k.to_string(), v.to_string()));
            match r {
                LabelReq::Eq(k, v) => Some(of(k, v).into_iter().collect()),
                LabelReq::In(k, vs) => {
                    let mut vs: Vec<&String> = vs.iter().collect();
                    vs.sort();
                    vs.dedup();
                    Some(vs.into_iter().filter_map(|v| of(k, v)).collect())
                }
                LabelReq::Exists(k) => Some(
                    self.label_values
                        .get(k)
                        .into_iter()
                        .flatten()
                        .filter_map(|v| of(k, v))
                        .collect(),
                ),
                LabelReq::NotEq(..) | LabelReq::NotIn(..) | LabelReq::NotExists(_) => None,
            }
        };
        let narrowest = sel
            .reqs
            .iter()
            .filter_map(sets)
            .min_by_key(|s| s.iter().map(|s| s.len()).sum::<usize>())?;
        let mut keys: Vec<PodKey> = narrowest
            .into_iter()
            .flat_map(|s| in_namespace(s, ns))
            .cloned()
            .collect();
        // The sets of different values of one key are disjoint: sorting is enough.
        keys.sort_unstable();
        Some(keys)
    }

    pub fn by_uid(&self, uid: &str) -> Option<&Key> {
        self.by_uid.get(uid)
    }

    /// Objects listing `uid` among their owners.
    pub fn dependents(&self, uid: &str) -> Vec<Key> {
        self.dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Events whose involvedObject has this uid.
    pub fn events_about(&self, uid: &str) -> Vec<Key> {
        self.events_by_uid
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, labels: Value) -> (Key, Value) {
        let key = ("pods".to_string(), "prod".to_string(), name.to_string());
        (
            key,
            json!({"metadata": {"name": name, "namespace": "prod", "labels": labels}}),
        )
    }

    #[test]
    fn a_selector_reads_the_pods_of_its_rarest_label_and_follows_relabelling() {
        let mut ix = Indexes::default();
        let mut all = Vec::new();
        for i in 0..100 {
            let track = if i < 3 { "canary" } else { "stable" };
            let (k, p) = pod(&format!("web-{i}"), json!({"app": "web", "track": track}));
            ix.insert(&k, &p);
            all.push((k, p));
        }
        let sel = [("app", "web"), ("track", "canary")];
        let got = ix.pods_with_labels("prod", sel).unwrap();
        assert_eq!(got.len(), 3, "only the canary pods are read, not all 100");
        assert!(
            ix.pods_with_labels("prod", [("app", "db")])
                .unwrap()
                .is_empty()
        );
        assert!(ix.pods_with_labels("other", sel).unwrap().is_empty());
        assert!(
            ix.pods_with_labels("prod", []).is_none(),
            "an empty selector is not narrowed"
        );
        // web-0 relabelled stable leaves the canary set; removed pods leave every set.
        let (k, old) = all[0].clone();
        ix.remove(&k, &old);
        ix.insert(
            &k,
            &pod("web-0", json!({"app": "web", "track": "stable"})).1,
        );
        assert_eq!(ix.pods_with_labels("prod", sel).unwrap().len(), 2);
        let (k, p) = all[1].clone();
        ix.remove(&k, &p);
        assert_eq!(
            ix.pods_with_labels("prod", sel).unwrap(),
            [("prod".to_string(), "web-2".to_string())]
        );
    }

    /// The old way: sum the requests of every pod on the node again.
    fn usage_by_scan(pods: &BTreeMap<Key, Value>, node: &str) -> NodeUsage {
        let mut u = NodeUsage::default();
        for p in pods.values().filter(|p| holding_node(p) == Some(node)) {
            u.pods += 1;
            for (r, q) in pod_requests(p) {
                *u.requested.entry(r).or_default() += q;
            }
        }
        u.requested.retain(|_, q| *q != 0);
        u
    }

    proptest::proptest! {
        /// However pods are created, moved, resized, finished and deleted, the kept
        /// per-node sums equal the sums computed from scratch.
        #[test]
        fn node_usage_kept_by_writes_equals_a_recount(
            writes in proptest::collection::vec(
                (0..12usize, 0..4usize, 0..4usize, 0..3000i64, 0..3usize, proptest::bool::ANY),
                1..80,
            ),
        ) {
            const NODES: [&str; 4] = ["", "n0", "n1", "n2"];
            const PHASES: [&str; 4] = ["Pending", "Running", "Succeeded", "Failed"];
            let mut ix = Indexes::default();
            let mut pods: BTreeMap<Key, Value> = BTreeMap::new();
            for (i, node, phase, cpu, mem, delete) in writes {
                let key = ("pods".to_string(), "prod".to_string(), format!("p{i}"));
                if let Some(old) = pods.remove(&key) {
                    ix.remove(&key, &old);
                }
                if delete {
                    continue;
                }
                let p = json!({
                    "metadata": {"name": key.2, "namespace": "prod"},
                    "spec": {"nodeName": NODES[node], "containers": [
                        {"name": "a", "resources": {"requests": {"cpu": format!("{cpu}m")}}},
                        {"name": "b", "resources": {"limits": {"memory": format!("{mem}Gi")}}},
                    ]},
                    "status": {"phase": PHASES[phase]},
                });
                ix.insert(&key, &p);
                pods.insert(key, p);
            }
            for node in NODES {
                let mut kept = ix.usage_on(node);
                kept.requested.retain(|_, q| *q != 0);
                proptest::prop_assert_eq!(kept, usage_by_scan(&pods, node), "node {:?}", node);
            }
        }
    }
}
