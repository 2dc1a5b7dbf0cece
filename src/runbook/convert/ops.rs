//! The operations: `shell`, `http`, `prometheus` and `kube`.

use super::{Conv, Fields, HTTP_KEYS, KUBE_QUALIFIERS, PROMETHEUS_KEYS, SHELL_KEYS};
use crate::runbook::diag::{Diagnostic, suggest};
use crate::runbook::model::*;
use crate::runbook::parse::{Node, Yaml};
use crate::runbook::verbs::VERBS;

impl Conv<'_> {
    pub(super) fn shell(&mut self, node: &Node) -> Option<ShellOp> {
        let f = self.fields(node, "`shell`", SHELL_KEYS)?;
        let argv = match f.get("argv") {
            Some(n) => match &n.value {
                Yaml::Seq(items) if items.is_empty() => {
                    self.push(Diagnostic::error(
                        "empty-argv",
                        n.pos,
                        "`argv` is empty: name the program to run",
                    ));
                    Vec::new()
                }
                Yaml::Seq(items) => items
                    .iter()
                    .filter_map(|i| self.string(i, "an `argv` entry"))
                    .collect(),
                Yaml::Str(s) => {
                    let words: Vec<&str> = s.split_whitespace().collect();
                    self.push(
                        Diagnostic::error(
                            "wrong-type",
                            n.pos,
                            "`argv` must be a list: program and arguments, never one shell string",
                        )
                        .len(self.src.width(n.pos, s))
                        .help(format!("write `argv: [{}]`", words.join(", "))),
                    );
                    Vec::new()
                }
                _ => {
                    self.wrong_type(n, "a list of strings", "`argv`");
                    Vec::new()
                }
            },
            None => {
                self.missing(
                    &f,
                    "argv",
                    "`shell`",
                    Some("e.g. `shell: { argv: [kubectl, get, pods] }`"),
                );
                Vec::new()
            }
        };
        Some(ShellOp {
            argv,
            env: self.string_map(&f, "env"),
            dir: self.opt_string(&f, "dir"),
            stdin: self.opt_string(&f, "stdin"),
        })
    }

    pub(super) fn http(&mut self, node: &Node) -> Option<HttpOp> {
        let f = self.fields(node, "`http`", HTTP_KEYS)?;
        let status = match f.get("status") {
            None => Vec::new(),
            Some(n) => match &n.value {
                Yaml::Seq(items) => items
                    .iter()
                    .filter_map(|i| self.uint::<u16>(i, "a status code"))
                    .collect(),
                _ => self.uint::<u16>(n, "`status`").into_iter().collect(),
            },
        };
        Some(HttpOp {
            method: self.opt_string(&f, "method"),
            url: self.req_string(&f, "url", "`http`"),
            headers: self.string_map(&f, "headers"),
            body: self.opt_string(&f, "body"),
            json: f.get("json").map(|n| Sp::new(n.pos, self.json(n))),
            status,
        })
    }

    pub(super) fn prometheus(&mut self, node: &Node) -> Option<PrometheusOp> {
        let f = self.fields(node, "`prometheus`", PROMETHEUS_KEYS)?;
        Some(PrometheusOp {
            server: self.req_string(&f, "server", "`prometheus`"),
            query: self.req_string(&f, "query", "`prometheus`"),
            detects: self.duration(&f, "detects"),
        })
    }

    /// Keys a verb does not use are errors (a `force: true` on a `get` is a mistake
    /// someone will rely on); keys it needs must be there.
    fn kube_qualifiers(&mut self, f: &Fields<'_>, verb: KubeVerb) {
        let spec = verb.spec();
        let (allowed, required) = (spec.keys, spec.required);
        for (key, k, _) in &f.entries {
            if KubeVerb::from_name(key).is_some() || allowed.contains(key) {
                continue;
            }
            let help = if allowed.is_empty() {
                format!("`{verb}` takes only its value")
            } else {
                format!("`{verb}` takes: {}", allowed.join(", "))
            };
            self.push(
                Diagnostic::error(
                    "kube-key-unused",
                    k.pos,
                    format!("`{key}` has no meaning for `kube: {verb}`"),
                )
                .len(key.len())
                .help(help),
            );
        }
        for key in required {
            if !f.has(key) {
                self.missing(f, key, &format!("`kube: {verb}`"), None);
            }
        }
        if matches!(verb, KubeVerb::Label | KubeVerb::Annotate) && !f.has("set") && !f.has("remove")
        {
            let what = if verb == KubeVerb::Label {
                "labels"
            } else {
                "annotations"
            };
            self.push(
                Diagnostic::error(
                    "kube-nothing-to-change",
                    f.pos,
                    format!("`kube: {verb}` without `set` or `remove` changes nothing"),
                )
                .help(format!(
                    "add `set: {{ key: value }}` to set {what} or `remove: [key]` to remove them"
                )),
            );
        }
        if verb == KubeVerb::Delete
            && !["name", "selector", "fields", "where"]
                .iter()
                .any(|k| f.has(k))
        {
            self.push(
                Diagnostic::error(
                    "kube-delete-everything",
                    f.pos,
                    "`kube: delete` without `name`, `selector`, `fields` or `where` would delete every object of the kind",
                )
                .help("name the object or narrow it with a selector"),
            );
        }
    }

    pub(super) fn kube(&mut self, node: &Node) -> Option<KubeOp> {
        let Yaml::Map(entries) = &node.value else {
            self.wrong_type(
                node,
                "a mapping with one verb (`get`, `delete`, `cordon`, ...)",
                "`kube`",
            );
            return None;
        };
        // Unknown keys are reported against the verbs and the qualifiers together, so
        // `list: pods` suggests `get`... only when it is close; say which are verbs.
        let mut allowed: Vec<&str> = KubeVerb::names().collect();
        allowed.extend_from_slice(KUBE_QUALIFIERS);
        let has_verb = entries
            .iter()
            .any(|(k, _)| matches!(&k.value, Yaml::Str(s) if KubeVerb::from_name(s).is_some()));
        let mut known = Vec::new();
        let mut unknown = 0;
        for (k, v) in entries {
            let Yaml::Str(key) = &k.value else {
                self.wrong_type(k, "a string", "a key of `kube`");
                continue;
            };
            if allowed.contains(&key.as_str()) {
                known.push((key.as_str(), k, v));
                continue;
            }
            unknown += 1;
            // Without a verb, the unknown key is most likely the verb, misspelt or
            // borrowed from kubectl (`list`, `describe`, `restart`).
            let (what, candidates): (&str, Vec<&str>) = if has_verb {
                ("option", KUBE_QUALIFIERS.to_vec())
            } else {
                ("verb", KubeVerb::names().collect())
            };
            let d = Diagnostic::error(
                "unknown-kube-key",
                k.pos,
                format!("unknown kube {what} `{key}`"),
            )
            .len(key.chars().count());
            let synonym = match key.as_str() {
                "list" | "describe" | "read" | "show" => Some("get"),
                "remove" | "del" | "rm" | "kill" => Some("delete"),
                "restart" | "rollout" | "rollout-restart" => Some("rollout_restart"),
                "unschedule" => Some("cordon"),
                "edit" | "update" => Some("patch"),
                "undo" | "rollback" | "rollout-undo" => Some("rollout_undo"),
                "log" => Some("logs"),
                "image" | "set-image" => Some("set_image"),
                _ => None,
            };
            let d = match synonym {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => match suggest(key, candidates.iter().copied()) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => d.help(format!("the {what}s are: {}", candidates.join(", "))),
                },
            };
            self.push(d);
        }
        let f = Fields {
            pos: node.pos,
            entries: known,
        };
        let verb_names: Vec<&str> = KubeVerb::names().collect();
        let verbs: Vec<KubeVerb> = VERBS
            .iter()
            .filter(|v| f.has(v.name))
            .map(|v| v.verb)
            .collect();
        if verbs.is_empty() && unknown == 0 {
            self.push(
                Diagnostic::error("kube-verb", node.pos, "`kube` needs one verb")
                    .help(format!("one of: {}", verb_names.join(", "))),
            );
        }
        self.at_most_one(&f, &verb_names, "kube-verb", "this `kube` operation");
        if let [verb] = verbs[..] {
            self.kube_qualifiers(&f, verb);
        }
        let s = |c: &mut Self, k: &str| c.opt_string(&f, k);
        // With several verbs (an error above) the first one in the file is kept, so
        // later checks still see the operation.
        let verb = verbs
            .first()
            .and_then(|v| s(self, v.name()).map(|value| (*v, value)));
        Some(KubeOp {
            pos: node.pos,
            verb,
            name: s(self, "name"),
            namespace: s(self, "namespace"),
            all_namespaces: self.opt_bool(&f, "all_namespaces"),
            selector: s(self, "selector"),
            fields: s(self, "fields"),
            where_: s(self, "where"),
            grace_period: self.opt_uint(&f, "grace_period"),
            force: self.opt_bool(&f, "force"),
            ignore_daemonsets: self.opt_bool(&f, "ignore_daemonsets"),
            delete_emptydir_data: self.opt_bool(&f, "delete_emptydir_data"),
            disable_eviction: self.opt_bool(&f, "disable_eviction"),
            pod_selector: s(self, "pod_selector"),
            patch_type: s(self, "patch_type"),
            body: f.get("body").map(|n| Sp::new(n.pos, self.json(n))),
            key: s(self, "key"),
            value: s(self, "value"),
            effect: s(self, "effect"),
            for_: s(self, "for"),
            replicas: self.opt_uint(&f, "replicas"),
            to_revision: self.opt_uint(&f, "to_revision"),
            container: s(self, "container"),
            tail: self.opt_uint(&f, "tail"),
            since: self.duration(&f, "since"),
            previous: self.opt_bool(&f, "previous"),
            set: self.string_map(&f, "set"),
            remove: self.string_list(&f, "remove"),
            overwrite: self.opt_bool(&f, "overwrite"),
            images: self.string_map(&f, "images"),
            dry_run: self.opt_bool(&f, "dry_run"),
        })
    }
}
