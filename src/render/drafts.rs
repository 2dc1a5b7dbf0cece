//! Generated first drafts of the human sections: summary, questions, lessons and
//! action items. Markdown built here from escaped pieces; a person rewrites them.

use super::escape::{code, text};
use super::model::{ActionDrafts, Drafts, Entry, Postmortem};

/// Gates that kept the run waiting longer than this are worth a process item.
const SLOW_GATE_MS: u64 = 5 * 60 * 1000;

fn list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("- {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn entries(pm: &Postmortem) -> impl Iterator<Item = &Entry> {
    pm.timeline
        .iter()
        .flat_map(|d| d.entries.iter().map(|e| &**e))
}

/// `s` cut to `n` characters.
fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        s.chars().take(n - 1).collect::<String>() + "…"
    } else {
        s.to_owned()
    }
}

fn quoted(s: &str) -> String {
    format!("“{}”", text(s))
}

pub fn draft(pm: &Postmortem) -> Drafts {
    Drafts {
        summary: summary(pm),
        questions: list(&questions(pm)),
        went_well: list(&went_well(pm)),
        went_wrong: list(&went_wrong(pm)),
        actions: actions(pm),
        detection: detection(pm),
        resolution: resolution(pm),
    }
}

/// Which check found the problem, what it saw, with the graph when it asked
/// Prometheus.
fn detection(pm: &Postmortem) -> String {
    let Some(d) = &pm.metrics.time_to_detect else {
        return String::new();
    };
    let found = pm
        .steps
        .iter()
        .find(|s| s.id == d.step)
        .and_then(|s| s.summary.as_deref())
        .filter(|s| !s.is_empty())
        .map(|s| format!(": {}", text(s)))
        .unwrap_or_default();
    let link = entries(pm)
        .filter(|e| e.step.as_deref() == Some(&d.step))
        .flat_map(|e| &e.ops)
        .find_map(|o| o.more().link.as_deref())
        .map(|l| format!(" ([graph]({l}))"))
        .unwrap_or_default();
    let mut s = format!(
        "The check {} ({}) confirmed the problem at {}{found}{link}.",
        quoted(&d.title),
        code(&d.step),
        d.at.time()
    );
    if let Some(after) = &d.from_impact {
        s.push_str(&format!(" That was {after} after the impact started."));
    } else {
        s.push_str(" _Which alert or person noticed it first, and when?_");
    }
    s
}

/// What fixed it: the rung that worked (with the commands it ran) or the actions,
/// and the verification that proved it.
fn resolution(pm: &Postmortem) -> String {
    let mut parts = Vec::new();
    for st in pm.steps.iter().filter(|st| st.kind == "action") {
        let Some(fixed) = &st.fixed_by else {
            continue;
        };
        let Some(r) = st.rungs.iter().find(|r| &r.id == fixed) else {
            continue;
        };
        let ran: Vec<String> = entries(pm)
            .filter(|e| {
                e.step.as_deref() == Some(&st.id) && e.rung.as_ref().is_some_and(|x| &x.id == fixed)
            })
            .flat_map(|e| &e.ops)
            .filter(|o| o.mutating)
            .map(|o| code(&o.display))
            .collect();
        let cmds = match ran.len() {
            0 => String::new(),
            n if n <= 3 => format!(": {}", ran.join(", ")),
            n => format!(": {} and {} more", ran[..2].join(", "), n - 2),
        };
        parts.push(format!(
            "{} was fixed by rung {} of {}, {}{cmds}.",
            quoted(&st.title),
            r.index,
            r.of,
            quoted(&r.title)
        ));
    }
    if parts.is_empty() {
        let acted: Vec<String> = pm
            .steps
            .iter()
            .filter(|st| st.kind == "action" && st.outcome.as_ref().is_some_and(|o| o.ok))
            .map(|st| quoted(&st.title))
            .collect();
        if !acted.is_empty() {
            parts.push(format!("The run did: {}.", acted.join(", ")));
        }
    }
    // What `runbook undo` (or `on_failure: undo`) took back, and what it could not.
    // The last entry of each step's undo: an undo paused at its gate and continued
    // later has an entry per attempt.
    let undos: Vec<&Entry> = entries(pm).filter(|e| e.kind == "undo").collect();
    for (n, e) in undos.iter().enumerate() {
        if undos[n + 1..].iter().any(|later| later.step == e.step) {
            continue;
        }
        let step = e.step.as_deref().unwrap_or_default();
        let how = match (&e.more().skip_reason, &e.outcome) {
            (Some(why), _) => format!("not undone ({})", text(why)),
            (None, Some(o)) => o.label.to_lowercase(),
            (None, None) => "not finished".to_owned(),
        };
        let summary = match (&e.more().skip_reason, e.summary.as_deref()) {
            (None, Some(s)) if !s.is_empty() => format!(": {}", text(s)),
            _ => String::new(),
        };
        parts.push(format!(
            "Undone: {} ({}) {how}{summary}.",
            quoted(&e.title),
            code(step)
        ));
    }
    if let Some(m) = &pm.metrics.time_to_mitigate {
        parts.push(format!(
            "The fix was verified at {} ({}).",
            m.at.time(),
            quoted(&m.title)
        ));
    }
    for st in pm.steps.iter().filter(|st| st.kind == "verify") {
        if let (Some(o), Some(sum)) = (&st.outcome, st.summary.as_deref()) {
            parts.push(format!(
                "{}: {}{}.",
                quoted(&st.title),
                o.label.to_lowercase(),
                if sum.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", text(sum))
                }
            ));
        }
    }
    parts.join(" ")
}

/// Escape the pipes of a markdown line not escaped yet, so it fits in a table cell.
fn in_cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev = ' ';
    for c in s.chars() {
        if c == '|' && prev != '\\' {
            out.push('\\');
        }
        out.push(c);
        prev = c;
    }
    out
}

/// The action items as table rows: item, type, then blanks for people.
fn action_table(groups: &[(&str, &[String])]) -> String {
    let mut rows = Vec::new();
    for (kind, items) in groups {
        for i in *items {
            rows.push(format!("| {} | {kind} | _P?_ | _?_ | _?_ |", in_cell(i)));
        }
    }
    rows.join("\n")
}

fn summary(pm: &Postmortem) -> String {
    let r = &pm.run;
    let mut s = String::new();
    if let Some(start) = &r.started {
        s.push_str(&format!(
            "On {} at {} ({}), {} ran the runbook {} on {}{}.",
            start.date(),
            &start.time()[..5],
            text(&pm.tz),
            text(&r.operator),
            code(&r.runbook.name),
            code(&r.host),
            if r.dry_run { " as a dry run" } else { "" }
        ));
    }
    if let Some(d) = &pm.metrics.time_to_detect {
        s.push_str(&format!(
            " The checks confirmed the problem {} after the start ({}).",
            d.after,
            quoted(&d.title)
        ));
    }
    let found: Vec<String> = pm
        .steps
        .iter()
        .filter(|st| st.kind == "check" && st.outcome.as_ref().is_some_and(|o| o.ok))
        .map(|st| match st.summary.as_deref().filter(|x| !x.is_empty()) {
            Some(summary) => format!(
                "{}: {}",
                quoted(&shorten(&st.title, 40)),
                text(&shorten(summary, 60))
            ),
            None => quoted(&st.title),
        })
        .collect();
    if !found.is_empty() {
        s.push_str(&format!(" They found: {}.", found.join("; ")));
    }
    for st in pm.steps.iter().filter(|st| st.kind == "action") {
        let Some(o) = &st.outcome else {
            s.push_str(&format!(" {} had not finished.", quoted(&st.title)));
            continue;
        };
        let mut line = format!(" {}: {}", quoted(&st.title), o.label.to_lowercase());
        if let Some(fixed) = &st.fixed_by
            && let Some(r) = st.rungs.iter().find(|r| &r.id == fixed)
        {
            line.push_str(&format!(
                ", fixed by rung {} of {} ({})",
                r.index,
                r.of,
                quoted(&r.title)
            ));
            match r.index {
                0 | 1 => {}
                2 => line.push_str(" after the gentler rung did not work"),
                n => line.push_str(&format!(" after {} gentler rungs did not work", n - 1)),
            }
        }
        if let Some(d) = &st.duration {
            line.push_str(&format!(", in {d}"));
        }
        line.push('.');
        s.push_str(&line);
    }
    let paused = &pm.metrics.paused;
    if paused.count > 0 && r.status != "paused" {
        s.push_str(&format!(
            " It stood paused, waiting for a person, for {} ({} time{}).",
            paused.total,
            paused.count,
            if paused.count == 1 { "" } else { "s" }
        ));
    }
    let status = match r.status.as_str() {
        "succeeded" => "succeeded".to_owned(),
        "failed" => "failed".to_owned(),
        "aborted" => "was aborted".to_owned(),
        "not_applicable" => "ended as not applicable: the checks found nothing to fix".to_owned(),
        "paused" => "paused, waiting for a person".to_owned(),
        _ => "has no end in the journal".to_owned(),
    };
    s.push_str(&format!(" The run {status}"));
    if let Some(d) = &r.duration {
        s.push_str(&format!(" after {d}"));
    }
    match &r.reason {
        Some(reason) => s.push_str(&format!(" ({}).", text(reason))),
        None => s.push('.'),
    }
    s.trim_start().to_owned()
}

fn questions(pm: &Postmortem) -> Vec<String> {
    let mut q = vec![
        "What started the incident (the trigger), and since when were users affected?".to_owned(),
    ];
    for e in entries(pm) {
        if let Some(esc) = &e.more().escalation {
            q.push(format!("Why did {} not work?", quoted(&esc.from.title)));
        }
        if e.kind != "rung"
            && let Some(o) = &e.outcome
            && matches!(o.code, "failed" | "timed_out" | "aborted" | "unknown")
            && let Some(step) = &e.step
        {
            q.push(format!(
                "Why did {} end {}?",
                code(step),
                o.label.to_lowercase()
            ));
        }
        if let Some(g) = &e.more().gate
            && g.decision.as_deref() == Some("declined")
        {
            q.push(format!(
                "Why was {} declined at its gate?",
                quoted(&e.title)
            ));
        }
        // Only while the run is still paused: a later resume answered it.
        if let Some(p) = &e.more().pause
            && pm.run.status == "paused"
        {
            q.push(format!(
                "Who continues the paused run ({})?",
                code(&p.resume)
            ));
        }
    }
    q.push("How could the problem have been detected earlier?".to_owned());
    q
}

fn went_well(pm: &Postmortem) -> Vec<String> {
    let mut w = Vec::new();
    if let Some(d) = &pm.metrics.time_to_detect {
        w.push(format!(
            "The checks confirmed the problem {} after the run started.",
            d.after
        ));
    }
    if let Some(m) = &pm.metrics.time_to_mitigate {
        w.push(format!(
            "The first fix was verified {} after the run started ({}).",
            m.after,
            quoted(&m.title)
        ));
    }
    for st in &pm.steps {
        if let Some(fixed) = &st.fixed_by
            && let Some(r) = st.rungs.iter().find(|r| &r.id == fixed)
            && r.index < r.of
        {
            w.push(format!(
                "Escalation stopped at the first rung that worked ({}); the {} heavier ones were not needed.",
                quoted(&r.title),
                r.of - r.index
            ));
        }
    }
    w
}

fn went_wrong(pm: &Postmortem) -> Vec<String> {
    let mut w = Vec::new();
    for e in entries(pm) {
        if let Some(esc) = &e.more().escalation {
            w.push(format!(
                "{} did not work ({}); the run escalated to {}.",
                quoted(&esc.from.title),
                text(&esc.reason),
                quoted(&esc.to.title)
            ));
        }
        if e.kind != "rung"
            && let Some(o) = &e.outcome
            && !o.ok
            && o.code != "skipped"
            && o.code != "not_applicable"
        {
            let mut line = format!("{} ended {}", quoted(&e.title), o.label.to_lowercase());
            if let Some(s) = &e.summary {
                line.push_str(&format!(": {}", text(s)));
            }
            line.push('.');
            w.push(line);
        }
        if let Some(g) = &e.more().gate
            && g.waited_ms > SLOW_GATE_MS
        {
            w.push(format!(
                "The gate of {} waited {} for a decision.",
                quoted(&e.title),
                g.waited.as_deref().unwrap_or("?")
            ));
        }
    }
    w
}

fn actions(pm: &Postmortem) -> ActionDrafts {
    let (mut inv, mut process, mut docs, mut tech) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for e in entries(pm) {
        let step = e.step.as_deref().unwrap_or("");
        if e.kind != "rung"
            && let Some(o) = &e.outcome
            && matches!(o.code, "failed" | "unknown" | "timed_out")
        {
            let why = e
                .summary
                .as_deref()
                .map(|s| format!(": {}", text(s)))
                .unwrap_or_default();
            inv.push(format!(
                "Find out why {} ({}) {}{why}.",
                code(step),
                quoted(&e.title),
                o.label.to_lowercase()
            ));
        }
        for op in e.ops.iter().filter(|op| {
            op.outcome
                .as_ref()
                .is_some_and(|o| o.code == "failed" || o.code == "timed_out")
        }) {
            inv.push(format!(
                "Find out why {} failed{}.",
                code(&op.display),
                op.more()
                    .error_line
                    .as_deref()
                    .map(|e| format!(": {}", text(e)))
                    .unwrap_or_default()
            ));
        }
        if let Some(v) = &e.more().verification
            && v.outcome == "timed_out"
        {
            inv.push(format!(
                "The verification of {} timed out after {} ({} polls): find out whether the fix needs longer or did not work, and adjust `within`.",
                quoted(&e.title),
                v.took,
                v.polls
            ));
        }
        if let Some(m) = &e.more().manual {
            tech.push(format!(
                "Automate the manual step {}{}.",
                quoted(&e.title),
                m.waited
                    .as_deref()
                    .map(|w| format!(" (the run waited {w} for a person)"))
                    .unwrap_or_default()
            ));
        }
        if let Some(esc) = &e.more().escalation {
            docs.push(format!(
                "Document that {} does not resolve this, so people go straight to {}.",
                quoted(&esc.from.title),
                quoted(&esc.to.title)
            ));
        }
        if let Some(g) = &e.more().gate {
            if g.waited_ms > SLOW_GATE_MS {
                process.push(format!(
                    "The gate of {} waited {}: decide whether it can be approved in advance (`--approve {}`) or run unattended.",
                    quoted(&e.title),
                    g.waited.as_deref().unwrap_or("?"),
                    text(step)
                ));
            }
            if g.decision.as_deref() == Some("declined") {
                process.push(format!(
                    "{} was declined at its gate: record why, and change the runbook if the step is wrong.",
                    quoted(&e.title)
                ));
            }
        }
        if let Some(n) = &e.more().note {
            let t = n.text.trim_start();
            if let Some(rest) = t.strip_prefix("TODO:").or_else(|| t.strip_prefix("TODO")) {
                process.push(format!("{} (note by {})", text(rest.trim()), text(&n.by)));
            }
        }
    }
    if pm.run.status == "aborted" {
        process.push(format!(
            "The run was aborted{}: decide whether the runbook or the gates need to change.",
            pm.run
                .reason
                .as_deref()
                .map(|r| format!(" ({})", text(r)))
                .unwrap_or_default()
        ));
    }
    let table = action_table(&[
        ("investigate", &inv),
        ("mitigate", &tech),
        ("process", &process),
        ("documentation", &docs),
    ]);
    ActionDrafts {
        table,
        investigation: list(&inv),
        process: list(&process),
        documentation: list(&docs),
        technical: list(&tech),
    }
}
