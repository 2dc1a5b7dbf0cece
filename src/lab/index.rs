//! Secondary indexes of the store, kept up to date on every write, so controllers find
//! what a change affects without scanning every object: pods by node and by claim,
//! objects by uid and by owner uid, events by the object they are about.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::select::field_value;
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
    /// (namespace, label key, label value) → pods carrying that label: a Service's
    /// selector finds its pods from the rarest of its labels, not by reading every pod
    /// of the namespace (the endpoints controllers).
    pods_by_label: HashMap<(String, String, String), BTreeSet<PodKey>>,
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
                    add(
                        &mut self.pods_by_label,
                        (key.1.clone(), k.to_string(), v.to_string()),
                        pk.clone(),
                    );
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
                    del(
                        &mut self.pods_by_label,
                        &(key.1.clone(), k.to_string(), v.to_string()),
                        &pk,
                    );
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
            let Some(set) = self
                .pods_by_label
                .get(&(ns.to_string(), k.to_string(), v.to_string()))
            else {
                return Some(Vec::new());
            };
            if rarest.is_none_or(|r| set.len() < r.len()) {
                rarest = Some(set);
            }
        }
        rarest.map(|s| s.iter().cloned().collect())
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
}
