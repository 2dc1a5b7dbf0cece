//! Bounds on what the run can use (names, ids, expression size; see
//! [`crate::runbook::limits`]) and the one unsafe shell pattern lint refuses:
//! a template inside an `sh -c` script.

use super::Validator;
use crate::runbook::diag::Diagnostic;
use crate::runbook::limits::{self, MAX_EXPRESSION_DEPTH, MAX_EXPRESSION_LEN, MAX_NAME_LEN};
use crate::runbook::model::*;

/// Shells whose `-c` script is parsed as shell code.
const SHELLS: &[&str] = &["sh", "bash", "zsh", "dash", "ksh", "ash"];

impl Validator<'_> {
    /// The runbook's name and every step id fit a file name.
    pub(super) fn name_bounds(&mut self) {
        let rb = self.rb;
        let names = std::iter::once(("`name`", &rb.name)).chain(
            rb.steps
                .iter()
                .chain(&rb.handlers)
                .map(|s| ("step id", &s.id)),
        );
        let mut found = Vec::new();
        for (what, sp) in names {
            let n = sp.value.chars().count();
            if n > MAX_NAME_LEN {
                found.push(
                    Diagnostic::error(
                        "too-long",
                        sp.pos,
                        format!("{what} is {n} characters; the limit is {MAX_NAME_LEN}"),
                    )
                    .help("it names files of the run (run directory, side files): shorten it"),
                );
            }
        }
        found.into_iter().for_each(|d| self.push(d));
    }

    /// False (and an error) when a condition or template is too large to evaluate
    /// in bounded time; its contents are then not checked further.
    pub(super) fn expression_fits(&mut self, sp: &Sp<String>) -> bool {
        let len = sp.value.len();
        if len > MAX_EXPRESSION_LEN {
            self.push(
                Diagnostic::error(
                    "expression-too-large",
                    sp.pos,
                    format!("this expression is {len} bytes; the limit is {MAX_EXPRESSION_LEN}"),
                )
                .help("split it, or compute the value in a step and `save` it"),
            );
            return false;
        }
        let depth = limits::nesting(&sp.value);
        if depth > MAX_EXPRESSION_DEPTH {
            self.push(
                Diagnostic::error(
                    "expression-too-deep",
                    sp.pos,
                    format!("brackets nest {depth} deep here; the limit is {MAX_EXPRESSION_DEPTH}"),
                )
                .help("flatten the expression"),
            );
            return false;
        }
        true
    }

    /// `argv: [sh, -c, "… {{x}} …"]` pastes a value into shell code: a value with a
    /// `;` or `$(…)` runs as a command. Values must reach the script as positional
    /// arguments (`"$1"`), which the shell never parses.
    pub(super) fn shell_script_templates(&mut self, s: &ShellOp) {
        let Some(program) = s.argv.first() else {
            return;
        };
        let base = program.value.rsplit('/').next().unwrap_or_default();
        if !SHELLS.contains(&base) {
            return;
        }
        // `-c`, or combined flags such as `-ec`; the script is the next argument.
        let Some(flag) = s.argv.iter().skip(1).position(|a| {
            a.value.starts_with('-') && !a.value.starts_with("--") && a.value.contains('c')
        }) else {
            return;
        };
        let Some(script) = s.argv.get(flag + 2) else {
            return;
        };
        let Some(at) = script.value.find("{{") else {
            return;
        };
        let pos = self.src.pos_in(script, at);
        let d = Diagnostic::error(
            "shell-template-in-script",
            pos,
            format!("a template inside a `{base} -c` script is injectable: the value is run as shell code"),
        )
        .len(2)
        .help(format!(
            "pass values as arguments and quote them in the script: {}",
            rewrite(&s.argv[..flag + 2], script, base)
        ));
        self.push(d);
    }
}

/// The safe form of a shell step: each `{{…}}` of the script becomes `$1`, `$2`, …,
/// and the templates follow the script (after `$0`, the shell's name).
fn rewrite(head: &[Sp<String>], script: &Sp<String>, shell: &str) -> String {
    let mut out = String::new();
    let mut args = Vec::new();
    let mut rest = script.value.as_str();
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let end = start + len + 2;
        args.push(rest[start..end].to_owned());
        let quoted = rest[..start].ends_with('"');
        out.push_str(&rest[..start]);
        let n = args.len();
        out.push_str(&if quoted {
            format!("${n}")
        } else {
            format!("\"${n}\"")
        });
        rest = &rest[end..];
    }
    out.push_str(rest);
    let mut items: Vec<String> = head.iter().map(|a| a.value.clone()).collect();
    items.push(format!("'{}'", out.replace('\'', "'\\''")));
    items.push(shell.to_owned());
    items.extend(args.iter().map(|a| format!("\"{a}\"")));
    format!("`argv: [{}]`", items.join(", "))
}
