//! A consumer's ordered stream of events: replay from the log, then live,
//! never a gap and never a duplicate.
//!
//! WebSocket sessions, SSE streams and webhook deliveries all read through a
//! [`Feed`]. It joins the live stream the way DESIGN.md describes: its hub
//! subscription buffers first, then it reads the log up to the newest event,
//! then drains the buffer, skipping ids it already covered. This is correct
//! because the writer publishes only after commit: an event published after
//! the buffer started is in the buffer, and one published before it was
//! committed before the next log read, so the read finds it.
//!
//! A consumer that falls behind (its queue overflows) takes the same path:
//! the buffer is reset and the feed reads the log from where it was, at the
//! consumer's own pace, then rejoins. Memory per consumer stays bounded by
//! the queue limit plus one page.
//!
//! A feed opened with a credential that can be revoked (an instance's key
//! or a token naming instances) carries its [`Revocation`]: once the
//! instance is deleted the feed hands out nothing more, not even an event
//! already queued, so a stream never shows a later instance that took the
//! same name.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use super::{Filter, InstanceFilter, Subscription};
use crate::{
    event::Frame,
    store::{LogQuery, Store},
};

/// Events read from the log per query while catching up.
const PAGE: i64 = 256;
/// Retry pause while the database is unavailable during catch-up, doubling
/// up to the maximum.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Where a feed begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// With the next event published.
    Live,
    /// With the first event after this id (a resuming client's `since`).
    After(i64),
}

/// Why a feed cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    /// Retention has deleted events after the cursor: resuming from it would
    /// skip them, so the consumer must resynchronize.
    #[error("cursor {cursor} is older than the retained log (events up to {horizon} were deleted); resynchronize")]
    CursorExpired { cursor: i64, horizon: i64 },
    /// The credential the feed was opened with no longer holds: an
    /// instance it names was deleted.
    #[error("the instance this credential was issued for has been deleted; its key and tokens no longer work")]
    Revoked,
}

/// Whether the credential behind a feed still holds: one signal per
/// instance it names, fired when that instance is deleted. Empty for
/// credentials that cannot be revoked this way (the admin key).
#[derive(Debug, Clone, Default)]
pub struct Revocation(Vec<CancellationToken>);

impl Revocation {
    /// Revoked as soon as any of `signals` fires.
    pub fn of(signals: Vec<CancellationToken>) -> Revocation {
        Revocation(signals)
    }

    pub fn is_revoked(&self) -> bool {
        self.0.iter().any(CancellationToken::is_cancelled)
    }

    /// Completes once revoked; never, for a credential that cannot be.
    pub async fn revoked(&self) {
        if self.0.is_empty() {
            return std::future::pending().await;
        }
        futures_util::future::select_all(self.0.iter().map(|s| Box::pin(s.cancelled()))).await;
    }
}

pub struct Feed {
    subscription: Subscription,
    store: Store,
    /// Every id up to here has been handed out or did not match.
    scanned: i64,
    /// The id of the last event handed out: the consumer's resume point.
    delivered: i64,
    /// Reading from the log rather than the live queue.
    replaying: bool,
    /// Events read from the log and not handed out yet (at most one page).
    page: VecDeque<Arc<Frame>>,
    retry: Duration,
    revocation: Revocation,
}

impl Feed {
    pub fn new(subscription: Subscription, store: Store, start: Start) -> Feed {
        let (scanned, replaying) = match start {
            // The subscription already buffers; what was published before it
            // is before this consumer's time.
            Start::Live => (subscription.hub().last_published(), false),
            Start::After(id) => (id, true),
        };
        Feed {
            subscription,
            store,
            scanned,
            delivered: scanned,
            replaying,
            page: VecDeque::new(),
            retry: RETRY_FIRST,
            revocation: Revocation::default(),
        }
    }

    /// Ends the feed (with [`FeedError::Revoked`]) when `revocation` fires.
    pub fn revocable(mut self, revocation: Revocation) -> Feed {
        self.revocation = revocation;
        self
    }

    pub fn revocation(&self) -> &Revocation {
        &self.revocation
    }

    /// The id of the last event handed out (or the starting point): a
    /// consumer that resumes from here misses nothing.
    pub fn cursor(&self) -> i64 {
        self.delivered
    }

    pub fn is_replaying(&self) -> bool {
        self.replaying
    }

    pub fn subscription(&self) -> &Subscription {
        &self.subscription
    }

    /// For filter changes; they apply to what is read or published next.
    pub fn subscription_mut(&mut self) -> &mut Subscription {
        &mut self.subscription
    }

    /// Checks a starting cursor against retention before anything is sent.
    pub fn check_cursor(&self) -> Result<(), FeedError> {
        let horizon = self.subscription.hub().horizon(self.subscription.filter());
        // Starting from 0 means "the oldest kept", which cannot expire.
        if self.replaying && self.scanned > 0 && self.scanned < horizon {
            return Err(FeedError::CursorExpired {
                cursor: self.scanned,
                horizon,
            });
        }
        Ok(())
    }

    /// The next event, waiting for one if need be. Cancel-safe: state only
    /// changes after an await has completed, so it can sit in a `select!`.
    pub async fn next(&mut self) -> Result<Arc<Frame>, FeedError> {
        loop {
            if self.revocation.is_revoked() {
                return Err(FeedError::Revoked);
            }
            if let Some(frame) = self.page.pop_front() {
                if self.revocation.is_revoked() {
                    return Err(FeedError::Revoked);
                }
                self.delivered = frame.id;
                return Ok(frame);
            }
            if self.replaying {
                // Boxed: the database read is a large future, and keeping it
                // inline would make every idle connection's task that large.
                Box::pin(self.read_page()).await?;
                continue;
            }
            let queue = self.subscription.queue();
            if queue.is_lagging() {
                // Fell behind: everything it missed is in the log.
                queue.reset();
                self.replaying = true;
                continue;
            }
            match queue.pop() {
                Some(frame) if frame.id <= self.scanned => continue,
                Some(frame) => {
                    // Checked after the pop: an event of a later instance of
                    // the same name is published only after the revocation.
                    if self.revocation.is_revoked() {
                        return Err(FeedError::Revoked);
                    }
                    self.scanned = frame.id;
                    self.delivered = frame.id;
                    return Ok(frame);
                }
                None => {
                    tokio::select! {
                        _ = queue.ready() => {}
                        _ = self.revocation.revoked() => {}
                    }
                }
            }
        }
    }

    /// The next event if one is ready now, without waiting or reading the
    /// log: lets a consumer drain everything queued into one write.
    pub fn try_next(&mut self) -> Option<Arc<Frame>> {
        if self.revocation.is_revoked() {
            // The next call to `next` says why.
            return None;
        }
        if let Some(frame) = self.page.pop_front() {
            self.delivered = frame.id;
            return Some(frame);
        }
        if self.replaying {
            return None;
        }
        let queue = self.subscription.queue();
        if queue.is_lagging() {
            return None;
        }
        while let Some(frame) = queue.pop() {
            if frame.id > self.scanned {
                if self.revocation.is_revoked() {
                    return None;
                }
                self.scanned = frame.id;
                self.delivered = frame.id;
                return Some(frame);
            }
        }
        None
    }

    async fn read_page(&mut self) -> Result<(), FeedError> {
        self.check_cursor()?;
        let filter: &Filter = self.subscription.filter();
        let query = LogQuery {
            after_id: self.scanned,
            instances: match &filter.instances {
                InstanceFilter::Only(names) => Some(names.iter().cloned().collect()),
                InstanceFilter::All { .. } => None,
            },
            topics: filter.read_topics(),
            limit: PAGE,
        };
        let events = match self.store.read_events(&query).await {
            Ok(events) => {
                self.retry = RETRY_FIRST;
                events
            }
            Err(err) => {
                // The consumer waits for the database instead of losing its
                // place; an outage is logged by whoever noticed it first, but
                // anything else (an unreadable row) is a fault to see.
                if err.is_outage() {
                    tracing::debug!(error = %err, retry_in = ?self.retry, "catch-up read failed");
                } else {
                    tracing::error!(error = %err.report(), retry_in = ?self.retry, "catch-up read failed");
                }
                tokio::time::sleep(self.retry).await;
                self.retry = (self.retry * 2).min(RETRY_MAX);
                return Ok(());
            }
        };
        let caught_up = (events.len() as i64) < PAGE;
        let filter = self.subscription.filter();
        let hub = self.subscription.hub();
        for event in events {
            self.scanned = event.id;
            if filter.matches(&event.instance, event.topic, hub.websocket(&event.instance)) {
                self.page.push_back(Arc::new(Frame::encode(&event)));
            }
        }
        if caught_up {
            let queue = self.subscription.queue();
            if queue.is_lagging() {
                // The buffer overflowed while we read: start it again and
                // read what was committed meanwhile.
                queue.reset();
            } else {
                self.replaying = false;
            }
        }
        Ok(())
    }
}
