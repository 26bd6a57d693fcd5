//! `message/sendText`: 201 once the text is committed to the outbox (see
//! `service::messages`).

use actix_web::{http::StatusCode, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{answer, body::Json, error::ApiError, AppState, Caller};
use crate::{
    domain::{InstanceName, ScheduleRequest},
    event::format_timestamp,
    service::{Accepted, SendText},
};

/// `message/sendText`: `text`, or Evolution v1's `textMessage.text`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"number": "+15551234567", "text": "Hello from switchboard"}))]
pub struct SendTextBody {
    /// A phone number (E.164, `+` optional), or a group id from `group/create`.
    number: String,
    #[serde(default)]
    text: Option<String>,
    /// Evolution v1's shape: `{"textMessage": {"text": "..."}}`.
    #[serde(default)]
    text_message: Option<TextMessage>,
    /// 0 to 9, higher goes first; 5 when absent.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 9, example = 5)]
    priority: Option<i64>,
    /// Seconds the text may wait (from `sendAt`, or now): not sent by then,
    /// it is never sent and gets a `delivery` `expired`. Not with `validUntil`.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 31622400)]
    ttl_secs: Option<i64>,
    /// RFC 3339: not sent by then, it is never sent (`delivery` `expired`).
    #[serde(default)]
    #[schema(format = DateTime, example = "2026-12-01T18:00:00Z")]
    valid_until: Option<String>,
    /// RFC 3339: not sent before then (at most 366 days ahead).
    #[serde(default)]
    #[schema(format = DateTime, example = "2026-12-01T09:00:00Z")]
    send_at: Option<String>,
}

/// Evolution v1's wrapper of the text.
#[derive(Deserialize, ToSchema)]
pub struct TextMessage {
    text: String,
}

/// Evolution's message key.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageKey {
    from_me: bool,
    id: String,
    remote_jid: String,
}

/// The answer for a text to one number.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SentToNumber {
    /// The message id; its `delivery` events carry it.
    id: String,
    instance: String,
    key: MessageKey,
    /// Unix seconds.
    message_timestamp: i64,
    number: String,
    /// SMS parts the text takes.
    parts: u32,
    #[schema(pattern = "^queued$")]
    status: String,
    text: String,
    priority: u8,
    /// When it may go out, if scheduled.
    #[serde(skip_serializing_if = "Option::is_none")]
    send_at: Option<String>,
    /// When it expires unsent, if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    valid_until: Option<String>,
    /// The pool it was sent to, when the name in the path is a pool's
    /// (`instance` is the pool's name too until a member takes it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<String>,
}

/// One member's message of a text sent to a group.
#[derive(Serialize, ToSchema)]
pub struct GroupMessage {
    id: String,
    number: String,
    #[schema(pattern = "^queued$")]
    status: String,
}

/// The answer for a text to a group: one message per member.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SentToGroup {
    group_jid: String,
    instance: String,
    /// Unix seconds.
    message_timestamp: i64,
    messages: Vec<GroupMessage>,
    parts: u32,
    #[schema(pattern = "^queued$")]
    status: String,
    text: String,
}

/// `message/sendText`'s answer.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Sent {
    Number(SentToNumber),
    Group(SentToGroup),
}

/// Send a text; answered once it is committed to the outbox.
///
/// The name may be a pool's (admin key only): the text then waits in the
/// pool until the member its strategy picks takes it, and the answer also
/// carries `"pool"`.
///
/// Each status change (`queued`, `sent`, `delivered`, `failed`) then comes
/// as a `delivery` event with the message id.
#[utoipa::path(
    post, path = "/message/sendText/{instance}", tag = "messages", operation_id = "sendText",
    params(super::openapi::InstancePath),
    request_body = SendTextBody,
    responses((status = 201, description = "Queued in the outbox", body = Sent, example = json!({
        "id": "01a22a36-1da5-75f1-b490-9e0d0ed5abbf", "instance": "alpha",
        "key": {"fromMe": true, "id": "01a22a36-1da5-75f1-b490-9e0d0ed5abbf", "remoteJid": "+15551234567"},
        "messageTimestamp": 1796004519, "number": "+15551234567", "parts": 1, "status": "queued",
        "text": "Hello from switchboard"}))),
)]
pub async fn send_text(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Json<SendTextBody>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let body = body.into_inner();
    let text = body
        .text
        .or(body.text_message.map(|t| t.text))
        .ok_or_else(|| ApiError::BadRequest("'text' is required".into()))?;
    let accepted = state
        .service
        .send_text(
            &name,
            SendText {
                number: body.number,
                text,
                schedule: ScheduleRequest {
                    priority: body.priority,
                    ttl_secs: body.ttl_secs,
                    valid_until: body.valid_until,
                    send_at: body.send_at,
                },
            },
        )
        .await?;
    answer(StatusCode::CREATED, &response(&name, accepted))
}

/// Evolution's answer shape: `key`, `id` and `status` for one number; the
/// group and one entry per member for a group.
fn response(name: &InstanceName, accepted: Accepted) -> Sent {
    let Accepted {
        pool,
        group,
        messages,
        text,
        timestamp,
        parts,
        schedule,
    } = accepted;
    match group {
        None => {
            let (id, number) = messages.into_iter().next().unwrap_or_default();
            Sent::Number(SentToNumber {
                key: MessageKey {
                    from_me: true,
                    id: id.clone(),
                    remote_jid: number.clone(),
                },
                id,
                instance: name.to_string(),
                message_timestamp: timestamp,
                number,
                parts,
                status: "queued".into(),
                text,
                priority: schedule.priority,
                send_at: schedule.send_at.map(format_timestamp),
                valid_until: schedule.valid_until.map(format_timestamp),
                pool: pool.map(|p| p.to_string()),
            })
        }
        Some(group) => Sent::Group(SentToGroup {
            group_jid: group,
            instance: name.to_string(),
            message_timestamp: timestamp,
            messages: messages
                .into_iter()
                .map(|(id, number)| GroupMessage {
                    id,
                    number,
                    status: "queued".into(),
                })
                .collect(),
            parts,
            status: "queued".into(),
            text,
        }),
    }
}

/// A message and its instance, in the path.
#[derive(utoipa::IntoParams, Deserialize)]
#[into_params(parameter_in = Path)]
pub struct MessagePath {
    /// The instance's name.
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", example = "alpha")]
    pub(super) instance: String,
    /// The message id `message/sendText` answered with.
    #[param(max_length = 64, example = "01a22a36-1da5-75f1-b490-9e0d0ed5abbf")]
    pub(super) id: String,
}

/// A message cancelled.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cancelled {
    id: String,
    instance: String,
    number: String,
    #[schema(pattern = "^cancelled$")]
    status: String,
}

/// Cancel a message no part of which went out.
///
/// It gets a `delivery` `cancelled` and is never sent. Once a driver took
/// it to send (a part went out or is going out) the answer is 409.
#[utoipa::path(
    delete, path = "/message/{instance}/{id}", tag = "messages", operation_id = "cancelMessage",
    params(MessagePath),
    responses(
        (status = 200, description = "Cancelled", body = Cancelled, example = json!({
            "id": "01a22a36-1da5-75f1-b490-9e0d0ed5abbf", "instance": "alpha",
            "number": "+15551234567", "status": "cancelled"})),
        (status = 404, description = "No such instance or message", body = super::openapi::ErrorBody,
            example = json!({"error": {"code": "NOT_FOUND", "message": "instance 'alpha' has no message '01a22a36-1da5-75f1-b490-9e0d0ed5abbf'"}})),
        (status = 409, description = "Already being sent, sent or settled", body = super::openapi::ErrorBody,
            example = json!({"error": {"code": "CONFLICT", "message": "message '01a22a36-1da5-75f1-b490-9e0d0ed5abbf' is already sent"}})),
    ),
)]
pub async fn cancel(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<MessagePath>,
) -> Result<HttpResponse, ApiError> {
    let MessagePath { instance, id } = path.into_inner();
    let name = caller.instance(&instance)?;
    let message = state.service.cancel_message(&name, &id).await?;
    answer(
        StatusCode::OK,
        &Cancelled {
            id: message.id,
            instance: name.to_string(),
            number: message.recipient,
            status: message.status.as_str().into(),
        },
    )
}

/// One part of an outgoing message the modem accepted.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartView {
    part: u32,
    total: u32,
    /// The message reference (TP-MR) the network's status report quotes.
    reference: u32,
    #[schema(pattern = "^(sent|delivered|failed)$")]
    status: String,
    /// RFC 3339.
    sent_at: String,
}

/// An outgoing message and what happened to it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageAnswer {
    id: String,
    #[schema(pattern = "^outgoing$")]
    direction: String,
    instance: String,
    /// The pool it was sent to (none: sent to the instance).
    pool: Option<String>,
    number: String,
    text: String,
    #[schema(pattern = "^(queued|sent|delivered|failed|expired|cancelled)$")]
    status: String,
    error: Option<String>,
    priority: u8,
    send_at: Option<String>,
    valid_until: Option<String>,
    created_at: String,
    /// Why a queued message still waits (`scheduled: ...`, `throttle:
    /// perMinute 10 reached until ...`); `null` otherwise.
    waiting: Option<String>,
    /// Each part the modem accepted (the virtual modem records none).
    parts: Vec<PartView>,
}

/// One outgoing message with its parts' references and statuses.
#[utoipa::path(
    get, path = "/message/{instance}/{id}", tag = "messages", operation_id = "findMessage",
    params(MessagePath),
    responses(
        (status = 200, description = "The message", body = MessageAnswer, example = json!({
            "id": "01a22a36-1da5-75f1-b490-9e0d0ed5abbf", "direction": "outgoing", "instance": "alpha",
            "pool": null, "number": "+15551234567", "text": "Hello", "status": "queued", "error": null,
            "priority": 5, "sendAt": null, "validUntil": null,
            "createdAt": "2026-11-30T10:00:00.000000Z",
            "waiting": "throttle: perMinute 10 reached until 2026-11-30T10:01:00Z", "parts": []})),
        (status = 404, description = "No such instance or message", body = super::openapi::ErrorBody,
            example = json!({"error": {"code": "NOT_FOUND", "message": "instance 'alpha' has no message '01a22a36-1da5-75f1-b490-9e0d0ed5abbf'"}})),
    ),
)]
pub async fn find_one(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<MessagePath>,
) -> Result<HttpResponse, ApiError> {
    let MessagePath { instance, id } = path.into_inner();
    let name = caller.instance(&instance)?;
    let view = state.service.message(&name, &id).await?;
    let message = view.message;
    answer(
        StatusCode::OK,
        &MessageAnswer {
            id: message.id,
            direction: "outgoing".into(),
            instance: message.instance.to_string(),
            pool: message.pool.map(|p| p.to_string()),
            number: message.recipient,
            text: message.body,
            status: message.status.as_str().into(),
            error: message.error,
            priority: message.schedule.priority,
            send_at: message.schedule.send_at.map(format_timestamp),
            valid_until: message.schedule.valid_until.map(format_timestamp),
            created_at: format_timestamp(message.created_at),
            waiting: view.waiting,
            parts: view
                .parts
                .into_iter()
                .map(|p| PartView {
                    part: p.part,
                    total: p.total,
                    reference: p.reference,
                    status: p.status.as_str().into(),
                    sent_at: format_timestamp(p.sent_at),
                })
                .collect(),
        },
    )
}
