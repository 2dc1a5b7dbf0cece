//! Reads: get one object, list with selectors and paging (as JSON or as the Table
//! kubectl prints), and pod logs.

use axum::body::Body;
use axum::response::Response;
use http::{StatusCode, header};
use serde_json::{Value, json};

use super::{Params, Target, err, json_response};
use crate::lab::Lab;
use crate::lab::resources::{self, ResourceDef};
use crate::lab::select::{FieldSelector, LabelSelector};
use crate::lab::state::str_at;
use crate::lab::status::ApiError;
use crate::lab::table::{self, IncludeObject};

/// `GET pods/{name}/log`: the real apiserver proxies to the node's kubelet. The lab
/// has no containers, so it answers what a user would get: a 400 for a container that
/// has not started, a kubelet dial timeout for a pod on a lost node, else a short
/// simulated log.
pub(super) fn pod_log(lab: &Lab, ns: &str, name: &str, params: &Params) -> Response {
    let st = lab.read();
    let pods = resources::by_key("pods").expect("invariant: pods are a served resource");
    let Some(pod) = st.store.get("pods", ns, name) else {
        return err(ApiError::not_found(pods, name));
    };
    let containers: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect();
    let container = match params.get("container") {
        Some(c) => c.clone(),
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            )));
        }
    };
    let node = str_at(pod, "/spec/nodeName");
    if crate::lab::controllers::nodes::without_ip(&st, node) {
        // The API server finds no address to reach the kubelet at
        // (k8s.io/kubernetes pkg/util/node GetPreferredNodeAddress).
        let known: Vec<String> = st
            .store
            .get("nodes", "", node)
            .and_then(|n| n.pointer("/status/addresses").and_then(Value::as_array))
            .into_iter()
            .flatten()
            .map(|a| format!("{{{} {}}}", str_at(a, "/type"), str_at(a, "/address")))
            .collect();
        return err(ApiError::new(
            500,
            "InternalError",
            format!(
                "no preferred addresses found; known addresses: [{}]",
                known.join(" ")
            ),
        ));
    }
    if st.node_lost(node) {
        let ip = str_at(pod, "/status/hostIP");
        let ip = if ip.is_empty() { node } else { ip };
        return err(ApiError::new(
            500,
            "InternalError",
            format!(
                "Get \"https://{ip}:10250/containerLogs/{ns}/{name}/{container}\": dial tcp {ip}:10250: i/o timeout"
            ),
        ));
    }
    let status = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["name"] == container.as_str()));
    if let Some(reason) = status
        .and_then(|c| c.pointer("/state/waiting/reason"))
        .and_then(Value::as_str)
        && reason != "CrashLoopBackOff"
    {
        return err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        )));
    }
    if status.is_none() {
        return err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
        )));
    }
    let text = match scenario_log(&st, pod, &container, params) {
        Ok(Some(text)) => text,
        Ok(None) => format!(
            "[runbook lab] simulated container {container} of pod {ns}/{name}: no real log is kept\n"
        ),
        Err(e) => return err(e),
    };
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(text))
        .unwrap_or_default()
}

/// The lines the scenario's `logs` give this container, filtered as the kubelet
/// filters them (`previous`, `sinceSeconds`, `sinceTime`, `tailLines`, `timestamps`);
/// `None` when the scenario says nothing about it.
fn scenario_log(
    st: &crate::lab::state::State,
    pod: &Value,
    container: &str,
    params: &Params,
) -> Result<Option<String>, ApiError> {
    use crate::lab::clock::{parse_ts, ts};
    let Some(spec) = st.logs.iter().find(|l| l.applies(pod, container)) else {
        return Ok(None);
    };
    let now = st.now();
    let flag = |k: &str| params.get(k).is_some_and(|v| v == "true");
    let started = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["name"] == container))
        .and_then(|c| c.pointer("/state/running/startedAt"))
        .or_else(|| pod.pointer("/status/startTime"))
        .and_then(Value::as_str)
        .and_then(parse_ts)
        .unwrap_or(now);
    let mut lines: Vec<(chrono::DateTime<chrono::Utc>, &str)> = if flag("previous") {
        if spec.previous.is_empty() {
            return Err(ApiError::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{}\" not found",
                str_at(pod, "/metadata/name")
            )));
        }
        // The previous container ended when this one started.
        spec.previous
            .iter()
            .map(|l| (started, l.as_str()))
            .collect()
    } else {
        let start = st.clock.start();
        spec.lines
            .iter()
            .map(|l| (started, l.as_str()))
            .chain(spec.timed.iter().map(|t| (start + t.at.0, t.text.as_str())))
            .filter(|(t, _)| *t <= now)
            .collect()
    };
    lines.sort_by_key(|(t, _)| *t);
    let since = match (params.get("sinceSeconds"), params.get("sinceTime")) {
        (Some(s), _) => Some(
            now - chrono::Duration::seconds(
                s.parse::<i64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid sinceSeconds {s:?}")))?
                    .clamp(0, i64::from(i32::MAX)),
            ),
        ),
        (None, Some(t)) => Some(
            parse_ts(t).ok_or_else(|| ApiError::bad_request(format!("invalid sinceTime {t:?}")))?,
        ),
        _ => None,
    };
    if let Some(since) = since {
        lines.retain(|(t, _)| *t >= since);
    }
    if let Some(n) = params.get("tailLines") {
        let n: usize = n
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid tailLines {n:?}")))?;
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    let stamps = flag("timestamps");
    Ok(Some(
        lines
            .iter()
            .map(|(t, l)| {
                if stamps {
                    format!("{} {l}\n", ts(*t))
                } else {
                    format!("{l}\n")
                }
            })
            .collect(),
    ))
}

pub(super) fn selectors(
    res: &ResourceDef,
    params: &Params,
) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(
        params
            .get("labelSelector")
            .map(String::as_str)
            .unwrap_or(""),
    )
    .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let fs_text = params
        .get("fieldSelector")
        .map(String::as_str)
        .unwrap_or("");
    let fields = FieldSelector::parse(fs_text).map_err(ApiError::bad_request)?;
    if let Some(bad) = fields.unsupported(res.selectable_fields()) {
        // The real registry's message (apiserver/pkg/registry/generic/registry/store.go).
        return Err(ApiError::bad_request(format!(
            "Unable to find \"{}/{}, Resource={}\" that match label selector \"{}\", field selector \"{fs_text}\": field label not supported: {bad}",
            res.group,
            res.version,
            res.plural,
            params
                .get("labelSelector")
                .map(String::as_str)
                .unwrap_or("")
        )));
    }
    Ok((labels, fields))
}

pub(super) fn get(
    lab: &Lab,
    res: &'static ResourceDef,
    ns: &str,
    name: &str,
    as_table: bool,
    params: &Params,
) -> Result<(u16, Value), ApiError> {
    let (obj, now) = {
        let st = lab.read();
        let obj = st
            .store
            .get_shared(&res.key(), ns, name)
            .ok_or_else(|| ApiError::not_found(res, name))?;
        (obj, st.now())
    };
    if as_table {
        let include = IncludeObject::parse(params.get("includeObject").map(String::as_str));
        return Ok((200, table::table(res, &[&*obj], now, include, None)));
    }
    Ok((200, Value::clone(&obj)))
}

/// The objects a list may return, read from an index instead of a scan, in the
/// store's (namespace, name) order; every requirement is still checked on them by the
/// caller. A `metadata.name=` equality reads by key; for pods, an equality on an
/// indexed field (`spec.nodeName`, `status.phase`) or a label requirement (`=`, `in`,
/// exists) reads the matching index, the narrowest when there are several. `None`
/// when nothing narrows the list: the caller scans.
pub(crate) fn candidates<'a>(
    store: &'a crate::lab::store::Store,
    res: &str,
    ns: Option<&'a str>,
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> Option<Vec<&'a std::sync::Arc<Value>>> {
    let eqs = || fields.reqs.iter().filter(|r| !r.negated);
    if let Some(r) = eqs().find(|r| r.field == "metadata.name") {
        return Some(store.named(res, ns, &r.value));
    }
    if res != "pods" {
        return None;
    }
    let by_field: Option<Vec<_>> =
        eqs().find_map(|r| Some(store.pods_where(&r.field, &r.value, ns)?.collect()));
    let by_label = store.pods_labelled(ns, labels);
    match (by_field, by_label) {
        (Some(f), Some(l)) => Some(if l.len() < f.len() { l } else { f }),
        (f, l) => f.or(l),
    }
}

/// A list body serialised straight from the store's objects (no copy of the items).
#[derive(serde::Serialize)]
struct ListBody<'a> {
    kind: String,
    #[serde(rename = "apiVersion")]
    api_version: String,
    metadata: Value,
    items: &'a [&'a Value],
}

pub(super) fn list(
    lab: &Lab,
    t: &Target,
    params: &Params,
    as_table: bool,
) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(t.res, params)?;
    // Under the shared lock: pick the matching objects (by reference count) and the
    // resourceVersion and time they go with; encoding happens after it is released.
    let (matching, rv, now) = {
        let st = lab.read();
        let key = t.res.key();
        let ns = t.ns.as_deref();
        let keep = |o: &&std::sync::Arc<Value>| labels.matches(o) && fields.matches(o);
        let matching: Vec<std::sync::Arc<Value>> =
            match candidates(&st.store, &key, ns, &labels, &fields) {
                Some(c) => c.into_iter().filter(keep).cloned().collect(),
                None => st
                    .store
                    .list_shared(&key, ns)
                    .filter(keep)
                    .cloned()
                    .collect(),
            };
        (matching, st.store.rv(), st.now())
    };
    // The lab's tokens are the offset of the next item, as decimal digits; anything
    // else did not come from it. The API server answers such a token 400
    // (apiserver/pkg/storage/etcd3/store.go: "invalid continue token: …").
    let offset: usize = match params.get("continue").filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => c
            .parse()
            .ok()
            .filter(|_| c.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "invalid continue token: continue key is not valid: {:?} is not a token this server gave (pass metadata.continue of the previous page as it is)",
                    c.chars().take(64).collect::<String>()
                ))
            })?,
    };
    let limit: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let end = offset.saturating_add(limit).min(matching.len());
    let page: Vec<&Value> = matching[offset.min(end)..end]
        .iter()
        .map(|v| &**v)
        .collect();
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if end < matching.len() {
        meta["continue"] = json!(end.to_string());
        meta["remainingItemCount"] = json!(matching.len() - end);
    }
    if as_table {
        let include = IncludeObject::parse(params.get("includeObject").map(String::as_str));
        let mut tb = table::table(t.res, &page, now, include, Some(rv));
        tb["metadata"] = meta;
        return Ok(json_response(200, &tb));
    }
    let body = ListBody {
        kind: format!("{}List", t.res.kind),
        api_version: t.res.api_version(),
        metadata: meta,
        items: &page,
    };
    let bytes = serde_json::to_vec(&body)
        .map_err(|e| ApiError::new(500, "InternalError", format!("cannot encode the list: {e}")))?;
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(bytes))
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::store::Store;
    use proptest::prelude::*;

    const NAMESPACES: [&str; 3] = ["prod", "dev", "kube-system"];
    const KEYS: [&str; 3] = ["app", "tier", "shard"];
    const VALUES: [&str; 3] = ["a", "b", "c"];
    const NODES: [&str; 4] = ["", "n0", "n1", "n2"];
    const PHASES: [&str; 4] = ["", "Pending", "Running", "Failed"];

    /// A pod: namespace, name, a value index (or none) for each label key, node, phase.
    type PodSpec = (usize, usize, [Option<usize>; 3], usize, usize);

    fn pod_spec() -> impl Strategy<Value = PodSpec> {
        (
            0..NAMESPACES.len(),
            0..40usize,
            [
                proptest::option::of(0..VALUES.len()),
                proptest::option::of(0..VALUES.len()),
                proptest::option::of(0..VALUES.len()),
            ],
            0..NODES.len(),
            0..PHASES.len(),
        )
    }

    fn pod_json((_, name, labels, node, phase): &PodSpec) -> Value {
        let labels: serde_json::Map<String, Value> = KEYS
            .iter()
            .zip(labels)
            .filter_map(|(k, v)| Some((k.to_string(), json!(VALUES[(*v)?]))))
            .collect();
        let mut p = json!({"metadata": {"name": format!("p{name}"), "labels": labels}, "spec": {}, "status": {}});
        if !NODES[*node].is_empty() {
            p["spec"]["nodeName"] = json!(NODES[*node]);
        }
        if !PHASES[*phase].is_empty() {
            p["status"]["phase"] = json!(PHASES[*phase]);
        }
        p
    }

    /// One label requirement in the query syntax, over the small alphabet above (so
    /// requirements often match, and often on the same key).
    fn label_req() -> impl Strategy<Value = String> {
        let k = || proptest::sample::select(KEYS.to_vec());
        let v = || proptest::sample::select(VALUES.to_vec());
        prop_oneof![
            (k(), v()).prop_map(|(k, v)| format!("{k}={v}")),
            (k(), v()).prop_map(|(k, v)| format!("{k}!={v}")),
            (k(), proptest::collection::vec(v(), 1..4))
                .prop_map(|(k, vs)| format!("{k} in ({})", vs.join(","))),
            (k(), proptest::collection::vec(v(), 1..3))
                .prop_map(|(k, vs)| format!("{k} notin ({})", vs.join(","))),
            k().prop_map(String::from),
            k().prop_map(|k| format!("!{k}")),
            Just("missing=x".to_string()),
        ]
    }

    fn field_req() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(NODES.to_vec()).prop_map(|n| format!("spec.nodeName={n}")),
            proptest::sample::select(NODES.to_vec()).prop_map(|n| format!("spec.nodeName!={n}")),
            proptest::sample::select(PHASES.to_vec()).prop_map(|p| format!("status.phase={p}")),
            (0..45usize).prop_map(|i| format!("metadata.name=p{i}")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// Whatever the cluster and its history of writes, a list read from the
        /// indexes (labels, indexed fields, names) returns exactly the pods, in the
        /// same order, that a scan of every pod with the same selectors returns.
        #[test]
        fn indexed_lists_equal_a_full_scan(
            pods in proptest::collection::vec(pod_spec(), 0..60),
            rewrites in proptest::collection::vec((0..60usize, pod_spec()), 0..20),
            deletes in proptest::collection::vec(0..60usize, 0..10),
            selectors in proptest::collection::vec(
                (proptest::collection::vec(label_req(), 0..3), proptest::option::of(field_req()), proptest::option::of(0..NAMESPACES.len())),
                1..12,
            ),
        ) {
            let res = resources::by_key("pods").unwrap();
            let now = chrono::Utc::now();
            let mut store = Store::new(7);
            for p in &pods {
                // A name taken twice in a namespace is refused, as the API server does.
                let _ = store.create(res, NAMESPACES[p.0], pod_json(p), now, false);
            }
            // Relabel, move and re-phase existing pods (keeping their name and namespace).
            for (i, spec) in &rewrites {
                let Some(p) = pods.get(*i) else { continue };
                let ns = NAMESPACES[p.0];
                let name = format!("p{}", p.1);
                if let Some(old) = store.get("pods", ns, &name).cloned() {
                    let mut new = pod_json(&(p.0, p.1, spec.2, spec.3, spec.4));
                    new["metadata"] = old["metadata"].clone();
                    new["metadata"]["labels"] = pod_json(spec)["metadata"]["labels"].clone();
                    store.update("pods", ns, &name, new);
                }
            }
            for i in &deletes {
                if let Some(p) = pods.get(*i) {
                    store.remove("pods", NAMESPACES[p.0], &format!("p{}", p.1));
                }
            }
            for (lreqs, freq, ns) in &selectors {
                let labels = LabelSelector::parse(&lreqs.join(",")).unwrap();
                let fields = FieldSelector::parse(freq.as_deref().unwrap_or("")).unwrap();
                let ns = ns.map(|i| NAMESPACES[i]);
                let keep = |o: &&std::sync::Arc<Value>| labels.matches(o) && fields.matches(o);
                let key = |o: &std::sync::Arc<Value>| {
                    (str_at(o, "/metadata/namespace").to_string(), str_at(o, "/metadata/name").to_string())
                };
                let scanned: Vec<_> = store.list_shared("pods", ns).filter(keep).map(key).collect();
                let indexed: Vec<_> = match candidates(&store, "pods", ns, &labels, &fields) {
                    Some(c) => c.into_iter().filter(keep).map(key).collect(),
                    None => {
                        // Only selectors nothing can narrow are scanned.
                        prop_assert!(
                            fields.reqs.iter().all(|r| r.negated)
                                && labels.reqs.iter().all(|r| matches!(
                                    r,
                                    crate::lab::select::LabelReq::NotEq(..)
                                        | crate::lab::select::LabelReq::NotIn(..)
                                        | crate::lab::select::LabelReq::NotExists(_)
                                )),
                            "{lreqs:?} {freq:?} was scanned"
                        );
                        scanned.clone()
                    }
                };
                prop_assert_eq!(&indexed, &scanned, "labels {:?} fields {:?} ns {:?}", lreqs, freq, ns);
            }
        }
    }
}
