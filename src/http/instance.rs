//! Instance management routes (`/instance/...`), per-instance WebSocket
//! defaults (`/websocket/...`) and retention (`/retention/...`).

use actix_web::{http::StatusCode, web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::{answer, body::Json, error::ApiError, query::Query, AppState, Caller};
use crate::{
    cluster::Forwarded,
    domain::{DriverConfig, InstanceName, Retention, TopicSet, WebsocketSettings},
    event::data::PresenceData,
    instance::registry::InstanceView,
    service::{CreateInstance, RetentionView},
};

/// `POST /instance/create`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"instanceName": "alpha", "driver": {"kind": "simulator", "number": "+15550001000"}}))]
pub struct CreateInstanceBody {
    /// Unique: 1 to 64 letters, digits, `_` or `-`, starting with a letter or digit.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
    instance_name: String,
    #[serde(default)]
    driver: Option<DriverConfig>,
    #[serde(default)]
    retention: Option<RetentionBody>,
    /// Pins the instance to one cluster node (a serial port lives on one
    /// host): it runs only there, and is `close` while that node is down.
    /// Absent: any live node.
    #[serde(default)]
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
    node: Option<String>,
}

/// How long an instance keeps its events; absent or null fields fall back
/// to the server's `[retention]` defaults, 0 means "no limit".
#[derive(Deserialize, Default, Clone, Copy, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"maxAgeSecs": 604800, "maxEvents": 100000}))]
pub struct RetentionBody {
    /// Delete events older than this many seconds (0: no age limit; at
    /// most 3153600000, a hundred years).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 3_153_600_000_i64)]
    max_age_secs: Option<u64>,
    /// Keep at most this many events (0: no count limit).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    max_events: Option<u64>,
}

/// An instance as the API shows it: never its key.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceBody {
    instance_name: String,
    #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    instance_id: String,
    driver: DriverConfig,
    /// Evolution's connection status.
    #[schema(pattern = "^(connecting|open|close)$")]
    status: String,
    /// When it was created (RFC 3339, UTC).
    #[schema(format = DateTime)]
    created_at: String,
    /// The node it is pinned to (`instance/create`'s `node`), or null.
    node: Option<String>,
    /// The cluster node driving it now, or null (a single node, or no node
    /// holds it yet).
    owner: Option<String>,
}

impl From<InstanceView> for InstanceBody {
    fn from(view: InstanceView) -> InstanceBody {
        InstanceBody {
            instance_name: view.instance_name.to_string(),
            instance_id: view.instance_id.to_string(),
            driver: view.driver,
            status: view.status.to_owned(),
            created_at: view.created_at,
            node: view.node,
            owner: view.owner,
        }
    }
}

/// `instance/create`'s answer: the instance and its key, shown this once.
#[derive(Serialize, ToSchema)]
pub struct Created {
    /// The instance's own key: it sees and acts on this instance only. It is
    /// stored as a digest and cannot be shown again.
    hash: String,
    instance: InstanceBody,
}

/// One entry of `fetchInstances`.
#[derive(Serialize, ToSchema)]
pub struct Listed {
    instance: InstanceBody,
}

/// An instance named in an answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NameOnly {
    instance_name: String,
}

impl NameOnly {
    /// The instance named by `name`.
    pub fn of(name: &InstanceName) -> NameOnly {
        NameOnly {
            instance_name: name.to_string(),
        }
    }
}

/// An instance's connection state, in Evolution's words.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NameAndState {
    instance_name: String,
    #[schema(pattern = "^(connecting|open|close)$")]
    state: String,
}

/// The answer of `connect`, `connectionState`, `restart` and `logout`.
#[derive(Serialize, ToSchema)]
pub struct StateBody {
    instance: NameAndState,
    /// In a cluster, when another node drives the instance: that node
    /// (null when none does now).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    owner: Option<Option<String>>,
    /// In a cluster, when another node drives the instance: whether it took
    /// the command within 5 seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    taken: Option<bool>,
}

/// `instance/delete`'s answer.
#[derive(Serialize, ToSchema)]
pub struct Deleted {
    deleted: bool,
    instance: NameOnly,
}

/// `instance/setPresence`'s answer: the presence event as recorded.
#[derive(Serialize, ToSchema)]
pub struct PresenceSet {
    instance: NameOnly,
    presence: PresenceBody,
}

/// A presence as recorded in its event.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresenceBody {
    /// The instance's own number.
    id: String,
    presence: String,
    /// Unix seconds.
    last_seen: i64,
    typing: bool,
}

impl From<PresenceData> for PresenceBody {
    fn from(data: PresenceData) -> PresenceBody {
        PresenceBody {
            id: data.id,
            presence: data.presence,
            last_seen: data.last_seen,
            typing: data.typing,
        }
    }
}

/// The retention asked for; the service checks its range.
impl From<RetentionBody> for Retention {
    fn from(body: RetentionBody) -> Retention {
        Retention {
            max_age_secs: body.max_age_secs,
            max_events: body.max_events,
        }
    }
}

/// Create an instance and start its modem actor.
///
/// The answer's `hash` is the instance's own key, shown this once.
#[utoipa::path(
    post, path = "/instance/create", tag = "instances", operation_id = "createInstance",
    request_body = CreateInstanceBody,
    responses(
        (status = 201, description = "Created and started", body = Created, example = json!({
            "hash": "e14260060863aa357e63ff8a2d6e0f9aaa15c26eb5ac2b4e7dce1fd9718c35a8",
            "instance": {"createdAt": "2026-11-30T02:08:39.311910Z",
                "driver": {"delivered_delay_ms": 150, "echo": true, "kind": "simulator",
                    "number": "+15550001000", "rate": 0.0, "reply_delay_ms": 200, "seed": 1,
                    "sent_delay_ms": 50},
                "instanceId": "01a22a36-1d8f-74a7-8380-08511e005b36", "instanceName": "alpha",
                "status": "connecting"}})),
        (status = 409, description = "The name is taken", body = super::openapi::ErrorBody,
            example = json!({"error": {"code": "CONFLICT", "message": "instance 'alpha' already exists"}})),
    ),
)]
pub async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: Json<CreateInstanceBody>,
) -> Result<HttpResponse, ApiError> {
    caller.admin()?;
    let body = body.into_inner();
    let name = InstanceName::parse(&body.instance_name)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let driver = body.driver.unwrap_or_default();
    let retention = body.retention.unwrap_or_default().into();
    let node = body
        .node
        .map(|node| {
            InstanceName::parse(&node)
                .map(|n| n.to_string())
                .map_err(|e| ApiError::BadRequest(format!("node: {e}")))
        })
        .transpose()?;
    let (view, key) = state
        .service
        .create_instance(CreateInstance {
            name,
            driver,
            retention,
            node,
        })
        .await?;
    answer(
        StatusCode::CREATED,
        &Created {
            hash: key,
            instance: view.into(),
        },
    )
}

/// `fetchInstances`' query.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct FetchQuery {
    /// Only this instance (404 if there is none).
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
    instance_name: Option<String>,
}

/// List the instances the key sees, without secrets.
#[utoipa::path(
    get, path = "/instance/fetchInstances", tag = "instances", operation_id = "fetchInstances",
    params(FetchQuery),
    responses(
        (status = 404, description = "`instanceName` names no instance", body = super::openapi::ErrorBody,
            example = json!({"error": {"code": "NOT_FOUND", "message": "instance 'beta' not found"}})),
        (status = 200, description = "The instances", body = Vec<Listed>, example = json!([
        {"instance": {"createdAt": "2026-11-30T02:08:39.311910Z",
            "driver": {"delivered_delay_ms": 150, "echo": true, "kind": "simulator",
                "number": "+15550001000", "rate": 0.0, "reply_delay_ms": 200, "seed": 1,
                "sent_delay_ms": 50},
            "instanceId": "01a22a36-1d8f-74a7-8380-08511e005b36", "instanceName": "alpha",
            "status": "open"}}])),
    ),
)]
pub async fn fetch(
    caller: Caller,
    state: web::Data<AppState>,
    query: Query<FetchQuery>,
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
    let wrapped: Vec<Listed> = views
        .into_iter()
        .map(|v| Listed { instance: v.into() })
        .collect();
    answer(StatusCode::OK, &wrapped)
}

fn state_body(
    name: &InstanceName,
    state: &str,
    forwarded: Option<Forwarded>,
) -> Result<HttpResponse, ApiError> {
    answer(
        StatusCode::OK,
        &StateBody {
            instance: NameAndState {
                instance_name: name.to_string(),
                state: state.to_owned(),
            },
            owner: forwarded.as_ref().map(|f| f.owner.clone()),
            taken: forwarded.map(|f| f.taken),
        },
    )
}

/// Start the instance's modem actor (a no-op when it runs).
#[utoipa::path(
    get, path = "/instance/connect/{instance}", tag = "instances", operation_id = "connectInstance",
    params(super::openapi::InstancePath),
    responses((status = 200, description = "The state after starting", body = StateBody,
        example = json!({"instance": {"instanceName": "alpha", "state": "open"}}))),
)]
pub async fn connect(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let (now, forwarded) = state.service.connect(&name).await?;
    state_body(&name, now.evolution_name(), forwarded)
}

/// The instance's connection state.
#[utoipa::path(
    get, path = "/instance/connectionState/{instance}", tag = "instances",
    operation_id = "connectionState",
    params(super::openapi::InstancePath),
    responses((status = 200, description = "Its state", body = StateBody,
        example = json!({"instance": {"instanceName": "alpha", "state": "open"}}))),
)]
pub async fn connection_state(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let view = state.service.instance(&name)?;
    state_body(&name, view.status, None)
}

/// Restart the instance's modem actor (`PUT` does the same).
#[utoipa::path(
    post, path = "/instance/restart/{instance}", tag = "instances", operation_id = "restartInstance",
    params(super::openapi::InstancePath),
    responses((status = 200, description = "The state after restarting", body = StateBody,
        example = json!({"instance": {"instanceName": "alpha", "state": "open"}}))),
)]
pub async fn restart(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let (now, forwarded) = state.service.restart(&name).await?;
    state_body(&name, now.evolution_name(), forwarded)
}

/// Restart the instance's modem actor (`POST` does the same).
#[utoipa::path(
    put, path = "/instance/restart/{instance}", tag = "instances",
    operation_id = "restartInstancePut",
    params(super::openapi::InstancePath),
    responses((status = 200, description = "The state after restarting", body = StateBody,
        example = json!({"instance": {"instanceName": "alpha", "state": "open"}}))),
)]
pub async fn restart_put(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    restart(caller, state, path).await
}

/// Stop the instance's modem actor; its data and key are kept.
#[utoipa::path(
    delete, path = "/instance/logout/{instance}", tag = "instances", operation_id = "logoutInstance",
    params(super::openapi::InstancePath),
    responses((status = 200, description = "Stopped", body = StateBody,
        example = json!({"instance": {"instanceName": "alpha", "state": "close"}}))),
)]
pub async fn logout(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let (now, forwarded) = state.service.logout(&name).await?;
    state_body(&name, now.evolution_name(), forwarded)
}

/// Stop and delete the instance: its key, tokens and open streams are revoked.
///
/// Needs the admin key.
#[utoipa::path(
    delete, path = "/instance/delete/{instance}", tag = "instances", operation_id = "deleteInstance",
    params(super::openapi::InstancePath),
    responses((status = 200, description = "Deleted", body = Deleted,
        example = json!({"deleted": true, "instance": {"instanceName": "alpha"}}))),
)]
pub async fn delete(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.admin()?;
    let name = caller.instance(&path)?;
    state.service.delete_instance(&name).await?;
    answer(
        StatusCode::OK,
        &Deleted {
            deleted: true,
            instance: NameOnly::of(&name),
        },
    )
}

/// `instance/setPresence`.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"presence": "available"}))]
pub struct SetPresenceBody {
    #[schema(pattern = "^(available|unavailable|composing|recording|paused)$")]
    presence: String,
}

/// Set the instance's own presence (a `presence` event).
#[utoipa::path(
    post, path = "/instance/setPresence/{instance}", tag = "instances", operation_id = "setPresence",
    params(super::openapi::InstancePath),
    request_body = SetPresenceBody,
    responses((status = 200, description = "The presence event as recorded", body = PresenceSet,
        example = json!({"instance": {"instanceName": "alpha"}, "presence":
            {"id": "+15550001000", "lastSeen": 1796004519, "presence": "available", "typing": false}}))),
)]
pub async fn set_presence(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Json<SetPresenceBody>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let data = state.service.set_presence(&name, &body.presence).await?;
    answer(
        StatusCode::OK,
        &PresenceSet {
            instance: NameOnly::of(&name),
            presence: data.into(),
        },
    )
}

/// Accepts Evolution's `{"websocket": {...}}` wrapper or the bare object.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum WebsocketBody {
    Wrapped { websocket: WebsocketFields },
    Bare(WebsocketFields),
}

impl utoipa::PartialSchema for WebsocketBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::openapi::wrapped_or_bare(
            "websocket",
            "WebsocketFields",
            json!(
            {"websocket": {"enabled": true, "events": ["MESSAGES_UPSERT", "SEND_MESSAGE"]}}),
        )
    }
}

impl ToSchema for WebsocketBody {}

/// Which events the instance streams to clients that name none.
#[derive(Deserialize, ToSchema)]
pub struct WebsocketFields {
    /// `false` stops the instance's stream for those clients.
    #[serde(default = "yes")]
    enabled: bool,
    /// Event names or aliases; absent or empty means every event.
    #[serde(default)]
    events: Vec<String>,
}

/// An instance's WebSocket defaults.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebsocketView {
    enabled: bool,
    /// Canonical event names.
    events: Vec<String>,
    instance_name: String,
}

/// `websocket/set` and `websocket/find`'s answer.
#[derive(Serialize, ToSchema)]
pub struct WebsocketAnswer {
    websocket: WebsocketView,
}

fn yes() -> bool {
    true
}

/// Set which events the instance streams to clients that choose none.
#[utoipa::path(
    post, path = "/websocket/set/{instance}", tag = "instances", operation_id = "setWebsocket",
    params(super::openapi::InstancePath),
    request_body = WebsocketBody,
    responses((status = 200, description = "The settings now", body = WebsocketAnswer,
        example = json!({"websocket": {"enabled": true, "events": ["message"], "instanceName": "alpha"}}))),
)]
pub async fn websocket_set(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Json<WebsocketBody>,
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
    websocket_body(&name, settings)
}

/// The instance's WebSocket defaults.
#[utoipa::path(
    get, path = "/websocket/find/{instance}", tag = "instances", operation_id = "findWebsocket",
    params(super::openapi::InstancePath),
    responses((status = 200, description = "The settings", body = WebsocketAnswer,
        example = json!({"websocket": {"enabled": true, "events": ["message"], "instanceName": "alpha"}}))),
)]
pub async fn websocket_find(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let settings = state.service.websocket(&name)?;
    websocket_body(&name, settings)
}

fn websocket_body(
    name: &InstanceName,
    settings: WebsocketSettings,
) -> Result<HttpResponse, ApiError> {
    let events = settings
        .events
        .unwrap_or_else(TopicSet::all_instance_topics)
        .names();
    answer(
        StatusCode::OK,
        &WebsocketAnswer {
            websocket: WebsocketView {
                enabled: settings.enabled,
                events: events.into_iter().map(str::to_owned).collect(),
                instance_name: name.to_string(),
            },
        },
    )
}

/// Set how long the instance keeps its events.
#[utoipa::path(
    post, path = "/retention/set/{instance}", tag = "instances", operation_id = "setRetention",
    params(super::openapi::InstancePath),
    request_body = RetentionBody,
    responses((status = 200, description = "The retention now", body = RetentionAnswer,
        example = json!({"retention": {"effective": {"maxAgeSecs": 604800, "maxEvents": 100000},
            "instanceName": "alpha", "maxAgeSecs": 604800, "maxEvents": 100000}}))),
)]
pub async fn retention_set(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Json<RetentionBody>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let retention = body.into_inner().into();
    let view = state.service.set_retention(&name, retention).await?;
    retention_body(&name, view)
}

/// The instance's retention, and what applies once defaults fill the gaps.
#[utoipa::path(
    get, path = "/retention/find/{instance}", tag = "instances", operation_id = "findRetention",
    params(super::openapi::InstancePath),
    responses((status = 200, description = "The retention", body = RetentionAnswer,
        example = json!({"retention": {"effective": {"maxAgeSecs": 604800, "maxEvents": 100000},
            "instanceName": "alpha", "maxAgeSecs": 604800, "maxEvents": 100000}}))),
)]
pub async fn retention_find(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let view = state.service.retention(&name)?;
    retention_body(&name, view)
}

/// What applies to an instance: its own limits, or the server's defaults.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveRetention {
    /// 0: no age limit.
    max_age_secs: u64,
    /// 0: no count limit.
    max_events: u64,
}

/// An instance's retention.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionState {
    effective: EffectiveRetention,
    instance_name: String,
    /// Its own setting; null: the server's default applies.
    max_age_secs: Option<u64>,
    /// Its own setting; null: the server's default applies.
    max_events: Option<u64>,
}

/// `retention/set` and `retention/find`'s answer.
#[derive(Serialize, ToSchema)]
pub struct RetentionAnswer {
    retention: RetentionState,
}

fn retention_body(name: &InstanceName, view: RetentionView) -> Result<HttpResponse, ApiError> {
    answer(
        StatusCode::OK,
        &RetentionAnswer {
            retention: RetentionState {
                effective: EffectiveRetention {
                    max_age_secs: view.effective_max_age_secs,
                    max_events: view.effective_max_events,
                },
                instance_name: name.to_string(),
                max_age_secs: view.retention.max_age_secs,
                max_events: view.retention.max_events,
            },
        },
    )
}
