//! The endpoints and EndpointSlice controllers (`pkg/controller/endpoint`,
//! `pkg/controller/endpointslice`): every Service with a selector gets an Endpoints
//! object of the same name and one EndpointSlice (`<service>-<5 letters>`, labelled
//! `kubernetes.io/service-name`) listing the pods it selects that have an IP and are
//! not being deleted — Ready pods as `addresses` (slice `ready: true`), the others as
//! `notReadyAddresses` (slice `ready: false`). A Service without a selector is left
//! alone, as the real controllers leave it (its endpoints are written by hand).
//! Services also get the API server's defaults (`type: ClusterIP`, a `clusterIP`).

use serde_json::{Value, json};

use super::*;
use crate::lab::select::LabelSelector;
use crate::lab::state::{State, pod_ready, str_at};

const SERVICE_NAME: &str = "kubernetes.io/service-name";
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";

/// Recompute the endpoints of the Services a change concerns: a changed Service, or
/// one whose selector matches a changed pod (before or after the change). A Service's
/// pods are found through the store's label index (its rarest label), so a change costs
/// work proportional to the pods the concerned Services select, not to the namespace.
pub(super) fn endpoints(st: &mut State, d: &Dirty) {
    if !d.touched("services") && !d.touched("pods") {
        return;
    }
    // The endpoints controller deletes the Endpoints of a deleted Service (the
    // slice goes with its owner reference).
    let gone: Vec<(String, String)> = d
        .versions("services")
        .map(|s| {
            (
                str_at(s, "/metadata/namespace").to_string(),
                str_at(s, "/metadata/name").to_string(),
            )
        })
        .filter(|(ns, n)| st.store.get("services", ns, n).is_none())
        .collect();
    for (ns, n) in gone {
        if st.store.get("endpoints", &ns, &n).is_some() {
            st.remove(res("endpoints"), &ns, &n);
        }
    }
    let namespaces: BTreeSet<String> = if d.all {
        st.store
            .list("services", None)
            .map(|s| str_at(s, "/metadata/namespace").to_string())
            .collect()
    } else {
        d.versions("pods")
            .chain(d.versions("services"))
            .map(|o| str_at(o, "/metadata/namespace").to_string())
            .collect()
    };
    for ns in namespaces {
        // Only the concerned services are cloned (a full pass concerns them all).
        let concerned: Vec<Value> = st
            .store
            .list("services", Some(&ns))
            .filter(|svc| d.all || concerns(d, &ns, svc))
            .cloned()
            .collect();
        for svc in concerned {
            let Some(labels) = svc
                .pointer("/spec/selector")
                .and_then(Value::as_object)
                .cloned()
            else {
                let _ = default_service(st, svc);
                continue;
            };
            let svc = default_service(st, svc);
            let selected = selected_pods(st, &ns, &labels);
            let selected: Vec<&Value> = selected.iter().collect();
            write_endpoints(st, &ns, &svc, &selected);
            write_slice(st, &ns, &svc, &selected);
        }
    }
}

/// Does this change concern the service: did it change itself, or does its selector
/// match a changed pod (before or after the change)?
fn concerns(d: &Dirty, ns: &str, svc: &Value) -> bool {
    let name = str_at(svc, "/metadata/name");
    if d.versions("services")
        .any(|s| str_at(s, "/metadata/namespace") == ns && str_at(s, "/metadata/name") == name)
    {
        return true;
    }
    let Some(labels) = svc.pointer("/spec/selector").and_then(Value::as_object) else {
        return false;
    };
    d.versions("pods").any(|p| {
        str_at(p, "/metadata/namespace") == ns
            && labels.iter().all(|(k, v)| {
                p.pointer("/metadata/labels")
                    .and_then(|l| l.get(k))
                    .is_some_and(|pv| pv == v)
            })
    })
}

/// The pods of `ns` a service selector picks that belong in its endpoints: with an IP,
/// not being deleted, Running or Pending.
fn selected_pods(st: &State, ns: &str, labels: &serde_json::Map<String, Value>) -> Vec<Value> {
    let sel = LabelSelector::from_object(&json!({ "matchLabels": labels }));
    let eligible = |p: &Value| {
        sel.matches(p)
            && !str_at(p, "/status/podIP").is_empty()
            && p.pointer("/metadata/deletionTimestamp").is_none()
            && matches!(str_at(p, "/status/phase"), "Running" | "Pending")
    };
    let pairs = labels
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)));
    match st.store.index.pods_with_labels(ns, pairs) {
        Some(keys) => pods_by_key(st, &keys)
            .into_iter()
            .filter(|p| eligible(p))
            .collect(),
        // An empty selector: the index cannot narrow it.
        None => st
            .store
            .list("pods", Some(ns))
            .filter(|p| eligible(p))
            .cloned()
            .collect(),
    }
}

/// `type: ClusterIP` and a cluster IP from 10.96.0.0/12, as the API server assigns.
fn default_service(st: &mut State, svc: Value) -> Value {
    if svc.pointer("/spec/clusterIP").is_some() && svc.pointer("/spec/type").is_some() {
        return svc;
    }
    let mut s = svc.clone();
    if s.pointer("/spec/type").is_none() {
        s["spec"]["type"] = json!("ClusterIP");
    }
    if s.pointer("/spec/clusterIP").is_none() {
        st.next_ip += 1;
        let ip = format!("10.96.{}.{}", st.next_ip / 250, st.next_ip % 250 + 2);
        s["spec"]["clusterIP"] = json!(ip);
        s["spec"]["clusterIPs"] = json!([ip]);
    }
    let (ns, name) = (
        str_at(&svc, "/metadata/namespace").to_string(),
        str_at(&svc, "/metadata/name").to_string(),
    );
    st.store.update("services", &ns, &name, s.clone());
    s
}

/// The service's ports with `targetPort` resolved to a number (a named target port is
/// looked up in the first selected pod's container ports; absent: the service port).
fn ports(svc: &Value, pod: Option<&Value>) -> Vec<Value> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let port = match &p["targetPort"] {
                Value::Number(n) => json!(n),
                Value::String(name) => pod
                    .and_then(|pod| named_port(pod, name))
                    .map_or(p["port"].clone(), |n| json!(n)),
                _ => p["port"].clone(),
            };
            let mut out = json!({"port": port, "protocol": p.get("protocol").cloned().unwrap_or(json!("TCP"))});
            if let Some(n) = p.get("name").filter(|n| n.as_str().is_some_and(|s| !s.is_empty())) {
                out["name"] = n.clone();
            }
            out
        })
        .collect()
}

fn named_port(pod: &Value, name: &str) -> Option<i64> {
    pod.pointer("/spec/containers")?
        .as_array()?
        .iter()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_i64())
}

fn target_ref(pod: &Value) -> Value {
    json!({"kind": "Pod", "namespace": pod["metadata"]["namespace"],
        "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]})
}

fn write_endpoints(st: &mut State, ns: &str, svc: &Value, pods: &[&Value]) {
    let name = str_at(svc, "/metadata/name").to_string();
    let address = |p: &Value| json!({"ip": p["status"]["podIP"], "nodeName": p["spec"]["nodeName"], "targetRef": target_ref(p)});
    let ready: Vec<Value> = pods
        .iter()
        .filter(|p| pod_ready(p))
        .map(|p| address(p))
        .collect();
    let not_ready: Vec<Value> = pods
        .iter()
        .filter(|p| !pod_ready(p))
        .map(|p| address(p))
        .collect();
    let mut subset = json!({"ports": ports(svc, pods.first().copied())});
    if !ready.is_empty() {
        subset["addresses"] = json!(ready);
    }
    if !not_ready.is_empty() {
        subset["notReadyAddresses"] = json!(not_ready);
    }
    let subsets = if pods.is_empty() {
        json!([])
    } else {
        json!([subset])
    };
    let labels = svc
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    match st.store.get("endpoints", ns, &name).cloned() {
        Some(old) => {
            let mut new = old.clone();
            new["subsets"] = subsets;
            new["metadata"]["labels"] = labels;
            if new != old {
                st.store.update("endpoints", ns, &name, new);
            }
        }
        None => {
            let now = st.now();
            let obj = json!({"metadata": {"name": name, "labels": labels}, "subsets": subsets});
            let _ = st.store.create(res("endpoints"), ns, obj, now, false);
        }
    }
}

fn write_slice(st: &mut State, ns: &str, svc: &Value, pods: &[&Value]) {
    let svc_name = str_at(svc, "/metadata/name").to_string();
    let endpoints: Vec<Value> = pods
        .iter()
        .map(|p| {
            let ready = pod_ready(p);
            json!({"addresses": [p["status"]["podIP"]],
                "conditions": {"ready": ready, "serving": ready, "terminating": false},
                "nodeName": p["spec"]["nodeName"], "targetRef": target_ref(p)})
        })
        .collect();
    let key = "endpointslices.discovery.k8s.io";
    let existing = st
        .store
        .list(key, Some(ns))
        .find(|s| {
            s.pointer(&format!(
                "/metadata/labels/{}",
                SERVICE_NAME.replace('/', "~1")
            )) == Some(&json!(svc_name))
        })
        .cloned();
    match existing {
        Some(old) => {
            let mut new = old.clone();
            new["endpoints"] = json!(endpoints);
            new["ports"] = json!(ports(svc, pods.first().copied()));
            if new != old {
                let name = str_at(&old, "/metadata/name").to_string();
                st.store.update(key, ns, &name, new);
            }
        }
        None => {
            let now = st.now();
            let obj = json!({
                "metadata": {"generateName": format!("{svc_name}-"),
                    "labels": {SERVICE_NAME: svc_name, MANAGED_BY: "endpointslice-controller.k8s.io"},
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": svc_name,
                        "uid": svc["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]},
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": ports(svc, pods.first().copied()),
            });
            let _ = st.store.create(res(key), ns, obj, now, false);
        }
    }
}

/// The ready endpoints of a service: (pod name, pod IP). What a site answers from.
pub fn ready_endpoints(st: &State, ns: &str, service: &str) -> Vec<(String, String)> {
    st.store
        .get("endpoints", ns, service)
        .and_then(|e| e.pointer("/subsets").and_then(Value::as_array))
        .into_iter()
        .flatten()
        .flat_map(|s| s["addresses"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            (
                str_at(&a, "/targetRef/name").to_string(),
                str_at(&a, "/ip").to_string(),
            )
        })
        .collect()
}
