//! How journal values are shown: outcome and status labels, approval sources, output
//! cut to size and folded into details.

use serde_json::Value;

use crate::journal::event::{self, ApprovalSource, Decision, RunStatus};
use crate::render::format::duration_ms;
use crate::render::model::{Detail, Entry, Outcome, Wait, Word};

/// Output longer than this (bytes) is cut in the document; the journal's side file
/// (`output_file`) keeps all of it.
const MAX_OUTPUT: usize = 8 * 1024;

/// The side files a provider streamed cut outputs to (`stdout_file`, `body_file`:
/// each the whole stream, where the journal keeps its first bytes), joined with
/// ", "; `None` when nothing was cut.
pub(super) fn spilled_files(result: Option<&Value>) -> Option<String> {
    let m = result?.as_object()?;
    let files: Vec<&str> = m
        .iter()
        .filter(|(k, _)| {
            k.strip_suffix("_file").is_some_and(|stream| {
                m.get(&format!("{stream}_truncated")) == Some(&Value::Bool(true))
            })
        })
        .filter_map(|(_, v)| v.as_str())
        .collect();
    (!files.is_empty()).then(|| files.join(", "))
}

pub fn outcome(o: event::Outcome) -> &'static Outcome {
    use event::Outcome as O;
    const fn words(code: &'static str, label: &'static str, ok: bool) -> Outcome {
        Outcome { code, label, ok }
    }
    static OK: Outcome = words("ok", "OK", true);
    static FAILED: Outcome = words("failed", "FAILED", false);
    static SKIPPED: Outcome = words("skipped", "SKIPPED", false);
    static NOT_APPLICABLE: Outcome = words("not_applicable", "NOT APPLICABLE", false);
    static UNKNOWN: Outcome = words("unknown", "UNKNOWN (no result in the journal)", false);
    static TIMED_OUT: Outcome = words("timed_out", "TIMED OUT", false);
    static ABORTED: Outcome = words("aborted", "ABORTED", false);
    match o {
        O::Ok => &OK,
        O::Failed => &FAILED,
        O::Skipped => &SKIPPED,
        O::NotApplicable => &NOT_APPLICABLE,
        O::Unknown => &UNKNOWN,
        O::TimedOut => &TIMED_OUT,
        O::Aborted => &ABORTED,
    }
}

pub(super) fn no_result() -> &'static Outcome {
    static NO_RESULT: Outcome = Outcome {
        code: "unknown",
        label: "NO RESULT (the run stopped before it finished)",
        ok: false,
    };
    &NO_RESULT
}

pub(super) fn status(s: RunStatus) -> (&'static str, &'static str) {
    match s {
        RunStatus::Succeeded => ("succeeded", "Succeeded"),
        RunStatus::Failed => ("failed", "Failed"),
        RunStatus::Aborted => ("aborted", "Aborted"),
        RunStatus::NotApplicable => ("not_applicable", "Not applicable"),
        RunStatus::Paused => ("paused", "Paused, waiting for a person"),
    }
}

pub(super) fn decision(d: Decision) -> &'static str {
    match d {
        Decision::Approved => "approved",
        Decision::Declined => "declined",
        Decision::Skipped => "skipped",
        Decision::Aborted => "aborted",
        Decision::Expired => "expired (nobody answered in time)",
    }
}

pub(super) fn source(s: ApprovalSource) -> (&'static str, &'static str, bool) {
    match s {
        ApprovalSource::Prompt => ("prompt", "at the prompt", false),
        ApprovalSource::Yes => ("yes", "in advance with --yes", false),
        ApprovalSource::Flag => ("flag", "in advance with --approve", false),
        ApprovalSource::Unattended => ("unattended", "unattended (no person was asked)", true),
        ApprovalSource::Automatic => ("automatic", "automatically (runbook demo/test)", true),
        ApprovalSource::Remote => ("remote", "from another terminal (runbook approve)", false),
    }
}

/// A JSON value as one line of text: strings as they are, anything else as JSON.
pub fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Cut `s` to [`MAX_OUTPUT`] bytes at a character boundary, saying how much is missing.
pub(super) fn bounded(s: &str) -> String {
    if s.len() <= MAX_OUTPUT {
        return s.to_owned();
    }
    let mut end = MAX_OUTPUT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n… ({} more bytes not shown)", &s[..end], s.len() - end)
}

/// Push onto a vector that usually holds one or two items, each held per entry to
/// the end of the journal: room for exactly as many up to four (a first push makes
/// room for four, 216 bytes a step unused for one `Shown`: issue 18), then by doubling.
pub(super) fn push_small<T>(v: &mut Vec<T>, item: T) {
    if v.len() == v.capacity() && v.len() < 4 {
        v.reserve_exact(1);
    }
    v.push(item);
}

/// The folded blocks showing an operation's result: stdout and stderr of a command
/// apart, a string as text, anything else as pretty JSON.
pub(super) fn result_details(what: &str, result: &Value, out: &mut Vec<Detail>) {
    let mut masked = result.clone();
    crate::render::summary::mask(&mut masked);
    let result = &masked;
    let mut push = |summary: String, body: String, lang: &str| {
        if !body.trim().is_empty() {
            push_small(
                out,
                Detail {
                    summary,
                    body: bounded(&body),
                    lang: lang.to_owned(),
                },
            );
        }
    };
    match result {
        Value::Null => {}
        Value::String(s) => push(format!("Output of {what}"), s.clone(), "text"),
        Value::Object(map) if map.contains_key("stdout") || map.contains_key("stderr") => {
            for (key, label) in [("stdout", "Output"), ("stderr", "Errors (stderr)")] {
                if let Some(v) = map.get(key) {
                    push(format!("{label} of {what}"), plain(v), "text");
                }
            }
        }
        other => push(
            format!("Result of {what}"),
            serde_json::to_string_pretty(other).unwrap_or_else(|_| other.to_string()),
            "json",
        ),
    }
}

/// The first line of `s`, cut to 200 characters.
pub(super) fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.chars().count() > 200 {
        line.chars().take(199).collect::<String>() + "…"
    } else {
        line.to_owned()
    }
}

/// The entry's kind for people.
/// An entry's label: a fixed word unless it names a rung or a continuation (issue
/// 18: not a string allocated per entry).
pub(super) fn label(e: &Entry) -> Word {
    let l = base_label(e);
    if e.continued {
        Word::Owned(format!("{l} (continued after the resume)"))
    } else {
        l
    }
}

fn base_label(e: &Entry) -> Word {
    Word::Borrowed(match e.kind {
        "start" => "Run started",
        "resume" => "Run resumed",
        "rung" => {
            return match &e.rung {
                Some(r) => Word::Owned(format!("Rung {} of {}", r.index, r.of)),
                None => Word::Borrowed("Rung"),
            };
        }
        "escalation" => "Escalation",
        "skip" => "Skipped",
        "note" => "Note",
        "undo" => "Undo",
        "pause" => "Paused",
        "finish" if e.more().milestones.iter().any(|m| m == "RUN PAUSED") => "Run stopped",
        "finish" => "Run ended",
        "step_end" => "Finished",
        _ => match e.step_kind.as_deref() {
            Some("check") => "Check",
            Some("action") => "Action",
            Some("verify") => "Verify",
            Some("manual") => "Manual step",
            _ => "Step",
        },
    })
}

pub(super) fn long_weekday(short: &str) -> String {
    match short {
        "Mon" => "Monday",
        "Tue" => "Tuesday",
        "Wed" => "Wednesday",
        "Thu" => "Thursday",
        "Fri" => "Friday",
        "Sat" => "Saturday",
        "Sun" => "Sunday",
        other => other,
    }
    .to_owned()
}

pub(super) fn add_wait(w: &mut Wait, ms: u64) {
    w.total_ms += ms;
    w.count += 1;
    w.total = duration_ms(w.total_ms);
}
