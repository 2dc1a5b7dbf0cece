//! [`DirStore`]: runs as folders under `<state-dir>/runs`, the layout of every release.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use super::lock::{self, HoldState, LockHolder};
use super::{HeldRun, RunStore, StoreError, StoredRun, new_run_id, resolve_among};
use crate::journal::event::{Event, Record};

/// The journal's file name inside a run folder.
pub const JOURNAL: &str = "journal.ndjson";
/// The lock file's name inside a run folder.
pub const LOCK: &str = "lock";
/// The folder of side files inside a run folder.
pub const OUTPUTS: &str = "outputs";

/// Runs kept as folders under `<state_dir>/runs`.
#[derive(Debug, Clone)]
pub struct DirStore {
    runs: PathBuf,
}

impl DirStore {
    /// The store of `state_dir` (`--state-dir`, default `.runbook`). Nothing is created
    /// until a run is.
    pub fn new(state_dir: &Path) -> DirStore {
        DirStore {
            runs: state_dir.join("runs"),
        }
    }

    /// `<state_dir>/runs`.
    pub fn root(&self) -> &Path {
        &self.runs
    }

    /// The folder of a run (which may not exist).
    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.runs.join(run_id)
    }

    /// The journal inside a run folder.
    pub fn journal_in(run_dir: &Path) -> PathBuf {
        run_dir.join(JOURNAL)
    }

    /// The file of a named lock (`lock:` of a run without a cluster) shared by the
    /// runs of the store that holds `journal`: `<state_dir>/locks/NAME.lock`.
    pub fn lock_file_for(journal: &Path, name: &str) -> Option<PathBuf> {
        let state_dir = journal.parent()?.parent()?.parent()?;
        Some(state_dir.join("locks").join(format!("{name}.lock")))
    }

    fn held(&self, run_id: &str) -> Result<HeldRun, StoreError> {
        let dir = self.run_dir(run_id);
        let lock = DirLock::acquire(&dir, run_id)?;
        Ok(HeldRun::new(
            run_id.to_owned(),
            dir.clone(),
            dir.join(JOURNAL),
            lock,
        ))
    }

    /// `<state_dir>/.gitignore` with `*`, so that journals (which hold command
    /// output) and lock files are never committed by a `git add -A` in the repository
    /// the runbooks live in. Written once; a file someone edited is left alone, and a
    /// state directory that cannot take it is not a reason to refuse a run.
    fn ignore_in_git(&self) {
        let Some(state_dir) = self.runs.parent() else {
            return;
        };
        let path = state_dir.join(".gitignore");
        if !path.exists()
            && let Err(e) = std::fs::write(&path, "# runbook's state: runs are not committed\n*\n")
        {
            tracing::warn!("cannot write {}: {e}", path.display());
        }
    }

    fn ids(&self) -> Result<Vec<String>, StoreError> {
        let entries = match std::fs::read_dir(&self.runs) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(StoreError::Io {
                    context: format!("cannot list {}", self.runs.display()),
                    source,
                });
            }
        };
        let mut ids: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

impl RunStore for DirStore {
    fn create(&self, started: DateTime<Utc>, runbook: &str) -> Result<HeldRun, StoreError> {
        let run_id = new_run_id(started, runbook);
        let dir = self.run_dir(&run_id);
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            context: format!("cannot create run folder {}", dir.display()),
            source,
        })?;
        self.ignore_in_git();
        self.held(&run_id)
    }

    fn hold(&self, run_id: &str) -> Result<HeldRun, StoreError> {
        if !self.journal_path(run_id).is_file() {
            return Err(StoreError::NotFound {
                id: run_id.to_owned(),
                dir: self.runs.clone(),
            });
        }
        self.held(run_id)
    }

    fn resolve(&self, query: &str) -> Result<String, StoreError> {
        // An unreadable runs folder is, to the person asking, no runs there.
        let ids = self.ids().unwrap_or_default();
        if query == "last" && !ids.is_empty() {
            // A dry run changed nothing: `last` means the last run that could have.
            let real: Vec<String> = ids
                .iter()
                .filter(|id| !first_event(&self.run_dir(id)).is_some_and(|f| f.dry_run))
                .cloned()
                .collect();
            if real.is_empty() {
                return Err(StoreError::OnlyDryRuns {
                    dir: self.runs.clone(),
                });
            }
            return resolve_among(&real, query, &self.runs, |id| started(&self.run_dir(id)));
        }
        resolve_among(&ids, query, &self.runs, |id| started(&self.run_dir(id)))
    }

    fn list(&self) -> Result<Vec<StoredRun>, StoreError> {
        Ok(self
            .ids()?
            .into_iter()
            .map(|run_id| StoredRun {
                journal: self.journal_path(&run_id),
                run_id,
            })
            .filter(|r| r.journal.is_file())
            .collect())
    }

    fn is_held(&self, run_id: &str) -> bool {
        let Ok(file) = File::open(self.run_dir(run_id).join(LOCK)) else {
            return false;
        };
        // A shared lock is refused only while someone holds the exclusive one; it is
        // released when `file` is dropped.
        matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock))
    }

    fn hold_state(&self, run_id: &str) -> HoldState {
        let path = self.run_dir(run_id).join(LOCK);
        let holder = LockHolder::read(&path);
        if self.is_held(run_id) {
            HoldState::Held(holder)
        } else {
            holder.map_or(HoldState::Free, HoldState::Stale)
        }
    }

    fn journal_path(&self, run_id: &str) -> PathBuf {
        self.run_dir(run_id).join(JOURNAL)
    }

    fn location(&self) -> String {
        self.runs.display().to_string()
    }
}

/// What a journal's first line says: when the run started and whether it was a dry run.
struct FirstEvent {
    ts: DateTime<Utc>,
    dry_run: bool,
}

/// The first record of a run's journal. Only the first line is read: journals of long
/// runs are megabytes.
fn first_event(dir: &Path) -> Option<FirstEvent> {
    use std::io::BufRead;
    let mut first = String::new();
    let file = File::open(dir.join(JOURNAL)).ok()?;
    std::io::BufReader::new(file).read_line(&mut first).ok()?;
    let rec = serde_json::from_str::<Record>(&first).ok()?;
    let dry_run = matches!(rec.event, Event::RunStarted { dry_run: true, .. });
    Some(FirstEvent {
        ts: rec.ts,
        dry_run,
    })
}

/// When a run started: the time of its journal's first event, else the journal's
/// modification time; runs without a readable journal sort first.
fn started(dir: &Path) -> Option<DateTime<Utc>> {
    if let Some(first) = first_event(dir) {
        return Some(first.ts);
    }
    let path = dir.join(JOURNAL);
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    Some(DateTime::<Utc>::from(modified))
}

/// An exclusive lock on `<run>/lock`, held while a process drives the run. It is an
/// `flock` (std's `File::try_lock` on Linux), so the kernel drops it when the process
/// dies and a run killed with SIGKILL can be resumed. The file names the holder
/// (`store::lock`), so a busy or abandoned run can be explained.
#[derive(Debug)]
pub(crate) struct DirLock {
    file: File,
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Let go normally: an empty file tells the next holder nobody died with it.
        lock::release(&mut self.file);
    }
}

impl DirLock {
    fn acquire(run_dir: &Path, run_id: &str) -> Result<DirLock, StoreError> {
        let path = run_dir.join(LOCK);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| StoreError::Io {
                context: format!("cannot open lock file {}", path.display()),
                source,
            })?;
        // A lock can outlive its holder by a moment: a child process forked by the
        // previous holder (a shell step) keeps the descriptor until it execs. So a
        // busy lock is retried for a second before it counts as another run's.
        for attempt in 0..20 {
            match file.try_lock() {
                Ok(()) => {
                    if let Err(source) = lock::claim(&mut file) {
                        return Err(StoreError::Io {
                            context: format!("cannot write {}", path.display()),
                            source,
                        });
                    }
                    return Ok(DirLock { file });
                }
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(source)) => {
                    return Err(StoreError::Io {
                        context: format!("cannot lock {}", path.display()),
                        source,
                    });
                }
            }
            if attempt < 19 {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        let holder = LockHolder::read(&path)
            .map(|h| format!(", held by {}", h.describe()))
            .unwrap_or_default();
        Err(StoreError::Locked {
            run_id: run_id.to_string(),
            lock: path,
            holder,
        })
    }
}

/// A run's side files: outputs too large to inline in the journal, written whole as
/// `outputs/NNNN-<label>.json`. The journal refers to them by that relative path.
///
/// Content-addressed within a process: the same bytes written twice (a check's list
/// and the value saved from it, a verification that sees what the action saw) are
/// one file, named by the first label, that both journal lines refer to.
#[derive(Debug)]
pub struct SideFiles {
    run_dir: PathBuf,
    next: AtomicU64,
    /// sha256 of the bytes → the file already holding them.
    written: std::sync::Mutex<std::collections::HashMap<[u8; 32], String>>,
}

impl SideFiles {
    /// The side files of the run in `run_dir`. Numbering continues after the highest
    /// number already there, so a resumed run never overwrites a file its journal
    /// already points at.
    pub fn open(run_dir: &Path) -> SideFiles {
        let highest = std::fs::read_dir(run_dir.join(OUTPUTS))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.split('-').next()?.parse::<u64>().ok()
            })
            .max()
            .unwrap_or(0);
        SideFiles {
            run_dir: run_dir.to_owned(),
            next: AtomicU64::new(highest + 1),
            written: Default::default(),
        }
    }

    /// Write `bytes` as the next side file named after `label`; returns its path
    /// relative to the run folder (what the journal records).
    /// Bytes already written by this process are not written again: the name of
    /// the file that has them is returned.
    pub fn write(&self, label: &str, bytes: &[u8]) -> std::io::Result<String> {
        use sha2::{Digest, Sha256};
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(name) = written.get(&digest)
            && self.run_dir.join(name).is_file()
        {
            return Ok(name.clone());
        }
        let name = self.write_new(label, bytes)?;
        written.insert(digest, name.clone());
        Ok(name)
    }

    fn write_new(&self, label: &str, bytes: &[u8]) -> std::io::Result<String> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("{OUTPUTS}/{n:04}-{label}.json");
        let path = self.run_dir.join(&name);
        std::fs::create_dir_all(self.run_dir.join(OUTPUTS))?;
        if let Err(e) = std::fs::write(&path, bytes) {
            // A partial file (a full disk) must not pass for the whole output.
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(name)
    }

    /// Start a side file written as a stream (an output too large to hold in
    /// memory), to be named `NNNN-<label>.<ext>` when [`SideStream::finish`]ed.
    /// Until then it is a hidden temporary file in `outputs/`, removed if the stream
    /// is dropped unfinished.
    pub fn stream(self: &Arc<Self>, label: &str, ext: &str) -> std::io::Result<SideStream> {
        use sha2::Digest;
        static TMP: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(self.dir())?;
        let tmp = self.dir().join(format!(
            ".partial-{}-{}",
            std::process::id(),
            TMP.fetch_add(1, Ordering::Relaxed)
        ));
        let file = File::create(&tmp)?;
        Ok(SideStream {
            files: Arc::clone(self),
            label: label.to_owned(),
            ext: ext.to_owned(),
            tmp: Some(tmp),
            out: std::io::BufWriter::with_capacity(256 << 10, file),
            hash: sha2::Sha256::new(),
        })
    }

    /// The folder side files are written to (for messages).
    pub fn dir(&self) -> PathBuf {
        self.run_dir.join(OUTPUTS)
    }

    /// The contents of a side file the journal names (relative to the run folder);
    /// `None` when it is missing or the name leaves the run folder.
    pub fn read(run_dir: &Path, name: &str) -> Option<Vec<u8>> {
        let rel = Path::new(name);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return None;
        }
        std::fs::read(run_dir.join(rel)).ok()
    }
}

/// A side file being written as a stream ([`SideFiles::stream`]).
#[derive(Debug)]
pub struct SideStream {
    files: Arc<SideFiles>,
    label: String,
    ext: String,
    /// The temporary file, until it is renamed (or removed on drop).
    tmp: Option<PathBuf>,
    out: std::io::BufWriter<File>,
    hash: sha2::Sha256,
}

impl SideStream {
    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use sha2::Digest;
        use std::io::Write;
        self.hash.update(bytes);
        self.out.write_all(bytes)
    }

    /// Flush and name the file; returns its path relative to the run folder. When
    /// this process already wrote the same bytes, that file's name is returned and
    /// the new copy removed (content-addressed, as [`SideFiles::write`]).
    pub fn finish(mut self) -> std::io::Result<String> {
        use sha2::Digest;
        use std::io::Write;
        self.out.flush()?;
        let tmp = self.tmp.take().expect("a stream is finished once");
        let digest: [u8; 32] = std::mem::take(&mut self.hash).finalize().into();
        let files = Arc::clone(&self.files);
        let mut written = files.written.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(name) = written.get(&digest)
            && files.run_dir.join(name).is_file()
        {
            let _ = std::fs::remove_file(&tmp);
            return Ok(name.clone());
        }
        let n = files.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("{OUTPUTS}/{n:04}-{}.{}", self.label, self.ext);
        if let Err(e) = std::fs::rename(&tmp, files.run_dir.join(&name)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        written.insert(digest, name.clone());
        Ok(name)
    }
}

impl Drop for SideStream {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn journal(store: &DirStore, id: &str, ts: &str) {
        let dir = store.run_dir(id);
        std::fs::create_dir_all(&dir).unwrap();
        let line = format!(r#"{{"seq":1,"ts":"{ts}","event":"note","text":"x","by":"ana"}}"#);
        std::fs::write(dir.join(JOURNAL), line + "\n").unwrap();
    }

    #[test]
    fn a_created_run_is_held_until_dropped_and_cannot_be_held_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let store = DirStore::new(tmp.path());
        let run = store.create(t("2026-03-13T14:25:01Z"), "hub").unwrap();
        assert_eq!(run.dir, tmp.path().join("runs").join(&run.run_id));
        assert_eq!(run.journal, run.dir.join("journal.ndjson"));
        assert!(run.dir.join("lock").is_file());
        std::fs::write(&run.journal, "").unwrap();
        assert!(store.is_held(&run.run_id));
        let e = store.hold(&run.run_id).unwrap_err();
        assert!(matches!(e, StoreError::Locked { .. }), "{e}");
        let id = run.run_id.clone();
        drop(run);
        assert!(!store.is_held(&id));
        assert_eq!(store.hold(&id).unwrap().run_id, id);
    }

    #[test]
    fn holding_a_run_without_a_journal_is_not_found() {
        let tmp = tempfile::tempdir().unwrap();
        let e = DirStore::new(tmp.path()).hold("nope").unwrap_err();
        assert!(e.to_string().contains("no run \"nope\""), "{e}");
    }

    #[test]
    fn resolves_last_by_the_journals_first_event_and_lists_runs_with_journals() {
        let tmp = tempfile::tempdir().unwrap();
        let store = DirStore::new(tmp.path());
        journal(&store, "20260101-aaa-0001", "2026-01-01T00:00:00Z");
        journal(&store, "20260102-bbb-0002", "2026-01-02T00:00:00Z");
        // Sorts last by name but started first: `last` goes by the journal.
        journal(&store, "20990101-zzz-0003", "2025-12-31T00:00:00Z");
        std::fs::create_dir_all(store.run_dir("no-journal")).unwrap();
        assert_eq!(store.resolve("last").unwrap(), "20260102-bbb-0002");
        assert_eq!(store.resolve("0003").unwrap(), "20990101-zzz-0003");
        let mut ids: Vec<String> = store
            .list()
            .unwrap()
            .into_iter()
            .map(|r| r.run_id)
            .collect();
        ids.sort();
        assert_eq!(
            ids,
            [
                "20260101-aaa-0001",
                "20260102-bbb-0002",
                "20990101-zzz-0003"
            ]
        );
        let empty = DirStore::new(&tmp.path().join("empty"));
        assert!(empty.list().unwrap().is_empty());
        assert!(matches!(
            empty.resolve("last"),
            Err(StoreError::NoRuns { .. })
        ));
    }

    #[test]
    fn side_files_are_numbered_on_from_what_the_run_already_has() {
        let tmp = tempfile::tempdir().unwrap();
        let first = SideFiles::open(tmp.path());
        assert_eq!(
            first.write("lost-pods", b"1").unwrap(),
            "outputs/0001-lost-pods.json"
        );
        assert_eq!(
            first.write("cordon-2", b"2").unwrap(),
            "outputs/0002-cordon-2.json"
        );
        // A resumed run opens them again and must not overwrite 0001 or 0002.
        let resumed = SideFiles::open(tmp.path());
        assert_eq!(
            resumed.write("lost-pods", b"3").unwrap(),
            "outputs/0003-lost-pods.json"
        );
        assert_eq!(
            SideFiles::read(tmp.path(), "outputs/0001-lost-pods.json").unwrap(),
            b"1"
        );
        assert!(SideFiles::read(tmp.path(), "../etc/passwd").is_none());
    }

    #[test]
    fn the_same_output_written_twice_is_one_side_file_referenced_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let files = SideFiles::open(tmp.path());
        let list = br#"{"items":[1,2,3]}"#;
        let first = files.write("lost-pods", list).unwrap();
        assert_eq!(first, "outputs/0001-lost-pods.json");
        assert_eq!(files.write("lost-pods-verify", list).unwrap(), first);
        // Other bytes are another file.
        assert_eq!(
            files.write("lost-pods", b"{}").unwrap(),
            "outputs/0002-lost-pods.json"
        );
        let on_disk = std::fs::read_dir(tmp.path().join(OUTPUTS)).unwrap().count();
        assert_eq!(on_disk, 2);
    }

    #[test]
    fn a_streamed_side_file_is_named_when_finished_and_left_nowhere_when_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let files = Arc::new(SideFiles::open(tmp.path()));
        let mut s = files.stream("print-stdout", "txt").unwrap();
        s.write(b"yes\n").unwrap();
        s.write(b"yes\n").unwrap();
        let name = s.finish().unwrap();
        assert_eq!(name, "outputs/0001-print-stdout.txt");
        assert_eq!(SideFiles::read(tmp.path(), &name).unwrap(), b"yes\nyes\n");
        // The same bytes again are the same file; an abandoned stream leaves nothing.
        let mut again = files.stream("print-stderr", "txt").unwrap();
        again.write(b"yes\nyes\n").unwrap();
        assert_eq!(again.finish().unwrap(), name);
        let mut dropped = files.stream("x", "txt").unwrap();
        dropped.write(b"partial").unwrap();
        drop(dropped);
        let on_disk: Vec<_> = std::fs::read_dir(tmp.path().join(OUTPUTS))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(on_disk, ["0001-print-stdout.txt"]);
    }
}
