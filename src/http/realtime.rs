//! Admission of stream clients, the same for WebSocket and SSE: who they are
//! (key or token), what they watch (instances, events), where they start
//! (`since` or `Last-Event-ID`) and whether a place is free for them.

use std::collections::HashSet;

use std::net::IpAddr;

use actix_web::dev::RequestHead;
use serde::Deserialize;

use super::{
    authenticate, client_address, events::scoped_instances, limits::ConnectionSlot, presented_key,
    AppState,
};
use crate::{
    auth::Scope,
    domain::{InstanceName, StreamProfile},
    event::{profile, TopicSet},
    http::error::ApiError,
    hub::{
        feed::{Revocation, Start},
        Filter, InstanceFilter,
    },
};

/// Query parameters of `/ws`, `/ws/{instance}`, `/`, `/events/stream` and
/// `/events` as an event stream. Any other name is refused (see
/// `http::query`).
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
    /// `GET /events` names its instances with `instance`; an `EventSource`
    /// on that URL keeps the name.
    instance: Option<String>,
    /// Replay every matching event after this id, then go live.
    #[param(minimum = 0)]
    since: Option<i64>,
    /// The wire shape: `switchboard`, `sms-gateway`, `feed` or `plain` (see
    /// the profiles in the WebSocket description).
    profile: Option<String>,
}

impl StreamParams {
    pub fn parse(head: &RequestHead) -> Result<StreamParams, ApiError> {
        super::query::parse(head.uri.query().unwrap_or(""))
    }
}

/// What an endpoint's path says about its streams.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// The one instance a path names (`/ws/{instance}`).
    pub instance: Option<String>,
    /// The profile the path stands for (`/ws/feed`, `/events`), unless the
    /// query names one.
    pub profile: Option<StreamProfile>,
    /// The events a path stands for (`/ws/calls`), unless the query names
    /// some.
    pub topics: Option<TopicSet>,
}

/// The profile of a stream: `?profile=` if given, else the path's, else
/// seed 000's if the `events` filter uses its words, else the server's.
pub fn choose_profile(
    params: &StreamParams,
    endpoint: &Endpoint,
    server: StreamProfile,
) -> Result<StreamProfile, ApiError> {
    if let Some(name) = params.profile.as_deref().filter(|p| !p.trim().is_empty()) {
        return StreamProfile::parse(name).map_err(|e| ApiError::BadRequest(e.to_string()));
    }
    if let Some(profile) = endpoint.profile {
        return Ok(profile);
    }
    let speaks_sms_gateway = params
        .events
        .as_deref()
        .is_some_and(|csv| csv.split(',').any(profile::is_sms_gateway_word));
    Ok(if speaks_sms_gateway {
        StreamProfile::SmsGateway
    } else {
        server
    })
}

/// An admitted stream client.
pub struct Admission {
    pub scope: Scope,
    pub filter: Filter,
    pub start: Start,
    /// Its place under the connection limits, held for the connection's life.
    pub slot: ConnectionSlot,
    /// Fires when an instance its credential names is deleted.
    pub revocation: Revocation,
    /// Where it comes from, for the failed-authentication limit.
    pub client: Option<IpAddr>,
}

/// Who a stream client is: its key or token, checked (and counted against
/// its address when wrong). `client` is the client's address as
/// [`client_address`] finds it (behind a trusted proxy, the forwarded one).
pub fn credentials(
    head: &RequestHead,
    client: Option<IpAddr>,
    state: &AppState,
    params: &StreamParams,
) -> Result<Scope, ApiError> {
    let credential = params
        .token
        .as_deref()
        .or_else(|| presented_key(&head.headers, params.apikey.as_deref()));
    authenticate(state, client, credential, true)
}

/// Admits a stream client. `resume_from` is SSE's `Last-Event-ID`, which
/// wins over `since` (a reconnecting EventSource keeps its original URL).
pub fn admit(
    head: &RequestHead,
    peer: Option<IpAddr>,
    state: &AppState,
    endpoint: &Endpoint,
    resume_from: Option<i64>,
) -> Result<Admission, ApiError> {
    let params = StreamParams::parse(head)?;
    let client = client_address(state, &head.headers, peer);
    let scope = credentials(head, client, state, &params)?;
    let revocation = revocation(state, &scope)?;
    let registry = state.service.registry();
    let instances = match &endpoint.instance {
        Some(raw) => {
            let name = InstanceName::parse(raw).map_err(|e| ApiError::BadRequest(e.to_string()))?;
            // Ignoring them would watch another set than the client named.
            if params.instances.is_some() || params.instance.is_some() {
                return Err(ApiError::BadRequest(format!(
                    "this stream watches instance '{name}' (its path): leave out 'instances', \
                     or open /ws?instances=... to watch others"
                )));
            }
            if !scope.can_see(&name) {
                return Err(ApiError::Forbidden(format!(
                    "this credential may not watch instance '{name}'"
                )));
            }
            if registry.get(&name).is_none() {
                return Err(ApiError::NotFound(format!("instance '{name}' not found")));
            }
            InstanceFilter::Only(HashSet::from([name]))
        }
        None => {
            let csv = params.instances.as_deref().or(params.instance.as_deref());
            let named = csv.filter(|s| !s.trim().is_empty()).is_some();
            match scoped_instances(&scope, csv)? {
                Some(names) => {
                    if named {
                        check_filter_instances(state, &names)?;
                    }
                    InstanceFilter::Only(names)
                }
                None => InstanceFilter::All {
                    except: HashSet::new(),
                },
            }
        }
    };
    let topics = match params.events.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(csv) => {
            Some(TopicSet::parse_csv(csv).map_err(|e| ApiError::BadRequest(e.to_string()))?)
        }
        None => endpoint.topics,
    };
    let start = match resume_from.or(params.since) {
        Some(since) if since < 0 => {
            return Err(ApiError::BadRequest("'since' must be 0 or more".into()))
        }
        Some(since) => Start::After(since),
        None => Start::Live,
    };
    let instance_ids: Vec<uuid::Uuid> = scope
        .identities()
        .unwrap_or_default()
        .iter()
        .map(|identity| identity.id)
        .collect();
    let slot = state
        .connections
        .acquire(&scope.credential(), &instance_ids)?;
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
        revocation,
        client,
    })
}

/// The signal that ends a stream when an instance its credential names is
/// deleted; refuses a credential whose instance is already gone.
fn revocation(state: &AppState, scope: &Scope) -> Result<Revocation, ApiError> {
    let Some(identities) = scope.identities() else {
        return Ok(Revocation::default());
    };
    let registry = state.service.registry();
    identities
        .iter()
        .map(|identity| registry.revocation(identity).ok_or(ApiError::Unauthorized))
        .collect::<Result<Vec<_>, _>>()
        .map(Revocation::of)
}

/// Instances a client names for its filter must exist, and be no more than
/// `limits.max_filter_instances`: a filter is held for the connection's life
/// and every acknowledgement describes it, so it may not grow without bound.
pub fn check_filter_instances<'a>(
    state: &AppState,
    names: impl IntoIterator<Item = &'a InstanceName>,
) -> Result<usize, ApiError> {
    let max = state.settings.limits.max_filter_instances;
    let registry = state.service.registry();
    let mut count = 0;
    for name in names {
        count += 1;
        if count > max {
            return Err(too_many_instances(max));
        }
        if registry.get(name).is_none() {
            return Err(ApiError::NotFound(format!("instance '{name}' not found")));
        }
    }
    Ok(count)
}

/// The refusal of a filter over `limits.max_filter_instances`.
pub fn too_many_instances(max: usize) -> ApiError {
    ApiError::BadRequest(format!(
        "a filter may name at most {max} instances (limits.max_filter_instances)"
    ))
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
