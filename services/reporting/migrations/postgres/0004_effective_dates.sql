-- Facts carry when and where they count: the milestone's effective date (days since
-- 1970-01-01, China Standard Time; for facts stored before, the CST day of occurred_at_ms),
-- the site's jurisdiction code (empty for facts stored before: read as the platform's
-- configured district), the project's investment (fen), and for PERIOD_VERIFIED the period
-- and its savings (litres). A project's milestone is kept once per period, so every verified
-- period is a fact of its own.
ALTER TABLE milestone_facts ADD COLUMN effective_day BIGINT NOT NULL DEFAULT 0;
ALTER TABLE milestone_facts ADD COLUMN jurisdiction_code TEXT NOT NULL DEFAULT '';
ALTER TABLE milestone_facts ADD COLUMN investment_fen BIGINT NOT NULL DEFAULT 0;
ALTER TABLE milestone_facts ADD COLUMN period_id TEXT NOT NULL DEFAULT '';
ALTER TABLE milestone_facts ADD COLUMN period_savings_litres BIGINT NOT NULL DEFAULT 0;
UPDATE milestone_facts SET effective_day = (occurred_at_ms + 28800000) / 86400000;
ALTER TABLE milestone_facts DROP CONSTRAINT milestone_facts_project_id_milestone_key;
ALTER TABLE milestone_facts ADD CONSTRAINT milestone_facts_project_milestone_period_key
    UNIQUE (project_id, milestone, period_id);
DROP INDEX milestone_facts_by_milestone;
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
