//! Pools (`/pool/...`): the admin key creates, replaces and deletes them;
//! any key lists them, an instance key only those it is a member of and
//! only as far as its own instance goes. See `service::pools`.

use actix_web::{http::StatusCode, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{answer, body::Json, error::ApiError, AppState, Caller};
use crate::{
    auth::Scope,
    domain::{InstanceName, PoolRequest, Throttle},
    event::format_timestamp,
    service::PoolView,
};

/// A prefix rule: texts to numbers starting with `prefix` go through
/// `members` only (the longest matching prefix decides).
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleBody {
    /// `+` and 1 to 15 digits.
    #[schema(pattern = r"^\+[0-9]{1,15}$", example = "+44")]
    prefix: String,
    /// Members of the pool (1 to 64).
    members: Vec<String>,
}

/// `pool/update`: a pool's whole definition.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"strategy": "round_robin", "members": ["a", "b", "c"],
    "rules": [{"prefix": "+44", "members": ["a", "b"]}], "throttle": {"perMinute": 30}}))]
pub struct PoolBody {
    /// `round_robin`, `failover` or `least_loaded`.
    #[schema(pattern = "^(round_robin|failover|least_loaded)$")]
    strategy: String,
    /// Instances, in order (failover tries them in it): 1 to 64.
    members: Vec<String>,
    /// At most 64.
    #[serde(default)]
    rules: Vec<RuleBody>,
    /// What all members together may take from the pool (`perMinute`,
    /// `perDay`, `perMonth`).
    #[serde(default)]
    #[schema(value_type = Option<Throttle>)]
    throttle: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `pool/create`: the pool's name and its definition. The fields of
/// [`PoolBody`] are written out again rather than flattened in: serde does
/// not refuse unknown fields through `#[serde(flatten)]`, and a misspelt
/// field must be a 400.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "uk", "strategy": "round_robin", "members": ["a", "b", "c"],
    "rules": [{"prefix": "+44", "members": ["a", "b"]}],
    "throttle": {"perMinute": 30, "perDay": 1000, "perMonth": 20000}}))]
pub struct CreatePoolBody {
    /// Instance-name rules; no instance may have it.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", example = "uk")]
    name: String,
    #[schema(pattern = "^(round_robin|failover|least_loaded)$")]
    strategy: String,
    members: Vec<String>,
    #[serde(default)]
    rules: Vec<RuleBody>,
    #[serde(default)]
    #[schema(value_type = Option<Throttle>)]
    throttle: Option<serde_json::Map<String, serde_json::Value>>,
}

fn request(
    strategy: String,
    members: Vec<String>,
    rules: Vec<RuleBody>,
    throttle: Option<serde_json::Map<String, serde_json::Value>>,
) -> Result<PoolRequest, ApiError> {
    let throttle = match throttle {
        None => Throttle::default(),
        Some(fields) => serde_json::from_value(serde_json::Value::Object(fields))
            .map_err(|e| ApiError::BadRequest(format!("'throttle': {e}")))?,
    };
    Ok(PoolRequest {
        strategy,
        members,
        rules: rules.into_iter().map(|r| (r.prefix, r.members)).collect(),
        throttle,
    })
}

/// What a pool's throttle used.
#[derive(Serialize, ToSchema)]
pub struct PoolUsed {
    /// Taken in the sliding minute.
    minute: i64,
    /// Taken today (UTC).
    day: i64,
    /// Taken this month (UTC).
    month: i64,
}

/// One member's load.
#[derive(Serialize, ToSchema)]
pub struct MemberLoadAnswer {
    instance: String,
    /// `open`, `close` or `connecting`.
    state: String,
    /// Its own unsent messages (waiting and taken, not sent yet).
    queued: i64,
    /// Texts this pool sent through it.
    sent: i64,
}

/// A pool.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolAnswer {
    name: String,
    #[schema(pattern = "^(round_robin|failover|least_loaded)$")]
    strategy: String,
    members: Vec<String>,
    rules: Vec<RuleBody>,
    throttle: Throttle,
    /// Messages waiting in the pool, not taken by a member yet.
    queued: i64,
    used: PoolUsed,
    load: Vec<MemberLoadAnswer>,
    /// RFC 3339.
    created_at: String,
}

/// `{"pool": ...}`.
#[derive(Serialize, ToSchema)]
pub struct OnePool {
    pool: PoolAnswer,
}

/// `{"pools": [...]}`.
#[derive(Serialize, ToSchema)]
pub struct Pools {
    pools: Vec<PoolAnswer>,
}

/// `{"deleted": "uk"}`.
#[derive(Serialize, ToSchema)]
pub struct PoolDeleted {
    deleted: String,
}

fn pool_answer(view: PoolView) -> PoolAnswer {
    let PoolView {
        pool,
        queued,
        used,
        load,
    } = view;
    PoolAnswer {
        name: pool.name.to_string(),
        strategy: pool.spec.strategy.as_str().into(),
        members: pool.spec.members.iter().map(|m| m.to_string()).collect(),
        rules: pool
            .spec
            .rules
            .into_iter()
            .map(|r| RuleBody {
                prefix: r.prefix,
                members: r.members.iter().map(|m| m.to_string()).collect(),
            })
            .collect(),
        throttle: pool.spec.throttle,
        queued,
        used: PoolUsed {
            minute: used[0],
            day: used[1],
            month: used[2],
        },
        load: load
            .into_iter()
            .map(|l| MemberLoadAnswer {
                instance: l.instance.to_string(),
                state: l.state.into(),
                queued: l.queued,
                sent: l.sent,
            })
            .collect(),
        created_at: format_timestamp(pool.created_at),
    }
}

const POOL_EXAMPLE: &str = r#"{"pool": {"name": "uk", "strategy": "round_robin",
    "members": ["a", "b", "c"], "rules": [{"prefix": "+44", "members": ["a", "b"]}],
    "throttle": {"perMinute": 30, "perDay": 1000, "perMonth": 20000}, "queued": 0,
    "used": {"minute": 0, "day": 12, "month": 340},
    "load": [{"instance": "a", "state": "open", "queued": 1, "sent": 120},
             {"instance": "b", "state": "open", "queued": 0, "sent": 119},
             {"instance": "c", "state": "close", "queued": 0, "sent": 101}],
    "createdAt": "2026-11-30T10:00:00.000000Z"}}"#;

fn example() -> Option<serde_json::Value> {
    serde_json::from_str(POOL_EXAMPLE).ok()
}

fn pool_name(raw: &str) -> Result<InstanceName, ApiError> {
    InstanceName::parse(raw).map_err(|e| ApiError::BadRequest(format!("'name': {e}")))
}

/// Create a pool (admin key): a name that sends through several instances.
///
/// A text sent to it (`message/sendText/{pool}`) waits in the pool until
/// the member the strategy picks takes it, when it is sent.
#[utoipa::path(
    post, path = "/pool/create", tag = "pools", operation_id = "createPool",
    request_body = CreatePoolBody,
    responses(
        (status = 201, description = "Created", body = OnePool, example = json!(example())),
        (status = 409, description = "The name is taken by a pool or an instance", body = super::openapi::ErrorBody,
            example = json!({"error": {"code": "CONFLICT", "message": "'a' is the name of an instance; pools and instances share one namespace"}})),
    ),
)]
pub async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: Json<CreatePoolBody>,
) -> Result<HttpResponse, ApiError> {
    caller.admin()?;
    let body = body.into_inner();
    let name = pool_name(&body.name)?;
    let request = request(body.strategy, body.members, body.rules, body.throttle)?;
    let view = state.service.create_pool(&name, request).await?;
    answer(
        StatusCode::CREATED,
        &OnePool {
            pool: pool_answer(view),
        },
    )
}

/// The pool in a path.
#[derive(utoipa::IntoParams, Deserialize)]
#[into_params(parameter_in = Path)]
pub struct PoolPath {
    /// The pool's name.
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", example = "uk")]
    pool: String,
}

/// Replace a pool's definition (admin key); its round robin turn starts over.
#[utoipa::path(
    post, path = "/pool/update/{pool}", tag = "pools", operation_id = "updatePool",
    params(PoolPath),
    request_body = PoolBody,
    responses(
        (status = 200, description = "Replaced", body = OnePool, example = json!(example())),
        (status = 404, description = "No such pool", body = super::openapi::ErrorBody,
            example = json!({"error": {"code": "NOT_FOUND", "message": "pool 'uk' not found"}})),
    ),
)]
pub async fn update(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<PoolPath>,
    body: Json<PoolBody>,
) -> Result<HttpResponse, ApiError> {
    caller.admin()?;
    let name = pool_name(&path.pool)?;
    let body = body.into_inner();
    let request = request(body.strategy, body.members, body.rules, body.throttle)?;
    let view = state.service.update_pool(&name, request).await?;
    answer(
        StatusCode::OK,
        &OnePool {
            pool: pool_answer(view),
        },
    )
}

/// Delete a pool (admin key); refused while messages wait in it.
#[utoipa::path(
    delete, path = "/pool/delete/{pool}", tag = "pools", operation_id = "deletePool",
    params(PoolPath),
    responses(
        (status = 200, description = "Deleted", body = PoolDeleted, example = json!({"deleted": "uk"})),
        (status = 404, description = "No such pool", body = super::openapi::ErrorBody,
            example = json!({"error": {"code": "NOT_FOUND", "message": "pool 'uk' not found"}})),
        (status = 409, description = "Messages still wait in the pool", body = super::openapi::ErrorBody,
            example = json!({"error": {"code": "CONFLICT", "message": "pool 'uk' still has 3 message(s) waiting for a member; cancel them or let them go out first"}})),
    ),
)]
pub async fn delete(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<PoolPath>,
) -> Result<HttpResponse, ApiError> {
    caller.admin()?;
    let name = pool_name(&path.pool)?;
    state.service.delete_pool(&name).await?;
    answer(
        StatusCode::OK,
        &PoolDeleted {
            deleted: name.to_string(),
        },
    )
}

/// List pools by name. An instance key sees only the pools its instance
/// is a member of, with members, rules and load cut down to its instance.
#[utoipa::path(
    get, path = "/pool/find", tag = "pools", operation_id = "findPools",
    responses((status = 200, description = "The pools", body = Pools, example = json!({
        "pools": [example().and_then(|v| v.get("pool").cloned())]}))),
)]
pub async fn find(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let only = match &caller.0 {
        Scope::Admin => None,
        Scope::Instance(identity) => Some(identity.name.clone()),
        _ => {
            return Err(ApiError::Forbidden(
                "pools are listed with the admin key or an instance key".into(),
            ))
        }
    };
    let views = state.service.pools(only.as_ref()).await?;
    answer(
        StatusCode::OK,
        &Pools {
            pools: views.into_iter().map(pool_answer).collect(),
        },
    )
}
