-- A claim picks the next texts from two partial indexes (store/outbox.rs
-- `due_ids`): waiting texts with no sendAt, keyed in send order, and
-- waiting scheduled ones, keyed by their time, so texts scheduled for later
-- are never walked to find the ones due. Only waiting rows are in them, and
-- `claimed_us` is in their condition rather than their key: PostgreSQL
-- does not read an index in order past an `IS NULL` key column.
CREATE INDEX outbox_next_unscheduled ON outbox (instance, priority DESC, created_us, id)
    WHERE status = 'queued' AND claimed_us IS NULL AND send_at_us = 0;
CREATE INDEX outbox_next_scheduled ON outbox (instance, send_at_us)
    WHERE status = 'queued' AND claimed_us IS NULL AND send_at_us > 0;
