//! Store errors, sorted by what the caller should do about them.
//!
//! Every `sqlx::Error` is classified once, here, and keeps its source:
//!
//! | class | what happened | the caller should | HTTP |
//! | --- | --- | --- | --- |
//! | [`Unavailable`](StoreError::Unavailable) | no connection, I/O, the server shutting down or out of resources, a lock or serialization conflict | retry later | 503 + `Retry-After` |
//! | [`Conflict`](StoreError::Conflict) | a unique key is taken | pick another | 409 |
//! | [`NotFound`](StoreError::NotFound) | the row a change refers to is gone | stop asking | 404 |
//! | [`Rejected`](StoreError::Rejected) | the database refuses a value of this job (text with U+0000 on PostgreSQL, a value too large) | fix the request | 400 |
//! | [`Internal`](StoreError::Internal) | a bug or an unreadable row | nothing; it is logged | 500 |
//! | [`Fenced`](StoreError::Fenced) | a driver's write after its node lost the instance's lease | stop the driver | 503 |
//!
//! Which database codes fall in which class is backend knowledge, so the
//! tables are in `postgres.rs` and `sqlite.rs` ([`Class`] is their answer).
//! Only `Unavailable` (and `Closed`) fail a whole batch of the log writer;
//! the others belong to one job (see `commit.rs`).

use std::{error::Error, sync::Arc};

use super::{postgres, sqlite};

/// The error a store failure came from, shared (not copied) when one
/// failed batch answers many callers.
pub type Cause = Arc<dyn Error + Send + Sync + 'static>;

/// Why a store operation failed, sorted by what the caller should do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached, is shutting down, or is out of
    /// resources; the same request should succeed later.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// A unique key is already taken.
    #[error("{0}")]
    Conflict(String),
    /// The row a change refers to does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The database refuses a value of this job: the request carries
    /// something that cannot be stored, and sending it again will not help.
    /// `message` is the database's own description, without the value.
    #[error("the database cannot store a value of this request: {message}")]
    Rejected {
        message: String,
        #[source]
        source: Cause,
    },
    /// A bug or corrupt data: the caller cannot fix it, and retrying does
    /// not help. Logged with its source chain; clients only hear
    /// "internal error".
    #[error("{context}: {source}")]
    Internal {
        context: String,
        #[source]
        source: Cause,
    },
    /// The event log writer has stopped (the server is shutting down).
    #[error("the event log is shut down")]
    Closed,
    /// The job carried a [`Fence`](super::Fence) that no longer holds: this
    /// node lost the instance's lease, so its driver must stop (invariant
    /// 3). Nothing of the job was written.
    #[error("fenced: {0}")]
    Fenced(String),
}

/// Which class a database error code belongs to (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    Unavailable,
    Rejected,
    Internal,
}

impl StoreError {
    /// Whether the database itself (or the writer) is failing rather than
    /// this one operation: only then does a batch fail for every job in it.
    pub fn is_outage(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Closed)
    }

    /// The error and every source under it on one line (`a: b: c`), for
    /// logs. Database errors carry the server's message, never the values
    /// that were bound to the statement.
    ///
    /// Written out rather than `anyhow`'s `{:#}` because our messages (and
    /// sqlx's) already quote their immediate cause, so every `%err` log line
    /// says what happened; a source whose text is already there is skipped
    /// instead of repeated.
    pub fn report(&self) -> String {
        let mut text = self.to_string();
        let mut next = Error::source(self);
        while let Some(err) = next {
            let message = err.to_string();
            if !text.contains(&message) {
                text.push_str(": ");
                text.push_str(&message);
            }
            next = err.source();
        }
        text
    }

    /// A row that was stored but cannot be read back as what it should be.
    pub(super) fn corrupt(
        context: String,
        source: impl Into<Box<dyn Error + Send + Sync + 'static>>,
    ) -> StoreError {
        StoreError::Internal {
            context,
            source: Arc::from(source.into()),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        let class = match &err {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Class::Unavailable,
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                return StoreError::Conflict(db.message().to_owned());
            }
            sqlx::Error::Database(db) => {
                if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                    postgres::class_of(pg.code())
                } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    let code = db.code().and_then(|code| code.parse().ok()).unwrap_or(0);
                    sqlite::class_of(code)
                } else {
                    Class::Internal
                }
            }
            // Decoding, encoding, a missing row or column, a protocol
            // surprise: our bug or corrupt data, not an outage.
            _ => Class::Internal,
        };
        match class {
            Class::Unavailable => StoreError::Unavailable(Arc::new(err)),
            Class::Rejected => StoreError::Rejected {
                message: err
                    .as_database_error()
                    .map_or_else(|| err.to_string(), |db| db.message().to_owned()),
                source: Arc::new(err),
            },
            Class::Internal => StoreError::Internal {
                context: "a database operation failed".into(),
                source: Arc::new(err),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_outages_and_decode_failures_are_not() {
        let io = StoreError::from(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert!(matches!(io, StoreError::Unavailable(_)), "{io:?}");
        assert!(io.is_outage());
        assert!(StoreError::from(sqlx::Error::PoolTimedOut).is_outage());

        let decode = StoreError::from(sqlx::Error::ColumnDecode {
            index: "3".into(),
            source: "not a number".into(),
        });
        assert!(matches!(decode, StoreError::Internal { .. }), "{decode:?}");
        assert!(!decode.is_outage());
    }

    #[test]
    fn a_report_carries_the_source_chain() {
        let err = StoreError::corrupt("event 7 is unreadable".into(), "unknown topic 99");
        assert_eq!(err.report(), "event 7 is unreadable: unknown topic 99");
        let io = StoreError::from(sqlx::Error::Io(std::io::Error::other("socket closed")));
        assert_eq!(
            io.report(),
            "the database is unavailable: error communicating with database: socket closed"
        );
        // Every log line that prints only the error still names the cause.
        assert!(io.to_string().contains("socket closed"), "{io}");
    }
}
