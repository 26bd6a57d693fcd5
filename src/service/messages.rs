//! Sending texts: accepting a message is committing it to the outbox.
//!
//! The outbox row, the outgoing `message` event and its `delivery: queued`
//! event commit in one transaction before the caller is answered (invariant
//! 5); the instance's actor is then woken to send it. A send to a broadcast
//! group becomes one message per member, all in that same transaction.

use chrono::Utc;

use super::{refuse_nul, Service, ServiceError, GROUP_SUFFIX};
use crate::{
    domain::{InstanceName, NumberRules, PhoneNumber, Schedule, ScheduleRequest},
    event::data::{DeliveryData, DeliveryStatus, Direction, MessageData, Payload},
    modem,
    store::{Change, Job, OutboxRow, PartRow},
};

/// A text to send: to a number, or to a group id (ending in `@g.us`),
/// with its priority, schedule and expiry.
pub struct SendText {
    pub number: String,
    pub text: String,
    pub schedule: ScheduleRequest,
}

/// What was queued.
pub struct Accepted {
    /// The group id when the text went to a group.
    pub group: Option<String>,
    /// `(message id, recipient)`, one per recipient.
    pub messages: Vec<(String, String)>,
    pub text: String,
    pub timestamp: i64,
    /// SMS parts each message takes.
    pub parts: u32,
    pub schedule: Schedule,
}

/// One outgoing message as `GET /message/{instance}/{id}` shows it.
pub struct MessageView {
    pub message: OutboxRow,
    pub parts: Vec<PartRow>,
    /// Why a queued message no driver took yet is still waiting.
    pub waiting: Option<String>,
}

impl Service {
    pub async fn send_text(
        &self,
        name: &InstanceName,
        request: SendText,
    ) -> Result<Accepted, ServiceError> {
        let SendText {
            number,
            text,
            schedule,
        } = request;
        let now = Utc::now();
        let schedule = schedule.parse(now).map_err(ServiceError::Invalid)?;
        if text.trim().is_empty() {
            return Err(ServiceError::Invalid("'text' must not be empty".into()));
        }
        refuse_nul("text", &text)?;
        let max = self.settings.limits.max_text_length;
        let length = text.chars().count();
        if length > max {
            return Err(ServiceError::Invalid(format!(
                "'text' is {length} characters; the limit is {max}"
            )));
        }
        let own = self.own_number(name)?;

        let group = number
            .trim()
            .ends_with(GROUP_SUFFIX)
            .then(|| number.trim().to_owned());
        let recipients: Vec<String> = match &group {
            Some(group_id) => {
                let group = self.group(name, group_id).await?;
                if group.participants.is_empty() {
                    return Err(ServiceError::Invalid(format!(
                        "group '{group_id}' has no participants"
                    )));
                }
                group.participants
            }
            None => vec![PhoneNumber::parse_with(&number, &self.number_rules(name)?)?.to_string()],
        };

        // One message (an outbox row and two events) per recipient: a send
        // to a group is bounded like everything a credential can grow.
        let max = self.settings.limits.max_messages_per_send;
        if recipients.len() > max {
            return Err(ServiceError::Invalid(format!(
                "this send would create {} messages and one send may create at most {max} \
                 (limits.max_messages_per_send)",
                recipients.len()
            )));
        }
        // The parts depend on the text alone (every recipient is a parsed
        // number), so the first recipient's count holds for all.
        let first = recipients
            .first()
            .ok_or_else(|| ServiceError::Invalid("no recipient".into()))?;
        let parts = modem::part_count(
            &PhoneNumber::parse_with(first, &NumberRules::STORED)?,
            &text,
        )
        .map_err(ServiceError::Invalid)?;
        let mut job = Job::default();
        let mut messages = Vec::with_capacity(recipients.len());
        for recipient in recipients {
            let id = uuid::Uuid::now_v7().to_string();
            job.changes.push(Change::EnqueueMessage(OutboxRow {
                schedule,
                ..OutboxRow::queued(
                    id.clone(),
                    name.clone(),
                    recipient.clone(),
                    text.clone(),
                    now,
                )
            }));
            job.events.push(
                MessageData {
                    id: id.clone(),
                    direction: Direction::Outgoing,
                    from: own.clone(),
                    to: recipient.clone(),
                    kind: "text".into(),
                    content: text.clone(),
                    timestamp: now.timestamp(),
                    parts,
                }
                .into_event(name),
            );
            job.events.push(
                DeliveryData {
                    id: id.clone(),
                    status: DeliveryStatus::Queued,
                    to: recipient.clone(),
                    timestamp: now.timestamp(),
                    error: None,
                    parts_done: None,
                    parts: None,
                }
                .into_event(name),
            );
            messages.push((id, recipient));
        }
        self.log.append(job).await?;
        self.registry.outbox_ready(name);
        Ok(Accepted {
            group,
            messages,
            text,
            timestamp: now.timestamp(),
            parts,
            schedule,
        })
    }

    /// One outgoing message with its parts, and why it waits if it does
    /// (`GET /message/{instance}/{id}`).
    pub async fn message(
        &self,
        name: &InstanceName,
        id: &str,
    ) -> Result<MessageView, ServiceError> {
        self.exists(name)?;
        let store = self.log.store();
        let message = store.message(name, id).await?.ok_or_else(|| {
            ServiceError::NotFound(format!(
                "instance '{name}' has no message '{}'",
                crate::domain::truncate(id, 64)
            ))
        })?;
        let parts = store.message_parts(&message.id).await?;
        let now = Utc::now();
        let waiting = if message.status != DeliveryStatus::Queued || message.claimed_at.is_some() {
            None
        } else if let Some(at) = message.schedule.send_at.filter(|at| *at > now) {
            Some(format!(
                "scheduled: sendAt {}",
                crate::event::format_timestamp(at)
            ))
        } else {
            let minute = chrono::Duration::milliseconds(
                i64::try_from(self.settings.modem.throttle_minute_ms).unwrap_or(60_000),
            );
            let windows = self.registry.settings(name)?.throttle.windows(now, minute);
            store
                .held(name, &windows)
                .await?
                .map(|held| held.to_string())
        };
        Ok(MessageView {
            message,
            parts,
            waiting,
        })
    }

    /// Cancels a message no part of which went out: its `delivery:
    /// cancelled` event commits with the row change, which holds only
    /// while no driver has claimed the message (see `Change::SettleWaiting`).
    pub async fn cancel_message(
        &self,
        name: &InstanceName,
        id: &str,
    ) -> Result<OutboxRow, ServiceError> {
        self.exists(name)?;
        let message = self.log.store().message(name, id).await?.ok_or_else(|| {
            ServiceError::NotFound(format!(
                "instance '{name}' has no message '{}'",
                crate::domain::truncate(id, 64)
            ))
        })?;
        let event = DeliveryData {
            id: message.id.clone(),
            status: DeliveryStatus::Cancelled,
            to: message.recipient.clone(),
            timestamp: Utc::now().timestamp(),
            error: None,
            parts_done: None,
            parts: None,
        };
        self.log
            .append(Job {
                events: vec![event.into_event(name)],
                changes: vec![Change::SettleWaiting {
                    instance: name.clone(),
                    id: message.id.clone(),
                    status: DeliveryStatus::Cancelled,
                }],
                fence: None,
            })
            .await?;
        Ok(OutboxRow {
            status: DeliveryStatus::Cancelled,
            ..message
        })
    }
}
