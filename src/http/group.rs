//! Broadcast groups (`/group/...`); see `service::groups`.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{error::ApiError, AppState, Caller};
use crate::service::GroupView;

#[derive(Deserialize)]
pub struct CreateBody {
    subject: String,
    #[serde(default)]
    participants: Vec<String>,
}

fn group_json(group: &GroupView, with_participants: bool) -> serde_json::Value {
    let mut value = json!({
        "id": group.id,
        "subject": group.name,
        "owner": group.owner,
        "size": group.participants.len(),
        "creation": group.created_at.timestamp(),
    });
    if with_participants {
        value["participants"] = group
            .participants
            .iter()
            .map(|p| json!({ "id": p }))
            .collect();
    }
    value
}

pub async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<CreateBody>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let group = state
        .service
        .create_group(&name, &body.subject, &body.participants)
        .await?;
    Ok(HttpResponse::Created().json(group_json(&group, true)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupQuery {
    group_jid: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateBody {
    action: String,
    participants: Vec<String>,
    #[serde(default)]
    group_jid: Option<String>,
}

pub async fn update_participant(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<GroupQuery>,
    body: web::Json<UpdateBody>,
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
    Ok(HttpResponse::Ok().json(group_json(&group, true)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchQuery {
    #[serde(default)]
    get_participants: Option<bool>,
}

pub async fn fetch_all(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<FetchQuery>,
) -> Result<HttpResponse, ApiError> {
    let name = caller.instance(&path)?;
    let with_participants = query.get_participants.unwrap_or(true);
    let groups = state.service.groups(&name).await?;
    let list: Vec<_> = groups
        .iter()
        .map(|g| group_json(g, with_participants))
        .collect();
    Ok(HttpResponse::Ok().json(list))
}
