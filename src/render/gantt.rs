//! The mermaid gantt chart of a run's steps (GitHub renders ```` ```mermaid ```` blocks).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::model::{StepRow, Word};

/// One bar: a step, or a rung of an escalation ladder.
///
/// Held per step until the journal's end: a step's bar names its row of the steps
/// table (whose title is its label and kind its section) instead of copying two
/// strings, 48 bytes where it was ~170 and two allocations (issue 18).
#[derive(Debug, Clone)]
pub struct Span {
    pub of: SpanOf,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub ok: bool,
    /// Still running when the journal ends (a paused or interrupted run).
    pub open: bool,
    /// The step has an escalation ladder (its rungs are drawn instead of the step).
    pub ladder: bool,
}

/// What a bar stands for.
#[derive(Debug, Clone)]
pub enum SpanOf {
    /// The step of this row of the steps table.
    Row(u32),
    /// Anything else (a rung, a step without a row), named.
    Named(Box<Named>),
}

/// A bar's names when it is not a row's.
#[derive(Debug, Clone)]
pub struct Named {
    pub label: String,
    /// The step kind, or `ladder:<step>` for the rungs of one ladder.
    pub section: Word,
    pub step: String,
}

impl SpanOf {
    /// The bar of the step of row `row`.
    pub fn row(row: usize) -> SpanOf {
        SpanOf::Row(u32::try_from(row).expect("invariant: fewer than 2^32 steps"))
    }

    /// A bar named `label` in `section`, of the step `step`.
    pub fn named(label: String, section: Word, step: String) -> SpanOf {
        SpanOf::Named(Box::new(Named {
            label,
            section,
            step,
        }))
    }
}

impl Span {
    /// The bar's label.
    pub fn label<'a>(&'a self, rows: &'a [Box<StepRow>]) -> &'a str {
        match &self.of {
            SpanOf::Row(r) => &rows[*r as usize].title,
            SpanOf::Named(n) => &n.label,
        }
    }

    /// The step kind, or `ladder:<step>` for the rungs of one ladder.
    pub fn section<'a>(&'a self, rows: &'a [Box<StepRow>]) -> &'a str {
        match &self.of {
            SpanOf::Row(r) => &rows[*r as usize].kind,
            SpanOf::Named(n) => &n.section,
        }
    }

    /// The step's id.
    pub fn step<'a>(&'a self, rows: &'a [Box<StepRow>]) -> &'a str {
        match &self.of {
            SpanOf::Row(r) => &rows[*r as usize].id,
            SpanOf::Named(n) => &n.step,
        }
    }
}

/// Mermaid task names end at `:` and `#` starts a comment; `;` separates statements
/// and backticks would close the surrounding fence, so none of them may appear.
fn label(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| match c {
            ':' | ';' | '#' | '`' | '\n' | '\r' | '\t' => ' ',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    let words: Vec<&str> = cleaned.split_whitespace().collect();
    let mut out = words.join(" ");
    if out.chars().count() > 60 {
        out = out.chars().take(59).collect::<String>() + "…";
    }
    if out.is_empty() {
        "step".to_owned()
    } else {
        out
    }
}

fn section_title(section: &str) -> String {
    match section {
        "check" => "Checks".to_owned(),
        "action" => "Actions".to_owned(),
        "verify" => "Verifications".to_owned(),
        "manual" => "Manual steps".to_owned(),
        s => match s.strip_prefix("ladder:") {
            Some(step) => format!("Escalation of {}", label(step)),
            None => label(s),
        },
    }
}

/// Bars at most: mermaid refuses a diagram over `maxTextSize` (50 000 characters by
/// default, ~90 per bar), so a long run's bars are grouped under that.
const MAX_BARS: usize = 200;

/// Consecutive bars of one section with the same state are drawn as one from this
/// many on ("6 checks").
const GROUP_FROM: usize = 3;

/// One drawn bar: a span, or a run of them.
struct Bar<'a> {
    first: &'a Span,
    count: usize,
    end: DateTime<Utc>,
}

fn tag(s: &Span) -> &'static str {
    match (s.ok, s.open) {
        (true, _) => "done",
        (false, true) => "active",
        (false, false) => "crit",
    }
}

/// Group consecutive spans of one section (`same_state`: and the same state).
fn group<'a>(spans: &[&'a Span], rows: &[Box<StepRow>], same_state: bool) -> Vec<Bar<'a>> {
    let mut bars: Vec<Bar<'a>> = Vec::new();
    let mut i = 0;
    while i < spans.len() {
        let first = spans[i];
        let mut j = i + 1;
        while j < spans.len()
            && !first.section(rows).starts_with("ladder:")
            && spans[j].section(rows) == first.section(rows)
            && (!same_state || tag(spans[j]) == tag(first))
        {
            j += 1;
        }
        let run = &spans[i..j];
        if run.len() >= GROUP_FROM || !same_state {
            bars.push(Bar {
                first,
                count: run.len(),
                end: run.iter().map(|s| s.end).max().unwrap_or(first.end),
            });
        } else {
            bars.extend(run.iter().map(|s| Bar {
                first: s,
                count: 1,
                end: s.end,
            }));
        }
        i = j;
    }
    bars
}

/// The chart's body (without the fence), bars in the display zone. Spans are drawn in
/// the order they started; a ladder step is drawn as its rungs; three or more
/// consecutive steps of one kind that ended alike are one bar, and a chart that would
/// still be too big for mermaid groups every run of one kind.
/// `rows` are the steps table's, which step bars name.
pub fn chart(spans: &[Span], rows: &[Box<StepRow>], tz: Tz) -> String {
    let mut spans: Vec<&Span> = spans
        .iter()
        .filter(|s| !s.ladder || s.section(rows).starts_with("ladder:"))
        .collect();
    spans.sort_by_key(|s| s.start);
    let mut bars = group(&spans, rows, true);
    if bars.len() > MAX_BARS {
        bars = group(&spans, rows, false);
    }
    let hidden = bars.len().saturating_sub(MAX_BARS);
    bars.truncate(MAX_BARS);
    let fmt = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string();
    let mut out = String::from("gantt\n    dateFormat YYYY-MM-DD HH:mm:ss\n    axisFormat %H:%M\n");
    let mut current: Option<&str> = None;
    for (n, b) in bars.iter().enumerate() {
        let s = b.first;
        let section = s.section(rows);
        if current != Some(section) {
            out.push_str(&format!("    section {}\n", section_title(section)));
            current = Some(section);
        }
        // A bar needs a width to be seen; sub-second steps get one second.
        let end = if b.end <= s.start {
            s.start + chrono::Duration::seconds(1)
        } else {
            b.end
        };
        let name = if b.count > 1 {
            format!("{} {}", b.count, section_title(section).to_lowercase())
        } else {
            label(s.label(rows))
        };
        let tag = if b.count > 1 && !bars_alike(&spans, b) {
            "active"
        } else {
            tag(s)
        };
        out.push_str(&format!(
            "    {name} :{tag}, t{}, {}, {}\n",
            n + 1,
            fmt(s.start),
            fmt(end)
        ));
    }
    if hidden > 0 {
        out.push_str(&format!(
            "    %% {hidden} more bars not drawn (mermaid's size limit)\n"
        ));
    }
    out.trim_end().to_owned()
}

/// Whether every span a grouped bar stands for ended alike (else it is drawn neutral).
fn bars_alike(spans: &[&Span], b: &Bar<'_>) -> bool {
    let Some(i) = spans.iter().position(|s| std::ptr::eq(*s, b.first)) else {
        return true;
    };
    spans[i..i + b.count].iter().all(|s| tag(s) == tag(b.first))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(section: &str, ok: bool, secs: i64) -> Span {
        let t0: DateTime<Utc> = "2018-03-13T06:28:00Z".parse().unwrap();
        Span {
            of: SpanOf::named(
                format!("step {secs}"),
                section.to_owned().into(),
                format!("s{secs}"),
            ),
            start: t0 + chrono::Duration::seconds(secs),
            end: t0 + chrono::Duration::seconds(secs + 1),
            ok,
            open: false,
            ladder: false,
        }
    }

    #[test]
    fn consecutive_checks_are_one_bar_and_a_huge_run_stays_under_the_limit() {
        let mut spans: Vec<Span> = (0..6).map(|i| span("check", true, i)).collect();
        spans.push(span("action", true, 10));
        let c = chart(&spans, &[], Tz::UTC);
        assert!(
            c.contains("    6 checks :done, t1, 2018-03-13 06:28:00, 2018-03-13 06:28:06"),
            "{c}"
        );
        assert!(c.contains("    step 10 :done, t2,"), "{c}");
        // 100 000 steps alternating kinds and outcomes: no grouping by state helps.
        let big: Vec<Span> = (0..100_000)
            .map(|i| span(if i % 2 == 0 { "check" } else { "action" }, i % 3 == 0, i))
            .collect();
        let c = chart(&big, &[], Tz::UTC);
        assert!(c.len() < 50_000, "{} characters", c.len());
        assert!(c.contains("more bars not drawn"), "the cut is said");
    }

    #[test]
    fn labels_cannot_break_the_chart() {
        assert_eq!(label("a: b # c; `d`\ne"), "a b c d e");
    }
}
