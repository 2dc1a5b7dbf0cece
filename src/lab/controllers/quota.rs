//! The resource quota controller (`pkg/controller/resourcequota`): keeps each
//! ResourceQuota's `status.hard` equal to its `spec.hard` and `status.used` to what
//! the namespace uses, so `kubectl describe quota` and runbooks reading `status.used`
//! see current numbers. Admission itself is in `state/quota.rs`.

use serde_json::{Map, json};

use super::*;
use crate::lab::quantity;
use crate::lab::state::{State, str_at};

/// Refresh the quotas of every namespace whose pods or quotas changed.
pub(super) fn resource_quotas(st: &mut State, d: &Dirty) {
    if !d.touched("resourcequotas") && !d.touched("pods") {
        return;
    }
    let namespaces: BTreeSet<String> = if d.all {
        st.store
            .list("resourcequotas", None)
            .map(|q| str_at(q, "/metadata/namespace").to_string())
            .collect()
    } else {
        d.versions("pods")
            .chain(d.versions("resourcequotas"))
            .map(|o| str_at(o, "/metadata/namespace").to_string())
            .collect()
    };
    for ns in namespaces {
        let quotas = st.store.list_owned("resourcequotas", Some(&ns));
        if quotas.is_empty() {
            continue;
        }
        let used = st.quota_used(&ns);
        for q in quotas {
            let hard = q.pointer("/spec/hard").cloned().unwrap_or(json!({}));
            let mut shown = Map::new();
            for k in hard.as_object().into_iter().flatten().map(|(k, _)| k) {
                let v = match used.get(k) {
                    Some(v) => quantity::format(k, *v),
                    None => object_count(st, &ns, k)
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| "0".into()),
                };
                shown.insert(k.clone(), json!(v));
            }
            let mut new = q.clone();
            new["status"] = json!({"hard": hard, "used": shown});
            if new != q {
                let name = str_at(&q, "/metadata/name").to_string();
                st.store.update("resourcequotas", &ns, &name, new);
            }
        }
    }
}

/// Object-count quotas (`services`, `configmaps`, `count/deployments.apps`): how many
/// such objects the namespace holds, when the lab serves the kind.
fn object_count(st: &State, ns: &str, key: &str) -> Option<usize> {
    let plural = key.strip_prefix("count/").unwrap_or(key);
    let def = crate::lab::resources::by_key(plural)?;
    Some(st.store.list(&def.key(), Some(ns)).count())
}
