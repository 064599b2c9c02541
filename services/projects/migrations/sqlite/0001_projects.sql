-- Projects owns the contract water-saving project from signing to hand-over. Parties and terms
-- are copied from the accepted proposal (ProposalAccepted event) so that this service never
-- reads matching's tables. Instants in ms since the epoch; money in fen; volumes in litres.

CREATE TABLE projects (
    id                      TEXT PRIMARY KEY,
    proposal_id             TEXT NOT NULL UNIQUE,
    project_request_id      TEXT NOT NULL DEFAULT '',
    company_id              TEXT NOT NULL,
    company_name            TEXT NOT NULL,
    company_credit_code     TEXT NOT NULL,
    water_user_id           TEXT NOT NULL,
    water_user_name         TEXT NOT NULL,
    water_user_credit_code  TEXT NOT NULL,
    sector                  TEXT NOT NULL,
    unit_type               TEXT NOT NULL DEFAULT '',
    town                    TEXT NOT NULL DEFAULT '',
    title                   TEXT NOT NULL,
    sites                   TEXT NOT NULL DEFAULT '[]',
    measures                TEXT NOT NULL DEFAULT '',
    contract_model          TEXT NOT NULL,
    terms                   TEXT NOT NULL DEFAULT '{}',
    investment_fen          BIGINT NOT NULL DEFAULT 0,
    promised_savings_litres BIGINT NOT NULL DEFAULT 0,
    promised_savings_bp     INTEGER NOT NULL DEFAULT 0,
    contract_term_months    INTEGER NOT NULL DEFAULT 0,
    baseline_start_date     TEXT NOT NULL DEFAULT '',
    baseline_end_date       TEXT NOT NULL DEFAULT '',
    baseline_use_litres     BIGINT NOT NULL DEFAULT 0,
    mv_option               TEXT NOT NULL DEFAULT 'c',
    drivers                 TEXT NOT NULL DEFAULT '[]',
    price_fen_per_m3        BIGINT NOT NULL DEFAULT 0,
    indicator_tags          TEXT NOT NULL DEFAULT '[]',
    stage                   TEXT NOT NULL,
    suspended_from_stage    TEXT NOT NULL DEFAULT '',
    created_at_ms           BIGINT NOT NULL,
    updated_at_ms           BIGINT NOT NULL,
    version                 BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX projects_by_stage ON projects (stage, id);
CREATE INDEX projects_by_company ON projects (company_id, id);
CREATE INDEX projects_by_water_user ON projects (water_user_id, id);

-- Every stage change: who, when, why. The first row of a project has from_stage ''.
CREATE TABLE project_transitions (
    id             TEXT PRIMARY KEY,
    project_id     TEXT NOT NULL REFERENCES projects (id),
    from_stage     TEXT NOT NULL,
    to_stage       TEXT NOT NULL,
    reason         TEXT NOT NULL DEFAULT '',
    evidence       TEXT NOT NULL DEFAULT '',
    actor          TEXT NOT NULL,
    actor_org      TEXT NOT NULL DEFAULT '',
    at_ms          BIGINT NOT NULL
);
CREATE INDEX project_transitions_by_project ON project_transitions (project_id, id);

-- The milestone log: every ProjectMilestone event this service emitted, kept for good (the
-- outbox may be pruned). Reporting rebuilds its counts from it via ListMilestones.
CREATE TABLE milestones (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT NOT NULL UNIQUE,
    project_id     TEXT NOT NULL REFERENCES projects (id),
    milestone      TEXT NOT NULL,
    occurred_at_ms BIGINT NOT NULL,
    payload        BLOB NOT NULL
);
CREATE INDEX milestones_by_project ON milestones (project_id, seq);

CREATE TABLE idempotency (
    scope         TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (scope, request_id)
);

CREATE TABLE outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT NOT NULL UNIQUE,
    topic           TEXT NOT NULL,
    kind            TEXT NOT NULL,
    payload         BLOB NOT NULL,
    occurred_at_ms  BIGINT NOT NULL,
    trace_parent    TEXT NOT NULL DEFAULT '',
    published_at_ms BIGINT
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at_ms IS NULL;

CREATE TABLE processed_events (
    event_id        TEXT PRIMARY KEY,
    processed_at_ms BIGINT NOT NULL
);
