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
