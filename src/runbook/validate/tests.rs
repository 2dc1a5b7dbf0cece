//! Unit tests of the validation rules.

use std::path::Path;

use crate::runbook::parse_str;

/// The codes of every error in `steps` (a YAML list) under a minimal header.
fn codes(params: &str, steps: &str) -> Vec<&'static str> {
    let text = format!("version: 1\nname: t\ntitle: t\nparams:\n{params}\nsteps:\n{steps}");
    match parse_str(&text, Path::new("t.yaml")) {
        Ok(_) => Vec::new(),
        Err(d) => d
            .into_iter()
            .filter(|d| d.is_error())
            .map(|d| d.code)
            .collect(),
    }
}

const NS: &str = "  ns: { default: prod }";

#[test]
fn a_steps_own_saved_value_is_visible_in_its_expect() {
    let steps = "  - check: c\n    id: c\n    kube: { get: pods }\n    save: pods\n    expect: \"size(pods) > 0 && size(result) > 0\"\n";
    assert_eq!(codes(NS, steps), Vec::<&str>::new());
}

#[test]
fn steps_may_refer_to_earlier_steps_only() {
    let ok = "  - check: a\n    id: a\n    shell: { argv: [\"true\"] }\n  - check: b\n    id: b\n    shell: { argv: [echo, \"{{steps.a.status}}\"] }\n";
    assert_eq!(codes(NS, ok), Vec::<&str>::new());
    let later = "  - check: a\n    id: a\n    shell: { argv: [echo, \"{{steps.b.status}}\"] }\n  - check: b\n    id: b\n    shell: { argv: [\"true\"] }\n";
    assert_eq!(codes(NS, later), vec!["step-defined-later"]);
}

#[test]
fn handlers_see_every_saved_value() {
    let text = "version: 1\nname: t\ntitle: t\nsteps:\n  - check: a\n    id: a\n    kube: { get: pods }\n    save: pods\n    on_failure: [h]\nhandlers:\n  - manual: h\n    id: h\n    instructions: \"{{pods}}\"\n";
    assert!(parse_str(text, Path::new("t.yaml")).is_ok());
}

#[test]
fn custom_resources_bind_their_singular_name_in_where() {
    let steps = "  - check: w\n    id: w\n    kube: { get: widgets.example.com, where: \"widget.spec.size > 1 && object.kind == 'Widget'\" }\n";
    assert_eq!(codes(NS, steps), Vec::<&str>::new());
}

#[test]
fn a_templated_kind_is_not_checked_and_any_object_name_is_allowed() {
    let steps =
        "  - check: w\n    id: w\n    kube: { get: \"{{params.ns}}\", where: \"thing.x == 1\" }\n";
    assert_eq!(codes(NS, steps), Vec::<&str>::new());
}

#[test]
fn manual_steps_have_no_operation() {
    let steps = "  - manual: m\n    id: m\n    kube: { get: pods }\n";
    assert_eq!(codes(NS, steps), vec!["manual-with-operation"]);
}

#[test]
fn an_escalation_needs_a_verification_and_no_operation_of_its_own() {
    let no_verify = "  - action: a\n    id: a\n    escalate:\n      - kube: { cordon: n1 }\n";
    assert_eq!(codes(NS, no_verify), vec!["escalate-without-verify"]);
    let both = "  - action: a\n    id: a\n    kube: { cordon: n1 }\n    escalate:\n      - kube: { cordon: n1 }\n    verify: { kube: { get: nodes }, expect: \"size(result) > 0\" }\n";
    assert_eq!(codes(NS, both), vec!["operation-and-escalate"]);
}

#[test]
fn default_rung_ids_collide_with_explicit_ids() {
    let steps = "  - action: a\n    id: a\n    escalate:\n      - kube: { cordon: n1 }\n      - id: a.1\n        kube: { cordon: n2 }\n    verify: { kube: { get: nodes } }\n";
    assert_eq!(codes(NS, steps), vec!["duplicate-id"]);
}

#[test]
fn a_verification_must_not_mutate() {
    let steps = "  - action: a\n    id: a\n    kube: { cordon: n1 }\n    verify: { kube: { delete: pods, name: x } }\n";
    assert_eq!(codes(NS, steps), vec!["mutating-check"]);
}

#[test]
fn param_names_must_be_identifiers() {
    assert_eq!(
        codes(
            "  hub-selector: { default: x }",
            "  - check: c\n    id: c\n    kube: { get: pods }\n"
        ),
        vec!["param-name"]
    );
}

#[test]
fn templates_inside_json_bodies_are_checked() {
    let steps = "  - action: p\n    id: p\n    kube: { patch: nodes, name: n1, body: { metadata: { labels: { x: \"{{params.nope}}\" } } } }\n";
    assert_eq!(codes(NS, steps), vec!["unknown-param"]);
}

#[test]
fn cel_type_names_are_not_variables() {
    let steps = "  - check: c\n    id: c\n    kube: { get: pods }\n    expect: \"type(result) == list && math.greatest(1, 2) == 2\"\n";
    assert_eq!(codes(NS, steps), Vec::<&str>::new());
}

#[test]
fn concurrency_needs_for_each() {
    let steps = "  - action: a\n    id: a\n    concurrency: 2\n    kube: { cordon: n1 }\n";
    assert_eq!(codes(NS, steps), vec!["concurrency-without-for-each"]);
}

#[test]
fn a_param_default_that_is_not_a_list_cannot_be_iterated() {
    let steps =
        "  - action: a\n    id: a\n    for_each: params.ns\n    kube: { cordon: \"{{item}}\" }\n";
    assert_eq!(codes(NS, steps), vec!["for-each-not-list"]);
}

#[test]
fn a_bare_param_name_gets_a_hint_to_use_params() {
    let text = "version: 1\nname: t\ntitle: t\nparams:\n  ns: { default: prod }\nsteps:\n  - check: c\n    id: c\n    kube: { get: pods, namespace: \"{{ns}}\" }\n";
    let d = parse_str(text, Path::new("t.yaml")).unwrap_err();
    assert_eq!(d[0].code, "undefined");
    assert_eq!(
        d[0].help.as_deref(),
        Some("parameters are under `params`: write `params.ns`")
    );
    assert_eq!((d[0].line, d[0].column), (9, 38));
}

#[test]
fn an_explicit_gate_cannot_be_listed_as_unattended() {
    let text = "version: 1\nname: t\ntitle: t\nunattended: [wipe]\nsteps:\n  - action: wipe\n    id: wipe\n    gate: explicit\n    shell: { argv: [\"true\"] }\n";
    let errs: Vec<_> = parse_str(text, Path::new("t.yaml"))
        .err()
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d.is_error())
        .map(|d| d.code)
        .collect();
    assert_eq!(errs, vec!["unattended-explicit"]);
    let ok = "version: 1\nname: t\ntitle: t\nsteps:\n  - action: wipe\n    id: wipe\n    gate: explicit\n    shell: { argv: [\"true\"] }\n";
    assert!(parse_str(ok, Path::new("t.yaml")).is_ok());
}

/// Errors as (code, message, help) for one runbook.
fn diags(params: &str, steps: &str) -> Vec<(&'static str, String, Option<String>)> {
    let text = format!("version: 1\nname: t\ntitle: t\nparams:\n{params}\nsteps:\n{steps}");
    match parse_str(&text, Path::new("t.yaml")) {
        Ok(_) => Vec::new(),
        Err(d) => d
            .into_iter()
            .filter(|d| d.is_error())
            .map(|d| (d.code, d.message.clone(), d.help.clone()))
            .collect(),
    }
}

#[test]
fn now_is_known_in_every_kind_of_condition() {
    let steps = r#"  - check: Pods Terminating past their grace period
    id: stuck
    when: "now > timestamp('2026-01-01T00:00:00Z')"
    kube:
      get: pods
      where: "has(pod.metadata.deletionTimestamp) && timestamp(pod.metadata.deletionTimestamp) < now"
    save: stuck
    expect: "size(result) > 0 && now.getHours() >= 0"
  - action: Wait for them
    id: wait
    for_each: "stuck.filter(p, now - timestamp(p.metadata.deletionTimestamp) > duration('5m'))"
    kube: { wait: pod, name: "{{item.metadata.name}}", for: "now > timestamp(object.metadata.deletionTimestamp)" }
    verify:
      shell: { argv: ["true"] }
      expect: "now - timestamp(stuck[0].metadata.deletionTimestamp) > duration('300s')"
"#;
    assert_eq!(diags(NS, steps), Vec::new());
}

#[test]
fn a_misspelt_now_is_undefined_and_suggests_now() {
    let steps = "  - check: c\n    id: c\n    shell: { argv: [\"true\"] }\n    expect: \"nwo > timestamp('2026-01-01T00:00:00Z')\"\n";
    let d = diags(NS, steps);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].0, "undefined");
    assert!(d[0].1.contains("`nwo`"), "{d:?}");
    assert_eq!(d[0].2.as_deref(), Some("did you mean `now`?"));
}

#[test]
fn now_is_not_a_template_variable_nor_a_save_name_and_has_no_fields() {
    let template = "  - check: c\n    id: c\n    shell: { argv: [echo, \"{{now}}\"] }\n";
    let d = diags(NS, template);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].0, "undefined");
    assert!(
        d[0].2
            .as_deref()
            .unwrap_or("")
            .contains("only defined in conditions"),
        "{d:?}"
    );
    let save = "  - check: c\n    id: c\n    shell: { argv: [\"true\"] }\n    save: now\n";
    assert_eq!(codes(NS, save), vec!["save-name"]);
    let field = "  - check: c\n    id: c\n    shell: { argv: [\"true\"] }\n    expect: \"now.seconds > 0\"\n";
    assert_eq!(codes(NS, field), vec!["now-field"]);
}

/// The first error with `code` in `steps`, for its position and hint.
fn first(steps: &str, code: &str) -> crate::runbook::Diagnostic {
    let text = format!("version: 1\nname: t\ntitle: t\nparams:\n{NS}\nsteps:\n{steps}");
    let diags = parse_str(&text, Path::new("t.yaml")).expect_err("lint accepts it");
    diags
        .into_iter()
        .find(|d| d.code == code)
        .unwrap_or_else(|| panic!("no `{code}` error"))
}

#[test]
fn sh_c_with_a_template_in_the_script_is_an_error_with_the_safe_rewrite() {
    // Issue 13 item 7: injectable even in a check, which no gate stands before.
    let steps =
        "  - check: c\n    id: c\n    shell: { argv: [sh, -c, \"echo {{params.ns}} done\"] }\n";
    let d = first(steps, "shell-template-in-script");
    assert_eq!((d.line, d.column), (9, 35), "{d:?}");
    assert_eq!(
        d.help.as_deref(),
        Some(
            "pass values as arguments and quote them in the script: `argv: [sh, -c, 'echo \"$1\" done', sh, \"{{params.ns}}\"]`"
        )
    );
    for shell in ["bash", "/bin/sh", "zsh", "dash"] {
        let steps = format!(
            "  - check: c\n    id: c\n    shell: {{ argv: [{shell}, -ec, \"ls {{{{params.ns}}}}\"] }}\n"
        );
        assert_eq!(
            codes(NS, &steps),
            vec!["shell-template-in-script"],
            "{shell}"
        );
    }
}

#[test]
fn sh_c_with_values_as_positional_arguments_lints_clean() {
    let steps = "  - check: c\n    id: c\n    shell: { argv: [sh, -c, 'echo \"$1\"', sh, \"{{params.ns}}\"] }\n";
    assert_eq!(codes(NS, steps), Vec::<&str>::new());
    let plain = "  - check: c\n    id: c\n    shell: { argv: [echo, \"{{params.ns}}\"] }\n";
    assert_eq!(codes(NS, plain), Vec::<&str>::new());
}

#[test]
fn durations_past_30_days_and_every_zero_are_refused() {
    // Issue 13 item 10: `within: 100000000d` passed lint and panicked the run.
    let verify = |within: &str, every: &str| {
        format!(
            "  - action: a\n    id: a\n    shell: {{ argv: [\"true\"] }}\n    verify:\n      shell: {{ argv: [\"true\"] }}\n      within: {within}\n      every: {every}\n"
        )
    };
    assert_eq!(
        codes(NS, &verify("100000000d", "5s")),
        vec!["duration-too-long"]
    );
    assert_eq!(codes(NS, &verify("5m", "0ms")), vec!["every-zero"]);
    assert_eq!(codes(NS, &verify("30d", "1s")), Vec::<&str>::new());
    let timeout = "  - check: c\n    id: c\n    timeout: 31d\n    shell: { argv: [\"true\"] }\n";
    assert_eq!(codes(NS, timeout), vec!["duration-too-long"]);
}

#[test]
fn retry_attempts_are_capped() {
    let retry = |n: u64| {
        format!(
            "  - check: c\n    id: c\n    retry: {{ attempts: {n} }}\n    shell: {{ argv: [\"true\"] }}\n"
        )
    };
    assert_eq!(codes(NS, &retry(4_294_967_295)), vec!["out-of-range"]);
    assert_eq!(codes(NS, &retry(101)), vec!["out-of-range"]);
    assert_eq!(codes(NS, &retry(100)), Vec::<&str>::new());
}

#[test]
fn names_and_step_ids_longer_than_63_characters_are_refused() {
    let id = "a".repeat(64);
    let steps = format!("  - check: c\n    id: {id}\n    shell: {{ argv: [\"true\"] }}\n");
    assert_eq!(codes(NS, &steps), vec!["too-long"]);
    let ok = format!(
        "  - check: c\n    id: {}\n    shell: {{ argv: [\"true\"] }}\n",
        "a".repeat(63)
    );
    assert_eq!(codes(NS, &ok), Vec::<&str>::new());
    let name = "n".repeat(300);
    let text = format!(
        "version: 1\nname: {name}\ntitle: t\nsteps:\n  - check: c\n    id: c\n    shell: {{ argv: [\"true\"] }}\n"
    );
    let diags = parse_str(&text, Path::new("t.yaml")).unwrap_err();
    assert!(
        diags.iter().any(|d| d.code == "too-long" && d.line == 2),
        "{diags:?}"
    );
}

#[test]
fn huge_or_deeply_nested_expressions_are_refused() {
    let long = format!("size(result) > 0 {}", "|| true ".repeat(600));
    let steps =
        format!("  - check: c\n    id: c\n    kube: {{ get: pods }}\n    expect: \"{long}\"\n");
    assert_eq!(codes(NS, &steps), vec!["expression-too-large"]);
    let deep = format!("{}true{}", "(".repeat(40), ")".repeat(40));
    let steps =
        format!("  - check: c\n    id: c\n    kube: {{ get: pods }}\n    expect: \"{deep}\"\n");
    assert_eq!(codes(NS, &steps), vec!["expression-too-deep"]);
}

#[test]
fn a_verify_step_cannot_iterate() {
    let steps = "  - check: c\n    id: c\n    kube: { get: pods }\n    save: pods\n  - verify: v\n    id: v\n    for_each: pods\n    kube: { get: pods }\n    expect: \"size(result) > 0\"\n";
    assert_eq!(codes(NS, steps), vec!["for-each-on-verify"]);
}

#[test]
fn a_template_counts_with_len_not_dot_length() {
    let saved = "  - check: c\n    id: c\n    kube: { get: pods }\n    save: pods\n";
    for bad in ["{{pods.length}}", "{{pods.size}}"] {
        let steps =
            format!("{saved}  - check: d\n    id: d\n    shell: {{ argv: [echo, \"{bad}\"] }}\n");
        assert_eq!(codes(NS, &steps), vec!["template-length"], "{bad}");
    }
    let good = format!(
        "{saved}  - check: d\n    id: d\n    shell: {{ argv: [echo, \"{{{{len pods}}}}\"] }}\n"
    );
    assert_eq!(codes(NS, &good), Vec::<&str>::new());
}

#[test]
fn a_condition_calling_an_unknown_function_is_an_error() {
    let steps = "  - check: c\n    id: c\n    kube: { get: pods }\n    expect: \"size(result) > 0 && qty('15k') > 0\"\n";
    assert_eq!(codes(NS, steps), vec!["unknown-function"]);
}

#[test]
fn kubernetes_cel_libraries_are_known_and_their_arity_is_checked() {
    let good = "  - check: c\n    id: c\n    kube: { get: pods }\n    expect: \"quantity('15k').isGreaterThan(quantity('1k')) && isQuantity('1Gi') && 'a1'.find('[0-9]') == '1' && 'a1'.findAll('[0-9]', 1).size() == 1 && [1, 2].sum() == 3 && [1].isSorted() && url('https://x/').getHost() == 'x' && 'A'.lowerAscii() == 'a'\"\n";
    assert_eq!(codes(NS, good), Vec::<&str>::new());
    for bad in [
        "quantity('1', '2') != null",
        "quantity('1').isGreaterThan()",
        "'a'.findAll('a', 1, 2).size() > 0",
        "[1].sum(1) > 0",
        "url('https://x/').getHost('x') == ''",
        "'a'.lowerAscii('x') == 'a'",
    ] {
        let steps =
            format!("  - check: c\n    id: c\n    kube: {{ get: pods }}\n    expect: \"{bad}\"\n");
        assert_eq!(codes(NS, &steps), vec!["function-arity"], "{bad}");
    }
}
