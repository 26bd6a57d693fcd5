//! Send throttles and quotas (`settings/set` `throttle`): at most so many
//! texts per minute, per day and per month. The minute slides (no more
//! than `perMinute` texts in any minute); the day and the month are the
//! UTC calendar's, so a daily quota starts again at midnight UTC. The
//! windows are computed here from a given "now", so calendar edges are
//! tested without a clock.
//!
//! An instance may also ask for a random pause between two of its sends
//! (`pauseMinMs`, `pauseMaxMs`), so its traffic does not look machine-made;
//! a pool's throttle takes no pause (each member keeps its own).

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// The largest limit per window accepted.
pub const MAX_PER_MINUTE: u32 = 10_000;
pub const MAX_PER_DAY: u32 = 1_000_000;
pub const MAX_PER_MONTH: u32 = 10_000_000;
/// The longest pause between two sends accepted, in milliseconds (ten
/// minutes).
pub const MAX_PAUSE_MS: u32 = 600_000;

/// How fast an instance may send. Every field is optional: an absent limit
/// does not limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Throttle {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_day: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_month: Option<u32>,
    /// The shortest pause between two sends, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_min_ms: Option<u32>,
    /// The longest pause between two sends, in milliseconds (the pause is
    /// drawn at random between the two; `pauseMinMs` alone: exactly it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_max_ms: Option<u32>,
}

/// Which window a limit counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    Minute,
    Day,
    Month,
}

impl WindowKind {
    /// The name counters are stored under.
    pub fn as_str(self) -> &'static str {
        match self {
            WindowKind::Minute => "minute",
            WindowKind::Day => "day",
            WindowKind::Month => "month",
        }
    }

    /// The setting's name, for "why is it waiting".
    pub fn setting(self) -> &'static str {
        match self {
            WindowKind::Minute => "perMinute",
            WindowKind::Day => "perDay",
            WindowKind::Month => "perMonth",
        }
    }
}

/// One limit in the window `now` falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub kind: WindowKind,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub limit: u32,
}

impl Throttle {
    /// Checks the bounds; the error names the field.
    pub fn check(&self) -> Result<(), String> {
        for (field, value, max) in [
            ("perMinute", self.per_minute, MAX_PER_MINUTE),
            ("perDay", self.per_day, MAX_PER_DAY),
            ("perMonth", self.per_month, MAX_PER_MONTH),
        ] {
            if let Some(value) = value {
                if !(1..=max).contains(&value) {
                    return Err(format!(
                        "'throttle.{field}' is {value}; it must be 1 to {max}"
                    ));
                }
            }
        }
        for (field, value) in [
            ("pauseMinMs", self.pause_min_ms),
            ("pauseMaxMs", self.pause_max_ms),
        ] {
            if let Some(value) = value {
                if value > MAX_PAUSE_MS {
                    return Err(format!(
                        "'throttle.{field}' is {value}; it must be 0 to {MAX_PAUSE_MS}"
                    ));
                }
            }
        }
        if let (Some(min), Some(max)) = (self.pause_min_ms, self.pause_max_ms) {
            if min > max {
                return Err(format!(
                    "'throttle.pauseMinMs' ({min}) must not be above 'throttle.pauseMaxMs' ({max})"
                ));
            }
        }
        Ok(())
    }

    /// The range the pause between two sends is drawn from, in
    /// milliseconds, when there is one.
    pub fn pause_ms(&self) -> Option<(u32, u32)> {
        match (self.pause_min_ms, self.pause_max_ms) {
            (None, None) => None,
            (Some(min), None) => Some((min, min)),
            (None, Some(max)) => Some((0, max)),
            (Some(min), Some(max)) => Some((min, max)),
        }
        .filter(|(_, max)| *max > 0)
    }

    /// Whether it limits anything at all.
    pub fn is_empty(&self) -> bool {
        *self == Throttle::default()
    }

    /// The windows `now` falls in, one per limit set. The minute is the
    /// one that ends now (sends after its start count); `minute` is its
    /// length: a minute, except where the operator (or a test) shortens it
    /// (`modem.throttle_minute_ms`).
    pub fn windows(&self, now: DateTime<Utc>, minute: Duration) -> Vec<Window> {
        let mut windows = Vec::new();
        if let Some(limit) = self.per_minute {
            windows.push(Window {
                kind: WindowKind::Minute,
                start: now - minute,
                end: now,
                limit,
            });
        }
        if let Some(limit) = self.per_day {
            let start = Utc
                .with_ymd_and_hms(now.year(), now.month(), now.day(), 0, 0, 0)
                .single()
                .unwrap_or(now);
            windows.push(Window {
                kind: WindowKind::Day,
                start,
                end: start + Duration::days(1),
                limit,
            });
        }
        if let Some(limit) = self.per_month {
            let start = Utc
                .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
                .single()
                .unwrap_or(now);
            let (year, month) = if now.month() == 12 {
                (now.year() + 1, 1)
            } else {
                (now.year(), now.month() + 1)
            };
            let end = Utc
                .with_ymd_and_hms(year, month, 1, 0, 0, 0)
                .single()
                .unwrap_or(now);
            windows.push(Window {
                kind: WindowKind::Month,
                start,
                end,
                limit,
            });
        }
        windows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(raw: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(raw)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn windows_follow_the_minute_the_utc_day_and_the_month() {
        let throttle = Throttle {
            per_minute: Some(10),
            per_day: Some(100),
            per_month: Some(1000),
            ..Throttle::default()
        };
        let windows = throttle.windows(at("2026-12-31T23:59:30.5Z"), Duration::minutes(1));
        let spans: Vec<(WindowKind, DateTime<Utc>, DateTime<Utc>)> =
            windows.iter().map(|w| (w.kind, w.start, w.end)).collect();
        assert_eq!(
            spans,
            [
                (
                    WindowKind::Minute,
                    at("2026-12-31T23:58:30.5Z"),
                    at("2026-12-31T23:59:30.5Z")
                ),
                (
                    WindowKind::Day,
                    at("2026-12-31T00:00:00Z"),
                    at("2027-01-01T00:00:00Z")
                ),
                (
                    WindowKind::Month,
                    at("2026-12-01T00:00:00Z"),
                    at("2027-01-01T00:00:00Z")
                ),
            ]
        );
        // A shortened minute.
        let short = throttle.windows(at("2026-11-30T10:00:03.5Z"), Duration::seconds(2));
        assert_eq!(
            (short[0].start, short[0].end),
            (at("2026-11-30T10:00:01.5Z"), at("2026-11-30T10:00:03.5Z"))
        );
        // February of a leap year ends with its 29th.
        let feb = Throttle {
            per_month: Some(1),
            ..Throttle::default()
        }
        .windows(at("2028-02-10T00:00:00Z"), Duration::minutes(1));
        assert_eq!(feb[0].end, at("2028-03-01T00:00:00Z"));
    }

    #[test]
    fn bad_limits_are_named() {
        for (throttle, message) in [
            (
                Throttle {
                    per_minute: Some(0),
                    ..Throttle::default()
                },
                "'throttle.perMinute' is 0",
            ),
            (
                Throttle {
                    per_day: Some(MAX_PER_DAY + 1),
                    ..Throttle::default()
                },
                "'throttle.perDay'",
            ),
            (
                Throttle {
                    pause_min_ms: Some(MAX_PAUSE_MS + 1),
                    ..Throttle::default()
                },
                "'throttle.pauseMinMs'",
            ),
            (
                Throttle {
                    pause_min_ms: Some(500),
                    pause_max_ms: Some(100),
                    ..Throttle::default()
                },
                "'throttle.pauseMinMs' (500) must not be above",
            ),
        ] {
            assert!(throttle.check().expect_err(message).contains(message));
        }
    }
}
