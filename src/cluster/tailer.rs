//! Every node sees every event: the log, tailed by id into this node's hub.
//!
//! On PostgreSQL several nodes append to one log, so this node's writer
//! knows only its own commits. The hub is fed through [`Tail`]: this
//! node's own batch goes straight to the hub when nothing lies between it
//! and what the hub already has (the same-node path stays as fast as on a
//! single node); otherwise the tailer reads the log by id from the hub's
//! last published id and publishes what it finds. A `LISTEN` on the
//! channel every commit notifies wakes the tailer; polling every
//! `cluster.poll_ms` is the backstop, so a lost notification delays
//! nothing beyond one poll.
//!
//! Ids are assigned in commit order under the log head lock (invariant 2),
//! so the events visible at any moment are exactly those up to some id:
//! reading `id > last ORDER BY id` never skips one that commits later. One
//! lock orders the two paths into the hub, and each publishes only ids
//! above the hub's newest: no event reaches the hub twice or out of order.

use std::{sync::Arc, time::Duration};

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    event::{Event, TopicSet},
    hub::Hub,
    store::{LogQuery, Publish, Store},
};

/// Most events read from the log per query.
const PAGE: i64 = 1000;
/// How long to wait before listening again after the connection was lost.
const RELISTEN: Duration = Duration::from_secs(1);

/// Called with every event published into the hub (see [`Tail::new`]).
pub type Observer = Box<dyn Fn(&[Event]) + Send + Sync>;

/// The hub as the writer and the tailer feed it.
pub struct Tail {
    hub: Arc<Hub>,
    /// Held while publishing: checking the hub's newest id and publishing
    /// after it is one step.
    publishing: Mutex<()>,
    /// Wakes the tailer: this node's writer saw events it could not place.
    wake: Notify,
    /// Called with every event the tailer or the writer publishes, just
    /// before the hub gets it (the cluster follows instance lifecycle and
    /// connection events).
    observe: Observer,
}

impl Tail {
    pub fn new(hub: Arc<Hub>, observe: Observer) -> Arc<Tail> {
        Arc::new(Tail {
            hub,
            publishing: Mutex::new(()),
            wake: Notify::new(),
            observe,
        })
    }

    /// Publishes the events above the hub's newest id, in order. The
    /// events must be everything the log holds after `after` up to their
    /// last id (what a read of the log returns, or a batch that starts
    /// right after the hub's newest).
    fn publish_after(&self, after: i64, events: &[Event]) -> bool {
        let _publishing = self.publishing.lock();
        let last = self.hub.last_published();
        if after > last {
            // Something lies between: only the log can say what.
            return false;
        }
        let start = events.partition_point(|e| e.id <= last);
        let fresh = &events[start..];
        if !fresh.is_empty() {
            // Observed first: a deleted instance's credentials are revoked
            // before a namesake's events that follow in the batch reach
            // the hub.
            (self.observe)(fresh);
            // Visible only now that it is durable: these were read from
            // the log or committed by this node's writer.
            self.hub.publish(fresh);
        }
        true
    }

    /// Reads the log from the hub's newest id until it has published
    /// everything committed so far.
    async fn catch_up(&self, store: &Store) -> Result<(), crate::store::StoreError> {
        loop {
            let after = self.hub.last_published();
            let query = LogQuery {
                after_id: after,
                instances: None,
                topics: TopicSet::all(),
                limit: PAGE,
            };
            let events = store.read_events(&query).await?;
            if events.is_empty() {
                return Ok(());
            }
            self.publish_after(after, &events);
            // Ids missing below the last one read were deleted (retention,
            // a deleted instance): none can appear there any more.
            if (events.len() as i64) < PAGE {
                return Ok(());
            }
        }
    }

    /// Runs until `stop`: catches up whenever woken, notified or polled.
    pub async fn run(self: Arc<Self>, store: Store, poll: Duration, stop: CancellationToken) {
        let mut listener = None;
        let mut relisten_at = tokio::time::Instant::now();
        loop {
            if listener.is_none() && tokio::time::Instant::now() >= relisten_at {
                match store.listen().await {
                    Ok(l) => listener = l,
                    Err(err) => {
                        tracing::warn!(error = %err.report(), "cannot listen for commits; polling only");
                        relisten_at = tokio::time::Instant::now() + RELISTEN;
                    }
                }
            }
            if let Err(err) = self.catch_up(&store).await {
                tracing::warn!(error = %err.report(), "cannot read the log; trying again");
            }
            let notified = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.wake.notified() => {}
                // pacing: the backstop for a lost notification.
                _ = tokio::time::sleep(poll) => {}
                received = notified => {
                    if received.is_err() {
                        listener = None;
                        relisten_at = tokio::time::Instant::now() + RELISTEN;
                    }
                }
            }
        }
        tracing::debug!("log tailer stopped");
    }
}

impl Publish for Tail {
    fn publish(&self, events: &[Event]) {
        // A read of the log handed over without its starting point: only
        // what follows the hub's newest without a hole can go out.
        let after = events.first().map_or(0, |e| e.id - 1);
        if !self.publish_after(after, events) {
            self.wake.notify_one();
        }
    }

    fn publish_batch(&self, previous_head: i64, events: &[Event]) {
        if !self.publish_after(previous_head, events) {
            self.wake.notify_one();
        }
    }

    fn last_published(&self) -> i64 {
        self.hub.last_published()
    }

    fn resync_all(&self) {
        self.hub.resync_all();
        self.wake.notify_one();
    }

    fn fills_gaps(&self) -> bool {
        true
    }
}
