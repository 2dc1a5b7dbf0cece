//! `runbook rbac`: the least-privilege Kubernetes RBAC rules a set of runbooks needs,
//! computed from their `kube` operations (verbs and kinds), so `runbook serve` in a
//! cluster can run them and nothing else.
//!
//! Each verb needs read access to its kind (the provider lists the objects a plan
//! shows, and reads an object before it changes it) and the one write verb the
//! operation sends: `cordon` is `nodes get/list/patch` (kubectl pkg/drain/cordon.go
//! patches `spec.unschedulable`), a force deletion an ordinary `delete`, an eviction
//! `create` on `pods/eviction`, logs `get` on `pods/log` (reference/alerting.md,
//! "Kubernetes RBAC").

use std::collections::{BTreeMap, BTreeSet};

use super::kinds::{self, Resolved};
use super::model::{KubeOp, Runbook, Step};
use super::verbs::KubeVerb;

/// (apiGroup, resource) → verbs.
pub type Rules = BTreeMap<(String, String), BTreeSet<&'static str>>;

/// What a set of runbooks needs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Needs {
    /// Rules on namespaced resources: a Role in the runbooks' namespace.
    pub namespaced: Rules,
    /// Rules on cluster-scoped resources, and on namespaced ones read across every
    /// namespace (`all_namespaces`): a ClusterRole.
    pub cluster: Rules,
    /// Operations whose needs cannot be known before they run (a templated kind, an
    /// `apply` of a manifest).
    pub unknown: Vec<String>,
}

const READ: &[&str] = &["get", "list"];

impl Needs {
    fn add(&mut self, cluster: bool, group: &str, resource: &str, verbs: &[&'static str]) {
        let rules = if cluster {
            &mut self.cluster
        } else {
            &mut self.namespaced
        };
        rules
            .entry((group.to_owned(), resource.to_owned()))
            .or_default()
            .extend(verbs.iter().copied());
    }

    /// Add what one operation needs.
    fn op(&mut self, runbook: &str, step: &str, op: &KubeOp) {
        let Some((verb, value)) = &op.verb else {
            return;
        };
        let everywhere = op.all_namespaces.as_ref().is_some_and(|b| b.value);
        let kind = |name: &str| kinds::resolve(name);
        if *verb == KubeVerb::Apply {
            // Server-side apply of an inline manifest: its kinds are read from the
            // manifest when they are written out (the values may be templated).
            match manifest_kinds(&value.value) {
                Some(targets) => {
                    for (group, resource, namespaced) in targets {
                        let cluster = !namespaced || everywhere;
                        self.add(cluster, &group, &resource, &["create", "get", "list", "patch"]);
                    }
                }
                None => self.unknown.push(format!(
                    "{runbook}: step `{step}`: `apply` of a manifest whose `kind` is templated or unknown (its kinds are known only when it runs)"
                )),
            }
            return;
        }
        let templated = value.value.contains("{{");
        // The kind the verb acts on: named by the value, or implied by the verb.
        let target: Option<(String, String, bool)> = match verb {
            KubeVerb::Cordon
            | KubeVerb::Uncordon
            | KubeVerb::Drain
            | KubeVerb::Taint
            | KubeVerb::Untaint => Some((String::new(), "nodes".into(), false)),
            KubeVerb::Evict => Some((String::new(), "pods".into(), true)),
            KubeVerb::Logs => {
                // `logs: NAME` is a pod; `logs: KIND/NAME` a workload's pod.
                match value.value.split_once('/') {
                    Some((k, _)) if !templated => kind(k).map(|r| resolved(&r)),
                    _ => Some((String::new(), "pods".into(), true)),
                }
            }
            KubeVerb::Apply => None,
            _ if templated => None,
            _ => kind(&value.value).map(|r| resolved(&r)),
        };
        let Some((group, resource, namespaced)) = target else {
            self.unknown.push(format!(
                "{runbook}: step `{step}`: `{}: {}` (its kinds are known only when it runs)",
                verb_name(*verb),
                value.value
            ));
            return;
        };
        let cluster = !namespaced || everywhere;
        let write: &[&'static str] = match verb {
            KubeVerb::Get | KubeVerb::Wait | KubeVerb::RolloutStatus | KubeVerb::Logs => &[],
            KubeVerb::Delete => &["delete"],
            KubeVerb::Cordon
            | KubeVerb::Uncordon
            | KubeVerb::Taint
            | KubeVerb::Untaint
            | KubeVerb::Patch
            | KubeVerb::Label
            | KubeVerb::Annotate
            | KubeVerb::SetImage
            | KubeVerb::Scale
            | KubeVerb::RolloutRestart
            | KubeVerb::RolloutUndo
            | KubeVerb::Drain => &["patch"],
            KubeVerb::Evict => &[],
            KubeVerb::Apply => &["create", "patch"],
        };
        let mut verbs: Vec<&'static str> = READ.to_vec();
        verbs.extend(write);
        if *verb == KubeVerb::Wait {
            verbs.push("watch");
        }
        self.add(cluster, &group, &resource, &verbs);
        match verb {
            KubeVerb::Drain => {
                // kubectl drain: list the node's pods (every namespace), evict each.
                self.add(true, "", "pods", READ);
                self.add(true, "", "pods/eviction", &["create"]);
                if op_flag(op, "disable_eviction") {
                    self.add(true, "", "pods", &["delete"]);
                }
            }
            KubeVerb::Evict => self.add(cluster, "", "pods/eviction", &["create"]),
            KubeVerb::Logs => {
                self.add(everywhere, "", "pods", READ);
                self.add(everywhere, "", "pods/log", &["get"]);
                if resource != "pods" {
                    self.add(everywhere, "apps", "replicasets", READ);
                }
            }
            KubeVerb::RolloutUndo | KubeVerb::RolloutStatus => {
                self.add(cluster, "apps", "replicasets", READ);
                self.add(cluster, "apps", "controllerrevisions", READ);
            }
            _ => {}
        }
    }
}

/// The resources an inline manifest's documents are of, from each document's
/// top-level `kind:` (and `apiVersion:` for its group); `None` when one is missing,
/// templated or not a kind this tool knows.
fn manifest_kinds(manifest: &str) -> Option<Vec<(String, String, bool)>> {
    let mut out = Vec::new();
    for doc in manifest.split("\n---") {
        let top = |key: &str| {
            doc.lines().find_map(|l| {
                l.strip_prefix(key)
                    .map(|v| v.trim().trim_matches(['"', '\'']))
            })
        };
        if doc.trim().is_empty() {
            continue;
        }
        let kind = top("kind:")?;
        if kind.is_empty() || kind.contains("{{") {
            return None;
        }
        let group = top("apiVersion:")
            .and_then(|v| v.split_once('/').map(|(g, _)| g))
            .unwrap_or("");
        let name = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        match kinds::resolve(&name)? {
            Resolved::Builtin(k) => {
                out.push((k.group.to_owned(), k.plural.to_owned(), k.namespaced));
            }
            Resolved::Custom { .. } => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

fn op_flag(op: &KubeOp, key: &str) -> bool {
    serde_json::to_value(op)
        .ok()
        .and_then(|v| v.get(key).and_then(serde_json::Value::as_bool))
        .unwrap_or(false)
}

fn resolved(r: &Resolved) -> (String, String, bool) {
    match r {
        Resolved::Builtin(k) => (k.group.to_owned(), k.plural.to_owned(), k.namespaced),
        Resolved::Custom { plural, group } => (group.clone(), plural.clone(), true),
    }
}

fn verb_name(v: KubeVerb) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Every `kube` operation of a step: its own, its verification's, its rungs' and its
/// preview's.
fn step_ops(s: &Step) -> Vec<&KubeOp> {
    let mut out: Vec<&KubeOp> = s.kube.iter().collect();
    if let Some(v) = s.verification() {
        out.extend(v.kube.iter());
    }
    for r in &s.escalate {
        out.extend(r.kube.iter());
        if let Some(p) = &r.preview {
            out.extend(p.kube.iter());
        }
    }
    if let Some(p) = &s.preview {
        out.extend(p.kube.iter());
    }
    out
}

/// What `runbooks` need, together.
pub fn needs(runbooks: &[&Runbook]) -> Needs {
    let mut n = Needs::default();
    for rb in runbooks {
        for s in rb.steps.iter().chain(&rb.handlers) {
            for op in step_ops(s) {
                n.op(&rb.name.value, &s.id.value, op);
            }
        }
    }
    n
}

/// Options of the YAML.
#[derive(Debug, Clone)]
pub struct RbacOpts {
    /// The Role's namespace.
    pub namespace: String,
    /// Name of the Role and ClusterRole (and their bindings).
    pub name: String,
    /// `(namespace, name)` of the ServiceAccount to bind them to, if any.
    pub service_account: Option<(String, String)>,
}

/// The Role, ClusterRole (and bindings) as a multi-document YAML stream.
pub fn to_yaml(n: &Needs, o: &RbacOpts) -> String {
    let mut docs = Vec::new();
    let header = |out: &mut String| {
        for u in &n.unknown {
            out.push_str(&format!("# not covered: {u}\n"));
        }
    };
    let rules = |r: &Rules| {
        let mut s = String::from("rules:\n");
        // One rule per group and verb set, resources together (as `kubectl create
        // role` prints them).
        let mut grouped: BTreeMap<(String, Vec<&str>), Vec<String>> = BTreeMap::new();
        for ((group, resource), verbs) in r {
            grouped
                .entry((group.clone(), verbs.iter().copied().collect()))
                .or_default()
                .push(resource.clone());
        }
        for ((group, verbs), resources) in grouped {
            s.push_str(&format!(
                "  - apiGroups: [{}]\n    resources: [{}]\n    verbs: [{}]\n",
                quote(&group),
                resources
                    .iter()
                    .map(|r| quote(r))
                    .collect::<Vec<_>>()
                    .join(", "),
                verbs
                    .iter()
                    .map(|v| quote(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        s
    };
    if !n.namespaced.is_empty() {
        let mut d = String::new();
        header(&mut d);
        d.push_str(&format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: {}\n  namespace: {}\n{}",
            quote(&o.name),
            quote(&o.namespace),
            rules(&n.namespaced)
        ));
        docs.push(d);
    }
    if !n.cluster.is_empty() {
        let mut d = String::new();
        if n.namespaced.is_empty() {
            header(&mut d);
        }
        d.push_str(&format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {}\n{}",
            quote(&o.name),
            rules(&n.cluster)
        ));
        docs.push(d);
    }
    if docs.is_empty() {
        let mut d = String::new();
        header(&mut d);
        d.push_str("# these runbooks make no Kubernetes API call: no Role is needed\n");
        return d;
    }
    if let Some((sa_ns, sa)) = &o.service_account {
        let subject = format!(
            "subjects:\n  - kind: ServiceAccount\n    name: {}\n    namespace: {}\n",
            quote(sa),
            quote(sa_ns)
        );
        if !n.namespaced.is_empty() {
            docs.push(format!(
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: {}\n  namespace: {}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: {}\n{subject}",
                quote(&o.name),
                quote(&o.namespace),
                quote(&o.name)
            ));
        }
        if !n.cluster.is_empty() {
            docs.push(format!(
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: {}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: {}\n{subject}",
                quote(&o.name),
                quote(&o.name)
            ));
        }
    }
    docs.join("---\n")
}

/// A YAML double-quoted scalar (JSON's string syntax is valid YAML).
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rb(steps: &str) -> Runbook {
        let src = format!("version: 1\nname: t\ntitle: t\nsteps:\n{steps}");
        crate::runbook::parse_str(&src, std::path::Path::new("t.yaml")).expect("parses")
    }

    #[test]
    fn cordon_and_force_delete_need_exactly_nodes_get_list_patch_and_pods_get_list_delete() {
        let r = rb(r#"  - check: lost
    id: lost
    kube: { get: pods, namespace: prod, where: "pod.status.phase == 'Unknown'" }
    save: lost
  - action: cordon
    id: cordon
    for_each: lost
    kube: { cordon: "{{item.spec.nodeName}}" }
  - action: delete
    id: delete
    for_each: lost
    kube: { delete: pods, name: "{{item.metadata.name}}", namespace: prod, grace_period: 0, force: true }
"#);
        let n = needs(&[&r]);
        let set = |v: &[&'static str]| v.iter().copied().collect::<BTreeSet<_>>();
        assert_eq!(
            n.namespaced,
            Rules::from([(("".into(), "pods".into()), set(&["get", "list", "delete"]))])
        );
        assert_eq!(
            n.cluster,
            Rules::from([(("".into(), "nodes".into()), set(&["get", "list", "patch"]))])
        );
        assert!(n.unknown.is_empty());
        let yaml = to_yaml(
            &n,
            &RbacOpts {
                namespace: "prod".into(),
                name: "runbook".into(),
                service_account: Some(("runbook".into(), "runbook".into())),
            },
        );
        assert!(yaml.contains("kind: Role\n"), "{yaml}");
        assert!(
            yaml.contains("resources: [\"pods\"]\n    verbs: [\"delete\", \"get\", \"list\"]"),
            "{yaml}"
        );
        assert!(
            yaml.contains("resources: [\"nodes\"]\n    verbs: [\"get\", \"list\", \"patch\"]"),
            "{yaml}"
        );
        assert!(yaml.contains("kind: ClusterRoleBinding"), "{yaml}");
    }

    #[test]
    fn an_apply_needs_create_and_patch_on_the_kinds_its_manifest_names() {
        let rb = |steps: &str| {
            let src = format!(
                "version: 1\nname: t\ntitle: t\nparams:\n  kind: {{ default: Pod }}\nsteps:\n{steps}"
            );
            crate::runbook::parse_str(&src, std::path::Path::new("t.yaml")).expect("parses")
        };
        let r = rb(concat!(
            "  - action: apply\n    id: apply\n    kube:\n      apply: |\n",
            "        apiVersion: v1\n        kind: ResourceQuota\n",
            "        metadata: { name: \"{{params.kind}}\" }\n",
            "        ---\n        apiVersion: apps/v1\n        kind: Deployment\n",
            "        metadata: { name: hub }\n",
        ));
        let n = needs(&[&r]);
        assert!(n.unknown.is_empty(), "{:?}", n.unknown);
        let verbs = |g: &str, res: &str| {
            n.namespaced
                .get(&(g.to_owned(), res.to_owned()))
                .map(|v| v.iter().copied().collect::<Vec<_>>())
        };
        assert_eq!(
            verbs("", "resourcequotas"),
            Some(vec!["create", "get", "list", "patch"])
        );
        assert_eq!(
            verbs("apps", "deployments"),
            Some(vec!["create", "get", "list", "patch"])
        );
        let t = rb(concat!(
            "  - action: apply\n    id: apply\n    kube:\n      apply: |\n",
            "        apiVersion: v1\n        kind: \"{{params.kind}}\"\n",
        ));
        assert_eq!(needs(&[&t]).unknown.len(), 1);
    }

    #[test]
    fn an_apply_is_reported_as_not_covered() {
        let r = rb("  - action: apply\n    id: apply\n    kube: { apply: manifest.yaml }\n");
        let n = needs(&[&r]);
        assert_eq!(n.unknown.len(), 1);
        assert!(
            to_yaml(
                &n,
                &RbacOpts {
                    namespace: "d".into(),
                    name: "r".into(),
                    service_account: None
                }
            )
            .contains("# not covered")
        );
    }
}
