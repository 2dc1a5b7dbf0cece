//! Tidying a document as it is rendered, line by line (issue 18: memory).
//!
//! Templates are easier to write with spare blank lines; the document keeps at most
//! one blank line in a row (outside fenced blocks, whose content is verbatim), its
//! lines lose their trailing blanks (outside fences), and it ends with exactly one
//! newline. [`Tidy`] does that to text written to it piece by piece, so a rendered
//! document is never held twice (once as handlebars wrote it, once tidied): it keeps
//! only the line being written and the blank tail of what it passed on.

use super::escape::Fences;

/// A tidying writer in front of `out`; [`Tidy::finish`] ends the document.
pub struct Tidy<W> {
    out: W,
    /// The line being written, up to its newline.
    line: Vec<u8>,
    /// Blank lines in a row so far (outside fences).
    blank: usize,
    fences: Fences,
    /// Whitespace passed on last and not written yet: the document's end is trimmed,
    /// so it is written only once something else follows it.
    held: String,
}

impl<W: std::io::Write> Tidy<W> {
    pub fn new(out: W) -> Tidy<W> {
        Tidy {
            out,
            line: Vec::new(),
            blank: 0,
            fences: Fences::default(),
            held: String::new(),
        }
    }

    /// The rest of the document, and its last newline; the writer, for the caller
    /// to flush or take.
    pub fn finish(mut self) -> std::io::Result<W> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            // The last line without a newline keeps a carriage return, as
            // `str::lines` does.
            self.end_line(&String::from_utf8_lossy(&line))?;
        }
        self.out.write_all(b"\n")?;
        Ok(self.out)
    }

    /// A line ended by a newline (a carriage return before it is not part of it).
    fn line_done(&mut self, line: &[u8]) -> std::io::Result<()> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.end_line(&String::from_utf8_lossy(line))
    }

    fn end_line(&mut self, line: &str) -> std::io::Result<()> {
        let trimmed = line.trim_end();
        let in_fence = self.fences.inside(line);
        if !in_fence && trimmed.is_empty() {
            self.blank += 1;
            if self.blank > 1 {
                return Ok(());
            }
        } else {
            self.blank = 0;
        }
        self.pass(if in_fence { line } else { trimmed })?;
        self.pass("\n")
    }

    /// Write `text` on, keeping back its whitespace tail.
    fn pass(&mut self, text: &str) -> std::io::Result<()> {
        let body = text.trim_end();
        if body.is_empty() {
            self.held.push_str(text);
            return Ok(());
        }
        if !self.held.is_empty() {
            self.out.write_all(self.held.as_bytes())?;
            self.held.clear();
        }
        self.out.write_all(body.as_bytes())?;
        self.held.push_str(&text[body.len()..]);
        Ok(())
    }
}

impl<W: std::io::Write> std::io::Write for Tidy<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let piece = &rest[..nl];
            rest = &rest[nl + 1..];
            if self.line.is_empty() {
                self.line_done(piece)?;
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(piece);
                self.line_done(&line)?;
                line.clear();
                self.line = line;
            }
        }
        self.line.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// [`Tidy`] over a whole text in memory.
#[cfg(test)]
pub fn tidy(text: &str) -> String {
    let mut t = Tidy::new(Vec::with_capacity(text.len() + 1));
    std::io::Write::write_all(&mut t, text.as_bytes())
        .expect("invariant: writing to a Vec does not fail");
    let out = t
        .finish()
        .expect("invariant: writing to a Vec does not fail");
    String::from_utf8(out).expect("invariant: tidied UTF-8 is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::tidy;

    /// What the document got before tidying was streamed: the whole text at once.
    fn whole(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut blank = 0;
        let mut fences = super::Fences::default();
        for line in text.lines() {
            let trimmed = line.trim_end();
            let in_fence = fences.inside(line);
            if !in_fence && trimmed.is_empty() {
                blank += 1;
                if blank > 1 {
                    continue;
                }
            } else {
                blank = 0;
            }
            out.push_str(if in_fence { line } else { trimmed });
            out.push('\n');
        }
        let end = out.trim_end().len();
        out.truncate(end);
        out.push('\n');
        out
    }

    #[test]
    fn streamed_tidying_writes_what_tidying_the_whole_text_wrote() {
        let cases = [
            "",
            "\n",
            "a",
            "a\n\n\n\nb  \n",
            "  lead\n\n\n```\nin fence  \n\n\n\n```\n\n\nafter\t \n\n",
            "x\r\ny\r\n\r\n\r\nz\r",
            "```\nopen fence at the end  \n\n  ",
            "é ü  \n\n\n—\n",
            "a\n \n\t\n b\n",
        ];
        for text in cases {
            assert_eq!(tidy(text), whole(text), "{text:?} at once");
            // Written in pieces of every size, split anywhere between characters.
            for size in 1..5 {
                let mut t = super::Tidy::new(Vec::new());
                let mut rest = text;
                while !rest.is_empty() {
                    let mut cut = size.min(rest.len());
                    while !rest.is_char_boundary(cut) {
                        cut += 1;
                    }
                    std::io::Write::write_all(&mut t, &rest.as_bytes()[..cut]).unwrap();
                    rest = &rest[cut..];
                }
                let out = String::from_utf8(t.finish().unwrap()).unwrap();
                assert_eq!(out, whole(text), "{text:?} in pieces of {size}");
            }
        }
    }
}
