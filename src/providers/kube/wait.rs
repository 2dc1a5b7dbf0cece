//! `wait`: poll until objects are deleted, meet a status condition, or satisfy a CEL
//! condition. Polling (not a watch) keeps every request under the rate limit and in
//! the journal; the operation's timeout (or [`super::DEFAULT_WAIT`]) bounds it, since
//! a pod on a dead node never goes away by itself (reference §2 d).

use serde_json::{Value, json};

use super::read::ListScope;
use super::{ApiRes, Run};
use crate::providers::OpError;

/// What `for:` asks.
#[derive(Debug, Clone, PartialEq)]
enum Until {
    Deleted,
    /// `condition=Ready` or `condition=Ready=False`.
    Condition {
        kind: String,
        status: String,
    },
    Cel(String),
}

fn parse(f: &str) -> Until {
    let f = f.trim();
    if f == "delete" {
        return Until::Deleted;
    }
    if let Some(c) = f.strip_prefix("condition=") {
        let (kind, status) = match c.split_once('=') {
            Some((k, s)) => (k.to_string(), s.to_string()),
            None => (c.to_string(), "True".to_string()),
        };
        return Until::Condition { kind, status };
    }
    Until::Cel(f.to_string())
}

fn has_condition(obj: &Value, kind: &str, status: &str) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c["type"]
                    .as_str()
                    .is_some_and(|t| t.eq_ignore_ascii_case(kind))
                    && c["status"]
                        .as_str()
                        .is_some_and(|s| s.eq_ignore_ascii_case(status))
            })
        })
}

impl Run<'_> {
    pub async fn wait(&self) -> Result<Value, OpError> {
        let res = self.res().await?;
        let until = parse(self.spec.for_.as_deref().unwrap_or("delete"));
        let mut first_uid: Option<String> = None;
        let mut seen: Vec<String> = Vec::new();
        loop {
            let objects = self.observe(&res).await?;
            if let Some(done) = self.check(&res, &until, objects, &mut first_uid, &mut seen)? {
                return Ok(done);
            }
            self.pause().await?;
        }
    }

    /// The objects the wait is about, now.
    async fn observe(&self, res: &ApiRes) -> Result<Vec<Value>, OpError> {
        let ns = self.ns(res);
        match &self.spec.name {
            Some(name) => Ok(self.get_object(res, ns, name).await?.into_iter().collect()),
            None => {
                let scope = ListScope {
                    ns,
                    labels: self.spec.selector.as_deref(),
                    fields: self.spec.fields.as_deref(),
                };
                self.list_objects(res, &scope).await
            }
        }
    }

    fn check(
        &self,
        res: &ApiRes,
        until: &Until,
        objects: Vec<Value>,
        first_uid: &mut Option<String>,
        seen: &mut Vec<String>,
    ) -> Result<Option<Value>, OpError> {
        let one = self.spec.name.is_some();
        match until {
            Until::Deleted => {
                for o in &objects {
                    let name = super::write::label(o, self.spec.all_namespaces);
                    if !seen.contains(&name) {
                        seen.push(name);
                    }
                }
                if seen.is_empty()
                    && let Some(n) = &self.spec.name
                {
                    seen.push(n.clone());
                }
                let uid = objects
                    .first()
                    .and_then(|o| o.pointer("/metadata/uid"))
                    .and_then(Value::as_str)
                    .map(String::from);
                // A new object under the same name (a StatefulSet's replacement pod)
                // means the old one is gone, as kubectl's IsDeleted decides by UID.
                let replaced = one && first_uid.is_some() && uid.is_some() && *first_uid != uid;
                if first_uid.is_none() {
                    *first_uid = uid;
                }
                Ok((objects.is_empty() || replaced).then(|| json!({"deleted": seen.clone()})))
            }
            Until::Condition { kind, status } => {
                let ok =
                    !objects.is_empty() && objects.iter().all(|o| has_condition(o, kind, status));
                Ok(ok.then(|| result(objects, one)))
            }
            Until::Cel(cond) => {
                if objects.is_empty() {
                    return Ok(None);
                }
                let n = objects.len();
                let kept = self.filter(cond, res, objects)?;
                Ok((kept.len() == n).then(|| result(kept, one)))
            }
        }
    }
}

fn result(mut objects: Vec<Value>, one: bool) -> Value {
    if one {
        objects.pop().unwrap_or(Value::Null)
    } else {
        Value::Array(objects)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn for_values_parse_like_kubectl_wait() {
        assert_eq!(parse("delete"), Until::Deleted);
        assert_eq!(
            parse("condition=Ready"),
            Until::Condition {
                kind: "Ready".into(),
                status: "True".into()
            }
        );
        assert_eq!(
            parse("condition=Ready=False"),
            Until::Condition {
                kind: "Ready".into(),
                status: "False".into()
            }
        );
        assert_eq!(
            parse("pod.status.phase == 'Running'"),
            Until::Cel("pod.status.phase == 'Running'".into())
        );
    }

    #[test]
    fn condition_matches_type_and_status() {
        let pod = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert!(has_condition(&pod, "Ready", "True"));
        assert!(has_condition(&pod, "ready", "true"));
        assert!(!has_condition(&pod, "Ready", "False"));
        assert!(!has_condition(&json!({}), "Ready", "True"));
    }
}
