-- One row that readiness rewrites to learn whether a commit of a given size
-- gets through again after intake failed to commit (a full disk, say).
CREATE TABLE write_probe (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at TEXT NOT NULL,
    payload    BLOB NOT NULL
);
