-- The event log and the tables beside it (SQLite).

-- The newest id handed out. The batch transaction advances this row while it
-- holds SQLite's single write lock, so ids follow commit order.
CREATE TABLE log_head (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    last_id   BIGINT NOT NULL
);
INSERT INTO log_head (singleton, last_id) VALUES (TRUE, 0);

-- The newest seq of each instance. Kept apart from the events so that
-- retention (or deleting an instance) never makes a seq repeat.
CREATE TABLE instance_seq (
    instance TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);

CREATE TABLE events (
    id       INTEGER PRIMARY KEY,
    instance TEXT NOT NULL,
    seq      BIGINT NOT NULL,
    -- The event's topic (src/event/filter.rs Topic); the kind follows from it.
    topic    SMALLINT NOT NULL,
    -- When it happened, microseconds since the Unix epoch.
    ts_us    BIGINT NOT NULL,
    -- The event's `data` as JSON text, served verbatim.
    data     TEXT NOT NULL
);
CREATE UNIQUE INDEX events_instance_seq ON events (instance, seq);
CREATE INDEX events_instance_id ON events (instance, id);

CREATE TABLE instances (
    name       TEXT PRIMARY KEY,
    id         TEXT NOT NULL,
    driver     TEXT NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    enabled    BOOLEAN NOT NULL,
    ws_enabled BOOLEAN NOT NULL DEFAULT TRUE,
    -- A topic mask; NULL means every topic.
    ws_events  BIGINT,
    created_us BIGINT NOT NULL
);

-- Outgoing messages, committed before the API answers.
CREATE TABLE outbox (
    id         TEXT PRIMARY KEY,
    instance   TEXT NOT NULL,
    recipient  TEXT NOT NULL,
    body       TEXT NOT NULL,
    status     TEXT NOT NULL,
    error      TEXT,
    created_us BIGINT NOT NULL,
    updated_us BIGINT NOT NULL
);
CREATE INDEX outbox_instance_status ON outbox (instance, status, created_us);

-- Broadcast groups: a send to one goes to each member.
CREATE TABLE groups (
    instance   TEXT NOT NULL,
    id         TEXT NOT NULL,
    name       TEXT NOT NULL,
    owner      TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    PRIMARY KEY (instance, id)
);

-- One row per member, so concurrent adds and removes cannot lose each other.
CREATE TABLE group_members (
    instance TEXT NOT NULL,
    group_id TEXT NOT NULL,
    member   TEXT NOT NULL,
    PRIMARY KEY (instance, group_id, member)
);
