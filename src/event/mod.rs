//! The event model shared by every stage: what an event is, its kinds and
//! topics, and the JSON envelope clients receive.
//!
//! An event is born in a modem actor or the admin API as a [`NewEvent`],
//! becomes an [`Event`] once the log has committed it (and given it its `id`
//! and `seq`), and is serialized once into a [`Frame`] for fan-out.

pub mod data;
pub mod profile;

use bytestring::ByteString;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::domain::InstanceName;
pub use crate::domain::{EventKind, Topic, TopicSet};

/// An event that has not been committed yet: it has no `id` or `seq`.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub instance: InstanceName,
    pub topic: Topic,
    /// When it happened (not when it was committed); micro-second precision
    /// so latency can be measured from it.
    pub timestamp: DateTime<Utc>,
    pub data: Box<RawValue>,
}

impl NewEvent {
    /// Builds an event from any serializable payload.
    pub fn new(instance: InstanceName, topic: Topic, data: &impl Serialize) -> NewEvent {
        // unwrap: the payloads are plain structs of strings and numbers; they
        // have no maps with non-string keys and no failing Serialize impls.
        #[allow(clippy::unwrap_used)]
        let data = serde_json::value::to_raw_value(data).unwrap();
        NewEvent {
            instance,
            topic,
            timestamp: Utc::now(),
            data,
        }
    }
}

/// A committed event, as stored in the log.
#[derive(Debug, Clone)]
pub struct Event {
    /// Global position in the log; strictly increasing in commit order.
    pub id: i64,
    /// Position within the instance; starts at 1 with no gaps.
    pub seq: i64,
    pub instance: InstanceName,
    pub topic: Topic,
    pub timestamp: DateTime<Utc>,
    pub data: Box<RawValue>,
}

impl Event {
    pub fn kind(&self) -> EventKind {
        self.topic.kind()
    }

    /// The JSON envelope clients receive.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Envelope<'a> {
            id: i64,
            seq: i64,
            event: &'static str,
            instance: &'a str,
            timestamp: String,
            data: &'a RawValue,
        }
        let envelope = Envelope {
            id: self.id,
            seq: self.seq,
            event: self.kind().as_str(),
            instance: self.instance.as_str(),
            timestamp: format_timestamp(self.timestamp),
            data: &self.data,
        };
        // unwrap: every field is a number, a string or already-valid JSON.
        #[allow(clippy::unwrap_used)]
        serde_json::to_string(&envelope).unwrap()
    }
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-11-22T10:30:00.123456Z`.
pub fn format_timestamp(ts: DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A committed event serialized once, shared by every connection that gets it.
#[derive(Debug)]
pub struct Frame {
    pub id: i64,
    pub topic: Topic,
    /// The envelope as JSON text; cloning it only bumps a reference count.
    pub json: ByteString,
}

impl Frame {
    pub fn encode(event: &Event) -> Frame {
        Frame {
            id: event.id,
            topic: event.topic,
            json: ByteString::from(event.to_json()),
        }
    }

    /// Bytes this frame accounts for in a connection's queue.
    pub fn cost(&self) -> usize {
        self.json.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_has_the_documented_fields_in_order() {
        let event = Event {
            id: 1042,
            seq: 17,
            instance: InstanceName::parse("alpha").expect("valid"),
            topic: Topic::MessageIncoming,
            timestamp: DateTime::parse_from_rfc3339("2026-11-22T10:30:00.123Z")
                .expect("valid")
                .with_timezone(&Utc),
            data: RawValue::from_string(r#"{"content":"Hello"}"#.into()).expect("valid"),
        };
        assert_eq!(
            event.to_json(),
            r#"{"id":1042,"seq":17,"event":"message","instance":"alpha","timestamp":"2026-11-22T10:30:00.123000Z","data":{"content":"Hello"}}"#
        );
    }
}
