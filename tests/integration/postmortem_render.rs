//! The postmortem renderer on hand-written journals of the seed incident: snapshots
//! of what a reader gets, and structural checks with a real markdown parser.

use std::path::PathBuf;

use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};
use runbook::journal::reader::{self, Journal};
use runbook::render::{self, Details, RenderOpts};

fn fixture(name: &str) -> Journal {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/journals")
        .join(format!("{name}.ndjson"));
    reader::read(&path).expect("fixture journal reads")
}

fn render_in(name: &str, tz: chrono_tz::Tz, details: Details) -> String {
    let opts = RenderOpts {
        tz,
        details,
        ..RenderOpts::default()
    };
    render::render(&fixture(name), &opts).expect("fixture renders")
}

/// The default document (`--details summary`).
fn render_utc(name: &str) -> String {
    render_in(name, chrono_tz::UTC, Details::Summary)
}

/// `--details full`: every result whole, the timeline entry by entry.
fn render_full(name: &str) -> String {
    render_in(name, chrono_tz::UTC, Details::Full)
}

fn full() -> RenderOpts {
    RenderOpts {
        details: Details::Full,
        ..RenderOpts::default()
    }
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
fn escalated_run_full_snapshot() {
    insta::assert_snapshot!("escalated_full", render_full("escalated"));
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
    assert_eq!(h2(&s), SECTIONS);
    // Overview and facts (2 columns), the timeline (3), kubectl-style tables of what
    // the checks saw, approvals (7), action items (5), API calls (2).
    let cols: Vec<usize> = s.tables.iter().map(|t| t.1).collect();
    assert_eq!(cols[..3], [2, 2, 3], "{cols:?}");
    assert_eq!(cols[cols.len() - 3..], [7, 5, 2], "{cols:?}");
    // Summaries, not dumps: nothing folded, no JSON.
    assert_eq!(s.details_open, 0);
    assert!(!md.contains("\"apiVersion\""), "{md}");
    assert!(s.foreign_html.is_empty(), "{:?}", s.foreign_html);
    let full = structure(&render_full("clean"));
    assert_eq!(h2(&full), SECTIONS);
    assert_eq!(full.details_open, full.details_close);
    assert!(full.details_open > 0);
}

const SECTIONS: [&str; 10] = [
    "Summary",
    "Detection",
    "Resolution",
    "Facts",
    "Timeline",
    "Steps",
    "Approvals",
    "Lessons learnt",
    "Action items",
    "Supporting information",
];

#[test]
fn failed_run_snapshot() {
    insta::assert_snapshot!("failed", render_utc("failed"));
}

#[test]
fn aborted_run_snapshot() {
    insta::assert_snapshot!("aborted", render_utc("aborted"));
}

#[test]
fn paused_run_snapshot() {
    insta::assert_snapshot!("paused", render_utc("paused"));
}

#[test]
fn run_with_notes_snapshot() {
    insta::assert_snapshot!("notes", render_utc("notes"));
}

#[test]
fn every_fixture_renders_to_well_formed_markdown() {
    for (name, details) in ["clean", "escalated", "failed", "aborted", "paused", "notes"]
        .into_iter()
        .flat_map(|n| {
            [
                (n, Details::Summary),
                (n, Details::Full),
                (n, Details::None),
            ]
        })
    {
        let md = render_in(name, chrono_tz::UTC, details);
        let s = structure(&md);
        assert_eq!(
            s.details_open, s.details_close,
            "{name}: unbalanced <details>"
        );
        assert!(s.foreign_html.is_empty(), "{name}: {:?}", s.foreign_html);
        assert_eq!(h2(&s), SECTIONS, "{name}");
        assert!(
            s.tables.iter().all(|(rows, _)| *rows > 1),
            "{name}: a table without rows: {:?}",
            s.tables
        );
        // Same journal, same bytes.
        assert_eq!(
            md,
            render_in(name, chrono_tz::UTC, details),
            "{name}: rendering is not deterministic"
        );
    }
}

const HOSTILE: &str = "</details><script>alert(1)</script>\n```\n# not a heading\n| a | b |\n<!-- runbook:end -->\n````` `x` <!-- runbook:human id=summary -->\n<details><summary>fake</summary>";

/// The clean run with hostile text wherever a command, a person or the cluster
/// supplies text: results, errors, summaries, titles, notes, parameters.
fn hostile_journal() -> Journal {
    use runbook::journal::event::{Event, Outcome};
    let mut j = fixture("clean");
    for rec in &mut j.records {
        match &mut rec.event {
            Event::RunStarted {
                params, operator, ..
            } => {
                params.insert("evil".into(), serde_json::Value::String(HOSTILE.into()));
                *operator = HOSTILE.into();
            }
            Event::StepStarted { title, .. } => *title = format!("{title} {HOSTILE}"),
            Event::OpStarted { op, .. } => op.display = format!("{} {HOSTILE}", op.display),
            Event::OpFinished {
                result,
                error,
                outcome,
                ..
            } => {
                *result = Some(serde_json::json!({ "stdout": HOSTILE, "stderr": HOSTILE }));
                *error = Some(HOSTILE.into());
                *outcome = Outcome::Failed;
            }
            Event::VerifyPolled { detail, .. } => *detail = Some(HOSTILE.into()),
            Event::StepFinished { summary, .. } => *summary = HOSTILE.into(),
            Event::GateDecided { by, .. } => *by = HOSTILE.into(),
            _ => {}
        }
    }
    let ts = j
        .records
        .last()
        .map(|r| r.ts)
        .expect("the fixture has records");
    let seq = j.records.len() as u64 + 1;
    j.records.push(runbook::journal::event::Record {
        seq,
        ts,
        event: Event::Note {
            text: HOSTILE.into(),
            by: HOSTILE.into(),
            at: None,
        },
    });
    j
}

#[test]
fn hostile_output_cannot_break_the_document() {
    for details in [Details::Summary, Details::None] {
        let clean = structure(&render_in("clean", chrono_tz::UTC, details));
        let opts = RenderOpts {
            details,
            ..RenderOpts::default()
        };
        let md = render::render(&hostile_journal(), &opts).expect("renders");
        let s = structure(&md);
        assert!(s.foreign_html.is_empty(), "{:?}", s.foreign_html);
        assert_eq!(s.details_open, s.details_close);
        assert_eq!(h2(&s), h2(&clean));
        assert_eq!(
            s.headings.len(),
            clean.headings.len(),
            "no heading of its own"
        );
        assert!(!s.headings.iter().any(|(_, t)| t == "not a heading"));
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pm.md");
        render::write_preserving(&file, &md).expect("first write");
        render::write_preserving(&file, &md).expect("re-render over hostile output");
        assert_eq!(std::fs::read_to_string(&file).expect("read"), md);
    }
    let clean = structure(&render_full("clean"));
    let md = render::render(&hostile_journal(), &full()).expect("renders");
    let s = structure(&md);
    assert!(
        s.foreign_html.is_empty(),
        "HTML got through: {:?}",
        s.foreign_html
    );
    assert_eq!(s.details_open, s.details_close);
    // Same sections and the same tables as the clean run: nothing opened a heading,
    // a table or a code block of its own.
    assert_eq!(h2(&s), h2(&clean));
    let levels = |st: &Structure| st.headings.iter().map(|(l, _)| *l).collect::<Vec<_>>();
    assert_eq!(
        levels(&s).len(),
        levels(&clean).len() + 1,
        "only the note's entry heading is new"
    );
    assert_eq!(
        s.tables.iter().map(|t| t.1).collect::<Vec<_>>(),
        clean.tables.iter().map(|t| t.1).collect::<Vec<_>>()
    );
    assert!(!s.headings.iter().any(|(_, t)| t == "not a heading"));
    // Markers in the output are not taken for ours: re-rendering over the file works
    // and changes nothing.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pm.md");
    render::write_preserving(&file, &md).expect("first write");
    render::write_preserving(&file, &md).expect("re-render over hostile output");
    assert_eq!(std::fs::read_to_string(&file).expect("read"), md);
    // And the output is shown, verbatim, inside fenced blocks.
    let fenced: String = Parser::new(&md)
        .filter_map(|e| match e {
            Event::Text(t) => Some(t.into_string()),
            _ => None,
        })
        .collect();
    assert!(
        fenced.contains(HOSTILE),
        "the hostile text is not shown verbatim"
    );
}

#[test]
fn secret_parameters_stay_redacted() {
    let md = render_utc("paused");
    assert!(md.contains("`pagerduty_token` = `***` (secret)"), "{md}");
    let journal = fixture("paused");
    let pm = render::model(&journal, chrono_tz::UTC);
    let secret = pm
        .params
        .iter()
        .find(|p| p.name == "pagerduty_token")
        .expect("param");
    assert!(secret.secret);
    assert_eq!(secret.value, "***");
}

#[test]
fn times_follow_the_chosen_zone_and_days_split_at_its_midnight() {
    // The escalated run crosses midnight UTC (23:58 → 00:01) but not in Berlin (00:58 → 01:01).
    let utc = render_full("escalated");
    assert!(utc.contains("All times in UTC."));
    assert!(
        utc.contains("### 2018-03-20 (Tuesday, UTC)")
            && utc.contains("### 2018-03-21 (Wednesday, UTC)")
    );
    let berlin = render_in("escalated", chrono_tz::Europe::Berlin, Details::Full);
    assert!(berlin.contains("All times in Europe/Berlin."));
    assert!(!berlin.contains("### 2018-03-20"));
    assert!(berlin.contains("### 2018-03-21 (Wednesday, Europe/Berlin)"));
    assert!(berlin.contains("#### 00:58:40 · Run started"), "{berlin}");
    assert!(
        berlin.contains("from 2018-03-21 00:58:40 CET |"),
        "{berlin}"
    );
    let summary = render_in("escalated", chrono_tz::Europe::Berlin, Details::Summary);
    assert!(summary.contains("| 2018-03-21 (Wednesday, Europe/Berlin) | Event | What happened |"));
    assert!(summary.contains("| 00:58:40 | Run started"), "{summary}");
}

#[test]
fn escalations_are_shown_as_such() {
    let md = render_full("escalated");
    assert!(md.contains(
        "- Delete the hub pods (gentlest; often not enough) did not work (the hub pod was not Running and Ready within 1m); escalated to rung 2 of 5: Force-delete every pod stuck on a lost node"
    ));
    assert!(md.contains("- Fixed by rung 2 of 5: Force-delete every pod stuck on a lost node"));
}

#[test]
fn gantt_chart_has_a_bar_per_step_and_rung() {
    let pm = render::model(&fixture("escalated"), chrono_tz::UTC);
    let bars = pm.gantt.lines().filter(|l| l.contains(", t")).count();
    // The 6 checks as one bar + cordon + 2 rungs + the verify step.
    assert_eq!(bars, 5, "{}", pm.gantt);
    assert!(pm.gantt.contains("    6 checks :done, t1,"), "{}", pm.gantt);
    assert!(pm.gantt.contains("section Escalation of free-hub-volume"));
}

#[test]
fn a_template_error_names_the_file_and_line() {
    let opts = RenderOpts {
        template: Some("# {{run.id}}\n\n{{run.no_such_field}}\n".into()),
        template_name: Some("team.hbs".into()),
        ..RenderOpts::default()
    };
    let err = render::render(&fixture("clean"), &opts)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("team.hbs:3:"), "{err}");
    assert!(err.contains("no_such_field"), "{err}");
    let opts = RenderOpts {
        template: Some("ok\n{{#each steps}}\n".into()),
        template_name: Some("broken.hbs".into()),
        ..RenderOpts::default()
    };
    let err = render::render(&fixture("clean"), &opts)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("broken.hbs:"), "{err}");
}

#[test]
fn a_custom_template_sees_the_model() {
    let opts = RenderOpts {
        template: Some(
            "{{run.id}} {{run.status}} {{metrics.time_to_mitigate.after}}\n{{#each steps}}{{code id}} {{/each}}\n".into(),
        ),
        ..RenderOpts::default()
    };
    let md = render::render(&fixture("escalated"), &opts).expect("renders");
    assert_eq!(
        md,
        "20180320T235840Z-hub-pvc-locked-c91e succeeded 2m 45s\n`launch-rate` `lost-pods` `bad-nodes` `multi-attach` `hub-claim` `hub-attachment` `cordon` `free-hub-volume` `launches-recovered`\n"
    );
}

#[test]
fn a_custom_template_reads_the_timeline_as_data_or_one_entry_at_a_time() {
    // An older custom template walks `timeline` as data; the default template's
    // helpers hand it over one entry at a time. Both see the same entries.
    let as_data = RenderOpts {
        template: Some(
            "{{#each timeline}}{{date}}:{{#each entries}} {{label}} {{title}} @{{@index}}{{#if @last}}.{{/if}}{{/each}}\n{{/each}}".into(),
        ),
        ..RenderOpts::default()
    };
    let by_helpers = RenderOpts {
        template: Some(
            "{{#each_day}}{{date}}:{{#each_entry}} {{label}} {{title}} @{{@index}}{{#if @last}}.{{/if}}{{/each_entry}}\n{{/each_day}}".into(),
        ),
        ..RenderOpts::default()
    };
    let journal = fixture("escalated");
    let md = render::render(&journal, &as_data).expect("renders");
    assert!(md.contains(" Force-delete"), "{md}");
    assert!(md.trim_end().ends_with('.'), "{md}");
    assert_eq!(render::render(&journal, &by_helpers).expect("renders"), md);
    // Helpers and data side by side, and the steps table both ways.
    let steps = RenderOpts {
        template: Some(
            "{{#each steps}}{{id}} {{/each}}|{{#each_step}}{{id}} {{/each_step}}|{{len timeline}}"
                .into(),
        ),
        ..RenderOpts::default()
    };
    let md = render::render(&journal, &steps).expect("renders");
    let (data, rest) = md.split_once('|').expect("two lists");
    assert!(data.starts_with("launch-rate lost-pods"), "{md}");
    assert!(rest.starts_with(data), "{md}");
}

#[test]
fn a_journal_cut_mid_run_renders_what_it_has_and_says_so() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journals/escalated.ndjson");
    let text = std::fs::read_to_string(path).expect("fixture");
    // Killed while force-deleting: keep everything up to the first force delete's
    // op_started, plus half of the next line (a torn write).
    let cut = text
        .find("\"event\":\"op_finished\",\"scope\":{\"step\":\"free-hub-volume\",\"rung\":\"force-delete-lost-pods\"")
        .expect("the fixture force-deletes");
    let line_start = text[..cut].rfind('\n').expect("a line before") + 1;
    let torn = &text[..line_start + 40];
    let journal = reader::parse(torn.as_bytes()).expect("a torn tail is not fatal");
    assert!(journal.torn_tail);
    let md = render::render(&journal, &full()).expect("renders");
    let s = structure(&md);
    assert_eq!(s.details_open, s.details_close);
    assert!(md.contains("> **Warning:** The journal's last line was incomplete"));
    assert!(md.contains("> **Warning:** The run has not finished"));
    assert!(md.contains("| Status | **Unfinished (the journal has no end)** |"));
    assert!(md.contains(
        "- Ran `kubectl delete pod hub-65d9f46698-dj4jb --grace-period=0 --force -n prod`: **NO RESULT (the run stopped before it finished)**"
    ));
}

#[test]
fn skipped_steps_and_a_run_that_did_not_apply_are_shown() {
    use runbook::journal::event::{Event, Outcome, Record, RunStatus};
    let mut j = fixture("clean");
    // Keep the run start and the first check, then: the check finds nothing to do.
    j.records.truncate(2);
    let ts = j.records[1].ts;
    let events = [
        Event::StepFinished {
            step: "launch-rate".into(),
            outcome: Outcome::NotApplicable,
            duration_ms: 90,
            summary: "launch success rate is 0.97: nothing to fix".into(),
            fixed_by: None,
        },
        Event::StepSkipped {
            step: "cordon".into(),
            reason: "the checks found nothing to fix".into(),
        },
        Event::RunFinished {
            status: RunStatus::NotApplicable,
            duration_ms: 120,
            reason: Some("launch-rate: the expectation did not hold".into()),
        },
    ];
    for event in events {
        let seq = j.records.len() as u64 + 1;
        j.records.push(Record { seq, ts, event });
    }
    let md = render::render(&j, &full()).expect("renders");
    assert!(
        md.contains("- Step `launch-rate`: **NOT APPLICABLE** after 90 ms"),
        "{md}"
    );
    assert!(md.contains("#### 06:28:00 · Skipped: cordon"));
    assert!(md.contains("- Skipped: the checks found nothing to fix"));
    assert!(
        md.contains("| Status | **Not applicable**: launch-rate: the expectation did not hold |")
    );
    assert!(md.contains("| Time to detect | unknown |"), "{md}");
    assert!(md.contains("The run ended as not applicable: the checks found nothing to fix"));
}

/// The tags of an SVG document, checked to nest and close (a small XML reader: the
/// chart has no text that needs more) and its attributes read back: (name,
/// attributes, text up to the next tag).
/// An SVG element: its name, its attributes in order, the text after its tag.
type Element = (String, Vec<(String, String)>, String);

pub(crate) fn svg_elements(svg: &str) -> Vec<Element> {
    let mut out = Vec::new();
    let mut open: Vec<String> = Vec::new();
    let mut rest = svg.trim();
    assert!(rest.starts_with("<svg "), "an SVG document: {svg}");
    while let Some(lt) = rest.find('<') {
        assert!(
            rest[..lt].trim().is_empty() || !open.is_empty(),
            "text outside the root"
        );
        let gt = rest[lt..].find('>').expect("every tag closes") + lt;
        let tag = &rest[lt + 1..gt];
        let after = &rest[gt + 1..];
        let text = after[..after.find('<').unwrap_or(after.len())].to_owned();
        assert!(
            !text.contains('&') || text.contains(';'),
            "entities in {text:?}"
        );
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop().as_deref(), Some(name), "tags nest");
        } else {
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let (name, mut attrs_text) = tag.split_once(' ').unwrap_or((tag, ""));
            let mut attrs = Vec::new();
            while let Some(eq) = attrs_text.find("=\"") {
                let key = attrs_text[..eq].trim().to_owned();
                let value_end = attrs_text[eq + 2..].find('"').expect("quoted") + eq + 2;
                let value = attrs_text[eq + 2..value_end].to_owned();
                assert!(!value.contains('<'), "attribute values are escaped");
                attrs.push((key, value));
                attrs_text = &attrs_text[value_end + 1..];
            }
            assert!(
                attrs_text.trim().is_empty(),
                "attributes are key=\"value\": {tag}"
            );
            if !self_closing {
                open.push(name.to_owned());
            }
            out.push((name.to_owned(), attrs, text));
        }
        rest = after;
    }
    assert!(open.is_empty(), "unclosed {open:?}");
    out
}

fn attr<'a>(attrs: &'a [(String, String)], key: &str) -> &'a str {
    attrs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {attrs:?}"))
}

/// Checks an impact chart: accessible (title, desc), and every marker line at the x
/// its time gives on the chart's time axis. Returns the markers' (kind, time).
pub(crate) fn check_chart(svg: &str) -> Vec<(String, chrono::DateTime<chrono::Utc>)> {
    let els = svg_elements(svg);
    let root = &els[0].1;
    assert_eq!(attr(root, "role"), "img");
    assert_eq!(attr(root, "aria-labelledby"), "chart-title chart-desc");
    let title = els.iter().find(|e| e.0 == "title").expect("a title");
    assert!(!title.2.trim().is_empty());
    let desc = els.iter().find(|e| e.0 == "desc").expect("a desc");
    assert!(!desc.2.trim().is_empty());
    let t = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().expect("a time");
    let (t0, t1) = (t(attr(root, "data-from")), t(attr(root, "data-to")));
    let left: f64 = attr(root, "data-plot-left").parse().unwrap();
    let width: f64 = attr(root, "data-plot-width").parse().unwrap();
    let span = (t1 - t0).num_milliseconds() as f64;
    let mut markers = Vec::new();
    for (name, attrs, _) in &els {
        if name == "line" && attr(attrs, "class") == "marker" {
            let at = t(attr(attrs, "data-at"));
            let x: f64 = attr(attrs, "x1").parse().unwrap();
            let want = left + (at - t0).num_milliseconds() as f64 / span * width;
            assert!(
                (x - want).abs() < 0.06,
                "{} at {at}: x {x}, want {want}",
                attr(attrs, "data-kind")
            );
            assert!(x >= left && x <= left + width, "inside the plot");
            markers.push((attr(attrs, "data-kind").to_owned(), at));
            // The marker is named in the description too.
        }
    }
    let words = desc.2.to_lowercase();
    for (kind, _) in &markers {
        let word = match kind.as_str() {
            "impact-start" => "impact start",
            "first-action" => "first action",
            "verification" => "verif",
            "end" => "",
            k => k,
        };
        assert!(words.contains(word), "the desc names {kind}: {words}");
    }
    markers
}

/// Issue 17: with a file to write it beside, a run that asked Prometheus gets a chart
/// of that metric instead of the gantt chart, with each milestone marked where it
/// happened; the same journal gives the same bytes.
#[test]
fn a_prometheus_run_gets_an_impact_chart_with_its_milestones_marked() {
    let opts = RenderOpts {
        chart_file: Some("pm (draft).impact.svg".into()),
        incident_start: Some("2018-03-20T22:00:00Z".parse().unwrap()),
        ..RenderOpts::default()
    };
    let journal = fixture("escalated");
    let (md, svg) = render::render_with_chart(&journal, &opts).expect("renders");
    let svg = svg.expect("a chart");
    assert!(
        md.contains("![launch_success_rate over the incident, with its milestones marked](pm%20%28draft%29.impact.svg)"),
        "{md}"
    );
    assert!(
        !md.contains("```mermaid"),
        "the chart replaces the gantt chart"
    );
    let markers = check_chart(&svg);
    // Every action and verification is marked too (src/render/chart.rs checks
    // their times); the milestones, in order:
    assert!(markers.iter().any(|(k, _)| k == "action"), "{svg}");
    assert!(markers.iter().any(|(k, _)| k == "verification"), "{svg}");
    let kinds: Vec<&str> = markers
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !matches!(*k, "action" | "verification"))
        .collect();
    assert_eq!(
        kinds,
        [
            "impact-start",
            "detected",
            "first-action",
            "escalated",
            "mitigated",
            "end"
        ],
        "{svg}"
    );
    assert!(
        markers.windows(2).all(|w| w[0].1 <= w[1].1),
        "in time order"
    );
    assert_eq!(markers[0].1, opts.incident_start.unwrap());
    assert!(svg.matches("<circle class=\"point\"").count() >= 2, "{svg}");
    assert!(
        svg.contains("<rect class=\"impact\""),
        "the impact window is shaded"
    );
    let (again, svg_again) = render::render_with_chart(&journal, &opts).expect("renders");
    assert_eq!((md, Some(svg)), (again, svg_again), "deterministic");

    // Without a file beside it (stdout), the gantt chart stays and nothing is drawn.
    let (md, svg) = render::render_with_chart(&journal, &RenderOpts::default()).expect("renders");
    assert!(svg.is_none());
    assert!(md.contains("```mermaid"));
    // A run that asked Prometheus nothing has no chart either.
    let mut j = fixture("escalated");
    j.records.retain(|r| {
        !matches!(&r.event, runbook::journal::event::Event::OpStarted { op, .. } if op.provider == "prometheus")
    });
    let (md, svg) = render::render_with_chart(&j, &opts).expect("renders");
    assert!(svg.is_none());
    assert!(md.contains("```mermaid"));
}

/// The impact start a run journaled says where it came from (`runbook demo`: the
/// scenario); one without a source (earlier versions, `run --incident-start`)
/// renders as before, and `postmortem --incident-start` overrides both.
#[test]
fn the_impact_start_names_its_source() {
    use runbook::journal::event::{Event, Record};
    let at: chrono::DateTime<chrono::Utc> = "2018-03-20T22:00:00Z".parse().unwrap();
    let with = |source: Option<&str>| {
        let mut j = fixture("clean");
        let ts = j.records[0].ts;
        j.records.insert(
            1,
            Record {
                seq: 0,
                ts,
                event: Event::IncidentStart {
                    at,
                    by: "ana".into(),
                    source: source.map(str::to_owned),
                },
            },
        );
        for (i, r) in j.records.iter_mut().enumerate() {
            r.seq = i as u64 + 1;
        }
        j
    };
    let md = render::render(&with(Some("scenario")), &RenderOpts::default()).unwrap();
    assert!(
        md.contains("| Impact start | 2018-03-20 22:00:00 UTC (the lab scenario's first fault) |"),
        "{md}"
    );
    let md = render::render(&with(None), &RenderOpts::default()).unwrap();
    assert!(
        md.contains("| Impact start | 2018-03-20 22:00:00 UTC |"),
        "{md}"
    );
    let opts = RenderOpts {
        incident_start: Some("2018-03-20T21:00:00Z".parse().unwrap()),
        ..RenderOpts::default()
    };
    let md = render::render(&with(Some("scenario")), &opts).unwrap();
    assert!(
        md.contains("| Impact start | 2018-03-20 21:00:00 UTC |"),
        "{md}"
    );
    // Unknown: the hint names every way to give it.
    let md = render_utc("clean");
    assert!(md.contains("unknown (give it with `runbook run --incident-start TIME` or `runbook postmortem --incident-start TIME`"), "{md}");
}
