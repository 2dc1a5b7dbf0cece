//! Lint never panics, whatever it is fed: arbitrary bytes, YAML-ish text built from
//! runbook vocabulary, and mutations of the shipped runbooks.

use std::path::Path;

use proptest::prelude::*;
use runbook::runbook::{diag, parse_str};

fn lint(text: &str) {
    let path = Path::new("fuzz.yaml");
    if let Err(diags) = parse_str(text, path) {
        // Rendering walks the source by line and column: it must not panic either.
        let _ = diag::render(path, text, &diags);
    }
}

const WORDS: &[&str] = &[
    "version",
    "name",
    "title",
    "steps",
    "params",
    "handlers",
    "unattended",
    "check",
    "action",
    "verify",
    "manual",
    "id",
    "kube",
    "shell",
    "http",
    "prometheus",
    "get",
    "delete",
    "cordon",
    "taint",
    "wait",
    "for",
    "where",
    "for_each",
    "save",
    "expect",
    "when",
    "within",
    "every",
    "escalate",
    "gate",
    "on_failure",
    "argv",
    "url",
    "server",
    "query",
    "default",
    "1",
    "0",
    "-1",
    "true",
    "off",
    "5m",
    "x",
    "pods",
    "{{params.x}}",
    "{{item.a}}",
    "{{#if",
    "}}",
    "size(x) > 0",
    "&a",
    "*a",
    "<<",
    "!!str",
    "|",
    ">",
    "'",
    "\"",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "- ",
    "#",
    "\t",
    "é",
    "\\u0000",
    "~",
    "null",
    "?",
    "%YAML 1.2",
    "---",
    "...",
];

fn yamlish() -> impl Strategy<Value = String> {
    let token = prop::sample::select(WORDS);
    let sep = prop::sample::select(&[" ", ": ", "\n", "\n  ", "\n    - ", ", ", ""][..]);
    prop::collection::vec((token, sep), 0..80)
        .prop_map(|parts| parts.into_iter().map(|(t, s)| format!("{t}{s}")).collect())
}

fn shipped() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks");
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".yaml") && !name.ends_with(".scenario.yaml") {
            out.push(std::fs::read_to_string(p).unwrap());
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        lint(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn yamlish_text_never_panics(text in yamlish()) {
        lint(&text);
    }

    #[test]
    fn mutated_runbooks_never_panic(which in 0usize..3, cut in any::<prop::sample::Index>(), insert in prop::sample::select(WORDS), delete in 0usize..40) {
        let runbooks = shipped();
        let text = &runbooks[which % runbooks.len()];
        let mut at = cut.index(text.len() + 1);
        while !text.is_char_boundary(at) { at -= 1; }
        let mut end = (at + delete).min(text.len());
        while !text.is_char_boundary(end) { end -= 1; }
        let mutated = format!("{}{}{}", &text[..at], insert, &text[end.max(at)..]);
        lint(&mutated);
    }
}

fn exprish() -> impl Strategy<Value = String> {
    let token = prop::sample::select(
        &[
            "a",
            "b.c",
            "size(",
            ")",
            "(",
            "[",
            "]",
            "{",
            "}",
            "'",
            "\"",
            "==",
            "&&",
            "||",
            "!",
            ".exists(x,",
            "x",
            "1",
            "1.5",
            "-",
            "?",
            ":",
            "has(",
            "{{",
            "}}",
            "#if",
            "/if",
            "#each",
            "..",
            "@index",
            "this",
            "\\",
            "é",
            " ",
            ",",
            "in",
            "null",
            "true",
            "u",
            "b'",
            "r'",
            "0x",
            "9223372036854775807",
            "1e999",
        ][..],
    );
    prop::collection::vec(token, 0..30).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn conditions_and_templates_never_panic(text in exprish()) {
        let ctx = serde_json::json!({"a": 1, "b": {"c": [1, 2]}, "x": "s"});
        let _ = runbook::expr::condition_refs(&text);
        let _ = runbook::expr::eval(&text, &ctx);
        let _ = runbook::expr::template_refs(&text);
        let _ = runbook::expr::render(&text, &ctx);
    }

    #[test]
    fn arbitrary_strings_as_expressions_never_panic(text in "\\PC{0,60}") {
        let ctx = serde_json::json!({});
        let _ = runbook::expr::condition_refs(&text);
        let _ = runbook::expr::eval(&text, &ctx);
        let _ = runbook::expr::template_refs(&text);
        let _ = runbook::expr::render(&text, &ctx);
    }
}
