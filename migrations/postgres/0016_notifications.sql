-- Notifications to people go out through the outbox like replies: the
-- outbox gets a kind, and its id no longer has to be a message's (a
-- notification is not a message of the record).
ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_id_fkey;
ALTER TABLE outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'reply'
    CHECK (kind IN ('reply', 'notification'));

CREATE OR REPLACE FUNCTION emailin_sent_event() RETURNS TRIGGER AS $$
BEGIN
    IF NEW.status = 'sent' AND OLD.status <> 'sent' AND NEW.kind = 'reply' THEN
        PERFORM emailin_event('message.sent', NEW.record_id, NEW.id);
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

-- A user can turn off mail about their records and mentions.
ALTER TABLE users ADD COLUMN notify BOOLEAN NOT NULL DEFAULT TRUE;
