//! `POST /auth/token`: minting scoped tokens for stream clients.
//!
//! The admin key may grant any instances (or all of them); an instance key
//! only its own. A token never grants more than the key that minted it, and
//! it names the key that minted it and the id of every instance it grants,
//! so its connections count against that key and it dies with those
//! instances. An instance key's tokens have subjects under its own name
//! (`instance:<name>/...`): a subject is a label, never someone else's.

use std::collections::{BTreeMap, HashSet};

use actix_web::{http::StatusCode, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{answer, body::OptionalJson, AppState, Caller};
use crate::{
    auth::{token::Grant, Scope},
    domain::InstanceName,
    event::{format_timestamp, TopicSet},
    http::error::ApiError,
};

/// Which instances a token grants: `"*"` (every one) or a list of names.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum InstancesField {
    /// `"*"` for every instance (admin key only).
    All(String),
    List(Vec<String>),
}

/// `auth/token`; the body may be left out (the key's own scope, default lifetime).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"instances": ["alpha"], "events": ["message", "delivery"], "ttlSecs": 3600, "subject": "dashboard"}))]
pub struct MintBody {
    /// Absent: what the key sees.
    #[serde(default)]
    instances: Option<InstancesField>,
    /// Event names or aliases; absent: every event the key sees.
    #[serde(default)]
    events: Option<Vec<String>>,
    /// Lifetime in seconds, 1 to `auth.token_max_ttl_secs` (default `auth.token_default_ttl_secs`).
    #[serde(default, alias = "ttl_secs")]
    #[schema(minimum = 1)]
    ttl_secs: Option<u64>,
    /// Who the token is for (1 to 128 printable characters); it names the
    /// token's connections in logs and limits.
    #[serde(default)]
    subject: Option<String>,
}

/// A minted token and what it grants.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Minted {
    /// Canonical event names.
    events: Vec<String>,
    #[schema(format = DateTime)]
    expires_at: String,
    /// Seconds.
    expires_in: u64,
    /// `"*"` or the names.
    instances: InstancesField,
    subject: String,
    /// A JWT: `?token=` on `/ws` and `/events/stream`.
    token: String,
}

/// Mint a short-lived token for stream clients (browsers, dashboards).
///
/// The admin key may grant any instances (`"*"` for all); an instance key
/// only its own. A token opens streams only: it cannot manage or send.
#[utoipa::path(
    post, path = "/auth/token", tag = "auth", operation_id = "mintToken",
    request_body(content = Option<MintBody>, description = "Optional"),
    responses((status = 201, description = "The token", body = Minted, example = json!({
        "events": ["message", "delivery"], "expiresAt": "2026-11-30T03:08:39.618286Z",
        "expiresIn": 3600, "instances": ["alpha"], "subject": "dashboard",
        "token": "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkYXNoYm9hcmQifQ.c2lnbmF0dXJl"})),
        (status = 404, description = "An instance it names does not exist: a token is bound to \
            the instances it grants, by their identity", body = super::openapi::ErrorBody,
            example = json!({"error": {"code": "NOT_FOUND", "message": "instance 'beta' not found"}})),
    ),
)]
pub async fn mint(
    caller: Caller,
    state: web::Data<AppState>,
    body: OptionalJson<MintBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0.unwrap_or(MintBody {
        instances: None,
        events: None,
        ttl_secs: None,
        subject: None,
    });
    let instances: Option<HashSet<InstanceName>> = match (&caller.0, body.instances) {
        (Scope::Admin, None) => None,
        (_, Some(InstancesField::All(star))) if star == "*" => {
            if !caller.0.is_admin() {
                return Err(ApiError::Forbidden(
                    "only the admin key can grant every instance".into(),
                ));
            }
            None
        }
        (_, Some(InstancesField::All(other))) => {
            return Err(ApiError::BadRequest(format!(
                "'instances' is a list of names or \"*\", not '{}'",
                super::truncate(&other, 40)
            )))
        }
        (scope, Some(InstancesField::List(names))) => {
            let names = names
                .iter()
                .map(|n| InstanceName::parse(n))
                .collect::<Result<HashSet<_>, _>>()
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            if names.is_empty() {
                return Err(ApiError::BadRequest("'instances' must not be empty".into()));
            }
            if let Some(other) = names.iter().find(|n| !scope.can_see(n)) {
                return Err(ApiError::Forbidden(format!(
                    "this key may not grant instance '{other}'"
                )));
            }
            Some(names)
        }
        (scope, None) => scope.instances(),
    };
    let allowed = if instances.is_none() {
        caller.0.allowed_topics()
    } else {
        caller
            .0
            .allowed_topics()
            .intersect(TopicSet::all_instance_topics())
    };
    let topics = match &body.events {
        None => allowed,
        Some(names) => {
            let topics = TopicSet::parse_list(names.iter().map(String::as_str))
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            if topics.is_empty() {
                return Err(ApiError::BadRequest("'events' must not be empty".into()));
            }
            topics.intersect(allowed)
        }
    };
    let auth = &state.settings.auth;
    let ttl = body.ttl_secs.unwrap_or(auth.token_default_ttl_secs);
    if ttl == 0 || ttl > auth.token_max_ttl_secs {
        return Err(ApiError::BadRequest(format!(
            "'ttlSecs' must be between 1 and {}",
            auth.token_max_ttl_secs
        )));
    }
    let subject = body.subject.unwrap_or_else(|| caller.0.describe());
    if subject.is_empty() || subject.chars().count() > 128 || subject.chars().any(char::is_control)
    {
        return Err(ApiError::BadRequest(
            "'subject' must be 1 to 128 printable characters".into(),
        ));
    }
    let subject = match &caller.0 {
        Scope::Admin => subject,
        // Under the minting instance's own name, whatever was asked for.
        scope => {
            let own = scope.describe();
            if subject == own || subject.starts_with(&format!("{own}/")) {
                subject
            } else {
                format!("{own}/{subject}")
            }
        }
    };
    let minted_by = caller
        .0
        .minter()
        .ok_or_else(|| ApiError::Forbidden("a token cannot mint tokens; use a key".into()))?;
    let instances = match instances {
        None => None,
        Some(names) => {
            let mut named = BTreeMap::new();
            for name in names {
                let id =
                    state.service.registry().id_of(&name).ok_or_else(|| {
                        ApiError::NotFound(format!("instance '{name}' not found"))
                    })?;
                named.insert(name, id);
            }
            Some(named)
        }
    };
    let expires_at = chrono::Utc::now() + chrono::Duration::seconds(ttl as i64);
    let grant = Grant {
        subject,
        minted_by,
        instances,
        topics,
        expires_at,
    };
    let token = state
        .tokens
        .mint(&grant)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("minting a token failed: {e}")))?;
    let instances = match &grant.instances {
        None => InstancesField::All("*".into()),
        // A map by name: the names come sorted.
        Some(named) => InstancesField::List(named.keys().map(|n| n.to_string()).collect()),
    };
    answer(
        StatusCode::CREATED,
        &Minted {
            events: grant
                .topics
                .names()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            expires_at: format_timestamp(expires_at),
            expires_in: ttl,
            instances,
            subject: grant.subject,
            token,
        },
    )
}
