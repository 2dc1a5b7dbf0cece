//! Building a lab from a loaded scenario: its objects re-based to the lab's start
//! time, namespaces created, owner references linked, the controllers run once.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{
    Inner, Lab, RequestLog, clock, controllers, faults, resources, scenario, state, store,
};

impl Lab {
    pub(super) fn build(
        mut loaded: scenario::Loaded,
        speed: f64,
        at: Option<DateTime<Utc>>,
    ) -> Lab {
        // The scenario's timestamps are written against its `start`; the lab re-bases
        // them so that `start` is now (or `at`). kubectl computes some ages client-side
        // (describe's events) from the wall clock, so for kubectl cluster time must stay
        // close to it.
        let start = at.unwrap_or_else(Utc::now);
        let shift = loaded
            .start
            .map(|s| start - s)
            .unwrap_or_else(chrono::Duration::zero);
        let clock = clock::Clock::new(start, speed);
        let faults = loaded
            .fault_offsets
            .iter()
            .copied()
            .zip(loaded.scenario.faults.iter().cloned())
            .collect();
        let mut st = state::State::new(clock, faults, loaded.scenario.metrics.clone());
        let ns_def = resources::by_key("namespaces").expect("invariant: namespaces are served");
        // Each namespace an object is in, once (a namespace the scenario declares
        // itself is created with its objects).
        let declared: std::collections::HashSet<&str> = loaded
            .objects
            .iter()
            .filter(|(d, _, _)| d.key() == "namespaces")
            .filter_map(|(_, _, o)| o["metadata"]["name"].as_str())
            .collect();
        let mut namespaces: std::collections::BTreeSet<&str> =
            ["default", "kube-system"].into_iter().collect();
        namespaces.extend(
            loaded
                .objects
                .iter()
                .filter(|(d, _, _)| d.namespaced)
                .map(|(_, ns, _)| ns.as_str()),
        );
        for ns in namespaces.into_iter().filter(|ns| !declared.contains(ns)) {
            let _ = st.store.create(
                ns_def,
                "",
                json!({"metadata": {"name": ns}, "status": {"phase": "Active"}}),
                start,
                true,
            );
        }
        // The managed rules' objects, found before the objects move into the store.
        let managed: Vec<_> = loaded
            .scenario
            .managed
            .iter()
            .filter_map(|rule| {
                // `scenario::parse` checked that the object is declared.
                let (def, ns, _) = loaded.objects.iter().find(|(d, ns, o)| {
                    d.kind == rule.kind
                        && o["metadata"]["name"] == rule.name.as_str()
                        && (*ns == rule.namespace || (rule.namespace.is_empty() && ns == "default"))
                })?;
                Some((rule.clone(), def.key(), ns.clone()))
            })
            .collect();
        for (def, ns, mut obj) in std::mem::take(&mut loaded.objects) {
            shift_timestamps(&mut obj, shift);
            if def.key() == "pods" {
                state::default_pod(&mut obj);
            }
            if obj.pointer("/metadata/creationTimestamp").is_none() {
                obj["metadata"]["creationTimestamp"] = json!(clock::ts(start));
            }
            // Cannot fail: `scenario::parse` refused duplicates, invalid names and
            // objects without a name.
            let _ = st.store.create(def, &ns, obj, start, true);
        }
        // Node pools start with `nodes` (default `min`) Ready nodes each.
        st.node_pools = loaded.scenario.node_pools.clone();
        st.autoscaler = loaded.scenario.autoscaler.clone();
        st.logs = loaded.scenario.logs.clone();
        st.ready_after = loaded
            .scenario
            .timing
            .ready_after
            .map_or(chrono::Duration::zero(), |s| s.0);
        for f in &loaded.scenario.pod_faults {
            st.pod_faults.push(state::ActivePodFault {
                namespace: f.namespace.clone(),
                scope: f.scope.clone(),
                kind: f.kind.clone(),
                from: start + f.at,
                until: f.until.map(|u| start + u),
            });
        }
        for f in &loaded.scenario.node_faults {
            st.node_faults.push(state::ActiveNodeFault {
                scope: f.scope.clone(),
                kind: f.kind,
                from: start + f.at,
                until: f.until.map(|u| start + u),
                evict: f.evict,
            });
        }
        st.sites = super::sites::Sites::new(loaded.scenario.sites.clone());
        st.rbac = loaded.scenario.rbac.clone();
        for pool in &loaded.scenario.node_pools {
            for _ in 0..pool.nodes.unwrap_or(pool.min) {
                let node = controllers::autoscaler::pool_node(&mut st, pool, true);
                let _ = st.store.create(
                    resources::by_key("nodes").expect("invariant: nodes are served"),
                    "",
                    node,
                    start,
                    true,
                );
            }
        }
        for (rule, key, ns) in managed {
            controllers::managed::adopt(&mut st, rule, key, ns);
        }
        link_owner_uids(&mut st);
        st.link_event_uids();
        controllers::reconcile_all(&mut st);
        let mut api_faults = faults::Faults::default();
        for f in &loaded.scenario.api_faults {
            api_faults.push(f.clone());
        }
        // The scenario's declared past of each metric (`history:`), before `start`.
        let past: Vec<Vec<(DateTime<Utc>, f64)>> = loaded
            .scenario
            .metrics
            .iter()
            .map(|m| {
                m.history
                    .iter()
                    .filter_map(|p| Some((start.checked_add_signed(p.at.0)?, p.value)))
                    .collect()
            })
            .collect();
        let history =
            super::history::History::new(&st, start, &past, loaded.scenario.alerts.clone());
        Lab {
            inner: Arc::new(Inner {
                state: std::sync::RwLock::new(st),
                history: Mutex::new(history),
                requests: Mutex::new(RequestLog::default()),
                faults: Mutex::new(api_faults),
                ticker: AtomicBool::new(false),
                name: loaded.scenario.name.clone(),
            }),
        }
    }
}

/// Move every RFC 3339 timestamp in an object by `shift`.
fn shift_timestamps(v: &mut Value, shift: chrono::Duration) {
    match v {
        Value::String(s) => {
            if s.len() >= 20
                && s.as_bytes().get(10) == Some(&b'T')
                && let Some(t) = clock::parse_ts(s).and_then(|t| t.checked_add_signed(shift))
            {
                *s = clock::ts(t);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| shift_timestamps(x, shift)),
        Value::Object(m) => m.values_mut().for_each(|x| shift_timestamps(x, shift)),
        _ => {}
    }
}

/// Fill in the uid (and apiVersion) of owner references the scenario wrote by kind
/// and name only. Only the objects that need it are copied, and owners are found by
/// (kind, namespace, name) in a map, not by reading every object for each reference.
fn link_owner_uids(st: &mut state::State) {
    let unlinked: Vec<(store::Key, Value)> = st
        .store
        .all()
        .filter(|(_, obj)| {
            obj.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|o| o["uid"].as_str().is_none_or(str::is_empty))
                })
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if unlinked.is_empty() {
        return;
    }
    // (kind, namespace, name) → (uid, apiVersion); the first of a kind and name wins,
    // in store order, as the scan this replaces found it.
    let mut owners: std::collections::HashMap<(&str, &str, &str), (&Value, &Value)> =
        std::collections::HashMap::new();
    for ((_, ns, name), v) in st.store.all() {
        let kind = v["kind"].as_str().unwrap_or_default();
        owners
            .entry((kind, ns.as_str(), name.as_str()))
            .or_insert((&v["metadata"]["uid"], &v["apiVersion"]));
    }
    let mut updates = Vec::with_capacity(unlinked.len());
    for ((r, ns, name), mut new) in unlinked {
        if let Some(refs) = new
            .pointer_mut("/metadata/ownerReferences")
            .and_then(Value::as_array_mut)
        {
            for o in refs.iter_mut() {
                let kind = o["kind"].as_str().unwrap_or_default();
                let oname = o["name"].as_str().unwrap_or_default();
                // The owner in the same namespace, or a cluster-scoped one.
                let owner = owners
                    .get(&(kind, ns.as_str(), oname))
                    .or_else(|| owners.get(&(kind, "", oname)))
                    .map(|(uid, api)| ((*uid).clone(), (*api).clone()));
                if let Some((uid, api)) = owner {
                    o["uid"] = uid;
                    o["apiVersion"] = api;
                }
            }
        }
        updates.push((r, ns, name, new));
    }
    drop(owners);
    for (r, ns, name, new) in updates {
        st.store.update(&r, &ns, &name, new);
    }
}
