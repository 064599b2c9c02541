//! Matching's tables, on SQLite or PostgreSQL: one body of SQL for both engines (see
//! `cwsm_platform::db`). Each create or transition runs in one transaction with its idempotency
//! key and, where others must hear of it, its outbox event.

use cwsm_platform::bus::Envelope;
use cwsm_platform::db::{BeginWrite, Db};
use cwsm_platform::grpc::Page;
use cwsm_platform::idempotency::RequestKey;
use cwsm_platform::input::like_contains;
use cwsm_platform::outbox::OutboxWrite;
use cwsm_platform::vocab::{
    CertificationGrade, ContractModel, IndicatorTag, MvOption, Sector, Technology,
};
use cwsm_platform::{Error, Result, keyed_write, new_id, now_ms, with_db};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::domain::*;

pub static MIGRATIONS: cwsm_platform::db::Migrations = cwsm_platform::db::Migrations {
    sqlite: &sqlx::migrate!("migrations/sqlite"),
    postgres: &sqlx::migrate!("migrations/postgres"),
};

/// The published offerings with their companies, as last loaded, and the `catalog_version`
/// they were loaded at.
type Catalog = Option<(i64, Arc<crate::ranking::Catalog>)>;

#[derive(Clone, Debug)]
pub struct Store {
    pub db: Db,
    catalog: Arc<Mutex<Catalog>>,
    /// Held while the catalogue loads, so that concurrent rankings load it once.
    catalog_loading: Arc<tokio::sync::Mutex<()>>,
    /// Credit code and jurisdiction by company id, for the "acts for" check of every write of
    /// a company (an offering's, a proposal's). Neither changes and companies are never
    /// deleted, so an entry can never go stale: no invalidation is needed, in this replica or
    /// any other.
    company_owners: Arc<quick_cache::sync::Cache<String, Owner>>,
}

/// Companies whose owner is kept in memory.
const OWNERS_KEPT: usize = 10_000;

/// Who a company or water user record is, for the "acts for" check of a write
/// (`Principal::acts_as`): its credit code and its stored jurisdiction code.
#[derive(Clone, Debug)]
pub struct Owner {
    pub credit_code: String,
    pub jurisdiction_code: String,
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

fn from_json<T: DeserializeOwned + Default>(s: &str) -> T {
    serde_json::from_str(s).unwrap_or_default()
}

fn codes<T: Copy>(values: &[T], code: fn(T) -> &'static str) -> String {
    to_json(&values.iter().map(|v| code(*v)).collect::<Vec<_>>())
}

fn parse_codes<T>(s: &str, parse: fn(&str) -> Option<T>) -> Vec<T> {
    from_json::<Vec<String>>(s)
        .iter()
        .filter_map(|c| parse(c))
        .collect()
}

/// A `LIKE … ESCAPE '\\'` pattern: a JSON-array column contains `item` (as its JSON string,
/// quotes included), the item's own `%`, `_` and `\\` matching themselves (towns are free text).
fn json_member(item: &str) -> String {
    if item.is_empty() {
        String::new()
    } else {
        like_contains(&serde_json::Value::from(item).to_string())
    }
}

/// A `LIKE … ESCAPE '\\'` pattern for a case-insensitive search of `query` (its own `%`, `_`
/// and `\\` match themselves); empty for no search.
fn like(query: &str) -> String {
    like_contains(&query.trim().to_lowercase())
}

/// The caller's own ids for SQL (empty strings match no row), and 1 when it sees everything.
fn viewer_binds(v: &Viewer) -> (i64, String, String) {
    (
        i64::from(v.all),
        v.company_id.clone().unwrap_or_default(),
        v.water_user_id.clone().unwrap_or_default(),
    )
}

/// `Viewer::administers` in SQL for the stored jurisdiction `column`, with [`reach_binds`] as
/// parameters `$n`, `$n+1`, `$n+2`.
fn reach_sql(column: &str, n: usize) -> String {
    let [lowest, highest, without] = std::array::from_fn(|k| format!("${}", n + k));
    format!(
        "({lowest} <> '' AND ({column} BETWEEN {lowest} AND {highest} OR ({without} = 1 AND {column} = '')))"
    )
}

/// The codes an administrator reaches (empty: none), and 1 when it reaches rows without one.
fn reach_binds(v: &Viewer) -> (String, String, i64) {
    v.reach
        .as_ref()
        .map_or((String::new(), String::new(), 0), |r| {
            (
                r.lowest.clone(),
                r.highest.clone(),
                i64::from(r.without_code),
            )
        })
}

// ---------------------------------------------------------------------------------------------
// Rows

#[derive(sqlx::FromRow)]
struct CompanyRow {
    id: String,
    credit_code: String,
    name: String,
    description: String,
    contact_name: String,
    contact_phone: String,
    contact_email: String,
    towns: String,
    sectors: String,
    certification: String,
    certification_evidence: String,
    confirmed_certification: String,
    certification_confirmed_by: String,
    certification_confirmed_at_ms: i64,
    certification_note: String,
    financing_capacity_fen: i64,
    projects_completed: i64,
    verified_savings_litres: i64,
    promised_savings_litres: i64,
    created_at_ms: i64,
    updated_at_ms: i64,
    version: i64,
    jurisdiction_code: String,
}

impl From<CompanyRow> for Company {
    fn from(r: CompanyRow) -> Self {
        Company {
            id: r.id,
            profile: CompanyProfile {
                credit_code: r.credit_code,
                name: r.name,
                description: r.description,
                contact: Contact {
                    name: r.contact_name,
                    phone: r.contact_phone,
                    email: r.contact_email,
                },
                towns: from_json(&r.towns),
                sectors: parse_codes(&r.sectors, Sector::from_code),
                claimed_certification: CertificationGrade::from_code(&r.certification)
                    .unwrap_or(CertificationGrade::None),
                certification_evidence: r.certification_evidence,
                financing_capacity_fen: r.financing_capacity_fen,
                jurisdiction_code: r.jurisdiction_code,
            },
            certification: Certification {
                grade: CertificationGrade::from_code(&r.confirmed_certification),
                by: r.certification_confirmed_by,
                at_ms: r.certification_confirmed_at_ms,
                note: r.certification_note,
            },
            track_record: TrackRecord {
                projects_completed: r.projects_completed,
                verified_savings_litres: r.verified_savings_litres,
                promised_savings_litres: r.promised_savings_litres,
            },
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            version: r.version,
        }
    }
}

#[derive(sqlx::FromRow)]
struct OfferingRow {
    id: String,
    company_id: String,
    title: String,
    description: String,
    technologies: String,
    contract_models: String,
    sectors: String,
    towns: String,
    min_investment_fen: i64,
    max_investment_fen: i64,
    typical_savings_bp: i32,
    typical_term_months: i32,
    status: String,
    created_at_ms: i64,
    updated_at_ms: i64,
    version: i64,
}

impl From<OfferingRow> for Offering {
    fn from(r: OfferingRow) -> Self {
        Offering {
            id: r.id,
            draft: OfferingDraft {
                company_id: r.company_id,
                title: r.title,
                description: r.description,
                technologies: parse_codes(&r.technologies, Technology::from_code),
                contract_models: parse_codes(&r.contract_models, ContractModel::from_code),
                sectors: parse_codes(&r.sectors, Sector::from_code),
                towns: from_json(&r.towns),
                min_investment_fen: r.min_investment_fen,
                max_investment_fen: r.max_investment_fen,
                typical_savings_bp: r.typical_savings_bp,
                typical_term_months: r.typical_term_months,
            },
            status: OfferingStatus::from_code(&r.status).unwrap_or(OfferingStatus::Draft),
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            version: r.version,
        }
    }
}

#[derive(sqlx::FromRow)]
struct WaterUserRow {
    id: String,
    credit_code: String,
    name: String,
    sector: String,
    unit_type: String,
    town: String,
    annual_use_litres: i64,
    annual_quota_litres: i64,
    contact_name: String,
    contact_phone: String,
    contact_email: String,
    created_at_ms: i64,
    updated_at_ms: i64,
    version: i64,
    jurisdiction_code: String,
}

impl From<WaterUserRow> for WaterUser {
    fn from(r: WaterUserRow) -> Self {
        WaterUser {
            id: r.id,
            profile: WaterUserProfile {
                credit_code: r.credit_code,
                name: r.name,
                sector: Sector::from_code(&r.sector).unwrap_or(Sector::PublicInstitution),
                unit_type: r.unit_type,
                // '' for a unit whose free-text town the gazetteer does not know (those it
                // knows got their code when the store connected: `settle_water_user_codes`).
                jurisdiction_code: r.jurisdiction_code,
                town: r.town,
                annual_use_litres: r.annual_use_litres,
                annual_quota_litres: r.annual_quota_litres,
                contact: Contact {
                    name: r.contact_name,
                    phone: r.contact_phone,
                    email: r.contact_email,
                },
            },
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            version: r.version,
        }
    }
}

#[derive(sqlx::FromRow)]
struct RequestRow {
    id: String,
    water_user_id: String,
    title: String,
    problem: String,
    scope: String,
    baseline_use_litres: i64,
    expected_savings_bp: i32,
    contract_models: String,
    technologies: String,
    investment_wanted_fen: i64,
    price_fen_per_m3: i64,
    proposal_deadline: String,
    visibility: String,
    invited_company_ids: String,
    indicator_tags: String,
    status: String,
    status_reason: String,
    awarded_proposal_id: String,
    proposal_count: i64,
    created_at_ms: i64,
    updated_at_ms: i64,
    version: i64,
}

impl From<RequestRow> for ProjectRequest {
    fn from(r: RequestRow) -> Self {
        ProjectRequest {
            id: r.id,
            draft: RequestDraft {
                water_user_id: r.water_user_id,
                title: r.title,
                problem: r.problem,
                scope: r.scope,
                baseline_use_litres: r.baseline_use_litres,
                expected_savings_bp: r.expected_savings_bp,
                price_fen_per_m3: r.price_fen_per_m3,
                preferred_contract_models: parse_codes(
                    &r.contract_models,
                    ContractModel::from_code,
                ),
                wanted_technologies: parse_codes(&r.technologies, Technology::from_code),
                investment_wanted_fen: r.investment_wanted_fen,
                proposal_deadline: r.proposal_deadline,
                visibility: Visibility::from_code(&r.visibility).unwrap_or(Visibility::Public),
                invited_company_ids: from_json(&r.invited_company_ids),
                indicator_tags: parse_codes(&r.indicator_tags, IndicatorTag::from_code),
            },
            status: RequestStatus::from_code(&r.status).unwrap_or(RequestStatus::Draft),
            status_reason: r.status_reason,
            awarded_proposal_id: r.awarded_proposal_id,
            proposal_count: r.proposal_count,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            version: r.version,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ProposalRow {
    id: String,
    project_request_id: String,
    company_id: String,
    offering_id: String,
    measures: String,
    investment_fen: i64,
    promised_savings_litres: i64,
    promised_savings_bp: i32,
    contract_model: String,
    terms: String,
    contract_term_months: i32,
    mv_option: String,
    drivers: String,
    status: String,
    decline_reason: String,
    withdraw_reason: String,
    project_id: String,
    created_at_ms: i64,
    updated_at_ms: i64,
    version: i64,
}

impl From<ProposalRow> for Proposal {
    fn from(r: ProposalRow) -> Self {
        Proposal {
            id: r.id,
            draft: ProposalDraft {
                project_request_id: r.project_request_id,
                company_id: r.company_id,
                offering_id: r.offering_id,
                measures: r.measures,
                investment_fen: r.investment_fen,
                promised_savings_litres: r.promised_savings_litres,
                promised_savings_bp: r.promised_savings_bp,
                contract_model: ContractModel::from_code(&r.contract_model)
                    .unwrap_or(ContractModel::SharedSavings),
                terms: from_json(&r.terms),
                contract_term_months: r.contract_term_months,
                mv_option: MvOption::from_code(&r.mv_option).unwrap_or(MvOption::C),
                drivers: from_json(&r.drivers),
            },
            status: ProposalStatus::from_code(&r.status).unwrap_or(ProposalStatus::Submitted),
            decline_reason: r.decline_reason,
            withdraw_reason: r.withdraw_reason,
            project_id: r.project_id,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            version: r.version,
        }
    }
}

const COMPANY_COLUMNS: &str = "id, credit_code, name, description, contact_name, contact_phone, contact_email, towns, sectors, certification, certification_evidence, confirmed_certification, certification_confirmed_by, certification_confirmed_at_ms, certification_note, financing_capacity_fen, projects_completed, verified_savings_litres, promised_savings_litres, created_at_ms, updated_at_ms, version, jurisdiction_code";

const REQUEST_SELECT: &str = "SELECT r.id, r.water_user_id, r.title, r.problem, r.scope, r.baseline_use_litres, r.expected_savings_bp, r.contract_models, r.technologies, r.investment_wanted_fen, r.price_fen_per_m3, r.proposal_deadline, r.visibility, r.invited_company_ids, r.indicator_tags, r.status, r.status_reason, r.awarded_proposal_id, (SELECT COUNT(*) FROM proposals p WHERE p.project_request_id = r.id) AS proposal_count, r.created_at_ms, r.updated_at_ms, r.version FROM project_requests r";

/// Filters of the list calls; empty strings mean "any".
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub sector: String,
    pub town: String,
    pub technology: String,
    pub contract_model: String,
    pub status: String,
    pub owner_id: String,
    pub query: String,
    /// Companies whose confirmed grade is one of these; empty for any.
    pub certifications: Vec<CertificationGrade>,
    /// Who asks: rows the caller may not see are left out in SQL, so pages stay full.
    pub viewer: Viewer,
}

/// Reads one row by id inside the write transaction `$tx` (never through the pool: on SQLite
/// the pool's few connections may all be waiting for the write lock that `$tx` holds), as
/// `$kind` or NOT_FOUND.
macro_rules! read_in_tx {
    ($tx:ident, $row:ty, $sql:expr, $id:expr, $what:expr) => {{
        let row: Option<$row> = sqlx::query_as(sqlx::AssertSqlSafe($sql))
            .bind($id)
            .fetch_optional(&mut *$tx)
            .await?;
        row.map(Into::into)
            .ok_or_else(|| Error::not_found($what, $id))?
    }};
}

/// Maps a failed optimistic update to ABORTED (stale version) or NOT_FOUND.
fn stale(kind: &'static str, id: &str, expected: i64) -> Error {
    Error::Aborted(format!(
        "{kind} {id} changed since version {expected}; read it again and retry"
    ))
}

impl Store {
    pub async fn connect(url: &str) -> anyhow::Result<Store> {
        let store = Store::new(Db::connect(url, "matching", &MIGRATIONS).await?);
        store.settle_water_user_codes().await?;
        Ok(store)
    }

    /// Gives the water users registered before the gazetteer their town's code where the
    /// gazetteer knows the town by name, so that lists filtered by jurisdiction in SQL see
    /// them where they are; the others (free-text towns) keep '' and belong to the platform's
    /// district. Idempotent: a store connecting again finds nothing to do.
    async fn settle_water_user_codes(&self) -> Result<()> {
        let unplaced: Vec<(String, String)> = with_db!(&self.db, pool => sqlx::query_as("SELECT id, town FROM water_users WHERE jurisdiction_code = ''").fetch_all(pool).await?);
        let gazetteer = cwsm_platform::gazetteer::Gazetteer::builtin();
        for (id, town) in unplaced {
            let code = gazetteer.code_of_site(&town);
            if !code.is_empty() {
                with_db!(&self.db, pool => sqlx::query("UPDATE water_users SET jurisdiction_code = $1 WHERE id = $2 AND jurisdiction_code = ''").bind(&code).bind(&id).execute(pool).await?.rows_affected());
            }
        }
        Ok(())
    }

    /// A store on a database already connected and migrated.
    pub fn new(db: Db) -> Store {
        Store {
            db,
            catalog: Arc::new(Mutex::new(None)),
            catalog_loading: Arc::new(tokio::sync::Mutex::new(())),
            company_owners: Arc::new(quick_cache::sync::Cache::new(OWNERS_KEPT)),
        }
    }

    // -- companies ----------------------------------------------------------------------------

    pub async fn create_company(&self, key: &RequestKey, p: &CompanyProfile) -> Result<Company> {
        let id = keyed_write!(&self.db, key, tx => {
                let id = new_id();
                let exists: Option<String> = sqlx::query_scalar("SELECT id FROM companies WHERE credit_code = $1")
                    .bind(&p.credit_code).fetch_optional(&mut *tx).await?;
                if let Some(existing) = exists {
                    return Err(Error::AlreadyExists(format!(
                        "company with credit code {} exists already as {existing}", p.credit_code)));
                }
                let now = now_ms();
                sqlx::query("INSERT INTO companies (id, credit_code, name, description, contact_name, contact_phone, contact_email, towns, sectors, certification, financing_capacity_fen, created_at_ms, updated_at_ms, certification_evidence, jurisdiction_code) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13, $14)")
                    .bind(&id).bind(&p.credit_code).bind(&p.name).bind(&p.description)
                    .bind(&p.contact.name).bind(&p.contact.phone).bind(&p.contact.email)
                    .bind(to_json(&p.towns)).bind(codes(&p.sectors, Sector::code))
                    .bind(p.claimed_certification.code()).bind(p.financing_capacity_fen).bind(now)
                    .bind(&p.certification_evidence).bind(&p.jurisdiction_code)
                    .execute(&mut *tx).await?;
                id
        });
        self.company(&id).await
    }

    pub async fn company(&self, id: &str) -> Result<Company> {
        let sql = format!("SELECT {COMPANY_COLUMNS} FROM companies WHERE id = $1");
        let row: Option<CompanyRow> = with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?);
        row.map(Company::from)
            .ok_or_else(|| Error::not_found("company", id))
    }

    /// Who company `id` is, for a write's check (NOT_FOUND when there is none): kept in memory,
    /// since a company's credit code and jurisdiction never change.
    pub async fn company_owner(&self, id: &str) -> Result<Owner> {
        if let Some(owner) = self.company_owners.get(id) {
            return Ok(owner);
        }
        let owner = self.owner("companies", "company", id).await?;
        self.company_owners.insert(id.to_string(), owner.clone());
        Ok(owner)
    }

    /// Who water user `id` is (NOT_FOUND when there is none); read each time, since its town,
    /// and so its jurisdiction, may change.
    pub async fn water_user_owner(&self, id: &str) -> Result<Owner> {
        self.owner("water_users", "water user", id).await
    }

    async fn owner(&self, table: &'static str, what: &'static str, id: &str) -> Result<Owner> {
        let sql = format!("SELECT credit_code, jurisdiction_code FROM {table} WHERE id = $1");
        let row: Option<(String, String)> = with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?);
        let (credit_code, jurisdiction_code) = row.ok_or_else(|| Error::not_found(what, id))?;
        Ok(Owner {
            credit_code,
            jurisdiction_code,
        })
    }

    pub async fn company_by_credit_code(&self, code: &str) -> Result<Company> {
        let sql = format!("SELECT {COMPANY_COLUMNS} FROM companies WHERE credit_code = $1");
        let row: Option<CompanyRow> = with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(code).fetch_optional(pool).await?);
        row.map(Company::from)
            .ok_or_else(|| Error::not_found("company with credit code", code))
    }

    pub async fn list_companies(
        &self,
        f: &ListFilter,
        page: &Page,
    ) -> Result<(Vec<Company>, String)> {
        let sql = format!(
            "SELECT {COMPANY_COLUMNS} FROM companies WHERE ($1 = '' OR sectors LIKE $1 ESCAPE '\\' OR sectors = '[]') AND ($2 = '' OR towns LIKE $2 ESCAPE '\\' OR towns = '[]') \
             AND ($3 = '' OR lower(name) LIKE $3 ESCAPE '\\' OR lower(credit_code) LIKE $3 ESCAPE '\\') AND ($4 = '' OR id > $4) \
             AND ($5 = '' OR id IN (SELECT company_id FROM offerings WHERE status = 'published' AND ($6 = '' OR technologies LIKE $6 ESCAPE '\\') AND ($7 = '' OR contract_models LIKE $7 ESCAPE '\\'))) \
             AND ($9 = '' OR $9 LIKE ('%,' || confirmed_certification || ',%')) \
             ORDER BY id LIMIT $8"
        );
        let grades = if f.certifications.is_empty() {
            String::new()
        } else {
            format!(
                ",{},",
                f.certifications
                    .iter()
                    .map(|g| g.code())
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        let offering_filter = if f.technology.is_empty() && f.contract_model.is_empty() {
            ""
        } else {
            "yes"
        };
        let mut rows: Vec<Company> =
            with_db!(&self.db, pool => sqlx::query_as::<_, CompanyRow>(sqlx::AssertSqlSafe(sql))
            .bind(json_member(&f.sector)).bind(json_member(&f.town)).bind(like(&f.query))
            .bind(page.after.clone().unwrap_or_default()).bind(offering_filter)
            .bind(json_member(&f.technology)).bind(json_member(&f.contract_model))
            .bind(page.fetch_limit()).bind(&grades).fetch_all(pool).await?)
            .into_iter()
            .map(Company::from)
            .collect();
        let next = page.finish(&mut rows, |c| c.id.clone());
        Ok((rows, next))
    }

    pub async fn update_company(
        &self,
        key: &RequestKey,
        id: &str,
        expected_version: i64,
        p: &CompanyProfile,
    ) -> Result<Company> {
        keyed_write!(&self.db, key, tx => {
        // A new claim is not what the district confirmed: another grade clears the review (the
        // CASEs read the row as it was before this update, on both engines).
        let done = sqlx::query("UPDATE companies SET name = $1, description = $2, contact_name = $3, contact_phone = $4, contact_email = $5, towns = $6, sectors = $7, certification = $8, financing_capacity_fen = $9, updated_at_ms = $10, version = version + 1, certification_evidence = $13, \
             confirmed_certification = CASE WHEN certification = $8 THEN confirmed_certification ELSE '' END, \
             certification_confirmed_by = CASE WHEN certification = $8 THEN certification_confirmed_by ELSE '' END, \
             certification_confirmed_at_ms = CASE WHEN certification = $8 THEN certification_confirmed_at_ms ELSE 0 END, \
             certification_note = CASE WHEN certification = $8 THEN certification_note ELSE '' END \
             WHERE id = $11 AND ($12 = 0 OR version = $12)")
            .bind(&p.name).bind(&p.description).bind(&p.contact.name).bind(&p.contact.phone).bind(&p.contact.email)
            .bind(to_json(&p.towns)).bind(codes(&p.sectors, Sector::code)).bind(p.claimed_certification.code())
            .bind(p.financing_capacity_fen).bind(now_ms()).bind(id).bind(expected_version)
            .bind(&p.certification_evidence)
            .execute(&mut *tx).await?.rows_affected();
        if done == 0 {
            let _: Company = read_in_tx!(tx, CompanyRow, format!("SELECT {COMPANY_COLUMNS} FROM companies WHERE id = $1"), id, "company");
            return Err(stale("company", id, expected_version));
        }
        id.to_string()
        });
        self.company(id).await
    }

    /// Records the district's review of company `id`'s claimed grade: `grade` confirmed (None
    /// withdraws the confirmation) by `by`, with `note`. The grade may not exceed the claim,
    /// checked against the row in the same transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn confirm_certification(
        &self,
        key: &RequestKey,
        id: &str,
        expected_version: i64,
        grade: Option<CertificationGrade>,
        by: &str,
        note: &str,
    ) -> Result<Company> {
        keyed_write!(&self.db, key, tx => {
        let current: Company = read_in_tx!(tx, CompanyRow, format!("SELECT {COMPANY_COLUMNS} FROM companies WHERE id = $1"), id, "company");
        if expected_version != 0 && current.version != expected_version {
            return Err(stale("company", id, expected_version));
        }
        current.check_confirmable(grade)?;
        let now = now_ms();
        let done = sqlx::query("UPDATE companies SET confirmed_certification = $1, certification_confirmed_by = $2, certification_confirmed_at_ms = $3, certification_note = $4, updated_at_ms = $3, version = version + 1 WHERE id = $5 AND version = $6")
            .bind(grade.map(|g| g.code()).unwrap_or_default()).bind(by).bind(now).bind(note)
            .bind(id).bind(current.version)
            .execute(&mut *tx).await?.rows_affected();
        if done == 0 {
            return Err(stale("company", id, current.version));
        }
        id.to_string()
        });
        self.company(id).await
    }

    /// Applies a project milestone to the company's verified track record, once per event
    /// (`processed_events`) and once per fact: the project's row holds whether it was handed
    /// over and the running totals of the latest sequence, and the company's record is summed
    /// again from its rows, all in one transaction. Returns whether the event was new.
    pub async fn apply_milestone(&self, m: &ProjectProgress) -> Result<bool> {
        with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let now = now_ms();
            let fresh = sqlx::query("INSERT INTO processed_events (event_id, processed_at_ms) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING")
                .bind(&m.event_id).bind(now).execute(&mut *tx).await?.rows_affected() == 1;
            if !fresh {
                tx.commit().await?;
                return Ok(false);
            }
            let mut company_id = m.company_id.clone();
            if company_id.is_empty() && !m.company_credit_code.is_empty() {
                let found: Option<String> = sqlx::query_scalar("SELECT id FROM companies WHERE credit_code = $1")
                    .bind(&m.company_credit_code).fetch_optional(&mut *tx).await?;
                company_id = found.unwrap_or_default();
            }
            if company_id.is_empty() || m.project_id.is_empty() {
                tx.commit().await?;
                return Ok(true);
            }
            sqlx::query("INSERT INTO company_projects (project_id, company_id, updated_at_ms) VALUES ($1, $2, $3) ON CONFLICT (project_id) DO NOTHING")
                .bind(&m.project_id).bind(&company_id).bind(now).execute(&mut *tx).await?;
            if m.handed_over {
                sqlx::query("UPDATE company_projects SET handed_over = 1, updated_at_ms = $1 WHERE project_id = $2")
                    .bind(now).bind(&m.project_id).execute(&mut *tx).await?;
            }
            if let Some((verified, promised)) = m.totals {
                sqlx::query("UPDATE company_projects SET totals_sequence = $1, verified_savings_litres = $2, promised_savings_litres = $3, updated_at_ms = $4 WHERE project_id = $5 AND totals_sequence <= $1")
                    .bind(m.sequence).bind(verified).bind(promised).bind(now).bind(&m.project_id)
                    .execute(&mut *tx).await?;
            }
            let (completed, verified, promised): (i64, i64, i64) = sqlx::query_as(
                "SELECT COUNT(CASE WHEN handed_over = 1 THEN 1 END), CAST(COALESCE(SUM(verified_savings_litres), 0) AS BIGINT), CAST(COALESCE(SUM(promised_savings_litres), 0) AS BIGINT) FROM company_projects WHERE company_id = $1")
                .bind(&company_id).fetch_one(&mut *tx).await?;
            sqlx::query("UPDATE companies SET projects_completed = $1, verified_savings_litres = $2, promised_savings_litres = $3 WHERE id = $4 AND (projects_completed <> $1 OR verified_savings_litres <> $2 OR promised_savings_litres <> $3)")
                .bind(completed).bind(verified).bind(promised).bind(&company_id)
                .execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    // -- offerings ----------------------------------------------------------------------------

    pub async fn create_offering(&self, key: &RequestKey, d: &OfferingDraft) -> Result<Offering> {
        // The new row comes back from the INSERT itself: no second read after the commit.
        let mut created: Option<OfferingRow> = None;
        let id = keyed_write!(&self.db, key, tx => {
                let id = new_id();
                created = Some(sqlx::query_as("INSERT INTO offerings (id, company_id, title, description, technologies, contract_models, sectors, towns, min_investment_fen, max_investment_fen, typical_savings_bp, typical_term_months, status, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'draft', $13, $13) RETURNING *")
                    .bind(&id).bind(&d.company_id).bind(&d.title).bind(&d.description)
                    .bind(codes(&d.technologies, Technology::code)).bind(codes(&d.contract_models, ContractModel::code))
                    .bind(codes(&d.sectors, Sector::code)).bind(to_json(&d.towns))
                    .bind(d.min_investment_fen).bind(d.max_investment_fen).bind(d.typical_savings_bp).bind(d.typical_term_months)
                    .bind(now_ms()).fetch_one(&mut *tx).await?);
                id
        });
        match created {
            Some(row) => Ok(Offering::from(row)),
            None => self.offering(&id).await,
        }
    }

    pub async fn offering(&self, id: &str) -> Result<Offering> {
        let row: Option<OfferingRow> = with_db!(&self.db, pool => sqlx::query_as("SELECT * FROM offerings WHERE id = $1").bind(id).fetch_optional(pool).await?);
        row.map(Offering::from)
            .ok_or_else(|| Error::not_found("offering", id))
    }

    pub async fn list_offerings(
        &self,
        f: &ListFilter,
        page: &Page,
    ) -> Result<(Vec<Offering>, String)> {
        let (all, viewer_company, _) = viewer_binds(&f.viewer);
        let (lowest, highest, without_code) = reach_binds(&f.viewer);
        // An offering naming no sectors (towns) serves its company's.
        let sql = format!(
            "SELECT o.* FROM offerings o JOIN companies c ON c.id = o.company_id WHERE ($1 = '' OR o.company_id = $1) \
             AND ($2 = '' OR o.sectors LIKE $2 ESCAPE '\\' OR (o.sectors = '[]' AND (c.sectors LIKE $2 ESCAPE '\\' OR c.sectors = '[]'))) \
             AND ($3 = '' OR o.towns LIKE $3 ESCAPE '\\' OR (o.towns = '[]' AND (c.towns LIKE $3 ESCAPE '\\' OR c.towns = '[]'))) \
             AND ($4 = '' OR o.technologies LIKE $4 ESCAPE '\\') AND ($5 = '' OR o.contract_models LIKE $5 ESCAPE '\\') \
             AND ($6 = '' OR o.status = $6) AND ($7 = '' OR lower(o.title) LIKE $7 ESCAPE '\\' OR lower(o.description) LIKE $7 ESCAPE '\\') \
             AND ($10 = 1 OR o.status = 'published' OR o.company_id = $11 OR {}) \
             AND ($8 = '' OR o.id > $8) ORDER BY o.id LIMIT $9",
            reach_sql("c.jurisdiction_code", 12)
        );
        let mut rows: Vec<Offering> = with_db!(&self.db, pool => sqlx::query_as::<_, OfferingRow>(sqlx::AssertSqlSafe(sql))
            .bind(&f.owner_id).bind(json_member(&f.sector)).bind(json_member(&f.town))
            .bind(json_member(&f.technology)).bind(json_member(&f.contract_model)).bind(&f.status)
            .bind(like(&f.query)).bind(page.after.clone().unwrap_or_default()).bind(page.fetch_limit())
            .bind(all).bind(&viewer_company).bind(&lowest).bind(&highest).bind(without_code)
            .fetch_all(pool).await?)
        .into_iter()
        .map(Offering::from)
        .collect();
        let next = page.finish(&mut rows, |o| o.id.clone());
        Ok((rows, next))
    }

    pub async fn update_offering(
        &self,
        key: &RequestKey,
        id: &str,
        expected_version: i64,
        d: &OfferingDraft,
    ) -> Result<Offering> {
        keyed_write!(&self.db, key, tx => {
        let done = sqlx::query("UPDATE offerings SET title = $1, description = $2, technologies = $3, contract_models = $4, sectors = $5, towns = $6, min_investment_fen = $7, max_investment_fen = $8, typical_savings_bp = $9, typical_term_months = $10, updated_at_ms = $11, version = version + 1 WHERE id = $12 AND ($13 = 0 OR version = $13) AND status <> 'withdrawn'")
            .bind(&d.title).bind(&d.description).bind(codes(&d.technologies, Technology::code))
            .bind(codes(&d.contract_models, ContractModel::code)).bind(codes(&d.sectors, Sector::code))
            .bind(to_json(&d.towns)).bind(d.min_investment_fen).bind(d.max_investment_fen)
            .bind(d.typical_savings_bp).bind(d.typical_term_months).bind(now_ms()).bind(id).bind(expected_version)
            .execute(&mut *tx).await?.rows_affected();
        if done == 0 {
            let current: Offering = read_in_tx!(tx, OfferingRow, "SELECT * FROM offerings WHERE id = $1", id, "offering");
            if current.status == OfferingStatus::Withdrawn {
                return Err(Error::precondition(format!(
                    "offering {id} is withdrawn; create a new one"
                )));
            }
            return Err(stale("offering", id, expected_version));
        }
        id.to_string()
        });
        self.offering(id).await
    }

    /// Moves an offering from one of `from` to `to`; a repeat of the same move is a no-op.
    pub async fn set_offering_status(
        &self,
        key: &RequestKey,
        id: &str,
        expected_version: i64,
        from: &[OfferingStatus],
        to: OfferingStatus,
    ) -> Result<Offering> {
        keyed_write!(&self.db, key, tx => {
        let current: Offering = read_in_tx!(tx, OfferingRow, "SELECT * FROM offerings WHERE id = $1", id, "offering");
        if current.status == to {
            return Ok(current);
        }
        if !from.contains(&current.status) {
            return Err(Error::precondition(format!(
                "offering {id} is {}; it can become {} only from {}",
                current.status.code(),
                to.code(),
                from.iter()
                    .map(|s| s.code())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )));
        }
        let done = sqlx::query("UPDATE offerings SET status = $1, updated_at_ms = $2, version = version + 1 WHERE id = $3 AND status = $4 AND ($5 = 0 OR version = $5)")
            .bind(to.code()).bind(now_ms()).bind(id).bind(current.status.code()).bind(expected_version)
            .execute(&mut *tx).await?.rows_affected();
        if done == 0 {
            return Err(stale("offering", id, expected_version));
        }
        id.to_string()
        });
        self.offering(id).await
    }

    /// Published offerings with their companies, in offering id order: the candidates of a
    /// ranking. Kept in memory and reloaded only when `catalog_version` (bumped by triggers on
    /// every change to offerings and companies, by any replica) has moved since.
    pub async fn published_offerings(&self) -> Result<Arc<crate::ranking::Catalog>> {
        let version: i64 = with_db!(&self.db, pool => sqlx::query_scalar("SELECT version FROM catalog_version WHERE id = 1").fetch_one(pool).await?);
        let cached = |version: i64| {
            self.catalog
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .filter(|(at, _)| *at >= version)
                .map(|(_, catalog)| catalog.clone())
        };
        if let Some(catalog) = cached(version) {
            return Ok(catalog);
        }
        // One load at a time; a caller that waited finds it done.
        let _loading = self.catalog_loading.lock().await;
        if let Some(catalog) = cached(version) {
            return Ok(catalog);
        }
        let version: i64 = with_db!(&self.db, pool => sqlx::query_scalar("SELECT version FROM catalog_version WHERE id = 1").fetch_one(pool).await?);
        // Loaded after reading the version: at worst newer than the version it is kept under,
        // which only costs a reload.
        let loaded = Arc::new(crate::ranking::Catalog::new(
            self.load_published_offerings().await?,
        ));
        *self.catalog.lock().unwrap_or_else(|e| e.into_inner()) = Some((version, loaded.clone()));
        Ok(loaded)
    }

    async fn load_published_offerings(&self) -> Result<Vec<(Offering, Company)>> {
        let offerings: Vec<Offering> = with_db!(&self.db, pool => sqlx::query_as::<_, OfferingRow>("SELECT * FROM offerings WHERE status = 'published' ORDER BY id").fetch_all(pool).await?)
            .into_iter().map(Offering::from).collect();
        let sql = format!(
            "SELECT {COMPANY_COLUMNS} FROM companies WHERE id IN (SELECT company_id FROM offerings WHERE status = 'published')"
        );
        let companies: HashMap<String, Company> = with_db!(&self.db, pool => sqlx::query_as::<_, CompanyRow>(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await?)
            .into_iter().map(|r| (r.id.clone(), Company::from(r))).collect();
        Ok(offerings
            .into_iter()
            .filter_map(|o| companies.get(&o.draft.company_id).cloned().map(|c| (o, c)))
            .collect())
    }

    /// Writes companies and offerings as they are (ids, statuses and all) in one transaction:
    /// for benchmarks and fixtures, not for the API.
    pub async fn insert_catalog(
        &self,
        companies: &[Company],
        offerings: &[Offering],
    ) -> Result<()> {
        with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            for c in companies {
                let p = &c.profile;
                sqlx::query("INSERT INTO companies (id, credit_code, name, description, contact_name, contact_phone, contact_email, towns, sectors, certification, financing_capacity_fen, projects_completed, verified_savings_litres, promised_savings_litres, created_at_ms, updated_at_ms, certification_evidence, confirmed_certification, certification_confirmed_by, certification_confirmed_at_ms, certification_note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, $16, $17, $18, $19, $20)")
                    .bind(&c.id).bind(&p.credit_code).bind(&p.name).bind(&p.description)
                    .bind(&p.contact.name).bind(&p.contact.phone).bind(&p.contact.email)
                    .bind(to_json(&p.towns)).bind(codes(&p.sectors, Sector::code))
                    .bind(p.claimed_certification.code()).bind(p.financing_capacity_fen)
                    .bind(c.track_record.projects_completed).bind(c.track_record.verified_savings_litres).bind(c.track_record.promised_savings_litres)
                    .bind(c.created_at_ms).bind(&p.certification_evidence)
                    .bind(c.certification.grade.map(|g| g.code()).unwrap_or_default())
                    .bind(&c.certification.by).bind(c.certification.at_ms).bind(&c.certification.note).execute(&mut *tx).await?;
            }
            for o in offerings {
                let d = &o.draft;
                sqlx::query("INSERT INTO offerings (id, company_id, title, description, technologies, contract_models, sectors, towns, min_investment_fen, max_investment_fen, typical_savings_bp, typical_term_months, status, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)")
                    .bind(&o.id).bind(&d.company_id).bind(&d.title).bind(&d.description)
                    .bind(codes(&d.technologies, Technology::code)).bind(codes(&d.contract_models, ContractModel::code))
                    .bind(codes(&d.sectors, Sector::code)).bind(to_json(&d.towns))
                    .bind(d.min_investment_fen).bind(d.max_investment_fen).bind(d.typical_savings_bp).bind(d.typical_term_months)
                    .bind(o.status.code()).bind(o.created_at_ms).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    // -- water users --------------------------------------------------------------------------

    pub async fn create_water_user(
        &self,
        key: &RequestKey,
        p: &WaterUserProfile,
    ) -> Result<WaterUser> {
        let id = keyed_write!(&self.db, key, tx => {
                let id = new_id();
                let exists: Option<String> = sqlx::query_scalar("SELECT id FROM water_users WHERE credit_code = $1")
                    .bind(&p.credit_code).fetch_optional(&mut *tx).await?;
                if let Some(existing) = exists {
                    return Err(Error::AlreadyExists(format!(
                        "water user with credit code {} exists already as {existing}", p.credit_code)));
                }
                sqlx::query("INSERT INTO water_users (id, credit_code, name, sector, unit_type, town, annual_use_litres, annual_quota_litres, contact_name, contact_phone, contact_email, created_at_ms, updated_at_ms, jurisdiction_code) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13)")
                    .bind(&id).bind(&p.credit_code).bind(&p.name).bind(p.sector.code()).bind(&p.unit_type).bind(&p.town)
                    .bind(p.annual_use_litres).bind(p.annual_quota_litres)
                    .bind(&p.contact.name).bind(&p.contact.phone).bind(&p.contact.email).bind(now_ms()).bind(&p.jurisdiction_code)
                    .execute(&mut *tx).await?;
                id
        });
        self.water_user(&id).await
    }

    pub async fn water_user(&self, id: &str) -> Result<WaterUser> {
        let row: Option<WaterUserRow> = with_db!(&self.db, pool => sqlx::query_as("SELECT * FROM water_users WHERE id = $1").bind(id).fetch_optional(pool).await?);
        row.map(WaterUser::from)
            .ok_or_else(|| Error::not_found("water user", id))
    }

    pub async fn water_user_by_credit_code(&self, code: &str) -> Result<WaterUser> {
        let row: Option<WaterUserRow> = with_db!(&self.db, pool => sqlx::query_as("SELECT * FROM water_users WHERE credit_code = $1").bind(code).fetch_optional(pool).await?);
        row.map(WaterUser::from)
            .ok_or_else(|| Error::not_found("water user with credit code", code))
    }

    pub async fn list_water_users(
        &self,
        f: &ListFilter,
        unit_type: &str,
        page: &Page,
    ) -> Result<(Vec<WaterUser>, String)> {
        let mut rows: Vec<WaterUser> = with_db!(&self.db, pool => sqlx::query_as::<_, WaterUserRow>(
            "SELECT * FROM water_users WHERE ($1 = '' OR sector = $1) AND ($2 = '' OR town = $2) AND ($3 = '' OR unit_type = $3) \
             AND ($4 = '' OR lower(name) LIKE $4 ESCAPE '\\' OR lower(credit_code) LIKE $4 ESCAPE '\\') AND ($5 = '' OR id > $5) ORDER BY id LIMIT $6")
            .bind(&f.sector).bind(&f.town).bind(unit_type).bind(like(&f.query))
            .bind(page.after.clone().unwrap_or_default()).bind(page.fetch_limit())
            .fetch_all(pool).await?)
        .into_iter().map(WaterUser::from).collect();
        let next = page.finish(&mut rows, |u| u.id.clone());
        Ok((rows, next))
    }

    pub async fn update_water_user(
        &self,
        key: &RequestKey,
        id: &str,
        expected_version: i64,
        p: &WaterUserProfile,
    ) -> Result<WaterUser> {
        keyed_write!(&self.db, key, tx => {
        let done = sqlx::query("UPDATE water_users SET name = $1, sector = $2, unit_type = $3, town = $4, annual_use_litres = $5, annual_quota_litres = $6, contact_name = $7, contact_phone = $8, contact_email = $9, updated_at_ms = $10, version = version + 1, jurisdiction_code = $13 WHERE id = $11 AND ($12 = 0 OR version = $12)")
            .bind(&p.name).bind(p.sector.code()).bind(&p.unit_type).bind(&p.town).bind(p.annual_use_litres).bind(p.annual_quota_litres)
            .bind(&p.contact.name).bind(&p.contact.phone).bind(&p.contact.email).bind(now_ms()).bind(id).bind(expected_version).bind(&p.jurisdiction_code)
            .execute(&mut *tx).await?.rows_affected();
        if done == 0 {
            let _: WaterUser = read_in_tx!(tx, WaterUserRow, "SELECT * FROM water_users WHERE id = $1", id, "water user");
            return Err(stale("water user", id, expected_version));
        }
        id.to_string()
        });
        self.water_user(id).await
    }

    // -- project requests ---------------------------------------------------------------------

    pub async fn create_request(
        &self,
        key: &RequestKey,
        d: &RequestDraft,
    ) -> Result<ProjectRequest> {
        let id = keyed_write!(&self.db, key, tx => {
                let id = new_id();
                sqlx::query("INSERT INTO project_requests (id, water_user_id, title, problem, scope, baseline_use_litres, expected_savings_bp, contract_models, technologies, investment_wanted_fen, price_fen_per_m3, proposal_deadline, visibility, invited_company_ids, indicator_tags, status, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 'draft', $16, $16)")
                    .bind(&id).bind(&d.water_user_id).bind(&d.title).bind(&d.problem).bind(&d.scope)
                    .bind(d.baseline_use_litres).bind(d.expected_savings_bp)
                    .bind(codes(&d.preferred_contract_models, ContractModel::code)).bind(codes(&d.wanted_technologies, Technology::code))
                    .bind(d.investment_wanted_fen).bind(d.price_fen_per_m3).bind(&d.proposal_deadline).bind(d.visibility.code())
                    .bind(to_json(&d.invited_company_ids)).bind(codes(&d.indicator_tags, IndicatorTag::code)).bind(now_ms())
                    .execute(&mut *tx).await?;
                id
        });
        self.request(&id).await
    }

    pub async fn request(&self, id: &str) -> Result<ProjectRequest> {
        let sql = format!("{REQUEST_SELECT} WHERE r.id = $1");
        let row: Option<RequestRow> = with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?);
        row.map(ProjectRequest::from)
            .ok_or_else(|| Error::not_found("project request", id))
    }

    /// Lists requests. `sector` and `town` filter on the requesting water user.
    pub async fn list_requests(
        &self,
        f: &ListFilter,
        page: &Page,
    ) -> Result<(Vec<ProjectRequest>, String)> {
        // A request naming no technology (model) wants any. Visibility as
        // `ProjectRequest::visible_to`, in SQL so that pages stay full.
        let sql = format!(
            "{REQUEST_SELECT} JOIN water_users u ON u.id = r.water_user_id WHERE ($1 = '' OR r.water_user_id = $1) AND ($2 = '' OR u.sector = $2) \
             AND ($3 = '' OR u.town = $3) AND ($4 = '' OR r.technologies LIKE $4 ESCAPE '\\' OR r.technologies = '[]') AND ($5 = '' OR r.contract_models LIKE $5 ESCAPE '\\' OR r.contract_models = '[]') \
             AND ($6 = '' OR r.status = $6) AND ($7 = '' OR lower(r.title) LIKE $7 ESCAPE '\\' OR lower(r.problem) LIKE $7 ESCAPE '\\' OR lower(u.name) LIKE $7 ESCAPE '\\') \
             AND ($10 = 1 OR r.water_user_id = $11 OR (r.status <> 'draft' AND (r.visibility = 'public' OR ($12 <> '' AND r.invited_company_ids LIKE $12 ESCAPE '\\'))) OR {}) \
             AND ($8 = '' OR r.id > $8) ORDER BY r.id LIMIT $9",
            reach_sql("u.jurisdiction_code", 13)
        );
        let (all, viewer_company, viewer_user) = viewer_binds(&f.viewer);
        let (lowest, highest, without_code) = reach_binds(&f.viewer);
        let mut rows: Vec<ProjectRequest> = with_db!(&self.db, pool => sqlx::query_as::<_, RequestRow>(sqlx::AssertSqlSafe(sql))
            .bind(&f.owner_id).bind(&f.sector).bind(&f.town).bind(json_member(&f.technology)).bind(json_member(&f.contract_model))
            .bind(&f.status).bind(like(&f.query)).bind(page.after.clone().unwrap_or_default()).bind(page.fetch_limit())
            .bind(all).bind(&viewer_user).bind(json_member(&viewer_company))
            .bind(&lowest).bind(&highest).bind(without_code)
            .fetch_all(pool).await?)
        .into_iter().map(ProjectRequest::from).collect();
        let next = page.finish(&mut rows, |r| r.id.clone());
        Ok((rows, next))
    }

    pub async fn update_request(
        &self,
        key: &RequestKey,
        id: &str,
        expected_version: i64,
        d: &RequestDraft,
    ) -> Result<ProjectRequest> {
        keyed_write!(&self.db, key, tx => {
        let current: ProjectRequest = read_in_tx!(tx, RequestRow, format!("{REQUEST_SELECT} WHERE r.id = $1"), id, "project request");
        if !matches!(current.status, RequestStatus::Draft | RequestStatus::Open) {
            return Err(Error::precondition(format!(
                "project request {id} is {}; only draft or open requests can change",
                current.status.code()
            )));
        }
        let done = sqlx::query("UPDATE project_requests SET title = $1, problem = $2, scope = $3, baseline_use_litres = $4, expected_savings_bp = $5, contract_models = $6, technologies = $7, investment_wanted_fen = $8, price_fen_per_m3 = $9, proposal_deadline = $10, visibility = $11, invited_company_ids = $12, indicator_tags = $13, updated_at_ms = $14, version = version + 1 WHERE id = $15 AND ($16 = 0 OR version = $16) AND status IN ('draft', 'open')")
            .bind(&d.title).bind(&d.problem).bind(&d.scope).bind(d.baseline_use_litres).bind(d.expected_savings_bp)
            .bind(codes(&d.preferred_contract_models, ContractModel::code)).bind(codes(&d.wanted_technologies, Technology::code))
            .bind(d.investment_wanted_fen).bind(d.price_fen_per_m3).bind(&d.proposal_deadline).bind(d.visibility.code())
            .bind(to_json(&d.invited_company_ids)).bind(codes(&d.indicator_tags, IndicatorTag::code)).bind(now_ms())
            .bind(id).bind(expected_version).execute(&mut *tx).await?.rows_affected();
        if done == 0 {
            return Err(stale("project request", id, expected_version));
        }
        id.to_string()
        });
        self.request(id).await
    }

    /// Moves a request from one of `from` to `to`; repeating the same move is a no-op.
    pub async fn set_request_status(
        &self,
        key: &RequestKey,
        id: &str,
        expected_version: i64,
        from: &[RequestStatus],
        to: RequestStatus,
        reason: &str,
    ) -> Result<ProjectRequest> {
        keyed_write!(&self.db, key, tx => {
        let current: ProjectRequest = read_in_tx!(tx, RequestRow, format!("{REQUEST_SELECT} WHERE r.id = $1"), id, "project request");
        if current.status == to {
            return Ok(current);
        }
        if !from.contains(&current.status) {
            return Err(Error::precondition(format!(
                "project request {id} is {}; it can become {} only from {}",
                current.status.code(),
                to.code(),
                from.iter()
                    .map(|s| s.code())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )));
        }
        let done = sqlx::query("UPDATE project_requests SET status = $1, status_reason = $2, updated_at_ms = $3, version = version + 1 WHERE id = $4 AND status = $5 AND ($6 = 0 OR version = $6)")
            .bind(to.code()).bind(reason).bind(now_ms()).bind(id).bind(current.status.code()).bind(expected_version)
            .execute(&mut *tx).await?.rows_affected();
        if done == 0 {
            return Err(stale("project request", id, expected_version));
        }
        id.to_string()
        });
        self.request(id).await
    }

    /// Open requests with their water users, in id order, for a company looking for work.
    pub async fn open_requests(&self) -> Result<Vec<(ProjectRequest, WaterUser)>> {
        let sql = format!("{REQUEST_SELECT} WHERE r.status = 'open' ORDER BY r.id");
        let requests: Vec<ProjectRequest> = with_db!(&self.db, pool => sqlx::query_as::<_, RequestRow>(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await?)
            .into_iter().map(ProjectRequest::from).collect();
        let users: HashMap<String, WaterUser> = with_db!(&self.db, pool => sqlx::query_as::<_, WaterUserRow>(
            "SELECT * FROM water_users WHERE id IN (SELECT water_user_id FROM project_requests WHERE status = 'open')").fetch_all(pool).await?)
            .into_iter().map(|r| (r.id.clone(), WaterUser::from(r))).collect();
        Ok(requests
            .into_iter()
            .filter_map(|r| users.get(&r.draft.water_user_id).cloned().map(|u| (r, u)))
            .collect())
    }

    // -- proposals ----------------------------------------------------------------------------

    pub async fn create_proposal(&self, key: &RequestKey, d: &ProposalDraft) -> Result<Proposal> {
        let id = keyed_write!(&self.db, key, tx => {
                let id = new_id();
                // A no-op write that locks the request row (PostgreSQL; SQLite's write transaction
                // is exclusive anyway): proposals to one request are checked one at a time.
                sqlx::query("UPDATE project_requests SET version = version WHERE id = $1")
                    .bind(&d.project_request_id).execute(&mut *tx).await?;
                let status: Option<String> = sqlx::query_scalar("SELECT status FROM project_requests WHERE id = $1")
                    .bind(&d.project_request_id).fetch_optional(&mut *tx).await?;
                match status.as_deref() {
                    None => return Err(Error::not_found("project request", &d.project_request_id)),
                    Some("open") => {}
                    Some(other) => return Err(Error::precondition(format!(
                        "project request {} is {other}; proposals are taken only while it is open", d.project_request_id))),
                }
                let submitted: Option<String> = sqlx::query_scalar("SELECT id FROM proposals WHERE project_request_id = $1 AND company_id = $2 AND status = 'submitted'")
                    .bind(&d.project_request_id).bind(&d.company_id).fetch_optional(&mut *tx).await?;
                if let Some(existing) = submitted {
                    return Err(Error::AlreadyExists(format!(
                        "company {} has already proposed on project request {} (proposal {existing}); withdraw it to propose again",
                        d.company_id, d.project_request_id)));
                }
                sqlx::query("INSERT INTO proposals (id, project_request_id, company_id, offering_id, measures, investment_fen, promised_savings_litres, promised_savings_bp, contract_model, terms, contract_term_months, mv_option, drivers, status, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'submitted', $14, $14)")
                    .bind(&id).bind(&d.project_request_id).bind(&d.company_id).bind(&d.offering_id).bind(&d.measures)
                    .bind(d.investment_fen).bind(d.promised_savings_litres).bind(d.promised_savings_bp)
                    .bind(d.contract_model.code()).bind(to_json(&d.terms)).bind(d.contract_term_months)
                    .bind(d.mv_option.code()).bind(to_json(&d.drivers)).bind(now_ms())
                    .execute(&mut *tx).await?;
                id
        });
        self.proposal(&id).await
    }

    pub async fn proposal(&self, id: &str) -> Result<Proposal> {
        let row: Option<ProposalRow> = with_db!(&self.db, pool => sqlx::query_as("SELECT * FROM proposals WHERE id = $1").bind(id).fetch_optional(pool).await?);
        row.map(Proposal::from)
            .ok_or_else(|| Error::not_found("proposal", id))
    }

    /// The counterparts a proposal links the viewer to: for a company, the water users of the
    /// requests it proposed on; for a water user, the companies that proposed on its requests
    /// (an accepted proposal is how every project starts, so a project's parties are among
    /// them). Whose contact details the viewer may see.
    pub async fn linked_counterparts(
        &self,
        v: &Viewer,
    ) -> Result<std::collections::HashSet<String>> {
        let (_, company, user) = viewer_binds(v);
        if company.is_empty() && user.is_empty() {
            return Ok(Default::default());
        }
        let ids: Vec<String> = with_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT DISTINCT CASE WHEN p.company_id = $1 THEN r.water_user_id ELSE p.company_id END \
             FROM proposals p JOIN project_requests r ON r.id = p.project_request_id \
             WHERE ($1 <> '' AND p.company_id = $1) OR ($2 <> '' AND r.water_user_id = $2)")
            .bind(&company).bind(&user).fetch_all(pool).await?);
        Ok(ids.into_iter().collect())
    }

    pub async fn list_proposals(
        &self,
        project_request_id: &str,
        company_id: &str,
        f: &ListFilter,
        page: &Page,
    ) -> Result<(Vec<Proposal>, String)> {
        // A company sees its own proposals; a water user those to its requests.
        // An administrator those to the requests of the water users of its jurisdiction.
        let (all, viewer_company, viewer_user) = viewer_binds(&f.viewer);
        let (lowest, highest, without_code) = reach_binds(&f.viewer);
        let sql = format!(
            "SELECT p.* FROM proposals p JOIN companies c ON c.id = p.company_id JOIN project_requests r ON r.id = p.project_request_id \
             JOIN water_users u ON u.id = r.water_user_id \
             WHERE ($1 = '' OR p.project_request_id = $1) AND ($2 = '' OR p.company_id = $2) AND ($3 = '' OR p.status = $3) \
             AND ($4 = '' OR p.contract_model = $4) AND ($5 = '' OR lower(p.measures) LIKE $5 ESCAPE '\\' OR lower(c.name) LIKE $5 ESCAPE '\\') \
             AND ($8 = 1 OR p.company_id = $9 OR r.water_user_id = $10 OR {}) \
             AND ($6 = '' OR p.id > $6) ORDER BY p.id LIMIT $7",
            reach_sql("u.jurisdiction_code", 11)
        );
        let mut rows: Vec<Proposal> = with_db!(&self.db, pool => sqlx::query_as::<_, ProposalRow>(sqlx::AssertSqlSafe(sql))
            .bind(project_request_id).bind(company_id).bind(&f.status).bind(&f.contract_model).bind(like(&f.query))
            .bind(page.after.clone().unwrap_or_default()).bind(page.fetch_limit())
            .bind(all).bind(&viewer_company).bind(&viewer_user).bind(&lowest).bind(&highest).bind(without_code)
            .fetch_all(pool).await?)
        .into_iter().map(Proposal::from).collect();
        let next = page.finish(&mut rows, |p| p.id.clone());
        Ok((rows, next))
    }

    /// Accepts `proposal_id` for its request: the proposal becomes accepted with its project id,
    /// the request awarded, the other submitted proposals declined, and `event` (which starts the
    /// project in the projects service) is written to the outbox, all in one transaction. A
    /// repeat of an acceptance already made returns it unchanged.
    pub async fn accept_proposal(
        &self,
        key: &RequestKey,
        proposal_id: &str,
        expected_version: i64,
        project_id: &str,
        event: &Envelope,
    ) -> Result<Proposal> {
        keyed_write!(&self.db, key, tx => {
        let current: Proposal = read_in_tx!(tx, ProposalRow, "SELECT * FROM proposals WHERE id = $1", proposal_id, "proposal");
        if current.status == ProposalStatus::Accepted {
            return Ok(current);
        }
        if current.status != ProposalStatus::Submitted {
            return Err(Error::precondition(format!(
                "proposal {proposal_id} is {}; only a submitted proposal can be accepted",
                current.status.code()
            )));
        }
        if expected_version != 0 && current.version != expected_version {
            return Err(stale("proposal", proposal_id, expected_version));
        }
        let request_id = current.draft.project_request_id.clone();
            let now = now_ms();
            let awarded = sqlx::query("UPDATE project_requests SET status = 'awarded', awarded_proposal_id = $1, status_reason = 'proposal accepted', updated_at_ms = $2, version = version + 1 WHERE id = $3 AND status IN ('open', 'closed')")
                .bind(proposal_id).bind(now).bind(&request_id).execute(&mut *tx).await?.rows_affected();
            if awarded == 0 {
                return Err(Error::precondition(format!(
                    "project request {request_id} is no longer open or closed for award")));
            }
            let accepted = sqlx::query("UPDATE proposals SET status = 'accepted', project_id = $1, updated_at_ms = $2, version = version + 1 WHERE id = $3 AND status = 'submitted'")
                .bind(project_id).bind(now).bind(proposal_id).execute(&mut *tx).await?.rows_affected();
            if accepted == 0 {
                return Err(stale("proposal", proposal_id, expected_version));
            }
            sqlx::query("UPDATE proposals SET status = 'declined', decline_reason = 'another proposal was accepted', updated_at_ms = $1, version = version + 1 WHERE project_request_id = $2 AND status = 'submitted' AND id <> $3")
                .bind(now).bind(&request_id).bind(proposal_id).execute(&mut *tx).await?;
            tx.enqueue(event).await?;
            proposal_id.to_string()
        });
        self.proposal(proposal_id).await
    }

    /// Declines (by the water user) or withdraws (by the company) a submitted proposal.
    pub async fn close_proposal(
        &self,
        key: &RequestKey,
        proposal_id: &str,
        expected_version: i64,
        to: ProposalStatus,
        reason: &str,
    ) -> Result<Proposal> {
        keyed_write!(&self.db, key, tx => {
        let current: Proposal = read_in_tx!(tx, ProposalRow, "SELECT * FROM proposals WHERE id = $1", proposal_id, "proposal");
        if current.status == to {
            return Ok(current);
        }
        if current.status != ProposalStatus::Submitted {
            return Err(Error::precondition(format!(
                "proposal {proposal_id} is {}; only a submitted proposal can be {}",
                current.status.code(),
                to.code()
            )));
        }
        let column = if to == ProposalStatus::Declined {
            "decline_reason"
        } else {
            "withdraw_reason"
        };
        let sql = format!(
            "UPDATE proposals SET status = $1, {column} = $2, updated_at_ms = $3, version = version + 1 WHERE id = $4 AND status = 'submitted' AND ($5 = 0 OR version = $5)"
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(to.code()).bind(reason).bind(now_ms()).bind(proposal_id).bind(expected_version).execute(&mut *tx).await?.rows_affected();
        if done == 0 {
            return Err(stale("proposal", proposal_id, expected_version));
        }
        proposal_id.to_string()
        });
        self.proposal(proposal_id).await
    }
}
