-- One-time links that let a user set their password (invites, resets).
-- Only a SHA-256 of the link's token is stored; a link works once, until it
-- expires.
CREATE TABLE password_links (
    token_hash  TEXT PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users(id),
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ
);
CREATE INDEX password_links_by_user ON password_links (user_id);
