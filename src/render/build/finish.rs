//! The end of the pass: open steps and rungs closed, entries finished and grouped
//! by day.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Utc};

use super::present::{
    add_wait, bounded, label, long_weekday, no_result, push_small, result_details, status,
};
use super::{Builder, Built, EntryAcc};
use crate::render::format::{Time, between, duration_ms};
use crate::render::gantt::{Span, SpanOf};
use crate::render::model::*;
use crate::render::summary::{self, Details};

impl Builder {
    pub(super) fn finish(mut self) -> Built {
        // Fall back to any passing verification only when the runbook has nothing
        // that proves the fix (no verify step, no ladder): a failed ladder must not
        // count the cordon's verification as mitigation.
        let fix_possible = self.state.steps.values().any(|s| !s.rung_info.is_empty())
            || self.steps.iter().any(|s| s.kind == "verify");
        let any = self.mitigated_any.take().filter(|_| !fix_possible);
        if let Some((i, m)) = self.mitigated_fix.take().or(any) {
            let e = &mut self.entries[i].entry;
            let at_entry = e.time.time() == m.at.time();
            e.more_mut().milestones.push(if at_entry {
                "MITIGATED".to_owned()
            } else {
                format!("MITIGATED at {}", m.at.time())
            });
            self.metrics.time_to_mitigate = Some(m);
        }
        let first = self.first_ts;
        let last = self.last_ts;
        // Rungs and steps still open at the end of the journal.
        let mut open: Vec<String> = self
            .state
            .steps
            .iter()
            .filter(|(step, s)| {
                s.current_rung.is_some()
                    && self
                        .index
                        .row(step)
                        .is_some_and(|r| self.steps[r].outcome.is_none())
            })
            .map(|(step, _)| step.clone())
            .collect();
        open.sort();
        for step in open {
            if let Some(end) = last {
                let before = self.spans.len();
                self.close_rung(&step, end);
                for s in &mut self.spans[before..] {
                    s.open = true;
                }
            }
        }
        for (r, row) in self.steps.iter().enumerate() {
            let st = self.state.step(&row.id);
            if row.outcome.is_none()
                && let (Some(start), Some(end)) = (st.and_then(|s| s.started_at), last)
            {
                self.spans.push(Span {
                    of: SpanOf::row(r),
                    start,
                    end,
                    ok: false,
                    open: true,
                    ladder: st.is_some_and(|s| s.current_rung.is_some()),
                });
            }
        }
        // Escalations name rungs that had not started yet when they were journaled.
        let mut entries = std::mem::take(&mut self.entries);
        for acc in &mut entries {
            if let Some(esc) = acc
                .entry
                .more
                .as_deref_mut()
                .and_then(|m| m.escalation.as_deref_mut())
            {
                for r in [&mut esc.from, &mut esc.to] {
                    if let Some(known) = self.known_rung(&esc.step, &r.id) {
                        *r = known;
                    }
                }
            }
        }
        let mut run = self.run.take().unwrap_or_else(|| {
            self.warnings.insert(
                0,
                "The journal has no run_started event: the facts about the run are missing."
                    .to_owned(),
            );
            Run {
                id: "unknown".to_owned(),
                runbook: Runbook {
                    name: "unknown".to_owned(),
                    title: "unknown runbook".to_owned(),
                    path: String::new(),
                    sha256: String::new(),
                    git_commit: None,
                    git_dirty: false,
                    links: Vec::new(),
                },
                operator: "unknown".to_owned(),
                host: "unknown".to_owned(),
                tool_version: "unknown".to_owned(),
                dry_run: false,
                target: None,
                retried: Vec::new(),
                started: first.map(|t| Time::new(t, self.tz)),
                ended: None,
                duration: None,
                status: "unfinished".to_owned(),
                status_label: "Unfinished (the journal has no end)".to_owned(),
                reason: None,
                resumed: Vec::new(),
                events: 0,
            }
        });
        run.events = self.events;
        run.runbook.links = self
            .state
            .links
            .iter()
            .map(|l| crate::render::model::Link {
                title: l.title.clone(),
                url: l.url.clone(),
                href: url::Url::parse(&l.url)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .map(|u| u.to_string()),
            })
            .collect();
        // Whether and how the run ended is the run state's answer, the same one
        // `resume` and `runbook runs` get: a `run_finished` followed by a
        // `run_resumed` is a run that went on (and, if nothing ended it since, did
        // not finish).
        let ended = self.state.ended.filter(|_| self.state.status.is_some());
        if let (Some(s), Some(at)) = (self.state.status, ended) {
            let (code, label) = status(s);
            run.status = code.to_owned();
            run.status_label = label.to_owned();
            run.reason.clone_from(&self.state.reason);
            run.ended = Some(Time::new(at, self.tz));
        }
        let start = self.run_start.or(first);
        if let (Some(s), Some(e)) = (start, ended.or(last)) {
            run.duration = Some(duration_ms(between(s, e)));
        }
        // Pauses ended by a resume, as the state counts them.
        for p in &self.state.pauses {
            if let Some(to) = p.to {
                add_wait(&mut self.metrics.paused, between(p.from, to));
            }
        }
        if ended.is_none() && self.events > 0 {
            self.warnings.push(
                "The run has not finished: it is still running, or the process was killed. Everything after the last event is unknown."
                    .to_owned(),
            );
        }
        for row in &mut self.steps {
            if let Some(st) = self.state.step(&row.id) {
                row.rungs = st
                    .rung_info
                    .iter()
                    .map(|(id, r)| RungRef {
                        id: id.clone(),
                        title: r.title.clone(),
                        index: r.index,
                        of: r.of,
                    })
                    .collect();
                row.rungs.sort_by_key(|r| r.index);
            }
        }
        let finished = ended.is_some();
        // What the run state is still needed for, before it is dropped: the entries
        // below are finished without it, and it holds a record per step.
        let incident_start = self.state.incident_start;
        let incident_start_source = self.state.incident_start_source.take();
        self.state = crate::journal::state::RunState::default();
        let mut timeline: Vec<Day> = Vec::new();
        let mut approvals = Vec::new();
        let mut calls = Calls::default();
        // Backdated notes (`runbook note --at`) go after every entry of their time
        // or earlier; the journal's own order is untouched.
        for acc in std::mem::take(&mut self.backdated) {
            let at = acc.entry.time.ts();
            let i = entries.partition_point(|e| e.entry.time.ts() <= at);
            entries.insert(i, acc);
        }
        self.notes.sort_by_key(|n| n.at.ts());
        let mut left = entries.len();
        for acc in entries {
            left -= 1;
            let e = Box::new(finish_entry(*acc, finished, self.details, &mut calls));
            if let Some(g) = &e.more().gate {
                approvals.push(Approval {
                    step: e.step.clone().unwrap_or_default(),
                    rung: e.rung.as_ref().map(|r| r.id.clone()),
                    title: e.title.clone(),
                    gate: (**g).clone(),
                });
            }
            match timeline.last_mut() {
                Some(day) if day.date == e.time.date() => day.entries.push(e),
                last => {
                    // Room for every entry left, given back when the next day starts:
                    // not twice the entries of a long day (issue 18).
                    if let Some(day) = last {
                        day.entries.shrink_to_fit();
                    }
                    let weekday = e
                        .time
                        .date()
                        .parse::<chrono::NaiveDate>()
                        .map(|d| d.weekday().to_string())
                        .unwrap_or_default();
                    let date = e.time.date();
                    let mut entries = Vec::with_capacity(left + 1);
                    entries.push(e);
                    timeline.push(Day {
                        date,
                        weekday: long_weekday(&weekday),
                        entries,
                    });
                }
            }
        }
        // A gate asked before a pause and decided after the resume is one decision:
        // its row is the decided one (asked at the first request), not a phantom
        // "waiting" row beside it.
        let decided: std::collections::HashSet<(String, Option<String>)> = approvals
            .iter()
            .filter(|a| a.gate.decision.is_some())
            .map(|a| (a.step.clone(), a.rung.clone()))
            .collect();
        approvals.retain(|a| {
            a.gate.decision.is_some() || !decided.contains(&(a.step.clone(), a.rung.clone()))
        });
        for a in &mut approvals {
            if a.gate.source.as_deref() == Some("flag") && a.gate.waited_ms > 0 {
                a.gate.how = Some("with --approve, after waiting".to_owned());
            }
        }
        let mut authors = authors(&run, &approvals, &self.notes, &timeline);
        for a in &self.authors_extra {
            if !authors.contains(a) {
                authors.push(a.clone());
            }
        }
        if self.notes_hidden > 0 {
            self.warnings.push(format!(
                "{} more notes after the first {} are not shown here (the journal has them all).",
                self.notes_hidden,
                super::SHOWN_NOTES
            ));
        }
        Built {
            pm: Postmortem {
                authors,
                run,
                tz: self.tz.name().to_owned(),
                params: self.params,
                metrics: self.metrics,
                timeline,
                steps: self.steps,
                approvals,
                notes: self.notes,
                gantt: String::new(),
                drafts: Drafts::default(),
                warnings: self.warnings,
                detail_level: self.details.name().to_owned(),
                api_calls: calls.finish(),
                chart: None,
                chart_svg: None,
            },
            spans: self.spans,
            incident_start,
            incident_start_source,
        }
    }
}

/// Everyone who acted in the run or wrote about it: the operator, whoever resumed
/// or retried it, decided a gate, confirmed a manual step or wrote a note; in the
/// order they first appear. Automatic approvals are no person's.
fn authors(run: &Run, approvals: &[Approval], notes: &[Note], timeline: &[Day]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |who: &str| {
        if !who.is_empty() && !out.iter().any(|o| o == who) {
            out.push(who.to_owned());
        }
    };
    add(&run.operator);
    run.resumed.iter().for_each(|r| add(&r.by));
    run.retried.iter().for_each(|r| add(&r.by));
    for a in approvals.iter().filter(|a| !a.gate.automatic) {
        if let Some(by) = &a.gate.by {
            add(by);
        }
    }
    for e in timeline.iter().flat_map(|d| &d.entries) {
        if let Some(by) = e.more().manual.as_ref().and_then(|m| m.by.as_deref()) {
            add(by);
        }
    }
    notes.iter().for_each(|n| add(&n.by));
    out
}

/// The appendix of API calls (summary): per step, identical calls counted once.
#[derive(Default)]
struct Calls {
    groups: Vec<CallGroup>,
    counts: Vec<Vec<(String, usize)>>,
    index: HashMap<String, usize>,
}

impl Calls {
    fn add(&mut self, step: &str, op: &Op) {
        if op.more().calls.is_empty() {
            return;
        }
        let g = match self.index.get(step) {
            Some(&g) => g,
            None => {
                self.index.insert(step.to_owned(), self.groups.len());
                self.groups.push(CallGroup {
                    step: step.to_owned(),
                    calls: Vec::new(),
                });
                self.counts.push(Vec::new());
                self.groups.len() - 1
            }
        };
        for c in &op.more().calls {
            // Success is the rule: only other answers are written.
            let line = if (200..300).contains(&c.status) {
                c.line.clone()
            } else {
                format!("{} → {}", c.line, c.answer)
            };
            let counts = &mut self.counts[g];
            match counts.iter_mut().find(|(l, _)| *l == line) {
                Some((_, n)) => *n += 1,
                None => counts.push((line, 1)),
            }
        }
    }

    fn finish(mut self) -> Vec<CallGroup> {
        for (g, counts) in self.groups.iter_mut().zip(self.counts) {
            g.calls = counts
                .into_iter()
                .map(|(l, n)| if n > 1 { format!("{l} (×{n})") } else { l })
                .collect();
        }
        self.groups
    }
}

/// Turn an accumulated entry into its final form: operations in order, their output
/// folded into details (full) or shown as tables and excerpts (summary),
/// verifications that never passed marked.
fn finish_entry(acc: EntryAcc, run_finished: bool, mode: Details, calls: &mut Calls) -> Entry {
    let mut e = acc.entry;
    e.label = label(&e);
    let step = e.step.clone().unwrap_or_default();
    let folded_line = fold_line(&acc.folded, acc.folded_started);
    // Exactly as many as there are: a step of one operation must not hold room for
    // four (issue 18: memory per step).
    e.ops
        .reserve_exact(acc.ops.len() + usize::from(folded_line.is_some()));
    for a in acc.ops {
        let result = a.result();
        let mut op = a.op;
        if op.outcome.is_none() {
            op.outcome = Some(no_result());
        }
        let what = match op.item {
            Some(n) => format!("{} (item {n})", op.display),
            None => op.display.clone(),
        };
        if let Some(err) = &op.more().error
            && (err.contains('\n') || err.len() > 200)
            && mode != Details::None
        {
            push_small(
                &mut e.details,
                Detail {
                    summary: format!("Error of {what}"),
                    body: if mode == Details::Full {
                        bounded(err)
                    } else {
                        excerpt(err)
                    },
                    lang: "text".to_owned(),
                },
            );
        }
        match mode {
            Details::Full => {
                if op.more().calls_folded {
                    let body: Vec<String> = op
                        .more()
                        .calls
                        .iter()
                        .map(|c| format!("{} {} → {} ({})", c.method, c.path, c.answer, c.duration))
                        .collect();
                    push_small(
                        &mut e.details,
                        Detail {
                            summary: format!("{} API calls of {what}", op.more().calls.len()),
                            body: body.join("\n"),
                            lang: "text".to_owned(),
                        },
                    );
                }
                if let Some(r) = &result {
                    result_details(&what, r, &mut e.details);
                }
            }
            Details::Summary | Details::None => {
                calls.add(&step, &op);
                // A `where` filter can be long: the runbook has it whole.
                if let Some((i, _)) = op.display.char_indices().nth(SHORT_DISPLAY) {
                    op.display = format!("{}…", &op.display[..i]);
                }
                if let Some(mut more) = op.more.take() {
                    more.calls = Vec::new();
                    more.calls_folded = false;
                    op.set_more(*more);
                }
                if let Some(r) = &result {
                    op.result_line = summary::result_line(r);
                    if mode == Details::Summary
                        && let Some((at, seq)) = a.result_at
                    {
                        // An output cut at the provider's cap is whole in its side
                        // file; the journal event has only its first bytes.
                        let source = super::present::spilled_files(Some(r))
                            .map(|f| format!("`{f}` in the run folder"))
                            .unwrap_or_else(|| raw(seq));
                        if let Some(md) = summary::result_block(r, at, &source) {
                            push_small(
                                &mut e.results,
                                Shown {
                                    what: String::new(),
                                    markdown: md,
                                    source: source.clone(),
                                },
                            );
                            op.source = Some(source);
                        }
                    }
                }
            }
        }
        e.ops.push(op);
    }
    if let Some(line) = folded_line {
        let first = e.ops.first().map(|o| o.started);
        e.ops.push(Op {
            display: format!("{} more items", acc.folded_started),
            provider: Word::Borrowed(""),
            mutating: e.ops.iter().any(|o| o.mutating),
            item: None,
            runs: 1,
            started: first.unwrap_or(e.time),
            outcome: Some(if acc.folded_ok {
                crate::render::build::present::outcome(crate::journal::event::Outcome::Ok)
            } else {
                crate::render::build::present::outcome(crate::journal::event::Outcome::Failed)
            }),
            duration: None,
            more: None,
            result_line: Some(line),
            source: None,
        });
    }
    let mitigated = e
        .more()
        .milestones
        .iter()
        .any(|m| m.starts_with("MITIGATED"));
    if let Some(v) = e
        .more
        .as_deref_mut()
        .and_then(|m| m.verification.as_deref_mut())
    {
        // A verify step polls its own operation: it is listed once, under `ops`.
        if e.ops.iter().any(|o| Some(&o.display) == v.display.as_ref()) {
            v.display = None;
        }
        let first: Option<DateTime<Utc>> = Some(v.first.ts());
        let last: Option<DateTime<Utc>> = Some(v.last.ts());
        if let (Some(f), Some(l)) = (first, last) {
            v.took = duration_ms(between(f, l));
        }
        if !v.passed && v.outcome == "pending" {
            v.outcome = match e.outcome.as_ref().map(|o| o.code) {
                Some("timed_out") => "timed_out",
                Some("failed") => "failed",
                _ if e.kind == "rung" || run_finished => "failed",
                _ => "pending",
            }
            .to_owned();
        }
        v.label = match v.outcome.as_str() {
            "passed" => "passed",
            "timed_out" => "TIMED OUT",
            "failed" => "did not pass",
            _ => "still polling",
        }
        .to_owned();
        if let Some(a) = acc.verify_op {
            if mode != Details::Full {
                calls.add(&step, &a.op);
            }
            if let Some(r) = &a.result() {
                let what = format!("the last verification poll ({})", a.op.display);
                match mode {
                    Details::Full => result_details(&what, r, &mut e.details),
                    Details::Summary if !v.passed || mitigated || e.kind == "rung" => {
                        if let Some((at, seq)) = a.result_at
                            && let Some(md) = summary::result_block(r, at, &raw(seq))
                            && md != summary::NO_OBJECTS
                        {
                            push_small(
                                &mut e.results,
                                Shown {
                                    what: "Last verification poll".to_owned(),
                                    markdown: md,
                                    source: raw(seq),
                                },
                            );
                        }
                    }
                    Details::Summary | Details::None => {}
                }
            }
        }
    }
    e
}

/// "998 deleted, 2 already gone" for the items of a long `for_each`.
fn fold_line(folded: &[(String, usize)], started: usize) -> Option<String> {
    if started == 0 {
        return None;
    }
    let mut parts: Vec<(usize, &str)> = folded.iter().map(|(w, n)| (*n, w.as_str())).collect();
    parts.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let finished: usize = parts.iter().map(|p| p.0).sum();
    let mut s: Vec<String> = parts.iter().map(|(n, w)| format!("{n} {w}")).collect();
    if started > finished {
        s.push(format!("{} without a result", started - finished));
    }
    Some(s.join(", "))
}

/// Characters of an operation's line in a summary.
const SHORT_DISPLAY: usize = 100;

/// Where a result is kept whole: the journal, in the run folder.
fn raw(seq: u64) -> String {
    format!("journal event {seq}")
}

/// The first lines of an error (summary).
fn excerpt(s: &str) -> String {
    let cut: String = s.lines().take(6).collect::<Vec<_>>().join("\n");
    let cut: String = cut.chars().take(600).collect();
    if cut.len() < s.trim_end().len() {
        format!("{cut}\n… (the journal has all of it)")
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use serde_json::Map;

    use crate::journal::event::{ApprovalSource, Decision, Event, Record, RunStatus, RunbookRef};
    use crate::journal::reader::Journal;

    fn journal(events: Vec<Event>) -> Journal {
        let t0 = Utc.with_ymd_and_hms(2026, 3, 13, 14, 0, 0).unwrap();
        Journal {
            records: events
                .into_iter()
                .enumerate()
                .map(|(i, event)| Record {
                    seq: i as u64 + 1,
                    ts: t0 + chrono::Duration::seconds(i as i64),
                    event,
                })
                .collect(),
            torn_tail: false,
            seq_faults: Vec::new(),
        }
    }

    fn started() -> Event {
        Event::RunStarted {
            format: 1,
            run_id: "r1".into(),
            runbook: RunbookRef::default(),
            params: Map::new(),
            operator: "ana".into(),
            host: "h".into(),
            tool_version: "0".into(),
            dry_run: false,
            target: None,
        }
    }

    fn paused() -> Event {
        Event::RunFinished {
            status: RunStatus::Paused,
            duration_ms: 1000,
            reason: Some("nobody answered".into()),
        }
    }

    fn resumed() -> Event {
        Event::RunResumed {
            operator: "bo".into(),
            host: "h".into(),
        }
    }

    fn step(kind: &str) -> Event {
        Event::StepStarted {
            step: "fix".into(),
            title: "Fix".into(),
            kind: kind.into(),
        }
    }

    /// The gate's wait and who answered come from the run state: asked at second 2,
    /// asked again after a resume at second 4, approved at second 5.
    #[test]
    fn a_gate_asked_again_after_a_resume_waits_from_the_first_request() {
        let asked = || Event::GateRequested {
            preview: None,
            step: "fix".into(),
            rung: None,
            ops: Vec::new(),
            digest: "d".into(),
            quorum: Default::default(),
        };
        let pm = super::super::build(
            &journal(vec![
                started(),
                step("action"),
                asked(),
                resumed(),
                asked(),
                Event::GateDecided {
                    step: "fix".into(),
                    rung: None,
                    decision: Decision::Approved,
                    by: "bo".into(),
                    source: ApprovalSource::Prompt,
                    digest: "d".into(),
                },
            ]),
            chrono_tz::UTC,
            crate::render::Details::Full,
        )
        .pm;
        assert_eq!(pm.metrics.gate_wait.total_ms, 3000);
        assert_eq!(pm.approvals.len(), 1);
        assert_eq!(pm.approvals[0].gate.by.as_deref(), Some("bo"));
        assert_eq!(pm.approvals[0].gate.waited_ms, 3000);
    }

    /// Gate asked, paused, resumed by someone else, approved, ran: the timeline says it
    /// in that order, the approval is one row with the real wait, both people are
    /// authors.
    #[test]
    fn after_a_pause_what_happened_is_stamped_after_the_resume() {
        use crate::journal::event::{Outcome, PlannedOp, Scope};
        let scope = Scope {
            step: "fix".into(),
            rung: None,
            item: None,
            verification: false,
        };
        let asked = || Event::GateRequested {
            preview: None,
            step: "fix".into(),
            rung: None,
            ops: Vec::new(),
            digest: "d".into(),
            quorum: Default::default(),
        };
        let pm = super::super::build(
            &journal(vec![
                started(),
                step("action"),
                asked(),
                Event::Paused {
                    step: "fix".into(),
                    reason: "nobody".into(),
                    resume: "runbook resume r1".into(),
                },
                paused(),
                resumed(),
                asked(),
                Event::GateDecided {
                    step: "fix".into(),
                    rung: None,
                    decision: Decision::Approved,
                    by: "bo".into(),
                    source: ApprovalSource::Flag,
                    digest: "d".into(),
                },
                Event::OpStarted {
                    op: PlannedOp {
                        scope: scope.clone(),
                        provider: "kube".into(),
                        display: "kubectl delete pod p".into(),
                        op: serde_json::Value::Null,
                        mutating: true,
                        impact: None,
                    },
                    attempt: 1,
                },
                Event::OpFinished {
                    scope,
                    attempt: 1,
                    outcome: Outcome::Ok,
                    duration_ms: 1,
                    result: None,
                    error: None,
                    output_file: None,
                    calls: Vec::new(),
                },
            ]),
            chrono_tz::UTC,
            crate::render::Details::Summary,
        )
        .pm;
        let kinds: Vec<(&str, bool)> = pm.timeline[0]
            .entries
            .iter()
            .map(|e| (e.kind, e.continued))
            .collect();
        assert_eq!(
            kinds,
            [
                ("start", false),
                ("step", false),
                ("pause", false),
                ("finish", false),
                ("resume", false),
                ("step", true)
            ]
        );
        let after = &pm.timeline[0].entries[5];
        assert_eq!(
            after.time.time(),
            "14:00:06",
            "stamped when asked again after the resume"
        );
        assert_eq!(after.ops.len(), 1);
        assert!(
            pm.timeline[0].entries[1].ops.is_empty(),
            "nothing ran before the pause"
        );
        assert_eq!(pm.approvals.len(), 1, "{:?}", pm.approvals);
        assert_eq!(pm.approvals[0].gate.waited_ms, 5000);
        assert_eq!(
            pm.approvals[0].gate.how.as_deref(),
            Some("with --approve, after waiting")
        );
        assert_eq!(pm.authors, ["ana", "bo"]);
    }

    /// A `for_each` of 100 deletes shows 20 lines and counts the rest by outcome.
    #[test]
    fn a_long_for_each_is_summarised_by_outcome() {
        use crate::journal::event::{Outcome, PlannedOp, Scope};
        let mut events = vec![started(), step("action")];
        for n in 0..100usize {
            let scope = Scope {
                step: "fix".into(),
                rung: None,
                item: Some(n),
                verification: false,
            };
            events.push(Event::OpStarted {
                op: PlannedOp {
                    scope: scope.clone(),
                    provider: "kube".into(),
                    display: format!("kubectl delete pod p{n}"),
                    op: serde_json::Value::Null,
                    mutating: true,
                    impact: None,
                },
                attempt: 1,
            });
            let gone = n % 50 == 49;
            events.push(Event::OpFinished {
                scope,
                attempt: 1,
                outcome: Outcome::Ok,
                duration_ms: 1,
                result: Some(if gone {
                    serde_json::json!({"deleted": [], "already_gone": [format!("p{n}")]})
                } else {
                    serde_json::json!({"deleted": [format!("p{n}")], "already_gone": []})
                }),
                error: None,
                output_file: None,
                calls: Vec::new(),
            });
        }
        let pm = super::super::build(
            &journal(events),
            chrono_tz::UTC,
            crate::render::Details::Summary,
        )
        .pm;
        let ops = &pm.timeline[0].entries[1].ops;
        assert_eq!(ops.len(), 21, "{ops:?}");
        assert_eq!(ops[20].display, "80 more items");
        assert_eq!(
            ops[20].result_line.as_deref(),
            Some("78 deleted, 2 already gone")
        );
    }

    /// A pause counts from the `paused` event to the resume, as the state has it.
    #[test]
    fn a_pause_counts_until_the_resume() {
        let pm = super::super::build(
            &journal(vec![
                started(),
                Event::Paused {
                    step: "fix".into(),
                    reason: "nobody".into(),
                    resume: "runbook resume r1".into(),
                },
                paused(),
                resumed(),
            ]),
            chrono_tz::UTC,
            crate::render::Details::Full,
        )
        .pm;
        assert_eq!(pm.metrics.paused.total_ms, 2000);
        assert_eq!(pm.metrics.paused.count, 1);
        assert_eq!(pm.run.resumed.len(), 1);
    }

    #[test]
    fn a_paused_run_is_paused() {
        let pm = super::super::build(
            &journal(vec![started(), paused()]),
            chrono_tz::UTC,
            crate::render::Details::Full,
        )
        .pm;
        assert_eq!(pm.run.status, "paused");
    }

    /// Resume and `runbook runs` call such a run interrupted; the postmortem must not
    /// call it paused because of the first process's `run_finished`.
    #[test]
    fn a_run_resumed_and_then_killed_has_not_finished() {
        let built = super::super::build(
            &journal(vec![started(), paused(), resumed()]),
            chrono_tz::UTC,
            crate::render::Details::Full,
        );
        assert_eq!(built.pm.run.status, "unfinished");
        assert!(built.pm.run.ended.is_none());
        assert!(
            built
                .pm
                .warnings
                .iter()
                .any(|w| w.contains("has not finished")),
            "{:?}",
            built.pm.warnings
        );
    }
}
