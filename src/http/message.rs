//! `message/sendText`: accepting a message is committing it to the outbox.
//!
//! The outbox row, the outgoing `message` event and its `delivery: queued`
//! event commit in one transaction before the 201 goes out (invariant 5);
//! the instance's actor is then woken to send it. A send to a broadcast group
//! becomes one message per member, all in that same transaction.

use actix_web::{web, HttpResponse};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::{AppState, Caller};
use crate::{
    error::ApiError,
    event::data::{DeliveryData, DeliveryStatus, Direction, MessageData, Payload},
    instance::InstanceName,
    modem::{self, PhoneNumber},
    store::{Change, Job, OutboxRow},
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendTextBody {
    number: String,
    #[serde(default)]
    text: Option<String>,
    /// Evolution v1's shape: `{"textMessage": {"text": "..."}}`.
    #[serde(default)]
    text_message: Option<TextMessage>,
}

#[derive(Deserialize)]
pub struct TextMessage {
    text: String,
}

/// Suffix of broadcast group ids, as Evolution's group JIDs.
pub const GROUP_SUFFIX: &str = "@g.us";

pub async fn send_text(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<SendTextBody>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let body = body.into_inner();
    let text = body
        .text
        .or(body.text_message.map(|t| t.text))
        .ok_or_else(|| ApiError::BadRequest("'text' is required".into()))?;
    if text.trim().is_empty() {
        return Err(ApiError::BadRequest("'text' must not be empty".into()));
    }
    let max = state.settings.limits.max_text_length;
    let length = text.chars().count();
    if length > max {
        return Err(ApiError::BadRequest(format!(
            "'text' is {length} characters; the limit is {max}"
        )));
    }
    let own = state
        .registry
        .own_number(&name)
        .ok_or_else(|| ApiError::NotFound(format!("instance '{name}' not found")))?;

    let group = body
        .number
        .trim()
        .ends_with(GROUP_SUFFIX)
        .then(|| body.number.trim().to_owned());
    let recipients: Vec<String> = match &group {
        Some(group_id) => {
            let groups = state.log.store().groups(&name).await?;
            let group = groups
                .into_iter()
                .find(|g| &g.id == group_id)
                .ok_or_else(|| ApiError::NotFound(format!("group '{group_id}' not found")))?;
            if group.participants.is_empty() {
                return Err(ApiError::BadRequest(format!(
                    "group '{group_id}' has no participants"
                )));
            }
            group.participants
        }
        None => vec![PhoneNumber::parse(&body.number)
            .map_err(ApiError::BadRequest)?
            .to_string()],
    };

    let now = Utc::now();
    // The parts depend on the text alone (every recipient is a parsed
    // number), so the first recipient's count holds for all.
    let first = recipients
        .first()
        .ok_or_else(|| ApiError::BadRequest("no recipient".into()))?;
    let parts = PhoneNumber::parse(first)
        .and_then(|number| modem::part_count(&number, &text))
        .map_err(ApiError::BadRequest)?;
    let mut job = Job::default();
    let mut accepted = Vec::with_capacity(recipients.len());
    for recipient in recipients {
        let id = uuid::Uuid::now_v7().to_string();
        job.changes.push(Change::EnqueueMessage(OutboxRow {
            id: id.clone(),
            instance: name.clone(),
            recipient: recipient.clone(),
            body: text.clone(),
            status: DeliveryStatus::Queued,
            error: None,
            created_at: now,
        }));
        job.events.push(
            MessageData {
                id: id.clone(),
                direction: Direction::Outgoing,
                from: own.clone(),
                to: recipient.clone(),
                kind: "text".into(),
                content: text.clone(),
                timestamp: now.timestamp(),
                parts,
            }
            .into_event(&name),
        );
        job.events.push(
            DeliveryData {
                id: id.clone(),
                status: DeliveryStatus::Queued,
                to: recipient.clone(),
                timestamp: now.timestamp(),
                error: None,
                parts_done: None,
                parts: None,
            }
            .into_event(&name),
        );
        accepted.push((id, recipient));
    }
    state.log.append(job).await?;
    state.registry.outbox_ready(&name);
    Ok(HttpResponse::Created().json(response(
        &name,
        group,
        accepted,
        &text,
        now.timestamp(),
        parts,
    )))
}

fn response(
    name: &InstanceName,
    group: Option<String>,
    accepted: Vec<(String, String)>,
    text: &str,
    timestamp: i64,
    parts: u32,
) -> serde_json::Value {
    match group {
        None => {
            let (id, number) = accepted.into_iter().next().unwrap_or_default();
            json!({
                "key": { "remoteJid": number, "fromMe": true, "id": id },
                "id": id,
                "instance": name,
                "number": number,
                "text": text,
                "status": "queued",
                "messageTimestamp": timestamp,
                "parts": parts,
            })
        }
        Some(group) => json!({
            "groupJid": group,
            "instance": name,
            "text": text,
            "status": "queued",
            "messageTimestamp": timestamp,
            "parts": parts,
            "messages": accepted
                .into_iter()
                .map(|(id, number)| json!({ "id": id, "number": number, "status": "queued" }))
                .collect::<Vec<_>>(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use crate::modem::{part_count, PhoneNumber};

    fn parts(text: &str) -> u32 {
        let to = PhoneNumber::parse("+15551234567").expect("a number");
        part_count(&to, text).expect("encodable")
    }

    #[test]
    fn parts_follow_the_sms_limits() {
        assert_eq!(parts(&"a".repeat(160)), 1);
        assert_eq!(parts(&"a".repeat(161)), 2);
        assert_eq!(parts(&"a".repeat(306)), 2);
        assert_eq!(parts(&"a".repeat(307)), 3);
        assert_eq!(parts(&"€".repeat(80)), 1);
        assert_eq!(parts(&"€".repeat(81)), 2);
        assert_eq!(parts(&"ж".repeat(70)), 1);
        assert_eq!(parts(&"ж".repeat(71)), 2);
        // An emoji is two UTF-16 units, and a pair is never split.
        assert_eq!(parts(&"😀".repeat(35)), 1);
        assert_eq!(parts(&"😀".repeat(36)), 2);
    }
}
