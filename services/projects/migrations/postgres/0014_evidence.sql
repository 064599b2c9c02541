-- Evidence documents by their content: stored once (SHA-256 hex), whatever project cites it.
CREATE TABLE documents (
    sha256        TEXT PRIMARY KEY,
    media_type    TEXT NOT NULL,
    size_bytes    BIGINT NOT NULL,
    content       BYTEA NOT NULL,
    created_at_ms BIGINT NOT NULL
);
-- A document uploaded to a project: who may read the project may download it.
CREATE TABLE project_documents (
    project_id      TEXT NOT NULL REFERENCES projects (id),
    sha256          TEXT NOT NULL REFERENCES documents (sha256),
    file_name       TEXT NOT NULL,
    uploaded_by     TEXT NOT NULL,
    uploaded_by_org TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (project_id, sha256)
);
