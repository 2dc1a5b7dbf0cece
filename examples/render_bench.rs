//! How long rendering a big journal takes: builds a journal of N events (default
//! 10 000) in memory, shaped like a long run of the seed incident (checks, a gated
//! `for_each` cordon over many nodes, a verification polled many times, an escalation,
//! notes), then times reading it and rendering it with the default template.
//!
//! With `one-step`, the journal is instead one gated `for_each` step of EVENTS/2
//! operations (the shape of issue 18's quadratic case: each operation start used to
//! search the step's earlier operations).
//!
//! `cargo run --release --example render_bench -- [EVENTS] [one-step]`, or
//! `scripts/bench-render.sh [EVENTS] [one-step]`. Nothing is written to disk. It is a
//! microbenchmark: it times the library's read and render, not the binary. With
//! `RENDER_BENCH_WRITE=STATE_DIR` it only writes the journal as run `bench` there,
//! for `scripts/bench-postmortem-rss.sh` to measure the binary.

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use runbook::journal::event::{
    ApiCall, ApprovalSource, Decision, Event, Outcome, PlannedOp, Record, RunStatus, RunbookRef,
    Scope,
};
use runbook::journal::reader;
use runbook::render::{self, RenderOpts};
use serde_json::json;

struct Gen {
    records: Vec<Record>,
    ts: DateTime<Utc>,
}

impl Gen {
    fn push(&mut self, ms: i64, event: Event) {
        self.ts += Duration::milliseconds(ms);
        let seq = self.records.len() as u64 + 1;
        self.records.push(Record {
            seq,
            ts: self.ts,
            event,
        });
    }
}

fn scope(step: &str, item: Option<usize>, verification: bool) -> Scope {
    Scope {
        step: step.to_owned(),
        rung: None,
        item,
        verification,
    }
}

fn run_started(g: &mut Gen) {
    g.push(
        0,
        Event::RunStarted {
            format: 1,
            run_id: "bench".into(),
            runbook: RunbookRef {
                name: "hub-pvc-locked".into(),
                title: "Force-delete the pods of lost nodes".into(),
                path: "runbooks/hub-pvc-locked.yaml".into(),
                sha256: "0".repeat(64),
                ..RunbookRef::default()
            },
            params: serde_json::Map::new(),
            operator: "ana".into(),
            host: "bench".into(),
            tool_version: "0.1.0".into(),
            dry_run: false,
            target: None,
        },
    );
}

/// One `for_each` step with as many operations as fit in `events`.
fn one_step(events: usize) -> Vec<Record> {
    let mut g = Gen {
        records: Vec::new(),
        ts: "2018-03-13T06:28:00Z".parse().expect("a valid timestamp"),
    };
    run_started(&mut g);
    let id = "delete-lost-pods";
    g.push(
        10,
        Event::StepStarted {
            step: id.into(),
            title: "Force-delete the pods on lost nodes".into(),
            kind: "action".into(),
        },
    );
    let items = events.saturating_sub(5) / 2;
    for i in 0..items {
        let s = scope(id, Some(i), false);
        g.push(
            1,
            Event::OpStarted {
                op: PlannedOp {
                    scope: s.clone(),
                    provider: "kube".into(),
                    display: format!("kubectl delete pod hub-{i} --grace-period=0 --force -n prod"),
                    op: json!({ "delete": "pod", "name": format!("hub-{i}") }),
                    mutating: true,
                    impact: None,
                },
                attempt: 1,
            },
        );
        g.push(
            2,
            Event::OpFinished {
                scope: s,
                attempt: 1,
                outcome: Outcome::Ok,
                duration_ms: 2,
                result: Some(json!({ "deleted": format!("hub-{i}") })),
                error: None,
                output_file: None,
                calls: vec![],
            },
        );
    }
    g.push(
        5,
        Event::StepFinished {
            step: id.into(),
            outcome: Outcome::Ok,
            duration_ms: 1,
            summary: format!("deleted {items} pods"),
            fixed_by: None,
        },
    );
    g.push(
        1,
        Event::RunFinished {
            status: RunStatus::Succeeded,
            duration_ms: 0,
            reason: None,
        },
    );
    g.records
}

fn journal(events: usize, shape: Option<&str>) -> String {
    if shape == Some("one-step") {
        return to_text(&one_step(events));
    }
    let mut g = Gen {
        records: Vec::new(),
        ts: "2018-03-13T06:28:00Z".parse().expect("a valid timestamp"),
    };
    g.push(0, Event::RunStarted {
        format: 1,
        run_id: "bench".into(),
        runbook: RunbookRef {
            name: "hub-pvc-locked".into(),
            title: "The hub cannot start because its database volume is held by a pod on a lost node".into(),
            path: "runbooks/hub-pvc-locked.yaml".into(),
            sha256: "0".repeat(64),
            ..RunbookRef::default()
        },
        params: serde_json::Map::from_iter([("namespace".to_owned(), json!("prod"))]),
        operator: "ana".into(),
        host: "bench".into(),
        tool_version: "0.1.0".into(),
        dry_run: false,
        target: None,
    });
    let mut step = 0;
    // Steps of about 50 events each: a gated for_each over 10 nodes, 10 polls, a note.
    while g.records.len() + 60 < events {
        step += 1;
        let id = format!("cordon-{step}");
        g.push(
            10,
            Event::StepStarted {
                step: id.clone(),
                title: format!("Cordon node pool {step}"),
                kind: "action".into(),
            },
        );
        let ops: Vec<PlannedOp> = (0..10)
            .map(|i| PlannedOp {
                scope: scope(&id, Some(i), false),
                provider: "kube".into(),
                display: format!("kubectl cordon gke-prod-a-ssd-pool-{step}-node-{i}"),
                op: json!({ "cordon": format!("gke-prod-a-ssd-pool-{step}-node-{i}") }),
                mutating: true,
                impact: None,
            })
            .collect();
        g.push(
            5,
            Event::GateRequested {
                step: id.clone(),
                rung: None,
                ops: ops.clone(),
                digest: "d".into(),
                preview: None,
                quorum: Default::default(),
            },
        );
        g.push(
            4000,
            Event::GateDecided {
                step: id.clone(),
                rung: None,
                decision: Decision::Approved,
                by: "ana".into(),
                source: ApprovalSource::Prompt,
                digest: "d".into(),
            },
        );
        for op in ops {
            let s = op.scope.clone();
            let path = format!(
                "/api/v1/nodes/gke-prod-a-ssd-pool-{step}-node-{}",
                s.item.unwrap_or(0)
            );
            g.push(2, Event::OpStarted { op, attempt: 1 });
            g.push(
                30,
                Event::OpFinished {
                    scope: s,
                    attempt: 1,
                    outcome: Outcome::Ok,
                    duration_ms: 30,
                    result: Some(json!({ "unschedulable": true, "stdout": "node cordoned\n" })),
                    error: None,
                    output_file: None,
                    calls: vec![ApiCall {
                        method: "PATCH".into(),
                        path,
                        status: 200,
                        duration_ms: 28,
                        kubectl: None,
                    }],
                },
            );
        }
        for attempt in 1..=10 {
            let vs = scope(&id, None, true);
            g.push(
                2000,
                Event::OpStarted {
                    op: PlannedOp {
                        scope: vs.clone(),
                        provider: "kube".into(),
                        display: "kubectl get nodes -o json".into(),
                        op: json!({ "get": "nodes" }),
                        mutating: false,
                        impact: None,
                    },
                    attempt,
                },
            );
            g.push(
                20,
                Event::OpFinished {
                    scope: vs.clone(),
                    attempt,
                    outcome: Outcome::Ok,
                    duration_ms: 20,
                    result: Some(json!([{ "metadata": { "name": "n" } }])),
                    error: None,
                    output_file: None,
                    calls: vec![],
                },
            );
            g.push(
                1,
                Event::VerifyPolled {
                    scope: vs,
                    attempt,
                    ok: attempt == 10,
                    detail: Some(format!("{attempt} of 10 nodes unschedulable")),
                },
            );
        }
        g.push(
            5,
            Event::Note {
                text: format!("pool {step} done | next: `pool {}`", step + 1),
                by: "ana".into(),
                at: None,
            },
        );
        g.push(
            5,
            Event::StepFinished {
                step: id,
                outcome: Outcome::Ok,
                duration_ms: 25_000,
                summary: "cordoned 10 nodes".into(),
                fixed_by: None,
            },
        );
    }
    while g.records.len() + 1 < events {
        g.push(
            1000,
            Event::Note {
                text: "waiting".into(),
                by: "ana".into(),
                at: None,
            },
        );
    }
    g.push(
        10,
        Event::RunFinished {
            status: RunStatus::Succeeded,
            duration_ms: 0,
            reason: None,
        },
    );
    to_text(&g.records)
}

fn to_text(records: &[Record]) -> String {
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r).expect("records serialize"));
        text.push('\n');
    }
    text
}

fn main() {
    let events: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let shape = std::env::args().nth(2);
    let text = journal(events, shape.as_deref());
    // RENDER_BENCH_WRITE=STATE_DIR: write the journal as run `bench` of that state
    // dir and stop, for measuring `runbook postmortem` from outside
    // (scripts/bench-postmortem-rss.sh).
    if let Ok(state) = std::env::var("RENDER_BENCH_WRITE") {
        let dir = std::path::Path::new(&state).join("runs").join("bench");
        let written = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("journal.ndjson"), &text));
        if let Err(e) = written {
            eprintln!("cannot write {}: {e}", dir.display());
            std::process::exit(1);
        }
        println!(
            "{events} events ({} KiB) in {}",
            text.len() / 1024,
            dir.display()
        );
        return;
    }
    let runs: usize = std::env::var("RENDER_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let mut best_read = f64::MAX;
    let mut best_render = f64::MAX;
    let mut best_model = f64::MAX;
    let mut size = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let j = match reader::parse(text.as_bytes()) {
            Ok(j) => j,
            Err((line, e)) => {
                eprintln!("generated journal is corrupt at line {line}: {e}");
                std::process::exit(1);
            }
        };
        best_read = best_read.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let _ = render::model(&j, chrono_tz::UTC);
        best_model = best_model.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        // With a chart file, as `-o` renders: the chart scan is timed too.
        let opts = RenderOpts {
            chart_file: Some("pm.impact.svg".into()),
            ..RenderOpts::default()
        };
        let md = match render::render(&j, &opts) {
            Ok(md) => md,
            Err(e) => {
                eprintln!("render failed: {e}");
                std::process::exit(1);
            }
        };
        best_render = best_render.min(t.elapsed().as_secs_f64());
        size = md.len();
    }
    println!(
        "{events} events ({} KiB of journal): read {:.1} ms, render {:.1} ms (of which the model {:.1} ms), total {:.1} ms (best of {runs}); {} KiB of markdown",
        text.len() / 1024,
        best_read * 1000.0,
        best_render * 1000.0,
        best_model * 1000.0,
        (best_read + best_render) * 1000.0,
        size / 1024
    );
}
