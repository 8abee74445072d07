-- emailin schema, SQLite flavour. Same tables, columns and numbering as migrations/postgres.

CREATE TABLE users (
    id          BLOB PRIMARY KEY,
    email       TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL
);

CREATE TABLE pipelines (
    id          BLOB PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

CREATE TABLE stages (
    id           BLOB PRIMARY KEY,
    pipeline_id  BLOB NOT NULL REFERENCES pipelines(id),
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('open', 'closed')),
    position     INTEGER NOT NULL,
    UNIQUE (pipeline_id, name)
);

CREATE TABLE aliases (
    id               BLOB PRIMARY KEY,
    address          TEXT NOT NULL UNIQUE,
    name             TEXT NOT NULL DEFAULT '',
    pipeline_id      BLOB NOT NULL REFERENCES pipelines(id),
    owner_id         BLOB REFERENCES users(id),
    tags             TEXT NOT NULL DEFAULT '[]',
    enabled          BOOLEAN NOT NULL DEFAULT TRUE,
    reopen_on_reply  BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE reopen_rules (
    alias_id       BLOB NOT NULL REFERENCES aliases(id),
    from_stage_id  BLOB NOT NULL REFERENCES stages(id),
    to_stage_id    BLOB NOT NULL REFERENCES stages(id),
    PRIMARY KEY (alias_id, from_stage_id)
);

CREATE TABLE contacts (
    id          BLOB PRIMARY KEY,
    email       TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL
);

CREATE TABLE records (
    id           BLOB PRIMARY KEY,
    number       INTEGER NOT NULL UNIQUE,
    pipeline_id  BLOB NOT NULL REFERENCES pipelines(id),
    stage_id     BLOB NOT NULL REFERENCES stages(id),
    contact_id   BLOB REFERENCES contacts(id),
    owner_id     BLOB REFERENCES users(id),
    alias_id     BLOB REFERENCES aliases(id),
    title        TEXT NOT NULL,
    tags         TEXT NOT NULL DEFAULT '[]',
    reply_token  TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX records_pipeline ON records (pipeline_id, id);
CREATE INDEX records_contact ON records (contact_id);

-- Raw intake: the bytes exactly as received plus the envelope. Written first and
-- never deleted by processing; status/outcome say what processing made of it.
CREATE TABLE inbound (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            BLOB NOT NULL UNIQUE,
    received_at   TEXT NOT NULL,
    source        TEXT NOT NULL,
    mail_from     TEXT,
    rcpt_to       TEXT NOT NULL,
    client_ip     TEXT,
    helo          TEXT,
    tls           BOOLEAN NOT NULL DEFAULT FALSE,
    size          INTEGER NOT NULL,
    sha256        TEXT NOT NULL,
    raw           BLOB NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending',
    outcome       TEXT,
    error         TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    processed_at  TEXT
);
CREATE INDEX inbound_pending ON inbound (seq) WHERE status = 'pending';
CREATE INDEX inbound_status ON inbound (status, seq);

CREATE TABLE messages (
    id            BLOB PRIMARY KEY,
    record_id     BLOB NOT NULL REFERENCES records(id),
    inbound_id    BLOB REFERENCES inbound(id),
    direction     TEXT NOT NULL CHECK (direction IN ('in', 'out', 'comment')),
    message_id    TEXT NOT NULL,
    in_reply_to   TEXT,
    refs          TEXT NOT NULL DEFAULT '[]',
    from_addr     TEXT,
    from_name     TEXT,
    to_addrs      TEXT NOT NULL DEFAULT '[]',
    cc_addrs      TEXT NOT NULL DEFAULT '[]',
    reply_to      TEXT,
    subject       TEXT,
    sent_at       TEXT,
    text_body     TEXT,
    html_body     TEXT,
    thread_rule   TEXT NOT NULL,
    thread_value  TEXT,
    created_at    TEXT NOT NULL
);
CREATE INDEX messages_record ON messages (record_id, created_at);
CREATE INDEX messages_inbound ON messages (inbound_id);

-- The thread index: every Message-ID seen or sent for a record, per pipeline,
-- so a thread never crosses pipelines. Keyed by Message-ID first, so a
-- lookup across pipelines (a bounce naming its original) uses it too.
CREATE TABLE message_ids (
    pipeline_id  BLOB NOT NULL REFERENCES pipelines(id),
    message_id   TEXT NOT NULL,
    record_id    BLOB NOT NULL REFERENCES records(id),
    PRIMARY KEY (message_id, pipeline_id)
);

CREATE TABLE attachments (
    id            BLOB PRIMARY KEY,
    message_id    BLOB NOT NULL REFERENCES messages(id),
    name          TEXT,
    content_type  TEXT NOT NULL,
    size          INTEGER NOT NULL,
    sha256        TEXT NOT NULL,
    bytes         BLOB NOT NULL
);
CREATE INDEX attachments_message ON attachments (message_id);

CREATE TABLE record_events (
    id             BLOB PRIMARY KEY,
    record_id      BLOB NOT NULL REFERENCES records(id),
    kind           TEXT NOT NULL,
    from_stage_id  BLOB REFERENCES stages(id),
    to_stage_id    BLOB REFERENCES stages(id),
    message_id     BLOB REFERENCES messages(id),
    actor          TEXT NOT NULL,
    created_at     TEXT NOT NULL
);
CREATE INDEX record_events_record ON record_events (record_id, created_at);
