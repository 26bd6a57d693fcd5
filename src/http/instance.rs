//! Instance management routes (`/instance/...`) and per-instance WebSocket
//! defaults (`/websocket/...`).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{error::ApiError, AppState, Caller};
use crate::{
    domain::{DriverConfig, InstanceName, Retention, TopicSet, WebsocketSettings},
    service::{CreateInstance, RetentionView},
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateBody {
    instance_name: String,
    #[serde(default)]
    driver: Option<DriverConfig>,
    #[serde(default)]
    retention: Option<RetentionBody>,
}

/// How long an instance keeps its events; absent or null fields fall back
/// to the server's `[retention]` defaults, 0 means "no limit".
#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetentionBody {
    #[serde(default)]
    max_age_secs: Option<u64>,
    #[serde(default)]
    max_events: Option<u64>,
}

impl From<RetentionBody> for Retention {
    fn from(body: RetentionBody) -> Retention {
        Retention {
            max_age_secs: body.max_age_secs,
            max_events: body.max_events,
        }
    }
}

pub async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<CreateBody>,
) -> Result<HttpResponse, ApiError> {
    caller.admin()?;
    let body = body.into_inner();
    let name = InstanceName::parse(&body.instance_name)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let driver = body.driver.unwrap_or_default();
    let retention = body.retention.unwrap_or_default().into();
    let (view, key) = state
        .service
        .create_instance(CreateInstance {
            name,
            driver,
            retention,
        })
        .await?;
    Ok(HttpResponse::Created().json(json!({ "instance": view, "hash": key })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchQuery {
    instance_name: Option<String>,
}

pub async fn fetch(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<FetchQuery>,
) -> Result<HttpResponse, ApiError> {
    let views = match &query.instance_name {
        Some(raw) => {
            let name = caller.instance(raw)?;
            vec![state.service.instance(&name)?]
        }
        None => state
            .service
            .instances()
            .into_iter()
            .filter(|v| caller.0.can_see(&v.instance_name))
            .collect(),
    };
    let wrapped: Vec<_> = views
        .into_iter()
        .map(|v| json!({ "instance": v }))
        .collect();
    Ok(HttpResponse::Ok().json(wrapped))
}

fn state_body(name: &InstanceName, state: &str) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "instance": { "instanceName": name, "state": state } }))
}

pub async fn connect(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let now = state.service.connect(&name).await?;
    Ok(state_body(&name, now.evolution_name()))
}

pub async fn connection_state(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let view = state.service.instance(&name)?;
    Ok(state_body(&name, view.status))
}

pub async fn restart(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let now = state.service.restart(&name).await?;
    Ok(state_body(&name, now.evolution_name()))
}

pub async fn logout(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let now = state.service.logout(&name).await?;
    Ok(state_body(&name, now.evolution_name()))
}

pub async fn delete(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.admin()?;
    let name = caller.instance(&path)?;
    state.service.delete_instance(&name).await?;
    Ok(HttpResponse::Ok().json(json!({ "instance": { "instanceName": name }, "deleted": true })))
}

#[derive(Deserialize)]
pub struct PresenceBody {
    presence: String,
}

pub async fn set_presence(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<PresenceBody>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let data = state.service.set_presence(&name, &body.presence).await?;
    Ok(HttpResponse::Ok().json(json!({ "instance": { "instanceName": name }, "presence": data })))
}

/// Accepts Evolution's `{"websocket": {...}}` wrapper or the bare object.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum WebsocketBody {
    Wrapped { websocket: WebsocketFields },
    Bare(WebsocketFields),
}

#[derive(Deserialize)]
pub struct WebsocketFields {
    #[serde(default = "yes")]
    enabled: bool,
    /// Event names; absent or empty means every event.
    #[serde(default)]
    events: Vec<String>,
}

fn yes() -> bool {
    true
}

pub async fn websocket_set(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<WebsocketBody>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let fields = match body.into_inner() {
        WebsocketBody::Wrapped { websocket } => websocket,
        WebsocketBody::Bare(fields) => fields,
    };
    let events = TopicSet::parse_list(fields.events.iter().map(String::as_str))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let settings = WebsocketSettings {
        enabled: fields.enabled,
        events: (!events.is_empty()).then_some(events),
    };
    state.service.set_websocket(&name, settings).await?;
    Ok(websocket_body(&name, settings))
}

pub async fn websocket_find(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let settings = state.service.websocket(&name)?;
    Ok(websocket_body(&name, settings))
}

fn websocket_body(name: &InstanceName, settings: WebsocketSettings) -> HttpResponse {
    let events = settings
        .events
        .unwrap_or_else(TopicSet::all_instance_topics)
        .names();
    HttpResponse::Ok().json(json!({
        "websocket": { "instanceName": name, "enabled": settings.enabled, "events": events }
    }))
}

pub async fn retention_set(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<RetentionBody>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let view = state.service.set_retention(&name, (*body).into()).await?;
    Ok(retention_body(&name, view))
}

pub async fn retention_find(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let view = state.service.retention(&name)?;
    Ok(retention_body(&name, view))
}

fn retention_body(name: &InstanceName, view: RetentionView) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "retention": {
            "instanceName": name,
            "maxAgeSecs": view.retention.max_age_secs,
            "maxEvents": view.retention.max_events,
            "effective": {
                "maxAgeSecs": view.effective_max_age_secs,
                "maxEvents": view.effective_max_events,
            },
        }
    }))
}
