//! One way to run SQL on either database, so the store's logic is written
//! once.
//!
//! A [`Stmt`] is SQL text with `$N` parameters plus backend-neutral
//! [`Arg`]s. Both drivers read `$N` as "argument N" (sqlx-sqlite maps
//! `$N` like PostgreSQL does), so most statements are one string for both.
//! Where the SQL truly differs, a [`Dialect`] method writes the fragment:
//! list parameters (`= ANY($n)` on a PostgreSQL array, `json_each($n)` on a
//! JSON array in SQLite), `GREATEST` versus `max`, and row locks.
//!
//! [`Pool`], [`Tx`] and [`Conn`] wrap the two drivers' pool, transaction
//! (or savepoint) and connection; `Conn` is the only place that runs a
//! statement, so the backend `match`es live here and nowhere else. Rows
//! decode into the same tuple types on both backends ([`FromEither`]).

use std::{borrow::Cow, time::Duration};

use sqlx::{
    error::BoxDynError,
    pool::{PoolConnection, PoolOptions},
    postgres::PgRow,
    sqlite::SqliteRow,
    Acquire, Arguments, AssertSqlSafe, Encode, FromRow, PgConnection, PgPool, Postgres, Sqlite,
    SqliteConnection, SqlitePool, Transaction, Type,
};

use super::{commit::EventRow, postgres, sqlite, StoreError};

/// How long to wait for a pooled connection before calling the database
/// unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// A value bound to a statement parameter, whichever the backend.
#[derive(Debug, Clone)]
pub(super) enum Arg<'a> {
    Int(i64),
    OptInt(Option<i64>),
    Bool(bool),
    Text(Cow<'a, str>),
    OptText(Option<&'a str>),
    List(List<'a>),
}

/// A list argument, read in SQL through [`Dialect::in_list`],
/// [`Dialect::each`] or [`Dialect::zip`]; each backend binds it its own way
/// (an array on PostgreSQL, JSON text on SQLite).
#[derive(Debug, Clone)]
pub(super) enum List<'a> {
    Text(Vec<&'a str>),
    Int(Vec<i64>),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<u32> for Arg<'_> {
    fn from(v: u32) -> Self {
        Arg::Int(i64::from(v))
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::OptInt(v)
    }
}

impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(Cow::Borrowed(v))
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(Cow::Borrowed(v))
    }
}

impl From<String> for Arg<'_> {
    fn from(v: String) -> Self {
        Arg::Text(Cow::Owned(v))
    }
}

impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Arg::OptText(v.as_deref())
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::OptText(v)
    }
}

impl<'a> From<Vec<&'a str>> for Arg<'a> {
    fn from(v: Vec<&'a str>) -> Self {
        Arg::List(List::Text(v))
    }
}

impl<'a> From<&'a [String]> for Arg<'a> {
    fn from(v: &'a [String]) -> Self {
        Arg::List(List::Text(v.iter().map(String::as_str).collect()))
    }
}

impl From<Vec<i64>> for Arg<'_> {
    fn from(v: Vec<i64>) -> Self {
        Arg::List(List::Int(v))
    }
}

/// A statement: SQL with `$1`, `$2`, ... and the arguments in that order.
#[derive(Debug)]
pub(super) struct Stmt<'a> {
    sql: Cow<'static, str>,
    args: Vec<Arg<'a>>,
}

impl<'a> Stmt<'a> {
    pub fn new(sql: impl Into<Cow<'static, str>>) -> Stmt<'a> {
        Stmt {
            sql: sql.into(),
            args: Vec::new(),
        }
    }

    /// Binds the next parameter.
    pub fn bind(mut self, value: impl Into<Arg<'a>>) -> Stmt<'a> {
        self.args.push(value.into());
        self
    }
}

/// Binds arguments in order onto a backend's argument buffer: the scalars
/// the same way for both, the lists through `list`, the one thing each
/// backend says itself.
pub(super) fn bind_all<'a, A>(
    args: Vec<Arg<'a>>,
    list: impl Fn(&mut A, List<'a>) -> Result<(), BoxDynError>,
) -> Result<A, BoxDynError>
where
    A: Arguments,
    i64: Encode<'a, A::Database> + Type<A::Database>,
    Option<i64>: Encode<'a, A::Database> + Type<A::Database>,
    bool: Encode<'a, A::Database> + Type<A::Database>,
    &'a str: Encode<'a, A::Database> + Type<A::Database>,
    String: Encode<'a, A::Database> + Type<A::Database>,
    Option<&'a str>: Encode<'a, A::Database> + Type<A::Database>,
{
    let mut out = A::default();
    for arg in args {
        match arg {
            Arg::Int(v) => out.add(v),
            Arg::OptInt(v) => out.add(v),
            Arg::Bool(v) => out.add(v),
            Arg::Text(Cow::Borrowed(v)) => out.add(v),
            Arg::Text(Cow::Owned(v)) => out.add(v),
            Arg::OptText(v) => out.add(v),
            Arg::List(v) => list(&mut out, v),
        }?;
    }
    Ok(out)
}

/// The SQL fragments that differ between the backends; everything else is
/// written once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// A condition: `column` is one of the list parameter `$n`'s elements.
    pub fn in_list(self, column: &str, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("{column} = ANY(${n})"),
            Dialect::Sqlite => format!("{column} IN (SELECT value FROM json_each(${n}))"),
        }
    }

    /// A table of the list parameter `$n`'s elements, in one column `value`.
    pub fn each(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("UNNEST(${n}) AS list (value)"),
            Dialect::Sqlite => format!("json_each(${n})"),
        }
    }

    /// A table of rows `(a, b)` zipped from two list parameters of the
    /// same length.
    pub fn zip(self, a: usize, b: usize) -> String {
        match self {
            Dialect::Postgres => format!("UNNEST(${a}, ${b}) AS pairs (a, b)"),
            Dialect::Sqlite => format!(
                "(SELECT x.value AS a, y.value AS b \
                  FROM json_each(${a}) AS x JOIN json_each(${b}) AS y ON x.key = y.key) AS pairs"
            ),
        }
    }

    /// The larger of two values.
    pub fn greatest(self) -> &'static str {
        match self {
            Dialect::Postgres => "GREATEST",
            Dialect::Sqlite => "max",
        }
    }

    /// What a `SELECT` of rows about to be claimed appends so that two
    /// claimers skip each other's rows instead of waiting (PostgreSQL).
    /// SQLite's write transaction is alone anyway.
    pub fn skip_locked(self) -> &'static str {
        match self {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        }
    }

    /// What a `SELECT` of a [`Pool::begin_write`] transaction appends to
    /// keep the rows it read until it commits. SQLite needs nothing: that
    /// transaction already holds the database's only write lock.
    pub fn lock_rows(self) -> &'static str {
        match self {
            Dialect::Postgres => " FOR UPDATE",
            Dialect::Sqlite => "",
        }
    }
}

/// A row type both backends decode into (tuples of `i64`, `String`,
/// `bool`, ...).
pub(super) trait FromEither:
    for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{
}

impl<T> FromEither for T where
    T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{
}

/// The pool settings both backends share: at least two connections (the
/// writer holds one for a whole batch), and a short wait for one, so a
/// request answers 503 quickly instead of hanging while the database is
/// down.
pub(super) fn pool_options<DB: sqlx::Database>(max_connections: u32) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(max_connections.max(2))
        .acquire_timeout(ACQUIRE_TIMEOUT)
}

/// A connection pool of either backend.
#[derive(Clone)]
pub(super) enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Pool {
    pub fn dialect(&self) -> Dialect {
        match self {
            Pool::Postgres(_) => Dialect::Postgres,
            Pool::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Starts a transaction that reads, then writes what it read. SQLite
    /// takes its write lock now (`BEGIN IMMEDIATE`) rather than at the
    /// first write, so nothing read can go stale; PostgreSQL locks the rows
    /// it reads instead ([`Dialect::lock_rows`]).
    pub async fn begin_write(&self) -> Result<Tx<'static>, StoreError> {
        Ok(match self {
            Pool::Postgres(pool) => Tx::Postgres(pool.begin().await?),
            Pool::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
        })
    }

    async fn acquire(&self) -> Result<Pooled, StoreError> {
        Ok(match self {
            Pool::Postgres(pool) => Pooled::Postgres(pool.acquire().await?),
            Pool::Sqlite(pool) => Pooled::Sqlite(pool.acquire().await?),
        })
    }

    pub async fn execute(&self, stmt: Stmt<'_>) -> Result<u64, StoreError> {
        self.acquire().await?.conn().execute(stmt).await
    }

    pub async fn fetch_all<T: FromEither>(&self, stmt: Stmt<'_>) -> Result<Vec<T>, StoreError> {
        self.acquire().await?.conn().fetch_all(stmt).await
    }

    pub async fn fetch_one<T: FromEither>(&self, stmt: Stmt<'_>) -> Result<T, StoreError> {
        self.acquire().await?.conn().fetch_one(stmt).await
    }

    pub async fn close(&self) {
        match self {
            Pool::Postgres(pool) => pool.close().await,
            Pool::Sqlite(pool) => pool.close().await,
        }
    }
}

/// A connection taken from a [`Pool`] for one statement.
enum Pooled {
    Postgres(PoolConnection<Postgres>),
    Sqlite(PoolConnection<Sqlite>),
}

impl Pooled {
    fn conn(&mut self) -> Conn<'_> {
        match self {
            Pooled::Postgres(conn) => Conn::Postgres(conn),
            Pooled::Sqlite(conn) => Conn::Sqlite(conn),
        }
    }
}

/// A transaction, or a savepoint inside one. Dropped without
/// [`Tx::commit`], it rolls back.
pub(super) enum Tx<'c> {
    Postgres(Transaction<'c, Postgres>),
    Sqlite(Transaction<'c, Sqlite>),
}

impl Tx<'_> {
    pub fn dialect(&self) -> Dialect {
        match self {
            Tx::Postgres(_) => Dialect::Postgres,
            Tx::Sqlite(_) => Dialect::Sqlite,
        }
    }

    fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Postgres(tx) => Conn::Postgres(tx),
            Tx::Sqlite(tx) => Conn::Sqlite(tx),
        }
    }

    /// A savepoint: what runs in it can be rolled back alone.
    pub async fn savepoint(&mut self) -> Result<Tx<'_>, StoreError> {
        Ok(match self {
            Tx::Postgres(tx) => Tx::Postgres(tx.begin().await?),
            Tx::Sqlite(tx) => Tx::Sqlite(tx.begin().await?),
        })
    }

    /// Commits the transaction, or releases the savepoint.
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Postgres(tx) => tx.commit().await?,
            Tx::Sqlite(tx) => tx.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), StoreError> {
        match self {
            Tx::Postgres(tx) => tx.rollback().await?,
            Tx::Sqlite(tx) => tx.rollback().await?,
        }
        Ok(())
    }

    /// Inserts event rows: the hot path, written per backend (arrays on
    /// PostgreSQL, multi-row `VALUES` on SQLite).
    pub async fn insert_events(&mut self, rows: &[EventRow<'_>]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        match self {
            Tx::Postgres(tx) => postgres::insert_events(tx, rows).await?,
            Tx::Sqlite(tx) => sqlite::insert_events(tx, rows).await?,
        }
        Ok(())
    }

    pub async fn execute(&mut self, stmt: Stmt<'_>) -> Result<u64, StoreError> {
        self.conn().execute(stmt).await
    }

    pub async fn fetch_all<T: FromEither>(&mut self, stmt: Stmt<'_>) -> Result<Vec<T>, StoreError> {
        self.conn().fetch_all(stmt).await
    }

    pub async fn fetch_optional<T: FromEither>(
        &mut self,
        stmt: Stmt<'_>,
    ) -> Result<Option<T>, StoreError> {
        self.conn().fetch_optional(stmt).await
    }

    pub async fn fetch_one<T: FromEither>(&mut self, stmt: Stmt<'_>) -> Result<T, StoreError> {
        self.conn().fetch_one(stmt).await
    }
}

/// A connection of either backend: where statements run.
enum Conn<'a> {
    Postgres(&'a mut PgConnection),
    Sqlite(&'a mut SqliteConnection),
}

/// Runs `$run` once per backend: `$conn` is that backend's connection,
/// `$args` the statement's arguments bound for it. The body is written
/// once and compiled for each driver's own types.
macro_rules! on_backend {
    ($self:expr, $stmt:expr, |$sql:ident, $conn:ident, $args:ident| $run:expr) => {{
        let Stmt { sql, args } = $stmt;
        let $sql = AssertSqlSafe(sql);
        match $self {
            Conn::Postgres($conn) => {
                let $args = postgres::arguments(args).map_err(sqlx::Error::Encode)?;
                $run
            }
            Conn::Sqlite($conn) => {
                let $args = sqlite::arguments(args).map_err(sqlx::Error::Encode)?;
                $run
            }
        }
    }};
}

impl Conn<'_> {
    /// Runs a statement; returns the number of rows it changed.
    async fn execute(&mut self, stmt: Stmt<'_>) -> Result<u64, StoreError> {
        Ok(on_backend!(self, stmt, |sql, conn, args| {
            sqlx::query_with(sql, args)
                .execute(&mut **conn)
                .await?
                .rows_affected()
        }))
    }

    async fn fetch_all<T: FromEither>(&mut self, stmt: Stmt<'_>) -> Result<Vec<T>, StoreError> {
        Ok(on_backend!(self, stmt, |sql, conn, args| {
            sqlx::query_as_with(sql, args)
                .fetch_all(&mut **conn)
                .await?
        }))
    }

    async fn fetch_optional<T: FromEither>(
        &mut self,
        stmt: Stmt<'_>,
    ) -> Result<Option<T>, StoreError> {
        Ok(on_backend!(self, stmt, |sql, conn, args| {
            sqlx::query_as_with(sql, args)
                .fetch_optional(&mut **conn)
                .await?
        }))
    }

    async fn fetch_one<T: FromEither>(&mut self, stmt: Stmt<'_>) -> Result<T, StoreError> {
        self.fetch_optional(stmt)
            .await?
            .ok_or_else(|| sqlx::Error::RowNotFound.into())
    }
}
