//! What the API does, independent of HTTP: send texts, manage groups,
//! pools and instances, change settings, read the log.
//!
//! Every event the API causes is born here: a service checks what it is
//! asked, builds the job (the events and the state changes they describe),
//! appends it to the log and, only once it is committed, tells the running
//! parts (registry, webhooks, the instance's actor). HTTP handlers parse,
//! authorize, call one method here and map the answer; they never build a
//! job or touch the store.

mod events;
mod groups;
mod history;
mod instances;
mod messages;
mod pools;
mod remote;
mod settings;
mod ussd;
mod webhooks;

use std::{collections::HashMap, sync::Arc};

pub use events::{EventPage, ReadRequest};
pub use groups::{GroupView, GROUP_SUFFIX};
pub use history::{
    HistoryEntry, HistoryPage, HistoryQuery, DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT, SCAN_LIMIT,
};
pub use instances::{CreateInstance, Presence, RetentionView, PRESENCES};
pub use messages::{Accepted, MessageView, SendText};
pub use pools::{MemberLoad, PoolView};
pub use settings::SettingsChange;
pub use ussd::{DEFAULT_USSD_TIMEOUT, USSD_TIMEOUT_MS};
pub use webhooks::{SecretChange, SetWebhook, WebhookView};

use crate::{
    cluster::Cluster,
    config::Settings,
    domain::{InstanceName, NumberRules},
    hub::Hub,
    instance::{registry::RegistryError, Registry},
    store::{EventLog, StoreError},
    webhook::Webhooks,
};

/// Why a service call failed, sorted by what the caller should be told.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request itself is wrong; the message says what to fix.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// It clashes with the current state (a taken name, a modem not running).
    #[error("{0}")]
    Conflict(String),
    /// A cursor points below what retention deleted.
    #[error("{0}")]
    CursorExpired(String),
    /// The modem or the network did not answer in time.
    #[error("{0}")]
    Timeout(String),
    /// Too much is already waiting for the same thing; try again shortly.
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<RegistryError> for ServiceError {
    fn from(err: RegistryError) -> Self {
        match err {
            RegistryError::NotFound(name) => ServiceError::not_found(&name),
            RegistryError::Conflict(message) => ServiceError::Conflict(message),
        }
    }
}

impl From<crate::cluster::CommandError> for ServiceError {
    fn from(err: crate::cluster::CommandError) -> Self {
        match err {
            crate::cluster::CommandError::Store(err) => ServiceError::Store(err),
            busy @ crate::cluster::CommandError::Busy(_) => ServiceError::Busy(busy.to_string()),
        }
    }
}

impl From<crate::domain::InvalidNumber> for ServiceError {
    fn from(err: crate::domain::InvalidNumber) -> Self {
        ServiceError::Invalid(err.to_string())
    }
}

impl ServiceError {
    fn not_found(name: &InstanceName) -> ServiceError {
        ServiceError::NotFound(format!("instance '{name}' not found"))
    }
}

/// Refuses a text holding U+0000 (NUL). PostgreSQL cannot store it in a
/// text column, and no client means to send one; refusing it here gives
/// both backends the same clear 400. (The store still isolates a job the
/// database refuses, whatever path it came by.)
fn refuse_nul(field: &str, value: &str) -> Result<(), ServiceError> {
    if value.contains('\0') {
        return Err(ServiceError::Invalid(format!(
            "'{field}' must not contain the character U+0000"
        )));
    }
    Ok(())
}

/// The API's operations over the running parts of a node.
pub struct Service {
    registry: Arc<Registry>,
    log: EventLog,
    hub: Arc<Hub>,
    webhooks: Arc<Webhooks>,
    settings: Arc<Settings>,
    /// One lock per instance for changes to its groups, so their limits
    /// hold under concurrent requests (see `groups`).
    group_locks: parking_lot::Mutex<HashMap<InstanceName, Arc<tokio::sync::Mutex<()>>>>,
    /// Serializes settings changes (read, change, commit), see `settings`.
    settings_lock: tokio::sync::Mutex<()>,
    /// The cluster this node belongs to (PostgreSQL); `None` on one node.
    cluster: Option<Arc<Cluster>>,
}

impl Service {
    pub fn new(
        registry: Arc<Registry>,
        log: EventLog,
        hub: Arc<Hub>,
        webhooks: Arc<Webhooks>,
        settings: Arc<Settings>,
    ) -> Service {
        Service {
            registry,
            log,
            hub,
            webhooks,
            settings,
            group_locks: parking_lot::Mutex::new(HashMap::new()),
            settings_lock: tokio::sync::Mutex::new(()),
            cluster: None,
        }
    }

    /// Makes the API answer for a cluster node (owners, `/cluster/nodes`).
    pub fn with_cluster(mut self, cluster: Option<Arc<Cluster>>) -> Service {
        self.cluster = cluster;
        self
    }

    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    pub fn webhooks(&self) -> &Arc<Webhooks> {
        &self.webhooks
    }

    /// The instance's own number, which also says it exists.
    fn own_number(&self, name: &InstanceName) -> Result<String, ServiceError> {
        self.registry
            .own_number(name)
            .ok_or_else(|| ServiceError::not_found(name))
    }

    /// How the instance reads the numbers it is given (its settings).
    fn number_rules(&self, name: &InstanceName) -> Result<NumberRules, ServiceError> {
        Ok(self.registry.settings(name)?.number_rules())
    }

    /// Fails unless the instance exists.
    fn exists(&self, name: &InstanceName) -> Result<(), ServiceError> {
        self.registry
            .supervisor(name)
            .map(|_| ())
            .map_err(Into::into)
    }
}
