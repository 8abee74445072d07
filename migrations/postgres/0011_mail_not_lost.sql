-- What processing found out about each stored message (class, the rule that
-- decided, a detected charset, per-recipient bounce results), as JSON; and the
-- content hash of each indexed Message-ID, so a reused id with other content
-- is a new message, not a duplicate.
ALTER TABLE inbound ADD COLUMN details TEXT;
ALTER TABLE message_ids ADD COLUMN content_hash TEXT;
