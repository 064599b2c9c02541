-- Facts carry when and where they count: the milestone's effective date (days since
-- 1970-01-01, China Standard Time; for facts stored before, the CST day of occurred_at_ms),
-- the site's jurisdiction code (empty for facts stored before: read as the platform's
-- configured district), the project's investment (fen), and for PERIOD_VERIFIED the period
-- and its savings (litres). A project's milestone is kept once per period, so every verified
-- period is a fact of its own (SQLite cannot drop a constraint: the table is rebuilt).
CREATE TABLE milestone_facts_new (
    event_id               TEXT PRIMARY KEY,
    project_id             TEXT NOT NULL,
    sequence               BIGINT NOT NULL DEFAULT 0,
    milestone              TEXT NOT NULL,
    occurred_at_ms         BIGINT NOT NULL,
    sector                 TEXT NOT NULL DEFAULT '',
    unit_type              TEXT NOT NULL DEFAULT '',
    town                   TEXT NOT NULL DEFAULT '',
    indicator_tags         TEXT NOT NULL DEFAULT '[]',
    company_id             TEXT NOT NULL DEFAULT '',
    company_name           TEXT NOT NULL DEFAULT '',
    water_user_credit_code TEXT NOT NULL DEFAULT '',
    water_user_name        TEXT NOT NULL DEFAULT '',
    project_title          TEXT NOT NULL DEFAULT '',
    counted_at_ms          BIGINT NOT NULL,
    effective_day          BIGINT NOT NULL DEFAULT 0,
    jurisdiction_code      TEXT NOT NULL DEFAULT '',
    investment_fen         BIGINT NOT NULL DEFAULT 0,
    period_id              TEXT NOT NULL DEFAULT '',
    period_savings_litres  BIGINT NOT NULL DEFAULT 0,
    UNIQUE (project_id, milestone, period_id)
);
INSERT INTO milestone_facts_new (event_id, project_id, sequence, milestone, occurred_at_ms, sector,
    unit_type, town, indicator_tags, company_id, company_name, water_user_credit_code,
    water_user_name, project_title, counted_at_ms, effective_day)
SELECT event_id, project_id, sequence, milestone, occurred_at_ms, sector, unit_type, town,
    indicator_tags, company_id, company_name, water_user_credit_code, water_user_name,
    project_title, counted_at_ms, (occurred_at_ms + 28800000) / 86400000
FROM milestone_facts;
DROP TABLE milestone_facts;
ALTER TABLE milestone_facts_new RENAME TO milestone_facts;
CREATE INDEX milestone_facts_by_milestone ON milestone_facts (milestone, effective_day);

-- What a counted unit (a project, a verified period, a site) added: 1, litres or fen.
ALTER TABLE counted_projects ADD COLUMN amount BIGINT NOT NULL DEFAULT 1;

-- The kept counts were made by the day facts were recorded, without jurisdiction or window:
-- they are made again, by the rules as they are now, for every plan listed here, when the
-- service starts (and a plan loaded later is counted as it loads).
DELETE FROM counted_projects;
DELETE FROM count_changes;
DELETE FROM count_cells;
DELETE FROM count_days;
CREATE TABLE pending_recounts (
    plan_id TEXT PRIMARY KEY
);
INSERT INTO pending_recounts (plan_id) SELECT id FROM plans;
