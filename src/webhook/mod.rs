//! Webhooks: each instance's events POSTed to a URL, one request per event,
//! in log order, never skipped.
//!
//! A worker per enabled webhook reads through a [`Feed`], so a receiver that
//! was down for an hour is caught up from the log when it is back, at its own
//! pace and with bounded memory. A failed delivery is retried with
//! exponential backoff until it succeeds; the cursor is persisted after each
//! delivery, so a server restart resends at most the event in flight
//! (delivery is at least once: receivers dedupe by the `id` in the body or
//! the `X-Switchboard-Id` header). Failures are visible in `webhook/find`
//! and in `/metrics`.
//!
//! With a secret, every request is signed ([`signature`]): a timestamp and
//! an HMAC-SHA256 of it and the body, so a receiver can tell our requests
//! from forgeries and replays.
//!
//! One answer stops the retries for good: 410 Gone, the receiver's way of
//! saying the endpoint is gone and will not come back. Deliveries stop,
//! the reason is kept (in `webhook/find`, in the store so a restart does
//! not knock again, and in `/metrics`), and setting the webhook again
//! resumes them from where they stopped. Every other status is retried:
//! 401, 403 and 404 usually mean a receiver being deployed or a credential
//! being rotated, which its owner fixes without telling us, and stopping
//! would hold the ordered stream until someone noticed.
//!
//! A webhook never reaches a non-public address unless the operator allowed
//! its network ([`target`]): every connection's addresses are checked after
//! DNS resolution, redirects are not followed, and what `lastError` says of
//! a failure does not tell a closed port from an open one.

pub mod signature;
pub mod target;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use parking_lot::Mutex;
use serde::Serialize;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    domain::InstanceName,
    event::{format_timestamp, Frame, TopicSet},
    hub::{
        feed::{Feed, FeedError, Start},
        Filter, Hub, InstanceFilter,
    },
    store::{Store, StoreError, WebhookRow},
};
pub use target::{Refused, Targets};

/// How long one delivery may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Backoff after a failed delivery: doubling from the first to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// What `webhook/find` shows about deliveries.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The id of the last event delivered (or filtered out).
    pub cursor: i64,
    pub delivered: u64,
    /// Failed attempts since the last success.
    pub consecutive_failures: u64,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<String>,
    pub last_success_at: Option<String>,
    pub next_retry_at: Option<String>,
    /// Why deliveries stopped for good; `None` while they go on.
    pub stopped: Option<String>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct WebhookStats {
    pub delivered: AtomicU64,
    pub failed_attempts: AtomicU64,
    /// Webhooks whose deliveries stopped for good (410 Gone).
    pub stopped: AtomicU64,
}

struct Worker {
    stop: CancellationToken,
    status: Arc<Mutex<Status>>,
}

/// Every webhook of this node and its worker.
pub struct Webhooks {
    workers: Mutex<HashMap<InstanceName, Worker>>,
    configs: Mutex<HashMap<InstanceName, WebhookRow>>,
    store: Store,
    hub: Arc<Hub>,
    client: reqwest::Client,
    /// Which addresses deliveries may reach.
    targets: Arc<Targets>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    stats: Arc<WebhookStats>,
    /// In a cluster, the instances whose webhook this node delivers (it
    /// holds the `webhook:<instance>` lease), so each event is delivered
    /// by one node; `None`: a single node delivers every webhook.
    leased: Mutex<Option<std::collections::HashSet<InstanceName>>>,
    /// Asks the cluster for a renew now: a webhook was set here that this
    /// node does not deliver yet (it may be the one to take its lease).
    lease_wanted: Mutex<Option<Arc<tokio::sync::Notify>>>,
}

impl Webhooks {
    pub fn new(
        store: Store,
        hub: Arc<Hub>,
        targets: Targets,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> anyhow::Result<Webhooks> {
        let targets = target::resolver(&targets);
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            // Every address a connection uses is checked once resolved...
            .dns_resolver(targets.clone())
            // ...and a redirect, which could lead anywhere, is a failure.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from the environment would resolve the receiver
            // itself, past the check.
            .no_proxy()
            .build()?;
        Ok(Webhooks {
            workers: Mutex::new(HashMap::new()),
            configs: Mutex::new(HashMap::new()),
            store,
            hub,
            client,
            targets,
            shutdown,
            tracker,
            stats: Arc::new(WebhookStats::default()),
            leased: Mutex::new(None),
            lease_wanted: Mutex::new(None),
        })
    }

    /// From now on, a webhook is delivered only while this node holds its
    /// lease ([`Webhooks::set_leased`]).
    pub fn require_leases(&self, lease_wanted: Arc<tokio::sync::Notify>) {
        *self.lease_wanted.lock() = Some(lease_wanted);
        let mut leased = self.leased.lock();
        if leased.is_none() {
            *leased = Some(Default::default());
        }
        drop(leased);
        let running: Vec<InstanceName> = self.workers.lock().keys().cloned().collect();
        for instance in running {
            if let Some(worker) = self.workers.lock().remove(&instance) {
                worker.stop.cancel();
            }
        }
    }

    /// Starts or stops delivering an instance's webhook as this node gains
    /// or loses its lease. A node that gains it continues from the cursor
    /// stored by the previous one.
    pub async fn set_leased(&self, instance: &InstanceName, held: bool) -> Result<(), StoreError> {
        if let Some(leased) = self.leased.lock().as_mut() {
            if held {
                leased.insert(instance.clone());
            } else {
                leased.remove(instance);
            }
        }
        if held {
            let row = self
                .store
                .webhooks()
                .await?
                .into_iter()
                .find(|row| &row.instance == instance);
            if let Some(row) = row {
                self.start(row);
            }
        } else if let Some(worker) = self.workers.lock().remove(instance) {
            worker.stop.cancel();
        }
        Ok(())
    }

    /// Applies webhooks set, changed or removed on other nodes.
    pub async fn reconcile(&self) -> Result<(), StoreError> {
        let stored = self.store.webhooks().await?;
        let same = |a: &WebhookRow, b: &WebhookRow| {
            WebhookRow {
                cursor: 0,
                ..a.clone()
            } == WebhookRow {
                cursor: 0,
                ..b.clone()
            }
        };
        for row in &stored {
            let known = self.config(&row.instance);
            if !known.is_some_and(|known| same(&known, row)) {
                self.start(row.clone());
            }
        }
        let gone: Vec<InstanceName> = self
            .configs
            .lock()
            .keys()
            .filter(|name| !stored.iter().any(|row| &row.instance == *name))
            .cloned()
            .collect();
        for name in gone {
            self.remove(&name);
        }
        Ok(())
    }

    /// Starts a worker for every stored, enabled webhook.
    pub async fn load(&self) -> Result<usize, StoreError> {
        let rows = self.store.webhooks().await?;
        let count = rows.len();
        for row in rows {
            self.start(row);
        }
        Ok(count)
    }

    /// Which addresses deliveries may reach, for checking a URL when it is set.
    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// Applies a new or changed webhook (already committed).
    pub fn start(&self, row: WebhookRow) {
        if let Some(old) = self.workers.lock().remove(&row.instance) {
            old.stop.cancel();
        }
        self.configs
            .lock()
            .insert(row.instance.clone(), row.clone());
        if !row.enabled {
            return;
        }
        if self
            .leased
            .lock()
            .as_ref()
            .is_some_and(|leased| !leased.contains(&row.instance))
        {
            // The node holding its lease delivers it (maybe this one, once
            // the cluster's next renew takes it).
            if let Some(wake) = self.lease_wanted.lock().as_ref() {
                wake.notify_one();
            }
            return;
        }
        let status = Arc::new(Mutex::new(Status {
            cursor: row.cursor,
            stopped: row.stopped.clone(),
            ..Status::default()
        }));
        let stop = self.shutdown.child_token();
        if row.stopped.is_some() {
            // Stopped for good before: it shows as such, and nothing runs
            // until the webhook is set again.
            stop.cancel();
            self.workers
                .lock()
                .insert(row.instance.clone(), Worker { stop, status });
            return;
        }
        self.workers.lock().insert(
            row.instance.clone(),
            Worker {
                stop: stop.clone(),
                status: status.clone(),
            },
        );
        let filter = Filter {
            instances: InstanceFilter::Only([row.instance.clone()].into()),
            topics: Some(row.events.unwrap_or_else(TopicSet::all_instance_topics)),
            allowed: TopicSet::all_instance_topics(),
            stream_settings: false,
        };
        let feed = Feed::new(
            self.hub.subscribe(filter),
            self.store.clone(),
            Start::After(row.cursor),
        );
        let delivery = Delivery {
            row,
            feed,
            client: self.client.clone(),
            targets: self.targets.clone(),
            store: self.store.clone(),
            status,
            stats: self.stats.clone(),
        };
        self.tracker.spawn(delivery.run(stop));
    }

    /// Stops and forgets an instance's webhook (the instance was deleted).
    pub fn remove(&self, instance: &InstanceName) {
        if let Some(worker) = self.workers.lock().remove(instance) {
            worker.stop.cancel();
        }
        self.configs.lock().remove(instance);
    }

    pub fn config(&self, instance: &InstanceName) -> Option<WebhookRow> {
        self.configs.lock().get(instance).cloned()
    }

    /// A webhook's delivery status: its worker's, or (where no worker runs:
    /// another cluster node delivers it) what the stored row says.
    pub fn status(&self, instance: &InstanceName) -> Option<Status> {
        let running = self
            .workers
            .lock()
            .get(instance)
            .map(|w| w.status.lock().clone());
        running.or_else(|| {
            self.config(instance).map(|row| Status {
                cursor: row.cursor,
                stopped: row.stopped,
                ..Status::default()
            })
        })
    }

    /// Where a webhook continues from: its worker's progress, if it has one.
    pub fn cursor(&self, instance: &InstanceName) -> Option<i64> {
        self.status(instance)
            .map(|s| s.cursor)
            .or_else(|| self.config(instance).map(|c| c.cursor))
    }

    pub fn stats(&self) -> &WebhookStats {
        &self.stats
    }

    /// Events not yet delivered, summed over webhooks (an upper bound: it
    /// counts by id, including events the filters skip).
    pub fn backlog(&self) -> u64 {
        let head = self.hub.last_published();
        self.workers
            .lock()
            .values()
            .map(|w| (head - w.status.lock().cursor).max(0) as u64)
            .sum()
    }
}

struct Delivery {
    row: WebhookRow,
    feed: Feed,
    client: reqwest::Client,
    targets: Arc<Targets>,
    store: Store,
    status: Arc<Mutex<Status>>,
    stats: Arc<WebhookStats>,
}

impl Delivery {
    async fn run(mut self, stop: CancellationToken) {
        tracing::info!(instance = %self.row.instance, "webhook delivery started");
        loop {
            let frame = tokio::select! {
                _ = stop.cancelled() => break,
                frame = self.feed.next() => frame,
            };
            match frame {
                Ok(frame) => {
                    if !self.deliver(&frame, &stop).await {
                        break;
                    }
                    if self.status.lock().stopped.is_some() {
                        break;
                    }
                }
                // A webhook's feed has no revocation: deleting its instance
                // stops the worker.
                Err(FeedError::Revoked) => break,
                Err(FeedError::CursorExpired { cursor, horizon }) => {
                    // Retention deleted events the receiver never got. The
                    // loss is recorded and delivery goes on from what is kept.
                    let message = format!(
                        "events {}..={horizon} were deleted by retention before delivery",
                        cursor + 1
                    );
                    tracing::error!(instance = %self.row.instance, %message, "webhook skipped events");
                    self.status.lock().last_error = Some(message);
                    self.feed = Feed::new(
                        self.feed
                            .subscription()
                            .hub()
                            .subscribe(self.feed.subscription().filter().clone()),
                        self.store.clone(),
                        Start::After(horizon),
                    );
                }
            }
        }
        tracing::debug!(instance = %self.row.instance, "webhook delivery stopped");
    }

    /// Delivers one event, retrying until it is accepted; `false` if asked
    /// to stop first.
    async fn deliver(&mut self, frame: &Frame, stop: &CancellationToken) -> bool {
        let mut backoff = BACKOFF_FIRST;
        loop {
            let now = chrono::Utc::now();
            let outcome = self.post(frame).await;
            {
                let mut status = self.status.lock();
                status.last_attempt_at = Some(format_timestamp(now));
                match &outcome {
                    Ok(()) => {
                        status.cursor = frame.id;
                        status.delivered += 1;
                        status.consecutive_failures = 0;
                        status.last_success_at = Some(format_timestamp(now));
                        status.next_retry_at = None;
                    }
                    Err(err) => {
                        status.consecutive_failures += 1;
                        status.last_error = Some(err.message().to_owned());
                        status.next_retry_at = Some(format_timestamp(
                            now + chrono::Duration::from_std(backoff).unwrap_or_default(),
                        ));
                    }
                }
            }
            let outcome = match outcome {
                Err(Failure::Gone(reason)) => {
                    self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    self.stop_for_good(frame.id, reason).await;
                    return true;
                }
                Err(Failure::Retry(err)) => Err(err),
                Ok(()) => Ok(()),
            };
            match outcome {
                Ok(()) => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    if let Err(err) = self
                        .store
                        .set_webhook_cursor(&self.row.instance, frame.id)
                        .await
                    {
                        // Only the stored progress lags; after a restart the
                        // receiver may see a few events twice.
                        tracing::warn!(instance = %self.row.instance, error = %err, "could not store webhook progress");
                    }
                    return true;
                }
                Err(err) => {
                    self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(instance = %self.row.instance, event = frame.id, error = %err, retry_in = ?backoff, "webhook delivery failed");
                    tokio::select! {
                        _ = stop.cancelled() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Stops deliveries for good: the receiver said it is gone.
    async fn stop_for_good(&mut self, event: i64, reason: String) {
        let reason = format!(
            "{reason} for event {event}: deliveries stopped (set the webhook again to resume from \
             this event)"
        );
        tracing::warn!(instance = %self.row.instance, %reason, "webhook stopped for good");
        self.stats.stopped.fetch_add(1, Ordering::Relaxed);
        {
            let mut status = self.status.lock();
            status.stopped = Some(reason.clone());
            status.next_retry_at = None;
        }
        if let Err(err) = self
            .store
            .set_webhook_stopped(&self.row.instance, &reason)
            .await
        {
            // After a restart it is tried once more, and stops again.
            tracing::warn!(instance = %self.row.instance, error = %err, "could not store that a webhook stopped");
        }
    }

    async fn post(&self, frame: &Frame) -> Result<(), Failure> {
        // A URL naming an address is never resolved, so it is checked here
        // (names are checked by the resolver, on every connection).
        let url = reqwest::Url::parse(&self.row.url)
            .map_err(|_| Failure::Retry(GENERIC_FAILURE.to_owned()))?;
        self.targets
            .check_url(&url)
            .map_err(|refused| Failure::Retry(refused.to_string()))?;
        let mut request = self
            .client
            .post(&self.row.url)
            .header("Content-Type", "application/json")
            .header("X-Switchboard-Event", frame.topic.kind().as_str())
            .header("X-Switchboard-Id", frame.id.to_string())
            .header("X-Switchboard-Instance", self.row.instance.as_str());
        for (name, value) in &self.row.headers {
            request = request.header(name, value);
        }
        let body = frame.json.as_bytes().to_vec();
        if let Some(secret) = &self.row.secret {
            // The configured headers cannot replace the signature.
            let timestamp = chrono::Utc::now().timestamp();
            request = request
                .header(signature::TIMESTAMP_HEADER, timestamp.to_string())
                .header(
                    signature::SIGNATURE_HEADER,
                    signature::sign(secret, timestamp, &body),
                );
        }
        let response = request
            .body(body)
            .send()
            .await
            // The error names the failure, never the URL (it may carry a
            // secret) or the configured headers.
            .map_err(|err| Failure::Retry(describe(&err)))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status == reqwest::StatusCode::GONE {
            Err(Failure::Gone(format!("the receiver answered {status}")))
        } else if status.is_redirection() {
            Err(Failure::Retry(format!(
                "the receiver answered {status}; webhooks do not follow redirects, so set the final URL"
            )))
        } else {
            Err(Failure::Retry(format!("the receiver answered {status}")))
        }
    }
}

/// Why a delivery failed, by what happens next.
enum Failure {
    /// Tried again after a backoff.
    Retry(String),
    /// Never tried again (410 Gone): deliveries stop.
    Gone(String),
}

impl Failure {
    fn message(&self) -> &str {
        match self {
            Failure::Retry(message) | Failure::Gone(message) => message,
        }
    }
}

/// What a delivery that got no HTTP answer says, whatever the cause: a
/// refused connection, a timeout, a reset, TLS or protocol trouble. One
/// text for all, so `lastError` cannot be used to scan ports (a closed port
/// refuses at once, an open one that speaks something else fails later).
const GENERIC_FAILURE: &str =
    "no HTTP answer from the receiver (unreachable, refused, timed out or not HTTP)";

fn describe(err: &reqwest::Error) -> String {
    // The resolver's refusal is the one cause worth naming: it says which
    // rule applies, not whether anything listens.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return refused.to_string();
        }
        source = cause.source();
    }
    GENERIC_FAILURE.to_owned()
}
