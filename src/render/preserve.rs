//! Re-rendering a postmortem without losing what people wrote.
//!
//! A rendered postmortem is a sequence of regions between HTML comments, which
//! markdown renderers do not show (the doctoc / terraform-docs convention):
//!
//! ```text
//! <!-- runbook:begin generated=timeline sha256=… -->  rebuilt from the journal every time
//! <!-- runbook:human id=summary sha256=… -->          owned by people
//! <!-- runbook:end -->
//! ```
//!
//! Re-rendering over an existing file ([`merge`]) keeps every human region that was
//! edited byte for byte (an unedited one, whose text still hashes to its `sha256`, is
//! refreshed with the new draft), rebuilds every generated region, keeps text people
//! wrote outside the markers where it was (attached to the region before it), and
//! drops nothing: a generated region that was edited by hand is kept as a human
//! region `<id>-edited` next to its regenerated copy, and edited human regions the
//! template no longer has move to the end under "Orphaned sections".

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::RenderError;

pub const END: &str = "<!-- runbook:end -->";
/// Hex digits of a region's sha256 written in its marker: enough to tell an edit,
/// short enough not to weigh on the document.
pub const SHA_CHARS: usize = 16;
const ORPHANS: &str = "## Orphaned sections";

pub fn begin_generated(id: &str, sha: &str) -> String {
    format!("<!-- runbook:begin generated={id} sha256={sha} -->")
}

pub fn begin_human(id: &str, sha: Option<&str>) -> String {
    match sha {
        Some(sha) => format!("<!-- runbook:human id={id} sha256={sha} -->"),
        None => format!("<!-- runbook:human id={id} -->"),
    }
}

pub fn sha256_hex(s: &str) -> String {
    crate::journal::digest::sha256_hex(s.as_bytes())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Generated,
    Human,
}

#[derive(Debug, Clone)]
struct Region {
    kind: Kind,
    id: String,
    sha: Option<String>,
    /// Everything from the begin marker through the end marker, as written.
    raw: String,
    /// The text between the marker lines, without surrounding newlines.
    body: String,
    /// Text after the end marker, up to the next region (unmarked, people's).
    trailing: String,
}

impl Region {
    /// True when the body is no longer what the renderer wrote.
    fn edited(&self) -> bool {
        // Markers carry the first 16 hex digits (older documents all 64).
        let full = sha256_hex(&self.body);
        !self
            .sha
            .as_deref()
            .is_some_and(|s| s.len() >= SHA_CHARS && full.starts_with(s))
    }
}

#[derive(Debug)]
struct Doc {
    lead: String,
    regions: Vec<Region>,
}

/// Parse markers: `(line, message)` when they do not pair up.
fn parse(text: &str) -> Result<Doc, (usize, String)> {
    struct Open {
        kind: Kind,
        id: String,
        sha: Option<String>,
        line: usize,
        raw_start: usize,
        body_start: usize,
    }
    let mut regions = Vec::new();
    // Byte ranges of each region's raw text, to cut the text between them.
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut open: Option<Open> = None;
    let mut pos = 0;
    // A marker inside a fenced block is command output, not ours.
    let mut fences = super::escape::Fences::default();
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let start = pos;
        pos += line.len();
        if fences.inside(line) {
            continue;
        }
        let Some(inner) = line
            .trim()
            .strip_prefix("<!-- runbook:")
            .and_then(|s| s.strip_suffix("-->"))
        else {
            continue;
        };
        let words: Vec<&str> = inner.split_whitespace().collect();
        let attr = |key: &str| {
            words
                .iter()
                .find_map(|w| w.strip_prefix(key).map(str::to_owned))
        };
        match words.first().copied() {
            Some(kw @ ("begin" | "human")) => {
                if let Some(o) = &open {
                    return Err((n + 1, format!("a region starts inside region {:?}", o.id)));
                }
                let (kind, id) = if kw == "begin" {
                    (Kind::Generated, attr("generated="))
                } else {
                    (Kind::Human, attr("id="))
                };
                let Some(id) = id else {
                    return Err((n + 1, "a region marker without an id".to_owned()));
                };
                open = Some(Open {
                    kind,
                    id,
                    sha: attr("sha256="),
                    line: n + 1,
                    raw_start: start,
                    body_start: pos,
                });
            }
            Some("end") => {
                let Some(o) = open.take() else {
                    return Err((n + 1, "runbook:end without a region to end".to_owned()));
                };
                regions.push(Region {
                    kind: o.kind,
                    id: o.id,
                    sha: o.sha,
                    raw: text[o.raw_start..pos].to_owned(),
                    body: text[o.body_start..start]
                        .trim_matches(['\n', '\r'])
                        .to_owned(),
                    trailing: String::new(),
                });
                spans.push((o.raw_start, pos));
            }
            _ => {}
        }
    }
    if let Some(o) = open {
        return Err((o.line, format!("region {:?} has no runbook:end", o.id)));
    }
    for (i, r) in regions.iter_mut().enumerate() {
        let next = spans.get(i + 1).map_or(text.len(), |s| s.0);
        r.trailing = text[spans[i].1..next].to_owned();
    }
    let lead = spans.first().map_or(text, |s| &text[..s.0]).to_owned();
    Ok(Doc { lead, regions })
}

/// What a re-render did that the person should know, said by region name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Generated regions people edited: kept as theirs, no longer rebuilt.
    pub kept_edits: Vec<String>,
    /// Where the previous version was saved, when the file changed.
    pub backup: Option<std::path::PathBuf>,
}

/// Merge a fresh rendering into an existing postmortem (see the module docs).
#[cfg(test)]
pub fn merge(existing: &str, rendered: &str, path: &Path) -> Result<String, RenderError> {
    merge_report(existing, rendered, path).map(|(text, _)| text)
}

fn merge_report(
    existing: &str,
    rendered: &str,
    path: &Path,
) -> Result<(String, Vec<String>), RenderError> {
    let old = parse(existing).map_err(|(line, message)| RenderError::Markers {
        path: path.to_owned(),
        line,
        message,
    })?;
    if old.regions.is_empty() {
        return Err(RenderError::NotAPostmortem {
            path: path.to_owned(),
        });
    }
    let new = parse(rendered).map_err(|(line, message)| RenderError::Markers {
        path: "the rendered postmortem".into(),
        line,
        message,
    })?;
    let key = |r: &Region| (r.kind, r.id.clone());
    let old_by_key: HashMap<(Kind, String), &Region> =
        old.regions.iter().map(|r| (key(r), r)).collect();
    let mut used: HashSet<(Kind, String)> = HashSet::new();
    let mut kept = Vec::new();
    let mut out = old.lead.clone();
    for r in &new.regions {
        let prev = old_by_key.get(&key(r)).copied();
        used.insert(key(r));
        match (r.kind, prev) {
            (Kind::Human, Some(p)) if p.edited() => out.push_str(&p.raw),
            // A generated region edited by hand becomes the person's, in place: a
            // human region of the same id whose hash is the generated text's, so it
            // stays "edited" and is kept from now on. Not rebuilt beside it (the
            // document would double), and said by name.
            (Kind::Generated, Some(p)) if p.edited() => {
                kept.push(r.id.clone());
                out.push_str(&format!(
                    "{}\n{}\n{}\n",
                    begin_human(&r.id, p.sha.as_deref()),
                    p.body,
                    END
                ));
            }
            (Kind::Generated, None) if old_by_key.contains_key(&(Kind::Human, r.id.clone())) => {
                let p = old_by_key[&(Kind::Human, r.id.clone())];
                used.insert((Kind::Human, r.id.clone()));
                kept.push(r.id.clone());
                out.push_str(&p.raw);
                out.push_str(&p.trailing);
                continue;
            }
            _ => out.push_str(&r.raw),
        }
        out.push_str(prev.map_or(&r.trailing, |p| &p.trailing));
    }
    let orphans: Vec<&Region> = old
        .regions
        .iter()
        .filter(|r| !used.contains(&key(r)))
        // An orphan nobody edited holds only a prompt or a draft: nothing to keep.
        .filter(|r| r.edited() || !r.trailing.trim().is_empty())
        .collect();
    if !orphans.is_empty() {
        if !out.lines().any(|l| l.trim() == ORPHANS) {
            out.push_str(&format!(
                "\n{ORPHANS}\n\n<!-- Sections this template no longer has, kept so nothing is lost. -->\n"
            ));
        }
        for r in orphans {
            out.push('\n');
            if r.edited() {
                out.push_str(&r.raw);
            }
            out.push_str(&r.trailing);
        }
    }
    Ok((out, kept))
}

/// Write `rendered` to `path`; when the file exists, merge into it (see [`merge`]).
/// Writes a temporary file and renames it, so a crash leaves the old file whole, and
/// keeps the previous version as `FILE.bak` when it changes.
pub fn write_preserving(path: &Path, rendered: &str) -> Result<(), RenderError> {
    write_preserving_report(path, rendered).map(|_| ())
}

/// The temporary file a document is written to before it is renamed to `path`.
pub(super) fn temporary(path: &Path) -> std::path::PathBuf {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "postmortem.md".to_owned());
    path.with_file_name(format!(".{file_name}.tmp"))
}

/// [`write_preserving`], saying what people should know: generated sections they
/// edited (kept as theirs) and where the previous version went.
pub fn write_preserving_report(path: &Path, rendered: &str) -> Result<Report, RenderError> {
    let io = |e: std::io::Error| RenderError::Io {
        path: path.to_owned(),
        source: e,
    };
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    let mut report = Report::default();
    // A new file is the document as rendered, not a copy of it (issue 18: memory).
    let text: std::borrow::Cow<'_, str> = match &existing {
        Some(old) => {
            let (text, kept) = merge_report(old, rendered, path)?;
            report.kept_edits = kept;
            text.into()
        }
        None => rendered.into(),
    };
    if existing.as_deref() == Some(&*text) {
        return Ok(report);
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "postmortem.md".to_owned());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = temporary(path);
    std::fs::write(&tmp, text.as_bytes()).map_err(io)?;
    if let Some(old) = &existing {
        let bak = path.with_file_name(format!("{file_name}.bak"));
        std::fs::write(&bak, old).map_err(|e| RenderError::Io {
            path: bak.clone(),
            source: e,
        })?;
        report.backup = Some(bak);
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(kind: &str, id: &str, body: &str) -> String {
        let sha = sha256_hex(body);
        let begin = if kind == "gen" {
            begin_generated(id, &sha)
        } else {
            begin_human(id, Some(&sha))
        };
        format!("{begin}\n\n{body}\n\n{END}")
    }

    fn doc(summary: &str, facts: &str) -> String {
        format!(
            "# Title\n\n## Summary\n\n{}\n\n## Facts\n\n{}\n",
            region("human", "summary", summary),
            region("gen", "facts", facts)
        )
    }

    #[test]
    fn edited_human_region_is_kept_and_generated_refreshed() {
        let old = doc("_prompt_", "old facts").replace("_prompt_", "We fixed it.");
        let merged = merge(&old, &doc("_new prompt_", "new facts"), Path::new("pm.md")).unwrap();
        assert!(merged.contains("We fixed it."));
        assert!(!merged.contains("_new prompt_"));
        assert!(merged.contains("new facts"));
        assert!(!merged.contains("old facts"));
    }

    #[test]
    fn unedited_human_region_gets_the_new_draft() {
        let merged = merge(
            &doc("draft 1", "f"),
            &doc("draft 2", "f"),
            Path::new("pm.md"),
        )
        .unwrap();
        assert!(merged.contains("draft 2"));
        assert!(!merged.contains("draft 1"));
    }

    #[test]
    fn hand_edited_generated_region_is_kept_as_human() {
        let old = doc("s", "facts").replace("\nfacts\n", "\nfacts, corrected by ana\n");
        let (merged, kept) = merge_report(&old, &doc("s", "facts 2"), Path::new("pm.md")).unwrap();
        // Kept in place as the person's, said by name, and not rebuilt beside it.
        assert_eq!(kept, ["facts"]);
        assert!(!merged.contains("facts 2"), "{merged}");
        assert!(
            merged.contains("<!-- runbook:human id=facts sha256="),
            "{merged}"
        );
        assert!(merged.contains("\nfacts, corrected by ana\n"), "{merged}");
        assert_eq!(merged.matches("corrected by ana").count(), 1);
        // Rendering again keeps it, once, and still says so.
        let (again, kept) =
            merge_report(&merged, &doc("s", "facts 3"), Path::new("pm.md")).unwrap();
        assert_eq!(kept, ["facts"]);
        assert_eq!(again, merged);
    }

    #[test]
    fn text_outside_markers_and_orphans_survive() {
        let old = format!(
            "{}\nA paragraph people added.\n\n{}\n",
            doc("s", "f"),
            region("human", "impact", "Users could not log in.")
                .replace(&sha256_hex("Users could not log in."), "0000")
        );
        let merged = merge(&old, &doc("s", "f"), Path::new("pm.md")).unwrap();
        assert!(merged.contains("A paragraph people added."));
        assert!(merged.contains(ORPHANS));
        assert!(merged.contains("Users could not log in."));
        // Merging again does not add a second heading.
        let again = merge(&merged, &doc("s", "f"), Path::new("pm.md")).unwrap();
        assert_eq!(again.matches(ORPHANS).count(), 1);
        assert_eq!(again.matches("Users could not log in.").count(), 1);
    }

    #[test]
    fn an_unedited_orphan_is_only_a_prompt_and_goes() {
        let old = format!(
            "{}
{}
",
            doc("s", "f"),
            region("human", "impact", "_prompt_")
        );
        let merged = merge(&old, &doc("s", "f"), Path::new("pm.md")).unwrap();
        assert!(!merged.contains("_prompt_"));
        assert!(!merged.contains(ORPHANS));
    }

    #[test]
    fn a_file_without_markers_is_refused() {
        let err = merge("# my notes\n", &doc("s", "f"), Path::new("pm.md")).unwrap_err();
        assert!(err.to_string().contains("pm.md"), "{err}");
    }

    #[test]
    fn unbalanced_markers_name_the_line() {
        let broken = "x\n<!-- runbook:human id=a -->\ny\n";
        let err = merge(broken, &doc("s", "f"), Path::new("pm.md")).unwrap_err();
        assert!(err.to_string().contains("pm.md:2"), "{err}");
    }
}
