//! The console reporter: the one object that writes a run's console output (stderr).
//! It turns the run's events into lines (a line when a step starts and one when it
//! ends, approvals, escalations, pauses), prints the notices no event carries (plans
//! at gates, dry-run notes) and — on a terminal without `--quiet` — draws a spinner
//! per running step, a progress bar per `for_each` and a countdown while a
//! verification polls. Whether to draw bars is decided from values passed in, so
//! tests capture the plain lines.
//!
//! The engine never calls it: it hears everything through the event stream
//! ([`super::events`]), like any other [`Reporter`].

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::approve::GateRequest;
use super::events::{BarId, BarKind, BarUpdate, Notice, Progress, Reporter};
use crate::journal::event::{ApprovalSource, Decision, Event, Outcome, PlannedOp, RunStatus};
use crate::journal::state::RunState;

/// What the CLI (or `demo`/`test`) decided about the console.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrinterOpts {
    /// stderr is a terminal.
    pub tty: bool,
    /// `--quiet`: plain lines only.
    pub quiet: bool,
    /// ANSI colour for failures, warnings, forced or irreversible plans and explicit
    /// gates (`--color`, a terminal, `NO_COLOR`: decided by the CLI).
    pub colour: bool,
}

/// What a coloured line means; each has one colour everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Paint {
    /// A step or run that failed, timed out or was aborted: red.
    Failure,
    /// `warning: …`: yellow.
    Warning,
    /// An operation that cannot be taken back (`--force`, a delete at grace period
    /// 0): bold red.
    Danger,
    /// The header of a `gate: explicit` plan: bold magenta, so it does not read like
    /// every other gate.
    Explicit,
}

impl Paint {
    fn code(self) -> &'static str {
        match self {
            Paint::Failure => "\x1b[31m",
            Paint::Warning => "\x1b[33m",
            Paint::Danger => "\x1b[1;31m",
            Paint::Explicit => "\x1b[1;35m",
        }
    }
}

const RESET: &str = "\x1b[0m";

type Sink = Arc<Mutex<Box<dyn Write + Send>>>;

/// Console output of a run.
pub struct Printer {
    multi: Option<MultiProgress>,
    colour: bool,
    sink: Sink,
    /// The bars being drawn, by the id the stream gave them.
    bars: Mutex<HashMap<BarId, ProgressBar>>,
}

impl std::fmt::Debug for Printer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Printer")
            .field("bars", &self.multi.is_some())
            .finish()
    }
}

impl Printer {
    /// Print to stderr; bars only on a terminal without `--quiet`.
    pub fn stderr(opts: PrinterOpts) -> Printer {
        let multi = (opts.tty && !opts.quiet)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Printer {
            multi,
            colour: opts.colour,
            sink: Arc::new(Mutex::new(Box::new(std::io::stderr()))),
            bars: Mutex::default(),
        }
    }

    /// Plain lines into a buffer (tests, `runbook test`).
    pub fn capture() -> (Printer, Arc<Mutex<Vec<u8>>>) {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let printer = Printer {
            multi: None,
            colour: false,
            sink: Arc::new(Mutex::new(Box::new(SharedBuf(Arc::clone(&buf))))),
            bars: Mutex::default(),
        };
        (printer, buf)
    }

    /// Print nothing at all.
    pub fn silent() -> Printer {
        Printer {
            multi: None,
            colour: false,
            sink: Arc::new(Mutex::new(Box::new(std::io::sink()))),
            bars: Mutex::default(),
        }
    }

    /// One line of output, above any bars. A `warning: …` line is painted as one.
    pub fn line(&self, text: &str) {
        if text.starts_with("warning:") {
            self.painted(Paint::Warning, text);
        } else {
            self.write(text);
        }
    }

    /// A line in the colour of what it means, when colour is on.
    fn painted(&self, paint: Paint, text: &str) {
        self.write(&self.paint(paint, text));
    }

    /// `text` wrapped in `paint`'s colour, line by line (bars print line by line),
    /// or as it is without colour.
    fn paint(&self, paint: Paint, text: &str) -> String {
        if !self.colour {
            return text.to_owned();
        }
        text.lines()
            .map(|l| format!("{}{l}{RESET}", paint.code()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn write(&self, text: &str) {
        match &self.multi {
            Some(m) => {
                for l in text.lines() {
                    let _ = m.println(l);
                }
            }
            None => {
                // One write per line (stderr is unbuffered: `writeln!` would make two).
                let mut line = String::with_capacity(text.len() + 1);
                line.push_str(text);
                line.push('\n');
                let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
                let _ = sink.write_all(line.as_bytes());
                let _ = sink.flush();
            }
        }
    }

    /// Hide the bars while `f` writes to the terminal (a prompt).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.multi {
            Some(m) => m.suspend(f),
            None => f(),
        }
    }

    fn step_started(&self, id: &str, kind: &str, title: &str) {
        self.line(&format!("▶ {id} ({kind}) {title}"));
    }

    fn step_finished(&self, id: &str, outcome: Outcome, took: Duration, summary: &str) {
        let (mark, word) = outcome_words(outcome);
        let summary = if summary.is_empty() {
            String::new()
        } else {
            format!(" — {summary}")
        };
        let text = format!("{mark} {id} {word} in {}{summary}", human(took));
        if failure(outcome) {
            self.painted(Paint::Failure, &text);
        } else {
            self.line(&text);
        }
    }

    /// The plan of an action: every resolved operation, one per line.
    fn plan(&self, req: &GateRequest, header: &str) {
        let target = match &req.rung {
            Some(r) => format!("{} / {r}", req.step),
            None => req.step.clone(),
        };
        let head = format!("  {header} {target}: {}", req.title);
        let mut text = if req.explicit {
            self.paint(Paint::Explicit, &head)
        } else {
            head
        };
        text.push('\n');
        for op in &req.ops {
            let item = op.scope.item.map(|i| format!("[{i}] ")).unwrap_or_default();
            let verb = if op.mutating { "will run" } else { "reads" };
            let line = format!("    {item}{} {verb}: {}", op.provider, op.display);
            if op.mutating && irreversible(op) {
                text.push_str(&self.paint(Paint::Danger, &line));
            } else {
                text.push_str(&line);
            }
            text.push('\n');
            if let Some(i) = &op.impact {
                text.push_str(&format!("      {}\n", i.summary));
            }
        }
        if let Some(p) = &req.preview {
            let mut lines = p.lines();
            text.push_str(&format!("    preview: {}\n", lines.next().unwrap_or("")));
            for l in lines {
                text.push_str(&format!("      {l}\n"));
            }
        }
        if let Some(t) = &req.target {
            text.push_str(&format!("    target: {t}\n"));
        }
        text.push_str(&format!("    plan digest {}", short(&req.digest)));
        self.line(&text);
    }

    fn spinner(&self, msg: String) -> Option<ProgressBar> {
        let m = self.multi.as_ref()?;
        let b = m.add(ProgressBar::new_spinner());
        b.set_style(
            ProgressStyle::with_template("  {spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        b.set_message(msg);
        b.enable_steady_tick(Duration::from_millis(100));
        Some(b)
    }

    /// done/total for a `for_each`; the message carries the failures.
    fn progress_bar(&self, total: u64, msg: String) -> Option<ProgressBar> {
        let m = self.multi.as_ref()?;
        let b = m.add(ProgressBar::new(total));
        b.set_style(
            ProgressStyle::with_template("  [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b.set_message(msg);
        Some(b)
    }

    /// Seconds left of a verification's `within`.
    fn countdown(&self, within: Duration, msg: String) -> Option<ProgressBar> {
        let m = self.multi.as_ref()?;
        let b = m.add(ProgressBar::new(within.as_secs().max(1)));
        b.set_style(
            ProgressStyle::with_template("  {spinner} {msg} ({pos}s of {len}s)")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        b.set_message(msg);
        b.enable_steady_tick(Duration::from_millis(100));
        Some(b)
    }
}

impl Reporter for Printer {
    fn event(&self, event: &Event, state: &RunState) {
        match event {
            Event::RunStarted {
                run_id,
                runbook,
                dry_run,
                ..
            } => self.line(&format!(
                "run {run_id}: {} — {}{}",
                runbook.name,
                runbook.title,
                if *dry_run { " (dry run)" } else { "" }
            )),
            Event::RunResumed { .. } => self.line(&format!(
                "resuming run {}: {} — {}",
                state.run_id, state.runbook.name, state.runbook.title
            )),
            Event::RunbookChanged { .. } => self.painted(
                Paint::Warning,
                &format!("warning: {}", crate::journal::event::describe_change(event)),
            ),
            Event::StepRetried {
                step,
                by,
                failed,
                kept,
            } => {
                if failed.is_empty() {
                    self.line(&format!("↻ {step} failed the run; retrying it ({by})"));
                } else {
                    self.line(&format!(
                        "↻ {step} failed the run; retrying its failed items {} ({by}); {} item(s) that succeeded are not repeated",
                        item_list(failed),
                        kept.len()
                    ));
                }
            }
            Event::StepStarted { step, title, kind } => self.step_started(step, kind, title),
            Event::StepSkipped { step, reason } => {
                self.line(&format!("↷ {step} skipped: {reason}"));
            }
            // `unattended` approvals pass silently, as the plan was not shown.
            Event::GateDecided {
                decision: Decision::Approved,
                by,
                source,
                ..
            } if *source != ApprovalSource::Unattended => {
                self.line(&format!("  approved by {by} ({})", source_word(*source)));
            }
            Event::Paused {
                step,
                reason,
                resume,
            } => self.line(&format!(
                "⏸ paused at {step}: {reason}\n  continue with: {resume}"
            )),
            Event::ManualRequested { scope, instruction } => {
                let step = state.step(&scope.step);
                let title = match (&scope.rung, step) {
                    (Some(rung), Some(s)) => s.rung_title(rung),
                    (Some(rung), None) => rung.as_str(),
                    (None, Some(s)) => s.title.as_str(),
                    (None, None) => scope.step.as_str(),
                };
                self.line(&format!("  ✋ {title}\n{}", indent(instruction)));
            }
            Event::RungStarted {
                rung,
                title,
                index,
                of,
                ..
            } => self.line(&format!("  rung {index}/{of} {rung}: {title}")),
            Event::Escalated {
                from, to, reason, ..
            } => self.line(&format!("  ↑ escalating from {from} to {to}: {reason}")),
            Event::StepFinished {
                step,
                outcome,
                duration_ms,
                summary,
                ..
            } => self.step_finished(step, *outcome, Duration::from_millis(*duration_ms), summary),
            Event::UndoBegun { status, .. } => self.line(&format!(
                "undoing run {}{}: its completed actions' `undo:`, newest first",
                state.run_id,
                status
                    .map(|s| format!(" (it {})", s.as_str().replace('_', " ")))
                    .unwrap_or_default()
            )),
            Event::UndoStarted {
                step, title, items, ..
            } => {
                let which = if items.is_empty() {
                    String::new()
                } else {
                    format!(" ({} item(s))", items.len())
                };
                self.line(&format!("↶ undo {step}: {title}{which}"));
            }
            Event::UndoFinished {
                step,
                outcome,
                duration_ms,
                summary,
            } => self.step_finished(
                &format!("undo {step}"),
                *outcome,
                Duration::from_millis(*duration_ms),
                summary,
            ),
            Event::UndoSkipped { step, reason } => {
                self.line(&format!("↷ undo {step} skipped: {reason}"));
            }
            Event::RunFinished {
                status,
                duration_ms,
                reason,
            } => {
                let word = status.as_str().replace('_', " ");
                let text = format!(
                    "run {} {word} in {}{}",
                    state.run_id,
                    human(Duration::from_millis(*duration_ms)),
                    reason
                        .as_ref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                );
                if matches!(status, RunStatus::Failed | RunStatus::Aborted) {
                    self.painted(Paint::Failure, &text);
                } else {
                    self.line(&text);
                }
            }
            _ => {}
        }
    }

    fn progress(&self, message: &Progress) {
        match message {
            Progress::Notice(n) => self.notice(n),
            Progress::Bar { id, update } => self.bar(*id, update),
        }
    }

    fn draws_bars(&self) -> bool {
        self.multi.is_some()
    }
}

impl Printer {
    fn notice(&self, notice: &Notice) {
        match notice {
            Notice::Plan { request, header } => self.plan(request, header),
            Notice::ApprovedEarlier { by } => {
                self.line(&format!("  approved earlier by {by} (same plan)"));
            }
            Notice::StaleApproval { by, then, now } => self.line(&format!(
                "  {by} approved a different plan (digest {} then, {} now): asking again",
                then.chars().take(12).collect::<String>(),
                now.chars().take(12).collect::<String>(),
            )),
            Notice::ExpiredApproval { by, at } => self.line(&format!(
                "  {by}'s approval of {} has expired (the gate's `expires:`): it no longer counts",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )),
            Notice::AwaitingApprovals { have, needed, how } => self.line(&format!(
                "  {} of {needed} approvals ({}); waiting for another person: {how}",
                have.len(),
                if have.is_empty() {
                    "none yet".to_string()
                } else {
                    have.join(", ")
                }
            )),
            Notice::OverLimit { message } => self.line(&format!("  ⚠ {message}")),
            Notice::SamePerson { by } => self.line(&format!(
                "  {by} has already approved this plan; the same person counts once"
            )),
            Notice::DecidedElsewhere { by, yours } => self.line(&format!(
                "  this gate was already decided by {by} from another terminal (runbook approve); the answer of {yours} here was not recorded"
            )),
            Notice::PromptClosed { by } => self.line(&format!(
                "  decided by {by} from another terminal (runbook approve): the question above is closed; what you type next answers the next question"
            )),
            Notice::WouldVerify { title } => self.line(&format!("  would verify: {title}")),
            Notice::WouldAsk { instruction } => {
                self.line(&format!("  would ask: {instruction}"));
            }
            Notice::WouldAskPerson { instruction } => {
                self.line(&format!("  would ask a person: {instruction}"));
            }
            Notice::WouldAskRung {
                rung,
                title,
                instruction,
            } => self.line(&format!(
                "  would ask a person ({rung}: {title}):\n{}",
                indent(instruction)
            )),
            Notice::CannotPlan { rung, error } => {
                self.line(&format!("  {rung}: cannot plan: {error}"));
            }
            Notice::UnknownOutcomes { step, count } => self.line(&format!(
                "? {step}: {count} operation(s) have an unknown outcome (the run stopped mid-action)"
            )),
            Notice::NoVerificationToTell => self.line(
                "  no verification can tell whether they happened: the action goes through its gate again",
            ),
            Notice::Reverifying => self.line("  re-verifying before anything is retried"),
            Notice::ReverifyHolds => self.line("  the verification holds: nothing is run again"),
            Notice::ReverifyFails { detail } => self.line(&format!(
                "  the verification does not hold ({detail}): retrying"
            )),
            Notice::Verifying { title, within } => {
                self.line(&format!("  verifying: {title} (within {})", human(*within)));
            }
            Notice::RungResumed {
                index,
                of,
                rung,
                title,
            } => self.line(&format!("  rung {index}/{of} {rung}: {title}")),
            Notice::RungErrors { rung, errors } => {
                self.line(&format!("  {rung}: {errors} (verifying anyway)"));
            }
        }
    }

    fn bar(&self, id: BarId, update: &BarUpdate) {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        match update {
            BarUpdate::Start(kind) => {
                let bar = match kind {
                    BarKind::Spinner { message } => self.spinner(message.clone()),
                    BarKind::Items { total } => self.progress_bar(*total, String::new()),
                    BarKind::Countdown { within, message } => {
                        self.countdown(*within, message.clone())
                    }
                };
                if let Some(b) = bar {
                    bars.insert(id, b);
                }
            }
            BarUpdate::Finish => {
                if let Some(b) = bars.remove(&id) {
                    b.finish_and_clear();
                }
            }
            BarUpdate::Position(pos) => {
                if let Some(b) = bars.get(&id) {
                    b.set_position(*pos);
                }
            }
            BarUpdate::Inc => {
                if let Some(b) = bars.get(&id) {
                    b.inc(1);
                }
            }
            BarUpdate::Message(m) => {
                if let Some(b) = bars.get(&id) {
                    b.set_message(m.clone());
                }
            }
        }
    }
}

/// How an approval came, for the console.
fn source_word(s: ApprovalSource) -> &'static str {
    match s {
        ApprovalSource::Prompt => "at the prompt",
        ApprovalSource::Yes => "--yes",
        ApprovalSource::Flag => "--approve",
        ApprovalSource::Unattended => "unattended",
        ApprovalSource::Automatic => "automatic",
        ApprovalSource::Remote => "runbook approve",
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The outcomes a person must look at.
fn failure(o: Outcome) -> bool {
    matches!(o, Outcome::Failed | Outcome::TimedOut | Outcome::Aborted)
}

/// An operation that cannot be taken back: a forced delete (`--force`, or a grace
/// period of 0, which skips the kubelet's confirmation that the pod is gone).
fn irreversible(op: &PlannedOp) -> bool {
    op.op.get("force").and_then(serde_json::Value::as_bool) == Some(true)
        || op.display.contains("--force")
        || op.display.contains("--grace-period=0")
}

fn outcome_words(o: Outcome) -> (&'static str, &'static str) {
    match o {
        Outcome::Ok => ("✓", "ok"),
        Outcome::Failed => ("✗", "failed"),
        Outcome::Skipped => ("↷", "skipped"),
        Outcome::NotApplicable => ("∅", "not applicable"),
        Outcome::Unknown => ("?", "outcome unknown"),
        Outcome::TimedOut => ("✗", "timed out"),
        Outcome::Aborted => ("■", "aborted"),
    }
}

/// `850ms`, `3.2s`, `4m05s`.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// Item indexes as `#1, #3`.
fn item_list(items: &[usize]) -> String {
    items
        .iter()
        .map(|i| format!("#{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
