//! Rows as the database returns them (tuples, the same on both backends)
//! turned into the store's types, and the values the store writes.
//!
//! A row this version cannot understand (a topic from the future, corrupt
//! JSON) becomes [`StoreError::Internal`] naming the row, never a panic.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::{GroupRow, InboundPartRow, InstanceRow, OutboxRow, PartRow, StoreError, WebhookRow};
use crate::{
    domain::{
        DriverConfig, InstanceName, InstanceSettings, Retention, Schedule, WebhookSecret,
        WebsocketSettings,
    },
    event::{data::DeliveryStatus, Event, Topic, TopicSet},
};

pub(super) fn to_micros(ts: DateTime<Utc>) -> i64 {
    ts.timestamp_micros()
}

pub(super) fn from_micros(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

/// A `u64` setting as the signed column holds it (saturating).
pub(super) fn opt_i64(value: Option<u64>) -> Option<i64> {
    value.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// A topic mask as its column holds it.
pub(super) fn topic_mask(topics: Option<TopicSet>) -> Option<i64> {
    topics.map(|t| i64::from(t.bits()))
}

pub(super) fn headers_json(headers: &[(String, String)]) -> String {
    let map: BTreeMap<&str, &str> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // unwrap: a map of strings always serializes.
    #[allow(clippy::unwrap_used)]
    serde_json::to_string(&map).unwrap()
}

pub(super) fn settings_json(settings: &InstanceSettings) -> String {
    // unwrap: settings are plain strings, booleans and a region code.
    #[allow(clippy::unwrap_used)]
    serde_json::to_string(settings).unwrap()
}

pub(super) fn driver_json(driver: &DriverConfig) -> String {
    // unwrap: a driver config is plain strings and numbers.
    #[allow(clippy::unwrap_used)]
    serde_json::to_string(driver).unwrap()
}

fn name(raw: &str, what: impl FnOnce() -> String) -> Result<InstanceName, StoreError> {
    InstanceName::parse(raw).map_err(|e| StoreError::corrupt(what(), e.to_string()))
}

fn small(value: i64, what: impl FnOnce() -> String) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|e| StoreError::corrupt(what(), e))
}

fn status(raw: &str, what: impl FnOnce() -> String) -> Result<DeliveryStatus, StoreError> {
    DeliveryStatus::parse(raw)
        .ok_or_else(|| StoreError::corrupt(what(), format!("unknown status '{raw}'")))
}

/// An `events` row: `id, instance, seq, topic, ts_us, data`.
pub(super) type EventTuple = (i64, String, i64, i16, i64, String);

pub(super) fn event_from_row(
    (id, instance, seq, topic, ts_us, data): EventTuple,
) -> Result<Event, StoreError> {
    let what = || format!("event {id} is unreadable");
    Ok(Event {
        id,
        seq,
        instance: name(&instance, what)?,
        topic: Topic::from_code(topic)
            .ok_or_else(|| StoreError::corrupt(what(), format!("unknown topic {topic}")))?,
        timestamp: from_micros(ts_us),
        data: RawValue::from_string(data).map_err(|e| StoreError::corrupt(what(), e))?,
    })
}

/// An `instances` row: `name, id, driver, key_hash, enabled, ws_enabled,
/// ws_events, created_us, retention_age_secs, retention_events, settings,
/// node`.
pub(super) type InstanceTuple = (
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
    Option<String>,
    Option<String>,
);

pub(super) fn instance_from_row(
    (
        raw,
        id,
        driver,
        key_hash,
        enabled,
        ws_enabled,
        ws_events,
        created_us,
        age,
        events,
        settings,
        node,
    ): InstanceTuple,
) -> Result<InstanceRow, StoreError> {
    let what = || format!("instance '{raw}' is unreadable");
    Ok(InstanceRow {
        name: name(&raw, what)?,
        id: Uuid::parse_str(&id).map_err(|e| StoreError::corrupt(what(), e))?,
        driver: serde_json::from_str(&driver).map_err(|e| StoreError::corrupt(what(), e))?,
        key_hash,
        enabled,
        websocket: WebsocketSettings {
            enabled: ws_enabled,
            events: ws_events.map(|bits| TopicSet::from_bits(bits as u16)),
        },
        retention: Retention {
            max_age_secs: age.and_then(|v| u64::try_from(v).ok()),
            max_events: events.and_then(|v| u64::try_from(v).ok()),
        },
        created_at: from_micros(created_us),
        settings: match settings {
            Some(json) => {
                serde_json::from_str(&json).map_err(|e| StoreError::corrupt(what(), e))?
            }
            None => InstanceSettings::default(),
        },
        node,
    })
}

/// A `webhooks` row: `instance, url, headers, events, enabled, cursor,
/// created_us, secret, stopped`.
pub(super) type WebhookTuple = (
    String,
    String,
    String,
    Option<i64>,
    bool,
    i64,
    i64,
    Option<String>,
    Option<String>,
);

pub(super) fn webhook_from_row(
    (instance, url, headers, events, enabled, cursor, created_us, secret, stopped): WebhookTuple,
) -> Result<WebhookRow, StoreError> {
    let what = || format!("the webhook of '{instance}' is unreadable");
    let headers: BTreeMap<String, String> =
        serde_json::from_str(&headers).map_err(|e| StoreError::corrupt(what(), e))?;
    Ok(WebhookRow {
        instance: name(&instance, what)?,
        url,
        headers: headers.into_iter().collect(),
        events: events.map(|bits| TopicSet::from_bits(bits as u16)),
        enabled,
        cursor,
        created_at: from_micros(created_us),
        secret: secret.map(WebhookSecret::stored),
        stopped,
    })
}

/// The `outbox` columns as [`OutboxTuple`] reads them.
pub(super) const OUTBOX_COLUMNS: &str =
    "id, instance, recipient, body, status, error, created_us, \
     priority, send_at_us, valid_until_us, claimed_us, pool";

/// An `outbox` row: [`OUTBOX_COLUMNS`].
pub(super) type OutboxTuple = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

pub(super) fn outbox_from_row(
    (
        id,
        instance,
        recipient,
        body,
        raw_status,
        error,
        created_us,
        priority,
        send_at_us,
        valid_until_us,
        claimed_us,
        pool,
    ): OutboxTuple,
) -> Result<OutboxRow, StoreError> {
    let what = || format!("message '{id}' is unreadable");
    Ok(OutboxRow {
        instance: name(&instance, what)?,
        status: status(&raw_status, what)?,
        schedule: Schedule {
            priority: u8::try_from(priority).map_err(|e| StoreError::corrupt(what(), e))?,
            send_at: (send_at_us > 0).then(|| from_micros(send_at_us)),
            valid_until: valid_until_us.map(from_micros),
        },
        claimed_at: claimed_us.map(from_micros),
        pool: pool.map(|p| name(&p, what)).transpose()?,
        id,
        recipient,
        body,
        error,
        created_at: from_micros(created_us),
    })
}

/// An `outbox_parts` row: `message_id, instance, part, total, reference,
/// recipient, status, sent_us`.
pub(super) type PartTuple = (String, String, i64, i64, i64, String, String, i64);

pub(super) fn part_from_row(
    (message_id, instance, part, total, reference, recipient, raw_status, sent_us): PartTuple,
) -> Result<PartRow, StoreError> {
    let what = || format!("part {part} of message '{message_id}' is unreadable");
    Ok(PartRow {
        instance: name(&instance, what)?,
        status: status(&raw_status, what)?,
        part: small(part, what)?,
        total: small(total, what)?,
        reference: small(reference, what)?,
        message_id,
        recipient,
        sent_at: from_micros(sent_us),
    })
}

/// An `inbox_parts` row: `instance, sender, reference, total, sequence,
/// content, sent_at, received_us, raw`.
pub(super) type InboundPartTuple = (
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

pub(super) fn inbound_part_from_row(
    (instance, sender, reference, total, sequence, content, sent_at, received_us, raw): InboundPartTuple,
) -> Result<InboundPartRow, StoreError> {
    let what = || format!("an inbound part from {sender} is unreadable");
    Ok(InboundPartRow {
        instance: name(&instance, what)?,
        reference: small(reference, what)?,
        total: small(total, what)?,
        sequence: small(sequence, what)?,
        sender,
        content,
        raw,
        sent_at,
        received_at: from_micros(received_us),
    })
}

/// A `groups` row: `id, name, owner, created_us`.
pub(super) type GroupTuple = (String, String, String, i64);

/// Joins group rows with member rows `(group_id, member)`, both ordered,
/// into groups.
pub(super) fn groups_from_rows(
    instance: &InstanceName,
    groups: Vec<GroupTuple>,
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
