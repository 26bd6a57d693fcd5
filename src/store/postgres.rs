//! What is PostgreSQL's own: connecting, binding arguments (lists as
//! arrays), the events insert (one `UNNEST` of arrays per batch) and which
//! SQLSTATEs mean what. Everything else is shared (see `db.rs`).

use anyhow::Context;
use sqlx::{
    error::BoxDynError,
    postgres::{PgArguments, PgConnectOptions},
    Arguments, PgConnection, PgPool,
};

use super::{
    commit::EventRow,
    db::{bind_all, pool_options, Arg, List},
    error::Class,
    rows::to_micros,
};

pub(super) async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url
        .parse()
        .context("database.url is not a valid PostgreSQL URL")?;
    // A node paused or cut off in the middle of a transaction (holding the
    // log head, or a lease row) must not stop every other node's commits
    // for longer than this: the server ends such a session. Our own
    // transactions never sit idle between statements.
    let options = options.options([("idle_in_transaction_session_timeout", "5000")]);
    let pool = pool_options(max_connections)
        .connect_with(options)
        .await
        .context("while connecting to PostgreSQL (is it running, and is database.url right?)")?;
    sqlx::migrate!("./migrations/postgres")
        .run(&pool)
        .await
        .context("while running the PostgreSQL migrations")?;
    Ok(pool)
}

/// Binds arguments in order; a list becomes an array (`text[]`, `bigint[]`).
pub(super) fn arguments(args: Vec<Arg<'_>>) -> Result<PgArguments, BoxDynError> {
    bind_all(args, |out: &mut PgArguments, list| match list {
        List::Text(v) => out.add(v),
        List::Int(v) => out.add(v),
    })
}

/// Inserts a batch's events as one statement over six arrays: one round
/// trip however large the batch.
pub(super) async fn insert_events(
    conn: &mut PgConnection,
    rows: &[EventRow<'_>],
) -> Result<(), sqlx::Error> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let instances: Vec<&str> = rows.iter().map(|r| r.event.instance.as_str()).collect();
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
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
    .bind(&seqs)
    .bind(&topics)
    .bind(&ts)
    .bind(&data)
    .execute(conn)
    .await?;
    Ok(())
}

/// Sorts a SQLSTATE (see the table in `error.rs`).
pub(super) fn class_of(sqlstate: &str) -> Class {
    match sqlstate.get(..2).unwrap_or("") {
        // Connection exception, insufficient resources (disk full, too many
        // connections), operator intervention (shutdown, crash, a cancelled
        // statement), system error (I/O), and transaction rollback
        // (serialization failure, deadlock): the next attempt can succeed.
        "08" | "53" | "57" | "58" | "40" => Class::Unavailable,
        // A lock not available, or a standby that cannot write (during a
        // failover).
        _ if sqlstate == "55P03" || sqlstate == "25006" => Class::Unavailable,
        // Data exception (U+0000 in text, a number out of range, bad
        // encoding) and program limit exceeded (a value too large for an
        // index): this value will never be stored.
        "22" | "54" => Class::Rejected,
        _ => Class::Internal,
    }
}
