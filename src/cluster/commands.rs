//! Commands through any node: an API call on a node that does not drive
//! the instance leaves a row in the `commands` table for the node that
//! does, which runs it and marks it taken.
//!
//! Lifecycle commands (`connect`, `restart`, `logout`) only need to be
//! taken. Commands that answer (a USSD request, rejecting a call) carry
//! their arguments as JSON and get their answer written back to the row;
//! the asking node polls for it until the caller's deadline. The owner runs
//! those through the [`Answerer`] the service registers, so a remote call
//! behaves exactly like a local one, errors included.
//!
//! Bounds: at most `store::MAX_WAITING_COMMANDS` commands wait, untaken,
//! per instance (the next call is refused as busy); commands not taken
//! within half a minute are ignored and rows older than an hour deleted.

use std::{sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Cluster, WEBHOOK_KEY};
use crate::{
    domain::InstanceName,
    store::{CommandProgress, StoreError, TakenCommand, MAX_WAITING_COMMANDS},
};

/// How long a lifecycle call on a node that does not drive the instance
/// waits for the owner to take the command it left.
const FORWARD_WAIT: Duration = Duration::from_secs(5);
/// How often the asking node looks at its command's row.
const FORWARD_POLL: Duration = Duration::from_millis(50);

/// What became of a command asked of a node that does not drive the
/// instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The node driving the instance (as this node knows), if any.
    pub owner: Option<String>,
    /// Whether the owner took the command in time.
    pub taken: bool,
}

/// A command that answers, as the owning node runs it.
#[derive(Debug, Clone)]
pub struct RemoteCall {
    pub instance: InstanceName,
    pub kind: String,
    pub args: Value,
}

/// Why a command that answers failed on the owning node: the kind of
/// error the service would have answered locally, and its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteError {
    /// `invalid`, `not_found`, `conflict`, `timeout` or `unavailable`.
    pub kind: String,
    pub message: String,
}

/// Runs a command that answers on this node (the service's own code).
pub type Answerer =
    Arc<dyn Fn(RemoteCall) -> BoxFuture<'static, Result<Value, RemoteError>> + Send + Sync>;

/// The outcome of a command that answers.
#[derive(Debug)]
pub enum Asked {
    /// This node drives the instance (or nobody does): run it here.
    Here,
    /// The owner ran it.
    Answered(Result<Value, RemoteError>),
    /// Nobody answered in time.
    Unanswered(Forwarded),
}

/// Why a command could not be left for the owner.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "{MAX_WAITING_COMMANDS} commands already wait for instance '{0}' to be taken by the node \
         driving it; try again shortly"
    )]
    Busy(String),
}

impl Cluster {
    /// Registers what runs commands that answer on this node.
    pub fn answer_with(&self, answerer: Answerer) {
        let _ = self.answerer.set(answerer);
    }

    /// The live node holding the instance's lease, read afresh (the
    /// snapshot of the last renew may predate the owner's acquisition).
    async fn live_owner(&self, name: &InstanceName) -> Result<Option<String>, StoreError> {
        Ok(self
            .store
            .leases()
            .await?
            .into_iter()
            .find(|l| l.live && l.key == name.as_str())
            .map(|l| l.node))
    }

    async fn leave_command(
        &self,
        name: &InstanceName,
        kind: &str,
        args: Option<&Value>,
    ) -> Result<i64, CommandError> {
        let args = args.map(Value::to_string);
        self.store
            .insert_command(name.as_str(), kind, args.as_deref())
            .await?
            .ok_or_else(|| CommandError::Busy(name.to_string()))
    }

    /// Leaves a lifecycle command (`connect`, `restart`, `logout`) for the
    /// node driving the instance and waits, boundedly, until it takes it.
    /// `None` when this node drives it (the caller already acted).
    pub async fn forward(
        &self,
        name: &InstanceName,
        kind: &str,
    ) -> Result<Option<Forwarded>, CommandError> {
        if self.held.lock().contains_key(name.as_str()) {
            return Ok(None);
        }
        let Some(owner) = self.live_owner(name).await? else {
            // Nobody drives it now; whoever takes its lease starts it as
            // its stored settings say.
            return Ok(Some(Forwarded {
                owner: None,
                taken: false,
            }));
        };
        let id = self.leave_command(name, kind, None).await?;
        let progress = self
            .follow(id, FORWARD_WAIT, |p| p.taken_by.is_some())
            .await?;
        Ok(Some(Forwarded {
            taken: progress.taken_by.is_some(),
            owner: Some(progress.taken_by.unwrap_or(owner)),
        }))
    }

    /// Reads a command's row until `done` holds or `wait` is over; the
    /// last progress read.
    async fn follow(
        &self,
        id: i64,
        wait: Duration,
        done: impl Fn(&CommandProgress) -> bool,
    ) -> Result<CommandProgress, StoreError> {
        let deadline = Instant::now() + wait;
        loop {
            let progress = self.store.command_progress(id).await?;
            if done(&progress) || Instant::now() >= deadline {
                return Ok(progress);
            }
            // pacing: how often to look again.
            tokio::time::sleep(FORWARD_POLL).await;
        }
    }

    /// Asks the node driving the instance to run a command that answers,
    /// and waits up to `wait` for its answer.
    pub async fn ask(
        &self,
        name: &InstanceName,
        kind: &str,
        args: Value,
        wait: Duration,
    ) -> Result<Asked, CommandError> {
        if self.held.lock().contains_key(name.as_str()) {
            return Ok(Asked::Here);
        }
        let Some(owner) = self.live_owner(name).await? else {
            return Ok(Asked::Here);
        };
        let id = self.leave_command(name, kind, Some(&args)).await?;
        let progress = self.follow(id, wait, |p| p.answer.is_some()).await?;
        let Some(answer) = progress.answer else {
            return Ok(Asked::Unanswered(Forwarded {
                owner: Some(progress.taken_by.unwrap_or(owner)),
                taken: false,
            }));
        };
        let answer =
            serde_json::from_str::<Result<Value, RemoteError>>(&answer).unwrap_or_else(|e| {
                Err(RemoteError {
                    kind: "unavailable".into(),
                    message: format!("node {owner} answered what this node cannot read: {e}"),
                })
            });
        Ok(Asked::Answered(answer))
    }

    /// Runs the commands other nodes left for the instances this node
    /// drives, every `cluster.poll_ms`, until `stop`.
    pub async fn run_commands(self: Arc<Self>, stop: CancellationToken) {
        let poll = Duration::from_millis(self.settings.poll_ms);
        loop {
            let mine: Vec<String> = self
                .held
                .lock()
                .keys()
                .filter(|k| !k.starts_with(WEBHOOK_KEY))
                .cloned()
                .collect();
            match self.store.take_commands(&self.node, &mine).await {
                Ok(commands) => {
                    for command in commands {
                        self.clone().run_command(command).await;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err.report(), "cannot read commands; trying again")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                // pacing: commands wait at most this long.
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    async fn run_command(self: Arc<Self>, command: TakenCommand) {
        let TakenCommand {
            id,
            instance,
            kind,
            args,
        } = command;
        let Ok(name) = InstanceName::parse(&instance) else {
            return;
        };
        let Ok(supervisor) = self.registry.supervisor(&name) else {
            return;
        };
        tracing::info!(node = %self.node, id, %instance, %kind, "running a command from another node");
        let _ = match kind.as_str() {
            "connect" => supervisor.connect().await,
            "restart" => supervisor.restart().await,
            "logout" => supervisor.logout().await,
            _ => {
                // A command that answers may take as long as the network
                // does (a USSD menu): it runs on its own task, so the
                // commands behind it are not held up.
                let args = args
                    .as_deref()
                    .and_then(|a| serde_json::from_str(a).ok())
                    .unwrap_or(Value::Null);
                let call = RemoteCall {
                    instance: name,
                    kind,
                    args,
                };
                tokio::spawn(async move { self.answer(id, call).await });
                Ok(())
            }
        };
    }

    async fn answer(&self, id: i64, call: RemoteCall) {
        let result = match self.answerer.get() {
            Some(answerer) => answerer(call).await,
            None => Err(RemoteError {
                kind: "unavailable".into(),
                message: format!("node {} cannot run commands yet", self.node),
            }),
        };
        // A JSON value and two strings always encode; were it ever not so,
        // the empty answer reads as an error on the asking node.
        let answer = serde_json::to_string(&result).unwrap_or_default();
        if let Err(err) = self.store.answer_command(id, &answer).await {
            tracing::warn!(id, error = %err.report(), "could not write a command's answer");
        }
    }
}
