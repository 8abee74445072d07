-- Machine mail: the class of each message, and what bounces and complaints
-- said about a contact's address.

ALTER TABLE messages ADD COLUMN class TEXT NOT NULL DEFAULT 'normal';
ALTER TABLE contacts ADD COLUMN bounced_at TEXT;
ALTER TABLE contacts ADD COLUMN bounce_status TEXT;
ALTER TABLE contacts ADD COLUMN complained_at TEXT;
