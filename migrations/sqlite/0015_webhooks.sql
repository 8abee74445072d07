-- Events for webhooks, captured by triggers in the transaction that made
-- the change, so none is lost and each record's events keep their order.
-- The dispatcher fans each event out to the webhooks that want it
-- (webhook_deliveries) and deletes it in the same transaction.
CREATE TABLE event_log (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind           TEXT NOT NULL,
    record_id      BLOB,
    subject_id     BLOB NOT NULL,
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- A new record's first message is written before its "created" event (the
-- event refers to it), so that trigger notes both, in that order: a
-- receiver hears of the record before its messages.
CREATE TRIGGER event_record AFTER INSERT ON record_events
WHEN NEW.kind IN ('created', 'reopened', 'stage_changed')
BEGIN
    INSERT INTO event_log (kind, record_id, subject_id)
    VALUES ('record.' || NEW.kind, NEW.record_id, NEW.record_id);
    INSERT INTO event_log (kind, record_id, subject_id)
    SELECT 'message.received', NEW.record_id, NEW.message_id
    WHERE NEW.kind = 'created' AND NEW.message_id IS NOT NULL;
END;

CREATE TRIGGER event_message AFTER INSERT ON messages
WHEN NEW.direction = 'comment'
  OR (NEW.direction = 'in'
      AND EXISTS (SELECT 1 FROM record_events
                  WHERE record_id = NEW.record_id AND kind = 'created'))
BEGIN
    INSERT INTO event_log (kind, record_id, subject_id)
    VALUES (CASE NEW.direction WHEN 'in' THEN 'message.received' ELSE 'comment.created' END,
            NEW.record_id, NEW.id);
END;

CREATE TRIGGER event_sent AFTER UPDATE OF status ON outbox
WHEN NEW.status = 'sent' AND OLD.status <> 'sent'
BEGIN
    INSERT INTO event_log (kind, record_id, subject_id) VALUES ('message.sent', NEW.record_id, NEW.id);
END;

CREATE TRIGGER event_bounced AFTER UPDATE OF bounced_at ON contacts
WHEN NEW.bounced_at IS NOT NULL AND OLD.bounced_at IS NOT NEW.bounced_at
BEGIN
    INSERT INTO event_log (kind, subject_id) VALUES ('contact.bounced', NEW.id);
END;

CREATE TRIGGER event_complained AFTER UPDATE OF complained_at ON contacts
WHEN NEW.complained_at IS NOT NULL AND OLD.complained_at IS NOT NEW.complained_at
BEGIN
    INSERT INTO event_log (kind, subject_id) VALUES ('contact.complained', NEW.id);
END;

CREATE TRIGGER event_inbound_update AFTER UPDATE OF status ON inbound
WHEN NEW.status IN ('quarantined', 'failed') AND OLD.status <> NEW.status
BEGIN
    INSERT INTO event_log (kind, subject_id) VALUES ('inbound.' || NEW.status, NEW.id);
END;

CREATE TRIGGER event_inbound_insert AFTER INSERT ON inbound
WHEN NEW.status IN ('quarantined', 'failed')
BEGIN
    INSERT INTO event_log (kind, subject_id) VALUES ('inbound.' || NEW.status, NEW.id);
END;

-- Webhooks added through the API (those of the configuration file are not stored).
CREATE TABLE webhooks (
    id          BLOB PRIMARY KEY,
    url         TEXT NOT NULL UNIQUE,
    secret      TEXT NOT NULL,
    events      TEXT NOT NULL DEFAULT '[]',
    created_at  TEXT NOT NULL
);

-- One event for one webhook: the body is fixed when it is made, so every
-- retry sends the same bytes under the same webhook-id.
CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    webhook_id       BLOB NOT NULL,
    event_seq        BIGINT NOT NULL,
    kind             TEXT NOT NULL,
    record_id        BLOB,
    body             TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    locked_until     BIGINT NOT NULL DEFAULT 0,
    last_status      INTEGER,
    last_response    TEXT,
    created_at       TEXT NOT NULL,
    delivered_at     TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'queued';
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, event_seq);
