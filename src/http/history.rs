//! Message history: `GET /message/find/{instance}` lists what an instance
//! sent and received (see `service::history`); one sent message with its
//! parts is `GET /message/{instance}/{id}` (`message.rs`).

use actix_web::{http::StatusCode, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{answer, error::ApiError, query::Query, AppState, Caller};
use crate::{
    domain::rfc3339,
    event::{data::Direction, format_timestamp},
    service::{HistoryEntry, HistoryQuery},
};

/// `GET /message/find/{instance}`'s query.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FindQuery {
    /// Only `incoming` or only `outgoing` messages (default: both).
    #[param(pattern = "^(incoming|outgoing)$", example = "outgoing")]
    direction: Option<String>,
    /// `received` (incoming) or a delivery status: `queued`, `sent`,
    /// `delivered`, `failed`, `expired`, `cancelled`.
    #[param(example = "delivered")]
    status: Option<String>,
    /// The other party: who sent an incoming message, to whom an outgoing
    /// one went.
    #[param(example = "+15551234567")]
    number: Option<String>,
    /// Only messages at or after this time (RFC 3339).
    #[param(example = "2026-11-30T00:00:00Z")]
    since: Option<String>,
    /// Only messages before this time (RFC 3339).
    #[param(example = "2026-12-01T00:00:00Z")]
    until: Option<String>,
    /// The previous page's `nextCursor`.
    #[param(minimum = 1, example = 1042)]
    cursor: Option<i64>,
    /// Messages per page (default 50).
    #[param(minimum = 1, maximum = 500, example = 50)]
    limit: Option<i64>,
}

/// One message of the history.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryItem {
    id: String,
    #[schema(pattern = "^(incoming|outgoing)$")]
    direction: String,
    /// The other party.
    number: String,
    from: String,
    to: String,
    text: String,
    parts: u32,
    /// `received`, or the outgoing message's delivery status (`unknown`
    /// once its outbox row is gone).
    status: String,
    /// When it was received or accepted (RFC 3339).
    #[schema(format = DateTime)]
    timestamp: String,
    /// The id of its `message` event.
    event_id: i64,
    /// Outgoing only: its priority, schedule and last error.
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    send_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    valid_until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// A page of the history, newest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryAnswer {
    messages: Vec<HistoryItem>,
    /// Pass as `cursor` for the next page; `null` at the end of the history.
    /// A page can be short (even empty) and still have one: a request
    /// reads at most 5,000 events.
    next_cursor: Option<i64>,
}

fn time(raw: Option<&str>, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    raw.map(|raw| rfc3339(name, raw).map_err(ApiError::BadRequest))
        .transpose()
}

fn item(entry: HistoryEntry) -> HistoryItem {
    let status = entry.status().to_string();
    let number = entry.number().to_string();
    let schedule = entry.outbox.as_ref().map(|row| row.schedule);
    HistoryItem {
        direction: match entry.message.direction {
            Direction::Incoming => "incoming",
            Direction::Outgoing => "outgoing",
        }
        .into(),
        number,
        status,
        timestamp: format_timestamp(entry.at),
        event_id: entry.event_id,
        priority: schedule.map(|s| s.priority),
        send_at: schedule.and_then(|s| s.send_at).map(format_timestamp),
        valid_until: schedule.and_then(|s| s.valid_until).map(format_timestamp),
        error: entry.outbox.and_then(|row| row.error),
        id: entry.message.id,
        from: entry.message.from,
        to: entry.message.to,
        text: entry.message.content,
        parts: entry.message.parts,
    }
}

/// List an instance's messages, newest first.
///
/// Incoming and outgoing texts as the log holds them, each outgoing one
/// with its current delivery status and schedule. Page with `cursor`.
#[utoipa::path(
    get, path = "/message/find/{instance}", tag = "messages", operation_id = "findMessages",
    params(super::openapi::InstancePath, FindQuery),
    responses(
        (status = 200, description = "A page of messages", body = HistoryAnswer, example = json!({
            "messages": [{"id": "01a22a36-1da5-75f1-b490-9e0d0ed5abbf", "direction": "outgoing",
                "number": "+15551234567", "from": "+15550001000", "to": "+15551234567",
                "text": "Hello", "parts": 1, "status": "delivered",
                "timestamp": "2026-11-30T02:08:39.333605Z", "eventId": 4, "priority": 5}],
            "nextCursor": null})),
        (status = 400, description = "A bad filter", body = super::openapi::ErrorBody,
            example = json!({"error": {"code": "BAD_REQUEST", "message": "'limit' must be between 1 and 500"}})),
        (status = 404, description = "No such instance", body = super::openapi::ErrorBody,
            example = json!({"error": {"code": "NOT_FOUND", "message": "instance 'alpha' does not exist"}})),
    ),
)]
pub async fn find(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: Query<FindQuery>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let direction = match query.direction.as_deref() {
        None => None,
        Some("incoming") => Some(Direction::Incoming),
        Some("outgoing") => Some(Direction::Outgoing),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "'direction' must be incoming or outgoing".into(),
            ))
        }
    };
    let request = HistoryQuery {
        direction,
        status: query.status.clone().filter(|s| !s.is_empty()),
        number: query.number.clone().filter(|s| !s.trim().is_empty()),
        since: time(query.since.as_deref(), "since")?,
        until: time(query.until.as_deref(), "until")?,
        cursor: query.cursor,
        limit: query.limit,
    };
    let page = state.service.message_history(&name, request).await?;
    answer(
        StatusCode::OK,
        &HistoryAnswer {
            messages: page.messages.into_iter().map(item).collect(),
            next_cursor: page.next_cursor,
        },
    )
}
