//! The Kubernetes verbs of a `kube` operation, described once.
//!
//! Before this table the verbs were strings spelt in five places (the model, the
//! converter's key lists, the validator, the provider's resolver and its dispatch) and
//! nothing checked that they agreed. Now the converter, the validator, the JSON schema,
//! the provider's dispatch (an exhaustive `match` on [`KubeVerb`]) and the docs' verb
//! tables (checked by `tests/lint_docs.rs`) all read [`KubeVerb::spec`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// A verb of a `kube` mapping. Serialises as the key a runbook writes
/// (`rollout_restart`), so a resolved operation in a journal reads as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KubeVerb {
    #[default]
    Get,
    Cordon,
    Uncordon,
    Drain,
    Delete,
    Evict,
    Patch,
    Taint,
    Untaint,
    Wait,
    Scale,
    RolloutRestart,
    RolloutUndo,
    RolloutStatus,
    Logs,
    Label,
    Annotate,
    SetImage,
    Apply,
}

/// What a verb's value names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerbTarget {
    /// A resource kind (`pods`, `deployments.apps`, `widgets.example.com`).
    Kind,
    /// A node's name.
    Node,
    /// A pod's name (in `namespace`).
    Pod,
    /// A pod's name, or `KIND/NAME` of a workload whose pods are meant (`logs`).
    PodOrWorkload,
    /// A manifest: a file's path (relative to the runbook) or inline YAML (`apply`).
    Manifest,
}

/// Everything the format, lint, schema, provider and docs need to know of one verb.
#[derive(Debug)]
pub struct VerbSpec {
    pub verb: KubeVerb,
    /// The key a runbook writes.
    pub name: &'static str,
    /// True when the verb changes the cluster: it is refused in checks and
    /// verifications, gated in actions, and listed in docs/kube.md's "Writes" table.
    pub mutates: bool,
    pub target: VerbTarget,
    /// The only built-in kinds (plurals) the verb applies to, when it is narrower than
    /// "any kind".
    pub kinds: Option<&'static [&'static str]>,
    /// The qualifier keys the verb takes; any other is a lint error.
    pub keys: &'static [&'static str],
    /// The keys it cannot do without (a subset of `keys`).
    pub required: &'static [&'static str],
    /// One line for the schema's hover text.
    pub summary: &'static str,
}

const SELECT: &[&str] = &[
    "name",
    "namespace",
    "all_namespaces",
    "selector",
    "fields",
    "where",
];

/// The kinds `logs: KIND/NAME` reads one pod of (kubectl logs accepts the same).
pub const LOG_KINDS: &[&str] = &[
    "pods",
    "deployments",
    "replicasets",
    "statefulsets",
    "daemonsets",
    "jobs",
];

/// The table, in the order the docs and `--help` list the verbs.
pub const VERBS: &[VerbSpec] = &[
    VerbSpec {
        verb: KubeVerb::Get,
        name: "get",
        mutates: false,
        target: VerbTarget::Kind,
        kinds: None,
        keys: SELECT,
        required: &[],
        summary: "List objects of a kind (`pods`, `nodes`, `volumeattachments`, `deployments.apps`, a custom resource `plural.group`); one object with `name`.",
    },
    VerbSpec {
        verb: KubeVerb::Delete,
        name: "delete",
        mutates: true,
        target: VerbTarget::Kind,
        kinds: None,
        keys: &[
            "name",
            "namespace",
            "all_namespaces",
            "selector",
            "fields",
            "where",
            "grace_period",
            "force",
        ],
        required: &[],
        summary: "Delete objects of a kind, by `name` or `selector`.",
    },
    VerbSpec {
        verb: KubeVerb::Patch,
        name: "patch",
        mutates: true,
        target: VerbTarget::Kind,
        kinds: None,
        keys: &["name", "namespace", "patch_type", "body"],
        required: &["name", "body"],
        summary: "Patch an object of a kind (`patch_type`, `body`).",
    },
    VerbSpec {
        verb: KubeVerb::Wait,
        name: "wait",
        mutates: false,
        target: VerbTarget::Kind,
        kinds: None,
        keys: &[
            "name",
            "namespace",
            "all_namespaces",
            "selector",
            "fields",
            "for",
        ],
        required: &["for"],
        summary: "Wait until objects of a kind meet `for` (always bounded by the step timeout).",
    },
    VerbSpec {
        verb: KubeVerb::Scale,
        name: "scale",
        mutates: true,
        target: VerbTarget::Kind,
        kinds: Some(&["deployments", "statefulsets", "replicasets"]),
        keys: &["name", "namespace", "replicas"],
        required: &["name", "replicas"],
        summary: "Set `replicas` on a deployment, statefulset or replicaset.",
    },
    VerbSpec {
        verb: KubeVerb::RolloutRestart,
        name: "rollout_restart",
        mutates: true,
        target: VerbTarget::Kind,
        kinds: Some(&["deployments", "statefulsets", "daemonsets"]),
        keys: &["name", "namespace"],
        required: &["name"],
        summary: "Restart a deployment, statefulset or daemonset's pods (kubectl rollout restart).",
    },
    VerbSpec {
        verb: KubeVerb::Cordon,
        name: "cordon",
        mutates: true,
        target: VerbTarget::Node,
        kinds: None,
        keys: &[],
        required: &[],
        summary: "Mark a node unschedulable.",
    },
    VerbSpec {
        verb: KubeVerb::Uncordon,
        name: "uncordon",
        mutates: true,
        target: VerbTarget::Node,
        kinds: None,
        keys: &[],
        required: &[],
        summary: "Mark a node schedulable again.",
    },
    VerbSpec {
        verb: KubeVerb::Drain,
        name: "drain",
        mutates: true,
        target: VerbTarget::Node,
        kinds: None,
        keys: &[
            "grace_period",
            "force",
            "ignore_daemonsets",
            "delete_emptydir_data",
            "disable_eviction",
            "pod_selector",
        ],
        required: &[],
        summary: "Cordon a node and evict its pods, with kubectl's filters.",
    },
    VerbSpec {
        verb: KubeVerb::Evict,
        name: "evict",
        mutates: true,
        target: VerbTarget::Pod,
        kinds: None,
        keys: &["namespace", "grace_period"],
        required: &[],
        summary: "Evict a pod through the policy/v1 Eviction API (respects PodDisruptionBudgets).",
    },
    VerbSpec {
        verb: KubeVerb::Taint,
        name: "taint",
        mutates: true,
        target: VerbTarget::Node,
        kinds: None,
        keys: &["key", "value", "effect"],
        required: &["key", "effect"],
        summary: "Add a taint to a node (`key`, `value`, `effect`).",
    },
    VerbSpec {
        verb: KubeVerb::Untaint,
        name: "untaint",
        mutates: true,
        target: VerbTarget::Node,
        kinds: None,
        keys: &["key", "effect"],
        required: &["key"],
        summary: "Remove a taint from a node (`key`, optional `effect`).",
    },
    VerbSpec {
        verb: KubeVerb::RolloutUndo,
        name: "rollout_undo",
        mutates: true,
        target: VerbTarget::Kind,
        kinds: Some(&["deployments"]),
        keys: &["name", "namespace", "to_revision"],
        required: &["name"],
        summary: "Roll a deployment back to its previous revision, or `to_revision` (kubectl rollout undo): the old ReplicaSet is scaled up again.",
    },
    VerbSpec {
        verb: KubeVerb::RolloutStatus,
        name: "rollout_status",
        mutates: false,
        target: VerbTarget::Kind,
        kinds: Some(&["deployments"]),
        keys: &["name", "namespace"],
        required: &["name"],
        summary: "Wait until a deployment's rollout is complete (kubectl rollout status), bounded by the step's `timeout`.",
    },
    VerbSpec {
        verb: KubeVerb::Logs,
        name: "logs",
        mutates: false,
        target: VerbTarget::PodOrWorkload,
        kinds: None,
        keys: &["namespace", "container", "tail", "since", "previous"],
        required: &[],
        summary: "A pod's log, or one pod's of `deployment/NAME` (kubectl logs); the result has `lines`.",
    },
    VerbSpec {
        verb: KubeVerb::Label,
        name: "label",
        mutates: true,
        target: VerbTarget::Kind,
        kinds: None,
        keys: &["name", "namespace", "set", "remove", "overwrite"],
        required: &["name"],
        summary: "Set (`set`) or remove (`remove`) labels of an object (kubectl label; `overwrite` to change a value).",
    },
    VerbSpec {
        verb: KubeVerb::Annotate,
        name: "annotate",
        mutates: true,
        target: VerbTarget::Kind,
        kinds: None,
        keys: &["name", "namespace", "set", "remove", "overwrite"],
        required: &["name"],
        summary: "Set (`set`) or remove (`remove`) annotations of an object (kubectl annotate; `overwrite` to change a value).",
    },
    VerbSpec {
        verb: KubeVerb::SetImage,
        name: "set_image",
        mutates: true,
        target: VerbTarget::Kind,
        kinds: Some(&[
            "deployments",
            "statefulsets",
            "daemonsets",
            "replicasets",
            "pods",
        ]),
        keys: &["name", "namespace", "images"],
        required: &["name", "images"],
        summary: "Set container images (`images: {container: image}`) of a workload (kubectl set image).",
    },
    VerbSpec {
        verb: KubeVerb::Apply,
        name: "apply",
        mutates: true,
        target: VerbTarget::Manifest,
        kinds: None,
        keys: &["namespace", "dry_run"],
        required: &[],
        summary: "Server-side apply of a manifest (a file, relative to the runbook, or inline YAML) with field manager `runbook`; `dry_run: true` only reports what would change.",
    },
];

impl KubeVerb {
    /// This verb's row of [`VERBS`].
    pub fn spec(self) -> &'static VerbSpec {
        VERBS
            .iter()
            .find(|s| s.verb == self)
            .expect("invariant: VERBS has a row for every KubeVerb (tested)")
    }

    /// The key a runbook writes.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The verb a `kube` key names, if it names one.
    pub fn from_name(name: &str) -> Option<Self> {
        VERBS.iter().find(|s| s.name == name).map(|s| s.verb)
    }

    /// Every verb key, in table order.
    pub fn names() -> impl Iterator<Item = &'static str> {
        VERBS.iter().map(|s| s.name)
    }

    pub fn mutates(self) -> bool {
        self.spec().mutates
    }

    /// True when the verb's value is a resource kind rather than an object's name.
    pub fn takes_kind(self) -> bool {
        self.spec().target == VerbTarget::Kind
    }
}

impl fmt::Display for KubeVerb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [KubeVerb; 19] = [
        KubeVerb::Get,
        KubeVerb::Cordon,
        KubeVerb::Uncordon,
        KubeVerb::Drain,
        KubeVerb::Delete,
        KubeVerb::Evict,
        KubeVerb::Patch,
        KubeVerb::Taint,
        KubeVerb::Untaint,
        KubeVerb::Wait,
        KubeVerb::Scale,
        KubeVerb::RolloutRestart,
        KubeVerb::RolloutUndo,
        KubeVerb::RolloutStatus,
        KubeVerb::Logs,
        KubeVerb::Label,
        KubeVerb::Annotate,
        KubeVerb::SetImage,
        KubeVerb::Apply,
    ];

    #[test]
    fn every_verb_has_exactly_one_row_and_its_name_round_trips() {
        assert_eq!(VERBS.len(), ALL.len());
        for v in ALL {
            assert_eq!(VERBS.iter().filter(|s| s.verb == v).count(), 1, "{v:?}");
            assert_eq!(KubeVerb::from_name(v.name()), Some(v));
            // The journal holds resolved operations: the serialised verb is the key.
            assert_eq!(
                serde_json::to_value(v).ok(),
                Some(serde_json::Value::String(v.name().into()))
            );
        }
        for s in VERBS {
            for r in s.required {
                assert!(s.keys.contains(r), "{}: required `{r}` not in keys", s.name);
            }
        }
    }

    #[test]
    fn only_the_readers_are_read_only() {
        let read_only: Vec<_> = VERBS
            .iter()
            .filter(|s| !s.mutates)
            .map(|s| s.name)
            .collect();
        assert_eq!(read_only, ["get", "wait", "rollout_status", "logs"]);
    }

    #[test]
    fn the_converter_knows_every_key_a_verb_takes_and_no_other() {
        use std::collections::BTreeSet;
        let from_verbs: BTreeSet<&str> =
            VERBS.iter().flat_map(|s| s.keys.iter().copied()).collect();
        let known: BTreeSet<&str> = crate::runbook::convert::KUBE_QUALIFIERS
            .iter()
            .copied()
            .collect();
        assert_eq!(from_verbs, known);
    }
}
