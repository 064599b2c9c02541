-- Meters, readings, measured savings (M&V) and settlement. Volumes in litres, money in fen,
-- instants in ms since the epoch.

-- The reporting period length of the M&V plan (months; 1 monthly, 3 quarterly).
ALTER TABLE projects ADD COLUMN reporting_period_months INTEGER NOT NULL DEFAULT 1;
ALTER TABLE projects ADD COLUMN mv_model_description TEXT NOT NULL DEFAULT '';

CREATE TABLE meters (
    id               TEXT PRIMARY KEY,
    project_id       TEXT NOT NULL REFERENCES projects (id),
    site             TEXT NOT NULL DEFAULT '',
    name             TEXT NOT NULL,
    kind             TEXT NOT NULL,
    interval_seconds INTEGER NOT NULL,
    serial_number    TEXT NOT NULL DEFAULT '',
    created_at_ms    BIGINT NOT NULL,
    updated_at_ms    BIGINT NOT NULL,
    version          BIGINT NOT NULL DEFAULT 1,
    UNIQUE (project_id, name)
);

-- One row per meter and instant (the natural key makes ingestion idempotent). use_litres is
-- the use of the interval ending at read_at_ms (for a cumulative register: the difference to
-- the previous reading); flags is a bit set (bit n-1 = cwsm.projects.v1.ReadingFlag n).
CREATE TABLE readings (
    meter_id     TEXT NOT NULL,
    read_at_ms   BIGINT NOT NULL,
    value_litres BIGINT NOT NULL,
    use_litres   BIGINT NOT NULL,
    value_kind   INTEGER NOT NULL,
    flags        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (meter_id, read_at_ms)
) WITHOUT ROWID;

CREATE TABLE non_routine_adjustments (
    id            TEXT PRIMARY KEY,
    project_id    TEXT NOT NULL REFERENCES projects (id),
    start_date    TEXT NOT NULL,
    end_date      TEXT NOT NULL DEFAULT '',
    litres        BIGINT NOT NULL,
    reason        TEXT NOT NULL,
    evidence      TEXT NOT NULL DEFAULT '',
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    version       BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX non_routine_adjustments_by_project ON non_routine_adjustments (project_id, id);

-- A reporting period once submitted: its figures frozen at submission.
CREATE TABLE periods (
    id                            TEXT PRIMARY KEY,
    project_id                    TEXT NOT NULL REFERENCES projects (id),
    start_date                    TEXT NOT NULL,
    end_date                      TEXT NOT NULL,
    adjusted_baseline_litres      BIGINT NOT NULL,
    actual_litres                 BIGINT NOT NULL,
    non_routine_adjustment_litres BIGINT NOT NULL,
    dispute_adjustment_litres     BIGINT NOT NULL DEFAULT 0,
    savings_litres                BIGINT NOT NULL,
    savings_bp                    INTEGER NOT NULL,
    uncertainty_68_litres         BIGINT NOT NULL,
    uncertainty_90_litres         BIGINT NOT NULL,
    promised_savings_litres       BIGINT NOT NULL,
    status                        TEXT NOT NULL,
    dispute_reason                TEXT NOT NULL DEFAULT '',
    notes                         TEXT NOT NULL DEFAULT '[]',
    created_at_ms                 BIGINT NOT NULL,
    updated_at_ms                 BIGINT NOT NULL,
    version                       BIGINT NOT NULL DEFAULT 1,
    UNIQUE (project_id, start_date)
);

CREATE TABLE settlements (
    id                TEXT PRIMARY KEY,
    project_id        TEXT NOT NULL REFERENCES projects (id),
    period_id         TEXT NOT NULL UNIQUE REFERENCES periods (id),
    period_start_date TEXT NOT NULL,
    period_end_date   TEXT NOT NULL,
    contract_model    TEXT NOT NULL,
    savings_litres    BIGINT NOT NULL,
    price_fen_per_m3  BIGINT NOT NULL,
    savings_value_fen BIGINT NOT NULL,
    company_due_fen   BIGINT NOT NULL,
    user_due_fen      BIGINT NOT NULL,
    shortfall_fen     BIGINT NOT NULL,
    hosting_fee_fen   BIGINT NOT NULL,
    water_bill_fen    BIGINT NOT NULL,
    statement_lines   TEXT NOT NULL DEFAULT '[]',
    created_at_ms     BIGINT NOT NULL,
    updated_at_ms     BIGINT NOT NULL,
    version           BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX settlements_by_project ON settlements (project_id, id);
