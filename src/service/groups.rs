//! Broadcast groups: named lists of numbers; a send to a group goes to each
//! member. Each change is a `group` event committed with it.
//!
//! Everything here is bounded (`[limits]`): members named in one request,
//! members of one group in total, groups of one instance. A group's size is
//! checked here under the instance's group lock (so a request that does not
//! fit is told why with a 400), and again in the commit that changes it
//! (`store::Change::CreateGroup`, `AddGroupMembers`): requests to several
//! nodes at once cannot pass the bound together (the later one is a 409).

use chrono::Utc;

use super::{refuse_nul, Service, ServiceError};
use crate::{
    domain::{InstanceName, NumberRules, PhoneNumber},
    event::data::{GroupAction, GroupData, GroupMetadata, Payload},
    store::{Change, GroupRow, Job},
};

/// Suffix of broadcast group ids, as Evolution's group JIDs.
pub const GROUP_SUFFIX: &str = "@g.us";

/// Most members one request may name, so one send cannot queue without bound.
const MAX_MEMBERS: usize = 1000;

/// A group as stored.
pub type GroupView = GroupRow;

/// Parses (by the instance's number rules), sorts and dedups member numbers.
fn parse_members(raw: &[String], rules: &NumberRules) -> Result<Vec<String>, ServiceError> {
    if raw.len() > MAX_MEMBERS {
        return Err(ServiceError::Invalid(format!(
            "a group has at most {MAX_MEMBERS} participants"
        )));
    }
    let mut members = raw
        .iter()
        .map(|n| PhoneNumber::parse_with(n, rules).map(|n| n.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    members.sort();
    members.dedup();
    Ok(members)
}

fn too_many_members(max: usize, has: usize, adding: usize) -> ServiceError {
    ServiceError::Invalid(format!(
        "a group holds at most {max} members (limits.max_group_members); it has {has} and \
         this would add {adding}"
    ))
}

impl Service {
    pub async fn create_group(
        &self,
        name: &InstanceName,
        subject: &str,
        participants: &[String],
    ) -> Result<GroupView, ServiceError> {
        let subject = subject.trim();
        if subject.is_empty() || subject.chars().count() > 100 {
            return Err(ServiceError::Invalid(
                "'subject' must be 1 to 100 characters".into(),
            ));
        }
        refuse_nul("subject", subject)?;
        let members = parse_members(participants, &self.number_rules(name)?)?;
        let limits = &self.settings.limits;
        if members.len() > limits.max_group_members {
            return Err(too_many_members(limits.max_group_members, 0, members.len()));
        }
        let owner = self.own_number(name)?;
        let lock = self.group_lock(name);
        let _held = lock.lock().await;
        let count = self.log.store().groups(name).await?.len();
        if count >= limits.max_groups_per_instance {
            return Err(ServiceError::Invalid(format!(
                "instance '{name}' already has its maximum of {} groups \
                 (limits.max_groups_per_instance)",
                limits.max_groups_per_instance
            )));
        }
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
        .into_event(name);
        self.log
            .append(Job {
                events: vec![event],
                changes: vec![Change::CreateGroup {
                    group: group.clone(),
                    max_groups: limits.max_groups_per_instance,
                }],
                fence: None,
            })
            .await?;
        Ok(group)
    }

    /// Adds (`add`) or removes (`remove`) members; answers the group after.
    pub async fn update_group_members(
        &self,
        name: &InstanceName,
        group_id: &str,
        action: &str,
        participants: &[String],
    ) -> Result<GroupView, ServiceError> {
        let members = parse_members(participants, &self.number_rules(name)?)?;
        if members.is_empty() {
            return Err(ServiceError::Invalid(
                "'participants' must not be empty".into(),
            ));
        }
        let (action, change) = match action {
            "add" => (
                GroupAction::ParticipantAdd,
                Change::AddGroupMembers {
                    instance: name.clone(),
                    id: group_id.to_owned(),
                    members: members.clone(),
                    max_members: self.settings.limits.max_group_members,
                },
            ),
            "remove" => (
                GroupAction::ParticipantRemove,
                Change::RemoveGroupMembers {
                    instance: name.clone(),
                    id: group_id.to_owned(),
                    members: members.clone(),
                },
            ),
            other => {
                return Err(ServiceError::Invalid(format!(
                    "'action' must be 'add' or 'remove', not '{}'",
                    crate::domain::truncate(other, 40)
                )))
            }
        };
        let lock = self.group_lock(name);
        let _held = lock.lock().await;
        let group = self.group(name, group_id).await?;
        if matches!(action, GroupAction::ParticipantAdd) {
            let max = self.settings.limits.max_group_members;
            let present: std::collections::HashSet<&String> = group.participants.iter().collect();
            let new = members.iter().filter(|m| !present.contains(m)).count();
            if group.participants.len() + new > max {
                return Err(too_many_members(max, group.participants.len(), new));
            }
        }
        // The event names the members that changed, as Evolution's
        // GROUP_PARTICIPANTS_UPDATE does.
        let event = GroupData {
            id: group_id.to_owned(),
            action,
            metadata: GroupMetadata {
                name: group.name.clone(),
                participants: members,
                owner: group.owner.clone(),
            },
        }
        .into_event(name);
        self.log
            .append(Job {
                events: vec![event],
                changes: vec![change],
                fence: None,
            })
            .await?;
        self.group(name, group_id).await
    }

    /// Serializes the changes to one instance's groups (see the module).
    fn group_lock(&self, name: &InstanceName) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        self.group_locks
            .lock()
            .entry(name.clone())
            .or_default()
            .clone()
    }

    pub async fn groups(&self, name: &InstanceName) -> Result<Vec<GroupView>, ServiceError> {
        self.exists(name)?;
        Ok(self.log.store().groups(name).await?)
    }

    /// One group of the instance.
    pub(super) async fn group(
        &self,
        name: &InstanceName,
        group_id: &str,
    ) -> Result<GroupView, ServiceError> {
        self.log
            .store()
            .groups(name)
            .await?
            .into_iter()
            .find(|g| g.id == group_id)
            .ok_or_else(|| ServiceError::NotFound(format!("group '{group_id}' not found")))
    }
}
