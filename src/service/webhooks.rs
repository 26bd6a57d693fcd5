//! Webhook settings: one webhook per instance, its URL, headers, events and
//! signing secret. The setting commits first; the delivery worker is
//! (re)started after. Setting a webhook again also resumes one whose
//! deliveries stopped for good (its receiver said 410 Gone).

use super::{Service, ServiceError};
use crate::{
    domain::{truncate, InstanceName, TopicSet, WebhookSecret},
    store::{Change, Job, WebhookRow},
    webhook::Status,
};

/// What `webhook/set` asks for.
pub struct SetWebhook {
    pub enabled: bool,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub events: Vec<String>,
    pub secret: SecretChange,
}

/// What `webhook/set` does with the signing secret. It is never shown
/// back, so a client changing other fields must be able to leave it be.
pub enum SecretChange {
    /// Keep the one set (absent from the request).
    Keep,
    /// Stop signing (`"secret": null`).
    Remove,
    /// Sign with this one.
    Set(String),
}

/// A webhook with its delivery status.
pub struct WebhookView {
    pub row: WebhookRow,
    pub status: Option<Status>,
}

impl Service {
    pub async fn set_webhook(
        &self,
        name: &InstanceName,
        request: SetWebhook,
    ) -> Result<WebhookView, ServiceError> {
        self.exists(name)?;
        let url = reqwest::Url::parse(request.url.trim())
            .map_err(|e| ServiceError::Invalid(format!("'url' is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(ServiceError::Invalid(
                "'url' must be an http:// or https:// URL with a host".into(),
            ));
        }
        // A name is checked on every connection, once resolved; an address
        // can be refused right away.
        self.webhooks
            .targets()
            .check_url(&url)
            .map_err(|refused| ServiceError::Invalid(format!("'url': {refused}")))?;
        for (header, value) in &request.headers {
            let valid = reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_ok()
                && reqwest::header::HeaderValue::from_str(value).is_ok();
            if !valid {
                return Err(ServiceError::Invalid(format!(
                    "header '{}' is not a valid HTTP header",
                    truncate(header, 60)
                )));
            }
        }
        let events = TopicSet::parse_list(request.events.iter().map(String::as_str))
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let existing = self.webhooks.cursor(name);
        let secret = match request.secret {
            SecretChange::Keep => self.webhooks.config(name).and_then(|c| c.secret),
            SecretChange::Remove => None,
            SecretChange::Set(raw) => {
                Some(WebhookSecret::parse(&raw).map_err(ServiceError::Invalid)?)
            }
        };
        let row = WebhookRow {
            instance: name.clone(),
            url: url.to_string(),
            headers: request.headers,
            events: (!events.is_empty()).then_some(events),
            enabled: request.enabled,
            // A new webhook starts with what happens next; a changed one goes
            // on where it was.
            cursor: existing.unwrap_or_else(|| self.hub.last_published()),
            created_at: chrono::Utc::now(),
            secret,
            stopped: None,
        };
        self.log
            .append(Job {
                events: Vec::new(),
                changes: vec![Change::SetWebhook {
                    webhook: row.clone(),
                }],
                fence: None,
            })
            .await?;
        self.webhooks.start(row);
        self.webhook(name)
    }

    pub fn webhook(&self, name: &InstanceName) -> Result<WebhookView, ServiceError> {
        self.exists(name)?;
        let row = self.webhooks.config(name).ok_or_else(|| {
            ServiceError::NotFound(format!(
                "instance '{name}' has no webhook; set one with POST /webhook/set/{name}"
            ))
        })?;
        Ok(WebhookView {
            status: self.webhooks.status(name),
            row,
        })
    }
}
