use super::*;

#[test]
fn hmac_matches_rfc_4231_test_case_2() {
    let mac = payload::hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    assert_eq!(
        hex(&mac),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn a_receiver_is_named_by_scheme_host_and_port_never_by_its_path() {
    let t = Target::from_flag("https://hooks.slack.com/services/T0/B0/secretpart").unwrap();
    assert_eq!(t.label(), "https://hooks.slack.com");
    assert_eq!(t.kind, NotifyKind::Slack);
    assert!(!format!("{t:?}").contains("secretpart"));
    let t = Target::from_flag("http://127.0.0.1:9/hook?token=x").unwrap();
    assert_eq!(t.label(), "http://127.0.0.1:9");
    assert_eq!(t.kind, NotifyKind::Webhook);
    assert!(Target::from_flag("ftp://example.org/x").is_err());
    assert!(Target::from_flag("hooks.example.org").is_err());
}

#[test]
fn a_full_queue_drops_its_oldest_notification_and_counts_it() {
    let t = Target::from_flag("http://127.0.0.1:9/hook").unwrap();
    let mut opts = NotifyOpts::new(std::env::temp_dir());
    opts.queue = 2;
    // Not started: the queue is only filled.
    let shared = Arc::new(Shared {
        lanes: vec![Lane {
            target: t,
            queue: Mutex::new(VecDeque::new()),
            wake: tokio::sync::Notify::new(),
            dropped: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }],
        opts,
        closed: AtomicBool::new(false),
        journal: Mutex::new(None),
    });
    let n = Notifier {
        shared,
        done: Mutex::new(None),
    };
    let state = RunState {
        run_id: "r1".into(),
        ..RunState::default()
    };
    for seq in 1..=3 {
        let record = Record {
            seq,
            ts: chrono::Utc::now(),
            event: Event::RunResumed {
                operator: format!("op{seq}"),
                host: "h".into(),
            },
        };
        n.record(&record, &state);
    }
    let lane = &n.shared.lanes[0];
    let q = lane.queue.lock().unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(lane.dropped.load(Ordering::Relaxed), 1);
    let first: Value = serde_json::from_slice(&q[0].body).unwrap();
    assert_eq!(first["journal"]["seq"], 2, "the oldest (seq 1) was dropped");
}

use serde_json::Value;

fn gate_record() -> Record {
    use crate::journal::event::{Impact, PlannedOp, Scope};
    let op = |display: &str, impact: Option<Impact>| PlannedOp {
        scope: Scope {
            step: "free".into(),
            ..Scope::default()
        },
        provider: "kube".into(),
        display: display.into(),
        op: serde_json::json!({}),
        mutating: true,
        impact,
    };
    Record {
        seq: 7,
        ts: chrono::Utc::now(),
        event: Event::GateRequested {
            step: "free".into(),
            rung: None,
            ops: vec![
                op("kubectl cordon node-2", None),
                op(
                    "kubectl delete pods -l component=hub -n prod",
                    Some(crate::journal::event::Impact {
                        summary: "would delete 2 pods: hub-1, hub-2".into(),
                        objects: vec!["hub-1".into(), "hub-2".into()],
                        matched: None,
                    }),
                ),
            ],
            digest: "sha256:abc".into(),
            preview: None,
            quorum: Default::default(),
        },
    }
}

fn seed_state() -> RunState {
    let mut state = RunState {
        run_id: "20260313-142501-hub-pvc-locked-7f3a".into(),
        ..RunState::default()
    };
    state.runbook.name = "hub-pvc-locked".into();
    state.runbook.title = "The hub <cannot> start".into();
    state
}

#[test]
fn with_serves_address_a_gate_links_to_its_approval_page_with_plan_and_blast_radius() {
    let state = seed_state();
    let m = Message::of(&gate_record(), &state, Some("https://rb.example.org")).unwrap();
    assert_eq!(m.on, NotifyOn::Waiting);
    let w = webhook_payload(&m);
    let page = "https://rb.example.org/runs/20260313-142501-hub-pvc-locked-7f3a";
    assert_eq!(w["links"]["approve"], page);
    assert_eq!(w["links"]["run"], page);
    assert!(w["links"].get("postmortem").is_none());
    assert_eq!(w["gate"]["blast_radius"]["operations"], 2);
    assert_eq!(
        w["gate"]["blast_radius"]["objects"],
        serde_json::json!(["kubectl cordon node-2", "hub-1", "hub-2"])
    );
    assert_eq!(
        w["gate"]["plan"][1]["impact"],
        "would delete 2 pods: hub-1, hub-2"
    );
    let s = slack_payload(&m);
    let text = s.to_string();
    assert!(
        text.contains(&format!("<{page}|Approve on the run's page>")),
        "{text}"
    );
    // Slack's mrkdwn escapes.
    assert!(text.contains("The hub &lt;cannot&gt; start"), "{text}");
    assert!(
        s["blocks"][1]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("! kubectl cordon node-2")
    );

    // The end links to the postmortem; a pause is no end.
    let end = |status| Record {
        seq: 9,
        ts: chrono::Utc::now(),
        event: Event::RunFinished {
            status,
            duration_ms: 1200,
            reason: Some("a step failed".into()),
        },
    };
    let f = Message::of(
        &end(crate::journal::event::RunStatus::Failed),
        &state,
        Some("https://rb.example.org"),
    )
    .unwrap();
    assert_eq!(f.on, NotifyOn::Failed);
    assert_eq!(
        webhook_payload(&f)["links"]["postmortem"],
        format!("{page}/postmortem")
    );
    assert!(Message::of(&end(crate::journal::event::RunStatus::Paused), &state, None).is_none());
}

#[test]
fn a_long_plan_is_cut_to_slacks_section_limit_and_counted_in_the_webhook() {
    let mut record = gate_record();
    if let Event::GateRequested { ops, .. } = &mut record.event {
        let one = ops[0].clone();
        *ops = (0..500)
            .map(|i| {
                let mut o = one.clone();
                o.display = format!("kubectl cordon node-{i:04}-{}", "x".repeat(40));
                o
            })
            .collect();
    }
    let m = Message::of(&record, &seed_state(), None).unwrap();
    let w = webhook_payload(&m);
    assert_eq!(w["gate"]["plan"].as_array().unwrap().len(), 50);
    assert_eq!(w["gate"]["plan_truncated"], true);
    assert_eq!(w["gate"]["blast_radius"]["objects_total"], 500);
    let s = slack_payload(&m);
    for b in s["blocks"].as_array().unwrap() {
        if let Some(t) = b["text"]["text"].as_str() {
            assert!(t.chars().count() <= 3000, "{} chars", t.chars().count());
        }
    }
}
