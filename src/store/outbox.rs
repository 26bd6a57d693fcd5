//! The outbox queries a driver's send loop runs: claiming the next messages
//! to send (priority first, only those due), finding those it already
//! claimed (after a restart, or waiting for a retry), those that expired
//! unsent, and when the next scheduled one falls due.
//!
//! A claim and a cancel (`Change::SettleWaiting`) are both one statement
//! conditional on the row still waiting (`status = 'queued' AND claimed_us
//! IS NULL`), so whichever commits first wins and the other sees it.
//! Claims are kept outside the log writer: a claim is no event, and a claim
//! whose answer is lost only leaves a message that the driver's next start
//! resumes.

use chrono::{DateTime, Utc};

use super::{
    db::Stmt,
    rows::{from_micros, outbox_from_row, to_micros, OUTBOX_COLUMNS},
    OutboxRow, Store, StoreError,
};
use crate::domain::InstanceName;

/// The rows a claim may take: waiting, due, not expired.
const WAITING: &str = "instance = $1 AND status = 'queued' AND claimed_us IS NULL";

impl Store {
    /// Claims up to `limit` of the instance's waiting messages that are due
    /// at `now` and not expired, highest priority first (then oldest), and
    /// returns them in that order.
    pub async fn claim_next(
        &self,
        instance: &InstanceName,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin_write().await?;
        let sql = format!(
            "UPDATE outbox SET claimed_us = $2, updated_us = $2 WHERE id IN ( \
               SELECT id FROM outbox WHERE {WAITING} AND send_at_us <= $2 \
               AND (valid_until_us IS NULL OR valid_until_us > $2) \
               ORDER BY priority DESC, created_us, id LIMIT $3{}) \
             AND {WAITING} RETURNING {OUTBOX_COLUMNS}",
            tx.dialect().skip_locked()
        );
        let rows = tx
            .fetch_all(
                Stmt::new(sql)
                    .bind(instance.as_str())
                    .bind(to_micros(now))
                    .bind(limit),
            )
            .await?;
        tx.commit().await?;
        let mut claimed = rows
            .into_iter()
            .map(outbox_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        // RETURNING keeps no order.
        claimed.sort_by(|a, b| {
            b.schedule
                .priority
                .cmp(&a.schedule.priority)
                .then(a.created_at.cmp(&b.created_at))
                .then(a.id.cmp(&b.id))
        });
        Ok(claimed)
    }

    /// Messages the instance claimed and has not settled yet (being sent,
    /// waiting for a retry, or interrupted by a restart), oldest claim first.
    pub async fn claimed_messages(
        &self,
        instance: &InstanceName,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE instance = $1 AND status = 'queued' \
             AND claimed_us IS NOT NULL ORDER BY claimed_us, priority DESC, created_us, id LIMIT $2"
        );
        self.read(
            Stmt::new(sql).bind(instance.as_str()).bind(limit),
            outbox_from_row,
        )
        .await
    }

    /// Waiting messages whose time ran out at `now` without a claim.
    pub async fn expired_messages(
        &self,
        instance: &InstanceName,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE {WAITING} \
             AND valid_until_us IS NOT NULL AND valid_until_us <= $2 \
             ORDER BY valid_until_us LIMIT $3"
        );
        let stmt = Stmt::new(sql)
            .bind(instance.as_str())
            .bind(to_micros(now))
            .bind(limit);
        self.read(stmt, outbox_from_row).await
    }

    /// When the instance's outbox next needs a look without being woken:
    /// the earliest future `sendAt`, or the earliest expiry of a waiting
    /// message (a past one: at once, so it is settled).
    pub async fn next_due(
        &self,
        instance: &InstanceName,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let sql = format!(
            "SELECT min(CASE WHEN send_at_us > $2 THEN send_at_us END), min(valid_until_us) \
             FROM outbox WHERE {WAITING} AND (send_at_us > $2 OR valid_until_us IS NOT NULL)"
        );
        let (send_at, valid_until): (Option<i64>, Option<i64>) = self
            .pool
            .fetch_one(Stmt::new(sql).bind(instance.as_str()).bind(to_micros(now)))
            .await?;
        Ok([send_at, valid_until]
            .into_iter()
            .flatten()
            .min()
            .map(from_micros))
    }

    /// Messages of one instance not sent yet (claimed or not), in the order
    /// they go out.
    pub async fn queued_messages(
        &self,
        instance: &InstanceName,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE instance = $1 AND status = 'queued' \
             ORDER BY priority DESC, created_us, id LIMIT $2"
        );
        self.read(
            Stmt::new(sql).bind(instance.as_str()).bind(limit),
            outbox_from_row,
        )
        .await
    }

    /// One message of an instance.
    pub async fn message(
        &self,
        instance: &InstanceName,
        id: &str,
    ) -> Result<Option<OutboxRow>, StoreError> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE instance = $1 AND id = $2");
        Ok(self
            .read(
                Stmt::new(sql).bind(instance.as_str()).bind(id),
                outbox_from_row,
            )
            .await?
            .pop())
    }
}
