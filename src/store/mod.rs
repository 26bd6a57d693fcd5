//! The durable event log and the tables beside it, on PostgreSQL or SQLite.
//!
//! Nothing is appended except through the [`log::EventLog`] writer, which
//! batches jobs from every instance into one transaction. A job is a list of
//! events plus the state [`Change`]s they describe (a queued message and its
//! `delivery: queued` event, an instance row and its `instance: created`
//! event), so a change and its event always commit together or not at all.
//!
//! # Layout
//!
//! The store is written once; only what truly differs is per backend.
//!
//! - `mod.rs` (here): [`Store`], connecting and every read, written once.
//! - `commit.rs`: committing a batch, written once. **Invariant 2 lives
//!   there**: the batch transaction locks the log head row before it
//!   assigns ids (so ids increase in commit order across writers) and takes
//!   seqs from the locked `instance_seq` rows (so they have no gaps); a
//!   savepoint per job with changes makes one job's failure that job's
//!   alone.
//! - `changes.rs`: what each [`Change`] writes, written once.
//! - `cluster.rs`: node heartbeats, leases and the [`Fence`] a driver's
//!   jobs carry (checked by `commit.rs` in the batch's transaction).
//! - `outbox.rs`: the send loop's queries (claim the next message, find
//!   claimed, expired and scheduled ones).
//! - `pools.rs`, `pool_claim.rs`: pools (their rows, the members' health,
//!   what a pool view counts) and a member's claim of pool messages, where
//!   the routing strategies run.
//! - `log.rs`: the batching writer; a batch that fails on one job's content
//!   is committed again with a savepoint per job, so only an outage fails
//!   every job.
//! - `db.rs`: statements (`$N` SQL plus backend-neutral arguments), the
//!   [`Dialect`](db::Dialect) fragments that differ (list parameters,
//!   `GREATEST`, row locks) and the pool/transaction wrapper, the one place
//!   that dispatches on the backend.
//! - `postgres.rs`, `sqlite.rs`: connection setup, argument binding, the
//!   events insert (the hot path, tuned per backend) and which error codes
//!   mean what.
//! - `error.rs`: [`StoreError`], sorted by what the caller should do.
//! - `model.rs`, `rows.rs`: the store's types, and rows turned into them.
//!
//! Why one wrapper enum rather than sqlx's `Any` driver or code generic over
//! `sqlx::Database`: `Any` has no arrays and decodes some types differently
//! per backend, and generic code needs a wall of higher-ranked executor
//! bounds on every function; the enum keeps each backend's native driver and
//! confines the `match` to `db.rs`.

mod changes;
mod cluster;
mod commit;
mod db;
mod error;
mod history;
pub mod log;
mod model;
mod outbox;
mod pool_claim;
mod pools;
mod postgres;
mod rows;
mod sqlite;

use std::{path::Path, time::Duration};

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};

use crate::{domain::InstanceName, event::Event};
use db::{FromEither, Pool, Stmt};
use rows::{
    event_from_row, groups_from_rows, inbound_part_from_row, instance_from_row, part_from_row,
    webhook_from_row, GroupTuple,
};

pub use cluster::{CommandProgress, Fence, LeaseRow, NodeRow, TakenCommand, MAX_WAITING_COMMANDS};
pub use commit::Isolation;
pub use error::{Cause, StoreError};
pub use history::BackwardQuery;
pub use log::{EventLog, Publish};
pub use model::*;
pub use outbox::{Claim, Held};
pub use pools::PoolStats;

/// The `outbox_parts` columns as [`rows::PartTuple`] reads them.
const SELECT_PARTS: &str = "SELECT message_id, instance, part, total, reference, recipient, \
                            status, sent_us FROM outbox_parts";

/// The `instances` columns as [`rows::InstanceTuple`] reads them.
const SELECT_INSTANCES: &str = "SELECT name, id, driver, key_hash, enabled, ws_enabled, \
                                ws_events, created_us, retention_age_secs, retention_events, \
                                settings, node FROM instances";

/// How long `/ready` waits for the database to answer.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The database behind the log: PostgreSQL or SQLite, with the same
/// behaviour.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

impl Store {
    /// Connects and runs the migrations: PostgreSQL when `url` is set,
    /// otherwise the SQLite file `<data_dir>/switchboard.db`.
    pub async fn connect(
        url: Option<&SecretString>,
        data_dir: &Path,
        max_connections: u32,
    ) -> anyhow::Result<Store> {
        let pool = match url.map(|url| url.expose_secret()) {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Pool::Postgres(postgres::connect(url, max_connections).await?)
            }
            Some(url) if url.starts_with("sqlite:") => {
                Pool::Sqlite(sqlite::connect_url(url, max_connections).await?)
            }
            Some(_) => anyhow::bail!(
                "database.url must start with postgres://, postgresql:// or sqlite: \
                 (or be empty for the embedded database)"
            ),
            None => {
                std::fs::create_dir_all(data_dir).with_context(|| {
                    format!("while creating the data directory {}", data_dir.display())
                })?;
                let path = data_dir.join("switchboard.db");
                create_private(&path)?;
                Pool::Sqlite(sqlite::connect_file(&path, max_connections).await?)
            }
        };
        Ok(Store { pool })
    }

    pub fn backend_name(&self) -> &'static str {
        match self.pool.dialect() {
            db::Dialect::Postgres => "postgres",
            db::Dialect::Sqlite => "sqlite",
        }
    }

    /// Commits a batch of jobs in one transaction. A job whose changes fail
    /// (say a name already taken) fails alone; the others commit. With
    /// [`Isolation::PerJob`] a job whose events the database refuses fails
    /// alone too.
    pub async fn commit(&self, jobs: &[Job], isolation: Isolation) -> Result<Batch, StoreError> {
        commit::commit(&self.pool, jobs, isolation).await
    }

    pub async fn read_events(&self, query: &LogQuery) -> Result<Vec<Event>, StoreError> {
        if query.topics.is_empty() || query.instances.as_ref().is_some_and(Vec::is_empty) {
            return Ok(Vec::new());
        }
        // The topic set is a bit mask with bit `code` for each topic, so one
        // statement serves every set.
        let mut sql = String::from(
            "SELECT id, instance, seq, topic, ts_us, data FROM events \
             WHERE id > $1 AND (($2 >> topic) & 1) = 1",
        );
        if query.instances.is_some() {
            sql.push_str(" AND ");
            sql.push_str(&self.pool.dialect().in_list("instance", 4));
        }
        sql.push_str(" ORDER BY id LIMIT $3");
        let mut stmt = Stmt::new(sql)
            .bind(query.after_id)
            .bind(i64::from(query.topics.bits()))
            .bind(query.limit);
        if let Some(instances) = &query.instances {
            stmt = stmt.bind(instances.iter().map(|n| n.as_str()).collect::<Vec<_>>());
        }
        self.read(stmt, event_from_row).await
    }

    /// The id of the newest committed event (0 for an empty log).
    pub async fn head(&self) -> Result<i64, StoreError> {
        let (last_id,): (i64,) = self
            .pool
            .fetch_one(Stmt::new("SELECT last_id FROM log_head WHERE singleton"))
            .await?;
        Ok(last_id)
    }

    pub async fn load_instances(&self) -> Result<Vec<InstanceRow>, StoreError> {
        let sql = format!("{SELECT_INSTANCES} ORDER BY created_us, name");
        self.read(Stmt::new(sql), instance_from_row).await
    }

    /// One stored instance, if it exists.
    pub async fn load_instance(
        &self,
        name: &InstanceName,
    ) -> Result<Option<InstanceRow>, StoreError> {
        let sql = format!("{SELECT_INSTANCES} WHERE name = $1");
        Ok(self
            .read(Stmt::new(sql).bind(name.as_str()), instance_from_row)
            .await?
            .pop())
    }

    /// The parts of an outgoing message the modem has accepted so far.
    pub async fn message_parts(&self, message_id: &str) -> Result<Vec<PartRow>, StoreError> {
        let sql = format!("{SELECT_PARTS} WHERE message_id = $1 ORDER BY part");
        self.read(Stmt::new(sql).bind(message_id), part_from_row)
            .await
    }

    /// Sent parts of one instance that carry `reference` and still wait
    /// for their report, newest first (references wrap at 256).
    pub async fn parts_awaiting_report(
        &self,
        instance: &InstanceName,
        reference: u32,
    ) -> Result<Vec<PartRow>, StoreError> {
        let sql = format!(
            "{SELECT_PARTS} WHERE instance = $1 AND reference = $2 AND status = 'sent' \
             ORDER BY sent_us DESC LIMIT 16"
        );
        let stmt = Stmt::new(sql).bind(instance.as_str()).bind(reference);
        self.read(stmt, part_from_row).await
    }

    /// Every stored part of the instance's incomplete inbound messages.
    pub async fn inbound_parts(
        &self,
        instance: &InstanceName,
    ) -> Result<Vec<InboundPartRow>, StoreError> {
        let sql = "SELECT instance, sender, reference, total, sequence, content, sent_at, \
                          received_us, raw \
                   FROM inbox_parts WHERE instance = $1 \
                   ORDER BY sender, reference, total, sequence";
        self.read(
            Stmt::new(sql).bind(instance.as_str()),
            inbound_part_from_row,
        )
        .await
    }

    pub async fn groups(&self, instance: &InstanceName) -> Result<Vec<GroupRow>, StoreError> {
        let groups: Vec<GroupTuple> = self
            .pool
            .fetch_all(
                Stmt::new(
                    "SELECT id, name, owner, created_us FROM groups \
                     WHERE instance = $1 ORDER BY created_us, id",
                )
                .bind(instance.as_str()),
            )
            .await?;
        let members: Vec<(String, String)> = self
            .pool
            .fetch_all(
                Stmt::new(
                    "SELECT group_id, member FROM group_members WHERE instance = $1 \
                     ORDER BY group_id, member",
                )
                .bind(instance.as_str()),
            )
            .await?;
        Ok(groups_from_rows(instance, groups, members))
    }

    /// Deletes an instance's events older than `older_than_us` (event time)
    /// or beyond its newest `keep_events`, and records how far it deleted.
    /// Returns the new horizon when anything was deleted.
    pub async fn prune(
        &self,
        instance: &InstanceName,
        older_than_us: Option<i64>,
        keep_events: Option<i64>,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.pool.begin_write().await?;
        let last_seq: Option<(i64,)> = tx
            .fetch_optional(
                Stmt::new("SELECT last_seq FROM instance_seq WHERE instance = $1")
                    .bind(instance.as_str()),
            )
            .await?;
        let below_seq = keep_events
            .zip(last_seq)
            .map(|(keep, (last,))| last - keep + 1);
        const DOOMED: &str = "instance = $1 \
             AND (($2 IS NOT NULL AND ts_us < $2) OR ($3 IS NOT NULL AND seq < $3))";
        let doomed = |sql: String| {
            Stmt::new(sql)
                .bind(instance.as_str())
                .bind(older_than_us)
                .bind(below_seq)
        };
        let (deleted,): (Option<i64>,) = tx
            .fetch_one(doomed(format!("SELECT max(id) FROM events WHERE {DOOMED}")))
            .await?;
        if let Some(horizon) = deleted {
            let greatest = tx.dialect().greatest();
            // Bounded by the horizon: an event committed meanwhile (with a
            // larger id) is not deleted behind the horizon's back.
            tx.execute(
                doomed(format!("DELETE FROM events WHERE {DOOMED} AND id <= $4")).bind(horizon),
            )
            .await?;
            tx.execute(
                Stmt::new(format!(
                    "INSERT INTO retention_horizon (instance, pruned_through) VALUES ($1, $2) \
                     ON CONFLICT (instance) DO UPDATE SET pruned_through = \
                     {greatest}(retention_horizon.pruned_through, excluded.pruned_through)"
                ))
                .bind(instance.as_str())
                .bind(horizon),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }

    /// How far retention has deleted, per instance.
    pub async fn horizons(&self) -> Result<Vec<(InstanceName, i64)>, StoreError> {
        let rows: Vec<(String, i64)> = self
            .pool
            .fetch_all(Stmt::new(
                "SELECT instance, pruned_through FROM retention_horizon",
            ))
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(name, id)| InstanceName::parse(&name).ok().map(|n| (n, id)))
            .collect())
    }

    pub async fn webhooks(&self) -> Result<Vec<WebhookRow>, StoreError> {
        let sql = "SELECT instance, url, headers, events, enabled, cursor, created_us, secret, \
                   stopped FROM webhooks";
        self.read(Stmt::new(sql), webhook_from_row).await
    }

    /// Records a webhook's progress (outside the log writer: it is not an
    /// event, and losing the last few updates only means sending again).
    pub async fn set_webhook_cursor(
        &self,
        instance: &InstanceName,
        cursor: i64,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE webhooks SET cursor = {}(cursor, $2) WHERE instance = $1",
            self.pool.dialect().greatest()
        );
        self.pool
            .execute(Stmt::new(sql).bind(instance.as_str()).bind(cursor))
            .await?;
        Ok(())
    }

    /// Records that a webhook's deliveries stopped for good, and why (see
    /// `webhook`); like the cursor, kept outside the log writer.
    pub async fn set_webhook_stopped(
        &self,
        instance: &InstanceName,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.pool
            .execute(
                Stmt::new("UPDATE webhooks SET stopped = $2 WHERE instance = $1")
                    .bind(instance.as_str())
                    .bind(reason),
            )
            .await?;
        Ok(())
    }

    /// Checks the database answers, for `/ready`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let answer = self.pool.fetch_one::<(i32,)>(Stmt::new("SELECT 1"));
        match tokio::time::timeout(PING_TIMEOUT, answer).await {
            Ok(result) => result.map(|_| ()),
            Err(_) => Err(StoreError::Unavailable(std::sync::Arc::new(
                std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 2 s"),
            ))),
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Runs a query and turns each row into what it stands for.
    async fn read<T: FromEither, R>(
        &self,
        stmt: Stmt<'_>,
        decode: impl Fn(T) -> Result<R, StoreError>,
    ) -> Result<Vec<R>, StoreError> {
        self.pool
            .fetch_all(stmt)
            .await?
            .into_iter()
            .map(decode)
            .collect()
    }
}

/// Creates the embedded database file readable by its owner only (it holds
/// webhook URLs and headers, which carry receivers' secrets), before SQLite
/// creates it with the process umask. SQLite gives its `-wal` and `-shm`
/// files the database file's mode. A file an earlier version created with
/// the umask's mode is made private too, with its `-wal` and `-shm`.
fn create_private(path: &Path) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => make_private(path),
        Err(err) => {
            Err(err).with_context(|| format!("while creating the database file {}", path.display()))
        }
    }
}

#[cfg(unix)]
fn make_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut files = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        files.push(name.into());
    }
    for file in files {
        let mode = match std::fs::metadata(&file) {
            Ok(meta) => meta.permissions().mode() & 0o777,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => {
                return Err(err).with_context(|| format!("while reading {}", file.display()))
            }
        };
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).with_context(
                || format!("while making {} readable by its owner only", file.display()),
            )?;
            tracing::warn!(file = %file.display(), was = format!("{mode:o}"), "the database file was readable by others; it is now 0600");
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn make_private(_: &Path) -> anyhow::Result<()> {
    Ok(())
}
