//! The source text of a runbook with a line index: positions to byte offsets and back.

use super::model::{Pos, Sp};

/// The source text with a line index.
pub(crate) struct Source<'s> {
    pub text: &'s str,
    line_starts: Vec<usize>,
}

impl<'s> Source<'s> {
    pub fn new(text: &'s str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source { text, line_starts }
    }

    /// Byte offset of a 1-based line and character column.
    pub fn byte(&self, pos: Pos) -> Option<usize> {
        let start = *self.line_starts.get((pos.line as usize).checked_sub(1)?)?;
        let line = &self.text[start..];
        let chars = (pos.col as usize).checked_sub(1)?;
        line.char_indices()
            .nth(chars)
            .map(|(b, _)| start + b)
            .or(Some(start + line.len()))
    }

    pub fn pos_at(&self, byte: usize) -> Pos {
        let line = self.line_starts.partition_point(|s| *s <= byte).max(1);
        let start = self.line_starts[line - 1];
        let col = self
            .text
            .get(start..byte)
            .map_or(1, |s| s.chars().count() + 1);
        Pos {
            line: line as u32,
            col: col as u32,
        }
    }

    /// The position of byte `offset` inside the string value `sp`, when the value is
    /// written verbatim in the file (plain or quoted without escapes before that
    /// point); otherwise the position of the value itself.
    pub fn pos_in(&self, sp: &Sp<String>, offset: usize) -> Pos {
        let Some(start) = self.byte(sp.pos) else {
            return sp.pos;
        };
        let raw = &self.text[start..];
        let skip = usize::from(raw.starts_with(['"', '\'']));
        let Some(prefix) = sp.value.get(..offset) else {
            return sp.pos;
        };
        if raw[skip..].starts_with(prefix) {
            self.pos_at(start + skip + offset)
        } else {
            sp.pos
        }
    }

    /// How many characters the plain token at `pos` takes (up to a space, `,`, `}`,
    /// `]` or `#`), for values that are not strings.
    pub fn token_width(&self, pos: Pos) -> usize {
        self.byte(pos).map_or(1, |b| {
            self.text[b..]
                .chars()
                .take_while(|c| !matches!(c, ' ' | '\t' | '\n' | '\r' | ',' | '}' | ']' | '#'))
                .count()
                .max(1)
        })
    }

    /// How many characters a scalar takes in the file (for the caret underline).
    pub fn width(&self, pos: Pos, text: &str) -> usize {
        let quoted = self
            .byte(pos)
            .and_then(|b| self.text[b..].chars().next())
            .is_some_and(|c| c == '"' || c == '\'');
        let first_line = text.lines().next().unwrap_or("");
        first_line.chars().count() + if quoted { 2 } else { 0 }
    }
}
