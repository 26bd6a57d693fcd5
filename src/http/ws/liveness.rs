//! Whether a WebSocket client is still there and still reading, judged at
//! each heartbeat.
//!
//! Two rules, both over `http.client_timeout_secs`: a client the server has
//! heard nothing from for that long is gone (close 4001); a client that has
//! not read everything the server owed it at a heartbeat within that long is
//! stuck (close 4002), however many bytes it trickles. Time is
//! `tokio::time`, so the rules are tested with paused time.

use tokio::time::{Duration, Instant};

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Alive,
    /// Nothing heard for the client timeout.
    Silent,
    /// What it was owed at an earlier heartbeat is still not read.
    Stuck,
}

pub(super) struct Liveness {
    timeout: Duration,
    last_heard: Instant,
    /// At a heartbeat with output pending: when, and how far the socket's
    /// total of written bytes had to get. Met once the client read that far.
    owed_mark: Option<(Instant, u64)>,
}

impl Liveness {
    pub fn new(timeout: Duration) -> Liveness {
        Liveness {
            timeout,
            last_heard: Instant::now(),
            owed_mark: None,
        }
    }

    /// The client sent something.
    pub fn heard(&mut self) {
        self.last_heard = Instant::now();
    }

    /// Judges the client at a heartbeat; `written` is every byte the socket
    /// has taken so far.
    pub fn check(&mut self, written: u64) -> Verdict {
        if self.last_heard.elapsed() >= self.timeout {
            return Verdict::Silent;
        }
        if let Some((since, mark)) = self.owed_mark {
            if written >= mark {
                self.owed_mark = None;
            } else if since.elapsed() >= self.timeout {
                // It took less than it was owed in that time: reading a
                // trickle is not keeping up.
                return Verdict::Stuck;
            }
        }
        Verdict::Alive
    }

    /// Records what the client owes once this heartbeat's output is queued:
    /// it must have read `written + pending` bytes within the timeout.
    pub fn owe(&mut self, written: u64, pending: usize) {
        if self.owed_mark.is_none() && pending > 0 {
            self.owed_mark = Some((Instant::now(), written + pending as u64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_client_heard_from_within_the_timeout_is_alive_and_a_silent_one_is_not() {
        let mut liveness = Liveness::new(TIMEOUT);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(liveness.check(0), Verdict::Alive);
        liveness.heard();
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(liveness.check(0), Verdict::Alive);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(liveness.check(0), Verdict::Silent);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_must_read_what_it_was_owed_within_the_timeout_not_just_some_of_it() {
        let mut reader = Liveness::new(TIMEOUT);
        let mut trickler = Liveness::new(TIMEOUT);
        // At the first heartbeat both owe 1000 bytes beyond the 500 written.
        reader.owe(500, 1000);
        trickler.owe(500, 1000);
        for second in 1..=60 {
            tokio::time::advance(Duration::from_secs(1)).await;
            reader.heard();
            trickler.heard();
            // The reader has taken everything after 10 s; the trickler a
            // byte a second.
            let read = if second >= 10 { 1500 } else { 500 };
            assert_eq!(reader.check(read), Verdict::Alive, "second {second}");
            let verdict = trickler.check(500 + second);
            if second < 60 {
                assert_eq!(verdict, Verdict::Alive, "second {second}");
            } else {
                assert_eq!(verdict, Verdict::Stuck);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_pending_means_nothing_owed() {
        let mut liveness = Liveness::new(TIMEOUT);
        liveness.owe(500, 0);
        tokio::time::advance(Duration::from_secs(120)).await;
        liveness.heard();
        assert_eq!(liveness.check(500), Verdict::Alive);
    }
}
