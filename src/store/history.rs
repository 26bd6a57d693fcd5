//! Reading messages back: an instance's `message` events newest first, and
//! the outbox rows behind its outgoing ones (`GET /message/find`,
//! `GET /message/{instance}/{id}`).

use super::{
    db::Stmt,
    rows::{event_from_row, outbox_from_row, OUTBOX_COLUMNS},
    OutboxRow, Store, StoreError,
};
use crate::{
    domain::{InstanceName, TopicSet},
    event::Event,
};

/// Which of an instance's events [`Store::events_before`] reads.
#[derive(Debug, Clone)]
pub struct BackwardQuery {
    pub instance: InstanceName,
    pub topics: TopicSet,
    /// Only events with a smaller id (`i64::MAX`: from the newest).
    pub before_id: i64,
    /// Only events at or after this time (microseconds since the epoch).
    pub from_us: i64,
    /// Only events before this time.
    pub to_us: i64,
    pub limit: i64,
}

impl Store {
    /// One instance's events of the given topics, newest first: the
    /// `(instance, id)` index serves it from the newest end.
    pub async fn events_before(&self, query: &BackwardQuery) -> Result<Vec<Event>, StoreError> {
        if query.topics.is_empty() || query.limit <= 0 {
            return Ok(Vec::new());
        }
        let sql = "SELECT id, instance, seq, topic, ts_us, data FROM events \
                   WHERE instance = $1 AND id < $2 AND (($3 >> topic) & 1) = 1 \
                   AND ts_us >= $4 AND ts_us < $5 ORDER BY id DESC LIMIT $6";
        let stmt = Stmt::new(sql)
            .bind(query.instance.as_str())
            .bind(query.before_id)
            .bind(i64::from(query.topics.bits()))
            .bind(query.from_us)
            .bind(query.to_us)
            .bind(query.limit);
        self.read(stmt, event_from_row).await
    }

    /// The instance's outbox rows with these ids (in no particular order;
    /// ids it does not have are left out).
    pub async fn messages_by_id(
        &self,
        instance: &InstanceName,
        ids: &[&str],
    ) -> Result<Vec<OutboxRow>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE instance = $1 AND {}",
            self.pool.dialect().in_list("id", 2)
        );
        let stmt = Stmt::new(sql).bind(instance.as_str()).bind(ids.to_vec());
        self.read(stmt, outbox_from_row).await
    }
}
