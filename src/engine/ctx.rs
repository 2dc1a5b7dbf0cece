//! The small context every step handler gets: the world it may act on (providers,
//! the approver, the clock, cancellation), the event stream (journal, run state,
//! reporters) and the run's variables.
//!
//! A handler never owns the run: what earlier processes did comes to it as the run
//! state's [`StepState`](crate::journal::state::StepState) of its step (on resume),
//! and what it does leaves as events through [`Events::emit`]. The run loop
//! ([`super::run`]) owns what only it needs (which steps this process started).

use std::sync::Arc;

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::events::Events;
use super::{Approver, Clock, EngineOpts};
use crate::providers::Providers;
use crate::runbook::model::Runbook;

/// What a step handler works with.
pub(crate) struct Ctx<'r> {
    pub rb: &'r Runbook,
    pub providers: Providers,
    pub approver: Arc<dyn Approver>,
    pub clock: Arc<dyn Clock>,
    /// The event stream: journal, run state, reporters.
    pub events: Events,
    pub opts: EngineOpts,
    pub cancel: CancellationToken,
    pub run_id: String,
    /// `params`, saved values and `steps`.
    pub vars: Map<String, Value>,
}
