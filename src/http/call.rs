//! `call/reject`: hang up a call ringing on a modem instance.
//!
//! The answer waits for the modem: 200 with the call's id once it hung up,
//! 404 when no call (or not that one) is ringing, 409 when the instance's
//! modem actor is not running.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{error::ApiError, AppState, Caller};

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
    let call_id = state.service.reject_call(&name, call_id).await?;
    Ok(HttpResponse::Ok().json(json!({
        "instance": { "instanceName": name },
        "callId": call_id,
        "status": "reject",
    })))
}
