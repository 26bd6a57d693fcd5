//! Broadcast groups (`/group/...`); see `service::groups`.

use actix_web::{http::StatusCode, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{answer, body::Json, error::ApiError, query::Query, AppState, Caller};
use crate::service::GroupView;

/// `group/create`.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"subject": "Team", "participants": ["+15551110001", "+15551110002"]}))]
pub struct CreateGroupBody {
    /// The group's name: 1 to 100 characters.
    subject: String,
    /// Member numbers.
    #[serde(default)]
    participants: Vec<String>,
}

/// A member of a group.
#[derive(Serialize, ToSchema)]
pub struct Participant {
    id: String,
}

/// A broadcast group, in Evolution's shape.
#[derive(Serialize, ToSchema)]
pub struct Group {
    /// Unix seconds.
    creation: i64,
    /// The group id (`…@g.us`): send to it to reach every member.
    id: String,
    /// The instance's own number.
    owner: String,
    /// Absent when `getParticipants=false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    participants: Option<Vec<Participant>>,
    size: usize,
    subject: String,
}

fn group_body(group: &GroupView, with_participants: bool) -> Group {
    Group {
        creation: group.created_at.timestamp(),
        id: group.id.clone(),
        owner: group.owner.clone(),
        participants: with_participants.then(|| {
            group
                .participants
                .iter()
                .map(|p| Participant { id: p.clone() })
                .collect()
        }),
        size: group.participants.len(),
        subject: group.name.clone(),
    }
}

const GROUP_EXAMPLE: &str = r#"{"creation": 1796004519, "id": "01a22a361e32741ebdb2787ff10ecb3c@g.us",
    "owner": "+15550001000", "participants": [{"id": "+15551110001"}, {"id": "+15551110002"}],
    "size": 2, "subject": "Team"}"#;

/// Create a broadcast group: a text sent to its id goes to every member.
#[utoipa::path(
    post, path = "/group/create/{instance}", tag = "groups", operation_id = "createGroup",
    params(super::openapi::InstancePath),
    request_body = CreateGroupBody,
    responses((status = 201, description = "Created", body = Group,
        example = json!(serde_json::from_str::<serde_json::Value>(GROUP_EXAMPLE).ok()))),
)]
pub async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Json<CreateGroupBody>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let group = state
        .service
        .create_group(&name, &body.subject, &body.participants)
        .await?;
    answer(StatusCode::CREATED, &group_body(&group, true))
}

/// `updateParticipant`'s query.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct GroupQuery {
    /// The group id from `group/create` (or give it in the body).
    group_jid: Option<String>,
}

/// `group/updateParticipant`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"action": "add", "participants": ["+15551110003"]}))]
pub struct UpdateBody {
    /// `add` or `remove`.
    #[schema(pattern = "^(add|remove)$")]
    action: String,
    participants: Vec<String>,
    /// The group id, when not in the query.
    #[serde(default)]
    group_jid: Option<String>,
}

/// Add or remove members of a group (`PUT` does the same).
#[utoipa::path(
    post, path = "/group/updateParticipant/{instance}", tag = "groups",
    operation_id = "updateGroupParticipants",
    params(super::openapi::InstancePath, GroupQuery),
    request_body = UpdateBody,
    responses((status = 200, description = "The group now", body = Group,
        example = json!(serde_json::from_str::<serde_json::Value>(GROUP_EXAMPLE).ok()))),
)]
pub async fn update_participant(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: Query<GroupQuery>,
    body: Json<UpdateBody>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let body = body.into_inner();
    let group_id = query
        .into_inner()
        .group_jid
        .or(body.group_jid)
        .ok_or_else(|| ApiError::BadRequest("'groupJid' is required (query or body)".into()))?;
    let group = state
        .service
        .update_group_members(&name, &group_id, &body.action, &body.participants)
        .await?;
    answer(StatusCode::OK, &group_body(&group, true))
}

/// Add or remove members of a group (`POST` does the same).
#[utoipa::path(
    put, path = "/group/updateParticipant/{instance}", tag = "groups",
    operation_id = "updateGroupParticipantsPut",
    params(super::openapi::InstancePath, GroupQuery),
    request_body = UpdateBody,
    responses((status = 200, description = "The group now", body = Group,
        example = json!(serde_json::from_str::<serde_json::Value>(GROUP_EXAMPLE).ok()))),
)]
pub async fn update_participant_put(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: Query<GroupQuery>,
    body: Json<UpdateBody>,
) -> Result<HttpResponse, ApiError> {
    update_participant(caller, state, path, query, body).await
}

/// `fetchAllGroups`' query.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct FetchQuery {
    /// `false` leaves the member lists out (default `true`).
    #[serde(default)]
    get_participants: Option<bool>,
}

/// The instance's groups.
#[utoipa::path(
    get, path = "/group/fetchAllGroups/{instance}", tag = "groups", operation_id = "fetchAllGroups",
    params(super::openapi::InstancePath, FetchQuery),
    responses((status = 200, description = "Its groups", body = Vec<Group>,
        example = json!([serde_json::from_str::<serde_json::Value>(GROUP_EXAMPLE).ok()]))),
)]
pub async fn fetch_all(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: Query<FetchQuery>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let with_participants = query.get_participants.unwrap_or(true);
    let groups = state.service.groups(&name).await?;
    let list: Vec<Group> = groups
        .iter()
        .map(|g| group_body(g, with_participants))
        .collect();
    answer(StatusCode::OK, &list)
}
