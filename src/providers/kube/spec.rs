//! Resolving a runbook's `kube` mapping into [`KubeSpec`]: every template rendered,
//! the kind looked up, the namespace defaulted — and `where`/`for` left as written,
//! because they are evaluated per object at execution.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::expr;
use crate::providers::OpError;
use crate::runbook::kinds;
use crate::runbook::model::{KubeOp, Sp};
use crate::runbook::verbs::{KubeVerb, VerbTarget};

/// The resource an operation is about. Built-in kinds carry everything; a custom
/// resource (`widgets.example.com`) only its plural and group until discovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub plural: String,
    /// "" for the core group.
    pub group: String,
    /// Singular name, bound to each object in `where`/`for`.
    pub singular: String,
    /// Known for built-in kinds; discovered from the server otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaced: Option<bool>,
}

impl Target {
    fn from_kind(r: kinds::Resolved) -> Target {
        match r {
            kinds::Resolved::Builtin(k) => Target {
                plural: k.plural.into(),
                group: k.group.into(),
                singular: k.singular.into(),
                version: Some(k.version.into()),
                kind: Some(k.kind.into()),
                namespaced: Some(k.namespaced),
            },
            kinds::Resolved::Custom { plural, group } => Target {
                singular: kinds::Resolved::Custom {
                    plural: plural.clone(),
                    group: group.clone(),
                }
                .singular(),
                plural,
                group,
                version: None,
                kind: None,
                namespaced: None,
            },
        }
    }

    pub fn builtin(plural: &str) -> Target {
        Target::from_kind(kinds::resolve(plural).expect("invariant: a built-in kind name resolves"))
    }

    /// How kubectl names the kind: `pods`, `deployments`, `widgets.example.com`.
    pub fn kubectl_plural(&self) -> String {
        if self.is_builtin() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// How kubectl names one object's kind: `pod`, `node`, `widgets.example.com`.
    pub fn kubectl_singular(&self) -> String {
        if self.is_builtin() {
            self.singular.clone()
        } else {
            self.kubectl_plural()
        }
    }

    fn is_builtin(&self) -> bool {
        Target::builtin_named(&self.plural, &self.group)
    }

    /// True for a kind kubectl knows without its group (`pods`, `deployments`).
    pub fn builtin_named(plural: &str, group: &str) -> bool {
        kinds::BUILTIN
            .iter()
            .any(|k| k.plural == plural && k.group == group)
    }
}

/// A `kube` operation, resolved: what [`crate::providers::Resolved::op`] holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KubeSpec {
    /// Serialises as the runbook's key (`rollout_restart`), as the string it was.
    pub verb: KubeVerb,
    pub resource: Option<Target>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// None for cluster-scoped kinds and with `all_namespaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_namespaces: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<String>,
    /// A CEL condition per object, unevaluated.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub where_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_daemonsets: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_emptydir_data: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable_eviction: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    /// wait: `delete`, `condition=Type[=Status]` or a CEL condition, unevaluated.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// rollout_undo: the revision to go back to; None for the previous one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_revision: Option<u32>,
    /// logs: the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// logs: only the last N lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<u32>,
    /// logs: only lines of the last N seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_seconds: Option<u64>,
    /// logs: the previous container's log.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub previous: bool,
    /// label, annotate: keys to set (rendered values).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// label, annotate: keys to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overwrite: bool,
    /// set_image: container → image.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, String>,
    /// apply: where the manifest came from (a path as written), None when inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// apply: a server-side dry run; nothing changes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

const EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

fn render(s: &Option<Sp<String>>, vars: &Value, what: &str) -> Result<Option<String>, OpError> {
    s.as_ref()
        .map(|t| {
            expr::render(&t.value, vars)
                .map_err(|e| OpError::Invalid(format!("kube `{what}`: {e}")))
        })
        .transpose()
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

/// Render and check `op`; `default_ns` is the runbook's, the command line's or the
/// kubeconfig's namespace.
pub fn resolve(
    op: &KubeOp,
    vars: &Value,
    default_ns: &str,
    base_dir: &Path,
) -> Result<KubeSpec, OpError> {
    let Some((verb, value)) = op.verb() else {
        return Err(OpError::Invalid("a kube operation needs a verb".into()));
    };
    let value = expr::render(&value.value, vars)
        .map_err(|e| OpError::Invalid(format!("kube `{verb}`: {e}")))?;
    let value = value.trim().to_string();
    if value.is_empty() {
        return Err(OpError::Invalid(format!(
            "kube `{verb}`: the value rendered empty"
        )));
    }
    let mut spec = KubeSpec {
        verb,
        name: non_empty(render(&op.name, vars, "name")?),
        selector: non_empty(render(&op.selector, vars, "selector")?),
        fields: non_empty(render(&op.fields, vars, "fields")?),
        where_: op.where_.as_ref().map(|w| w.value.clone()),
        grace_period: op.grace_period.as_ref().map(|g| g.value),
        force: op.force.as_ref().is_some_and(|f| f.value),
        ignore_daemonsets: op.ignore_daemonsets.as_ref().is_some_and(|f| f.value),
        delete_emptydir_data: op.delete_emptydir_data.as_ref().is_some_and(|f| f.value),
        disable_eviction: op.disable_eviction.as_ref().is_some_and(|f| f.value),
        pod_selector: non_empty(render(&op.pod_selector, vars, "pod_selector")?),
        patch_type: op.patch_type.as_ref().map(|p| p.value.clone()),
        key: non_empty(render(&op.key, vars, "key")?),
        value: render(&op.value, vars, "value")?,
        effect: non_empty(render(&op.effect, vars, "effect")?),
        for_: op.for_.as_ref().map(|f| f.value.trim().to_string()),
        replicas: op.replicas.as_ref().map(|r| r.value),
        all_namespaces: op.all_namespaces.as_ref().is_some_and(|a| a.value),
        to_revision: op.to_revision.as_ref().map(|r| r.value),
        container: non_empty(render(&op.container, vars, "container")?),
        tail: op.tail.as_ref().map(|t| t.value),
        since_seconds: op.since.as_ref().map(|d| d.value.0.as_secs().max(1)),
        previous: op.previous.as_ref().is_some_and(|p| p.value),
        set: render_map(&op.set, vars, "set")?,
        remove: op
            .remove
            .iter()
            .map(|k| render(&Some(k.clone()), vars, "remove").map(Option::unwrap_or_default))
            .collect::<Result<_, _>>()?,
        overwrite: op.overwrite.as_ref().is_some_and(|o| o.value),
        images: render_map(&op.images, vars, "images")?,
        dry_run: op.dry_run.as_ref().is_some_and(|d| d.value),
        ..KubeSpec::default()
    };
    if let Some(b) = &op.body {
        spec.body = Some(
            expr::render_json(&b.value, vars)
                .map_err(|e| OpError::Invalid(format!("kube `body`: {e}")))?,
        );
    }
    let target = if verb == KubeVerb::Apply {
        let (manifest, file) = manifest(&value, base_dir)?;
        spec.file = file;
        let (target, name, ns) = manifest_target(&manifest)?;
        spec.name = Some(name);
        spec.body = Some(manifest);
        // The manifest's namespace, for now; `namespace:` is checked against it below.
        spec.namespace = ns;
        target
    } else if verb == KubeVerb::Logs {
        // `kubectl logs deployment/web`: the pods of a workload; else a pod's name.
        match value.split_once('/') {
            Some((kind, name)) => {
                let k = kinds::resolve(kind)
                    .and_then(|k| match k {
                        kinds::Resolved::Builtin(b)
                            if crate::runbook::verbs::LOG_KINDS
                                .contains(&b.plural) =>
                        {
                            Some(k)
                        }
                        _ => None,
                    })
                    .ok_or_else(|| {
                        OpError::Invalid(format!(
                            "kube `logs`: `{kind}` is not a kind with pods (pod, deployment, replicaset, statefulset, daemonset, job)"
                        ))
                    })?;
                spec.name = Some(name.to_string());
                Target::from_kind(k)
            }
            None => {
                spec.name = Some(value.clone());
                Target::builtin("pods")
            }
        }
    } else if verb.takes_kind() {
        let k = kinds::resolve(&value).ok_or_else(|| {
            OpError::Invalid(format!(
                "unknown resource kind `{value}` (custom resources are written `plural.group`)"
            ))
        })?;
        Target::from_kind(k)
    } else {
        // cordon, uncordon, drain, taint, untaint name a node; evict names a pod.
        spec.name = Some(value.clone());
        Target::builtin(if verb.spec().target == VerbTarget::Pod {
            "pods"
        } else {
            "nodes"
        })
    };
    let ns = non_empty(render(&op.namespace, vars, "namespace")?);
    if ns.is_some() && spec.all_namespaces {
        return Err(OpError::Invalid(
            "`namespace` and `all_namespaces: true` contradict each other".into(),
        ));
    }
    if target.namespaced != Some(false) && !spec.all_namespaces {
        let from_manifest = spec.namespace.take();
        if let (Some(given), Some(written)) = (&ns, &from_manifest)
            && given != written
        {
            // kubectl apply: "the namespace from the provided object … does not match".
            return Err(OpError::Invalid(format!(
                "kube `apply`: the manifest's namespace {written:?} does not match `namespace: {given}`"
            )));
        }
        spec.namespace = Some(
            ns.or(from_manifest)
                .unwrap_or_else(|| default_ns.to_string()),
        );
    } else {
        spec.namespace = None;
    }
    // What is applied carries the namespace it is applied to, as kubectl sets it.
    if verb == KubeVerb::Apply
        && let (Some(ns), Some(body)) = (&spec.namespace, spec.body.as_mut())
    {
        body["metadata"]["namespace"] = Value::String(ns.clone());
    }
    spec.resource = Some(target);
    check(&spec)?;
    Ok(spec)
}

fn render_map(
    m: &BTreeMap<String, Sp<String>>,
    vars: &Value,
    what: &str,
) -> Result<BTreeMap<String, String>, OpError> {
    m.iter()
        .map(|(k, v)| {
            let v = expr::render(&v.value, vars)
                .map_err(|e| OpError::Invalid(format!("kube `{what}.{k}`: {e}")))?;
            Ok((k.clone(), v))
        })
        .collect()
}

/// `apply`'s value: inline YAML when it spans lines (or is a flow mapping), else a
/// path relative to the runbook's folder. One document; returns it as JSON and the
/// path it was read from.
fn manifest(value: &str, base_dir: &Path) -> Result<(Value, Option<String>), OpError> {
    let inline = value.contains('\n') || value.starts_with('{');
    let (text, file) = if inline {
        (value.to_string(), None)
    } else {
        let path = base_dir.join(value);
        let text = crate::runbook::yaml::read_input_text(&path, "manifest").map_err(|e| {
            OpError::Invalid(format!(
                "kube `apply`: cannot read the manifest {}: {e}",
                path.display()
            ))
        })?;
        (text, Some(value.to_string()))
    };
    let where_ = file.as_deref().unwrap_or("the inline manifest");
    let v: Value = crate::runbook::yaml::from_str(&text).map_err(|e| {
        OpError::Invalid(format!(
            "kube `apply`: {where_}:{}:{}: {}",
            e.line, e.column, e.message
        ))
    })?;
    if !v.is_object() {
        return Err(OpError::Invalid(format!(
            "kube `apply`: {where_} is not one Kubernetes object (a mapping with apiVersion, kind and metadata.name)"
        )));
    }
    Ok((v, file))
}

/// The built-in kind, the name and the namespace a manifest names.
fn manifest_target(m: &Value) -> Result<(Target, String, Option<String>), OpError> {
    let api_version = m["apiVersion"].as_str().unwrap_or("");
    let kind = m["kind"].as_str().unwrap_or("");
    let name = m
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if api_version.is_empty() || kind.is_empty() || name.is_empty() {
        return Err(OpError::Invalid(
            "kube `apply`: the manifest needs `apiVersion`, `kind` and `metadata.name`".into(),
        ));
    }
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let k = kinds::BUILTIN
        .iter()
        .find(|k| k.kind == kind && k.group == group)
        .ok_or_else(|| {
            OpError::Invalid(format!(
                "kube `apply`: `{api_version}` `{kind}` is not a built-in kind (custom resources cannot be applied yet)"
            ))
        })?;
    let ns = m
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(String::from);
    Ok((Target::builtin(k.plural), name.to_string(), ns))
}

/// An RFC 1123 label, as the API server checks namespace names
/// (k8s.io/apimachinery pkg/util/validation `IsDNS1123Label`).
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    b.len() <= 63
        && b.first().is_some_and(alnum)
        && b.last().is_some_and(alnum)
        && b.iter().all(|c| alnum(c) || *c == b'-')
}

/// What lint checks too, checked again on rendered values.
fn check(spec: &KubeSpec) -> Result<(), OpError> {
    let verb = spec.verb;
    let need = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(OpError::Invalid(format!("kube `{verb}` needs {what}")))
        }
    };
    if let Some(name) = &spec.name
        && (name.contains('/') || name == "." || name == "..")
    {
        return Err(OpError::Invalid(format!(
            "kube `{verb}`: {name:?} is not a valid object name"
        )));
    }
    // The namespace becomes a path segment (`/namespaces/{ns}/…`): `..` or `a/b`
    // would address another URL. The API server only accepts RFC 1123 labels.
    if let Some(ns) = &spec.namespace
        && !is_dns_label(ns)
    {
        return Err(OpError::Invalid(format!(
            "kube `{verb}`: namespace {ns:?} is not a valid namespace name (lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit)"
        )));
    }
    match verb {
        KubeVerb::Delete => {
            need(
                spec.name.is_some()
                    || spec.selector.is_some()
                    || spec.fields.is_some()
                    || spec.where_.is_some(),
                "`name`, `selector`, `fields` or `where` (it never deletes a whole kind)",
            )?;
            if spec.force && spec.grace_period.is_some_and(|g| g > 0) {
                // kubectl pkg/cmd/delete/delete.go Complete().
                return Err(OpError::Invalid(
                    "`force: true` and a `grace_period` greater than 0 cannot be used together"
                        .into(),
                ));
            }
        }
        KubeVerb::Patch => {
            need(spec.name.is_some(), "`name`")?;
            need(spec.body.is_some(), "`body`")?;
            let t = spec.patch_type.as_deref().unwrap_or("strategic");
            if !["strategic", "merge", "json"].contains(&t) {
                return Err(OpError::Invalid(format!(
                    "unknown patch type `{t}`: one of strategic, merge, json"
                )));
            }
            if t == "json" && !spec.body.as_ref().is_some_and(Value::is_array) {
                return Err(OpError::Invalid(
                    "a JSON patch (`patch_type: json`) is a list of operations".into(),
                ));
            }
        }
        KubeVerb::Scale => {
            need(spec.name.is_some(), "`name`")?;
            need(spec.replicas.is_some(), "`replicas`")?;
        }
        KubeVerb::RolloutRestart => need(spec.name.is_some(), "`name`")?,
        KubeVerb::Wait => need(
            spec.for_.as_deref().is_some_and(|f| !f.is_empty()),
            "`for` (`delete`, `condition=Ready` or a condition)",
        )?,
        KubeVerb::Taint | KubeVerb::Untaint => {
            need(spec.key.is_some(), "`key`")?;
            if verb == KubeVerb::Taint {
                need(spec.effect.is_some(), "`effect`")?;
            }
            if let Some(e) = &spec.effect
                && !EFFECTS.contains(&e.as_str())
            {
                return Err(OpError::Invalid(format!(
                    "unknown taint effect `{e}`: one of NoSchedule, PreferNoSchedule, NoExecute"
                )));
            }
        }
        KubeVerb::RolloutUndo | KubeVerb::RolloutStatus => need(spec.name.is_some(), "`name`")?,
        KubeVerb::Label | KubeVerb::Annotate => {
            need(spec.name.is_some(), "`name`")?;
            need(
                !spec.set.is_empty() || !spec.remove.is_empty(),
                "`set` or `remove`",
            )?;
        }
        KubeVerb::SetImage => {
            need(spec.name.is_some(), "`name`")?;
            need(!spec.images.is_empty(), "`images` (container: image)")?;
            if let Some((c, _)) = spec.images.iter().find(|(_, i)| i.trim().is_empty()) {
                return Err(OpError::Invalid(format!(
                    "kube `set_image`: the image of `{c}` rendered empty"
                )));
            }
        }
        KubeVerb::Logs | KubeVerb::Apply => {}
        KubeVerb::Get
        | KubeVerb::Cordon
        | KubeVerb::Uncordon
        | KubeVerb::Drain
        | KubeVerb::Evict => {}
    }
    Ok(())
}
