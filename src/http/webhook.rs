//! `webhook/set` and `webhook/find` (Evolution-style): one webhook per
//! instance; see `service::webhooks`.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{error::ApiError, AppState, Caller};
use crate::{
    domain::{InstanceName, TopicSet},
    event::format_timestamp,
    service::{SetWebhook, WebhookView},
};

/// Accepts Evolution's `{"webhook": {...}}` wrapper or the bare object.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum SetBody {
    Wrapped { webhook: Fields },
    Bare(Fields),
}

#[derive(Deserialize)]
pub struct Fields {
    #[serde(default = "yes")]
    enabled: bool,
    url: String,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    /// Event names; absent or empty means every event.
    #[serde(default)]
    events: Vec<String>,
}

fn yes() -> bool {
    true
}

pub async fn set(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<SetBody>,
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
            },
        )
        .await?;
    Ok(find_body(&name, view))
}

pub async fn find(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let view = state.service.webhook(&name)?;
    Ok(find_body(&name, view))
}

fn find_body(name: &InstanceName, view: WebhookView) -> HttpResponse {
    let WebhookView { row, status } = view;
    // Header values may hold the receiver's secrets: only names are shown.
    let headers: Vec<&str> = row.headers.iter().map(|(k, _)| k.as_str()).collect();
    let events = row
        .events
        .unwrap_or_else(TopicSet::all_instance_topics)
        .names();
    HttpResponse::Ok().json(json!({
        "webhook": {
            "instanceName": name,
            "enabled": row.enabled,
            "url": row.url,
            "headers": headers,
            "events": events,
            "createdAt": format_timestamp(row.created_at),
            "status": status,
        }
    }))
}
