//! What is SQLite's own (the zero-setup default, one file in WAL mode):
//! opening the file, binding arguments (lists as JSON arrays, read with
//! `json_each`), the events insert (chunked multi-row `VALUES`) and which
//! result codes mean what. Everything else is shared (see `db.rs`).

use std::{path::Path, str::FromStr, time::Duration};

use anyhow::Context;
use sqlx::{
    error::BoxDynError,
    sqlite::{SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
    Arguments, QueryBuilder, Sqlite, SqliteConnection, SqlitePool,
};

use super::{
    commit::EventRow,
    db::{bind_all, pool_options, Arg, List},
    error::Class,
    rows::to_micros,
};

/// Rows per multi-row INSERT: full chunks reuse one cached prepared statement,
/// and 6 columns × 256 rows stays far below SQLite's parameter limit.
const INSERT_CHUNK: usize = 256;

pub(super) async fn connect_file(path: &Path, max_connections: u32) -> anyhow::Result<SqlitePool> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    connect_with(options, max_connections)
        .await
        .with_context(|| format!("while opening the SQLite database {}", path.display()))
}

pub(super) async fn connect_url(url: &str, max_connections: u32) -> anyhow::Result<SqlitePool> {
    let options = SqliteConnectOptions::from_str(url)
        .context("database.url is not a valid sqlite: URL")?
        .create_if_missing(true);
    connect_with(options, max_connections).await
}

async fn connect_with(
    options: SqliteConnectOptions,
    max_connections: u32,
) -> anyhow::Result<SqlitePool> {
    let options = options
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a commit is on disk before the writer reports it, which is
        // what "durable before visible" promises, even across power loss.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true);
    let pool = pool_options(max_connections).connect_with(options).await?;
    sqlx::migrate!("./migrations/sqlite")
        .run(&pool)
        .await
        .context("while running the SQLite migrations")?;
    Ok(pool)
}

/// Binds arguments in order; a list becomes JSON text, which the SQL reads
/// with `json_each` (see `Dialect`).
pub(super) fn arguments(args: Vec<Arg<'_>>) -> Result<SqliteArguments, BoxDynError> {
    bind_all(args, |out: &mut SqliteArguments, list| match list {
        List::Text(v) => out.add(serde_json::to_string(&v)?),
        List::Int(v) => out.add(serde_json::to_string(&v)?),
    })
}

/// Inserts a batch's events in multi-row statements of [`INSERT_CHUNK`] rows.
pub(super) async fn insert_events(
    conn: &mut SqliteConnection,
    rows: &[EventRow<'_>],
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(INSERT_CHUNK) {
        let mut sql = QueryBuilder::<Sqlite>::new(
            "INSERT INTO events (id, instance, seq, topic, ts_us, data) ",
        );
        sql.push_values(chunk, |mut values, row| {
            values
                .push_bind(row.id)
                .push_bind(row.event.instance.as_str().to_owned())
                .push_bind(row.seq)
                .push_bind(row.event.topic.code())
                .push_bind(to_micros(row.event.timestamp))
                .push_bind(row.event.data.get().to_owned());
        });
        sql.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Sorts an extended result code by its primary code, the low byte (see
/// the table in `error.rs`).
pub(super) fn class_of(code: i32) -> Class {
    match code & 0xff {
        // BUSY, LOCKED, NOMEM, READONLY, INTERRUPT, IOERR, FULL, CANTOPEN,
        // PROTOCOL: the file or the machine is in trouble, not the data.
        5 | 6 | 7 | 8 | 9 | 10 | 13 | 14 | 15 => Class::Unavailable,
        // TOOBIG, MISMATCH: this value will never be stored.
        18 | 20 => Class::Rejected,
        // CORRUPT, NOTADB, a constraint other than a unique key, ...
        _ => Class::Internal,
    }
}
