//! Two runs of the same runbook against the same system both act (issue 13 item 6).
//! Until runs take a lock on their target, a new run at least says so: when another
//! unfinished run of the same runbook (paused, running, or interrupted and waiting
//! for `resume`) is in this state dir, the new run warns on stderr and journals a note
//! naming it, so the postmortem shows that two runs were open at once.

use std::path::Path;

use crate::journal::event::{Event, Record, RunStatus};
use crate::journal::{reader, replay};
use crate::store::RunStore;

/// Another unfinished run of `runbook` in `store`, other than `this_run`: its id and
/// status (`paused`, `running`, `interrupted`).
pub(crate) fn unfinished_runs_of(
    store: &dyn RunStore,
    runbook: &str,
    this_run: &str,
) -> Vec<(String, &'static str)> {
    // Run ids name their runbook (`20260313-142501-hub-pvc-locked-7f3a`), so only those
    // journals are read, not every run ever kept.
    let marker = format!("-{runbook}-");
    let Ok(runs) = store.list() else {
        return Vec::new();
    };
    let mut out: Vec<(String, &'static str)> = runs
        .into_iter()
        .filter(|r| r.run_id != this_run && r.run_id.contains(&marker))
        .filter_map(|r| {
            // A finished run says so at the end of its journal: a team's state dir
            // holds many finished runs of the same runbook, and reading each whole
            // (a 1 000-pod fan-out journals megabytes) made every new run start
            // later than the one before.
            if let Some(Some(status)) = status_from_tail(&r.journal)
                && status != RunStatus::Paused
            {
                return None;
            }
            let j = reader::read(&r.journal).ok()?;
            let state = replay::replay(&j.records).ok()?;
            if state.runbook.name != runbook {
                return None;
            }
            let status = match state.status {
                Some(RunStatus::Paused) => "paused",
                Some(_) => return None,
                None if store.is_held(&r.run_id) => "running",
                None => "interrupted",
            };
            Some((r.run_id, status))
        })
        .collect();
    out.sort();
    out
}

/// How much of a journal's end [`status_from_tail`] reads.
const TAIL_BYTES: u64 = 64 * 1024;

/// A run's status as its journal's end gives it, without reading the rest: only
/// `run_finished` sets a status and only `run_resumed` clears it, so the last of
/// them decides (`Some(None)`: resumed since, no status). `None` when neither is in
/// the last [`TAIL_BYTES`] (a run still going, a long last line, a torn or
/// unreadable end): the caller reads the whole journal.
fn status_from_tail(path: &Path) -> Option<Option<RunStatus>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let from = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(from)).ok()?;
    let mut bytes = Vec::new();
    file.take(TAIL_BYTES).read_to_end(&mut bytes).ok()?;
    let mut lines = bytes.split(|b| *b == b'\n');
    if from > 0 {
        lines.next(); // may begin mid-line
    }
    // A line is `{"seq":N,"ts":"…","event":"…",…}`: its event is named near its
    // start, outside any string (a quote inside one is escaped).
    const TAGS: [&[u8]; 2] = [b"\"event\":\"run_finished\"", b"\"event\":\"run_resumed\""];
    let names_status = |line: &&[u8]| {
        let head = &line[..line.len().min(96)];
        TAGS.iter()
            .any(|tag| head.windows(tag.len()).any(|w| w == *tag))
    };
    let line = lines.rev().find(names_status)?;
    match serde_json::from_slice::<Record>(line).ok()?.event {
        Event::RunFinished { status, .. } => Some(Some(status)),
        Event::RunResumed { .. } => Some(None),
        _ => None,
    }
}

/// The warning printed and journaled for `others` (empty when there are none).
pub(crate) fn warning(runbook: &str, others: &[(String, &'static str)]) -> Option<String> {
    let (first, status) = others.first()?;
    let list = others
        .iter()
        .map(|(id, s)| format!("{id} ({s})"))
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "another unfinished run of `{runbook}` exists in this state dir: {list}; both may act on the same system. See it with `runbook postmortem {first}`{}",
        match *status {
            "running" => String::new(),
            _ => format!(", continue it with `runbook resume {first}`"),
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(lines: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.ndjson");
        std::fs::write(&path, lines.concat()).unwrap();
        (dir, path)
    }

    const STARTED: &str = "{\"seq\":1,\"ts\":\"2026-01-01T00:00:00.000Z\",\"event\":\"run_started\",\"format\":1,\"run_id\":\"r\",\"runbook\":{\"name\":\"rb\",\"title\":\"t\",\"path\":\"rb.yaml\",\"sha256\":\"x\"},\"operator\":\"o\",\"host\":\"h\"}\n";
    const PAUSED: &str = "{\"seq\":2,\"ts\":\"2026-01-01T00:00:01.000Z\",\"event\":\"run_finished\",\"status\":\"paused\",\"duration_ms\":5}\n";
    const RESUMED: &str = "{\"seq\":3,\"ts\":\"2026-01-01T00:01:00.000Z\",\"event\":\"run_resumed\",\"operator\":\"o\",\"host\":\"h\"}\n";
    const DONE: &str = "{\"seq\":4,\"ts\":\"2026-01-01T00:01:01.000Z\",\"event\":\"run_finished\",\"status\":\"succeeded\",\"duration_ms\":9}\n";
    const NOTE: &str = "{\"seq\":5,\"ts\":\"2026-01-01T00:02:00.000Z\",\"event\":\"note\",\"text\":\"said \\\"event\\\":\\\"run_resumed\\\" here\",\"by\":\"someone\"}\n";

    #[test]
    fn the_last_status_event_at_the_end_decides() {
        let (_d, p) = journal(&[STARTED, PAUSED]);
        assert_eq!(status_from_tail(&p), Some(Some(RunStatus::Paused)));
        let (_d, p) = journal(&[STARTED, PAUSED, RESUMED]);
        assert_eq!(status_from_tail(&p), Some(None));
        let (_d, p) = journal(&[STARTED, PAUSED, RESUMED, DONE]);
        assert_eq!(status_from_tail(&p), Some(Some(RunStatus::Succeeded)));
        // Lines appended after the end (a note naming an event in its text) do not hide it.
        let (_d, p) = journal(&[STARTED, PAUSED, RESUMED, DONE, NOTE]);
        assert_eq!(status_from_tail(&p), Some(Some(RunStatus::Succeeded)));
    }

    #[test]
    fn what_the_end_cannot_tell_is_left_to_reading_it_all() {
        // Still going: no status event.
        let (_d, p) = journal(&[STARTED]);
        assert_eq!(status_from_tail(&p), None);
        // A torn last line that names the end: not read as it, nor as the pause
        // before it.
        let torn = &DONE[..DONE.find("succeeded").unwrap() + 3];
        assert!(torn.contains("\"event\":\"run_finished\""), "{torn}");
        let (_d, p) = journal(&[STARTED, PAUSED, RESUMED, torn]);
        assert_eq!(status_from_tail(&p), None);
        // The end is further back than the bytes read.
        let filler: String = (0..2000).map(|_| NOTE).collect();
        let (_d, p) = journal(&[STARTED, DONE, &filler]);
        assert_eq!(status_from_tail(&p), None);
        // No journal.
        assert_eq!(
            status_from_tail(Path::new("/nonexistent/journal.ndjson")),
            None
        );
    }

    /// On every journal the tests keep, the end gives what the whole journal gives.
    #[test]
    fn the_end_agrees_with_the_whole_journal_on_every_fixture() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut stack = vec![root];
        let (mut told, mut seen) = (0, 0);
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().and_then(|e| e.to_str()) != Some("ndjson") {
                    continue;
                }
                let Ok(j) = reader::read(&path) else { continue };
                let Ok(state) = replay::replay(&j.records) else {
                    continue;
                };
                seen += 1;
                if let Some(status) = status_from_tail(&path) {
                    told += 1;
                    assert_eq!(status, state.status, "{}", path.display());
                }
            }
        }
        assert!(seen >= 6 && told >= 5, "{told} of {seen} fixture journals");
    }
}
