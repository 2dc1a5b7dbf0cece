//! Kubernetes resource kinds a runbook may name, as `kubectl` accepts them: plural
//! (`pods`), singular (`pod`), short name (`po`), optionally qualified by the group
//! (`deployments.apps`); and any `plural.group` as a custom resource.

/// A built-in kind: how to name it, and where it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// The API resource name, e.g. `pods`.
    pub plural: &'static str,
    /// The singular name, bound to each object in `where` (`pod.status.phase`).
    pub singular: &'static str,
    /// The `kind` field, e.g. `Pod`.
    pub kind: &'static str,
    /// API group; "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub namespaced: bool,
    /// kubectl's short names.
    pub short: &'static [&'static str],
}

const fn k(
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    group: &'static str,
    version: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
) -> Kind {
    Kind {
        plural,
        singular,
        kind,
        group,
        version,
        namespaced,
        short,
    }
}

/// The built-in kinds (from `kubectl api-resources` on Kubernetes 1.3x).
pub const BUILTIN: &[Kind] = &[
    k("pods", "pod", "Pod", "", "v1", true, &["po"]),
    k("nodes", "node", "Node", "", "v1", false, &["no"]),
    k("services", "service", "Service", "", "v1", true, &["svc"]),
    k(
        "endpoints",
        "endpoints",
        "Endpoints",
        "",
        "v1",
        true,
        &["ep"],
    ),
    k(
        "namespaces",
        "namespace",
        "Namespace",
        "",
        "v1",
        false,
        &["ns"],
    ),
    k(
        "configmaps",
        "configmap",
        "ConfigMap",
        "",
        "v1",
        true,
        &["cm"],
    ),
    k("secrets", "secret", "Secret", "", "v1", true, &[]),
    k("events", "event", "Event", "", "v1", true, &["ev"]),
    k(
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        "",
        "v1",
        true,
        &["pvc"],
    ),
    k(
        "persistentvolumes",
        "persistentvolume",
        "PersistentVolume",
        "",
        "v1",
        false,
        &["pv"],
    ),
    k(
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        "",
        "v1",
        true,
        &["sa"],
    ),
    k(
        "replicationcontrollers",
        "replicationcontroller",
        "ReplicationController",
        "",
        "v1",
        true,
        &["rc"],
    ),
    k(
        "resourcequotas",
        "resourcequota",
        "ResourceQuota",
        "",
        "v1",
        true,
        &["quota"],
    ),
    k(
        "limitranges",
        "limitrange",
        "LimitRange",
        "",
        "v1",
        true,
        &["limits"],
    ),
    k(
        "deployments",
        "deployment",
        "Deployment",
        "apps",
        "v1",
        true,
        &["deploy"],
    ),
    k(
        "statefulsets",
        "statefulset",
        "StatefulSet",
        "apps",
        "v1",
        true,
        &["sts"],
    ),
    k(
        "daemonsets",
        "daemonset",
        "DaemonSet",
        "apps",
        "v1",
        true,
        &["ds"],
    ),
    k(
        "replicasets",
        "replicaset",
        "ReplicaSet",
        "apps",
        "v1",
        true,
        &["rs"],
    ),
    k("jobs", "job", "Job", "batch", "v1", true, &[]),
    k(
        "cronjobs",
        "cronjob",
        "CronJob",
        "batch",
        "v1",
        true,
        &["cj"],
    ),
    k(
        "ingresses",
        "ingress",
        "Ingress",
        "networking.k8s.io",
        "v1",
        true,
        &["ing"],
    ),
    k(
        "networkpolicies",
        "networkpolicy",
        "NetworkPolicy",
        "networking.k8s.io",
        "v1",
        true,
        &["netpol"],
    ),
    k(
        "volumeattachments",
        "volumeattachment",
        "VolumeAttachment",
        "storage.k8s.io",
        "v1",
        false,
        &[],
    ),
    k(
        "storageclasses",
        "storageclass",
        "StorageClass",
        "storage.k8s.io",
        "v1",
        false,
        &["sc"],
    ),
    k(
        "poddisruptionbudgets",
        "poddisruptionbudget",
        "PodDisruptionBudget",
        "policy",
        "v1",
        true,
        &["pdb"],
    ),
    k(
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        "HorizontalPodAutoscaler",
        "autoscaling",
        "v2",
        true,
        &["hpa"],
    ),
    k(
        "leases",
        "lease",
        "Lease",
        "coordination.k8s.io",
        "v1",
        true,
        &[],
    ),
    k(
        "endpointslices",
        "endpointslice",
        "EndpointSlice",
        "discovery.k8s.io",
        "v1",
        true,
        &[],
    ),
    k(
        "priorityclasses",
        "priorityclass",
        "PriorityClass",
        "scheduling.k8s.io",
        "v1",
        false,
        &["pc"],
    ),
    k(
        "roles",
        "role",
        "Role",
        "rbac.authorization.k8s.io",
        "v1",
        true,
        &[],
    ),
    k(
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        "rbac.authorization.k8s.io",
        "v1",
        true,
        &[],
    ),
    k(
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        "rbac.authorization.k8s.io",
        "v1",
        false,
        &[],
    ),
    k(
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        "rbac.authorization.k8s.io",
        "v1",
        false,
        &[],
    ),
    k(
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        "apiextensions.k8s.io",
        "v1",
        false,
        &["crd", "crds"],
    ),
];

/// What a kind name in a runbook refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    Builtin(&'static Kind),
    /// `plural.group` that is not built in: a custom resource. The plural is kept.
    Custom {
        plural: String,
        group: String,
    },
}

impl Resolved {
    /// The name bound to each object in `where`/`for` besides `object`.
    pub fn singular(&self) -> String {
        match self {
            Resolved::Builtin(k) => k.singular.to_owned(),
            Resolved::Custom { plural, .. } => {
                plural.strip_suffix('s').unwrap_or(plural).to_owned()
            }
        }
    }
}

/// Resolve a kind name as kubectl would: `pods`, `pod`, `po`, `Pod`,
/// `deployments.apps`, `deploy.apps`; `widgets.example.com` is a custom resource.
pub fn resolve(name: &str) -> Option<Resolved> {
    let lower = name.to_ascii_lowercase();
    let (base, group) = match lower.split_once('.') {
        Some((b, g)) => (b, Some(g)),
        None => (lower.as_str(), None),
    };
    let builtin = BUILTIN.iter().find(|k| {
        (k.plural == base || k.singular == base || k.short.contains(&base))
            && group.is_none_or(|g| g == k.group || (k.group.is_empty() && g == "core"))
    });
    if let Some(k) = builtin {
        return Some(Resolved::Builtin(k));
    }
    let group = group?;
    let label = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if label(base) && group.split('.').all(label) && group.contains('.') {
        Some(Resolved::Custom {
            plural: base.to_owned(),
            group: group.to_owned(),
        })
    } else {
        None
    }
}

/// Every name `resolve` accepts for a built-in kind (for "did you mean").
pub fn all_names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().flat_map(|k| {
        [k.plural, k.singular]
            .into_iter()
            .chain(k.short.iter().copied())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plural_singular_short_and_grouped_names() {
        for name in [
            "pods",
            "pod",
            "po",
            "Pod",
            "deployments.apps",
            "deploy",
            "pvc",
            "volumeattachments",
        ] {
            assert!(
                matches!(resolve(name), Some(Resolved::Builtin(_))),
                "{name}"
            );
        }
        assert_eq!(resolve("po").unwrap().singular(), "pod");
    }

    #[test]
    fn plural_dot_group_is_a_custom_resource() {
        assert_eq!(
            resolve("widgets.example.com"),
            Some(Resolved::Custom {
                plural: "widgets".into(),
                group: "example.com".into()
            })
        );
        assert_eq!(resolve("widgets.example.com").unwrap().singular(), "widget");
    }

    #[test]
    fn rejects_unknown_names() {
        assert_eq!(resolve("podz"), None);
        assert_eq!(resolve("deployments.wrong"), None);
        assert_eq!(resolve(""), None);
    }
}
