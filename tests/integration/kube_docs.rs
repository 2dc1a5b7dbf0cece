//! The recipes of docs/kube.md lint clean and find what they promise in the seed
//! incident's lab: every YAML block is a list of check steps; they are joined into
//! one runbook, validated, then run in order through the kube provider, each saved
//! result visible to the next, as the engine would.

use std::path::Path;

use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag, TagEnd};
use runbook::lab::Lab;
use runbook::providers::kube::KubeProvider;
use runbook::providers::{Defaults, ExecCtx, Provider};
use runbook::runbook::model::OpRef;
use serde_json::{Map, Value, json};

const LOST: &str = "gke-prod-a-ssd-pool-32-134a959a-n2sk";
const OLD_HUB: &str = "hub-65d9f46698-dj4jb";
const NEW_HUB: &str = "hub-65d9f46698-dmlcv";

const HEADER: &str = "\
version: 1
name: kube-recipes
title: The recipes of docs/kube.md
params:
  namespace: { default: prod }
  node: { default: gke-prod-a-ssd-pool-32-134a959a-n2sk }
  claim: { default: hub-db-dir }
  pod: { default: hub-65d9f46698-dmlcv }
steps:
";

fn yaml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for event in Parser::new(markdown) {
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(lang))) if &*lang == "yaml" => {
                current = Some(String::new())
            }
            Event::Text(t) => {
                if let Some(c) = current.as_mut() {
                    c.push_str(&t);
                }
            }
            Event::End(TagEnd::CodeBlock) => blocks.extend(current.take()),
            _ => {}
        }
    }
    blocks
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["metadata"]["name"].as_str().map(String::from))
        .collect()
}

#[tokio::test]
async fn the_recipes_find_the_lost_node_the_stuck_pods_and_the_held_volume() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/kube.md"))
        .expect("docs/kube.md is readable");
    let blocks = yaml_blocks(&doc);
    assert!(blocks.len() >= 6, "the recipes are yaml blocks");
    let mut src = HEADER.to_string();
    for b in &blocks {
        for line in b.lines() {
            src.push_str("  ");
            src.push_str(line);
            src.push('\n');
        }
    }
    let rb = runbook::runbook::parse_str(&src, Path::new("docs/kube.md"))
        .unwrap_or_else(|d| panic!("the recipes do not lint clean:\n{src}\n{d:#?}"));

    let lab = Lab::seed();
    lab.set_speed(0.0);
    let p = KubeProvider::new(lab.client(), "default", 0.0);
    let mut vars = Map::new();
    vars.insert(
        "params".into(),
        json!({"namespace": "prod", "node": LOST, "claim": "hub-db-dir", "pod": NEW_HUB}),
    );
    for step in &rb.steps {
        let op = step.kube.as_ref().expect("each recipe is a kube step");
        let ctx = Value::Object(vars.clone());
        let r = p
            .resolve(OpRef::Kube(op), &ctx, &Defaults::default())
            .unwrap_or_else(|e| panic!("{}: {e}", step.id.value));
        let result = p
            .execute(&r, &ExecCtx::new(ctx))
            .await
            .unwrap_or_else(|e| panic!("{} ({}): {e}", step.id.value, r.display));
        let save = step.save.as_ref().expect("each recipe saves its result");
        vars.insert(save.value.clone(), result);
    }

    assert!(names(&vars["node_pods"]).contains(&OLD_HUB.to_string()));
    let bad = names(&vars["bad_nodes"]);
    assert!(bad.contains(&LOST.to_string()), "{bad:?}");
    assert_eq!(bad.len(), 2, "two nodes were lost: {bad:?}");
    let stuck = names(&vars["stuck_pods"]);
    assert!(stuck.contains(&OLD_HUB.to_string()), "{stuck:?}");
    assert!(!stuck.contains(&NEW_HUB.to_string()), "{stuck:?}");
    let mut users = names(&vars["claim_pods"]);
    users.sort();
    assert_eq!(users, [OLD_HUB, NEW_HUB]);
    assert_eq!(vars["attachments"][0]["spec"]["nodeName"], LOST);
    let warnings = vars["pod_warnings"].as_array().expect("a list").clone();
    assert!(
        warnings.iter().any(|e| e["reason"] == "FailedAttachVolume"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("Multi-Attach"))),
        "{warnings:?}"
    );
}
