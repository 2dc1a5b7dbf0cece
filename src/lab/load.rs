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
    pub(super) fn build(loaded: scenario::Loaded, speed: f64, at: Option<DateTime<Utc>>) -> Lab {
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
        let mut namespaces: Vec<String> = vec!["default".into(), "kube-system".into()];
        namespaces.extend(
            loaded
                .objects
                .iter()
                .filter(|(d, _, _)| d.namespaced)
                .map(|(_, ns, _)| ns.clone()),
        );
        for ns in namespaces {
            if st.store.get("namespaces", "", &ns).is_none()
                && !loaded.objects.iter().any(|(d, _, o)| {
                    d.key() == "namespaces" && o["metadata"]["name"] == ns.as_str()
                })
            {
                let _ = st.store.create(
                    ns_def,
                    "",
                    json!({"metadata": {"name": ns}, "status": {"phase": "Active"}}),
                    start,
                    true,
                );
            }
        }
        for (def, ns, obj) in &loaded.objects {
            let mut obj = obj.clone();
            shift_timestamps(&mut obj, shift);
            if def.key() == "pods" {
                state::default_pod(&mut obj);
            }
            if obj.pointer("/metadata/creationTimestamp").is_none() {
                obj["metadata"]["creationTimestamp"] = json!(clock::ts(start));
            }
            // Cannot fail: `scenario::parse` refused duplicates, invalid names and
            // objects without a name.
            let _ = st.store.create(def, ns, obj, start, true);
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
        for rule in &loaded.scenario.managed {
            // `scenario::parse` checked that the object is declared.
            let Some((def, ns, _)) = loaded.objects.iter().find(|(d, ns, o)| {
                d.kind == rule.kind
                    && o["metadata"]["name"] == rule.name.as_str()
                    && (*ns == rule.namespace || (rule.namespace.is_empty() && ns == "default"))
            }) else {
                continue;
            };
            controllers::managed::adopt(&mut st, rule.clone(), def.key(), ns.clone());
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
        let history = super::history::History::new(&st, start, &past);
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

fn link_owner_uids(st: &mut state::State) {
    let all: Vec<(store::Key, Value)> = st
        .store
        .all()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for ((r, ns, name), obj) in &all {
        let Some(refs) = obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
        else {
            continue;
        };
        if refs
            .iter()
            .all(|o| o["uid"].as_str().is_some_and(|u| !u.is_empty()))
        {
            continue;
        }
        let mut new = obj.clone();
        if let Some(refs) = new
            .pointer_mut("/metadata/ownerReferences")
            .and_then(Value::as_array_mut)
        {
            for o in refs.iter_mut() {
                let kind = o["kind"].as_str().unwrap_or_default();
                let oname = o["name"].as_str().unwrap_or_default();
                let owner = all.iter().find(|((_, ons, n), v)| {
                    v["kind"] == kind && n == oname && (ons == ns || ons.is_empty())
                });
                if let Some((_, v)) = owner {
                    o["uid"] = v["metadata"]["uid"].clone();
                    o["apiVersion"] = v["apiVersion"].clone();
                }
            }
        }
        st.store.update(r, ns, name, new);
    }
}
