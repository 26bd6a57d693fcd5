//! The cluster's tables: node heartbeats and leases with fencing tokens
//! (see `src/cluster/`).
//!
//! A [`Fence`] is what a driver's writes carry: the instance, the node and
//! the token of the lease it was started under. `commit.rs` checks it in
//! the batch's own transaction, locking the lease row (`FOR SHARE`), so a
//! node that lost the lease commits nothing: the check and the write are
//! one transaction, and a new holder's acquisition (an `UPDATE` of that
//! row) waits until it has committed.
//!
//! Leases only exist on PostgreSQL: the embedded SQLite database is
//! single-node (a lock on its data directory), so there a fence is never
//! made and the check is a no-op. Every time here is the database's clock
//! (`clock_timestamp()`), never a node's.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::{
    db::{Dialect, Stmt, Tx},
    Store, StoreError,
};

/// The right to write for one instance, as one lease acquisition gave it.
#[derive(Debug, Clone)]
pub struct Fence {
    /// The lease's key: an instance name, or `webhook:<instance>`.
    pub key: String,
    pub node: Arc<str>,
    /// Grows on every acquisition, so a fence from an earlier one is stale.
    pub token: i64,
    /// When this node must consider the lease gone by its own monotonic
    /// clock (the last renew's start + TTL − margin). Shared with the
    /// lease loop, which moves it on every renew.
    until: Arc<Mutex<Instant>>,
}

impl PartialEq for Fence {
    fn eq(&self, other: &Fence) -> bool {
        self.key == other.key && self.node == other.node && self.token == other.token
    }
}

impl Fence {
    pub fn new(key: String, node: Arc<str>, token: i64, until: Instant) -> Fence {
        Fence {
            key,
            node,
            token,
            until: Arc::new(Mutex::new(until)),
        }
    }

    /// Moves the local deadline after a successful renew.
    pub fn extend(&self, until: Instant) {
        let mut current = self.until.lock();
        *current = (*current).max(until);
    }

    /// Ends the lease locally at once (lost, released, or a stop).
    pub fn revoke(&self) {
        *self.until.lock() = Instant::now() - std::time::Duration::from_millis(1);
    }

    /// Whether this node still holds the lease by its own clock. A node
    /// that was paused past its lease sees `false` the moment it wakes,
    /// before it can talk to the database or the modem.
    pub fn valid(&self) -> bool {
        Instant::now() < *self.until.lock()
    }

    pub fn until(&self) -> Instant {
        *self.until.lock()
    }
}

/// A live node as its heartbeat row says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub id: String,
    pub address: String,
    pub version: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub heartbeat_at: chrono::DateTime<chrono::Utc>,
    /// The heartbeat is within the lease TTL (by the database's clock).
    pub alive: bool,
}

/// A lease row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub key: String,
    pub node: String,
    pub token: i64,
    /// Not expired (by the database's clock).
    pub live: bool,
}

/// Checks a job's fence inside the batch transaction: the lease row is
/// this node's, with this token, not expired, and stays so until the
/// transaction ends (`FOR SHARE`). A no-op on SQLite.
pub(super) async fn check(tx: &mut Tx<'_>, fence: &Fence) -> Result<(), StoreError> {
    if tx.dialect() == Dialect::Sqlite {
        return Ok(());
    }
    let held: Option<(i64,)> = tx
        .fetch_optional(
            Stmt::new(
                "SELECT token FROM leases WHERE instance = $1 AND node = $2 AND token = $3 \
                 AND expires_at > clock_timestamp() FOR SHARE",
            )
            .bind(fence.key.as_str())
            .bind(&*fence.node)
            .bind(fence.token),
        )
        .await?;
    match held {
        Some(_) => Ok(()),
        None => Err(StoreError::Fenced(format!(
            "node '{}' no longer holds the lease of '{}' (token {})",
            fence.node, fence.key, fence.token
        ))),
    }
}

/// A `TIMESTAMPTZ` read as microseconds.
const MICROS: &str = "(extract(epoch from {})*1000000)::bigint";

fn micros(column: &str) -> String {
    MICROS.replace("{}", column)
}

impl Store {
    /// Whether this store can hold a cluster (PostgreSQL).
    pub fn clustered(&self) -> bool {
        self.pool.dialect() == Dialect::Postgres
    }

    /// Records that `node` is alive (creating its row on the first beat).
    pub async fn heartbeat(
        &self,
        node: &str,
        address: &str,
        version: &str,
        first: bool,
    ) -> Result<(), StoreError> {
        let started = if first {
            "clock_timestamp()"
        } else {
            "nodes.started_at"
        };
        let sql = format!(
            "INSERT INTO nodes (id, address, version, started_at, heartbeat_at) \
             VALUES ($1, $2, $3, clock_timestamp(), clock_timestamp()) \
             ON CONFLICT (id) DO UPDATE SET address = excluded.address, \
             version = excluded.version, started_at = {started}, \
             heartbeat_at = excluded.heartbeat_at"
        );
        self.pool
            .execute(Stmt::new(sql).bind(node).bind(address).bind(version))
            .await?;
        Ok(())
    }

    /// Every node with a row, alive or not (`alive`: a heartbeat within
    /// `ttl_ms`), by id.
    pub async fn nodes(&self, ttl_ms: i64) -> Result<Vec<NodeRow>, StoreError> {
        let sql = format!(
            "SELECT id, address, version, {}, {}, \
             heartbeat_at > clock_timestamp() - $1 * interval '1 millisecond' \
             FROM nodes ORDER BY id",
            micros("started_at"),
            micros("heartbeat_at")
        );
        let rows: Vec<(String, String, String, i64, i64, bool)> =
            self.pool.fetch_all(Stmt::new(sql).bind(ttl_ms)).await?;
        Ok(rows
            .into_iter()
            .map(|(id, address, version, started, beat, alive)| NodeRow {
                id,
                address,
                version,
                started_at: super::rows::from_micros(started),
                heartbeat_at: super::rows::from_micros(beat),
                alive,
            })
            .collect())
    }

    /// Removes a node's row (graceful shutdown), so others stop counting it.
    pub async fn remove_node(&self, node: &str) -> Result<(), StoreError> {
        self.pool
            .execute(Stmt::new("DELETE FROM nodes WHERE id = $1").bind(node))
            .await?;
        Ok(())
    }

    /// Takes or renews the lease `key` for `node` for `ttl_ms` from now (the
    /// database's now), in one statement. Free, expired or already this
    /// node's with token `held`: it is this node's, and the answer is the
    /// token. A renew (this node, token `held`, not expired) keeps the
    /// token; any other acquisition adds one. Another node's live lease:
    /// `None`.
    pub async fn acquire_lease(
        &self,
        key: &str,
        node: &str,
        held: Option<i64>,
        ttl_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let row: Option<(i64,)> = self
            .pool
            .fetch_all(
                Stmt::new(
                    "INSERT INTO leases (instance, node, token, expires_at) \
                     VALUES ($1, $2, 1, clock_timestamp() + $3 * interval '1 millisecond') \
                     ON CONFLICT (instance) DO UPDATE SET \
                     token = CASE WHEN leases.node = excluded.node AND leases.token = $4 \
                                   AND leases.expires_at > clock_timestamp() \
                              THEN leases.token ELSE leases.token + 1 END, \
                     node = excluded.node, expires_at = excluded.expires_at \
                     WHERE leases.node = excluded.node OR leases.expires_at <= clock_timestamp() \
                     RETURNING token",
                )
                .bind(key)
                .bind(node)
                .bind(ttl_ms)
                .bind(held.unwrap_or(0)),
            )
            .await?
            .into_iter()
            .next();
        Ok(row.map(|(token,)| token))
    }

    /// Gives a lease up at once (expires it; the token stays, so the next
    /// holder's is larger). Only the holder with that token can.
    pub async fn release_lease(&self, fence: &Fence) -> Result<(), StoreError> {
        self.pool
            .execute(
                Stmt::new(
                    "UPDATE leases SET expires_at = clock_timestamp() - interval '1 millisecond' \
                     WHERE instance = $1 AND node = $2 AND token = $3",
                )
                .bind(fence.key.as_str())
                .bind(&*fence.node)
                .bind(fence.token),
            )
            .await?;
        Ok(())
    }

    /// Every lease row.
    pub async fn leases(&self) -> Result<Vec<LeaseRow>, StoreError> {
        let rows: Vec<(String, String, i64, bool)> = self
            .pool
            .fetch_all(Stmt::new(
                "SELECT instance, node, token, expires_at > clock_timestamp() FROM leases \
                 ORDER BY instance",
            ))
            .await?;
        Ok(rows
            .into_iter()
            .map(|(key, node, token, live)| LeaseRow {
                key,
                node,
                token,
                live,
            })
            .collect())
    }
}

/// The channel every commit that appends events notifies (PostgreSQL), with
/// the new log head as its payload: a wake-up for the other nodes' tailers,
/// never the only way they learn of events.
pub(super) const EVENTS_CHANNEL: &str = "switchboard_events";

/// Notifications that events were committed (by any node).
pub struct Listener {
    inner: sqlx::postgres::PgListener,
}

impl Listener {
    /// Waits for the next notification. An error means the connection was
    /// lost; the next call reconnects.
    pub async fn recv(&mut self) -> Result<(), StoreError> {
        self.inner.recv().await?;
        Ok(())
    }
}

impl Store {
    /// Listens for commits on PostgreSQL; `None` on SQLite, where this
    /// process is the only writer.
    pub async fn listen(&self) -> Result<Option<Listener>, StoreError> {
        let super::db::Pool::Postgres(pool) = &self.pool else {
            return Ok(None);
        };
        let mut inner = sqlx::postgres::PgListener::connect_with(pool).await?;
        inner.listen(EVENTS_CHANNEL).await?;
        Ok(Some(Listener { inner }))
    }
}

/// A command this node took to run.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TakenCommand {
    pub id: i64,
    pub instance: String,
    pub kind: String,
    pub args: Option<String>,
}

/// How long a command waits to be taken before its owner ignores it (the
/// node that asked has answered "not taken" long before).
const COMMAND_FRESH_MS: i64 = 30_000;
/// Commands older than this are deleted.
const COMMAND_KEPT_MS: i64 = 3_600_000;

/// At most this many commands wait, not yet taken, for one instance: a
/// client repeating `restart` cannot grow the table without bound.
pub const MAX_WAITING_COMMANDS: i64 = 32;

/// A command's progress, as the node that asked reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandProgress {
    /// The node that took it.
    pub taken_by: Option<String>,
    /// What it answered (JSON), for commands that answer.
    pub answer: Option<String>,
}

impl Store {
    /// Asks the node driving `instance` to run a command (`connect`,
    /// `restart`, `logout`, or one that answers, with its JSON `args`);
    /// returns its id, or `None` when [`MAX_WAITING_COMMANDS`] fresh ones
    /// already wait for that instance.
    pub async fn insert_command(
        &self,
        instance: &str,
        kind: &str,
        args: Option<&str>,
    ) -> Result<Option<i64>, StoreError> {
        // One statement, so two nodes asking at once cannot both pass the
        // count: the insert happens only while fewer are waiting.
        let row: Option<(i64,)> = self
            .pool
            .fetch_all(
                Stmt::new(
                    "INSERT INTO commands (instance, kind, args) \
                     SELECT $1, $2, $3 WHERE (SELECT COUNT(*) FROM commands \
                       WHERE instance = $1 AND taken_by IS NULL \
                       AND created_at > clock_timestamp() - $5 * interval '1 millisecond') < $4 \
                     RETURNING id",
                )
                .bind(instance)
                .bind(kind)
                .bind(args)
                .bind(MAX_WAITING_COMMANDS)
                .bind(COMMAND_FRESH_MS),
            )
            .await?
            .into_iter()
            .next();
        Ok(row.map(|(id,)| id))
    }

    /// Writes what a command answered, for the node that asked.
    pub async fn answer_command(&self, id: i64, answer: &str) -> Result<(), StoreError> {
        self.pool
            .execute(
                Stmt::new("UPDATE commands SET answer = $2 WHERE id = $1")
                    .bind(id)
                    .bind(answer),
            )
            .await?;
        Ok(())
    }

    /// Who took a command and what it answered, so far.
    pub async fn command_progress(&self, id: i64) -> Result<CommandProgress, StoreError> {
        let row: Option<(Option<String>, Option<String>)> = self
            .pool
            .fetch_all(Stmt::new("SELECT taken_by, answer FROM commands WHERE id = $1").bind(id))
            .await?
            .into_iter()
            .next();
        let (taken_by, answer) = row.unwrap_or_default();
        Ok(CommandProgress { taken_by, answer })
    }

    /// Deletes commands older than an hour: the table holds at most what
    /// the API accepted in the last hour.
    pub async fn prune_commands(&self) -> Result<(), StoreError> {
        self.pool
            .execute(
                Stmt::new(
                    "DELETE FROM commands \
                     WHERE created_at < clock_timestamp() - $1 * interval '1 millisecond'",
                )
                .bind(COMMAND_KEPT_MS),
            )
            .await?;
        Ok(())
    }

    /// Takes the fresh commands waiting for the instances `node` drives,
    /// oldest first.
    pub async fn take_commands(
        &self,
        node: &str,
        instances: &[String],
    ) -> Result<Vec<TakenCommand>, StoreError> {
        if instances.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "UPDATE commands SET taken_by = $1, taken_at = clock_timestamp() \
             WHERE taken_by IS NULL AND {} \
             AND created_at > clock_timestamp() - $3 * interval '1 millisecond' \
             RETURNING id, instance, kind, args",
            self.pool.dialect().in_list("instance", 2)
        );
        let mut rows: Vec<TakenCommand> = self
            .pool
            .fetch_all(
                Stmt::new(sql)
                    .bind(node)
                    .bind(instances)
                    .bind(COMMAND_FRESH_MS),
            )
            .await?;
        rows.sort_by_key(|command| command.id);
        Ok(rows)
    }
}
