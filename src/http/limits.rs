//! Limits that keep one client from hurting the others: open streams per
//! credential and in total, messages per connection, and failed
//! authentications per address.
//!
//! These are two counters and a token bucket. A rate-limiting crate such as
//! governor cannot say whether an address is currently blocked without
//! spending a cell, which is what the failed-authentication check needs
//! before it looks at a key, so the few lines here are simpler than adapting
//! one.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::http::error::ApiError;

/// Open streams, in total and per credential.
pub struct Connections {
    max_total: usize,
    max_per_credential: usize,
    total: AtomicUsize,
    per_credential: Mutex<HashMap<String, usize>>,
}

/// A held place; dropping it gives the place back.
pub struct ConnectionSlot {
    owner: Arc<Connections>,
    credential: String,
}

impl Connections {
    pub fn new(max_total: usize, max_per_credential: usize) -> Arc<Connections> {
        Arc::new(Connections {
            max_total,
            max_per_credential,
            total: AtomicUsize::new(0),
            per_credential: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a place for one more stream of `credential` (its description,
    /// never the secret), or says which limit is reached.
    pub fn acquire(self: &Arc<Self>, credential: &str) -> Result<ConnectionSlot, ApiError> {
        let mut per = self.per_credential.lock();
        if self.total.load(Ordering::Relaxed) >= self.max_total {
            return Err(ApiError::ConnectionLimit(format!(
                "the server holds its maximum of {} connections; retry later",
                self.max_total
            )));
        }
        let held = per.entry(credential.to_owned()).or_insert(0);
        if *held >= self.max_per_credential {
            return Err(ApiError::ConnectionLimit(format!(
                "this credential already holds its maximum of {} connections",
                self.max_per_credential
            )));
        }
        *held += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(ConnectionSlot {
            owner: self.clone(),
            credential: credential.to_owned(),
        })
    }

    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut per = self.owner.per_credential.lock();
        if let Some(held) = per.get_mut(&self.credential) {
            *held -= 1;
            if *held == 0 {
                per.remove(&self.credential);
            }
        }
        self.owner.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Failed authentications per address, counted in fixed one-minute windows.
pub struct AuthThrottle {
    per_window: u32,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, Window>>,
}

struct Window {
    started: Instant,
    failures: u32,
}

/// Addresses tracked at most; beyond it, finished windows are swept and the
/// table is cleared if that is not enough, so an attack from many addresses
/// cannot grow memory without bound.
const MAX_TRACKED: usize = 100_000;

impl AuthThrottle {
    pub fn new(per_minute: u32) -> AuthThrottle {
        AuthThrottle {
            per_window: per_minute.max(1),
            window: Duration::from_secs(60),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses an address that failed too often in the current window,
    /// before its credential is even looked at.
    pub fn check(&self, ip: IpAddr) -> Result<(), ApiError> {
        let failures = self.failures.lock();
        match failures.get(&ip) {
            Some(w) if w.started.elapsed() < self.window && w.failures >= self.per_window => {
                Err(ApiError::RateLimited(
                    "too many failed authentications from this address; wait a minute".into(),
                ))
            }
            _ => Ok(()),
        }
    }

    pub fn failed(&self, ip: IpAddr) {
        let mut failures = self.failures.lock();
        if failures.len() >= MAX_TRACKED && !failures.contains_key(&ip) {
            let window = self.window;
            failures.retain(|_, w| w.started.elapsed() < window);
            if failures.len() >= MAX_TRACKED {
                failures.clear();
            }
        }
        let entry = failures.entry(ip).or_insert(Window {
            started: Instant::now(),
            failures: 0,
        });
        if entry.started.elapsed() >= self.window {
            *entry = Window {
                started: Instant::now(),
                failures: 0,
            };
        }
        entry.failures += 1;
    }
}

/// Messages a connection may send: `rate` per second, bursts up to `burst`.
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: f64::from(rate.max(1)),
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Spends one token if there is one.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = (now - self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_slots_count_per_credential_and_in_total() {
        let connections = Connections::new(3, 2);
        let a1 = connections.acquire("a").expect("first");
        let _a2 = connections.acquire("a").expect("second");
        assert!(matches!(
            connections.acquire("a"),
            Err(ApiError::ConnectionLimit(_))
        ));
        let _b1 = connections.acquire("b").expect("other credential");
        assert!(matches!(
            connections.acquire("c"),
            Err(ApiError::ConnectionLimit(_))
        ));
        drop(a1);
        assert_eq!(connections.total(), 2);
        connections.acquire("a").expect("a place is free again");
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_that_fails_too_often_waits_out_the_window() {
        let throttle = AuthThrottle::new(3);
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let other: IpAddr = "10.0.0.2".parse().expect("ip");
        for _ in 0..3 {
            throttle.check(ip).expect("not yet limited");
            throttle.failed(ip);
        }
        assert!(matches!(throttle.check(ip), Err(ApiError::RateLimited(_))));
        throttle
            .check(other)
            .expect("other addresses are not affected");
        tokio::time::advance(Duration::from_secs(61)).await;
        throttle.check(ip).expect("a new window");
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_allows_a_burst_then_the_rate() {
        let mut bucket = TokenBucket::new(2, 4);
        assert_eq!((0..10).filter(|_| bucket.take()).count(), 4);
        tokio::time::advance(Duration::from_millis(1000)).await;
        assert_eq!((0..10).filter(|_| bucket.take()).count(), 2);
    }
}
