//! The kubectl command line equivalent to a resolved operation: what the gate's plan
//! shows, and what the postmortem prints for each API call. Arguments are quoted for
//! a POSIX shell, so a person can paste the line.

use super::spec::KubeSpec;

/// Quote `s` for a POSIX shell when it needs it.
pub fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '-' | '_' | '.' | '/' | ':' | '=' | ',' | '@' | '%' | '+')
        });
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn push(line: &mut String, arg: &str) {
    line.push(' ');
    line.push_str(&quote(arg));
}

/// `-n NS` / `-A`, label and field selectors.
fn scope(line: &mut String, spec: &KubeSpec) {
    if let Some(ns) = &spec.namespace {
        push(line, "-n");
        push(line, ns);
    }
    if spec.all_namespaces {
        push(line, "-A");
    }
    if let Some(s) = &spec.selector {
        push(line, "-l");
        push(line, s);
    }
    if let Some(f) = &spec.fields {
        push(line, "--field-selector");
        push(line, f);
    }
}

/// `kind name` for one object, `kinds` for many.
fn object(line: &mut String, spec: &KubeSpec) {
    let Some(t) = &spec.resource else { return };
    match &spec.name {
        Some(name) => {
            push(line, &t.kubectl_singular());
            push(line, name);
        }
        None => push(line, &t.kubectl_plural()),
    }
}

fn where_note(line: &mut String, label: &str, cond: &Option<String>) {
    if let Some(w) = cond {
        line.push_str(&format!("  # {label} {w}"));
    }
}

/// The kubectl line for a resolved operation.
pub fn kubectl(spec: &KubeSpec) -> String {
    let name = spec.name.clone().unwrap_or_default();
    let mut line = String::from("kubectl");
    match spec.verb.name() {
        "get" => {
            push(&mut line, "get");
            object(&mut line, spec);
            scope(&mut line, spec);
            push(&mut line, "-o");
            push(&mut line, "json");
            where_note(&mut line, "where", &spec.where_);
        }
        "delete" => {
            push(&mut line, "delete");
            object(&mut line, spec);
            scope(&mut line, spec);
            if let Some(g) = spec.grace_period {
                push(&mut line, &format!("--grace-period={g}"));
            }
            if spec.force {
                push(&mut line, "--force");
            }
            where_note(&mut line, "only objects where", &spec.where_);
        }
        "cordon" | "uncordon" => {
            push(&mut line, spec.verb.name());
            push(&mut line, &name);
        }
        "drain" => {
            push(&mut line, "drain");
            push(&mut line, &name);
            for (on, flag) in [
                (spec.ignore_daemonsets, "--ignore-daemonsets"),
                (spec.delete_emptydir_data, "--delete-emptydir-data"),
                (spec.force, "--force"),
                (spec.disable_eviction, "--disable-eviction"),
            ] {
                if on {
                    push(&mut line, flag);
                }
            }
            if let Some(g) = spec.grace_period {
                push(&mut line, &format!("--grace-period={g}"));
            }
            if let Some(s) = &spec.pod_selector {
                push(&mut line, &format!("--pod-selector={s}"));
            }
        }
        "evict" => {
            // kubectl has no evict command; this is how a person sends the same request.
            let ns = spec.namespace.clone().unwrap_or_default();
            let body = super::write::eviction_body(&name, &ns, spec.grace_period);
            return format!(
                "echo {} | kubectl create --raw /api/v1/namespaces/{ns}/pods/{name}/eviction -f -",
                quote(&body.to_string())
            );
        }
        "patch" => {
            push(&mut line, "patch");
            object(&mut line, spec);
            scope(&mut line, spec);
            push(&mut line, "--type");
            push(&mut line, spec.patch_type.as_deref().unwrap_or("strategic"));
            push(&mut line, "-p");
            push(
                &mut line,
                &spec
                    .body
                    .as_ref()
                    .map(|b| b.to_string())
                    .unwrap_or_default(),
            );
        }
        "taint" => {
            push(&mut line, "taint");
            push(&mut line, "node");
            push(&mut line, &name);
            let key = spec.key.clone().unwrap_or_default();
            let effect = spec.effect.clone().unwrap_or_default();
            let taint = match spec.value.as_deref() {
                Some(v) if !v.is_empty() => format!("{key}={v}:{effect}"),
                _ => format!("{key}:{effect}"),
            };
            push(&mut line, &taint);
            push(&mut line, "--overwrite");
        }
        "untaint" => {
            push(&mut line, "taint");
            push(&mut line, "node");
            push(&mut line, &name);
            let key = spec.key.clone().unwrap_or_default();
            let taint = match &spec.effect {
                Some(e) => format!("{key}:{e}-"),
                None => format!("{key}-"),
            };
            push(&mut line, &taint);
        }
        "wait" => {
            push(&mut line, "wait");
            match (&spec.resource, &spec.name) {
                (Some(t), Some(n)) => push(&mut line, &format!("{}/{n}", t.kubectl_singular())),
                (Some(t), None) => push(&mut line, &t.kubectl_plural()),
                _ => {}
            }
            scope(&mut line, spec);
            let f = spec.for_.clone().unwrap_or_default();
            if f == "delete" || f.starts_with("condition=") {
                push(&mut line, &format!("--for={f}"));
            } else {
                where_note(&mut line, "until", &spec.for_);
            }
        }
        "scale" => {
            push(&mut line, "scale");
            object(&mut line, spec);
            scope(&mut line, spec);
            push(
                &mut line,
                &format!("--replicas={}", spec.replicas.unwrap_or(0)),
            );
        }
        "rollout_restart" => {
            push(&mut line, "rollout");
            push(&mut line, "restart");
            object(&mut line, spec);
            scope(&mut line, spec);
        }
        "rollout_undo" => {
            push(&mut line, "rollout");
            push(&mut line, "undo");
            object(&mut line, spec);
            scope(&mut line, spec);
            if let Some(r) = spec.to_revision {
                push(&mut line, &format!("--to-revision={r}"));
            }
        }
        "rollout_status" => {
            push(&mut line, "rollout");
            push(&mut line, "status");
            object(&mut line, spec);
            scope(&mut line, spec);
        }
        "logs" => {
            push(&mut line, "logs");
            match &spec.resource {
                Some(t) if t.plural != "pods" => {
                    push(&mut line, &format!("{}/{name}", t.kubectl_singular()));
                }
                _ => push(&mut line, &name),
            }
            scope(&mut line, spec);
            if let Some(c) = &spec.container {
                push(&mut line, "-c");
                push(&mut line, c);
            }
            if let Some(t) = spec.tail {
                push(&mut line, &format!("--tail={t}"));
            }
            if let Some(s) = spec.since_seconds {
                push(&mut line, &format!("--since={s}s"));
            }
            if spec.previous {
                push(&mut line, "--previous");
            }
        }
        "label" | "annotate" => {
            push(&mut line, spec.verb.name());
            object(&mut line, spec);
            scope(&mut line, spec);
            for (k, v) in &spec.set {
                push(&mut line, &format!("{k}={v}"));
            }
            for k in &spec.remove {
                push(&mut line, &format!("{k}-"));
            }
            if spec.overwrite {
                push(&mut line, "--overwrite");
            }
        }
        "set_image" => {
            push(&mut line, "set");
            push(&mut line, "image");
            match &spec.resource {
                Some(t) => push(&mut line, &format!("{}/{name}", t.kubectl_singular())),
                None => push(&mut line, &name),
            }
            scope(&mut line, spec);
            for (c, i) in &spec.images {
                push(&mut line, &format!("{c}={i}"));
            }
        }
        "apply" => {
            push(&mut line, "apply");
            push(&mut line, "--server-side");
            push(&mut line, "--field-manager=runbook");
            scope(&mut line, spec);
            push(&mut line, "-f");
            match &spec.file {
                Some(f) => push(&mut line, f),
                None => {
                    push(&mut line, "-");
                    if let Some(t) = &spec.resource {
                        line.push_str(&format!("  # {} {name}", t.kubectl_singular()));
                    }
                }
            }
            if spec.dry_run {
                // Before the note, so the line stays a command a person can paste.
                if let Some(at) = line.find("  # ") {
                    line.insert_str(at, " --dry-run=server");
                } else {
                    push(&mut line, "--dry-run=server");
                }
            }
        }
        other => push(&mut line, other),
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_the_shell_would_split_or_expand() {
        assert_eq!(quote("hub-1"), "hub-1");
        assert_eq!(quote("spec.nodeName=node-1"), "spec.nodeName=node-1");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(quote(""), "''");
    }
}
