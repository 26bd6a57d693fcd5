//! What each [`Change`] writes: the state beside the log, written once for
//! both backends. It runs inside the job's savepoint (see `commit.rs`), so a
//! change that fails undoes the job's earlier changes and no other job's.

use super::{
    db::{Dialect, Stmt, Tx},
    pools,
    rows::{driver_json, headers_json, opt_i64, settings_json, to_micros, topic_mask},
    Change, StoreError, INBOX_SEEN_RETENTION,
};
use crate::domain::InstanceName;

fn not_found(rows: u64, what: impl FnOnce() -> String) -> Result<(), StoreError> {
    if rows == 0 {
        Err(StoreError::NotFound(what()))
    } else {
        Ok(())
    }
}

/// Applies one job's changes, in order; the first that fails stops the
/// job (its savepoint is then rolled back by the caller).
pub(super) async fn apply_changes(tx: &mut Tx<'_>, changes: &[Change]) -> Result<(), StoreError> {
    let dialect = tx.dialect();
    let now = to_micros(chrono::Utc::now());
    for change in changes {
        match change {
            Change::CreateInstance(row) => {
                // Pools and instances share one namespace (see `pools.rs`).
                pools::refuse_pool_name(tx, &row.name).await?;
                tx.execute(
                    Stmt::new(
                        "INSERT INTO instances \
                         (name, id, driver, key_hash, enabled, ws_enabled, ws_events, created_us, \
                          retention_age_secs, retention_events, node) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
                    .bind(opt_i64(row.retention.max_events))
                    .bind(row.node.as_deref()),
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
                pools::remove_member(tx, name).await?;
                // A driver still running somewhere under the old lease is
                // fenced out at once: its token is stale from now on.
                tx.execute(
                    Stmt::new("UPDATE leases SET token = token + 1 WHERE instance = $1")
                        .bind(name.as_str()),
                )
                .await?;
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
                tx.execute(
                    Stmt::new("DELETE FROM member_health WHERE instance = $1").bind(name.as_str()),
                )
                .await?;
            }
            Change::CreatePool { .. }
            | Change::UpdatePool { .. }
            | Change::DeletePool(_)
            | Change::SetHealth { .. } => pools::apply(tx, change).await?,
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
                         (id, instance, recipient, body, status, error, created_us, updated_us, \
                          priority, send_at_us, valid_until_us, pool) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10, $11)",
                    )
                    .bind(&row.id)
                    .bind(row.instance.as_str())
                    .bind(&row.recipient)
                    .bind(&row.body)
                    .bind(row.status.as_str())
                    .bind(&row.error)
                    .bind(to_micros(row.created_at))
                    .bind(i64::from(row.schedule.priority))
                    .bind(row.schedule.send_at.map_or(0, to_micros))
                    .bind(row.schedule.valid_until.map(to_micros))
                    .bind(row.pool.as_ref().map(|p| p.as_str())),
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
            Change::SettleWaiting {
                instance,
                id,
                status,
            } => {
                // Conditional on the row still waiting, in one statement:
                // a driver's claim is conditional the same way, so of a
                // cancel and a claim exactly one changes the row.
                let settled = tx
                    .execute(
                        Stmt::new(
                            "UPDATE outbox SET status = $3, updated_us = $4 \
                             WHERE id = $1 AND instance = $2 AND status = 'queued' \
                             AND claimed_us IS NULL",
                        )
                        .bind(id)
                        .bind(instance.as_str())
                        .bind(status.as_str())
                        .bind(now),
                    )
                    .await?;
                if settled == 0 {
                    let found: Option<(String,)> = tx
                        .fetch_optional(
                            Stmt::new("SELECT status FROM outbox WHERE id = $1 AND instance = $2")
                                .bind(id)
                                .bind(instance.as_str()),
                        )
                        .await?;
                    return Err(match found {
                        None => StoreError::NotFound(format!(
                            "instance '{instance}' has no message '{id}'"
                        )),
                        Some((current,)) if current == "queued" => StoreError::Conflict(format!(
                            "message '{id}' is being sent: a driver took it, and a part may have gone out"
                        )),
                        Some((current,)) => {
                            StoreError::Conflict(format!("message '{id}' is already {current}"))
                        }
                    });
                }
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
                          received_us, raw) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
                    )
                    .bind(row.instance.as_str())
                    .bind(&row.sender)
                    .bind(row.reference)
                    .bind(row.total)
                    .bind(row.sequence)
                    .bind(&row.content)
                    .bind(row.sent_at)
                    .bind(to_micros(row.received_at))
                    .bind(&row.raw),
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
            Change::SetInstanceSettings { name, settings } => {
                let updated = tx
                    .execute(
                        Stmt::new("UPDATE instances SET settings = $2 WHERE name = $1")
                            .bind(name.as_str())
                            .bind(settings_json(settings)),
                    )
                    .await?;
                not_found(updated, || format!("instance '{name}' not found"))?;
            }
            Change::SetWebhook { webhook } => {
                tx.execute(
                    Stmt::new(
                        "INSERT INTO webhooks \
                         (instance, url, headers, events, enabled, cursor, created_us, secret, \
                          stopped) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                         ON CONFLICT (instance) DO UPDATE SET url = excluded.url, \
                         headers = excluded.headers, events = excluded.events, \
                         enabled = excluded.enabled, secret = excluded.secret, \
                         stopped = excluded.stopped",
                    )
                    .bind(webhook.instance.as_str())
                    .bind(&webhook.url)
                    .bind(headers_json(&webhook.headers))
                    .bind(topic_mask(webhook.events))
                    .bind(webhook.enabled)
                    .bind(webhook.cursor)
                    .bind(to_micros(webhook.created_at))
                    .bind(webhook.secret.as_ref().map(|s| s.expose()))
                    .bind(&webhook.stopped),
                )
                .await?;
            }
            Change::CreateGroup {
                group: row,
                max_groups,
            } => {
                let (groups,): (i64,) = tx
                    .fetch_one(
                        Stmt::new("SELECT COUNT(*) FROM groups WHERE instance = $1")
                            .bind(row.instance.as_str()),
                    )
                    .await?;
                if groups >= i64::try_from(*max_groups).unwrap_or(i64::MAX) {
                    return Err(StoreError::Conflict(format!(
                        "instance '{}' already has its maximum of {max_groups} groups \
                         (limits.max_groups_per_instance)",
                        row.instance
                    )));
                }
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
                max_members,
            } => {
                group_exists(tx, instance, id).await?;
                add_members(tx, dialect, instance, id, members).await?;
                // Every commit holds the log head's lock (see commit.rs), so
                // this count sees every member another node added.
                let (count,): (i64,) = tx
                    .fetch_one(
                        Stmt::new(
                            "SELECT COUNT(*) FROM group_members WHERE instance = $1 AND group_id = $2",
                        )
                        .bind(instance.as_str())
                        .bind(id),
                    )
                    .await?;
                if count > i64::try_from(*max_members).unwrap_or(i64::MAX) {
                    return Err(StoreError::Conflict(format!(
                        "group '{id}' would have {count} members, more than its maximum of \
                         {max_members} (limits.max_group_members)"
                    )));
                }
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
