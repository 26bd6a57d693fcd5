-- The cluster tables (see the PostgreSQL migration). The embedded database
-- is single-node (a lock on the data directory), so these stay empty: they
-- exist so both backends have one schema.

CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,
    address      TEXT NOT NULL,
    version      TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL
);

CREATE TABLE leases (
    instance   TEXT PRIMARY KEY,
    node       TEXT NOT NULL,
    token      BIGINT NOT NULL,
    expires_at TEXT NOT NULL
);

-- The node an instance must run on; NULL: any node.
ALTER TABLE instances ADD COLUMN node TEXT;

CREATE TABLE commands (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    instance   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    taken_by   TEXT,
    taken_at   TEXT
);
