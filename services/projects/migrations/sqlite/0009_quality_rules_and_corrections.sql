-- The M&V plan's quality rules (which flags leave a reading out, which wait for the verifier's
-- confirmation), frozen with the plan: '' for the default rules, else JSON
-- {"exclude": bits, "confirm": bits} of the reading flags.
ALTER TABLE projects ADD COLUMN quality_rules TEXT NOT NULL DEFAULT '';

-- Corrections of stored readings, proposed by a party and decided by the verifier. The
-- reading is never changed: an accepted correction counts in the M&V instead of it; a later
-- accepted one supersedes it (status 'superseded'), so the history stays.
CREATE TABLE reading_corrections (
    id                   TEXT PRIMARY KEY,
    project_id           TEXT NOT NULL REFERENCES projects (id),
    meter_id             TEXT NOT NULL REFERENCES meters (id),
    read_at_ms           BIGINT NOT NULL,
    action               TEXT NOT NULL,
    corrected_use_litres BIGINT NOT NULL,
    original_use_litres  BIGINT NOT NULL,
    original_flags       INTEGER NOT NULL,
    reason               TEXT NOT NULL,
    evidence             TEXT NOT NULL,
    status               TEXT NOT NULL,
    proposed_by          TEXT NOT NULL,
    proposed_by_org      TEXT NOT NULL,
    decided_by           TEXT NOT NULL DEFAULT '',
    decided_by_org       TEXT NOT NULL DEFAULT '',
    decision_note        TEXT NOT NULL DEFAULT '',
    created_at_ms        BIGINT NOT NULL,
    updated_at_ms        BIGINT NOT NULL,
    version              BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX reading_corrections_by_project ON reading_corrections (project_id, id);
-- At most one open proposal and one accepted correction per reading.
CREATE UNIQUE INDEX reading_corrections_one_proposed ON reading_corrections (meter_id, read_at_ms) WHERE status = 'proposed';
CREATE UNIQUE INDEX reading_corrections_one_accepted ON reading_corrections (meter_id, read_at_ms) WHERE status = 'accepted';
