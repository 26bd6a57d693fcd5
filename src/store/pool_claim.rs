//! A member's claim of messages waiting in its pools: the routing itself.
//!
//! It runs inside the member's claim transaction (`outbox.rs`), after the
//! member's own messages, and per pool (in name order, so two claimers lock
//! pools in one order):
//!
//! 1. the pool row is locked, which lines up every member claiming from
//!    it, on any node, and gives the round robin turn that holds now;
//! 2. the pool's throttle is checked and counted like an instance's (scope:
//!    the pool's name), so both the pool's and the member's limits hold;
//! 3. each waiting, due message is offered to the strategy
//!    ([`crate::domain::PoolSpec::chooses`]) with the members' health as
//!    `member_health` says (written with their connection events; in a
//!    cluster, only while the lease of the node driving the member holds,
//!    so a node that died without a word stops counting once its lease
//!    runs out); one the member may take
//!    is claimed with the same conditional UPDATE as an instance's message
//!    (still waiting, still the pool's), which rewrites its `instance` to
//!    the member and keeps `pool`.
//!
//! A round robin turn that its member does not take within [`TURN_GRACE`]
//! (it is connected but held by its own throttle, say) passes to the next
//! member that claims.
//!
//! A member that dies after taking a message keeps it: its restarted driver
//! resumes it, as it resumes its own messages. That is deliberate: a part of
//! it may already have gone out through that member's SIM, and only that
//! member knows which (its `outbox_parts` rows), so handing the rest to
//! another member could split a long text across two senders or send a part
//! twice. What a dead member never blocks is a message it has not taken:
//! its health says "down" from its `disconnected` event on, and the other
//! members route around it.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::{
    db::{Stmt, Tx},
    outbox::{allowance, count_taken, due_ids, Held, MinuteOf},
    pools::{healthy_sql, member_of, pool_from_row, queued_sql, PoolTuple},
    rows::{outbox_from_row, to_micros, OutboxTuple, OUTBOX_COLUMNS},
    OutboxRow, StoreError,
};
use crate::domain::{InstanceName, Strategy};

/// Waiting messages of one pool offered to a member per claim, at most.
const CANDIDATES: i64 = 256;
/// How long a round robin turn waits for its member. A member may be
/// connected and still not claim (its own throttle or pause holds it, a
/// send it retries): past this, the turn goes to whichever member claims,
/// so one slow member delays the pool by this much per turn, never stalls
/// it.
pub const TURN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// What a member took from its pools.
#[derive(Debug, Default)]
pub(super) struct PoolClaim {
    pub rows: Vec<OutboxRow>,
    /// Messages wait in a pool that this claim did not take (another
    /// member's turn, the room ran out, a pool throttle).
    pub waiting: bool,
    /// The other members of the pools that still hold messages: woken, so
    /// the one whose turn it is looks at once.
    pub wake: Vec<InstanceName>,
    /// A pool throttle that held messages back.
    pub held: Option<Held>,
}

pub(super) async fn claim(
    tx: &mut Tx<'_>,
    member: &InstanceName,
    now: DateTime<Utc>,
    mut room: i64,
    minute: chrono::Duration,
) -> Result<PoolClaim, StoreError> {
    let dialect = tx.dialect();
    let mut out = PoolClaim::default();
    let pools: Vec<PoolTuple> = tx.fetch_all(member_of(member)).await?;
    for tuple in pools {
        let (pool, _) = pool_from_row(tuple)?;
        if !pool.spec.members.contains(member) {
            continue;
        }
        let name = pool.name.as_str();
        // 1. Lined up behind every other claim of this pool.
        let Some((cursor, turn_us)): Option<(i64, i64)> = tx
            .fetch_optional(
                Stmt::new(format!(
                    "SELECT cursor, turn_us FROM pools WHERE name = $1{}",
                    dialect.lock_rows()
                ))
                .bind(name),
            )
            .await?
        else {
            continue;
        };
        let candidates: Vec<OutboxTuple> = tx
            .fetch_all(
                // A pool's waiting rows are those filed under its name
                // (no instance can have it), picked like an instance's.
                Stmt::new(format!(
                    "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id IN ({}) \
                     ORDER BY priority DESC, created_us, id",
                    due_ids(dialect, "")
                ))
                .bind(name)
                .bind(to_micros(now))
                .bind(CANDIDATES),
            )
            .await?;
        if candidates.is_empty() {
            continue;
        }
        let others = pool.spec.members.iter().filter(|m| *m != member).cloned();
        if room <= 0 {
            out.waiting = true;
            continue;
        }
        // 2. The pool's own limits.
        let windows = pool.spec.throttle.windows(now, minute);
        let (allowance, held) = allowance(tx, name, &windows, MinuteOf::Pool).await?;
        if allowance <= 0 {
            out.held = out.held.or(held);
            continue;
        }
        let mut cap = room.min(allowance);
        // 3. The strategy decides, message by message.
        let members: Vec<&str> = pool.spec.members.iter().map(|m| m.as_str()).collect();
        let healthy: Vec<(String,)> = tx
            .fetch_all(Stmt::new(healthy_sql(dialect)).bind(members.clone()))
            .await?;
        let healthy: HashSet<InstanceName> = healthy
            .into_iter()
            .filter_map(|(n,)| InstanceName::parse(&n).ok())
            .collect();
        let mut outstanding: HashMap<InstanceName, i64> = HashMap::new();
        if pool.spec.strategy == Strategy::LeastLoaded {
            let counts: Vec<(String, i64)> = tx
                .fetch_all(Stmt::new(queued_sql(dialect)).bind(members))
                .await?;
            for (n, count) in counts {
                if let Ok(n) = InstanceName::parse(&n) {
                    outstanding.insert(n, count);
                }
            }
        }
        let mut cursor = usize::try_from(cursor).unwrap_or(0);
        let grace = i64::try_from(TURN_GRACE.as_micros()).unwrap_or(i64::MAX);
        let mut stale =
            pool.spec.strategy == Strategy::RoundRobin && to_micros(now) - turn_us >= grace;
        let mut taken = 0;
        let mut left = false;
        for tuple in candidates {
            if cap == 0 {
                left = true;
                break;
            }
            let row = outbox_from_row(tuple)?;
            let chosen = pool
                .spec
                .chooses(member, &row.recipient, &healthy, cursor, &outstanding)
                || (stale && pool.spec.eligible(&row.recipient).contains(member));
            if !chosen {
                left = true;
                continue;
            }
            let claimed: Option<OutboxTuple> = tx
                .fetch_optional(
                    Stmt::new(format!(
                        "UPDATE outbox SET instance = $2, claimed_us = $3, updated_us = $3 \
                         WHERE id = $1 AND instance = $4 AND status = 'queued' \
                         AND claimed_us IS NULL RETURNING {OUTBOX_COLUMNS}"
                    ))
                    .bind(&row.id)
                    .bind(member.as_str())
                    .bind(to_micros(now))
                    .bind(name),
                )
                .await?;
            let Some(claimed) = claimed else {
                continue;
            };
            out.rows.push(outbox_from_row(claimed)?);
            taken += 1;
            cap -= 1;
            room -= 1;
            cursor = pool.spec.turn_after(member);
            stale = false;
            *outstanding.entry(member.clone()).or_default() += 1;
        }
        if taken > 0 {
            tx.execute(
                Stmt::new("UPDATE pools SET cursor = $2, turn_us = $3 WHERE name = $1")
                    .bind(name)
                    .bind(cursor as i64)
                    .bind(to_micros(now)),
            )
            .await?;
            count_taken(tx, name, &windows, taken).await?;
        }
        if left {
            out.waiting = true;
            out.wake.extend(others);
        }
    }
    out.wake.sort();
    out.wake.dedup();
    Ok(out)
}
