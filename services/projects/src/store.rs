//! Projects' tables, on SQLite or PostgreSQL (one body of SQL for both, see
//! `cwsm_platform::db`). Every stage change writes, in one transaction: the project row, the
//! transition (who, when, why), the milestone log entry and its outbox event.

use cwsm_platform::bus::{Envelope, topics};
use cwsm_platform::db::{BeginWrite, Db};
use cwsm_platform::grpc::Page;
use cwsm_platform::idempotency::RequestKey;
use cwsm_platform::input::like_contains;
use cwsm_platform::outbox::OutboxWrite;
use cwsm_platform::vocab::{ContractModel, IndicatorTag, Milestone, MvOption, Sector};
use cwsm_platform::{Error, Result, keyed_write, new_id, now_ms, with_db};

use std::sync::Arc;

use crate::cache::{ProjectCache, ProjectView};
use crate::domain::*;

pub static MIGRATIONS: cwsm_platform::db::Migrations = cwsm_platform::db::Migrations {
    sqlite: &sqlx::migrate!("migrations/sqlite"),
    postgres: &sqlx::migrate!("migrations/postgres"),
};

/// A milestone as the log records it; the events adapter turns it into the wire payload.
#[derive(Clone, Debug)]
pub struct MilestoneFacts {
    pub event_id: String,
    pub sequence: i64,
    pub milestone: Milestone,
    pub occurred_at_ms: i64,
    /// The day it took effect (China Standard Time), which may lie before `occurred_at_ms`.
    pub effective_date: chrono::NaiveDate,
    pub reason: String,
    pub project: Project,
    /// Savings verified so far over the project's periods, and promised for the same periods.
    pub verified_savings_litres: i64,
    pub promised_savings_litres: i64,
    /// For PERIOD_VERIFIED: the period and its savings.
    pub period_id: String,
    pub period_savings_litres: i64,
}

/// How a project came to be signed: the CONTRACTED milestone's effective date, evidence and
/// reason, and the organization of who entered it ('' for the service itself).
#[derive(Clone, Debug)]
pub struct Signing {
    pub date: chrono::NaiveDate,
    pub evidence: String,
    pub reason: String,
    pub actor_org: String,
}

impl Signing {
    /// A project of the marketplace: signed on the day its proposal was accepted (`accepted_ms`;
    /// now when the event carries no time).
    pub fn at_acceptance(accepted_ms: i64) -> Signing {
        let at = if accepted_ms > 0 {
            accepted_ms
        } else {
            now_ms()
        };
        Signing {
            date: recorded_day(at),
            evidence: String::new(),
            reason: "proposal accepted".to_string(),
            actor_org: String::new(),
        }
    }
}

/// Encodes a milestone for the bus (protobuf, by the events adapter): the store stays free of
/// wire types.
pub type EncodeMilestone = fn(&MilestoneFacts) -> Vec<u8>;

#[derive(Clone)]
pub struct Store {
    pub db: Db,
    pub(crate) encode: EncodeMilestone,
    /// Projects as last read (see [`crate::cache`]): every commit that changes a project
    /// forgets it there.
    pub(crate) cache: Arc<ProjectCache>,
    /// Where evidence documents' bytes are kept ([`Store::keep_documents_in`]); none: uploads
    /// are refused saying so.
    pub(crate) documents: Option<cwsm_platform::documents::DocumentStore>,
}

/// Transitions GetProject shows as the stage history.
pub const HISTORY_SHOWN: i64 = 200;

#[derive(Clone, Debug, Default)]
pub struct ProjectFilter {
    pub stage: String,
    pub company_id: String,
    pub water_user_id: String,
    pub sector: String,
    pub town: String,
    pub contract_model: String,
    pub indicator_tag: String,
    pub query: String,
    /// Whose projects the caller sees (filtered in SQL, so pages stay full).
    pub seen_by: SeenBy,
}

/// The projects a caller may read, as a list filter: administrators all; a company, a water
/// user or a verifier body those whose credit code (or assigned verifier) is its org; anyone
/// else (a service, a token without an org) none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SeenBy {
    All,
    /// An administrator of a jurisdiction: the projects whose site code it holds (those
    /// without a code are the platform's district's, see [`crate::domain::Project::jurisdiction`]).
    Within(cwsm_platform::auth::Codes),
    Company(String),
    WaterUser(String),
    Verifier(String),
    #[default]
    Nobody,
}

impl SeenBy {
    pub fn of(who: &cwsm_platform::auth::Principal) -> SeenBy {
        use cwsm_platform::auth::{Reach, Role};
        if who.is_admin() {
            // A department's administrator runs no contracts (see `Project::administered_by`).
            return match who.reach() {
                Reach::Everything => SeenBy::All,
                Reach::Codes(codes) => SeenBy::Within(codes),
                Reach::Nothing => SeenBy::Nobody,
            };
        }
        let Some(org) = who.org.clone().filter(|o| !o.is_empty()) else {
            return SeenBy::Nobody;
        };
        match who.role {
            Role::Company => SeenBy::Company(org),
            Role::WaterUser => SeenBy::WaterUser(org),
            Role::Verifier => SeenBy::Verifier(org),
            Role::Admin | Role::Service => SeenBy::Nobody,
        }
    }

    /// What a list query binds for it; `None` when nothing is seen.
    fn binds(&self) -> Option<SeenBinds> {
        let mut b = SeenBinds::default();
        match self {
            SeenBy::All => b.all = 1,
            SeenBy::Within(codes) => {
                b.lowest = codes.lowest.clone();
                b.highest = codes.highest.clone();
                b.without_code = i64::from(codes.without_code);
            }
            SeenBy::Company(c) => b.company = c.clone(),
            SeenBy::WaterUser(c) => b.water_user = c.clone(),
            SeenBy::Verifier(c) => b.verifier = c.clone(),
            SeenBy::Nobody => return None,
        }
        Some(b)
    }
}

/// The values of the SQL condition "the caller sees this project" (see [`SEEN`]).
#[derive(Default)]
struct SeenBinds {
    all: i64,
    company: String,
    water_user: String,
    verifier: String,
    lowest: String,
    highest: String,
    without_code: i64,
}

/// The one SQL condition of [`SeenBy`] over a `projects` row aliased `p`, binding `$n`…`$n+6`
/// as [`SeenBinds`] in field order.
fn seen_sql(n: usize) -> String {
    let [all, company, user, verifier, lowest, highest, without] =
        std::array::from_fn(|k| format!("${}", n + k));
    format!(
        "({all} = 1 OR ({company} <> '' AND p.company_credit_code = {company}) \
         OR ({user} <> '' AND p.water_user_credit_code = {user}) OR ({verifier} <> '' AND p.verifier_org = {verifier}) \
         OR ({lowest} <> '' AND p.jurisdiction_code BETWEEN {lowest} AND {highest}) OR ({without} = 1 AND p.jurisdiction_code = ''))"
    )
}

#[derive(sqlx::FromRow)]
pub(crate) struct ProjectRow {
    id: String,
    proposal_id: String,
    project_request_id: String,
    company_id: String,
    company_name: String,
    company_credit_code: String,
    water_user_id: String,
    water_user_name: String,
    water_user_credit_code: String,
    sector: String,
    unit_type: String,
    town: String,
    title: String,
    sites: String,
    measures: String,
    contract_model: String,
    terms: String,
    investment_fen: i64,
    promised_savings_litres: i64,
    promised_savings_bp: i32,
    contract_term_months: i32,
    baseline_start_date: String,
    baseline_end_date: String,
    baseline_use_litres: i64,
    mv_option: String,
    drivers: String,
    price_fen_per_m3: i64,
    indicator_tags: String,
    stage: String,
    suspended_from_stage: String,
    reporting_period_months: i32,
    mv_model_description: String,
    verifier_org: String,
    created_at_ms: i64,
    updated_at_ms: i64,
    version: i64,
    jurisdiction_code: String,
    quality_rules: String,
}

fn json_list(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

impl From<ProjectRow> for Project {
    fn from(r: ProjectRow) -> Self {
        Project {
            id: r.id,
            contract: Contract {
                proposal_id: r.proposal_id,
                project_request_id: r.project_request_id,
                company: Party {
                    id: r.company_id,
                    name: r.company_name,
                    credit_code: r.company_credit_code,
                },
                water_user: Party {
                    id: r.water_user_id,
                    name: r.water_user_name,
                    credit_code: r.water_user_credit_code,
                },
                sector: Sector::from_code(&r.sector).unwrap_or(Sector::PublicInstitution),
                unit_type: r.unit_type,
                jurisdiction_code: if r.jurisdiction_code.is_empty() {
                    cwsm_platform::gazetteer::Gazetteer::builtin().code_of_site(&r.town)
                } else {
                    r.jurisdiction_code
                },
                town: r.town,
                title: r.title,
                measures: r.measures,
                contract_model: ContractModel::from_code(&r.contract_model)
                    .unwrap_or(ContractModel::SharedSavings),
                terms: serde_json::from_str(&r.terms).unwrap_or_default(),
                investment_fen: r.investment_fen,
                promised_savings_litres: r.promised_savings_litres,
                promised_savings_bp: r.promised_savings_bp,
                contract_term_months: r.contract_term_months,
                baseline_use_litres: r.baseline_use_litres,
                mv_option: MvOption::from_code(&r.mv_option).unwrap_or(MvOption::C),
                drivers: json_list(&r.drivers),
                price_fen_per_m3: r.price_fen_per_m3,
                indicator_tags: json_list(&r.indicator_tags)
                    .iter()
                    .filter_map(|t| IndicatorTag::from_code(t))
                    .collect(),
            },
            sites: json_list(&r.sites),
            baseline_start_date: r.baseline_start_date,
            baseline_end_date: r.baseline_end_date,
            stage: Stage::from_code(&r.stage).unwrap_or(Stage::Contracted),
            suspended_from: Stage::from_code(&r.suspended_from_stage),
            reporting_period_months: r.reporting_period_months,
            mv_model_description: r.mv_model_description,
            quality_rules: crate::metering::QualityRules::from_stored(&r.quality_rules),
            verifier_org: r.verifier_org,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            version: r.version,
        }
    }
}

#[derive(sqlx::FromRow)]
struct TransitionRow {
    id: String,
    project_id: String,
    from_stage: String,
    to_stage: String,
    reason: String,
    evidence: String,
    actor: String,
    actor_org: String,
    at_ms: i64,
    effective_date: String,
}

impl From<TransitionRow> for Transition {
    fn from(r: TransitionRow) -> Self {
        Transition {
            id: r.id,
            project_id: r.project_id,
            from: Stage::from_code(&r.from_stage),
            to: Stage::from_code(&r.to_stage).unwrap_or(Stage::Contracted),
            reason: r.reason,
            evidence: r.evidence,
            actor: r.actor,
            actor_org: r.actor_org,
            at_ms: r.at_ms,
            // Recorded before effective dates were: the day it was recorded.
            effective_date: chrono::NaiveDate::parse_from_str(&r.effective_date, "%Y-%m-%d")
                .unwrap_or_else(|_| recorded_day(r.at_ms)),
        }
    }
}

/// Writes a milestone log entry and its outbox event on `$tx` (`$facts`: a [`MilestoneFacts`]
/// whose `sequence` the log assigns).
macro_rules! record_milestone {
    ($self:expr, $tx:expr, $facts:expr) => {{
        let mut facts: MilestoneFacts = $facts;
        let sequence: i64 = sqlx::query_scalar("INSERT INTO milestones (event_id, project_id, milestone, occurred_at_ms, payload) VALUES ($1, $2, $3, $4, $5) RETURNING seq")
            .bind(&facts.event_id).bind(&facts.project.id).bind(facts.milestone.code()).bind(facts.occurred_at_ms).bind(Vec::<u8>::new())
            .fetch_one(&mut *$tx).await?;
        facts.sequence = sequence;
        let payload = ($self.encode)(&facts);
        sqlx::query("UPDATE milestones SET payload = $1 WHERE seq = $2")
            .bind(&payload).bind(sequence).execute(&mut *$tx).await?;
        $tx.enqueue(&Envelope {
            event_id: facts.event_id.clone(),
            topic: topics::PROJECT_MILESTONES.to_string(),
            kind: topics::PROJECT_MILESTONE_KIND.to_string(),
            payload,
            occurred_at_ms: facts.occurred_at_ms,
            trace_parent: String::new(),
        }).await?;
    }};
}
pub(crate) use record_milestone;

/// Sums the savings of the project's verified (and settled) periods, and the promise for the
/// same periods, on `$tx`: (verified, promised).
macro_rules! verified_totals {
    ($tx:expr, $project_id:expr) => {{
        let row: (Option<i64>, Option<i64>) = sqlx::query_as("SELECT CAST(SUM(savings_litres) AS BIGINT), CAST(SUM(promised_savings_litres) AS BIGINT) FROM periods WHERE project_id = $1 AND status IN ('verified', 'settled')")
            .bind($project_id).fetch_one(&mut *$tx).await?;
        (row.0.unwrap_or(0), row.1.unwrap_or(0))
    }};
}
pub(crate) use verified_totals;

/// Writes a transition, its milestone log entry and its outbox event on `$tx`.
macro_rules! record_stage_change {
    ($self:expr, $tx:expr, $project:expr, $from:expr, $reason:expr, $evidence:expr, $actor:expr, $actor_org:expr, $now:expr, $effective:expr) => {{
        let project: &Project = $project;
        let effective: chrono::NaiveDate = $effective;
        let transition_id = new_id();
        sqlx::query("INSERT INTO project_transitions (id, project_id, from_stage, to_stage, reason, evidence, actor, actor_org, at_ms, effective_date) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
            .bind(&transition_id).bind(&project.id).bind($from).bind(project.stage.code())
            .bind($reason).bind($evidence).bind($actor).bind($actor_org).bind($now).bind(effective.to_string())
            .execute(&mut *$tx).await?;
        let (verified, promised) = verified_totals!($tx, &project.id);
        record_milestone!($self, $tx, MilestoneFacts {
            event_id: new_id(),
            sequence: 0,
            milestone: project.stage.milestone(),
            occurred_at_ms: $now,
            effective_date: effective,
            reason: $reason.to_string(),
            project: project.clone(),
            verified_savings_litres: verified,
            promised_savings_litres: promised,
            period_id: String::new(),
            period_savings_litres: 0,
        });
        transition_id
    }};
}

impl Store {
    pub async fn connect(url: &str, encode: EncodeMilestone) -> anyhow::Result<Store> {
        Self::connect_in_schema(url, "projects", encode).await
    }

    /// Connects with another PostgreSQL schema than `projects` (the bench uses its own).
    pub async fn connect_in_schema(
        url: &str,
        schema: &str,
        encode: EncodeMilestone,
    ) -> anyhow::Result<Store> {
        let db = Db::connect(url, schema, &MIGRATIONS).await?;
        // On PostgreSQL other replicas write too: serve only once their changes are heard.
        let serving = matches!(db, Db::Sqlite(_));
        Ok(Store {
            db,
            encode,
            cache: Arc::new(ProjectCache::new(crate::cache::DEFAULT_ENTRIES, serving)),
            documents: None,
        })
    }

    /// Keeps evidence documents' bytes in `documents`.
    pub fn keep_documents_in(&mut self, documents: cwsm_platform::documents::DocumentStore) {
        self.documents = Some(documents);
    }

    /// Keeps up to `entries` projects in memory (0: none).
    pub fn keep_in_memory(&mut self, entries: usize) {
        let serving = matches!(self.db, Db::Sqlite(_));
        self.cache = Arc::new(ProjectCache::new(entries, serving));
    }

    /// Follows other replicas' changes to projects until `stop` (PostgreSQL; nothing to follow
    /// on SQLite).
    pub async fn follow_changes(&self, stop: tokio_util::sync::CancellationToken) {
        if let Db::Postgres(pool) = &self.db {
            self.cache.clone().follow(pool.clone(), stop).await;
        }
    }

    /// The project with its stage history, as GetProject shows it: from memory when it is
    /// there, else read and kept.
    pub async fn project_view(&self, id: &str) -> Result<Arc<ProjectView>> {
        if let Some(view) = self.cache.get(id) {
            return Ok(view);
        }
        let start = self.cache.read_start();
        let project = self.project(id).await?;
        let (history, _) = self
            .transitions(
                id,
                &Page {
                    size: HISTORY_SHOWN,
                    after: None,
                },
            )
            .await?;
        let verifiers = self.verifier_assignments(id).await?;
        let view = Arc::new(ProjectView {
            project,
            history,
            verifiers,
        });
        self.cache.fill(view.clone(), start);
        Ok(view)
    }

    /// Drops a scratch PostgreSQL schema (only `bench_…` ones); nothing on SQLite.
    pub async fn drop_scratch_schema(&self, schema: &str) -> Result<()> {
        if !schema.starts_with("bench_")
            || !schema.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        {
            return Err(Error::invalid("schema", "only bench_… schemas are scratch"));
        }
        if let Db::Postgres(pool) = &self.db {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE"
            )))
            .execute(pool)
            .await?;
        }
        Ok(())
    }

    /// Creates the project of an accepted proposal, once: a redelivered event, or another
    /// event for the same proposal, changes nothing. Returns whether it created the project.
    pub async fn create_from_contract(
        &self,
        event_id: &str,
        project_id: &str,
        c: &Contract,
        actor: &str,
        signing: &Signing,
    ) -> Result<bool> {
        with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let fresh = sqlx::query("INSERT INTO processed_events (event_id, processed_at_ms) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING")
                .bind(event_id).bind(now_ms()).execute(&mut *tx).await?.rows_affected() == 1;
            let exists: Option<String> = sqlx::query_scalar("SELECT id FROM projects WHERE proposal_id = $1 OR id = $2")
                .bind(&c.proposal_id).bind(project_id).fetch_optional(&mut *tx).await?;
            if !fresh || exists.is_some() {
                tx.commit().await?;
                return Ok(false);
            }
            let now = now_ms();
            sqlx::query("INSERT INTO projects (id, proposal_id, project_request_id, company_id, company_name, company_credit_code, water_user_id, water_user_name, water_user_credit_code, sector, unit_type, town, title, measures, contract_model, terms, investment_fen, promised_savings_litres, promised_savings_bp, contract_term_months, baseline_use_litres, mv_option, drivers, price_fen_per_m3, indicator_tags, stage, created_at_ms, updated_at_ms, jurisdiction_code) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, 'contracted', $26, $26, $27)")
                .bind(project_id).bind(&c.proposal_id).bind(&c.project_request_id)
                .bind(&c.company.id).bind(&c.company.name).bind(&c.company.credit_code)
                .bind(&c.water_user.id).bind(&c.water_user.name).bind(&c.water_user.credit_code)
                .bind(c.sector.code()).bind(&c.unit_type).bind(&c.town).bind(&c.title).bind(&c.measures)
                .bind(c.contract_model.code()).bind(serde_json::to_string(&c.terms).unwrap_or_default())
                .bind(c.investment_fen).bind(c.promised_savings_litres).bind(c.promised_savings_bp).bind(c.contract_term_months)
                .bind(c.baseline_use_litres).bind(c.mv_option.code()).bind(serde_json::to_string(&c.drivers).unwrap_or_default())
                .bind(c.price_fen_per_m3)
                .bind(serde_json::to_string(&c.indicator_tags.iter().map(|t| t.code()).collect::<Vec<_>>()).unwrap_or_default())
                .bind(now).bind(&c.jurisdiction_code).execute(&mut *tx).await?;
            let project = Project {
                id: project_id.to_string(),
                contract: c.clone(),
                sites: vec![],
                baseline_start_date: String::new(),
                baseline_end_date: String::new(),
                stage: Stage::Contracted,
                suspended_from: None,
                reporting_period_months: 1,
                mv_model_description: String::new(),
                quality_rules: Default::default(),
                verifier_org: String::new(),
                created_at_ms: now,
                updated_at_ms: now,
                version: 1,
            };
            record_stage_change!(self, tx, &project, "", signing.reason.as_str(), signing.evidence.as_str(), actor, signing.actor_org.as_str(), now, signing.date);
            tx.commit().await?;
            Ok(true)
        })
    }

    /// The id of the project of `proposal_id`, if there is one.
    pub async fn project_of_proposal(&self, proposal_id: &str) -> Result<Option<String>> {
        Ok(
            with_db!(&self.db, pool => sqlx::query_scalar("SELECT id FROM projects WHERE proposal_id = $1").bind(proposal_id).fetch_optional(pool).await?),
        )
    }

    pub async fn project(&self, id: &str) -> Result<Project> {
        let row: Option<ProjectRow> = with_db!(&self.db, pool => sqlx::query_as("SELECT * FROM projects WHERE id = $1").bind(id).fetch_optional(pool).await?);
        row.map(Project::from)
            .ok_or_else(|| Error::not_found("project", id))
    }

    pub async fn list_projects(
        &self,
        f: &ProjectFilter,
        page: &Page,
    ) -> Result<(Vec<Project>, String)> {
        // Literal patterns (`ESCAPE '\\'`): a search for "50%" does not match "500".
        let tag = if f.indicator_tag.is_empty() {
            String::new()
        } else {
            like_contains(&format!("\"{}\"", f.indicator_tag))
        };
        let query = like_contains(&f.query.to_lowercase());
        let Some(seen) = f.seen_by.binds() else {
            return Ok((Vec::new(), String::new()));
        };
        let sql = format!(
            "SELECT * FROM projects p WHERE ($1 = '' OR stage = $1) AND ($2 = '' OR company_id = $2) AND ($3 = '' OR water_user_id = $3) \
             AND ($4 = '' OR sector = $4) AND ($5 = '' OR town = $5) AND ($6 = '' OR contract_model = $6) AND ($7 = '' OR indicator_tags LIKE $7 ESCAPE '\\') \
             AND ($8 = '' OR lower(title) LIKE $8 ESCAPE '\\' OR lower(company_name) LIKE $8 ESCAPE '\\' OR lower(water_user_name) LIKE $8 ESCAPE '\\') AND ($9 = '' OR id > $9) \
             AND {} ORDER BY id LIMIT $10",
            seen_sql(11)
        );
        let mut rows: Vec<Project> = with_db!(&self.db, pool => sqlx::query_as::<_, ProjectRow>(sqlx::AssertSqlSafe(sql.clone()))
            .bind(&f.stage).bind(&f.company_id).bind(&f.water_user_id).bind(&f.sector).bind(&f.town)
            .bind(&f.contract_model).bind(tag).bind(query).bind(page.after.clone().unwrap_or_default()).bind(page.fetch_limit())
            .bind(seen.all).bind(&seen.company).bind(&seen.water_user).bind(&seen.verifier)
            .bind(&seen.lowest).bind(&seen.highest).bind(seen.without_code)
            .fetch_all(pool).await?)
        .into_iter().map(Project::from).collect();
        let next = page.finish(&mut rows, |p| p.id.clone());
        Ok((rows, next))
    }

    /// Moves a project a step through its lifecycle. `check` decides whether the step is
    /// allowed on the project as it stands inside the transaction. A retry with the same
    /// `request_id` returns the transition first made.
    #[allow(clippy::too_many_arguments)]
    pub async fn transition(
        &self,
        key: &RequestKey,
        project_id: &str,
        expected_version: i64,
        ask: &TransitionAsk,
        actor: &str,
        actor_org: &str,
        check: impl Fn(&Project) -> Result<()>,
    ) -> Result<(Project, Transition)> {
        // Forgotten once the write is done, however the call ends (also on a replay: harmless).
        let _forget = self.cache.forget_when_done(project_id);
        let transition_id: String = keyed_write!(&self.db, key, tx => {
                let row: Option<ProjectRow> = sqlx::query_as("SELECT * FROM projects WHERE id = $1").bind(project_id).fetch_optional(&mut *tx).await?;
                let mut project = row.map(Project::from).ok_or_else(|| Error::not_found("project", project_id))?;
                // Who may not do this learns nothing of the project, not even its version.
                check(&project)?;
                if expected_version != 0 && project.version != expected_version {
                    return Err(Error::Aborted(format!(
                        "project {project_id} is at version {}, not {expected_version}; read it again and retry", project.version)));
                }
                if ask.to == Stage::HandedOver {
                    // Hand-over ends the operating loop: the last reporting period must be settled.
                    let periods: Vec<(String, String)> = sqlx::query_as("SELECT start_date, status FROM periods WHERE project_id = $1 ORDER BY start_date")
                        .bind(project_id).fetch_all(&mut *tx).await?;
                    if let Some((start, status)) = periods.iter().find(|(_, st)| st != "settled") {
                        return Err(Error::precondition(format!(
                            "project {project_id} cannot be handed over: its period starting {start} is {status}, not settled")));
                    }
                    if periods.is_empty() {
                        return Err(Error::precondition(format!(
                            "project {project_id} cannot be handed over before a reporting period is submitted, verified and settled")));
                    }
                }
                // The effective date keeps the project's milestones in order, and is never ahead.
                let earlier: Vec<(String, String, i64)> = sqlx::query_as("SELECT to_stage, effective_date, at_ms FROM project_transitions WHERE project_id = $1")
                    .bind(project_id).fetch_all(&mut *tx).await?;
                let earlier: Vec<(Stage, chrono::NaiveDate)> = earlier.into_iter().filter_map(|(stage, date, at_ms)| {
                    let date = chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d").unwrap_or_else(|_| recorded_day(at_ms));
                    Stage::from_code(&stage).map(|s| (s, date))
                }).collect();
                check_effective_date("effective_date", ask.effective_date, crate::ledger_store::today_cst(), &ask.evidence, &earlier)?;
                let from = project.stage;
                let now = now_ms();
                project.suspended_from = match ask.to {
                    Stage::Suspended => Some(from),
                    _ => None,
                };
                project.stage = ask.to;
                project.version += 1;
                project.updated_at_ms = now;
                // Only over the version read: of two concurrent steps from the same stage the
                // second finds the row changed (PostgreSQL re-checks it after the first commits)
                // and writes nothing.
                let written = sqlx::query("UPDATE projects SET stage = $1, suspended_from_stage = $2, updated_at_ms = $3, version = $4 WHERE id = $5 AND version = $6")
                    .bind(project.stage.code()).bind(project.suspended_from.map(Stage::code).unwrap_or_default())
                    .bind(now).bind(project.version).bind(project_id).bind(project.version - 1).execute(&mut *tx).await?.rows_affected();
                if written == 0 {
                    return Err(Error::Aborted(format!(
                        "project {project_id} changed while this step was being made; read it again and retry")));
                }
                record_stage_change!(self, tx, &project, from.code(), ask.reason.as_str(), ask.evidence.as_str(), actor, actor_org, now, ask.effective_date)
        });
        let transition: Option<TransitionRow> = with_db!(&self.db, pool => sqlx::query_as("SELECT * FROM project_transitions WHERE id = $1").bind(&transition_id).fetch_optional(pool).await?);
        let transition = transition
            .map(Transition::from)
            .ok_or_else(|| Error::not_found("transition", &transition_id))?;
        Ok((self.project(&transition.project_id).await?, transition))
    }

    pub async fn transitions(
        &self,
        project_id: &str,
        page: &Page,
    ) -> Result<(Vec<Transition>, String)> {
        let mut rows: Vec<Transition> = with_db!(&self.db, pool => sqlx::query_as::<_, TransitionRow>(
            "SELECT * FROM project_transitions WHERE project_id = $1 AND ($2 = '' OR id > $2) ORDER BY id LIMIT $3")
            .bind(project_id).bind(page.after.clone().unwrap_or_default()).bind(page.fetch_limit())
            .fetch_all(pool).await?)
        .into_iter().map(Transition::from).collect();
        let next = page.finish(&mut rows, |t| t.id.clone());
        Ok((rows, next))
    }

    /// The milestone log after `after_sequence` (encoded payloads, in order).
    pub async fn milestones(
        &self,
        after_sequence: i64,
        project_id: &str,
        seen_by: &SeenBy,
        limit: i64,
    ) -> Result<Vec<(i64, Vec<u8>)>> {
        if *seen_by == SeenBy::All {
            return Ok(
                with_db!(&self.db, pool => sqlx::query_as::<_, (i64, Vec<u8>)>(
                "SELECT seq, payload FROM milestones WHERE seq > $1 AND ($2 = '' OR project_id = $2) ORDER BY seq LIMIT $3")
                .bind(after_sequence).bind(project_id).bind(limit).fetch_all(pool).await?),
            );
        }
        let Some(seen) = seen_by.binds() else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT m.seq, m.payload FROM milestones m JOIN projects p ON p.id = m.project_id \
             WHERE m.seq > $1 AND ($2 = '' OR m.project_id = $2) AND {} ORDER BY m.seq LIMIT $3",
            seen_sql(4)
        );
        Ok(
            with_db!(&self.db, pool => sqlx::query_as::<_, (i64, Vec<u8>)>(sqlx::AssertSqlSafe(sql.clone()))
            .bind(after_sequence).bind(project_id).bind(limit)
            .bind(seen.all).bind(&seen.company).bind(&seen.water_user).bind(&seen.verifier)
            .bind(&seen.lowest).bind(&seen.highest).bind(seen.without_code)
            .fetch_all(pool).await?),
        )
    }
}
