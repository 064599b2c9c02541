-- A contract year's report as it stood when the year closed (every day of it in reporting
-- periods, each verified or settled): rendered then, with the SHA-256 of each document. A year
-- reopened by a dispute and closed again is archived again: `periods` names the year's periods
-- at their versions ("id@version,…"), so each closing has its own row; the row of the periods as they stand is served.
CREATE TABLE contract_year_reports (
    project_id    TEXT NOT NULL REFERENCES projects (id),
    start_date    TEXT NOT NULL,
    periods       TEXT NOT NULL,
    html          BYTEA NOT NULL,
    xlsx          BYTEA NOT NULL,
    html_sha256   TEXT NOT NULL,
    xlsx_sha256   TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (project_id, start_date, periods)
);
