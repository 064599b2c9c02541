//! Reporting's tables, on SQLite or PostgreSQL: one body of SQL for both engines (see
//! `cwsm_platform::db`). Plans are versioned rows; milestone facts are counted exactly once
//! (event id and (project, milestone) both deduplicated in the same transaction); achievements
//! keep every revision.

use std::collections::HashMap;

use cwsm_platform::db::{BeginWrite, Db, is_unique_violation};
use cwsm_platform::grpc::Page;
use cwsm_platform::idempotency::RequestKey;
use cwsm_platform::vocab::{IndicatorTag, Milestone, Sector};
use cwsm_platform::{Error, Result, keyed_write, new_id, now_ms, with_db};

use crate::achievement::{Achievement, Correction, NewAchievement, Revision, State, unit_key};
use crate::plan::{self, StoredPlan};
use crate::plan::{CountingRule, OnTerminated};
use crate::report::{CountedTotals, Fact, Recorded, Scope, counts_for, date_of_day, parse_date};
use cwsm_platform::jurisdiction::Jurisdiction;

pub static MIGRATIONS: cwsm_platform::db::Migrations = cwsm_platform::db::Migrations {
    sqlite: &sqlx::migrate!("migrations/sqlite"),
    postgres: &sqlx::migrate!("migrations/postgres"),
};

#[derive(Clone, Debug)]
pub struct Store {
    pub db: Db,
    /// Parsed plans by id: plans never change, so a plan read once is kept.
    plans: std::sync::Arc<std::sync::RwLock<HashMap<String, std::sync::Arc<StoredPlan>>>>,
    /// The platform's district (the `district_code` setting): where facts stored before they
    /// carried a jurisdiction are.
    district: Jurisdiction,
}

/// An event the consumer could not use.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct DeadLetter {
    pub event_id: String,
    pub topic: String,
    pub kind: String,
    pub reason: String,
    pub payload_size: i64,
    pub received_at_ms: i64,
}

/// A counted indicator of a stored plan version, with its rule and where and when its plan
/// counts.
#[derive(Clone, Debug)]
pub struct PlanRule {
    pub plan_id: String,
    pub indicator_code: String,
    pub rule: CountingRule,
    pub scope: Scope,
}

fn rules_of(plan: &StoredPlan) -> Vec<PlanRule> {
    plan.plan
        .all_indicators()
        .into_iter()
        .filter(|i| i.kind.counts())
        .filter_map(|i| {
            i.rule.as_ref().map(|rule| PlanRule {
                plan_id: plan.id.clone(),
                indicator_code: i.code.clone(),
                rule: rule.clone(),
                scope: Scope::of(&plan.plan),
            })
        })
        .collect()
}

/// A key for PostgreSQL advisory locks: counting a fact takes it shared, loading a plan (which
/// counts the facts already there for the new plan) exclusive, so neither misses the other.
const COUNT_LOCK: i64 = 0x636f_756e_7473;
/// Taken by every achievement write on PostgreSQL, so two records of the same unit cannot both
/// pass the check that it is not recorded yet ("achieve").
const ACHIEVEMENT_LOCK: i64 = 0x0061_6368_6965_7665;

/// The pattern of a "contains" filter, for `lower(column) LIKE $n ESCAPE '\'`: `%` and `_` in
/// the query are the characters themselves, not wildcards.
fn like(query: &str) -> String {
    cwsm_platform::input::like_contains(&query.to_lowercase())
}

// ---------------------------------------------------------------------------------------------
// Rows

#[derive(sqlx::FromRow)]
struct PlanRow {
    id: String,
    version: i64,
    document: String,
    sha256: String,
    loaded_by: String,
    loaded_at_ms: i64,
}

impl TryFrom<PlanRow> for StoredPlan {
    type Error = Error;
    fn try_from(r: PlanRow) -> Result<StoredPlan> {
        let parsed = plan::parse_stored(&r.document).map_err(|e| {
            Error::Internal(anyhow::anyhow!(
                "stored plan {} no longer parses: {e}",
                r.id
            ))
        })?;
        Ok(StoredPlan {
            id: r.id,
            version: r.version,
            plan: parsed,
            document: r.document,
            sha256: r.sha256,
            loaded_by: r.loaded_by,
            loaded_at_ms: r.loaded_at_ms,
        })
    }
}

const PLAN_COLUMNS: &str = "id, version, document, sha256, loaded_by, loaded_at_ms";

#[derive(sqlx::FromRow)]
struct FactRow {
    event_id: String,
    project_id: String,
    sequence: i64,
    milestone: String,
    occurred_at_ms: i64,
    sector: String,
    unit_type: String,
    town: String,
    indicator_tags: String,
    company_id: String,
    company_name: String,
    water_user_credit_code: String,
    water_user_name: String,
    project_title: String,
    counted_at_ms: i64,
    effective_day: i64,
    jurisdiction_code: String,
    investment_fen: i64,
    period_id: String,
    period_savings_litres: i64,
}

impl FactRow {
    /// The fact; one stored before facts had a jurisdiction is in `district`.
    fn into_fact(self, district: &Jurisdiction) -> Option<Fact> {
        let tags: Vec<String> = serde_json::from_str(&self.indicator_tags).unwrap_or_default();
        Some(Fact {
            milestone: Milestone::from_code(&self.milestone)?,
            event_id: self.event_id,
            project_id: self.project_id,
            sequence: self.sequence,
            occurred_at_ms: self.occurred_at_ms,
            counted_at_ms: self.counted_at_ms,
            effective_date: date_of_day(self.effective_day),
            jurisdiction: Jurisdiction::parse("jurisdiction_code", &self.jurisdiction_code)
                .unwrap_or_else(|_| district.clone()),
            investment_fen: self.investment_fen,
            period_id: self.period_id,
            period_savings_litres: self.period_savings_litres,
            sector: Sector::from_code(&self.sector),
            unit_type: self.unit_type,
            town: self.town,
            tags: tags
                .iter()
                .filter_map(|t| IndicatorTag::from_code(t))
                .collect(),
            project_title: self.project_title,
            company_id: self.company_id,
            company_name: self.company_name,
            water_user_credit_code: self.water_user_credit_code,
            water_user_name: self.water_user_name,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AchievementRow {
    id: String,
    achievement_id: String,
    revision: i64,
    plan_code: String,
    indicator_code: String,
    unit_name: String,
    achieved_date: String,
    evidence: String,
    value: f64,
    note: String,
    department: String,
    town: String,
    sector: String,
    retracted: i64,
    reason: String,
    recorded_by: String,
    recorded_at_ms: i64,
    state: String,
}

impl AchievementRow {
    fn revision(&self) -> Revision {
        Revision {
            id: self.id.clone(),
            revision: self.revision,
            value: self.value,
            achieved_date: self.achieved_date.clone(),
            evidence: self.evidence.clone(),
            note: self.note.clone(),
            retracted: self.retracted != 0,
            reason: self.reason.clone(),
            recorded_by: self.recorded_by.clone(),
            recorded_at_ms: self.recorded_at_ms,
            // An unknown state (a newer version's) does not count.
            state: State::from_code(&self.state).unwrap_or(State::Pending),
        }
    }
}

/// Groups revision rows (ordered by achievement, then revision) into achievements.
fn achievements_of(rows: Vec<AchievementRow>) -> Vec<Achievement> {
    let mut out: Vec<Achievement> = Vec::new();
    for row in rows {
        let revision = row.revision();
        match out.last_mut() {
            Some(a) if a.id == row.achievement_id => a.revisions.push(revision),
            _ => out.push(Achievement {
                id: row.achievement_id,
                plan_code: row.plan_code,
                indicator_code: row.indicator_code,
                unit_name: row.unit_name,
                department: row.department,
                town: row.town,
                sector: Sector::from_code(&row.sector),
                revisions: vec![revision],
            }),
        }
    }
    out
}

const ACHIEVEMENT_COLUMNS: &str = "id, achievement_id, revision, plan_code, indicator_code, unit_name, achieved_date, evidence, value, note, department, town, sector, retracted, reason, recorded_by, recorded_at_ms, state";

/// ALREADY_EXISTS when another current achievement of the same plan code and indicator, neither
/// retracted nor rejected, is about the same unit (trimmed, case-insensitive), naming its id.
macro_rules! refuse_duplicate_unit {
    ($tx:expr, $plan_code:expr, $indicator_code:expr, $unit_name:expr, $except:expr) => {{
        let others: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT achievement_id, unit_name, state FROM achievements WHERE plan_code = $1 AND indicator_code = $2 \
             AND superseded_by = '' AND retracted = 0 AND achievement_id <> $3")
            .bind($plan_code).bind($indicator_code).bind($except)
            .fetch_all(&mut *$tx).await?;
        let key = unit_key($unit_name);
        if let Some((id, name, _)) = others
            .iter()
            .find(|(_, name, state)| unit_key(name) == key && state.as_str() != State::Rejected.code())
        {
            return Err(Error::AlreadyExists(format!(
                "{name:?} is already recorded for {} of plan {} as achievement {id}; correct that one instead",
                $indicator_code, $plan_code
            )));
        }
    }};
}

/// Filters of ListPlans; empty or zero means "any".
#[derive(Clone, Debug, Default)]
pub struct PlanFilter {
    pub code: String,
    pub district: String,
    pub year: i32,
    pub all_versions: bool,
    pub query: String,
}

/// Filters of ListAchievements; empty means "any".
#[derive(Clone, Debug, Default)]
pub struct AchievementFilter {
    pub plan_code: String,
    pub indicator_code: String,
    pub department: String,
    pub town: String,
    pub sector: Option<Sector>,
    pub include_retracted: bool,
    pub query: String,
    /// Only achievements whose current revision is in this state.
    pub state: Option<State>,
}

/// Adds `delta` to a count on `day` for (town, sector).
macro_rules! change_count {
    ($tx:expr, $plan_id:expr, $code:expr, $day:expr, $town:expr, $sector:expr, $delta:expr, $at_ms:expr) => {
        sqlx::query(
            "INSERT INTO count_changes (plan_id, indicator_code, day, town, sector, delta, last_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (plan_id, indicator_code, day, town, sector) DO UPDATE SET delta = count_changes.delta + excluded.delta, \
             last_ms = CASE WHEN excluded.last_ms > count_changes.last_ms THEN excluded.last_ms ELSE count_changes.last_ms END",
        )
        .bind($plan_id)
        .bind($code)
        .bind($day)
        .bind($town)
        .bind($sector)
        .bind($delta)
        .bind($at_ms)
        .execute(&mut *$tx)
        .await?;
        sqlx::query(
            "INSERT INTO count_cells (plan_id, indicator_code, town, sector, n, last_ms) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (plan_id, indicator_code, town, sector) DO UPDATE SET n = count_cells.n + excluded.n, \
             last_ms = CASE WHEN excluded.last_ms > count_cells.last_ms THEN excluded.last_ms ELSE count_cells.last_ms END",
        )
        .bind($plan_id)
        .bind($code)
        .bind($town)
        .bind($sector)
        .bind($delta)
        .bind($at_ms)
        .execute(&mut *$tx)
        .await?;
        sqlx::query(
            "INSERT INTO count_days (plan_id, indicator_code, day, delta) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (plan_id, indicator_code, day) DO UPDATE SET delta = count_days.delta + excluded.delta",
        )
        .bind($plan_id)
        .bind($code)
        .bind($day)
        .bind($delta)
        .execute(&mut *$tx)
        .await?
    };
}

/// Raises the generation of plan `$plan_id` (see migration 0006): a report kept of it is stale.
macro_rules! bump_generation {
    ($tx:expr, $plan_id:expr) => {
        sqlx::query(
            "INSERT INTO report_generations (plan_id, generation) VALUES ($1, 1) \
             ON CONFLICT (plan_id) DO UPDATE SET generation = report_generations.generation + 1",
        )
        .bind($plan_id)
        .execute(&mut *$tx)
        .await?
    };
}

/// Raises the generation of every version of plan code `$code` (`None`: of every plan).
macro_rules! bump_generations {
    ($tx:expr, $code:expr) => {{
        let code: Option<&str> = $code;
        sqlx::query(
            "INSERT INTO report_generations (plan_id, generation) SELECT id, 1 FROM plans WHERE $1 = '' OR code = $1 \
             ON CONFLICT (plan_id) DO UPDATE SET generation = report_generations.generation + 1",
        )
        .bind(code.unwrap_or(""))
        .execute(&mut *$tx)
        .await?
    }};
}

/// Raises the generation of every plan (with counted rules `$rules`) whose jurisdiction holds a
/// new fact's site, whether or not a rule counts it: a hand-over changes the completion counts
/// of projects counted long before.
macro_rules! bump_plans_of_place {
    ($tx:expr, $rules:expr, $fact:expr) => {{
        let fact: &Fact = $fact;
        let mut touched: Vec<&str> = $rules
            .iter()
            .filter(|r: &&PlanRule| r.scope.jurisdiction.contains(&fact.jurisdiction))
            .map(|r| r.plan_id.as_str())
            .collect();
        touched.sort_unstable();
        touched.dedup();
        for id in touched {
            bump_generation!($tx, id);
        }
    }};
}

/// Makes a counted project's part of its indicator's completion count `$wanted` (see
/// [`completion_span`]) where its row recorded `$had`: adds the difference to
/// `completion_days` and records the new span on the row. Kept for rules that count projects
/// only (the report shows completions for those: [`keeps_completions`]).
macro_rules! settle_completion {
    ($tx:expr, $plan_id:expr, $code:expr, $unit:expr, $had:expr, $wanted:expr) => {{
        let (had, wanted): (Span, Span) = ($had, $wanted);
        if had != wanted {
            for (day, delta) in span_changes(had, -1).into_iter().chain(span_changes(wanted, 1)) {
                completion_change!($tx, $plan_id, $code, day, delta);
            }
            let (from, until) = span_columns(wanted);
            sqlx::query("UPDATE counted_projects SET completed_from = $4, completed_until = $5 WHERE plan_id = $1 AND indicator_code = $2 AND project_id = $3")
                .bind($plan_id)
                .bind($code)
                .bind($unit)
                .bind(from)
                .bind(until)
                .execute(&mut *$tx)
                .await?;
        }
    }};
}

/// The effective day of project `$project_id`'s hand-over, if it has one.
macro_rules! handed_over_day {
    ($tx:expr, $project_id:expr) => {{
        let day: Option<i64> = sqlx::query_scalar(
            "SELECT effective_day FROM milestone_facts WHERE project_id = $1 AND milestone = $2",
        )
        .bind($project_id)
        .bind(Milestone::HandedOver.code())
        .fetch_optional(&mut *$tx)
        .await?;
        day
    }};
}

/// Adds `$delta` to an indicator's completion count from day `$day` on.
macro_rules! completion_change {
    ($tx:expr, $plan_id:expr, $code:expr, $day:expr, $delta:expr) => {
        sqlx::query(
            "INSERT INTO completion_days (plan_id, indicator_code, day, delta) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (plan_id, indicator_code, day) DO UPDATE SET delta = completion_days.delta + excluded.delta",
        )
        .bind($plan_id)
        .bind($code)
        .bind($day)
        .bind($delta)
        .execute(&mut *$tx)
        .await?
    };
}

/// Takes a counted project off a rule's count (it was terminated, effective on day `$at_day`,
/// recorded at `$at_ms`): on the day of the termination, or the day it counted if that is
/// later. Nothing when it does not count.
macro_rules! take_off {
    ($tx:expr, $r:expr, $project_id:expr, $at_day:expr, $at_ms:expr) => {{
        let row: Option<(i64, String, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT counted_day, town, sector, amount, completed_from, completed_until FROM counted_projects WHERE plan_id = $1 AND indicator_code = $2 AND project_id = $3 AND removed_day = -1",
        )
        .bind(&$r.plan_id)
        .bind(&$r.indicator_code)
        .bind($project_id)
        .fetch_optional(&mut *$tx)
        .await?;
        if let Some((counted_day, town, sector, amount, from, until)) = row {
            let day = counted_day.max($at_day);
            sqlx::query("UPDATE counted_projects SET removed_day = $4 WHERE plan_id = $1 AND indicator_code = $2 AND project_id = $3")
                .bind(&$r.plan_id)
                .bind(&$r.indicator_code)
                .bind($project_id)
                .bind(day)
                .execute(&mut *$tx)
                .await?;
            change_count!($tx, &$r.plan_id, &$r.indicator_code, day, &town, &sector, -amount, $at_ms);
            if keeps_completions($r.rule.measure) {
                let handed_over = handed_over_day!($tx, $project_id);
                settle_completion!($tx, &$r.plan_id, &$r.indicator_code, $project_id,
                    stored_span(from, until), completion_span(counted_day, day, handed_over));
            }
        }
    }};
}

/// Counts a newly stored fact toward every rule it matches inside its plan's jurisdiction
/// and window (once per unit of the rule's measure: a project, a verified period, a site; the
/// unit counts from its earliest fact by effective date), and takes a terminated project off
/// the rules that remove them.
macro_rules! count_fact {
    ($tx:expr, $rules:expr, $fact:expr) => {{
        let fact: &Fact = $fact;
        // The project's hand-over day, once looked up.
        let mut handed_over: Option<Option<i64>> = None;
        for r in $rules.iter() {
            let r: &PlanRule = r;
            if counts_for(&r.rule, &r.scope, fact) {
                let day = fact.effective_day();
                let sector = fact.sector.map(|s| s.code()).unwrap_or("");
                let (unit, amount) = fact.unit_of(r.rule.measure);
                let existing: Option<(i64, String, i64, String, String, i64, i64, i64)> = sqlx::query_as(
                    "SELECT counted_day, event_id, removed_day, town, sector, amount, completed_from, completed_until FROM counted_projects WHERE plan_id = $1 AND indicator_code = $2 AND project_id = $3",
                )
                .bind(&r.plan_id)
                .bind(&r.indicator_code)
                .bind(&unit)
                .fetch_optional(&mut *$tx)
                .await?;
                let fresh = match existing {
                    None => true,
                    // An earlier fact of a unit already counted (a site's earlier project, a
                    // history entered late): the unit counts from it instead.
                    Some((old_day, old_event, removed, old_town, old_sector, old_amount, from, until))
                        if (day, fact.event_id.as_str()) < (old_day, old_event.as_str()) =>
                    {
                        change_count!($tx, &r.plan_id, &r.indicator_code, old_day, &old_town, &old_sector, -old_amount, fact.occurred_at_ms);
                        if removed != -1 {
                            change_count!($tx, &r.plan_id, &r.indicator_code, removed, &old_town, &old_sector, old_amount, fact.occurred_at_ms);
                        }
                        for (day, delta) in span_changes(stored_span(from, until), -1) {
                            completion_change!($tx, &r.plan_id, &r.indicator_code, day, delta);
                        }
                        sqlx::query("DELETE FROM counted_projects WHERE plan_id = $1 AND indicator_code = $2 AND project_id = $3")
                            .bind(&r.plan_id)
                            .bind(&r.indicator_code)
                            .bind(&unit)
                            .execute(&mut *$tx)
                            .await?;
                        true
                    }
                    Some(_) => false,
                };
                if fresh {
                    // Completed from its hand-over on (looked up once for the fact).
                    let completion = if keeps_completions(r.rule.measure) {
                        let handed_over = match handed_over {
                            Some(known) => known,
                            None => *handed_over.insert(handed_over_day!($tx, &fact.project_id)),
                        };
                        completion_span(day, -1, handed_over)
                    } else {
                        None
                    };
                    let (from, until) = span_columns(completion);
                    sqlx::query(
                        "INSERT INTO counted_projects (plan_id, indicator_code, project_id, event_id, counted_day, removed_day, town, sector, amount, completed_from, completed_until) \
                         VALUES ($1, $2, $3, $4, $5, -1, $6, $7, $8, $9, $10)",
                    )
                    .bind(&r.plan_id)
                    .bind(&r.indicator_code)
                    .bind(&unit)
                    .bind(&fact.event_id)
                    .bind(day)
                    .bind(&fact.town)
                    .bind(sector)
                    .bind(amount)
                    .bind(from)
                    .bind(until)
                    .execute(&mut *$tx)
                    .await?;
                    change_count!($tx, &r.plan_id, &r.indicator_code, day, &fact.town, sector, amount, fact.occurred_at_ms);
                    for (day, delta) in span_changes(completion, 1) {
                        completion_change!($tx, &r.plan_id, &r.indicator_code, day, delta);
                    }
                    if r.rule.on_terminated == OnTerminated::Remove {
                        let terminated: Option<(i64, i64)> = sqlx::query_as(
                            "SELECT effective_day, occurred_at_ms FROM milestone_facts WHERE project_id = $1 AND milestone = $2",
                        )
                        .bind(&fact.project_id)
                        .bind(Milestone::Terminated.code())
                        .fetch_optional(&mut *$tx)
                        .await?;
                        if let Some((at_day, at_ms)) = terminated {
                            take_off!($tx, r, &unit, at_day, at_ms);
                        }
                    }
                }
            }
            if fact.milestone == Milestone::Terminated && r.rule.on_terminated == OnTerminated::Remove {
                // Rules that remove count projects (or their investment): the unit is the project.
                take_off!($tx, r, &fact.project_id, fact.effective_day(), fact.occurred_at_ms);
            }
        }
        if fact.milestone == Milestone::HandedOver {
            // The project is completed from its hand-over on where the given rules count it
            // (a row counted after the hand-over was stored has it already: no change).
            let counted: Vec<(String, String, i64, i64, i64, i64)> = sqlx::query_as(
                "SELECT plan_id, indicator_code, counted_day, removed_day, completed_from, completed_until FROM counted_projects WHERE project_id = $1",
            )
            .bind(&fact.project_id)
            .fetch_all(&mut *$tx)
            .await?;
            for (plan_id, code, counted_day, removed, from, until) in counted {
                let ours = $rules.iter().any(|r: &PlanRule| {
                    r.plan_id == plan_id && r.indicator_code == code && keeps_completions(r.rule.measure)
                });
                if ours {
                    settle_completion!($tx, &plan_id, &code, &fact.project_id,
                        stored_span(from, until), completion_span(counted_day, removed, Some(fact.effective_day())));
                }
            }
        }
    }};
}

/// Counts every stored fact toward the rules of one plan (a plan just loaded, or one whose
/// kept counts are made again).
macro_rules! count_stored_facts {
    ($self:expr, $tx:expr, $rules:expr) => {{
        let rules: &[PlanRule] = $rules;
        if !rules.is_empty() {
            let rows: Vec<FactRow> =
                sqlx::query_as("SELECT * FROM milestone_facts ORDER BY effective_day, event_id")
                    .fetch_all(&mut *$tx)
                    .await?;
            for fact in rows
                .into_iter()
                .filter_map(|r| r.into_fact(&$self.district))
            {
                count_fact!($tx, rules, &fact);
            }
        }
    }};
}

/// Inserts a fact (the event id and the project's milestone both unique); true when new.
macro_rules! insert_fact {
    ($tx:expr, $fact:expr, $now:expr) => {{
        let fact: &Fact = $fact;
        let tags: Vec<&str> = fact.tags.iter().map(|t| t.code()).collect();
        let tags = serde_json::to_string(&tags).unwrap_or_else(|_| "[]".into());
        sqlx::query("INSERT INTO milestone_facts (event_id, project_id, sequence, milestone, occurred_at_ms, sector, unit_type, town, indicator_tags, company_id, company_name, water_user_credit_code, water_user_name, project_title, counted_at_ms, effective_day, jurisdiction_code, investment_fen, period_id, period_savings_litres) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) ON CONFLICT DO NOTHING")
            .bind(&fact.event_id).bind(&fact.project_id).bind(fact.sequence).bind(fact.milestone.code())
            .bind(fact.occurred_at_ms).bind(fact.sector.map(|s| s.code()).unwrap_or(""))
            .bind(&fact.unit_type).bind(&fact.town).bind(&tags).bind(&fact.company_id)
            .bind(&fact.company_name).bind(&fact.water_user_credit_code).bind(&fact.water_user_name)
            .bind(&fact.project_title).bind($now)
            .bind(fact.effective_day()).bind(fact.jurisdiction.as_str()).bind(fact.investment_fen)
            .bind(&fact.period_id).bind(fact.period_savings_litres)
            .execute(&mut *$tx).await?.rows_affected() == 1
    }};
}

/// The counted rules of every stored plan version, read in the transaction.
macro_rules! all_rules {
    ($self:expr, $tx:expr) => {{
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM plans")
            .fetch_all(&mut *$tx)
            .await?;
        let mut rules = Vec::new();
        for id in ids {
            let cached = $self.cached_plan(&id);
            let plan = match cached {
                Some(p) => p,
                None => {
                    let sql = format!("SELECT {PLAN_COLUMNS} FROM plans WHERE id = $1");
                    let row: PlanRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(&id)
                        .fetch_one(&mut *$tx)
                        .await?;
                    let plan = std::sync::Arc::new(StoredPlan::try_from(row)?);
                    $self.cache_plan(plan.clone());
                    plan
                }
            };
            rules.extend(rules_of(&plan));
        }
        rules
    }};
}

impl Store {
    pub async fn connect(url: &str) -> anyhow::Result<Store> {
        Self::connect_in(url, Jurisdiction::default_district()).await
    }

    /// Connects for a platform serving `district`, and makes again the kept counts a
    /// migration asked for.
    pub async fn connect_in(url: &str, district: Jurisdiction) -> anyhow::Result<Store> {
        let store = Store {
            db: Db::connect(url, "reporting", &MIGRATIONS).await?,
            plans: Default::default(),
            district,
        };
        store.recount_pending().await?;
        Ok(store)
    }

    /// Counts the stored facts again for every plan listed in `pending_recounts` (filled by a
    /// migration that changed how facts count), each plan in one transaction that takes it off
    /// the list, so of two replicas starting together one does it.
    async fn recount_pending(&self) -> Result<()> {
        let ids: Vec<String> = with_db!(&self.db, pool => sqlx::query_scalar("SELECT plan_id FROM pending_recounts")
            .fetch_all(pool).await?);
        let postgres = self.is_postgres();
        for id in ids {
            let plan = self.plan_by_id(&id).await?;
            let rules = rules_of(&plan);
            with_db!(&self.db, pool => {
                let mut tx = pool.begin_write().await?;
                if postgres {
                    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(COUNT_LOCK).execute(&mut *tx).await?;
                }
                let mine = sqlx::query("DELETE FROM pending_recounts WHERE plan_id = $1")
                    .bind(&id).execute(&mut *tx).await?.rows_affected() == 1;
                if mine {
                    count_stored_facts!(self, tx, &rules);
                    bump_generation!(tx, &id);
                }
                tx.commit().await?;
            });
            tracing::info!(plan = %id, "counted the facts again");
        }
        Ok(())
    }

    fn cached_plan(&self, id: &str) -> Option<std::sync::Arc<StoredPlan>> {
        self.plans.read().ok().and_then(|m| m.get(id).cloned())
    }

    fn cache_plan(&self, plan: std::sync::Arc<StoredPlan>) {
        if let Ok(mut m) = self.plans.write() {
            m.insert(plan.id.clone(), plan);
        }
    }

    fn is_postgres(&self) -> bool {
        matches!(self.db, Db::Postgres(_))
    }

    // -- plans --------------------------------------------------------------------------------

    /// Stores `document` (already parsed as `parsed`) as the next version of its code, once per
    /// idempotency key. Returns the plan's id.
    pub async fn insert_plan(
        &self,
        key: &RequestKey,
        parsed: &plan::Plan,
        document: &str,
        sha256: &str,
        loaded_by: &str,
    ) -> Result<String> {
        let postgres = self.is_postgres();
        Ok(keyed_write!(&self.db, key, tx => {
            if postgres {
                sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(COUNT_LOCK).execute(&mut *tx).await?;
            }
            let latest: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM plans WHERE code = $1")
                .bind(&parsed.code).fetch_one(&mut *tx).await?;
            let id = new_id();
            let inserted = sqlx::query("INSERT INTO plans (id, code, version, title, district, year, document, sha256, loaded_by, loaded_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
                .bind(&id).bind(&parsed.code).bind(latest.unwrap_or(0) + 1).bind(&parsed.title)
                .bind(&parsed.district).bind(parsed.year).bind(document).bind(sha256)
                .bind(loaded_by).bind(now_ms())
                .execute(&mut *tx).await;
            match inserted {
                Err(e) if is_unique_violation(&e) => {
                    return Err(Error::Aborted(format!(
                        "another version of plan {} was loaded at the same time; retry",
                        parsed.code
                    )));
                }
                other => {
                    other?;
                }
            }
            // The new version counts the facts already there.
            let stored = StoredPlan {
                id: id.clone(),
                version: latest.unwrap_or(0) + 1,
                plan: parsed.clone(),
                document: document.to_string(),
                sha256: sha256.to_string(),
                loaded_by: loaded_by.to_string(),
                loaded_at_ms: 0,
            };
            let rules = rules_of(&stored);
            count_stored_facts!(self, tx, &rules);
            bump_generation!(tx, &id);
            id
        }))
    }

    pub async fn plan_by_id(&self, id: &str) -> Result<StoredPlan> {
        Ok(StoredPlan::clone(&*self.shared_plan(id).await?))
    }

    /// The plan `id` as kept in memory (read once: plans never change), without a copy.
    pub async fn shared_plan(&self, id: &str) -> Result<std::sync::Arc<StoredPlan>> {
        if let Some(plan) = self.cached_plan(id) {
            return Ok(plan);
        }
        let sql = format!("SELECT {PLAN_COLUMNS} FROM plans WHERE id = $1");
        let row: Option<PlanRow> = with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?);
        let plan: StoredPlan = row
            .ok_or_else(|| Error::not_found("plan", id))?
            .try_into()?;
        let plan = std::sync::Arc::new(plan);
        self.cache_plan(plan.clone());
        Ok(plan)
    }

    /// The plan `code` at `version`; the latest when `version` is 0.
    pub async fn plan_by_code(&self, code: &str, version: i64) -> Result<StoredPlan> {
        let sql = "SELECT id FROM plans WHERE code = $1 AND ($2 = 0 OR version = $2) ORDER BY version DESC LIMIT 1";
        let id: Option<String> = with_db!(&self.db, pool => sqlx::query_scalar(sql).bind(code).bind(version).fetch_optional(pool).await?);
        let what = if version == 0 {
            code.to_string()
        } else {
            format!("{code} version {version}")
        };
        self.plan_by_id(&id.ok_or_else(|| Error::not_found("plan", what))?)
            .await
    }

    pub async fn plan_exists(&self, code: &str) -> Result<bool> {
        let n: i64 = with_db!(&self.db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM plans WHERE code = $1").bind(code).fetch_one(pool).await?);
        Ok(n > 0)
    }

    pub async fn list_plans(
        &self,
        f: &PlanFilter,
        page: &Page,
    ) -> Result<(Vec<StoredPlan>, String)> {
        let sql = format!(
            "SELECT {PLAN_COLUMNS} FROM plans p WHERE ($1 = '' OR code = $1) AND ($2 = '' OR lower(district) LIKE $2 ESCAPE '\\') \
             AND ($3 = 0 OR year = $3) AND ($4 = 1 OR version = (SELECT MAX(q.version) FROM plans q WHERE q.code = p.code)) \
             AND ($5 = '' OR lower(code) LIKE $5 ESCAPE '\\' OR lower(title) LIKE $5 ESCAPE '\\') AND ($6 = '' OR id > $6) ORDER BY id LIMIT $7"
        );
        let rows: Vec<PlanRow> = with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&f.code).bind(like(&f.district)).bind(f.year).bind(i32::from(f.all_versions))
            .bind(like(&f.query)).bind(page.after.clone().unwrap_or_default()).bind(page.fetch_limit())
            .fetch_all(pool).await?);
        let mut plans = rows
            .into_iter()
            .map(StoredPlan::try_from)
            .collect::<Result<Vec<_>>>()?;
        let next = page.finish(&mut plans, |p| p.id.clone());
        Ok((plans, next))
    }

    // -- milestone facts ----------------------------------------------------------------------

    /// Applies one milestone event exactly once: records the event id and, when it is new,
    /// the fact (kept once per project and milestone), in one transaction. Returns whether a
    /// fact was added.
    pub async fn apply_fact(&self, fact: &Fact) -> Result<bool> {
        let postgres = self.is_postgres();
        with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            if postgres {
                sqlx::query("SELECT pg_advisory_xact_lock_shared($1)").bind(COUNT_LOCK).execute(&mut *tx).await?;
            }
            let now = now_ms();
            let fresh = sqlx::query("INSERT INTO processed_events (event_id, processed_at_ms) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING")
                .bind(&fact.event_id).bind(now).execute(&mut *tx).await?.rows_affected() == 1;
            let mut added = false;
            if fresh {
                added = insert_fact!(tx, fact, now);
                if added {
                    let rules = all_rules!(self, tx);
                    count_fact!(tx, rules, fact);
                    bump_plans_of_place!(tx, rules, fact);
                }
            }
            tx.commit().await?;
            Ok(added)
        })
    }

    /// The kept counts of plan `plan_id`'s counted indicators up to day `day` (inclusive), by
    /// indicator code.
    pub async fn count_totals(
        &self,
        plan_id: &str,
        day: i64,
    ) -> Result<HashMap<String, CountedTotals>> {
        // One snapshot for the three reads: a fact committed between them would give a report
        // whose total and history disagree.
        type Changes = Vec<(String, i64, String)>;
        type Cells = Vec<(String, String, String, i64, i64)>;
        type Completed = Vec<(String, i64)>;
        let (changes, cells, completed): (Changes, Cells, Completed) = with_db!(&self.db, pool => {
            use cwsm_platform::db::BeginSnapshot;
            let mut tx = pool.begin_snapshot().await?;
            // An indicator's changes by day come as one text ("day:delta,…"), not a row each:
            // sqlx hands SQLite's rows over one by one between threads, and a year of days
            // took most of a changed report's time (perf: a fifth of it in thread wake-ups).
            let changes: Changes = sqlx::query_as(
                "SELECT indicator_code, MAX(day), string_agg(CAST(day AS TEXT) || ':' || CAST(delta AS TEXT), ',' ORDER BY day) \
                 FROM count_days WHERE plan_id = $1 GROUP BY indicator_code")
                .bind(plan_id).fetch_all(&mut *tx).await?;
            let last_day = changes.iter().map(|c| c.1).max();
            // As of a date after the last change: the running totals, a few rows. Before it:
            // the changes by day, town and sector up to the date.
            let cells: Cells = if last_day.is_none_or(|last| last <= day) {
                sqlx::query_as(
                    "SELECT indicator_code, town, sector, n, last_ms FROM count_cells WHERE plan_id = $1")
                    .bind(plan_id).fetch_all(&mut *tx).await?
            } else {
                sqlx::query_as(
                    "SELECT indicator_code, town, sector, CAST(SUM(delta) AS BIGINT), CAST(MAX(last_ms) AS BIGINT) FROM count_changes \
                     WHERE plan_id = $1 AND day <= $2 GROUP BY indicator_code, town, sector")
                    .bind(plan_id).bind(day).fetch_all(&mut *tx).await?
            };
            // Of the projects counted as of the day, those handed over (completed) by then: the
            // kept changes of the completion counts up to the day (migration 0008).
            let completed: Vec<(String, i64)> = sqlx::query_as(
                "SELECT indicator_code, CAST(SUM(delta) AS BIGINT) FROM completion_days \
                 WHERE plan_id = $1 AND day <= $2 GROUP BY indicator_code")
                .bind(plan_id).bind(day).fetch_all(&mut *tx).await?;
            tx.commit().await?;
            (changes, cells, completed)
        });
        let mut out: HashMap<String, CountedTotals> = HashMap::new();
        for (code, town, sector, n, last) in cells {
            out.entry(code)
                .or_default()
                .cells
                .push((town, sector, n, last));
        }
        for (code, _, days) in changes {
            let entry = out.entry(code).or_default();
            for (d, delta) in day_changes(&days)? {
                if d <= day {
                    entry.changes.push((d, delta));
                }
            }
        }
        for (code, n) in completed {
            out.entry(code).or_default().completed = n;
        }
        Ok(out)
    }

    /// The facts of the given milestones (and terminations, which rules may subtract, and
    /// hand-overs, which make the completion counts).
    pub async fn facts(&self, milestones: &[Milestone]) -> Result<Vec<Fact>> {
        let mut wanted: Vec<Milestone> = milestones.to_vec();
        wanted.push(Milestone::Terminated);
        wanted.push(Milestone::HandedOver);
        wanted.sort();
        wanted.dedup();
        let mut facts = Vec::new();
        for m in wanted {
            let rows: Vec<FactRow> = with_db!(&self.db, pool => sqlx::query_as("SELECT * FROM milestone_facts WHERE milestone = $1")
                .bind(m.code()).fetch_all(pool).await?);
            facts.extend(rows.into_iter().filter_map(|r| r.into_fact(&self.district)));
        }
        Ok(facts)
    }

    /// Inserts facts in one transaction without the processed-event record (for loading a
    /// benchmark's data); a fact already there is left as it is.
    pub async fn insert_facts(&self, facts: &[Fact]) -> Result<()> {
        let postgres = self.is_postgres();
        with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            if postgres {
                sqlx::query("SELECT pg_advisory_xact_lock_shared($1)").bind(COUNT_LOCK).execute(&mut *tx).await?;
            }
            let rules = all_rules!(self, tx);
            for fact in facts {
                if insert_fact!(tx, fact, fact.counted_at_ms) {
                    count_fact!(tx, rules, fact);
                    bump_plans_of_place!(tx, rules, fact);
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Sets an unusable event aside, once per event id.
    pub async fn dead_letter(&self, d: &DeadLetter) -> Result<()> {
        with_db!(&self.db, pool => sqlx::query("INSERT INTO dead_letters (event_id, topic, kind, reason, payload_size, received_at_ms) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING")
            .bind(&d.event_id).bind(&d.topic).bind(&d.kind).bind(&d.reason).bind(d.payload_size).bind(d.received_at_ms)
            .execute(pool).await.map(|_| ())?);
        Ok(())
    }

    /// Dead letters, oldest first.
    pub async fn dead_letters(&self, page: &Page) -> Result<(Vec<DeadLetter>, String)> {
        let after = page.after.clone().unwrap_or_default();
        let (after_ms, after_id) = after
            .split_once('|')
            .map(|(ms, id)| (ms.parse::<i64>().unwrap_or(i64::MIN), id.to_string()))
            .unwrap_or((i64::MIN, String::new()));
        let mut rows: Vec<DeadLetter> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT event_id, topic, kind, reason, payload_size, received_at_ms FROM dead_letters \
             WHERE received_at_ms > $1 OR (received_at_ms = $1 AND event_id > $2) ORDER BY received_at_ms, event_id LIMIT $3")
            .bind(after_ms).bind(after_id).bind(page.fetch_limit()).fetch_all(pool).await?);
        let next = page.finish(&mut rows, |d| {
            format!("{}|{}", d.received_at_ms, d.event_id)
        });
        Ok((rows, next))
    }

    pub async fn dead_letter_count(&self) -> Result<i64> {
        Ok(
            with_db!(&self.db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM dead_letters").fetch_one(pool).await?),
        )
    }

    /// Deletes every fact, processed-event record and kept count. Returns the facts deleted.
    pub async fn forget_facts(&self) -> Result<u64> {
        with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query("DELETE FROM milestone_facts").execute(&mut *tx).await?.rows_affected();
            sqlx::query("DELETE FROM processed_events").execute(&mut *tx).await?;
            sqlx::query("DELETE FROM counted_projects").execute(&mut *tx).await?;
            sqlx::query("DELETE FROM count_changes").execute(&mut *tx).await?;
            sqlx::query("DELETE FROM count_cells").execute(&mut *tx).await?;
            sqlx::query("DELETE FROM count_days").execute(&mut *tx).await?;
            sqlx::query("DELETE FROM completion_days").execute(&mut *tx).await?;
            sqlx::query("DELETE FROM pending_recounts").execute(&mut *tx).await?;
            bump_generations!(tx, None);
            tx.commit().await?;
            Ok(n)
        })
    }

    // -- achievements -------------------------------------------------------------------------

    /// Records an achievement (revision 1), once per idempotency key. Returns its id.
    /// ALREADY_EXISTS when the unit is recorded for the indicator already (not retracted, not
    /// rejected). `state` is what the recorder's department makes it.
    pub async fn record_achievement(
        &self,
        key: &RequestKey,
        a: &NewAchievement,
        recorded_by: &str,
        state: State,
    ) -> Result<String> {
        let postgres = self.is_postgres();
        Ok(keyed_write!(&self.db, key, tx => {
            if postgres {
                sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(ACHIEVEMENT_LOCK).execute(&mut *tx).await?;
            }
            refuse_duplicate_unit!(tx, &a.plan_code, &a.indicator_code, &a.unit_name, "");
            let id = new_id();
            sqlx::query("INSERT INTO achievements (id, achievement_id, revision, plan_code, indicator_code, unit_name, achieved_date, evidence, value, note, department, town, sector, retracted, reason, recorded_by, recorded_at_ms, state) \
                VALUES ($1, $1, 1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, '', $12, $13, $14)")
                .bind(&id).bind(&a.plan_code).bind(&a.indicator_code).bind(a.unit_name.trim()).bind(&a.achieved_date)
                .bind(&a.evidence).bind(a.value).bind(&a.note).bind(&a.department).bind(&a.town)
                .bind(a.sector.map(|s| s.code()).unwrap_or("")).bind(recorded_by).bind(now_ms()).bind(state.code())
                .execute(&mut *tx).await?;
            bump_generations!(tx, Some(a.plan_code.as_str()));
            id
        }))
    }

    pub async fn achievement(&self, id: &str) -> Result<Achievement> {
        let sql = format!(
            "SELECT {ACHIEVEMENT_COLUMNS} FROM achievements WHERE achievement_id = $1 ORDER BY revision"
        );
        let rows: Vec<AchievementRow> = with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_all(pool).await?);
        achievements_of(rows)
            .pop()
            .ok_or_else(|| Error::not_found("achievement", id))
    }

    /// Adds a revision to achievement `id` and supersedes the current one, once per
    /// idempotency key. `check` validates the correction against the current revision.
    pub async fn correct_achievement(
        &self,
        key: &RequestKey,
        id: &str,
        expected_version: i64,
        mut correction: Correction,
        recorded_by: &str,
        state: State,
    ) -> Result<()> {
        let sql = format!(
            "SELECT {ACHIEVEMENT_COLUMNS} FROM achievements WHERE achievement_id = $1 AND superseded_by = ''"
        );
        let postgres = self.is_postgres();
        keyed_write!(&self.db, key, tx => {
            if postgres {
                sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(ACHIEVEMENT_LOCK).execute(&mut *tx).await?;
            }
            let current: Option<AchievementRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(id).fetch_optional(&mut *tx).await?;
            let current = current.ok_or_else(|| Error::not_found("achievement", id))?;
            if expected_version != 0 && expected_version != current.revision {
                return Err(Error::Aborted(format!(
                    "achievement {id} is at version {}, not {expected_version}; read it again and retry",
                    current.revision
                )));
            }
            correction.validate(&current.revision())?;
            // A rejected achievement corrected counts (or waits) again: its unit must be free.
            if !correction.retract && current.state == State::Rejected.code() {
                refuse_duplicate_unit!(tx, &current.plan_code, &current.indicator_code, &current.unit_name, id);
            }
            let new_row = new_id();
            sqlx::query("INSERT INTO achievements (id, achievement_id, revision, plan_code, indicator_code, unit_name, achieved_date, evidence, value, note, department, town, sector, retracted, reason, recorded_by, recorded_at_ms, state) \
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)")
                .bind(&new_row).bind(id).bind(current.revision + 1).bind(&current.plan_code).bind(&current.indicator_code)
                .bind(&current.unit_name).bind(&correction.achieved_date).bind(&correction.evidence).bind(correction.value)
                .bind(&correction.note).bind(&current.department).bind(&current.town).bind(&current.sector)
                .bind(i64::from(correction.retract)).bind(&correction.reason).bind(recorded_by).bind(now_ms()).bind(state.code())
                .execute(&mut *tx).await?;
            let superseded = sqlx::query("UPDATE achievements SET superseded_by = $1 WHERE id = $2 AND superseded_by = ''")
                .bind(&new_row).bind(&current.id).execute(&mut *tx).await?.rows_affected();
            if superseded != 1 {
                return Err(Error::Aborted(format!("achievement {id} changed meanwhile; retry")));
            }
            bump_generations!(tx, Some(current.plan_code.as_str()));
            id.to_string()
        });
        Ok(())
    }

    /// A lead department's decision on a pending achievement: a revision with the same values
    /// in `state` (approved or rejected) and `reason`, once per idempotency key.
    /// FAILED_PRECONDITION unless the achievement is pending.
    pub async fn decide_achievement(
        &self,
        key: &RequestKey,
        id: &str,
        expected_version: i64,
        state: State,
        reason: &str,
        decided_by: &str,
    ) -> Result<()> {
        let sql = format!(
            "SELECT {ACHIEVEMENT_COLUMNS} FROM achievements WHERE achievement_id = $1 AND superseded_by = ''"
        );
        keyed_write!(&self.db, key, tx => {
            let current: Option<AchievementRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(id).fetch_optional(&mut *tx).await?;
            let current = current.ok_or_else(|| Error::not_found("achievement", id))?;
            if expected_version != 0 && expected_version != current.revision {
                return Err(Error::Aborted(format!(
                    "achievement {id} is at version {}, not {expected_version}; read it again and retry",
                    current.revision
                )));
            }
            if current.retracted != 0 {
                return Err(Error::precondition(format!(
                    "achievement {id} is retracted; nothing to decide (record a new one)"
                )));
            }
            if current.state != State::Pending.code() {
                return Err(Error::precondition(format!(
                    "achievement {id} is {}, not pending: only pending achievements are approved or rejected; correct it instead (CorrectAchievement)",
                    current.state
                )));
            }
            let new_row = new_id();
            sqlx::query("INSERT INTO achievements (id, achievement_id, revision, plan_code, indicator_code, unit_name, achieved_date, evidence, value, note, department, town, sector, retracted, reason, recorded_by, recorded_at_ms, state) \
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 0, $14, $15, $16, $17)")
                .bind(&new_row).bind(id).bind(current.revision + 1).bind(&current.plan_code).bind(&current.indicator_code)
                .bind(&current.unit_name).bind(&current.achieved_date).bind(&current.evidence).bind(current.value)
                .bind(&current.note).bind(&current.department).bind(&current.town).bind(&current.sector)
                .bind(reason).bind(decided_by).bind(now_ms()).bind(state.code())
                .execute(&mut *tx).await?;
            let superseded = sqlx::query("UPDATE achievements SET superseded_by = $1 WHERE id = $2 AND superseded_by = ''")
                .bind(&new_row).bind(&current.id).execute(&mut *tx).await?.rows_affected();
            if superseded != 1 {
                return Err(Error::Aborted(format!("achievement {id} changed meanwhile; retry")));
            }
            bump_generations!(tx, Some(current.plan_code.as_str()));
            id.to_string()
        });
        Ok(())
    }

    pub async fn list_achievements(
        &self,
        f: &AchievementFilter,
        page: &Page,
    ) -> Result<(Vec<Achievement>, String)> {
        let sql = "SELECT achievement_id FROM achievements WHERE superseded_by = '' AND ($1 = '' OR plan_code = $1) \
             AND ($2 = '' OR indicator_code = $2) AND ($3 = '' OR department = $3) AND ($4 = '' OR town = $4) \
             AND ($5 = '' OR sector = $5) AND ($6 = 1 OR retracted = 0) AND ($7 = '' OR lower(unit_name) LIKE $7 ESCAPE '\\' OR lower(note) LIKE $7 ESCAPE '\\') \
             AND ($8 = '' OR achievement_id > $8) AND ($10 = '' OR state = $10) ORDER BY achievement_id LIMIT $9";
        let mut ids: Vec<String> = with_db!(&self.db, pool => sqlx::query_scalar(sql)
            .bind(&f.plan_code).bind(&f.indicator_code).bind(&f.department).bind(&f.town)
            .bind(f.sector.map(|s| s.code()).unwrap_or("")).bind(i32::from(f.include_retracted))
            .bind(like(&f.query)).bind(page.after.clone().unwrap_or_default()).bind(page.fetch_limit())
            .bind(f.state.map(State::code).unwrap_or(""))
            .fetch_all(pool).await?);
        let next = page.finish(&mut ids, Clone::clone);
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.achievement(&id).await?);
        }
        Ok((out, next))
    }

    /// Current, not retracted, approved achievements of a plan code, by indicator code (pending
    /// and rejected ones do not count).
    pub async fn recorded(&self, plan_code: &str) -> Result<HashMap<String, Vec<Recorded>>> {
        let sql = format!(
            "SELECT {ACHIEVEMENT_COLUMNS} FROM achievements WHERE plan_code = $1 AND superseded_by = '' AND retracted = 0 AND state = 'approved'"
        );
        let rows: Vec<AchievementRow> = with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(plan_code).fetch_all(pool).await?);
        let mut out: HashMap<String, Vec<Recorded>> = HashMap::new();
        for r in rows {
            let Some(achieved_date) = parse_date(&r.achieved_date) else {
                continue;
            };
            out.entry(r.indicator_code.clone())
                .or_default()
                .push(Recorded {
                    value: r.value,
                    achieved_date,
                    recorded_at_ms: r.recorded_at_ms,
                    department: r.department,
                    town: r.town,
                    sector: Sector::from_code(&r.sector),
                });
        }
        Ok(out)
    }

    // -- kept reports -------------------------------------------------------------------------

    /// The generations of the given plans (0 for a plan never changed; see migration 0006), in
    /// the order given.
    pub async fn generations(&self, plan_ids: &[&str]) -> Result<Vec<i64>> {
        let rows: Vec<(String, i64)> = match plan_ids {
            [] => Vec::new(),
            [one] => with_db!(&self.db, pool => sqlx::query_as(
                "SELECT plan_id, generation FROM report_generations WHERE plan_id = $1")
                .bind(*one).fetch_all(pool).await?),
            // A roll-up's hundred plans: one read of the few hundred rows there are.
            _ => with_db!(&self.db, pool => sqlx::query_as(
                "SELECT plan_id, generation FROM report_generations")
                .fetch_all(pool).await?),
        };
        let by_id: HashMap<String, i64> = rows.into_iter().collect();
        Ok(plan_ids
            .iter()
            .map(|id| by_id.get(*id).copied().unwrap_or(0))
            .collect())
    }

    /// Raises the generations of `plan_ids` as a change to them would, without changing them:
    /// the benchmark's way to have districts change between its calls.
    pub async fn mark_changed(&self, plan_ids: &[&str]) -> Result<()> {
        with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            for id in plan_ids {
                bump_generation!(tx, *id);
            }
            tx.commit().await?;
            Ok(())
        })
    }

    // -- roll-up ------------------------------------------------------------------------------

    /// The latest version of every plan code (plans are kept parsed by id, so this reads ids).
    /// The latest version of every plan code, by code, as kept in memory (a province's
    /// roll-up reads a hundred: copies of them were most of its time).
    pub async fn latest_plans(&self) -> Result<Vec<std::sync::Arc<StoredPlan>>> {
        let ids: Vec<String> = with_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT id FROM plans p WHERE version = (SELECT MAX(q.version) FROM plans q WHERE q.code = p.code) ORDER BY code")
            .fetch_all(pool).await?);
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.shared_plan(&id).await?);
        }
        Ok(out)
    }
}

/// A counted project's completion: from a day, until a day (`None`: no end); `None`: never.
type Span = Option<(i64, Option<i64>)>;

/// Whether a rule summing `measure` keeps completion counts: the report shows how many of the
/// counted projects are handed over for rules that count projects.
fn keeps_completions(measure: crate::plan::Measure) -> bool {
    measure == crate::plan::Measure::Projects
}

/// When a counted unit counts as completed, from the row and its project's hand-over: from
/// the later of the day it counts and the hand-over's effective day, until the day it was taken
/// off (`None`: still counted). Nothing when it is not handed over, or taken off by then.
fn completion_span(
    counted: i64,
    removed: i64,
    handed_over: Option<i64>,
) -> Option<(i64, Option<i64>)> {
    let from = counted.max(handed_over?);
    match removed {
        -1 => Some((from, None)),
        until if until > from => Some((from, Some(until))),
        _ => None,
    }
}

/// A span as a row records it: (`completed_from`, `completed_until`), -1 for none and no end.
fn span_columns(span: Span) -> (i64, i64) {
    match span {
        None => (-1, -1),
        Some((from, until)) => (from, until.unwrap_or(-1)),
    }
}

/// The span a row records (the inverse of [`span_columns`]).
fn stored_span(from: i64, until: i64) -> Span {
    (from != -1).then_some((from, (until != -1).then_some(until)))
}

/// The changes by day a span adds (`sign` 1) or takes back (`sign` -1).
fn span_changes(span: Span, sign: i64) -> Vec<(i64, i64)> {
    match span {
        None => Vec::new(),
        Some((from, None)) => vec![(from, sign)],
        Some((from, Some(until))) => vec![(from, sign), (until, -sign)],
    }
}

/// The (day, change) pairs of one indicator's kept changes as `count_totals` reads them,
/// "day:delta,day:delta" in day order.
fn day_changes(text: &str) -> Result<Vec<(i64, i64)>> {
    let unreadable = || Error::Internal(anyhow::anyhow!("kept count changes unreadable: {text:?}"));
    text.split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (day, delta) = pair.split_once(':').ok_or_else(unreadable)?;
            Ok((
                day.parse().map_err(|_| unreadable())?,
                delta.parse().map_err(|_| unreadable())?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idempotency key of `scope`'s caller for request id `id` (the id stands for the request).
    fn key(scope: &str, id: &str) -> RequestKey {
        let who = cwsm_platform::auth::Principal {
            subject: scope.to_string(),
            role: cwsm_platform::auth::Role::Admin,
            org: None,
            scope: cwsm_platform::auth::Scope::Platform,
        };
        RequestKey::from_bytes(&who, "test", "", id, id.as_bytes()).expect("key")
    }

    pub(crate) async fn temp_store() -> (Store, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("cwsm-reporting-{}.db", new_id()));
        let store = Store::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("store");
        (store, path)
    }

    fn cleanup(path: &std::path::Path) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[test]
    fn a_counted_project_is_completed_from_its_hand_over_until_taken_off() {
        // Counted on day 10, handed over on 30: completed from 30 on.
        assert_eq!(completion_span(10, -1, Some(30)), Some((30, None)));
        // Handed over before it counted (a history entered late): from the day it counts.
        assert_eq!(completion_span(10, -1, Some(5)), Some((10, None)));
        // Taken off on day 40: completed on days 30..40 only.
        assert_eq!(completion_span(10, 40, Some(30)), Some((30, Some(40))));
        // Taken off before its hand-over, or not handed over: never completed.
        assert_eq!(completion_span(10, 30, Some(30)), None);
        assert_eq!(completion_span(10, -1, None), None);
        // As the row records it, and the changes it makes.
        for span in [None, Some((30, None)), Some((30, Some(40)))] {
            let (from, until) = span_columns(span);
            assert_eq!(stored_span(from, until), span);
        }
        assert_eq!(span_changes(Some((30, Some(40))), 1), [(30, 1), (40, -1)]);
        assert_eq!(span_changes(Some((30, None)), -1), [(30, -1)]);
    }

    #[test]
    fn kept_changes_are_read_back_from_their_text() {
        assert_eq!(
            day_changes("18262:3,18263:-1,18300:12").expect("read"),
            [(18262, 3), (18263, -1), (18300, 12)]
        );
        assert_eq!(day_changes("").expect("read"), []);
        assert!(day_changes("18262:3,x").is_err());
        assert!(day_changes("18262-3").is_err());
    }

    #[tokio::test]
    async fn plans_are_versioned_and_loads_idempotent() {
        let (store, path) = temp_store().await;
        let parsed = plan::parse(plan::DEFAULT_PLAN_TOML).expect("plan");
        let a = store
            .insert_plan(
                &key("load_plan:alice", "r1"),
                &parsed,
                plan::DEFAULT_PLAN_TOML,
                "x",
                "alice",
            )
            .await
            .expect("first");
        let again = store
            .insert_plan(
                &key("load_plan:alice", "r1"),
                &parsed,
                plan::DEFAULT_PLAN_TOML,
                "x",
                "alice",
            )
            .await
            .expect("replay");
        assert_eq!(a, again);
        let b = store
            .insert_plan(
                &key("load_plan:alice", "r2"),
                &parsed,
                plan::DEFAULT_PLAN_TOML,
                "x",
                "alice",
            )
            .await
            .expect("second");
        assert_eq!(store.plan_by_id(&a).await.expect("v1").version, 1);
        let latest = store.plan_by_code("xinbei-2020", 0).await.expect("latest");
        assert_eq!((latest.id.as_str(), latest.version), (b.as_str(), 2));
        let page = Page::from_request(10, "").expect("page");
        let (latest_only, _) = store
            .list_plans(&PlanFilter::default(), &page)
            .await
            .expect("list");
        assert_eq!(latest_only.len(), 1);
        let all = PlanFilter {
            all_versions: true,
            ..PlanFilter::default()
        };
        assert_eq!(store.list_plans(&all, &page).await.expect("all").0.len(), 2);
        store.db.close().await;
        cleanup(&path);
    }

    #[tokio::test]
    async fn corrections_keep_history() {
        let (store, path) = temp_store().await;
        let new = NewAchievement {
            plan_code: "xinbei-2020".into(),
            indicator_code: "A2-GOV-AGENCIES".into(),
            unit_name: "区教育局".into(),
            achieved_date: "2020-06-01".into(),
            evidence: "doc".into(),
            value: 1.0,
            note: String::new(),
            department: "edu".into(),
            town: String::new(),
            sector: None,
        };
        let id = store
            .record_achievement(&key("s", "r1"), &new, "alice", State::Approved)
            .await
            .expect("record");
        assert_eq!(
            store
                .record_achievement(&key("s", "r1"), &new, "alice", State::Approved)
                .await
                .expect("replay"),
            id
        );
        let fix = Correction {
            value: 2.0,
            achieved_date: "2020-07-01".into(),
            evidence: "doc 2".into(),
            note: String::new(),
            retract: false,
            reason: "typo".into(),
        };
        let stale = store
            .correct_achievement(&key("s", "c0"), &id, 5, fix.clone(), "bob", State::Approved)
            .await;
        assert!(matches!(stale, Err(Error::Aborted(_))));
        store
            .correct_achievement(&key("s", "c1"), &id, 1, fix.clone(), "bob", State::Approved)
            .await
            .expect("correct");
        store
            .correct_achievement(&key("s", "c1"), &id, 1, fix, "bob", State::Approved)
            .await
            .expect("replayed");
        let a = store.achievement(&id).await.expect("get");
        assert_eq!(a.revisions.len(), 2);
        assert_eq!(a.version(), 2);
        assert_eq!(a.current().value, 2.0);
        let recorded = store.recorded("xinbei-2020").await.expect("recorded");
        assert_eq!(recorded["A2-GOV-AGENCIES"].len(), 1);
        assert_eq!(recorded["A2-GOV-AGENCIES"][0].value, 2.0);
        let page = Page::from_request(10, "").expect("page");
        let (list, next) = store
            .list_achievements(&AchievementFilter::default(), &page)
            .await
            .expect("list");
        assert_eq!((list.len(), next.as_str()), (1, ""));
        store.db.close().await;
        cleanup(&path);
    }

    /// The same SQL on PostgreSQL, when `CWSM_TEST_POSTGRES_URL` names a server (skipped
    /// otherwise): a fresh database, every store operation, dropped after.
    #[tokio::test]
    async fn the_same_sql_runs_on_postgres() {
        let Ok(admin_url) = std::env::var("CWSM_TEST_POSTGRES_URL") else {
            eprintln!("skipped: CWSM_TEST_POSTGRES_URL not set");
            return;
        };
        let admin = sqlx::PgPool::connect(&admin_url).await.expect("postgres");
        let name = format!("reporting_test_{}", new_id().replace('-', "_"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("create database");
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(&admin_url);
        let store = Store::connect(&format!("{base}/{name}"))
            .await
            .expect("connect");

        let parsed = plan::parse(plan::DEFAULT_PLAN_TOML).expect("plan");
        let id = store
            .insert_plan(
                &key("s", "r1"),
                &parsed,
                plan::DEFAULT_PLAN_TOML,
                "x",
                "alice",
            )
            .await
            .expect("insert");
        assert_eq!(
            store
                .insert_plan(
                    &key("s", "r1"),
                    &parsed,
                    plan::DEFAULT_PLAN_TOML,
                    "x",
                    "alice"
                )
                .await
                .expect("replay"),
            id
        );
        store
            .insert_plan(
                &key("s", "r2"),
                &parsed,
                plan::DEFAULT_PLAN_TOML,
                "x",
                "alice",
            )
            .await
            .expect("v2");
        assert_eq!(
            store
                .plan_by_code("xinbei-2020", 0)
                .await
                .expect("latest")
                .version,
            2
        );
        assert_eq!(
            store.plan_by_code("xinbei-2020", 1).await.expect("v1").id,
            id
        );
        assert!(store.plan_exists("xinbei-2020").await.expect("exists"));
        let page = Page::from_request(10, "").expect("page");
        let filter = PlanFilter {
            district: "xinbei".into(),
            year: 2020,
            query: "water".into(),
            ..PlanFilter::default()
        };
        assert_eq!(
            store
                .list_plans(&filter, &page)
                .await
                .expect("list")
                .0
                .len(),
            1
        );
        let all = PlanFilter {
            all_versions: true,
            ..PlanFilter::default()
        };
        assert_eq!(store.list_plans(&all, &page).await.expect("all").0.len(), 2);

        let fact = Fact {
            event_id: "e1".into(),
            project_id: "p1".into(),
            sequence: 1,
            milestone: Milestone::HandedOver,
            occurred_at_ms: 1,
            counted_at_ms: 1,
            effective_date: crate::report::cst_date(1),
            jurisdiction: cwsm_platform::jurisdiction::Jurisdiction::default_district(),
            investment_fen: 0,
            period_id: String::new(),
            period_savings_litres: 0,
            sector: Some(Sector::School),
            unit_type: String::new(),
            town: "Xuejia".into(),
            tags: vec![IndicatorTag::ContractProject],
            project_title: String::new(),
            company_id: String::new(),
            company_name: String::new(),
            water_user_credit_code: String::new(),
            water_user_name: String::new(),
        };
        assert!(store.apply_fact(&fact).await.expect("first"));
        assert!(!store.apply_fact(&fact).await.expect("again"));
        let other_id = Fact {
            event_id: "e2".into(),
            ..fact.clone()
        };
        assert!(!store.apply_fact(&other_id).await.expect("re-emitted"));
        let facts = store.facts(&[Milestone::HandedOver]).await.expect("facts");
        assert_eq!(facts.len(), 1);
        assert_eq!(facts[0].tags, vec![IndicatorTag::ContractProject]);

        let new = NewAchievement {
            plan_code: "xinbei-2020".into(),
            indicator_code: "A2-GOV-AGENCIES".into(),
            unit_name: "区教育局".into(),
            achieved_date: "2020-06-01".into(),
            evidence: "doc".into(),
            value: 1.5,
            note: "n".into(),
            department: "edu".into(),
            town: "Xuejia".into(),
            sector: Some(Sector::GovernmentAgency),
        };
        let a = store
            .record_achievement(&key("s", "a1"), &new, "alice", State::Approved)
            .await
            .expect("record");
        let fix = Correction {
            value: 2.0,
            achieved_date: "2020-07-01".into(),
            evidence: "doc 2".into(),
            note: String::new(),
            retract: true,
            reason: "wrong".into(),
        };
        store
            .correct_achievement(&key("s", "c1"), &a, 1, fix, "bob", State::Approved)
            .await
            .expect("correct");
        let filter = AchievementFilter {
            plan_code: "xinbei-2020".into(),
            sector: Some(Sector::GovernmentAgency),
            query: "教育".into(),
            ..AchievementFilter::default()
        };
        assert!(
            store
                .list_achievements(&filter, &page)
                .await
                .expect("list")
                .0
                .is_empty()
        );
        let with_retracted = AchievementFilter {
            include_retracted: true,
            ..filter
        };
        let (list, _) = store
            .list_achievements(&with_retracted, &page)
            .await
            .expect("list");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].revisions.len(), 2);
        assert!(list[0].current().retracted);
        assert!(
            store
                .recorded("xinbei-2020")
                .await
                .expect("recorded")
                .is_empty()
        );

        store.db.close().await;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("drop database");
    }
}
