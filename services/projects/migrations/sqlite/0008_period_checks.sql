-- m, the reporting observations a stored period's savings stand on (days, or months of data):
-- the uncertainty of several periods together (a contract year, the contract to date) sums
-- them. 0 for periods stored before: counted from the data when read.
ALTER TABLE periods ADD COLUMN observations BIGINT NOT NULL DEFAULT 0;

-- A check a reporting period fails (the baseline's Guideline 14 acceptance, the savings'
-- uncertainty under 50% at 68%) that the project's assigned verifier let stand before the
-- period was submitted, with why. One per period and check; never changed.
CREATE TABLE period_waivers (
    project_id        TEXT NOT NULL REFERENCES projects (id),
    period_start_date TEXT NOT NULL,
    check_code        TEXT NOT NULL,
    reason            TEXT NOT NULL,
    failure           TEXT NOT NULL,
    waived_by         TEXT NOT NULL,
    waived_by_org     TEXT NOT NULL,
    created_at_ms     BIGINT NOT NULL,
    PRIMARY KEY (project_id, period_start_date, check_code)
);
