//! `message/sendText`: 201 once the text is committed to the outbox (see
//! `service::messages`).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{error::ApiError, AppState, Caller};
use crate::{
    domain::InstanceName,
    service::{Accepted, SendText},
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendTextBody {
    number: String,
    #[serde(default)]
    text: Option<String>,
    /// Evolution v1's shape: `{"textMessage": {"text": "..."}}`.
    #[serde(default)]
    text_message: Option<TextMessage>,
}

#[derive(Deserialize)]
pub struct TextMessage {
    text: String,
}

pub async fn send_text(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<SendTextBody>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let body = body.into_inner();
    let text = body
        .text
        .or(body.text_message.map(|t| t.text))
        .ok_or_else(|| ApiError::BadRequest("'text' is required".into()))?;
    let accepted = state
        .service
        .send_text(
            &name,
            SendText {
                number: body.number,
                text,
            },
        )
        .await?;
    Ok(HttpResponse::Created().json(response(&name, accepted)))
}

/// Evolution's answer shape: `key`, `id` and `status` for one number; the
/// group and one entry per member for a group.
fn response(name: &InstanceName, accepted: Accepted) -> serde_json::Value {
    let Accepted {
        group,
        messages,
        text,
        timestamp,
        parts,
    } = accepted;
    match group {
        None => {
            let (id, number) = messages.into_iter().next().unwrap_or_default();
            json!({
                "key": { "remoteJid": number, "fromMe": true, "id": id },
                "id": id,
                "instance": name,
                "number": number,
                "text": text,
                "status": "queued",
                "messageTimestamp": timestamp,
                "parts": parts,
            })
        }
        Some(group) => json!({
            "groupJid": group,
            "instance": name,
            "text": text,
            "status": "queued",
            "messageTimestamp": timestamp,
            "parts": parts,
            "messages": messages
                .into_iter()
                .map(|(id, number)| json!({ "id": id, "number": number, "status": "queued" }))
                .collect::<Vec<_>>(),
        }),
    }
}
