//! `settings/set` and `settings/find` (Evolution-style): what an instance
//! does on its own and how it reads numbers; see `service::settings`.

use actix_web::{http::StatusCode, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{answer, body::Json, error::ApiError, AppState, Caller};
use crate::{
    domain::{InstanceName, InstanceSettings, Throttle},
    service::SettingsChange,
};

/// `settings/set`: each field present is changed, the others stay.
///
/// Evolution's `groupsIgnore`, `alwaysOnline`, `readMessages`, `readStatus`
/// and `syncFullHistory` are understood so its clients can send their usual
/// body, but mean nothing for SMS: `groupsIgnore` is taken either way (no
/// SMS comes from a group chat), and the others are refused when `true`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"rejectCall": true, "msgCall": "Sorry, this number takes texts only.",
    "defaultRegion": "GB", "allowShortCodes": false}))]
pub struct SettingsBody {
    /// Hang up every incoming call right after its `offer` event.
    #[serde(default)]
    reject_call: Option<bool>,
    /// A text sent to each rejected caller (by `rejectCall` or
    /// `call/reject`); empty or `null`: none.
    #[serde(default, deserialize_with = "super::body::present")]
    #[schema(value_type = Option<String>, max_length = 480)]
    msg_call: Option<Option<String>>,
    /// The country (ISO 3166-1 alpha-2) that numbers without `+` are read
    /// in; `null`: every number needs its country code.
    #[serde(default, deserialize_with = "super::body::present")]
    #[schema(value_type = Option<String>, pattern = "^[A-Za-z]{2}$", example = "GB")]
    default_region: Option<Option<String>>,
    /// Whether 3 to 8 digits without `+` may be sent to as a short code.
    #[serde(default)]
    allow_short_codes: Option<bool>,
    /// Sends per minute (sliding), per UTC day and per UTC month, each
    /// optional; a text over a limit waits in the queue. `null`: no limits.
    ///
    /// Taken as a JSON object first: serde would also read a struct from
    /// an array, which no client means.
    #[serde(default, deserialize_with = "super::body::present")]
    #[schema(value_type = Option<Throttle>)]
    throttle: Option<Option<serde_json::Map<String, serde_json::Value>>>,
    /// Evolution's; taken either way (no SMS comes from a group chat).
    #[serde(default)]
    groups_ignore: Option<bool>,
    /// Evolution's; `true` is refused (SMS has no presence to keep).
    #[serde(default)]
    always_online: Option<bool>,
    /// Evolution's; `true` is refused (SMS has no read receipts).
    #[serde(default)]
    read_messages: Option<bool>,
    /// Evolution's; `true` is refused (SMS has no statuses to read).
    #[serde(default)]
    read_status: Option<bool>,
    /// Evolution's; `true` is refused (the network keeps no history).
    #[serde(default)]
    sync_full_history: Option<bool>,
}

/// An instance's settings.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SettingsState {
    allow_short_codes: bool,
    #[schema(pattern = "^[A-Z]{2}$")]
    default_region: Option<String>,
    instance_name: String,
    msg_call: Option<String>,
    reject_call: bool,
    /// Present when the instance has limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    throttle: Option<Throttle>,
}

/// `settings/set` and `settings/find`'s answer.
#[derive(Serialize, ToSchema)]
pub struct SettingsAnswer {
    settings: SettingsState,
}

const SETTINGS_EXAMPLE: &str = r#"{"settings": {"allowShortCodes": false,
    "defaultRegion": "GB", "instanceName": "alpha",
    "msgCall": "Sorry, this number takes texts only.", "rejectCall": true}}"#;

/// Refuses Evolution's switches that have no meaning for SMS when a client
/// asks for them.
fn refuse_meaningless(body: &SettingsBody) -> Result<(), ApiError> {
    for (field, asked, why) in [
        (
            "alwaysOnline",
            body.always_online,
            "SMS has no presence to keep online",
        ),
        (
            "readMessages",
            body.read_messages,
            "SMS has no read receipts",
        ),
        (
            "readStatus",
            body.read_status,
            "SMS has no statuses to read",
        ),
        (
            "syncFullHistory",
            body.sync_full_history,
            "the network keeps no history to sync (GET /events reads what arrived)",
        ),
    ] {
        if asked == Some(true) {
            return Err(ApiError::BadRequest(format!(
                "'{field}' cannot be true for an SMS instance: {why}"
            )));
        }
    }
    Ok(())
}

/// Change the instance's settings (only the fields given).
#[utoipa::path(
    post, path = "/settings/set/{instance}", tag = "instances", operation_id = "setSettings",
    params(super::openapi::InstancePath),
    request_body = SettingsBody,
    responses((status = 200, description = "The settings now", body = SettingsAnswer,
        example = json!(serde_json::from_str::<serde_json::Value>(SETTINGS_EXAMPLE).ok()))),
)]
pub async fn set(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Json<SettingsBody>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let body = body.into_inner();
    refuse_meaningless(&body)?;
    // Either value holds for SMS, which never comes from a group chat.
    let _ = body.groups_ignore;
    let throttle = body
        .throttle
        .map(|t| {
            t.map(|fields| serde_json::from_value::<Throttle>(serde_json::Value::Object(fields)))
                .transpose()
        })
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("'throttle': {e}")))?;
    let settings = state
        .service
        .set_settings(
            &name,
            SettingsChange {
                reject_call: body.reject_call,
                msg_call: body.msg_call,
                default_region: body.default_region,
                allow_short_codes: body.allow_short_codes,
                throttle,
            },
        )
        .await?;
    settings_body(&name, settings)
}

/// The instance's settings.
#[utoipa::path(
    get, path = "/settings/find/{instance}", tag = "instances", operation_id = "findSettings",
    params(super::openapi::InstancePath),
    responses((status = 200, description = "The settings", body = SettingsAnswer,
        example = json!(serde_json::from_str::<serde_json::Value>(SETTINGS_EXAMPLE).ok()))),
)]
pub async fn find(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let settings = state.service.settings(&name)?;
    settings_body(&name, settings)
}

fn settings_body(
    name: &InstanceName,
    settings: InstanceSettings,
) -> Result<HttpResponse, ApiError> {
    answer(
        StatusCode::OK,
        &SettingsAnswer {
            settings: SettingsState {
                allow_short_codes: settings.allow_short_codes,
                default_region: settings.default_region.map(|r| r.to_string()),
                instance_name: name.to_string(),
                msg_call: settings.msg_call,
                reject_call: settings.reject_call,
                throttle: (!settings.throttle.is_empty()).then_some(settings.throttle),
            },
        },
    )
}
