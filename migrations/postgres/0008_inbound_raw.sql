-- The raw bytes in a table of their own, apart from the row's status: writing
-- an outcome then rewrites the small inbound row only, not the message.
CREATE TABLE inbound_raw (
    seq  BIGINT PRIMARY KEY REFERENCES inbound(seq),
    raw  BYTEA NOT NULL
);
INSERT INTO inbound_raw (seq, raw) SELECT seq, raw FROM inbound;
ALTER TABLE inbound DROP COLUMN raw;
