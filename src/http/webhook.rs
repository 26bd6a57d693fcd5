//! `webhook/set` and `webhook/find` (Evolution-style): one webhook per
//! instance.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{AppState, Caller};
use crate::{
    error::ApiError,
    event::{format_timestamp, TopicSet},
    instance::InstanceName,
    store::{Change, Job, WebhookRow},
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
    state.registry.supervisor(&name)?;
    let fields = match body.into_inner() {
        SetBody::Wrapped { webhook } => webhook,
        SetBody::Bare(fields) => fields,
    };
    let url = reqwest::Url::parse(fields.url.trim())
        .map_err(|e| ApiError::BadRequest(format!("'url' is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ApiError::BadRequest(
            "'url' must be an http:// or https:// URL with a host".into(),
        ));
    }
    for (header, value) in &fields.headers {
        let valid = reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_ok()
            && reqwest::header::HeaderValue::from_str(value).is_ok();
        if !valid {
            return Err(ApiError::BadRequest(format!(
                "header '{}' is not a valid HTTP header",
                super::truncate(header, 60)
            )));
        }
    }
    let events = TopicSet::parse_list(fields.events.iter().map(String::as_str))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let existing = state.webhooks.cursor(&name);
    let row = WebhookRow {
        instance: name.clone(),
        url: url.to_string(),
        headers: fields.headers.into_iter().collect(),
        events: (!events.is_empty()).then_some(events),
        enabled: fields.enabled,
        // A new webhook starts with what happens next; a changed one goes on
        // where it was.
        cursor: existing.unwrap_or_else(|| state.hub.last_published()),
        created_at: chrono::Utc::now(),
    };
    state
        .log
        .append(Job {
            events: Vec::new(),
            changes: vec![Change::SetWebhook {
                webhook: row.clone(),
            }],
        })
        .await?;
    state.webhooks.start(row);
    find_body(&state, &name)
}

pub async fn find(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    state.registry.supervisor(&name)?;
    find_body(&state, &name)
}

fn find_body(state: &AppState, name: &InstanceName) -> Result<HttpResponse, ApiError> {
    let Some(row) = state.webhooks.config(name) else {
        return Err(ApiError::NotFound(format!(
            "instance '{name}' has no webhook; set one with POST /webhook/set/{name}"
        )));
    };
    // Header values may hold the receiver's secrets: only names are shown.
    let headers: Vec<&str> = row.headers.iter().map(|(k, _)| k.as_str()).collect();
    let events = row
        .events
        .unwrap_or_else(TopicSet::all_instance_topics)
        .names();
    Ok(HttpResponse::Ok().json(json!({
        "webhook": {
            "instanceName": name,
            "enabled": row.enabled,
            "url": row.url,
            "headers": headers,
            "events": events,
            "createdAt": format_timestamp(row.created_at),
            "status": state.webhooks.status(name),
        }
    })))
}
