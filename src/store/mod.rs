//! The durable event log and the tables beside it, on PostgreSQL or SQLite.
//!
//! Nothing is appended except through the [`log::EventLog`] writer, which
//! batches jobs from every instance into one transaction. A job is a list of
//! events plus the state [`Change`]s they describe (a queued message and its
//! `delivery: queued` event, an instance row and its `instance: created`
//! event), so a change and its event always commit together or not at all.
//!
//! Invariant 2 lives here: inside the batch transaction the log head row is
//! locked before ids are assigned, so ids increase in commit order even with
//! several writers sharing one PostgreSQL, and per-instance `seq`s are taken
//! from the locked `instance_seq` rows, so they have no gaps.

pub mod log;
mod postgres;
mod sqlite;

use std::{collections::HashMap, path::Path, time::Duration};

use anyhow::Context;
use chrono::{DateTime, TimeZone, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::{
    domain::{DriverConfig, InstanceName, Retention, WebsocketSettings},
    event::{data::DeliveryStatus, Event, NewEvent, Topic, TopicSet},
};

pub use log::{EventLog, Publish};

/// Why a store operation failed, sorted by what the caller should do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is failing; try again later.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A unique key is already taken.
    #[error("{0}")]
    Conflict(String),
    /// The row a change refers to does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The event log writer has stopped (the server is shutting down).
    #[error("the event log is shut down")]
    Closed,
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err {
            if db.is_unique_violation() {
                return StoreError::Conflict(db.message().to_owned());
            }
        }
        StoreError::Unavailable(err.to_string())
    }
}

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
    /// A new group with its first members.
    CreateGroup(GroupRow),
    SetRetention {
        name: InstanceName,
        retention: Retention,
    },
    /// Creates or replaces an instance's webhook; a new one starts at
    /// `start_cursor`, a replaced one keeps its cursor.
    SetWebhook {
        webhook: WebhookRow,
    },
    /// Adds members to an existing group (present ones are left alone).
    AddGroupMembers {
        instance: InstanceName,
        id: String,
        members: Vec<String>,
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

/// The database behind the log: one of two backends with the same behaviour.
#[derive(Clone)]
pub enum Store {
    Postgres(postgres::PgStore),
    Sqlite(sqlite::SqliteStore),
}

/// How long to wait for a connection before calling the database unavailable,
/// so requests answer 503 quickly instead of hanging while it is down.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

impl Store {
    /// Connects and runs the migrations: PostgreSQL when `url` is set,
    /// otherwise the SQLite file `<data_dir>/switchboard.db`.
    pub async fn connect(
        url: Option<&SecretString>,
        data_dir: &Path,
        max_connections: u32,
    ) -> anyhow::Result<Store> {
        match url {
            Some(url) if is_postgres_url(url.expose_secret()) => Ok(Store::Postgres(
                postgres::PgStore::connect(url.expose_secret(), max_connections).await?,
            )),
            Some(url) if url.expose_secret().starts_with("sqlite:") => Ok(Store::Sqlite(
                sqlite::SqliteStore::connect_url(url.expose_secret(), max_connections).await?,
            )),
            Some(_) => anyhow::bail!(
                "database.url must start with postgres://, postgresql:// or sqlite: \
                 (or be empty for the embedded database)"
            ),
            None => {
                std::fs::create_dir_all(data_dir).with_context(|| {
                    format!("while creating the data directory {}", data_dir.display())
                })?;
                let path = data_dir.join("switchboard.db");
                create_private(&path)?;
                Ok(Store::Sqlite(
                    sqlite::SqliteStore::connect_file(&path, max_connections).await?,
                ))
            }
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Store::Postgres(_) => "postgres",
            Store::Sqlite(_) => "sqlite",
        }
    }

    /// Commits a batch of jobs in one transaction. A job whose changes fail
    /// (say a name already taken) fails alone; the others commit.
    pub async fn commit(&self, jobs: &[Job]) -> Result<Batch, StoreError> {
        match self {
            Store::Postgres(s) => s.commit(jobs).await,
            Store::Sqlite(s) => s.commit(jobs).await,
        }
    }

    pub async fn read_events(&self, query: &LogQuery) -> Result<Vec<Event>, StoreError> {
        match self {
            Store::Postgres(s) => s.read_events(query).await,
            Store::Sqlite(s) => s.read_events(query).await,
        }
    }

    /// The id of the newest committed event (0 for an empty log).
    pub async fn head(&self) -> Result<i64, StoreError> {
        match self {
            Store::Postgres(s) => s.head().await,
            Store::Sqlite(s) => s.head().await,
        }
    }

    pub async fn load_instances(&self) -> Result<Vec<InstanceRow>, StoreError> {
        match self {
            Store::Postgres(s) => s.load_instances().await,
            Store::Sqlite(s) => s.load_instances().await,
        }
    }

    /// Messages of one instance still waiting to be sent, oldest first.
    pub async fn queued_messages(
        &self,
        instance: &InstanceName,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        match self {
            Store::Postgres(s) => s.queued_messages(instance, limit).await,
            Store::Sqlite(s) => s.queued_messages(instance, limit).await,
        }
    }

    /// The parts of an outgoing message the modem has accepted so far.
    pub async fn message_parts(&self, message_id: &str) -> Result<Vec<PartRow>, StoreError> {
        match self {
            Store::Postgres(s) => s.message_parts(message_id).await,
            Store::Sqlite(s) => s.message_parts(message_id).await,
        }
    }

    /// Sent parts of one instance that carry `reference` and still wait
    /// for their report, newest first (references wrap at 256).
    pub async fn parts_awaiting_report(
        &self,
        instance: &InstanceName,
        reference: u32,
    ) -> Result<Vec<PartRow>, StoreError> {
        match self {
            Store::Postgres(s) => s.parts_awaiting_report(instance, reference).await,
            Store::Sqlite(s) => s.parts_awaiting_report(instance, reference).await,
        }
    }

    /// Every stored part of the instance's incomplete inbound messages.
    pub async fn inbound_parts(
        &self,
        instance: &InstanceName,
    ) -> Result<Vec<InboundPartRow>, StoreError> {
        match self {
            Store::Postgres(s) => s.inbound_parts(instance).await,
            Store::Sqlite(s) => s.inbound_parts(instance).await,
        }
    }

    pub async fn groups(&self, instance: &InstanceName) -> Result<Vec<GroupRow>, StoreError> {
        match self {
            Store::Postgres(s) => s.groups(instance).await,
            Store::Sqlite(s) => s.groups(instance).await,
        }
    }

    /// Deletes an instance's events older than `older_than_us` (event time)
    /// or beyond its newest `keep_events`, and records how far it deleted.
    /// Returns the new horizon when anything was deleted.
    pub async fn prune(
        &self,
        instance: &InstanceName,
        older_than_us: Option<i64>,
        keep_events: Option<i64>,
    ) -> Result<Option<i64>, StoreError> {
        match self {
            Store::Postgres(s) => s.prune(instance, older_than_us, keep_events).await,
            Store::Sqlite(s) => s.prune(instance, older_than_us, keep_events).await,
        }
    }

    /// How far retention has deleted, per instance.
    pub async fn horizons(&self) -> Result<Vec<(InstanceName, i64)>, StoreError> {
        let rows: Vec<(String, i64)> = match self {
            Store::Postgres(s) => s.horizons().await?,
            Store::Sqlite(s) => s.horizons().await?,
        };
        Ok(rows
            .into_iter()
            .filter_map(|(name, id)| InstanceName::parse(&name).ok().map(|n| (n, id)))
            .collect())
    }

    pub async fn webhooks(&self) -> Result<Vec<WebhookRow>, StoreError> {
        let rows = match self {
            Store::Postgres(s) => s.webhooks().await?,
            Store::Sqlite(s) => s.webhooks().await?,
        };
        rows.into_iter().map(webhook_from_row).collect()
    }

    /// Records a webhook's progress (outside the log writer: it is not an
    /// event, and losing the last few updates only means sending again).
    pub async fn set_webhook_cursor(
        &self,
        instance: &InstanceName,
        cursor: i64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Postgres(s) => s.set_webhook_cursor(instance, cursor).await,
            Store::Sqlite(s) => s.set_webhook_cursor(instance, cursor).await,
        }
    }

    /// Checks the database answers, for `/ready`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Postgres(s) => s.ping().await,
            Store::Sqlite(s) => s.ping().await,
        }
    }

    pub async fn close(&self) {
        match self {
            Store::Postgres(s) => s.close().await,
            Store::Sqlite(s) => s.close().await,
        }
    }
}

/// Creates the embedded database file readable by its owner only (it holds
/// webhook URLs and headers, which carry receivers' secrets), before SQLite
/// creates it with the process umask. SQLite gives its `-wal` and `-shm`
/// files the database file's mode.
fn create_private(path: &Path) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => {
            Err(err).with_context(|| format!("while creating the database file {}", path.display()))
        }
    }
}

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// One event row ready to insert: what the backends write.
struct EventRow<'a> {
    id: i64,
    seq: i64,
    event: &'a NewEvent,
}

/// Assigns ids and seqs to the events of the jobs that survived their
/// changes, in job order. `last_id` and `seqs` are the locked heads; they are
/// advanced in place so the caller can write them back.
fn assign<'a>(
    jobs: &'a [Job],
    outcomes: &mut [Result<Vec<Committed>, StoreError>],
    last_id: &mut i64,
    seqs: &mut HashMap<InstanceName, i64>,
) -> Vec<EventRow<'a>> {
    let mut rows = Vec::with_capacity(jobs.iter().map(|j| j.events.len()).sum());
    for (job, outcome) in jobs.iter().zip(outcomes.iter_mut()) {
        let Ok(committed) = outcome else { continue };
        for event in &job.events {
            *last_id += 1;
            let seq = seqs.entry(event.instance.clone()).or_insert(0);
            *seq += 1;
            committed.push(Committed {
                id: *last_id,
                seq: *seq,
            });
            rows.push(EventRow {
                id: *last_id,
                seq: *seq,
                event,
            });
        }
    }
    rows
}

/// The distinct instances the jobs' events belong to.
fn instances_in(jobs: &[Job]) -> Vec<InstanceName> {
    let mut names: Vec<InstanceName> = jobs
        .iter()
        .flat_map(|j| j.events.iter().map(|e| e.instance.clone()))
        .collect();
    names.sort();
    names.dedup();
    names
}

fn to_micros(ts: DateTime<Utc>) -> i64 {
    ts.timestamp_micros()
}

fn from_micros(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

/// Rebuilds an event read back from the log. A row this version cannot
/// understand (a topic from the future, corrupt JSON) is reported, not
/// panicked on.
/// An `events` row as both backends select it:
/// `id, instance, seq, topic, ts_us, data`.
type EventTuple = (i64, String, i64, i16, i64, String);

fn event_from_row(
    (id, instance, seq, topic, ts_us, data): EventTuple,
) -> Result<Event, StoreError> {
    let corrupt =
        |what: String| StoreError::Unavailable(format!("event {id} is unreadable: {what}"));
    Ok(Event {
        id,
        seq,
        instance: InstanceName::parse(&instance).map_err(|e| corrupt(e.to_string()))?,
        topic: Topic::from_code(topic).ok_or_else(|| corrupt(format!("unknown topic {topic}")))?,
        timestamp: from_micros(ts_us),
        data: RawValue::from_string(data).map_err(|e| corrupt(e.to_string()))?,
    })
}

/// An `instances` row: `name, id, driver, key_hash, enabled, ws_enabled,
/// ws_events, created_us, retention_age_secs, retention_events`.
type InstanceTuple = (
    String,
    String,
    String,
    String,
    bool,
    bool,
    Option<i64>,
    i64,
    Option<i64>,
    Option<i64>,
);

fn instance_from_row(
    (name, id, driver, key_hash, enabled, ws_enabled, ws_events, created_us, age, events): InstanceTuple,
) -> Result<InstanceRow, StoreError> {
    let name = name.as_str();
    let retention = Retention {
        max_age_secs: age.and_then(|v| u64::try_from(v).ok()),
        max_events: events.and_then(|v| u64::try_from(v).ok()),
    };
    let websocket = WebsocketSettings {
        enabled: ws_enabled,
        events: ws_events.map(|bits| TopicSet::from_bits(bits as u16)),
    };
    let corrupt =
        |what: String| StoreError::Unavailable(format!("instance '{name}' is unreadable: {what}"));
    Ok(InstanceRow {
        name: InstanceName::parse(name).map_err(|e| corrupt(e.to_string()))?,
        id: Uuid::parse_str(&id).map_err(|e| corrupt(e.to_string()))?,
        driver: serde_json::from_str(&driver).map_err(|e| corrupt(e.to_string()))?,
        key_hash,
        enabled,
        websocket,
        retention,
        created_at: from_micros(created_us),
    })
}

/// A `webhooks` row: `instance, url, headers, events, enabled, cursor,
/// created_us`.
pub(crate) type WebhookTuple = (String, String, String, Option<i64>, bool, i64, i64);

fn webhook_from_row(
    (instance, url, headers, events, enabled, cursor, created_us): WebhookTuple,
) -> Result<WebhookRow, StoreError> {
    let corrupt = |what: String| {
        StoreError::Unavailable(format!("the webhook of '{instance}' is unreadable: {what}"))
    };
    let headers: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&headers).map_err(|e| corrupt(e.to_string()))?;
    Ok(WebhookRow {
        instance: InstanceName::parse(&instance).map_err(|e| corrupt(e.to_string()))?,
        url,
        headers: headers.into_iter().collect(),
        events: events.map(|bits| TopicSet::from_bits(bits as u16)),
        enabled,
        cursor,
        created_at: from_micros(created_us),
    })
}

fn headers_json(headers: &[(String, String)]) -> String {
    let map: std::collections::BTreeMap<&str, &str> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // unwrap: a map of strings always serializes.
    #[allow(clippy::unwrap_used)]
    serde_json::to_string(&map).unwrap()
}

fn opt_i64(value: Option<u64>) -> Option<i64> {
    value.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// An `outbox` row: `id, instance, recipient, body, status, error, created_us`.
type OutboxTuple = (String, String, String, String, String, Option<String>, i64);

fn outbox_from_row(
    (id, instance, recipient, body, status, error, created_us): OutboxTuple,
) -> Result<OutboxRow, StoreError> {
    let (instance, status) = (instance.as_str(), status.as_str());
    let corrupt =
        |what: String| StoreError::Unavailable(format!("message '{id}' is unreadable: {what}"));
    Ok(OutboxRow {
        instance: InstanceName::parse(instance).map_err(|e| corrupt(e.to_string()))?,
        status: DeliveryStatus::parse(status)
            .ok_or_else(|| corrupt(format!("unknown status {status}")))?,
        id,
        recipient,
        body,
        error,
        created_at: from_micros(created_us),
    })
}

/// An `outbox_parts` row: `message_id, instance, part, total, reference,
/// recipient, status, sent_us`.
type PartTuple = (String, String, i64, i64, i64, String, String, i64);

fn part_from_row(
    (message_id, instance, part, total, reference, recipient, status, sent_us): PartTuple,
) -> Result<PartRow, StoreError> {
    let corrupt = |what: String| {
        StoreError::Unavailable(format!(
            "part {part} of message '{message_id}' is unreadable: {what}"
        ))
    };
    Ok(PartRow {
        instance: InstanceName::parse(&instance).map_err(|e| corrupt(e.to_string()))?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("unknown status {status}")))?,
        part: u32::try_from(part).map_err(|e| corrupt(e.to_string()))?,
        total: u32::try_from(total).map_err(|e| corrupt(e.to_string()))?,
        reference: u32::try_from(reference).map_err(|e| corrupt(e.to_string()))?,
        message_id,
        recipient,
        sent_at: from_micros(sent_us),
    })
}

/// An `inbox_parts` row: `instance, sender, reference, total, sequence,
/// content, sent_at, received_us, raw`.
type InboundPartTuple = (
    String,
    String,
    i64,
    i64,
    i64,
    String,
    i64,
    i64,
    Option<String>,
);

fn inbound_part_from_row(
    (instance, sender, reference, total, sequence, content, sent_at, received_us, raw): InboundPartTuple,
) -> Result<InboundPartRow, StoreError> {
    let corrupt = |what: String| {
        StoreError::Unavailable(format!(
            "an inbound part from {sender} is unreadable: {what}"
        ))
    };
    Ok(InboundPartRow {
        instance: InstanceName::parse(&instance).map_err(|e| corrupt(e.to_string()))?,
        reference: u32::try_from(reference).map_err(|e| corrupt(e.to_string()))?,
        total: u32::try_from(total).map_err(|e| corrupt(e.to_string()))?,
        sequence: u32::try_from(sequence).map_err(|e| corrupt(e.to_string()))?,
        sender,
        content,
        raw,
        sent_at,
        received_at: from_micros(received_us),
    })
}

/// Joins group rows `(id, name, owner, created_us)` with member rows
/// `(group_id, member)`, both ordered, into groups.
fn groups_from_rows(
    instance: &InstanceName,
    groups: Vec<(String, String, String, i64)>,
    members: Vec<(String, String)>,
) -> Vec<GroupRow> {
    let mut by_group: HashMap<String, Vec<String>> = HashMap::new();
    for (group, member) in members {
        by_group.entry(group).or_default().push(member);
    }
    groups
        .into_iter()
        .map(|(id, name, owner, created_us)| GroupRow {
            instance: instance.clone(),
            participants: by_group.remove(&id).unwrap_or_default(),
            id,
            name,
            owner,
            created_at: from_micros(created_us),
        })
        .collect()
}

fn expect_one(affected: u64, what: impl FnOnce() -> String) -> Result<(), StoreError> {
    if affected == 0 {
        Err(StoreError::NotFound(what()))
    } else {
        Ok(())
    }
}

fn driver_json(driver: &DriverConfig) -> String {
    // unwrap: a driver config is plain strings and numbers.
    #[allow(clippy::unwrap_used)]
    serde_json::to_string(driver).unwrap()
}
