-- Machine mail and trust: the class of each message, what bounces and
-- complaints said about a contact's address, and the record a message from a
-- stranger would have joined.

ALTER TABLE messages ADD COLUMN class TEXT NOT NULL DEFAULT 'normal';
ALTER TABLE contacts ADD COLUMN bounced_at TEXT;
ALTER TABLE contacts ADD COLUMN bounce_status TEXT;
ALTER TABLE contacts ADD COLUMN complained_at TEXT;
ALTER TABLE records ADD COLUMN related_record_id BLOB REFERENCES records(id);
ALTER TABLE inbound ADD COLUMN released BOOLEAN NOT NULL DEFAULT FALSE;
