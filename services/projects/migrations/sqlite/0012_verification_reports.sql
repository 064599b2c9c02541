-- The verification report of a period as the verifier signed it: rendered when the period
-- became verified (again after a resolved dispute: one per version), with the SHA-256 of each
-- document, so the archived bytes can be shown and checked.
CREATE TABLE verification_reports (
    period_id      TEXT NOT NULL REFERENCES periods (id),
    period_version BIGINT NOT NULL,
    html           BLOB NOT NULL,
    xlsx           BLOB NOT NULL,
    html_sha256    TEXT NOT NULL,
    xlsx_sha256    TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (period_id, period_version)
);
