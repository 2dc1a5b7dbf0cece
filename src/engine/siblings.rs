//! Two runs of the same runbook against the same system both act (issue 13 item 6).
//! Until runs take a lock on their target, a new run at least says so: when another
//! unfinished run of the same runbook (paused, running, or interrupted and waiting
//! for `resume`) is in this state dir, the new run warns on stderr and journals a note
//! naming it, so the postmortem shows that two runs were open at once.

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
            let j = reader::read(&r.journal).ok()?;
            let state = replay::replay(&j.records).ok()?;
            if state.runbook.name != runbook {
                return None;
            }
            let status = match state.status {
                Some(crate::journal::event::RunStatus::Paused) => "paused",
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
