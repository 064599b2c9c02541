//! Who verifies a project: an administrator assigns a verifier body directly
//! (`AssignVerifier`), or a party proposes one and an administrator approves it. Both end in
//! the one assignment path (`assign_verifier_in!`): the independence check on the project as
//! it stands in the transaction, the version-guarded update and the audit row in
//! `verifier_assignments` (the project's verifier history).

use cwsm_platform::auth::Principal;
use cwsm_platform::grpc::Page;
use cwsm_platform::idempotency::RequestKey;
use cwsm_platform::{Error, Result, keyed_write, new_id, now_ms, with_db};

use crate::domain::Project;
use crate::store::{ProjectRow, Store};

/// Where a verifier proposal stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposalState {
    Open,
    Approved,
    Declined,
}

impl ProposalState {
    pub fn code(self) -> &'static str {
        match self {
            ProposalState::Open => "open",
            ProposalState::Approved => "approved",
            ProposalState::Declined => "declined",
        }
    }

    pub fn from_code(code: &str) -> Option<ProposalState> {
        [
            ProposalState::Open,
            ProposalState::Approved,
            ProposalState::Declined,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }
}

/// An administrator's answer to a proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Decline,
}

/// A verifier body proposed by a party of a project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierProposal {
    pub id: String,
    pub project_id: String,
    pub verifier_org: String,
    pub note: String,
    pub proposed_by: String,
    pub proposer_role: String,
    pub proposer_org: String,
    pub state: ProposalState,
    pub decided_by: String,
    pub decision_reason: String,
    pub decided_at_ms: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub version: i64,
}

#[derive(sqlx::FromRow)]
struct ProposalRow {
    id: String,
    project_id: String,
    verifier_org: String,
    note: String,
    proposed_by: String,
    proposer_role: String,
    proposer_org: String,
    state: String,
    decided_by: String,
    decision_reason: String,
    decided_at_ms: i64,
    created_at_ms: i64,
    updated_at_ms: i64,
    version: i64,
}

impl From<ProposalRow> for VerifierProposal {
    fn from(r: ProposalRow) -> Self {
        VerifierProposal {
            id: r.id,
            project_id: r.project_id,
            verifier_org: r.verifier_org,
            note: r.note,
            proposed_by: r.proposed_by,
            proposer_role: r.proposer_role,
            proposer_org: r.proposer_org,
            state: ProposalState::from_code(&r.state).unwrap_or(ProposalState::Open),
            decided_by: r.decided_by,
            decision_reason: r.decision_reason,
            decided_at_ms: r.decided_at_ms,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            version: r.version,
        }
    }
}

/// One assignment of a verifier body to a project, as audited.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct VerifierAssignment {
    pub id: String,
    pub project_id: String,
    pub verifier_org: String,
    pub previous_verifier_org: String,
    /// The approved proposal; '' when an administrator assigned directly.
    pub proposal_id: String,
    pub actor: String,
    pub actor_org: String,
    pub at_ms: i64,
}

/// Assignments shown with a project (GetProject).
pub const ASSIGNMENTS_SHOWN: i64 = 200;

/// Assigns the verifier body `$verifier_org` to project `$project_id` on `$tx`, the one path
/// of AssignVerifier and of an approved proposal: the project's version (`$expected_version`,
/// 0 for any), independence, the version-guarded update and the audit row naming `$who` and
/// `$proposal_id` ('' when direct).
macro_rules! assign_verifier_in {
    ($tx:expr, $project_id:expr, $expected_version:expr, $verifier_org:expr, $who:expr, $proposal_id:expr) => {{
        let project_id: &str = $project_id;
        let verifier_org: &str = $verifier_org;
        let who: &Principal = $who;
        let expected_version: i64 = $expected_version;
        let row: Option<ProjectRow> = sqlx::query_as("SELECT * FROM projects WHERE id = $1").bind(project_id).fetch_optional(&mut *$tx).await?;
        let project = row.map(Project::from).ok_or_else(|| Error::not_found("project", project_id))?;
        if expected_version != 0 && project.version != expected_version {
            return Err(Error::Aborted(format!(
                "project {project_id} is at version {}, not {expected_version}; read it again and retry", project.version)));
        }
        project.check_verifier_independent(verifier_org)?;
        let now = now_ms();
        let written = sqlx::query("UPDATE projects SET verifier_org = $1, updated_at_ms = $2, version = version + 1 WHERE id = $3 AND version = $4")
            .bind(verifier_org).bind(now).bind(project_id).bind(project.version).execute(&mut *$tx).await?.rows_affected();
        if written == 0 {
            return Err(Error::Aborted(format!(
                "project {project_id} changed while the verifier was being assigned; read it again and retry")));
        }
        sqlx::query("INSERT INTO verifier_assignments (id, project_id, verifier_org, previous_verifier_org, proposal_id, actor, actor_org, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(new_id()).bind(project_id).bind(verifier_org).bind(&project.verifier_org).bind($proposal_id)
            .bind(&who.subject).bind(who.org.as_deref().unwrap_or_default()).bind(now)
            .execute(&mut *$tx).await?;
    }};
}

impl Store {
    /// Assigns the verifier body `verifier_org` to a project (administrators; checked by the
    /// caller).
    pub async fn assign_verifier(
        &self,
        key: &RequestKey,
        project_id: &str,
        expected_version: i64,
        verifier_org: &str,
        who: &Principal,
    ) -> Result<Project> {
        let _forget = self.cache.forget_when_done(project_id);
        let id: String = keyed_write!(&self.db, key, tx => {
            assign_verifier_in!(tx, project_id, expected_version, verifier_org, who, "");
            project_id.to_string()
        });
        self.project(&id).await
    }

    /// Records `who`'s proposal of `verifier_org` for a project: a party in its own role, the
    /// body independent of both parties, no other proposal open.
    pub async fn propose_verifier(
        &self,
        key: &RequestKey,
        project_id: &str,
        verifier_org: &str,
        note: &str,
        who: &Principal,
    ) -> Result<VerifierProposal> {
        let id: String = keyed_write!(&self.db, key, tx => {
            let row: Option<ProjectRow> = sqlx::query_as("SELECT * FROM projects WHERE id = $1").bind(project_id).fetch_optional(&mut *tx).await?;
            let project = row.map(Project::from).ok_or_else(|| Error::not_found("project", project_id))?;
            if !project.own_party(who) {
                let why = if project.administered_by(who) {
                    format!("administrators assign the verifier of project {project_id} directly (AssignVerifier); proposals are the parties'")
                } else {
                    format!("only the company or the water user of project {project_id} proposes its verifier")
                };
                return Err(project.refuse(who, why));
            }
            project.check_verifier_independent(verifier_org)?;
            if project.verifier_org == verifier_org {
                return Err(Error::precondition(format!(
                    "verifier_org {verifier_org} is already the verifier of project {project_id}")));
            }
            let id = new_id();
            let now = now_ms();
            // One open proposal per project (a partial unique index): of two concurrent
            // proposals one is stored, the other finds it below.
            let stored = sqlx::query("INSERT INTO verifier_proposals (id, project_id, verifier_org, note, proposed_by, proposer_role, proposer_org, state, created_at_ms, updated_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $8) ON CONFLICT DO NOTHING")
                .bind(&id).bind(project_id).bind(verifier_org).bind(note.trim()).bind(&who.subject)
                .bind(who.role.as_str()).bind(who.org.as_deref().unwrap_or_default()).bind(now)
                .execute(&mut *tx).await?.rows_affected() == 1;
            if !stored {
                let open: Option<ProposalRow> = sqlx::query_as("SELECT * FROM verifier_proposals WHERE project_id = $1 AND state = 'open'")
                    .bind(project_id).fetch_optional(&mut *tx).await?;
                let open = open.map(VerifierProposal::from);
                return Err(Error::AlreadyExists(match open {
                    Some(p) => format!(
                        "project {project_id} has an open verifier proposal {} (verifier_org {}, proposed by the {} {}); an administrator decides it before another is made",
                        p.id, p.verifier_org, p.proposer_role, p.proposer_org),
                    None => format!("project {project_id} has an open verifier proposal; an administrator decides it before another is made"),
                }));
            }
            id
        });
        self.verifier_proposal(&id).await
    }

    pub async fn verifier_proposal(&self, id: &str) -> Result<VerifierProposal> {
        let row: Option<ProposalRow> = with_db!(&self.db, pool => sqlx::query_as("SELECT * FROM verifier_proposals WHERE id = $1").bind(id).fetch_optional(pool).await?);
        row.map(VerifierProposal::from)
            .ok_or_else(|| Error::not_found("verifier proposal", id))
    }

    /// A project's proposals, oldest first (ids are time-ordered).
    pub async fn verifier_proposals(
        &self,
        project_id: &str,
        page: &Page,
    ) -> Result<(Vec<VerifierProposal>, String)> {
        let mut rows: Vec<VerifierProposal> = with_db!(&self.db, pool => sqlx::query_as::<_, ProposalRow>(
            "SELECT * FROM verifier_proposals WHERE project_id = $1 AND ($2 = '' OR id > $2) ORDER BY id LIMIT $3")
            .bind(project_id).bind(page.after.clone().unwrap_or_default()).bind(page.fetch_limit()).fetch_all(pool).await?)
        .into_iter().map(VerifierProposal::from).collect();
        let next = page.finish(&mut rows, |p| p.id.clone());
        Ok((rows, next))
    }

    /// A project's verifier assignments, oldest first.
    pub async fn verifier_assignments(&self, project_id: &str) -> Result<Vec<VerifierAssignment>> {
        Ok(
            with_db!(&self.db, pool => sqlx::query_as::<_, VerifierAssignment>(
            "SELECT * FROM verifier_assignments WHERE project_id = $1 ORDER BY at_ms, id LIMIT $2")
            .bind(project_id).bind(ASSIGNMENTS_SHOWN).fetch_all(pool).await?),
        )
    }

    /// An administrator's decision on an open proposal; approval assigns the body through
    /// the one assignment path, in the same transaction. Returns the proposal and, when
    /// approved, the project.
    pub async fn decide_verifier_proposal(
        &self,
        key: &RequestKey,
        proposal_id: &str,
        expected_version: i64,
        decision: Decision,
        reason: &str,
        who: &Principal,
    ) -> Result<(VerifierProposal, Option<Project>)> {
        // The proposal's project never changes: read it first to forget the project after.
        let project_id = self.verifier_proposal(proposal_id).await?.project_id;
        let _forget = self.cache.forget_when_done(&project_id);
        keyed_write!(&self.db, key, tx => {
            let row: Option<ProposalRow> = sqlx::query_as("SELECT * FROM verifier_proposals WHERE id = $1").bind(proposal_id).fetch_optional(&mut *tx).await?;
            let proposal = row.map(VerifierProposal::from).ok_or_else(|| Error::not_found("verifier proposal", proposal_id))?;
            let project_row: Option<ProjectRow> = sqlx::query_as("SELECT * FROM projects WHERE id = $1").bind(&proposal.project_id).fetch_optional(&mut *tx).await?;
            let project = project_row.map(Project::from).ok_or_else(|| Error::not_found("project", &proposal.project_id))?;
            if !project.administered_by(who) {
                return Err(project.refuse(who, format!(
                    "only an administrator of {} approves or declines the verifier proposals of project {}", project.jurisdiction(), project.id)));
            }
            if proposal.state != ProposalState::Open {
                return Err(Error::precondition(format!(
                    "verifier proposal {proposal_id} is {} already (by {}); a decided proposal is not decided again: the parties may propose anew",
                    proposal.state.code(), proposal.decided_by)));
            }
            if expected_version != 0 && proposal.version != expected_version {
                return Err(Error::Aborted(format!(
                    "verifier proposal {proposal_id} is at version {}, not {expected_version}; read it again and retry", proposal.version)));
            }
            let state = match decision {
                Decision::Approve => ProposalState::Approved,
                Decision::Decline => ProposalState::Declined,
            };
            let now = now_ms();
            let written = sqlx::query("UPDATE verifier_proposals SET state = $1, decided_by = $2, decision_reason = $3, decided_at_ms = $4, updated_at_ms = $4, version = version + 1 \
                         WHERE id = $5 AND version = $6 AND state = 'open'")
                .bind(state.code()).bind(&who.subject).bind(reason.trim()).bind(now).bind(proposal_id).bind(proposal.version)
                .execute(&mut *tx).await?.rows_affected();
            if written == 0 {
                return Err(Error::Aborted(format!(
                    "verifier proposal {proposal_id} changed while it was being decided; read it again and retry")));
            }
            if decision == Decision::Approve {
                assign_verifier_in!(tx, &project.id, 0, &proposal.verifier_org, who, proposal_id);
            }
            proposal_id.to_string()
        });
        let proposal = self.verifier_proposal(proposal_id).await?;
        let project = match proposal.state {
            ProposalState::Approved => Some(self.project(&proposal.project_id).await?),
            _ => None,
        };
        Ok((proposal, project))
    }
}
