-- Pools: a name that stands for several instances. A text sent to a pool
-- waits in the outbox under the pool's name (instance = the pool, pool =
-- the pool) until a member's claim rewrites its instance to that member.

CREATE TABLE pools (
    name       TEXT PRIMARY KEY,
    -- The strategy, members, prefix rules and throttle as one JSON document
    -- (domain::PoolSpec), replaced whole by an update.
    spec       TEXT NOT NULL,
    -- Round robin: the position in the member list whose turn it is,
    -- advanced by the claim that takes a turn.
    cursor     INTEGER NOT NULL DEFAULT 0,
    -- When that turn began (microseconds since the epoch): a turn not
    -- taken within a grace period passes to whichever member claims.
    turn_us    INTEGER NOT NULL DEFAULT 0,
    created_us INTEGER NOT NULL
);

-- The pool a message was sent to; NULL: sent to an instance.
ALTER TABLE outbox ADD COLUMN pool TEXT;
CREATE INDEX outbox_pool ON outbox (pool, instance, status);

-- Whether each instance's modem is connected, as its last connection
-- event said: written in the same job as that event, so every node (and
-- every member's claim) reads the same answer.
CREATE TABLE member_health (
    instance   TEXT PRIMARY KEY,
    healthy    BOOLEAN NOT NULL,
    updated_us INTEGER NOT NULL
);
