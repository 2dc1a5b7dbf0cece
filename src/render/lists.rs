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
    pub steps: Vec<StepRow>,
    day: AtomicUsize,
}

impl Lists {
    pub fn new(days: Vec<Day>, steps: Vec<StepRow>) -> Lists {
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
            Some(day) => Box::new(day.entries.iter()),
            None => Box::new(self.days.iter().flat_map(|d| d.entries.iter())),
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
