-- The parts of an inbound long message are kept undecoded too (septets or
-- UTF-16 code units, as `gsm7:<hex>` / `utf16:<hex>`), so they are joined
-- before decoding: a character a sender split between two parts (an
-- emoji's surrogate pair, a GSM-7 escape) is whole again. NULL for parts
-- stored before, which are joined as decoded text as they were.
ALTER TABLE inbox_parts ADD COLUMN raw TEXT;
