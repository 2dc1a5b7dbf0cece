//! The lab's bounds (docs/limits.md, "Lab limits"): a hostile or runaway client must
//! not be able to grow the lab's memory without end. Each bound copies what the real
//! API server does where it has one, so a runbook tested on the lab meets the same
//! refusals on a real cluster.

/// Largest request body accepted: 3 MiB, the API server's default
/// (`MaxRequestBodyBytes`, k8s.io/apiserver pkg/server/config.go: `3 * 1024 * 1024`).
/// A larger one is answered 413 `RequestEntityTooLarge` with a Status body.
pub const MAX_BODY: usize = 3 << 20;

/// Watch events kept for watches that resume from a resourceVersion. Older ones are
/// dropped and such a watch gets 410 Gone "too old resource version", as from the
/// API server's watch cache.
pub const HISTORY_EVENTS: usize = 4096;

/// Bytes of objects (estimated, see [`approx_size`]) the watch history may hold;
/// past it the oldest events are dropped as for [`HISTORY_EVENTS`].
pub const HISTORY_BYTES: usize = 64 << 20;

/// Lines buffered for one watch connection before the client reads them. Watches
/// read their events from the bounded history, so a watch that falls behind it is
/// closed with a 410 Expired ERROR event (clients re-list and re-watch), as the
/// API server does.
pub const WATCH_BUFFER: usize = 16;

/// How long a watch may wait for its client to make room for one more line before
/// it is closed: a stalled client must not pin its events (and the initial list
/// it was sent) in memory.
pub const SLOW_WATCHER: std::time::Duration = std::time::Duration::from_secs(10);

/// Requests kept in the request log (`GET /lab/v1/requests`): between this many and
/// twice this many; older ones are dropped.
pub const REQUEST_LOG: usize = 10_000;

/// Bytes of each request URI kept in the request log.
pub const LOGGED_URI: usize = 4096;

/// Fastest cluster time may run (`--speed`): a million times wall time, 11.6 days
/// per second, so a lab left running for a year of wall time stays within the
/// dates chrono can represent.
pub const MAX_SPEED: f64 = 1e6;

/// A cheap estimate of the memory a JSON value holds: the length of its strings and
/// keys plus a word per node. Used to bound the watch history without serialising.
pub fn approx_size(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    match v {
        Value::String(s) => 8 + s.len(),
        Value::Array(a) => 8 + a.iter().map(approx_size).sum::<usize>(),
        Value::Object(m) => {
            8 + m
                .iter()
                .map(|(k, x)| 8 + k.len() + approx_size(x))
                .sum::<usize>()
        }
        _ => 8,
    }
}
