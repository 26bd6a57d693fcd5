//! The registry: every instance of this node, its stored settings, its key
//! digest and its supervisor.
//!
//! The registry holds what is running, not what is decided: the service
//! layer commits a change first and then tells the registry, so the map
//! never shows something the log does not. The map is behind a plain mutex
//! that is only held to look up or swap entries, never across an `.await`.
//! A name being created is reserved in the map first (and one being deleted
//! stays marked until its deletion commits), so two concurrent requests for
//! one name cannot both succeed.
//!
//! Each instance also has an identity (its id) and a revocation signal:
//! credentials name the id, and deleting the instance fires the signal, so
//! every stream opened with its key or tokens ends, and none of them can
//! see a later instance that takes the same name.

use std::{collections::HashMap, sync::Arc};

use parking_lot::Mutex;
use serde::Serialize;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use uuid::Uuid;

use super::supervisor::{Permit, Supervisor};
use crate::{
    config::ModemSettings,
    domain::{
        key::{parse_digest, KeyDigest},
        DriverConfig, InstanceName, InstanceRef, InstanceSettings, Retention,
    },
    event::{data::ConnectionState, format_timestamp},
    hub::Hub,
    modem::Command,
    store::{EventLog, InstanceRow, StoreError},
};

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("instance '{0}' not found")]
    NotFound(InstanceName),
    #[error("{0}")]
    Conflict(String),
}

/// An instance as the API shows it: no secrets.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    pub instance_name: InstanceName,
    pub instance_id: Uuid,
    pub driver: DriverConfig,
    /// `connecting`, `open` or `close`.
    pub status: &'static str,
    pub created_at: String,
    /// The node it is pinned to, if any.
    pub node: Option<String>,
    /// The node driving it (in a cluster; filled in by the service).
    pub owner: Option<String>,
}

impl InstanceView {
    pub fn of(row: &InstanceRow, state: ConnectionState) -> InstanceView {
        InstanceView {
            instance_name: row.name.clone(),
            instance_id: row.id,
            driver: row.driver.clone(),
            status: state.evolution_name(),
            created_at: format_timestamp(row.created_at),
            node: row.node.clone(),
            owner: None,
        }
    }
}

enum Slot {
    /// Reserved while its creation commits.
    Creating,
    /// Stopped while its deletion commits.
    Deleting,
    Ready {
        row: Box<InstanceRow>,
        supervisor: Supervisor,
    },
}

pub struct Registry {
    instances: Mutex<HashMap<InstanceName, Slot>>,
    /// Instance key digests, so a presented key finds its instance. An entry
    /// lives exactly as long as its instance: deleting one revokes its key.
    keys: Mutex<HashMap<KeyDigest, InstanceRef>>,
    /// Each instance's id and the signal fired when it is deleted, which
    /// ends the streams opened with its credentials.
    identities: Mutex<HashMap<InstanceName, (uuid::Uuid, CancellationToken)>>,
    log: EventLog,
    hub: Arc<Hub>,
    settings: ModemSettings,
    /// Where each instance's driver keeps direct PDUs until they commit
    /// (`<id>.pdus`); `None` keeps them in memory.
    spool_dir: Option<std::path::PathBuf>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// In a cluster an instance's driver runs only while this node holds
    /// its lease ([`Permit`]); a single node drives every instance.
    clustered: bool,
    /// Each instance's outbox wake-up, shared with every driver so a
    /// member that took a pool message can wake the member whose turn
    /// comes next (see `modem::MemberWaker`).
    bells: Arc<Mutex<HashMap<InstanceName, Arc<tokio::sync::Notify>>>>,
}

/// A name held while its creation commits; dropping it unreserves the name.
pub struct Reservation<'a> {
    registry: &'a Registry,
    name: InstanceName,
    filled: bool,
}

impl Reservation<'_> {
    /// Registers the committed instance and starts its actor.
    pub fn fill(mut self, row: InstanceRow) -> InstanceView {
        self.filled = true;
        self.registry.insert(row, ConnectionState::Connecting)
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.filled {
            let mut instances = self.registry.instances.lock();
            if matches!(instances.get(&self.name), Some(Slot::Creating)) {
                instances.remove(&self.name);
            }
        }
    }
}

impl Registry {
    pub fn new(
        log: EventLog,
        hub: Arc<Hub>,
        settings: ModemSettings,
        spool_dir: Option<std::path::PathBuf>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
        clustered: bool,
    ) -> Registry {
        Registry {
            clustered,
            instances: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
            identities: Mutex::new(HashMap::new()),
            log,
            hub,
            settings,
            spool_dir,
            shutdown,
            tracker,
            bells: Arc::default(),
        }
    }

    /// Loads the stored instances and starts the enabled ones.
    pub async fn load(&self) -> Result<usize, StoreError> {
        let rows = self.log.store().load_instances().await?;
        let count = rows.len();
        for row in rows {
            self.insert(row, ConnectionState::Disconnected);
        }
        Ok(count)
    }

    /// Holds `name` for a creation, or says why it cannot be created.
    pub fn reserve(&self, name: &InstanceName) -> Result<Reservation<'_>, RegistryError> {
        let mut instances = self.instances.lock();
        if instances.contains_key(name) {
            return Err(RegistryError::Conflict(format!(
                "instance '{name}' already exists"
            )));
        }
        instances.insert(name.clone(), Slot::Creating);
        Ok(Reservation {
            registry: self,
            name: name.clone(),
            filled: false,
        })
    }

    fn insert(&self, row: InstanceRow, state: ConnectionState) -> InstanceView {
        let identity = InstanceRef {
            name: row.name.clone(),
            id: row.id,
        };
        {
            // An instance brought back after a failed deletion keeps its
            // signal, so the streams it already has stay revocable.
            let mut identities = self.identities.lock();
            let kept = identities
                .get(&row.name)
                .is_some_and(|(id, signal)| *id == row.id && !signal.is_cancelled());
            if !kept {
                identities.insert(row.name.clone(), (row.id, CancellationToken::new()));
            }
        }
        match parse_digest(&row.key_hash) {
            Some(digest) => {
                self.keys.lock().insert(digest, identity);
            }
            None => {
                tracing::error!(instance = %row.name, "stored key hash is malformed; the instance key will not work")
            }
        }
        self.hub.set_websocket(&row.name, row.websocket);
        let view = InstanceView::of(&row, state);
        let supervisor = self.spawn_supervisor(&row);
        self.instances.lock().insert(
            row.name.clone(),
            Slot::Ready {
                row: Box::new(row),
                supervisor,
            },
        );
        view
    }

    /// Stops an instance's actor ahead of its deletion; the name stays
    /// taken (and its key valid) until [`Registry::forget`] or
    /// [`Registry::reattach`].
    pub async fn detach(&self, name: &InstanceName) -> Result<InstanceRow, RegistryError> {
        let (row, supervisor) = {
            let mut instances = self.instances.lock();
            match instances.get(name) {
                Some(Slot::Ready { .. }) => {}
                Some(Slot::Creating | Slot::Deleting) => {
                    return Err(RegistryError::Conflict(format!(
                        "instance '{name}' is being created or deleted"
                    )))
                }
                None => return Err(RegistryError::NotFound(name.clone())),
            }
            match instances.insert(name.clone(), Slot::Deleting) {
                Some(Slot::Ready { row, supervisor }) => (row, supervisor),
                _ => unreachable!("checked above under the same lock"),
            }
        };
        let _ = supervisor.stop().await;
        Ok(*row)
    }

    /// Brings back a detached instance whose deletion did not commit.
    pub fn reattach(&self, row: InstanceRow) {
        self.insert(row, ConnectionState::Disconnected);
    }

    /// Drops a deleted instance: its name, key and stream settings, and
    /// revokes every credential issued for it (its open streams end).
    pub fn forget(&self, name: &InstanceName) {
        // Revoked before the name is free, so nothing of a later instance
        // with this name is published before the old streams know.
        if let Some((id, signal)) = self.identities.lock().remove(name) {
            signal.cancel();
            // Its actor has stopped: what it spooled belongs to nothing now.
            if let Some(path) = self.spool_path(id) {
                if let Err(err) = std::fs::remove_file(&path) {
                    if err.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(instance = %name, error = %err, "could not remove the deleted instance's spool");
                    }
                }
            }
        }
        self.keys
            .lock()
            .retain(|_, identity| &identity.name != name);
        self.instances.lock().remove(name);
        self.bells.lock().remove(name);
        self.hub.forget_instance(name);
    }

    /// Revokes every credential issued for the instance `id` while it is
    /// the one called `name`: another node deleted it, and this node's
    /// streams must end before anything of a namesake reaches them (the
    /// rest of it is forgotten when the instance list is next reconciled).
    pub fn revoke(&self, name: &InstanceName, id: uuid::Uuid) {
        if let Some((held, signal)) = self.identities.lock().get(name) {
            if *held == id {
                signal.cancel();
            }
        }
    }

    /// The instance a presented key's digest belongs to.
    pub fn instance_for_key(&self, digest: &KeyDigest) -> Option<InstanceRef> {
        self.keys.lock().get(digest).cloned()
    }

    /// The id of the instance now called `name`.
    pub fn id_of(&self, name: &InstanceName) -> Option<uuid::Uuid> {
        self.identities.lock().get(name).map(|(id, _)| *id)
    }

    /// The signal fired when the instance `identity` names is deleted;
    /// `None` when it already was (or the name now belongs to another).
    pub fn revocation(&self, identity: &InstanceRef) -> Option<CancellationToken> {
        match self.identities.lock().get(&identity.name) {
            Some((id, signal)) if *id == identity.id && !signal.is_cancelled() => {
                Some(signal.clone())
            }
            _ => None,
        }
    }

    pub fn get(&self, name: &InstanceName) -> Option<InstanceView> {
        match self.instances.lock().get(name)? {
            Slot::Ready { row, supervisor } => Some(InstanceView::of(row, supervisor.state())),
            Slot::Creating | Slot::Deleting => None,
        }
    }

    pub fn list(&self) -> Vec<InstanceView> {
        let mut views: Vec<InstanceView> = self
            .instances
            .lock()
            .values()
            .filter_map(|slot| match slot {
                Slot::Ready { row, supervisor } => Some(InstanceView::of(row, supervisor.state())),
                Slot::Creating | Slot::Deleting => None,
            })
            .collect();
        views.sort_by(|a, b| a.instance_name.cmp(&b.instance_name));
        views
    }

    /// A copy of the instance's stored settings.
    pub fn row(&self, name: &InstanceName) -> Result<InstanceRow, RegistryError> {
        match self.instances.lock().get(name) {
            Some(Slot::Ready { row, .. }) => Ok((**row).clone()),
            _ => Err(RegistryError::NotFound(name.clone())),
        }
    }

    /// Applies a committed change of settings to the running instance.
    pub fn update(&self, name: &InstanceName, change: impl FnOnce(&mut InstanceRow)) {
        let mut instances = self.instances.lock();
        if let Some(Slot::Ready { row, .. }) = instances.get_mut(name) {
            change(row);
            self.hub.set_websocket(name, row.websocket);
        }
    }

    /// The instance's settings (`settings/find`).
    pub fn settings(&self, name: &InstanceName) -> Result<InstanceSettings, RegistryError> {
        match self.instances.lock().get(name) {
            Some(Slot::Ready { row, .. }) => Ok(row.settings.clone()),
            _ => Err(RegistryError::NotFound(name.clone())),
        }
    }

    /// Applies committed settings to the instance and its running driver.
    pub fn set_settings(&self, name: &InstanceName, settings: InstanceSettings) {
        if let Some(Slot::Ready { row, supervisor }) = self.instances.lock().get_mut(name) {
            supervisor.set_settings(settings.clone());
            row.settings = settings;
        }
    }

    pub fn supervisor(&self, name: &InstanceName) -> Result<Supervisor, RegistryError> {
        match self.instances.lock().get(name) {
            Some(Slot::Ready { supervisor, .. }) => Ok(supervisor.clone()),
            _ => Err(RegistryError::NotFound(name.clone())),
        }
    }

    /// The instance's own number: configured (or derived, for the
    /// simulator), else what the modem reported (`AT+CNUM`), else the
    /// instance name.
    pub fn own_number(&self, name: &InstanceName) -> Option<String> {
        match self.instances.lock().get(name)? {
            Slot::Ready { row, supervisor } => row
                .driver
                .configured_number(name)
                .or_else(|| supervisor.reported_number())
                .or_else(|| Some(name.to_string())),
            Slot::Creating | Slot::Deleting => None,
        }
    }

    pub fn command(&self, name: &InstanceName, command: Command) -> Result<bool, RegistryError> {
        Ok(self.supervisor(name)?.command(command))
    }

    pub fn outbox_ready(&self, name: &InstanceName) {
        if let Ok(supervisor) = self.supervisor(name) {
            supervisor.outbox_ready();
        }
    }

    /// Wakes the members of a pool that run here (a text was queued in it,
    /// maybe through another node). The members are read from the store in
    /// a task of its own, so the caller never waits on the database.
    pub fn wake_pool(&self, pool: &InstanceName) {
        let bells = self.bells.clone();
        let store = self.log.store().clone();
        let pool = pool.clone();
        self.tracker.spawn(async move {
            match store.pool(&pool).await {
                Ok(Some(row)) => {
                    let bells = bells.lock();
                    for member in &row.spec.members {
                        if let Some(bell) = bells.get(member) {
                            bell.notify_one();
                        }
                    }
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::debug!(pool = %pool, error = %err, "could not read a pool to wake its members");
                }
            }
        });
    }

    /// Gives or takes this node's right to drive an instance; returns once
    /// a driver that may no longer run has stopped.
    /// Whether the instance is ready here and its supervisor was not
    /// (yet) given a permit to drive it.
    pub fn lacks_permit(&self, name: &InstanceName) -> bool {
        matches!(
            self.instances.lock().get(name),
            Some(Slot::Ready { supervisor, .. }) if !supervisor.driving()
        )
    }

    pub async fn set_permit(&self, name: &InstanceName, permit: Permit) {
        if let Ok(supervisor) = self.supervisor(name) {
            let _ = supervisor.set_permit(permit).await;
        }
    }

    /// Notes the state an instance's latest `connection` event says (see
    /// [`Supervisor::observe_state`]).
    pub fn observe_state(&self, name: &InstanceName, state: ConnectionState) {
        if let Some(Slot::Ready { supervisor, .. }) = self.instances.lock().get(name) {
            supervisor.observe_state(state);
        }
    }

    /// Every ready instance's stored row, by name.
    pub fn rows(&self) -> Vec<InstanceRow> {
        let mut rows: Vec<InstanceRow> = self
            .instances
            .lock()
            .values()
            .filter_map(|slot| match slot {
                Slot::Ready { row, .. } => Some((**row).clone()),
                Slot::Creating | Slot::Deleting => None,
            })
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        rows
    }

    /// Brings the registry in line with the stored instances, as another
    /// node may have created, changed or deleted them: new ones are added
    /// (their drivers wait for a lease), deleted ones forgotten, and
    /// changed settings applied. Names being created or deleted here are
    /// left to the request doing it.
    pub async fn reconcile(&self, stored: Vec<InstanceRow>) -> Result<(), StoreError> {
        let stored: HashMap<InstanceName, InstanceRow> =
            stored.into_iter().map(|r| (r.name.clone(), r)).collect();
        let mut gone = Vec::new();
        let mut added = Vec::new();
        let mut changed = Vec::new();
        {
            let instances = self.instances.lock();
            for (name, slot) in instances.iter() {
                if let Slot::Ready { row, supervisor } = slot {
                    match stored.get(name) {
                        Some(new) if new.id == row.id => {
                            if new.enabled != row.enabled
                                || new.driver != row.driver
                                || new.websocket != row.websocket
                                || new.settings != row.settings
                                || new.retention != row.retention
                                || new.node != row.node
                            {
                                changed.push((new.clone(), (**row).clone(), supervisor.clone()));
                            }
                        }
                        // Missing, or deleted and created again under the
                        // same name: either way the instance held here is
                        // gone, and its credentials with it.
                        _ => gone.push((name.clone(), row.id)),
                    }
                }
            }
            for (name, row) in &stored {
                if !instances.contains_key(name) {
                    added.push(row.clone());
                }
            }
        }
        // The list may predate a change made here since: whatever looks
        // deleted or changed is read again before it is acted on.
        let store = self.log.store().clone();
        let mut fresh_gone = Vec::new();
        for (name, id) in gone {
            match store.load_instance(&name).await? {
                None => fresh_gone.push((name, id, None)),
                Some(new) if new.id != id => fresh_gone.push((name, id, Some(new))),
                Some(_) => {}
            }
        }
        let mut fresh_changed = Vec::new();
        for (_, old, supervisor) in changed {
            if let Some(new) = store.load_instance(&old.name).await? {
                if new.id == old.id {
                    fresh_changed.push((new, old, supervisor));
                }
            }
        }
        for (name, id, replacement) in fresh_gone {
            // Only the instance this list saw: one created here since is not
            // touched.
            if self.row(&name).ok().map(|row| row.id) != Some(id) {
                continue;
            }
            if let Ok(row) = self.detach(&name).await {
                tracing::info!(instance = %row.name, "instance deleted on another node");
            }
            self.forget(&name);
            if let Some(row) = replacement {
                added.push(row);
            }
        }
        for row in added {
            tracing::info!(instance = %row.name, "instance created on another node");
            self.insert(row, ConnectionState::Disconnected);
        }
        for (new, old, supervisor) in fresh_changed {
            let name = new.name.clone();
            let settings_changed = new.settings != old.settings;
            let driver_changed = new.driver != old.driver;
            let enabled = new.enabled;
            let enabled_changed = new.enabled != old.enabled;
            let settings = new.settings.clone();
            self.update(&name, |row| *row = new);
            if settings_changed {
                supervisor.set_settings(settings);
            }
            if enabled_changed && !enabled {
                let _ = supervisor.logout().await;
            } else if driver_changed {
                let _ = supervisor.restart().await;
            } else if enabled_changed {
                let _ = supervisor.connect().await;
            }
        }
        Ok(())
    }

    /// Every instance with its retention, for the pruner.
    pub fn retention_plan(&self) -> Vec<(InstanceName, Retention)> {
        self.instances
            .lock()
            .iter()
            .filter_map(|(name, slot)| match slot {
                Slot::Ready { row, .. } => Some((name.clone(), row.retention)),
                Slot::Creating | Slot::Deleting => None,
            })
            .collect()
    }

    /// The file an instance's driver spools direct PDUs in.
    fn spool_path(&self, id: uuid::Uuid) -> Option<std::path::PathBuf> {
        self.spool_dir
            .as_ref()
            .map(|dir| dir.join(format!("{id}.pdus")))
    }

    fn spawn_supervisor(&self, row: &InstanceRow) -> Supervisor {
        let permit = if self.clustered {
            Permit::NotHeld("waiting for its lease".into())
        } else {
            Permit::Always
        };
        let bells = self.bells.clone();
        let waker: crate::modem::MemberWaker = Arc::new(move |name: &InstanceName| {
            if let Some(bell) = bells.lock().get(name) {
                bell.notify_one();
            }
        });
        let supervisor = Supervisor::spawn(
            row,
            permit,
            self.log.clone(),
            self.settings.clone(),
            self.spool_path(row.id),
            self.shutdown.clone(),
            &self.tracker,
            waker,
        );
        self.bells
            .lock()
            .insert(row.name.clone(), supervisor.bell());
        supervisor
    }
}
