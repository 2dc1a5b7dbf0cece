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
pub(super) fn attach_detach(st: &mut State) {
    let now = st.now();
    let nodes = st.store.list_owned("nodes", None);
    for va in st
        .store
        .list_owned("volumeattachments.storage.k8s.io", None)
    {
        let name = str_at(&va, "/metadata/name").to_string();
        let node = str_at(&va, "/spec/nodeName").to_string();
        let pv = str_at(&va, "/spec/source/persistentVolumeName").to_string();
        let holders: Vec<Value> = pods_on(st, &node)
            .into_iter()
            .filter(|p| pod_pvs(st, p).iter().any(|(v, _)| *v == pv))
            .collect();
        if !holders.is_empty() {
            st.detach_since.remove(&name);
            continue;
        }
        let node_obj = nodes.iter().find(|n| str_at(n, "/metadata/name") == node);
        let healthy = node_obj.is_some_and(node_ready) && !st.node_lost(&node);
        let out_of_service = node_obj.is_some_and(|n| has_taint(n, OUT_OF_SERVICE));
        let since = *st.detach_since.entry(name.clone()).or_insert(now);
        if healthy || out_of_service || node_obj.is_none() || now - since >= FORCE_DETACH_AFTER {
            st.detach_since.remove(&name);
            st.store
                .remove("volumeattachments.storage.k8s.io", "", &name);
        }
    }
}
