//! Time, behind a trait: `runbook demo` and `runbook test` drive a simulated cluster
//! whose clock the engine must follow, so the engine never reads the wall clock or
//! sleeps on its own. A leaf module (it imports nothing from the crate): `expr`,
//! `providers`, `engine`, `lab` and `suite` all read time through it.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

/// Every engine wait and every journal timestamp goes through this.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
    fn sleep(&self, d: std::time::Duration) -> BoxFuture<'_, ()>;
}

/// The wall clock and tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep(&self, d: std::time::Duration) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}
