//! The HTTP surface: the Evolution-style admin API, the event log reader,
//! health and metrics, the WebSocket and SSE endpoints, the dashboard and
//! the API's own description (`/openapi.json`, `/docs`).
//!
//! Credentials are checked by the [`Caller`] extractor; bad JSON, bad query
//! strings, unknown routes and wrong methods all answer with the JSON error
//! body of [`error`], never actix's plain-text defaults. Every route
//! registered in [`configure`] is described in [`openapi`]; a test holds the
//! two lists equal.

mod body;
mod call;
mod cluster;
mod dashboard;
pub mod error;
mod events;
mod group;
mod health;
mod history;
mod instance;
pub mod limits;
mod message;
pub mod openapi;
mod pool;
pub mod query;
pub mod realtime;
mod settings;
mod sse;
mod token;
mod ussd;
mod webhook;
pub mod ws;

use std::{future::Future, pin::Pin, sync::Arc};

use actix_web::{
    dev::Payload,
    error::{JsonPayloadError, PathError, QueryPayloadError},
    http::StatusCode,
    web, FromRequest, HttpRequest, HttpResponse,
};
use serde::Serialize;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    auth::{
        token::{looks_like_token, TokenError, Tokens},
        KeyRing, Scope,
    },
    config::Settings,
    domain::InstanceName,
    service::Service,
};
use error::ApiError;

/// What every handler can reach.
pub struct AppState {
    /// What the routes do; handlers only parse, authorize and map.
    pub service: Arc<Service>,
    pub keys: Arc<KeyRing>,
    pub tokens: Arc<Tokens>,
    pub connections: Arc<limits::Connections>,
    pub auth_throttle: Arc<limits::AuthThrottle>,
    pub settings: Arc<Settings>,
    /// Fires when the server shuts down; sessions close with 1001.
    pub shutdown: CancellationToken,
    /// Tracks WebSocket sessions so shutdown can wait for them.
    pub sessions: TaskTracker,
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig, limits: &crate::config::Limits) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(limits.max_body_bytes)
            .content_type_required(false)
            .error_handler(json_error),
    )
    .app_data(web::QueryConfig::default().error_handler(query_error))
    .app_data(web::PathConfig::default().error_handler(path_error))
    .app_data(web::PayloadConfig::default().limit(limits.max_body_bytes))
    // WebSocket upgrades on these paths never reach the router (see `ws`):
    // what arrives here are plain requests.
    .service(resource("/").route(web::get().to(dashboard::root)))
    .service(resource("/dashboard/").route(web::get().to(dashboard::index)))
    .service(resource("/dashboard/{file}").route(web::get().to(dashboard::file)))
    .service(resource("/dashboard/assets/{file}").route(web::get().to(dashboard::built)))
    .service(resource("/ws").route(web::get().to(ws::not_an_upgrade)))
    .service(resource("/ws/{instance}").route(web::get().to(ws::not_an_upgrade)))
    .service(resource("/health").route(web::get().to(health::health)))
    .service(resource("/ready").route(web::get().to(health::ready)))
    .service(resource("/metrics").route(web::get().to(health::metrics)))
    .service(resource("/cluster/nodes").route(web::get().to(cluster::nodes)))
    .service(resource("/openapi.json").route(web::get().to(openapi::openapi_json)))
    .service(resource("/docs").route(web::get().to(openapi::docs_redirect)))
    .service(resource("/docs/").route(web::get().to(openapi::docs_index)))
    .service(resource("/docs/{file}").route(web::get().to(openapi::docs_file)))
    .service(
        resource("/events")
            // An EventSource on /events gets a stream; anyone else the log.
            .route(
                web::get()
                    .guard(actix_web::guard::fn_guard(sse::wants_event_stream))
                    .to(sse::stream_plain),
            )
            .route(web::get().to(events::read)),
    )
    .service(
        resource("/events/stream")
            .route(web::get().to(sse::stream))
            .route(web::method(actix_web::http::Method::OPTIONS).to(sse::preflight)),
    )
    .service(resource("/auth/token").route(web::post().to(token::mint)))
    .service(resource("/instance/create").route(web::post().to(instance::create)))
    .service(resource("/instance/fetchInstances").route(web::get().to(instance::fetch)))
    .service(resource("/instance/connect/{instance}").route(web::get().to(instance::connect)))
    .service(
        resource("/instance/connectionState/{instance}")
            .route(web::get().to(instance::connection_state)),
    )
    .service(
        resource("/instance/restart/{instance}")
            .route(web::post().to(instance::restart))
            .route(web::put().to(instance::restart_put)),
    )
    .service(resource("/instance/logout/{instance}").route(web::delete().to(instance::logout)))
    .service(resource("/instance/delete/{instance}").route(web::delete().to(instance::delete)))
    .service(
        resource("/instance/setPresence/{instance}").route(web::post().to(instance::set_presence)),
    )
    .service(resource("/message/sendText/{instance}").route(web::post().to(message::send_text)))
    .service(resource("/pool/create").route(web::post().to(pool::create)))
    .service(resource("/pool/update/{pool}").route(web::post().to(pool::update)))
    .service(resource("/pool/delete/{pool}").route(web::delete().to(pool::delete)))
    .service(resource("/pool/find").route(web::get().to(pool::find)))
    // Before `/message/{instance}/{id}`, which would take `find` for a name.
    .service(resource("/message/find/{instance}").route(web::get().to(history::find)))
    .service(
        resource("/message/{instance}/{id}")
            .route(web::get().to(message::find_one))
            .route(web::delete().to(message::cancel)),
    )
    .service(resource("/call/reject/{instance}").route(web::post().to(call::reject)))
    .service(resource("/group/create/{instance}").route(web::post().to(group::create)))
    .service(
        resource("/group/updateParticipant/{instance}")
            .route(web::post().to(group::update_participant))
            .route(web::put().to(group::update_participant_put)),
    )
    .service(resource("/group/fetchAllGroups/{instance}").route(web::get().to(group::fetch_all)))
    .service(resource("/websocket/set/{instance}").route(web::post().to(instance::websocket_set)))
    .service(resource("/websocket/find/{instance}").route(web::get().to(instance::websocket_find)))
    .service(resource("/webhook/set/{instance}").route(web::post().to(webhook::set)))
    .service(resource("/webhook/find/{instance}").route(web::get().to(webhook::find)))
    .service(resource("/settings/set/{instance}").route(web::post().to(settings::set)))
    .service(resource("/settings/find/{instance}").route(web::get().to(settings::find)))
    .service(
        resource("/ussd/{instance}")
            .route(web::post().to(ussd::send))
            .route(web::delete().to(ussd::cancel)),
    )
    .service(resource("/retention/set/{instance}").route(web::post().to(instance::retention_set)))
    .service(resource("/retention/find/{instance}").route(web::get().to(instance::retention_find)))
    .default_service(web::to(not_found));
}

/// A resource whose wrong methods answer 405 in our JSON format.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route {} {}",
        req.method(),
        truncate(req.path(), 200)
    )))
}

/// 405, with `Allow` naming the methods the route takes (as documented:
/// the route check keeps the document and the routes equal).
async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let allowed = openapi::pattern_of(&req)
        .map(|pattern| openapi::allowed_methods(&pattern))
        .unwrap_or_default();
    let mut response =
        actix_web::ResponseError::error_response(&ApiError::MethodNotAllowed(format!(
            "{} is not allowed on {}",
            req.method(),
            truncate(req.path(), 200)
        )));
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allowed.join(", ")) {
        response
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, value);
    }
    response
}

/// A JSON answer built from a typed body. It goes through
/// `serde_json::Value`, whose objects keep their keys sorted, so each answer
/// has the bytes it had when the handlers built it with `json!`.
pub(crate) fn answer<T: Serialize>(status: StatusCode, body: &T) -> Result<HttpResponse, ApiError> {
    let value = serde_json::to_value(body)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("serializing an answer: {e}")))?;
    Ok(HttpResponse::build(status).json(value))
}

fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    match err {
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => {
            ApiError::PayloadTooLarge(format!("the request body is larger than {limit} bytes"))
        }
        JsonPayloadError::Deserialize(err) => {
            ApiError::BadRequest(format!("the request body is not valid: {err}"))
        }
        JsonPayloadError::Serialize(_) => {
            ApiError::BadRequest("the request body is not valid".into())
        }
        other => ApiError::BadRequest(format!("the request body could not be read: {other}")),
    }
    .into()
}

fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("the query string is not valid: {err}")).into()
}

fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("the path is not valid: {err}")).into()
}

pub(crate) use crate::domain::truncate;

/// The key presented with a request: the `apikey` header or
/// `Authorization: Bearer`, and, where `query` allows (WebSocket and SSE,
/// whose browser clients cannot set headers), `?apikey=`.
pub(crate) fn presented_key<'a>(
    headers: &'a actix_web::http::header::HeaderMap,
    query_key: Option<&'a str>,
) -> Option<&'a str> {
    if let Some(key) = headers.get("apikey").and_then(|v| v.to_str().ok()) {
        return Some(key.trim());
    }
    if let Some(auth) = headers
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let auth = auth.trim();
        if auth.len() > 7 && auth[..7].eq_ignore_ascii_case("bearer ") {
            return Some(auth[7..].trim());
        }
    }
    query_key.map(str::trim)
}

/// Resolves a presented credential (or its absence) to a scope. Tokens are
/// accepted only where `tokens` says so (streams and reading the log).
///
/// The credential is checked first, so a valid one is never refused for
/// failures others made from the same address (say, everyone behind one
/// proxy). A wrong one counts against the client's address (`client`, see
/// [`client_address`]); past the limit, further wrong ones answer
/// `RATE_LIMITED` until the window ends. Guessing stays hopeless either
/// way: keys carry 256 random bits (configured ones at least 32 characters).
pub(crate) fn authenticate(
    state: &AppState,
    client: Option<std::net::IpAddr>,
    credential: Option<&str>,
    tokens: bool,
) -> Result<Scope, ApiError> {
    let result = match credential.map(str::trim).filter(|c| !c.is_empty()) {
        Some(token) if tokens && looks_like_token(token) => match state.tokens.verify(token) {
            // A token dies with the instances it names, even when another
            // instance has taken the name since.
            Ok(grant) if state.keys.still_holds(&grant) => Ok(Scope::Token(grant)),
            Ok(_) => Err(ApiError::Unauthorized),
            Err(TokenError::Expired) => Err(ApiError::TokenExpired),
            Err(TokenError::Invalid(_)) => Err(ApiError::Unauthorized),
        },
        Some(key) => state.keys.authenticate(key).ok_or(ApiError::Unauthorized),
        None if !state.settings.http.require_authentication => Ok(Scope::Admin),
        None => Err(ApiError::Unauthorized),
    };
    match (result, client, credential) {
        (Err(ApiError::Unauthorized), Some(ip), Some(_)) => Err(state
            .auth_throttle
            .failed(ip)
            .unwrap_or(ApiError::Unauthorized)),
        (result, _, _) => result,
    }
}

/// The address a request comes from: its socket's peer, or, when that peer
/// is one of `http.trusted_proxies`, the address the proxies name in
/// `X-Forwarded-For` (read from the right, skipping the trusted proxies
/// themselves: whatever a client wrote further left is not believed).
pub(crate) fn client_address(
    state: &AppState,
    headers: &actix_web::http::header::HeaderMap,
    peer: Option<std::net::IpAddr>,
) -> Option<std::net::IpAddr> {
    let trusted = &state.settings.http.trusted_proxies;
    let peer = peer?;
    let is_trusted = |ip: std::net::IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        match hop.parse::<std::net::IpAddr>() {
            Ok(ip) if is_trusted(ip) => client = ip,
            Ok(ip) => return Some(ip.to_canonical()),
            // A hop that is not an address: nothing left of it can be believed.
            Err(_) => break,
        }
    }
    Some(client)
}

/// The authenticated caller of a REST route.
pub struct Caller(pub Scope);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = match req.app_data::<web::Data<AppState>>() {
            Some(state) => authenticate(
                state,
                client_address(state, req.headers(), req.peer_addr().map(|a| a.ip())),
                presented_key(req.headers(), None),
                false,
            )
            .map(Caller),
            None => Err(ApiError::Internal(anyhow::anyhow!("app state missing"))),
        };
        Box::pin(async move { result })
    }
}

impl Caller {
    /// Requires the admin key.
    pub fn admin(&self) -> Result<(), ApiError> {
        if self.0.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "this route needs the admin key; an instance key only manages its own instance"
                    .into(),
            ))
        }
    }

    /// Parses the instance in a path and checks the caller may act on it.
    /// The scope is checked before existence, so an instance key cannot
    /// probe which other instances exist.
    pub fn instance(&self, raw: &str) -> Result<InstanceName, ApiError> {
        let name = InstanceName::parse(raw).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        if self.0.can_see(&name) {
            Ok(name)
        } else {
            Err(ApiError::Forbidden(format!(
                "this key may not act on instance '{name}'"
            )))
        }
    }
}
