//! `webhook/set` and `webhook/find` (Evolution-style): one webhook per
//! instance; see `service::webhooks`. A signing secret can be set but is
//! never shown back: `webhook/find` says whether one is set.

use actix_web::{http::StatusCode, web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::{answer, body::Json, error::ApiError, AppState, Caller};
use crate::{
    domain::{InstanceName, TopicSet},
    event::format_timestamp,
    service::{SecretChange, SetWebhook, WebhookView},
};

/// Accepts Evolution's `{"webhook": {...}}` wrapper or the bare object.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum SetBody {
    Wrapped { webhook: WebhookFields },
    Bare(WebhookFields),
}

impl utoipa::PartialSchema for SetBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::openapi::wrapped_or_bare(
            "webhook",
            "WebhookFields",
            json!({"webhook": {"enabled": true, "url": "https://example.com/hooks/sms",
                "headers": {"Authorization": "Bearer receiver-secret"},
                "events": ["MESSAGES_UPSERT", "MESSAGES_UPDATE"],
                "secret": "a-long-random-signing-secret"}}),
        )
    }
}

impl ToSchema for SetBody {}

/// One webhook: where each event is POSTed, with which headers.
#[derive(Deserialize, ToSchema)]
pub struct WebhookFields {
    /// `false` pauses deliveries (the place in the log is kept).
    #[serde(default = "yes")]
    enabled: bool,
    /// An `http://` or `https://` URL with a host.
    url: String,
    /// Sent with every delivery (for the receiver's own authentication).
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    /// Event names; absent or empty means every event.
    #[serde(default)]
    events: Vec<String>,
    /// Signs every delivery (16 to 256 characters): see "Signed webhooks"
    /// in the README. Absent keeps the secret set before; `null` removes it.
    /// Never shown back.
    #[serde(default, deserialize_with = "super::body::present")]
    #[schema(value_type = Option<String>, min_length = 16, max_length = 256)]
    secret: Option<Option<String>>,
}

/// How deliveries are going.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStatus {
    consecutive_failures: u64,
    /// The id of the last event delivered (or filtered out).
    cursor: i64,
    delivered: u64,
    last_attempt_at: Option<String>,
    last_error: Option<String>,
    last_success_at: Option<String>,
    next_retry_at: Option<String>,
    /// Why deliveries stopped for good (the receiver answered 410 Gone);
    /// null while they go on. Setting the webhook again resumes them.
    stopped: Option<String>,
}

impl From<crate::webhook::Status> for DeliveryStatus {
    fn from(status: crate::webhook::Status) -> DeliveryStatus {
        DeliveryStatus {
            consecutive_failures: status.consecutive_failures,
            cursor: status.cursor,
            delivered: status.delivered,
            last_attempt_at: status.last_attempt_at,
            last_error: status.last_error,
            last_success_at: status.last_success_at,
            next_retry_at: status.next_retry_at,
            stopped: status.stopped,
        }
    }
}

/// A webhook as `webhook/find` shows it: header names only, never values.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookState {
    #[schema(format = DateTime)]
    created_at: String,
    enabled: bool,
    /// Canonical event names.
    events: Vec<String>,
    /// Header names (values may hold the receiver's secrets).
    headers: Vec<String>,
    instance_name: String,
    /// Whether deliveries are signed (the secret itself is never shown).
    secret_set: bool,
    /// Null until its worker has started.
    status: Option<DeliveryStatus>,
    url: String,
}

/// `webhook/set` and `webhook/find`'s answer.
#[derive(Serialize, ToSchema)]
pub struct WebhookAnswer {
    webhook: WebhookState,
}

const WEBHOOK_EXAMPLE: &str = r#"{"webhook": {"createdAt": "2026-11-30T02:08:39.561564Z",
    "enabled": true, "events": ["incoming", "delivery"], "headers": ["Authorization"],
    "instanceName": "alpha", "secretSet": true,
    "status": {"consecutiveFailures": 0, "cursor": 42, "delivered": 40,
    "lastAttemptAt": "2026-11-30T02:09:00.000000Z", "lastError": null,
    "lastSuccessAt": "2026-11-30T02:09:00.000000Z", "nextRetryAt": null, "stopped": null},
    "url": "https://example.com/hooks/sms"}}"#;

fn yes() -> bool {
    true
}

/// Set the instance's webhook: each event is POSTed to it, in log order.
#[utoipa::path(
    post, path = "/webhook/set/{instance}", tag = "webhooks", operation_id = "setWebhook",
    params(super::openapi::InstancePath),
    request_body = SetBody,
    responses((status = 200, description = "The webhook now", body = WebhookAnswer,
        example = json!(serde_json::from_str::<serde_json::Value>(WEBHOOK_EXAMPLE).ok()))),
)]
pub async fn set(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Json<SetBody>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let fields = match body.into_inner() {
        SetBody::Wrapped { webhook } => webhook,
        SetBody::Bare(fields) => fields,
    };
    let view = state
        .service
        .set_webhook(
            &name,
            SetWebhook {
                enabled: fields.enabled,
                url: fields.url,
                headers: fields.headers.into_iter().collect(),
                events: fields.events,
                secret: match fields.secret {
                    None => SecretChange::Keep,
                    Some(None) => SecretChange::Remove,
                    Some(Some(secret)) => SecretChange::Set(secret),
                },
            },
        )
        .await?;
    find_body(&name, view)
}

/// The instance's webhook and how its deliveries go.
#[utoipa::path(
    get, path = "/webhook/find/{instance}", tag = "webhooks", operation_id = "findWebhook",
    params(super::openapi::InstancePath),
    responses((status = 200, description = "The webhook", body = WebhookAnswer,
        example = json!(serde_json::from_str::<serde_json::Value>(WEBHOOK_EXAMPLE).ok()))),
)]
pub async fn find(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let view = state.service.webhook(&name)?;
    find_body(&name, view)
}

fn find_body(name: &InstanceName, view: WebhookView) -> Result<HttpResponse, ApiError> {
    let WebhookView { row, status } = view;
    // Header values may hold the receiver's secrets: only names are shown.
    let headers: Vec<String> = row.headers.iter().map(|(k, _)| k.clone()).collect();
    let events = row
        .events
        .unwrap_or_else(TopicSet::all_instance_topics)
        .names();
    answer(
        StatusCode::OK,
        &WebhookAnswer {
            webhook: WebhookState {
                created_at: format_timestamp(row.created_at),
                enabled: row.enabled,
                events: events.into_iter().map(str::to_owned).collect(),
                headers,
                instance_name: name.to_string(),
                secret_set: row.secret.is_some(),
                status: status.map(DeliveryStatus::from),
                url: row.url,
            },
        },
    )
}
