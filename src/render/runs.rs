//! Finding a run's folder from what a person types: a run id, a unique prefix of
//! one, or `last`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::RenderError;
use crate::journal::event::Record;

/// The journal's file name inside a run folder.
pub const JOURNAL: &str = "journal.ndjson";

/// `<state_dir>/runs/<run-id>` for a run id, a unique prefix of one, or `last` (the
/// run that started most recently).
pub fn resolve_run(state_dir: &Path, id: &str) -> Result<PathBuf, RenderError> {
    let runs = state_dir.join("runs");
    if id.is_empty() || id.contains(['/', '\\']) || id == "." || id == ".." {
        return Err(RenderError::RunNotFound {
            id: id.to_owned(),
            dir: runs,
        });
    }
    let entries =
        std::fs::read_dir(&runs).map_err(|_| RenderError::NoRuns { dir: runs.clone() })?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(RenderError::NoRuns { dir: runs });
    }
    if id == "last" {
        let newest = names
            .iter()
            .max_by_key(|n| (started(&runs.join(n)), (*n).clone()))
            .expect("invariant: names is not empty");
        return Ok(runs.join(newest));
    }
    if names.iter().any(|n| n == id) {
        return Ok(runs.join(id));
    }
    let matching: Vec<&String> = names.iter().filter(|n| n.starts_with(id)).collect();
    match matching.as_slice() {
        [one] => Ok(runs.join(one)),
        [] => Err(RenderError::RunNotFound {
            id: id.to_owned(),
            dir: runs,
        }),
        many => Err(RenderError::Ambiguous {
            id: id.to_owned(),
            candidates: many
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// When a run started: the time of its journal's first event, else the journal's
/// modification time; runs without a readable journal sort first.
fn started(dir: &Path) -> Option<DateTime<Utc>> {
    use std::io::BufRead;
    let path = dir.join(JOURNAL);
    // Only the first line: journals of long runs are megabytes.
    let mut first = String::new();
    let file = std::fs::File::open(&path).ok()?;
    std::io::BufReader::new(file).read_line(&mut first).ok()?;
    if let Ok(rec) = serde_json::from_str::<Record>(&first) {
        return Some(rec.ts);
    }
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    Some(DateTime::<Utc>::from(modified))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(state: &Path, id: &str, ts: &str) {
        let dir = state.join("runs").join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let line = format!(r#"{{"seq":1,"ts":"{ts}","event":"note","text":"x","by":"ana"}}"#);
        std::fs::write(dir.join(JOURNAL), line + "\n").unwrap();
    }

    #[test]
    fn resolves_exact_prefix_and_last() {
        let tmp = tempfile::tempdir().unwrap();
        run(tmp.path(), "20260101-aaa", "2026-01-01T00:00:00Z");
        run(tmp.path(), "20260102-bbb", "2026-01-02T00:00:00Z");
        run(tmp.path(), "20251231-zzz", "2025-12-31T00:00:00Z");
        let runs = tmp.path().join("runs");
        assert_eq!(
            resolve_run(tmp.path(), "20260101-aaa").unwrap(),
            runs.join("20260101-aaa")
        );
        assert_eq!(
            resolve_run(tmp.path(), "20260102").unwrap(),
            runs.join("20260102-bbb")
        );
        assert_eq!(
            resolve_run(tmp.path(), "last").unwrap(),
            runs.join("20260102-bbb")
        );
    }

    #[test]
    fn ambiguous_and_missing_runs_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        run(tmp.path(), "2026-a", "2026-01-01T00:00:00Z");
        run(tmp.path(), "2026-b", "2026-01-02T00:00:00Z");
        let e = resolve_run(tmp.path(), "2026").unwrap_err().to_string();
        assert!(e.contains("2026-a") && e.contains("2026-b"), "{e}");
        let e = resolve_run(tmp.path(), "nope").unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("runs"), "{e}");
        let e = resolve_run(&tmp.path().join("empty"), "last")
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty"), "{e}");
        assert!(resolve_run(tmp.path(), "../x").is_err());
    }
}
