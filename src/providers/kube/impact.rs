//! The impact of a fan-out operation at the gate: a delete by selector, field
//! selector or `where` lists (read-only) what it matches when its plan is shown, so
//! the approver sees the objects and their count, and the plan digest covers them.
//! At execution it acts on no object outside the approved list (docs/engine.md,
//! "Impact at the gate").

use std::collections::BTreeSet;

use serde_json::Value;

use super::read::ListScope;
use super::write::label;
use super::{ApiRes, KubeProvider, Run, spec::Target};
use crate::journal::event::Impact;
use crate::providers::{ExecCtx, OpError};
use crate::runbook::verbs::KubeVerb;

/// How many names the plan line shows before `(and N more)`.
const SHOWN: usize = 5;

impl KubeProvider {
    /// The objects `spec` would touch, for the verbs that find them by a selector or
    /// condition (`delete` without a name, or with `where`); None for the others.
    pub(crate) async fn impact_of(
        &self,
        spec: &super::KubeSpec,
        cx: &ExecCtx,
    ) -> Result<Option<Impact>, OpError> {
        let fan_out = spec.verb == KubeVerb::Delete
            && (spec.name.is_none() || spec.where_.is_some())
            && !spec.dry_run;
        if !fan_out {
            return Ok(None);
        }
        let run = Run {
            p: self,
            cx,
            spec,
            limit: None,
            deadline: None,
        };
        let res = run.res().await?;
        let (candidates, _) = run.delete_candidates(&res, run.ns(&res)).await?;
        let matched = candidates.len();
        let objects = run.filter_where(&res, candidates)?;
        let now = cx.clock.now();
        let mut impact = describe("would delete", &res, &objects, spec.all_namespaces, now);
        impact.matched = Some(matched);
        Ok(Some(impact))
    }
}

impl Run<'_> {
    /// What a delete by selector, field selector and/or `where` matches now, and the
    /// name it was given when that object no longer exists.
    pub(crate) async fn delete_matches(
        &self,
        res: &ApiRes,
        ns: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), OpError> {
        let (objects, gone) = self.delete_candidates(res, ns).await?;
        Ok((self.filter_where(res, objects)?, gone))
    }

    /// What a delete's name, selector or field selector matches now, before its
    /// `where`, and the name it was given when that object no longer exists.
    async fn delete_candidates(
        &self,
        res: &ApiRes,
        ns: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), OpError> {
        let spec = self.spec;
        let mut gone = None;
        let objects = match &spec.name {
            Some(name) => match self.get_object(res, ns, name).await? {
                Some(o) => vec![o],
                None => {
                    gone = Some(name.clone());
                    Vec::new()
                }
            },
            None => {
                let scope = ListScope {
                    ns,
                    labels: spec.selector.as_deref(),
                    fields: spec.fields.as_deref(),
                };
                self.list_objects(res, &scope).await?
            }
        };
        Ok((objects, gone))
    }

    /// The objects of `objects` the delete's `where` keeps (all without one).
    fn filter_where(&self, res: &ApiRes, objects: Vec<Value>) -> Result<Vec<Value>, OpError> {
        match &self.spec.where_ {
            Some(w) => self.filter(w, res, objects),
            None => Ok(objects),
        }
    }

    /// Refuse to act when objects match now that the approved plan did not list: the
    /// approval was of the objects shown, not of the selector.
    pub(crate) fn within_approval(&self, res: &ApiRes, objects: &[Value]) -> Result<(), OpError> {
        let Some(approved) = &self.cx.approved else {
            return Ok(());
        };
        let approved: BTreeSet<&str> = approved.iter().map(String::as_str).collect();
        let new: Vec<String> = objects
            .iter()
            .map(|o| label(o, self.spec.all_namespaces))
            .filter(|n| !approved.contains(n.as_str()))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        Err(OpError::failed(format!(
            "{} {} {} now that the approved plan did not list ({}): nothing was {}; run again to see and approve the new plan",
            new.len(),
            plural(res, new.len()),
            if new.len() == 1 { "matches" } else { "match" },
            names(&new),
            past(self.spec.verb),
        )))
    }
}

fn past(verb: KubeVerb) -> &'static str {
    match verb {
        KubeVerb::Delete => "deleted",
        _ => "changed",
    }
}

/// `pods`, `pod`, `widgets.example.com`.
fn plural(res: &ApiRes, n: usize) -> String {
    if !Target::builtin_named(&res.plural, &res.group) {
        format!("{}.{}", res.plural, res.group)
    } else if n == 1 {
        res.singular.clone()
    } else {
        res.plural.clone()
    }
}

/// `hub-1, hub-2, hub-3, hub-4, hub-5 (and 7 more)`.
fn names(all: &[String]) -> String {
    let mut s = all
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if all.len() > SHOWN {
        s.push_str(&format!(" (and {} more)", all.len() - SHOWN));
    }
    s
}

/// The impact line and the object list of `objects`.
fn describe(
    doing: &str,
    res: &ApiRes,
    objects: &[Value],
    qualify: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Impact {
    let mut all: Vec<String> = objects.iter().map(|o| label(o, qualify)).collect();
    all.sort();
    all.dedup();
    let n = all.len();
    if n == 0 {
        return Impact {
            summary: format!("{doing} 0 {}: nothing matches now", plural(res, 0)),
            objects: all,
            matched: None,
        };
    }
    let mut summary = format!("{doing} {n} {}: {}", plural(res, n), names(&all));
    let ages: Vec<chrono::Duration> = objects
        .iter()
        .filter_map(|o| o.pointer("/metadata/creationTimestamp")?.as_str())
        .filter_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| now - t.with_timezone(&chrono::Utc))
        .collect();
    let mut facts = Vec::new();
    if let (Some(young), Some(old)) = (ages.iter().min(), ages.iter().max()) {
        let (young, old) = (crate::expr::short_age(*young), crate::expr::short_age(*old));
        facts.push(if young == old {
            format!("age {young}")
        } else {
            format!("ages {young}–{old}")
        });
    }
    let nodes: BTreeSet<&str> = objects
        .iter()
        .filter_map(|o| o.pointer("/spec/nodeName")?.as_str())
        .filter(|s| !s.is_empty())
        .collect();
    if !nodes.is_empty() {
        let word = if nodes.len() == 1 { "node" } else { "nodes" };
        facts.push(format!("on {} {word}", nodes.len()));
    }
    if !facts.is_empty() {
        summary.push_str("; ");
        summary.push_str(&facts.join(", "));
    }
    Impact {
        summary,
        objects: all,
        matched: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pods() -> ApiRes {
        ApiRes {
            group: String::new(),
            version: "v1".into(),
            plural: "pods".into(),
            kind: "Pod".into(),
            singular: "pod".into(),
            namespaced: true,
        }
    }

    fn pod(name: &str, created: &str, node: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "prod", "creationTimestamp": created},
               "spec": {"nodeName": node}})
    }

    #[test]
    fn the_line_counts_names_ages_and_nodes() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-03T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let objects: Vec<Value> = (1..=7)
            .map(|i| {
                let created = if i == 7 {
                    "2026-01-01T00:00:00Z"
                } else {
                    "2026-01-02T20:00:00Z"
                };
                pod(&format!("hub-{i}"), created, &format!("n{}", i % 3))
            })
            .collect();
        let i = describe("would delete", &pods(), &objects, false, now);
        assert_eq!(
            i.summary,
            "would delete 7 pods: hub-1, hub-2, hub-3, hub-4, hub-5 (and 2 more); ages 4h–2d, on 3 nodes"
        );
        assert_eq!(i.objects.len(), 7);
        let none = describe("would delete", &pods(), &[], false, now);
        assert_eq!(none.summary, "would delete 0 pods: nothing matches now");
        let one = describe("would delete", &pods(), &objects[..1], true, now);
        assert_eq!(
            one.summary,
            "would delete 1 pod: prod/hub-1; age 4h, on 1 node"
        );
    }
}
