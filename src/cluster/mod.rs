//! A cluster: several nodes on one PostgreSQL, each instance driven by
//! exactly one of them (invariant 3), every event seen on every node.
//!
//! - Here: [`Cluster`], the lease loop. Every `renew_secs` a node beats its
//!   heartbeat, reads the live nodes and the instances, works out which
//!   instances (and webhooks) it should hold ([`placement`]: pinned ones to
//!   their node, the rest by rendezvous hashing over live nodes), acquires
//!   or renews those leases, and hands over the ones it should no longer
//!   hold after stopping their drivers. A lease it cannot renew in time (by
//!   its own monotonic clock) stops its driver before the database would
//!   let another node take it.
//! - `store::Fence` (in the store, which checks it): what every write of a
//!   driver carries, checked in the write's own transaction.
//! - [`tailer`]: the log tailed by id into this node's hub.
//!
//! On SQLite there is no cluster: one process owns the data directory, and
//! its drivers run unfenced ([`crate::instance::supervisor::Permit::Always`]).

mod commands;
pub mod placement;
pub mod tailer;

pub use commands::{Answerer, Asked, CommandError, Forwarded, RemoteCall, RemoteError};

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::{sync::Notify, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    config::ClusterSettings,
    domain::InstanceName,
    event::{
        data::{ConnectionData, ConnectionInfo, ConnectionState, Payload},
        format_timestamp, Event, Topic,
    },
    instance::{supervisor::Permit, Registry},
    store::{EventLog, Fence, Job, Store, StoreError},
    webhook::Webhooks,
};

/// Follows what every node commits, as the tailer publishes it: a text
/// queued through any node wakes the driver that sends it (if it runs
/// here), and an instance created, changed or deleted anywhere runs a
/// renew early (`wake`), so this node's registry and leases follow. An
/// instance deleted anywhere has its credentials revoked here before the
/// hub sees anything after its deletion.
pub fn observe(events: &[Event], wake: &Notify, registry: Option<&Registry>) {
    #[derive(serde::Deserialize)]
    struct Status<'a> {
        #[serde(borrow)]
        status: Option<&'a str>,
        /// Set on a text sent to a pool (its event is tagged with the
        /// pool's name, which no driver answers to).
        #[serde(default, borrow)]
        pool: Option<&'a str>,
    }
    #[derive(serde::Deserialize)]
    struct State {
        state: ConnectionState,
    }
    #[derive(serde::Deserialize)]
    struct Lifecycle {
        action: crate::event::data::InstanceAction,
        instance: Identity,
    }
    #[derive(serde::Deserialize)]
    struct Identity {
        id: Option<uuid::Uuid>,
    }
    for event in events {
        match event.topic {
            Topic::Instance => {
                if let (Ok(data), Some(registry)) = (
                    serde_json::from_str::<Lifecycle>(event.data.get()),
                    registry,
                ) {
                    if let (crate::event::data::InstanceAction::Deleted, Some(id)) =
                        (data.action, data.instance.id)
                    {
                        registry.revoke(&event.instance, id);
                    }
                }
                wake.notify_one();
            }
            Topic::Connection => {
                if let (Ok(data), Some(registry)) =
                    (serde_json::from_str::<State>(event.data.get()), registry)
                {
                    registry.observe_state(&event.instance, data.state);
                }
            }
            Topic::Delivery => {
                let Ok(data) = serde_json::from_str::<Status>(event.data.get()) else {
                    continue;
                };
                match (data.status == Some("queued"), data.pool, registry) {
                    (true, Some(_), Some(registry)) => registry.wake_pool(&event.instance),
                    (true, None, Some(registry)) => registry.outbox_ready(&event.instance),
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

/// What a webhook's lease key starts with (instance names cannot hold ':').
const WEBHOOK_KEY: &str = "webhook:";

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ClusterStats {
    pub nodes_alive: AtomicU64,
    pub leases_held: AtomicU64,
    pub acquisitions: AtomicU64,
    pub losses: AtomicU64,
}

/// A node as `GET /cluster/nodes` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    pub id: String,
    /// `cluster.advertise_url` of that node; may be empty.
    pub address: String,
    pub version: String,
    pub started_at: String,
    pub last_heartbeat: String,
    /// Its heartbeat is within the lease TTL.
    pub alive: bool,
    /// The instances it holds the lease of.
    pub instances: Vec<String>,
}

pub struct Cluster {
    node: Arc<str>,
    settings: ClusterSettings,
    store: Store,
    log: EventLog,
    registry: Arc<Registry>,
    webhooks: Arc<Webhooks>,
    /// The leases this node holds, by key.
    held: Mutex<HashMap<String, Fence>>,
    /// Who holds each instance's lease, as of the last tick.
    owners: Mutex<HashMap<String, String>>,
    /// Pinned instances whose node is down and that this node already said
    /// so for (one `connection` event, not one per tick).
    reported_down: Mutex<HashSet<InstanceName>>,
    stats: ClusterStats,
    /// Runs a renew early: an instance was created, changed or deleted on
    /// some node (seen in the log by the tailer).
    wake: Arc<Notify>,
    /// Runs the commands that answer (see [`commands`]); set once the
    /// service exists.
    answerer: std::sync::OnceLock<Answerer>,
}

impl Cluster {
    pub fn new(
        settings: ClusterSettings,
        store: Store,
        log: EventLog,
        registry: Arc<Registry>,
        webhooks: Arc<Webhooks>,
        wake: Arc<Notify>,
    ) -> anyhow::Result<Arc<Cluster>> {
        let node = if settings.node_id.is_empty() {
            let host = nix::unistd::gethostname()
                .map_err(|e| anyhow::anyhow!("while reading the hostname: {e}"))?;
            host.to_string_lossy().into_owned()
        } else {
            settings.node_id.clone()
        };
        webhooks.require_leases(wake.clone());
        Ok(Arc::new(Cluster {
            node: node.into(),
            settings,
            store,
            log,
            registry,
            webhooks,
            held: Mutex::default(),
            owners: Mutex::default(),
            reported_down: Mutex::default(),
            stats: ClusterStats::default(),
            wake,
            answerer: std::sync::OnceLock::new(),
        }))
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Runs a renew now (an instance was created here: its lease is
    /// taken without waiting for the tailer or the next renew).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn stats(&self) -> &ClusterStats {
        &self.stats
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(self.settings.lease_ttl_secs)
    }

    fn renew(&self) -> Duration {
        Duration::from_secs(self.settings.renew_secs)
    }

    /// The node holding the instance's lease, as of the last renew.
    pub fn owner(&self, name: &InstanceName) -> Option<String> {
        self.owners.lock().get(name.as_str()).cloned()
    }

    /// Every node that has a row, with the instances each holds.
    pub async fn nodes(&self) -> Result<Vec<NodeView>, StoreError> {
        let ttl_ms = self.ttl().as_millis() as i64;
        let nodes = self.store.nodes(ttl_ms).await?;
        let leases = self.store.leases().await?;
        Ok(nodes
            .into_iter()
            .map(|node| NodeView {
                instances: leases
                    .iter()
                    .filter(|l| l.live && l.node == node.id && !l.key.starts_with(WEBHOOK_KEY))
                    .map(|l| l.key.clone())
                    .collect(),
                id: node.id,
                address: node.address,
                version: node.version,
                started_at: format_timestamp(node.started_at),
                last_heartbeat: format_timestamp(node.heartbeat_at),
                alive: node.alive,
            })
            .collect())
    }

    /// Runs the lease loop. Once `draining` is cancelled (the server is
    /// shutting down) it takes nothing new and only renews what it holds,
    /// so a driver finishing its last send still records it under a valid
    /// lease; it ends at `stop`, cancelled once the drivers have stopped,
    /// and [`Cluster::leave`] then gives the leases up.
    pub async fn run(self: Arc<Self>, draining: CancellationToken, stop: CancellationToken) {
        let mut first = true;
        loop {
            // The local deadlines come first: a node waking from a pause
            // stops what it may no longer drive before anything else.
            self.drop_expired().await;
            if stop.is_cancelled() {
                break;
            }
            let renewed = if draining.is_cancelled() {
                self.renew_held().await
            } else {
                self.tick(first).await
            };
            match renewed {
                Ok(()) => first = false,
                Err(err) => {
                    tracing::warn!(node = %self.node, error = %err.report(), "cluster renew failed; leases not renewed in time will stop their drivers")
                }
            }
            let next = self
                .held
                .lock()
                .values()
                .map(Fence::until)
                .fold(Instant::now() + self.renew(), Instant::min);
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(next) => {}
                _ = self.wake.notified(), if !draining.is_cancelled() => {}
                _ = draining.cancelled(), if !draining.is_cancelled() => {}
            }
        }
        tracing::debug!(node = %self.node, "lease loop stopped");
    }

    /// A renew while shutting down: the heartbeat and the leases already
    /// held, nothing placed or taken.
    async fn renew_held(&self) -> Result<(), StoreError> {
        self.beat(false).await?;
        let held: Vec<String> = self.held.lock().keys().cloned().collect();
        for key in &held {
            self.acquire(key).await?;
        }
        Ok(())
    }

    /// One renew: heartbeat, placement, acquire, hand over.
    async fn tick(&self, first: bool) -> Result<(), StoreError> {
        self.beat(first).await?;
        let ttl_ms = self.ttl().as_millis() as i64;
        let nodes = self.store.nodes(ttl_ms).await?;
        let mut live: Vec<String> = nodes
            .iter()
            .filter(|n| n.alive)
            .map(|n| n.id.clone())
            .collect();
        if !live.iter().any(|n| **n == *self.node) {
            live.push(self.node.to_string());
        }
        self.stats
            .nodes_alive
            .store(live.len() as u64, Ordering::Relaxed);

        let rows = self.store.load_instances().await?;
        self.registry.reconcile(rows.clone()).await?;
        self.webhooks.reconcile().await?;

        let mut desired: Vec<String> = Vec::new();
        for row in &rows {
            match &row.node {
                Some(pin) if **pin == *self.node => desired.push(row.name.to_string()),
                Some(pin) if !live.contains(pin) => {
                    self.report_pinned_down(&row.name, pin, &live).await
                }
                Some(_) => {
                    self.reported_down.lock().remove(&row.name);
                }
                None => {
                    if placement::owner(row.name.as_str(), &live) == Some(&*self.node) {
                        desired.push(row.name.to_string());
                    }
                }
            }
        }
        for webhook in self.store.webhooks().await? {
            let key = format!("{WEBHOOK_KEY}{}", webhook.instance);
            if placement::owner(&key, &live) == Some(&*self.node) {
                desired.push(key);
            }
        }

        for key in &desired {
            self.acquire(key).await?;
        }
        // A lease taken while its instance was still being created here
        // (its row committed, its supervisor not yet registered), or kept
        // across a delete and a create of the same name, found no
        // supervisor to give the permit to: given now.
        let ungranted: Vec<(String, Fence)> = self
            .held
            .lock()
            .iter()
            .filter(|(key, fence)| {
                fence.valid()
                    && InstanceName::parse(key).is_ok_and(|n| self.registry.lacks_permit(&n))
            })
            .map(|(k, f)| (k.clone(), f.clone()))
            .collect();
        for (key, fence) in ungranted {
            tracing::debug!(node = %self.node, key, "lease held, permit given now");
            self.grant(&key, fence).await;
        }
        let surplus: Vec<(String, Fence)> = self
            .held
            .lock()
            .iter()
            .filter(|(key, _)| !desired.contains(key))
            .map(|(k, f)| (k.clone(), f.clone()))
            .collect();
        for (key, fence) in surplus {
            self.hand_over(&key, fence, &live).await;
        }

        let owners = self
            .store
            .leases()
            .await?
            .into_iter()
            .filter(|l| l.live && !l.key.starts_with(WEBHOOK_KEY))
            .map(|l| (l.key, l.node))
            .collect();
        *self.owners.lock() = owners;
        self.store.prune_commands().await?;
        self.stats
            .leases_held
            .store(self.held.lock().len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// This node's heartbeat (`first`: it just started).
    async fn beat(&self, first: bool) -> Result<(), StoreError> {
        let version = env!("CARGO_PKG_VERSION");
        self.store
            .heartbeat(&self.node, &self.settings.advertise_url, version, first)
            .await
    }

    /// Takes or renews one lease.
    async fn acquire(&self, key: &str) -> Result<(), StoreError> {
        let held = self.held.lock().get(key).cloned();
        let ttl = self.ttl();
        // The deadline counts from before the request: the database's
        // expiry is at least TTL after this moment, so this node stops a
        // full renew interval before anyone else may start.
        let sent = Instant::now();
        let token = self
            .store
            .acquire_lease(
                key,
                &self.node,
                held.as_ref().map(|f| f.token),
                ttl.as_millis() as i64,
            )
            .await?;
        let until = sent + ttl.saturating_sub(self.renew());
        match (token, held) {
            (Some(token), Some(fence)) if fence.token == token && fence.valid() => {
                fence.extend(until);
            }
            (Some(token), old) => {
                if let Some(old) = old {
                    // Renewed too late or under a new token: the driver
                    // started under the old one stops first.
                    self.lose(key, old, "the lease was renewed under a new token")
                        .await;
                }
                let fence = Fence::new(key.to_owned(), self.node.clone(), token, until);
                self.held.lock().insert(key.to_owned(), fence.clone());
                self.stats.acquisitions.fetch_add(1, Ordering::Relaxed);
                tracing::info!(node = %self.node, key, token, "lease acquired");
                self.grant(key, fence).await;
            }
            (None, Some(fence)) => {
                self.lose(key, fence, "another node holds the lease").await;
            }
            (None, None) => {}
        }
        Ok(())
    }

    async fn grant(&self, key: &str, fence: Fence) {
        if let Some(instance) = key.strip_prefix(WEBHOOK_KEY) {
            if let Ok(name) = InstanceName::parse(instance) {
                if let Err(err) = self.webhooks.set_leased(&name, true).await {
                    tracing::warn!(instance, error = %err.report(), "cannot start the webhook yet");
                }
            }
        } else if let Ok(name) = InstanceName::parse(key) {
            let permit = Permit::Held {
                fence,
                enforce: self.settings.fencing,
            };
            self.registry.set_permit(&name, permit).await;
        }
    }

    /// Stops what ran under a lease this node no longer holds.
    async fn lose(&self, key: &str, fence: Fence, reason: &str) {
        fence.revoke();
        self.held.lock().remove(key);
        self.stats.losses.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(node = %self.node, key, token = fence.token, reason, "lease lost");
        self.stop_under(key, format!("lease lost: {reason}")).await;
    }

    async fn stop_under(&self, key: &str, reason: String) {
        if let Some(instance) = key.strip_prefix(WEBHOOK_KEY) {
            if let Ok(name) = InstanceName::parse(instance) {
                let _ = self.webhooks.set_leased(&name, false).await;
            }
        } else if let Ok(name) = InstanceName::parse(key) {
            self.registry
                .set_permit(&name, Permit::NotHeld(reason))
                .await;
        }
    }

    /// Stops every driver whose lease ran out by this node's clock.
    async fn drop_expired(&self) {
        let expired: Vec<(String, Fence)> = self
            .held
            .lock()
            .iter()
            .filter(|(_, fence)| !fence.valid())
            .map(|(k, f)| (k.clone(), f.clone()))
            .collect();
        for (key, fence) in expired {
            self.lose(&key, fence, "not renewed in time").await;
        }
    }

    /// Gives a lease to the node that should hold it now: the driver stops
    /// first (its last state still recorded under the lease), then the
    /// lease is expired at once so the other node need not wait.
    async fn hand_over(&self, key: &str, fence: Fence, live: &[String]) {
        let to = placement::owner(key.trim_start_matches(WEBHOOK_KEY), live)
            .unwrap_or("another node")
            .to_owned();
        self.stop_under(key, format!("handed over to node '{to}'"))
            .await;
        fence.revoke();
        self.held.lock().remove(key);
        if let Err(err) = self.store.release_lease(&fence).await {
            tracing::warn!(key, error = %err.report(), "could not release a lease; it expires on its own");
        }
        tracing::info!(node = %self.node, key, to, "lease handed over");
    }

    /// Says once that a pinned instance is down with its node. Of the live
    /// nodes, the one placement picks for the instance writes it, so it is
    /// written once however many nodes notice.
    async fn report_pinned_down(&self, name: &InstanceName, pin: &str, live: &[String]) {
        if placement::owner(name.as_str(), live) != Some(&*self.node) {
            return;
        }
        if !self.reported_down.lock().insert(name.clone()) {
            return;
        }
        let reason = format!("pinned to node '{pin}', which is down");
        let event = ConnectionData::new(
            ConnectionState::Disconnected,
            Some(reason.clone()),
            ConnectionInfo::default(),
        )
        .into_event(name);
        let job = Job {
            events: vec![event],
            changes: Vec::new(),
            fence: None,
        };
        if let Err(err) = self.log.append(job).await {
            self.reported_down.lock().remove(name);
            tracing::warn!(instance = %name, error = %err.report(), "could not record that the pinned node is down");
        }
    }

    /// Leaves the cluster on a graceful shutdown, after the lease loop
    /// ended: the node's row gone and, when every driver stopped
    /// (`drivers_stopped`), every lease expired at once, so the other nodes
    /// take over on their next renew instead of after the TTL. A driver
    /// that did not stop may still have a part in flight to the modem: its
    /// lease is left to run out, by which time the driver has given up on
    /// it (its own clock says so a renew interval before the database).
    pub async fn leave(&self, drivers_stopped: bool) {
        let held: Vec<Fence> = self.held.lock().drain().map(|(_, f)| f).collect();
        for fence in held {
            fence.revoke();
            if !drivers_stopped {
                tracing::warn!(key = %fence.key, "a driver did not stop in time; its lease is left to expire");
                continue;
            }
            if let Err(err) = self.store.release_lease(&fence).await {
                tracing::warn!(key = %fence.key, error = %err.report(), "could not release a lease");
            }
        }
        if let Err(err) = self.store.remove_node(&self.node).await {
            tracing::warn!(error = %err.report(), "could not remove this node's row");
        }
        tracing::info!(node = %self.node, "left the cluster");
    }
}
