//! Managers outside the cluster's own controllers: a cloud provider's addon that keeps
//! its ResourceQuota in every namespace (GKE's `gke-resource-quotas`), an operator that
//! keeps its ConfigMap. Deleting such an object through the API removes it; the
//! manager notices and creates it again as declared, with a new uid, resourceVersion
//! and creationTimestamp, its name in `metadata.managedFields`, and an event — the
//! reason deleting a managed quota "does not help" in real incidents.

use super::*;
use crate::lab::clock::ts;
use crate::lab::scenario_model::Managed;
use crate::lab::state::{ManagedSlot, State};

/// Take the scenario's object under management: remember it as declared, and mark
/// the stored object with its manager (as the real object carries it).
pub(crate) fn adopt(st: &mut State, rule: Managed, resource: String, namespace: String) {
    let Some(obj) = st.store.get(&resource, &namespace, &rule.name).cloned() else {
        return;
    };
    let mut template = obj.clone();
    if let Some(m) = template["metadata"].as_object_mut() {
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "generation",
            "managedFields",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            m.remove(k);
        }
    }
    if let Some(m) = template.as_object_mut() {
        m.remove("status");
    }
    if obj.pointer("/metadata/managedFields").is_none() {
        let mut marked = obj.clone();
        marked["metadata"]["managedFields"] = managed_fields(&rule.manager, &obj, st.now());
        st.store.update(&resource, &namespace, &rule.name, marked);
    }
    st.managed.push(ManagedSlot {
        rule,
        resource,
        namespace,
        template,
        gone_since: None,
    });
}

fn managed_fields(manager: &str, obj: &Value, now: chrono::DateTime<chrono::Utc>) -> Value {
    json!([{
        "manager": manager,
        "operation": "Update",
        "apiVersion": obj["apiVersion"],
        "time": ts(now),
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {}},
    }])
}

/// Notice managed objects that are gone; put them back once `recreate_after` passed.
pub(super) fn managed_objects(st: &mut State, d: &Dirty) {
    let now = st.now();
    for i in 0..st.managed.len() {
        let slot = &st.managed[i];
        if !d.all && slot.gone_since.is_none() && !d.touched(&slot.resource) {
            continue;
        }
        let delay = slot.rule.recreate_after.0;
        let exists = st
            .store
            .get(&slot.resource, &slot.namespace, &slot.rule.name)
            .is_some();
        match (exists, slot.gone_since) {
            (true, _) => st.managed[i].gone_since = None,
            (false, None) => {
                st.managed[i].gone_since = Some(now);
                st.wake_at(now + delay);
            }
            (false, Some(since)) if now < since + delay => st.wake_at(since + delay),
            (false, Some(since)) => {
                let slot = st.managed[i].clone();
                let mut obj = slot.template.clone();
                obj["metadata"]["managedFields"] = managed_fields(&slot.rule.manager, &obj, now);
                let Some(def) = resources::by_key(&slot.resource) else {
                    continue;
                };
                if let Ok(created) = st.store.create(def, &slot.namespace, obj, now, false) {
                    let gone = (now - since).num_seconds();
                    st.record_event(
                        &created,
                        "Normal",
                        "Recreated",
                        &format!(
                            "{} {} was deleted {gone}s ago; {} created it again",
                            slot.rule.kind, slot.rule.name, slot.rule.manager
                        ),
                        &slot.rule.manager,
                    );
                }
                st.managed[i].gone_since = None;
            }
        }
    }
}
