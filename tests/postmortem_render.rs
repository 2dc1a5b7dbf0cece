//! The postmortem renderer on hand-written journals of the seed incident: snapshots
//! of what a reader gets, and structural checks with a real markdown parser.

use std::path::PathBuf;

use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};
use runbook::journal::reader::{self, Journal};
use runbook::render::{self, RenderOpts};

fn fixture(name: &str) -> Journal {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/journals")
        .join(format!("{name}.ndjson"));
    reader::read(&path).expect("fixture journal reads")
}

fn render_in(name: &str, tz: chrono_tz::Tz) -> String {
    let opts = RenderOpts {
        tz,
        ..RenderOpts::default()
    };
    render::render(&fixture(name), &opts).expect("fixture renders")
}

fn render_utc(name: &str) -> String {
    render_in(name, chrono_tz::UTC)
}

/// What the markdown parser sees: headings (level, text), tables (rows, columns),
/// `<details>` blocks opened and closed, raw HTML that is not ours.
#[derive(Debug, Default)]
struct Structure {
    headings: Vec<(HeadingLevel, String)>,
    tables: Vec<(usize, usize)>,
    details_open: usize,
    details_close: usize,
    foreign_html: Vec<String>,
    code_blocks: usize,
}

fn structure(md: &str) -> Structure {
    let opts = pulldown_cmark::Options::ENABLE_TABLES;
    let mut s = Structure::default();
    let mut heading: Option<(HeadingLevel, String)> = None;
    let mut rows = 0;
    let mut cols = 0;
    for event in Parser::new_ext(md, opts) {
        match event {
            Event::Start(Tag::Heading { level, .. }) => heading = Some((level, String::new())),
            Event::End(TagEnd::Heading(_)) => s.headings.extend(heading.take()),
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, h)) = &mut heading {
                    h.push_str(&t);
                }
            }
            Event::Start(Tag::Table(aligns)) => {
                rows = 0;
                cols = aligns.len();
            }
            Event::Start(Tag::TableRow) | Event::Start(Tag::TableHead) => rows += 1,
            Event::End(TagEnd::Table) => s.tables.push((rows, cols)),
            Event::Start(Tag::CodeBlock(_)) => s.code_blocks += 1,
            Event::Html(h) | Event::InlineHtml(h) => {
                for part in h.split_inclusive('>') {
                    let p = part.trim();
                    if p.is_empty() || p.starts_with("<!--") || p.ends_with("-->") {
                        continue;
                    }
                    if p == "<details>" {
                        s.details_open += 1;
                    } else if p == "</details>" {
                        s.details_close += 1;
                    } else if p == "<summary>" || p.ends_with("</summary>") || p == "<br>" {
                    } else {
                        s.foreign_html.push(p.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    s
}

fn h2(s: &Structure) -> Vec<String> {
    s.headings
        .iter()
        .filter(|(l, _)| *l == HeadingLevel::H2)
        .map(|(_, t)| t.clone())
        .collect()
}

#[test]
fn clean_run_snapshot() {
    insta::assert_snapshot!("clean", render_utc("clean"));
}

#[test]
fn escalated_run_snapshot() {
    insta::assert_snapshot!("escalated", render_utc("escalated"));
}

#[test]
fn clean_run_has_the_shape_of_an_incident_report() {
    let md = render_utc("clean");
    let s = structure(&md);
    assert_eq!(
        s.headings.first().map(|(l, t)| (*l, t.as_str())),
        Some((
            HeadingLevel::H1,
            "2018-03-13, The hub cannot start because its database volume is held by a pod on a lost node"
        ))
    );
    assert_eq!(
        h2(&s),
        [
            "Questions for follow up",
            "Summary",
            "Facts",
            "Timeline",
            "Steps",
            "Approvals",
            "Lessons learnt",
            "Action items",
            "Supporting information"
        ]
    );
    // Facts (2 columns), steps (5), approvals (7).
    let cols: Vec<usize> = s.tables.iter().map(|t| t.1).collect();
    assert_eq!(cols, [2, 5, 7]);
    assert_eq!(s.details_open, s.details_close);
    assert!(s.details_open > 0);
    assert!(s.foreign_html.is_empty(), "{:?}", s.foreign_html);
}
