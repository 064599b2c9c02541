-- Evidence documents of plans' achievements: what each is, by its content (SHA-256 hex); the
-- bytes are in the document store (documents_url), written before these rows.
CREATE TABLE documents (
    sha256        TEXT PRIMARY KEY,
    media_type    TEXT NOT NULL,
    size_bytes    BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
-- A document uploaded to a plan (by its code, across its versions): an achievement of the plan
-- cites it as "sha256:<hex>".
CREATE TABLE plan_documents (
    plan_code     TEXT NOT NULL,
    sha256        TEXT NOT NULL REFERENCES documents (sha256),
    file_name     TEXT NOT NULL,
    uploaded_by   TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (plan_code, sha256)
);
