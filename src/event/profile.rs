//! How each [`StreamProfile`] renders frames: events and control messages.
//!
//! The default (`switchboard`) sends every event's envelope exactly as the
//! hub serialized it, shared by every connection. A compatibility profile
//! that adds a field pays for it itself: the field is spliced in front of the
//! shared envelope for that connection alone, so clients that do not ask for
//! it never carry the bytes.
//!
//! Control messages (errors, acknowledgements, pongs) are rare, so every
//! profile gives them the fields any seed's client reads on every frame:
//! `type` (seed 003 and ours), `event` (seeds 001 and 004, which read it
//! before looking at anything else), `instance` (seed 001) and `data`. A
//! frame with `type` is a control message in the `switchboard` profile; an
//! event has none.

use bytestring::ByteString;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{format_timestamp, Frame};
use crate::domain::{EventKind, StreamProfile, Topic};

/// The text of an event frame in `profile`.
pub fn event_text(profile: StreamProfile, frame: &Frame) -> ByteString {
    match profile {
        StreamProfile::Switchboard | StreamProfile::Plain => frame.json.clone(),
        StreamProfile::SmsGateway => splice(frame, "event_type", sms_gateway_name(frame.topic)),
        StreamProfile::Feed => splice(frame, "type", feed_name(frame)),
    }
}

/// The SSE `event:` name of an event in `profile`; `None` sends the event
/// untyped, which an `EventSource` dispatches to `onmessage`.
pub fn sse_event_name(profile: StreamProfile, frame: &Frame) -> Option<&'static str> {
    match profile {
        StreamProfile::Switchboard => Some(frame.topic.kind().as_str()),
        StreamProfile::Plain => None,
        StreamProfile::SmsGateway => Some(sms_gateway_name(frame.topic)),
        StreamProfile::Feed => Some(feed_name(frame)),
    }
}

/// A server-to-client control message: `kind` is `error`, `pong`,
/// `subscribed`, ...; `instance` is the connection's one instance, if it
/// watches exactly one.
pub fn control(profile: StreamProfile, kind: &str, instance: Option<&str>, data: Value) -> String {
    let timestamp = format_timestamp(chrono::Utc::now());
    let mut message = json!({
        "type": kind,
        "event": kind,
        "instance": instance,
        "data": data,
        "timestamp": timestamp,
    });
    if profile == StreamProfile::SmsGateway {
        message["event_type"] = Value::from(kind);
    }
    message.to_string()
}

/// Seed 000's name for a topic (its `event_type` values and filter words).
pub fn sms_gateway_name(topic: Topic) -> &'static str {
    match topic {
        Topic::MessageIncoming => "incoming",
        Topic::MessageOutgoing => "outgoing",
        Topic::Connection => "modem_status_update",
        Topic::Location => "gnss_position_report",
        other => other.kind().as_str(),
    }
}

/// Whether a filter word is one of seed 000's own (`incoming`, `outgoing`,
/// `modem_status_update`, `gnss_position_report`): a client that filters
/// with them reads `event_type`, so it gets the `sms-gateway` profile.
pub fn is_sms_gateway_word(word: &str) -> bool {
    let word = word.trim();
    Topic::ALL.into_iter().any(|topic| {
        let name = sms_gateway_name(topic);
        name != topic.kind().as_str() && name.eq_ignore_ascii_case(word)
    })
}

/// Seed 003's message type for an event: its presence and call words where
/// the meaning is the same, the event kind otherwise.
fn feed_name(frame: &Frame) -> &'static str {
    match frame.topic.kind() {
        EventKind::Presence => "presence_update",
        EventKind::Status => "status_change",
        EventKind::Call => {
            /// Only the call's status is read; serde skips the rest.
            #[derive(Deserialize)]
            struct Envelope {
                data: CallData,
            }
            #[derive(Deserialize)]
            struct CallData {
                status: String,
            }
            match serde_json::from_str::<Envelope>(&frame.json) {
                Ok(e) if matches!(e.data.status.as_str(), "end" | "reject") => "call_ended",
                _ => "call_started",
            }
        }
        other => other.as_str(),
    }
}

/// The envelope with `"field":"value",` put first. The envelope is a JSON
/// object (it starts with `{`) and `value` is one of the static names above,
/// which need no escaping.
fn splice(frame: &Frame, field: &str, value: &str) -> ByteString {
    let rest = frame.json.strip_prefix('{').unwrap_or(&frame.json);
    let mut out = String::with_capacity(frame.json.len() + field.len() + value.len() + 8);
    out.push_str("{\"");
    out.push_str(field);
    out.push_str("\":\"");
    out.push_str(value);
    out.push_str("\",");
    out.push_str(rest);
    ByteString::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        domain::InstanceName,
        event::{
            data::{CallData, CallStatus, Direction, MessageData, Payload},
            Event,
        },
    };

    fn frame(payload: impl Payload) -> Frame {
        let new = payload.into_event(&InstanceName::parse("alpha").expect("valid"));
        Frame::encode(&Event {
            id: 7,
            seq: 3,
            instance: new.instance,
            topic: new.topic,
            timestamp: new.timestamp,
            data: new.data,
        })
    }

    fn message(direction: Direction) -> MessageData {
        MessageData {
            id: "m1".into(),
            direction,
            from: "+1".into(),
            to: "+2".into(),
            kind: "text".into(),
            content: "hi".into(),
            timestamp: 0,
            parts: 1,
        }
    }

    #[test]
    fn the_default_profile_shares_the_envelope_as_it_is() {
        let frame = frame(message(Direction::Incoming));
        let text = event_text(StreamProfile::Switchboard, &frame);
        assert_eq!(text, frame.json);
        assert_eq!(
            sse_event_name(StreamProfile::Switchboard, &frame),
            Some("message")
        );
        assert_eq!(sse_event_name(StreamProfile::Plain, &frame), None);
    }

    #[test]
    fn compatibility_fields_are_added_in_front_of_a_valid_envelope() {
        for (direction, name) in [
            (Direction::Incoming, "incoming"),
            (Direction::Outgoing, "outgoing"),
        ] {
            let frame = frame(message(direction));
            let value: Value = serde_json::from_str(&event_text(StreamProfile::SmsGateway, &frame))
                .expect("valid JSON");
            assert_eq!(value["event_type"], name);
            assert_eq!(value["event"], "message");
            assert_eq!(value["data"]["content"], "hi");
        }
        let value: Value = serde_json::from_str(&event_text(
            StreamProfile::Feed,
            &frame(message(Direction::Incoming)),
        ))
        .expect("valid JSON");
        assert_eq!(value["type"], "message");
        assert_eq!(value["id"], 7);
    }

    #[test]
    fn only_seed_000s_own_words_choose_its_profile() {
        for word in [
            "incoming",
            "OUTGOING",
            " modem_status_update",
            "gnss_position_report",
        ] {
            assert!(is_sms_gateway_word(word), "{word}");
        }
        for word in ["message", "delivery", "MESSAGES_UPSERT", "bogus"] {
            assert!(!is_sms_gateway_word(word), "{word}");
        }
    }

    #[test]
    fn feed_names_follow_the_call_status() {
        let call = |status: CallStatus| CallData {
            id: "c1".into(),
            from: "+1".into(),
            status,
            is_video: false,
            timestamp: 0,
        };
        assert_eq!(feed_name(&frame(call(CallStatus::Offer))), "call_started");
        assert_eq!(feed_name(&frame(call(CallStatus::End))), "call_ended");
    }

    #[test]
    fn control_messages_carry_every_field_a_seed_reads() {
        let value: Value = serde_json::from_str(&control(
            StreamProfile::SmsGateway,
            "error",
            Some("alpha"),
            json!({ "code": "BAD_REQUEST" }),
        ))
        .expect("valid JSON");
        for field in ["type", "event", "event_type"] {
            assert_eq!(value[field], "error", "{field}");
        }
        assert_eq!(value["instance"], "alpha");
        assert_eq!(value["data"]["code"], "BAD_REQUEST");
        let plain: Value = serde_json::from_str(&control(
            StreamProfile::Switchboard,
            "pong",
            None,
            json!({}),
        ))
        .expect("valid JSON");
        assert!(plain.get("event_type").is_none());
        assert!(plain["instance"].is_null());
    }
}
