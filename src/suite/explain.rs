//! Why a run ended as it did, from its journal: the step (and rung) that failed or
//! paused, its error or the verification it did not meet, so a failing test says why
//! without the reader opening the journal.

use std::collections::HashMap;

use crate::journal::event::{Event, Outcome, Record};

/// The lines that explain how the run in `records` ended, or none when it ended
/// without a failing or pausing step (succeeded, or not applicable).
pub fn why_it_ended(records: &[Record]) -> Vec<String> {
    let mut titles: HashMap<&str, &str> = HashMap::new();
    let mut rung_titles: HashMap<(&str, &str), &str> = HashMap::new();
    // The step that ended the run: the last one that finished badly or paused.
    let mut culprit: Option<Culprit<'_>> = None;
    for r in records {
        match &r.event {
            Event::StepStarted { step, title, .. } => {
                titles.insert(step, title);
            }
            Event::RungStarted {
                step, rung, title, ..
            } => {
                rung_titles.insert((step, rung), title);
            }
            Event::StepFinished {
                step,
                outcome,
                summary,
                ..
            } if matches!(
                outcome,
                Outcome::Failed | Outcome::TimedOut | Outcome::Aborted | Outcome::Unknown
            ) =>
            {
                culprit = Some(Culprit {
                    step,
                    verb: outcome_verb(*outcome),
                    why: summary,
                });
            }
            Event::Paused { step, reason, .. } => {
                culprit = Some(Culprit {
                    step,
                    verb: "paused",
                    why: reason,
                });
            }
            _ => {}
        }
    }
    let Some(c) = culprit else {
        return Vec::new();
    };
    // In that step: the rung it was on, the last operation error, the last unmet
    // verification (each may be older than the other; both can matter).
    let (mut rung, mut error, mut unmet) = (None, None, None);
    for r in records {
        match &r.event {
            Event::RungStarted { step, rung: id, .. } if step == c.step => rung = Some(id.as_str()),
            Event::OpFinished {
                scope,
                error: Some(e),
                ..
            } if scope.step == c.step => error = Some(e.as_str()),
            Event::VerifyPolled {
                scope,
                ok: false,
                detail: Some(d),
                ..
            } if scope.step == c.step => unmet = Some(d.as_str()),
            _ => {}
        }
    }
    let mut at = format!("step `{}`", c.step);
    if let Some(title) = titles.get(c.step) {
        at.push_str(&format!(" (“{title}”)"));
    }
    if let Some(id) = rung {
        at.push_str(&format!(", rung `{id}`"));
        if let Some(title) = rung_titles.get(&(c.step, id)) {
            at.push_str(&format!(" (“{title}”)"));
        }
    }
    let mut lines = vec![format!("{} at {at}: {}", c.verb, c.why)];
    if let Some(e) = error.filter(|e| !c.why.contains(e)) {
        lines.push(format!("last error: {e}"));
    }
    if let Some(d) = unmet.filter(|d| !c.why.contains(d) && Some(*d) != error) {
        lines.push(format!("last verification: {d}"));
    }
    lines
}

struct Culprit<'a> {
    step: &'a str,
    verb: &'static str,
    why: &'a str,
}

fn outcome_verb(o: Outcome) -> &'static str {
    match o {
        Outcome::TimedOut => "timed out",
        Outcome::Aborted => "aborted",
        Outcome::Unknown => "outcome unknown",
        _ => "failed",
    }
}
