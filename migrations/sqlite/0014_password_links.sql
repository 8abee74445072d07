-- One-time links that let a user set their password (invites, resets).
-- Only a SHA-256 of the link's token is stored; a link works once, until it
-- expires.
CREATE TABLE password_links (
    token_hash  TEXT PRIMARY KEY,
    user_id     BLOB NOT NULL REFERENCES users(id),
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT
);
CREATE INDEX password_links_by_user ON password_links (user_id);
