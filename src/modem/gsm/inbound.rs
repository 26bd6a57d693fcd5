//! Inbound SMS: reading PDUs from modem storage or from `+CMT`/`+CDS`
//! lines, committing them as events, and only then deleting them from the
//! modem. Parts of a long message are committed to the store one by one
//! until the message is whole (see [`super::reassembly`]); status reports
//! are handed to [`super::reports`].

use chrono::Utc;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::{
    reassembly::{self, Partials, PartsKey},
    Gsm, STORE_RETRY,
};
use crate::{
    event::data::{Direction, MessageData, Payload},
    modem::{
        at::parse::{self, StoredPdu},
        pdu::{self, Deliver, Pdu},
        ActorContext, DriverError,
    },
    store::{Change, InboundPartRow, Job, StoreError},
};

/// What became of one inbound PDU.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Settled {
    /// Committed now or earlier: the modem may forget it.
    Done,
    /// Not committed (the database is unavailable): keep it.
    Deferred,
}

pub(super) async fn load_partials(ctx: &ActorContext) -> Result<Partials, DriverError> {
    Ok(reassembly::group(
        ctx.log.store().inbound_parts(&ctx.instance).await?,
    ))
}

impl Gsm<'_> {
    /// Reads a stored message or report, commits it, then deletes it.
    pub(super) async fn read_stored(
        &mut self,
        storage: &str,
        index: u32,
    ) -> Result<(), DriverError> {
        let other = !storage.is_empty() && storage != "SM";
        if other {
            self.cmd(&format!("AT+CPMS=\"{storage}\""), "+CPMS:")
                .await?
                .ok();
        }
        let read = self.cmd(&format!("AT+CMGR={index}"), "+CMGR:").await?;
        if let Ok(response) = read {
            if let Some(pdu) = parse::read_pdu(&response.lines) {
                match self.settle_pdu(&pdu, true).await {
                    Settled::Done => {
                        self.cmd(&format!("AT+CMGD={index}"), "").await?.ok();
                    }
                    Settled::Deferred => self.defer_scan(),
                }
            }
        }
        if other {
            self.cmd("AT+CPMS=\"SM\",\"SM\",\"SM\"", "+CPMS:")
                .await?
                .ok();
        }
        Ok(())
    }

    fn defer_scan(&mut self) {
        let due = Instant::now() + STORE_RETRY;
        if self.rescan_due.is_none_or(|at| at > due) {
            self.rescan_due = Some(due);
        }
    }

    /// Lists the whole storage and settles every received message in it.
    pub(super) async fn scan_storage(&mut self) -> Result<(), DriverError> {
        self.rescan_due = None;
        let Ok(response) = self.cmd("AT+CMGL=4", "+CMGL:").await? else {
            return Ok(());
        };
        for StoredPdu { index, stat, pdu } in parse::listed(&response.lines) {
            // 2 and 3 are outgoing drafts someone else stored: not ours.
            if stat > 1 {
                continue;
            }
            match self.settle_pdu(&pdu, true).await {
                Settled::Done => {
                    self.cmd(&format!("AT+CMGD={index}"), "").await?.ok();
                }
                Settled::Deferred => self.defer_scan(),
            }
        }
        Ok(())
    }

    /// Turns one received PDU (message or report) into committed state.
    /// `stored`: it was read from modem storage (not a `+CMT`/`+CDS` line).
    pub(super) async fn settle_pdu(&mut self, hex: &str, stored: bool) -> Settled {
        match pdu::decode(hex) {
            Ok(Pdu::Deliver(deliver)) => self.settle_message(hex, deliver).await,
            Ok(Pdu::StatusReport(report)) => self.settle_report(&report).await,
            // A direct PDU that does not decode is line noise that looked
            // like a URC: there is nothing in the modem to keep.
            Err(err) if !stored => {
                tracing::warn!(instance = %self.ctx.instance, error = %err, "ignoring an unreadable direct PDU");
                Settled::Done
            }
            Err(err) => {
                tracing::warn!(instance = %self.ctx.instance, error = %err, "an unreadable PDU; delivering it raw");
                self.deliver_raw(hex).await
            }
        }
    }

    /// Commits a received PDU as an event holding the PDU itself (hex, which
    /// any database stores), so nothing is lost and the storage slot is
    /// freed when its content cannot be committed as it is.
    async fn deliver_raw(&self, hex: &str) -> Settled {
        let event = MessageData {
            id: uuid::Uuid::now_v7().to_string(),
            direction: Direction::Incoming,
            from: String::new(),
            to: self.own_number(),
            kind: "pdu".into(),
            content: hex.trim().to_owned(),
            timestamp: Utc::now().timestamp(),
            parts: 1,
        };
        match self
            .append_inbound(hex, vec![event.into_event(&self.ctx.instance)], Vec::new())
            .await
        {
            Ok(()) | Err(StoreError::Conflict(_)) => Settled::Done,
            Err(err) => {
                tracing::warn!(instance = %self.ctx.instance, error = %err, "could not commit a received PDU; it stays in the modem");
                Settled::Deferred
            }
        }
    }

    /// Commits `events` and `changes` with the PDU's digest.
    async fn commit_inbound(
        &self,
        hex: &str,
        events: Vec<crate::event::NewEvent>,
        changes: Vec<Change>,
    ) -> Settled {
        match self.append_inbound(hex, events, changes).await {
            Ok(()) => Settled::Done,
            // Committed by an earlier run that did not get to delete it.
            Err(StoreError::Conflict(_)) => Settled::Done,
            // The database refuses what the message holds: retrying would
            // refuse it forever and hold up every message behind it.
            Err(err @ StoreError::Rejected { .. }) => {
                tracing::warn!(instance = %self.ctx.instance, error = %err, "the database refuses a received message's content; delivering its PDU raw");
                self.deliver_raw(hex).await
            }
            Err(err) => {
                tracing::warn!(instance = %self.ctx.instance, error = %err, "could not commit a received message; it stays in the modem");
                Settled::Deferred
            }
        }
    }

    async fn append_inbound(
        &self,
        hex: &str,
        events: Vec<crate::event::NewEvent>,
        mut changes: Vec<Change>,
    ) -> Result<(), StoreError> {
        changes.push(Change::MarkInboundSeen {
            instance: self.ctx.instance.clone(),
            digest: digest(&self.ctx.instance, hex),
        });
        self.ctx
            .log
            .append(Job {
                events,
                changes,
                fence: None,
            })
            .await
            .map(drop)
    }

    async fn settle_message(&mut self, hex: &str, deliver: Deliver) -> Settled {
        let now = Utc::now();
        let sent_at = deliver
            .timestamp
            .to_unix_seconds()
            .unwrap_or(now.timestamp());
        // A "type 0" message is meant to be acknowledged and thrown away.
        if deliver.protocol_identifier == 0x40 {
            return self.commit_inbound(hex, Vec::new(), Vec::new()).await;
        }
        let whole = |content: String, parts: u32, timestamp: i64, to: String| MessageData {
            id: uuid::Uuid::now_v7().to_string(),
            direction: Direction::Incoming,
            from: deliver.sender.clone(),
            to,
            kind: "text".into(),
            content,
            timestamp,
            parts,
        };
        let concat = deliver.concat.filter(|c| c.total > 1);
        let Some(concat) = concat else {
            let event = whole(deliver.text.clone(), 1, sent_at, self.own_number());
            return self
                .commit_inbound(hex, vec![event.into_event(&self.ctx.instance)], Vec::new())
                .await;
        };
        let key: PartsKey = (
            deliver.sender.clone(),
            u32::from(concat.reference),
            u32::from(concat.total),
        );
        let sequence = u32::from(concat.sequence);
        let have = self.partials.get(&key).cloned().unwrap_or_default();
        if reassembly::is_repeat(&have, sequence) {
            // The same part again (the network sent it twice).
            return self.commit_inbound(hex, Vec::new(), Vec::new()).await;
        }
        let row = InboundPartRow {
            instance: self.ctx.instance.clone(),
            sender: deliver.sender.clone(),
            reference: key.1,
            total: key.2,
            sequence,
            // The part is joined from `raw` where there is one, so the text
            // kept beside it only has to be storable: PostgreSQL holds no
            // U+0000 in a text column, and a sender may well put one there.
            content: match &deliver.raw {
                Some(_) => deliver.text.replace('\0', "\u{FFFD}"),
                None => deliver.text.clone(),
            },
            raw: deliver.raw.as_ref().map(pdu::PartText::to_stored),
            sent_at,
            received_at: now,
        };
        if reassembly::completes(&have, key.2) {
            let mut all = have;
            all.push(row);
            let (content, first_sent) = reassembly::join(&mut all);
            let first_sent = first_sent.unwrap_or(sent_at);
            let event = whole(content, key.2, first_sent, self.own_number());
            let settled = self
                .commit_inbound(
                    hex,
                    vec![event.into_event(&self.ctx.instance)],
                    vec![Change::DeleteInboundParts {
                        instance: self.ctx.instance.clone(),
                        sender: key.0.clone(),
                        reference: key.1,
                        total: key.2,
                    }],
                )
                .await;
            if settled == Settled::Done {
                self.partials.remove(&key);
            }
            settled
        } else {
            let settled = self
                .commit_inbound(hex, Vec::new(), vec![Change::StoreInboundPart(row.clone())])
                .await;
            if settled == Settled::Done {
                self.partials.entry(key).or_default().push(row);
            }
            settled
        }
    }

    /// Delivers the multipart messages that have waited too long for their
    /// missing parts, with the parts that came.
    pub(super) async fn expire_partials(&mut self) {
        let limit = chrono::Duration::milliseconds(self.options.multipart_timeout_ms as i64);
        let now = Utc::now();
        let expired = reassembly::expired(&self.partials, now, limit);
        for key in expired {
            let Some(mut parts) = self.partials.get(&key).cloned() else {
                continue;
            };
            let (content, first_sent) = reassembly::join(&mut parts);
            let event = MessageData {
                id: uuid::Uuid::now_v7().to_string(),
                direction: Direction::Incoming,
                from: key.0.clone(),
                to: self.own_number(),
                kind: "text".into(),
                content,
                timestamp: first_sent.unwrap_or(0),
                parts: parts.len() as u32,
            };
            tracing::warn!(instance = %self.ctx.instance, from = %key.0, got = parts.len(), of = key.2, "delivering an incomplete multipart message");
            let job = Job {
                events: vec![event.into_event(&self.ctx.instance)],
                changes: vec![Change::DeleteInboundParts {
                    instance: self.ctx.instance.clone(),
                    sender: key.0.clone(),
                    reference: key.1,
                    total: key.2,
                }],
                fence: None,
            };
            match self.ctx.log.append(job).await {
                Ok(_) => {
                    self.partials.remove(&key);
                }
                Err(err) => {
                    tracing::warn!(instance = %self.ctx.instance, error = %err, "could not deliver an incomplete message yet");
                    return;
                }
            }
        }
    }
}

/// Identifies a received PDU, so one read twice is committed once.
fn digest(instance: &crate::domain::InstanceName, pdu: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(instance.as_str().as_bytes());
    hasher.update([0]);
    hasher.update(pdu.trim().to_ascii_uppercase().as_bytes());
    hex::encode(&hasher.finalize()[..16])
}
