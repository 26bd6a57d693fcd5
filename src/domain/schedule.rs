//! When and in which order a queued text goes out: its priority, the time
//! it may be sent from (`sendAt`) and the time after which it must not be
//! sent any more (`ttlSecs` / `validUntil`). Parsed once here, at the edge,
//! against a given "now" so the rules are tested without a clock.

use chrono::{DateTime, Duration, Utc};

/// The lowest priority.
pub const MIN_PRIORITY: i64 = 0;
/// The highest priority: sent before everything else waiting.
pub const MAX_PRIORITY: i64 = 9;
/// The priority of a text that names none.
pub const DEFAULT_PRIORITY: u8 = 5;
/// How far ahead a text may be scheduled or kept valid: a queue holding
/// texts for years is more likely a mistake than a plan.
pub const MAX_HORIZON_DAYS: i64 = 366;

/// What a `sendText` request says about its schedule, as sent.
#[derive(Debug, Default, Clone)]
pub struct ScheduleRequest {
    pub priority: Option<i64>,
    pub ttl_secs: Option<i64>,
    /// RFC 3339.
    pub valid_until: Option<String>,
    /// RFC 3339.
    pub send_at: Option<String>,
}

/// A checked schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub priority: u8,
    /// `None`: as soon as possible.
    pub send_at: Option<DateTime<Utc>>,
    /// `None`: never expires.
    pub valid_until: Option<DateTime<Utc>>,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            priority: DEFAULT_PRIORITY,
            send_at: None,
            valid_until: None,
        }
    }
}

/// Parses an RFC 3339 time given in `field`; the error names the field.
pub fn rfc3339(field: &str, raw: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("'{field}' must be an RFC 3339 time like 2026-12-01T09:00:00Z: {e}"))
}

impl ScheduleRequest {
    /// Checks the request at `now`; the error names the field.
    pub fn parse(&self, now: DateTime<Utc>) -> Result<Schedule, String> {
        let horizon = now + Duration::days(MAX_HORIZON_DAYS);
        let priority = match self.priority {
            None => DEFAULT_PRIORITY,
            Some(p) if (MIN_PRIORITY..=MAX_PRIORITY).contains(&p) => p as u8,
            Some(p) => {
                return Err(format!(
                    "'priority' is {p}; it must be {MIN_PRIORITY} to {MAX_PRIORITY} (higher goes first)"
                ))
            }
        };
        let send_at = match &self.send_at {
            None => None,
            Some(raw) => {
                let at = rfc3339("sendAt", raw)?;
                if at > horizon {
                    return Err(format!(
                        "'sendAt' is more than {MAX_HORIZON_DAYS} days ahead"
                    ));
                }
                // A time already past means "now".
                (at > now).then_some(at)
            }
        };
        let valid_until = match (self.ttl_secs, &self.valid_until) {
            (Some(_), Some(_)) => {
                return Err("give 'ttlSecs' or 'validUntil', not both".into());
            }
            (Some(ttl), None) => {
                let max = MAX_HORIZON_DAYS * 24 * 3600;
                if !(1..=max).contains(&ttl) {
                    return Err(format!("'ttlSecs' is {ttl}; it must be 1 to {max}"));
                }
                // Counted from when the text may go out.
                Some(send_at.unwrap_or(now) + Duration::seconds(ttl))
            }
            (None, Some(raw)) => {
                let until = rfc3339("validUntil", raw)?;
                if until <= now {
                    return Err("'validUntil' is already past".into());
                }
                if until > horizon + Duration::days(1) {
                    return Err(format!(
                        "'validUntil' is more than {MAX_HORIZON_DAYS} days ahead"
                    ));
                }
                Some(until)
            }
            (None, None) => None,
        };
        if let (Some(at), Some(until)) = (send_at, valid_until) {
            if until <= at {
                return Err("'validUntil' must be after 'sendAt'".into());
            }
        }
        Ok(Schedule {
            priority,
            send_at,
            valid_until,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-30T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    fn parse(request: ScheduleRequest) -> Result<Schedule, String> {
        request.parse(now())
    }

    #[test]
    fn nothing_asked_is_priority_five_at_once_forever() {
        assert_eq!(parse(ScheduleRequest::default()), Ok(Schedule::default()));
    }

    #[test]
    fn each_bad_field_is_named() {
        for (request, message) in [
            (
                ScheduleRequest {
                    priority: Some(10),
                    ..Default::default()
                },
                "'priority' is 10",
            ),
            (
                ScheduleRequest {
                    priority: Some(-1),
                    ..Default::default()
                },
                "'priority' is -1",
            ),
            (
                ScheduleRequest {
                    ttl_secs: Some(0),
                    ..Default::default()
                },
                "'ttlSecs' is 0",
            ),
            (
                ScheduleRequest {
                    ttl_secs: Some(5),
                    valid_until: Some("2026-12-01T00:00:00Z".into()),
                    ..Default::default()
                },
                "not both",
            ),
            (
                ScheduleRequest {
                    valid_until: Some("tomorrow".into()),
                    ..Default::default()
                },
                "'validUntil' must be an RFC 3339",
            ),
            (
                ScheduleRequest {
                    valid_until: Some("2026-11-30T09:00:00Z".into()),
                    ..Default::default()
                },
                "already past",
            ),
            (
                ScheduleRequest {
                    send_at: Some("2028-01-01T00:00:00Z".into()),
                    ..Default::default()
                },
                "'sendAt' is more than 366 days",
            ),
            (
                ScheduleRequest {
                    send_at: Some("2026-11-30T12:00:00Z".into()),
                    valid_until: Some("2026-11-30T11:00:00Z".into()),
                    ..Default::default()
                },
                "after 'sendAt'",
            ),
        ] {
            let err = parse(request).expect_err(message);
            assert!(err.contains(message), "{err}");
        }
    }

    #[test]
    fn a_ttl_counts_from_the_scheduled_time_and_a_past_send_at_means_now() {
        let schedule = parse(ScheduleRequest {
            priority: Some(9),
            ttl_secs: Some(60),
            send_at: Some("2026-11-30T11:00:00+01:00".into()),
            ..Default::default()
        })
        .expect("valid");
        // 11:00+01:00 is 10:00Z: now, so no schedule; the ttl runs from now.
        assert_eq!(schedule.send_at, None);
        assert_eq!(schedule.valid_until, Some(now() + Duration::seconds(60)));
        assert_eq!(schedule.priority, 9);
        let later = parse(ScheduleRequest {
            ttl_secs: Some(60),
            send_at: Some("2026-11-30T12:00:00Z".into()),
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(later.valid_until, Some(now() + Duration::seconds(7260)));
    }
}
