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

/// A point in time as an operator writes it on the command line (`--incident-start`,
/// `runbook note --at`): RFC 3339 (`2018-03-13T01:00:00Z`); a date and time in `tz`
/// (`2018-03-13 01:00[:00]`); a time of day today in `tz` (`14:02[:00]`); or a span
/// back from `now` (`-45m`, `-2h`, `-1h30m`, `-90s`, `-1d`). `None` when it is none.
pub fn parse_when(s: &str, tz: chrono_tz::Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    use chrono::TimeZone;
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Some(span) = s.strip_prefix('-') {
        return parse_span(span)
            .and_then(|d| now.checked_sub_signed(d))
            .map(|t| chrono::SubsecRound::trunc_subsecs(t, 0));
    }
    let local = |naive: chrono::NaiveDateTime| {
        tz.from_local_datetime(&naive)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    };
    let full = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| chrono::NaiveDateTime::parse_from_str(s, f).ok());
    if let Some(naive) = full {
        return local(naive);
    }
    let time = ["%H:%M:%S", "%H:%M"]
        .iter()
        .find_map(|f| chrono::NaiveTime::parse_from_str(s, f).ok())?;
    local(now.with_timezone(&tz).date_naive().and_time(time))
}

/// `45m`, `2h`, `1h30m`, `90s`, `1d`: one or more number-unit pairs.
fn parse_span(s: &str) -> Option<chrono::Duration> {
    let mut total = chrono::Duration::zero();
    let mut digits = String::new();
    let mut any = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().ok()?;
        digits.clear();
        let d = match c {
            's' => chrono::Duration::try_seconds(n),
            'm' => chrono::Duration::try_minutes(n),
            'h' => chrono::Duration::try_hours(n),
            'd' => chrono::Duration::try_days(n),
            _ => None,
        }?;
        total = total.checked_add(&d)?;
        any = true;
    }
    (any && digits.is_empty()).then_some(total)
}

#[cfg(test)]
mod when_tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn every_written_form_gives_the_instant_it_names() {
        let utc = chrono_tz::UTC;
        let at = |s: &str| parse_when(s, utc, now()).map(|t| t.to_rfc3339());
        let want = |s: &str| Some(s.parse::<DateTime<Utc>>().unwrap().to_rfc3339());
        assert_eq!(at("2026-12-01T11:15:00Z"), want("2026-12-01T11:15:00Z"));
        assert_eq!(at("2026-12-01 11:15"), want("2026-12-01T11:15:00Z"));
        assert_eq!(at("11:15"), want("2026-12-01T11:15:00Z"));
        assert_eq!(at("-45m"), want("2026-12-01T11:15:00Z"));
        assert_eq!(at("-1h30m"), want("2026-12-01T10:30:00Z"));
        assert_eq!(
            parse_when("12:15", chrono_tz::Europe::Berlin, now()).map(|t| t.to_rfc3339()),
            want("2026-12-01T11:15:00Z")
        );
        for bad in ["", "soon", "-", "-45", "-45x", "25:00", "-m"] {
            assert_eq!(at(bad), None, "{bad:?}");
        }
    }
}
