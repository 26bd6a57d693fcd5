-- Modem state that must survive a restart, beside the outbox and the log.

-- Every part of an outgoing message the modem accepted, with the message
-- reference (TP-MR) the network's status report will carry.
CREATE TABLE outbox_parts (
    message_id TEXT NOT NULL,
    instance   TEXT NOT NULL,
    part       BIGINT NOT NULL,
    total      BIGINT NOT NULL,
    reference  BIGINT NOT NULL,
    recipient  TEXT NOT NULL,
    -- sent, delivered or failed
    status     TEXT NOT NULL,
    sent_us    BIGINT NOT NULL,
    PRIMARY KEY (message_id, part)
);
CREATE INDEX outbox_parts_reference ON outbox_parts (instance, reference, sent_us);

-- Parts of inbound multipart messages received so far: a restart in the
-- middle of a long message loses nothing.
CREATE TABLE inbox_parts (
    instance    TEXT NOT NULL,
    sender      TEXT NOT NULL,
    reference   BIGINT NOT NULL,
    total       BIGINT NOT NULL,
    sequence    BIGINT NOT NULL,
    content     TEXT NOT NULL,
    -- The service centre time stamp, Unix seconds.
    sent_at     BIGINT NOT NULL,
    received_us BIGINT NOT NULL,
    PRIMARY KEY (instance, sender, reference, total, sequence)
);

-- Digests of inbound PDUs already committed, so one read again (the
-- server stopped between the commit and the delete from modem storage) is
-- deleted instead of delivered twice. Old rows are pruned as new ones come.
CREATE TABLE inbox_seen (
    instance TEXT NOT NULL,
    digest   TEXT NOT NULL,
    seen_us  BIGINT NOT NULL,
    PRIMARY KEY (instance, digest)
);
CREATE INDEX inbox_seen_age ON inbox_seen (seen_us);
