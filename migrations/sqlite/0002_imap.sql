-- IMAP polling: extra addresses an alias answers for (forwarded mail), the
-- per-account/folder cursor, leases for replicas, and lookups by content hash.

ALTER TABLE aliases ADD COLUMN extra_addresses TEXT NOT NULL DEFAULT '[]';

-- Written in the same transaction as the inbound rows it covers.
CREATE TABLE imap_state (
    account      TEXT NOT NULL,
    folder       TEXT NOT NULL,
    uidvalidity  BIGINT NOT NULL,
    last_uid     BIGINT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (account, folder)
);

-- One holder at a time per name (e.g. "imap:support/INBOX") until
-- expires_at (Unix milliseconds, so both backends compare numbers).
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);

-- Only polled mail is deduplicated by content, so only it pays for the index.
CREATE INDEX inbound_imap_sha256 ON inbound (sha256) WHERE source = 'imap';
