//! Sending texts: accepting a message is committing it to the outbox.
//!
//! The outbox row, the outgoing `message` event and its `delivery: queued`
//! event commit in one transaction before the caller is answered (invariant
//! 5); the instance's actor is then woken to send it. A send to a broadcast
//! group becomes one message per member, all in that same transaction.
//!
//! A text sent to a pool is committed the same way, under the pool's name
//! (its row's `instance` and `pool`, its events' `instance`, and `"pool"`
//! in their data); every member is woken, and the one the pool's strategy
//! picks takes it when it sends (`store::pool_claim`).

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
    /// The pool it was sent to, when the name was a pool's.
    pub pool: Option<InstanceName>,
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
        let pool = match self.exists(name) {
            Ok(()) => None,
            Err(_) => self.log.store().pool(name).await?,
        };
        // A pool's text is from whichever member sends it: until then the
        // pool's name stands in for the number.
        let own = match &pool {
            Some(pool) => pool.name.to_string(),
            None => self.own_number(name)?,
        };

        let group = number
            .trim()
            .ends_with(GROUP_SUFFIX)
            .then(|| number.trim().to_owned());
        if group.is_some() && pool.is_some() {
            return Err(ServiceError::Invalid(
                "'number': a pool sends to numbers; broadcast groups belong to an instance".into(),
            ));
        }
        let rules = match &pool {
            // E.164 only: the members may read national numbers differently.
            Some(_) => NumberRules::default(),
            None => self.number_rules(name)?,
        };
        // The recipients, and the first as a parsed number: the parts depend
        // on the text alone (every recipient is a parsed number), so its
        // count holds for all. Parsing a number is the dearest step of an
        // accept (tens of µs): each is parsed once.
        let (recipients, first): (Vec<String>, PhoneNumber) = match &group {
            Some(group_id) => {
                let group = self.group(name, group_id).await?;
                let first = group.participants.first().ok_or_else(|| {
                    ServiceError::Invalid(format!("group '{group_id}' has no participants"))
                })?;
                let first = PhoneNumber::parse_with(first, &NumberRules::STORED)?;
                (group.participants, first)
            }
            None => {
                let parsed = PhoneNumber::parse_with(&number, &rules)?;
                (vec![parsed.to_string()], parsed)
            }
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
        let parts = modem::part_count(&first, &text).map_err(ServiceError::Invalid)?;
        let pool_name = pool.as_ref().map(|p| p.name.clone());
        let mut job = Job::default();
        let mut messages = Vec::with_capacity(recipients.len());
        for recipient in recipients {
            let id = uuid::Uuid::now_v7().to_string();
            job.changes.push(Change::EnqueueMessage(OutboxRow {
                schedule,
                pool: pool_name.clone(),
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
                .into_pool_event(name, pool_name.as_ref()),
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
                .into_pool_event(name, pool_name.as_ref()),
            );
            messages.push((id, recipient));
        }
        self.log.append(job).await?;
        match &pool {
            Some(pool) => self.wake_members(&pool.spec),
            None => self.registry.outbox_ready(name),
        }
        Ok(Accepted {
            pool: pool_name,
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
        self.exists_or_pool(name).await?;
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
        } else if let Some(pool) = message.pool.clone().filter(|p| *p == message.instance) {
            Some(self.pool_waiting(&pool, now).await?)
        } else {
            let minute = self.throttle_minute();
            let windows = self
                .registry
                .settings(&message.instance)?
                .throttle
                .windows(now, minute);
            store
                .held(&message.instance, &windows)
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
        self.exists_or_pool(name).await?;
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
                events: vec![event.into_pool_event(&message.instance, message.pool.as_ref())],
                changes: vec![Change::SettleWaiting {
                    instance: message.instance.clone(),
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

impl Service {
    /// Fails unless `name` is an instance or a pool.
    async fn exists_or_pool(&self, name: &InstanceName) -> Result<(), ServiceError> {
        if self.exists(name).is_ok() {
            return Ok(());
        }
        self.find_pool(name).await.map(|_| ())
    }

    /// A throttle's minute (`modem.throttle_minute_ms`).
    fn throttle_minute(&self) -> chrono::Duration {
        chrono::Duration::milliseconds(
            i64::try_from(self.settings.modem.throttle_minute_ms).unwrap_or(60_000),
        )
    }

    /// Why a message waits in a pool no member took it from yet.
    async fn pool_waiting(
        &self,
        name: &InstanceName,
        now: chrono::DateTime<Utc>,
    ) -> Result<String, ServiceError> {
        let Some(pool) = self.log.store().pool(name).await? else {
            return Ok(format!("pool '{name}' was deleted"));
        };
        let store = self.log.store();
        if store.healthy(&pool.spec.members).await?.is_empty() {
            return Ok(format!("pool '{name}': no member is connected"));
        }
        let windows = pool.spec.throttle.windows(now, self.throttle_minute());
        if let Some(held) = store.pool_held(name, &windows).await? {
            return Ok(format!("pool '{name}': {held}"));
        }
        Ok(format!("pool '{name}': waiting for a member to take it"))
    }
}
