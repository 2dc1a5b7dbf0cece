//! From what a person types to a run id.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::StoreError;

/// The run `query` names among `ids` (the runs of the store at `dir`): `last` is the
/// one `started` says began most recently (ties and unknown start times go by id);
/// an exact id is itself; otherwise the one id that starts or ends with `query`, so
/// both a time prefix (`20260313-1425`) and the trailing hex (`7f3a`) work.
pub fn resolve_among(
    ids: &[String],
    query: &str,
    dir: &Path,
    started: impl Fn(&str) -> Option<DateTime<Utc>>,
) -> Result<String, StoreError> {
    let not_found = || StoreError::NotFound {
        id: query.to_owned(),
        dir: dir.to_owned(),
    };
    if query.is_empty() || query.contains(['/', '\\']) || query == "." || query == ".." {
        return Err(not_found());
    }
    if ids.is_empty() {
        return Err(StoreError::NoRuns {
            dir: dir.to_owned(),
        });
    }
    if query == "last" {
        let newest = ids
            .iter()
            .max_by_key(|id| (started(id), (*id).clone()))
            .expect("invariant: ids is not empty");
        return Ok(newest.clone());
    }
    if ids.iter().any(|id| id == query) {
        return Ok(query.to_owned());
    }
    let mut matching: Vec<&String> = ids
        .iter()
        .filter(|id| id.starts_with(query) || id.ends_with(query))
        .collect();
    matching.sort();
    match matching.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(not_found()),
        many => Err(StoreError::Ambiguous {
            id: query.to_owned(),
            candidates: many
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Vec<String> {
        [
            "20260313-142501-hub-pvc-locked-7f3a",
            "20260313-150000-hub-pvc-locked-0b12",
            "20260314-090000-disk-full-7f3b",
        ]
        .map(String::from)
        .to_vec()
    }

    fn resolve(q: &str) -> Result<String, String> {
        let ts = |id: &str| {
            let day = &id[..8];
            DateTime::parse_from_rfc3339(&format!(
                "{}-{}-{}T00:00:00Z",
                &day[..4],
                &day[4..6],
                &day[6..]
            ))
            .ok()
            .map(|t| t.with_timezone(&Utc))
        };
        resolve_among(&ids(), q, Path::new("/state/runs"), ts).map_err(|e| e.to_string())
    }

    #[test]
    fn the_trailing_hex_a_person_copies_names_one_run() {
        assert_eq!(
            resolve("7f3a").unwrap(),
            "20260313-142501-hub-pvc-locked-7f3a"
        );
        assert_eq!(
            resolve("0b12").unwrap(),
            "20260313-150000-hub-pvc-locked-0b12"
        );
        assert_eq!(
            resolve("locked-0b12").unwrap(),
            "20260313-150000-hub-pvc-locked-0b12"
        );
    }

    #[test]
    fn a_suffix_or_prefix_shared_by_two_runs_is_ambiguous() {
        let e = resolve("20260313").unwrap_err();
        assert!(e.contains("7f3a") && e.contains("0b12"), "{e}");
        // `7f3` is neither a prefix nor a suffix; `f3b` ends one id only.
        assert!(resolve("7f3").unwrap_err().contains("no run \"7f3\""));
        assert_eq!(resolve("f3b").unwrap(), "20260314-090000-disk-full-7f3b");
    }

    #[test]
    fn last_exact_and_prefix() {
        assert_eq!(resolve("last").unwrap(), "20260314-090000-disk-full-7f3b");
        assert_eq!(
            resolve("20260314").unwrap(),
            "20260314-090000-disk-full-7f3b"
        );
        assert_eq!(
            resolve("20260313-142501-hub-pvc-locked-7f3a").unwrap(),
            "20260313-142501-hub-pvc-locked-7f3a"
        );
    }

    #[test]
    fn paths_and_empty_queries_name_no_run() {
        for q in ["", ".", "..", "../x", "a/b"] {
            assert!(resolve(q).unwrap_err().contains("no run"), "{q}");
        }
        let e = resolve_among(&[], "last", Path::new("/s/runs"), |_| None).unwrap_err();
        assert!(e.to_string().starts_with("no runs in /s/runs"), "{e}");
    }
}
