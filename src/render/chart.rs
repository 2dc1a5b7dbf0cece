//! The impact chart: the metric a runbook's Prometheus check or verification
//! watched, over the incident window, as an SVG written beside the postmortem.
//!
//! The points are the values the run journaled (each `prometheus` operation that
//! answered one number); nothing is fetched at render time, so the same journal
//! always gives the same bytes. Vertical markers show the impact start, detection,
//! the first action, each escalation, mitigation and the end; the impact window
//! (impact start to mitigation) is shaded. Before the first value the run saw, the
//! chart draws nothing: the run does not know. `<title>` and `<desc>` say in words
//! what the picture shows, for screen readers and for anyone reading the file.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::journal::event::{Event, Record, Scope};
use crate::journal::reader::Journal;

use super::format::Time;
use super::model::Postmortem;

/// Width of the picture, in SVG user units (pixels when embedded as is).
pub const WIDTH: f64 = 720.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 24.0;
const PLOT_HEIGHT: f64 = 150.0;
const ROW: f64 = 14.0;
/// At most this many points are drawn (every n-th, and always the last).
const MAX_POINTS: usize = 600;
/// An estimate of one character's width at font-size 11, to keep labels apart.
const CHAR_WIDTH: f64 = 6.2;

/// A chart of one query: the SVG and what the document says about it.
#[derive(Debug, Clone)]
pub struct Built {
    pub svg: String,
    pub query: String,
    /// One line for the image's alt text.
    pub alt: String,
}

/// One number a `prometheus` operation answered, and when.
type Point = (DateTime<Utc>, f64);

/// What the chart needs from the journal, gathered one record at a time
/// ([`Collector::record`]) so that the journal need not be held: the values of
/// each query the run asked Prometheus, and when the run escalated.
#[derive(Default)]
pub struct Collector {
    asked: HashMap<(Scope, u32), String>,
    series: Vec<(String, Vec<Point>)>,
    escalations: Vec<DateTime<Utc>>,
}

impl Collector {
    pub fn record(&mut self, r: &Record) {
        match &r.event {
            Event::OpStarted { op, attempt } if op.provider == "prometheus" => {
                if let Some(q) = op.op.get("query").and_then(|q| q.as_str()) {
                    self.asked
                        .insert((op.scope.clone(), *attempt), filtered_base(q).to_owned());
                }
            }
            Event::OpFinished {
                scope,
                attempt,
                result,
                ..
            } => {
                if self.asked.is_empty() {
                    return;
                }
                let Some(query) = self.asked.remove(&(scope.clone(), *attempt)) else {
                    return;
                };
                // A `detects:` look-back: the points Prometheus had before.
                let mut new: Vec<Point> = result
                    .as_ref()
                    .and_then(|r| r.get("range"))
                    .and_then(serde_json::Value::as_array)
                    .map(|ps| {
                        ps.iter()
                            .filter_map(|p| {
                                let t = p.get(0)?.as_f64()?;
                                let t = DateTime::from_timestamp_millis((t * 1000.0) as i64)?;
                                Some((t, p.get(1)?.as_f64()?))
                            })
                            .filter(|(t, _)| *t < r.ts)
                            .collect()
                    })
                    .unwrap_or_default();
                if let Some(v) = result
                    .as_ref()
                    .and_then(|r| r.get("value"))
                    .and_then(serde_json::Value::as_f64)
                {
                    new.push((r.ts, v));
                }
                if new.is_empty() {
                    return;
                }
                match self.series.iter_mut().find(|(q, _)| *q == query) {
                    Some((_, points)) => points.extend(new),
                    None => self.series.push((query, new)),
                }
            }
            Event::Escalated { .. } => self.escalations.push(r.ts),
            _ => {}
        }
    }

    /// The values of each query, in the order first asked, sorted by time.
    fn series(&self) -> Vec<(String, Vec<Point>)> {
        let mut out = self.series.clone();
        for (_, points) in &mut out {
            points.sort_by_key(|p| p.0);
            points.dedup_by_key(|p| p.0);
        }
        out
    }
}

/// A query that filters by a comparison with a number (`launch_success_rate < 0.5`,
/// as a `detects:` check is written) answers the left side's own values where the
/// condition holds (PromQL's comparison filter keeps the vector's value): chart them
/// as points of the left side, so the detecting check's look-back and a
/// verification of the unfiltered metric make one line.
fn filtered_base(q: &str) -> &str {
    let q = q.trim();
    for op in ["<=", ">=", "==", "!=", "<", ">"] {
        if let Some((lhs, rhs)) = q.rsplit_once(op) {
            let (lhs, rhs) = (lhs.trim_end(), rhs.trim());
            let lhs_ok = !lhs.is_empty()
                && !lhs.ends_with(['<', '>', '=', '!'])
                && lhs.bytes().filter(|b| *b == b'(').count()
                    == lhs.bytes().filter(|b| *b == b')').count();
            if lhs_ok && rhs.parse::<f64>().is_ok_and(f64::is_finite) {
                return lhs;
            }
            return q;
        }
    }
    q
}

fn collect(journal: &Journal) -> Collector {
    let mut c = Collector::default();
    for r in &journal.records {
        c.record(r);
    }
    c
}

/// A vertical line with its label.
struct Marker {
    at: DateTime<Utc>,
    kind: &'static str,
    label: String,
}

fn parse(t: &Time) -> Option<DateTime<Utc>> {
    Some(t.ts())
}

fn markers(c: &Collector, pm: &Postmortem) -> Vec<Marker> {
    let m = &pm.metrics;
    let mut out = Vec::new();
    let mut add = |at: Option<DateTime<Utc>>, kind: &'static str, label: &str| {
        if let Some(at) = at {
            out.push(Marker {
                at,
                kind,
                label: label.to_owned(),
            });
        }
    };
    add(
        m.impact_start.as_ref().and_then(parse),
        "impact-start",
        "impact start",
    );
    add(
        m.time_to_detect.as_ref().and_then(|d| parse(&d.at)),
        "detected",
        "detected",
    );
    add(
        m.first_action.as_ref().and_then(parse),
        "first-action",
        "first action",
    );
    for at in &c.escalations {
        add(Some(*at), "escalated", "escalated");
    }
    add(
        m.time_to_mitigate.as_ref().and_then(|d| parse(&d.at)),
        "mitigated",
        "mitigated",
    );
    // Every action (when its operations started: after its gate) and every
    // verification (when it ended), unless a milestone above already marks that moment.
    let mut more: Vec<Marker> = Vec::new();
    for e in pm.timeline.iter().flat_map(|d| &d.entries) {
        if e.step_kind.as_deref() == Some("action")
            && matches!(e.kind, "step" | "rung")
            && let Some(at) = e.ops.first().and_then(|o| parse(&o.started))
        {
            more.push(Marker {
                at,
                kind: "action",
                label: "action".into(),
            });
        }
        if let Some(v) = &e.more().verification
            && v.outcome != "pending"
            && let Some(at) = parse(&v.last)
        {
            more.push(Marker {
                at,
                kind: "verification",
                label: if v.passed {
                    "verified".into()
                } else {
                    format!("verification {}", v.label.to_lowercase())
                },
            });
        }
    }
    let (end, label) = match &m.resolved {
        Some(t) => (parse(t), "resolved"),
        None => (pm.run.ended.as_ref().and_then(parse), "run ended"),
    };
    add(end, "end", label);
    let milestones: Vec<DateTime<Utc>> = out.iter().map(|o| o.at).collect();
    out.extend(more.into_iter().filter(|mk| !milestones.contains(&mk.at)));
    // Stable order by time; same-time markers keep the order above.
    out.sort_by_key(|m| m.at);
    out
}

/// Markers closer than this (in SVG units) share one label.
const GROUP_PX: f64 = 36.0;

/// Consecutive markers closer than [`GROUP_PX`] to the one before: ranges of
/// indexes into `xs` (sorted).
fn groups(xs: &[f64]) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    for (i, x) in xs.iter().enumerate() {
        match out.last_mut() {
            Some(g) if x - xs[i - 1] < GROUP_PX => g.end = i + 1,
            _ => out.push(i..i + 1),
        }
    }
    out
}

/// One label for a group of markers: `action 06:30:05`, or the labels in order
/// with their counts and the group's span (`detected, action ×3 06:28:00–06:29:10`).
fn group_label(markers: &[Marker], tz: Tz) -> String {
    let first = Time::new(markers[0].at, tz).time();
    if markers.len() == 1 {
        return format!("{} {first}", markers[0].label);
    }
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for m in markers {
        match counts.iter_mut().find(|(l, _)| *l == m.label) {
            Some((_, n)) => *n += 1,
            None => counts.push((&m.label, 1)),
        }
    }
    let words: Vec<String> = counts
        .iter()
        .map(|(l, n)| {
            if *n > 1 {
                format!("{l} ×{n}")
            } else {
                (*l).to_owned()
            }
        })
        .collect();
    let last = Time::new(markers[markers.len() - 1].at, tz).time();
    format!("{} {first}–{last}", words.join(", "))
}

/// The number as the axis shows it: at most 3 decimals, no trailing zeros.
fn number(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// Text for XML content and attribute values: the five entities, and control
/// characters (not allowed in XML 1.0) dropped.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// The chart of the query the run asked most often (the first such on a tie), or
/// `None` when the run asked Prometheus nothing that answered a single number.
pub fn build(journal: &Journal, pm: &Postmortem, tz: Tz) -> Option<Built> {
    build_from(&collect(journal), pm, tz)
}

/// [`build`] from what a [`Collector`] gathered.
pub fn build_from(c: &Collector, pm: &Postmortem, tz: Tz) -> Option<Built> {
    let (query, mut points) = c
        .series()
        .into_iter()
        .enumerate()
        .max_by_key(|(i, (_, p))| (p.len(), std::cmp::Reverse(*i)))
        .map(|(_, s)| s)?;
    if points.len() > MAX_POINTS {
        let step = points.len().div_ceil(MAX_POINTS);
        let last = *points
            .last()
            .expect("invariant: more than MAX_POINTS points");
        points = points.into_iter().step_by(step).collect();
        if points.last().map(|p| p.0) != Some(last.0) {
            points.push(last);
        }
    }
    let markers = markers(c, pm);

    // The window: every point and marker, with a margin of 5 % (at least a minute)
    // on each side.
    let times = points
        .iter()
        .map(|p| p.0)
        .chain(markers.iter().map(|m| m.at));
    let (first, last) = times.fold(
        (None::<DateTime<Utc>>, None::<DateTime<Utc>>),
        |(a, b), t| {
            (
                Some(a.map_or(t, |a| a.min(t))),
                Some(b.map_or(t, |b| b.max(t))),
            )
        },
    );
    let (first, last) = (first?, last?);
    let margin = ((last - first) / 20).max(chrono::Duration::minutes(1));
    let (t0, t1) = (first - margin, last + margin);
    let span_ms = (t1 - t0).num_milliseconds().max(1) as f64;
    let plot_w = WIDTH - LEFT - RIGHT;
    let x = |t: DateTime<Utc>| LEFT + (t - t0).num_milliseconds() as f64 / span_ms * plot_w;

    // Labels in rows above the plot, one per group of close markers: each goes in
    // the first row where it does not run into the previous label; right of the
    // middle, a label ends at its group's last line.
    let xs: Vec<f64> = markers.iter().map(|m| x(m.at)).collect();
    let mut rows: Vec<f64> = Vec::new(); // the right edge of each row's last label
    // (row, x, anchored at the end, text) per group.
    let mut placed: Vec<(usize, f64, bool, String, usize)> = Vec::new();
    for (gi, g) in groups(&xs).into_iter().enumerate() {
        let text = group_label(&markers[g.clone()], tz);
        let w = text.chars().count() as f64 * CHAR_WIDTH;
        let (gx0, gx1) = (xs[g.start], xs[g.end - 1]);
        let end = gx0 > LEFT + plot_w / 2.0;
        let (mx, from, to) = if end {
            (gx1, gx1 - w, gx1)
        } else {
            (gx0, gx0, gx0 + w)
        };
        let row = match rows.iter().position(|&right| right + 8.0 <= from) {
            Some(r) => r,
            None => {
                rows.push(f64::MIN);
                rows.len() - 1
            }
        };
        rows[row] = to;
        for _ in g {
            placed.push((row, mx, end, text.clone(), gi));
        }
    }
    let top = 12.0 + ROW * rows.len().max(1) as f64;
    let bottom = top + PLOT_HEIGHT;
    let height = bottom + 40.0;

    let lo = points.iter().map(|p| p.1).fold(0.0_f64, f64::min);
    let mut hi = points.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    if hi <= lo {
        hi = lo + 1.0;
    }
    let y = |v: f64| bottom - (v - lo) / (hi - lo) * PLOT_HEIGHT;

    let from = Time::new(t0, tz);
    let to = Time::new(t1, tz);
    let title = format!("{query} from {} to {} ({})", from.full(), to.time(), pm.tz);
    let mut desc = format!(
        "{} value{} of the PromQL query {query} that the run journaled, from {} to {}, between {} and {}.",
        points.len(),
        if points.len() == 1 { "" } else { "s" },
        Time::new(points[0].0, tz).time(),
        Time::new(points[points.len() - 1].0, tz).time(),
        number(points.iter().map(|p| p.1).fold(f64::MAX, f64::min)),
        number(points.iter().map(|p| p.1).fold(f64::MIN, f64::max)),
    );
    for mk in &markers {
        let _ = write!(
            desc,
            " {} at {};",
            capitalised(&mk.label),
            Time::new(mk.at, tz).time()
        );
    }
    if desc.ends_with(';') {
        desc.pop();
        desc.push('.');
    }
    if points[0].0 > t0 + margin {
        desc.push_str(" Before the first value the run saw nothing is drawn: it was not observed.");
    }

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-labelledby="chart-title chart-desc" font-family="sans-serif" font-size="11" data-from="{}" data-to="{}" data-plot-left="{LEFT}" data-plot-width="{plot_w}">"#,
        from.utc(),
        to.utc()
    );
    let _ = writeln!(s, r#"<title id="chart-title">{}</title>"#, xml(&title));
    let _ = writeln!(s, r#"<desc id="chart-desc">{}</desc>"#, xml(&desc));
    let _ = writeln!(
        s,
        r##"<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>"##
    );
    // The impact window.
    let m = &pm.metrics;
    if let Some(start) = m.impact_start.as_ref().and_then(parse) {
        let end = m
            .time_to_mitigate
            .as_ref()
            .and_then(|d| parse(&d.at))
            .unwrap_or(t1);
        let (a, b) = (x(start), x(end.max(start)));
        let _ = writeln!(
            s,
            r##"<rect class="impact" x="{a:.1}" y="{top:.1}" width="{:.1}" height="{PLOT_HEIGHT:.1}" fill="#fbe3e3"/>"##,
            (b - a).max(1.0)
        );
    }
    // Axes, with the lowest and highest value and the window's ends.
    let _ = writeln!(
        s,
        r##"<path class="axes" d="M{LEFT:.1} {top:.1}V{bottom:.1}H{:.1}" fill="none" stroke="#666666"/>"##,
        LEFT + plot_w
    );
    for v in [lo, hi] {
        let _ = writeln!(
            s,
            r##"<text class="y-label" x="{:.1}" y="{:.1}" text-anchor="end" fill="#333333">{}</text>"##,
            LEFT - 6.0,
            y(v) + 4.0,
            number(v)
        );
    }
    for (t, anchor, at) in [(&from, "start", LEFT), (&to, "end", LEFT + plot_w)] {
        let _ = writeln!(
            s,
            r##"<text class="x-label" x="{at:.1}" y="{:.1}" text-anchor="{anchor}" fill="#333333">{} {}</text>"##,
            bottom + 16.0,
            t.date(),
            t.time()
        );
    }
    let _ = writeln!(
        s,
        r##"<text class="caption" x="{:.1}" y="{:.1}" text-anchor="middle" fill="#333333">{} ({})</text>"##,
        LEFT + plot_w / 2.0,
        bottom + 32.0,
        xml(&query),
        xml(&pm.tz)
    );
    // The values: a line through them (when more than one) and a dot on each.
    if points.len() > 1 {
        let mut d = String::new();
        for (i, (t, v)) in points.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1},{:.1}",
                if i == 0 { "" } else { " " },
                x(*t),
                y(*v)
            );
        }
        let _ = writeln!(
            s,
            r##"<polyline class="series" points="{d}" fill="none" stroke="#1f6fb4" stroke-width="2"/>"##
        );
    }
    for (t, v) in &points {
        let _ = writeln!(
            s,
            r##"<circle class="point" cx="{:.1}" cy="{:.1}" r="3" fill="#1f6fb4"/>"##,
            x(*t),
            y(*v)
        );
    }
    // The markers, and one label per group.
    let mut labelled: Option<usize> = None;
    for (i, (mk, (row, lx, end, text, gi))) in markers.iter().zip(&placed).enumerate() {
        let ly = 12.0 + ROW * *row as f64 + 9.0;
        let colour = match mk.kind {
            "impact-start" => "#c62828",
            "escalated" => "#e65100",
            "mitigated" | "end" => "#2e7d32",
            _ => "#37474f",
        };
        let mx = xs[i];
        let _ = writeln!(
            s,
            r##"<line class="marker" data-kind="{}" data-at="{}" x1="{mx:.1}" y1="{:.1}" x2="{mx:.1}" y2="{bottom:.1}" stroke="{colour}" stroke-dasharray="4 3"/>"##,
            mk.kind,
            mk.at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            ly + 3.0
        );
        if labelled != Some(*gi) {
            labelled = Some(*gi);
            let _ = writeln!(
                s,
                r##"<text class="marker-label" x="{:.1}" y="{ly:.1}" text-anchor="{}" fill="{colour}">{}</text>"##,
                if *end { lx - 3.0 } else { lx + 3.0 },
                if *end { "end" } else { "start" },
                xml(text)
            );
        }
    }
    s.push_str("</svg>\n");
    let alt = format!("{query} over the incident, with its milestones marked");
    Some(Built { svg: s, query, alt })
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// A file name as a relative markdown link target: anything but unreserved
/// characters percent-encoded, so spaces or parentheses cannot end the link.
pub fn href(file: &str) -> String {
    let mut out = String::with_capacity(file.len());
    for b in file.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_filter_by_a_number_is_charted_as_its_left_side() {
        assert_eq!(
            super::filtered_base("launch_success_rate < 0.5"),
            "launch_success_rate"
        );
        assert_eq!(
            super::filtered_base("sum(rate(x[5m])) >= 1e3"),
            "sum(rate(x[5m]))"
        );
        assert_eq!(super::filtered_base("up"), "up");
        assert_eq!(super::filtered_base("a > bool 0.5"), "a > bool 0.5");
        assert_eq!(super::filtered_base("a < b"), "a < b");
        assert_eq!(super::filtered_base("x{l!=\"v\"}"), "x{l!=\"v\"}");
    }

    use super::*;
    use crate::render::{RenderOpts, model_with};

    fn escalated() -> Journal {
        let text = include_str!("../../tests/fixtures/journals/escalated.ndjson");
        crate::journal::reader::parse(text.as_bytes()).expect("the fixture reads")
    }

    #[test]
    fn a_file_name_is_a_link_target_that_cannot_end_the_link() {
        assert_eq!(href("pm.impact.svg"), "pm.impact.svg");
        assert_eq!(href("a b(1).svg"), "a%20b%281%29.svg");
        assert_eq!(href("ü].svg"), "%C3%BC%5D.svg");
    }

    #[test]
    fn close_markers_are_grouped_under_one_label() {
        assert_eq!(
            groups(&[0.0, 10.0, 30.0, 100.0, 200.0, 220.0]),
            vec![0..3, 3..4, 4..6]
        );
        let at = |s: i64| DateTime::from_timestamp(1_520_922_480 + s, 0).unwrap();
        let mk = |s, label: &str| Marker {
            at: at(s),
            kind: "action",
            label: label.into(),
        };
        let tz: Tz = "UTC".parse().unwrap();
        assert_eq!(group_label(&[mk(0, "action")], tz), "action 06:28:00");
        assert_eq!(
            group_label(&[mk(0, "detected"), mk(5, "action"), mk(9, "action")], tz),
            "detected, action ×2 06:28:00–06:28:09"
        );
    }

    /// Every action and every verification of the escalated fixture has its line,
    /// at its time; labels in one row do not overlap.
    #[test]
    fn every_action_and_verification_is_marked_and_labels_do_not_overlap() {
        let j = escalated();
        let opts = RenderOpts {
            chart_file: Some("c.svg".into()),
            ..RenderOpts::default()
        };
        let pm = model_with(&j, &opts);
        let svg = pm.chart_svg.clone().expect("a chart");
        let lines: Vec<&str> = svg
            .lines()
            .filter(|l| l.starts_with("<line class=\"marker\""))
            .collect();
        let at_of = |l: &str| -> String {
            let i = l.find("data-at=\"").expect("data-at") + 9;
            l[i..i + l[i..].find('"').expect("quoted")].to_owned()
        };
        let marked: Vec<String> = lines.iter().map(|l| at_of(l)).collect();
        let entries: Vec<_> = pm.timeline.iter().flat_map(|d| &d.entries).collect();
        let mut wanted = 0;
        for e in &entries {
            if e.step_kind.as_deref() == Some("action")
                && matches!(e.kind, "step" | "rung")
                && let Some(op) = e.ops.first()
            {
                wanted += 1;
                let t: DateTime<Utc> = op.started.ts();
                let t = t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
                assert!(marked.contains(&t), "action {} at {t}: {marked:?}", e.title);
            }
            if let Some(v) = &e.more().verification {
                wanted += 1;
                let t: DateTime<Utc> = v.last.ts();
                let t = t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
                assert!(marked.contains(&t), "verification at {t}: {marked:?}");
            }
        }
        assert!(wanted >= 3, "the fixture has actions and verifications");
        // Labels: no two in one row overlap (same estimate as the layout).
        let mut spans: Vec<(String, f64, f64)> = Vec::new();
        for l in svg
            .lines()
            .filter(|l| l.starts_with("<text class=\"marker-label\""))
        {
            let attr = |k: &str| -> String {
                let i = l.find(&format!(" {k}=\"")).expect(k) + k.len() + 3;
                l[i..i + l[i..].find('"').unwrap()].to_owned()
            };
            let x: f64 = attr("x").parse().unwrap();
            let text = &l[l.find('>').unwrap() + 1..l.rfind("</text>").unwrap()];
            let w = text.chars().count() as f64 * CHAR_WIDTH;
            let (a, b) = if attr("text-anchor") == "end" {
                (x - w, x)
            } else {
                (x, x + w)
            };
            for (y, a2, b2) in &spans {
                assert!(*y != attr("y") || b <= *a2 || a >= *b2, "{l} overlaps");
            }
            spans.push((attr("y"), a, b));
        }
        assert!(!spans.is_empty() && spans.len() <= lines.len());
    }

    #[test]
    fn numbers_have_at_most_three_decimals() {
        assert_eq!(number(1.0), "1");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(2.0 / 3.0), "0.667");
        assert_eq!(number(-0.0001), "0");
    }

    /// A run that polled a query thousands of times draws at most MAX_POINTS (+1)
    /// dots, the last value among them.
    #[test]
    fn thousands_of_values_are_thinned_keeping_the_last_one() {
        let mut j = escalated();
        let i = j
            .records
            .iter()
            .position(
                |r| matches!(&r.event, Event::OpStarted { op, .. } if op.provider == "prometheus"),
            )
            .expect("the fixture asks Prometheus");
        let (started, finished) = (j.records[i].clone(), j.records[i + 1].clone());
        assert!(matches!(finished.event, Event::OpFinished { .. }));
        let mut extra = Vec::new();
        for n in 0..2_000 {
            let mut s = started.clone();
            let mut f = finished.clone();
            s.ts += chrono::Duration::milliseconds(n);
            f.ts = s.ts;
            if let Event::OpFinished { result, .. } = &mut f.event {
                *result = Some(serde_json::json!({"value": n as f64}));
            }
            extra.push(s);
            extra.push(f);
        }
        j.records.splice(i + 2..i + 2, extra);
        let opts = RenderOpts {
            chart_file: Some("c.svg".into()),
            ..RenderOpts::default()
        };
        let pm = model_with(&j, &opts);
        let svg = pm.chart_svg.expect("a chart");
        let dots: Vec<&str> = svg
            .lines()
            .filter(|l| l.starts_with("<circle class=\"point\""))
            .collect();
        assert!(
            (2..=MAX_POINTS + 1).contains(&dots.len()),
            "{} dots",
            dots.len()
        );
        // The last value the run journaled is the last dot, at its time's x.
        let (_, points) = collect(&j).series().into_iter().next().expect("one query");
        let last = points.last().expect("values").0;
        let attr = |k: &str| -> String {
            let at = svg.find(&format!(" {k}=\"")).expect(k) + k.len() + 3;
            svg[at..at + svg[at..].find('"').expect("quoted")].to_owned()
        };
        let t0: DateTime<Utc> = attr("data-from").parse().unwrap();
        let t1: DateTime<Utc> = attr("data-to").parse().unwrap();
        let want = LEFT
            + (last - t0).num_milliseconds() as f64 / (t1 - t0).num_milliseconds() as f64
                * (WIDTH - LEFT - RIGHT);
        let dot = dots.last().expect("a dot");
        assert!(
            dot.contains(&format!("cx=\"{want:.1}\"")),
            "{dot}, want cx {want:.1}"
        );
    }
}
