-- Search. Each record has a document (its title and its contact's name and
-- address) and each message one (its new part and subject): the terms of
-- domain::search, written by Rust, so both databases index the same terms.
-- A trigger queues what changed; the indexer (one replica at a time)
-- computes the terms off the path mail takes in.
CREATE TABLE search_docs (
    id          INTEGER PRIMARY KEY,
    record_id   BLOB NOT NULL,
    message_id  BLOB,
    terms       TEXT NOT NULL
);
CREATE INDEX search_docs_record ON search_docs (record_id);
CREATE INDEX search_docs_message ON search_docs (message_id);
-- The terms are separated by spaces and hold no ASCII punctuation: the
-- ascii tokenizer keeps each one whole, as PostgreSQL's tsvector does.
CREATE VIRTUAL TABLE search_fts USING fts5(
    terms, content = 'search_docs', content_rowid = 'id', tokenize = 'ascii'
);
CREATE TRIGGER search_docs_added AFTER INSERT ON search_docs BEGIN
    INSERT INTO search_fts (rowid, terms) VALUES (NEW.id, NEW.terms);
END;
CREATE TRIGGER search_docs_removed AFTER DELETE ON search_docs BEGIN
    INSERT INTO search_fts (search_fts, rowid, terms) VALUES ('delete', OLD.id, OLD.terms);
END;

CREATE TABLE search_queue (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id   BLOB NOT NULL,
    message_id  BLOB
);
CREATE TRIGGER search_message_added AFTER INSERT ON messages BEGIN
    INSERT INTO search_queue (record_id, message_id) VALUES (NEW.record_id, NEW.id);
END;
CREATE TRIGGER search_message_changed AFTER UPDATE OF text_body, reply_text, subject, record_id ON messages BEGIN
    INSERT INTO search_queue (record_id, message_id) VALUES (NEW.record_id, NEW.id);
END;
CREATE TRIGGER search_record_added AFTER INSERT ON records BEGIN
    INSERT INTO search_queue (record_id) VALUES (NEW.id);
END;
CREATE TRIGGER search_record_changed AFTER UPDATE OF title, contact_id ON records BEGIN
    INSERT INTO search_queue (record_id) VALUES (NEW.id);
END;
CREATE TRIGGER search_contact_changed AFTER UPDATE OF name, email ON contacts BEGIN
    INSERT INTO search_queue (record_id) SELECT id FROM records WHERE contact_id = NEW.id;
END;

-- What was stored before search: every record and message, queued once.
INSERT INTO search_queue (record_id) SELECT id FROM records;
INSERT INTO search_queue (record_id, message_id) SELECT record_id, id FROM messages;
