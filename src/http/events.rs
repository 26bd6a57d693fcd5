//! `GET /events`: reading the log by cursor.
//!
//! `?since=<id>` returns events with a larger id, oldest first, so a client
//! that pages with the last id it saw misses nothing (invariant 2).

use std::collections::HashSet;

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{error::ApiError, query::Query, AppState, Caller};
use crate::{
    auth::Scope,
    domain::{InstanceName, TopicSet},
    service::{EventPage, ReadRequest},
};

/// Events per page when `limit` is not given, and the most a page may hold.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

/// `GET /events`' query.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadQuery {
    /// One instance or a comma-separated list (the streams call it `instances`).
    #[param(example = "alpha")]
    instance: Option<String>,
    /// Events with a larger id than this, oldest first (default 0: everything kept).
    #[param(minimum = 0, example = 0)]
    since: Option<i64>,
    /// Events per page.
    #[param(minimum = 1, maximum = 1000, example = 100)]
    limit: Option<i64>,
    /// Comma-separated event names or aliases (default: every event).
    #[param(example = "message,delivery")]
    events: Option<String>,
}

/// One committed event, as every stream carries it.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": 1042, "seq": 17, "event": "message", "instance": "alpha",
    "timestamp": "2026-11-22T10:30:00.123456Z",
    "data": {"id": "01a22a36-1da5-75f1-b490-9e0d0ed5abbf", "direction": "incoming",
        "from": "+15551234567", "to": "+15557654321", "type": "text", "content": "Hello",
        "timestamp": 1763807400, "parts": 1}}))]
pub struct Envelope {
    /// Global: strictly increasing in commit order across the deployment.
    id: i64,
    /// Per instance: 1, 2, 3, … without gaps.
    seq: i64,
    #[schema(
        pattern = "^(message|delivery|connection|presence|group|call|status|location|instance|ussd)$"
    )]
    event: String,
    instance: String,
    /// When it happened (RFC 3339, UTC, microseconds).
    #[schema(format = DateTime)]
    timestamp: String,
    /// The kind's fields: see the event table in the description above.
    data: serde_json::Map<String, serde_json::Value>,
}

/// A page of the log.
#[derive(Serialize, ToSchema)]
pub struct EventsPage {
    events: Vec<Envelope>,
    /// The id to pass as `since` for the next page (the last id of this one,
    /// or `since` itself when the page is empty).
    next: i64,
    /// Whether more events matched than the page holds.
    more: bool,
}

/// Parses a comma-separated instance list and checks the scope may see each.
pub(crate) fn scoped_instances(
    scope: &Scope,
    csv: Option<&str>,
) -> Result<Option<HashSet<InstanceName>>, ApiError> {
    let requested: Option<HashSet<InstanceName>> = match csv.filter(|s| !s.trim().is_empty()) {
        None => None,
        Some(csv) => Some(
            csv.split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| InstanceName::parse(s.trim()))
                .collect::<Result<_, _>>()
                .map_err(|e| ApiError::BadRequest(e.to_string()))?,
        ),
    };
    match (scope.instances(), requested) {
        (None, requested) => Ok(requested),
        (Some(allowed), None) => Ok(Some(allowed)),
        (Some(allowed), Some(requested)) => {
            if let Some(other) = requested.iter().find(|n| !allowed.contains(*n)) {
                return Err(ApiError::Forbidden(format!(
                    "this credential may not read instance '{other}'"
                )));
            }
            Ok(Some(requested))
        }
    }
}

/// Read the log by cursor: the events after `since`, oldest first.
///
/// Page with `since=<next>` while `more` is true; a client that remembers
/// the last id it processed misses nothing.
#[utoipa::path(
    get, path = "/events", tag = "events", operation_id = "readEvents",
    params(ReadQuery),
    responses(
        (status = 200, description = "A page of events", body = EventsPage, example = json!({
            "events": [{"id": 4, "seq": 4, "event": "message", "instance": "alpha",
                "timestamp": "2026-11-30T02:08:39.333605Z",
                "data": {"id": "01a22a36-1da5-75f1-b490-9e0d0ed5abbf", "direction": "outgoing",
                    "from": "+15550001000", "to": "+15551234567", "type": "text",
                    "content": "Hello", "timestamp": 1796004519, "parts": 1}}],
            "next": 4, "more": false})),
        (status = 410, description = "`since` is older than the retained log: resynchronize",
            body = super::openapi::ErrorBody, example = json!({"error": {"code": "CURSOR_EXPIRED",
                "message": "events after 3 were deleted by retention"}})),
    ),
)]
pub async fn read(
    caller: Caller,
    state: web::Data<AppState>,
    query: Query<ReadQuery>,
) -> Result<HttpResponse, ApiError> {
    let instances = scoped_instances(&caller.0, query.instance.as_deref())?;
    let since = query.since.unwrap_or(0);
    if since < 0 {
        return Err(ApiError::BadRequest("'since' must be 0 or more".into()));
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "'limit' must be between 1 and {MAX_LIMIT}"
        )));
    }
    let topics = match query.events.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(csv) => TopicSet::parse_csv(csv).map_err(|e| ApiError::BadRequest(e.to_string()))?,
        None => TopicSet::all(),
    }
    .intersect(caller.0.allowed_topics());
    let EventPage { events, next, more } = state
        .service
        .read_events(ReadRequest {
            instances,
            since,
            limit,
            topics,
        })
        .await?;
    // The envelopes are spliced in as they are: each is serialized once (the
    // page's shape is `EventsPage`, which documents it).
    let mut body = String::with_capacity(64 + events.len() * 256);
    body.push_str("{\"events\":[");
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&event.to_json());
    }
    body.push_str(&format!("],\"next\":{next},\"more\":{more}}}"));
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}
