-- Accounts: organizations, people, memberships, invitations, sign-in failures, sessions
-- (refresh tokens), revocations, signing keys and the audit log. Instants are milliseconds
-- since the epoch.

CREATE TABLE organizations (
    credit_code      TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    kind             TEXT NOT NULL,
    status           TEXT NOT NULL,
    status_reason    TEXT NOT NULL DEFAULT '',
    version          INTEGER NOT NULL,
    registered_at_ms INTEGER NOT NULL,
    reviewed_at_ms   INTEGER,
    reviewed_by      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX organizations_status ON organizations (status, credit_code);

CREATE TABLE people (
    id            TEXT PRIMARY KEY,
    -- normalized: trimmed, lower case (e-mail) or digits with an optional + (phone)
    login         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE memberships (
    person_id    TEXT NOT NULL REFERENCES people (id),
    credit_code  TEXT NOT NULL REFERENCES organizations (credit_code),
    role         TEXT NOT NULL,
    joined_at_ms INTEGER NOT NULL,
    PRIMARY KEY (person_id, credit_code)
);
CREATE INDEX memberships_org ON memberships (credit_code);

CREATE TABLE invitations (
    code_hash     TEXT PRIMARY KEY,
    credit_code   TEXT NOT NULL REFERENCES organizations (credit_code),
    role          TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    used_by       TEXT,
    used_at_ms    INTEGER
);

-- Failed sign-ins per login, existing or not (so a lockout tells nothing about existence).
CREATE TABLE login_failures (
    login               TEXT PRIMARY KEY,
    failures            INTEGER NOT NULL,
    first_failure_at_ms INTEGER NOT NULL,
    locked_until_ms     INTEGER NOT NULL DEFAULT 0
);

-- Refresh tokens, stored as SHA-256; a session is the family of one sign-in's tokens.
CREATE TABLE refresh_tokens (
    token_hash    TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL,
    person_id     TEXT NOT NULL REFERENCES people (id),
    credit_code   TEXT NOT NULL REFERENCES organizations (credit_code),
    issued_at_ms  INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    used_at_ms    INTEGER,
    revoked_at_ms INTEGER
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
CREATE INDEX refresh_tokens_person ON refresh_tokens (person_id);

-- Sessions and memberships whose access tokens must stop before they expire; kept as long as
-- such a token can live.
CREATE TABLE revocations (
    kind  TEXT NOT NULL,
    value TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (kind, value)
);

CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY,
    -- PKCS#8 DER of the Ed25519 key, hex
    private_key   TEXT NOT NULL,
    -- the public key, base64url (the JWK's x)
    public_x      TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    signs_from_ms INTEGER NOT NULL
);

CREATE TABLE audit_events (
    id     TEXT PRIMARY KEY,
    at_ms  INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_events_action ON audit_events (action, id);
