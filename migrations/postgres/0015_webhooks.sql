-- Events for webhooks, captured by triggers in the transaction that made
-- the change, so none is lost and each record's events keep their order.
-- The dispatcher fans each event out to the webhooks that want it
-- (webhook_deliveries) and deletes it in the same transaction.
CREATE TABLE event_log (
    seq            BIGSERIAL PRIMARY KEY,
    kind           TEXT NOT NULL,
    record_id      UUID,
    subject_id     UUID NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE FUNCTION emailin_event(kind TEXT, record UUID, subject UUID) RETURNS VOID AS $$
    INSERT INTO event_log (kind, record_id, subject_id) VALUES (kind, record, subject);
$$ LANGUAGE SQL;

-- A new record's first message is written before its "created" event (the
-- event refers to it), so that trigger notes both, in that order: a
-- receiver hears of the record before its messages.
CREATE FUNCTION emailin_record_event() RETURNS TRIGGER AS $$
BEGIN
    IF NEW.kind IN ('created', 'reopened', 'stage_changed') THEN
        PERFORM emailin_event('record.' || NEW.kind, NEW.record_id, NEW.record_id);
    END IF;
    IF NEW.kind = 'created' AND NEW.message_id IS NOT NULL THEN
        PERFORM emailin_event('message.received', NEW.record_id, NEW.message_id);
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER event_record AFTER INSERT ON record_events
    FOR EACH ROW EXECUTE FUNCTION emailin_record_event();

CREATE FUNCTION emailin_message_event() RETURNS TRIGGER AS $$
BEGIN
    IF NEW.direction = 'in' AND EXISTS (
        SELECT 1 FROM record_events WHERE record_id = NEW.record_id AND kind = 'created'
    ) THEN
        PERFORM emailin_event('message.received', NEW.record_id, NEW.id);
    ELSIF NEW.direction = 'comment' THEN
        PERFORM emailin_event('comment.created', NEW.record_id, NEW.id);
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER event_message AFTER INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION emailin_message_event();

CREATE FUNCTION emailin_sent_event() RETURNS TRIGGER AS $$
BEGIN
    IF NEW.status = 'sent' AND OLD.status <> 'sent' THEN
        PERFORM emailin_event('message.sent', NEW.record_id, NEW.id);
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER event_sent AFTER UPDATE OF status ON outbox
    FOR EACH ROW EXECUTE FUNCTION emailin_sent_event();

CREATE FUNCTION emailin_contact_event() RETURNS TRIGGER AS $$
BEGIN
    IF NEW.bounced_at IS NOT NULL AND NEW.bounced_at IS DISTINCT FROM OLD.bounced_at THEN
        PERFORM emailin_event('contact.bounced', NULL, NEW.id);
    END IF;
    IF NEW.complained_at IS NOT NULL AND NEW.complained_at IS DISTINCT FROM OLD.complained_at THEN
        PERFORM emailin_event('contact.complained', NULL, NEW.id);
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER event_contact AFTER UPDATE OF bounced_at, complained_at ON contacts
    FOR EACH ROW EXECUTE FUNCTION emailin_contact_event();

CREATE FUNCTION emailin_inbound_event() RETURNS TRIGGER AS $$
BEGIN
    IF NEW.status IN ('quarantined', 'failed')
       AND (TG_OP = 'INSERT' OR OLD.status <> NEW.status) THEN
        PERFORM emailin_event('inbound.' || NEW.status, NULL, NEW.id);
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER event_inbound AFTER INSERT OR UPDATE OF status ON inbound
    FOR EACH ROW EXECUTE FUNCTION emailin_inbound_event();

-- Webhooks added through the API (those of the configuration file are not stored).
CREATE TABLE webhooks (
    id          UUID PRIMARY KEY,
    url         TEXT NOT NULL UNIQUE,
    secret      TEXT NOT NULL,
    events      TEXT NOT NULL DEFAULT '[]',
    created_at  TIMESTAMPTZ NOT NULL
);

-- One event for one webhook: the body is fixed when it is made, so every
-- retry sends the same bytes under the same webhook-id.
CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    webhook_id       UUID NOT NULL,
    event_seq        BIGINT NOT NULL,
    kind             TEXT NOT NULL,
    record_id        UUID,
    body             TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    locked_until     BIGINT NOT NULL DEFAULT 0,
    last_status      INTEGER,
    last_response    TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    delivered_at     TIMESTAMPTZ
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'queued';
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, event_seq);
