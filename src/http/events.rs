//! `GET /events`: reading the log by cursor.
//!
//! `?since=<id>` returns events with a larger id, oldest first, so a client
//! that pages with the last id it saw misses nothing (invariant 2).

use std::collections::HashSet;

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::{error::ApiError, AppState, Caller};
use crate::{
    auth::Scope,
    domain::{InstanceName, TopicSet},
    service::{EventPage, ReadRequest},
};

/// Events per page when `limit` is not given, and the most a page may hold.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

#[derive(Deserialize)]
pub struct ReadQuery {
    /// One instance or a comma-separated list.
    instance: Option<String>,
    since: Option<i64>,
    limit: Option<i64>,
    events: Option<String>,
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

pub async fn read(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<ReadQuery>,
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
    // The envelopes are spliced in as they are: each is serialized once.
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
