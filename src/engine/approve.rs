//! Who answers gates and manual steps: a person at the terminal ([`PromptApprover`]),
//! the command line ([`FlagApprover`]: `--yes`, `--approve ID`, otherwise pause), or
//! nobody ([`AutoApprover`], for `runbook demo` and `runbook test`).

use std::collections::HashSet;
use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::console::Printer;
use crate::journal::event::{ApprovalSource, PlannedOp};

/// The plan shown at a gate.
#[derive(Debug, Clone)]
pub struct GateRequest {
    pub step: String,
    /// The escalation rung, when the gate is for one.
    pub rung: Option<String>,
    pub title: String,
    /// Every resolved operation, `for_each` expanded.
    pub ops: Vec<PlannedOp>,
    /// sha256 of the canonical JSON of `ops`: an approval is bound to exactly this.
    pub digest: String,
    /// `gate: explicit`: only an approval that names the step (or rung) counts;
    /// `--yes` and automatic approvers do not.
    pub explicit: bool,
    /// The cluster the plan's kube operations act on (`context X, server Y, cluster
    /// uid Z`), when it has any and the run knows its cluster; the digest covers it.
    pub target: Option<String>,
    /// The step's `preview:` result, as shown; the digest covers it.
    pub preview: Option<String>,
}

/// A manual step or rung waiting for a person.
#[derive(Debug, Clone)]
pub struct ManualRequest {
    pub step: String,
    pub rung: Option<String>,
    pub title: String,
    /// The rendered instruction.
    pub instruction: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateAnswer {
    Approve {
        by: String,
        source: ApprovalSource,
    },
    /// Do not run this action (or rung) and go on.
    Skip {
        by: String,
        source: ApprovalSource,
    },
    /// `N`: do not run it; the run ends as aborted.
    Decline {
        by: String,
    },
    Abort {
        by: String,
    },
    /// Nobody can answer now; the run pauses and `runbook resume` continues it.
    Pause {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManualAnswer {
    Done { by: String, source: ApprovalSource },
    Failed { by: String },
    Skip { by: String },
    Pause { reason: String },
}

/// Answers gates and manual steps.
pub trait Approver: Send + Sync {
    fn gate<'a>(&'a self, req: &'a GateRequest) -> BoxFuture<'a, GateAnswer>;
    fn manual<'a>(&'a self, req: &'a ManualRequest) -> BoxFuture<'a, ManualAnswer>;

    /// How long a gate this approver cannot answer waits for decisions from other
    /// processes (`runbook approve`, a web page) instead of pausing the run; `None`:
    /// it pauses. `Duration::MAX` waits until someone answers or the run is stopped.
    fn wait_limit(&self) -> Option<Duration> {
        None
    }

    /// A person is at this process (a terminal): a quorum gate they approved waits
    /// for the others instead of pausing.
    fn present(&self) -> bool {
        false
    }
}

/// Approves every gate and confirms every manual step, journaled with source
/// `automatic`. For the lab (`runbook demo`, `runbook test`) only.
/// A `gate: explicit` action is approved only when named in `explicit`; otherwise
/// the run pauses there, as it would without a person.
#[derive(Debug, Clone)]
pub struct AutoApprover {
    pub by: String,
    /// Steps (or rungs) with `gate: explicit` this approver may approve.
    pub explicit: HashSet<String>,
    /// Manual steps (or rungs) answered "not done" instead of confirmed.
    pub not_done: HashSet<String>,
    /// As `--wait-for-approval=D`: a gate it does not approve waits this long (on
    /// the run's clock) for a decision from another process, then pauses.
    pub wait: Option<Duration>,
}

impl AutoApprover {
    pub fn new(by: impl Into<String>) -> AutoApprover {
        AutoApprover {
            by: by.into(),
            explicit: HashSet::new(),
            not_done: HashSet::new(),
            wait: None,
        }
    }

    /// Wait up to `limit` at a gate it does not approve (`--wait-for-approval`).
    pub fn with_wait(mut self, limit: Option<Duration>) -> AutoApprover {
        self.wait = limit;
        self
    }

    /// Also approve these `gate: explicit` steps (a test that accepts their harm).
    pub fn with_explicit(mut self, ids: impl IntoIterator<Item = String>) -> AutoApprover {
        self.explicit.extend(ids);
        self
    }

    /// Answer these manual steps or rungs "not done" (a test of what a runbook does
    /// when a person cannot confirm, e.g. that a node is powered off).
    pub fn with_not_done(mut self, ids: impl IntoIterator<Item = String>) -> AutoApprover {
        self.not_done.extend(ids);
        self
    }
}

impl Approver for AutoApprover {
    fn wait_limit(&self) -> Option<Duration> {
        self.wait
    }

    fn gate<'a>(&'a self, req: &'a GateRequest) -> BoxFuture<'a, GateAnswer> {
        Box::pin(async move {
            let named = self.explicit.contains(&req.step)
                || req.rung.as_ref().is_some_and(|r| self.explicit.contains(r));
            if req.explicit && !named {
                return GateAnswer::Pause {
                    reason: explicit_reason(req),
                };
            }
            GateAnswer::Approve {
                by: self.by.clone(),
                source: ApprovalSource::Automatic,
            }
        })
    }

    fn manual<'a>(&'a self, req: &'a ManualRequest) -> BoxFuture<'a, ManualAnswer> {
        Box::pin(async move {
            let named = self.not_done.contains(&req.step)
                || req.rung.as_ref().is_some_and(|r| self.not_done.contains(r));
            if named {
                return ManualAnswer::Failed {
                    by: self.by.clone(),
                };
            }
            ManualAnswer::Done {
                by: self.by.clone(),
                source: ApprovalSource::Automatic,
            }
        })
    }
}

/// Approvals given on the command line; anything else pauses the run.
#[derive(Debug, Clone, Default)]
pub struct FlagApprover {
    /// `--yes`: approve every gate (manual steps still need `--approve ID`: nobody
    /// has done them).
    pub yes: bool,
    /// `--approve ID`: approve this step's (or rung's) gate, or confirm this manual
    /// step as done.
    pub approve: HashSet<String>,
    pub operator: String,
    /// `--wait-for-approval[=TIMEOUT]`: a gate the flags do not answer waits this
    /// long for a decision from another process instead of pausing the run.
    pub wait: Option<Duration>,
}

impl FlagApprover {
    pub fn new(yes: bool, approve: &[String], operator: impl Into<String>) -> FlagApprover {
        FlagApprover {
            yes,
            approve: approve.iter().cloned().collect(),
            operator: operator.into(),
            wait: None,
        }
    }

    /// Wait up to `limit` (`None`: until answered) for decisions from other
    /// processes at a gate the flags do not answer.
    pub fn waiting(mut self, limit: Option<Duration>) -> FlagApprover {
        self.wait = Some(limit.unwrap_or(Duration::MAX));
        self
    }

    /// The approver of a run started by a server (`runbook serve`): nobody at a
    /// terminal, no flags; every gate waits up to `limit` (`None`: until answered)
    /// for a decision submitted with [`super::external::submit_decision`].
    pub fn remote(operator: impl Into<String>, limit: Option<Duration>) -> FlagApprover {
        FlagApprover::new(false, &[], operator).waiting(limit)
    }

    fn names(&self, step: &str, rung: Option<&str>) -> bool {
        // An undo's gate (rung `STEP.undo`) is named only as `STEP.undo`: approving
        // an action (`--approve cordon`) never approves taking it back.
        if rung.is_some_and(|r| r.strip_suffix(".undo") == Some(step)) {
            return rung.is_some_and(|r| self.approve.contains(r));
        }
        self.approve.contains(step) || rung.is_some_and(|r| self.approve.contains(r))
    }

    /// The answer the flags give, if they give one.
    pub fn gate_answer(&self, req: &GateRequest) -> Option<GateAnswer> {
        if self.names(&req.step, req.rung.as_deref()) {
            Some(GateAnswer::Approve {
                by: self.operator.clone(),
                source: ApprovalSource::Flag,
            })
        } else if self.yes && !req.explicit {
            Some(GateAnswer::Approve {
                by: self.operator.clone(),
                source: ApprovalSource::Yes,
            })
        } else {
            None
        }
    }

    pub fn manual_answer(&self, req: &ManualRequest) -> Option<ManualAnswer> {
        self.names(&req.step, req.rung.as_deref())
            .then(|| ManualAnswer::Done {
                by: self.operator.clone(),
                source: ApprovalSource::Flag,
            })
    }
}

/// Why an explicit gate waits, and how to answer it.
fn explicit_reason(req: &GateRequest) -> String {
    let id = req.rung.as_deref().unwrap_or(&req.step);
    format!(
        "waiting for an explicit approval: `gate: explicit` needs `--approve {id}` (--yes does not approve it)"
    )
}

impl Approver for FlagApprover {
    fn wait_limit(&self) -> Option<Duration> {
        self.wait
    }

    fn gate<'a>(&'a self, req: &'a GateRequest) -> BoxFuture<'a, GateAnswer> {
        Box::pin(async move {
            self.gate_answer(req).unwrap_or_else(|| GateAnswer::Pause {
                reason: if req.explicit {
                    explicit_reason(req)
                } else {
                    "waiting for approval".into()
                },
            })
        })
    }

    fn manual<'a>(&'a self, req: &'a ManualRequest) -> BoxFuture<'a, ManualAnswer> {
        Box::pin(async move {
            self.manual_answer(req)
                .unwrap_or_else(|| ManualAnswer::Pause {
                    reason: "waiting for a person to confirm a manual step".into(),
                })
        })
    }
}

/// Asks at the terminal (the plan has already been printed), after the flags had
/// their say: `--yes` and `--approve ID` answer without asking.
pub struct PromptApprover {
    pub flags: FlagApprover,
    pub printer: Arc<Printer>,
    /// The read of the terminal's next line, when a question stopped waiting for it
    /// (another process decided the gate, Ctrl-C): the next question takes it over,
    /// so the line the operator types next is not swallowed by a question already
    /// closed.
    pending: tokio::sync::Mutex<Option<tokio::task::JoinHandle<Option<String>>>>,
}

impl PromptApprover {
    pub fn new(flags: FlagApprover, printer: Arc<Printer>) -> PromptApprover {
        PromptApprover {
            flags,
            printer,
            pending: tokio::sync::Mutex::new(None),
        }
    }

    async fn ask(&self, question: String) -> Option<String> {
        // Held while waiting: dropped with this future, the read stays in the slot.
        let mut slot = self.pending.lock().await;
        // The bars are hidden while the question is written, not while the line is
        // awaited: the console keeps printing meanwhile (a decision from another
        // terminal is shown at once).
        self.printer.suspend(|| eprint!("{question}"));
        // A read a closed question started still waits for the next line: take it.
        let read = slot.get_or_insert_with(|| {
            // Reading stdin blocks; a Ctrl-C meanwhile is handled by the engine,
            // which stops waiting for this future.
            tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                match std::io::stdin().lock().read_line(&mut line) {
                    Ok(0) | Err(_) => None,
                    Ok(_) => Some(line.trim().to_lowercase()),
                }
            })
        });
        let line = read.await.ok().flatten();
        *slot = None;
        line
    }
}

impl Approver for PromptApprover {
    fn wait_limit(&self) -> Option<Duration> {
        self.flags.wait
    }

    fn present(&self) -> bool {
        true
    }

    fn gate<'a>(&'a self, req: &'a GateRequest) -> BoxFuture<'a, GateAnswer> {
        Box::pin(async move {
            if let Some(a) = self.flags.gate_answer(req) {
                return a;
            }
            let by = self.flags.operator.clone();
            let id = req.rung.as_deref().unwrap_or(&req.step).to_lowercase();
            let question = if req.explicit {
                format!(
                    "This step has `gate: explicit`. Type `{id}` to approve it [{id}/N/skip/abort] "
                )
            } else {
                "Approve? [y/N/skip/abort] ".to_string()
            };
            loop {
                let Some(answer) = self.ask(question.clone()).await else {
                    return GateAnswer::Pause {
                        reason: "waiting for approval (no answer at the terminal)".into(),
                    };
                };
                return match answer.as_str() {
                    a if a == id && req.explicit => GateAnswer::Approve {
                        by,
                        source: ApprovalSource::Prompt,
                    },
                    "y" | "yes" if req.explicit => {
                        eprintln!("this step needs its id typed out: `{id}`");
                        continue;
                    }
                    "y" | "yes" => GateAnswer::Approve {
                        by,
                        source: ApprovalSource::Prompt,
                    },
                    "" | "n" | "no" => GateAnswer::Decline { by },
                    "s" | "skip" => GateAnswer::Skip {
                        by,
                        source: ApprovalSource::Prompt,
                    },
                    "a" | "abort" => GateAnswer::Abort { by },
                    _ => {
                        eprintln!("answer y, n, skip or abort");
                        continue;
                    }
                };
            }
        })
    }

    fn manual<'a>(&'a self, req: &'a ManualRequest) -> BoxFuture<'a, ManualAnswer> {
        Box::pin(async move {
            if let Some(a) = self.flags.manual_answer(req) {
                return a;
            }
            let by = self.flags.operator.clone();
            loop {
                let Some(answer) = self.ask("Done? [y(es)/f(ailed)/skip] ".into()).await else {
                    return ManualAnswer::Pause {
                        reason: "waiting for a person to confirm a manual step".into(),
                    };
                };
                return match answer.as_str() {
                    "y" | "yes" | "d" | "done" => ManualAnswer::Done {
                        by,
                        source: ApprovalSource::Prompt,
                    },
                    "f" | "failed" | "n" | "no" => ManualAnswer::Failed { by },
                    "s" | "skip" => ManualAnswer::Skip { by },
                    _ => {
                        eprintln!("answer y (done), f (failed) or skip");
                        continue;
                    }
                };
            }
        })
    }
}
