-- A cluster of nodes on one PostgreSQL (src/cluster/).

-- One row per node: its heartbeat says it is alive. A node deletes its own
-- row when it shuts down gracefully.
CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,
    -- What to show for reaching it (cluster.advertise_url); may be empty.
    address      TEXT NOT NULL,
    version      TEXT NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL
);

-- Who may drive an instance (or deliver a webhook: `webhook:<instance>`).
-- `token` grows by one on every new acquisition and never goes back: every
-- write a driver makes checks (node, token) in its own transaction, so a
-- node that lost the lease cannot write. Times come from the database's
-- clock only, never a node's.
CREATE TABLE leases (
    instance   TEXT PRIMARY KEY,
    node       TEXT NOT NULL,
    token      BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

-- The node an instance must run on (a serial port lives on one host);
-- NULL: any live node.
ALTER TABLE instances ADD COLUMN node TEXT;

-- Lifecycle commands (connect, restart, logout) asked of a node that does
-- not drive the instance, for the node that does. The owner marks a
-- command taken when it runs it; commands not taken soon are ignored, and
-- old rows are pruned.
CREATE TABLE commands (
    id         BIGSERIAL PRIMARY KEY,
    instance   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    taken_by   TEXT,
    taken_at   TIMESTAMPTZ
);
CREATE INDEX commands_waiting ON commands (instance) WHERE taken_by IS NULL;
