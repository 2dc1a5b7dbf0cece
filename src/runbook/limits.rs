//! The bounds lint enforces so that a runbook that lints clean is one the run can use
//! (issue 13, item 13): before them, a 300-character name failed the run with "file
//! name too long", `within: 100000000d` panicked it, `every: 0ms` spun, and a CEL
//! expression of 10^8 elements took minutes to compile. Each is listed with its value
//! in docs/format.md ("Limits"); raising one is a change to this file.

use std::time::Duration;

/// A runbook's `name` and a step's `id` become file names (the run directory, side
/// files): the length of a DNS label, far below any file system's 255 bytes.
pub const MAX_NAME_LEN: usize = 63;

/// The longest `within`, `timeout`, `every`, `backoff` or `max_backoff`: 30 days.
/// Longer waits are mistakes, and they overflowed the engine's clock arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// `retry.attempts`, the first try included.
pub const MAX_ATTEMPTS: u32 = 100;

/// The longest condition or template source, in bytes.
pub const MAX_EXPRESSION_LEN: usize = 4096;

/// How deeply brackets (`(`, `[`, `{`) may nest in one condition or template.
pub const MAX_EXPRESSION_DEPTH: usize = 32;

/// The deepest bracket nesting in `source` (quotes are not tracked: an expression
/// whose string literals hold brackets counts them, which only errs towards safety).
pub fn nesting(source: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for c in source.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}
