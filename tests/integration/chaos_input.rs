//! Robustness: hostile input never panics, and every error names the file (and the
//! line where the format has lines). Random bytes and mutations of the shipped files
//! are fed to `runbook lint`, test-file loading (and `runbook test`), scenario
//! loading, the journal reader, and `runbook postmortem` renders journals full of
//! hostile strings without letting them break the document.
//!
//! Deterministic: proptest runs with a fixed seed (`CHAOS_SEED=N` picks another) and
//! a failure prints the minimal input.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed, TestRng};
use pulldown_cmark::{Event as Md, HeadingLevel, Parser, Tag, TagEnd};
use runbook::journal::reader;
use runbook::lab::Lab;
use runbook::runbook::load;
use runbook::suite::spec;
use serde_json::{Value, json};

use crate::support::cli::{Cli, Output};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).expect("a shipped file")
}

fn bin(args: &[&str], state: &Path) -> Output {
    Cli::new().state_dir(state).args(args).run()
}

fn crashed(o: &Output) -> bool {
    o.status.code().is_none_or(|c| c == 70 || c == 101) || o.stderr.as_str().contains("panicked at")
}

/// Replace `delete` bytes at `at` (both moved to char boundaries) with `insert`.
fn mutate(text: &str, at: prop::sample::Index, delete: usize, insert: &str) -> String {
    let mut at = at.index(text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let mut end = (at + delete).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{}{}", &text[..at], insert, &text[end.max(at)..])
}

const JUNK: &[&str] = &[
    "",
    ":",
    "- ",
    "\n",
    "\t",
    "  ",
    "{",
    "}",
    "[",
    "]",
    "'",
    "\"",
    "&a ",
    "*a",
    "!!binary ",
    "? ",
    "|",
    ">-",
    "#",
    "%YAML 1.2\n---\n",
    "\u{0}",
    "\u{feff}",
    "é",
    "99999999999999999999",
    "-1",
    "null",
    "off",
    "{{",
    "}}",
    "version: 2\n",
    "steps:",
    "tests:",
    "objects:",
];

/// `path:LINE` with LINE >= 1 appears in `s`.
fn names_line(s: &str, path: &str) -> bool {
    s.match_indices(path).any(|(i, _)| {
        let rest = &s[i + path.len()..];
        rest.strip_prefix(':')
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n >= 1)
    })
}

/// Fixed seeds, so every run feeds the same inputs (`CHAOS_SEED=N` picks others);
/// a failure prints the minimal input it found.
fn small() -> Config {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    Config {
        cases: 24,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        ..Config::default()
    }
}

// ---- runbook lint, through the binary -------------------------------------------

fn lint_file(contents: &[u8]) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("hostile.yaml");
    std::fs::write(&file, contents).expect("writable temp dir");
    let out = bin(
        &["lint", file.to_str().expect("utf-8 temp path")],
        dir.path(),
    );
    assert!(!crashed(&out), "{}", out);
    match out.status.code() {
        Some(0) => {}
        Some(1 | 2) => {
            let all = format!("{}{}", out.stdout.as_str(), out.stderr.as_str());
            // A file that is not UTF-8 has no lines to point at: the file is named.
            let unreadable = all.contains("hostile.yaml: error: cannot read the file");
            assert!(
                unreadable || names_line(&all, "hostile.yaml"),
                "the error names the file and line: {}",
                out
            );
        }
        _ => panic!("unexpected exit: {}", out),
    }
}

proptest! {
    #![proptest_config(Config { cases: 12, ..small() })]

    #[test]
    fn lint_of_random_bytes_names_the_file_and_line(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        lint_file(&bytes);
    }

    #[test]
    fn lint_of_a_mutated_shipped_runbook_names_the_file_and_line(
        at in any::<prop::sample::Index>(),
        delete in 0usize..60,
        insert in prop::sample::select(JUNK),
    ) {
        let source = read("runbooks/hub-pvc-locked.yaml");
        lint_file(mutate(&source, at, delete, insert).as_bytes());
    }
}

// ---- test files ---------------------------------------------------------------------

fn load_test_file(contents: &str) {
    let rb = load(&repo("runbooks/hub-pvc-locked.yaml")).expect("the shipped runbook loads");
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("hostile.test.yaml");
    std::fs::write(&file, contents).expect("writable temp dir");
    if let Err(e) = spec::load(&file, &rb.runbook) {
        let shown = e.to_string();
        assert!(
            shown.starts_with(&file.display().to_string()),
            "the error names the file: {shown}"
        );
        assert!(
            e.line >= 1 || e.message.starts_with("cannot read"),
            "the error has a line: {shown}"
        );
    }
}

proptest! {
    #![proptest_config(small())]

    #[test]
    fn a_mutated_test_file_loads_or_names_file_and_line(
        at in any::<prop::sample::Index>(),
        delete in 0usize..60,
        insert in prop::sample::select(JUNK),
    ) {
        let source = read("runbooks/hub-pvc-locked.test.yaml");
        load_test_file(&mutate(&source, at, delete, insert));
    }

    #[test]
    fn random_text_as_a_test_file_names_file_and_line(bytes in prop::collection::vec(any::<u8>(), 1..300)) {
        load_test_file(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn runbook_test_with_hostile_test_files_fails_naming_the_file_and_line() {
    let cases: &[(&str, &str)] = &[
        ("empty", ""),
        ("binary", "\u{0}\u{1}\u{2}\u{7f}"),
        ("wrong version", "version: 7\ntests: []\n"),
        (
            "unknown step",
            "version: 1\ntests:\n  - name: x\n    scenario: hub-pvc-locked.scenario.yaml\n    expect: { status: succeeded, ran: [no-such-step] }\n",
        ),
        (
            "missing scenario",
            "version: 1\ntests:\n  - name: x\n    scenario: nowhere.yaml\n    expect: { status: succeeded }\n",
        ),
        ("tabs", "version: 1\ntests:\n\t- name: x\n"),
        (
            "a very long line",
            &format!("version: 1\ntests: [{}]\n", "x".repeat(100_000)),
        ),
    ];
    for (what, contents) in cases {
        let dir = tempfile::tempdir().expect("a temp dir");
        let rb = dir.path().join("hub-pvc-locked.yaml");
        std::fs::copy(repo("runbooks/hub-pvc-locked.yaml"), &rb).expect("copy the runbook");
        std::fs::copy(
            repo("runbooks/hub-pvc-locked.scenario.yaml"),
            dir.path().join("hub-pvc-locked.scenario.yaml"),
        )
        .expect("copy the scenario");
        std::fs::write(dir.path().join("hub-pvc-locked.test.yaml"), contents)
            .expect("writable temp dir");
        let out = bin(&["test", rb.to_str().expect("utf-8")], dir.path());
        assert!(!crashed(&out), "{what}: {}", out);
        // A broken test file fails the runbook's tests (exit 1, docs/testing.md).
        assert_eq!(out.status.code(), Some(1), "{what}: {}", out);
        let all = format!("{}{}", out.stdout.as_str(), out.stderr.as_str());
        assert!(
            names_line(&all, "hub-pvc-locked.test.yaml"),
            "{what}: names the test file and line: {}",
            out
        );
        assert!(
            all.len() < 20_000,
            "{what}: the error is not a wall of text"
        );
    }
}

// ---- lab scenarios ------------------------------------------------------------------

fn load_scenario(contents: &str) {
    if let Err(e) = Lab::from_scenario_str(contents) {
        assert!(e.line >= 1, "the error has a line: {e}");
        assert!(e.to_string().starts_with("<scenario>:"), "{e}");
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("hostile.scenario.yaml");
    std::fs::write(&file, contents).expect("writable temp dir");
    if let Err(e) = Lab::from_scenario_file(&file) {
        assert!(
            e.to_string().starts_with(&file.display().to_string()),
            "the error names the file: {e}"
        );
    }
}

proptest! {
    #![proptest_config(small())]

    #[test]
    fn a_mutated_scenario_loads_or_names_the_line(
        which in 0usize..3,
        at in any::<prop::sample::Index>(),
        delete in 0usize..80,
        insert in prop::sample::select(JUNK),
    ) {
        let name = ["hub-pvc-locked", "prometheus-node-lost", "ingress-on-cordoned-nodes"][which];
        let source = read(&format!("runbooks/{name}.scenario.yaml"));
        load_scenario(&mutate(&source, at, delete, insert));
    }

    #[test]
    fn random_text_as_a_scenario_names_the_line(bytes in prop::collection::vec(any::<u8>(), 1..300)) {
        load_scenario(&String::from_utf8_lossy(&bytes));
    }
}

// ---- the journal reader -------------------------------------------------------------

fn parse_journal(bytes: &[u8]) {
    let lines = bytes.split(|&b| b == b'\n').count();
    if let Err((line, message)) = reader::parse(bytes) {
        assert!(
            line >= 1 && line <= lines,
            "line {line} of {lines}: {message}"
        );
    }
}

proptest! {
    #![proptest_config(Config { cases: 200, ..small() })]

    #[test]
    fn random_bytes_as_a_journal_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        parse_journal(&bytes);
    }

    #[test]
    fn a_mutated_journal_parses_or_names_the_line(
        at in any::<prop::sample::Index>(),
        delete in 0usize..40,
        insert in prop::sample::select(&["", "\n", "{", "}", "\"", ",", "\u{0}", "null", "\"event\":\"x\"", "é", "\r\n", "1e999"][..]),
    ) {
        let source = read("tests/fixtures/journals/escalated.ndjson");
        parse_journal(mutate(&source, at, delete, insert).as_bytes());
    }
}

#[test]
fn a_corrupt_journal_line_is_an_error_naming_the_file_and_line() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("journal.ndjson");
    let source = read("tests/fixtures/journals/clean.ndjson");
    let mut lines: Vec<&str> = source.lines().collect();
    lines.insert(
        2,
        "{\"seq\": 3, \"ts\": \"not a time\", \"event\": \"note\"}",
    );
    std::fs::write(&file, lines.join("\n") + "\n").expect("writable temp dir");
    let e = reader::read(&file).expect_err("a corrupt middle line is an error");
    assert!(
        e.to_string()
            .starts_with(&format!("{}:3: corrupt journal line", file.display())),
        "{e}"
    );
    // And the binary says so instead of rendering half a run.
    let state = dir.path().join("state");
    let run = state.join("runs").join("20260101-000000-x-0000");
    std::fs::create_dir_all(&run).expect("a run dir");
    std::fs::copy(&file, run.join("journal.ndjson")).expect("copy");
    let out = bin(&["postmortem", "20260101-000000-x-0000"], &state);
    assert!(!crashed(&out), "{}", out);
    assert!(matches!(out.status.code(), Some(1 | 2)), "{}", out);
    assert!(out.stderr.as_str().contains("journal.ndjson:3"), "{}", out);
}

// ---- postmortem of a journal full of hostile strings --------------------------------

const HOSTILE: &[&str] = &[
    "<script>alert(1)</script>",
    "</details><h1>owned</h1>",
    "```\n## Injected heading\n```",
    "~~~~\n# Injected heading\n",
    "| a | b |\n|---|---|\n| c | d |",
    "[click](javascript:alert(1))",
    "<!-- runbook:human id=title -->",
    "line\r\nwith\rcarriage\u{0}nul\u{1b}[31mred\u{7}bell",
    "\u{202e}reversed\u{200b}zero-width",
    "# Injected heading",
];

/// A real journal with hostile strings in step titles, summaries, errors, results
/// and notes, plus a very long line.
fn hostile_journal(rng: &mut TestRng) -> String {
    let source = read("tests/fixtures/journals/escalated.ndjson");
    let mut out = String::new();
    let mut seq = 0;
    for line in source.lines() {
        let mut v: Value = serde_json::from_str(line).expect("a fixture line");
        let pick = |rng: &mut TestRng| HOSTILE[rng.next_u32() as usize % HOSTILE.len()].to_string();
        for key in ["title", "summary", "error", "reason", "text", "instruction"] {
            if v.get(key).is_some_and(Value::is_string) {
                v[key] = json!(format!(
                    "{} {}",
                    v[key].as_str().unwrap_or_default(),
                    pick(rng)
                ));
            }
        }
        if let Some(r) = v.get_mut("result").filter(|r| r.is_object()) {
            r["stdout"] = json!(pick(rng));
        }
        seq = v["seq"].as_u64().unwrap_or(seq + 1);
        out.push_str(&v.to_string());
        out.push('\n');
    }
    let ts = "2018-03-21T00:30:00Z";
    for (i, h) in HOSTILE.iter().enumerate() {
        let note = json!({"seq": seq + 1 + i as u64, "ts": ts, "event": "note", "text": h, "by": "<b>mallory</b>"});
        out.push_str(&note.to_string());
        out.push('\n');
    }
    let long = json!({"seq": seq + 1 + HOSTILE.len() as u64, "ts": ts, "event": "note",
        "text": format!("{}```{}", "A".repeat(150_000), "`".repeat(20)), "by": "ana"});
    out.push_str(&long.to_string());
    out.push('\n');
    out
}

fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&seed.to_le_bytes());
    b
}

/// The level-1/2 headings of a markdown document, as text.
fn headings(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for ev in Parser::new(md) {
        match ev {
            Md::Start(Tag::Heading {
                level: HeadingLevel::H1 | HeadingLevel::H2,
                ..
            }) => {
                current = Some(String::new());
            }
            Md::Text(t) | Md::Code(t) => {
                if let Some(c) = current.as_mut() {
                    c.push_str(&t);
                }
            }
            Md::End(TagEnd::Heading(_)) => {
                if let Some(c) = current.take() {
                    out.push(c);
                }
            }
            _ => {}
        }
    }
    out
}

/// Raw HTML the markdown would pass through to a viewer, other than the renderer's
/// own: its comments, `<details>` blocks and `<br>` line breaks in table cells.
fn raw_html(md: &str) -> Vec<String> {
    html(md)
        .into_iter()
        .filter(|h| {
            let t = h.trim();
            !(t.starts_with("<!--")
                || t.starts_with("<details")
                || t.starts_with("</details")
                || t.starts_with("<summary")
                || t.starts_with("</summary")
                || t == "<br>"
                || t.is_empty())
        })
        .collect()
}

/// Every HTML node of a markdown document.
fn html(md: &str) -> Vec<String> {
    Parser::new(md)
        .filter_map(|ev| match ev {
            Md::Html(h) | Md::InlineHtml(h) => Some(h.to_string()),
            _ => None,
        })
        .collect()
}

/// The HTML comments without their content hashes: the renderer's region markers,
/// which hostile text must neither add nor break.
fn comments(md: &str) -> Vec<String> {
    html(md)
        .into_iter()
        .filter(|h| h.trim_start().starts_with("<!--"))
        .map(|h| {
            h.split_whitespace()
                .filter(|w| !w.starts_with("sha256="))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn a_postmortem_of_a_journal_full_of_hostile_strings_keeps_its_structure() {
    let clean = {
        let dir = tempfile::tempdir().expect("a temp dir");
        let run = dir.path().join("runs").join("20260101-000000-x-0000");
        std::fs::create_dir_all(&run).expect("a run dir");
        std::fs::copy(
            repo("tests/fixtures/journals/escalated.ndjson"),
            run.join("journal.ndjson"),
        )
        .expect("copy");
        let out = bin(&["postmortem", "20260101-000000-x-0000"], dir.path());
        assert_eq!(out.status.code(), Some(0), "{}", out);
        out.stdout
    };
    let expected_headings = headings(&clean);
    assert!(expected_headings.iter().any(|h| h.contains("Timeline")));

    let base: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    for seed in base..base + 4 {
        let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(seed));
        let journal = hostile_journal(&mut rng);
        let dir = tempfile::tempdir().expect("a temp dir");
        let run = dir.path().join("runs").join("20260101-000000-x-0000");
        std::fs::create_dir_all(&run).expect("a run dir");
        std::fs::write(run.join("journal.ndjson"), &journal).expect("writable temp dir");
        let out = bin(&["postmortem", "20260101-000000-x-0000"], dir.path());
        let ctx = format!("seed {seed} (CHAOS_SEED={seed} reruns it)");
        assert!(!crashed(&out), "{ctx}: {}", out);
        assert_eq!(out.status.code(), Some(0), "{ctx}: {}", out);
        let md = out.stdout.as_str();
        assert_eq!(
            headings(md),
            expected_headings,
            "{ctx}: hostile text adds or removes no heading"
        );
        assert_eq!(
            raw_html(md),
            Vec::<String>::new(),
            "{ctx}: no HTML gets through"
        );
        assert_eq!(
            comments(md),
            comments(&clean),
            "{ctx}: no region marker is added or lost"
        );
        assert!(
            !md.chars().any(|c| c.is_control() && c != '\n' && c != '\t'),
            "{ctx}: no control characters reach the document"
        );
        assert!(md.contains("AAAA"), "{ctx}: the long note is kept");
        // The hostile notes are in the document, as text.
        assert!(
            md.contains("Injected heading"),
            "{ctx}: the notes are rendered"
        );
        assert!(
            md.contains("mallory"),
            "{ctx}: the notes' authors are rendered"
        );
    }
}

// ---- journals that parse but make no sense ------------------------------------------

/// Every record of the shipped fixture journals.
fn fixture_records() -> Vec<Value> {
    let mut out = Vec::new();
    for name in ["escalated", "failed", "paused", "aborted", "notes", "clean"] {
        for line in read(&format!("tests/fixtures/journals/{name}.ndjson")).lines() {
            out.push(serde_json::from_str(line).expect("a fixture line"));
        }
    }
    out
}

/// Records picked, reordered and retimed at will: every line is a valid event, the
/// whole is not a run that could have happened (duplicate or missing `run_started`,
/// steps that finish before they start, time going backwards, seq gaps).
fn nonsense_journal(picks: &[(prop::sample::Index, i64, u64)]) -> Vec<u8> {
    let records = fixture_records();
    let mut out = Vec::new();
    for (i, (pick, shift_secs, seq)) in picks.iter().enumerate() {
        let mut r = records[pick.index(records.len())].clone();
        let ts = chrono::DateTime::parse_from_rfc3339(r["ts"].as_str().unwrap_or_default())
            .map(|t| t.to_utc())
            .unwrap_or_default()
            + chrono::Duration::seconds(*shift_secs);
        r["ts"] = json!(ts.to_rfc3339());
        r["seq"] = json!(if i % 3 == 0 { *seq } else { i as u64 + 1 });
        out.extend_from_slice(r.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

proptest! {
    #![proptest_config(Config { cases: 24, ..small() })]

    #[test]
    fn a_journal_of_valid_events_in_any_order_renders_and_replays_without_panic(
        picks in prop::collection::vec(
            (any::<prop::sample::Index>(), -400_000i64..400_000, 0u64..50),
            0..40,
        ),
    ) {
        let bytes = nonsense_journal(&picks);
        let journal = reader::parse(&bytes).expect("every line is a valid event");
        let _ = runbook::journal::replay::replay(&journal.records);
        let md = runbook::render::render(&journal, &runbook::render::RenderOpts::default())
            .expect("the default template renders any journal");
        prop_assert!(md.contains("## Timeline"), "{}", md);
    }
}

#[test]
fn an_unreadable_scenario_or_test_file_is_named_without_a_made_up_line() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let scenario = dir.path().join("binary.scenario.yaml");
    std::fs::write(&scenario, [0xff, 0xfe, 0x00, 0x9f]).expect("writable temp dir");
    let Err(e) = Lab::from_scenario_file(&scenario) else {
        panic!("a scenario that is not UTF-8 loaded");
    };
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("{}: cannot read", scenario.display())),
        "the file is named, with no line 0: {shown}"
    );

    let rb = load(&repo("runbooks/hub-pvc-locked.yaml")).expect("the shipped runbook loads");
    let test_file = dir.path().join("binary.test.yaml");
    std::fs::write(&test_file, [0xff, 0xfe, 0x00, 0x9f]).expect("writable temp dir");
    let e = spec::load(&test_file, &rb.runbook).expect_err("not UTF-8");
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("{}: error: cannot read", test_file.display())),
        "the file is named, with no line 0: {shown}"
    );
}
