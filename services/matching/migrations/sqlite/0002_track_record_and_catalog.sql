-- The verified track record, kept from the projects service's ProjectMilestone events: one row
-- per project, holding whether it was handed over and the latest running totals of verified and
-- promised savings (those of the event with the highest sequence seen). A company's track
-- record is the sum over its rows, so a redelivered or re-emitted event changes nothing.
CREATE TABLE company_projects (
    project_id              TEXT PRIMARY KEY,
    company_id              TEXT NOT NULL,
    handed_over             INTEGER NOT NULL DEFAULT 0,
    totals_sequence         BIGINT NOT NULL DEFAULT -1,
    verified_savings_litres BIGINT NOT NULL DEFAULT 0,
    promised_savings_litres BIGINT NOT NULL DEFAULT 0,
    updated_at_ms           BIGINT NOT NULL
);
CREATE INDEX company_projects_by_company ON company_projects (company_id);

-- A counter bumped by every change to offerings or companies (by triggers, in the writing
-- transaction): the ranking keeps the published catalogue in memory and reloads it only when
-- the counter moved, which also sees the writes of other replicas.
CREATE TABLE catalog_version (
    id      INTEGER PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO catalog_version (id, version) VALUES (1, 0);

CREATE TRIGGER offerings_catalog_insert AFTER INSERT ON offerings
BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER offerings_catalog_update AFTER UPDATE ON offerings
BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER offerings_catalog_delete AFTER DELETE ON offerings
BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER companies_catalog_insert AFTER INSERT ON companies
BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER companies_catalog_update AFTER UPDATE ON companies
BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER companies_catalog_delete AFTER DELETE ON companies
BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;

-- Proposals of one company to one request (a company proposes once while it is submitted).
CREATE INDEX proposals_by_request_company ON proposals (project_request_id, company_id, status);
