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
pub mod model;
mod parse;
pub mod schema;
mod source;
pub mod validate;

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
    let source = std::fs::read_to_string(path).map_err(|e| LoadError::Io {
        path: path.to_owned(),
        source: e,
    })?;
    match parse_str(&source, path) {
        Ok(runbook) => Ok(Loaded {
            runbook,
            source,
            path: path.to_owned(),
        }),
        Err(diagnostics) => Err(LoadError::Invalid {
            path: path.to_owned(),
            source,
            diagnostics,
        }),
    }
}

/// Parse and validate runbook text. `path` is only used in messages. Returns every
/// problem found, sorted by position; warnings alone do not make it fail.
pub fn parse_str(source: &str, path: &Path) -> Result<Runbook, Vec<Diagnostic>> {
    let _ = path;
    let (runbook, mut diags) = check(source);
    diags.sort_by_key(|d| (d.line, d.column));
    diags.dedup();
    match runbook {
        Some(rb) if !diags.iter().any(Diagnostic::is_error) => Ok(rb),
        _ => Err(diags),
    }
}

/// Everything lint finds in `source`, and the runbook when the YAML could be read.
fn check(source: &str) -> (Option<Runbook>, Vec<Diagnostic>) {
    let node = match parse::parse_yaml(source) {
        Ok(n) => n,
        Err(d) => return (None, vec![d]),
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
