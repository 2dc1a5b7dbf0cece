//! The shipped runbooks' checks, evaluated against the lab scenario of the incident
//! each was written for: every `check` must find the incident (its `expect` holds).
//!
//! This is a small static dry run (no engine): kube `get` steps are answered from the
//! lab's store, prometheus steps from its metrics, `where`/`expect` through
//! `runbook::expr`. It proves the runbooks' conditions fit the objects the lab serves
//! (field names, `has()` guards), which lint cannot see. `runbook test` runs them for
//! real through the engine.

use std::path::Path;

use runbook::lab::Lab;
use runbook::runbook::model::{OpRef, Runbook, StepKind};
use runbook::runbook::{kinds, load};
use serde_json::{Map, Value, json};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `a=b,c!=d,e in (f, g)`: the label selector forms the runbooks use.
fn selector_matches(selector: &str, obj: &Value) -> bool {
    let labels = obj
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&selector[start..]);
    terms.iter().all(|t| {
        let t = t.trim();
        if let Some((k, set)) = t.split_once(" in ") {
            let set = set.trim().trim_start_matches('(').trim_end_matches(')');
            let v = labels[k.trim()].as_str().unwrap_or("\u{0}");
            set.split(',').any(|s| s.trim() == v)
        } else if let Some((k, v)) = t.split_once("!=") {
            labels[k.trim()].as_str() != Some(v.trim())
        } else if let Some((k, v)) = t.split_once('=') {
            labels[k.trim()].as_str() == Some(v.trim_start_matches('=').trim())
        } else {
            true
        }
    })
}

fn params(rb: &Runbook) -> Value {
    let mut p = Map::new();
    for (name, param) in &rb.params {
        if let Some(d) = &param.default {
            p.insert(name.clone(), d.value.clone());
        }
    }
    Value::Object(p)
}

/// Every kube `where` of the runbook (steps, verifications), evaluated on every
/// object of its kind in the scenario with the values the checks saved: none may
/// fail to evaluate (a missing `has()` guard fails on the first object without the
/// field, whatever the result would be).
fn every_where_evaluates(rb: &Runbook, lab: &Lab, ctx: &Map<String, Value>) -> usize {
    let mut ops = Vec::new();
    for step in &rb.steps {
        if let Some(OpRef::Kube(k)) = step.op() {
            ops.push((step.id.value.clone(), k));
        }
        if let Some(v) = step.verification()
            && let Some(OpRef::Kube(k)) = v.op()
        {
            ops.push((format!("{} verify", step.id.value), k));
        }
        for rung in &step.escalate {
            if let Some(OpRef::Kube(k)) = rung.op() {
                ops.push((format!("{} rung", step.id.value), k));
            }
        }
    }
    let mut evaluated = 0;
    for (what, k) in ops {
        let (Some((_, kind)), Some(w)) = (k.verb(), &k.where_) else {
            continue;
        };
        let resolved = kinds::resolve(&kind.value).unwrap();
        let kinds::Resolved::Builtin(b) = &resolved else {
            continue;
        };
        for o in lab.list(b.plural, None) {
            let mut c = ctx.clone();
            c.insert("object".into(), o.clone());
            c.insert(resolved.singular(), o.clone());
            if let Err(e) = runbook::expr::eval_bool(w, &Value::Object(c)) {
                panic!("{what}: where `{}`: {e} on {o}", w.value);
            }
            evaluated += 1;
        }
    }
    evaluated
}

/// Run the read-only steps in order until the first action; return how many ran.
fn run_checks(runbook_file: &str, scenario_file: &str) -> usize {
    let loaded = load(&root().join(runbook_file)).unwrap_or_else(|e| panic!("{e}"));
    let rb = loaded.runbook;
    let lab = Lab::from_scenario_file(root().join(scenario_file)).unwrap();
    lab.reconcile();
    let mut ctx = Map::new();
    ctx.insert("params".into(), params(&rb));
    let mut ran = 0;
    for step in &rb.steps {
        // Checks and verifications are read-only: run those before the first action.
        if !matches!(step.kind(), StepKind::Check | StepKind::Verify) {
            break;
        }
        let render = |t: &str, ctx: &Map<String, Value>| {
            runbook::expr::render(t, &Value::Object(ctx.clone())).unwrap()
        };
        let result = match step.op() {
            Some(OpRef::Kube(k)) => {
                let (verb, kind) = k.verb().unwrap();
                assert_eq!(verb.name(), "get", "{}", step.id.value);
                let ns = k.namespace.as_ref().map(|n| render(n, &ctx));
                let resolved = kinds::resolve(&kind.value).unwrap();
                let plural = match &resolved {
                    kinds::Resolved::Builtin(b) => b.plural.to_owned(),
                    kinds::Resolved::Custom { plural, .. } => plural.clone(),
                };
                if let Some(name) = &k.name {
                    lab.get(&plural, ns.as_deref(), &render(name, &ctx))
                        .unwrap_or_else(|| panic!("{}: no such object", step.id.value))
                } else {
                    let mut items = lab.list(&plural, ns.as_deref());
                    if let Some(sel) = &k.selector {
                        let sel = render(sel, &ctx);
                        items.retain(|o| selector_matches(&sel, o));
                    }
                    if let Some(w) = &k.where_ {
                        items.retain(|o| {
                            let mut c = ctx.clone();
                            c.insert("object".into(), o.clone());
                            c.insert(resolved.singular(), o.clone());
                            runbook::expr::eval_bool(w, &Value::Object(c))
                                .unwrap_or_else(|e| panic!("{}: where: {e} on {o}", step.id.value))
                        });
                    }
                    Value::Array(items)
                }
            }
            Some(OpRef::Prometheus(p)) => {
                let query = render(&p.query, &ctx);
                let value = lab.metric(&query).map_or(Value::Null, |v| json!(v));
                json!({ "value": value, "samples": [] })
            }
            other => panic!("{}: unexpected operation {other:?}", step.id.value),
        };
        let mut c = ctx.clone();
        c.insert("result".into(), result.clone());
        if let Some(save) = &step.save {
            c.insert(save.value.clone(), result.clone());
            ctx.insert(save.value.clone(), result.clone());
        }
        if let Some(e) = &step.expect {
            let holds = runbook::expr::eval_bool(e, &Value::Object(c))
                .unwrap_or_else(|err| panic!("{}: expect: {err}", step.id.value));
            assert!(
                holds,
                "{}: `{}` is false on the scenario; result: {result:#}",
                step.id.value, e.value
            );
        }
        ran += 1;
    }
    assert!(every_where_evaluates(&rb, &lab, &ctx) > 0);
    ran
}

#[test]
fn hub_pvc_locked_checks_find_the_seed_incident() {
    assert_eq!(
        run_checks(
            "runbooks/hub-pvc-locked.yaml",
            "runbooks/hub-pvc-locked.scenario.yaml"
        ),
        6
    );
}

#[test]
fn prometheus_node_lost_checks_find_the_second_outbreak_and_data_on_a_claim() {
    assert_eq!(
        run_checks(
            "runbooks/prometheus-node-lost.yaml",
            "runbooks/prometheus-node-lost.scenario.yaml"
        ),
        5
    );
}

#[test]
fn ingress_checks_find_the_2019_04_03_outage() {
    assert_eq!(
        run_checks(
            "runbooks/ingress-on-cordoned-nodes.yaml",
            "runbooks/ingress-on-cordoned-nodes.scenario.yaml"
        ),
        4
    );
}
