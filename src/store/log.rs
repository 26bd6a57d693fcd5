//! The event log writer: the one task that appends to the log.
//!
//! Jobs from every instance and the API queue on one bounded channel. The
//! writer takes whatever is waiting (never waiting for more, so a lone event
//! is not delayed), commits it as one transaction, and only then hands the
//! committed events to whoever publishes them (the hub, through the
//! [`Publish`] trait) and answers the callers: durable before
//! visible (invariant 1), and throughput that grows with load instead of
//! being one commit per event.
//!
//! Jobs from different callers share a batch, so one job must not fail the
//! others. A job whose changes fail is rolled back to its savepoint by the
//! commit itself; a batch that fails anywhere else for a reason other than
//! an outage (the database refusing an event one job carries) is committed
//! again with a savepoint per job ([`Isolation::PerJob`]), which answers the
//! offending jobs with their error and commits the rest. Only an outage
//! fails every job of a batch.

use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc,
};

use tokio::sync::{mpsc, oneshot};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{Committed, Fence, Isolation, Job, LogQuery, Store, StoreError};
use crate::event::{Event, TopicSet};

/// Jobs waiting for the writer; callers wait when it is full (backpressure).
const QUEUE_JOBS: usize = 4096;
/// Most events committed in one transaction.
const MAX_BATCH_EVENTS: usize = 8192;

/// Where committed events go to be seen: the node's fan-out. The writer
/// knows it only through this trait, so the store does not depend on the
/// stage that delivers.
pub trait Publish: Send + Sync + 'static {
    /// Hands over committed events, in id order. Must not wait.
    fn publish(&self, events: &[Event]);
    /// Hands over one committed batch: `previous_head` was the log head
    /// just before it, so whoever also reads the log can tell whether
    /// anything lies between what it published and this batch.
    fn publish_batch(&self, previous_head: i64, events: &[Event]) {
        let _ = previous_head;
        self.publish(events);
    }
    /// The id of the newest event published so far.
    fn last_published(&self) -> i64;
    /// Tells every consumer to catch up from the log, for when some
    /// committed events cannot be handed over directly.
    fn resync_all(&self);
    /// Whether it reads events it was not handed from the log itself (a
    /// cluster node's tailer does): then the writer does not read back
    /// events other writers committed before its batch.
    fn fills_gaps(&self) -> bool {
        false
    }
}

type Reply = oneshot::Sender<Result<Vec<Committed>, StoreError>>;

/// The handle everyone appends through. Cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    jobs: mpsc::Sender<(Job, Option<Reply>)>,
    store: Store,
    stats: Arc<LogStats>,
    /// Stamped on every job appended through this handle: a driver's
    /// handle carries its lease's fence (see [`EventLog::fenced`]).
    fence: Option<Fence>,
}

/// Counters for `/metrics` and the benchmarks.
#[derive(Debug, Default)]
pub struct LogStats {
    pub batches: AtomicU64,
    pub events: AtomicU64,
    pub largest_batch: AtomicU64,
    pub failed_batches: AtomicU64,
    /// Batches committed again job by job because one job's content failed
    /// the shared insert.
    pub isolated_batches: AtomicU64,
    /// Whether the last commit failed: readiness reports it.
    pub failing: AtomicBool,
}

impl EventLog {
    /// Starts the writer. It stops when `shutdown` fires, after committing
    /// the jobs already queued.
    pub fn start(
        store: Store,
        hub: Arc<dyn Publish>,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> EventLog {
        let (tx, rx) = mpsc::channel(QUEUE_JOBS);
        let stats = Arc::new(LogStats::default());
        tracker.spawn(run(store.clone(), hub, rx, shutdown, stats.clone()));
        EventLog {
            jobs: tx,
            store,
            stats,
            fence: None,
        }
    }

    /// A handle whose every job carries `fence` (`None`: unfenced), for a
    /// driver running under a lease.
    pub fn fenced(&self, fence: Option<Fence>) -> EventLog {
        EventLog {
            fence,
            ..self.clone()
        }
    }

    /// The fence this handle's jobs carry.
    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_ref()
    }

    /// Puts the handle's fence on a job, or refuses it at once when this
    /// node's own clock says the lease is gone (a node that was paused
    /// past its lease learns it here before it reaches the database).
    fn stamp(&self, mut job: Job) -> Result<Job, StoreError> {
        if let Some(fence) = &self.fence {
            if !fence.valid() {
                return Err(StoreError::Fenced(format!(
                    "the lease of '{}' ran out on node '{}'",
                    fence.key, fence.node
                )));
            }
            job.fence = Some(fence.clone());
        }
        Ok(job)
    }

    /// Appends a job and waits until it is committed (or failed).
    pub async fn append(&self, job: Job) -> Result<Vec<Committed>, StoreError> {
        let job = self.stamp(job)?;
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send((job, Some(tx)))
            .await
            .map_err(|_| StoreError::Closed)?;
        let answer = rx.await.map_err(|_| StoreError::Closed)?;
        if let (Err(StoreError::Fenced(_)), Some(fence)) = (&answer, &self.fence) {
            // The database says the lease is gone: so does this node now.
            fence.revoke();
        }
        answer
    }

    /// Queues a job and returns once it is queued; the receiver tells how the
    /// commit went. Lets a producer keep several batches in flight.
    pub async fn submit(
        &self,
        job: Job,
    ) -> Result<oneshot::Receiver<Result<Vec<Committed>, StoreError>>, StoreError> {
        let job = self.stamp(job)?;
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send((job, Some(tx)))
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn stats(&self) -> &LogStats {
        &self.stats
    }
}

async fn run(
    store: Store,
    hub: Arc<dyn Publish>,
    mut rx: mpsc::Receiver<(Job, Option<Reply>)>,
    shutdown: CancellationToken,
    stats: Arc<LogStats>,
) {
    let mut jobs: Vec<Job> = Vec::new();
    let mut replies: Vec<Option<Reply>> = Vec::new();
    // The newest id handed to the hub; nothing up to it is ever skipped.
    let mut published = hub.last_published();
    loop {
        let first = tokio::select! {
            biased;
            job = rx.recv() => job,
            _ = shutdown.cancelled() => {
                // No new jobs; the ones already queued still commit below.
                rx.close();
                rx.recv().await
            }
        };
        let Some((job, reply)) = first else { break };
        let mut events = job.events.len();
        jobs.push(job);
        replies.push(reply);
        while events < MAX_BATCH_EVENTS {
            match rx.try_recv() {
                Ok((job, reply)) => {
                    events += job.events.len();
                    jobs.push(job);
                    replies.push(reply);
                }
                Err(_) => break,
            }
        }

        let result = match store.commit(&jobs, Isolation::Batch).await {
            // Not an outage: something one job holds. Each job in its own
            // savepoint finds which; the others still commit.
            Err(err) if !err.is_outage() => {
                stats.isolated_batches.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    error = %err.report(),
                    jobs = jobs.len(),
                    "a batch failed on what one of its jobs holds; committing each job on its own"
                );
                store.commit(&jobs, Isolation::PerJob).await
            }
            other => other,
        };
        match result {
            Ok(batch) => {
                if stats.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("the database accepts commits again");
                }
                stats.batches.fetch_add(1, Ordering::Relaxed);
                stats
                    .events
                    .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
                stats
                    .largest_batch
                    .fetch_max(batch.events.len() as u64, Ordering::Relaxed);
                // Committed events nobody published (a commit whose answer
                // was lost in an outage, or another writer) go out first.
                if batch.previous_head > published && !hub.fills_gaps() {
                    publish_missed(&store, hub.as_ref(), published, batch.previous_head).await;
                }
                // Visible only now that it is durable.
                hub.publish_batch(batch.previous_head, &batch.events);
                if let Some(last) = batch.events.last() {
                    published = last.id;
                } else {
                    published = published.max(batch.previous_head);
                }
                for (reply, outcome) in replies.drain(..).zip(batch.outcomes) {
                    if let Some(reply) = reply {
                        let _ = reply.send(outcome);
                    }
                }
            }
            Err(err) => {
                stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                if !stats.failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(error = %err.report(), "committing to the event log failed");
                }
                for reply in replies.drain(..).flatten() {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
        jobs.clear();
    }
    tracing::debug!("event log writer stopped");
}

/// Publishes the committed events with ids in `(after, through]` that were
/// never published, reading them back from the log.
async fn publish_missed(store: &Store, hub: &dyn Publish, after: i64, through: i64) {
    tracing::warn!(
        after,
        through,
        "publishing events whose commit was not confirmed at the time"
    );
    let mut cursor = after;
    while cursor < through {
        let query = LogQuery {
            after_id: cursor,
            instances: None,
            topics: TopicSet::all(),
            limit: (through - cursor).min(MAX_BATCH_EVENTS as i64),
        };
        match store.read_events(&query).await {
            Ok(events) if !events.is_empty() => {
                let events: Vec<_> = events.into_iter().filter(|e| e.id <= through).collect();
                cursor = events.last().map_or(through, |e| e.id);
                hub.publish(&events);
            }
            // Nothing left in the range: it was deleted meanwhile.
            Ok(_) => return,
            Err(err) => {
                // Every consumer goes back to the log, where the events are,
                // rather than skip them.
                tracing::error!(error = %err.report(), "could not read back unpublished events; all consumers catch up from the log");
                hub.resync_all();
                return;
            }
        }
    }
}
