-- Blocked senders added at run time (the API); the config file's list is
-- applied besides these. An entry is an address or a domain, lower-case.
CREATE TABLE blocked_senders (
    entry       TEXT PRIMARY KEY,
    created_at  TIMESTAMPTZ NOT NULL
);
