-- Notifications to people go out through the outbox like replies: the
-- outbox gets a kind, and its id no longer has to be a message's (a
-- notification is not a message of the record). SQLite cannot drop a
-- constraint, so the table is rebuilt with its indexes and its trigger.
CREATE TABLE outbox_next (
    id               BLOB PRIMARY KEY,
    record_id        BLOB NOT NULL REFERENCES records(id),
    kind             TEXT NOT NULL DEFAULT 'reply' CHECK (kind IN ('reply', 'notification')),
    actor            TEXT NOT NULL,
    mail_from        TEXT NOT NULL,
    rcpt_to          TEXT NOT NULL,
    raw              BLOB NOT NULL,
    status           TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    locked_until     BIGINT NOT NULL DEFAULT 0,
    last_reply       TEXT,
    sent_at          TEXT,
    created_at       TEXT NOT NULL
);
INSERT INTO outbox_next (id, record_id, actor, mail_from, rcpt_to, raw, status, attempts,
                         next_attempt_at, locked_until, last_reply, sent_at, created_at)
SELECT id, record_id, actor, mail_from, rcpt_to, raw, status, attempts,
       next_attempt_at, locked_until, last_reply, sent_at, created_at
FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_next RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'queued';
CREATE INDEX outbox_record ON outbox (record_id);

CREATE TRIGGER event_sent AFTER UPDATE OF status ON outbox
WHEN NEW.status = 'sent' AND OLD.status <> 'sent' AND NEW.kind = 'reply'
BEGIN
    INSERT INTO event_log (kind, record_id, subject_id) VALUES ('message.sent', NEW.record_id, NEW.id);
END;

-- A user can turn off mail about their records and mentions.
ALTER TABLE users ADD COLUMN notify BOOLEAN NOT NULL DEFAULT TRUE;
