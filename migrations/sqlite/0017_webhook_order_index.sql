-- A delivery waits while an older one of the same record to the same webhook
-- is queued: this index answers that check with one seek per candidate.
CREATE INDEX webhook_deliveries_queued_by_record
    ON webhook_deliveries (webhook_id, record_id, event_seq) WHERE status = 'queued';
