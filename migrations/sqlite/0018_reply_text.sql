-- The new part of an inbound message's text: without the quoted history
-- below it and the signature. NULL when that is the whole text (and for
-- messages stored before this column).
ALTER TABLE messages ADD COLUMN reply_text TEXT;
