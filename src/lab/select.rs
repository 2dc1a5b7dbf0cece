//! Label and field selectors, parsed from query strings the way the API server does
//! (`k8s.io/apimachinery/pkg/labels` and `.../fields`), and label selectors given as
//! `LabelSelector` objects (matchLabels / matchExpressions) in PDBs, ReplicaSets and
//! Deployments.

use serde_json::Value;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A label selector: every requirement must hold. Empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub reqs: Vec<LabelReq>,
}

/// Split on commas that are not inside parentheses (`a in (x,y),b=c`).
fn split_top_level(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c)
            }
            ')' => {
                depth = depth.saturating_sub(1);
                cur.push(c)
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_set(rest: &str) -> Option<Vec<String>> {
    let rest = rest.trim();
    let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

impl LabelSelector {
    /// Parse the `labelSelector` query syntax: `a=b`, `a==b`, `a!=b`, `a in (x,y)`,
    /// `a notin (x)`, `a`, `!a`, comma-separated.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            let req = if let Some(k) = part.strip_prefix('!') {
                LabelReq::NotExists(k.trim().to_string())
            } else if let Some((k, v)) = part.split_once("!=") {
                LabelReq::NotEq(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = part.split_once("==") {
                LabelReq::Eq(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = part.split_once('=') {
                LabelReq::Eq(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                let set = parse_set(rest)
                    .ok_or_else(|| format!("unable to parse requirement: {part:?}"))?;
                LabelReq::NotIn(k.trim().to_string(), set)
            } else if let Some((k, rest)) = part.split_once(" in ") {
                let set = parse_set(rest)
                    .ok_or_else(|| format!("unable to parse requirement: {part:?}"))?;
                LabelReq::In(k.trim().to_string(), set)
            } else {
                LabelReq::Exists(part.trim().to_string())
            };
            let key = match &req {
                LabelReq::Eq(k, _)
                | LabelReq::NotEq(k, _)
                | LabelReq::In(k, _)
                | LabelReq::NotIn(k, _)
                | LabelReq::Exists(k)
                | LabelReq::NotExists(k) => k,
            };
            if !valid_key(key) {
                return Err(format!(
                    "unable to parse requirement: invalid label key {key:?}"
                ));
            }
            reqs.push(req);
        }
        Ok(LabelSelector { reqs })
    }

    /// Build from a `metav1.LabelSelector` object. `None` means "matches nothing"
    /// in PDB/ReplicaSet semantics is not needed here: a missing selector matches all.
    pub fn from_object(sel: &Value) -> Self {
        let mut reqs = Vec::new();
        if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in ml {
                reqs.push(LabelReq::Eq(
                    k.clone(),
                    v.as_str().unwrap_or_default().to_string(),
                ));
            }
        }
        if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                match e.get("operator").and_then(Value::as_str) {
                    Some("In") => reqs.push(LabelReq::In(key, values)),
                    Some("NotIn") => reqs.push(LabelReq::NotIn(key, values)),
                    Some("Exists") => reqs.push(LabelReq::Exists(key)),
                    Some("DoesNotExist") => reqs.push(LabelReq::NotExists(key)),
                    _ => {}
                }
            }
        }
        LabelSelector { reqs }
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Does an object (with `metadata.labels`) match?
    pub fn matches(&self, obj: &Value) -> bool {
        if self.reqs.is_empty() {
            return true;
        }
        // `get` rather than `pointer`: lists filter every object, and `Value::pointer`
        // allocates for each path segment.
        let labels = obj.get("metadata").and_then(|m| m.get("labels"));
        self.matches_labels(labels)
    }

    /// Does a labels map match?
    pub fn matches_labels(&self, labels: Option<&Value>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.reqs.iter().all(|r| match r {
            LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => get(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
        })
    }
}

/// One requirement of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldReq {
    pub field: String,
    pub value: String,
    pub negated: bool,
}

/// A field selector: `a=b`, `a==b`, `a!=b`, comma-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub reqs: Vec<FieldReq>,
}

/// The terms of a field selector: split at each `,` not escaped as `\,`.
fn split_terms(s: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut escaped = false;
    let mut cuts = Vec::new();
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                cuts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    cuts.push(&s[start..]);
    cuts.into_iter()
}

/// A field selector value with its escapes (`\\`, `\,`, `\=`) undone; an
/// unescaped `,` or `=` or another escape is an error, in the API server's words
/// (k8s.io/apimachinery pkg/fields/selector.go `UnescapeValue`).
fn unescape_value(s: &str) -> Result<String, String> {
    if !s.contains(['\\', ',', '=']) {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => {
                    return Err(format!(
                        "invalid field selector: invalid escape sequence: \\{e}"
                    ));
                }
                None => return Err("invalid field selector: invalid escape sequence: \\".into()),
            },
            ',' | '=' => {
                return Err(format!("invalid field selector: unescaped character '{c}'"));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_terms(s).map(str::trim).filter(|p| !p.is_empty()) {
            let (field, value, negated) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, false)
            } else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                ));
            };
            let field = field.trim();
            if field.is_empty() {
                return Err(format!(
                    "invalid field selector: '{s}'; '{part}' names no field"
                ));
            }
            reqs.push(FieldReq {
                field: field.to_string(),
                value: unescape_value(value.trim())?,
                negated,
            });
        }
        Ok(FieldSelector { reqs })
    }

    /// The first field not in `allowed`, if any: the real server answers 400
    /// "field label not supported" for it.
    pub fn unsupported(&self, allowed: &[&str]) -> Option<&str> {
        self.reqs
            .iter()
            .map(|r| r.field.as_str())
            .find(|f| !allowed.contains(f))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs
            .iter()
            .all(|r| field_equals(obj, &r.field, &r.value) != r.negated)
    }
}

/// The value at a dotted field path (`spec.nodeName`), without allocating.
fn field_at<'a>(obj: &'a Value, field: &str) -> Option<&'a Value> {
    let path = match field {
        "source" => "source.component",
        "status.podIPs" => "status.podIP",
        f => f,
    };
    path.split('.').try_fold(obj, |v, k| v.get(k))
}

/// `field_value(obj, field) == value`, without building the string.
fn field_equals(obj: &Value, field: &str, value: &str) -> bool {
    match field_at(obj, field) {
        Some(Value::String(s)) => s == value,
        Some(Value::Bool(b)) => value == if *b { "true" } else { "false" },
        Some(Value::Number(_)) | None => field_value(obj, field) == value,
        _ => value.is_empty(),
    }
}

/// The string value of a selectable field, as the registries' `GetAttrs` render it
/// (booleans as "true"/"false", missing as "").
pub fn field_value(obj: &Value, field: &str) -> String {
    let path = match field {
        // events: `source` is the reporting component (pkg/registry/core/event/strategy.go)
        "source" => "/source/component".to_string(),
        "status.podIPs" => "/status/podIP".to_string(),
        f => format!("/{}", f.replace('.', "/")),
    };
    match obj.pointer(&path) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        None if field == "spec.hostNetwork" || field == "spec.unschedulable" => "false".to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_based_label_selectors_match_like_the_api_server() {
        let pod = json!({"metadata": {"labels": {"app": "hub", "tier": "db"}}});
        let yes = [
            "app=hub",
            "app==hub,tier",
            "app in (hub, proxy)",
            "tier notin (web)",
            "!missing",
        ];
        for s in yes {
            assert!(LabelSelector::parse(s).unwrap().matches(&pod), "{s}");
        }
        let no = [
            "app=proxy",
            "app!=hub",
            "app in (proxy)",
            "tier notin (db)",
            "missing",
            "!app",
        ];
        for s in no {
            assert!(!LabelSelector::parse(s).unwrap().matches(&pod), "{s}");
        }
    }

    #[test]
    fn field_selector_reports_unsupported_fields() {
        let f = FieldSelector::parse("spec.nodeName=n1,spec.foo!=x").unwrap();
        assert_eq!(f.unsupported(&["spec.nodeName"]), Some("spec.foo"));
        let pod = json!({"spec": {"nodeName": "n1"}});
        assert!(
            FieldSelector::parse("spec.nodeName=n1")
                .unwrap()
                .matches(&pod)
        );
        assert!(
            FieldSelector::parse("spec.nodeName!=n2")
                .unwrap()
                .matches(&pod)
        );
        assert!(
            !FieldSelector::parse("spec.nodeName=n2")
                .unwrap()
                .matches(&pod)
        );
    }
}
