-- Secrets the service creates for itself on first start (the reply-token
-- signing key), shared by every replica through the database.
CREATE TABLE secrets (
    name        TEXT PRIMARY KEY,
    value       BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

-- Replies waiting for, or done with, the outbound relay. One row per reply;
-- its id is the id of the reply's row in messages.
CREATE TABLE outbox (
    id               UUID PRIMARY KEY REFERENCES messages(id),
    record_id        UUID NOT NULL REFERENCES records(id),
    actor            TEXT NOT NULL,
    mail_from        TEXT NOT NULL,
    rcpt_to          TEXT NOT NULL,
    raw              BYTEA NOT NULL,
    status           TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    locked_until     BIGINT NOT NULL DEFAULT 0,
    last_reply       TEXT,
    sent_at          TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'queued';
CREATE INDEX outbox_record ON outbox (record_id);

-- Record lists filter by owner and recency; contacts are searched by name.
CREATE INDEX records_owner ON records (owner_id, id);
CREATE INDEX records_updated ON records (updated_at);
