//! Folding step events into their timeline entries: steps, rungs, operations,
//! verification polls and gates.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::present::{add_wait, decision, outcome, source};
use super::{Builder, OpAcc, op_key};
use crate::journal::event::{self, Record, Scope};
use crate::render::format::{between, duration_ms};
use crate::render::gantt::{Span, SpanOf};
use crate::render::model::*;

impl Builder {
    pub(super) fn step_started(&mut self, rec: &Record, step: &str, title: &str, kind: &str) {
        let i = self.push_entry(rec, "step", title.to_owned());
        let e = &mut self.entries[i].entry;
        e.step = Some(step.to_owned());
        e.step_kind = Some(word(kind));
        self.index.set_entry(step, i);
        // A step that starts again without having finished (the run paused, was
        // aborted or killed there, and was resumed) is the same step: one row, counted
        // once, whose outcome is the one it finally had. The timeline keeps both starts.
        if let Some(r) = self.index.row(step)
            && self.steps[r].outcome.is_none()
        {
            return;
        }
        let c = &mut self.metrics.counts;
        c.steps += 1;
        match kind {
            "check" => c.checks += 1,
            "action" => c.actions += 1,
            "verify" => c.verifies += 1,
            "manual" => c.manual += 1,
            _ => {}
        }
        self.index.set_row(step, self.steps.len());
        self.steps.push(Box::new(StepRow {
            id: step.to_owned(),
            title: title.to_owned(),
            kind: word(kind),
            started: self.time(rec.ts),
            outcome: None,
            duration: None,
            summary: None,
            fixed_by: None,
            rungs: Vec::new(),
        }));
    }

    pub(super) fn step_finished(
        &mut self,
        rec: &Record,
        step: &str,
        d: u64,
        summary: &str,
        fixed_by: Option<&str>,
    ) {
        // The outcome and the start are the run state's: the same the engine acted on
        // and `resume` rebuilds (a step started again after a resume counts from its
        // last start).
        let Some(st) = self.state.step(step) else {
            return;
        };
        let Some(o) = st.finished else {
            return;
        };
        let start = st.started_at.unwrap_or(rec.ts);
        let out = outcome(o);
        match o {
            event::Outcome::Ok => self.metrics.counts.ok += 1,
            event::Outcome::Skipped => self.metrics.counts.skipped += 1,
            event::Outcome::NotApplicable => {}
            _ => self.metrics.counts.failed += 1,
        }
        self.close_rung(step, rec.ts);
        if o == event::Outcome::TimedOut {
            // The verification that was polling when the step ran out of time.
            let polled = self
                .current_rung(step)
                .and_then(|r| self.rung_entry.get(&(step.to_owned(), r.to_owned())))
                .copied()
                .or(self.index.entry(step));
            if let Some(v) = polled.and_then(|i| self.entries[i].entry.verification_mut())
                && !v.passed
            {
                v.outcome = "timed_out".to_owned();
            }
        }
        // A check that read one object has the object's JSON as its summary: name it
        // instead (the result is shown as a table below it).
        let named;
        let summary = match self.index.entry(step).and_then(|i| {
            self.entries[i]
                .ops
                .last()
                .filter(|_| summary.starts_with('{'))
                .and_then(OpAcc::result)
                .and_then(|r| {
                    Some((
                        r.get("kind")?.as_str()?.to_owned(),
                        r.pointer("/metadata/name")?.as_str()?.to_owned(),
                    ))
                })
        }) {
            Some((kind, name)) => {
                named = format!("{kind} {name}");
                named.as_str()
            }
            None => summary,
        };
        let fixed = fixed_by.map(|r| self.rung_ref(step, r));
        let row = self.index.row(step);
        let kind = row.map(|r| self.steps[r].kind.clone()).unwrap_or_default();
        if let Some(r) = row {
            let row = &mut self.steps[r];
            row.outcome = Some(out);
            row.duration = Some(Millis(d));
            row.summary = Some(summary.to_owned());
            row.fixed_by = fixed_by.map(str::to_owned);
        }
        self.spans.push(Span {
            of: match row {
                Some(r) => SpanOf::row(r),
                None => SpanOf::named(self.step_title(step), kind.clone(), step.to_owned()),
            },
            start,
            end: rec.ts,
            ok: o == event::Outcome::Ok || o == event::Outcome::NotApplicable,
            open: false,
            ladder: self.current_rung(step).is_some(),
        });
        // The outcome joins the step's entry when nothing happened in between;
        // otherwise (escalations, notes, other steps) it gets an entry at its own time.
        let last = self.entries.len().checked_sub(1);
        let i = match self.index.entry(step) {
            Some(i) if Some(i) == last => i,
            _ => {
                let i = self.push_entry(rec, "step_end", self.step_title(step));
                let e = &mut self.entries[i].entry;
                e.step = Some(step.to_owned());
                e.step_kind = Some(kind.clone());
                i
            }
        };
        if kind == "check" && o == event::Outcome::Ok && self.metrics.time_to_detect.is_none() {
            self.metrics.time_to_detect = Some(Milestone {
                from_impact: None,
                after: duration_ms(between(self.start(), rec.ts)),
                at: self.time(rec.ts),
                step: step.to_owned(),
                title: self.step_title(step),
                what: "check".to_owned(),
                rung: None,
            });
            self.entries[i]
                .entry
                .more_mut()
                .milestones
                .push("DETECTED".to_owned());
        }
        let e = &mut self.entries[i].entry;
        e.outcome = Some(out);
        e.duration = Some(Millis(d));
        e.summary = Some(summary.to_owned()).filter(|s| !s.is_empty());
        match fixed {
            Some(f) => e.more_mut().fixed_by = Some(Box::new(f)),
            None => {
                if let Some(m) = e.more.as_deref_mut() {
                    m.fixed_by = None;
                }
            }
        }
        // Everything the postmortem reads of a step that ended this way has been
        // read: its record is not held to the end of the journal (issue 18).
        self.state.forget_finished_step(step);
    }

    /// The span of the step's current rung ends (a next rung starts or the step ends).
    pub(super) fn close_rung(&mut self, step: &str, end: DateTime<Utc>) {
        let Some(rung) = self.current_rung(step).map(str::to_owned) else {
            return;
        };
        let started = self
            .state
            .step(step)
            .and_then(|s| s.rung_info.get(&rung))
            .map(|r| r.started);
        if let (Some(r), Some(start)) = (self.known_rung(step, &rung), started) {
            let passed = self
                .rung_entry
                .get(&(step.to_owned(), rung.clone()))
                .and_then(|&i| self.entries[i].entry.more().verification.as_ref())
                .is_some_and(|v| v.passed);
            let label = format!("{}/{} {}", r.index, r.of, r.title);
            let already = self
                .spans
                .iter()
                .any(|s| s.step(&self.steps) == step && s.label(&self.steps) == label);
            if !already {
                self.spans.push(Span {
                    of: SpanOf::named(label, format!("ladder:{step}").into(), step.to_owned()),
                    start,
                    end,
                    ok: passed,
                    open: false,
                    ladder: true,
                });
            }
        }
    }

    pub(super) fn op_started(&mut self, rec: &Record, op: &event::PlannedOp, _attempt: u32) {
        self.metrics.counts.operations += 1;
        let s = &op.scope;
        let i = self.entry_for(rec, &s.step, s.rung.as_deref(), s.verification);
        let started = self.time(rec.ts);
        let link = match (
            op.provider.as_str(),
            op.op.get("server"),
            op.op.get("query"),
        ) {
            ("prometheus", Some(Value::String(server)), Some(Value::String(q))) => {
                Some(crate::render::summary::graph_link(server, q, rec.ts))
            }
            _ => None,
        };
        let fresh = || OpAcc {
            op: Op {
                display: op.display.clone(),
                provider: word(&op.provider),
                mutating: op.mutating,
                item: s.item,
                runs: 0,
                started,
                outcome: None,
                duration: None,
                more: link.clone().map(|link| {
                    Box::new(OpMore {
                        link: Some(link),
                        ..OpMore::default()
                    })
                }),
                result_line: None,
                source: None,
            },
            result: None,
            result_at: None,
        };
        let acc = &mut self.entries[i];
        let slot = if s.verification {
            let v = acc.verify_op.get_or_insert_with(|| Box::new(fresh()));
            v.op.runs += 1;
            None
        } else if s.item.is_some_and(|n| n >= super::SHOWN_ITEMS) && !acc.has_item(s.item) {
            acc.folded_started += 1;
            Some(super::FOLDED)
        } else {
            let k = acc.line(s.item, &op.display, fresh);
            acc.ops[k].op.runs += 1;
            Some(k)
        };
        self.running.insert(op_key(s), (i, slot));
    }

    pub(super) fn verify_polled(
        &mut self,
        rec: &Record,
        scope: &Scope,
        ok: bool,
        detail: Option<&str>,
    ) {
        let i = self.entry_for(rec, &scope.step, scope.rung.as_deref(), scope.verification);
        let now = self.time(rec.ts);
        let acc = &mut self.entries[i];
        let display = acc
            .verify_op
            .as_deref()
            .or(acc.ops.last())
            .map(|a| a.op.display.clone());
        let v = acc.entry.more_mut().verification.get_or_insert_with(|| {
            Box::new(Verification {
                display: None,
                polls: 0,
                passed: false,
                first: now,
                last: now,
                took: String::new(),
                detail: None,
                outcome: "pending".to_owned(),
                label: String::new(),
            })
        });
        v.display = display;
        v.polls += 1;
        v.passed = ok;
        v.last = now;
        v.detail = detail.map(str::to_owned);
        v.outcome = if ok { "passed" } else { "pending" }.to_owned();
        if ok {
            let step = scope.step.clone();
            let kind = self
                .index
                .row(&step)
                .map(|r| self.steps[r].kind.clone())
                .unwrap_or_default();
            let rung = acc.entry.rung.as_ref().map(|r| r.id.clone());
            // A verify step or the verification of an escalation ladder proves the
            // problem is fixed; the verification of a preparatory action (cordon)
            // only proves that action worked. Prefer the former.
            let fixes = kind == "verify" || rung.is_some();
            let slot = if fixes {
                &self.mitigated_fix
            } else {
                &self.mitigated_any
            };
            if slot.is_none() {
                let m = Milestone {
                    from_impact: None,
                    after: duration_ms(between(self.start(), rec.ts)),
                    at: self.time(rec.ts),
                    title: self.step_title(&step),
                    step,
                    what: if kind == "verify" {
                        "verify"
                    } else {
                        "verification"
                    }
                    .to_owned(),
                    rung,
                };
                if fixes {
                    self.mitigated_fix = Some((i, m));
                } else {
                    self.mitigated_any = Some((i, m));
                }
            }
        }
    }

    /// A gate's decision, as the run state recorded it (the decision the engine acted
    /// on, with the request it answered), joins the gate of its entry.
    pub(super) fn gate_decided(&mut self, rec: &Record, step: &str, rung: Option<&str>) {
        let i = self.entry_for(rec, step, rung, false);
        let Some(g) = self.state.step(step).and_then(|s| s.gates.last()) else {
            return;
        };
        let (code, how, automatic) = source(g.source);
        let waited = g.waited_ms();
        let (d, by) = (g.decision, g.by.clone());
        let (requested, decided) = (self.time(g.asked), self.time(g.decided));
        add_wait(&mut self.metrics.gate_wait, waited);
        let e = &mut self.entries[i].entry;
        // A decision without its request (a damaged journal): asked when decided.
        let g = e
            .more_mut()
            .gate
            .get_or_insert_with(|| Box::new(Gate::asked(requested, 0)));
        g.decided = Some(decided);
        g.decision = Some(decision(d).to_owned());
        g.by = Some(by);
        g.source = Some(code.to_owned());
        g.how = Some(how.to_owned());
        g.automatic = automatic;
        g.waited = Some(duration_ms(waited));
        g.waited_ms = waited;
    }
}
