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
