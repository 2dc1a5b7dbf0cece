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
  db_password: { required: true, secret: true }
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
    } else if block.starts_with("- ") || block.starts_with("# params:") {
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

/// The rows of the markdown table whose header line starts with `header`: each row's
/// cells, trimmed. Stops at the first line that is not a table row.
fn table_rows(markdown: &str, header: &str) -> Vec<Vec<String>> {
    let mut lines = markdown.lines().skip_while(|l| !l.starts_with(header));
    assert!(lines.next().is_some(), "no table starting `{header}`");
    lines
        .skip(1) // |---|---|
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

/// The `code` spans of a cell, with whether each is bold (`**`x`**`).
fn code_spans(cell: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut rest = cell;
    while let Some(start) = rest.find('`') {
        let bold = rest[..start].ends_with("**");
        let after = &rest[start + 1..];
        let Some(end) = after.find('`') else { break };
        out.push((after[..end].to_owned(), bold));
        rest = &after[end + 1..];
    }
    out
}

/// Drop `( … )` asides such as a key's allowed values.
fn without_asides(cell: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in cell.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// docs/format.md's verb table is the format's verb table (`runbook::verbs::VERBS`):
/// the same verbs, what their value names, the keys each takes and which it needs.
#[test]
fn format_reference_verb_table_matches_the_verbs_the_parser_knows() {
    use runbook::runbook::verbs::{KubeVerb, VERBS, VerbTarget};
    use std::collections::BTreeSet;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/format.md");
    let markdown = std::fs::read_to_string(&path).expect("docs/format.md exists");
    let mut documented = BTreeSet::new();
    for row in table_rows(&markdown, "| verb | value | keys it takes") {
        assert_eq!(row.len(), 3, "a verb row has three cells: {row:?}");
        for (name, _) in code_spans(&row[0]) {
            let verb = KubeVerb::from_name(&name).unwrap_or_else(|| {
                panic!("docs/format.md documents `{name}`, which is not a kube verb")
            });
            let spec = verb.spec();
            documented.insert(name.clone());
            let target = match row[1].as_str() {
                "node name" => VerbTarget::Node,
                "pod name" => VerbTarget::Pod,
                "pod name or KIND/NAME" => VerbTarget::PodOrWorkload,
                "manifest" => VerbTarget::Manifest,
                _ => VerbTarget::Kind,
            };
            assert_eq!(target, spec.target, "`{name}`: value column {:?}", row[1]);
            if let Some(kinds) = spec.kinds {
                assert_eq!(
                    row[1],
                    kinds.join(", "),
                    "`{name}`: the kinds it applies to"
                );
            }
            // What follows ` — ` is prose about the keys, not a key list.
            let keys_cell = without_asides(row[2].split(" — ").next().unwrap_or_default());
            let keys = code_spans(&keys_cell);
            let listed: BTreeSet<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
            let bold: BTreeSet<&str> = keys
                .iter()
                .filter(|k| k.1)
                .map(|(k, _)| k.as_str())
                .collect();
            assert_eq!(
                listed,
                spec.keys.iter().copied().collect(),
                "`{name}`: keys"
            );
            assert_eq!(
                bold,
                spec.required.iter().copied().collect(),
                "`{name}`: required keys (bold)"
            );
        }
    }
    let known: BTreeSet<String> = VERBS.iter().map(|v| v.name.to_owned()).collect();
    assert_eq!(
        documented, known,
        "docs/format.md's verb table and the parser's verbs differ"
    );
}

/// docs/kube.md's "Writes" table lists exactly the verbs that change the cluster (the
/// ones lint refuses in a check and the engine gates).
#[test]
fn kube_reference_writes_table_lists_every_mutating_verb() {
    use runbook::runbook::verbs::VERBS;
    use std::collections::BTreeSet;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/kube.md");
    let markdown = std::fs::read_to_string(&path).expect("docs/kube.md exists");
    let documented: BTreeSet<String> = table_rows(&markdown, "| verb | plan shows | sends |")
        .iter()
        .filter_map(|row| code_spans(&row[0]).into_iter().next())
        .map(|(cell, _)| cell.split(':').next().unwrap_or_default().trim().to_owned())
        .collect();
    let mutating: BTreeSet<String> = VERBS
        .iter()
        .filter(|v| v.mutates)
        .map(|v| v.name.to_owned())
        .collect();
    assert_eq!(
        documented, mutating,
        "docs/kube.md's Writes table and the mutating verbs differ"
    );
}
