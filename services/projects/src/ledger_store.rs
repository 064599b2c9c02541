//! Reporting periods, non-routine adjustments and settlements in the store. Submission freezes
//! a period's figures; verification (and a resolved dispute) writes the period and its
//! PERIOD_VERIFIED milestone and outbox event in one transaction; settlement writes the
//! settlement and the period's new status together, once.

use chrono::Datelike;
use cwsm_platform::auth::Principal;
use cwsm_platform::bus::{Envelope, topics};
use cwsm_platform::db::BeginWrite;
use cwsm_platform::grpc::Page;
use cwsm_platform::idempotency::{self, RequestKey};
use cwsm_platform::outbox::OutboxWrite;
use cwsm_platform::quantity::{Fen, Litres};
use cwsm_platform::vocab::{ContractModel, Milestone};
use cwsm_platform::{Error, Result, keyed_write, new_id, now_ms, with_db};

use crate::domain::{Project, Stage};
use crate::ledger::*;
use crate::mv::PeriodFigures;
use crate::store::{MilestoneFacts, ProjectRow, Store, record_milestone, verified_totals};

#[derive(sqlx::FromRow)]
struct PeriodRow {
    id: String,
    project_id: String,
    start_date: String,
    end_date: String,
    adjusted_baseline_litres: i64,
    actual_litres: i64,
    non_routine_adjustment_litres: i64,
    dispute_adjustment_litres: i64,
    savings_litres: i64,
    savings_bp: i32,
    uncertainty_68_litres: i64,
    uncertainty_90_litres: i64,
    observations: i64,
    promised_savings_litres: i64,
    status: String,
    dispute_reason: String,
    disputed_by: String,
    notes: String,
    created_at_ms: i64,
    updated_at_ms: i64,
    version: i64,
}

impl From<PeriodRow> for Period {
    fn from(r: PeriodRow) -> Self {
        Period {
            id: r.id,
            project_id: r.project_id,
            start_date: r.start_date,
            end_date: r.end_date,
            figures: PeriodFigures {
                adjusted_baseline_litres: r.adjusted_baseline_litres,
                actual_litres: r.actual_litres,
                non_routine_adjustment_litres: r.non_routine_adjustment_litres,
                dispute_adjustment_litres: r.dispute_adjustment_litres,
                savings_litres: r.savings_litres,
                savings_bp: i64::from(r.savings_bp),
                uncertainty_68_litres: r.uncertainty_68_litres,
                uncertainty_90_litres: r.uncertainty_90_litres,
                observations: r.observations,
                ..Default::default()
            },
            promised_savings_litres: r.promised_savings_litres,
            status: PeriodStatus::from_code(&r.status).unwrap_or(PeriodStatus::Submitted),
            dispute_reason: r.dispute_reason,
            disputed_by: r.disputed_by,
            notes: serde_json::from_str(&r.notes).unwrap_or_default(),
            waivers: Vec::new(),
            verification_report_sha256: String::new(),
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            version: r.version,
        }
    }
}

#[derive(sqlx::FromRow)]
struct WaiverRow {
    project_id: String,
    period_start_date: String,
    check_code: String,
    reason: String,
    failure: String,
    waived_by: String,
    waived_by_org: String,
    created_at_ms: i64,
}

impl WaiverRow {
    fn into_waiver(self) -> Option<Waiver> {
        Some(Waiver {
            check: MeasurementCheck::from_code(&self.check_code)?,
            project_id: self.project_id,
            period_start_date: self.period_start_date,
            reason: self.reason,
            failure: self.failure,
            waived_by: self.waived_by,
            waived_by_org: self.waived_by_org,
            created_at_ms: self.created_at_ms,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AdjustmentRow {
    id: String,
    project_id: String,
    start_date: String,
    end_date: String,
    litres: i64,
    reason: String,
    evidence: String,
    recorded_by: String,
    recorded_by_org: String,
    created_at_ms: i64,
    updated_at_ms: i64,
    version: i64,
    status: String,
    decided_by: String,
    decided_by_org: String,
    decision_note: String,
}

impl From<AdjustmentRow> for NonRoutineAdjustment {
    fn from(r: AdjustmentRow) -> Self {
        NonRoutineAdjustment {
            id: r.id,
            project_id: r.project_id,
            start_date: r.start_date,
            end_date: r.end_date,
            litres: r.litres,
            reason: r.reason,
            evidence: r.evidence,
            recorded_by: r.recorded_by,
            recorded_by_org: r.recorded_by_org,
            status: AdjustmentStatus::from_code(&r.status).unwrap_or(AdjustmentStatus::Proposed),
            decided_by: r.decided_by,
            decided_by_org: r.decided_by_org,
            decision_note: r.decision_note,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            version: r.version,
        }
    }
}

#[derive(sqlx::FromRow)]
struct SettlementRow {
    id: String,
    project_id: String,
    period_id: String,
    period_start_date: String,
    period_end_date: String,
    contract_model: String,
    savings_litres: i64,
    price_fen_per_m3: i64,
    savings_value_fen: i64,
    company_due_fen: i64,
    user_due_fen: i64,
    shortfall_fen: i64,
    hosting_fee_fen: i64,
    water_bill_fen: i64,
    statement_lines: String,
    created_at_ms: i64,
    updated_at_ms: i64,
    version: i64,
}

/// A statement line as stored: in both languages, or in English only (settled before
/// statements were kept in both; shown as it was, in either language).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum StoredLine {
    Both(cwsm_platform::lang::Text),
    English(String),
}

fn stored_statement(text: &str) -> Vec<cwsm_platform::lang::Text> {
    serde_json::from_str::<Vec<StoredLine>>(text)
        .unwrap_or_default()
        .into_iter()
        .map(|line| match line {
            StoredLine::Both(text) => text,
            StoredLine::English(en) => cwsm_platform::lang::Text::same(en),
        })
        .collect()
}

impl From<SettlementRow> for Settlement {
    fn from(r: SettlementRow) -> Self {
        Settlement {
            id: r.id,
            project_id: r.project_id,
            period_id: r.period_id,
            period_start_date: r.period_start_date,
            period_end_date: r.period_end_date,
            contract_model: ContractModel::from_code(&r.contract_model)
                .unwrap_or(ContractModel::SharedSavings),
            savings_litres: r.savings_litres,
            price_fen_per_m3: r.price_fen_per_m3,
            savings_value_fen: r.savings_value_fen,
            company_due_fen: r.company_due_fen,
            user_due_fen: r.user_due_fen,
            shortfall_fen: r.shortfall_fen,
            hosting_fee_fen: r.hosting_fee_fen,
            water_bill_fen: r.water_bill_fen,
            statement_lines: stored_statement(&r.statement_lines),
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            version: r.version,
        }
    }
}

/// A savings report and what it was computed from.
pub struct Measured {
    pub project: Project,
    pub report: SavingsReport,
    pub days: Vec<crate::mv::DayUse>,
    pub drivers: Vec<(String, crate::mv::DriverDays)>,
    pub adjustments: Vec<NonRoutineAdjustment>,
}

/// One change of a driver value: the value recorded for a day, and the one it replaced.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct DriverValueChange {
    pub id: String,
    pub driver: String,
    pub day: String,
    pub value: f64,
    /// `None` for the day's first value.
    pub previous_value: Option<f64>,
    pub recorded_by: String,
    pub recorded_by_org: String,
    pub recorded_at_ms: i64,
}

/// The mutable fields of a project (UpdateProject).
#[derive(Clone, Debug, Default)]
pub struct ProjectUpdate {
    pub title: String,
    pub sites: Vec<String>,
    pub measures: String,
    pub indicator_tags: Vec<String>,
    pub baseline_start_date: String,
    pub baseline_end_date: String,
    pub reporting_period_months: i32,
    pub mv_model_description: String,
    pub drivers: Vec<String>,
    pub price_fen_per_m3: i64,
    pub quality_rules: crate::metering::QualityRules,
}

/// What a verify, dispute or resolve carries.
#[derive(Clone, Debug)]
pub struct StepAsk {
    pub step: PeriodStep,
    /// The verifier's note, the dispute's reason or the resolution's note.
    pub text: String,
    /// ResolveDispute: litres added to the savings.
    pub adjustment_litres: i64,
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".to_string())
}

/// The first day of the contract year `day` falls in: twelve-month steps from `first`, the
/// first reporting day.
pub fn contract_year_start(first: chrono::NaiveDate, day: chrono::NaiveDate) -> chrono::NaiveDate {
    let mut start = first;
    while let Some(next) = start.checked_add_months(chrono::Months::new(12)) {
        if next > day {
            break;
        }
        start = next;
    }
    start
}

/// Today in China Standard Time.
pub fn today_cst() -> chrono::NaiveDate {
    crate::readings::day_date(crate::readings::day_index(now_ms() + 1))
}

impl Store {
    /// Replaces a project's mutable fields; the baseline period, M&V plan and price only while
    /// it is contracted (they are frozen at signing, and set then).
    pub async fn update_project(
        &self,
        key: &RequestKey,
        project_id: &str,
        expected_version: i64,
        u: &ProjectUpdate,
        check: impl Fn(&Project) -> Result<()>,
    ) -> Result<Project> {
        let _forget = self.cache.forget_when_done(project_id);
        keyed_write!(&self.db, key, tx => {
                let row: Option<ProjectRow> = sqlx::query_as("SELECT * FROM projects WHERE id = $1").bind(project_id).fetch_optional(&mut *tx).await?;
                let project = row.map(Project::from).ok_or_else(|| Error::not_found("project", project_id))?;
                // Who may not do this learns nothing of the project, not even its version.
                check(&project)?;
                if expected_version != 0 && project.version != expected_version {
                    return Err(Error::Aborted(format!(
                        "project {project_id} is at version {}, not {expected_version}; read it again and retry", project.version)));
                }
                let frozen_changed = project.baseline_start_date != u.baseline_start_date
                    || project.baseline_end_date != u.baseline_end_date
                    || project.reporting_period_months != u.reporting_period_months
                    || project.contract.drivers != u.drivers
                    || project.contract.price_fen_per_m3 != u.price_fen_per_m3
                    || project.mv_model_description != u.mv_model_description
                    || project.quality_rules != u.quality_rules;
                // Frozen at signing; a project that left contracted without a baseline period
                // may still have it set once (the first setting then freezes it).
                let first_setting = project.baseline_start_date.is_empty() && project.baseline_end_date.is_empty();
                if frozen_changed && project.stage != Stage::Contracted && !first_setting {
                    return Err(Error::precondition(format!(
                        "project {project_id} is {}: the baseline period, M&V plan and price are frozen once implementation starts (they may change while contracted)",
                        project.stage.code())));
                }
                let now = now_ms();
                // Only over the version read and checked (a concurrent change makes it stale).
                let written = sqlx::query("UPDATE projects SET title = $1, sites = $2, measures = $3, indicator_tags = $4, baseline_start_date = $5, baseline_end_date = $6, \
                             reporting_period_months = $7, mv_model_description = $8, drivers = $9, price_fen_per_m3 = $10, updated_at_ms = $11, quality_rules = $14, version = version + 1 WHERE id = $12 AND version = $13")
                    .bind(&u.title).bind(json(&u.sites)).bind(&u.measures).bind(json(&u.indicator_tags))
                    .bind(&u.baseline_start_date).bind(&u.baseline_end_date).bind(u.reporting_period_months)
                    .bind(&u.mv_model_description).bind(json(&u.drivers)).bind(u.price_fen_per_m3).bind(now).bind(project_id).bind(project.version)
                    .bind(u.quality_rules.to_stored())
                    .execute(&mut *tx).await?.rows_affected();
                if written == 0 {
                    return Err(Error::Aborted(format!(
                        "project {project_id} changed while it was being updated; read it again and retry")));
                }
                project_id.to_string()
        });
        self.project(project_id).await
    }

    pub async fn create_adjustment(
        &self,
        key: &RequestKey,
        a: &NonRoutineAdjustment,
    ) -> Result<NonRoutineAdjustment> {
        let id: String = keyed_write!(&self.db, key, tx => {
                    let id = new_id();
                    let now = now_ms();
                    sqlx::query("INSERT INTO non_routine_adjustments (id, project_id, start_date, end_date, litres, reason, evidence, recorded_by, recorded_by_org, created_at_ms, updated_at_ms, status, decided_by, decided_by_org) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12, $13)")
                        .bind(&id).bind(&a.project_id).bind(&a.start_date).bind(&a.end_date).bind(a.litres).bind(&a.reason).bind(&a.evidence)
                        .bind(&a.recorded_by).bind(&a.recorded_by_org).bind(now).bind(a.status.code()).bind(&a.decided_by).bind(&a.decided_by_org)
                        .execute(&mut *tx).await?;
                    id
        });
        let row: Option<AdjustmentRow> = with_db!(&self.db, pool => sqlx::query_as("SELECT * FROM non_routine_adjustments WHERE id = $1").bind(&id).fetch_optional(pool).await?);
        row.map(NonRoutineAdjustment::from)
            .ok_or_else(|| Error::not_found("non-routine adjustment", id))
    }

    /// Approves or rejects a proposed adjustment ([`check_adjustment_decision`]).
    pub async fn decide_adjustment(
        &self,
        key: &RequestKey,
        id: &str,
        expected_version: i64,
        approve: bool,
        note: &str,
        who: &Principal,
    ) -> Result<NonRoutineAdjustment> {
        let org = who.org.clone().unwrap_or_default();
        let id = keyed_write!(&self.db, key, tx => {
            let row: Option<AdjustmentRow> = sqlx::query_as("SELECT * FROM non_routine_adjustments WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
            let a = row.map(NonRoutineAdjustment::from).ok_or_else(|| Error::not_found("non-routine adjustment", id))?;
            let project_row: Option<ProjectRow> = sqlx::query_as("SELECT * FROM projects WHERE id = $1").bind(&a.project_id).fetch_optional(&mut *tx).await?;
            let project = project_row.map(Project::from).ok_or_else(|| Error::not_found("project", &a.project_id))?;
            check_adjustment_decision(&project, who, &a)?;
            if expected_version != 0 && a.version != expected_version {
                return Err(Error::Aborted(format!(
                    "adjustment {id} is at version {}, not {expected_version}; read it again and retry", a.version)));
            }
            let status = if approve { AdjustmentStatus::Approved } else { AdjustmentStatus::Rejected };
            let written = sqlx::query("UPDATE non_routine_adjustments SET status = $1, decided_by = $2, decided_by_org = $3, decision_note = $4, updated_at_ms = $5, version = version + 1 \
                         WHERE id = $6 AND version = $7 AND status = 'proposed'")
                .bind(status.code()).bind(&who.subject).bind(&org).bind(note).bind(now_ms()).bind(id).bind(a.version)
                .execute(&mut *tx).await?.rows_affected();
            if written == 0 {
                return Err(Error::Aborted(format!("adjustment {id} changed while it was being decided; read it again and retry")));
            }
            id.to_string()
        });
        let row: Option<AdjustmentRow> = with_db!(&self.db, pool => sqlx::query_as("SELECT * FROM non_routine_adjustments WHERE id = $1").bind(&id).fetch_optional(pool).await?);
        row.map(NonRoutineAdjustment::from)
            .ok_or_else(|| Error::not_found("non-routine adjustment", id))
    }

    pub async fn adjustments(
        &self,
        project_id: &str,
        page: &Page,
    ) -> Result<(Vec<NonRoutineAdjustment>, String)> {
        let mut rows: Vec<NonRoutineAdjustment> = with_db!(&self.db, pool => sqlx::query_as::<_, AdjustmentRow>(
            "SELECT * FROM non_routine_adjustments WHERE project_id = $1 AND ($2 = '' OR id > $2) ORDER BY id LIMIT $3")
            .bind(project_id).bind(page.after.clone().unwrap_or_default()).bind(page.fetch_limit()).fetch_all(pool).await?)
        .into_iter().map(NonRoutineAdjustment::from).collect();
        let next = page.finish(&mut rows, |a| a.id.clone());
        Ok((rows, next))
    }

    /// Records a driver's values by day ("YYYY-MM-DD", value), replacing those of the same
    /// days, each change kept with the value it replaced and who made it. All or nothing: a
    /// value of a day whose driver values are agreed ([`crate::corrections::frozen`]: a stored
    /// period's days, the baseline once a period is submitted) that would change is refused.
    /// Returns (changed, unchanged).
    pub async fn record_driver_values(
        &self,
        project: &Project,
        driver: &str,
        values: &[(String, f64)],
        who: &Principal,
    ) -> Result<(i64, i64)> {
        let periods = self.stored_periods(&project.id).await?;
        let org = who.org.clone().unwrap_or_default();
        let (mut changed, mut unchanged) = (0i64, 0i64);
        with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            // Not submitted meanwhile: the write lock is held from here.
            let submitted: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM periods WHERE project_id = $1")
                .bind(&project.id).fetch_one(&mut *tx).await?;
            if submitted as usize != periods.len() {
                return Err(Error::Aborted(format!("a period of project {} was submitted meanwhile; send the values again", project.id)));
            }
            // The values stored now over the call's days, in one read (a call holds up to
            // 10,000 days); a day given twice sees the first of them.
            let first = values.iter().map(|(d, _)| d.as_str()).min().unwrap_or_default();
            let last = values.iter().map(|(d, _)| d.as_str()).max().unwrap_or_default();
            let stored: Vec<(String, f64)> = sqlx::query_as("SELECT day, value FROM driver_values WHERE project_id = $1 AND driver = $2 AND day BETWEEN $3 AND $4")
                .bind(&project.id).bind(driver).bind(first).bind(last).fetch_all(&mut *tx).await?;
            let mut stored: std::collections::HashMap<String, f64> = stored.into_iter().collect();
            for (day, value) in values {
                let previous = stored.get(day).copied();
                if previous == Some(*value) {
                    unchanged += 1;
                    continue;
                }
                let date = crate::ledger::date("values.date", day)?;
                if let Some(why) = crate::corrections::frozen(project, &periods, date) {
                    return Err(Error::precondition(format!(
                        "{driver} on {day}: {} (driver values are agreed with it: document a non-routine adjustment with evidence for the verifier to approve)",
                        why.replacen("the reading's day", "the day", 1)
                    )));
                }
                sqlx::query("INSERT INTO driver_values (project_id, driver, day, value) VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (project_id, driver, day) DO UPDATE SET value = excluded.value")
                    .bind(&project.id).bind(driver).bind(day).bind(*value).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO driver_value_changes (id, project_id, driver, day, value, previous_value, recorded_by, recorded_by_org, recorded_at_ms) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                    .bind(new_id()).bind(&project.id).bind(driver).bind(day).bind(*value).bind(previous)
                    .bind(&who.subject).bind(&org).bind(now_ms()).execute(&mut *tx).await?;
                stored.insert(day.clone(), *value);
                changed += 1;
            }
            tx.commit().await?;
        });
        Ok((changed, unchanged))
    }

    /// Every change of the project's driver values (of `driver` when not empty), oldest
    /// first.
    pub async fn driver_value_changes(
        &self,
        project_id: &str,
        driver: &str,
        page: &Page,
    ) -> Result<(Vec<DriverValueChange>, String)> {
        let mut rows: Vec<DriverValueChange> = with_db!(&self.db, pool => sqlx::query_as::<_, DriverValueChange>(
            "SELECT id, driver, day, value, previous_value, recorded_by, recorded_by_org, recorded_at_ms FROM driver_value_changes \
             WHERE project_id = $1 AND ($2 = '' OR driver = $2) AND ($3 = '' OR id > $3) ORDER BY id LIMIT $4")
            .bind(project_id).bind(driver).bind(page.after.clone().unwrap_or_default()).bind(page.fetch_limit()).fetch_all(pool).await?);
        let next = page.finish(&mut rows, |c| c.id.clone());
        Ok((rows, next))
    }

    /// The recorded driver values of a project, by driver.
    pub async fn driver_values(
        &self,
        project_id: &str,
    ) -> Result<Vec<(String, crate::mv::DriverDays)>> {
        let rows: Vec<(String, String, f64)> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT driver, day, value FROM driver_values WHERE project_id = $1 ORDER BY driver, day")
            .bind(project_id).fetch_all(pool).await?);
        let mut out: Vec<(String, crate::mv::DriverDays)> = Vec::new();
        for (driver, day, value) in rows {
            let Ok(day) = chrono::NaiveDate::parse_from_str(&day, "%Y-%m-%d") else {
                continue;
            };
            match out.last_mut() {
                Some((d, m)) if *d == driver => {
                    m.insert(day, value);
                }
                _ => out.push((driver, [(day, value)].into_iter().collect())),
            }
        }
        Ok(out)
    }

    pub(crate) async fn stored_periods(&self, project_id: &str) -> Result<Vec<Period>> {
        let mut periods: Vec<Period> = with_db!(&self.db, pool => sqlx::query_as::<_, PeriodRow>(
            "SELECT * FROM periods WHERE project_id = $1 ORDER BY start_date")
            .bind(project_id).fetch_all(pool).await?)
        .into_iter()
        .map(Period::from)
        .collect();
        // Each period's latest archived report (versions ascend, so the last one stays).
        let hashes: Vec<(String, String)> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT v.period_id, v.html_sha256 FROM verification_reports v JOIN periods p ON p.id = v.period_id \
             WHERE p.project_id = $1 ORDER BY v.period_version")
            .bind(project_id).fetch_all(pool).await?);
        for (id, sha) in hashes {
            if let Some(p) = periods.iter_mut().find(|p| p.id == id) {
                p.verification_report_sha256 = sha;
            }
        }
        Ok(periods)
    }

    /// A stored period, with the checks waived for it.
    pub async fn period(&self, id: &str) -> Result<Period> {
        let row: Option<PeriodRow> = with_db!(&self.db, pool => sqlx::query_as("SELECT * FROM periods WHERE id = $1").bind(id).fetch_optional(pool).await?);
        let mut period = row
            .map(Period::from)
            .ok_or_else(|| Error::not_found("period", id))?;
        period.waivers = self
            .waivers(&period.project_id)
            .await?
            .into_iter()
            .filter(|w| w.period_start_date == period.start_date)
            .collect();
        period.verification_report_sha256 = with_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT html_sha256 FROM verification_reports WHERE period_id = $1 ORDER BY period_version DESC LIMIT 1")
            .bind(id).fetch_optional(pool).await?)
        .unwrap_or_default();
        Ok(period)
    }

    /// The project's savings report, computed now from its readings.
    pub async fn savings_report(&self, project_id: &str) -> Result<(Project, SavingsReport)> {
        let m = self.measured(project_id).await?;
        Ok((m.project, m.report))
    }

    /// The project's savings report with what it was computed from (the verification report
    /// draws its chart from the same days and adjustments).
    pub(crate) async fn measured(&self, project_id: &str) -> Result<Measured> {
        let project = self.project(project_id).await?;
        let (days, granularity) = self.project_days(project_id, project.quality_rules).await?;
        let (adjustments, _) = self
            .adjustments(
                project_id,
                &Page {
                    size: 10_000,
                    after: None,
                },
            )
            .await?;
        let stored = self.stored_periods(project_id).await?;
        let drivers = self.driver_values(project_id).await?;
        let waivers = self.waivers(project_id).await?;
        let report = report(
            &project,
            ReportData {
                days: &days,
                granularity,
                drivers: &drivers,
                adjustments: &adjustments,
                stored,
                waivers,
            },
            today_cst(),
        );
        Ok(Measured {
            project,
            report,
            days,
            drivers,
            adjustments,
        })
    }

    async fn waivers(&self, project_id: &str) -> Result<Vec<Waiver>> {
        Ok(with_db!(&self.db, pool => sqlx::query_as::<_, WaiverRow>(
            "SELECT * FROM period_waivers WHERE project_id = $1 ORDER BY period_start_date, created_at_ms")
            .bind(project_id).fetch_all(pool).await?)
        .into_iter()
        .filter_map(WaiverRow::into_waiver)
        .collect())
    }

    /// Waives `check` of the project's reported period starting `start_date`, for the
    /// assigned verifier ([`check_waiver`]).
    pub async fn waive_period_check(
        &self,
        key: &RequestKey,
        project_id: &str,
        start_date: &str,
        check: MeasurementCheck,
        reason: &str,
        who: &Principal,
    ) -> Result<Waiver> {
        let find = |waivers: Vec<Waiver>| {
            waivers
                .into_iter()
                .find(|w| w.period_start_date == start_date && w.check == check)
                .ok_or_else(|| Error::not_found("waiver", format!("{start_date} {}", check.code())))
        };
        if idempotency::recorded(&self.db, key).await?.is_some() {
            return find(self.waivers(project_id).await?);
        }
        let (project, report) = self.savings_report(project_id).await?;
        let failure = check_waiver(&project, &report, start_date, who, check)?;
        let org = who.org.clone().unwrap_or_default();
        keyed_write!(&self.db, key, tx => {
            let inserted = sqlx::query("INSERT INTO period_waivers (project_id, period_start_date, check_code, reason, failure, waived_by, waived_by_org, created_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (project_id, period_start_date, check_code) DO NOTHING")
                .bind(project_id).bind(start_date).bind(check.code()).bind(reason).bind(&failure)
                .bind(&who.subject).bind(&org).bind(now_ms())
                .execute(&mut *tx).await?.rows_affected();
            if inserted == 0 {
                return Err(Error::AlreadyExists(format!("{} of the period starting {start_date} was waived meanwhile", check.label())));
            }
            // Not submitted meanwhile (a waiver is for a period not yet frozen).
            let submitted: Option<String> = sqlx::query_scalar("SELECT id FROM periods WHERE project_id = $1 AND start_date = $2")
                .bind(project_id).bind(start_date).fetch_optional(&mut *tx).await?;
            if let Some(id) = submitted {
                return Err(Error::precondition(format!("the period starting {start_date} was submitted meanwhile (period {id}): checks are waived before submission")));
            }
            start_date.to_string()
        });
        find(self.waivers(project_id).await?)
    }

    /// Submits the period starting `start_date`: computes its figures and freezes them.
    pub async fn submit_period(
        &self,
        key: &RequestKey,
        project_id: &str,
        start_date: &str,
        note: &str,
        who: &Principal,
    ) -> Result<Period> {
        // The figures are computed from readings before the write transaction (a read that may
        // take a while); a retry of a submission made answers without it, and the write below
        // re-checks that the period is still unsubmitted.
        if let Some(id) = idempotency::recorded(&self.db, key).await? {
            return self.period(&id).await;
        }
        let (project, report) = self.savings_report(project_id).await?;
        if !project.company(who) {
            return Err(project.refuse(
                who,
                format!("only the company of project {project_id} or an administrator submits its periods"),
            ));
        }
        if project.stage != Stage::Operating {
            return Err(Error::precondition(format!(
                "project {project_id} is {}; periods are submitted while it is operating",
                project.stage.code()
            )));
        }
        let fit = report
            .usable_fit()
            .map_err(|why| Error::precondition(format!("the savings cannot be measured: {why}")))?;
        let period = period_starting(&report, project_id, start_date)?.clone();
        if period.status != PeriodStatus::Reported {
            return Err(Error::precondition(format!(
                "the period starting {start_date} is {} already (period {})",
                period.status.code(),
                period.id
            )));
        }
        check_submittable(fit, &period)?;
        let mut notes = period.notes.clone();
        notes.extend(period.waivers.iter().map(Waiver::note));
        notes.push(if note.trim().is_empty() {
            format!("submitted by {}", who.subject)
        } else {
            format!("submitted by {}: {}", who.subject, note.trim())
        });
        let f = &period.figures;
        let id = keyed_write!(&self.db, key, tx => {
            let id = new_id();
            let now = now_ms();
            let inserted = sqlx::query("INSERT INTO periods (id, project_id, start_date, end_date, adjusted_baseline_litres, actual_litres, non_routine_adjustment_litres, dispute_adjustment_litres, \
                         savings_litres, savings_bp, uncertainty_68_litres, uncertainty_90_litres, observations, promised_savings_litres, status, notes, created_at_ms, updated_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $10, $11, $12, $13, 'submitted', $14, $15, $15) ON CONFLICT (project_id, start_date) DO NOTHING")
                .bind(&id).bind(project_id).bind(&period.start_date).bind(&period.end_date)
                .bind(f.adjusted_baseline_litres).bind(f.actual_litres).bind(f.non_routine_adjustment_litres)
                .bind(f.savings_litres).bind(i32::try_from(f.savings_bp).unwrap_or(0)).bind(f.uncertainty_68_litres).bind(f.uncertainty_90_litres)
                .bind(f.observations).bind(period.promised_savings_litres).bind(json(&notes)).bind(now)
                .execute(&mut *tx).await?.rows_affected();
            if inserted == 0 {
                return Err(Error::precondition(format!("the period starting {start_date} was submitted meanwhile")));
            }
            id
        });
        self.period(&id).await
    }

    /// Verifies, disputes or resolves a dispute on a period. Entering VERIFIED writes the
    /// PERIOD_VERIFIED milestone (with the running verified total) in the same transaction.
    pub async fn period_step(
        &self,
        key: &RequestKey,
        period_id: &str,
        expected_version: i64,
        who: &Principal,
        ask: &StepAsk,
    ) -> Result<Period> {
        // A note or reason citing documents (`sha256:<hex>`) cites the project's own.
        if !crate::evidence::cited(&ask.text).is_empty() {
            let field = if ask.step == PeriodStep::Dispute {
                "reason"
            } else {
                "note"
            };
            let period = self.period(period_id).await?;
            let project = self.project(&period.project_id).await?;
            // Who may not take the step hears that first (checked again in the write); others
            // are told nothing of the project's documents (the step says NOT_FOUND).
            if project.readable_by(who) {
                check_step(&project, &period, who, ask.step)?;
                self.check_cited(&project.id, field, &ask.text).await?;
            }
        }
        // What the verification report is drawn from, read before the write (the write
        // re-checks the period; the report shows the period as the write leaves it).
        let before = match ask.step {
            PeriodStep::Verify | PeriodStep::Resolve => match self.period(period_id).await {
                Ok(p) => Some((self.report_context(&p).await?, p.waivers)),
                Err(_) => None,
            },
            _ => None,
        };
        keyed_write!(&self.db, key, tx => {
                let row: Option<PeriodRow> = sqlx::query_as("SELECT * FROM periods WHERE id = $1").bind(period_id).fetch_optional(&mut *tx).await?;
                let mut period = row.map(Period::from).ok_or_else(|| Error::not_found("period", period_id))?;
                let project_row: Option<ProjectRow> = sqlx::query_as("SELECT * FROM projects WHERE id = $1").bind(&period.project_id).fetch_optional(&mut *tx).await?;
                let project = project_row.map(Project::from).ok_or_else(|| Error::not_found("project", &period.project_id))?;
                check_step(&project, &period, who, ask.step)?;
                if expected_version != 0 && period.version != expected_version {
                    return Err(Error::Aborted(format!(
                        "period {period_id} is at version {}, not {expected_version}; read it again and retry", period.version)));
                }
                let text = ask.text.trim();
                match ask.step {
                    PeriodStep::Verify => {
                        period.status = PeriodStatus::Verified;
                        period.notes.push(if text.is_empty() { format!("verified by {}", who.subject) } else { format!("verified by {}: {text}", who.subject) });
                    }
                    PeriodStep::Dispute => {
                        period.status = PeriodStatus::Disputed;
                        period.dispute_reason = text.to_string();
                        period.disputed_by = raiser(who);
                        period.notes.push(format!("disputed by {}: {text}", who.subject));
                    }
                    PeriodStep::Resolve => {
                        period.status = PeriodStatus::Verified;
                        let f = &mut period.figures;
                        let overflow = || Error::invalid("adjustment_litres", format!(
                            "{} L would take the period's savings beyond what can be stored", ask.adjustment_litres));
                        f.dispute_adjustment_litres = f.dispute_adjustment_litres.checked_add(ask.adjustment_litres).ok_or_else(overflow)?;
                        check_dispute_adjustment(f, ask.adjustment_litres)?;
                        f.savings_litres = f.savings_litres.checked_add(ask.adjustment_litres).ok_or_else(overflow)?;
                        f.savings_bp = Litres(f.savings_litres).share_of(Litres(f.adjusted_baseline_litres), "savings_bp")?.0;
                        period.notes.push(format!("dispute resolved by {} with {:+} L: {text}", who.subject, ask.adjustment_litres));
                    }
                    PeriodStep::Settle => return Err(Error::precondition("settle with SettlePeriod")),
                }
                let now = now_ms();
                period.version += 1;
                let f = &period.figures;
                // Only over the version read: a concurrent step in between makes this one stale.
                let written = sqlx::query("UPDATE periods SET status = $1, dispute_reason = $2, notes = $3, dispute_adjustment_litres = $4, savings_litres = $5, savings_bp = $6, updated_at_ms = $7, version = $8, disputed_by = $11 WHERE id = $9 AND version = $10")
                    .bind(period.status.code()).bind(&period.dispute_reason).bind(json(&period.notes))
                    .bind(f.dispute_adjustment_litres).bind(f.savings_litres).bind(i32::try_from(f.savings_bp).unwrap_or(0))
                    .bind(now).bind(period.version).bind(period_id).bind(period.version - 1).bind(&period.disputed_by).execute(&mut *tx).await?.rows_affected();
                if written == 0 {
                    return Err(Error::Aborted(format!("period {period_id} changed meanwhile; read it again and retry")));
                }
                if period.status == PeriodStatus::Verified && let Some((ctx, waivers)) = &before {
                    // The report the verifier signs, archived with its hashes.
                    period.waivers = waivers.clone();
                    let doc = crate::verification_store::archive(ctx, &period)?;
                    sqlx::query("INSERT INTO verification_reports (period_id, period_version, html, xlsx, html_sha256, xlsx_sha256, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                        .bind(period_id).bind(period.version).bind(&doc.html).bind(&doc.xlsx).bind(&doc.html_sha256).bind(&doc.xlsx_sha256).bind(now)
                        .execute(&mut *tx).await?;
                }
                if period.status == PeriodStatus::Verified {
                    let (verified, promised) = verified_totals!(tx, &period.project_id);
                    record_milestone!(self, tx, MilestoneFacts {
                        event_id: new_id(),
                        sequence: 0,
                        milestone: Milestone::PeriodVerified,
                        occurred_at_ms: now,
                        // The day of verification: the savings count from when they are verified.
                        effective_date: crate::domain::recorded_day(now),
                        reason: format!("period {} to {} verified", period.start_date, period.end_date),
                        project: project.clone(),
                        verified_savings_litres: verified,
                        promised_savings_litres: promised,
                        period_id: period.id.clone(),
                        period_savings_litres: period.figures.savings_litres,
                    });
                }
                period_id.to_string()
        });
        self.period(period_id).await
    }

    /// Settles a verified period by the contract model. Settling a settled period again
    /// returns its settlement and changes nothing.
    pub async fn settle_period(
        &self,
        key: &RequestKey,
        period_id: &str,
        expected_version: i64,
        who: &Principal,
    ) -> Result<(Settlement, Period)> {
        keyed_write!(&self.db, key, tx => {
            let row: Option<PeriodRow> = sqlx::query_as("SELECT * FROM periods WHERE id = $1").bind(period_id).fetch_optional(&mut *tx).await?;
            let period = row.map(Period::from).ok_or_else(|| Error::not_found("period", period_id))?;
            let project_row: Option<ProjectRow> = sqlx::query_as("SELECT * FROM projects WHERE id = $1").bind(&period.project_id).fetch_optional(&mut *tx).await?;
            let project = project_row.map(Project::from).ok_or_else(|| Error::not_found("project", &period.project_id))?;
            check_step(&project, &period, who, PeriodStep::Settle)?;
            if period.status == PeriodStatus::Verified {
                if expected_version != 0 && period.version != expected_version {
                    return Err(Error::Aborted(format!(
                        "period {period_id} is at version {}, not {expected_version}; read it again and retry", period.version)));
                }
                let start = date("start_date", &period.start_date)?;
                let end = date("end_date", &period.end_date)?;
                let months_into_operation = baseline_dates(&project)
                    .map(|(_, _, first)| {
                        let m = i64::from(start.year() - first.year()) * 12
                            + i64::from(start.month()) - i64::from(first.month());
                        m.max(0)
                    })
                    .unwrap_or(0);
                let c = &project.contract;
                // The contract year the period starts in, and what its earlier statements settled.
                let first = baseline_dates(&project).map(|b| b.2).unwrap_or(start);
                let year_start = contract_year_start(first, start);
                let year_end = year_start.checked_add_months(chrono::Months::new(12)).and_then(|d| d.pred_opt()).unwrap_or(end);
                let earlier: Vec<SettlementRow> = sqlx::query_as("SELECT * FROM settlements WHERE project_id = $1 AND period_start_date >= $2 AND period_start_date < $3 ORDER BY period_start_date")
                    .bind(&project.id).bind(year_start.to_string()).bind(&period.start_date).fetch_all(&mut *tx).await?;
                let by_days = c.terms.pro_rate_by_days;
                let mut ytd = crate::settle::YearToDate {
                    start_date: year_start.to_string(),
                    end_date: year_end.to_string(),
                    closes: end >= year_end,
                    ..Default::default()
                };
                for s in earlier.into_iter().map(Settlement::from) {
                    let (s_start, s_end) = (date("start_date", &s.period_start_date)?, date("end_date", &s.period_end_date)?);
                    let share = crate::settle::share_of_year(s_start, s_end, year_start, by_days);
                    let guaranteed = Litres(c.terms.guaranteed_savings_litres).pro_rata(share.parts, share.of, "guaranteed_savings_litres")?;
                    ytd.guaranteed_litres = Litres(ytd.guaranteed_litres).checked_add(guaranteed, "guaranteed_savings_litres")?.0;
                    ytd.savings_litres = Litres(ytd.savings_litres).checked_add(Litres(s.savings_litres), "savings_litres")?.0;
                    ytd.shortfall_fen = Fen(ytd.shortfall_fen).checked_add(Fen(s.shortfall_fen), "shortfall_fen")?.0;
                    if matches!(c.contract_model, ContractModel::GuaranteedSavings | ContractModel::GuaranteePlusSharing) {
                        ytd.above_guarantee_fen = Fen(ytd.above_guarantee_fen).checked_add(Fen(s.company_due_fen), "company_due_fen")?.0;
                    }
                }
                let figures = crate::settle::settle(&crate::settle::SettleInput {
                    model: c.contract_model,
                    terms: &c.terms,
                    price_fen_per_m3: c.price_fen_per_m3,
                    savings_litres: period.figures.savings_litres,
                    actual_litres: period.figures.actual_litres,
                    period_days: (end - start).num_days() + 1,
                    start_date: period.start_date.clone(),
                    end_date: period.end_date.clone(),
                    months_into_operation,
                    share_of_year: crate::settle::share_of_year(start, end, year_start, by_days),
                    year_to_date: ytd,
                })?;
                let now = now_ms();
                let mut notes = period.notes.clone();
                notes.push(format!("settled by {}", who.subject));
                // Claim the period first: of two concurrent settlements the second finds it
                // settled (PostgreSQL re-checks the row after the first commits) and writes
                // nothing.
                let claimed = sqlx::query("UPDATE periods SET status = 'settled', notes = $1, updated_at_ms = $2, version = version + 1 WHERE id = $3 AND status = 'verified'")
                    .bind(json(&notes)).bind(now).bind(period_id).execute(&mut *tx).await?.rows_affected() == 1;
                if claimed {
                    sqlx::query("INSERT INTO settlements (id, project_id, period_id, period_start_date, period_end_date, contract_model, savings_litres, price_fen_per_m3, savings_value_fen, \
                                 company_due_fen, user_due_fen, shortfall_fen, hosting_fee_fen, water_bill_fen, statement_lines, created_at_ms, updated_at_ms) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16)")
                        .bind(new_id()).bind(&project.id).bind(period_id).bind(&period.start_date).bind(&period.end_date).bind(c.contract_model.code())
                        .bind(period.figures.savings_litres).bind(c.price_fen_per_m3).bind(figures.savings_value_fen).bind(figures.company_due_fen)
                        .bind(figures.user_due_fen).bind(figures.shortfall_fen).bind(figures.hosting_fee_fen).bind(figures.water_bill_fen)
                        .bind(json(&figures.lines)).bind(now).execute(&mut *tx).await?;
                }
            }
            period_id.to_string()
        });
        let row: Option<SettlementRow> = with_db!(&self.db, pool => sqlx::query_as("SELECT * FROM settlements WHERE period_id = $1").bind(period_id).fetch_optional(pool).await?);
        let settlement = row.map(Settlement::from).ok_or_else(|| {
            Error::precondition(format!(
                "period {period_id} changed meanwhile and is no longer verified; read it again"
            ))
        })?;
        Ok((settlement, self.period(period_id).await?))
    }

    pub async fn settlements(
        &self,
        project_id: &str,
        page: &Page,
    ) -> Result<(Vec<Settlement>, String)> {
        let mut rows: Vec<Settlement> = with_db!(&self.db, pool => sqlx::query_as::<_, SettlementRow>(
            "SELECT * FROM settlements WHERE project_id = $1 AND ($2 = '' OR id > $2) ORDER BY id LIMIT $3")
            .bind(project_id).bind(page.after.clone().unwrap_or_default()).bind(page.fetch_limit()).fetch_all(pool).await?)
        .into_iter().map(Settlement::from).collect();
        let next = page.finish(&mut rows, |s| s.id.clone());
        Ok((rows, next))
    }
}

#[cfg(test)]
mod statement_tests {
    /// Statements settled before they were kept in both languages read as they were.
    #[test]
    fn a_statement_of_either_form_reads() {
        let old = super::stored_statement(r#"["Verified savings: 1.000 m³"]"#);
        assert_eq!(old[0].zh, "Verified savings: 1.000 m³");
        let both = super::stored_statement(r#"[{"zh":"核定节水量","en":"Verified savings"}]"#);
        assert_eq!(
            (both[0].zh.as_str(), both[0].en.as_str()),
            ("核定节水量", "Verified savings")
        );
    }
}
