//! The runbook, its params, steps, verifications and escalation rungs.

use std::collections::BTreeMap;

use super::{
    Conv, Fields, GATE_KEYS, KUBE_DEFAULT_KEYS, LINK_KEYS, NOTIFY_KEYS, OP_KEYS, PARAM_KEYS,
    PREVIEW_KEYS, RETRY_KEYS, RUNBOOK_KEYS, RUNG_KEYS, STEP_KEYS, TRIGGER_KEYS, UNDO_KEYS,
    VERIFICATION_KEYS,
};
use crate::runbook::diag::Diagnostic;
use crate::runbook::limits;
use crate::runbook::model::*;
use crate::runbook::parse::{Node, Yaml};

impl Conv<'_> {
    pub(crate) fn runbook(&mut self, root: &Node) -> Option<Runbook> {
        let f = self.fields(root, "the runbook", RUNBOOK_KEYS)?;
        let version = match f.get("version") {
            Some(n) => self
                .uint::<u32>(n, "`version`")
                .unwrap_or_else(|| Sp::new(n.pos, 0)),
            None => {
                self.missing(
                    &f,
                    "version",
                    "the runbook",
                    Some("add `version: 1` at the top"),
                );
                Sp::new(Pos::UNKNOWN, 1)
            }
        };
        let name = self.req_string(&f, "name", "the runbook");
        let title = self.req_string(&f, "title", "the runbook");
        let description = self.opt_string(&f, "description");
        let tags = self.string_list(&f, "tags");
        let owners = self.string_list(&f, "owners");
        let links = self.links(&f);
        let notify = self.notify(&f);
        let params = self.params(&f);
        let triggers = self.triggers(&f);
        let params_from_alert = self.params_from_alert(&f, &params);
        let unattended = self.string_list(&f, "unattended");
        let kube = f.get("kube").and_then(|n| {
            let k = self.fields(n, "`kube` defaults", KUBE_DEFAULT_KEYS)?;
            Some(KubeDefaults {
                context: self.opt_string(&k, "context"),
                namespace: self.opt_string(&k, "namespace"),
            })
        });
        let steps = match f.get("steps") {
            Some(n) => self.steps(n, "steps"),
            None => {
                self.missing(&f, "steps", "the runbook", None);
                Vec::new()
            }
        };
        let handlers = f
            .get("handlers")
            .map_or_else(Vec::new, |n| self.steps(n, "handlers"));
        Some(Runbook {
            version,
            name,
            title,
            description,
            tags,
            owners,
            links,
            notify,
            params,
            triggers,
            params_from_alert,
            unattended,
            kube,
            steps,
            handlers,
            lock: f.get("lock").and_then(|n| self.lock(n)),
            on_failure: self.run_failure(&f),
        })
    }

    /// `lock: { scope: runbook | target, name: NAME, ttl: 30s, wait: 10m }`.
    fn lock(&mut self, node: &Node) -> Option<Sp<Lock>> {
        let f = self.fields(node, "`lock`", &["scope", "name", "ttl", "wait"])?;
        let scope = match self.opt_string(&f, "scope") {
            None => LockScope::Runbook,
            Some(s) => match s.value.as_str() {
                "runbook" => LockScope::Runbook,
                "target" => LockScope::Target,
                other => {
                    let len = self.src.width(s.pos, other);
                    self.push(
                        Diagnostic::error(
                            "bad-value",
                            s.pos,
                            format!("`scope` must be `runbook` or `target`, found `{other}`"),
                        )
                        .len(len),
                    );
                    return None;
                }
            },
        };
        let name = self.opt_string(&f, "name");
        if let Some(n) = &name
            && (n.value.is_empty()
                || n.value.len() > 50
                || !n
                    .value
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
        {
            self.push(
                Diagnostic::error(
                    "bad-value",
                    n.pos,
                    format!(
                        "the lock's `name` is {:?}; expected lowercase letters, digits and `-`, at most 50 (it names a Lease)",
                        n.value
                    ),
                )
                .help("e.g. `lock: { name: hub-volume }`"),
            );
            return None;
        }
        let ttl = self.duration(&f, "ttl");
        if let Some(t) = &ttl
            && t.value.0 < std::time::Duration::from_secs(1)
        {
            self.push(Diagnostic::error(
                "out-of-range",
                t.pos,
                "the lock's `ttl` must be at least 1s",
            ));
            return None;
        }
        Some(Sp::new(
            node.pos,
            Lock {
                scope,
                name,
                ttl,
                wait: self.duration(&f, "wait"),
            },
        ))
    }

    /// `triggers:`: a list of `{ alert: { LABEL: VALUE, ... } }`, each with at least
    /// one label.
    fn triggers(&mut self, f: &Fields<'_>) -> Vec<Trigger> {
        let Some(n) = f.get("triggers") else {
            return Vec::new();
        };
        let Yaml::Seq(items) = &n.value else {
            self.wrong_type(
                n,
                "a list of `{ alert: { LABEL: VALUE } }` mappings",
                "`triggers`",
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            let Some(t) = self.fields(item, "an item of `triggers`", TRIGGER_KEYS) else {
                continue;
            };
            let alert = self.string_map(&t, "alert");
            if alert.is_empty() {
                self.push(
                    Diagnostic::error(
                        "empty-trigger",
                        item.pos,
                        "a trigger must name at least one alert label",
                    )
                    .help("write `- alert: { alertname: HubPodNotReady, namespace: prod }`"),
                );
                continue;
            }
            out.push(Trigger { alert });
        }
        out
    }

    /// `params_from_alert:`: parameter → `labels.NAME` or `annotations.NAME`; the
    /// parameter must be declared under `params:`.
    fn params_from_alert(
        &mut self,
        f: &Fields<'_>,
        params: &BTreeMap<String, Param>,
    ) -> BTreeMap<String, Sp<String>> {
        let map = self.string_map(f, "params_from_alert");
        let mut out = BTreeMap::new();
        for (name, source) in map {
            let width = self.src.width(source.pos, &source.value);
            if !params.contains_key(&name) {
                let mut d = Diagnostic::error(
                    "unknown-param",
                    source.pos,
                    format!(
                        "`params_from_alert` sets `{name}`, which is not declared under `params:`"
                    ),
                )
                .len(width);
                d = match crate::runbook::diag::suggest(&name, params.keys().map(String::as_str)) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => d.help(format!(
                        "declare it: `params: {{ {name}: {{ description: ... }} }}`"
                    )),
                };
                self.push(d);
                continue;
            }
            let ok = ["labels.", "annotations."].iter().any(|p| {
                source
                    .value
                    .strip_prefix(p)
                    .is_some_and(|rest| !rest.is_empty())
            });
            if !ok {
                self.push(
                    Diagnostic::error(
                        "bad-alert-field",
                        source.pos,
                        format!(
                            "`params_from_alert.{name}` is {:?}: expected `labels.NAME` or `annotations.NAME`",
                            source.value
                        ),
                    )
                    .len(width)
                    .help(format!("write `{name}: labels.{name}`")),
                );
                continue;
            }
            out.insert(name, source);
        }
        out
    }

    /// `links:`: a list of `{title, url}`, each URL absolute http(s).
    fn links(&mut self, f: &Fields<'_>) -> Vec<Link> {
        let Some(n) = f.get("links") else {
            return Vec::new();
        };
        let Yaml::Seq(items) = &n.value else {
            self.wrong_type(n, "a list of `{title, url}` mappings", "`links`");
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            let Some(l) = self.fields(item, "an item of `links`", LINK_KEYS) else {
                continue;
            };
            let title = self.req_string(&l, "title", "a link");
            let url = self.req_string(&l, "url", "a link");
            // A missing or non-string url is reported already.
            if matches!(l.get("url").map(|n| &n.value), Some(Yaml::Str(_)))
                && let Some(problem) = link_problem(&url.value)
            {
                let len = self.src.width(url.pos, &url.value);
                self.push(
                    Diagnostic::error(
                        "bad-link",
                        url.pos,
                        format!("the link {:?} is not a usable URL: {problem}", url.value),
                    )
                    .len(len)
                    .help("write an absolute address, such as https://grafana.example.org/d/abc"),
                );
                continue;
            }
            out.push(Link { title, url });
        }
        out
    }

    /// `notify:`: a list of receivers, each with one URL (or the variable holding
    /// it), a known `kind` and known `on` events.
    fn notify(&mut self, f: &Fields<'_>) -> Vec<Notify> {
        let Some(n) = f.get("notify") else {
            return Vec::new();
        };
        let Yaml::Seq(items) = &n.value else {
            self.wrong_type(n, "a list of `{url, kind, on}` mappings", "`notify`");
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            let Some(m) = self.fields(item, "an item of `notify`", NOTIFY_KEYS) else {
                continue;
            };
            let url = self.opt_string(&m, "url");
            let url_env = self.opt_string(&m, "url_env");
            match (&url, &url_env) {
                (None, None) => self.missing(
                    &m,
                    "url",
                    "a notification",
                    Some("add `url: https://…`, or `url_env: VAR` when the URL is a credential"),
                ),
                (Some(_), Some(e)) => self.push(
                    Diagnostic::error(
                        "notify-two-urls",
                        e.pos,
                        "a notification has both `url` and `url_env`",
                    )
                    .len("url_env".len())
                    .help("keep one: `url_env` when the URL is a credential"),
                ),
                (Some(u), None) => {
                    if let Some(problem) = link_problem(&u.value) {
                        let len = self.src.width(u.pos, &u.value);
                        self.push(
                            Diagnostic::error(
                                "bad-url",
                                u.pos,
                                format!(
                                    "the notification URL {:?} is not usable: {problem}",
                                    u.value
                                ),
                            )
                            .len(len)
                            .help("write an absolute address, such as https://hooks.example.org/runbook"),
                        );
                    }
                }
                (None, Some(_)) => {}
            }
            let kind = m.get("kind").and_then(|k| {
                let s = self.string(k, "`kind`")?;
                match NotifyKind::parse(&s.value) {
                    Some(kind) => Some(Sp::new(s.pos, kind)),
                    None => {
                        self.unknown_word(&s, "notification kind", NotifyKind::NAMES);
                        None
                    }
                }
            });
            let mut on = Vec::new();
            for s in self.string_list(&m, "on") {
                match NotifyOn::parse(&s.value) {
                    Some(o) => on.push(Sp::new(s.pos, o)),
                    None => self.unknown_word(&s, "notification event in `on`", NotifyOn::NAMES),
                }
            }
            let headers = self.string_map(&m, "headers");
            let headers_env = self.string_map(&m, "headers_env");
            let secret_env = self.opt_string(&m, "secret_env");
            let timeout = self.duration(&m, "timeout");
            let retries = self.opt_uint::<u32>(&m, "retries");
            if let Some(r) = &retries
                && r.value > 10
            {
                self.push(
                    Diagnostic::error(
                        "notify-retries",
                        r.pos,
                        format!("`retries: {}` is more than 10", r.value),
                    )
                    .help("a notification is retried at most 10 times; 3 is the default"),
                );
            }
            out.push(Notify {
                url,
                url_env,
                kind,
                on,
                headers,
                headers_env,
                secret_env,
                timeout,
                retries,
            });
        }
        out
    }

    /// A word that is not one of `names` (an enum written as text).
    fn unknown_word(&mut self, s: &Sp<String>, what: &str, names: &[&str]) {
        let len = self.src.width(s.pos, &s.value);
        let d = Diagnostic::error(
            "unknown-value",
            s.pos,
            format!("unknown {what} `{}`", s.value),
        )
        .len(len);
        let d = match crate::runbook::diag::suggest(&s.value, names.iter().copied()) {
            Some(x) => d.help(format!("did you mean `{x}`?")),
            None => d.help(format!("expected one of: {}", names.join(", "))),
        };
        self.push(d);
    }

    fn params(&mut self, f: &Fields<'_>) -> BTreeMap<String, Param> {
        let mut out = BTreeMap::new();
        let Some(n) = f.get("params") else {
            return out;
        };
        let Yaml::Map(entries) = &n.value else {
            self.wrong_type(n, "a mapping of parameter names", "`params`");
            return out;
        };
        for (k, v) in entries {
            let Some(name) = self.string(k, "a parameter name") else {
                continue;
            };
            let what = format!("parameter `{}`", name.value);
            if !matches!(v.value, Yaml::Map(_)) {
                let d = Diagnostic::error(
                    "wrong-type",
                    v.pos,
                    format!("{what} must be a mapping, found {}", v.value.describe()),
                );
                let d = match &v.value {
                    Yaml::Str(_) | Yaml::Int(_) | Yaml::Float(_) | Yaml::Bool(_) => {
                        d.help(format!("write `{}: {{ default: ... }}`", name.value))
                    }
                    _ => d,
                };
                self.push(d);
                continue;
            }
            let Some(p) = self.fields(v, &what, PARAM_KEYS) else {
                continue;
            };
            let param = Param {
                pos: k.pos,
                description: self.opt_string(&p, "description"),
                ty: self.param_type(&p),
                default: p.get("default").map(|d| Sp::new(d.pos, self.json(d))),
                required: self.flag(&p, "required"),
                secret: self.flag(&p, "secret"),
            };
            // A default the param's own type refuses would fail every run at start.
            if param.ty.is_some()
                && let Some(d) = &param.default
                && let Err(e) = param.check_value(&d.value)
            {
                let len = self.src.token_width(d.pos);
                self.push(
                    Diagnostic::error(
                        "param-type",
                        d.pos,
                        format!(
                            "the default of `{}` does not fit its type: it {e}",
                            name.value
                        ),
                    )
                    .len(len)
                    .help("change the default or the `type`"),
                );
            }
            out.insert(name.value, param);
        }
        out
    }

    fn param_type(&mut self, f: &Fields<'_>) -> Option<Sp<ParamType>> {
        let n = f.get("type")?;
        let s = self.string(n, "`type`")?;
        if let Some(t) = ParamType::parse(&s.value) {
            return Some(Sp::new(n.pos, t));
        }
        let len = self.src.width(n.pos, &s.value);
        let mut d = Diagnostic::error(
            "bad-value",
            n.pos,
            format!(
                "`type` must be one of {}, found `{}`",
                ParamType::NAMES
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                s.value
            ),
        )
        .len(len);
        let alias = match s.value.as_str() {
            "int" | "integer32" | "int64" => Some("integer"),
            "float" | "double" => Some("number"),
            "bool" => Some("boolean"),
            "str" | "text" => Some("string"),
            "array" | "sequence" => Some("list"),
            _ => crate::runbook::diag::suggest(&s.value, ParamType::NAMES.iter().copied()),
        };
        if let Some(a) = alias {
            d = d.help(format!("did you mean `type: {a}`?"));
        }
        self.push(d);
        None
    }

    fn steps(&mut self, node: &Node, key: &str) -> Vec<Step> {
        let Yaml::Seq(items) = &node.value else {
            self.wrong_type(node, "a list of steps", &format!("`{key}`"));
            return Vec::new();
        };
        items.iter().filter_map(|i| self.step(i)).collect()
    }

    /// Reports more than one of `keys` in `f` (the second and later).
    pub(super) fn at_most_one(
        &mut self,
        f: &Fields<'_>,
        keys: &[&str],
        code: &'static str,
        what: &str,
    ) {
        let present: Vec<&str> = keys.iter().copied().filter(|k| f.has(k)).collect();
        if present.len() > 1 {
            for extra in &present[1..] {
                if let Some(k) = f.key(extra) {
                    self.push(
                        Diagnostic::error(
                            code,
                            k.pos,
                            format!(
                                "{what} has both `{}` and `{extra}`; it takes exactly one",
                                present[0]
                            ),
                        )
                        .len(extra.len()),
                    );
                }
            }
        }
    }

    fn step(&mut self, node: &Node) -> Option<Step> {
        let f = self.fields(node, "a step", STEP_KEYS)?;
        let verify_is_title = f
            .get("verify")
            .is_some_and(|n| matches!(n.value, Yaml::Str(_)));
        let kinds: Vec<&str> = ["check", "action", "verify", "manual"]
            .into_iter()
            .filter(|k| *k != "verify" || verify_is_title)
            .collect();
        if kinds.iter().all(|k| !f.has(k)) {
            self.push(
                Diagnostic::error(
                    "step-kind",
                    f.pos,
                    "a step needs its title under one of `check`, `action`, `verify` or `manual`",
                )
                .help("for example `- check: Pods stuck in Unknown`"),
            );
        } else {
            self.at_most_one(&f, &kinds, "step-kind", "this step");
        }
        self.at_most_one(&f, OP_KEYS, "one-operation", "this step");
        let id = match f.get("id") {
            Some(n) => self
                .string(n, "`id`")
                .unwrap_or_else(|| Sp::new(n.pos, String::new())),
            None => {
                self.missing(&f, "id", "this step", Some("give every step a stable id, e.g. `id: lost-pods`; the journal and `--approve` refer to it"));
                Sp::new(f.pos, String::new())
            }
        };
        let verify = match f.get("verify") {
            None => None,
            Some(n) if verify_is_title => self.string(n, "`verify`").map(VerifyField::Title),
            Some(n) => self
                .verification(n)
                .map(|v| VerifyField::Block(Box::new(v))),
        };
        Some(Step {
            pos: f.pos,
            check: self.opt_string(&f, "check"),
            action: self.opt_string(&f, "action"),
            verify,
            manual: self.opt_string(&f, "manual"),
            id,
            description: self.opt_string(&f, "description"),
            instructions: self.opt_string(&f, "instructions"),
            shell: f.get("shell").and_then(|n| self.shell(n)),
            http: f.get("http").and_then(|n| self.http(n)),
            prometheus: f.get("prometheus").and_then(|n| self.prometheus(n)),
            kube: f.get("kube").and_then(|n| self.kube(n)),
            when: self.opt_string(&f, "when"),
            requires: self.opt_string(&f, "requires"),
            for_each: self.opt_string(&f, "for_each"),
            concurrency: self.opt_uint(&f, "concurrency"),
            save: self.opt_string(&f, "save"),
            expect: self.opt_string(&f, "expect"),
            summary: self.opt_string(&f, "summary"),
            preview: f.get("preview").and_then(|n| self.preview(n)).map(Box::new),
            timeout: self.duration(&f, "timeout"),
            retry: f.get("retry").and_then(|n| self.retry(n)),
            within: self.duration(&f, "within"),
            every: self.duration(&f, "every"),
            gate: self.gate(&f),
            gate_rule: self.gate_rule(&f),
            escalate: f
                .get("escalate")
                .map_or_else(Vec::new, |n| self.escalate(n)),
            on_failure: self.on_failure(&f),
            limit: f.get("limit").and_then(|n| self.limit(n)),
            over_limit: self.over_limit(&f),
            keep: f.get("keep").and_then(|n| self.keep(n)),
            undo: f.get("undo").and_then(|n| self.undo(n)).map(Box::new),
        })
    }

    /// `undo: { title, shell | http | kube, gate }`: one mutating operation.
    fn undo(&mut self, node: &Node) -> Option<Undo> {
        let f = self.fields(node, "`undo`", UNDO_KEYS)?;
        self.at_most_one(&f, OP_KEYS, "one-operation", "this undo");
        if !OP_KEYS.iter().any(|k| f.has(k)) {
            self.push(
                Diagnostic::error(
                    "missing-operation",
                    f.pos,
                    "`undo` needs one operation: `shell`, `http` or `kube`",
                )
                .help("e.g. `undo: { kube: { uncordon: \"{{item}}\" } }`"),
            );
        }
        // The undo's gate takes the string form only (`approve`, `auto`, `explicit`).
        let gate = match f.get("gate") {
            Some(n) if !matches!(n.value, Yaml::Str(_)) => {
                self.wrong_type(n, "`approve`, `auto` or `explicit`", "`gate` of an undo");
                None
            }
            Some(_) => self.gate(&f),
            None => None,
        };
        Some(Undo {
            pos: f.pos,
            title: self.opt_string(&f, "title"),
            shell: f.get("shell").and_then(|n| self.shell(n)),
            http: f.get("http").and_then(|n| self.http(n)),
            kube: f.get("kube").and_then(|n| self.kube(n)),
            gate,
        })
    }

    /// The runbook's `on_failure: stop | undo`.
    fn run_failure(&mut self, f: &Fields<'_>) -> Option<Sp<RunFailure>> {
        let n = f.get("on_failure")?;
        let s = self.string(n, "`on_failure`")?;
        match s.value.as_str() {
            "stop" => Some(Sp::new(n.pos, RunFailure::Stop)),
            "undo" => Some(Sp::new(n.pos, RunFailure::Undo)),
            other => {
                let len = self.src.width(n.pos, other);
                self.push(
                    Diagnostic::error(
                        "bad-value",
                        n.pos,
                        format!("the runbook's `on_failure` must be `stop` or `undo`, found `{other}`"),
                    )
                    .len(len)
                    .help("`undo` runs the `undo:` of every completed action when the run fails; handlers are named on a step's own `on_failure`"),
                );
                None
            }
        }
    }

    /// `keep: { ready_nodes: N }` or `keep: { ready_replicas: "deployment/hub >= 1" }`.
    fn keep(&mut self, node: &Node) -> Option<Sp<Keep>> {
        let f = self.fields(
            node,
            "`keep`",
            &["ready_nodes", "ready_replicas", "namespace"],
        )?;
        if f.get("ready_nodes").is_none() && f.get("ready_replicas").is_none() {
            self.missing(
                &f,
                "ready_nodes",
                "`keep`",
                Some("e.g. `keep: { ready_nodes: 3 }` or `keep: { ready_replicas: deployment/hub >= 1 }`"),
            );
            return None;
        }
        let ready_nodes = match f.get("ready_nodes") {
            Some(n) => Some(self.at_least_one(n, "ready_nodes", "keeps nothing")?),
            None => None,
        };
        let ready_replicas = self.opt_string(&f, "ready_replicas");
        let workload = match &ready_replicas {
            Some(s) => match parse_workload_floor(&s.value) {
                Some(w) => Some(w),
                None => {
                    self.push(
                        Diagnostic::error(
                            "bad-value",
                            s.pos,
                            format!(
                                "`ready_replicas` is {:?}; expected `KIND/NAME >= N` with KIND a deployment, statefulset or replicaset",
                                s.value
                            ),
                        )
                        .help("e.g. `keep: { ready_replicas: deployment/hub >= 1 }`"),
                    );
                    return None;
                }
            },
            None => None,
        };
        Some(Sp::new(
            node.pos,
            Keep {
                ready_nodes,
                ready_replicas,
                namespace: self.opt_string(&f, "namespace"),
                workload,
            },
        ))
    }

    fn verification(&mut self, node: &Node) -> Option<Verification> {
        let f = self.fields(node, "a verification", VERIFICATION_KEYS)?;
        self.at_most_one(&f, OP_KEYS, "one-operation", "this verification");
        Some(Verification {
            pos: f.pos,
            title: self.opt_string(&f, "title"),
            shell: f.get("shell").and_then(|n| self.shell(n)),
            http: f.get("http").and_then(|n| self.http(n)),
            prometheus: f.get("prometheus").and_then(|n| self.prometheus(n)),
            kube: f.get("kube").and_then(|n| self.kube(n)),
            expect: self.opt_string(&f, "expect"),
            within: self.duration(&f, "within"),
            every: self.duration(&f, "every"),
            timeout: self.duration(&f, "timeout"),
        })
    }

    fn preview(&mut self, node: &Node) -> Option<Preview> {
        let f = self.fields(node, "a preview", PREVIEW_KEYS)?;
        self.at_most_one(&f, OP_KEYS, "one-operation", "this preview");
        if !OP_KEYS.iter().any(|k| f.has(k)) {
            self.push(
                Diagnostic::error(
                    "missing-operation",
                    f.pos,
                    "a preview needs one read-only operation: `shell`, `http`, `prometheus` or `kube`",
                )
                .help("e.g. `preview: { shell: { run: \"du -sh /var/log/old\" } }`"),
            );
        }
        Some(Preview {
            pos: f.pos,
            shell: f.get("shell").and_then(|n| self.shell(n)),
            http: f.get("http").and_then(|n| self.http(n)),
            prometheus: f.get("prometheus").and_then(|n| self.prometheus(n)),
            kube: f.get("kube").and_then(|n| self.kube(n)),
            summary: self.opt_string(&f, "summary"),
        })
    }

    fn escalate(&mut self, node: &Node) -> Vec<Rung> {
        let Yaml::Seq(items) = &node.value else {
            self.wrong_type(node, "a list of remedies", "`escalate`");
            return Vec::new();
        };
        items.iter().filter_map(|i| self.rung(i)).collect()
    }

    fn rung(&mut self, node: &Node) -> Option<Rung> {
        let f = self.fields(node, "an escalation rung", RUNG_KEYS)?;
        let ops = ["shell", "http", "prometheus", "kube", "manual"];
        self.at_most_one(&f, &ops, "one-operation", "this rung");
        if !ops.iter().any(|k| f.has(k)) {
            self.push(
                Diagnostic::error(
                    "missing-operation",
                    f.pos,
                    "an escalation rung needs one remedy: `shell`, `http`, `kube` or `manual`",
                )
                .help("e.g. `- kube: { delete: pods, selector: \"component=hub\" }`"),
            );
        }
        Some(Rung {
            pos: f.pos,
            id: self.opt_string(&f, "id"),
            title: self.opt_string(&f, "title"),
            shell: f.get("shell").and_then(|n| self.shell(n)),
            http: f.get("http").and_then(|n| self.http(n)),
            prometheus: f.get("prometheus").and_then(|n| self.prometheus(n)),
            kube: f.get("kube").and_then(|n| self.kube(n)),
            manual: self.opt_string(&f, "manual"),
            preview: f.get("preview").and_then(|n| self.preview(n)).map(Box::new),
            when: self.opt_string(&f, "when"),
            requires: self.opt_string(&f, "requires"),
            for_each: self.opt_string(&f, "for_each"),
            concurrency: self.opt_uint(&f, "concurrency"),
            timeout: self.duration(&f, "timeout"),
            within: self.duration(&f, "within"),
            gate: self.gate(&f),
            gate_rule: self.gate_rule(&f),
            verify: f
                .get("verify")
                .and_then(|n| self.verification(n))
                .map(Box::new),
        })
    }

    fn gate(&mut self, f: &Fields<'_>) -> Option<Sp<Gate>> {
        let n = f.get("gate")?;
        if let Yaml::Map(_) = &n.value {
            // The mapping form: an approval like `approve` (or `explicit`), with a
            // quorum and an expiry; `gate_rule` reads the rest.
            let explicit = self
                .fields(n, "`gate`", GATE_KEYS)
                .and_then(|g| {
                    g.get("explicit")
                        .map(|e| matches!(e.value, Yaml::Bool(true)))
                })
                .unwrap_or(false);
            return Some(Sp::new(
                n.pos,
                if explicit {
                    Gate::Explicit
                } else {
                    Gate::Approve
                },
            ));
        }
        let s = self.string(n, "`gate`")?;
        match s.value.as_str() {
            "approve" => Some(Sp::new(n.pos, Gate::Approve)),
            "auto" => Some(Sp::new(n.pos, Gate::Auto)),
            "explicit" => Some(Sp::new(n.pos, Gate::Explicit)),
            other => {
                let len = self.src.width(n.pos, other);
                self.push(
                    Diagnostic::error(
                        "bad-value",
                        n.pos,
                        format!("`gate` must be `approve`, `auto` or `explicit`, found `{other}`"),
                    )
                    .len(len),
                );
                None
            }
        }
    }

    fn on_failure(&mut self, f: &Fields<'_>) -> Option<Sp<OnFailure>> {
        let n = f.get("on_failure")?;
        match &n.value {
            Yaml::Str(s) => match s.as_str() {
                "stop" => Some(Sp::new(n.pos, OnFailure::Policy(FailurePolicy::Stop))),
                "continue" => Some(Sp::new(n.pos, OnFailure::Policy(FailurePolicy::Continue))),
                other => {
                    let len = self.src.width(n.pos, other);
                    self.push(
                        Diagnostic::error(
                            "bad-value",
                            n.pos,
                            format!("`on_failure` must be `stop`, `continue` or a list of handler ids, found `{other}`"),
                        )
                        .len(len)
                        .help(if other == "retry" {
                            // Retrying is the step's `retry:`, not a failure policy.
                            "to try the step again, give it `retry: { attempts: 3, backoff: 2s }`; `on_failure` says what happens after the last attempt".to_owned()
                        } else {
                            format!("to run a handler, write `on_failure: [{other}]`")
                        }),
                    );
                    None
                }
            },
            Yaml::Seq(items) => {
                let ids = items
                    .iter()
                    .filter_map(|i| self.string(i, "a handler id in `on_failure`"))
                    .collect();
                Some(Sp::new(n.pos, OnFailure::Run(ids)))
            }
            _ => {
                self.wrong_type(
                    n,
                    "`stop`, `continue` or a list of handler ids",
                    "`on_failure`",
                );
                None
            }
        }
    }

    /// `gate: { approvals: N, explicit: BOOL, expires: DURATION }` (unknown keys are
    /// reported once, by [`Conv::gate`]).
    fn gate_rule(&mut self, f: &Fields<'_>) -> Option<Sp<GateRule>> {
        let n = f.get("gate")?;
        let Yaml::Map(entries) = &n.value else {
            return None;
        };
        let g = Fields {
            pos: n.pos,
            entries: entries
                .iter()
                .filter_map(|(k, v)| match &k.value {
                    Yaml::Str(key) if GATE_KEYS.contains(&key.as_str()) => {
                        Some((key.as_str(), k, v))
                    }
                    _ => None,
                })
                .collect(),
        };
        let mut rule = GateRule::default();
        if let Some(a) = self.opt_uint::<u32>(&g, "approvals") {
            if a.value == 0 || a.value > 10 {
                self.push(
                    Diagnostic::error(
                        "out-of-range",
                        a.pos,
                        format!(
                            "`approvals: {}` must be between 1 and 10 (distinct people approving the same plan)",
                            a.value
                        ),
                    )
                    .help("e.g. `gate: { approvals: 2 }` for two-person approval"),
                );
            }
            rule.approvals = a.value.clamp(1, 10);
        }
        rule.explicit = self.opt_bool(&g, "explicit").is_some_and(|b| b.value);
        if let Some(d) = self.duration(&g, "expires") {
            if d.0.is_zero() {
                self.push(
                    Diagnostic::error(
                        "out-of-range",
                        d.pos,
                        "`expires: 0` would make every approval stale at once",
                    )
                    .help("e.g. `expires: 15m`"),
                );
            }
            rule.expires = Some(d.value);
        }
        rule.timeout = self.duration(&g, "timeout").map(|d| d.value);
        if let Some(o) = g.get("on_timeout") {
            let text = self.string(o, "`on_timeout`")?;
            rule.on_timeout = match text.value.as_str() {
                "abort" => Some(OnTimeout::Abort),
                "skip" => Some(OnTimeout::Skip),
                "escalate" => Some(OnTimeout::Escalate),
                other => {
                    let len = self.src.width(o.pos, other);
                    self.push(
                        Diagnostic::error(
                            "bad-value",
                            o.pos,
                            format!(
                                "`on_timeout` must be `abort`, `skip` or `escalate`, found `{other}`"
                            ),
                        )
                        .len(len),
                    );
                    None
                }
            };
            if rule.timeout.is_none() {
                self.push(
                    Diagnostic::error(
                        "on-timeout-without-timeout",
                        o.pos,
                        "`on_timeout` says what a gate does when its `timeout` passes, but this gate has no `timeout`",
                    )
                    .help("add e.g. `timeout: 30m` to the gate, or remove `on_timeout`"),
                );
            }
        }
        Some(Sp::new(n.pos, rule))
    }

    /// `limit: { max_targets: N, max_failures: N | "P%", max_fraction: "P%" }`.
    fn limit(&mut self, node: &Node) -> Option<Sp<Limit>> {
        let f = self.fields(
            node,
            "`limit`",
            &["max_targets", "max_failures", "max_fraction"],
        )?;
        if f.get("max_targets").is_none()
            && f.get("max_failures").is_none()
            && f.get("max_fraction").is_none()
        {
            self.missing(
                &f,
                "max_targets",
                "`limit`",
                Some("e.g. `limit: { max_targets: 20 }` or `limit: { max_failures: 3 }`"),
            );
            return None;
        }
        let max_targets = match f.get("max_targets") {
            Some(n) => Some(self.at_least_one(n, "max_targets", "would refuse every plan")?),
            None => None,
        };
        let max_failures = match f.get("max_failures") {
            Some(n) => Some(self.max_failures(n)?),
            None => None,
        };
        let max_fraction = match f.get("max_fraction") {
            Some(n) => Some(self.fraction(n)?),
            None => None,
        };
        Some(Sp::new(
            node.pos,
            Limit {
                max_targets,
                max_failures,
                max_fraction,
            },
        ))
    }

    /// `max_fraction: 30%`.
    fn fraction(&mut self, n: &Node) -> Option<Fraction> {
        let got = match &n.value {
            Yaml::Str(t) => match t.strip_suffix('%').map(|p| p.trim().parse::<u32>()) {
                Some(Ok(p)) if (1..=100).contains(&p) => return Some(Fraction(p)),
                _ => format!("{t:?}"),
            },
            Yaml::Int(i) => i.to_string(),
            other => other.describe().to_owned(),
        };
        self.push(
            Diagnostic::error(
                "bad-value",
                n.pos,
                format!("`max_fraction` is {got}; expected a share of what the selector matches, from 1% to 100% (`30%`)"),
            )
            .help("e.g. `limit: { max_fraction: 30% }`"),
        );
        None
    }

    /// `max_failures: 3` or `max_failures: 10%`.
    fn max_failures(&mut self, n: &Node) -> Option<MaxFailures> {
        let bad = |conv: &mut Self, pos, got: String| {
            conv.push(
                Diagnostic::error(
                    "bad-value",
                    pos,
                    format!("`max_failures` is {got}; expected a count of at least 1 (`3`) or a share of the items from 1% to 100% (`10%`)"),
                )
                .help("e.g. `limit: { max_failures: 3 }` or `limit: { max_failures: 10% }`"),
            );
            None
        };
        match &n.value {
            Yaml::Int(i) if (1..=i64::from(u32::MAX)).contains(i) => {
                Some(MaxFailures::Count(*i as u32))
            }
            Yaml::Int(i) => bad(self, n.pos, i.to_string()),
            Yaml::Str(t) => match t.strip_suffix('%').map(|p| p.trim().parse::<u32>()) {
                Some(Ok(p)) if (1..=100).contains(&p) => Some(MaxFailures::Percent(p)),
                _ => bad(self, n.pos, format!("{t:?}")),
            },
            other => bad(self, n.pos, other.describe().to_owned()),
        }
    }

    /// `over_limit: refuse | explicit`.
    fn over_limit(&mut self, f: &Fields<'_>) -> Option<Sp<OverLimit>> {
        let n = f.get("over_limit")?;
        let s = self.string(n, "`over_limit`")?;
        match s.value.as_str() {
            "refuse" => Some(Sp::new(n.pos, OverLimit::Refuse)),
            "explicit" => Some(Sp::new(n.pos, OverLimit::Explicit)),
            other => {
                let len = self.src.width(n.pos, other);
                self.push(
                    Diagnostic::error(
                        "bad-value",
                        n.pos,
                        format!("`over_limit` must be `refuse` or `explicit`, found `{other}`"),
                    )
                    .len(len),
                );
                None
            }
        }
    }

    fn retry(&mut self, node: &Node) -> Option<Retry> {
        let f = self.fields(node, "`retry`", RETRY_KEYS)?;
        let attempts = match f.get("attempts") {
            Some(n) => self.uint::<u32>(n, "`attempts`")?,
            None => {
                self.missing(
                    &f,
                    "attempts",
                    "`retry`",
                    Some("e.g. `retry: { attempts: 3, backoff: 2s }`"),
                );
                return None;
            }
        };
        if attempts.value == 0 {
            self.push(Diagnostic::error(
                "out-of-range",
                attempts.pos,
                "`attempts` counts the first try too; it must be at least 1",
            ));
        } else if attempts.value > limits::MAX_ATTEMPTS {
            self.push(
                Diagnostic::error(
                    "out-of-range",
                    attempts.pos,
                    format!(
                        "`attempts: {}` is more than the limit of {}",
                        attempts.value,
                        limits::MAX_ATTEMPTS
                    ),
                )
                .help("retry a few times with a backoff; a person should look after that"),
            );
        }
        Some(Retry {
            attempts,
            backoff: self.duration(&f, "backoff"),
            max_backoff: self.duration(&f, "max_backoff"),
        })
    }
}

/// Why `url` cannot be a link a reader clicks, if it cannot.
fn link_problem(url: &str) -> Option<String> {
    match url::Url::parse(url) {
        Err(e) => Some(format!(
            "{e} (expected an absolute http:// or https:// URL)"
        )),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => Some(format!(
            "the scheme is `{}`, expected http or https",
            u.scheme()
        )),
        Ok(u) if u.host_str().is_none_or(str::is_empty) => Some("it names no host".to_owned()),
        Ok(_) => None,
    }
}

/// `deployment/hub >= 1` → (`deployments`, `hub`, 1).
fn parse_workload_floor(s: &str) -> Option<(String, String, u32)> {
    let (target, floor) = s.split_once(">=")?;
    let (kind, name) = target.trim().split_once('/')?;
    let plural = match kind {
        "deployment" | "deployments" => "deployments",
        "statefulset" | "statefulsets" => "statefulsets",
        "replicaset" | "replicasets" => "replicasets",
        _ => return None,
    };
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    let floor = floor.trim().parse::<u32>().ok()?;
    Some((plural.to_string(), name.to_string(), floor))
}
