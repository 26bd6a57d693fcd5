-- The gateway: priority, scheduling, expiry and claims on the outbox, and
-- the send counters throttles and quotas are kept with.

-- Higher first (0..=9, 5 by default).
ALTER TABLE outbox ADD COLUMN priority BIGINT NOT NULL DEFAULT 5;
-- Not sent before this time (microseconds since the epoch); 0: at once.
ALTER TABLE outbox ADD COLUMN send_at_us BIGINT NOT NULL DEFAULT 0;
-- Not sent after this time: it expires instead. NULL: never expires.
ALTER TABLE outbox ADD COLUMN valid_until_us BIGINT;
-- When a driver took the message to send it. A claimed message is being
-- sent: it can no longer be cancelled or expire unsent. NULL: waiting.
ALTER TABLE outbox ADD COLUMN claimed_us BIGINT;

-- Picking the next message to send: the queued, unclaimed rows of one
-- instance in the order they go out, so the pick reads the index's first
-- entries however long the queue is.
CREATE INDEX outbox_next ON outbox (instance, status, claimed_us, priority DESC, created_us, id);

-- Messages sent per throttle window, so limits hold across restarts. A
-- window is named by its kind (minute, day, month) and its start.
CREATE TABLE send_counters (
    scope        TEXT NOT NULL,
    window_kind  TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    sent         BIGINT NOT NULL,
    PRIMARY KEY (scope, window_kind, window_start)
);
