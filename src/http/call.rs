//! `call/reject`: hang up a call ringing on a modem instance.
//!
//! The answer waits for the modem: 200 with the call's id once it hung up,
//! 404 when no call (or not that one) is ringing, 409 when the instance's
//! modem actor is not running. In a cluster the node driving the instance
//! hangs up (see `service/remote.rs`).

use actix_web::{http::StatusCode, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{answer, body::OptionalJson, error::ApiError, instance::NameOnly, AppState, Caller};

/// `call/reject`; the body may be left out.
#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"callId": "7f0c1c9e-52b1-4d47-9d6b-2f8f3c7e4a10"}))]
pub struct RejectBody {
    /// The call to reject (from its `offer` event); absent: whichever rings.
    #[serde(default)]
    call_id: Option<String>,
}

/// `call/reject`'s answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rejected {
    call_id: String,
    instance: NameOnly,
    #[schema(pattern = "^reject$")]
    status: String,
}

/// Hang up the call ringing on the instance's modem.
#[utoipa::path(
    post, path = "/call/reject/{instance}", tag = "messages", operation_id = "rejectCall",
    params(super::openapi::InstancePath),
    request_body(content = Option<RejectBody>, description = "Optional"),
    responses(
        (status = 200, description = "Hung up", body = Rejected, example = json!({
            "callId": "7f0c1c9e-52b1-4d47-9d6b-2f8f3c7e4a10",
            "instance": {"instanceName": "alpha"}, "status": "reject"})),
        (status = 404, description = "No call (or not that one) is ringing, or no such instance",
            body = super::openapi::ErrorBody,
            example = json!({"error": {"code": "NOT_FOUND", "message": "no call is ringing"}})),
        (status = 409, description = "The instance's modem actor is not running",
            body = super::openapi::ErrorBody,
            example = json!({"error": {"code": "CONFLICT", "message": "instance 'alpha' is not connected"}})),
        (status = 504, description = "In a cluster: the node driving the instance did not answer in time",
            body = super::openapi::ErrorBody,
            example = json!({"error": {"code": "GATEWAY_TIMEOUT",
                "message": "instance 'alpha' is driven by node host-b, which did not answer within 35s"}})),
    ),
)]
pub async fn reject(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: OptionalJson<RejectBody>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let call_id = body.0.and_then(|b| b.call_id);
    let call_id = state.service.reject_call(&name, call_id).await?;
    answer(
        StatusCode::OK,
        &Rejected {
            call_id,
            instance: NameOnly::of(&name),
            status: "reject".into(),
        },
    )
}
