//! Escaping for the places a value can land in markdown.
//!
//! Command output, step titles and notes are untrusted: a pod name, a log line or a
//! note can hold `|`, backticks, `</details>` or `<script>`. Each function here makes
//! a value safe for exactly one context, so the document's structure (headings,
//! tables, `<details>` blocks, fences) cannot be broken and no HTML can be injected.
//! The template helpers in `helpers.rs` are thin wrappers around these.

/// Longest run of `ch` in `s`.
fn longest_run(s: &str, ch: char) -> usize {
    let (mut best, mut cur) = (0, 0);
    for c in s.chars() {
        if c == ch {
            cur += 1;
            best = best.max(cur);
        } else {
            cur = 0;
        }
    }
    best
}

/// Replace characters that have no business in a text document (NUL, other C0
/// controls except tab and newline, a lone CR) so a binary blob cannot garble it.
fn clean(s: &str) -> String {
    s.replace("\r\n", "\n")
        .chars()
        .map(|c| match c {
            '\n' | '\t' => c,
            '\r' => '\n',
            c if c.is_control() => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// Text in a markdown paragraph, list item, heading or table cell: markdown and HTML
/// punctuation is backslash-escaped where it could mean something, and line breaks
/// become spaces, so the value stays one inline run of text. This is the template
/// engine's escape function: `{{value}}` is safe.
///
/// Characters that are only special in some positions are escaped only there, so a
/// CEL expression or a snake_case name stays readable in the markdown source: `_`
/// next to a non-alphanumeric character (`bad_nodes` is left alone), `&` before a
/// letter or `#` (an entity), `#` and `>` at the start of the value (a heading, a
/// quote). `<`, `[`, `]`, `*`, `` ` ``, `|`, `~` and `\` are always escaped.
pub fn text(s: &str) -> String {
    // Most values (ids, names, times) need nothing: skip the work.
    if !s
        .bytes()
        .any(|b| b < 0x20 || b == 0x7f || b"\\`*[]<|~_&#>".contains(&b))
    {
        return s.to_owned();
    }
    let chars: Vec<char> = clean(s)
        .chars()
        .map(|c| if c == '\n' || c == '\t' { ' ' } else { c })
        .collect();
    let mut out = String::with_capacity(s.len() + 8);
    let first = chars.iter().position(|c| !c.is_whitespace());
    for (i, &c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).and_then(|p| chars.get(p));
        let next = chars.get(i + 1);
        let alnum = |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric());
        let escape = match c {
            '\\' | '`' | '*' | '[' | ']' | '<' | '|' | '~' => true,
            '_' => !(alnum(prev) && alnum(next)),
            '&' => next.is_some_and(|n| n.is_ascii_alphanumeric() || *n == '#'),
            '#' | '>' => Some(i) == first,
            _ => false,
        };
        if escape {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Text in a table cell: like [`text`], but line breaks become `<br>` so a
/// multi-line value stays in its cell.
pub fn cell(s: &str) -> String {
    let cleaned = clean(s);
    let lines: Vec<String> = cleaned.trim_end().split('\n').map(text).collect();
    lines.join("<br>")
}

/// An inline code span that shows `s` verbatim: delimited by one more backtick than
/// the longest run inside, padded when it starts or ends with a backtick. Line breaks
/// become spaces (a code span is one line of the source).
pub fn code(s: &str) -> String {
    let one_line: String = clean(s)
        .chars()
        .map(|c| if c == '\n' || c == '\t' { ' ' } else { c })
        .collect();
    if one_line.is_empty() {
        return "` `".to_owned();
    }
    let ticks = "`".repeat(longest_run(&one_line, '`') + 1);
    // CommonMark strips one space from both ends when both are present, so pad when
    // the content touches a backtick or is itself padded with spaces.
    let pad = one_line.starts_with('`')
        || one_line.ends_with('`')
        || (one_line.starts_with(' ') && one_line.ends_with(' '));
    if pad {
        format!("{ticks} {one_line} {ticks}")
    } else {
        format!("{ticks}{one_line}{ticks}")
    }
}

/// An inline code span inside a table cell: GFM splits rows at `|` before it parses
/// code spans, so a pipe must be written `\|` even there.
pub fn code_cell(s: &str) -> String {
    code(s).replace('|', "\\|")
}

/// A fenced code block showing `s` verbatim: the fence is longer than any run of
/// backticks inside, so no line of output can close it early. `lang` is the info
/// string (ours, never user data). Ends without a trailing newline.
pub fn fence(s: &str, lang: &str) -> String {
    let body = clean(s);
    let ticks = "`".repeat((longest_run(&body, '`') + 1).max(3));
    let lang: String = lang
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let body = body.trim_end_matches('\n');
    format!("{ticks}{lang}\n{body}\n{ticks}")
}

/// Text inside raw HTML (a `<details>` summary): markdown is not parsed there, so
/// HTML entities, not backslashes. Line breaks become spaces, because a blank line
/// would end the HTML block.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in clean(s).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A folded block: `<details>` with an escaped summary around a fenced block. Starts
/// with `<details>` and ends with `</details>`; the caller puts blank lines around it.
pub fn details(summary: &str, body: &str, lang: &str) -> String {
    format!(
        "<details><summary>{}</summary>\n\n{}\n\n</details>",
        html(summary),
        fence(body, lang)
    )
}

/// Each line of `s` as a blockquote line (`> …`), escaped as [`text`]: an operator
/// note keeps its line breaks without being able to start a heading or a list.
pub fn quote(s: &str) -> String {
    let cleaned = clean(s);
    cleaned
        .trim_end()
        .split('\n')
        .map(|line| {
            let t = text(line);
            if t.is_empty() {
                ">".to_owned()
            } else {
                format!("> {}", escape_line_start(&t))
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Text that begins a line must not start a list or a heading either: `- x`, `+ x`,
/// `1. x` (the other block starters are escaped by [`text`]).
pub fn escape_line_start(t: &str) -> String {
    let trimmed = t.trim_start();
    let lead = &t[..t.len() - trimmed.len()];
    let mut chars = trimmed.chars();
    match chars.next() {
        Some(c @ ('-' | '+' | '=')) => format!("{lead}\\{c}{}", chars.as_str()),
        Some(d) if d.is_ascii_digit() => {
            let digits: String = trimmed.chars().take_while(|c| c.is_ascii_digit()).collect();
            let rest = &trimmed[digits.len()..];
            if rest.starts_with('.') || rest.starts_with(')') {
                format!("{lead}{digits}\\{rest}")
            } else {
                t.to_owned()
            }
        }
        _ => t.to_owned(),
    }
}

/// Tracks fenced code blocks line by line, so code that scans a document for its
/// own markers (or tidies blank lines) leaves the inside of a fence alone.
#[derive(Debug, Default)]
pub struct Fences {
    open: Option<(char, usize)>,
}

impl Fences {
    /// Feed the next line; true when the line is part of a fenced block (its
    /// opening and closing fence lines included).
    pub fn inside(&mut self, line: &str) -> bool {
        let t = line.trim();
        let fence = |c: char| t.len() - t.trim_start_matches(c).len();
        match self.open {
            Some((c, n)) => {
                if fence(c) >= n && t.trim_start_matches(c).is_empty() {
                    self.open = None;
                }
                true
            }
            None => {
                for c in ['`', '~'] {
                    let n = fence(c);
                    if n >= 3 {
                        self.open = Some((c, n));
                        return true;
                    }
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_span_outgrows_backtick_runs_inside() {
        assert_eq!(code("kubectl get pods"), "`kubectl get pods`");
        assert_eq!(code("a ``` b"), "````a ``` b````");
        assert_eq!(code("`x`"), "`` `x` ``");
    }

    #[test]
    fn fence_is_longer_than_any_run_inside() {
        let f = fence("```\n</details>\n````", "text");
        assert!(f.starts_with("`````text\n"));
        assert!(f.ends_with("\n`````"));
    }

    #[test]
    fn text_cannot_open_html_or_code() {
        assert_eq!(text("</details><b>"), "\\</details>\\<b>");
        assert_eq!(text("a|b\nc"), "a\\|b c");
        assert_eq!(text("# x > y"), "\\# x > y");
        assert_eq!(
            text("bad_nodes && _x_ &amp;"),
            "bad_nodes && \\_x\\_ \\&amp;"
        );
    }

    #[test]
    fn cell_keeps_lines_apart_and_escapes_pipes() {
        assert_eq!(cell("a|b\nc"), "a\\|b<br>c");
        assert_eq!(code_cell("a|b"), "`a\\|b`");
    }

    #[test]
    fn html_uses_entities() {
        assert_eq!(html("<script>&"), "&lt;script&gt;&amp;");
    }

    #[test]
    fn quote_cannot_start_a_list_or_heading() {
        assert_eq!(
            quote("- one\n# two\n3. three"),
            "> \\- one\n> \\# two\n> 3\\. three"
        );
    }

    #[test]
    fn control_characters_are_replaced() {
        assert_eq!(fence("a\0b", ""), "```\na\u{FFFD}b\n```");
    }
}
