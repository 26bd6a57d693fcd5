//! Limits that keep one client from hurting the others: open streams per
//! credential, per instance and in total, messages per connection, and
//! failed authentications per address.
//!
//! These are three counters and a token bucket: a rate-limiting crate such
//! as governor counts attempts, while the failed-authentication limit must
//! count only the failures (a valid credential is never refused), so the
//! few lines here are simpler than adapting one.

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
use uuid::Uuid;

use crate::http::error::ApiError;

/// Open streams, in total, per credential and per instance.
pub struct Connections {
    max_total: usize,
    max_per_credential: usize,
    max_per_instance: usize,
    total: AtomicUsize,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    /// By [`crate::auth::Scope::credential`]: a key, with its tokens.
    per_credential: HashMap<String, usize>,
    /// By instance id, whichever credential of it opened them.
    per_instance: HashMap<Uuid, usize>,
}

/// A held place; dropping it gives the place back.
pub struct ConnectionSlot {
    owner: Arc<Connections>,
    credential: String,
    instances: Vec<Uuid>,
}

impl Connections {
    pub fn new(
        max_total: usize,
        max_per_credential: usize,
        max_per_instance: usize,
    ) -> Arc<Connections> {
        Arc::new(Connections {
            max_total,
            max_per_credential,
            max_per_instance,
            total: AtomicUsize::new(0),
            held: Mutex::new(Held::default()),
        })
    }

    /// Takes a place for one more stream of `credential` (the key behind
    /// it, never the secret) on `instances` (the ids its scope is limited
    /// to; none for the admin's), or says which limit is reached.
    pub fn acquire(
        self: &Arc<Self>,
        credential: &str,
        instances: &[Uuid],
    ) -> Result<ConnectionSlot, ApiError> {
        let mut held = self.held.lock();
        if self.total.load(Ordering::Relaxed) >= self.max_total {
            return Err(ApiError::ConnectionLimit(format!(
                "the server holds its maximum of {} connections; retry later",
                self.max_total
            )));
        }
        if held.per_credential.get(credential).copied().unwrap_or(0) >= self.max_per_credential {
            return Err(ApiError::ConnectionQuota(format!(
                "this credential (with the tokens its key minted) already holds its maximum of {} \
                 connections",
                self.max_per_credential
            )));
        }
        if instances
            .iter()
            .any(|id| held.per_instance.get(id).copied().unwrap_or(0) >= self.max_per_instance)
        {
            return Err(ApiError::ConnectionQuota(format!(
                "an instance this credential watches already has its maximum of {} connections",
                self.max_per_instance
            )));
        }
        *held
            .per_credential
            .entry(credential.to_owned())
            .or_insert(0) += 1;
        for id in instances {
            *held.per_instance.entry(*id).or_insert(0) += 1;
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(ConnectionSlot {
            owner: self.clone(),
            credential: credential.to_owned(),
            instances: instances.to_vec(),
        })
    }

    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

/// Counts one place down, forgetting the key at zero.
fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = map.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            map.remove(key);
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut held = self.owner.held.lock();
        release(&mut held.per_credential, &self.credential);
        for id in &self.instances {
            release(&mut held.per_instance, id);
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

    /// Counts a failed authentication from `ip`; once the address is past
    /// its limit in this window, the error to answer instead of
    /// `AUTH_FAILED`. Only failures are counted and only they are refused,
    /// so a valid credential is never refused for them.
    pub fn failed(&self, ip: IpAddr) -> Option<ApiError> {
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
        entry.failures = entry.failures.saturating_add(1);
        (entry.failures > self.per_window).then(|| {
            ApiError::RateLimited(
                "too many failed authentications from this address; wait a minute".into(),
            )
        })
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
    fn connection_slots_count_per_credential_per_instance_and_in_total() {
        let (alpha, beta) = (Uuid::now_v7(), Uuid::now_v7());
        let connections = Connections::new(5, 2, 3);
        let a1 = connections.acquire("a", &[alpha]).expect("first");
        let _a2 = connections.acquire("a", &[alpha]).expect("second");
        assert!(matches!(
            connections.acquire("a", &[beta]),
            Err(ApiError::ConnectionQuota(_))
        ));
        // Another credential of alpha (a token an admin minted for it)
        // takes alpha's last place.
        let _b1 = connections
            .acquire("b", &[alpha])
            .expect("other credential");
        assert!(matches!(
            connections.acquire("c", &[alpha, beta]),
            Err(ApiError::ConnectionQuota(_))
        ));
        let _c1 = connections.acquire("c", &[beta]).expect("beta has room");
        let _d1 = connections.acquire("d", &[]).expect("the admin's");
        assert!(matches!(
            connections.acquire("e", &[]),
            Err(ApiError::ConnectionLimit(_))
        ));
        drop(a1);
        assert_eq!(connections.total(), 4);
        connections
            .acquire("a", &[alpha])
            .expect("a place is free again");
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_that_fails_too_often_is_limited_for_its_failures_alone() {
        let throttle = AuthThrottle::new(3);
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let other: IpAddr = "10.0.0.2".parse().expect("ip");
        for _ in 0..3 {
            assert!(throttle.failed(ip).is_none(), "within the limit");
        }
        assert!(matches!(
            throttle.failed(ip),
            Some(ApiError::RateLimited(_))
        ));
        assert!(
            throttle.failed(other).is_none(),
            "other addresses are not affected"
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(throttle.failed(ip).is_none(), "a new window");
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_allows_a_burst_then_the_rate() {
        let mut bucket = TokenBucket::new(2, 4);
        assert_eq!((0..10).filter(|_| bucket.take()).count(), 4);
        tokio::time::advance(Duration::from_millis(1000)).await;
        assert_eq!((0..10).filter(|_| bucket.take()).count(), 2);
    }
}
