//! Committing a batch of jobs: one transaction, written once for both
//! backends.
//!
//! # Invariant 2 is kept here
//!
//! The batch transaction first locks the log head row (`log_head`), then the
//! `instance_seq` rows of the batch's instances, and only then assigns ids
//! and seqs ([`Heads`]). A second writer (another node sharing one
//! PostgreSQL) waits at that lock until this transaction commits, so ids
//! increase in commit order; seqs come from the locked rows and are written
//! back in the same transaction, so they have no gaps. On PostgreSQL the
//! lock is `SELECT ... FOR UPDATE`; on SQLite the transaction starts with
//! `BEGIN IMMEDIATE`, which takes the database's single write lock
//! ([`Pool::begin_write`], [`Dialect::lock_rows`]).
//!
//! # One job's failure is that job's alone
//!
//! A job whose changes fail (a name already taken, a message gone, a value
//! the database refuses) is rolled back to its savepoint and answered with
//! that error; its events get no ids, so no id or seq is skipped. With
//! [`Isolation::Batch`] (the common case) only jobs with changes get a
//! savepoint and every event of the batch goes in with one insert. If that
//! insert fails on what a job holds, the writer (`log.rs`) commits the batch
//! again with [`Isolation::PerJob`]: every job in its own savepoint with its
//! own insert, so the one the database refuses fails alone. An outage
//! ([`StoreError::is_outage`]) fails the whole batch in either mode.

use std::collections::HashMap;

use super::{
    db::{Dialect, Pool, Stmt, Tx},
    rows::{driver_json, headers_json, opt_i64, to_micros, topic_mask},
    Batch, Change, Committed, Job, StoreError, INBOX_SEEN_RETENTION,
};
use crate::{
    domain::InstanceName,
    event::{Event, NewEvent},
};

/// How a batch uses savepoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// A savepoint for each job with changes, and one insert for all the
    /// batch's events: the fast path.
    Batch,
    /// A savepoint and an insert for every job: for a batch that failed on
    /// the content of a job it cannot point at.
    PerJob,
}

/// One event row ready to insert.
pub(super) struct EventRow<'a> {
    pub id: i64,
    pub seq: i64,
    pub event: &'a NewEvent,
}

/// The locked log head and per-instance seqs, advanced as ids are given out.
struct Heads {
    last_id: i64,
    seqs: HashMap<InstanceName, i64>,
}

impl Heads {
    /// Gives a job's events the next ids and seqs.
    fn assign<'j>(&mut self, job: &'j Job) -> Vec<EventRow<'j>> {
        job.events
            .iter()
            .map(|event| {
                self.last_id += 1;
                let seq = self.seqs.entry(event.instance.clone()).or_insert(0);
                *seq += 1;
                EventRow {
                    id: self.last_id,
                    seq: *seq,
                    event,
                }
            })
            .collect()
    }

    /// Takes back what [`Heads::assign`] just gave a job that was rolled
    /// back, so the next job gets those ids and seqs and none is skipped.
    fn take_back(&mut self, rows: &[EventRow]) {
        self.last_id -= rows.len() as i64;
        for row in rows {
            if let Some(seq) = self.seqs.get_mut(&row.event.instance) {
                *seq -= 1;
            }
        }
    }
}

pub(super) async fn commit(
    pool: &Pool,
    jobs: &[Job],
    isolation: Isolation,
) -> Result<Batch, StoreError> {
    let mut tx = pool.begin_write().await?;
    let dialect = tx.dialect();
    // Invariant 2: the head is locked before any id is assigned (module doc).
    let (previous_head,): (i64,) = tx
        .fetch_one(Stmt::new(format!(
            "SELECT last_id FROM log_head WHERE singleton{}",
            dialect.lock_rows()
        )))
        .await?;
    let mut heads = Heads {
        last_id: previous_head,
        seqs: locked_seqs(&mut tx, dialect, jobs).await?,
    };

    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut rows: Vec<EventRow> = Vec::with_capacity(jobs.iter().map(|j| j.events.len()).sum());
    for job in jobs {
        if isolation == Isolation::Batch && job.changes.is_empty() {
            let job_rows = heads.assign(job);
            outcomes.push(Ok(committed(&job_rows)));
            rows.extend(job_rows);
            continue;
        }
        let mut savepoint = tx.savepoint().await?;
        let job_rows = heads.assign(job);
        let mut result = apply_changes(&mut savepoint, &job.changes).await;
        if result.is_ok() && isolation == Isolation::PerJob {
            result = savepoint.insert_events(&job_rows).await;
        }
        match result {
            Ok(()) => {
                savepoint.commit().await?;
                outcomes.push(Ok(committed(&job_rows)));
                rows.extend(job_rows);
            }
            Err(err) if err.is_outage() => return Err(err),
            Err(err) => {
                savepoint.rollback().await?;
                heads.take_back(&job_rows);
                outcomes.push(Err(err));
            }
        }
    }
    if isolation == Isolation::Batch {
        tx.insert_events(&rows).await?;
    }

    if heads.last_id != previous_head {
        tx.execute(
            Stmt::new("UPDATE log_head SET last_id = $1 WHERE singleton").bind(heads.last_id),
        )
        .await?;
        // Instances whose only job failed keep the value they had (or get
        // no row at all).
        let (names, seqs): (Vec<&str>, Vec<i64>) = heads
            .seqs
            .iter()
            .filter(|(_, seq)| **seq > 0)
            .map(|(name, seq)| (name.as_str(), *seq))
            .unzip();
        tx.execute(
            Stmt::new(format!(
                "INSERT INTO instance_seq (instance, last_seq) SELECT a, b FROM {} WHERE true \
                 ON CONFLICT (instance) DO UPDATE SET last_seq = excluded.last_seq",
                dialect.zip(1, 2)
            ))
            .bind(names)
            .bind(seqs),
        )
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
        previous_head,
    })
}

fn committed(rows: &[EventRow]) -> Vec<Committed> {
    rows.iter()
        .map(|r| Committed {
            id: r.id,
            seq: r.seq,
        })
        .collect()
}

/// Locks and reads the seq rows of the instances the jobs' events belong to.
async fn locked_seqs(
    tx: &mut Tx<'_>,
    dialect: Dialect,
    jobs: &[Job],
) -> Result<HashMap<InstanceName, i64>, StoreError> {
    let mut names: Vec<&str> = jobs
        .iter()
        .flat_map(|j| j.events.iter().map(|e| e.instance.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut seqs = HashMap::with_capacity(names.len());
    if names.is_empty() {
        return Ok(seqs);
    }
    let rows: Vec<(String, i64)> = tx
        .fetch_all(
            Stmt::new(format!(
                "SELECT instance, last_seq FROM instance_seq WHERE {}{}",
                dialect.in_list("instance", 1),
                dialect.lock_rows()
            ))
            .bind(names),
        )
        .await?;
    for (name, seq) in rows {
        if let Ok(name) = InstanceName::parse(&name) {
            seqs.insert(name, seq);
        }
    }
    Ok(seqs)
}

fn not_found(rows: u64, what: impl FnOnce() -> String) -> Result<(), StoreError> {
    if rows == 0 {
        Err(StoreError::NotFound(what()))
    } else {
        Ok(())
    }
}

/// Applies one job's changes.
async fn apply_changes(tx: &mut Tx<'_>, changes: &[Change]) -> Result<(), StoreError> {
    let dialect = tx.dialect();
    let now = to_micros(chrono::Utc::now());
    for change in changes {
        match change {
            Change::CreateInstance(row) => {
                tx.execute(
                    Stmt::new(
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
                    .bind(topic_mask(row.websocket.events))
                    .bind(to_micros(row.created_at))
                    .bind(opt_i64(row.retention.max_age_secs))
                    .bind(opt_i64(row.retention.max_events)),
                )
                .await
                .map_err(|e| match e {
                    StoreError::Conflict(_) => {
                        StoreError::Conflict(format!("instance '{}' already exists", row.name))
                    }
                    other => other,
                })?;
            }
            Change::DeleteInstance(name) => {
                let deleted = tx
                    .execute(Stmt::new("DELETE FROM instances WHERE name = $1").bind(name.as_str()))
                    .await?;
                not_found(deleted, || format!("instance '{name}' not found"))?;
                for table in [
                    "outbox",
                    "groups",
                    "group_members",
                    "webhooks",
                    "retention_horizon",
                    "events",
                    "outbox_parts",
                    "inbox_parts",
                    "inbox_seen",
                ] {
                    let sql = format!("DELETE FROM {table} WHERE instance = $1");
                    tx.execute(Stmt::new(sql).bind(name.as_str())).await?;
                }
            }
            Change::SetEnabled { name, enabled } => {
                let updated = tx
                    .execute(
                        Stmt::new("UPDATE instances SET enabled = $2 WHERE name = $1")
                            .bind(name.as_str())
                            .bind(*enabled),
                    )
                    .await?;
                not_found(updated, || format!("instance '{name}' not found"))?;
            }
            Change::SetWebsocket { name, settings } => {
                let updated = tx
                    .execute(
                        Stmt::new(
                            "UPDATE instances SET ws_enabled = $2, ws_events = $3 WHERE name = $1",
                        )
                        .bind(name.as_str())
                        .bind(settings.enabled)
                        .bind(topic_mask(settings.events)),
                    )
                    .await?;
                not_found(updated, || format!("instance '{name}' not found"))?;
            }
            Change::EnqueueMessage(row) => {
                tx.execute(
                    Stmt::new(
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
                    .bind(to_micros(row.created_at)),
                )
                .await?;
            }
            Change::SetMessageStatus { id, status, error } => {
                let updated = tx
                    .execute(
                        Stmt::new(
                            "UPDATE outbox SET status = $2, error = $3, updated_us = $4 \
                             WHERE id = $1",
                        )
                        .bind(id)
                        .bind(status.as_str())
                        .bind(error)
                        .bind(now),
                    )
                    .await?;
                not_found(updated, || format!("message '{id}' not found"))?;
            }
            Change::RecordPartSent(row) => {
                tx.execute(
                    Stmt::new(
                        "INSERT INTO outbox_parts \
                         (message_id, instance, part, total, reference, recipient, status, sent_us) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                         ON CONFLICT (message_id, part) DO UPDATE SET \
                         reference = excluded.reference, status = excluded.status, \
                         sent_us = excluded.sent_us",
                    )
                    .bind(&row.message_id)
                    .bind(row.instance.as_str())
                    .bind(row.part)
                    .bind(row.total)
                    .bind(row.reference)
                    .bind(&row.recipient)
                    .bind(row.status.as_str())
                    .bind(to_micros(row.sent_at)),
                )
                .await?;
            }
            Change::SetPartStatus {
                message_id,
                part,
                status,
            } => {
                let updated = tx
                    .execute(
                        Stmt::new(
                            "UPDATE outbox_parts SET status = $1 WHERE message_id = $2 AND part = $3",
                        )
                        .bind(status.as_str())
                        .bind(message_id)
                        .bind(*part),
                    )
                    .await?;
                not_found(updated, || {
                    format!("part {part} of message '{message_id}' not found")
                })?;
            }
            Change::StoreInboundPart(row) => {
                tx.execute(
                    Stmt::new(
                        "INSERT INTO inbox_parts \
                         (instance, sender, reference, total, sequence, content, sent_at, \
                          received_us) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                    )
                    .bind(row.instance.as_str())
                    .bind(&row.sender)
                    .bind(row.reference)
                    .bind(row.total)
                    .bind(row.sequence)
                    .bind(&row.content)
                    .bind(row.sent_at)
                    .bind(to_micros(row.received_at)),
                )
                .await?;
            }
            Change::DeleteInboundParts {
                instance,
                sender,
                reference,
                total,
            } => {
                tx.execute(
                    Stmt::new(
                        "DELETE FROM inbox_parts WHERE instance = $1 AND sender = $2 \
                         AND reference = $3 AND total = $4",
                    )
                    .bind(instance.as_str())
                    .bind(sender)
                    .bind(*reference)
                    .bind(*total),
                )
                .await?;
            }
            Change::MarkInboundSeen { instance, digest } => {
                let expired = now - INBOX_SEEN_RETENTION.as_micros() as i64;
                tx.execute(Stmt::new("DELETE FROM inbox_seen WHERE seen_us < $1").bind(expired))
                    .await?;
                tx.execute(
                    Stmt::new(
                        "INSERT INTO inbox_seen (instance, digest, seen_us) VALUES ($1, $2, $3)",
                    )
                    .bind(instance.as_str())
                    .bind(digest)
                    .bind(now),
                )
                .await?;
            }
            Change::SetRetention { name, retention } => {
                let updated = tx
                    .execute(
                        Stmt::new(
                            "UPDATE instances SET retention_age_secs = $2, retention_events = $3 \
                             WHERE name = $1",
                        )
                        .bind(name.as_str())
                        .bind(opt_i64(retention.max_age_secs))
                        .bind(opt_i64(retention.max_events)),
                    )
                    .await?;
                not_found(updated, || format!("instance '{name}' not found"))?;
            }
            Change::SetWebhook { webhook } => {
                tx.execute(
                    Stmt::new(
                        "INSERT INTO webhooks \
                         (instance, url, headers, events, enabled, cursor, created_us) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) \
                         ON CONFLICT (instance) DO UPDATE SET url = excluded.url, \
                         headers = excluded.headers, events = excluded.events, \
                         enabled = excluded.enabled",
                    )
                    .bind(webhook.instance.as_str())
                    .bind(&webhook.url)
                    .bind(headers_json(&webhook.headers))
                    .bind(topic_mask(webhook.events))
                    .bind(webhook.enabled)
                    .bind(webhook.cursor)
                    .bind(to_micros(webhook.created_at)),
                )
                .await?;
            }
            Change::CreateGroup(row) => {
                tx.execute(
                    Stmt::new(
                        "INSERT INTO groups (instance, id, name, owner, created_us) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(row.instance.as_str())
                    .bind(&row.id)
                    .bind(&row.name)
                    .bind(&row.owner)
                    .bind(to_micros(row.created_at)),
                )
                .await?;
                add_members(tx, dialect, &row.instance, &row.id, &row.participants).await?;
            }
            Change::AddGroupMembers {
                instance,
                id,
                members,
            } => {
                group_exists(tx, instance, id).await?;
                add_members(tx, dialect, instance, id, members).await?;
            }
            Change::RemoveGroupMembers {
                instance,
                id,
                members,
            } => {
                group_exists(tx, instance, id).await?;
                let sql = format!(
                    "DELETE FROM group_members WHERE instance = $1 AND group_id = $2 AND {}",
                    dialect.in_list("member", 3)
                );
                tx.execute(
                    Stmt::new(sql)
                        .bind(instance.as_str())
                        .bind(id)
                        .bind(members.as_slice()),
                )
                .await?;
            }
        }
    }
    Ok(())
}

async fn group_exists(
    tx: &mut Tx<'_>,
    instance: &InstanceName,
    id: &str,
) -> Result<(), StoreError> {
    let found: Option<(i32,)> = tx
        .fetch_optional(
            Stmt::new("SELECT 1 FROM groups WHERE instance = $1 AND id = $2")
                .bind(instance.as_str())
                .bind(id),
        )
        .await?;
    found
        .map(|_| ())
        .ok_or_else(|| StoreError::NotFound(format!("group '{id}' not found")))
}

async fn add_members(
    tx: &mut Tx<'_>,
    dialect: Dialect,
    instance: &InstanceName,
    id: &str,
    members: &[String],
) -> Result<(), StoreError> {
    // `WHERE true` keeps SQLite from reading the upsert's ON as a join's.
    let sql = format!(
        "INSERT INTO group_members (instance, group_id, member) \
         SELECT $1, $2, value FROM {} WHERE true ON CONFLICT DO NOTHING",
        dialect.each(3)
    );
    tx.execute(
        Stmt::new(sql)
            .bind(instance.as_str())
            .bind(id)
            .bind(members),
    )
    .await?;
    Ok(())
}
