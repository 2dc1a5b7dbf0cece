//! The kinds the lab serves: what discovery advertises, how a URL maps to a store key,
//! and which field selectors each kind supports.
//!
//! The list mirrors what kubectl 1.37 and kube 5 need for the incidents we simulate
//! (reference/kubernetes.md §4.1). Any kind not listed here cannot be stored: the
//! scenario loader rejects it with the list of known kinds.

/// One REST resource (a kind in a group/version), as discovery describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceDef {
    /// API group, "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    /// Plural, lower case: the URL segment.
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Subresources served (e.g. "status"); eviction is handled separately.
    pub subresources: &'static [&'static str],
    pub categories: &'static [&'static str],
}

impl ResourceDef {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The store's key for this resource: `pods`, `deployments.apps`.
    pub fn key(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Is this the resource with store key `key`? ([`ResourceDef::key`] without
    /// building the key.)
    pub fn is(&self, key: &str) -> bool {
        if self.group.is_empty() {
            self.plural == key
        } else {
            key.strip_prefix(self.plural)
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|g| g == self.group)
        }
    }

    /// What `kubectl` prints for the resource in errors: `pods`, `deployments.apps`.
    pub fn qualified(&self) -> String {
        self.key()
    }

    /// Fields this kind accepts in a `fieldSelector`, as the real registry's
    /// `GetAttrs`/`SelectableFields` do (reference/kubernetes.md §1.6). Every kind
    /// supports `metadata.name`, and namespaced kinds `metadata.namespace`.
    pub fn selectable_fields(&self) -> &'static [&'static str] {
        match (self.group, self.plural) {
            ("", "pods") => &[
                "metadata.name",
                "metadata.namespace",
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.podIPs",
                "status.nominatedNodeName",
            ],
            ("", "events") => &[
                "metadata.name",
                "metadata.namespace",
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
            ("", "nodes") => &["metadata.name", "spec.unschedulable"],
            ("", "namespaces") => &["metadata.name", "status.phase"],
            ("", "secrets") => &["metadata.name", "metadata.namespace", "type"],
            ("apps", "replicasets") => &["metadata.name", "metadata.namespace", "status.replicas"],
            ("discovery.k8s.io", "endpointslices") => {
                &["metadata.name", "metadata.namespace", "addressType"]
            }
            _ if self.namespaced => &["metadata.name", "metadata.namespace"],
            _ => &["metadata.name"],
        }
    }

    fn verbs(&self) -> &'static [&'static str] {
        &[
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }

    /// Whether the resource has a `scale` subresource (autoscaling/v1 Scale).
    pub fn scalable(&self) -> bool {
        self.group == "apps"
            && matches!(self.plural, "deployments" | "replicasets" | "statefulsets")
    }

    /// The discovery entries (APIResource) for this resource and its subresources.
    pub fn discovery_entries(&self) -> Vec<serde_json::Value> {
        let mut out = vec![serde_json::json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": self.verbs(),
            "shortNames": self.short_names,
            "categories": self.categories,
        })];
        for sub in self.subresources {
            out.push(serde_json::json!({
                "name": format!("{}/{}", self.plural, sub),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if self.scalable() {
            // kubectl scale finds the Scale's group and version here.
            out.push(serde_json::json!({
                "name": format!("{}/scale", self.plural),
                "singularName": "",
                "namespaced": true,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            }));
        }
        if self.group.is_empty() && self.plural == "pods" {
            out.push(serde_json::json!({
                "name": "pods/log",
                "singularName": "",
                "namespaced": true,
                "kind": "Pod",
                "verbs": ["get"],
            }));
            // kubectl drain's CheckEvictionSupport looks for exactly this entry:
            // name pods/eviction, kind Eviction, non-empty group and version (§1.2 step 4).
            out.push(serde_json::json!({
                "name": "pods/eviction",
                "singularName": "",
                "namespaced": true,
                "group": "policy",
                "version": "v1",
                "kind": "Eviction",
                "verbs": ["create"],
            }));
        }
        out
    }
}

#[allow(clippy::too_many_arguments)]
const fn def(
    group: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    subresources: &'static [&'static str],
    categories: &'static [&'static str],
) -> ResourceDef {
    ResourceDef {
        group,
        version: "v1",
        plural,
        singular,
        kind,
        namespaced,
        short_names,
        subresources,
        categories,
    }
}

const ALL: &[&str] = &["all"];
const STATUS: &[&str] = &["status"];

/// Every resource the lab serves.
pub static RESOURCES: &[ResourceDef] = &[
    def(
        "",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        &["ns"],
        STATUS,
        &[],
    ),
    def("", "nodes", "node", "Node", false, &["no"], STATUS, &[]),
    def("", "pods", "pod", "Pod", true, &["po"], STATUS, ALL),
    def("", "events", "event", "Event", true, &["ev"], &[], &[]),
    def(
        "",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        true,
        &["pvc"],
        STATUS,
        &[],
    ),
    def(
        "",
        "persistentvolumes",
        "persistentvolume",
        "PersistentVolume",
        false,
        &["pv"],
        STATUS,
        &[],
    ),
    def(
        "",
        "services",
        "service",
        "Service",
        true,
        &["svc"],
        STATUS,
        ALL,
    ),
    def(
        "",
        "endpoints",
        "endpoints",
        "Endpoints",
        true,
        &["ep"],
        &[],
        &[],
    ),
    def(
        "",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        &["cm"],
        &[],
        &[],
    ),
    def("", "secrets", "secret", "Secret", true, &[], &[], &[]),
    def(
        "",
        "resourcequotas",
        "resourcequota",
        "ResourceQuota",
        true,
        &["quota"],
        STATUS,
        &[],
    ),
    def(
        "",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        &["sa"],
        &[],
        &[],
    ),
    def(
        "apps",
        "deployments",
        "deployment",
        "Deployment",
        true,
        &["deploy"],
        STATUS,
        ALL,
    ),
    def(
        "apps",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        true,
        &["rs"],
        STATUS,
        ALL,
    ),
    def(
        "apps",
        "statefulsets",
        "statefulset",
        "StatefulSet",
        true,
        &["sts"],
        STATUS,
        ALL,
    ),
    def(
        "apps",
        "daemonsets",
        "daemonset",
        "DaemonSet",
        true,
        &["ds"],
        STATUS,
        ALL,
    ),
    def(
        "storage.k8s.io",
        "volumeattachments",
        "volumeattachment",
        "VolumeAttachment",
        false,
        &[],
        STATUS,
        &[],
    ),
    def(
        "storage.k8s.io",
        "storageclasses",
        "storageclass",
        "StorageClass",
        false,
        &["sc"],
        &[],
        &[],
    ),
    def(
        "discovery.k8s.io",
        "endpointslices",
        "endpointslice",
        "EndpointSlice",
        true,
        &[],
        &[],
        &[],
    ),
    // Leases: `runbook`'s own `lock:` (one remediation at a time) takes one, and
    // two runs race for it through resourceVersion, as against a real API server.
    def(
        "coordination.k8s.io",
        "leases",
        "lease",
        "Lease",
        true,
        &[],
        &[],
        &[],
    ),
    def(
        "policy",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        "PodDisruptionBudget",
        true,
        &["pdb"],
        STATUS,
        &[],
    ),
];

/// The groups served under `/apis`, in discovery order.
pub const GROUPS: &[&str] = &[
    "apps",
    "storage.k8s.io",
    "discovery.k8s.io",
    "policy",
    "coordination.k8s.io",
];

/// Look a resource up by its URL segments.
pub fn by_path(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Look a resource up by an object's `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.api_version() == api_version && r.kind == kind)
}

/// Look a resource up by its store key (`pods`, `deployments.apps`).
pub fn by_key(key: &str) -> Option<&'static ResourceDef> {
    RESOURCES.iter().find(|r| r.key() == key)
}

/// `apiVersion/kind` of every served kind, for error messages.
pub fn known_kinds() -> String {
    RESOURCES
        .iter()
        .map(|r| format!("{}/{}", r.api_version(), r.kind))
        .collect::<Vec<_>>()
        .join(", ")
}
