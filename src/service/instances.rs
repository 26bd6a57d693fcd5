//! Instance lifecycle and settings: create, delete, connect, log out,
//! restart, presence, stream defaults, retention, hanging up calls.
//!
//! Each change is committed first (with its event, where it has one) and
//! only then applied to the running instance, so what the registry shows is
//! always what the log says.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{remote, Service, ServiceError};
use crate::{
    cluster::Forwarded,
    config::InstanceSeed,
    domain::{
        key::{digest, generate_key},
        DriverConfig, InstanceName, Retention, WebsocketSettings,
    },
    event::data::{ConnectionState, InstanceAction, InstanceData, Payload, PresenceData},
    instance::registry::InstanceView,
    modem::Command,
    store::{Change, InstanceRow, Job},
};

/// How long `connect` and `restart` wait for a fast driver to report `open`
/// so the answer can already say so.
const SETTLE: Duration = Duration::from_millis(500);
/// Longest wait for a driver to hang up a call (it may be busy sending).
const CALL_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Beyond the owner's own deadline, how long a call through another node
/// waits for its answer to come back through the database.
pub(super) const REMOTE_GRACE: Duration = Duration::from_secs(5);

/// Presences a client may set for its own instance.
pub const PRESENCES: &[&str] = &[
    "available",
    "unavailable",
    "composing",
    "recording",
    "paused",
];

/// What `instance/create` asks for.
pub struct CreateInstance {
    pub name: InstanceName,
    pub driver: DriverConfig,
    pub retention: Retention,
    /// The cluster node it must run on; `None`: any.
    pub node: Option<String>,
}

/// A presence event as recorded.
pub type Presence = PresenceData;

/// An instance's retention and what applies once the defaults fill the gaps.
pub struct RetentionView {
    pub retention: Retention,
    pub effective_max_age_secs: u64,
    pub effective_max_events: u64,
}

impl Service {
    /// Creates and starts an instance. Returns it and its key, which is
    /// shown this once and stored only as a digest.
    pub async fn create_instance(
        &self,
        request: CreateInstance,
    ) -> Result<(InstanceView, String), ServiceError> {
        let CreateInstance {
            name,
            driver,
            retention,
            node,
        } = request;
        driver.validate().map_err(ServiceError::Invalid)?;
        retention.check().map_err(ServiceError::Invalid)?;
        let reservation = self.registry.reserve(&name)?;
        let key = generate_key();
        let row = InstanceRow {
            name: name.clone(),
            id: Uuid::now_v7(),
            driver,
            key_hash: hex::encode(digest(&key)),
            enabled: true,
            websocket: WebsocketSettings::default(),
            retention,
            created_at: Utc::now(),
            settings: crate::domain::InstanceSettings::default(),
            node,
        };
        let view = InstanceView::of(&row, ConnectionState::Connecting);
        let event = InstanceData {
            action: InstanceAction::Created,
            instance: serde_json::to_value(&view).unwrap_or_default(),
        }
        .into_event(&name);
        // On failure the reservation is dropped, which frees the name.
        self.log
            .append(Job {
                events: vec![event],
                changes: vec![Change::CreateInstance(row.clone())],
                fence: None,
            })
            .await?;
        let view = reservation.fill(row);
        if let Some(cluster) = &self.cluster {
            cluster.wake();
        }
        Ok((view, key))
    }

    /// Creates the configured instances that do not exist yet. Their keys
    /// are not shown: use the admin key, or delete and create one to get a
    /// key.
    pub async fn ensure_instances(&self, seeds: &[InstanceSeed]) -> anyhow::Result<()> {
        for seed in seeds {
            let name = InstanceName::parse(&seed.name)
                .map_err(|e| anyhow::anyhow!("[[instances]]: {e}"))?;
            if self.registry.get(&name).is_some() {
                continue;
            }
            let request = CreateInstance {
                name: name.clone(),
                driver: seed.driver.clone(),
                retention: Retention::default(),
                node: None,
            };
            match self.create_instance(request).await {
                Ok(_) => tracing::info!(instance = %name, "created the configured instance"),
                Err(ServiceError::Conflict(_)) => {}
                Err(err) => {
                    anyhow::bail!("could not create the configured instance '{name}': {err}")
                }
            }
        }
        Ok(())
    }

    /// Stops the instance and deletes it with everything it owns.
    pub async fn delete_instance(&self, name: &InstanceName) -> Result<(), ServiceError> {
        let row = self.registry.detach(name).await?;
        let event = InstanceData {
            action: InstanceAction::Deleted,
            // The id tells every node which instance went (the name may be
            // taken again at once): see `cluster::observe`.
            instance: serde_json::json!({ "instanceName": name, "id": row.id }),
        }
        .into_event(name);
        let committed = self
            .log
            .append(Job {
                events: vec![event],
                changes: vec![Change::DeleteInstance(name.clone())],
                fence: None,
            })
            .await;
        match committed {
            Ok(_) => {
                self.registry.forget(name);
                self.webhooks.remove(name);
                self.group_locks.lock().remove(name);
                tracing::info!(instance = %name, "instance deleted");
                Ok(())
            }
            Err(err) => {
                // Nothing was deleted: bring the instance back as it was.
                self.registry.reattach(row);
                Err(err.into())
            }
        }
    }

    pub fn instance(&self, name: &InstanceName) -> Result<InstanceView, ServiceError> {
        self.registry
            .get(name)
            .map(|view| self.with_owner(view))
            .ok_or_else(|| ServiceError::not_found(name))
    }

    pub fn instances(&self) -> Vec<InstanceView> {
        self.registry
            .list()
            .into_iter()
            .map(|view| self.with_owner(view))
            .collect()
    }

    /// The cluster's nodes (empty on a single node).
    pub async fn cluster_nodes(&self) -> Result<Vec<crate::cluster::NodeView>, ServiceError> {
        match &self.cluster {
            Some(cluster) => Ok(cluster.nodes().await?),
            None => Ok(Vec::new()),
        }
    }

    /// Fills in which cluster node drives the instance.
    fn with_owner(&self, mut view: InstanceView) -> InstanceView {
        if let Some(cluster) = &self.cluster {
            view.owner = cluster.owner(&view.instance_name);
        }
        view
    }

    /// Starts the actor and remembers that it should run. In a cluster,
    /// the node driving the instance is asked to as well (`Some`: whether
    /// it took the command).
    pub async fn connect(
        &self,
        name: &InstanceName,
    ) -> Result<(ConnectionState, Option<Forwarded>), ServiceError> {
        let supervisor = self.registry.supervisor(name)?;
        self.set_enabled(name, true).await?;
        supervisor
            .connect()
            .await
            .map_err(|_| ServiceError::not_found(name))?;
        let forwarded = self.forward(name, "connect").await?;
        // Give a fast driver the chance to report `open` in this answer.
        supervisor
            .wait_for(SETTLE, |s| s != ConnectionState::Connecting)
            .await;
        Ok((supervisor.state(), forwarded))
    }

    /// Stops the actor and remembers that it should not run; data is kept.
    pub async fn logout(
        &self,
        name: &InstanceName,
    ) -> Result<(ConnectionState, Option<Forwarded>), ServiceError> {
        let supervisor = self.registry.supervisor(name)?;
        self.set_enabled(name, false).await?;
        supervisor
            .logout()
            .await
            .map_err(|_| ServiceError::not_found(name))?;
        let forwarded = self.forward(name, "logout").await?;
        Ok((supervisor.state(), forwarded))
    }

    pub async fn restart(
        &self,
        name: &InstanceName,
    ) -> Result<(ConnectionState, Option<Forwarded>), ServiceError> {
        let supervisor = self.registry.supervisor(name)?;
        self.set_enabled(name, true).await?;
        supervisor
            .restart()
            .await
            .map_err(|_| ServiceError::not_found(name))?;
        let forwarded = self.forward(name, "restart").await?;
        supervisor
            .wait_for(SETTLE, |s| s != ConnectionState::Connecting)
            .await;
        Ok((supervisor.state(), forwarded))
    }

    /// Asks the node driving the instance to run a lifecycle command, when
    /// that is not this node.
    async fn forward(
        &self,
        name: &InstanceName,
        kind: &str,
    ) -> Result<Option<Forwarded>, ServiceError> {
        match &self.cluster {
            Some(cluster) => Ok(cluster.forward(name, kind).await?),
            None => Ok(None),
        }
    }

    async fn set_enabled(&self, name: &InstanceName, enabled: bool) -> Result<(), ServiceError> {
        if self.registry.row(name)?.enabled == enabled {
            return Ok(());
        }
        self.log
            .append(Job {
                events: Vec::new(),
                changes: vec![Change::SetEnabled {
                    name: name.clone(),
                    enabled,
                }],
                fence: None,
            })
            .await?;
        self.registry.update(name, |row| row.enabled = enabled);
        Ok(())
    }

    /// Records the instance's own presence as a `presence` event.
    pub async fn set_presence(
        &self,
        name: &InstanceName,
        presence: &str,
    ) -> Result<Presence, ServiceError> {
        let presence = presence.trim();
        if !PRESENCES.contains(&presence) {
            return Err(ServiceError::Invalid(format!(
                "presence must be one of {}",
                PRESENCES.join(", ")
            )));
        }
        let data = PresenceData {
            id: self.own_number(name)?,
            presence: presence.to_owned(),
            last_seen: Utc::now().timestamp(),
            typing: presence == "composing",
        };
        self.log
            .append(Job {
                events: vec![data.clone().into_event(name)],
                changes: Vec::new(),
                fence: None,
            })
            .await?;
        Ok(data)
    }

    pub fn websocket(&self, name: &InstanceName) -> Result<WebsocketSettings, ServiceError> {
        Ok(self.registry.row(name)?.websocket)
    }

    pub async fn set_websocket(
        &self,
        name: &InstanceName,
        settings: WebsocketSettings,
    ) -> Result<(), ServiceError> {
        self.exists(name)?;
        self.log
            .append(Job {
                events: Vec::new(),
                changes: vec![Change::SetWebsocket {
                    name: name.clone(),
                    settings,
                }],
                fence: None,
            })
            .await?;
        self.registry.update(name, |row| row.websocket = settings);
        Ok(())
    }

    pub fn retention(&self, name: &InstanceName) -> Result<RetentionView, ServiceError> {
        let retention = self.registry.row(name)?.retention;
        let defaults = &self.settings.retention;
        Ok(RetentionView {
            retention,
            effective_max_age_secs: retention.max_age_secs.unwrap_or(defaults.max_age_secs),
            effective_max_events: retention.max_events.unwrap_or(defaults.max_events),
        })
    }

    pub async fn set_retention(
        &self,
        name: &InstanceName,
        retention: Retention,
    ) -> Result<RetentionView, ServiceError> {
        self.exists(name)?;
        retention.check().map_err(ServiceError::Invalid)?;
        self.log
            .append(Job {
                events: Vec::new(),
                changes: vec![Change::SetRetention {
                    name: name.clone(),
                    retention,
                }],
                fence: None,
            })
            .await?;
        self.registry.update(name, |row| row.retention = retention);
        self.retention(name)
    }

    /// Hangs up a call ringing on the instance's modem (`call_id` absent:
    /// whichever rings) and answers the call's id once it did. In a
    /// cluster, the node driving the instance does it.
    pub async fn reject_call(
        &self,
        name: &InstanceName,
        call_id: Option<String>,
    ) -> Result<String, ServiceError> {
        self.exists(name)?;
        let args = serde_json::json!({ "callId": call_id });
        let wait = CALL_ANSWER_TIMEOUT + REMOTE_GRACE;
        match self
            .ask_owner(name, remote::REJECT_CALL, args, wait)
            .await?
        {
            Some(serde_json::Value::String(id)) => Ok(id),
            Some(other) => Err(ServiceError::Conflict(format!(
                "instance '{name}': its node answered the call's id as {other}"
            ))),
            None => self.reject_call_here(name, call_id).await,
        }
    }

    /// [`Service::reject_call`] on this node's driver.
    pub(super) async fn reject_call_here(
        &self,
        name: &InstanceName,
        call_id: Option<String>,
    ) -> Result<String, ServiceError> {
        let (reply, answer) = oneshot::channel();
        let accepted = self.registry.command(
            name,
            Command::RejectCall {
                call_id,
                reply: Some(reply),
            },
        )?;
        if !accepted {
            return Err(ServiceError::Conflict(format!(
                "instance '{name}' has no running modem (connect it first)"
            )));
        }
        match tokio::time::timeout(CALL_ANSWER_TIMEOUT, answer).await {
            Ok(Ok(Ok(call_id))) => Ok(call_id),
            Ok(Ok(Err(why))) => Err(ServiceError::NotFound(why)),
            Ok(Err(_)) | Err(_) => Err(ServiceError::Conflict(format!(
                "instance '{name}': the modem did not hang up (its driver stopped or is busy)"
            ))),
        }
    }
}
