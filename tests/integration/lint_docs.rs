//! The examples in docs/format.md lint clean, so the reference cannot drift from the
//! format. Fragments (a list of steps, one step, one operation) are wrapped in a
//! runbook that declares the params and saved values the examples use.

use std::path::Path;

use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag, TagEnd};

const HEADER: &str = "\
version: 1
name: doc-example
title: An example from docs/format.md
params:
  namespace: { default: prod }
  prometheus: { default: http://127.0.0.1:9090 }
  kubeconfig: { default: /tmp/kubeconfig }
  channel: { default: ops }
  node: { default: node-1 }
  ticket: { default: INC-1 }
  hub_pod: { default: hub-0 }
steps:
  - check: Lost pods
    id: given-lost-pods
    kube: { get: pods }
    save: lost_pods
  - check: Bad nodes
    id: given-bad-nodes
    kube: { get: nodes }
    save: bad_nodes
  - check: Hub claim
    id: given-hub-claim
    kube: { get: pvc, name: hub-db-dir }
    save: hub_claim
";

fn yaml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for event in Parser::new(markdown) {
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(lang))) if &*lang == "yaml" => {
                current = Some(String::new());
            }
            Event::Text(t) => {
                if let Some(c) = current.as_mut() {
                    c.push_str(&t);
                }
            }
            Event::End(TagEnd::CodeBlock) => {
                if let Some(c) = current.take() {
                    blocks.push(c);
                }
            }
            _ => {}
        }
    }
    blocks
}

fn indent(text: &str, by: &str) -> String {
    text.lines().map(|l| format!("{by}{l}\n")).collect()
}

/// A runbook around the fragment, or None for blocks that are not fragments of steps
/// (the schema line, the file and params overviews).
fn wrap(block: &str) -> Option<String> {
    if let Some(rest) = block.strip_prefix("steps:\n") {
        Some(format!("{HEADER}{rest}"))
    } else if block.starts_with("- ") {
        Some(format!("{HEADER}{}", indent(block, "  ")))
    } else if ["shell:", "http:", "prometheus:", "kube:"]
        .iter()
        .any(|k| block.starts_with(k))
    {
        Some(format!(
            "{HEADER}  - action: Example\n    id: example\n{}",
            indent(block, "    ")
        ))
    } else {
        None
    }
}

#[test]
fn format_reference_examples_lint_clean() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/format.md");
    let markdown = std::fs::read_to_string(&path).expect("docs/format.md exists");
    let mut checked = 0;
    for block in yaml_blocks(&markdown) {
        let Some(text) = wrap(&block) else { continue };
        if let Err(diags) = runbook::runbook::parse_str(&text, Path::new("example.yaml")) {
            panic!(
                "an example in docs/format.md does not lint:\n{}\n{}",
                runbook::runbook::diag::render(Path::new("example.yaml"), &text, &diags),
                text
            );
        }
        checked += 1;
    }
    assert!(checked >= 7, "only {checked} examples found");
}
