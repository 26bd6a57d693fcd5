//! What the connections observed: counters, close codes and latencies.
//!
//! Connections share one [`Stats`]. Counters are atomics; latencies go into a
//! few HDR histograms (one shard per connection index modulo the shard count,
//! so runtime threads rarely meet on one lock) whose memory does not grow
//! with the number of events. A measurement window is a [`Snapshot`] of the
//! counters at its start and end plus the histograms taken (and reset) at
//! its end.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering},
        Mutex, OnceLock,
    },
    time::Instant,
};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency recorded exactly: one hour in µs. Larger ones are
/// clamped to it (a replayed event can be hours old).
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Three significant digits: a 50 ms p99 reads as 50.0 ms, not "between 48
/// and 52".
const SIGNIFICANT_DIGITS: u8 = 3;

/// Everything all connections report into.
pub struct Stats {
    shards: Vec<Mutex<Histogram<u64>>>,
    /// Event frames received.
    pub events: AtomicU64,
    /// Bytes of event frames received.
    pub bytes: AtomicU64,
    /// Control frames (the format's control key was present).
    pub control: AtomicU64,
    /// Events without a readable timestamp (not in the histogram).
    pub untimed: AtomicU64,
    /// Events stamped later than they arrived (clock trouble); recorded as 0.
    pub future: AtomicU64,
    /// Binary frames (not expected from the servers we measure).
    pub binary: AtomicU64,
    /// WebSocket pongs received (answers to our pings).
    pub pongs: AtomicU64,
    /// Connections currently open.
    pub open: AtomicU64,
    /// Handshakes that completed.
    pub connected: AtomicU64,
    /// Connects that failed (refused, reset, HTTP status, ...).
    pub connect_failed: AtomicU64,
    /// Connects that took longer than the connect timeout.
    pub connect_timeouts: AtomicU64,
    /// Read or write errors on open connections.
    pub io_errors: AtomicU64,
    /// Connections the server ended without a close frame.
    pub eof: AtomicU64,
    /// Highest event id seen (when the format reads ids).
    pub max_id: AtomicI64,
    /// The first event id seen, and the previous one: with a single
    /// connection (catch-up) they show where a replay started and whether
    /// ids ever went backwards or repeated.
    first_id: OnceLock<i64>,
    last_id: AtomicI64,
    /// Events whose id was not above the previous event's id.
    pub out_of_order: AtomicU64,
    /// When an event with id ≥ [`Stats::set_target_id`] first arrived.
    target_reached: OnceLock<Instant>,
    target_id: AtomicI64,
    /// Close frames received, by code (1005 when the frame had none).
    closes: Mutex<BTreeMap<u16, u64>>,
    /// The first few error messages, to show what went wrong.
    samples: Mutex<Vec<String>>,
}

/// How many distinct error messages are kept for the report.
const ERROR_SAMPLES: usize = 5;

impl Stats {
    /// `shards` histograms (at least one); use the runtime's thread count.
    pub fn new(shards: usize) -> Stats {
        let shards = (0..shards.max(1))
            .map(|_| Mutex::new(new_histogram()))
            .collect();
        Stats {
            shards,
            events: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            control: AtomicU64::new(0),
            untimed: AtomicU64::new(0),
            future: AtomicU64::new(0),
            binary: AtomicU64::new(0),
            pongs: AtomicU64::new(0),
            open: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            connect_failed: AtomicU64::new(0),
            connect_timeouts: AtomicU64::new(0),
            io_errors: AtomicU64::new(0),
            eof: AtomicU64::new(0),
            max_id: AtomicI64::new(i64::MIN),
            first_id: OnceLock::new(),
            last_id: AtomicI64::new(i64::MIN),
            out_of_order: AtomicU64::new(0),
            target_reached: OnceLock::new(),
            target_id: AtomicI64::new(i64::MAX),
            closes: Mutex::new(BTreeMap::new()),
            samples: Mutex::new(Vec::new()),
        }
    }

    /// Records one event received by connection `conn`.
    pub fn record_event(
        &self,
        conn: usize,
        bytes: usize,
        latency_us: Option<i64>,
        id: Option<i64>,
    ) {
        self.events.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        match latency_us {
            None => {
                self.untimed.fetch_add(1, Ordering::Relaxed);
            }
            Some(us) => {
                if us < 0 {
                    self.future.fetch_add(1, Ordering::Relaxed);
                }
                let us = (us.max(0) as u64).min(MAX_LATENCY_US);
                let shard = &self.shards[conn % self.shards.len()];
                // A poisoned lock only means another task panicked mid-record;
                // the counts are still usable.
                let mut hist = shard.lock().unwrap_or_else(|e| e.into_inner());
                hist.saturating_record(us);
            }
        }
        if let Some(id) = id {
            self.max_id.fetch_max(id, Ordering::Relaxed);
            let _ = self.first_id.set(id);
            let previous = self.last_id.swap(id, Ordering::Relaxed);
            if previous != i64::MIN && id <= previous {
                self.out_of_order.fetch_add(1, Ordering::Relaxed);
            }
            if id >= self.target_id.load(Ordering::Relaxed) {
                let _ = self.target_reached.set(Instant::now());
            }
        }
    }

    /// Asks to note when an event with at least this id arrives.
    pub fn set_target_id(&self, id: i64) {
        self.target_id.store(id, Ordering::Relaxed);
        if self.max_id.load(Ordering::Relaxed) >= id {
            let _ = self.target_reached.set(Instant::now());
        }
    }

    /// The first event id seen, if any.
    pub fn first_id(&self) -> Option<i64> {
        self.first_id.get().copied()
    }

    /// The highest event id seen, if any.
    pub fn max_id(&self) -> Option<i64> {
        Some(self.max_id.load(Ordering::Relaxed)).filter(|id| *id != i64::MIN)
    }

    /// When the target id was reached, if it was.
    pub fn target_reached(&self) -> Option<Instant> {
        self.target_reached.get().copied()
    }

    /// Records a close frame from the server.
    pub fn record_close(&self, code: u16, reason: &str) {
        *self
            .closes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(code)
            .or_default() += 1;
        if code != 1000 {
            self.sample(format!("closed by server: {code} {reason}"));
        }
    }

    /// Keeps an error message for the report (the first few distinct ones).
    pub fn sample(&self, message: String) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() < ERROR_SAMPLES && !samples.contains(&message) {
            samples.push(message);
        }
    }

    /// Takes the latencies recorded since the last call, merged, and resets
    /// the histograms: the latency part of a measurement window.
    pub fn take_latencies(&self) -> Histogram<u64> {
        let mut total = new_histogram();
        for shard in &self.shards {
            let mut hist = shard.lock().unwrap_or_else(|e| e.into_inner());
            // Same bounds on both sides, so adding cannot fail.
            let _ = total.add(&*hist);
            hist.reset();
        }
        total
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            at: Instant::now(),
            events: get(&self.events),
            bytes: get(&self.bytes),
            control: get(&self.control),
            untimed: get(&self.untimed),
            future: get(&self.future),
            binary: get(&self.binary),
            pongs: get(&self.pongs),
            open: get(&self.open),
            connected: get(&self.connected),
            connect_failed: get(&self.connect_failed),
            connect_timeouts: get(&self.connect_timeouts),
            io_errors: get(&self.io_errors),
            eof: get(&self.eof),
            closes: self
                .closes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    /// Every error counted since the start.
    pub fn errors(&self) -> ErrorCounts {
        let snap = self.snapshot();
        ErrorCounts {
            connect_failed: snap.connect_failed,
            connect_timeouts: snap.connect_timeouts,
            io_errors: snap.io_errors,
            dropped: snap.eof,
            closes: snap.closes,
        }
    }

    /// The error messages kept so far.
    pub fn error_samples(&self) -> Vec<String> {
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// An empty latency histogram with the bounds every window uses.
pub fn new_histogram() -> Histogram<u64> {
    // unwrap: the bounds are constants that satisfy hdrhistogram's rules
    // (low ≥ 1, high ≥ 2 × low, digits ≤ 5).
    #[allow(clippy::unwrap_used)]
    Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGNIFICANT_DIGITS).unwrap()
}

/// The counters at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub at: Instant,
    pub events: u64,
    pub bytes: u64,
    pub control: u64,
    pub untimed: u64,
    pub future: u64,
    pub binary: u64,
    pub pongs: u64,
    pub open: u64,
    pub connected: u64,
    pub connect_failed: u64,
    pub connect_timeouts: u64,
    pub io_errors: u64,
    pub eof: u64,
    pub closes: BTreeMap<u16, u64>,
}

impl Snapshot {
    /// Errors between `earlier` and `self`: failed or timed-out connects,
    /// I/O errors, connections dropped without a close, and closes other
    /// than a normal 1000.
    pub fn errors_since(&self, earlier: &Snapshot) -> ErrorCounts {
        let mut closes = BTreeMap::new();
        for (code, n) in &self.closes {
            let before = earlier.closes.get(code).copied().unwrap_or(0);
            if *n > before {
                closes.insert(*code, n - before);
            }
        }
        ErrorCounts {
            connect_failed: self.connect_failed - earlier.connect_failed,
            connect_timeouts: self.connect_timeouts - earlier.connect_timeouts,
            io_errors: self.io_errors - earlier.io_errors,
            dropped: self.eof - earlier.eof,
            closes,
        }
    }
}

/// Errors seen in a window.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ErrorCounts {
    pub connect_failed: u64,
    pub connect_timeouts: u64,
    pub io_errors: u64,
    /// Connections that ended without a close frame.
    pub dropped: u64,
    /// Close frames received, by code.
    pub closes: BTreeMap<u16, u64>,
}

impl ErrorCounts {
    /// Every error counted, including closes other than 1000.
    pub fn total(&self) -> u64 {
        self.connect_failed
            + self.connect_timeouts
            + self.io_errors
            + self.dropped
            + self
                .closes
                .iter()
                .filter(|(code, _)| **code != 1000)
                .map(|(_, n)| n)
                .sum::<u64>()
    }

    /// One short line for a table cell: `0`, or e.g. `3 (close 4000×3)`.
    pub fn describe(&self) -> String {
        let total = self.total();
        if total == 0 {
            return "0".into();
        }
        let mut parts = Vec::new();
        if self.connect_failed > 0 {
            parts.push(format!("connect failed×{}", self.connect_failed));
        }
        if self.connect_timeouts > 0 {
            parts.push(format!("connect timeout×{}", self.connect_timeouts));
        }
        if self.io_errors > 0 {
            parts.push(format!("io×{}", self.io_errors));
        }
        if self.dropped > 0 {
            parts.push(format!("dropped×{}", self.dropped));
        }
        for (code, n) in &self.closes {
            if *code != 1000 {
                parts.push(format!("close {code}×{n}"));
            }
        }
        format!("{total} ({})", parts.join(", "))
    }
}

/// Latency percentiles of a window, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Latency {
    /// Summarises a histogram (all zero when it is empty).
    pub fn from_histogram(hist: &Histogram<u64>) -> Latency {
        if hist.is_empty() {
            return Latency::default();
        }
        Latency {
            count: hist.len(),
            p50_us: hist.value_at_quantile(0.50),
            p90_us: hist.value_at_quantile(0.90),
            p99_us: hist.value_at_quantile(0.99),
            p999_us: hist.value_at_quantile(0.999),
            max_us: hist.max(),
            mean_us: hist.mean(),
        }
    }
}

/// Microseconds as a short human duration: `850 µs`, `12.3 ms`, `4.20 s`.
pub fn human_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.1} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_spread_land_within_the_precision() {
        let stats = Stats::new(3);
        // 1..=10_000 µs, once each, spread over connections (and shards).
        for (conn, us) in (1..=10_000i64).enumerate() {
            stats.record_event(conn, 300, Some(us), None);
        }
        let lat = Latency::from_histogram(&stats.take_latencies());
        assert_eq!(lat.count, 10_000);
        let close = |got: u64, want: u64| {
            let err = (got as f64 - want as f64).abs() / want as f64;
            assert!(err <= 0.001, "got {got}, want {want}");
        };
        close(lat.p50_us, 5_000);
        close(lat.p90_us, 9_000);
        close(lat.p99_us, 9_900);
        close(lat.p999_us, 9_990);
        close(lat.max_us, 10_000);
        assert!((lat.mean_us - 5_000.5).abs() < 10.0);
    }

    #[test]
    fn taking_latencies_resets_them_but_not_the_counters() {
        let stats = Stats::new(1);
        stats.record_event(0, 10, Some(100), None);
        assert_eq!(stats.take_latencies().len(), 1);
        assert_eq!(stats.take_latencies().len(), 0);
        assert_eq!(stats.snapshot().events, 1);
    }

    #[test]
    fn negative_latencies_count_as_future_and_huge_ones_are_clamped() {
        let stats = Stats::new(1);
        stats.record_event(0, 10, Some(-5), None);
        stats.record_event(0, 10, Some(10 * MAX_LATENCY_US as i64), None);
        stats.record_event(0, 10, None, None);
        let snap = stats.snapshot();
        assert_eq!((snap.future, snap.untimed, snap.events), (1, 1, 3));
        let hist = stats.take_latencies();
        assert_eq!(hist.len(), 2);
        assert!(hist.max() >= MAX_LATENCY_US);
    }

    #[test]
    fn the_target_id_time_is_kept_once() {
        let stats = Stats::new(1);
        stats.set_target_id(10);
        stats.record_event(0, 1, None, Some(9));
        assert!(stats.target_reached().is_none());
        stats.record_event(0, 1, None, Some(10));
        let first = stats.target_reached();
        assert!(first.is_some());
        stats.record_event(0, 1, None, Some(11));
        assert_eq!(stats.target_reached(), first);
        assert_eq!(stats.max_id(), Some(11));
        assert_eq!(stats.first_id(), Some(9));
    }

    #[test]
    fn repeated_or_backward_ids_are_counted() {
        let stats = Stats::new(1);
        for id in [5, 6, 6, 4, 7] {
            stats.record_event(0, 1, None, Some(id));
        }
        assert_eq!(stats.out_of_order.load(Ordering::Relaxed), 2);
        assert_eq!(Stats::new(1).max_id(), None);
    }

    #[test]
    fn errors_in_a_window_exclude_earlier_ones_and_normal_closes() {
        let stats = Stats::new(1);
        stats.record_close(4000, "lagging");
        let before = stats.snapshot();
        stats.record_close(4000, "lagging");
        stats.record_close(1000, "bye");
        stats.connect_failed.fetch_add(2, Ordering::Relaxed);
        let errors = stats.snapshot().errors_since(&before);
        assert_eq!(errors.total(), 3);
        assert_eq!(errors.describe(), "3 (connect failed×2, close 4000×1)");
        assert_eq!(ErrorCounts::default().describe(), "0");
    }

    #[test]
    fn human_durations_pick_a_readable_unit() {
        assert_eq!(human_us(850), "850 µs");
        assert_eq!(human_us(12_345), "12.3 ms");
        assert_eq!(human_us(4_200_000), "4.20 s");
    }
}
