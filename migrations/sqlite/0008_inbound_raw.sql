-- The raw bytes in a table of their own, apart from the row's status: writing
-- an outcome then rewrites the small inbound row only, not the message's
-- pages (which would otherwise go to the WAL a second time).
CREATE TABLE inbound_raw (
    seq  INTEGER PRIMARY KEY REFERENCES inbound(seq),
    raw  BLOB NOT NULL
);
INSERT INTO inbound_raw (seq, raw) SELECT seq, raw FROM inbound;
ALTER TABLE inbound DROP COLUMN raw;
