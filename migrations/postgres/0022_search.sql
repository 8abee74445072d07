-- Search. Each record has a document (its title and its contact's name and
-- address) and each message one (its new part and subject): the terms of
-- domain::search, written by Rust as a tsvector literal (no parser splits
-- them), so both databases index the same terms. A trigger queues what
-- changed; the indexer (one replica at a time) computes the terms off the
-- path mail takes in.
CREATE TABLE search_docs (
    id          BIGSERIAL PRIMARY KEY,
    record_id   UUID NOT NULL,
    message_id  UUID,
    terms       TSVECTOR NOT NULL
);
CREATE INDEX search_docs_record ON search_docs (record_id);
CREATE INDEX search_docs_message ON search_docs (message_id);
CREATE INDEX search_docs_terms ON search_docs USING GIN (terms);

CREATE TABLE search_queue (
    seq         BIGSERIAL PRIMARY KEY,
    record_id   UUID NOT NULL,
    message_id  UUID
);

CREATE FUNCTION emailin_search_message() RETURNS TRIGGER AS $$
BEGIN
    INSERT INTO search_queue (record_id, message_id) VALUES (NEW.record_id, NEW.id);
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER search_message_added AFTER INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION emailin_search_message();
CREATE TRIGGER search_message_changed AFTER UPDATE OF text_body, reply_text, subject, record_id ON messages
    FOR EACH ROW EXECUTE FUNCTION emailin_search_message();

CREATE FUNCTION emailin_search_record() RETURNS TRIGGER AS $$
BEGIN
    INSERT INTO search_queue (record_id) VALUES (NEW.id);
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER search_record_added AFTER INSERT ON records
    FOR EACH ROW EXECUTE FUNCTION emailin_search_record();
CREATE TRIGGER search_record_changed AFTER UPDATE OF title, contact_id ON records
    FOR EACH ROW EXECUTE FUNCTION emailin_search_record();

CREATE FUNCTION emailin_search_contact() RETURNS TRIGGER AS $$
BEGIN
    INSERT INTO search_queue (record_id) SELECT id FROM records WHERE contact_id = NEW.id;
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER search_contact_changed AFTER UPDATE OF name, email ON contacts
    FOR EACH ROW EXECUTE FUNCTION emailin_search_contact();

-- What was stored before search: every record and message, queued once.
INSERT INTO search_queue (record_id) SELECT id FROM records;
INSERT INTO search_queue (record_id, message_id) SELECT record_id, id FROM messages;
