//! Diagnostics: what lint and `load` report, rendered like rustc and just.
//!
//! ```text
//! runbooks/hub.yaml:12:5: error: unknown key `for_eahc` in a step
//!    |
//! 12 |     for_eahc: lost_pods
//!    |     ^^^^^^^^
//!    = help: did you mean `for_each`?
//! ```

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::model::Pos;

/// How bad a diagnostic is. Lint fails on errors only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in a runbook file, with its exact position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// A stable machine-readable name of the rule, e.g. `unknown-key`.
    pub code: &'static str,
    /// 1-based line and column (in characters); 0 when unknown.
    pub line: u32,
    pub column: u32,
    /// How many characters the caret underlines (at least 1).
    pub length: u32,
    /// What is wrong, in the user's terms.
    pub message: String,
    /// A likely fix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            line: pos.line,
            column: pos.col,
            length: 1,
            message: message.into(),
            help: None,
        }
    }

    /// Something worth fixing that does not stop the runbook from running.
    pub fn warning(code: &'static str, pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, pos, message)
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Underline `len` characters instead of one.
    pub fn len(mut self, len: usize) -> Self {
        self.length = u32::try_from(len.max(1)).unwrap_or(u32::MAX);
        self
    }

    pub fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.column,
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Render diagnostics of one file as text: `path:line:column: error: message`, the
/// source line, a caret, and a `help:` line when there is a hint.
pub fn render(path: &Path, source: &str, diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    let lines: Vec<&str> = source.lines().collect();
    for d in diagnostics {
        // `= help` lines up with the gutter's `|`, as rustc does.
        let mut gutter = "  ".to_owned();
        let sev = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if d.line == 0 {
            let _ = writeln!(out, "{}: {sev}: {}", path.display(), d.message);
        } else {
            let _ = writeln!(
                out,
                "{}:{}:{}: {sev}: {}",
                path.display(),
                d.line,
                d.column,
                d.message
            );
            if let Some(text) = lines.get(d.line as usize - 1) {
                let num = d.line.to_string();
                let pad = " ".repeat(num.len());
                gutter = format!("{pad} ");
                // Tabs would shift the caret; show them as one space each.
                let shown: String = text
                    .chars()
                    .map(|c| if c == '\t' { ' ' } else { c })
                    .collect();
                let col = d.column.max(1) as usize;
                let avail = shown.chars().count().saturating_sub(col - 1).max(1);
                let len = (d.length as usize).clamp(1, avail);
                let _ = writeln!(out, "{pad} |");
                let _ = writeln!(out, "{num} | {shown}");
                let _ = writeln!(out, "{pad} | {}{}", " ".repeat(col - 1), "^".repeat(len));
            }
        }
        if let Some(help) = &d.help {
            let _ = writeln!(out, "{gutter}= help: {help}");
        }
        out.push('\n');
    }
    out
}

/// "did you mean `x`?" for a misspelt word, from the candidates that are close enough.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_location_source_line_caret_and_help() {
        let src = "steps:\n  - for_eahc: x\n";
        let d = Diagnostic::error(
            "unknown-key",
            Pos { line: 2, col: 5 },
            "unknown key `for_eahc`",
        )
        .len(8)
        .help("did you mean `for_each`?");
        let text = render(Path::new("r.yaml"), src, &[d]);
        assert_eq!(
            text,
            "r.yaml:2:5: error: unknown key `for_eahc`\n  |\n2 |   - for_eahc: x\n  |     ^^^^^^^^\n  = help: did you mean `for_each`?\n\n"
        );
    }

    #[test]
    fn suggests_close_words_only() {
        let keys = ["for_each", "when", "expect"];
        assert_eq!(suggest("for_eahc", keys), Some("for_each"));
        assert_eq!(suggest("foreach", keys), Some("for_each"));
        assert_eq!(suggest("zzz", keys), None);
    }
}
