-- OpenID Connect sign-in: identities at external providers linked to people, and the sign-ins
-- started and not yet completed. Instants are milliseconds since the epoch.

-- An identity at a provider is its issuer and subject (OpenID Connect Core §5.7: the only
-- stable pair); the provider's configured name is kept for people to read.
CREATE TABLE external_identities (
    issuer       TEXT NOT NULL,
    subject      TEXT NOT NULL,
    provider     TEXT NOT NULL,
    person_id    TEXT NOT NULL REFERENCES people (id),
    -- the e-mail the ID token said when it was linked (empty when linked by an administrator)
    email        TEXT NOT NULL DEFAULT '',
    linked_at_ms INTEGER NOT NULL,
    -- who linked it: an administrator's subject, or "email_verified" when the provider vouched
    linked_by    TEXT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX external_identities_person ON external_identities (person_id);

-- A sign-in started: its state (SHA-256, as sent back by the browser), the nonce and the PKCE
-- verifier the server keeps; used once (deleted when completed), ten minutes at most.
CREATE TABLE external_sign_ins (
    state_hash    TEXT PRIMARY KEY,
    provider      TEXT NOT NULL,
    redirect_uri  TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    code_verifier TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX external_sign_ins_expiry ON external_sign_ins (expires_at_ms);

-- The one idempotency rule (platform::idempotency) for the accounts service's keyed writes
-- (LinkExternalIdentity first). IF NOT EXISTS: another migration may bring it too.
CREATE TABLE IF NOT EXISTS idempotency (
    scope         TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    request_hash  TEXT NOT NULL DEFAULT '',
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (scope, request_id)
);
