//! The registry: every instance of this node, its stored settings and its
//! supervisor.
//!
//! The map is behind a plain mutex that is only held to look up or swap
//! entries, never across an `.await`. A name being created is reserved in the
//! map first, so two concurrent creates of one name cannot both succeed.

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::Utc;
use parking_lot::Mutex;
use serde::Serialize;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use uuid::Uuid;

use super::{supervisor::Supervisor, InstanceName};
use crate::{
    auth::{self, KeyRing},
    config::{InstanceSeed, ModemSettings},
    event::data::{ConnectionState, InstanceAction, InstanceData, Payload},
    hub::Hub,
    modem::{Command, DriverConfig},
    store::{Change, EventLog, InstanceRow, Job, Retention, StoreError, WebsocketSettings},
};

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("instance '{0}' not found")]
    NotFound(InstanceName),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for RegistryError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(msg) => RegistryError::Conflict(msg),
            other => RegistryError::Store(other),
        }
    }
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
}

enum Slot {
    /// Reserved while its creation commits.
    Creating,
    Ready {
        row: Box<InstanceRow>,
        supervisor: Supervisor,
    },
}

pub struct Registry {
    instances: Mutex<HashMap<InstanceName, Slot>>,
    log: EventLog,
    hub: Arc<Hub>,
    keys: Arc<KeyRing>,
    settings: ModemSettings,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Registry {
    pub fn new(
        log: EventLog,
        hub: Arc<Hub>,
        keys: Arc<KeyRing>,
        settings: ModemSettings,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Registry {
        Registry {
            instances: Mutex::new(HashMap::new()),
            log,
            hub,
            keys,
            settings,
            shutdown,
            tracker,
        }
    }

    /// Loads the stored instances and starts the enabled ones.
    pub async fn load(&self) -> Result<usize, StoreError> {
        let rows = self.log.store().load_instances().await?;
        let count = rows.len();
        for row in rows {
            self.keys.add_instance(row.name.clone(), &row.key_hash);
            self.hub.set_websocket(&row.name, row.websocket);
            let supervisor = self.spawn_supervisor(&row);
            self.instances.lock().insert(
                row.name.clone(),
                Slot::Ready {
                    row: Box::new(row),
                    supervisor,
                },
            );
        }
        Ok(count)
    }

    /// Creates the configured instances that do not exist yet. Their keys are
    /// not shown: use the admin key, or delete and create one to get a key.
    pub async fn ensure(&self, seeds: &[InstanceSeed]) -> anyhow::Result<()> {
        for seed in seeds {
            let name = InstanceName::parse(&seed.name)
                .map_err(|e| anyhow::anyhow!("[[instances]]: {e}"))?;
            if self.instances.lock().contains_key(&name) {
                continue;
            }
            match self
                .create(name.clone(), seed.driver.clone(), Retention::default())
                .await
            {
                Ok(_) => tracing::info!(instance = %name, "created the configured instance"),
                Err(RegistryError::Conflict(_)) => {}
                Err(err) => {
                    anyhow::bail!("could not create the configured instance '{name}': {err}")
                }
            }
        }
        Ok(())
    }

    /// Creates and starts an instance. Returns it and its key, which is
    /// shown this once and stored only as a hash.
    pub async fn create(
        &self,
        name: InstanceName,
        driver: DriverConfig,
        retention: Retention,
    ) -> Result<(InstanceView, String), RegistryError> {
        driver.validate().map_err(RegistryError::Invalid)?;
        {
            let mut instances = self.instances.lock();
            if instances.contains_key(&name) {
                return Err(RegistryError::Conflict(format!(
                    "instance '{name}' already exists"
                )));
            }
            instances.insert(name.clone(), Slot::Creating);
        }
        let key = auth::generate_key();
        let row = InstanceRow {
            name: name.clone(),
            id: Uuid::now_v7(),
            driver,
            key_hash: hex::encode(auth::digest(&key)),
            enabled: true,
            websocket: WebsocketSettings::default(),
            retention,
            created_at: Utc::now(),
        };
        let view = view_of(&row, ConnectionState::Connecting);
        let event = InstanceData {
            action: InstanceAction::Created,
            instance: serde_json::to_value(&view).unwrap_or_default(),
        }
        .into_event(&name);
        let committed = self
            .log
            .append(Job {
                events: vec![event],
                changes: vec![Change::CreateInstance(row.clone())],
            })
            .await;
        if let Err(err) = committed {
            self.instances.lock().remove(&name);
            return Err(err.into());
        }
        self.keys.add_instance(name.clone(), &row.key_hash);
        self.hub.set_websocket(&name, row.websocket);
        let supervisor = self.spawn_supervisor(&row);
        self.instances.lock().insert(
            name,
            Slot::Ready {
                row: Box::new(row),
                supervisor,
            },
        );
        Ok((view, key))
    }

    /// Stops the instance and deletes it with everything it owns.
    pub async fn delete(&self, name: &InstanceName) -> Result<(), RegistryError> {
        // Bound first: the guard must be gone before the arms lock again.
        let slot = self.instances.lock().remove(name);
        let (row, supervisor) = match slot {
            Some(Slot::Ready { row, supervisor }) => (row, supervisor),
            Some(Slot::Creating) => {
                // Put the reservation back: its creator still owns it.
                self.instances.lock().insert(name.clone(), Slot::Creating);
                return Err(RegistryError::Conflict(format!(
                    "instance '{name}' is still being created"
                )));
            }
            None => return Err(RegistryError::NotFound(name.clone())),
        };
        let _ = supervisor.stop().await;
        let event = InstanceData {
            action: InstanceAction::Deleted,
            instance: serde_json::json!({ "instanceName": name }),
        }
        .into_event(name);
        let committed = self
            .log
            .append(Job {
                events: vec![event],
                changes: vec![Change::DeleteInstance(name.clone())],
            })
            .await;
        match committed {
            Ok(_) => {
                self.keys.remove_instance(name);
                self.hub.forget_instance(name);
                tracing::info!(instance = %name, "instance deleted");
                Ok(())
            }
            Err(err) => {
                // Nothing was deleted: bring the instance back as it was.
                let supervisor = self.spawn_supervisor(&row);
                self.instances
                    .lock()
                    .insert(name.clone(), Slot::Ready { row, supervisor });
                Err(err.into())
            }
        }
    }

    pub fn get(&self, name: &InstanceName) -> Option<InstanceView> {
        match self.instances.lock().get(name)? {
            Slot::Ready { row, supervisor } => Some(view_of(row, supervisor.state())),
            Slot::Creating => None,
        }
    }

    pub fn list(&self) -> Vec<InstanceView> {
        let mut views: Vec<InstanceView> = self
            .instances
            .lock()
            .values()
            .filter_map(|slot| match slot {
                Slot::Ready { row, supervisor } => Some(view_of(row, supervisor.state())),
                Slot::Creating => None,
            })
            .collect();
        views.sort_by(|a, b| a.instance_name.cmp(&b.instance_name));
        views
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
            Slot::Creating => None,
        }
    }

    /// Starts the actor and remembers that it should run.
    pub async fn connect(&self, name: &InstanceName) -> Result<ConnectionState, RegistryError> {
        let supervisor = self.supervisor(name)?;
        self.set_enabled(name, true).await?;
        supervisor
            .connect()
            .await
            .map_err(|_| RegistryError::NotFound(name.clone()))?;
        // Give a fast driver the chance to report `open` in this answer.
        supervisor
            .wait_for(Duration::from_millis(500), |s| {
                s != ConnectionState::Connecting
            })
            .await;
        Ok(supervisor.state())
    }

    /// Stops the actor and remembers that it should not run; data is kept.
    pub async fn logout(&self, name: &InstanceName) -> Result<ConnectionState, RegistryError> {
        let supervisor = self.supervisor(name)?;
        self.set_enabled(name, false).await?;
        supervisor
            .logout()
            .await
            .map_err(|_| RegistryError::NotFound(name.clone()))?;
        Ok(supervisor.state())
    }

    pub async fn restart(&self, name: &InstanceName) -> Result<ConnectionState, RegistryError> {
        let supervisor = self.supervisor(name)?;
        self.set_enabled(name, true).await?;
        supervisor
            .restart()
            .await
            .map_err(|_| RegistryError::NotFound(name.clone()))?;
        supervisor
            .wait_for(Duration::from_millis(500), |s| {
                s != ConnectionState::Connecting
            })
            .await;
        Ok(supervisor.state())
    }

    pub fn command(&self, name: &InstanceName, command: Command) -> Result<bool, RegistryError> {
        Ok(self.supervisor(name)?.command(command))
    }

    pub fn outbox_ready(&self, name: &InstanceName) {
        if let Ok(supervisor) = self.supervisor(name) {
            supervisor.outbox_ready();
        }
    }

    pub fn websocket(&self, name: &InstanceName) -> Result<WebsocketSettings, RegistryError> {
        match self.instances.lock().get(name) {
            Some(Slot::Ready { row, .. }) => Ok(row.websocket),
            _ => Err(RegistryError::NotFound(name.clone())),
        }
    }

    pub async fn set_websocket(
        &self,
        name: &InstanceName,
        settings: WebsocketSettings,
    ) -> Result<(), RegistryError> {
        self.supervisor(name)?;
        self.log
            .append(Job {
                events: Vec::new(),
                changes: vec![Change::SetWebsocket {
                    name: name.clone(),
                    settings,
                }],
            })
            .await?;
        if let Some(Slot::Ready { row, .. }) = self.instances.lock().get_mut(name) {
            row.websocket = settings;
        }
        self.hub.set_websocket(name, settings);
        Ok(())
    }

    pub fn retention(&self, name: &InstanceName) -> Result<Retention, RegistryError> {
        match self.instances.lock().get(name) {
            Some(Slot::Ready { row, .. }) => Ok(row.retention),
            _ => Err(RegistryError::NotFound(name.clone())),
        }
    }

    pub async fn set_retention(
        &self,
        name: &InstanceName,
        retention: Retention,
    ) -> Result<(), RegistryError> {
        self.supervisor(name)?;
        self.log
            .append(Job {
                events: Vec::new(),
                changes: vec![Change::SetRetention {
                    name: name.clone(),
                    retention,
                }],
            })
            .await?;
        if let Some(Slot::Ready { row, .. }) = self.instances.lock().get_mut(name) {
            row.retention = retention;
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
                Slot::Creating => None,
            })
            .collect()
    }

    async fn set_enabled(&self, name: &InstanceName, enabled: bool) -> Result<(), RegistryError> {
        let already = matches!(
            self.instances.lock().get(name),
            Some(Slot::Ready { row, .. }) if row.enabled == enabled
        );
        if already {
            return Ok(());
        }
        self.log
            .append(Job {
                events: Vec::new(),
                changes: vec![Change::SetEnabled {
                    name: name.clone(),
                    enabled,
                }],
            })
            .await?;
        if let Some(Slot::Ready { row, .. }) = self.instances.lock().get_mut(name) {
            row.enabled = enabled;
        }
        Ok(())
    }

    fn spawn_supervisor(&self, row: &InstanceRow) -> Supervisor {
        Supervisor::spawn(
            row.name.clone(),
            row.driver.clone(),
            row.enabled,
            self.log.clone(),
            self.settings.clone(),
            self.shutdown.clone(),
            &self.tracker,
        )
    }
}

fn view_of(row: &InstanceRow, state: ConnectionState) -> InstanceView {
    InstanceView {
        instance_name: row.name.clone(),
        instance_id: row.id,
        driver: row.driver.clone(),
        status: state.evolution_name(),
        created_at: crate::event::format_timestamp(row.created_at),
    }
}
