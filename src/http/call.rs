//! `call/reject`: hang up a call ringing on a modem instance.
//!
//! The request goes to the instance's running driver as a command, and the
//! answer waits for the modem: 200 with the call's id once it hung up, 404
//! when no call (or not that one) is ringing, 409 when the instance's modem
//! actor is not running.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;

use super::{AppState, Caller};
use crate::{error::ApiError, modem::Command};

/// Longest wait for the driver to hang up (it may be busy sending).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RejectBody {
    /// The call to reject (from its `offer` event); absent: whichever rings.
    #[serde(default)]
    call_id: Option<String>,
}

pub async fn reject(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Option<web::Json<RejectBody>>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let call_id = body.and_then(|b| b.into_inner().call_id);
    let (reply, answer) = oneshot::channel();
    let accepted = state.registry.command(
        &name,
        Command::RejectCall {
            call_id,
            reply: Some(reply),
        },
    )?;
    if !accepted {
        return Err(ApiError::Conflict(format!(
            "instance '{name}' has no running modem (connect it first)"
        )));
    }
    match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
        Ok(Ok(Ok(call_id))) => Ok(HttpResponse::Ok().json(json!({
            "instance": { "instanceName": name },
            "callId": call_id,
            "status": "reject",
        }))),
        Ok(Ok(Err(why))) => Err(ApiError::NotFound(why)),
        Ok(Err(_)) | Err(_) => Err(ApiError::Conflict(format!(
            "instance '{name}': the modem did not hang up (its driver stopped or is busy)"
        ))),
    }
}
