-- API keys of machine clients, suspended people, and the one idempotency rule for accounts'
-- creates (platform::idempotency).

-- An API key acts for its organization in the organization's role. Only the SHA-256 of the
-- whole key is kept (a 256-bit random secret needs no slow hash: see `api_key_hash`).
CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    secret_hash     TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    credit_code     TEXT NOT NULL REFERENCES organizations (credit_code),
    role            TEXT NOT NULL,
    created_by      TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    expires_at_ms   INTEGER NOT NULL,
    revoked_at_ms   INTEGER,
    revoked_by      TEXT NOT NULL DEFAULT '',
    last_used_at_ms INTEGER
);
CREATE INDEX api_keys_org ON api_keys (credit_code, id);

-- A suspended person signs in nowhere and their tokens are listed as revoked.
ALTER TABLE people ADD COLUMN suspended_at_ms INTEGER;
ALTER TABLE people ADD COLUMN suspended_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE people ADD COLUMN suspended_by TEXT NOT NULL DEFAULT '';

CREATE TABLE IF NOT EXISTS idempotency (
    scope         TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    request_hash  TEXT NOT NULL DEFAULT '',
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (scope, request_id)
);
