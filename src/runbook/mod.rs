//! The runbook format: model, parser with positions, validation, JSON Schema.
//!
//! [`load`] and [`parse_str`] are the front door: they read a file, parse it with
//! positions, convert it to the [`model`] and validate it completely, returning either
//! a runbook that is safe to run or *every* problem found, each with its line and
//! column. `runbook lint` and `runbook run` use the same path, so a file that lints
//! clean is a file that starts.

pub mod convert;
pub mod diag;
pub mod kinds;
pub mod limits;
pub mod model;
pub(crate) mod parse;
pub mod rbac;
pub mod schema;
mod source;
pub mod validate;
pub mod verbs;
pub mod yaml;
mod yaml_plain;

use std::fmt;
use std::path::{Path, PathBuf};

pub use diag::{Diagnostic, Severity};
pub use model::Runbook;

/// A runbook read from a file, with the text it came from (for messages).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub runbook: Runbook,
    pub source: String,
    pub path: PathBuf,
    /// Problems that do not stop the runbook (e.g. an action without a
    /// verification); render with [`diag::render`].
    pub warnings: Vec<Diagnostic>,
}

/// Why a runbook could not be loaded. `Display` renders every diagnostic with its
/// source line and caret.
#[derive(Debug)]
pub enum LoadError {
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    Invalid {
        path: PathBuf,
        source: String,
        diagnostics: Vec<Diagnostic>,
    },
}

impl LoadError {
    /// The diagnostics (an I/O error becomes one without a position).
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            LoadError::Io { source, .. } => vec![Diagnostic::error(
                "io",
                model::Pos::UNKNOWN,
                format!("cannot read the file: {source}"),
            )],
            LoadError::Invalid { diagnostics, .. } => diagnostics.clone(),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            LoadError::Io { path, .. } | LoadError::Invalid { path, .. } => path,
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io { path, source } => {
                write!(
                    f,
                    "{}: error: cannot read the file: {source}",
                    path.display()
                )
            }
            LoadError::Invalid {
                path,
                source,
                diagnostics,
            } => {
                let text = diag::render(path, source, diagnostics);
                f.write_str(text.trim_end())?;
                let errors = diagnostics.iter().filter(|d| d.is_error()).count();
                write!(
                    f,
                    "\n{}: {errors} error{}",
                    path.display(),
                    if errors == 1 { "" } else { "s" }
                )
            }
        }
    }
}

impl std::error::Error for LoadError {}

/// Read, parse and validate a runbook file.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    let source = match read_source(path).map_err(|e| LoadError::Io {
        path: path.to_owned(),
        source: e,
    })? {
        Source::Text(text) => text,
        Source::NotUtf8 { lossy, diagnostic } => {
            return Err(LoadError::Invalid {
                path: path.to_owned(),
                source: lossy,
                diagnostics: vec![diagnostic],
            });
        }
    };
    match analyze(&source) {
        (Some(runbook), diags) if !diags.iter().any(Diagnostic::is_error) => Ok(Loaded {
            runbook,
            source,
            path: path.to_owned(),
            warnings: diags,
        }),
        (_, diagnostics) => Err(LoadError::Invalid {
            path: path.to_owned(),
            source,
            diagnostics,
        }),
    }
}

/// A runbook file's text, or where it stops being UTF-8.
#[derive(Debug)]
pub enum Source {
    Text(String),
    /// The file is not UTF-8: `diagnostic` points at the first bad byte and `lossy`
    /// is the text with bad bytes replaced, for showing the line.
    NotUtf8 {
        lossy: String,
        diagnostic: Diagnostic,
    },
}

/// Read a runbook file (a regular file within the input cap, [`yaml::read_input`]).
/// Bytes that are not UTF-8 are a diagnostic at the line and column of the first bad
/// one, like any other mistake in the file.
pub fn read_source(path: &Path) -> std::io::Result<Source> {
    let bytes = yaml::read_input(path, "a runbook (YAML file)")?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Source::Text(text)),
        Err(e) => {
            let bytes = e.as_bytes();
            let at = e.utf8_error().valid_up_to();
            // Everything before `at` is valid UTF-8.
            let before = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            let pos = model::Pos {
                line: u32::try_from(line).unwrap_or(u32::MAX),
                col: u32::try_from(col).unwrap_or(u32::MAX),
            };
            let diagnostic = Diagnostic::error(
                "not-utf8",
                pos,
                format!(
                    "the file is not UTF-8 text: byte 0x{:02x} here is not valid UTF-8",
                    bytes[at]
                ),
            )
            .help("save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 FILE`); runbooks are UTF-8 YAML");
            Ok(Source::NotUtf8 {
                lossy: String::from_utf8_lossy(bytes).into_owned(),
                diagnostic,
            })
        }
    }
}

/// Parse and validate runbook text. Returns the runbook when there is no error, or
/// every problem found (warnings included), sorted by position. The diagnostics
/// carry positions only: render them with [`diag::render`] and the same `path` and
/// `source`. Use [`lint_str`] to also see the warnings of a runbook that is valid.
pub fn parse_str(source: &str, path: &Path) -> Result<Runbook, Vec<Diagnostic>> {
    // The path is part of the signature so callers keep it next to the source it
    // belongs to; nothing in parsing depends on it.
    let _ = path;
    match analyze(source) {
        (Some(rb), diags) if !diags.iter().any(Diagnostic::is_error) => Ok(rb),
        (_, diags) => Err(diags),
    }
}

/// Every problem lint finds in runbook text, errors and warnings, sorted by position.
pub fn lint_str(source: &str) -> Vec<Diagnostic> {
    analyze(source).1
}

fn analyze(source: &str) -> (Option<Runbook>, Vec<Diagnostic>) {
    let (runbook, mut diags) = check(source);
    diags.sort_by_key(|d| (d.line, d.column));
    diags.dedup();
    (runbook, diags)
}

/// A param given in a `-p @FILE`: its name, its value as the file typed it, and
/// where it was written (`FILE:LINE:COL`).
pub type FileParam = (String, serde_json::Value, String);

/// Read `-p @FILE`: a YAML (or JSON, which is YAML) mapping of param names to values.
/// An error is rendered like a lint error: `FILE:LINE:COL`, the line and a caret.
pub fn read_param_file(path: &Path) -> Result<Vec<FileParam>, String> {
    let text = yaml::read_input_text(path, "a params file (YAML or JSON)").map_err(|e| {
        format!(
            "{}: error: cannot read the params file: {e}",
            path.display()
        )
    })?;
    let fail = |d: Diagnostic| diag::render(path, &text, &[d]).trim_end().to_owned();
    let node = parse::parse_yaml(&text).map_err(|d| {
        if d.code == "empty" {
            fail(Diagnostic::error(
                "empty",
                d.pos(),
                "the params file is empty: write a mapping such as `threshold: 80`",
            ))
        } else {
            fail(d)
        }
    })?;
    let parse::Yaml::Map(entries) = &node.value else {
        return Err(fail(
            Diagnostic::error(
                "wrong-type",
                node.pos,
                format!(
                    "a params file is a mapping of param names to values, found {}",
                    node.value.describe()
                ),
            )
            .help("e.g. `threshold: 80` on one line, `nodes: [a, b]` on the next"),
        ));
    };
    let mut out = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        let parse::Yaml::Str(name) = &k.value else {
            return Err(fail(Diagnostic::error(
                "wrong-type",
                k.pos,
                format!("a param name is a string, found {}", k.value.describe()),
            )));
        };
        let at = format!("{}:{}:{}", path.display(), v.pos.line, v.pos.col);
        out.push((name.clone(), v.to_json(), at));
    }
    Ok(out)
}

/// Everything lint finds in `source`, and the runbook when the YAML could be read.
fn check(source: &str) -> (Option<Runbook>, Vec<Diagnostic>) {
    let node = match parse::parse_yaml(source) {
        Ok(n) => n,
        // Every independent YAML error, not only the first (issue 15).
        Err(d) => return (None, parse::yaml_errors(source, d, 20)),
    };
    let src = convert::Source::new(source);
    let mut conv = convert::Conv::new(&src);
    let runbook = conv.runbook(&node);
    let conv_assumed = conv.assumed_for_each;
    let mut diags = conv.diags;
    if let Some(rb) = &runbook {
        diags.extend(validate::validate(&src, rb, &conv_assumed));
    }
    (runbook, diags)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_file_that_is_not_utf8_is_an_error_at_the_first_bad_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latin1.yaml");
        std::fs::write(&path, b"version: 1\nname: caf\xe9\n").unwrap();
        let e = super::load(&path).unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.contains(&format!("{}:2:10", path.display())),
            "the position of the bad byte: {shown}"
        );
        assert!(shown.contains("0xe9") && shown.contains("UTF-8"), "{shown}");
        assert!(shown.contains("iconv"), "a suggested fix: {shown}");
    }

    use super::*;

    #[test]
    fn load_error_renders_every_diagnostic_with_its_location_and_a_count() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("bad.yaml");
        std::fs::write(
            &path,
            "version: 1\nname: Bad Name\ntitle: t\nsteps:\n  - check: c\n    id: c\n    kube: { get: podz }\n",
        )
        .expect("writable temp dir");
        let err = load(&path).unwrap_err();
        let text = err.to_string();
        let shown = path.display().to_string();
        assert!(
            text.contains(&format!("{shown}:2:7: error: `name` must be a slug")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{shown}:7:18: error: unknown resource kind `podz`"
            )),
            "{text}"
        );
        assert!(text.contains("7 |     kube: { get: podz }"), "{text}");
        assert!(text.ends_with(&format!("{shown}: 2 errors")), "{text}");
        assert_eq!(err.diagnostics().len(), 2);
    }

    #[test]
    fn load_error_for_a_missing_file_names_it() {
        let err = load(Path::new("/nonexistent/runbook.yaml")).unwrap_err();
        assert!(matches!(err, LoadError::Io { .. }));
        assert!(
            err.to_string()
                .starts_with("/nonexistent/runbook.yaml: error: cannot read the file")
        );
    }

    #[test]
    fn load_returns_the_runbook_and_its_source() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/hub-pvc-locked.yaml");
        let loaded = load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.runbook.name.value, "hub-pvc-locked");
        assert_eq!(loaded.runbook.steps[1].id.value, "lost-pods");
        let line = loaded
            .source
            .lines()
            .position(|l| l.trim() == "id: lost-pods")
            .expect("the runbook has a lost-pods step")
            + 1;
        assert_eq!(loaded.runbook.steps[1].id.pos.line as usize, line);
        assert_eq!(loaded.runbook.steps[1].id.pos.col, 9);
        assert!(
            loaded
                .source
                .starts_with("# yaml-language-server: $schema=../schemas/runbook.schema.json")
        );
    }
}
