//! `--details summary`: results shown the way a person reads them in a review, not
//! dumped. Kubernetes objects become the table `kubectl get` prints for their kind,
//! PromQL answers their value(s) with a link to the graph, HTTP answers their status
//! line and a short excerpt, command output a short excerpt; the raw result stays in
//! the journal, which the document names by event number.
//!
//! Everything here also goes through [`mask`]: values a reviewer must not see
//! (container environment values, Secret data, last-applied annotations, bearer
//! tokens) are `***` whatever the level of detail.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::escape;

/// How much of each result the document shows (`runbook postmortem --details`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Details {
    /// Every result in full, folded in `<details>` blocks, API calls inline.
    Full,
    /// Tables and excerpts; API calls in the appendix.
    #[default]
    Summary,
    /// No results at all: the timeline says what ran and how it ended.
    None,
}

impl Details {
    pub fn name(self) -> &'static str {
        match self {
            Details::Full => "full",
            Details::Summary => "summary",
            Details::None => "none",
        }
    }
}

/// Rows of a table before the rest is counted ("and 12 more").
pub const MAX_ROWS: usize = 8;
/// Lines of command output or HTTP body shown in an excerpt.
const EXCERPT_LINES: usize = 6;
/// Characters of an excerpt at most.
const EXCERPT_CHARS: usize = 600;
/// A small result (a delete's or a cordon's answer) is shown on its operation's line
/// when its compact JSON is at most this long.
const LINE_CHARS: usize = 160;

const MASK: &str = "***";

/// What an empty list of objects shows.
pub const NO_OBJECTS: &str = "No objects.";

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Replace what must never be rendered: environment values of containers, the data of
/// Secrets, `last-applied-configuration` annotations (they hold whole manifests,
/// Secrets included), bearer tokens and values under credential-like keys.
pub fn mask(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let secret = map.get("kind").and_then(Value::as_str) == Some("Secret");
            for (k, child) in map.iter_mut() {
                let key = k.to_ascii_lowercase();
                if (secret && (k == "data" || k == "stringData"))
                    || key.ends_with("last-applied-configuration")
                    || credential_key(&key)
                {
                    blank(child);
                } else if k == "env" {
                    if let Value::Array(vars) = child {
                        for var in vars {
                            if let Some(value) = var.get_mut("value") {
                                *value = Value::String(MASK.to_owned());
                            }
                        }
                    }
                } else {
                    mask(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask),
        Value::String(s) => {
            let lower = s.to_ascii_lowercase();
            if lower.starts_with("bearer ") || lower.starts_with("basic ") {
                let scheme = s.split(' ').next().unwrap_or_default().to_owned();
                *s = format!("{scheme} {MASK}");
            }
        }
        _ => {}
    }
}

fn credential_key(key: &str) -> bool {
    matches!(
        key,
        "authorization" | "token" | "password" | "x-api-key" | "api_key" | "apikey" | "secret"
    ) || key.ends_with("_token")
        || key.ends_with("-token")
        || key.ends_with("password")
}

/// Mask every leaf of `v` (keys stay, so the reader sees what was there).
fn blank(v: &mut Value) {
    match v {
        Value::Object(map) => map.values_mut().for_each(blank),
        Value::Array(items) => items.iter_mut().for_each(blank),
        Value::Null => {}
        other => *other = Value::String(MASK.to_owned()),
    }
}

/// A small result worth one line after its operation (plain text, not escaped):
/// `deleted hub-0; already gone: none`, or compact JSON.
pub fn result_line(result: &Value) -> Option<String> {
    let map = result.as_object()?;
    if is_kube_object(result) || map.contains_key("samples") || map.contains_key("stdout") {
        return None;
    }
    if let (Some(Value::Array(deleted)), Some(Value::Array(gone))) =
        (map.get("deleted"), map.get("already_gone"))
    {
        let names = |v: &Vec<Value>| -> String {
            if v.is_empty() {
                return "none".to_owned();
            }
            let mut s: Vec<String> = v.iter().take(3).map(plain).collect();
            if v.len() > 3 {
                s.push(format!("and {} more", v.len() - 3));
            }
            s.join(", ")
        };
        // One named pod: the command already names it.
        return Some(match (deleted.len(), gone.len()) {
            (1, 0) => "deleted".to_owned(),
            (0, 1) => "already gone".to_owned(),
            _ => format!("deleted {}; already gone: {}", names(deleted), names(gone)),
        });
    }
    if let (Some(Value::Bool(changed)), Some(Value::Bool(true))) =
        (map.get("changed"), map.get("unschedulable"))
    {
        return Some(
            if *changed {
                "cordoned"
            } else {
                "already cordoned"
            }
            .to_owned(),
        );
    }
    if map.contains_key("status") && map.contains_key("body") {
        return None;
    }
    let mut masked = result.clone();
    mask(&mut masked);
    let s = masked.to_string();
    (s.chars().count() <= LINE_CHARS).then_some(s)
}

/// The markdown block showing `result` in summary (a table or an excerpt), or `None`
/// when [`result_line`] already says it all or there is nothing to show. `at` is
/// when the result was read (ages are counted from it); `raw` names where the whole
/// result is kept.
pub fn result_block(result: &Value, at: DateTime<Utc>, raw: &str) -> Option<String> {
    let more = |n: usize| format!("\n\n… and {n} more (all of them: {raw})");
    match result {
        Value::Array(items) if items.iter().all(is_kube_object) => {
            if items.is_empty() {
                return Some(NO_OBJECTS.to_owned());
            }
            Some(kube_tables(items, at, &more))
        }
        v if is_kube_object(v) => Some(kube_tables(std::slice::from_ref(v), at, &more)),
        Value::Object(map) if map.contains_key("samples") => Some(promql(map, &more)),
        Value::Object(map) if map.contains_key("status") && map.contains_key("body") => {
            let status = map.get("status").and_then(Value::as_u64).unwrap_or(0);
            let mut out = format!("HTTP {status}");
            let body = map.get("body").map(plain).unwrap_or_default();
            if let Some(x) = excerpt(&body, raw) {
                out.push_str("\n\n");
                out.push_str(&x);
            }
            Some(out)
        }
        Value::Object(map) if map.contains_key("stdout") || map.contains_key("stderr") => {
            let mut parts = Vec::new();
            for (key, label) in [("stdout", "Output"), ("stderr", "Errors (stderr)")] {
                let text = map.get(key).map(plain).unwrap_or_default();
                if let Some(x) = excerpt(&text, raw) {
                    parts.push(format!("{label}:\n\n{x}"));
                }
            }
            (!parts.is_empty()).then(|| parts.join("\n\n"))
        }
        Value::String(s) => excerpt(s, raw),
        Value::Null => None,
        other => {
            if result_line(other).is_some() {
                return None;
            }
            let mut masked = other.clone();
            mask(&mut masked);
            excerpt(
                &serde_json::to_string_pretty(&masked).unwrap_or_default(),
                raw,
            )
        }
    }
}

/// The first lines of `text`, fenced, with how much was left out.
fn excerpt(text: &str, raw: &str) -> Option<String> {
    let text = text.trim_end();
    if text.trim().is_empty() {
        return None;
    }
    let total = text.lines().count();
    let mut shown = String::new();
    for line in text.lines().take(EXCERPT_LINES) {
        if shown.chars().count() + line.chars().count() > EXCERPT_CHARS {
            let room = EXCERPT_CHARS.saturating_sub(shown.chars().count());
            shown.extend(line.chars().take(room));
            shown.push('…');
            break;
        }
        shown.push_str(line);
        shown.push('\n');
    }
    let kept = shown.lines().count();
    let mut out = escape::fence(&shown, "text");
    if kept < total || shown.ends_with('…') {
        out.push_str(&format!(
            "\n\n… {} more line(s) (all of it: {raw})",
            total - kept
        ));
    }
    Some(out)
}

/// A Kubernetes object: it has a `metadata.name` (lists from the API drop each
/// item's `kind`; the generic NAME/AGE table is used then).
fn is_kube_object(v: &Value) -> bool {
    v.pointer("/metadata/name").is_some_and(Value::is_string)
}

fn promql(map: &Map<String, Value>, more: &dyn Fn(usize) -> String) -> String {
    let samples = map
        .get("samples")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let value = |v: Option<&Value>| v.map(plain).unwrap_or_default();
    match samples {
        [] => "No samples (the query matched nothing).".to_owned(),
        [one] => format!(
            "Value: **{}**{}",
            escape::text(&value(one.get("value"))),
            match labels(one) {
                l if l.is_empty() => String::new(),
                l => format!(" for {}", escape::code(&l)),
            }
        ),
        many => {
            let mut out = "| Series | Value |\n|---|---|\n".to_owned();
            for s in many.iter().take(MAX_ROWS) {
                out.push_str(&format!(
                    "| {} | {} |\n",
                    escape::code_cell(&labels(s)),
                    escape::cell(&value(s.get("value")))
                ));
            }
            let out = out.trim_end().to_owned();
            if many.len() > MAX_ROWS {
                out + &more(many.len() - MAX_ROWS)
            } else {
                out
            }
        }
    }
}

fn labels(sample: &Value) -> String {
    let Some(metric) = sample.get("metric").and_then(Value::as_object) else {
        return String::new();
    };
    let name = metric.get("__name__").and_then(Value::as_str).unwrap_or("");
    let rest: Vec<String> = metric
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}={:?}", plain(v)))
        .collect();
    if rest.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{}}}", rest.join(","))
    }
}

/// A link to Prometheus' graph of `query` over the hour before `at`.
pub fn graph_link(server: &str, query: &str, at: DateTime<Utc>) -> String {
    // The server is a parameter: characters that would end a markdown link target are
    // encoded too, so the link can be inserted as is.
    let server: String = server
        .trim_end_matches('/')
        .chars()
        .map(|c| match c {
            ' ' | '(' | ')' | '<' | '>' | '"' | '`' | '[' | ']' | '|' | '\\' => {
                percent(&c.to_string())
            }
            c if c.is_control() => String::new(),
            c => c.to_string(),
        })
        .collect();
    format!(
        "{server}/graph?g0.expr={}&g0.tab=0&g0.range_input=1h&g0.end_input={}",
        percent(query),
        percent(&at.format("%Y-%m-%d %H:%M:%S").to_string())
    )
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The cells of one row of a kind's table, for an object read at a time.
type Row = fn(&Value, DateTime<Utc>) -> Vec<String>;

/// One table per kind, in the order kinds first appear.
fn kube_tables(items: &[Value], at: DateTime<Utc>, more: &dyn Fn(usize) -> String) -> String {
    let mut kinds: Vec<&str> = Vec::new();
    for it in items {
        let k = it["kind"].as_str().unwrap_or_default();
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    let mut out = Vec::new();
    for kind in kinds {
        let of_kind: Vec<&Value> = items
            .iter()
            .filter(|it| it["kind"].as_str().unwrap_or_default() == kind)
            .collect();
        let (head, row): (&[&str], Row) = match kind {
            "Pod" => (
                &["NAME", "READY", "STATUS", "RESTARTS", "AGE", "NODE"],
                pod_row,
            ),
            "Node" => (&["NAME", "STATUS", "ROLES", "AGE", "VERSION"], node_row),
            "PersistentVolumeClaim" => (
                &[
                    "NAME",
                    "STATUS",
                    "VOLUME",
                    "CAPACITY",
                    "ACCESS MODES",
                    "STORAGECLASS",
                    "AGE",
                ],
                pvc_row,
            ),
            "PersistentVolume" => (
                &["NAME", "CAPACITY", "ACCESS MODES", "STATUS", "CLAIM", "AGE"],
                pv_row,
            ),
            "Deployment" | "StatefulSet" | "ReplicaSet" => (
                &["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
                workload_row,
            ),
            "Event" => (
                &["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
                event_row,
            ),
            "VolumeAttachment" => (
                &["NAME", "ATTACHER", "PV", "NODE", "ATTACHED", "AGE"],
                attachment_row,
            ),
            _ => (&["NAME", "AGE"], generic_row),
        };
        let mut t = String::new();
        if items.len() != of_kind.len() {
            t.push_str(&format!("{kind}:\n\n"));
        }
        t.push_str(&format!("| {} |\n", head.join(" | ")));
        t.push_str(&format!("|{}\n", "---|".repeat(head.len())));
        for it in of_kind.iter().take(MAX_ROWS) {
            let cells: Vec<String> = row(it, at).iter().map(|c| escape::cell(c)).collect();
            t.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        let mut t = t.trim_end().to_owned();
        if of_kind.len() > MAX_ROWS {
            t.push_str(&more(of_kind.len() - MAX_ROWS));
        }
        out.push(t);
    }
    out.join("\n\n")
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn or_none(x: &str) -> String {
    if x.is_empty() {
        "<none>".to_owned()
    } else {
        x.to_owned()
    }
}

fn age_at(v: &Value, ptr: &str, at: DateTime<Utc>) -> String {
    match s(v, ptr).parse::<DateTime<Utc>>() {
        Ok(t) => human_age(at - t),
        Err(_) => "<unknown>".to_owned(),
    }
}

/// kubectl's `HumanDuration` (k8s.io/apimachinery/pkg/util/duration), shortened.
pub fn human_age(d: chrono::TimeDelta) -> String {
    let secs = d.num_seconds();
    if secs < 0 {
        return "<invalid>".to_owned();
    }
    let (m, h, day) = (secs / 60, secs / 3600, secs / 86_400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        match secs % 60 {
            0 => format!("{m}m"),
            r => format!("{m}m{r}s"),
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        match m % 60 {
            0 => format!("{h}h"),
            r => format!("{h}h{r}m"),
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        match h % 24 {
            0 => format!("{day}d"),
            r => format!("{day}d{r}h"),
        }
    } else {
        format!("{day}d")
    }
}

fn name(v: &Value) -> String {
    s(v, "/metadata/name").to_owned()
}

fn pod_row(p: &Value, at: DateTime<Utc>) -> Vec<String> {
    let statuses = p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let total = p
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(statuses.len(), Vec::len);
    let ready = statuses.iter().filter(|c| c["ready"] == true).count();
    let restarts: i64 = statuses
        .iter()
        .filter_map(|c| c["restartCount"].as_i64())
        .sum();
    // kubectl's printPod: the reason beats the phase, a waiting or terminated
    // container's reason beats both, and a pod being deleted is "Terminating" unless
    // its node was lost ("Unknown").
    let mut status = match s(p, "/status/reason") {
        "" => s(p, "/status/phase").to_owned(),
        r => r.to_owned(),
    };
    for c in statuses {
        if let Some(r) = c
            .pointer("/state/waiting/reason")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        {
            status = r.to_owned();
        } else if let Some(r) = c
            .pointer("/state/terminated/reason")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        {
            status = r.to_owned();
        }
    }
    if p.pointer("/metadata/deletionTimestamp").is_some() {
        status = if s(p, "/status/reason") == "NodeLost" {
            "Unknown".to_owned()
        } else {
            "Terminating".to_owned()
        };
    }
    vec![
        name(p),
        format!("{ready}/{total}"),
        or_none(&status),
        restarts.to_string(),
        age_at(p, "/metadata/creationTimestamp", at),
        or_none(s(p, "/spec/nodeName")),
    ]
}

fn node_row(n: &Value, at: DateTime<Utc>) -> Vec<String> {
    let ready = n
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .map(|c| c["status"] == "True");
    let mut status = match ready {
        Some(true) => "Ready",
        Some(false) => "NotReady",
        None => "Unknown",
    }
    .to_owned();
    if n.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
        status.push_str(",SchedulingDisabled");
    }
    let roles: Vec<&str> = n
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|l| {
            l.keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                .collect()
        })
        .unwrap_or_default();
    vec![
        name(n),
        status,
        or_none(&roles.join(",")),
        age_at(n, "/metadata/creationTimestamp", at),
        or_none(s(n, "/status/nodeInfo/kubeletVersion")),
    ]
}

fn modes(v: &Value, ptr: &str) -> String {
    let short = |m: &str| {
        match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        }
        .to_owned()
    };
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(|ms| {
            ms.iter()
                .filter_map(Value::as_str)
                .map(short)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn pvc_row(c: &Value, at: DateTime<Utc>) -> Vec<String> {
    vec![
        name(c),
        or_none(s(c, "/status/phase")),
        s(c, "/spec/volumeName").to_owned(),
        s(c, "/status/capacity/storage").to_owned(),
        modes(c, "/status/accessModes"),
        or_none(s(c, "/spec/storageClassName")),
        age_at(c, "/metadata/creationTimestamp", at),
    ]
}

fn pv_row(v: &Value, at: DateTime<Utc>) -> Vec<String> {
    let claim = match (
        s(v, "/spec/claimRef/namespace"),
        s(v, "/spec/claimRef/name"),
    ) {
        (_, "") => String::new(),
        (ns, n) => format!("{ns}/{n}"),
    };
    vec![
        name(v),
        s(v, "/spec/capacity/storage").to_owned(),
        modes(v, "/spec/accessModes"),
        or_none(s(v, "/status/phase")),
        claim,
        age_at(v, "/metadata/creationTimestamp", at),
    ]
}

fn workload_row(d: &Value, at: DateTime<Utc>) -> Vec<String> {
    let n = |p: &str| d.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    vec![
        name(d),
        format!("{}/{}", n("/status/readyReplicas"), n("/spec/replicas")),
        n("/status/updatedReplicas").to_string(),
        n("/status/availableReplicas").to_string(),
        age_at(d, "/metadata/creationTimestamp", at),
    ]
}

fn event_row(e: &Value, at: DateTime<Utc>) -> Vec<String> {
    let seen = if e.pointer("/lastTimestamp").is_some_and(Value::is_string) {
        age_at(e, "/lastTimestamp", at)
    } else {
        age_at(e, "/metadata/creationTimestamp", at)
    };
    vec![
        seen,
        s(e, "/type").to_owned(),
        s(e, "/reason").to_owned(),
        format!(
            "{}/{}",
            s(e, "/involvedObject/kind").to_ascii_lowercase(),
            s(e, "/involvedObject/name")
        ),
        s(e, "/message").to_owned(),
    ]
}

fn attachment_row(a: &Value, at: DateTime<Utc>) -> Vec<String> {
    vec![
        name(a),
        s(a, "/spec/attacher").to_owned(),
        s(a, "/spec/source/persistentVolumeName").to_owned(),
        s(a, "/spec/nodeName").to_owned(),
        a.pointer("/status/attached")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .to_string(),
        age_at(a, "/metadata/creationTimestamp", at),
    ]
}

fn generic_row(v: &Value, at: DateTime<Utc>) -> Vec<String> {
    vec![name(v), age_at(v, "/metadata/creationTimestamp", at)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at() -> DateTime<Utc> {
        "2018-03-13T06:28:00Z".parse().unwrap()
    }

    #[test]
    fn pods_render_as_kubectl_get_pods_with_the_rest_counted() {
        let pods: Vec<Value> = (0..10)
            .map(|i| {
                json!({"kind": "Pod", "metadata": {"name": format!("p{i}"),
                    "creationTimestamp": "2018-03-13T06:00:00Z"},
                    "spec": {"nodeName": "n1", "containers": [{"name": "c",
                        "env": [{"name": "DB", "value": "postgres://u:pw@db"}]}]},
                    "status": {"phase": "Running", "containerStatuses": [
                        {"ready": true, "restartCount": 2}]}})
            })
            .collect();
        let md = result_block(&Value::Array(pods), at(), "event 7").unwrap();
        assert!(
            md.starts_with("| NAME | READY | STATUS | RESTARTS | AGE | NODE |\n"),
            "{md}"
        );
        assert!(md.contains("| p0 | 1/1 | Running | 2 | 28m | n1 |"), "{md}");
        assert!(md.contains("and 2 more (all of them: event 7)"), "{md}");
        assert!(!md.contains("postgres"), "{md}");
    }

    #[test]
    fn a_lost_node_is_not_ready_and_cordoned_nodes_say_so() {
        let n = json!({"kind": "Node", "metadata": {"name": "n1",
            "creationTimestamp": "2018-02-20T10:00:00Z",
            "labels": {"node-role.kubernetes.io/worker": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}],
                "nodeInfo": {"kubeletVersion": "v1.9.2"}}});
        let md = result_block(&n, at(), "event 1").unwrap();
        assert!(
            md.contains("| n1 | NotReady,SchedulingDisabled | worker | 20d | v1.9.2 |"),
            "{md}"
        );
    }

    #[test]
    fn mask_hides_secret_data_env_values_annotations_and_tokens() {
        let mut v = json!([
            {"kind": "Secret", "metadata": {"name": "s", "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"pw\":\"c2VjcmV0\"}}"}},
             "data": {"pw": "c2VjcmV0"}},
            {"headers": {"Authorization": "Bearer abc.def"}, "note": "Bearer xyz"},
            {"env": [{"name": "A", "value": "hunter2"}]}
        ]);
        mask(&mut v);
        let s = v.to_string();
        for leak in ["c2VjcmV0", "abc.def", "xyz", "hunter2"] {
            assert!(!s.contains(leak), "{leak} in {s}");
        }
        assert!(s.contains("\"pw\":\"***\""), "{s}");
    }

    #[test]
    fn promql_shows_the_value_and_a_graph_link_is_encoded() {
        let r = json!({"samples": [{"metric": {"__name__": "up"}, "value": 0.0}], "value": 0.0});
        assert_eq!(
            result_block(&r, at(), "x").unwrap(),
            "Value: **0.0** for `up`"
        );
        let link = graph_link("http://p:9090/", "rate(x[5m]) > 0", at());
        assert_eq!(
            link,
            "http://p:9090/graph?g0.expr=rate%28x%5B5m%5D%29%20%3E%200&g0.tab=0&g0.range_input=1h&g0.end_input=2018-03-13%2006%3A28%3A00"
        );
    }

    #[test]
    fn http_shows_the_status_and_an_excerpt() {
        let body: String = (0..20).map(|i| format!("line {i}\n")).collect();
        let r = json!({"status": 503, "headers": {}, "body": body});
        let md = result_block(&r, at(), "event 3").unwrap();
        assert!(md.starts_with("HTTP 503\n\n```text\nline 0\n"), "{md}");
        assert!(md.contains("14 more line(s) (all of it: event 3)"), "{md}");
        assert!(!md.contains("line 6"), "{md}");
    }

    #[test]
    fn a_delete_answer_is_one_line() {
        let r = json!({"deleted": ["a", "b"], "already_gone": []});
        assert_eq!(result_line(&r).unwrap(), "deleted a, b; already gone: none");
        assert!(result_block(&r, at(), "x").is_none());
    }
}
