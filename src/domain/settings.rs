//! Per-instance settings that several stages read: what an instance
//! streams to clients, and how long its events are kept.

use super::topic::TopicSet;

/// Per-instance WebSocket defaults (`websocket/set`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebsocketSettings {
    /// False: the instance streams nothing to WebSocket and SSE clients.
    pub enabled: bool,
    /// The topics streamed to clients that did not choose their own; `None`
    /// means all of them.
    pub events: Option<TopicSet>,
}

impl Default for WebsocketSettings {
    fn default() -> Self {
        WebsocketSettings {
            enabled: true,
            events: None,
        }
    }
}

/// How long an instance's events are kept; `None` means the server default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    pub max_age_secs: Option<u64>,
    pub max_events: Option<u64>,
}

impl Retention {
    /// The longest age a client may ask for: a hundred years, far inside
    /// what the arithmetic on microsecond timestamps can hold.
    pub const MAX_AGE_SECS: u64 = 100 * 365 * 24 * 3600;
    /// The most events a client may ask to keep (what the store can count).
    pub const MAX_EVENTS: u64 = i64::MAX as u64;

    /// Checks a requested retention; the error names the allowed range.
    pub fn check(&self) -> Result<(), String> {
        if let Some(age) = self.max_age_secs.filter(|age| *age > Self::MAX_AGE_SECS) {
            return Err(format!(
                "'maxAgeSecs' must be between 0 (no limit) and {} (100 years), not {age}",
                Self::MAX_AGE_SECS
            ));
        }
        if let Some(count) = self.max_events.filter(|count| *count > Self::MAX_EVENTS) {
            return Err(format!(
                "'maxEvents' must be between 0 (no limit) and {}, not {count}",
                Self::MAX_EVENTS
            ));
        }
        Ok(())
    }

    /// The event time (Unix microseconds) before which events are deleted,
    /// for an age limit of `max_age_secs` (0: none). Saturating: an age
    /// beyond what the clock can go back means "delete nothing", never a
    /// wrapped cutoff in the future that would delete everything.
    pub fn cutoff_us(now_us: i64, max_age_secs: u64) -> Option<i64> {
        (max_age_secs > 0).then(|| {
            let age_us = i64::try_from(max_age_secs)
                .unwrap_or(i64::MAX)
                .saturating_mul(1_000_000);
            now_us.saturating_sub(age_us)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_age_near_the_top_of_u64_deletes_nothing_instead_of_everything() {
        let now = 1_763_807_400_000_000;
        assert_eq!(Retention::cutoff_us(now, 0), None);
        assert_eq!(Retention::cutoff_us(now, 60), Some(now - 60_000_000));
        for age in [
            u64::MAX,
            u64::MAX - 1,
            i64::MAX as u64 + 1,
            i64::MAX as u64,
            10u64.pow(13),
        ] {
            let cutoff = Retention::cutoff_us(now, age).expect("a cutoff");
            assert!(
                cutoff <= 0,
                "{age}: cutoff {cutoff} must lie before the epoch"
            );
        }
    }

    #[test]
    fn requested_ranges_are_checked_and_the_error_names_them() {
        let ok = Retention {
            max_age_secs: Some(Retention::MAX_AGE_SECS),
            max_events: Some(0),
        };
        assert_eq!(ok.check(), Ok(()));
        let too_old = Retention {
            max_age_secs: Some(u64::MAX),
            max_events: None,
        };
        let err = too_old.check().expect_err("refused");
        assert!(err.contains("between 0 (no limit) and 3153600000"), "{err}");
        let too_many = Retention {
            max_age_secs: None,
            max_events: Some(u64::MAX),
        };
        assert!(too_many
            .check()
            .expect_err("refused")
            .contains("'maxEvents'"));
    }
}
