//! Broadcast groups (`/group/...`): named lists of numbers; a send to a
//! group goes to each member. Each change is a `group` event.

use actix_web::{web, HttpResponse};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::{message::GROUP_SUFFIX, AppState, Caller};
use crate::{
    error::ApiError,
    event::data::{GroupAction, GroupData, GroupMetadata, Payload},
    modem::PhoneNumber,
    store::{Change, GroupRow, Job},
};

/// Most members a group may have, so one send cannot queue without bound.
const MAX_MEMBERS: usize = 1000;

#[derive(Deserialize)]
pub struct CreateBody {
    subject: String,
    #[serde(default)]
    participants: Vec<String>,
}

fn parse_members(raw: &[String]) -> Result<Vec<String>, ApiError> {
    if raw.len() > MAX_MEMBERS {
        return Err(ApiError::BadRequest(format!(
            "a group has at most {MAX_MEMBERS} participants"
        )));
    }
    let mut members = raw
        .iter()
        .map(|n| PhoneNumber::parse(n).map(|n| n.to_string()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::BadRequest)?;
    members.sort();
    members.dedup();
    Ok(members)
}

fn group_json(group: &GroupRow, with_participants: bool) -> serde_json::Value {
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
    let subject = body.subject.trim();
    if subject.is_empty() || subject.chars().count() > 100 {
        return Err(ApiError::BadRequest(
            "'subject' must be 1 to 100 characters".into(),
        ));
    }
    let members = parse_members(&body.participants)?;
    let owner = state
        .registry
        .own_number(&name)
        .ok_or_else(|| ApiError::NotFound(format!("instance '{name}' not found")))?;
    let group = GroupRow {
        instance: name.clone(),
        id: format!("{}{GROUP_SUFFIX}", uuid::Uuid::now_v7().simple()),
        name: subject.to_owned(),
        owner: owner.clone(),
        participants: members.clone(),
        created_at: Utc::now(),
    };
    let event = GroupData {
        id: group.id.clone(),
        action: GroupAction::Create,
        metadata: GroupMetadata {
            name: group.name.clone(),
            participants: members,
            owner,
        },
    }
    .into_event(&name);
    state
        .log
        .append(Job {
            events: vec![event],
            changes: vec![Change::CreateGroup(group.clone())],
        })
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
    let members = parse_members(&body.participants)?;
    if members.is_empty() {
        return Err(ApiError::BadRequest(
            "'participants' must not be empty".into(),
        ));
    }
    let (action, change) = match body.action.as_str() {
        "add" => (
            GroupAction::ParticipantAdd,
            Change::AddGroupMembers {
                instance: name.clone(),
                id: group_id.clone(),
                members: members.clone(),
            },
        ),
        "remove" => (
            GroupAction::ParticipantRemove,
            Change::RemoveGroupMembers {
                instance: name.clone(),
                id: group_id.clone(),
                members: members.clone(),
            },
        ),
        other => {
            return Err(ApiError::BadRequest(format!(
                "'action' must be 'add' or 'remove', not '{}'",
                super::truncate(other, 40)
            )))
        }
    };
    let groups = state.log.store().groups(&name).await?;
    let group = groups
        .iter()
        .find(|g| g.id == group_id)
        .ok_or_else(|| ApiError::NotFound(format!("group '{group_id}' not found")))?;
    // The event names the members that changed, as Evolution's
    // GROUP_PARTICIPANTS_UPDATE does.
    let event = GroupData {
        id: group_id.clone(),
        action,
        metadata: GroupMetadata {
            name: group.name.clone(),
            participants: members,
            owner: group.owner.clone(),
        },
    }
    .into_event(&name);
    state
        .log
        .append(Job {
            events: vec![event],
            changes: vec![change],
        })
        .await?;
    let updated = state.log.store().groups(&name).await?;
    let group = updated
        .iter()
        .find(|g| g.id == group_id)
        .ok_or_else(|| ApiError::NotFound(format!("group '{group_id}' not found")))?;
    Ok(HttpResponse::Ok().json(group_json(group, true)))
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
    if state.registry.get(&name).is_none() {
        return Err(ApiError::NotFound(format!("instance '{name}' not found")));
    }
    let with_participants = query.get_participants.unwrap_or(true);
    let groups = state.log.store().groups(&name).await?;
    let list: Vec<_> = groups
        .iter()
        .map(|g| group_json(g, with_participants))
        .collect();
    Ok(HttpResponse::Ok().json(list))
}
