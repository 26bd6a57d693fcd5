//! The SQLite backend: the zero-setup default, one file in WAL mode.

use std::{collections::HashMap, path::Path, str::FromStr, time::Duration};

use anyhow::Context;
use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    Acquire, QueryBuilder, Row, Sqlite, SqlitePool, Transaction,
};

use super::{
    assign, driver_json, event_from_row, expect_one, groups_from_rows, headers_json,
    inbound_part_from_row, instance_from_row, instances_in, opt_i64, outbox_from_row,
    part_from_row, to_micros, Batch, Change, EventRow, Job, LogQuery, StoreError, ACQUIRE_TIMEOUT,
};
use crate::{
    domain::InstanceName,
    event::Event,
    store::{
        GroupRow, InboundPartRow, InstanceRow, OutboxRow, PartRow, WebhookTuple,
        INBOX_SEEN_RETENTION,
    },
};

/// Rows per multi-row INSERT: full chunks reuse one cached prepared statement,
/// and 6 columns × 256 rows stays far below SQLite's parameter limit.
const INSERT_CHUNK: usize = 256;

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn connect_file(path: &Path, max_connections: u32) -> anyhow::Result<SqliteStore> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        Self::connect_with(options, max_connections)
            .await
            .with_context(|| format!("while opening the SQLite database {}", path.display()))
    }

    pub async fn connect_url(url: &str, max_connections: u32) -> anyhow::Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)
            .context("database.url is not a valid sqlite: URL")?
            .create_if_missing(true);
        Self::connect_with(options, max_connections).await
    }

    async fn connect_with(
        options: SqliteConnectOptions,
        max_connections: u32,
    ) -> anyhow::Result<SqliteStore> {
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before the writer reports it, which is
            // what "durable before visible" promises, even across power loss.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .context("while running the SQLite migrations")?;
        Ok(SqliteStore { pool })
    }

    pub async fn commit(&self, jobs: &[Job]) -> Result<Batch, StoreError> {
        // IMMEDIATE takes the write lock now rather than on the first write, so
        // the head read below cannot go stale.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut last_id: i64 = sqlx::query_scalar("SELECT last_id FROM log_head WHERE singleton")
            .fetch_one(&mut *tx)
            .await?;
        let names = instances_in(jobs);
        let mut seqs: HashMap<InstanceName, i64> = HashMap::with_capacity(names.len());
        if !names.is_empty() {
            let mut query = QueryBuilder::new(
                "SELECT instance, last_seq FROM instance_seq WHERE instance IN (",
            );
            let mut list = query.separated(", ");
            for name in &names {
                list.push_bind(name.as_str().to_owned());
            }
            query.push(")");
            for row in query.build().fetch_all(&mut *tx).await? {
                let name: String = row.try_get(0)?;
                if let Ok(name) = InstanceName::parse(&name) {
                    seqs.insert(name, row.try_get(1)?);
                }
            }
        }

        let mut outcomes = Vec::with_capacity(jobs.len());
        for job in jobs {
            if job.changes.is_empty() {
                outcomes.push(Ok(Vec::with_capacity(job.events.len())));
                continue;
            }
            let mut savepoint = tx.begin().await?;
            match apply_changes(&mut savepoint, &job.changes).await {
                Ok(()) => {
                    savepoint.commit().await?;
                    outcomes.push(Ok(Vec::with_capacity(job.events.len())));
                }
                Err(err @ (StoreError::Conflict(_) | StoreError::NotFound(_))) => {
                    savepoint.rollback().await?;
                    outcomes.push(Err(err));
                }
                Err(err) => return Err(err),
            }
        }

        let first_id = last_id;
        let rows = assign(jobs, &mut outcomes, &mut last_id, &mut seqs);
        for chunk in rows.chunks(INSERT_CHUNK) {
            insert_events(&mut tx, chunk).await?;
        }
        if last_id != first_id {
            sqlx::query("UPDATE log_head SET last_id = ? WHERE singleton")
                .bind(last_id)
                .execute(&mut *tx)
                .await?;
            for (name, seq) in &seqs {
                sqlx::query(
                    "INSERT INTO instance_seq (instance, last_seq) VALUES (?, ?) \
                     ON CONFLICT (instance) DO UPDATE SET last_seq = excluded.last_seq",
                )
                .bind(name.as_str())
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;

        let events = rows
            .into_iter()
            .map(|r| Event {
                id: r.id,
                seq: r.seq,
                instance: r.event.instance.clone(),
                topic: r.event.topic,
                timestamp: r.event.timestamp,
                data: r.event.data.clone(),
            })
            .collect();
        Ok(Batch {
            outcomes,
            events,
            previous_head: first_id,
        })
    }

    pub async fn read_events(&self, query: &LogQuery) -> Result<Vec<Event>, StoreError> {
        let mut sql = QueryBuilder::<Sqlite>::new(
            "SELECT id, instance, seq, topic, ts_us, data FROM events WHERE id > ",
        );
        sql.push_bind(query.after_id);
        if let Some(instances) = &query.instances {
            if instances.is_empty() {
                return Ok(Vec::new());
            }
            sql.push(" AND instance IN (");
            let mut list = sql.separated(", ");
            for name in instances {
                list.push_bind(name.as_str().to_owned());
            }
            sql.push(")");
        }
        let topics: Vec<i16> = query.topics.topics().map(|t| t.code()).collect();
        if topics.is_empty() {
            return Ok(Vec::new());
        }
        // Topic codes are small integers of our own: written inline, they keep
        // the statement text (and so the cached statement) per topic set.
        let topic_list: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        sql.push(format!(" AND topic IN ({})", topic_list.join(",")));
        sql.push(" ORDER BY id LIMIT ");
        sql.push_bind(query.limit);
        let rows = sql.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(event_from_row).collect()
    }

    pub async fn head(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT last_id FROM log_head WHERE singleton")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub async fn load_instances(&self) -> Result<Vec<InstanceRow>, StoreError> {
        let rows = sqlx::query_as(
            "SELECT name, id, driver, key_hash, enabled, ws_enabled, ws_events, created_us, \
                    retention_age_secs, retention_events \
             FROM instances ORDER BY created_us, name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(instance_from_row).collect()
    }

    pub async fn queued_messages(
        &self,
        instance: &InstanceName,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = sqlx::query_as(
            "SELECT id, instance, recipient, body, status, error, created_us FROM outbox \
             WHERE instance = ? AND status = 'queued' ORDER BY created_us, id LIMIT ?",
        )
        .bind(instance.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(outbox_from_row).collect()
    }

    pub async fn message_parts(&self, message_id: &str) -> Result<Vec<PartRow>, StoreError> {
        let rows = sqlx::query_as(
            "SELECT message_id, instance, part, total, reference, recipient, status, sent_us \
             FROM outbox_parts WHERE message_id = ? ORDER BY part",
        )
        .bind(message_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(part_from_row).collect()
    }

    pub async fn parts_awaiting_report(
        &self,
        instance: &InstanceName,
        reference: u32,
    ) -> Result<Vec<PartRow>, StoreError> {
        let rows = sqlx::query_as(
            "SELECT message_id, instance, part, total, reference, recipient, status, sent_us \
             FROM outbox_parts WHERE instance = ? AND reference = ? AND status = 'sent' \
             ORDER BY sent_us DESC LIMIT 16",
        )
        .bind(instance.as_str())
        .bind(i64::from(reference))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(part_from_row).collect()
    }

    pub async fn inbound_parts(
        &self,
        instance: &InstanceName,
    ) -> Result<Vec<InboundPartRow>, StoreError> {
        let rows = sqlx::query_as(
            "SELECT instance, sender, reference, total, sequence, content, sent_at, received_us, \
             raw FROM inbox_parts WHERE instance = ? \
             ORDER BY sender, reference, total, sequence",
        )
        .bind(instance.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(inbound_part_from_row).collect()
    }

    pub async fn groups(&self, instance: &InstanceName) -> Result<Vec<GroupRow>, StoreError> {
        let groups = sqlx::query_as(
            "SELECT id, name, owner, created_us FROM groups \
             WHERE instance = ? ORDER BY created_us, id",
        )
        .bind(instance.as_str())
        .fetch_all(&self.pool)
        .await?;
        let members = sqlx::query_as(
            "SELECT group_id, member FROM group_members WHERE instance = ? \
             ORDER BY group_id, member",
        )
        .bind(instance.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(groups_from_rows(instance, groups, members))
    }

    pub async fn prune(
        &self,
        instance: &InstanceName,
        older_than_us: Option<i64>,
        keep_events: Option<i64>,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let last_seq: Option<i64> =
            sqlx::query_scalar("SELECT last_seq FROM instance_seq WHERE instance = ?")
                .bind(instance.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let below_seq = keep_events
            .zip(last_seq)
            .map(|(keep, last)| last - keep + 1);
        let condition =
            "instance = ?1 AND ((?2 IS NOT NULL AND ts_us < ?2) OR (?3 IS NOT NULL AND seq < ?3))";
        let deleted: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT max(id) FROM events WHERE {condition}"
        )))
        .bind(instance.as_str())
        .bind(older_than_us)
        .bind(below_seq)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(horizon) = deleted {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM events WHERE {condition}"
            )))
            .bind(instance.as_str())
            .bind(older_than_us)
            .bind(below_seq)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO retention_horizon (instance, pruned_through) VALUES (?, ?) \
                 ON CONFLICT (instance) DO UPDATE \
                 SET pruned_through = max(pruned_through, excluded.pruned_through)",
            )
            .bind(instance.as_str())
            .bind(horizon)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }

    pub async fn horizons(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT instance, pruned_through FROM retention_horizon")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn webhooks(&self) -> Result<Vec<WebhookTuple>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT instance, url, headers, events, enabled, cursor, created_us FROM webhooks",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn set_webhook_cursor(
        &self,
        instance: &InstanceName,
        cursor: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE webhooks SET cursor = max(cursor, ?) WHERE instance = ?")
            .bind(cursor)
            .bind(instance.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn insert_events(
    tx: &mut Transaction<'_, Sqlite>,
    rows: &[EventRow<'_>],
) -> Result<(), StoreError> {
    let mut sql =
        QueryBuilder::<Sqlite>::new("INSERT INTO events (id, instance, seq, topic, ts_us, data) ");
    sql.push_values(rows, |mut values, row| {
        values
            .push_bind(row.id)
            .push_bind(row.event.instance.as_str().to_owned())
            .push_bind(row.seq)
            .push_bind(row.event.topic.code())
            .push_bind(to_micros(row.event.timestamp))
            .push_bind(row.event.data.get().to_owned());
    });
    sql.build().execute(&mut **tx).await?;
    Ok(())
}

async fn apply_changes(
    tx: &mut Transaction<'_, Sqlite>,
    changes: &[Change],
) -> Result<(), StoreError> {
    let now = to_micros(chrono::Utc::now());
    for change in changes {
        match change {
            Change::CreateInstance(row) => {
                sqlx::query(
                    "INSERT INTO instances \
                     (name, id, driver, key_hash, enabled, ws_enabled, ws_events, created_us, \
                      retention_age_secs, retention_events) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(row.name.as_str())
                .bind(row.id.to_string())
                .bind(driver_json(&row.driver))
                .bind(&row.key_hash)
                .bind(row.enabled)
                .bind(row.websocket.enabled)
                .bind(row.websocket.events.map(|t| i64::from(t.bits())))
                .bind(to_micros(row.created_at))
                .bind(opt_i64(row.retention.max_age_secs))
                .bind(opt_i64(row.retention.max_events))
                .execute(&mut **tx)
                .await
                .map_err(|e| match StoreError::from(e) {
                    StoreError::Conflict(_) => {
                        StoreError::Conflict(format!("instance '{}' already exists", row.name))
                    }
                    other => other,
                })?;
            }
            Change::DeleteInstance(name) => {
                let deleted = sqlx::query("DELETE FROM instances WHERE name = ?")
                    .bind(name.as_str())
                    .execute(&mut **tx)
                    .await?;
                if deleted.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("instance '{name}' not found")));
                }
                for sql in [
                    "DELETE FROM outbox WHERE instance = ?",
                    "DELETE FROM groups WHERE instance = ?",
                    "DELETE FROM group_members WHERE instance = ?",
                    "DELETE FROM webhooks WHERE instance = ?",
                    "DELETE FROM retention_horizon WHERE instance = ?",
                    "DELETE FROM events WHERE instance = ?",
                    "DELETE FROM outbox_parts WHERE instance = ?",
                    "DELETE FROM inbox_parts WHERE instance = ?",
                    "DELETE FROM inbox_seen WHERE instance = ?",
                ] {
                    sqlx::query(sql)
                        .bind(name.as_str())
                        .execute(&mut **tx)
                        .await?;
                }
            }
            Change::SetEnabled { name, enabled } => {
                expect_one(
                    sqlx::query("UPDATE instances SET enabled = ? WHERE name = ?")
                        .bind(enabled)
                        .bind(name.as_str())
                        .execute(&mut **tx)
                        .await?
                        .rows_affected(),
                    || format!("instance '{name}' not found"),
                )?;
            }
            Change::SetWebsocket { name, settings } => {
                expect_one(
                    sqlx::query(
                        "UPDATE instances SET ws_enabled = ?, ws_events = ? WHERE name = ?",
                    )
                    .bind(settings.enabled)
                    .bind(settings.events.map(|t| i64::from(t.bits())))
                    .bind(name.as_str())
                    .execute(&mut **tx)
                    .await?
                    .rows_affected(),
                    || format!("instance '{name}' not found"),
                )?;
            }
            Change::EnqueueMessage(row) => {
                sqlx::query(
                    "INSERT INTO outbox \
                     (id, instance, recipient, body, status, error, created_us, updated_us) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                )
                .bind(&row.id)
                .bind(row.instance.as_str())
                .bind(&row.recipient)
                .bind(&row.body)
                .bind(row.status.as_str())
                .bind(&row.error)
                .bind(to_micros(row.created_at))
                .execute(&mut **tx)
                .await?;
            }
            Change::SetMessageStatus { id, status, error } => {
                expect_one(
                    sqlx::query(
                        "UPDATE outbox SET status = ?, error = ?, updated_us = ? WHERE id = ?",
                    )
                    .bind(status.as_str())
                    .bind(error)
                    .bind(now)
                    .bind(id)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected(),
                    || format!("message '{id}' not found"),
                )?;
            }
            Change::RecordPartSent(row) => {
                sqlx::query(
                    "INSERT INTO outbox_parts \
                     (message_id, instance, part, total, reference, recipient, status, sent_us) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (message_id, part) DO UPDATE SET reference = excluded.reference, \
                     status = excluded.status, sent_us = excluded.sent_us",
                )
                .bind(&row.message_id)
                .bind(row.instance.as_str())
                .bind(i64::from(row.part))
                .bind(i64::from(row.total))
                .bind(i64::from(row.reference))
                .bind(&row.recipient)
                .bind(row.status.as_str())
                .bind(to_micros(row.sent_at))
                .execute(&mut **tx)
                .await?;
            }
            Change::SetPartStatus {
                message_id,
                part,
                status,
            } => {
                expect_one(
                    sqlx::query(
                        "UPDATE outbox_parts SET status = ? WHERE message_id = ? AND part = ?",
                    )
                    .bind(status.as_str())
                    .bind(message_id)
                    .bind(i64::from(*part))
                    .execute(&mut **tx)
                    .await?
                    .rows_affected(),
                    || format!("part {part} of message '{message_id}' not found"),
                )?;
            }
            Change::StoreInboundPart(row) => {
                sqlx::query(
                    "INSERT INTO inbox_parts \
                     (instance, sender, reference, total, sequence, content, sent_at, received_us, \
                     raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                )
                .bind(row.instance.as_str())
                .bind(&row.sender)
                .bind(i64::from(row.reference))
                .bind(i64::from(row.total))
                .bind(i64::from(row.sequence))
                .bind(&row.content)
                .bind(row.sent_at)
                .bind(to_micros(row.received_at))
                .bind(&row.raw)
                .execute(&mut **tx)
                .await?;
            }
            Change::DeleteInboundParts {
                instance,
                sender,
                reference,
                total,
            } => {
                sqlx::query(
                    "DELETE FROM inbox_parts WHERE instance = ? AND sender = ? \
                     AND reference = ? AND total = ?",
                )
                .bind(instance.as_str())
                .bind(sender)
                .bind(i64::from(*reference))
                .bind(i64::from(*total))
                .execute(&mut **tx)
                .await?;
            }
            Change::MarkInboundSeen { instance, digest } => {
                sqlx::query("DELETE FROM inbox_seen WHERE seen_us < ?")
                    .bind(now - INBOX_SEEN_RETENTION.as_micros() as i64)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("INSERT INTO inbox_seen (instance, digest, seen_us) VALUES (?, ?, ?)")
                    .bind(instance.as_str())
                    .bind(digest)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
            }
            Change::SetRetention { name, retention } => {
                expect_one(
                    sqlx::query(
                        "UPDATE instances SET retention_age_secs = ?, retention_events = ? \
                         WHERE name = ?",
                    )
                    .bind(opt_i64(retention.max_age_secs))
                    .bind(opt_i64(retention.max_events))
                    .bind(name.as_str())
                    .execute(&mut **tx)
                    .await?
                    .rows_affected(),
                    || format!("instance '{name}' not found"),
                )?;
            }
            Change::SetWebhook { webhook } => {
                sqlx::query(
                    "INSERT INTO webhooks (instance, url, headers, events, enabled, cursor, created_us) \
                     VALUES (?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (instance) DO UPDATE SET url = excluded.url, \
                     headers = excluded.headers, events = excluded.events, enabled = excluded.enabled",
                )
                .bind(webhook.instance.as_str())
                .bind(&webhook.url)
                .bind(headers_json(&webhook.headers))
                .bind(webhook.events.map(|t| i64::from(t.bits())))
                .bind(webhook.enabled)
                .bind(webhook.cursor)
                .bind(to_micros(webhook.created_at))
                .execute(&mut **tx)
                .await?;
            }
            Change::CreateGroup(row) => {
                sqlx::query(
                    "INSERT INTO groups (instance, id, name, owner, created_us) \
                     VALUES (?, ?, ?, ?, ?)",
                )
                .bind(row.instance.as_str())
                .bind(&row.id)
                .bind(&row.name)
                .bind(&row.owner)
                .bind(to_micros(row.created_at))
                .execute(&mut **tx)
                .await?;
                add_members(tx, &row.instance, &row.id, &row.participants).await?;
            }
            Change::AddGroupMembers {
                instance,
                id,
                members,
            } => {
                group_exists(tx, instance, id).await?;
                add_members(tx, instance, id, members).await?;
            }
            Change::RemoveGroupMembers {
                instance,
                id,
                members,
            } => {
                group_exists(tx, instance, id).await?;
                for member in members {
                    sqlx::query(
                        "DELETE FROM group_members \
                         WHERE instance = ? AND group_id = ? AND member = ?",
                    )
                    .bind(instance.as_str())
                    .bind(id)
                    .bind(member)
                    .execute(&mut **tx)
                    .await?;
                }
            }
        }
    }
    Ok(())
}

async fn group_exists(
    tx: &mut Transaction<'_, Sqlite>,
    instance: &InstanceName,
    id: &str,
) -> Result<(), StoreError> {
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM groups WHERE instance = ? AND id = ?")
            .bind(instance.as_str())
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
    found
        .map(|_| ())
        .ok_or_else(|| StoreError::NotFound(format!("group '{id}' not found")))
}

async fn add_members(
    tx: &mut Transaction<'_, Sqlite>,
    instance: &InstanceName,
    id: &str,
    members: &[String],
) -> Result<(), StoreError> {
    for member in members {
        sqlx::query(
            "INSERT INTO group_members (instance, group_id, member) VALUES (?, ?, ?) \
             ON CONFLICT DO NOTHING",
        )
        .bind(instance.as_str())
        .bind(id)
        .bind(member)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
