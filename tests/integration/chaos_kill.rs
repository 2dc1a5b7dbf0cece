//! Robustness: `runbook run` killed with SIGKILL at random points, and journals cut at
//! random byte offsets. After every kill the journal reads back, `runs` lists the run,
//! `postmortem` renders it and `resume --yes` finishes it, with every side effect
//! happening exactly once unless the journal says its outcome was unknown.
//!
//! Seeded and deterministic in what it asserts: wherever a kill lands, the same
//! properties must hold. A failure names its seed; `CHAOS_SEED=N cargo test --test
//! integration chaos_kill` runs that seed alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use runbook::journal::event::{Event, Outcome, RunStatus};
use runbook::journal::reader;

use crate::support::cli::{Cli, Output};

const ITEMS: [&str; 4] = ["a", "b", "c", "d"];

/// splitmix64: a tiny seeded generator, so a seed means the same thing everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The seeds to run: `CHAOS_SEED` alone, or `n` seeds derived from `base`.
fn seeds(base: u64, n: u64) -> Vec<u64> {
    match std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => (0..n).map(|i| base + i).collect(),
    }
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chaos/kill.yaml")
}

/// A temp dir that is the "system" and holds the state dir.
struct Sys {
    dir: tempfile::TempDir,
}

impl Sys {
    fn new() -> Sys {
        let sys = Sys {
            dir: tempfile::tempdir().expect("a temp dir"),
        };
        std::fs::write(sys.path("broken"), "").expect("writable temp dir");
        sys
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn state(&self) -> PathBuf {
        self.path(".runbook")
    }

    fn cmd(&self, args: &[&str]) -> Cli {
        Cli::new()
            .state_dir(self.state())
            .args(args)
            .env("USER", "chaos")
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).run()
    }

    fn start_args(&self) -> Vec<String> {
        vec![
            "run".into(),
            fixture().display().to_string(),
            "-p".into(),
            format!("dir={}", self.dir.path().display()),
            "--yes".into(),
        ]
    }

    fn run_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.state().join("runs"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    fn journal(&self, id: &str) -> PathBuf {
        self.state().join("runs").join(id).join("journal.ndjson")
    }

    fn effects(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("effects"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// Exit 70, a signal, or a Rust panic message: the tool crashed instead of answering.
fn crashed(o: &Output) -> bool {
    let stderr = o.stderr.as_str();
    o.status.code().is_none_or(|c| c == 70 || c == 101) || stderr.contains("panicked at")
}

/// Start the binary with `args` and SIGKILL it `delay` after `from`.
fn kill_after(sys: &Sys, args: &[String], from: From, delay: Duration) {
    let mut child = sys
        .cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .discard_output()
        .spawn();
    let mut t0 = Instant::now();
    if from == From::JournalCreated {
        while !sys.state().join("runs").exists() && t0.elapsed() < Duration::from_secs(20) {
            if child.try_wait().expect("a waitable child").is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        t0 = Instant::now();
    }
    while t0.elapsed() < delay {
        if child.try_wait().expect("a waitable child").is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill(); // SIGKILL; the child may have exited just now.
    let _ = child.wait();
}

/// Where a kill's delay counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum From {
    /// Process start: covers kills before anything was journaled.
    Spawn,
    /// The moment the run's folder appears: spreads kills over the steps.
    JournalCreated,
}

/// The duplicate effects the journal allows: the scope of every `op_finished` with
/// outcome unknown, as the line its side effect writes.
fn unknown_effects(events: &[Event]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in events {
        if let Event::OpFinished {
            scope,
            outcome: Outcome::Unknown,
            ..
        } = e
            && !scope.verification
        {
            let line = match (scope.step.as_str(), scope.item) {
                ("repair", None) => "repair".to_string(),
                ("mark", Some(i)) => format!("item {}", ITEMS[i]),
                // Read-only steps write no effect.
                _ => continue,
            };
            *m.entry(line).or_default() += 1;
        }
    }
    m
}

/// Kill a run after `delay` (and its first resume after `resume_kill`), then check the journal, `runs`, `postmortem` and
/// `resume`, and count the side effects.
fn kill_and_recover(seed: u64, from: From, delay: Duration, resume_kill: Option<Duration>) {
    let ctx = format!(
        "seed {seed} (kill {delay:?} after {from:?}, then the resume after {resume_kill:?}; \
         rerun with CHAOS_SEED={seed})"
    );
    let sys = Sys::new();
    kill_after(&sys, &sys.start_args(), from, delay);
    // The killed process's shell children may still be finishing their sleep: they
    // can only add effects of ops whose result was not journaled (unknown), which
    // the checks below allow; waiting keeps them from racing with the resume.
    std::thread::sleep(Duration::from_millis(250));

    let ids = sys.run_ids();
    if ids.is_empty() {
        assert!(sys.effects().is_empty(), "{ctx}: effects without a run");
        return;
    }
    assert_eq!(ids.len(), 1, "{ctx}: {ids:?}");
    let id = &ids[0];
    let journal = reader::read(&sys.journal(id))
        .unwrap_or_else(|e| panic!("{ctx}: the killed run's journal reads back: {e}"));
    if journal.records.is_empty() {
        // Killed while writing the very first event: nothing ran, and resume says so.
        assert!(
            sys.effects().is_empty(),
            "{ctx}: effects without run_started"
        );
        let out = sys.run(&["resume", id, "--yes"]);
        assert!(!crashed(&out), "{ctx}: {}", out);
        return;
    }

    let runs = sys.run(&["runs"]);
    assert_eq!(runs.status.code(), Some(0), "{ctx}: {}", runs);
    assert!(
        runs.stdout.as_str().contains(id.as_str()),
        "{ctx}: runs lists the run: {}",
        runs
    );
    let pm = sys.run(&["postmortem", id]);
    assert_eq!(pm.status.code(), Some(0), "{ctx}: {}", pm);
    assert!(pm.stdout.as_str().contains("## Timeline"), "{ctx}: {}", pm);

    let finished = matches!(
        journal.records.last().map(|r| &r.event),
        Some(Event::RunFinished { .. })
    );
    eprintln!(
        "{ctx}: killed after {} event(s){}{}",
        journal.records.len(),
        if journal.torn_tail { ", torn tail" } else { "" },
        if finished {
            ", run already finished"
        } else {
            ""
        }
    );
    let mut finished = finished;
    if let Some(d) = resume_kill.filter(|_| !finished) {
        // Kill the resume too: the journal must survive a second crash.
        let args: Vec<String> = ["resume", id, "--yes"].map(String::from).to_vec();
        kill_after(&sys, &args, From::Spawn, d);
        std::thread::sleep(Duration::from_millis(250));
        let again = reader::read(&sys.journal(id))
            .unwrap_or_else(|e| panic!("{ctx}: the journal reads back after two kills: {e}"));
        finished = matches!(
            again.records.last().map(|r| &r.event),
            Some(Event::RunFinished { .. })
        );
        let pm = sys.run(&["postmortem", id]);
        assert_eq!(pm.status.code(), Some(0), "{ctx}: {}", pm);
    }
    if !finished {
        let out = sys.run(&["resume", id, "--yes"]);
        assert_eq!(out.status.code(), Some(0), "{ctx}: resume: {}", out);
        assert!(
            !out.stderr.as_str().contains("Kubernetes"),
            "{ctx}: no cluster warning for a runbook without kube steps: {}",
            out
        );
    }
    let events: Vec<Event> = reader::read(&sys.journal(id))
        .unwrap_or_else(|e| panic!("{ctx}: the resumed run's journal reads back: {e}"))
        .records
        .into_iter()
        .map(|r| r.event)
        .collect();
    assert!(
        matches!(
            events.last(),
            Some(Event::RunFinished {
                status: RunStatus::Succeeded,
                ..
            })
        ),
        "{ctx}: the run ends succeeded: {:?}",
        events.last()
    );

    // Every side effect happened, and more than once only where the journal says its
    // outcome was unknown (each unknown allows one more execution).
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for line in sys.effects() {
        *counts.entry(line).or_default() += 1;
    }
    let allowed = unknown_effects(&events);
    eprintln!("{ctx}: effects {counts:?}, unknown outcomes {allowed:?}");
    let mut expected: Vec<String> = vec!["repair".into()];
    expected.extend(ITEMS.iter().map(|i| format!("item {i}")));
    for line in &expected {
        let n = counts.get(line).copied().unwrap_or(0);
        let extra = allowed.get(line).copied().unwrap_or(0);
        assert!(
            n >= 1 && n <= 1 + extra,
            "{ctx}: `{line}` happened {n} time(s), the journal allows 1 + {extra}: {counts:?}"
        );
    }
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        expected.iter().collect::<Vec<_>>().tap_sort(),
        "{ctx}: no other effects"
    );
    // Completed steps are not run again: each step finishes once.
    for step in ["detect", "repair", "mark", "all-done"] {
        let n = events
            .iter()
            .filter(|e| matches!(e, Event::StepFinished { step: s, .. } if s == step))
            .count();
        assert_eq!(n, 1, "{ctx}: step {step} finished {n} times");
    }
}

trait TapSort {
    fn tap_sort(self) -> Self;
}

impl<T: Ord> TapSort for Vec<T> {
    fn tap_sort(mut self) -> Self {
        self.sort();
        self
    }
}

/// How long an uninterrupted run takes here (debug build, loaded machine), from
/// process start and from the moment its journal appears, so the kills spread over
/// the whole run.
fn full_run_durations() -> (Duration, Duration) {
    let sys = Sys::new();
    let args = sys.start_args();
    let mut child = sys
        .cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .spawn();
    let t0 = Instant::now();
    let mut created = None;
    let status = loop {
        if created.is_none() && sys.state().join("runs").exists() {
            created = Some(Instant::now());
        }
        if let Some(s) = child.try_wait().expect("a waitable child") {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the run never ended"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(status.code(), Some(0), "an uninterrupted run succeeds");
    let lines = sys.effects();
    assert_eq!(
        lines.len(),
        5,
        "an uninterrupted run: each effect once: {lines:?}"
    );
    let total = t0.elapsed();
    (total, created.map_or(total, |c| c.elapsed()))
}

#[test]
fn a_run_killed_at_random_points_resumes_to_success_with_every_effect_once_or_reverified() {
    let (total, after_journal) = full_run_durations();
    for seed in seeds(1, 10) {
        let mut rng = Rng(seed);
        // One kill in four counts from process start, the others from the run's
        // first event; each may land a little past the usual end.
        let (from, span) = if rng.below(4) == 0 {
            (From::Spawn, total)
        } else {
            (From::JournalCreated, after_journal)
        };
        let delay = Duration::from_millis(rng.below(span.as_millis() as u64 * 11 / 10 + 1));
        // One kill in three also kills the first resume.
        let resume_kill = (rng.below(3) == 0)
            .then(|| Duration::from_millis(rng.below(total.as_millis() as u64 + 1)));
        kill_and_recover(seed, from, delay, resume_kill);
    }
}

#[test]
fn a_journal_cut_at_any_byte_reads_back_and_resume_or_postmortem_never_crash() {
    // One complete journal to cut.
    let origin = Sys::new();
    let args = origin.start_args();
    let out = origin.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0), "{}", out);
    let ids = origin.run_ids();
    let bytes = std::fs::read(origin.journal(&ids[0])).expect("the journal");
    let full = reader::parse(&bytes).expect("a whole journal parses");

    for seed in seeds(100, 8) {
        let mut rng = Rng(seed);
        let cut = rng.below(bytes.len() as u64 + 1) as usize;
        let ctx = format!(
            "seed {seed} (cut at byte {cut} of {}; CHAOS_SEED={seed})",
            bytes.len()
        );
        // The copy's system is in the state the original run left its own in, so
        // what the journal says was done is done there too.
        let copy = Sys::new();
        for name in ["broken", "effects"] {
            let _ = std::fs::remove_file(copy.path(name));
        }
        for name in ["repaired", "done-a", "done-b", "done-c", "done-d"] {
            std::fs::write(copy.path(name), "").expect("writable temp dir");
        }
        let id = "20260101-000000-kill-0000";
        let dir = copy.state().join("runs").join(id);
        std::fs::create_dir_all(&dir).expect("a run dir");
        std::fs::write(dir.join("journal.ndjson"), &bytes[..cut]).expect("a journal copy");

        let j = reader::read(&dir.join("journal.ndjson"))
            .unwrap_or_else(|e| panic!("{ctx}: a torn tail is never an error: {e}"));
        let whole = bytes[..cut].iter().filter(|&&b| b == b'\n').count();
        assert_eq!(j.records.len(), whole, "{ctx}: every whole line is kept");
        assert_eq!(j.records[..], full.records[..whole], "{ctx}");
        assert_eq!(j.torn_tail, cut > 0 && bytes[cut - 1] != b'\n', "{ctx}");

        // The resume acts on the copy's own system: point the journal's params at it.
        let text_cut = String::from_utf8_lossy(&bytes[..cut]).replace(
            &origin.dir.path().display().to_string(),
            &copy.dir.path().display().to_string(),
        );
        std::fs::write(dir.join("journal.ndjson"), text_cut).expect("a journal copy");

        let pm = copy.run(&["postmortem", id]);
        assert!(!crashed(&pm), "{ctx}: postmortem: {}", pm);
        if pm.status.code() != Some(0) {
            assert!(
                pm.stderr.as_str().contains("error"),
                "{ctx}: a clear error: {}",
                pm
            );
        }
        let res = copy.run(&["resume", id, "--yes"]);
        assert!(!crashed(&res), "{ctx}: resume: {}", res);
        let code = res.status.code();
        eprintln!(
            "{ctx}: postmortem exit {:?}, resume exit {code:?}",
            pm.status.code()
        );
        // The copy's world may disagree with a cut journal (a step the journal has not
        // finished was done there), so a failed step is a fair end too: what matters
        // is a clean end, journaled, or a clear refusal.
        match code {
            Some(0 | 1 | 5) => {
                let after = reader::read(&dir.join("journal.ndjson"))
                    .unwrap_or_else(|e| panic!("{ctx}: the resumed journal reads back: {e}"));
                assert!(
                    matches!(
                        after.records.last().map(|r| &r.event),
                        Some(Event::RunFinished { .. })
                    ),
                    "{ctx}: the resumed run ends with run_finished: {}",
                    res
                );
                assert!(!after.torn_tail, "{ctx}: the resume cut the torn line");
                let pm = copy.run(&["postmortem", id]);
                assert_eq!(pm.status.code(), Some(0), "{ctx}: {}", pm);
            }
            Some(2) => assert!(
                res.stderr.as_str().contains("error"),
                "{ctx}: a clear error: {}",
                res
            ),
            _ => panic!("{ctx}: unexpected exit: {}", res),
        }
    }
}

#[test]
fn empty_and_corrupt_journals_are_listed_and_resume_refuses_them_with_a_clear_error() {
    let sys = Sys::new();
    let runs = sys.state().join("runs");
    for id in ["a-empty", "b-corrupt"] {
        std::fs::create_dir_all(runs.join(id)).expect("a run dir");
    }
    // Killed while writing its first event; edited by hand in the middle.
    std::fs::write(sys.journal("a-empty"), "").expect("writable temp dir");
    let good = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journals/paused.ndjson"),
    )
    .expect("a fixture journal");
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(1, "{not json");
    std::fs::write(sys.journal("b-corrupt"), lines.join("\n") + "\n").expect("writable");

    let list = sys.run(&["runs"]);
    assert_eq!(list.status.code(), Some(0), "{}", list);
    let stdout = list.stdout.as_str();
    for id in ["a-empty", "b-corrupt"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("runs lists {id}: {stdout}"));
        assert!(line.contains("unreadable"), "{line}");
        assert!(
            !line.contains("-262143"),
            "an unreadable run has no start time to show: {line}"
        );
    }

    let empty = sys.run(&["resume", "a-empty", "--yes"]);
    assert!(!crashed(&empty), "{}", empty);
    assert_eq!(empty.status.code(), Some(2), "{}", empty);
    assert!(
        empty.stderr.as_str().contains("journal is empty"),
        "{}",
        empty
    );

    let before = std::fs::read(sys.journal("a-empty")).expect("the empty journal");
    let note = sys.run(&["note", "a-empty", "paged storage"]);
    assert!(!crashed(&note), "{}", note);
    assert_eq!(note.status.code(), Some(2), "{}", note);
    assert!(note.stderr.as_str().contains("has no events"), "{}", note);
    assert_eq!(
        std::fs::read(sys.journal("a-empty")).expect("the empty journal"),
        before,
        "a note is not the first event of a run"
    );

    let corrupt = sys.run(&["resume", "b-corrupt", "--yes"]);
    assert!(
        !crashed(&corrupt),
        "a corrupt journal is bad input, not a bug in runbook: {}",
        corrupt
    );
    assert_eq!(corrupt.status.code(), Some(2), "{}", corrupt);
    assert!(
        corrupt
            .stderr
            .as_str()
            .contains("journal.ndjson:2: corrupt journal line"),
        "the error names the file and line: {}",
        corrupt
    );
    let pm = sys.run(&["postmortem", "b-corrupt"]);
    assert!(!crashed(&pm), "{}", pm);
    assert_eq!(
        pm.status.code(),
        Some(2),
        "bad input, as for resume: {}",
        pm
    );
    assert!(pm.stderr.as_str().contains("journal.ndjson:2"), "{}", pm);
}

/// An unfinished run's journal with whole lines dropped, duplicated or swapped: every
/// line parses, the sequence is one no run produced. Resume must refuse it clearly or
/// finish it, never crash or hang.
#[test]
fn resume_of_a_journal_with_lines_dropped_duplicated_or_swapped_never_crashes() {
    let origin = Sys::new();
    let args = origin.start_args();
    let out = origin.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0), "{}", out);
    let ids = origin.run_ids();
    let source = std::fs::read_to_string(origin.journal(&ids[0])).expect("the journal");
    let lines: Vec<&str> = source.lines().collect();

    for seed in seeds(200, 8) {
        let mut rng = Rng(seed);
        // A run cut short (as if killed) somewhere before its end, then tampered with.
        let keep = 3 + rng.below(lines.len() as u64 - 3) as usize;
        let mut mutated: Vec<&str> = lines[..keep].to_vec();
        let mut what = vec![format!("first {keep} lines")];
        for _ in 0..1 + rng.below(3) {
            let n = mutated.len() as u64;
            let i = 1 + rng.below(n - 1) as usize; // keep run_started
            match rng.below(3) {
                0 => {
                    what.push(format!("drop {i}"));
                    mutated.remove(i);
                }
                1 => {
                    what.push(format!("duplicate {i}"));
                    mutated.insert(i, mutated[i]);
                }
                _ if i + 1 < mutated.len() => {
                    what.push(format!("swap {i}"));
                    mutated.swap(i, i + 1);
                }
                _ => {}
            }
        }
        let ctx = format!("seed {seed} ({}; CHAOS_SEED={seed})", what.join(", "));
        // The copy's system is fixed already, as the original run left its own.
        let copy = Sys::new();
        for name in ["broken", "effects"] {
            let _ = std::fs::remove_file(copy.path(name));
        }
        for name in ["repaired", "done-a", "done-b", "done-c", "done-d"] {
            std::fs::write(copy.path(name), "").expect("writable temp dir");
        }
        let id = "20260101-000000-kill-0001";
        let dir = copy.state().join("runs").join(id);
        std::fs::create_dir_all(&dir).expect("a run dir");
        let text_mutated = (mutated.join("\n") + "\n").replace(
            &origin.dir.path().display().to_string(),
            &copy.dir.path().display().to_string(),
        );
        std::fs::write(dir.join("journal.ndjson"), text_mutated).expect("a journal copy");

        let mut child = copy.cmd(&["resume", id, "--yes"]).spawn();
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().expect("a waitable child") {
                break s;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("{ctx}: resume hung");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
        }
        let code = status.code();
        eprintln!("{ctx}: resume exit {code:?}");
        assert!(
            !matches!(code, None | Some(70 | 101)) && !stderr.contains("panicked at"),
            "{ctx}: resume crashed: {code:?}\n{stderr}"
        );
        assert!(
            matches!(code, Some(0 | 1 | 2 | 5)),
            "{ctx}: exit {code:?}\n{stderr}"
        );
        // A line dropped from the middle, repeated or swapped breaks the gapless
        // numbering: resume must refuse that journal rather than guess what ran.
        let tampered = mutated
            .iter()
            .enumerate()
            .any(|(i, l)| !l.starts_with(&format!("{{\"seq\":{},", i + 1)));
        if tampered {
            assert_eq!(code, Some(2), "{ctx}: resume refuses it\n{stderr}");
            assert!(
                stderr.contains("journal.ndjson:") && stderr.contains("edited or damaged"),
                "{ctx}: names the line: {stderr}"
            );
        }
        if code == Some(2) {
            assert!(stderr.contains("error"), "{ctx}: a clear error: {stderr}");
        } else {
            let after = reader::read(&dir.join("journal.ndjson"))
                .unwrap_or_else(|e| panic!("{ctx}: the journal reads back: {e}"));
            assert!(
                matches!(
                    after.records.last().map(|r| &r.event),
                    Some(Event::RunFinished { .. })
                ),
                "{ctx}: ends with run_finished\n{stderr}"
            );
        }
        let pm = copy.run(&["postmortem", id]);
        assert!(!crashed(&pm), "{ctx}: postmortem: {}", pm);
        if tampered {
            // Resume refused it; the postmortem renders it, and says what is wrong.
            assert_eq!(pm.status.code(), Some(0), "{ctx}: {}", pm);
            assert!(
                pm.stdout.as_str().contains("of the journal: event "),
                "{ctx}: the report warns about the numbering: {}",
                pm
            );
        }
    }
}
