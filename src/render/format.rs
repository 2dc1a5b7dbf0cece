//! Times and durations, formatted one fixed way so the same journal always renders
//! to the same bytes.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

/// An instant as the template sees it: in the display zone and in UTC.
///
/// Kept as the instant (to the millisecond) and the zone; the four strings a template
/// reads (`utc`, `date`, `time`, `full`) are written when it is serialized or asked
/// for. A postmortem holds several per step for the whole journal: four strings each
/// were ~200 bytes (issue 18).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    ts: DateTime<Utc>,
    tz: Tz,
}

impl Time {
    pub fn new(ts: DateTime<Utc>, tz: Tz) -> Time {
        // To the millisecond, as `utc` shows it: what compares equal as text compares
        // equal as a time.
        let ms = ts.timestamp_millis();
        let ts = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or(ts);
        Time { ts, tz }
    }

    /// The instant, to the millisecond.
    pub fn ts(&self) -> DateTime<Utc> {
        self.ts
    }

    /// RFC 3339 in UTC with milliseconds, e.g. `2018-03-13T06:28:03.120Z`.
    pub fn utc(&self) -> String {
        self.ts.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }

    /// `YYYY-MM-DD` in the display zone.
    pub fn date(&self) -> String {
        self.ts
            .with_timezone(&self.tz)
            .format("%Y-%m-%d")
            .to_string()
    }

    /// `HH:MM:SS` in the display zone.
    pub fn time(&self) -> String {
        self.ts
            .with_timezone(&self.tz)
            .format("%H:%M:%S")
            .to_string()
    }

    /// `YYYY-MM-DD HH:MM:SS ZONE` in the display zone, e.g. `2018-03-13 07:28:03 CET`.
    pub fn full(&self) -> String {
        self.ts
            .with_timezone(&self.tz)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string()
    }
}

impl Serialize for Time {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut t = s.serialize_struct("Time", 4)?;
        t.serialize_field("utc", &self.utc())?;
        t.serialize_field("date", &self.date())?;
        t.serialize_field("time", &self.time())?;
        t.serialize_field("full", &self.full())?;
        t.end()
    }
}

/// A duration as a template sees it (`350 ms`, `4.2 s`: [`duration_ms`]), kept as
/// milliseconds and written when serialized or displayed: entries, operations and
/// step rows each held one as a string per step of the journal (issue 18).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Millis(pub u64);

impl Serialize for Millis {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&duration_ms(self.0))
    }
}

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&duration_ms(self.0))
    }
}

/// A duration for people: `350 ms`, `4.2 s`, `6m 05s`, `1h 02m 05s`, `2d 3h 04m`.
pub fn duration_ms(ms: u64) -> String {
    if ms < 1_000 {
        return format!("{ms} ms");
    }
    if ms < 10_000 {
        return format!("{}.{} s", ms / 1000, (ms % 1000) / 100);
    }
    let s = ms / 1000;
    if s < 60 {
        return format!("{s} s");
    }
    let (d, h, m, sec) = (s / 86_400, (s / 3600) % 24, (s / 60) % 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h {m:02}m")
    } else if h > 0 {
        format!("{h}h {m:02}m {sec:02}s")
    } else {
        format!("{m}m {sec:02}s")
    }
}

/// The milliseconds from `a` to `b`, zero when `b` is earlier (clock skew between the
/// processes that wrote a resumed run must not produce a negative duration).
pub fn between(a: DateTime<Utc>, b: DateTime<Utc>) -> u64 {
    u64::try_from((b - a).num_milliseconds()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_ms(0), "0 ms");
        assert_eq!(duration_ms(999), "999 ms");
        assert_eq!(duration_ms(4_250), "4.2 s");
        assert_eq!(duration_ms(42_000), "42 s");
        assert_eq!(duration_ms(365_000), "6m 05s");
        assert_eq!(duration_ms(3_725_000), "1h 02m 05s");
        assert_eq!(
            duration_ms(2 * 86_400_000 + 3 * 3_600_000 + 240_000),
            "2d 3h 04m"
        );
    }

    #[test]
    fn time_is_shown_in_the_display_zone() {
        let ts: DateTime<Utc> = "2018-03-13T06:28:03.120Z".parse().unwrap();
        let t = Time::new(ts, chrono_tz::Europe::Berlin);
        assert_eq!(t.time(), "07:28:03");
        assert_eq!(t.full(), "2018-03-13 07:28:03 CET");
        assert_eq!(t.utc(), "2018-03-13T06:28:03.120Z");
    }
}
