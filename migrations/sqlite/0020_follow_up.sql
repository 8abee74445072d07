-- A reply to a record closed for longer than its alias's follow-up window
-- starts a new record related to it instead of reopening it. NULL: no
-- window (a reply reopens however old the record is).
ALTER TABLE aliases ADD COLUMN follow_up_days INTEGER;
-- When a record entered the stage it is in: how long it has been closed.
ALTER TABLE records ADD COLUMN stage_changed_at TEXT;
UPDATE records SET stage_changed_at = COALESCE(
    (SELECT MAX(e.created_at) FROM record_events e
     WHERE e.record_id = records.id AND e.to_stage_id = records.stage_id),
    updated_at);
