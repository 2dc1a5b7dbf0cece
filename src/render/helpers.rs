//! The handlebars registry of the postmortem: strict, markdown-escaping, with one
//! helper per markdown context and the two region markers.
//!
//! `{{value}}` escapes for markdown text (see [`escape::text`]); `{{{value}}}` inserts
//! a value as it is and is meant for the model's markdown fields only. The helpers
//! write their output themselves, so it is not escaped a second time.

use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, Output, RenderContext, RenderErrorReason,
    Renderable,
};
use serde_json::Value;

use super::escape;
use super::preserve::{END, begin_generated, begin_human};

/// A registry with every helper of the postmortem templates.
pub fn registry<'a>() -> Handlebars<'a> {
    let mut hb = Handlebars::new();
    // A misspelt field is an error naming it, not an empty string in the document.
    hb.set_strict_mode(true);
    // handlebars' default escaping writes HTML entities that markdown code spans show
    // literally; escape for markdown text instead.
    hb.register_escape_fn(escape::text);
    hb.register_helper("text", Box::new(one(escape::text)));
    hb.register_helper("code", Box::new(one(escape::code)));
    hb.register_helper("code_cell", Box::new(one(escape::code_cell)));
    hb.register_helper("cell", Box::new(one(escape::cell)));
    hb.register_helper("quote", Box::new(one(escape::quote)));
    hb.register_helper("html", Box::new(one(escape::html)));
    hb.register_helper("fence", Box::new(fence));
    hb.register_helper("details", Box::new(details));
    hb.register_helper("generated", Box::new(RegionHelper { human: false }));
    hb.register_helper("human", Box::new(RegionHelper { human: true }));
    hb
}

/// The helper's `index`th parameter as a string: strings as they are, null as
/// nothing, anything else as JSON.
fn param(h: &Helper<'_>, index: usize) -> Result<String, RenderErrorReason> {
    let p = h
        .param(index)
        .ok_or(RenderErrorReason::ParamNotFoundForIndex("helper", index))?;
    if p.is_value_missing() {
        return Err(RenderErrorReason::MissingVariable(
            p.relative_path().cloned(),
        ));
    }
    Ok(match p.value() {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

type HelperFn = dyn Fn(
        &Helper<'_>,
        &Handlebars<'_>,
        &Context,
        &mut RenderContext<'_, '_>,
        &mut dyn Output,
    ) -> HelperResult
    + Send
    + Sync;

/// A helper writing `f(first parameter)`.
fn one(f: fn(&str) -> String) -> Box<HelperFn> {
    Box::new(move |h, _, _, _, out| {
        out.write(&f(&param(h, 0)?))?;
        Ok(())
    })
}

/// `{{fence value "json"}}`: a fenced block no output can close early.
fn fence(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let lang = if h.param(1).is_some() {
        param(h, 1)?
    } else {
        String::new()
    };
    out.write(&escape::fence(&param(h, 0)?, &lang))?;
    Ok(())
}

/// `{{details summary body "json"}}`: a `<details>` block around a fenced block.
fn details(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let lang = if h.param(2).is_some() {
        param(h, 2)?
    } else {
        String::new()
    };
    out.write(&escape::details(&param(h, 0)?, &param(h, 1)?, &lang))?;
    Ok(())
}

/// Region ids go into an HTML comment and are matched on re-render.
fn region_id(h: &Helper<'_>) -> Result<String, RenderErrorReason> {
    let id = param(h, 0)?;
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(RenderErrorReason::Other(format!(
            "region id {id:?} must be letters, digits, '-' or '_'"
        )));
    }
    Ok(id)
}

fn block_body<'reg: 'rc, 'rc>(
    h: &Helper<'rc>,
    r: &'reg Handlebars<'reg>,
    ctx: &'rc Context,
    rc: &mut RenderContext<'reg, 'rc>,
) -> Result<Blocks, handlebars::RenderError> {
    // Tidied as it is rendered, before it is hashed, so tidying the whole document
    // later does not change a region's text and make it look edited; never held
    // untidied (issue 18: the timeline region is most of a long run's document).
    let mut tidy = super::tidy::Tidy::new(Blocks::default());
    if let Some(t) = h.template() {
        t.render(r, ctx, rc, &mut handlebars::WriteOutput::new(&mut tidy))?;
    }
    let mut body = tidy.finish()?;
    body.trim_newlines();
    Ok(body)
}

/// A region's text as it is rendered, in blocks of [`Blocks::SIZE`] bytes: one
/// buffer grown by doubling held up to twice the text, and both buffers at each
/// doubling (issue 18: the timeline region is most of a long run's document). Blocks
/// end between characters.
#[derive(Default)]
struct Blocks {
    blocks: Vec<Vec<u8>>,
    /// Bytes of the first block before the text (newlines trimmed).
    skip: usize,
}

impl Blocks {
    const SIZE: usize = 64 * 1024;

    /// The text, in pieces.
    fn parts(&self) -> impl Iterator<Item = &str> {
        self.blocks.iter().enumerate().map(|(i, b)| {
            let b = if i == 0 { &b[self.skip..] } else { &b[..] };
            std::str::from_utf8(b).expect("invariant: blocks hold whole characters")
        })
    }

    /// Without the newlines it starts and ends with.
    fn trim_newlines(&mut self) {
        while let Some(last) = self.blocks.last_mut() {
            let end = last.iter().rposition(|&b| b != b'\n').map_or(0, |i| i + 1);
            last.truncate(end);
            if !last.is_empty() {
                break;
            }
            self.blocks.pop();
        }
        while let Some(first) = self.blocks.first() {
            match first.iter().position(|&b| b != b'\n') {
                Some(i) => {
                    self.skip = i;
                    break;
                }
                None => {
                    self.blocks.remove(0);
                }
            }
        }
    }
}

impl std::io::Write for Blocks {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let room = self.blocks.last().map_or(0, |b| Blocks::SIZE - b.len());
            // Cut between characters (a write is whole characters).
            let mut n = room.min(rest.len());
            while n > 0 && n < rest.len() && (rest[n] & 0xC0) == 0x80 {
                n -= 1;
            }
            if n == 0 {
                // A new block has room for any character.
                self.blocks.push(Vec::with_capacity(Blocks::SIZE));
                continue;
            }
            let last = self
                .blocks
                .last_mut()
                .expect("invariant: a block was pushed");
            last.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `{{#generated "timeline"}}…{{/generated}}` (a region rebuilt on every render) and
/// `{{#human "summary"}}prompt{{/human}}` (a region people own; re-rendering keeps it
/// once it was edited).
struct RegionHelper {
    human: bool,
}

impl HelperDef for RegionHelper {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let id = region_id(h)?;
        let body = block_body(h, r, ctx, rc)?;
        let mut sha = crate::journal::digest::sha256_hex_parts(body.parts().map(str::as_bytes));
        sha.truncate(super::preserve::SHA_CHARS);
        let begin = if self.human {
            begin_human(&id, Some(&sha))
        } else {
            begin_generated(&id, &sha)
        };
        // In pieces: the body is not copied once more.
        out.write(&begin)?;
        out.write("\n")?;
        for part in body.parts() {
            out.write(part)?;
        }
        drop(body);
        for piece in ["\n", END, "\n"] {
            out.write(piece)?;
        }
        Ok(())
    }
}
