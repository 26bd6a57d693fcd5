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
//! # Invariant 3 is kept here too
//!
//! A job with a [`Fence`] (every write of a driver running under a lease)
//! is committed only if its lease still holds, checked in this transaction
//! with the lease row locked until it commits (`cluster.rs`); otherwise it
//! fails with [`StoreError::Fenced`] and writes nothing.
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
    changes::apply_changes,
    cluster::{self, Fence},
    db::{Dialect, Pool, Stmt, Tx},
    Batch, Committed, Job, StoreError,
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
    // Invariant 3: each fence is checked once per batch, in this
    // transaction, with its lease row locked until the commit.
    let mut fences: Vec<(&Fence, Result<(), StoreError>)> = Vec::new();
    for job in jobs {
        if let Some(fence) = &job.fence {
            let verdict = match fences.iter().find(|(f, _)| *f == fence) {
                Some((_, verdict)) => verdict.clone(),
                None => {
                    let verdict = cluster::check(&mut tx, fence).await;
                    if let Err(err) = &verdict {
                        if err.is_outage() {
                            return Err(err.clone());
                        }
                    }
                    fences.push((fence, verdict.clone()));
                    verdict
                }
            };
            if let Err(err) = verdict {
                outcomes.push(Err(err));
                continue;
            }
        }
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
        if dialect == Dialect::Postgres {
            // Delivered when (and only if) this commits: other nodes' tailers
            // wake up instead of waiting for their next poll.
            tx.execute(
                Stmt::new("SELECT pg_notify($1, $2)")
                    .bind(cluster::EVENTS_CHANNEL)
                    .bind(heads.last_id.to_string()),
            )
            .await?;
        }
        // Instances whose only job failed keep the value they had (or get
        // no row at all). `WHERE true` keeps SQLite from reading the
        // upsert's ON as a join's.
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
