//! Admission of stream clients, the same for WebSocket and SSE: who they are
//! (key or token), what they watch (instances, events), where they start
//! (`since` or `Last-Event-ID`) and whether a place is free for them.

use std::collections::HashSet;

use std::net::IpAddr;

use actix_web::dev::RequestHead;
use serde::Deserialize;

use super::{
    authenticate, events::scoped_instances, limits::ConnectionSlot, presented_key, AppState,
};
use crate::{
    auth::Scope,
    domain::InstanceName,
    event::TopicSet,
    http::error::ApiError,
    hub::{feed::Start, Filter, InstanceFilter},
};

/// Query parameters of `/ws`, `/ws/{instance}`, `/` and `/events/stream`.
/// Any other name is refused (see `http::query`).
#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// A key, for clients that cannot set headers.
    apikey: Option<String>,
    /// A scoped token from `POST /auth/token`.
    token: Option<String>,
    /// Comma-separated event names or aliases.
    events: Option<String>,
    /// Comma-separated instance names (`GET /events` calls it `instance`).
    instances: Option<String>,
    /// Replay every matching event after this id, then go live.
    #[param(minimum = 0)]
    since: Option<i64>,
}

/// An admitted stream client.
pub struct Admission {
    pub scope: Scope,
    pub filter: Filter,
    pub start: Start,
    /// Its place under the connection limits, held for the connection's life.
    pub slot: ConnectionSlot,
}

/// Admits a stream client. `resume_from` is SSE's `Last-Event-ID`, which
/// wins over `since` (a reconnecting EventSource keeps its original URL).
pub fn admit(
    head: &RequestHead,
    peer: Option<IpAddr>,
    state: &AppState,
    path_instance: Option<String>,
    resume_from: Option<i64>,
) -> Result<Admission, ApiError> {
    let params: StreamParams = super::query::parse(head.uri.query().unwrap_or(""))?;
    let credential = params
        .token
        .as_deref()
        .or_else(|| presented_key(&head.headers, params.apikey.as_deref()));
    let scope = authenticate(state, peer, credential, true)?;
    let instances = match path_instance {
        Some(raw) => {
            let name =
                InstanceName::parse(&raw).map_err(|e| ApiError::BadRequest(e.to_string()))?;
            if !scope.can_see(&name) {
                return Err(ApiError::Forbidden(format!(
                    "this credential may not watch instance '{name}'"
                )));
            }
            if state.service.registry().get(&name).is_none() {
                return Err(ApiError::NotFound(format!("instance '{name}' not found")));
            }
            InstanceFilter::Only(HashSet::from([name]))
        }
        None => match scoped_instances(&scope, params.instances.as_deref())? {
            Some(names) => InstanceFilter::Only(names),
            None => InstanceFilter::All {
                except: HashSet::new(),
            },
        },
    };
    let topics = match params.events.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(csv) => {
            Some(TopicSet::parse_csv(csv).map_err(|e| ApiError::BadRequest(e.to_string()))?)
        }
        None => None,
    };
    let start = match resume_from.or(params.since) {
        Some(since) if since < 0 => {
            return Err(ApiError::BadRequest("'since' must be 0 or more".into()))
        }
        Some(since) => Start::After(since),
        None => Start::Live,
    };
    let slot = state.connections.acquire(&scope.describe())?;
    let filter = Filter {
        instances,
        topics,
        allowed: scope.allowed_topics(),
        stream_settings: true,
    };
    Ok(Admission {
        scope,
        filter,
        start,
        slot,
    })
}

/// Checks a browser's `Origin` against `http.allowed_origins` (cross-site
/// WebSocket hijacking: a page elsewhere riding a user's network access).
/// Returns the origin to allow in CORS headers; clients that send no Origin
/// (servers, scripts) are not affected.
pub fn check_origin(head: &RequestHead, allowed: &[String]) -> Result<Option<String>, ApiError> {
    let Some(origin) = head.headers.get(actix_web::http::header::ORIGIN) else {
        return Ok(None);
    };
    let origin = origin.to_str().unwrap_or("").to_owned();
    if allowed.is_empty()
        || allowed
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(&origin))
    {
        Ok(Some(origin))
    } else {
        Err(ApiError::Forbidden(format!(
            "Origin '{}' is not in http.allowed_origins",
            super::truncate(&origin, 100)
        )))
    }
}

/// Narrows a filter to a new scope (after a token refresh): instances and
/// topics the new credential may not see are dropped.
pub fn narrow(filter: &Filter, scope: &Scope) -> Filter {
    let instances = match (&filter.instances, scope.instances()) {
        (current, None) => current.clone(),
        (InstanceFilter::All { except }, Some(allowed)) => InstanceFilter::Only(
            allowed
                .into_iter()
                .filter(|n| !except.contains(n))
                .collect(),
        ),
        (InstanceFilter::Only(current), Some(allowed)) => {
            InstanceFilter::Only(current.intersection(&allowed).cloned().collect())
        }
    };
    Filter {
        instances,
        topics: filter.topics,
        allowed: scope.allowed_topics(),
        stream_settings: filter.stream_settings,
    }
}
