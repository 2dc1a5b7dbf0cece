//! The attach/detach controller.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::*;
use crate::lab::state::{State, str_at};

/// The PVs (name, ReadWriteOnce?) a pod mounts through its claims.
pub(super) fn pod_pvs(st: &State, pod: &Value) -> Vec<(String, bool)> {
    let ns = str_at(pod, "/metadata/namespace");
    pod.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| {
            v.pointer("/persistentVolumeClaim/claimName")
                .and_then(Value::as_str)
        })
        .filter_map(|claim| st.store.get("persistentvolumeclaims", ns, claim))
        .filter_map(|pvc| {
            let pv_name = str_at(pvc, "/spec/volumeName");
            let pv = st.store.get("persistentvolumes", "", pv_name)?;
            let rwo = pv
                .pointer("/spec/accessModes")
                .and_then(Value::as_array)
                .is_some_and(|m| {
                    m.iter()
                        .any(|x| x == "ReadWriteOnce" || x == "ReadWriteOncePod")
                });
            Some((pv_name.to_string(), rwo))
        })
        .collect()
}

pub(super) fn va_name(pv: &str, attacher: &str, node: &str) -> String {
    let d = Sha256::digest(format!("{pv}{attacher}{node}").as_bytes());
    format!(
        "csi-{}",
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// Attach/detach controller (`pkg/controller/volume/attachdetach`, §1.5–1.6): a
/// VolumeAttachment stays while a pod on its node uses the volume. When the last such
/// pod is gone it is detached at once if the node is healthy or tainted out-of-service,
/// else after the 6-minute forced-detach timer.
///
/// VolumeAttachments are few; they are looked at when anything they depend on changed:
/// attachments, volumes, claims, nodes, or a pod that mounts a claim.
pub(super) fn attach_detach(st: &mut State, d: &Dirty) {
    let relevant = d.touched("volumeattachments.storage.k8s.io")
        || d.touched("persistentvolumes")
        || d.touched("persistentvolumeclaims")
        || !d.nodes.is_empty()
        || d.versions("pods")
            .any(|p| crate::lab::index::claims_of(p).next().is_some());
    if !relevant {
        return;
    }
    let now = st.now();
    for va in st
        .store
        .list_owned("volumeattachments.storage.k8s.io", None)
    {
        let name = str_at(&va, "/metadata/name").to_string();
        let node = str_at(&va, "/spec/nodeName").to_string();
        let pv = str_at(&va, "/spec/source/persistentVolumeName").to_string();
        if !holders_on(st, &pv, &node).is_empty() {
            st.detach_since.remove(&name);
            continue;
        }
        let node_obj = st.store.get("nodes", "", &node);
        let healthy = node_obj.is_some_and(node_ready) && !st.node_lost(&node);
        let out_of_service = node_obj.is_some_and(|n| has_taint(n, OUT_OF_SERVICE));
        let gone = node_obj.is_none();
        let since = *st.detach_since.entry(name.clone()).or_insert(now);
        if healthy || out_of_service || gone || now - since >= FORCE_DETACH_AFTER {
            st.detach_since.remove(&name);
            st.store
                .remove("volumeattachments.storage.k8s.io", "", &name);
        } else {
            st.wake_at(since + FORCE_DETACH_AFTER);
        }
    }
}

/// The claims bound to the PersistentVolume `pv` (claims are few; no index needed).
pub(super) fn claims_of_pv(st: &State, pv: &str) -> Vec<(String, String)> {
    if st.store.get("persistentvolumes", "", pv).is_none() {
        return Vec::new();
    }
    st.store
        .list("persistentvolumeclaims", None)
        .filter(|c| str_at(c, "/spec/volumeName") == pv)
        .map(|c| {
            (
                str_at(c, "/metadata/namespace").to_string(),
                str_at(c, "/metadata/name").to_string(),
            )
        })
        .collect()
}

/// Pods on `node` mounting the volume `pv` through a claim, in (namespace, name) order.
pub(super) fn holders_on(st: &State, pv: &str, node: &str) -> Vec<Value> {
    let mut keys = std::collections::BTreeSet::new();
    for (ns, claim) in claims_of_pv(st, pv) {
        keys.extend(st.store.index.pods_with_claim(&ns, &claim));
    }
    pods_by_key(st, &keys)
        .into_iter()
        .filter(|p| str_at(p, "/spec/nodeName") == node)
        .collect()
}
