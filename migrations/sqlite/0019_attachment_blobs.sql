-- Attachment bytes are stored once per content (SHA-256): the same logo or
-- PDF on a hundred messages is one blob. An attachment row keeps its name,
-- type and, for an inline part, the Content-ID its HTML refers to.
CREATE TABLE attachment_blobs (
    sha256  TEXT PRIMARY KEY,
    size    INTEGER NOT NULL,
    bytes   BLOB NOT NULL
);
INSERT INTO attachment_blobs (sha256, size, bytes)
    SELECT sha256, size, bytes FROM attachments WHERE true
    ON CONFLICT (sha256) DO NOTHING;
ALTER TABLE attachments DROP COLUMN bytes;
ALTER TABLE attachments ADD COLUMN content_id TEXT;
ALTER TABLE attachments ADD COLUMN inline BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX attachments_sha256 ON attachments (sha256);
