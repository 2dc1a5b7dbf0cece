//! The one object that writes a run's console output (stderr): a line when a step
//! starts and one when it ends, plans at gates, and — on a terminal without `--quiet`
//! — a spinner per running step, a progress bar per `for_each` and a countdown while
//! a verification polls. Whether to draw bars is decided from values passed in, so
//! tests capture the plain lines.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::approve::GateRequest;
use crate::journal::event::Outcome;

/// What the CLI (or `demo`/`test`) decided about the console.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrinterOpts {
    /// stderr is a terminal.
    pub tty: bool,
    /// `--quiet`: plain lines only.
    pub quiet: bool,
}

type Sink = Arc<Mutex<Box<dyn Write + Send>>>;

/// Console output of a run.
pub struct Printer {
    multi: Option<MultiProgress>,
    sink: Sink,
}

impl std::fmt::Debug for Printer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Printer")
            .field("bars", &self.multi.is_some())
            .finish()
    }
}

/// A spinner, progress bar or countdown; a no-op without a terminal.
#[derive(Debug, Clone, Default)]
pub struct Bar(Option<ProgressBar>);

impl Bar {
    pub fn inc(&self) {
        if let Some(b) = &self.0 {
            b.inc(1);
        }
    }

    pub fn set_message(&self, msg: String) {
        if let Some(b) = &self.0 {
            b.set_message(msg);
        }
    }

    pub fn set_position(&self, pos: u64) {
        if let Some(b) = &self.0 {
            b.set_position(pos);
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

impl Printer {
    /// Print to stderr; bars only on a terminal without `--quiet`.
    pub fn stderr(opts: PrinterOpts) -> Printer {
        let multi = (opts.tty && !opts.quiet)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Printer {
            multi,
            sink: Arc::new(Mutex::new(Box::new(std::io::stderr()))),
        }
    }

    /// Plain lines into a buffer (tests, `runbook test`).
    pub fn capture() -> (Printer, Arc<Mutex<Vec<u8>>>) {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let printer = Printer {
            multi: None,
            sink: Arc::new(Mutex::new(Box::new(SharedBuf(Arc::clone(&buf))))),
        };
        (printer, buf)
    }

    /// Print nothing at all.
    pub fn silent() -> Printer {
        Printer {
            multi: None,
            sink: Arc::new(Mutex::new(Box::new(std::io::sink()))),
        }
    }

    /// One line of output, above any bars.
    pub fn line(&self, text: &str) {
        match &self.multi {
            Some(m) => {
                for l in text.lines() {
                    let _ = m.println(l);
                }
            }
            None => {
                let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
                let _ = writeln!(sink, "{text}");
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

    pub fn step_started(&self, id: &str, kind: &str, title: &str) {
        self.line(&format!("▶ {id} ({kind}) {title}"));
    }

    pub fn step_finished(&self, id: &str, outcome: Outcome, took: Duration, summary: &str) {
        let (mark, word) = outcome_words(outcome);
        let summary = if summary.is_empty() {
            String::new()
        } else {
            format!(" — {summary}")
        };
        self.line(&format!("{mark} {id} {word} in {}{summary}", human(took)));
    }

    /// The plan of an action: every resolved operation, one per line.
    pub fn plan(&self, req: &GateRequest, header: &str) {
        let target = match &req.rung {
            Some(r) => format!("{} / {r}", req.step),
            None => req.step.clone(),
        };
        let mut text = format!("  {header} {target}: {}\n", req.title);
        for op in &req.ops {
            let item = op.scope.item.map(|i| format!("[{i}] ")).unwrap_or_default();
            let verb = if op.mutating { "will run" } else { "reads" };
            text.push_str(&format!(
                "    {item}{} {verb}: {}\n",
                op.provider, op.display
            ));
        }
        text.push_str(&format!("    plan digest {}", short(&req.digest)));
        self.line(&text);
    }

    pub fn spinner(&self, msg: String) -> Bar {
        let Some(m) = &self.multi else {
            return Bar(None);
        };
        let b = m.add(ProgressBar::new_spinner());
        b.set_style(
            ProgressStyle::with_template("  {spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        b.set_message(msg);
        b.enable_steady_tick(Duration::from_millis(100));
        Bar(Some(b))
    }

    /// done/total for a `for_each`; the message carries the failures.
    pub fn progress(&self, total: u64, msg: String) -> Bar {
        let Some(m) = &self.multi else {
            return Bar(None);
        };
        let b = m.add(ProgressBar::new(total));
        b.set_style(
            ProgressStyle::with_template("  [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b.set_message(msg);
        Bar(Some(b))
    }

    /// Seconds left of a verification's `within`.
    pub fn countdown(&self, within: Duration, msg: String) -> Bar {
        let Some(m) = &self.multi else {
            return Bar(None);
        };
        let b = m.add(ProgressBar::new(within.as_secs().max(1)));
        b.set_style(
            ProgressStyle::with_template("  {spinner} {msg} ({pos}s of {len}s)")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        b.set_message(msg);
        b.enable_steady_tick(Duration::from_millis(100));
        Bar(Some(b))
    }
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
