//! RBAC for token-authenticated clients, faithful enough to refuse what a Role does
//! not allow (k8s.io/apiserver's RBAC authorizer, reduced): a scenario's `rbac:` maps
//! bearer tokens to users (`system:serviceaccount:NS:NAME` for a ServiceAccount) and
//! holds Role, ClusterRole, RoleBinding and ClusterRoleBinding objects. A request with
//! one of those tokens is allowed only when a binding that names its user grants the
//! verb on the resource (`pods`, `pods/eviction`) of the API group, in the request's
//! namespace for a RoleBinding; otherwise it is answered 403 Forbidden with the API
//! server's Status. Requests without a token, or with the lab's own kubeconfig token,
//! stay the cluster's administrator, so every other scenario works as before.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

/// The token of the kubeconfig `runbook lab` writes: never restricted.
pub const ADMIN_TOKEN: &str = "lab-dummy-token";

/// `rbac:` in a scenario.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rbac {
    /// Bearer token → the user it authenticates, e.g.
    /// `system:serviceaccount:runbook:runbook`.
    #[serde(default)]
    pub tokens: BTreeMap<String, String>,
    /// Role, ClusterRole, RoleBinding and ClusterRoleBinding objects, as `kubectl`
    /// would apply them (`runbook rbac … --service-account NS:NAME` prints them).
    #[serde(default)]
    #[schemars(with = "Vec<serde_json::Map<String, Value>>")]
    pub objects: Vec<Value>,
}

/// A request, as the authorizer sees it.
#[derive(Debug)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    /// `pods`, or `pods/eviction` for a subresource.
    pub resource: &'a str,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// What the authorizer says.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// The token is not known: 401.
    Unauthenticated,
    /// Known user, no rule allows it: 403 with this message.
    Forbidden(String),
}

fn str_at<'v>(v: &'v Value, p: &str) -> &'v str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

fn has(list: &Value, want: &str) -> bool {
    list.as_array().is_some_and(|a| {
        a.iter()
            .any(|x| x.as_str().is_some_and(|s| s == want || s == "*"))
    })
}

impl Rbac {
    /// Decide a request carrying `token` (the bearer token, if any).
    pub fn authorize(&self, token: Option<&str>, a: &Attributes<'_>) -> Verdict {
        let Some(token) = token.filter(|t| *t != ADMIN_TOKEN) else {
            return Verdict::Allowed;
        };
        let Some(user) = self.tokens.get(token) else {
            return Verdict::Unauthenticated;
        };
        let names_user = |b: &Value| {
            b["subjects"].as_array().is_some_and(|subjects| {
                subjects.iter().any(|s| match str_at(s, "/kind") {
                    "ServiceAccount" => {
                        *user
                            == format!(
                                "system:serviceaccount:{}:{}",
                                str_at(s, "/namespace"),
                                str_at(s, "/name")
                            )
                    }
                    "User" => str_at(s, "/name") == user,
                    _ => false,
                })
            })
        };
        let role = |kind: &str, name: &str, ns: Option<&str>| {
            self.objects.iter().find(|o| {
                str_at(o, "/kind") == kind
                    && str_at(o, "/metadata/name") == name
                    && ns.is_none_or(|n| str_at(o, "/metadata/namespace") == n)
            })
        };
        let allows = |r: &Value| {
            r["rules"].as_array().is_some_and(|rules| {
                rules.iter().any(|rule| {
                    has(&rule["apiGroups"], a.group)
                        && has(&rule["resources"], a.resource)
                        && has(&rule["verbs"], a.verb)
                        && (rule["resourceNames"].as_array().is_none_or(Vec::is_empty)
                            || a.name.is_some_and(|n| has(&rule["resourceNames"], n)))
                })
            })
        };
        for b in self.objects.iter().filter(|o| names_user(o)) {
            let ref_kind = str_at(b, "/roleRef/kind");
            let ref_name = str_at(b, "/roleRef/name");
            let granted = match str_at(b, "/kind") {
                "ClusterRoleBinding" if ref_kind == "ClusterRole" => {
                    role("ClusterRole", ref_name, None).is_some_and(allows)
                }
                "RoleBinding" => {
                    let bns = str_at(b, "/metadata/namespace");
                    a.namespace == Some(bns)
                        && match ref_kind {
                            "Role" => role("Role", ref_name, Some(bns)).is_some_and(allows),
                            "ClusterRole" => {
                                role("ClusterRole", ref_name, None).is_some_and(allows)
                            }
                            _ => false,
                        }
                }
                _ => false,
            };
            if granted {
                return Verdict::Allowed;
            }
        }
        // k8s.io/apiserver pkg/endpoints/handlers/responsewriters/errors.go `forbiddenMessage`.
        let (res, sub) = a
            .resource
            .split_once('/')
            .map_or((a.resource, None), |(r, s)| (r, Some(s)));
        let what = match sub {
            Some(s) => format!("resource \"{res}/{s}\""),
            None => format!("resource \"{res}\""),
        };
        let group = a.group;
        let subject = match a.name {
            Some(n) => format!("{res} \"{n}\" is forbidden"),
            None => format!("{res} is forbidden"),
        };
        let scope = match a.namespace {
            Some(ns) => format!(" in the namespace \"{ns}\""),
            None => " at the cluster scope".to_owned(),
        };
        Verdict::Forbidden(format!(
            "{subject}: User \"{user}\" cannot {} {what} in API group \"{group}\"{scope}",
            a.verb
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rbac() -> Rbac {
        Rbac {
            tokens: BTreeMap::from([("t1".into(), "system:serviceaccount:runbook:runbook".into())]),
            objects: vec![
                json!({"kind": "Role", "metadata": {"name": "r", "namespace": "prod"},
                       "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "delete"]}]}),
                json!({"kind": "RoleBinding", "metadata": {"name": "r", "namespace": "prod"},
                       "roleRef": {"kind": "Role", "name": "r"},
                       "subjects": [{"kind": "ServiceAccount", "name": "runbook", "namespace": "runbook"}]}),
            ],
        }
    }

    fn attrs<'a>(verb: &'a str, resource: &'a str, ns: Option<&'a str>) -> Attributes<'a> {
        Attributes {
            verb,
            group: "",
            resource,
            namespace: ns,
            name: Some("x"),
        }
    }

    #[test]
    fn a_role_allows_what_it_lists_in_its_namespace_and_nothing_else() {
        let r = rbac();
        assert_eq!(
            r.authorize(Some("t1"), &attrs("delete", "pods", Some("prod"))),
            Verdict::Allowed
        );
        assert!(matches!(
            r.authorize(Some("t1"), &attrs("delete", "pods", Some("dev"))),
            Verdict::Forbidden(_)
        ));
        let Verdict::Forbidden(m) = r.authorize(Some("t1"), &attrs("patch", "nodes", None)) else {
            panic!("a node patch is not in the Role");
        };
        assert_eq!(
            m,
            "nodes \"x\" is forbidden: User \"system:serviceaccount:runbook:runbook\" cannot patch resource \"nodes\" in API group \"\" at the cluster scope"
        );
        assert_eq!(
            r.authorize(Some("nope"), &attrs("get", "pods", Some("prod"))),
            Verdict::Unauthenticated
        );
        assert_eq!(
            r.authorize(None, &attrs("patch", "nodes", None)),
            Verdict::Allowed
        );
        assert_eq!(
            r.authorize(Some(ADMIN_TOKEN), &attrs("patch", "nodes", None)),
            Verdict::Allowed
        );
    }
}
