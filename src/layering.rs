//! The module graph is a DAG, and this test keeps it one.
//!
//! Folder names tell a reader which way data flows (docs/architecture.md, "Modules
//! and what each may import"); when `expr` imports `engine` or `providers` import
//! `cli`, that picture is no longer true and seven modules end up in one cycle. The
//! compiler does not mind cycles inside a crate, so this test reads every `crate::…`
//! path in `src/**` and checks each top-level edge against [`ALLOWED`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Which top-level modules each module may import. Listed bottom-up: a module may
/// only name modules above it in this list, so the table itself is acyclic (checked by
/// `the_allowed_table_is_a_dag`). The crate root (`lib.rs`, `main.rs`) is exempt.
const ALLOWED: &[(&str, &[&str])] = &[
    ("exit", &[]),
    ("clock", &[]),
    ("expr", &["clock"]),
    ("journal", &[]),
    ("runbook", &["expr"]),
    ("store", &["journal"]),
    ("providers", &["clock", "expr", "journal", "runbook"]),
    ("render", &["journal", "store"]),
    ("lab", &["clock", "runbook"]),
    (
        "engine",
        &[
            "clock",
            "exit",
            "expr",
            "journal",
            "providers",
            "runbook",
            "store",
        ],
    ),
    (
        "notify",
        &["engine", "journal", "providers", "runbook", "store"],
    ),
    (
        "suite",
        &[
            "clock",
            "engine",
            "expr",
            "journal",
            "lab",
            "providers",
            "runbook",
        ],
    ),
    (
        "serve",
        &[
            "engine",
            "journal",
            "notify",
            "providers",
            "render",
            "runbook",
            "store",
        ],
    ),
    (
        "cli",
        &[
            "clock",
            "engine",
            "exit",
            "expr",
            "journal",
            "lab",
            "notify",
            "providers",
            "render",
            "runbook",
            "serve",
            "store",
            "suite",
        ],
    ),
    // Test-only: reads source files, imports nothing.
    ("layering", &[]),
];

/// One `crate::<module>` reference: where it is and which top-level module it names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Edge {
    from: String,
    to: String,
    file: String,
    line: usize,
}

/// The top-level module a file under `src/` belongs to (`src/engine/run.rs` →
/// `engine`, `src/clock.rs` → `clock`); `None` for the crate root.
fn module_of(rel: &str) -> Option<String> {
    let first = rel.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// Every top-level module named by a `crate::` path in `text`, with its line:
/// `crate::engine::Clock`, `use crate::{clock, journal::event}` (also over several
/// lines). Comments are skipped: a doc link is not an import.
fn references(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut group: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split("//").next().unwrap_or("");
        if let Some((start, buf)) = group.as_mut() {
            buf.push_str(line);
            if let Some(end) = buf.find('}') {
                let start = *start;
                let inner = buf[..end].to_owned();
                group = None;
                out.extend(group_heads(&inner).into_iter().map(|m| (start, m)));
            }
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().last();
            rest = &rest[at + "crate::".len()..];
            // `$crate::` in macros and `runbook_crate::` are not this crate's paths.
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            if let Some(after) = rest.strip_prefix('{') {
                match after.find('}') {
                    Some(end) => {
                        out.extend(group_heads(&after[..end]).into_iter().map(|m| (i + 1, m)))
                    }
                    None => group = Some((i + 1, after.to_owned())),
                }
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push((i + 1, name));
            }
        }
    }
    out
}

/// The first segment of each path in a `{a, b::c, d::{e, f}}` group.
fn group_heads(inner: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut start = true;
    for part in inner.split_inclusive([',', '{', '}']) {
        if depth == 0 && start {
            let name: String = part
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != "self" {
                heads.push(name);
            }
        }
        start = false;
        match part.chars().last() {
            Some('{') => depth += 1,
            Some('}') => depth -= 1,
            Some(',') if depth == 0 => start = true,
            _ => {}
        }
    }
    heads
}

/// The cross-module edges of `files` (path relative to `src/`, contents).
fn edges(files: &[(String, String)]) -> Vec<Edge> {
    let mut out = Vec::new();
    for (rel, text) in files {
        let Some(from) = module_of(rel) else { continue };
        for (line, to) in references(text) {
            if to != from {
                out.push(Edge {
                    from: from.clone(),
                    to,
                    file: format!("src/{rel}"),
                    line,
                });
            }
        }
    }
    out
}

/// Every violation, one line each, naming the file and line of the import: an edge
/// the table does not allow, a module the table does not know, and any cycle.
fn check(files: &[(String, String)], allowed: &[(&str, &[&str])]) -> Vec<String> {
    let table: BTreeMap<&str, &[&str]> = allowed.iter().copied().collect();
    let all = edges(files);
    let mut errors = Vec::new();
    for e in &all {
        match table.get(e.from.as_str()) {
            None => errors.push(format!(
                "{}:{}: module `{}` is not in the allowed-imports table (src/layering.rs)",
                e.file, e.line, e.from
            )),
            Some(ok) if !ok.contains(&e.to.as_str()) => errors.push(format!(
                "{}:{}: `{}` may not import `{}` (allowed: {})",
                e.file,
                e.line,
                e.from,
                e.to,
                ok.join(", ")
            )),
            Some(_) => {}
        }
    }
    if let Some(cycle) = find_cycle(&all) {
        let mut msg = format!("import cycle: {}", cycle.join(" -> "));
        for pair in cycle.windows(2) {
            if let Some(e) = all.iter().find(|e| e.from == pair[0] && e.to == pair[1]) {
                msg.push_str(&format!(
                    "\n  {}:{}: {} -> {}",
                    e.file, e.line, e.from, e.to
                ));
            }
        }
        errors.push(msg);
    }
    errors
}

/// A cycle in the graph of `edges` as a path that returns to its start, if any.
fn find_cycle(edges: &[Edge]) -> Option<Vec<String>> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in edges {
        graph.entry(&e.from).or_default().insert(&e.to);
    }
    fn visit<'a>(
        node: &'a str,
        graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        done: &mut BTreeSet<&'a str>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, done, path) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, &graph, &mut done, &mut Vec::new()))
}

/// Every `.rs` file under `dir`, as (path relative to `root`, contents).
fn read_tree(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry of src/").path();
        if path.is_dir() {
            read_tree(root, &path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            let rel = path
                .strip_prefix(root)
                .expect("invariant: walked from root")
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            out.push((rel, text));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> Vec<(String, String)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        read_tree(&root, &root, &mut files);
        // This file's tests hold forbidden imports as strings, on purpose.
        files.retain(|(rel, _)| rel != "layering.rs");
        files
    }

    fn one(path: &str, text: &str) -> Vec<(String, String)> {
        vec![(path.to_owned(), text.to_owned())]
    }

    #[test]
    fn the_module_graph_follows_the_allowed_imports_table() {
        let files = src();
        assert!(files.len() > 50, "src/ was not read: {} files", files.len());
        let errors = check(&files, ALLOWED);
        assert!(errors.is_empty(), "{}", errors.join("\n"));
    }

    #[test]
    fn the_allowed_table_is_a_dag() {
        let mut seen = BTreeSet::new();
        for (module, deps) in ALLOWED {
            for d in *deps {
                assert!(
                    seen.contains(d),
                    "`{module}` may import `{d}`, which is not listed above it"
                );
            }
            seen.insert(*module);
        }
    }

    #[test]
    fn each_removed_back_edge_fails_with_its_file_and_line() {
        let cases = [
            (
                "providers/http.rs",
                "fn client() {\n    crate::cli::install_crypto_provider();\n}\n",
                "src/providers/http.rs:2: `providers` may not import `cli`",
            ),
            (
                "suite/runner.rs",
                "use std::sync::Arc;\n\npub fn p() { crate::cli::run::build_providers(); }\n",
                "src/suite/runner.rs:3: `suite` may not import `cli`",
            ),
            (
                "expr/condition.rs",
                "use super::VarRef;\nuse crate::engine::Clock;\n",
                "src/expr/condition.rs:2: `expr` may not import `engine`",
            ),
            (
                "providers/mod.rs",
                "pub struct RunClock(pub Arc<dyn crate::engine::Clock>);\n",
                "src/providers/mod.rs:1: `providers` may not import `engine`",
            ),
        ];
        for (path, text, want) in cases {
            let errors = check(&one(path, text), ALLOWED);
            assert!(
                errors.iter().any(|e| e.starts_with(want)),
                "{path}: {errors:?}"
            );
        }
    }

    #[test]
    fn a_cycle_is_reported_with_the_imports_that_close_it() {
        let files = vec![
            ("a/mod.rs".to_owned(), "use crate::b::X;\n".to_owned()),
            (
                "b.rs".to_owned(),
                "\nuse crate::{\n    a::Y,\n    c,\n};\n".to_owned(),
            ),
        ];
        let permissive: &[(&str, &[&str])] = &[("a", &["b"]), ("b", &["a", "c"])];
        let errors = check(&files, permissive);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("import cycle: a -> b -> a"),
            "{}",
            errors[0]
        );
        assert!(
            errors[0].contains("src/a/mod.rs:1: a -> b"),
            "{}",
            errors[0]
        );
        assert!(errors[0].contains("src/b.rs:2: b -> a"), "{}", errors[0]);
    }

    #[test]
    fn grouped_and_nested_imports_are_read_and_comments_are_not() {
        let text = "use crate::{clock::Clock, journal::{event, writer}};\n/// see [`x`](crate::cli::main)\nlet y = $crate::engine::x;\n";
        let refs: Vec<String> = references(text).into_iter().map(|(_, m)| m).collect();
        assert_eq!(refs, ["clock", "journal"]);
    }
}
