//! The outbox: sending queued messages part by part with `AT+CMGS`,
//! recording each accepted part with its message reference, and retrying
//! refused sends with backoff until they go out or fail for good.

use std::time::Duration;

use chrono::Utc;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::{Gsm, Refused, STORE_RETRY};
use crate::{
    domain::{NumberRules, PhoneNumber},
    event::data::{DeliveryData, DeliveryStatus, Payload},
    modem::{
        at::{parse, ModemError},
        pdu::{self, SubmitOptions},
        DriverError,
    },
    store::{Change, Job, OutboxRow, PartRow, StoreError},
};

/// Messages taken from the outbox per query.
const OUTBOX_PAGE: i64 = 50;
/// Messages sent per turn of the driver's loop: between two turns it reads
/// what the modem reported (incoming messages, reports, a ringing call) and
/// answers commands, so a send to a large group does not hold them for the
/// minutes its page would take on a real modem.
const SENDS_PER_TURN: usize = 4;

/// Sends that failed and wait for their next try.
pub(super) struct Retry {
    attempts: u32,
    at: Instant,
}

impl Gsm<'_> {
    /// Sends what waits in the outbox: first the messages this driver
    /// already claimed (a retry that is due, or one a restart interrupted),
    /// then new ones, claimed one at a time right before they go out, so a
    /// message waiting behind others can still be cancelled. Expired ones
    /// are settled on the way, and the loop is woken again when the next
    /// scheduled one falls due.
    pub(super) async fn drain_outbox(&mut self) -> Result<(), DriverError> {
        self.outbox_due = None;
        let store = self.ctx.log.store().clone();
        let instance = self.ctx.instance.clone();
        crate::modem::expire_waiting(self.ctx).await?;
        let claimed = match store
            .claimed_messages(&instance, OUTBOX_PAGE + self.retries.len() as i64)
            .await
        {
            Ok(claimed) => claimed,
            Err(err) => return self.unreadable(err),
        };
        let now = Instant::now();
        let mut sent_any = false;
        let mut taken = 0;
        for message in claimed {
            if self.ctx.stop.is_cancelled() {
                return Ok(());
            }
            if let Some(retry) = self.retries.get(&message.id) {
                if retry.at > now {
                    self.due_outbox(retry.at);
                    continue;
                }
            }
            if taken >= SENDS_PER_TURN {
                // The rest on the next turn, after what else waits (unless
                // nothing moved: then the retries' own times decide).
                if sent_any {
                    self.due_outbox(Instant::now());
                }
                return Ok(());
            }
            taken += 1;
            sent_any |= self.send(&message).await?;
        }
        while taken < SENDS_PER_TURN && !self.ctx.stop.is_cancelled() {
            if let Some(until) = self.ctx.paused_until() {
                // Pausing between sends (`throttle.pauseMinMs`).
                self.due_outbox(until);
                break;
            }
            let claim = match self.ctx.claim(Utc::now(), 1).await {
                Ok(claim) => claim,
                Err(err) => return self.unreadable(err),
            };
            if let Some(held) = claim.held {
                tracing::debug!(instance = %instance, "{held}");
                self.due_outbox(crate::modem::instant_at(held.until));
            }
            if claim.pool_waiting {
                // Another member's turn: looked at again shortly, in case
                // it does not take it (see `POOL_LOOK_AGAIN`).
                self.due_outbox(Instant::now() + crate::modem::POOL_LOOK_AGAIN);
            }
            let Some(message) = claim.messages.into_iter().next() else {
                break;
            };
            taken += 1;
            self.send(&message).await?;
        }
        if taken >= SENDS_PER_TURN {
            // Maybe more waiting: the next turn looks.
            self.due_outbox(Instant::now());
        }
        match store.next_due(&instance, Utc::now()).await {
            Ok(Some(at)) => self.due_outbox(crate::modem::instant_at(at)),
            Ok(None) => {}
            Err(err) => return self.unreadable(err),
        }
        Ok(())
    }

    /// The outbox cannot be read right now: looked at again shortly.
    fn unreadable(&mut self, err: StoreError) -> Result<(), DriverError> {
        tracing::warn!(instance = %self.ctx.instance, error = %err, "cannot read the outbox; trying again shortly");
        self.due_outbox(Instant::now() + STORE_RETRY);
        Ok(())
    }

    fn due_outbox(&mut self, at: Instant) {
        if self.outbox_due.is_none_or(|due| due > at) {
            self.outbox_due = Some(at);
        }
    }

    /// Sends the parts of one message that were not sent yet. `Ok(true)`
    /// when the message is settled (all sent, or failed for good).
    async fn send(&mut self, message: &OutboxRow) -> Result<bool, DriverError> {
        let done = match self.ctx.log.store().message_parts(&message.id).await {
            Ok(parts) => parts,
            Err(err) => {
                tracing::warn!(instance = %self.ctx.instance, error = %err, "cannot read a message's parts; trying again shortly");
                self.due_outbox(Instant::now() + STORE_RETRY);
                return Ok(false);
            }
        };
        if done.is_empty() && message.expired_at(Utc::now()) {
            self.retries.remove(&message.id);
            self.settle_claimed(message, DeliveryStatus::Expired, None, 0, 1)
                .await?;
            return Ok(true);
        }
        // Checked when it was queued: E.164, or a short code the instance
        // allowed.
        let to = match PhoneNumber::parse_with(&message.recipient, &NumberRules::STORED) {
            Ok(to) => to,
            Err(err) => return self.fail(message, err.into(), 0, 1).await.map(|_| true),
        };
        let options = SubmitOptions {
            status_report: self.options.delivery_reports,
            validity_minutes: self.options.validity_minutes,
            concat_reference: concat_reference(&message.id),
            concat_16bit: crate::modem::CONCAT_16BIT,
            message_reference: 0,
        };
        let parts = match pdu::encode_submit(to.as_str(), &message.body, &options) {
            Ok(parts) => parts,
            Err(err) => {
                return self
                    .fail(message, err.to_string(), 0, 1)
                    .await
                    .map(|_| true)
            }
        };
        let total = parts.len() as u32;
        let mut sent = done.len() as u32;
        for part in parts {
            if done.iter().any(|p| p.part == u32::from(part.part)) {
                continue;
            }
            if self.ctx.stop.is_cancelled() {
                // Stopping (a shutdown, a hand-over): the driver ends after
                // a whole part, never between a part reaching the modem and
                // its record, and whoever drives next sends the rest.
                return Ok(false);
            }
            // Invariant 3: nothing goes to the modem unless this node still
            // holds the instance's lease (a fenced commit, then its clock).
            self.ctx.claim_send().await?;
            let command = format!("AT+CMGS={}", part.tpdu_len);
            let result = self
                .at
                .command_with_body(
                    &command,
                    &part.hex,
                    "+CMGS:",
                    Duration::from_millis(self.options.send_timeout_ms),
                )
                .await;
            let refused = match self.settle(result, &command).await? {
                Ok(response) => {
                    // An unknown reference (256) matches no report.
                    let reference = response
                        .info("+CMGS:")
                        .and_then(parse::message_reference)
                        .map_or(256, u32::from);
                    sent += 1;
                    self.record_part(message, u32::from(part.part), total, reference, sent)
                        .await?;
                    continue;
                }
                Err(refused) => refused,
            };
            let attempts = self.retries.get(&message.id).map_or(0, |r| r.attempts) + 1;
            let permanent = matches!(
                &refused,
                Refused::Rejected(ModemError::Cms { code: Some(code), .. }) if parse::cms_is_permanent(*code)
            );
            tracing::warn!(instance = %self.ctx.instance, message = %message.id, part = part.part, attempts, error = %refused, "the modem did not send a part");
            if permanent || attempts >= self.options.send_attempts {
                self.retries.remove(&message.id);
                self.fail(message, refused.to_string(), sent, total).await?;
                return Ok(true);
            }
            let backoff = Duration::from_millis(self.options.send_retry_ms)
                .saturating_mul(1 << (attempts - 1).min(16));
            let at = Instant::now() + backoff;
            self.retries
                .insert(message.id.clone(), Retry { attempts, at });
            self.due_outbox(at);
            return Ok(false);
        }
        self.retries.remove(&message.id);
        Ok(true)
    }

    /// Records that the modem accepted a part, with its `delivery` event
    /// (`sent`, with the count of parts sent for a multipart message). The
    /// last part moves the outbox row to `sent`.
    async fn record_part(
        &mut self,
        message: &OutboxRow,
        part: u32,
        total: u32,
        reference: u32,
        sent: u32,
    ) -> Result<(), DriverError> {
        let mut changes = vec![Change::RecordPartSent(PartRow {
            message_id: message.id.clone(),
            instance: self.ctx.instance.clone(),
            part,
            total,
            reference,
            recipient: message.recipient.clone(),
            status: DeliveryStatus::Sent,
            sent_at: Utc::now(),
        })];
        if sent >= total {
            changes.push(Change::SetMessageStatus {
                id: message.id.clone(),
                status: DeliveryStatus::Sent,
                error: None,
            });
        }
        let multipart = total > 1;
        let event = DeliveryData {
            id: message.id.clone(),
            status: DeliveryStatus::Sent,
            to: message.recipient.clone(),
            timestamp: Utc::now().timestamp(),
            error: None,
            parts_done: multipart.then_some(sent),
            parts: multipart.then_some(total),
        };
        match self
            .ctx
            .log
            .append(Job {
                events: vec![event.into_pool_event(&self.ctx.instance, message.pool.as_ref())],
                changes,
                fence: None,
            })
            .await
        {
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
            // The part went out but is not recorded: the restarted driver
            // sends it again (at least once, never lost).
            Err(err) => Err(err.into()),
        }
    }

    async fn fail(
        &mut self,
        message: &OutboxRow,
        error: String,
        sent: u32,
        total: u32,
    ) -> Result<(), DriverError> {
        self.settle_claimed(message, DeliveryStatus::Failed, Some(error), sent, total)
            .await
    }

    /// Settles a claimed message for good (failed, or expired before its
    /// first part went out).
    async fn settle_claimed(
        &mut self,
        message: &OutboxRow,
        status: DeliveryStatus,
        error: Option<String>,
        sent: u32,
        total: u32,
    ) -> Result<(), DriverError> {
        let multipart = total > 1;
        let event = DeliveryData {
            id: message.id.clone(),
            status,
            to: message.recipient.clone(),
            timestamp: Utc::now().timestamp(),
            error: error.clone(),
            parts_done: multipart.then_some(sent),
            parts: multipart.then_some(total),
        };
        let job = Job {
            events: vec![event.into_pool_event(&self.ctx.instance, message.pool.as_ref())],
            changes: vec![Change::SetMessageStatus {
                id: message.id.clone(),
                status,
                error,
            }],
            fence: None,
        };
        match self.ctx.log.append(job).await {
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(err) => {
                // Still queued: it is looked at again, and settled again.
                tracing::warn!(instance = %self.ctx.instance, error = %err, "could not record a settled message yet");
                self.due_outbox(Instant::now() + STORE_RETRY);
                Ok(())
            }
        }
    }
}

/// The concatenation reference of a message: derived from its id, so a
/// restart in the middle of a message sends the rest with the same one.
fn concat_reference(id: &str) -> u16 {
    let hash = Sha256::digest(id.as_bytes());
    u16::from_be_bytes([hash[0], hash[1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_concatenation_reference_is_stable_per_message() {
        assert_eq!(concat_reference("abc"), concat_reference("abc"));
        assert_ne!(concat_reference("abc"), concat_reference("abd"));
    }
}
