-- A verifier body proposed by a party of a project, for an administrator to approve or
-- decline. State 'open' until decided ('approved' or 'declined'); decided proposals are kept.
CREATE TABLE verifier_proposals (
    id              TEXT PRIMARY KEY,
    project_id      TEXT NOT NULL REFERENCES projects (id),
    verifier_org    TEXT NOT NULL,
    note            TEXT NOT NULL DEFAULT '',
    proposed_by     TEXT NOT NULL,
    proposer_role   TEXT NOT NULL,
    proposer_org    TEXT NOT NULL,
    state           TEXT NOT NULL,
    decided_by      TEXT NOT NULL DEFAULT '',
    decision_reason TEXT NOT NULL DEFAULT '',
    decided_at_ms   BIGINT NOT NULL DEFAULT 0,
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL,
    version         BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX verifier_proposals_by_project ON verifier_proposals (project_id, id);
-- One open proposal per project: of two concurrent proposals one is stored.
CREATE UNIQUE INDEX verifier_proposals_one_open ON verifier_proposals (project_id) WHERE state = 'open';

-- Every assignment of a verifier body to a project (AssignVerifier, or an approved proposal):
-- who assigned which body instead of which, when, and from which proposal ('' directly).
CREATE TABLE verifier_assignments (
    id                    TEXT PRIMARY KEY,
    project_id            TEXT NOT NULL REFERENCES projects (id),
    verifier_org          TEXT NOT NULL,
    previous_verifier_org TEXT NOT NULL DEFAULT '',
    proposal_id           TEXT NOT NULL DEFAULT '',
    actor                 TEXT NOT NULL,
    actor_org             TEXT NOT NULL DEFAULT '',
    at_ms                 BIGINT NOT NULL
);
CREATE INDEX verifier_assignments_by_project ON verifier_assignments (project_id, at_ms, id);

-- Who documented a non-routine adjustment (subject, and the organization acted for).
ALTER TABLE non_routine_adjustments ADD COLUMN recorded_by TEXT NOT NULL DEFAULT '';
ALTER TABLE non_routine_adjustments ADD COLUMN recorded_by_org TEXT NOT NULL DEFAULT '';
