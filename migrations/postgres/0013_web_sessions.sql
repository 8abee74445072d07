-- People log in to the web UI: a user has a role and, once set, an argon2id
-- password hash (PHC string). Browser sessions are stored server-side: only a
-- SHA-256 of the cookie's value is kept, with the session's CSRF token.
ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member'));
ALTER TABLE users ADD COLUMN password_hash TEXT;

CREATE TABLE web_sessions (
    id_hash       TEXT PRIMARY KEY,
    user_id       UUID NOT NULL REFERENCES users(id),
    csrf          TEXT NOT NULL,
    client_ip     TEXT,
    user_agent    TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    revoked_at    TIMESTAMPTZ
);
CREATE INDEX web_sessions_by_user ON web_sessions (user_id);

-- When a user last opened a record: the board marks a record unread when it
-- changed since.
CREATE TABLE record_reads (
    user_id    UUID NOT NULL REFERENCES users(id),
    record_id  UUID NOT NULL REFERENCES records(id),
    read_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, record_id)
);
