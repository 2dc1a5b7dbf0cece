//! The lab's Prometheus history: every metric sampled on the lab's virtual clock
//! at a fixed scrape interval, kept for a bounded retention, so `query_range`,
//! range selectors (`rate(x[5m])`) and `detects:` look-backs see what the metric
//! was, not only what it is.
//!
//! Samples sit on a grid (multiples of [`SCRAPE_INTERVAL_MS`] since the Unix epoch).
//! The simulated state only changes when the lab does something (a request, a
//! controller tick, [`super::Lab::advance`], a node lost or recovered), so the lab
//! scrapes, before each of those, every grid point since the last scrape with the
//! state as it still is: each point holds the value the metric had at that time.
//! Before the scenario's start the state is not simulated; a metric's `history:`
//! (see docs/lab.md) gives its values there, step-wise, and a metric without one
//! has no samples before the start.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::state::State;

/// How often the lab's Prometheus "scrapes" (Prometheus' default is 1m; 15s is
/// the common setting, and what the seed's 15s verification polls expect).
pub const SCRAPE_INTERVAL_MS: i64 = 15_000;
/// How long samples are kept (Prometheus' default is 15d; a lab incident spans hours).
pub const RETENTION_MS: i64 = 24 * 3600 * 1000;
/// At most this many samples per series: the retention at the scrape interval.
pub const MAX_SAMPLES: usize = (RETENTION_MS / SCRAPE_INTERVAL_MS) as usize + 1;

/// One series: its labels (with `__name__`) and its samples, oldest first, as
/// (Unix milliseconds, value).
#[derive(Debug, Clone)]
pub struct Series {
    pub labels: Map<String, Value>,
    pub samples: VecDeque<(i64, f64)>,
}

/// Every metric's series, in the scenario's order (one per metric definition),
/// then the series the alerting rules write (`ALERTS`, `ALERTS_FOR_STATE`).
#[derive(Debug, Clone, Default)]
pub struct History {
    pub series: Vec<Series>,
    /// The last grid point scraped (Unix ms).
    last: Option<i64>,
    /// The scenario's alerting rules, evaluated at every grid point.
    rules: super::alerting::Rules,
}

fn grid_at_or_before(t_ms: i64) -> i64 {
    t_ms.div_euclid(SCRAPE_INTERVAL_MS) * SCRAPE_INTERVAL_MS
}

impl History {
    /// A history holding the scenario's declared past: for metric `i`,
    /// `past[i]` is its (time, value) steps before `start`, in order; each value
    /// holds from its time to the next step (or to `start`). Points older than the
    /// retention before `start` are not kept.
    pub fn new(
        st: &State,
        start: DateTime<Utc>,
        past: &[Vec<(DateTime<Utc>, f64)>],
        rules: Vec<super::alerting::AlertRule>,
    ) -> History {
        let start_ms = start.timestamp_millis();
        let oldest = start_ms - RETENTION_MS;
        let series = super::metrics::evaluate(st)
            .into_iter()
            .enumerate()
            .map(|(i, (_, labels, _))| {
                let mut samples = VecDeque::new();
                let steps = past.get(i).map(Vec::as_slice).unwrap_or_default();
                if let Some(first) = steps.first() {
                    let mut t = grid_at_or_before(first.0.timestamp_millis());
                    if t < first.0.timestamp_millis() {
                        t += SCRAPE_INTERVAL_MS;
                    }
                    t = t.max(grid_at_or_before(oldest) + SCRAPE_INTERVAL_MS);
                    while t < start_ms {
                        let v = steps
                            .iter()
                            .rev()
                            .find(|(at, _)| at.timestamp_millis() <= t)
                            .map(|(_, v)| *v);
                        if let Some(v) = v {
                            samples.push_back((t, v));
                        }
                        t += SCRAPE_INTERVAL_MS;
                    }
                }
                Series { labels, samples }
            })
            .collect();
        let mut h = History {
            series,
            // The first scrape is at the start's grid point: at or just before the
            // start, so a query at the start (a stopped clock between two points)
            // has a sample to read. Where the declared past already has that point,
            // the past keeps it.
            last: Some(grid_at_or_before(start_ms) - SCRAPE_INTERVAL_MS),
            rules: super::alerting::Rules::new(rules),
        };
        // The rules ran over the declared past as they would have in Prometheus.
        if let Some(first) = h
            .series
            .iter()
            .filter_map(|s| s.samples.front().map(|p| p.0))
            .min()
            && !h.rules.is_empty()
        {
            let mut t = first;
            while t < grid_at_or_before(start_ms) {
                h.rules.eval(&mut h.series, t);
                t += SCRAPE_INTERVAL_MS;
            }
        }
        h
    }

    /// Scrape every grid point after the last one up to `st.now()` with the
    /// current state. Costs a comparison when no point is due.
    pub fn scrape(&mut self, st: &State) {
        let now = grid_at_or_before(st.now().timestamp_millis());
        let from = match self.last {
            Some(last) if last >= now => return,
            Some(last) => last + SCRAPE_INTERVAL_MS,
            None => now,
        };
        // A jump of days (Lab::advance) fills only the retention's worth of points.
        let from = from.max(now - (MAX_SAMPLES as i64 - 1) * SCRAPE_INTERVAL_MS);
        let values = super::metrics::evaluate(st);
        for (i, (_, labels, v)) in values.into_iter().enumerate() {
            if self.series.len() <= i {
                self.series.push(Series {
                    labels,
                    samples: VecDeque::new(),
                });
            }
            let s = &mut self.series[i];
            let mut t = from;
            if let Some(&(newest, _)) = s.samples.back() {
                t = t.max(newest + SCRAPE_INTERVAL_MS);
            }
            while t <= now {
                s.samples.push_back((t, v));
                t += SCRAPE_INTERVAL_MS;
            }
            let oldest = now - RETENTION_MS;
            while s.samples.len() > MAX_SAMPLES || s.samples.front().is_some_and(|p| p.0 < oldest) {
                s.samples.pop_front();
            }
        }
        self.last = Some(now);
        if !self.rules.is_empty() {
            let mut t = match self.rules.last_eval() {
                Some(e) => from.max(e + SCRAPE_INTERVAL_MS),
                None => from,
            };
            while t <= now {
                self.rules.eval(&mut self.series, t);
                t += SCRAPE_INTERVAL_MS;
            }
            let oldest = now - RETENTION_MS;
            let idx: Vec<usize> = self.rules.series_indexes().collect();
            for i in idx {
                let s = &mut self.series[i].samples;
                while s.front().is_some_and(|p| p.0 < oldest) {
                    s.pop_front();
                }
            }
        }
    }

    /// With the clock exactly on a scrape point (a stopped clock, as under `runbook
    /// demo` and `runbook test`), that point is the state at the end of that instant:
    /// re-read it, so what the runbook just did at that instant shows, as it did
    /// before the lab had a history. Called for queries only.
    pub fn refresh(&mut self, st: &State) {
        let now = st.now().timestamp_millis();
        if now != grid_at_or_before(now) || self.last != Some(now) {
            return;
        }
        for (i, (_, _, v)) in super::metrics::evaluate(st).into_iter().enumerate() {
            if let Some(p) = self.series.get_mut(i).and_then(|s| s.samples.back_mut())
                && p.0 == now
            {
                p.1 = v;
            }
        }
        // The rules see the re-read point too (their evaluation at `now` is redone).
        if self.rules.last_eval() == Some(now) {
            self.rules.eval(&mut self.series, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_points_are_multiples_of_the_interval_before_or_at_a_time() {
        assert_eq!(grid_at_or_before(0), 0);
        assert_eq!(grid_at_or_before(14_999), 0);
        assert_eq!(grid_at_or_before(15_000), 15_000);
        assert_eq!(grid_at_or_before(-1), -15_000);
    }
}
