-- Every driver value ever recorded, with the one it replaced (NULL for a first value) and who
-- recorded it: the values in driver_values are the latest of these.
CREATE TABLE driver_value_changes (
    id             TEXT PRIMARY KEY,
    project_id     TEXT NOT NULL REFERENCES projects (id),
    driver         TEXT NOT NULL,
    day            TEXT NOT NULL,
    value          DOUBLE PRECISION NOT NULL,
    previous_value DOUBLE PRECISION,
    recorded_by    TEXT NOT NULL,
    recorded_by_org TEXT NOT NULL,
    recorded_at_ms BIGINT NOT NULL
);
CREATE INDEX driver_value_changes_by_project ON driver_value_changes (project_id, id);

-- A non-routine adjustment counts once the project's assigned verifier approved it
-- ('proposed' → 'approved' or 'rejected'); those documented before stay counted.
ALTER TABLE non_routine_adjustments ADD COLUMN status TEXT NOT NULL DEFAULT 'approved';
ALTER TABLE non_routine_adjustments ADD COLUMN decided_by TEXT NOT NULL DEFAULT '';
ALTER TABLE non_routine_adjustments ADD COLUMN decided_by_org TEXT NOT NULL DEFAULT '';
ALTER TABLE non_routine_adjustments ADD COLUMN decision_note TEXT NOT NULL DEFAULT '';
