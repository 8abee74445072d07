-- API bearer tokens. Only a SHA-256 of each token is stored; the token itself
-- is shown once, when it is created.
CREATE TABLE api_tokens (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ
);

-- Team work on records: what an event changed (owner, tags), and who a
-- comment mentions.
ALTER TABLE record_events ADD COLUMN detail TEXT;
ALTER TABLE messages ADD COLUMN mentions TEXT NOT NULL DEFAULT '[]';
