-- A claim picks the next texts from two partial indexes (store/outbox.rs):
-- texts with no sendAt in send order, and scheduled ones by their time,
-- so texts scheduled for later are never walked to find the ones due.
CREATE INDEX outbox_next_unscheduled ON outbox (instance, status, claimed_us, priority DESC, created_us, id)
    WHERE send_at_us = 0;
CREATE INDEX outbox_next_scheduled ON outbox (instance, status, claimed_us, send_at_us)
    WHERE send_at_us > 0;
