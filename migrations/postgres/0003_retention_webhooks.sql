-- Retention per instance and webhooks.

-- NULL: the server default ([retention] in the configuration).
ALTER TABLE instances ADD COLUMN retention_age_secs BIGINT;
ALTER TABLE instances ADD COLUMN retention_events BIGINT;

-- Per instance, the highest event id retention has deleted. A cursor below
-- it would have a hole, so streams refuse it with CURSOR_EXPIRED.
CREATE TABLE retention_horizon (
    instance       TEXT PRIMARY KEY,
    pruned_through BIGINT NOT NULL
);

-- One webhook per instance, delivered from the log in order.
CREATE TABLE webhooks (
    instance    TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    -- Extra request headers, a JSON object.
    headers     TEXT NOT NULL,
    -- A topic mask; NULL means every topic.
    events      BIGINT,
    enabled     BOOLEAN NOT NULL,
    -- The id of the last event delivered (or skipped by the filter).
    cursor      BIGINT NOT NULL,
    created_us  BIGINT NOT NULL
);
