//! Pools as stored: their definitions, the members' health the claims
//! route by, and what a pool view counts.
//!
//! A pool is one row holding its [`PoolSpec`] as JSON and round robin's
//! turn. Pools and instances share one namespace; both creations check the
//! other table inside the batch transaction, whose log head lock (see
//! `commit.rs`) puts every such change one after the other, so a pool and
//! an instance can never take one name at the same time. Claiming pool
//! messages is in `pool_claim.rs`.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::{
    db::{Stmt, Tx},
    rows::{from_micros, to_micros},
    Change, PoolRow, Store, StoreError,
};
use crate::domain::{InstanceName, PoolSpec};

/// The `pools` columns [`PoolTuple`] reads.
pub(super) const POOL_COLUMNS: &str = "name, spec, cursor, created_us";

/// A `pools` row: [`POOL_COLUMNS`].
pub(super) type PoolTuple = (String, String, i64, i64);

/// A pool row with round robin's turn.
pub(super) fn pool_from_row(
    (name, spec, cursor, created_us): PoolTuple,
) -> Result<(PoolRow, usize), StoreError> {
    let what = || format!("pool '{name}' is unreadable");
    let spec: PoolSpec = serde_json::from_str(&spec).map_err(|e| StoreError::corrupt(what(), e))?;
    Ok((
        PoolRow {
            name: InstanceName::parse(&name).map_err(|e| StoreError::corrupt(what(), e))?,
            spec,
            created_at: from_micros(created_us),
        },
        usize::try_from(cursor).unwrap_or(0),
    ))
}

fn spec_json(spec: &PoolSpec) -> String {
    // unwrap: a spec is names, strings and numbers.
    #[allow(clippy::unwrap_used)]
    serde_json::to_string(spec).unwrap()
}

/// What a pool view counts (`GET /pool/find`).
#[derive(Debug, Clone, Default)]
pub struct PoolStats {
    /// Messages waiting in the pool that no member took yet.
    pub queued: i64,
    /// Messages members took from the pool in the sliding minute, today
    /// (UTC) and this month.
    pub used: [i64; 3],
    /// Per member: its own unsent messages (waiting and claimed), and the
    /// texts this pool sent through it.
    pub load: HashMap<InstanceName, (i64, i64)>,
}

impl Store {
    /// Every pool, by name.
    pub async fn pools(&self) -> Result<Vec<PoolRow>, StoreError> {
        let sql = format!("SELECT {POOL_COLUMNS} FROM pools ORDER BY name");
        Ok(self
            .read(Stmt::new(sql), pool_from_row)
            .await?
            .into_iter()
            .map(|(row, _)| row)
            .collect())
    }

    /// One pool, if it exists.
    pub async fn pool(&self, name: &InstanceName) -> Result<Option<PoolRow>, StoreError> {
        let sql = format!("SELECT {POOL_COLUMNS} FROM pools WHERE name = $1");
        Ok(self
            .read(Stmt::new(sql).bind(name.as_str()), pool_from_row)
            .await?
            .pop()
            .map(|(row, _)| row))
    }

    /// The pools `instance` is a member of, by name.
    pub async fn pools_of(&self, instance: &InstanceName) -> Result<Vec<PoolRow>, StoreError> {
        Ok(self
            .read(member_of(instance), pool_from_row)
            .await?
            .into_iter()
            .map(|(row, _)| row)
            .filter(|row| row.spec.members.contains(instance))
            .collect())
    }

    /// Every pool with the count of messages waiting in it (no member took
    /// them yet), by name: the `switchboard_pool_queued` gauge.
    pub async fn pool_backlog(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.pool
            .fetch_all(Stmt::new(
                "SELECT p.name, count(o.id) FROM pools p LEFT JOIN outbox o \
                 ON o.instance = p.name AND o.pool = p.name AND o.status = 'queued' \
                 GROUP BY p.name ORDER BY p.name",
            ))
            .await
    }

    /// The members of `names` whose modem is connected now.
    pub async fn healthy(
        &self,
        names: &[InstanceName],
    ) -> Result<HashSet<InstanceName>, StoreError> {
        let sql = healthy_sql(self.pool.dialect());
        let list: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
        let rows: Vec<(String,)> = self.pool.fetch_all(Stmt::new(sql).bind(list)).await?;
        Ok(rows
            .into_iter()
            .filter_map(|(name,)| InstanceName::parse(&name).ok())
            .collect())
    }

    /// What a pool view shows: waiting messages, what was taken in each
    /// window (`starts`: the minute's, the day's and the month's), and each
    /// member's load.
    pub async fn pool_stats(
        &self,
        pool: &PoolRow,
        starts: [DateTime<Utc>; 3],
    ) -> Result<PoolStats, StoreError> {
        let name = pool.name.as_str();
        let (queued,): (i64,) = self
            .pool
            .fetch_one(
                Stmt::new(
                    "SELECT count(*) FROM outbox WHERE instance = $1 AND pool = $1 \
                     AND status = 'queued'",
                )
                .bind(name),
            )
            .await?;
        let (minute, day, month): (i64, i64, i64) = self
            .pool
            .fetch_one(
                Stmt::new(
                    "SELECT count(CASE WHEN claimed_us > $2 THEN 1 END), \
                     count(CASE WHEN claimed_us >= $3 THEN 1 END), \
                     count(CASE WHEN claimed_us >= $4 THEN 1 END) \
                     FROM outbox WHERE pool = $1 AND claimed_us IS NOT NULL",
                )
                .bind(name)
                .bind(to_micros(starts[0]))
                .bind(to_micros(starts[1]))
                .bind(to_micros(starts[2])),
            )
            .await?;
        let members: Vec<&str> = pool.spec.members.iter().map(|m| m.as_str()).collect();
        let dialect = self.pool.dialect();
        let own: Vec<(String, i64)> = self
            .pool
            .fetch_all(Stmt::new(queued_sql(dialect)).bind(members))
            .await?;
        let sent: Vec<(String, i64)> = self
            .pool
            .fetch_all(
                Stmt::new(
                    "SELECT instance, count(*) FROM outbox WHERE pool = $1 \
                     AND status IN ('sent', 'delivered') GROUP BY instance",
                )
                .bind(name),
            )
            .await?;
        let mut load: HashMap<InstanceName, (i64, i64)> = HashMap::new();
        for (member, count) in own {
            if let Ok(member) = InstanceName::parse(&member) {
                load.entry(member).or_default().0 = count;
            }
        }
        for (member, count) in sent {
            if let Ok(member) = InstanceName::parse(&member) {
                load.entry(member).or_default().1 = count;
            }
        }
        Ok(PoolStats {
            queued,
            used: [minute, day, month],
            load,
        })
    }
}

/// Each of the instances bound as `$1` with its count of unsent messages
/// (waiting or taken, not sent yet).
pub(super) fn queued_sql(dialect: super::db::Dialect) -> String {
    format!(
        "SELECT instance, count(*) FROM outbox WHERE {} AND status = 'queued' GROUP BY instance",
        dialect.in_list("instance", 1)
    )
}

/// Which of the instances in list parameter `$1` are healthy: their last
/// connection event said connected and, in a cluster (PostgreSQL), the
/// lease of the node that drives them has not run out, so a node that died
/// without a word stops counting once its lease expires.
pub(super) fn healthy_sql(dialect: super::db::Dialect) -> String {
    let lease = match dialect {
        super::db::Dialect::Postgres => {
            " AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.instance = member_health.instance \
             AND l.expires_at < clock_timestamp())"
        }
        // One process per data directory: no leases to outlive it.
        super::db::Dialect::Sqlite => "",
    };
    format!(
        "SELECT instance FROM member_health WHERE healthy AND {}{lease}",
        dialect.in_list("instance", 1)
    )
}

/// The pools whose definition mentions `instance` (a coarse match: `_` in
/// a name is a LIKE wildcard, so callers keep only real members).
pub(super) fn member_of(instance: &InstanceName) -> Stmt<'static> {
    Stmt::new(format!(
        "SELECT {POOL_COLUMNS} FROM pools WHERE spec LIKE $1 ORDER BY name"
    ))
    .bind(format!("%\"{instance}\"%"))
}

/// Refuses an instance name a pool has.
pub(super) async fn refuse_pool_name(
    tx: &mut Tx<'_>,
    name: &InstanceName,
) -> Result<(), StoreError> {
    let found: Option<(i32,)> = tx
        .fetch_optional(Stmt::new("SELECT 1 FROM pools WHERE name = $1").bind(name.as_str()))
        .await?;
    match found {
        Some(_) => Err(StoreError::Conflict(format!(
            "'{name}' is the name of a pool; pools and instances share one namespace"
        ))),
        None => Ok(()),
    }
}

/// Takes a deleted instance out of every pool's members and rules.
pub(super) async fn remove_member(
    tx: &mut Tx<'_>,
    instance: &InstanceName,
) -> Result<(), StoreError> {
    let pools: Vec<PoolTuple> = tx.fetch_all(member_of(instance)).await?;
    for tuple in pools {
        let (pool, _) = pool_from_row(tuple)?;
        if !pool.spec.members.contains(instance) {
            continue;
        }
        tx.execute(
            Stmt::new("UPDATE pools SET spec = $2, cursor = 0 WHERE name = $1")
                .bind(pool.name.as_str())
                .bind(spec_json(&pool.spec.without(instance))),
        )
        .await?;
    }
    Ok(())
}

/// Applies a pool change (and `SetHealth`).
pub(super) async fn apply(tx: &mut Tx<'_>, change: &Change) -> Result<(), StoreError> {
    let dialect = tx.dialect();
    match change {
        Change::CreatePool { pool, max_pools } => {
            let name = pool.name.as_str();
            let taken: Option<(i32,)> = tx
                .fetch_optional(Stmt::new("SELECT 1 FROM instances WHERE name = $1").bind(name))
                .await?;
            if taken.is_some() {
                return Err(StoreError::Conflict(format!(
                    "'{name}' is the name of an instance; pools and instances share one namespace"
                )));
            }
            let (count,): (i64,) = tx
                .fetch_one(Stmt::new("SELECT count(*) FROM pools"))
                .await?;
            if count >= i64::try_from(*max_pools).unwrap_or(i64::MAX) {
                return Err(StoreError::Conflict(format!(
                    "there are already {count} pools, the most allowed (limits.max_pools)"
                )));
            }
            members_exist(tx, dialect, &pool.spec).await?;
            tx.execute(
                Stmt::new(
                    "INSERT INTO pools (name, spec, cursor, created_us) VALUES ($1, $2, 0, $3)",
                )
                .bind(name)
                .bind(spec_json(&pool.spec))
                .bind(to_micros(pool.created_at)),
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => {
                    StoreError::Conflict(format!("pool '{name}' already exists"))
                }
                other => other,
            })?;
        }
        Change::UpdatePool { name, spec } => {
            members_exist(tx, dialect, spec).await?;
            let updated = tx
                .execute(
                    Stmt::new("UPDATE pools SET spec = $2, cursor = 0 WHERE name = $1")
                        .bind(name.as_str())
                        .bind(spec_json(spec)),
                )
                .await?;
            if updated == 0 {
                return Err(StoreError::NotFound(format!("pool '{name}' not found")));
            }
        }
        Change::DeletePool(name) => {
            let (waiting,): (i64,) = tx
                .fetch_one(
                    Stmt::new(
                        "SELECT count(*) FROM outbox WHERE instance = $1 AND pool = $1 \
                         AND status = 'queued'",
                    )
                    .bind(name.as_str()),
                )
                .await?;
            let found: Option<(i32,)> = tx
                .fetch_optional(
                    Stmt::new(format!(
                        "SELECT 1 FROM pools WHERE name = $1{}",
                        dialect.lock_rows()
                    ))
                    .bind(name.as_str()),
                )
                .await?;
            if found.is_none() {
                return Err(StoreError::NotFound(format!("pool '{name}' not found")));
            }
            if waiting > 0 {
                return Err(StoreError::Conflict(format!(
                    "pool '{name}' still has {waiting} message(s) waiting for a member; \
                     cancel them or let them go out first"
                )));
            }
            tx.execute(Stmt::new("DELETE FROM pools WHERE name = $1").bind(name.as_str()))
                .await?;
            // What is filed under the pool's name goes with it, as an
            // instance's does: an instance created later with this name
            // must not read the pool's texts. Texts a member took are the
            // member's now and stay.
            for table in [
                "send_counters WHERE scope",
                "outbox WHERE instance",
                "events WHERE instance",
                "retention_horizon WHERE instance",
            ] {
                let sql = format!("DELETE FROM {table} = $1");
                tx.execute(Stmt::new(sql).bind(name.as_str())).await?;
            }
        }
        Change::SetHealth { instance, healthy } => {
            tx.execute(
                Stmt::new(
                    "INSERT INTO member_health (instance, healthy, updated_us) \
                     VALUES ($1, $2, $3) ON CONFLICT (instance) DO UPDATE SET \
                     healthy = excluded.healthy, updated_us = excluded.updated_us",
                )
                .bind(instance.as_str())
                .bind(*healthy)
                .bind(to_micros(Utc::now())),
            )
            .await?;
        }
        _ => {}
    }
    Ok(())
}

/// Fails unless every member of `spec` is an instance now.
async fn members_exist(
    tx: &mut Tx<'_>,
    dialect: super::db::Dialect,
    spec: &PoolSpec,
) -> Result<(), StoreError> {
    let names: Vec<&str> = spec.members.iter().map(|m| m.as_str()).collect();
    let found: Vec<(String,)> = tx
        .fetch_all(
            Stmt::new(format!(
                "SELECT name FROM instances WHERE {}",
                dialect.in_list("name", 1)
            ))
            .bind(names),
        )
        .await?;
    let found: HashSet<String> = found.into_iter().map(|(n,)| n).collect();
    match spec.members.iter().find(|m| !found.contains(m.as_str())) {
        Some(missing) => Err(StoreError::Conflict(format!(
            "member '{missing}' is not an instance (any more)"
        ))),
        None => Ok(()),
    }
}
