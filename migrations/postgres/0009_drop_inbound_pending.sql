-- Pending messages are found through inbound_status (status, seq), which every
-- query on status uses; this partial index served none, and intake and
-- processing each paid one B-tree write per message to keep it.
DROP INDEX inbound_pending;
