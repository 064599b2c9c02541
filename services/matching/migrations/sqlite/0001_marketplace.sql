-- Matching owns the marketplace: service companies, their offerings, water users, their
-- project requests and the proposals between them. Lists of codes (sectors, towns, models…)
-- are JSON arrays in TEXT; instants are milliseconds since the epoch; money in fen; volumes in
-- litres; rates in basis points.

CREATE TABLE companies (
    id                      TEXT PRIMARY KEY,
    credit_code             TEXT NOT NULL UNIQUE,
    name                    TEXT NOT NULL,
    description             TEXT NOT NULL DEFAULT '',
    contact_name            TEXT NOT NULL DEFAULT '',
    contact_phone           TEXT NOT NULL DEFAULT '',
    contact_email           TEXT NOT NULL DEFAULT '',
    towns                   TEXT NOT NULL DEFAULT '[]',
    sectors                 TEXT NOT NULL DEFAULT '[]',
    certification           TEXT NOT NULL DEFAULT 'none',
    financing_capacity_fen  BIGINT NOT NULL DEFAULT 0,
    projects_completed      BIGINT NOT NULL DEFAULT 0,
    verified_savings_litres BIGINT NOT NULL DEFAULT 0,
    promised_savings_litres BIGINT NOT NULL DEFAULT 0,
    created_at_ms           BIGINT NOT NULL,
    updated_at_ms           BIGINT NOT NULL,
    version                 BIGINT NOT NULL DEFAULT 1
);

CREATE TABLE offerings (
    id                  TEXT PRIMARY KEY,
    company_id          TEXT NOT NULL REFERENCES companies (id),
    title               TEXT NOT NULL,
    description         TEXT NOT NULL DEFAULT '',
    technologies        TEXT NOT NULL DEFAULT '[]',
    contract_models     TEXT NOT NULL DEFAULT '[]',
    sectors             TEXT NOT NULL DEFAULT '[]',
    towns               TEXT NOT NULL DEFAULT '[]',
    min_investment_fen  BIGINT NOT NULL DEFAULT 0,
    max_investment_fen  BIGINT NOT NULL DEFAULT 0,
    typical_savings_bp  INTEGER NOT NULL DEFAULT 0,
    typical_term_months INTEGER NOT NULL DEFAULT 0,
    status              TEXT NOT NULL,
    created_at_ms       BIGINT NOT NULL,
    updated_at_ms       BIGINT NOT NULL,
    version             BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX offerings_by_company ON offerings (company_id, id);
CREATE INDEX offerings_by_status ON offerings (status, id);

CREATE TABLE water_users (
    id                  TEXT PRIMARY KEY,
    credit_code         TEXT NOT NULL UNIQUE,
    name                TEXT NOT NULL,
    sector              TEXT NOT NULL,
    unit_type           TEXT NOT NULL DEFAULT '',
    town                TEXT NOT NULL DEFAULT '',
    annual_use_litres   BIGINT NOT NULL DEFAULT 0,
    annual_quota_litres BIGINT NOT NULL DEFAULT 0,
    contact_name        TEXT NOT NULL DEFAULT '',
    contact_phone       TEXT NOT NULL DEFAULT '',
    contact_email       TEXT NOT NULL DEFAULT '',
    created_at_ms       BIGINT NOT NULL,
    updated_at_ms       BIGINT NOT NULL,
    version             BIGINT NOT NULL DEFAULT 1
);

CREATE TABLE project_requests (
    id                    TEXT PRIMARY KEY,
    water_user_id         TEXT NOT NULL REFERENCES water_users (id),
    title                 TEXT NOT NULL,
    problem               TEXT NOT NULL DEFAULT '',
    scope                 TEXT NOT NULL DEFAULT '',
    baseline_use_litres   BIGINT NOT NULL DEFAULT 0,
    expected_savings_bp   INTEGER NOT NULL DEFAULT 0,
    contract_models       TEXT NOT NULL DEFAULT '[]',
    technologies          TEXT NOT NULL DEFAULT '[]',
    investment_wanted_fen BIGINT NOT NULL DEFAULT 0,
    price_fen_per_m3      BIGINT NOT NULL DEFAULT 0,
    proposal_deadline     TEXT NOT NULL DEFAULT '',
    visibility            TEXT NOT NULL DEFAULT 'public',
    invited_company_ids   TEXT NOT NULL DEFAULT '[]',
    indicator_tags        TEXT NOT NULL DEFAULT '[]',
    status                TEXT NOT NULL,
    status_reason         TEXT NOT NULL DEFAULT '',
    awarded_proposal_id   TEXT NOT NULL DEFAULT '',
    created_at_ms         BIGINT NOT NULL,
    updated_at_ms         BIGINT NOT NULL,
    version               BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX project_requests_by_user ON project_requests (water_user_id, id);
CREATE INDEX project_requests_by_status ON project_requests (status, id);

CREATE TABLE proposals (
    id                      TEXT PRIMARY KEY,
    project_request_id      TEXT NOT NULL REFERENCES project_requests (id),
    company_id              TEXT NOT NULL REFERENCES companies (id),
    offering_id             TEXT NOT NULL DEFAULT '',
    measures                TEXT NOT NULL DEFAULT '',
    investment_fen          BIGINT NOT NULL DEFAULT 0,
    promised_savings_litres BIGINT NOT NULL DEFAULT 0,
    promised_savings_bp     INTEGER NOT NULL DEFAULT 0,
    contract_model          TEXT NOT NULL,
    terms                   TEXT NOT NULL DEFAULT '{}',
    contract_term_months    INTEGER NOT NULL DEFAULT 0,
    mv_option               TEXT NOT NULL DEFAULT 'c',
    drivers                 TEXT NOT NULL DEFAULT '[]',
    status                  TEXT NOT NULL,
    decline_reason          TEXT NOT NULL DEFAULT '',
    withdraw_reason         TEXT NOT NULL DEFAULT '',
    project_id              TEXT NOT NULL DEFAULT '',
    created_at_ms           BIGINT NOT NULL,
    updated_at_ms           BIGINT NOT NULL,
    version                 BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX proposals_by_request ON proposals (project_request_id, id);
CREATE INDEX proposals_by_company ON proposals (company_id, id);

-- Idempotency keys: a create or transition retried with the same request_id (by the same
-- caller, for the same method) returns the first result instead of acting twice.
CREATE TABLE idempotency (
    scope         TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (scope, request_id)
);

-- Events that other services must hear of, written in the transaction of the change
-- (see cwsm_platform::outbox).
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

-- Events from other services already applied (dedupe for at-least-once delivery).
CREATE TABLE processed_events (
    event_id      TEXT PRIMARY KEY,
    processed_at_ms BIGINT NOT NULL
);
