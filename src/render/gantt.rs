//! The mermaid gantt chart of a run's steps (GitHub renders ```` ```mermaid ```` blocks).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// One bar: a step, or a rung of an escalation ladder.
#[derive(Debug, Clone)]
pub struct Span {
    pub label: String,
    /// The step kind, or `ladder:<step>` for the rungs of one ladder.
    pub section: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub ok: bool,
    /// Still running when the journal ends (a paused or interrupted run).
    pub open: bool,
    /// The step has an escalation ladder (its rungs are drawn instead of the step).
    pub ladder: bool,
    pub step: String,
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

/// The chart's body (without the fence), bars in the display zone. Spans are drawn in
/// the order they started; a ladder step is drawn as its rungs.
pub fn chart(spans: &[Span], tz: Tz) -> String {
    let mut spans: Vec<&Span> = spans
        .iter()
        .filter(|s| !s.ladder || s.section.starts_with("ladder:"))
        .collect();
    spans.sort_by_key(|s| s.start);
    let fmt = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string();
    let mut out = String::from("gantt\n    dateFormat YYYY-MM-DD HH:mm:ss\n    axisFormat %H:%M\n");
    let mut current: Option<&str> = None;
    for (n, s) in spans.iter().enumerate() {
        if current != Some(s.section.as_str()) {
            out.push_str(&format!("    section {}\n", section_title(&s.section)));
            current = Some(&s.section);
        }
        // A bar needs a width to be seen; sub-second steps get one second.
        let end = if s.end <= s.start {
            s.start + chrono::Duration::seconds(1)
        } else {
            s.end
        };
        let tag = match (s.ok, s.open) {
            (true, _) => "done",
            (false, true) => "active",
            (false, false) => "crit",
        };
        out.push_str(&format!(
            "    {} :{tag}, t{}, {}, {}\n",
            label(&s.label),
            n + 1,
            fmt(s.start),
            fmt(end)
        ));
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_cannot_break_the_chart() {
        assert_eq!(label("a: b # c; `d`\ne"), "a b c d e");
    }
}
