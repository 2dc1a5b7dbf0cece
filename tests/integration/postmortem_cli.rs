//! `runbook postmortem` through the real binary.

use std::path::{Path, PathBuf};

use crate::support::cli::Cli;

const RUN: &str = "20180320T235840Z-hub-pvc-locked-c91e";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/journals")
        .join(format!("{name}.ndjson"))
}

/// A state dir holding the given fixtures as runs.
fn state(runs: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (id, name) in runs {
        let run = dir.path().join("runs").join(id);
        std::fs::create_dir_all(&run).expect("run dir");
        std::fs::copy(fixture(name), run.join("journal.ndjson")).expect("copy journal");
    }
    dir
}

fn postmortem(state: &Path) -> Cli {
    Cli::new().env("RUNBOOK_STATE_DIR", state).arg("postmortem")
}

#[test]
fn prints_the_postmortem_of_a_run_to_stdout() {
    let st = state(&[(RUN, "escalated")]);
    postmortem(st.path())
        .arg(RUN)
        .run()
        .code(0)
        .stdout_starts_with("<!-- runbook:human id=title")
        .stdout_contains("## Timeline")
        .stdout_contains("All times in UTC.");
}

#[test]
fn accepts_a_unique_prefix_and_last() {
    let st = state(&[
        (RUN, "escalated"),
        ("20180313T062800Z-hub-pvc-locked-7f3a", "clean"),
    ]);
    postmortem(st.path())
        .arg("20180320")
        .run()
        .code(0)
        .stdout_contains(format!("| Run | `{RUN}` by "));
    // `last` is the run that started last, whatever the folder names say.
    postmortem(st.path())
        .arg("last")
        .run()
        .code(0)
        .stdout_contains(format!("| Run | `{RUN}` by "));
    postmortem(st.path())
        .arg("2018")
        .run()
        .code(2)
        .stderr_contains("matches several runs");
}

#[test]
fn a_missing_run_names_where_it_looked() {
    let st = state(&[(RUN, "escalated")]);
    postmortem(st.path())
        .arg("nope")
        .run()
        .code(2)
        .stdout_is("")
        .stderr_contains("no run \"nope\"")
        .stderr_contains(st.path().join("runs").display().to_string());
    let empty = tempfile::tempdir().expect("tempdir");
    postmortem(empty.path())
        .arg("last")
        .run()
        .code(2)
        .stderr_contains("no runs in");
}

#[test]
fn an_unreadable_journal_is_an_error_naming_the_file() {
    let st = state(&[]);
    let run = st.path().join("runs").join("broken");
    std::fs::create_dir_all(&run).expect("dir");
    std::fs::write(run.join("journal.ndjson"), "{\"seq\":1}\nnot json\n{}\n").expect("write");
    postmortem(st.path())
        .arg("broken")
        .run()
        .code(2)
        .stderr_contains("journal.ndjson:1: corrupt journal line");
    let gone = st.path().join("runs").join("empty");
    std::fs::create_dir_all(&gone).expect("dir");
    postmortem(st.path())
        .arg("empty")
        .run()
        .code(1)
        .stderr_contains("cannot read journal")
        .stderr_contains("journal.ndjson");
}

#[test]
fn details_choose_summary_tables_or_whole_results() {
    let st = state(&[(RUN, "escalated")]);
    let summary = postmortem(st.path()).arg(RUN).run().code(0).stdout.clone();
    assert!(summary.contains("| Time"), "the timeline is a table");
    assert!(!summary.contains("<details>"), "nothing folded in summary");
    assert!(
        summary.contains("| Step | API calls"),
        "API calls in the appendix"
    );
    let full = postmortem(st.path())
        .args([RUN, "--details", "full"])
        .run()
        .code(0)
        .stdout
        .clone();
    assert!(full.contains("<details>"), "results whole in full");
    assert!(
        full.contains("  - API: `PATCH /api/v1/nodes/"),
        "API calls inline in full"
    );
    let none = postmortem(st.path())
        .args([RUN, "--details", "none"])
        .run()
        .code(0)
        .stdout
        .clone();
    assert!(!none.contains("What the steps saw"), "{none}");
    postmortem(st.path())
        .args([RUN, "--details", "everything"])
        .run()
        .code(2)
        .stderr_contains("possible values: full, summary, none");
}

#[test]
fn an_incident_start_gives_times_from_the_impact() {
    let st = state(&[(RUN, "escalated")]);
    postmortem(st.path())
        .arg(RUN)
        .run()
        .code(0)
        .stdout_contains("| Time to detect | unknown (no impact start);");
    postmortem(st.path())
        .args([RUN, "--incident-start", "2018-03-20 23:00"])
        .run()
        .code(0)
        .stdout_contains("| Impact start | 2018-03-20 23:00:00 UTC |")
        .stdout_contains("| Time to detect | 58m 40s from the impact start;");
    postmortem(st.path())
        .args([RUN, "--incident-start", "yesterday"])
        .run()
        .code(2)
        .stderr_contains("--incident-start \"yesterday\" is not a time");
}

#[test]
fn an_edited_generated_section_is_kept_once_and_named() {
    let st = state(&[(RUN, "escalated")]);
    let out = st.path().join("pm.md");
    postmortem(st.path())
        .args([RUN, "-o"])
        .arg(&out)
        .run()
        .code(0);
    let text = std::fs::read_to_string(&out).expect("written");
    let edited = text.replace(
        "| Status | **Succeeded** |",
        "| Status | **Succeeded** (tim on the phone) |",
    );
    assert_ne!(edited, text);
    std::fs::write(&out, &edited).expect("edit");
    postmortem(st.path())
        .args([RUN, "-o"])
        .arg(&out)
        .run()
        .code(0)
        .stderr_contains("the generated section \"facts\" was edited by hand")
        .stderr_contains("pm.md.bak");
    let after = std::fs::read_to_string(&out).expect("written");
    assert_eq!(
        after.matches("| Status | **Succeeded**").count(),
        1,
        "{after}"
    );
    assert!(after.contains("(tim on the phone)"));
    assert!(after.contains("<!-- runbook:human id=facts "));
}

#[test]
fn writes_to_a_file_with_the_chosen_time_zone() {
    let st = state(&[(RUN, "escalated")]);
    let out = st.path().join("pm.md");
    postmortem(st.path())
        .args([RUN, "--tz", "Europe/Berlin", "-o"])
        .arg(&out)
        .run()
        .code(0)
        .stdout_is("");
    let text = std::fs::read_to_string(&out).expect("written");
    assert!(text.contains("All times in Europe/Berlin."));
    assert!(text.contains("| 00:58:40 | Run started"), "{text}");
    postmortem(st.path())
        .args([RUN, "--tz", "Mars/Olympus"])
        .run()
        .code(2)
        .stderr_contains("unknown time zone");
}

#[test]
fn print_template_is_a_starting_point_for_a_custom_one() {
    let st = state(&[(RUN, "escalated")]);
    let printed = postmortem(st.path())
        .arg("--print-template")
        .run()
        .code(0)
        .stdout
        .clone();
    assert_eq!(printed, runbook::render::DEFAULT_TEMPLATE);
    // The printed template, used as a file, renders what the embedded one does.
    let file = st.path().join("team.hbs");
    std::fs::write(&file, &printed).expect("write");
    let with_file = postmortem(st.path())
        .arg(RUN)
        .arg("--template")
        .arg(&file)
        .run();
    let embedded = postmortem(st.path()).arg(RUN).run();
    assert!(with_file.status.success());
    assert_eq!(with_file.stdout, embedded.stdout);
}

#[test]
fn a_broken_template_names_the_file_and_line() {
    let st = state(&[(RUN, "escalated")]);
    let file = st.path().join("team.hbs");
    std::fs::write(&file, "# {{run.id}}\n{{run.oops}}\n").expect("write");
    postmortem(st.path())
        .arg(RUN)
        .arg("--template")
        .arg(&file)
        .run()
        .code(2)
        .stderr_contains(format!("{}:2:", file.display()))
        .stderr_contains("oops");
}

#[test]
fn output_into_a_new_folder_creates_it_and_a_second_run_keeps_edits() {
    let st = state(&[(RUN, "escalated")]);
    let out = st.path().join("incidents").join("2018-03-21-hub.md");
    postmortem(st.path())
        .arg(RUN)
        .arg("-o")
        .arg(&out)
        .run()
        .code(0);
    let text = std::fs::read_to_string(&out).expect("written");
    let edited = text.replace(
        "_What could have gone worse, and did not?_",
        "The prometheus data survived this time.",
    );
    assert_ne!(text, edited);
    std::fs::write(&out, &edited).expect("edit");
    postmortem(st.path())
        .arg(RUN)
        .arg("-o")
        .arg(&out)
        .run()
        .code(0);
    let again = std::fs::read_to_string(&out).expect("written");
    assert!(again.contains("The prometheus data survived this time."));
    assert_eq!(again, edited, "nothing else changed");
}

#[test]
fn a_missing_template_file_is_named() {
    let st = state(&[(RUN, "escalated")]);
    postmortem(st.path())
        .args([RUN, "--template", "no-such.hbs"])
        .run()
        .code(2)
        .stdout_is("")
        .stderr_contains("cannot read template no-such.hbs");
}

/// Issue 17's bar: the seed demo's postmortem is short enough to paste into a review
/// (under 200 lines and 15 KB), valid GFM, and keeps what a reviewer needs.
#[test]
fn the_seed_demo_postmortem_fits_a_review() {
    let dir = tempfile::tempdir().expect("tempdir");
    let st = dir.path().join("state");
    Cli::new()
        .current_dir(dir.path())
        .arg("demo")
        .arg("--state-dir")
        .arg(&st)
        .run()
        .code(0);
    let runs: Vec<PathBuf> = std::fs::read_dir(st.join("runs"))
        .expect("runs")
        .map(|e| e.expect("entry").path())
        .collect();
    let text = std::fs::read_to_string(runs[0].join("postmortem.md")).expect("written");
    assert!(text.lines().count() < 200, "{} lines", text.lines().count());
    assert!(text.len() < 15_000, "{} bytes", text.len());
    let tables = pulldown_cmark::Parser::new_ext(&text, pulldown_cmark::Options::ENABLE_TABLES)
        .filter(|e| {
            matches!(
                e,
                pulldown_cmark::Event::Start(pulldown_cmark::Tag::Table(_))
            )
        })
        .count();
    assert!(tables >= 8, "{tables} tables");
    for fact in [
        "| NAME | READY | STATUS | RESTARTS | AGE | NODE |",
        "`kubectl delete pod hub-65d9f46698-dj4jb -n prod --grace-period=0 --force`: **OK**: deleted",
        "| `free-hub-volume` rung `force-delete-lost-pods` |",
        "**MITIGATED at 06:35:00**",
        // The demo journals when the seed's alert became active (the lab's Prometheus
        // evaluates its rule over the scenario's history: launches failed from the
        // hub's node loss, 5 hours before) as the impact start, so detection and
        // mitigation are real durations.
        "| Impact start | 2018-03-13 01:28:00 UTC (from the lab's ALERTS_FOR_STATE of alert HubLaunchesFailing) |",
        "| Time to detect | 5h 00m 00s from the impact start; 0 ms after the run started |",
        "| Time to mitigate | 5h 07m 00s from the impact start; 7m 00s after the run started |",
        "[graph](http://127.0.0.1:",
        "![launch_success_rate over the incident, with its milestones marked](postmortem.impact.svg)",
    ] {
        assert!(text.contains(fact), "lacks {fact:?}\n{text}");
    }
    // The chart of the launch success rate beside it, every milestone marked.
    let svg = std::fs::read_to_string(runs[0].join("postmortem.impact.svg")).expect("chart");
    let markers = crate::postmortem_render::check_chart(&svg);
    let at = |kind: &str| {
        markers
            .iter()
            .find(|(k, _)| k == kind)
            .unwrap_or_else(|| panic!("no {kind} marker: {svg}"))
            .1
            .to_rfc3339()
    };
    assert_eq!(at("impact-start"), "2018-03-13T01:28:00+00:00");
    assert_eq!(at("detected"), "2018-03-13T06:28:00+00:00");
    assert_eq!(at("escalated"), "2018-03-13T06:29:00+00:00");
    assert_eq!(at("mitigated"), "2018-03-13T06:35:00+00:00");
    assert_eq!(at("end"), "2018-03-13T06:35:00+00:00");
    // The line is the launch success rate over the incident, not two dots: the first
    // check's `detects:` look-back (at zero from 01:28) and the recovery at 06:35.
    let points: Vec<&str> = svg
        .lines()
        .filter(|l| l.starts_with("<circle class=\"point\""))
        .collect();
    assert!(points.len() > 100, "{} points: {svg}", points.len());
    assert!(!text.contains("\"apiVersion\""), "no JSON dumps");
    // The README's picture is this chart: regenerate it with RUNBOOK_UPDATE_DOCS=1.
    let readme_svg =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/images/seed-impact.svg");
    if std::env::var_os("RUNBOOK_UPDATE_DOCS").is_some() {
        std::fs::write(&readme_svg, &svg).expect("docs/images/seed-impact.svg written");
    }
    assert_eq!(
        std::fs::read_to_string(&readme_svg).expect("docs/images/seed-impact.svg"),
        svg,
        "docs/images/seed-impact.svg (the README's picture) is stale: run `RUNBOOK_UPDATE_DOCS=1 cargo test --test integration postmortem_cli::the_seed_demo` and commit it"
    );
}

/// A runbook that detects (a passing check) and acts, with shell only.
const DISK_RUNBOOK: &str = r##"version: 1
name: disk-full
title: Disk full on web-1
links:
  - title: Disk dashboard
    url: https://grafana.example.org/d/disk?var-node=web-1
  - title: "#ops-incidents"
    url: https://chat.example.org/archives/C042
steps:
  - check: Disk usage
    id: usage
    shell: { argv: [sh, -c, "echo 91"] }
  - action: Clean tmp
    id: clean
    shell: { argv: [sh, -c, "true"] }
"##;

/// A folder with the runbook and a state dir; runs it with `extra` arguments.
fn run_disk(extra: &[&str]) -> (tempfile::TempDir, crate::support::cli::Output) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("rb.yaml"), DISK_RUNBOOK).expect("runbook");
    let out = Cli::new()
        .env("RUNBOOK_STATE_DIR", dir.path().join("st"))
        .env("RUNBOOK_OPERATOR", "ana")
        .current_dir(dir.path())
        .args(["run", "rb.yaml", "--yes"])
        .args(extra)
        .run();
    (dir, out)
}

/// `YYYY-MM-DD HH:MM` of `now - minutes`, in UTC.
fn minutes_ago(minutes: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(minutes))
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

#[test]
fn run_with_an_incident_start_gives_the_postmortem_a_real_time_to_detect() {
    let start = minutes_ago(60);
    let (dir, out) = run_disk(&["--incident-start", &start]);
    out.code(0);
    let st = dir.path().join("st");
    postmortem(&st)
        .arg("last")
        .run()
        .code(0)
        .stdout_contains(format!("| Impact start | {start}:00 UTC |"))
        // 60 minutes back, cut to the minute: 1h 00m … or 1h 01m …, never "unknown".
        .stdout_contains("| Time to detect | 1h 0");
    // The flag of `postmortem` overrides what the run journaled.
    let other = minutes_ago(120);
    postmortem(&st)
        .args(["last", "--incident-start", &other])
        .run()
        .code(0)
        .stdout_contains(format!("| Impact start | {other}:00 UTC |"))
        .stdout_contains("| Time to detect | 2h 0");
    // Relative times work, a future one or a non-time does not start the run.
    run_disk(&["--incident-start", "-45m"]).1.code(0);
    let (dir, out) = run_disk(&["--incident-start", "23:59:59"]);
    if chrono::Utc::now().time() < chrono::NaiveTime::from_hms_opt(23, 59, 0).expect("time") {
        out.code(2).stderr_contains("in the future");
        assert!(!dir.path().join("st").join("runs").exists());
    }
    let (dir, out) = run_disk(&["--incident-start", "yesterday"]);
    out.code(2)
        .stderr_contains("--incident-start \"yesterday\" is not a time");
    assert!(!dir.path().join("st").join("runs").exists());
}

#[test]
fn a_backdated_note_is_placed_in_the_timeline_at_its_time() {
    let (dir, out) = run_disk(&[]);
    out.code(0);
    let st = dir.path().join("st");
    let note = |extra: &[&str]| {
        Cli::new()
            .env("RUNBOOK_STATE_DIR", &st)
            .env("RUNBOOK_OPERATOR", "lee")
            .args(["note", "last"])
            .args(extra)
            .run()
    };
    note(&["written now"]).code(0);
    let fired = minutes_ago(30);
    note(&["alert fired", "--at", &fired]).code(0);
    note(&["from the future", "--at", "2999-01-01T00:00:00Z"])
        .code(2)
        .stderr_contains("in the future");
    note(&["whenever", "--at", "soon"])
        .code(2)
        .stderr_contains("is not a time");
    let out = postmortem(&st).arg("last").run();
    out.code(0)
        .stdout_contains(format!("| {}:00 | Note | lee: alert fired |", &fired[11..]));
    let md = &out.stdout;
    let pos = |s: &str| md.find(s).unwrap_or_else(|| panic!("{s:?} missing:\n{md}"));
    // Written last, it happened first: before the run's start and the note written
    // during the run's aftermath.
    assert!(pos("lee: alert fired") < pos("Run started"), "{md}");
    assert!(pos("Run started") < pos("lee: written now"), "{md}");
    assert!(!md.contains("from the future"));
    // The journal keeps the order things were written in.
    let journal = std::fs::read_dir(st.join("runs"))
        .expect("runs")
        .map(|e| e.expect("entry").path().join("journal.ndjson"))
        .next()
        .expect("one run");
    let text = std::fs::read_to_string(journal).expect("journal");
    let (now_at, fired_at) = (
        text.find("written now").expect("note"),
        text.find("alert fired").expect("note"),
    );
    assert!(now_at < fired_at);
}

#[test]
fn the_runbook_links_are_listed_by_the_postmortem() {
    let (dir, out) = run_disk(&[]);
    out.code(0);
    postmortem(&dir.path().join("st"))
        .arg("last")
        .run()
        .code(0)
        .stdout_contains("## Links")
        .stdout_contains("- [Disk dashboard](<https://grafana.example.org/d/disk?var-node=web-1>)")
        .stdout_contains("- [\\#ops-incidents](<https://chat.example.org/archives/C042>)");
    // A runbook without links gets no empty section.
    let st = state(&[(RUN, "escalated")]);
    let out = postmortem(st.path()).arg(RUN).run();
    assert!(!out.code(0).stdout.contains("## Links"));
}

#[test]
fn a_link_that_is_not_an_absolute_http_url_is_a_lint_error_at_its_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = DISK_RUNBOOK.replace(
        "https://chat.example.org/archives/C042",
        "chat.example.org/archives/C042",
    );
    std::fs::write(dir.path().join("rb.yaml"), bad).expect("runbook");
    Cli::new()
        .current_dir(dir.path())
        .args(["lint", "rb.yaml"])
        .run()
        .code(1)
        .stdout_contains(
            "rb.yaml:8:10: error: the link \"chat.example.org/archives/C042\" is not a usable URL",
        )
        .stdout_contains("help: write an absolute address");
}

/// `-o FILE` writes the impact chart beside the document, says so, and links it; the
/// same render again gives the same chart.
#[test]
fn writing_a_postmortem_writes_its_impact_chart_beside_it() {
    let st = state(&[(RUN, "escalated")]);
    let out = st.path().join("reviews").join("hub.md");
    postmortem(st.path())
        .arg(RUN)
        .arg("-o")
        .arg(&out)
        .run()
        .code(0)
        .stderr_contains("hub.impact.svg (the impact chart it links)");
    let md = std::fs::read_to_string(&out).expect("written");
    assert!(md.contains("](hub.impact.svg)"), "{md}");
    let chart = st.path().join("reviews").join("hub.impact.svg");
    let svg = std::fs::read_to_string(&chart).expect("chart written");
    crate::postmortem_render::check_chart(&svg);
    postmortem(st.path())
        .arg(RUN)
        .arg("-o")
        .arg(&out)
        .run()
        .code(0);
    assert_eq!(std::fs::read_to_string(&chart).expect("chart"), svg);
}

/// A Prometheus that has seen the condition hold for the last 20 minutes (and once,
/// briefly, an hour before): `/api/v1/query` answers one sample, `query_range` a
/// matrix at the requested step. Returns its base URL.
fn prometheus_with_history() -> String {
    use std::collections::HashMap;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let app = axum::Router::new()
                .route(
                    "/api/v1/query",
                    axum::routing::get(|| async {
                        axum::Json(serde_json::json!({"status": "success", "data": {"resultType": "vector",
                            "result": [{"metric": {}, "value": [0, "0.1"]}]}}))
                    }),
                )
                .route(
                    "/api/v1/query_range",
                    axum::routing::get(
                        |axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>| async move {
                            let n = |k: &str| q.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
                            let (start, end, step) = (n("start"), n("end"), n("step").max(1));
                            let mut values = vec![serde_json::json!([end - 3600, "0.2"])];
                            let mut t = end - 1200;
                            while t <= end {
                                values.push(serde_json::json!([t, "0.1"]));
                                t += step;
                            }
                            values.retain(|v| v[0].as_i64().unwrap_or(0) >= start);
                            axum::Json(serde_json::json!({"status": "success", "data": {"resultType": "matrix",
                                "result": [{"metric": {}, "values": values}]}}))
                        },
                    ),
                );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            let _ = axum::serve(listener, app).await;
        });
    });
    format!("http://{}", rx.recv().expect("the server started"))
}

/// Issue 17: a check that `detects:` asks Prometheus when its condition started to
/// hold (`query_range` over the look-back); the postmortem takes that as the impact
/// start, says so, and draws the look-back in the chart.
#[test]
fn a_detecting_check_gives_the_impact_start_from_prometheus() {
    let server = prometheus_with_history();
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = dir.path().join("rb.yaml");
    std::fs::write(
        &rb,
        format!(
            r#"version: 1
name: detects
title: Launches fail
params:
  prometheus: {{ default: "{server}" }}
steps:
  - check: Launch success rate is low
    id: launch-rate
    prometheus: {{ server: "{{{{params.prometheus}}}}", query: "launch_success_rate < 0.5", detects: 2h }}
    save: rate
    expect: "size(rate.samples) > 0"
"#
        ),
    )
    .expect("runbook written");
    let st = dir.path().join("state");
    let before = chrono::Utc::now();
    Cli::new().state_dir(&st).arg("run").arg(&rb).run().code(0);
    let after = chrono::Utc::now();
    let out = dir.path().join("pm.md");
    postmortem(&st)
        .arg("last")
        .arg("-o")
        .arg(&out)
        .run()
        .code(0);
    let md = std::fs::read_to_string(&out).expect("written");
    let row = md
        .lines()
        .find(|l| l.starts_with("| Impact start |"))
        .expect("an impact start row");
    assert!(
        row.ends_with("(when the detecting check's query started to hold, by Prometheus) |"),
        "{row}"
    );
    // 20 minutes before the run (the point an hour before is not in the last run).
    let at = chrono::NaiveDateTime::parse_from_str(&row[17..36], "%Y-%m-%d %H:%M:%S")
        .expect("a time")
        .and_utc();
    let twenty = chrono::Duration::minutes(20);
    assert!(
        at >= before - twenty - chrono::Duration::seconds(2)
            && at <= after - twenty + chrono::Duration::seconds(1),
        "{row}, run between {before} and {after}"
    );
    assert!(md.contains("| Time to detect | 20m "), "{md}");
    let svg = std::fs::read_to_string(dir.path().join("pm.impact.svg")).expect("chart");
    let markers = crate::postmortem_render::check_chart(&svg);
    assert_eq!(markers[0].0, "impact-start");
    // The look-back's points (one a minute over 20 minutes, and the one before).
    assert!(svg.matches("<circle class=\"point\"").count() > 20, "{svg}");
}
