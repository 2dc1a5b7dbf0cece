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
use super::preserve::{END, begin_generated, begin_human, sha256_hex};

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
) -> Result<String, handlebars::RenderError> {
    // Tidied as it is rendered, before it is hashed, so tidying the whole document
    // later does not change a region's text and make it look edited; never held
    // untidied (issue 18: the timeline region is most of a long run's document).
    let mut tidy = super::tidy::Tidy::new(Vec::new());
    if let Some(t) = h.template() {
        t.render(r, ctx, rc, &mut handlebars::WriteOutput::new(&mut tidy))?;
    }
    let mut body = tidy.finish()?;
    let end = body.iter().rposition(|&b| b != b'\n').map_or(0, |i| i + 1);
    body.truncate(end);
    let start = body.iter().position(|&b| b != b'\n').unwrap_or(body.len());
    body.drain(..start);
    Ok(String::from_utf8(body)?)
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
        let mut sha = sha256_hex(&body);
        sha.truncate(super::preserve::SHA_CHARS);
        let begin = if self.human {
            begin_human(&id, Some(&sha))
        } else {
            begin_generated(&id, &sha)
        };
        // In pieces: the body is not copied once more.
        for piece in [begin.as_str(), "\n", &body, "\n", END, "\n"] {
            out.write(piece)?;
        }
        Ok(())
    }
}
