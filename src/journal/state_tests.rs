//! Unit tests of [`RunState::apply`], event sequence by event sequence.

use super::*;
use crate::journal::event::{ApprovalSource, PlannedOp};

fn rec(seq: u64, event: Event) -> Record {
    Record {
        seq,
        ts: Utc::now(),
        event,
    }
}

/// Records numbered from 1, all at the same instant.
fn records(events: Vec<Event>) -> Vec<Record> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| rec(i as u64 + 1, e))
        .collect()
}

fn started() -> Event {
    Event::RunStarted {
        format: 1,
        run_id: "r1".into(),
        runbook: RunbookRef {
            name: "n".into(),
            title: "t".into(),
            path: "p.yaml".into(),
            sha256: "00".into(),
            ..RunbookRef::default()
        },
        params: Map::new(),
        operator: "ana".into(),
        host: "h".into(),
        tool_version: "0".into(),
        dry_run: false,
        target: None,
    }
}

fn scope(step: &str, rung: Option<&str>, item: Option<usize>) -> Scope {
    Scope {
        step: step.into(),
        rung: rung.map(str::to_string),
        item,
        verification: false,
    }
}

fn step_started(step: &str) -> Event {
    Event::StepStarted {
        step: step.into(),
        title: format!("Title of {step}"),
        kind: "action".into(),
    }
}

fn op_started(scope: Scope) -> Event {
    Event::OpStarted {
        op: PlannedOp {
            scope,
            provider: "shell".into(),
            display: "touch x".into(),
            op: Value::Null,
            mutating: true,
            impact: None,
        },
        attempt: 1,
    }
}

fn op_finished(scope: Scope, outcome: Outcome) -> Event {
    Event::OpFinished {
        scope,
        attempt: 1,
        outcome,
        duration_ms: 1,
        result: Some(Value::from("big")),
        error: None,
        output_file: None,
        calls: Vec::new(),
    }
}

fn finished(step: &str, outcome: Outcome) -> Event {
    Event::StepFinished {
        step: step.into(),
        outcome,
        duration_ms: 1,
        summary: "s".into(),
        fixed_by: None,
    }
}

fn decided(step: &str, rung: Option<&str>, decision: Decision, digest: &str) -> Event {
    Event::GateDecided {
        step: step.into(),
        rung: rung.map(str::to_string),
        decision,
        by: "ana".into(),
        source: ApprovalSource::Prompt,
        digest: digest.into(),
    }
}

fn run_finished(status: RunStatus, duration_ms: u64) -> Event {
    Event::RunFinished {
        status,
        duration_ms,
        reason: None,
    }
}

#[test]
fn a_journal_must_start_with_run_started() {
    assert!(RunState::from_records(&[]).is_err());
    let r = RunState::from_records(&records(vec![step_started("a")]));
    assert!(r.is_err());
}

#[test]
fn run_started_sets_the_identity_of_the_run() {
    let r = RunState::from_records(&records(vec![started()])).unwrap();
    assert_eq!(r.run_id, "r1");
    assert_eq!(r.runbook.name, "n");
    assert_eq!(r.operator, "ana");
    assert_eq!(r.sessions, 1);
    assert_eq!(r.status, None);
}

#[test]
fn an_op_started_but_never_finished_has_an_unknown_outcome() {
    let r = RunState::from_records(&records(vec![
        started(),
        step_started("fix"),
        op_started(scope("fix", None, None)),
    ]))
    .unwrap();
    let s = &r.steps["fix"];
    assert!(!s.is_done());
    assert_eq!(s.unknown_ops(None).len(), 1);
    assert_eq!(s.title, "Title of fix");
    assert_eq!(r.status, None);
}

#[test]
fn an_aborted_op_is_unknown_and_ok_items_are_not_run_again() {
    let r = RunState::from_records(&records(vec![
        started(),
        step_started("fix"),
        op_started(scope("fix", None, Some(0))),
        op_finished(scope("fix", None, Some(0)), Outcome::Ok),
        op_started(scope("fix", None, Some(1))),
        op_finished(scope("fix", None, Some(1)), Outcome::Aborted),
        op_started(scope("fix", None, Some(2))),
    ]))
    .unwrap();
    let s = &r.steps["fix"];
    assert_eq!(s.ok_items(None), vec![Some(0)]);
    let unknown: Vec<_> = s.unknown_ops(None).iter().map(|k| k.item).collect();
    assert_eq!(unknown, vec![Some(1), Some(2)]);
    // Another rung's operations are another rung's.
    assert!(s.unknown_ops(Some("fix.2")).is_empty());
}

#[test]
fn verification_ops_are_never_unknown_actions() {
    let mut v = scope("fix", None, None);
    v.verification = true;
    let r = RunState::from_records(&records(vec![
        started(),
        step_started("fix"),
        op_started(v),
    ]))
    .unwrap();
    assert!(r.steps["fix"].unknown_ops(None).is_empty());
}

#[test]
fn an_approval_holds_for_the_same_plan_only() {
    let r = RunState::from_records(&records(vec![
        started(),
        step_started("fix"),
        decided("fix", None, Decision::Approved, "d1"),
        decided("fix", Some("fix.2"), Decision::Declined, "d2"),
    ]))
    .unwrap();
    let s = &r.steps["fix"];
    assert_eq!(s.approval(None, "d1").map(|g| g.by.as_str()), Some("ana"));
    assert!(s.approval(None, "d9").is_none());
    assert_eq!(
        s.stale_approval(None, "d9").map(|g| g.digest.as_str()),
        Some("d1")
    );
    // A declined gate is no approval.
    assert!(s.approval(Some("fix.2"), "d2").is_none());
}

#[test]
fn a_step_aborted_is_not_done_and_starts_over_when_run_again() {
    let mut r = RunState::from_records(&records(vec![
        started(),
        step_started("fix"),
        finished("fix", Outcome::Aborted),
    ]))
    .unwrap();
    assert!(!r.steps["fix"].is_done());
    r.apply(Utc::now(), &step_started("fix"));
    assert_eq!(r.steps["fix"].finished, None);
    r.apply(Utc::now(), &finished("fix", Outcome::Failed));
    assert!(r.steps["fix"].is_done());
    assert_eq!(r.steps["fix"].summary.as_deref(), Some("s"));
}

#[test]
fn a_skipped_step_is_done() {
    let r = RunState::from_records(&records(vec![
        started(),
        Event::StepSkipped {
            step: "a".into(),
            reason: "no".into(),
        },
    ]))
    .unwrap();
    assert!(r.steps["a"].is_done());
    assert!(!r.steps["a"].started);
}

#[test]
fn rungs_are_kept_in_order_once_with_their_titles() {
    let rung = |id: &str, index| Event::RungStarted {
        step: "fix".into(),
        rung: id.into(),
        title: format!("{id} title"),
        index,
        of: 2,
    };
    let r = RunState::from_records(&records(vec![
        started(),
        step_started("fix"),
        rung("fix.1", 1),
        rung("fix.2", 2),
        rung("fix.1", 1),
        Event::ManualConfirmed {
            scope: scope("fix", Some("fix.2"), None),
            outcome: Outcome::Ok,
            by: "bo".into(),
        },
    ]))
    .unwrap();
    let s = &r.steps["fix"];
    assert_eq!(s.rungs, vec!["fix.1", "fix.2"]);
    assert_eq!(s.rung_title("fix.2"), "fix.2 title");
    assert_eq!(s.rung_title("fix.3"), "fix.3");
    let m: Vec<_> = s
        .manual
        .iter()
        .map(|m| (m.rung.clone(), m.outcome))
        .collect();
    assert_eq!(m, vec![(Some("fix.2".to_string()), Outcome::Ok)]);
    assert_eq!(s.current_rung.as_deref(), Some("fix.1"));
    assert_eq!(s.rung_info["fix.2"].index, 2);
}

#[test]
fn a_resumed_run_is_no_longer_paused_and_saved_values_survive() {
    let r = RunState::from_records(&records(vec![
        started(),
        Event::Saved {
            step: "c".into(),
            name: "x".into(),
            value: Value::from(3),
        },
        Event::Paused {
            step: "fix".into(),
            reason: "nobody".into(),
            resume: "runbook resume r1".into(),
        },
        run_finished(RunStatus::Paused, 5),
    ]))
    .unwrap();
    assert_eq!(r.paused_at.as_deref(), Some("fix"));
    assert_eq!(r.status, Some(RunStatus::Paused));
    let mut r = r;
    r.apply(
        Utc::now(),
        &Event::RunResumed {
            operator: "bo".into(),
            host: "h".into(),
        },
    );
    assert_eq!(r.status, None);
    assert_eq!(r.paused_at, None);
    assert_eq!(r.saved["x"], Value::from(3));
    assert_eq!(r.sessions, 2);
    r.apply(Utc::now(), &run_finished(RunStatus::Succeeded, 7));
    assert_eq!(r.status, Some(RunStatus::Succeeded));
    assert_eq!(r.duration_ms, 12);
}

#[test]
fn applying_one_event_at_a_time_is_the_same_as_folding_the_journal() {
    let events = vec![
        started(),
        step_started("fix"),
        decided("fix", None, Decision::Approved, "d1"),
        op_started(scope("fix", None, None)),
        op_finished(scope("fix", None, None), Outcome::Ok),
        finished("fix", Outcome::Ok),
        run_finished(RunStatus::Succeeded, 3),
    ];
    let recs = records(events);
    let folded = RunState::from_records(&recs).unwrap();
    let mut live = RunState::default();
    for r in &recs {
        live.apply(r.ts, &r.event);
        // Every prefix is a valid state, too.
        assert_eq!(live.last_ts, r.ts);
    }
    assert_eq!(format!("{live:?}"), format!("{folded:?}"));
    assert!(live.steps["fix"].is_done());
}

/// Records one second apart, from a fixed instant, so waits are exact.
fn timed(events: Vec<Event>) -> Vec<Record> {
    let t0 = DateTime::parse_from_rfc3339("2026-03-13T14:00:00Z")
        .expect("a valid timestamp")
        .with_timezone(&Utc);
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| Record {
            seq: i as u64 + 1,
            ts: t0 + chrono::Duration::seconds(i as i64),
            event,
        })
        .collect()
}

fn gate_requested(step: &str, rung: Option<&str>, ops: usize) -> Event {
    Event::GateRequested {
        step: step.into(),
        rung: rung.map(str::to_string),
        ops: (0..ops)
            .map(|i| PlannedOp {
                scope: scope(step, rung, Some(i)),
                provider: "shell".into(),
                display: format!("touch {i}"),
                op: Value::Null,
                mutating: true,
                impact: None,
            })
            .collect(),
        digest: "d1".into(),
        preview: None,
        quorum: Default::default(),
    }
}

/// The postmortem's gate wait is the state's: from the first request not answered
/// since (asked again after a resume without a restart) to the decision.
#[test]
fn a_gate_decision_knows_when_it_was_asked_who_answered_and_how() {
    let r = RunState::from_records(&timed(vec![
        started(),
        step_started("fix"),
        gate_requested("fix", None, 3),
        Event::RunResumed {
            operator: "bo".into(),
            host: "h".into(),
        },
        gate_requested("fix", None, 3),
        decided("fix", None, Decision::Approved, "d1"),
    ]))
    .unwrap();
    let g = &r.steps["fix"].gates[0];
    assert_eq!(g.source, ApprovalSource::Prompt);
    assert_eq!(g.by, "ana");
    assert_eq!(g.planned, 3);
    assert_eq!(g.waited_ms(), 3000);
    assert!(r.steps["fix"].pending_gates.is_empty());
}

#[test]
fn a_step_started_again_asks_its_gate_afresh() {
    let r = RunState::from_records(&timed(vec![
        started(),
        step_started("fix"),
        gate_requested("fix", None, 1),
        step_started("fix"),
        gate_requested("fix", None, 2),
        decided("fix", None, Decision::Declined, "d1"),
    ]))
    .unwrap();
    let g = &r.steps["fix"].gates[0];
    assert_eq!((g.waited_ms(), g.planned), (1000, 2));
}

#[test]
fn a_decision_without_a_request_was_asked_when_decided() {
    let r = RunState::from_records(&timed(vec![
        started(),
        decided("fix", Some("fix.2"), Decision::Approved, "d1"),
    ]))
    .unwrap();
    let g = &r.steps["fix"].gates[0];
    assert_eq!((g.waited_ms(), g.planned), (0, 0));
}

#[test]
fn a_manual_confirmation_knows_its_request_and_who_confirmed() {
    let r = RunState::from_records(&timed(vec![
        started(),
        step_started("reset"),
        Event::ManualRequested {
            scope: scope("reset", None, None),
            instruction: "reset the node".into(),
        },
        Event::ManualConfirmed {
            scope: scope("reset", None, None),
            outcome: Outcome::Ok,
            by: "bo".into(),
        },
        Event::ManualConfirmed {
            scope: scope("other", Some("other.3"), None),
            outcome: Outcome::Failed,
            by: "bo".into(),
        },
    ]))
    .unwrap();
    let m = &r.steps["reset"].manual[0];
    assert_eq!((m.by.as_str(), m.outcome), ("bo", Outcome::Ok));
    assert_eq!(m.waited_ms(), 1000);
    // A confirmation without its request waited nothing measurable.
    assert_eq!(r.steps["other"].manual[0].requested, None);
    assert_eq!(r.steps["other"].manual[0].waited_ms(), 0);
}

#[test]
fn operations_keep_their_times_attempts_and_starts_but_not_their_results() {
    let s = scope("fix", None, Some(4));
    let mut retry = op_started(s.clone());
    if let Event::OpStarted { attempt, .. } = &mut retry {
        *attempt = 2;
    }
    let r = RunState::from_records(&timed(vec![
        started(),
        op_started(s.clone()),
        op_finished(s.clone(), Outcome::Failed),
        retry,
        op_finished(scope("fix", None, Some(5)), Outcome::Ok),
    ]))
    .unwrap();
    let st = &r.steps["fix"];
    let o = st.op(&OpKey::from(&s)).unwrap();
    assert_eq!(o.state, OpState::Started);
    assert_eq!((o.attempt, o.starts, o.finished), (2, 2, None));
    // A finish without a start (a journal cut at the front) is still an outcome.
    let cut = st.op(&OpKey::from(&scope("fix", None, Some(5)))).unwrap();
    assert_eq!(cut.starts, 0);
    assert_eq!(
        cut.state,
        OpState::Finished {
            outcome: Outcome::Ok
        }
    );
}

#[test]
fn pauses_resumes_and_the_end_are_timed() {
    let mut r = RunState::from_records(&timed(vec![
        started(),
        Event::Paused {
            step: "fix".into(),
            reason: "nobody".into(),
            resume: "runbook resume r1".into(),
        },
        run_finished(RunStatus::Paused, 5),
        Event::RunResumed {
            operator: "bo".into(),
            host: "h2".into(),
        },
    ]))
    .unwrap();
    assert_eq!(r.pauses.len(), 1);
    let p = r.pauses[0];
    assert_eq!(p.to.map(|to| between_ms(p.from, to)), Some(2000));
    assert_eq!(r.resumes[0].host, "h2");
    // Resumed: the first process's end is not the run's.
    assert_eq!((r.status, r.ended), (None, None));
    r.apply(r.last_ts, &run_finished(RunStatus::Failed, 1));
    assert_eq!(r.ended, Some(r.last_ts));
}

#[test]
fn run_started_without_a_target_still_reads_and_one_with_a_target_is_kept() {
    let old = r#"{"seq":1,"ts":"2026-03-13T14:25:01Z","event":"run_started","format":1,"run_id":"r1","runbook":{"name":"n","title":"t","path":"p.yaml","sha256":"00"},"params":{},"operator":"ana","host":"h","tool_version":"0","dry_run":false}"#;
    let r: Record = serde_json::from_str(old).expect("an old run_started parses");
    let state = RunState::from_records(&[r]).expect("it folds");
    assert_eq!(state.target, None);

    let mut with = started();
    if let Event::RunStarted { target, .. } = &mut with {
        *target = Some(KubeTarget {
            server: "https://a:6443".into(),
            cluster_uid: Some("uid-a".into()),
            ..Default::default()
        });
    }
    let state = RunState::from_records(&records(vec![with])).expect("it folds");
    assert_eq!(
        state.target.and_then(|t| t.cluster_uid).as_deref(),
        Some("uid-a")
    );
}

/// `step_retried` makes a failed step one still to run; the others stay done.
#[test]
fn a_retried_step_is_no_longer_done() {
    let finished = |step: &str, outcome| Event::StepFinished {
        step: step.into(),
        outcome,
        duration_ms: 1,
        summary: String::new(),
        fixed_by: None,
    };
    let state = RunState::from_records(&records(vec![
        started(),
        finished("a", Outcome::Ok),
        finished("b", Outcome::Failed),
        Event::StepRetried {
            step: "b".into(),
            by: "bo".into(),
            failed: Vec::new(),
            kept: Vec::new(),
        },
    ]))
    .expect("it folds");
    assert!(state.steps["a"].is_done());
    assert!(state.step("b").is_none_or(|s| !s.is_done()));
}

#[test]
fn an_accepted_runbook_change_makes_the_edited_version_the_runs_runbook() {
    let mut digests = std::collections::BTreeMap::new();
    digests.insert("fix".to_string(), "d2".to_string());
    let s = RunState::from_records(&records(vec![
        started(),
        Event::RunResumed {
            operator: "lee".into(),
            host: "h".into(),
        },
        Event::RunbookChanged {
            old_sha256: "00".into(),
            new_sha256: "11".into(),
            git: None,
            untracked: true,
            step_digests: digests.clone(),
            steps: vec![crate::journal::event::StepChange {
                step: "fix".into(),
                change: "changed".into(),
            }],
            compared: true,
            by: "lee".into(),
        },
    ]))
    .expect("a journal that folds");
    // A later resume compares the file against the accepted version.
    assert_eq!(s.runbook.sha256, "11");
    assert!(s.runbook.untracked);
    assert_eq!(s.runbook.step_digests, digests);
    assert_eq!(
        s.runbook.name, "n",
        "the rest of the runbook's identity stays"
    );
}

#[test]
fn a_process_started_names_the_group_of_its_start_until_the_next_start() {
    let s = scope("fix", None, None);
    let spawned = Event::ProcessStarted {
        scope: s.clone(),
        attempt: 1,
        pgid: 4242,
    };
    let r = RunState::from_records(&timed(vec![
        started(),
        step_started("fix"),
        op_started(s.clone()),
        spawned.clone(),
    ]))
    .unwrap();
    let o = r.steps["fix"].op(&OpKey::from(&s)).unwrap();
    assert_eq!(o.pgid, Some(4242));
    assert_eq!(o.spawned, Some(o.started + chrono::Duration::seconds(1)));
    assert_eq!(r.steps["fix"].unknown_ops(None).len(), 1);
    // A later start has no group until its own `process_started`.
    let r = RunState::from_records(&timed(vec![
        started(),
        step_started("fix"),
        op_started(s.clone()),
        spawned,
        op_finished(s.clone(), Outcome::Failed),
        op_started(s.clone()),
    ]))
    .unwrap();
    let o = r.steps["fix"].op(&OpKey::from(&s)).unwrap();
    assert_eq!((o.pgid, o.spawned), (None, None));
    // A group for a scope never started is ignored.
    let r = RunState::from_records(&records(vec![
        started(),
        Event::ProcessStarted {
            scope: scope("other", None, None),
            attempt: 1,
            pgid: 7,
        },
    ]))
    .unwrap();
    assert!(!r.steps.contains_key("other"));
}

#[test]
fn the_incident_start_and_links_are_the_journaled_ones_and_old_notes_still_load() {
    let at: chrono::DateTime<Utc> = "2018-03-13T01:00:00Z".parse().unwrap();
    let link = crate::journal::event::Link {
        title: "dashboard".into(),
        url: "https://grafana.example.org/d/x".into(),
    };
    let s = RunState::from_records(&records(vec![
        started(),
        Event::RunbookLinks {
            links: vec![link.clone()],
        },
        Event::IncidentStart {
            at,
            by: "ana".into(),
            source: Some("scenario".into()),
        },
    ]))
    .unwrap();
    assert_eq!(s.incident_start, Some(at));
    assert_eq!(s.incident_start_source.as_deref(), Some("scenario"));
    assert_eq!(s.links, vec![link]);
    // A run told nothing knows nothing.
    let s = RunState::from_records(&records(vec![started()])).unwrap();
    assert_eq!(s.incident_start, None);
    assert!(s.links.is_empty());
    // A note of an earlier version (no `at`) reads back as written now.
    let line = r#"{"seq":2,"ts":"2026-01-01T00:00:00Z","event":"note","text":"x","by":"a"}"#;
    let r: Record = serde_json::from_str(line).unwrap();
    assert!(matches!(r.event, Event::Note { at: None, .. }));
    // An incident start of an earlier version (no `source`) reads back as the
    // operator's, and is written back without the field.
    let line = r#"{"seq":3,"ts":"2026-01-01T00:00:00Z","event":"incident_start","at":"2018-03-13T01:00:00Z","by":"a"}"#;
    let r: Record = serde_json::from_str(line).unwrap();
    assert!(matches!(r.event, Event::IncidentStart { source: None, .. }));
    assert!(!serde_json::to_string(&r).unwrap().contains("source"));
}

#[test]
fn an_undo_is_folded_per_step_and_in_the_order_it_was_reached() {
    let undo_op = |item| PlannedOp {
        scope: Scope {
            step: "cordon".into(),
            rung: Some("cordon.undo".into()),
            item: Some(item),
            verification: false,
        },
        provider: "kube".into(),
        display: "kubectl uncordon x".into(),
        op: Value::Null,
        mutating: true,
        impact: None,
    };
    let mut events = vec![
        started(),
        Event::UndoSkipped {
            step: "scale".into(),
            reason: "no undo".into(),
        },
        Event::UndoStarted {
            step: "cordon".into(),
            title: "Uncordon".into(),
            items: vec![0, 2],
            by: "ana".into(),
        },
        Event::OpStarted {
            op: undo_op(0),
            attempt: 1,
        },
        Event::OpFinished {
            scope: undo_op(0).scope,
            attempt: 1,
            outcome: Outcome::Ok,
            duration_ms: 1,
            result: None,
            error: None,
            output_file: None,
            calls: Vec::new(),
        },
    ];
    let r = RunState::from_records(&records(events.clone())).expect("a state");
    assert_eq!(r.undo_order, vec!["scale", "cordon"]);
    let s = r.step("cordon").expect("the step");
    let u = s.undo.as_ref().expect("its undo");
    assert_eq!((u.items.clone(), u.outcome), (vec![0, 2], None));
    assert!(!u.is_done(), "cut short: item 2 is still to undo");
    assert_eq!(s.ok_items(Some("cordon.undo")), vec![Some(0)]);
    assert!(
        s.ok_items(None).is_empty(),
        "the undo's ops are not the action's"
    );
    assert!(
        r.step("scale")
            .and_then(|s| s.undo.as_deref())
            .is_some_and(UndoRecord::is_done)
    );

    events.push(Event::UndoFinished {
        step: "cordon".into(),
        outcome: Outcome::Ok,
        duration_ms: 5,
        summary: "undid 2 item(s)".into(),
    });
    let r = RunState::from_records(&records(events)).expect("a state");
    let u = r
        .step("cordon")
        .and_then(|s| s.undo.as_deref())
        .expect("its undo");
    assert!(u.is_done());
    assert_eq!(u.summary, "undid 2 item(s)");
}

/// A step's operations are held in a small sorted vector and move to a map past
/// `OpMap::SMALL` (issue 18): either way they read back in key order, every one
/// findable, whatever order they started in.
#[test]
fn a_steps_operations_read_back_in_key_order_small_or_large() {
    for n in [1, OpMap::SMALL, OpMap::SMALL + 1, 100] {
        let mut events = vec![started(), step_started("fix")];
        // Items out of order, a rung, and the verification, as a run can journal them.
        for i in (0..n).rev() {
            events.push(op_started(scope("fix", None, Some(i))));
        }
        events.push(op_started(scope("fix", Some("fix.1"), None)));
        let mut verify = scope("fix", None, None);
        verify.verification = true;
        events.push(op_started(verify.clone()));
        for i in 0..n {
            events.push(op_finished(scope("fix", None, Some(i)), Outcome::Ok));
        }
        let r = RunState::from_records(&records(events)).expect("folds");
        let s = &r.steps["fix"];
        assert_eq!(s.ops.len(), n + 2, "{n} items");
        assert_eq!(
            matches!(s.ops, OpMap::Large(_)),
            n + 2 > OpMap::SMALL,
            "{n} items: a map only past SMALL"
        );
        let keys: Vec<OpKey> = s.ops.iter().map(|(k, _)| k.clone()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "{n} items: in key order");
        assert_eq!(s.ok_items(None).len(), n);
        assert_eq!(s.unknown_ops(Some("fix.1")).len(), 1);
        assert!(s.op(&OpKey::from(&verify)).is_some());
        assert!(s.op(&OpKey::from(&scope("fix", None, Some(n)))).is_none());
    }
}

#[test]
fn only_a_step_that_is_done_with_is_forgotten_and_a_later_event_starts_it_again() {
    let rung = Event::RungStarted {
        step: "ladder".into(),
        rung: "ladder.1".into(),
        title: "first".into(),
        index: 1,
        of: 2,
    };
    let mut r = RunState::from_records(&records(vec![
        started(),
        step_started("ok"),
        op_started(scope("ok", None, None)),
        op_finished(scope("ok", None, None), Outcome::Ok),
        finished("ok", Outcome::Ok),
        step_started("bad"),
        finished("bad", Outcome::Failed),
        step_started("ladder"),
        rung,
        finished("ladder", Outcome::Ok),
        step_started("running"),
    ]))
    .unwrap();
    // Finished ok with nothing open: gone. Failed (it may be retried), with rungs (an
    // escalation names them) or not finished: kept.
    assert!(r.forget_finished_step("ok"));
    assert!(r.step("ok").is_none());
    for kept in ["bad", "ladder", "running", "never-seen"] {
        assert!(!r.forget_finished_step(kept), "{kept} is kept");
    }
    assert!(r.step("bad").is_some() && r.step("ladder").is_some());
    // The step started again: a record of its own, as for a step not seen before.
    r.apply(Utc::now(), &step_started("ok"));
    let s = r.step("ok").expect("started again");
    assert!(s.started && s.finished.is_none() && s.ops.is_empty());
}
