//! The long lists of the model (the timeline's days and entries, the steps table)
//! handed to templates one item at a time (issue 18: bounded memory).
//!
//! handlebars renders from one JSON tree; the whole model as one tree cost about
//! 11 KB per step of a run of `echo` checks (a map per entry, per operation, per
//! time), far more than the journal itself. The default template therefore iterates
//! these lists with block helpers that turn one item into JSON, render the block for
//! it and drop it:
//!
//! - `{{#each_day}}…{{/each_day}}`: each day of the timeline (`date`, `weekday`);
//! - `{{#each_entry}}…{{/each_entry}}`: each entry of the day `each_day` is at, or of
//!   the whole timeline outside `each_day`;
//! - `{{#each_step}}…{{/each_step}}`: each row of the steps table.
//!
//! Inside, `this`, `@index`, `@first`, `@last`, `../` and `@root` mean what they mean
//! in `{{#each}}`. A custom template may use them too, or read `timeline` and `steps`
//! as data (the model is then one JSON tree, as before: see [`super::document`]).

use std::sync::atomic::{AtomicUsize, Ordering};

use handlebars::{
    BlockContext, Context, Handlebars, Helper, HelperDef, HelperResult, Output, RenderContext,
    RenderErrorReason, Renderable,
};
use serde::Serialize;
use serde_json::{Value, json};

use super::model::{Day, Entry, StepRow};

/// No `each_day` is running.
const NO_DAY: usize = usize::MAX;

/// The lists taken out of the model, and the day `each_day` is at.
pub struct Lists {
    pub days: Vec<Day>,
    #[allow(clippy::vec_box)] // as the model has them
    pub steps: Vec<Box<StepRow>>,
    day: AtomicUsize,
}

impl Lists {
    #[allow(clippy::vec_box)] // as the model has them
    pub fn new(days: Vec<Day>, steps: Vec<Box<StepRow>>) -> Lists {
        Lists {
            days,
            steps,
            day: AtomicUsize::new(NO_DAY),
        }
    }

    /// Register `each_day`, `each_entry` and `each_step` over these lists.
    pub fn register<'a>(&'a self, hb: &mut Handlebars<'a>) {
        hb.register_helper("each_day", Box::new(EachDay(self)));
        hb.register_helper("each_entry", Box::new(EachEntry(self)));
        hb.register_helper("each_step", Box::new(EachStep(self)));
    }

    /// The entries `each_entry` iterates now.
    fn entries(&self) -> Box<dyn Iterator<Item = &Entry> + '_> {
        match self.days.get(self.day.load(Ordering::Relaxed)) {
            Some(day) => Box::new(day.entries.iter().map(|e| &**e)),
            None => Box::new(
                self.days
                    .iter()
                    .flat_map(|d| d.entries.iter().map(|e| &**e)),
            ),
        }
    }

    fn entry_count(&self) -> usize {
        match self.days.get(self.day.load(Ordering::Relaxed)) {
            Some(day) => day.entries.len(),
            None => self.days.iter().map(|d| d.entries.len()).sum(),
        }
    }
}

/// Render `h`'s block once per item, as `{{#each}}` does over an array, with each
/// item's JSON made just before its turn and dropped after it; `before(i)` runs
/// before item `i` is rendered. No items: the `{{else}}` block, if any.
#[allow(clippy::too_many_arguments)] // a helper's four, and what to iterate
fn each<'reg: 'rc, 'rc, T: Serialize>(
    items: impl Iterator<Item = T>,
    len: usize,
    mut before: impl FnMut(usize),
    h: &Helper<'rc>,
    r: &'reg Handlebars<'reg>,
    ctx: &'rc Context,
    rc: &mut RenderContext<'reg, 'rc>,
    out: &mut dyn Output,
) -> HelperResult {
    if len == 0 {
        if let Some(t) = h.inverse() {
            t.render(r, ctx, rc, out)?;
        }
        return Ok(());
    }
    let Some(t) = h.template() else {
        return Ok(());
    };
    rc.push_block(BlockContext::new());
    for (i, item) in items.enumerate() {
        before(i);
        let value = serde_json::to_value(item)
            .map_err(|e| RenderErrorReason::Other(format!("the model: {e}")))?;
        if let Some(block) = rc.block_mut() {
            block.set_local_var("first", Value::Bool(i == 0));
            block.set_local_var("last", Value::Bool(i + 1 == len));
            block.set_local_var("index", json!(i));
            block.set_base_value(value);
        }
        t.render(r, ctx, rc, out)?;
    }
    rc.pop_block();
    Ok(())
}

/// `{{#each_day}}`: the days of the timeline, without their entries (`each_entry`).
struct EachDay<'a>(&'a Lists);

impl HelperDef for EachDay<'_> {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let lists = self.0;
        let outer = lists.day.load(Ordering::Relaxed);
        let days = lists
            .days
            .iter()
            .map(|d| json!({"date": d.date, "weekday": d.weekday}));
        let done = each(
            days,
            lists.days.len(),
            |i| lists.day.store(i, Ordering::Relaxed),
            h,
            r,
            ctx,
            rc,
            out,
        );
        lists.day.store(outer, Ordering::Relaxed);
        done
    }
}

/// `{{#each_entry}}`: the entries of the current day (of every day outside
/// `each_day`).
struct EachEntry<'a>(&'a Lists);

impl HelperDef for EachEntry<'_> {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let lists = self.0;
        // An `each_day` inside this block must not move this block's day.
        let day = lists.day.load(Ordering::Relaxed);
        let done = each(
            lists.entries(),
            lists.entry_count(),
            |_| lists.day.store(day, Ordering::Relaxed),
            h,
            r,
            ctx,
            rc,
            out,
        );
        lists.day.store(day, Ordering::Relaxed);
        done
    }
}

/// `{{#each_step}}`: the rows of the steps table.
struct EachStep<'a>(&'a Lists);

impl HelperDef for EachStep<'_> {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let steps = &self.0.steps;
        each(steps.iter(), steps.len(), |_| {}, h, r, ctx, rc, out)
    }
}

/// Whether `template` reads `field` of the model's top level as data
/// (`{{#each timeline}}`, `{{len steps}}`, `{{@root.timeline.[0].date}}`), so that a
/// custom template is given it in the JSON tree: a path whose first segment is the
/// field, in any expression outside comments and string literals. Another field's
/// member of the same name (`metrics.counts.steps`) is not it.
pub fn reads(template: &str, field: &str) -> bool {
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let body = &rest[open + 2..];
        let (expr, after) = if let Some(comment) = body.strip_prefix("!--") {
            match comment.find("--}}") {
                Some(end) => ("", &comment[end + 4..]),
                None => return false,
            }
        } else {
            match body.find("}}") {
                Some(end) => (&body[..end], &body[end + 2..]),
                None => (body, ""),
            }
        };
        rest = after;
        if expr.starts_with('!') {
            continue;
        }
        if expr_reads(expr, field) {
            return true;
        }
    }
    false
}

fn expr_reads(expr: &str, field: &str) -> bool {
    // String literals are not paths.
    let mut plain = String::with_capacity(expr.len());
    let mut quote = None;
    for c in expr.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None => plain.push(c),
        }
    }
    plain
        .split(|c: char| c.is_whitespace() || "(){}#^>&=|~".contains(c))
        .any(|token| {
            let mut path = token;
            loop {
                if let Some(p) = path.strip_prefix("@root.") {
                    path = p;
                } else if let Some(p) = path.strip_prefix("../") {
                    path = p;
                } else if let Some(p) = path.strip_prefix("this.") {
                    path = p;
                } else if let Some(p) = path.strip_prefix("./") {
                    path = p;
                } else {
                    break;
                }
            }
            path.split(['.', '/', '['])
                .next()
                .is_some_and(|first| first == field)
        })
}

#[cfg(test)]
mod tests {
    use super::reads;

    #[test]
    fn a_template_reads_a_field_when_a_path_starts_with_it() {
        assert!(reads("{{#each timeline}}{{date}}{{/each}}", "timeline"));
        assert!(reads("{{len steps}}", "steps"));
        assert!(reads("{{@root.timeline.[0].date}}", "timeline"));
        assert!(reads("{{#with (lookup timeline 0)}}{{/with}}", "timeline"));
        assert!(reads("{{#each ../steps}}{{/each}}", "steps"));
        assert!(!reads("{{metrics.counts.steps}}", "steps"));
        assert!(!reads("{{#each_step}}{{id}}{{/each_step}}", "steps"));
        assert!(!reads(
            "{{#generated \"timeline\"}}x{{/generated}}",
            "timeline"
        ));
        assert!(!reads(
            "{{!-- the timeline {{steps}} --}}{{run.id}}",
            "timeline"
        ));
        assert!(!reads(
            "{{!-- the timeline {{steps}} --}}{{run.id}}",
            "steps"
        ));
        assert!(!reads("{{! timeline }}", "timeline"));
        assert!(!reads(crate::render::DEFAULT_TEMPLATE, "timeline"));
        assert!(!reads(crate::render::DEFAULT_TEMPLATE, "steps"));
    }
}
