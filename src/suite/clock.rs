//! The engine's clock, driven by the lab's virtual time.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use crate::clock::Clock;
use crate::lab::Lab;

/// A [`Clock`] whose `sleep` advances the lab's virtual clock (and lets its
/// controllers react) instead of waiting, and whose `now` is the cluster's time.
#[derive(Clone)]
pub struct LabClock {
    lab: Lab,
}

impl LabClock {
    /// The lab's speed is set to 0 so only the engine's sleeps move its time.
    pub fn new(lab: Lab) -> LabClock {
        lab.set_speed(0.0);
        LabClock { lab }
    }
}

impl Clock for LabClock {
    fn now(&self) -> DateTime<Utc> {
        self.lab.now()
    }

    fn sleep(&self, d: std::time::Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.lab.advance(d);
            // Let requests in flight (other for_each items) observe the new time.
            tokio::task::yield_now().await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sleeping_moves_the_labs_time_not_the_wall_clock() {
        let lab = Lab::seed();
        let clock = LabClock::new(lab.clone());
        let before = clock.now();
        let wall = std::time::Instant::now();
        clock.sleep(std::time::Duration::from_secs(6 * 60)).await;
        assert_eq!((clock.now() - before).num_seconds(), 360);
        assert!(wall.elapsed() < std::time::Duration::from_secs(60));
    }
}
