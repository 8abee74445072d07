-- A contact who asked for no more mail: replies to them need "force".
ALTER TABLE contacts ADD COLUMN unsubscribed_at TEXT;
-- A contact whose data was erased: the row stays, anonymised, for the
-- records that name it.
ALTER TABLE contacts ADD COLUMN erased_at TEXT;
-- Raw bytes removed by erasure or by the retention window: when, and why
-- (`erased` or `retention`). Asking for them then answers 410.
ALTER TABLE inbound ADD COLUMN raw_removed_at TEXT;
ALTER TABLE inbound ADD COLUMN raw_removed_why TEXT;
-- What the retention task walks: the oldest stored messages first.
CREATE INDEX inbound_received ON inbound (received_at);
