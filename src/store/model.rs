//! What the store holds and is asked to change: the row types, the state
//! [`Change`]s a job commits with its events, and what a commit answers.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreError;
use crate::{
    domain::{
        DriverConfig, InstanceName, InstanceSettings, PoolSpec, Retention, Schedule, WebhookSecret,
        WebsocketSettings,
    },
    event::{data::DeliveryStatus, Event, NewEvent, TopicSet},
};

/// A state change committed in the same transaction as its job's events.
#[derive(Debug, Clone)]
pub enum Change {
    CreateInstance(InstanceRow),
    /// Deletes the instance and everything it owns (messages, groups, events).
    DeleteInstance(InstanceName),
    /// Whether the instance's modem actor should run (survives restarts).
    SetEnabled {
        name: InstanceName,
        enabled: bool,
    },
    SetWebsocket {
        name: InstanceName,
        settings: WebsocketSettings,
    },
    EnqueueMessage(OutboxRow),
    SetMessageStatus {
        id: String,
        status: DeliveryStatus,
        error: Option<String>,
    },
    /// Settles a message that is still waiting (queued, not claimed by a
    /// driver): cancelled or expired. Fails with `Conflict` when a driver
    /// claimed it (or it was settled) first, so a cancel and a claim
    /// racing each other have exactly one winner; `NotFound` when the
    /// instance has no such message.
    SettleWaiting {
        instance: InstanceName,
        id: String,
        status: DeliveryStatus,
    },
    /// A new group with its first members.
    /// Creates a group, refused (`Conflict`) when its instance already has
    /// `max_groups`: checked in the commit, so nodes writing at once cannot
    /// pass the bound together.
    CreateGroup {
        group: GroupRow,
        max_groups: usize,
    },
    SetRetention {
        name: InstanceName,
        retention: Retention,
    },
    /// Replaces an instance's settings (`settings/set`).
    SetInstanceSettings {
        name: InstanceName,
        settings: InstanceSettings,
    },
    /// Creates or replaces an instance's webhook; a new one starts at
    /// `start_cursor`, a replaced one keeps its cursor.
    SetWebhook {
        webhook: WebhookRow,
    },
    /// Adds members to an existing group (present ones are left alone),
    /// refused (`Conflict`) when the group would have more than
    /// `max_members`: checked in the commit, like `CreateGroup`'s bound.
    AddGroupMembers {
        instance: InstanceName,
        id: String,
        members: Vec<String>,
        max_members: usize,
    },
    RemoveGroupMembers {
        instance: InstanceName,
        id: String,
        members: Vec<String>,
    },
    /// The modem accepted one part of an outgoing message.
    RecordPartSent(PartRow),
    /// A status report settled one part.
    SetPartStatus {
        message_id: String,
        part: u32,
        status: DeliveryStatus,
    },
    /// One part of an inbound multipart message (kept if already there).
    StoreInboundPart(InboundPartRow),
    /// The parts of an inbound message, once it was delivered whole.
    DeleteInboundParts {
        instance: InstanceName,
        sender: String,
        reference: u32,
        total: u32,
    },
    /// An inbound PDU was committed. Fails with `Conflict` when it already
    /// was, which tells the driver it only has to delete it from the modem.
    MarkInboundSeen {
        instance: InstanceName,
        digest: String,
    },
    /// A new pool. Fails with `Conflict` when the name is taken (by a pool
    /// or an instance: they share one namespace), a member is not an
    /// instance, or `max_pools` are there already.
    CreatePool {
        pool: PoolRow,
        max_pools: usize,
    },
    /// Replaces a pool's definition (its turn starts over).
    UpdatePool {
        name: InstanceName,
        spec: PoolSpec,
    },
    /// Deletes a pool; `Conflict` while messages wait in it.
    DeletePool(InstanceName),
    /// Whether the instance's modem is connected, as the connection event
    /// committed with it says (pools route around members that are not).
    SetHealth {
        instance: InstanceName,
        healthy: bool,
    },
}

/// A pool as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolRow {
    pub name: InstanceName,
    pub spec: PoolSpec,
    pub created_at: DateTime<Utc>,
}

/// How long a digest of a committed inbound PDU is kept.
pub const INBOX_SEEN_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// One part of an outgoing message that the modem accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRow {
    pub message_id: String,
    pub instance: InstanceName,
    /// 1-based.
    pub part: u32,
    pub total: u32,
    /// TP-MR: what the status report will quote.
    pub reference: u32,
    pub recipient: String,
    /// `sent`, `delivered` or `failed`.
    pub status: DeliveryStatus,
    pub sent_at: DateTime<Utc>,
}

/// One part of an inbound multipart message, waiting for the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundPartRow {
    pub instance: InstanceName,
    pub sender: String,
    pub reference: u32,
    pub total: u32,
    pub sequence: u32,
    pub content: String,
    /// The part's text before decoding, in the driver's stored form, so the
    /// parts are joined before they are decoded; `None` for parts stored
    /// before it was kept, and for 8-bit data.
    pub raw: Option<String>,
    /// The service centre time stamp, Unix seconds.
    pub sent_at: i64,
    pub received_at: DateTime<Utc>,
}

/// A webhook: events of one instance POSTed to a URL, in log order.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRow {
    pub instance: InstanceName,
    pub url: String,
    /// Extra request headers (say an Authorization for the receiver).
    pub headers: Vec<(String, String)>,
    /// The topics sent; `None` means all.
    pub events: Option<TopicSet>,
    pub enabled: bool,
    /// The last event id delivered (or filtered out).
    pub cursor: i64,
    pub created_at: DateTime<Utc>,
    /// Signs every delivery; `None`: deliveries are not signed.
    pub secret: Option<WebhookSecret>,
    /// Why deliveries stopped for good (the receiver said 410 Gone);
    /// setting the webhook again clears it.
    pub stopped: Option<String>,
}

/// An instance as stored.
#[derive(Debug, Clone)]
pub struct InstanceRow {
    pub name: InstanceName,
    pub id: Uuid,
    pub driver: DriverConfig,
    /// SHA-256 of the instance key, hex; the key itself is never stored.
    pub key_hash: String,
    pub enabled: bool,
    pub websocket: WebsocketSettings,
    pub retention: Retention,
    pub created_at: DateTime<Utc>,
    /// What the instance does on its own (`settings/set`).
    pub settings: InstanceSettings,
    /// The node it must run on (a serial port lives on one host); `None`:
    /// any live node.
    pub node: Option<String>,
}

/// An outgoing message in the outbox.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: String,
    pub instance: InstanceName,
    pub recipient: String,
    pub body: String,
    pub status: DeliveryStatus,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Priority, not before, not after.
    pub schedule: Schedule,
    /// When a driver took it to send; `None` while it waits (only then can
    /// it be cancelled or expire).
    pub claimed_at: Option<DateTime<Utc>>,
    /// The pool it was sent to: while it waits `instance` is the pool's
    /// name too, and the member that claims it becomes `instance`.
    pub pool: Option<InstanceName>,
}

impl OutboxRow {
    /// A new message, queued to go out at once with the default priority.
    pub fn queued(
        id: String,
        instance: InstanceName,
        recipient: String,
        body: String,
        created_at: DateTime<Utc>,
    ) -> OutboxRow {
        OutboxRow {
            id,
            instance,
            recipient,
            body,
            status: DeliveryStatus::Queued,
            error: None,
            created_at,
            schedule: Schedule::default(),
            claimed_at: None,
            pool: None,
        }
    }

    /// Whether it may no longer be sent at `now`.
    pub fn expired_at(&self, now: DateTime<Utc>) -> bool {
        self.schedule.valid_until.is_some_and(|until| until <= now)
    }
}

/// A broadcast group: a send to it goes to each participant.
#[derive(Debug, Clone)]
pub struct GroupRow {
    pub instance: InstanceName,
    pub id: String,
    pub name: String,
    pub owner: String,
    pub participants: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// A job for the writer: events and the changes they describe.
#[derive(Debug, Default)]
pub struct Job {
    pub events: Vec<NewEvent>,
    pub changes: Vec<Change>,
    /// Set on every write of a driver running under a lease: the job
    /// commits only if the lease still holds (checked in the same
    /// transaction), else it fails with [`StoreError::Fenced`].
    pub fence: Option<super::Fence>,
}

/// What a committed batch did.
#[derive(Debug)]
pub struct Batch {
    /// One result per job, in job order.
    pub outcomes: Vec<Result<Vec<Committed>, StoreError>>,
    /// The committed events, in id order.
    pub events: Vec<Event>,
    /// The log head before this batch. If it is past what the writer last
    /// published, events were committed that were never published (a commit
    /// whose answer was lost, or another writer): the writer publishes them
    /// first, so live readers never skip one.
    pub previous_head: i64,
}

/// Where a committed event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub id: i64,
    pub seq: i64,
}

/// What a read of the log asks for.
#[derive(Debug, Clone)]
pub struct LogQuery {
    /// Only events with a larger id.
    pub after_id: i64,
    /// Only these instances; `None` means all.
    pub instances: Option<Vec<InstanceName>>,
    pub topics: TopicSet,
    pub limit: i64,
}
