//! `POST /ussd/{instance}` and `DELETE /ussd/{instance}`: USSD sessions
//! (`*100#`) on an instance's modem; see `service::ussd`.
//!
//! The answer waits for the network: 200 with its reply once the `ussd`
//! event is committed, 504 when none came in time (the session is closed),
//! 409 when the modem is not running or the request does not fit the
//! session (a reply with no menu open).

use actix_web::{http::StatusCode, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{answer, body::Json, error::ApiError, AppState, Caller};
use crate::{
    domain::InstanceName,
    event::data::UssdStatus,
    modem::ussd::{UssdAnswer, UssdRequest},
};

/// `POST /ussd/{instance}`: a code to start a session, or a reply to the
/// menu the network showed. Exactly one of them.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"code": "*100#"}))]
pub struct UssdBody {
    /// A USSD code: digits, `*`, `#` and `+` (1 to 40).
    #[serde(default)]
    #[schema(pattern = r"^[0-9*#+]{1,40}$")]
    code: Option<String>,
    /// A reply to the open menu: digits, letters, spaces, `*`, `#`, `+` (1 to 40).
    #[serde(default)]
    #[schema(pattern = r"^[0-9A-Za-z*#+ ]{1,40}$")]
    reply: Option<String>,
    /// How long to wait for the network (default 30000).
    #[serde(default)]
    #[schema(minimum = 100, maximum = 120000)]
    timeout_ms: Option<u64>,
}

/// The session's state after an exchange.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum UssdStatusBody {
    Done,
    Menu,
    Terminated,
    OtherClient,
    Unsupported,
    NetworkTimeout,
    Cancelled,
    Timeout,
}

/// One exchange, as its `ussd` event has it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UssdState {
    /// The session: the same for a code and the replies that follow it.
    id: String,
    instance_name: String,
    /// What was sent: the code or the reply; null for a cancellation.
    request: Option<String>,
    /// `menu`: the network waits for a reply (`{"reply": ...}`).
    #[schema(value_type = UssdStatusBody)]
    status: UssdStatus,
    /// The network's text, decoded.
    text: Option<String>,
    /// Unix seconds.
    timestamp: i64,
}

/// The USSD routes' answer.
#[derive(Serialize, ToSchema)]
pub struct UssdAnswerBody {
    ussd: UssdState,
}

fn ussd_body(name: &InstanceName, data: UssdAnswer) -> Result<HttpResponse, ApiError> {
    answer(
        StatusCode::OK,
        &UssdAnswerBody {
            ussd: UssdState {
                id: data.id,
                instance_name: name.to_string(),
                request: data.request,
                status: data.status,
                text: data.text,
                timestamp: data.timestamp,
            },
        },
    )
}

/// Send a USSD code (or a reply to the menu it opened) and wait for the
/// network's answer.
#[utoipa::path(
    post, path = "/ussd/{instance}", tag = "messages", operation_id = "ussd",
    params(super::openapi::InstancePath),
    request_body = UssdBody,
    responses(
        (status = 200, description = "The network answered", body = UssdAnswerBody, example = json!({
            "ussd": {"id": "019a6b1e-8d2c-7c3e-9f1a-2b3c4d5e6f70", "instanceName": "alpha",
                "request": "*101#", "status": "menu",
                "text": "Main menu\n1 Balance\n2 Bundles\n0 Exit", "timestamp": 1763807400}})),
        (status = 409, description = "The modem is not running, or the request does not fit the session",
            body = super::openapi::ErrorBody,
            example = json!({"error": {"code": "CONFLICT",
                "message": "no USSD menu is open: start a session with a code"}})),
        (status = 504, description = "No answer in time; the session was closed",
            body = super::openapi::ErrorBody,
            example = json!({"error": {"code": "GATEWAY_TIMEOUT",
                "message": "no USSD answer within 30s; the session was closed"}})),
    ),
)]
pub async fn send(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Json<UssdBody>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let body = body.into_inner();
    let request = match (body.code, body.reply) {
        (Some(code), None) => UssdRequest::Code(code),
        (None, Some(reply)) => UssdRequest::Reply(reply),
        _ => {
            return Err(ApiError::BadRequest(
                "send either 'code' (to start a session) or 'reply' (to answer its menu)".into(),
            ))
        }
    };
    let data = state.service.ussd(&name, request, body.timeout_ms).await?;
    ussd_body(&name, data)
}

/// Close the instance's USSD session.
#[utoipa::path(
    delete, path = "/ussd/{instance}", tag = "messages", operation_id = "cancelUssd",
    params(super::openapi::InstancePath),
    responses(
        (status = 200, description = "Closed", body = UssdAnswerBody, example = json!({
            "ussd": {"id": "019a6b1e-8d2c-7c3e-9f1a-2b3c4d5e6f70", "instanceName": "alpha",
                "request": null, "status": "cancelled", "text": null, "timestamp": 1763807400}})),
        (status = 409, description = "No session is open, or the modem is not running",
            body = super::openapi::ErrorBody,
            example = json!({"error": {"code": "CONFLICT", "message": "no USSD session is open"}})),
    ),
)]
pub async fn cancel(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let data = state.service.ussd(&name, UssdRequest::Cancel, None).await?;
    ussd_body(&name, data)
}
