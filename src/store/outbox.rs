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
//! resumes. A claim is also where throttles hold: it takes no more than
//! the instance's limits leave and counts what it took in the same
//! transaction (see [`allowance`]).
//!
//! A claim also takes messages waiting in the pools the instance is a
//! member of, where the pool's strategy lets it (`pool_claim.rs`); the
//! expiry and wake-up queries look at those pools' messages too, so a
//! message in a pool is settled and sent whichever members are alive.

use chrono::{DateTime, Utc};

use super::{
    db::{Dialect, Stmt, Tx},
    pool_claim,
    rows::{from_micros, outbox_from_row, to_micros, OUTBOX_COLUMNS},
    OutboxRow, Store, StoreError,
};
use crate::domain::{InstanceName, Window, WindowKind};

/// What a claim took.
#[derive(Debug, Default)]
pub struct Claim {
    /// The messages claimed, in the order they go out.
    pub messages: Vec<OutboxRow>,
    /// The throttle limit that held back what waits, when it took none.
    pub held: Option<Held>,
    /// Messages wait in a pool of the instance that it did not take now
    /// (another member's turn, say): worth another look soon, since a
    /// member on another node takes its turn without waking this one.
    pub pool_waiting: bool,
    /// Other members of those pools, to wake on this node.
    pub wake: Vec<InstanceName>,
}

/// A throttle limit reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub kind: WindowKind,
    pub limit: u32,
    /// When the next send is allowed again.
    pub until: DateTime<Utc>,
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "throttle: {} {} reached until {}",
            self.kind.setting(),
            self.limit,
            self.until
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }
}

/// What a picked row must still be when the claim updates it.
const STILL_WAITING: &str = "status = 'queued' AND claimed_us IS NULL";

/// The ids of the waiting texts of `$1` due at `$2` and not expired, best
/// first, at most `$3` (each row locked with `lock`, if any).
///
/// Its cost stays flat however long the queue (examples/pick_cost.rs): it
/// takes the best of two partial indexes (migration 0010), texts without a
/// `sendAt` straight off theirs in send order, and scheduled ones by their
/// time, so a million texts scheduled for later are never walked to find
/// the few due now. The indexes hold waiting rows only and key on the
/// order itself: PostgreSQL does not read an index in order past an
/// `IS NULL` column, so `claimed_us` is in their condition, not their key.
pub(super) fn due_ids(dialect: Dialect, lock: &str) -> String {
    // Without statistics SQLite prefers the wider `outbox_next` and walks
    // it past every scheduled row; it is told which index holds the order.
    let unscheduled = match dialect {
        Dialect::Sqlite => "INDEXED BY outbox_next_unscheduled",
        Dialect::Postgres => "",
    };
    let branch = |index: &str, due: &str| {
        format!(
            "(SELECT id, priority, created_us FROM outbox {index} WHERE instance = $1 \
             AND status = 'queued' AND claimed_us IS NULL AND {due} \
             AND (valid_until_us IS NULL OR valid_until_us > $2) \
             ORDER BY priority DESC, created_us, id LIMIT $3{lock})"
        )
    };
    format!(
        "SELECT id FROM (SELECT * FROM {} AS unscheduled UNION ALL SELECT * FROM {} AS scheduled) \
         AS candidates ORDER BY priority DESC, created_us, id LIMIT $3",
        branch(unscheduled, "send_at_us = 0"),
        branch("", "send_at_us > 0 AND send_at_us <= $2"),
    )
}

impl Store {
    /// Claims up to `limit` of the instance's waiting messages that are due
    /// at `now` and not expired, highest priority first (then oldest), and
    /// returns them in that order, then what its pools let it take.
    /// `windows` are the instance's throttle limits at `now`: the claim
    /// takes no more than they leave, and counts what it took in the same
    /// transaction, so no burst gets past them; `minute` is a minute's
    /// length for the pools' own limits.
    pub async fn claim_next(
        &self,
        instance: &InstanceName,
        now: DateTime<Utc>,
        limit: i64,
        windows: &[Window],
        minute: chrono::Duration,
    ) -> Result<Claim, StoreError> {
        if limit <= 0 {
            return Ok(Claim::default());
        }
        let mut tx = self.pool.begin_write().await?;
        let (allowance, held) =
            allowance(&mut tx, instance.as_str(), windows, MinuteOf::Instance).await?;
        let limit = limit.min(allowance);
        if limit <= 0 {
            tx.commit().await?;
            return Ok(Claim {
                held,
                ..Claim::default()
            });
        }
        // The pick is a materialized CTE: as a plain `IN (subquery)`,
        // PostgreSQL may run the subquery more than once and claim more
        // than `LIMIT` rows. The update finds the picked rows by id and
        // checks only that they still wait: with the instance in its WHERE
        // too, SQLite walked the instance's whole queue on the queue's
        // index instead of looking the ids up. A row's instance never
        // changes under a claim of its own instance (only a pool's rows
        // move to a member, and those are not picked here).
        let sql = format!(
            "WITH picked AS MATERIALIZED ({}) \
             UPDATE outbox SET claimed_us = $2, updated_us = $2 \
             WHERE id IN (SELECT id FROM picked) AND {STILL_WAITING} RETURNING {OUTBOX_COLUMNS}",
            due_ids(tx.dialect(), tx.dialect().skip_locked())
        );
        let rows = tx
            .fetch_all(
                Stmt::new(sql)
                    .bind(instance.as_str())
                    .bind(to_micros(now))
                    .bind(limit),
            )
            .await?;
        let pooled =
            pool_claim::claim(&mut tx, instance, now, limit - rows.len() as i64, minute).await?;
        let taken = (rows.len() + pooled.rows.len()) as i64;
        count_taken(&mut tx, instance.as_str(), windows, taken).await?;
        tx.commit().await?;
        let mut messages = rows
            .into_iter()
            .map(outbox_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        messages.extend(pooled.rows);
        // RETURNING keeps no order.
        messages.sort_by(|a, b| {
            b.schedule
                .priority
                .cmp(&a.schedule.priority)
                .then(a.created_at.cmp(&b.created_at))
                .then(a.id.cmp(&b.id))
        });
        Ok(Claim {
            held: pooled.held.filter(|_| messages.is_empty()),
            messages,
            pool_waiting: pooled.waiting,
            wake: pooled.wake,
        })
    }

    /// The throttle limit that holds the instance's next claim back now,
    /// if one does (a look: nothing is claimed).
    pub async fn held(
        &self,
        instance: &InstanceName,
        windows: &[Window],
    ) -> Result<Option<Held>, StoreError> {
        if windows.is_empty() {
            return Ok(None);
        }
        let mut tx = self.pool.begin_write().await?;
        let (_, held) = allowance(&mut tx, instance.as_str(), windows, MinuteOf::Instance).await?;
        tx.rollback().await?;
        Ok(held)
    }

    /// The pool throttle limit that holds the pool's messages back now, if
    /// one does (a look: nothing is claimed).
    pub async fn pool_held(
        &self,
        pool: &InstanceName,
        windows: &[Window],
    ) -> Result<Option<Held>, StoreError> {
        if windows.is_empty() {
            return Ok(None);
        }
        let mut tx = self.pool.begin_write().await?;
        let (_, held) = allowance(&mut tx, pool.as_str(), windows, MinuteOf::Pool).await?;
        tx.rollback().await?;
        Ok(held)
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

    /// Waiting messages whose time ran out at `now` without a claim: the
    /// instance's own and those of its pools.
    pub async fn expired_messages(
        &self,
        instance: &InstanceName,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE {} AND status = 'queued' \
             AND claimed_us IS NULL \
             AND valid_until_us IS NOT NULL AND valid_until_us <= $2 \
             ORDER BY valid_until_us LIMIT $3",
            self.pool.dialect().in_list("instance", 1)
        );
        let scopes = self.scopes(instance).await?;
        let stmt = Stmt::new(sql)
            .bind(scopes.iter().map(String::as_str).collect::<Vec<_>>())
            .bind(to_micros(now))
            .bind(limit);
        self.read(stmt, outbox_from_row).await
    }

    /// The instance's name and those of the pools it is a member of: where
    /// the messages it may send wait.
    async fn scopes(&self, instance: &InstanceName) -> Result<Vec<String>, StoreError> {
        let mut scopes = vec![instance.to_string()];
        scopes.extend(
            self.pools_of(instance)
                .await?
                .into_iter()
                .map(|p| p.name.to_string()),
        );
        Ok(scopes)
    }

    /// When the instance's outbox next needs a look without being woken:
    /// the earliest future `sendAt`, or the earliest expiry of a waiting
    /// message (a past one: at once, so it is settled), its pools' included.
    pub async fn next_due(
        &self,
        instance: &InstanceName,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let sql = format!(
            "SELECT min(CASE WHEN send_at_us > $2 THEN send_at_us END), min(valid_until_us) \
             FROM outbox WHERE {} AND status = 'queued' AND claimed_us IS NULL \
             AND (send_at_us > $2 OR valid_until_us IS NOT NULL)",
            self.pool.dialect().in_list("instance", 1)
        );
        let scopes = self.scopes(instance).await?;
        let (send_at, valid_until): (Option<i64>, Option<i64>) = self
            .pool
            .fetch_one(
                Stmt::new(sql)
                    .bind(scopes.iter().map(String::as_str).collect::<Vec<_>>())
                    .bind(to_micros(now)),
            )
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

    /// One message of an instance, or of a pool (sent to it, whichever
    /// member took it).
    pub async fn message(
        &self,
        instance: &InstanceName,
        id: &str,
    ) -> Result<Option<OutboxRow>, StoreError> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE (instance = $1 OR pool = $1) AND id = $2"
        );
        Ok(self
            .read(
                Stmt::new(sql).bind(instance.as_str()).bind(id),
                outbox_from_row,
            )
            .await?
            .pop())
    }
}

/// Which outbox column names a scope whose minute is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MinuteOf {
    /// An instance: the messages it claimed.
    Instance,
    /// A pool: the messages its members took from it.
    Pool,
}

/// Counts `taken` messages in the scope's day and month windows (the
/// minute counts the claims themselves).
pub(super) async fn count_taken(
    tx: &mut Tx<'_>,
    scope: &str,
    windows: &[Window],
    taken: i64,
) -> Result<(), StoreError> {
    if taken <= 0 {
        return Ok(());
    }
    for window in windows.iter().filter(|w| w.kind != WindowKind::Minute) {
        tx.execute(
            Stmt::new(
                "UPDATE send_counters SET sent = sent + $4 \
                 WHERE scope = $1 AND window_kind = $2 AND window_start = $3",
            )
            .bind(scope)
            .bind(window.kind.as_str())
            .bind(to_micros(window.start))
            .bind(taken),
        )
        .await?;
    }
    Ok(())
}

/// How many more messages the throttle `windows` let the scope (an
/// instance or a pool) claim (`i64::MAX` without limits), and which limit
/// holds them back when none. The scope's counter rows are created if
/// missing and locked first, so two claimers of one scope count one after
/// the other, and counters of windows that ended are deleted as new ones
/// start (a bounded table).
pub(super) async fn allowance(
    tx: &mut Tx<'_>,
    scope: &str,
    windows: &[Window],
    minute_of: MinuteOf,
) -> Result<(i64, Option<Held>), StoreError> {
    let dialect = tx.dialect();
    let mut allowance = i64::MAX;
    let mut held = None;
    for window in windows {
        // The minute slides over the claims themselves (the outbox keeps
        // when each message was claimed); its counter row, at start 0,
        // only lines claimers up.
        let start = match window.kind {
            WindowKind::Minute => 0,
            _ => to_micros(window.start),
        };
        {
            let created = tx
                .execute(
                    Stmt::new(
                        "INSERT INTO send_counters (scope, window_kind, window_start, sent) \
                         VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING",
                    )
                    .bind(scope)
                    .bind(window.kind.as_str())
                    .bind(start),
                )
                .await?;
            if created > 0 && start > 0 {
                tx.execute(
                    Stmt::new(
                        "DELETE FROM send_counters \
                         WHERE scope = $1 AND window_kind = $2 AND window_start < $3",
                    )
                    .bind(scope)
                    .bind(window.kind.as_str())
                    .bind(start),
                )
                .await?;
            }
        }
        let counted: Option<(i64,)> = tx
            .fetch_optional(
                Stmt::new(format!(
                    "SELECT sent FROM send_counters \
                     WHERE scope = $1 AND window_kind = $2 AND window_start = $3{}",
                    dialect.lock_rows()
                ))
                .bind(scope)
                .bind(window.kind.as_str())
                .bind(start),
            )
            .await?;
        let limit = i64::from(window.limit);
        let (left, until) = match window.kind {
            WindowKind::Minute => {
                // The newest `limit` claims after the window's start: when
                // there are that many, the oldest of them leaving the
                // window frees the next send.
                let column = match minute_of {
                    MinuteOf::Instance => "instance",
                    MinuteOf::Pool => "pool",
                };
                let claims: Vec<(i64,)> = tx
                    .fetch_all(
                        Stmt::new(format!(
                            "SELECT claimed_us FROM outbox WHERE {column} = $1 \
                             AND claimed_us > $2 ORDER BY claimed_us DESC LIMIT $3"
                        ))
                        .bind(scope)
                        .bind(to_micros(window.start))
                        .bind(limit),
                    )
                    .await?;
                let length = to_micros(window.end) - to_micros(window.start);
                let until = claims.last().map(|(us,)| from_micros(us + length));
                (limit - claims.len() as i64, until)
            }
            _ => (limit - counted.map_or(0, |(sent,)| sent), Some(window.end)),
        };
        if left <= 0 && held.is_none() {
            held = Some(Held {
                kind: window.kind,
                limit: window.limit,
                until: until.unwrap_or(window.end),
            });
        }
        allowance = allowance.min(left.max(0));
    }
    Ok((allowance, held))
}
