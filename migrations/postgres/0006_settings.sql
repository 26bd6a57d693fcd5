-- Per-instance settings (settings/set) and signed webhooks.

-- The instance's settings as a JSON document (rejectCall, msgCall,
-- defaultRegion, allowShortCodes, ...); NULL: every setting at its default.
-- A setting added later is one more key in the document, not a column.
ALTER TABLE instances ADD COLUMN settings TEXT;

-- The secret each delivery is signed with (HMAC-SHA256); NULL: unsigned.
ALTER TABLE webhooks ADD COLUMN secret TEXT;
-- Why deliveries stopped for good (the receiver answered 410 Gone), so a
-- restart does not knock again; NULL: delivering. Setting the webhook
-- again clears it.
ALTER TABLE webhooks ADD COLUMN stopped TEXT;
