//! The postmortem renderer: a run's journal in, markdown out.
//!
//! [`render`] is a pure function of the journal and [`RenderOpts`]: it builds the
//! [`model::Postmortem`] (facts, metrics, a timeline grouped by day, drafts of the
//! human sections, a mermaid chart) and renders it with a handlebars template, the
//! embedded [`DEFAULT_TEMPLATE`] unless the caller gives another. docs/postmortem.md
//! documents the data model a template sees.
//!
//! The document is made of marked regions (see [`preserve`]): generated ones are
//! rebuilt on every render, human ones are kept once edited, so
//! [`write_preserving`] can refresh a postmortem people already worked on.

use std::path::{Path, PathBuf};

use chrono_tz::Tz;

mod build;
pub mod chart;
mod drafts;
pub mod escape;
mod format;
mod gantt;
mod helpers;
mod lists;
pub mod model;
mod preserve;
pub mod summary;
mod tidy;

pub use summary::Details;

pub use preserve::{Report, write_preserving, write_preserving_report};

/// The embedded default template; `runbook postmortem --print-template` prints it.
pub const DEFAULT_TEMPLATE: &str = include_str!("templates/postmortem.md.hbs");

/// How to render.
#[derive(Debug, Clone)]
pub struct RenderOpts {
    /// Time zone of every time in the document (the heading says which).
    pub tz: Tz,
    /// Template source; `None` for [`DEFAULT_TEMPLATE`].
    pub template: Option<String>,
    /// Where the template came from (its path), for error messages.
    pub template_name: Option<String>,
    /// How much of each result to show (summary by default).
    pub details: Details,
    /// When users were first affected: times to detect and mitigate count from it.
    pub incident_start: Option<chrono::DateTime<chrono::Utc>>,
    /// The file name (relative to the document) the impact chart will be written
    /// to, when there is a file to write it beside ([`chart_path`]); `None` (stdout)
    /// draws no chart and keeps the gantt chart.
    pub chart_file: Option<String>,
}

impl Default for RenderOpts {
    fn default() -> RenderOpts {
        RenderOpts {
            tz: Tz::UTC,
            template: None,
            template_name: None,
            details: Details::default(),
            incident_start: None,
            chart_file: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Journal(#[from] crate::journal::reader::ReadError),
    /// The run named could not be found (or not uniquely): see [`crate::store`].
    #[error(transparent)]
    Run(#[from] crate::store::StoreError),
    #[error("{name}:{line}:{column}: {message}")]
    Template {
        name: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: runbook region markers do not pair up: {message}")]
    Markers {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "{path} exists and is not a postmortem written by runbook (it has no runbook region markers); refusing to overwrite it"
    )]
    NotAPostmortem { path: PathBuf },
}

impl RenderError {
    /// True for mistakes in what the user typed (run id, template), as opposed to
    /// unreadable files.
    pub fn is_usage(&self) -> bool {
        if let RenderError::Run(e) = self {
            return e.is_usage();
        }
        matches!(self, RenderError::Template { .. })
            || matches!(self, RenderError::Journal(e) if e.is_bad_input())
    }
}

/// Build the data model a template sees (exposed for docs and tests).
pub fn model(journal: &crate::journal::reader::Journal, tz: Tz) -> model::Postmortem {
    model_with(
        journal,
        &RenderOpts {
            tz,
            details: Details::Full,
            ..RenderOpts::default()
        },
    )
}

/// [`model`] as [`render`] builds it for `opts` (level of detail, impact start).
pub fn model_with(
    journal: &crate::journal::reader::Journal,
    opts: &RenderOpts,
) -> model::Postmortem {
    let mut c = Collect::new(opts);
    for r in &journal.records {
        c.record(r);
    }
    c.model(journal, opts)
}

/// Everything the postmortem reads from a journal, gathered one record at a time
/// (the model's builder, the chart's series, the detecting check's `since`), so
/// that `runbook postmortem` streams the journal rather than holding it.
struct Collect {
    build: build::Stream,
    chart: chart::Collector,
    detect: Detections,
}

impl Collect {
    fn new(opts: &RenderOpts) -> Collect {
        Collect {
            build: build::Stream::new(opts.tz, opts.details),
            chart: chart::Collector::default(),
            detect: Detections::default(),
        }
    }

    fn record(&mut self, r: &crate::journal::event::Record) {
        self.build.record(r);
        self.detect.record(r);
        self.chart.record(r);
    }

    /// The model; `journal` gives the torn tail and seq faults (its records are
    /// not read).
    fn model(
        self,
        journal: &crate::journal::reader::Journal,
        opts: &RenderOpts,
    ) -> model::Postmortem {
        let tz = opts.tz;
        let built = self.build.finish(journal);
        let mut pm = built.pm;
        // The flag overrides what the run journaled (and its source).
        let mut source = match opts.incident_start {
            Some(_) => None,
            None => built.incident_start_source.as_deref().map(source_words),
        };
        let mut start = opts.incident_start.or(built.incident_start);
        if start.is_none()
            && let Some((at, _query)) = self.detect.since(&pm)
        {
            start = Some(at);
            source =
                Some("when the detecting check's query started to hold, by Prometheus".to_owned());
        }
        anchor(&mut pm, start, tz);
        pm.metrics.impact_start_source = pm.metrics.impact_start.as_ref().and(source);
        pm.gantt = gantt::chart(&built.spans, &pm.steps, tz);
        pm.drafts = drafts::draft(&pm);
        if let Some(file) = &opts.chart_file
            && let Some(c) = chart::build_from(&self.chart, &pm, tz)
        {
            pm.chart = Some(model::ChartRef {
                file: chart::href(file),
                alt: c.alt,
                query: c.query,
            });
            pm.chart_svg = Some(c.svg);
        }
        pm
    }
}

/// For each step, when its condition started to hold as its `prometheus` operation
/// with `detects:` found it (the first `since` in its results), and the query: the
/// detecting step is known only once the whole journal is read, so every step's
/// first is kept (one per step).
#[derive(Default)]
struct Detections {
    query: std::collections::HashMap<String, String>,
    since: std::collections::HashMap<String, (chrono::DateTime<chrono::Utc>, String)>,
}

impl Detections {
    fn record(&mut self, r: &crate::journal::event::Record) {
        use crate::journal::event::Event;
        match &r.event {
            Event::OpStarted { op, .. } if op.provider == "prometheus" => {
                if let Some(q) = op.op["query"].as_str() {
                    self.query.insert(op.scope.step.clone(), q.to_owned());
                }
            }
            Event::OpFinished {
                scope,
                result: Some(result),
                ..
            } => {
                if self.since.contains_key(&scope.step) {
                    return;
                }
                if let (Some(since), Some(q)) =
                    (result["since"].as_str(), self.query.get(&scope.step))
                    && let Ok(t) = since.parse()
                {
                    self.since.insert(scope.step.clone(), (t, q.clone()));
                }
            }
            _ => {}
        }
    }

    /// The detecting check's (`time_to_detect`'s step).
    fn since(&self, pm: &model::Postmortem) -> Option<(chrono::DateTime<chrono::Utc>, String)> {
        let step = &pm.metrics.time_to_detect.as_ref()?.step;
        self.since.get(step).cloned()
    }
}

/// The journaled `incident_start.source` in words, for the Facts table.
fn source_words(source: &str) -> String {
    match source {
        "scenario" => "the lab scenario's first fault".to_owned(),
        "alert" => "the alert's startsAt".to_owned(),
        other => format!("from {other}"),
    }
}

/// Where the impact chart of the document `markdown` goes: beside it, named after
/// it (`pm.md` → `pm.impact.svg`).
pub fn chart_path(markdown: &Path) -> PathBuf {
    let stem = markdown
        .file_stem()
        .map_or_else(|| "postmortem".into(), |s| s.to_string_lossy().into_owned());
    markdown.with_file_name(format!("{stem}.impact.svg"))
}

/// The incident's milestones: first action, resolution, and, when the impact start
/// is known, the times to detect and mitigate counted from it (as the postmortem
/// templates of Google's SRE book and incident.io define them).
fn anchor(pm: &mut model::Postmortem, start: Option<chrono::DateTime<chrono::Utc>>, tz: Tz) {
    let m = &mut pm.metrics;
    m.first_action = pm
        .timeline
        .iter()
        .flat_map(|d| &d.entries)
        .flat_map(|e| &e.ops)
        .filter(|o| o.mutating)
        .map(|o| o.started)
        .min_by_key(|t| t.ts());
    if pm.run.status == "succeeded" {
        m.resolved.clone_from(&pm.run.ended);
    }
    let Some(start) = start else {
        return;
    };
    m.impact_start = Some(format::Time::new(start, tz));
    for ms in [&mut m.time_to_detect, &mut m.time_to_mitigate]
        .into_iter()
        .flatten()
    {
        if let Ok(at) = ms.at.utc().parse::<chrono::DateTime<chrono::Utc>>() {
            ms.from_impact = Some(if at >= start {
                format::duration_ms(format::between(start, at))
            } else {
                "0 ms (the impact start given is after it)".to_owned()
            });
        }
    }
}

/// Render a journal as a markdown postmortem. Pure: the same journal and options
/// always give the same bytes.
pub fn render(
    journal: &crate::journal::reader::Journal,
    opts: &RenderOpts,
) -> Result<String, RenderError> {
    render_with_chart(journal, opts).map(|(markdown, _)| markdown)
}

/// [`render`], and the impact chart's SVG when the document links one (only with
/// [`RenderOpts::chart_file`]): the caller writes it there.
pub fn render_with_chart(
    journal: &crate::journal::reader::Journal,
    opts: &RenderOpts,
) -> Result<(String, Option<String>), RenderError> {
    document(model_with(journal, opts), opts)
}

/// The markdown of a model, and its chart.
fn document(
    pm: model::Postmortem,
    opts: &RenderOpts,
) -> Result<(String, Option<String>), RenderError> {
    let (bytes, svg) = document_to(pm, opts, Vec::new(), None)?;
    let text = String::from_utf8(bytes).expect("invariant: a rendered document is UTF-8");
    Ok((text, svg))
}

/// The markdown of a model written to `out` as it is rendered (tidied on the way:
/// see [`tidy::Tidy`]), and its chart. `file` names where `out` writes, for the
/// error when it cannot.
fn document_to<W: std::io::Write>(
    mut pm: model::Postmortem,
    opts: &RenderOpts,
    out: W,
    file: Option<&Path>,
) -> Result<(W, Option<String>), RenderError> {
    let svg = pm.chart_svg.take();
    let name = opts
        .template_name
        .clone()
        .unwrap_or_else(|| match opts.template {
            Some(_) => "template".to_owned(),
            None => "the default template".to_owned(),
        });
    let source = opts.template.as_deref().unwrap_or(DEFAULT_TEMPLATE);
    // The long lists go to the template one item at a time (`each_day`, `each_entry`,
    // `each_step`: see [`lists`]), not as part of one JSON tree of the whole model,
    // which cost about 11 KB per step (issue 18). A custom template that reads them
    // as data (`{{#each timeline}}`) gets them in the tree too.
    let lists = lists::Lists::new(
        std::mem::take(&mut pm.timeline),
        std::mem::take(&mut pm.steps),
    );
    let mut data = serde_json::to_value(&pm).expect("invariant: the model serializes to JSON");
    drop(pm);
    if let Some(map) = data.as_object_mut() {
        map.remove("timeline");
        map.remove("steps");
        if opts.template.is_some() && lists::reads(source, "timeline") {
            let days = serde_json::to_value(&lists.days);
            map.insert(
                "timeline".to_owned(),
                days.expect("invariant: the model serializes to JSON"),
            );
        }
        if opts.template.is_some() && lists::reads(source, "steps") {
            let steps = serde_json::to_value(&lists.steps);
            map.insert(
                "steps".to_owned(),
                steps.expect("invariant: the model serializes to JSON"),
            );
        }
    }
    let mut hb = helpers::registry();
    lists.register(&mut hb);
    hb.register_template_string(&name, source)
        .map_err(|e| template_error(&name, e.pos(), e.reason().to_string()))?;
    // A Context from the value itself: `render(&data)` would copy it once more.
    let ctx = handlebars::Context::from(data);
    let io = |source: std::io::Error| RenderError::Io {
        path: file.map_or_else(|| PathBuf::from("(memory)"), Path::to_owned),
        source,
    };
    // Tidied as it is written: the document is never held twice, and not at all
    // when `out` is a file.
    let mut tidy = tidy::Tidy::new(out);
    hb.render_with_context_to_write(&name, &ctx, &mut tidy)
        .map_err(|e| match e.reason() {
            handlebars::RenderErrorReason::IOError(source) => {
                io(std::io::Error::new(source.kind(), source.to_string()))
            }
            _ => {
                let pos = e.line_no.zip(e.column_no);
                template_error(&name, pos, render_reason(&e))
            }
        })?;
    let out = tidy.finish().map_err(io)?;
    Ok((out, svg))
}

/// Read the journal of the run folder `run_dir` (as [`crate::store::DirStore`] lays it
/// out) and [`render`] it.
pub fn render_run(run_dir: &Path, opts: &RenderOpts) -> Result<String, RenderError> {
    render_run_with_chart(run_dir, opts).map(|(markdown, _)| markdown)
}

/// [`render_run`] with the impact chart (see [`render_with_chart`]).
pub fn render_run_with_chart(
    run_dir: &Path,
    opts: &RenderOpts,
) -> Result<(String, Option<String>), RenderError> {
    let (pm, _) = collect_run(run_dir, opts)?;
    document(pm, opts)
}

/// The postmortem model of the run of the folder `run_dir`, streamed from its
/// journal: what is kept is bounded, whatever the journal's length.
fn collect_run(
    run_dir: &Path,
    opts: &RenderOpts,
) -> Result<(model::Postmortem, crate::journal::reader::Journal), RenderError> {
    let mut c = Collect::new(opts);
    let journal =
        crate::journal::reader::read_each(&crate::store::DirStore::journal_in(run_dir), |r| {
            c.record(&r)
        })?;
    let pm = c.model(&journal, opts);
    Ok((pm, journal))
}

/// Render the run of the folder `run_dir` into the file `path`, and its impact chart
/// beside it: [`render_run_with_chart`] then [`write_with_chart`], except that a new
/// file is written as it is rendered (to a temporary file renamed when complete), so
/// the document is never held in memory (issue 18). A file that exists is merged as
/// [`write_preserving_report`] does.
pub fn write_run(
    run_dir: &Path,
    opts: &RenderOpts,
    path: &Path,
) -> Result<(Report, Option<PathBuf>), RenderError> {
    let (pm, journal) = collect_run(run_dir, opts)?;
    drop(journal);
    if std::fs::symlink_metadata(path).is_ok() {
        let (markdown, svg) = document(pm, opts)?;
        return write_with_chart(path, &markdown, svg.as_deref());
    }
    let io = |source: std::io::Error| RenderError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = preserve::temporary(path);
    let written = std::fs::File::create(&tmp)
        .map_err(io)
        .and_then(|f| document_to(pm, opts, std::io::BufWriter::new(f), Some(path)))
        .and_then(|(mut w, svg)| {
            std::io::Write::flush(&mut w).map_err(io)?;
            drop(w);
            std::fs::rename(&tmp, path).map_err(io)?;
            Ok(svg)
        });
    let svg = match written {
        Ok(svg) => svg,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let chart = svg.map(|svg| write_chart(path, &svg)).transpose()?;
    Ok((Report::default(), chart))
}

/// Write a document and, when there is one, its impact chart beside it
/// ([`chart_path`]); the chart is written whole or not at all (a temporary file
/// renamed). Returns the document's report and the chart's path.
pub fn write_with_chart(
    path: &Path,
    markdown: &str,
    svg: Option<&str>,
) -> Result<(Report, Option<PathBuf>), RenderError> {
    let report = write_preserving_report(path, markdown)?;
    let chart = svg.map(|svg| write_chart(path, svg)).transpose()?;
    Ok((report, chart))
}

/// Write the impact chart of the document `path` beside it, whole or not at all.
fn write_chart(path: &Path, svg: &str) -> Result<PathBuf, RenderError> {
    let chart = chart_path(path);
    let tmp = chart.with_extension("svg.tmp");
    std::fs::write(&tmp, svg)
        .and_then(|()| std::fs::rename(&tmp, &chart))
        .map_err(|source| RenderError::Io {
            path: chart.clone(),
            source,
        })?;
    Ok(chart)
}

fn template_error(name: &str, pos: Option<(usize, usize)>, message: String) -> RenderError {
    let (line, column) = pos.unwrap_or((1, 1));
    RenderError::Template {
        name: name.to_owned(),
        line,
        column,
        message,
    }
}

fn render_reason(e: &handlebars::RenderError) -> String {
    match e.reason() {
        handlebars::RenderErrorReason::MissingVariable(Some(path)) => {
            format!("`{path}` is not in the postmortem data model (see docs/postmortem.md)")
        }
        other => other.to_string(),
    }
}
