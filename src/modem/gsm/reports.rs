//! Delivery reports: matching an SMS status report to the part it is
//! about and settling the message once every part is delivered, or as soon
//! as one fails.

use chrono::Utc;

use super::{inbound::Settled, Gsm};
use crate::{
    event::data::{DeliveryData, DeliveryStatus, Payload},
    modem::pdu::{DeliveryOutcome, StatusReport},
    store::{Change, Job, StoreError},
};

impl Gsm<'_> {
    /// Matches a status report to the part it is about and moves the
    /// message on when the report settles it.
    pub(super) async fn settle_report(&mut self, report: &StatusReport) -> Settled {
        let outcome = report.outcome();
        if outcome == DeliveryOutcome::Pending {
            return Settled::Done;
        }
        let store = self.ctx.log.store();
        let candidates = match store
            .parts_awaiting_report(&self.ctx.instance, u32::from(report.message_reference))
            .await
        {
            Ok(candidates) => candidates,
            Err(err) => {
                tracing::warn!(instance = %self.ctx.instance, error = %err, "could not match a status report yet");
                return Settled::Deferred;
            }
        };
        let Some(part) = candidates
            .into_iter()
            .find(|p| same_number(&p.recipient, &report.recipient))
        else {
            tracing::debug!(instance = %self.ctx.instance, reference = report.message_reference, "a status report for no known part");
            return Settled::Done;
        };
        let parts = match store.message_parts(&part.message_id).await {
            Ok(parts) => parts,
            Err(_) => return Settled::Deferred,
        };
        // A message sent to a pool says so in each of its events.
        let pool = match store.message(&self.ctx.instance, &part.message_id).await {
            Ok(message) => message.and_then(|m| m.pool),
            Err(_) => return Settled::Deferred,
        };
        let status = match outcome {
            DeliveryOutcome::Delivered => DeliveryStatus::Delivered,
            _ => DeliveryStatus::Failed,
        };
        let now = Utc::now().timestamp();
        let total = part.total;
        let delivered = parts
            .iter()
            .filter(|p| {
                p.status == DeliveryStatus::Delivered
                    || (p.part == part.part && status == DeliveryStatus::Delivered)
            })
            .count() as u32;
        let failed_before = parts.iter().any(|p| p.status == DeliveryStatus::Failed);
        let counts = |done: u32| (total > 1).then_some((done, total));
        let mut job = Job {
            events: Vec::new(),
            changes: vec![Change::SetPartStatus {
                message_id: part.message_id.clone(),
                part: part.part,
                status,
            }],
            fence: None,
        };
        let mut settle = |status: DeliveryStatus, error: Option<String>, done: u32| {
            let counts = counts(done);
            job.changes.push(Change::SetMessageStatus {
                id: part.message_id.clone(),
                status,
                error: error.clone(),
            });
            job.events.push(
                DeliveryData {
                    id: part.message_id.clone(),
                    status,
                    to: part.recipient.clone(),
                    timestamp: now,
                    error,
                    parts_done: counts.map(|c| c.0),
                    parts: counts.map(|c| c.1),
                }
                .into_pool_event(&self.ctx.instance, pool.as_ref()),
            );
        };
        if status == DeliveryStatus::Failed && !failed_before {
            settle(
                DeliveryStatus::Failed,
                Some(format!(
                    "the network could not deliver part {} of {total} (TP-ST 0x{:02X})",
                    part.part, report.status
                )),
                delivered,
            );
        } else if status == DeliveryStatus::Delivered
            && !failed_before
            && delivered == total
            && parts.len() as u32 == total
        {
            settle(DeliveryStatus::Delivered, None, delivered);
        }
        match self.ctx.log.append(job).await {
            Ok(_) | Err(StoreError::NotFound(_)) => Settled::Done,
            Err(err) => {
                tracing::warn!(instance = %self.ctx.instance, error = %err, "could not commit a status report yet");
                Settled::Deferred
            }
        }
    }
}

/// Whether two numbers are the same subscriber: equal digits, or one the
/// national form of the other (the report may drop the country code).
fn same_number(a: &str, b: &str) -> bool {
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    let (a, b) = (digits(a), digits(b));
    if a == b {
        return true;
    }
    let (short, long) = if a.len() < b.len() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    short.len() >= 6 && long.ends_with(short.trim_start_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_in_national_and_international_form() {
        assert!(same_number("+15551234567", "+15551234567"));
        assert!(same_number("+4915112345678", "015112345678"));
        assert!(!same_number("+15551234567", "+15551234568"));
        assert!(!same_number("+15551234567", "567"));
    }
}
