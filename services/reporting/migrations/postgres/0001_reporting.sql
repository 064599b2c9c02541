-- Reporting owns the action plans (versioned, never overwritten), its own copy of the project
-- milestone facts it counts, and the achievements administrators record. Counts are derived
-- from the facts when a report is asked for, never stored. Instants are milliseconds since the
-- epoch; lists of codes are JSON arrays in TEXT; dates are "YYYY-MM-DD" TEXT.

CREATE TABLE plans (
    id            TEXT PRIMARY KEY,
    code          TEXT NOT NULL,
    version       BIGINT NOT NULL,
    title         TEXT NOT NULL,
    district      TEXT NOT NULL DEFAULT '',
    year          INTEGER NOT NULL DEFAULT 0,
    -- The TOML as loaded, and its SHA-256 (hex).
    document      TEXT NOT NULL,
    sha256        TEXT NOT NULL DEFAULT '',
    loaded_by     TEXT NOT NULL,
    loaded_at_ms  BIGINT NOT NULL,
    UNIQUE (code, version)
);

-- One row per project milestone heard of; a project's milestone is kept once even if it is
-- re-emitted under another event id.
CREATE TABLE milestone_facts (
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
    UNIQUE (project_id, milestone)
);
CREATE INDEX milestone_facts_by_milestone ON milestone_facts (milestone, occurred_at_ms);

CREATE TABLE processed_events (
    event_id        TEXT PRIMARY KEY,
    processed_at_ms BIGINT NOT NULL
);

-- One row per revision of an achievement: a correction adds a row and marks the one it
-- replaces superseded_by the new row's id, so the history stays.
CREATE TABLE achievements (
    id              TEXT PRIMARY KEY,
    achievement_id  TEXT NOT NULL,
    revision        BIGINT NOT NULL,
    plan_code       TEXT NOT NULL,
    indicator_code  TEXT NOT NULL,
    unit_name       TEXT NOT NULL DEFAULT '',
    achieved_date   TEXT NOT NULL,
    evidence        TEXT NOT NULL DEFAULT '',
    value           DOUBLE PRECISION NOT NULL,
    note            TEXT NOT NULL DEFAULT '',
    department      TEXT NOT NULL DEFAULT '',
    town            TEXT NOT NULL DEFAULT '',
    sector          TEXT NOT NULL DEFAULT '',
    retracted       BIGINT NOT NULL DEFAULT 0,
    reason          TEXT NOT NULL DEFAULT '',
    recorded_by     TEXT NOT NULL,
    recorded_at_ms  BIGINT NOT NULL,
    superseded_by   TEXT NOT NULL DEFAULT '',
    UNIQUE (achievement_id, revision)
);
CREATE INDEX achievements_current ON achievements (plan_code, indicator_code, superseded_by);

CREATE TABLE idempotency (
    scope          TEXT NOT NULL,
    request_id     TEXT NOT NULL,
    resource_id    TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (scope, request_id)
);
