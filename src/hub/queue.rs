//! A connection's queue: frames waiting to be written, bounded in bytes.

use std::{
    collections::VecDeque,
    future::poll_fn,
    sync::{atomic::Ordering, Arc},
    task::{Poll, Waker},
};

use parking_lot::Mutex;

use super::{relay::Relay, HubStats};
use crate::event::Frame;

/// The hub-facing half of a connection: the publisher pushes, the session pops.
pub struct Subscriber {
    id: u64,
    /// Most bytes the queue may hold; a push beyond it marks the connection
    /// lagging instead of growing memory.
    limit: usize,
    queue: Mutex<Queue>,
    /// The worker thread's relay that wakes the session (see [`Relay`]).
    pub(super) home: Option<Arc<Relay>>,
    stats: Arc<HubStats>,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Arc<Frame>>,
    bytes: usize,
    /// Set when a push did not fit: from then on the hub skips this
    /// connection until its session catches it up from the log.
    lagging: bool,
    /// The session waiting in [`Subscriber::ready`], woken by the next push
    /// or by lagging. Set under the same lock the pusher takes, so a push
    /// between the session's last look and its wait is not missed.
    waiting: Option<Waker>,
}

impl Subscriber {
    pub(super) fn new(id: u64, limit: usize, stats: Arc<HubStats>) -> Subscriber {
        Subscriber {
            id,
            limit,
            queue: Mutex::new(Queue::default()),
            home: Relay::for_this_thread(),
            stats,
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Called by the publisher; never blocks on the client.
    pub(super) fn push(&self, frame: &Arc<Frame>) {
        let cost = frame.cost();
        let mut queue = self.queue.lock();
        if queue.lagging {
            return;
        }
        // One frame always fits in an empty queue, so an event larger than
        // the limit still reaches a connection that keeps up.
        if !queue.frames.is_empty() && queue.bytes + cost > self.limit {
            queue.lagging = true;
            let waiting = queue.waiting.take();
            drop(queue);
            self.stats
                .lagged_connections
                .fetch_add(1, Ordering::Relaxed);
            self.wake(waiting);
            return;
        }
        queue.frames.push_back(frame.clone());
        queue.bytes += cost;
        let waiting = queue.waiting.take();
        drop(queue);
        self.stats.queued_bytes.fetch_add(cost, Ordering::Relaxed);
        self.wake(waiting);
    }

    /// Makes the connection catch up from the log.
    pub(super) fn mark_lagging(&self) {
        let waiting = {
            let mut queue = self.queue.lock();
            queue.lagging = true;
            queue.waiting.take()
        };
        self.wake(waiting);
    }

    fn wake(&self, waiting: Option<Waker>) {
        match (waiting, &self.home) {
            (Some(waker), Some(relay)) => relay.wake(waker),
            (Some(waker), None) => waker.wake(),
            (None, _) => {}
        }
    }

    /// Takes the oldest queued frame.
    pub fn pop(&self) -> Option<Arc<Frame>> {
        let frame = {
            let mut queue = self.queue.lock();
            let frame = queue.frames.pop_front()?;
            queue.bytes -= frame.cost();
            frame
        };
        self.stats
            .queued_bytes
            .fetch_sub(frame.cost(), Ordering::Relaxed);
        self.stats.delivered_frames.fetch_add(1, Ordering::Relaxed);
        Some(frame)
    }

    /// Waits until there is something to pop or the connection is lagging.
    pub async fn ready(&self) {
        poll_fn(|cx| {
            let mut queue = self.queue.lock();
            if !queue.frames.is_empty() || queue.lagging {
                return Poll::Ready(());
            }
            match &mut queue.waiting {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                waiting => *waiting = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    pub fn is_lagging(&self) -> bool {
        self.queue.lock().lagging
    }

    pub fn queued_bytes(&self) -> usize {
        self.queue.lock().bytes
    }

    /// Drops everything queued (the connection is going away).
    pub(super) fn clear(&self) {
        self.reset();
    }

    /// Drops what is queued and starts buffering again: the first step of
    /// catching a lagging connection up from the log.
    pub fn reset(&self) {
        let bytes = {
            let mut queue = self.queue.lock();
            queue.frames.clear();
            queue.lagging = false;
            std::mem::take(&mut queue.bytes)
        };
        self.stats.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}
