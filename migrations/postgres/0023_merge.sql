-- A record merged into another: its conversation moved there, and mail
-- that names it (its reply token, its [#number]) goes there too. Always
-- the final record: merging into a merged record's target updates the
-- records merged into the first.
ALTER TABLE records ADD COLUMN merged_into UUID REFERENCES records(id);
CREATE INDEX records_merged_into ON records (merged_into) WHERE merged_into IS NOT NULL;
