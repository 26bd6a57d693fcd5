//! The PostgreSQL backend.

use std::{collections::HashMap, time::Duration};

use anyhow::Context;
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    Acquire, PgPool, Postgres, Row, Transaction,
};

use super::{
    assign, driver_json, event_from_row, expect_one, groups_from_rows, headers_json,
    inbound_part_from_row, instance_from_row, instances_in, opt_i64, outbox_from_row,
    part_from_row, to_micros, Batch, Change, Job, LogQuery, StoreError, ACQUIRE_TIMEOUT,
};
use crate::{
    domain::InstanceName,
    event::Event,
    store::{
        GroupRow, InboundPartRow, InstanceRow, OutboxRow, PartRow, WebhookTuple,
        INBOX_SEEN_RETENTION,
    },
};

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgStore> {
        let options: PgConnectOptions = url
            .parse()
            .context("database.url is not a valid PostgreSQL URL")?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .context(
                "while connecting to PostgreSQL (is it running, and is database.url right?)",
            )?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .context("while running the PostgreSQL migrations")?;
        Ok(PgStore { pool })
    }

    pub async fn commit(&self, jobs: &[Job]) -> Result<Batch, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Lock the head first: a second writer (another node) waits here until
        // this transaction commits, so ids follow commit order.
        let mut last_id: i64 =
            sqlx::query_scalar("SELECT last_id FROM log_head WHERE singleton FOR UPDATE")
                .fetch_one(&mut *tx)
                .await?;
        let names = instances_in(jobs);
        let name_strs: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
        let mut seqs: HashMap<InstanceName, i64> = HashMap::with_capacity(names.len());
        let rows = sqlx::query(
            "SELECT instance, last_seq FROM instance_seq WHERE instance = ANY($1) FOR UPDATE",
        )
        .bind(&name_strs)
        .fetch_all(&mut *tx)
        .await?;
        for row in rows {
            let name: String = row.try_get(0)?;
            if let Ok(name) = InstanceName::parse(&name) {
                seqs.insert(name, row.try_get(1)?);
            }
        }

        let mut outcomes = Vec::with_capacity(jobs.len());
        for job in jobs {
            if job.changes.is_empty() {
                outcomes.push(Ok(Vec::with_capacity(job.events.len())));
                continue;
            }
            // A savepoint per job with changes, so one job's conflict does not
            // fail the others in the batch.
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
        if !rows.is_empty() {
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            let instances: Vec<&str> = rows.iter().map(|r| r.event.instance.as_str()).collect();
            let seq_col: Vec<i64> = rows.iter().map(|r| r.seq).collect();
            let topics: Vec<i16> = rows.iter().map(|r| r.event.topic.code()).collect();
            let ts: Vec<i64> = rows.iter().map(|r| to_micros(r.event.timestamp)).collect();
            let data: Vec<&str> = rows.iter().map(|r| r.event.data.get()).collect();
            sqlx::query(
                "INSERT INTO events (id, instance, seq, topic, ts_us, data) \
                 SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], \
                                      $4::smallint[], $5::bigint[], $6::text[])",
            )
            .bind(&ids)
            .bind(&instances)
            .bind(&seq_col)
            .bind(&topics)
            .bind(&ts)
            .bind(&data)
            .execute(&mut *tx)
            .await?;
        }
        if last_id != first_id {
            sqlx::query("UPDATE log_head SET last_id = $1 WHERE singleton")
                .bind(last_id)
                .execute(&mut *tx)
                .await?;
            // `seqs` holds only this batch's instances; writing back one whose
            // job failed rewrites the value it already had.
            let seq_names: Vec<&str> = seqs.keys().map(|n| n.as_str()).collect();
            let seq_values: Vec<i64> = seqs.values().copied().collect();
            sqlx::query(
                "INSERT INTO instance_seq (instance, last_seq) \
                 SELECT * FROM UNNEST($1::text[], $2::bigint[]) \
                 ON CONFLICT (instance) DO UPDATE SET last_seq = EXCLUDED.last_seq",
            )
            .bind(&seq_names)
            .bind(&seq_values)
            .execute(&mut *tx)
            .await?;
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
        let instances: Option<Vec<&str>> = query
            .instances
            .as_ref()
            .map(|names| names.iter().map(|n| n.as_str()).collect());
        let topics: Vec<i16> = query.topics.topics().map(|t| t.code()).collect();
        let rows = sqlx::query_as(
            "SELECT id, instance, seq, topic, ts_us, data FROM events \
             WHERE id > $1 AND ($2::text[] IS NULL OR instance = ANY($2)) \
               AND topic = ANY($3) \
             ORDER BY id LIMIT $4",
        )
        .bind(query.after_id)
        .bind(instances)
        .bind(&topics)
        .bind(query.limit)
        .fetch_all(&self.pool)
        .await?;
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
             WHERE instance = $1 AND status = 'queued' ORDER BY created_us, id LIMIT $2",
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
             FROM outbox_parts WHERE message_id = $1 ORDER BY part",
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
             FROM outbox_parts WHERE instance = $1 AND reference = $2 AND status = 'sent' \
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
             raw FROM inbox_parts WHERE instance = $1 \
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
             WHERE instance = $1 ORDER BY created_us, id",
        )
        .bind(instance.as_str())
        .fetch_all(&self.pool)
        .await?;
        let members = sqlx::query_as(
            "SELECT group_id, member FROM group_members WHERE instance = $1 \
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
        let mut tx = self.pool.begin().await?;
        let last_seq: Option<i64> =
            sqlx::query_scalar("SELECT last_seq FROM instance_seq WHERE instance = $1")
                .bind(instance.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let below_seq = keep_events
            .zip(last_seq)
            .map(|(keep, last)| last - keep + 1);
        let deleted: Option<i64> = sqlx::query_scalar(
            "WITH doomed AS (DELETE FROM events WHERE instance = $1 \
               AND (($2::bigint IS NOT NULL AND ts_us < $2) OR ($3::bigint IS NOT NULL AND seq < $3)) \
               RETURNING id) \
             SELECT max(id) FROM doomed",
        )
        .bind(instance.as_str())
        .bind(older_than_us)
        .bind(below_seq)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(horizon) = deleted {
            sqlx::query(
                "INSERT INTO retention_horizon (instance, pruned_through) VALUES ($1, $2) \
                 ON CONFLICT (instance) DO UPDATE \
                 SET pruned_through = GREATEST(retention_horizon.pruned_through, EXCLUDED.pruned_through)",
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
        sqlx::query("UPDATE webhooks SET cursor = GREATEST(cursor, $2) WHERE instance = $1")
            .bind(instance.as_str())
            .bind(cursor)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        tokio::time::timeout(
            Duration::from_secs(2),
            sqlx::query("SELECT 1").execute(&self.pool),
        )
        .await
        .map_err(|_| StoreError::Unavailable("no answer within 2 s".into()))??;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn apply_changes(
    tx: &mut Transaction<'_, Postgres>,
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
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
                let deleted = sqlx::query("DELETE FROM instances WHERE name = $1")
                    .bind(name.as_str())
                    .execute(&mut **tx)
                    .await?;
                if deleted.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("instance '{name}' not found")));
                }
                for sql in [
                    "DELETE FROM outbox WHERE instance = $1",
                    "DELETE FROM groups WHERE instance = $1",
                    "DELETE FROM group_members WHERE instance = $1",
                    "DELETE FROM webhooks WHERE instance = $1",
                    "DELETE FROM retention_horizon WHERE instance = $1",
                    "DELETE FROM events WHERE instance = $1",
                    "DELETE FROM outbox_parts WHERE instance = $1",
                    "DELETE FROM inbox_parts WHERE instance = $1",
                    "DELETE FROM inbox_seen WHERE instance = $1",
                ] {
                    sqlx::query(sql)
                        .bind(name.as_str())
                        .execute(&mut **tx)
                        .await?;
                }
            }
            Change::SetEnabled { name, enabled } => {
                expect_one(
                    sqlx::query("UPDATE instances SET enabled = $2 WHERE name = $1")
                        .bind(name.as_str())
                        .bind(enabled)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected(),
                    || format!("instance '{name}' not found"),
                )?;
            }
            Change::SetWebsocket { name, settings } => {
                expect_one(
                    sqlx::query(
                        "UPDATE instances SET ws_enabled = $2, ws_events = $3 WHERE name = $1",
                    )
                    .bind(name.as_str())
                    .bind(settings.enabled)
                    .bind(settings.events.map(|t| i64::from(t.bits())))
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
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
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
                        "UPDATE outbox SET status = $2, error = $3, updated_us = $4 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(status.as_str())
                    .bind(error)
                    .bind(now)
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
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
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
                        "UPDATE outbox_parts SET status = $1 WHERE message_id = $2 AND part = $3",
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
                     raw) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
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
                    "DELETE FROM inbox_parts WHERE instance = $1 AND sender = $2 \
                     AND reference = $3 AND total = $4",
                )
                .bind(instance.as_str())
                .bind(sender)
                .bind(i64::from(*reference))
                .bind(i64::from(*total))
                .execute(&mut **tx)
                .await?;
            }
            Change::MarkInboundSeen { instance, digest } => {
                sqlx::query("DELETE FROM inbox_seen WHERE seen_us < $1")
                    .bind(now - INBOX_SEEN_RETENTION.as_micros() as i64)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO inbox_seen (instance, digest, seen_us) VALUES ($1, $2, $3)",
                )
                .bind(instance.as_str())
                .bind(digest)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            }
            Change::SetRetention { name, retention } => {
                expect_one(
                    sqlx::query(
                        "UPDATE instances SET retention_age_secs = $2, retention_events = $3 \
                         WHERE name = $1",
                    )
                    .bind(name.as_str())
                    .bind(opt_i64(retention.max_age_secs))
                    .bind(opt_i64(retention.max_events))
                    .execute(&mut **tx)
                    .await?
                    .rows_affected(),
                    || format!("instance '{name}' not found"),
                )?;
            }
            Change::SetWebhook { webhook } => {
                sqlx::query(
                    "INSERT INTO webhooks (instance, url, headers, events, enabled, cursor, created_us) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (instance) DO UPDATE SET url = EXCLUDED.url, \
                     headers = EXCLUDED.headers, events = EXCLUDED.events, enabled = EXCLUDED.enabled",
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
                     VALUES ($1, $2, $3, $4, $5)",
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
                sqlx::query(
                    "DELETE FROM group_members \
                     WHERE instance = $1 AND group_id = $2 AND member = ANY($3)",
                )
                .bind(instance.as_str())
                .bind(id)
                .bind(members)
                .execute(&mut **tx)
                .await?;
            }
        }
    }
    Ok(())
}

async fn group_exists(
    tx: &mut Transaction<'_, Postgres>,
    instance: &InstanceName,
    id: &str,
) -> Result<(), StoreError> {
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM groups WHERE instance = $1 AND id = $2")
            .bind(instance.as_str())
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
    found
        .map(|_| ())
        .ok_or_else(|| StoreError::NotFound(format!("group '{id}' not found")))
}

async fn add_members(
    tx: &mut Transaction<'_, Postgres>,
    instance: &InstanceName,
    id: &str,
    members: &[String],
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO group_members (instance, group_id, member) \
         SELECT $1, $2, m FROM UNNEST($3::text[]) AS m \
         ON CONFLICT DO NOTHING",
    )
    .bind(instance.as_str())
    .bind(id)
    .bind(members)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
