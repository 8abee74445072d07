-- A contact's records are listed newest first (ORDER BY id DESC LIMIT n).
-- Keyed by contact alone, the index handed over all of a contact's records
-- to be sorted on every view; keyed by (contact, id) it hands over the
-- newest n in order, however many records the contact has.
DROP INDEX records_contact;
CREATE INDEX records_contact ON records (contact_id, id);
