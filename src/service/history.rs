//! Message history: what an instance sent and received, and what became
//! of each message it sent, without replaying the log.
//!
//! Listing reads the instance's `message` events newest first (the log is
//! where incoming messages live; outgoing ones are also in the outbox) and
//! joins each outgoing one with its outbox row for its current status and
//! schedule. Filters that the index cannot serve (number, status) are
//! applied while scanning, and a request scans at most [`SCAN_LIMIT`]
//! events: when that runs out before the page is full, the answer is a
//! shorter page with a cursor to go on from, never an unbounded scan.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{Service, ServiceError};
use crate::{
    domain::{InstanceName, PhoneNumber, Topic, TopicSet},
    event::data::{Direction, MessageData},
    store::{BackwardQuery, OutboxRow},
};

/// Most events one history request reads, whatever its filters.
pub const SCAN_LIMIT: i64 = 5_000;
/// Events read per statement while scanning.
const SCAN_CHUNK: i64 = 500;
/// Messages per page: the default and the most.
pub const DEFAULT_HISTORY_LIMIT: i64 = 50;
pub const MAX_HISTORY_LIMIT: i64 = 500;

/// What `GET /message/find/{instance}` asks for.
#[derive(Debug, Default)]
pub struct HistoryQuery {
    pub direction: Option<Direction>,
    /// `received` (incoming) or a delivery status (outgoing).
    pub status: Option<String>,
    /// The other party: the sender of an incoming message, the recipient
    /// of an outgoing one.
    pub number: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only messages whose event id is below this (the previous page's
    /// `nextCursor`).
    pub cursor: Option<i64>,
    pub limit: Option<i64>,
}

/// One message in the history.
#[derive(Debug)]
pub struct HistoryEntry {
    /// The id of its `message` event, the position the cursor counts in.
    pub event_id: i64,
    pub message: MessageData,
    pub at: DateTime<Utc>,
    /// The outbox row of an outgoing message (absent once deleted).
    pub outbox: Option<OutboxRow>,
}

impl HistoryEntry {
    /// `received` for an incoming message; an outgoing one's delivery status.
    pub fn status(&self) -> &str {
        match (&self.message.direction, &self.outbox) {
            (Direction::Incoming, _) => "received",
            (Direction::Outgoing, Some(row)) => row.status.as_str(),
            (Direction::Outgoing, None) => "unknown",
        }
    }

    /// The other party.
    pub fn number(&self) -> &str {
        match self.message.direction {
            Direction::Incoming => &self.message.from,
            Direction::Outgoing => &self.message.to,
        }
    }
}

#[derive(Debug)]
pub struct HistoryPage {
    pub messages: Vec<HistoryEntry>,
    /// Where the next page starts; `None` when the history is read to its end.
    pub next_cursor: Option<i64>,
}

const STATUSES: &[&str] = &[
    "received",
    "queued",
    "sent",
    "delivered",
    "failed",
    "expired",
    "cancelled",
];

impl Service {
    pub async fn message_history(
        &self,
        name: &InstanceName,
        query: HistoryQuery,
    ) -> Result<HistoryPage, ServiceError> {
        self.exists(name)?;
        let limit = query.limit.unwrap_or(DEFAULT_HISTORY_LIMIT);
        if !(1..=MAX_HISTORY_LIMIT).contains(&limit) {
            return Err(ServiceError::Invalid(format!(
                "'limit' must be between 1 and {MAX_HISTORY_LIMIT}"
            )));
        }
        if let Some(status) = &query.status {
            if !STATUSES.contains(&status.as_str()) {
                return Err(ServiceError::Invalid(format!(
                    "'status' must be one of {}",
                    STATUSES.join(", ")
                )));
            }
        }
        if let (Some(since), Some(until)) = (query.since, query.until) {
            if since >= until {
                return Err(ServiceError::Invalid(
                    "'since' must be before 'until'".into(),
                ));
            }
        }
        if query.cursor.is_some_and(|c| c <= 0) {
            return Err(ServiceError::Invalid("'cursor' must be 1 or more".into()));
        }
        // The number as given and as the instance would normalise it, so
        // `+15551234567` and a national `5551234567` both find the same texts.
        let numbers: Vec<String> = match &query.number {
            None => Vec::new(),
            Some(raw) => {
                let mut forms = vec![raw.trim().to_string()];
                if let Ok(parsed) = PhoneNumber::parse_with(raw, &self.number_rules(name)?) {
                    forms.push(parsed.as_str().to_string());
                }
                forms
            }
        };
        let topics = match query.direction {
            None => TopicSet::of(&[Topic::MessageIncoming, Topic::MessageOutgoing]),
            Some(Direction::Incoming) => TopicSet::of(&[Topic::MessageIncoming]),
            Some(Direction::Outgoing) => TopicSet::of(&[Topic::MessageOutgoing]),
        };
        let mut scan = BackwardQuery {
            instance: name.clone(),
            topics,
            before_id: query.cursor.unwrap_or(i64::MAX),
            from_us: query.since.map_or(i64::MIN, |t| t.timestamp_micros()),
            to_us: query.until.map_or(i64::MAX, |t| t.timestamp_micros()),
            limit: SCAN_CHUNK,
        };
        let store = self.log.store();
        let mut messages = Vec::new();
        let mut scanned = 0;
        loop {
            scan.limit = SCAN_CHUNK.min(SCAN_LIMIT - scanned);
            let events = store.events_before(&scan).await?;
            let exhausted = (events.len() as i64) < scan.limit;
            scanned += events.len() as i64;
            let mut chunk = Vec::with_capacity(events.len());
            for event in events {
                scan.before_id = event.id;
                // An event the server wrote itself; one it cannot read is
                // skipped rather than failing the whole history.
                let Ok(message) = serde_json::from_str::<MessageData>(event.data.get()) else {
                    tracing::warn!(id = event.id, "a message event is unreadable; skipped");
                    continue;
                };
                chunk.push(HistoryEntry {
                    event_id: event.id,
                    message,
                    at: event.timestamp,
                    outbox: None,
                });
            }
            let ids: Vec<&str> = chunk
                .iter()
                .filter(|e| e.message.direction == Direction::Outgoing)
                .map(|e| e.message.id.as_str())
                .collect();
            let mut rows: HashMap<String, OutboxRow> = store
                .messages_by_id(name, &ids)
                .await?
                .into_iter()
                .map(|row| (row.id.clone(), row))
                .collect();
            for entry in &mut chunk {
                if entry.message.direction == Direction::Outgoing {
                    entry.outbox = rows.remove(&entry.message.id);
                }
            }
            for entry in chunk {
                let wanted = (numbers.is_empty() || numbers.iter().any(|n| n == entry.number()))
                    && query.status.as_deref().is_none_or(|s| s == entry.status());
                if wanted {
                    messages.push(entry);
                    if messages.len() as i64 == limit {
                        let next_cursor = messages.last().map(|e| e.event_id);
                        return Ok(HistoryPage {
                            messages,
                            next_cursor,
                        });
                    }
                }
            }
            if exhausted {
                return Ok(HistoryPage {
                    messages,
                    next_cursor: None,
                });
            }
            if scanned >= SCAN_LIMIT {
                // Read as far as one request may: go on from here.
                return Ok(HistoryPage {
                    messages,
                    next_cursor: Some(scan.before_id),
                });
            }
        }
    }
}
