//! The lab's virtual clock. Cluster time runs at `speed` times wall time from a
//! scenario's start, plus whatever tests add with [`Clock::advance`], so a 6-minute
//! forced-detach timer passes in milliseconds.

use std::time::Instant;

use chrono::{DateTime, Duration, SecondsFormat, Utc};

#[derive(Debug, Clone)]
pub struct Clock {
    wall0: Instant,
    virt0: DateTime<Utc>,
    speed: f64,
    advanced: Duration,
}

impl Clock {
    pub fn new(start: DateTime<Utc>, speed: f64) -> Self {
        Clock {
            wall0: Instant::now(),
            virt0: start,
            speed: if speed.is_finite() && speed >= 0.0 {
                speed
            } else {
                1.0
            },
            advanced: Duration::zero(),
        }
    }

    /// When the scenario started (t = 0 for faults).
    pub fn start(&self) -> DateTime<Utc> {
        self.virt0
    }

    pub fn now(&self) -> DateTime<Utc> {
        // Saturates (at the cap `advance` uses) instead of overflowing chrono's
        // date range: a huge `speed` set through the library must not panic.
        let cap = Duration::days(365 * 100);
        let wall = self.wall0.elapsed().as_secs_f64() * self.speed;
        let wall = Duration::microseconds((wall * 1e6).min(1e18) as i64).min(cap);
        self.virt0
            .checked_add_signed(wall + self.advanced)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Does cluster time move by itself?
    pub fn running(&self) -> bool {
        self.speed > 0.0
    }

    pub fn advance(&mut self, d: Duration) {
        // Capped so that cluster time stays representable whatever a caller passes.
        let cap = Duration::days(365 * 100);
        self.advanced = (self.advanced + d.min(cap)).min(cap * 2);
    }

    pub fn set_speed(&mut self, speed: f64) {
        // Re-anchor so time does not jump when the speed changes.
        let now = self.now();
        self.virt0 = now - self.advanced;
        self.wall0 = Instant::now();
        if speed.is_finite() && speed >= 0.0 {
            self.speed = speed;
        }
    }
}

/// RFC 3339 with seconds, as Kubernetes writes timestamps (`2018-03-13T06:28:00Z`).
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Parse a Kubernetes timestamp.
pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Parse `90s`, `6m`, `1h30m`, `2d`, `0`; plain numbers are seconds; a leading `-`
/// means "before the scenario start" (a node lost hours before the lab opens).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('-') {
        return parse_duration(rest).map(|d| -d);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s.len() > 24 {
        return Err(too_long(s));
    }
    if let Ok(n) = s.parse::<i64>() {
        return Duration::try_seconds(n).ok_or_else(|| too_long(s));
    }
    let mut total = Duration::zero();
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: expected e.g. 30s, 6m, 1h30m"))?;
        num.clear();
        let unit = if c == 'm' && chars.peek() == Some(&'s') {
            chars.next();
            Duration::try_milliseconds(n).ok_or_else(|| too_long(s))?
        } else {
            match c {
                's' => Duration::try_seconds(n).ok_or_else(|| too_long(s))?,
                'm' => Duration::try_minutes(n).ok_or_else(|| too_long(s))?,
                'h' => Duration::try_hours(n).ok_or_else(|| too_long(s))?,
                'd' => Duration::try_days(n).ok_or_else(|| too_long(s))?,
                _ => {
                    return Err(format!(
                        "invalid duration {s:?}: unknown unit {c:?} (use s, m, h, d)"
                    ));
                }
            }
        };
        total = total.checked_add(&unit).ok_or_else(|| too_long(s))?;
    }
    if !num.is_empty() {
        return Err(format!(
            "invalid duration {s:?}: number without unit (use s, m, h, d)"
        ));
    }
    Ok(total)
}

fn too_long(s: &str) -> String {
    format!("invalid duration {s:?}: too long (at most about 100 years)")
}

/// `k8s.io/apimachinery/pkg/util/duration.HumanDuration`, which kubectl's AGE column uses.
pub fn human_duration(d: Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_the_units_scenarios_use() {
        assert_eq!(parse_duration("6m").unwrap(), Duration::minutes(6));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::minutes(90));
        assert_eq!(
            parse_duration("250ms").unwrap(),
            Duration::milliseconds(250)
        );
        assert_eq!(parse_duration("45").unwrap(), Duration::seconds(45));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("5m3").is_err());
        assert!(parse_duration("99999999999999999d").is_err());
    }

    #[test]
    fn ages_print_like_kubectl() {
        assert_eq!(human_duration(Duration::seconds(90)), "90s");
        assert_eq!(human_duration(Duration::seconds(6 * 60 + 5)), "6m5s");
        assert_eq!(human_duration(Duration::minutes(300)), "5h");
        assert_eq!(human_duration(Duration::hours(50)), "2d2h");
    }

    #[test]
    fn advancing_moves_virtual_time_instantly() {
        let start = Utc::now();
        let mut c = Clock::new(start, 0.0);
        c.advance(Duration::minutes(6));
        assert_eq!(c.now(), start + Duration::minutes(6));
    }
}
