//! An indicator's actual value, progress and status as of a date, computed from facts: pure
//! functions, no storage. A counted indicator's actual is what its rule's measure sums (distinct
//! projects, verified m³, investment, distinct sites) over the milestone facts that match its
//! rule, lie inside the plan's jurisdiction and window, and took effect on or before the date,
//! so a plan loaded later counts the facts already there. The store keeps the same numbers as
//! they happen (`store`), and a test holds the two equal.
//!
//! Days are China Standard Time (UTC+8), and the date that counts is the milestone's effective
//! date (the contract's signing date, the acceptance report's date), not when it was entered.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::NaiveDate;
use cwsm_platform::jurisdiction::Jurisdiction;
use cwsm_platform::vocab::{IndicatorTag, Milestone, Sector};

use crate::plan::{
    Aggregation, Comparator, CountingRule, Indicator, Kind, Measure, OnTerminated, Plan,
    StoredPlan, Window,
};

/// UTC+8, the offset of China Standard Time, in milliseconds.
const CST_OFFSET_MS: i64 = 8 * 3600 * 1000;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// The last millisecond of `date` in China Standard Time.
pub fn end_of_day_ms(date: NaiveDate) -> i64 {
    let midnight_utc = date
        .and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc().timestamp_millis())
        .unwrap_or(0);
    midnight_utc - CST_OFFSET_MS + DAY_MS - 1
}

/// The China Standard Time date of an instant.
pub fn cst_date(ms: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(ms + CST_OFFSET_MS)
        .map(|d| d.date_naive())
        .unwrap_or(NaiveDate::MIN)
}

/// The China Standard Time day of an instant, as days since 1970-01-01.
pub fn cst_day(ms: i64) -> i64 {
    (ms + CST_OFFSET_MS).div_euclid(DAY_MS)
}

/// A date as days since 1970-01-01.
pub fn day_number(date: NaiveDate) -> i64 {
    (date - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or(NaiveDate::MIN)).num_days()
}

/// The date of a day number.
pub fn date_of_day(day: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|epoch| epoch.checked_add_signed(chrono::Duration::days(day)))
        .unwrap_or(NaiveDate::MIN)
}

/// Parses a "YYYY-MM-DD" date.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()
}

/// A project milestone as reporting keeps it: its own copy of the facts it counts.
#[derive(Clone, Debug, PartialEq)]
pub struct Fact {
    pub event_id: String,
    pub project_id: String,
    pub sequence: i64,
    pub milestone: Milestone,
    /// When the projects service recorded it.
    pub occurred_at_ms: i64,
    /// When reporting stored it.
    pub counted_at_ms: i64,
    /// The date the milestone took effect (the contract's signing date, the acceptance
    /// report's date), China Standard Time: the date that counts. The CST date of
    /// `occurred_at_ms` for events published before effective dates.
    pub effective_date: NaiveDate,
    /// The water user's site: its town's or district's gazetteer code (the platform's district
    /// for events published before the gazetteer).
    pub jurisdiction: Jurisdiction,
    /// The investment the company carries, fen.
    pub investment_fen: i64,
    /// The verified period, for PERIOD_VERIFIED; empty otherwise.
    pub period_id: String,
    /// Savings of that period, litres, for PERIOD_VERIFIED.
    pub period_savings_litres: i64,
    pub sector: Option<Sector>,
    pub unit_type: String,
    pub town: String,
    pub tags: Vec<IndicatorTag>,
    pub project_title: String,
    pub company_id: String,
    pub company_name: String,
    pub water_user_credit_code: String,
    pub water_user_name: String,
}

impl Fact {
    /// What this fact adds to a rule summing `measure`: the unit it is counted once for (a
    /// project, a verified period, a site) and its amount (1, litres, fen).
    pub fn unit_of(&self, measure: Measure) -> (String, i64) {
        match measure {
            Measure::Projects => (self.project_id.clone(), 1),
            Measure::InvestmentYuan => (self.project_id.clone(), self.investment_fen),
            Measure::VerifiedM3 => (
                format!("{}|{}", self.project_id, self.period_id),
                self.period_savings_litres,
            ),
            Measure::Sites if self.water_user_credit_code.is_empty() => {
                (format!("project:{}", self.project_id), 1)
            }
            Measure::Sites => (
                format!(
                    "site:{}@{}",
                    self.water_user_credit_code,
                    self.jurisdiction.as_str()
                ),
                1,
            ),
        }
    }

    /// The effective date as a day number (days since 1970-01-01).
    pub fn effective_day(&self) -> i64 {
        day_number(self.effective_date)
    }
}

/// Where and when a plan counts: a fact counts only when the plan's jurisdiction contains its
/// site and its effective date lies in the plan's window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    pub jurisdiction: Jurisdiction,
    pub window: Window,
}

impl Scope {
    pub fn of(plan: &Plan) -> Scope {
        Scope {
            jurisdiction: plan.jurisdiction.clone(),
            window: plan.window,
        }
    }

    pub fn admits(&self, fact: &Fact) -> bool {
        self.jurisdiction.contains(&fact.jurisdiction) && self.window.contains(fact.effective_date)
    }
}

/// Whether `fact`'s project passes the rule's filters (the milestone is checked apart).
pub fn matches(rule: &CountingRule, fact: &Fact) -> bool {
    (rule.sectors.is_empty() || fact.sector.is_some_and(|s| rule.sectors.contains(&s)))
        && (rule.towns.is_empty() || rule.towns.iter().any(|t| t == &fact.town))
        && (rule.unit_types.is_empty()
            || rule
                .unit_types
                .iter()
                .any(|u| u.eq_ignore_ascii_case(&fact.unit_type)))
        && rule.tags.iter().all(|t| fact.tags.contains(t))
}

/// Whether `fact` counts toward `rule` of a plan of `scope` at all (on some date).
pub fn counts_for(rule: &CountingRule, scope: &Scope, fact: &Fact) -> bool {
    fact.milestone == rule.milestone && matches(rule, fact) && scope.admits(fact)
}

/// The facts that make a counted indicator's count as of `as_of`: one per unit of the rule's
/// measure (a project, a verified period, a site: its earliest matching fact by effective
/// date), inside the plan's jurisdiction and window, effective on or before `as_of`, without
/// terminated projects when the rule removes them; in the order they were counted.
pub fn counted<'a>(
    rule: &CountingRule,
    scope: &Scope,
    facts: &'a [Fact],
    as_of: NaiveDate,
) -> Vec<&'a Fact> {
    let terminated: HashSet<&str> = if rule.on_terminated == OnTerminated::Remove {
        facts
            .iter()
            .filter(|f| f.milestone == Milestone::Terminated && f.effective_date <= as_of)
            .map(|f| f.project_id.as_str())
            .collect()
    } else {
        HashSet::new()
    };
    let mut candidates: Vec<&Fact> = facts
        .iter()
        .filter(|f| {
            f.effective_date <= as_of
                && counts_for(rule, scope, f)
                && !terminated.contains(f.project_id.as_str())
        })
        .collect();
    candidates
        .sort_by(|a, b| (a.effective_date, &a.event_id).cmp(&(b.effective_date, &b.event_id)));
    let mut seen = HashSet::new();
    candidates.retain(|f| seen.insert(f.unit_of(rule.measure).0));
    candidates.sort_by(|a, b| (a.counted_at_ms, &a.event_id).cmp(&(b.counted_at_ms, &b.event_id)));
    candidates
}

/// The exact sum of the counted facts' amounts under `measure` (litres, fen or units).
pub fn amount(measure: Measure, counted: &[&Fact]) -> i128 {
    counted
        .iter()
        .map(|f| i128::from(f.unit_of(measure).1))
        .sum()
}

/// How many of the counted facts' projects have been handed over (completed, 移交) on or
/// before `as_of`, whenever that was.
pub fn completed(counted: &[&Fact], facts: &[Fact], as_of: NaiveDate) -> i64 {
    let handed_over: HashSet<&str> = facts
        .iter()
        .filter(|f| f.milestone == Milestone::HandedOver && f.effective_date <= as_of)
        .map(|f| f.project_id.as_str())
        .collect();
    let projects: HashSet<&str> = counted
        .iter()
        .map(|f| f.project_id.as_str())
        .filter(|p| handed_over.contains(p))
        .collect();
    i64::try_from(projects.len()).unwrap_or(i64::MAX)
}

/// The current revision of an achievement toward a recorded indicator (retracted ones are not
/// given here).
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    pub value: f64,
    pub achieved_date: NaiveDate,
    pub recorded_at_ms: i64,
    pub department: String,
    pub town: String,
    pub sector: Option<Sector>,
}

/// The achievements that make a recorded indicator's actual as of `as_of`: all up to the date
/// for SUM, the latest by date (then by record time) for LATEST.
pub fn recorded_included(
    aggregation: Aggregation,
    items: &[Recorded],
    as_of: NaiveDate,
) -> Vec<&Recorded> {
    let mut included: Vec<&Recorded> = items.iter().filter(|r| r.achieved_date <= as_of).collect();
    if aggregation == Aggregation::Latest {
        included.sort_by_key(|r| (r.achieved_date, r.recorded_at_ms));
        included = included.pop().into_iter().collect();
    }
    included
}

/// A recorded indicator's actual value; `None` when nothing is recorded up to the date.
pub fn recorded_actual(included: &[&Recorded]) -> Option<f64> {
    if included.is_empty() {
        None
    } else {
        Some(included.iter().map(|r| r.value).sum())
    }
}

/// Progress status of an indicator as of a date (defined in ARCHITECTURE.md, "Statuses").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Met, and met on its deadline (or met with the deadline still ahead).
    Achieved,
    /// Met now, but first met after its deadline ([`Evaluation::days_late`] days after).
    AchievedLate,
    OnTrack,
    AtRisk,
    /// The deadline passed and it is not met.
    Missed,
    NotStarted,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Achieved,
        Status::AchievedLate,
        Status::OnTrack,
        Status::AtRisk,
        Status::Missed,
        Status::NotStarted,
    ];

    /// Lower-case code, e.g. "on_track" (the proto enum value name without its prefix).
    pub fn code(self) -> &'static str {
        match self {
            Status::Achieved => "achieved",
            Status::AchievedLate => "achieved_late",
            Status::OnTrack => "on_track",
            Status::AtRisk => "at_risk",
            Status::Missed => "missed",
            Status::NotStarted => "not_started",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            Status::Achieved => "Achieved",
            Status::AchievedLate => "Achieved late",
            Status::OnTrack => "On track",
            Status::AtRisk => "At risk",
            Status::Missed => "Missed",
            Status::NotStarted => "Not started",
        }
    }

    pub fn label_zh(self) -> &'static str {
        match self {
            Status::Achieved => "已完成",
            Status::AchievedLate => "逾期完成",
            Status::OnTrack => "进展正常",
            Status::AtRisk => "有风险",
            Status::Missed => "未完成",
            Status::NotStarted => "未开始",
        }
    }
}

impl Status {
    pub fn from_code(code: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == code)
    }

    /// The status as shown everywhere (CLI, dashboard, exports), in Chinese: "逾期完成（晚15天）"
    /// for a target met 15 days late.
    pub fn label_zh_with(self, days_late: i32) -> String {
        match self {
            Status::AchievedLate => format!("逾期完成（晚{days_late}天）"),
            s => s.label_zh().to_string(),
        }
    }

    /// The same in English: "Achieved late (15 days)".
    pub fn label_en_with(self, days_late: i32) -> String {
        match self {
            Status::AchievedLate if days_late == 1 => "Achieved late (1 day)".to_string(),
            Status::AchievedLate => format!("Achieved late ({days_late} days)"),
            s => s.label_en().to_string(),
        }
    }
}

impl Evaluation {
    /// [`Status::label_zh_with`] of this evaluation.
    pub fn label_zh(&self) -> String {
        self.status.label_zh_with(self.days_late)
    }

    /// [`Status::label_en_with`] of this evaluation.
    pub fn label_en(&self) -> String {
        self.status.label_en_with(self.days_late)
    }
}

/// Progress and status of one indicator as of a date.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// Toward the target, basis points, at most 10000.
    pub progress_bp: i32,
    pub status: Status,
    /// From the date to the deadline; negative after it.
    pub days_remaining: i32,
    /// For [`Status::AchievedLate`]: the days from the deadline to the date the target was
    /// first met after it; 0 otherwise.
    pub days_late: i32,
}

/// How far behind the share of time elapsed progress may be and still be on track.
pub const ON_TRACK_SLACK: f64 = 0.25;

/// Whether `actual` meets the target (a cap is never met without data).
fn is_met(comparator: Comparator, target: f64, actual: Option<f64>) -> bool {
    if comparator.is_cap() {
        actual.is_some_and(|a| a <= target)
    } else {
        actual.unwrap_or(0.0) >= target
    }
}

/// The value of a history (the actual at the end of each date it changed) at the end of `date`.
fn value_on(history: &[(NaiveDate, f64)], date: NaiveDate) -> Option<f64> {
    history
        .iter()
        .take_while(|(d, _)| *d <= date)
        .last()
        .map(|(_, v)| *v)
}

/// The date a status is as of, and whether that day was over when it was judged (see
/// [`day_over`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AsOf {
    pub date: NaiveDate,
    pub day_over: bool,
}

/// Evaluates `actual` (`None`: nothing counted or recorded) against the target, with the
/// indicator's `history` up to `as_of` (for when it was met):
///
/// - ACHIEVED when the target is met as of the date and was met at the end of the deadline
///   (or the deadline is still ahead);
/// - ACHIEVED_LATE when it is met as of the date but was not at the deadline: `days_late`
///   from the deadline to the first date after it on which it was met;
/// - MISSED after the deadline otherwise, and on the deadline itself once that day is over
///   (`day_over`: a report as of a past day; as of today, the day still counts);
/// - NOT_STARTED for a cap with no data yet, or nothing at all before the window begins;
/// - AT_RISK for a cap exceeded before the deadline;
/// - else ON_TRACK when progress ≥ (time elapsed from the window's start to the deadline) −
///   0.25, AT_RISK below.
pub fn evaluate(
    comparator: Comparator,
    target: f64,
    deadline: NaiveDate,
    year_start: NaiveDate,
    actual: Option<f64>,
    as_of: AsOf,
    history: &[(NaiveDate, f64)],
) -> Evaluation {
    let AsOf {
        date: as_of,
        day_over,
    } = as_of;
    let days_remaining = i32::try_from((deadline - as_of).num_days()).unwrap_or(i32::MIN);
    let cap = comparator.is_cap();
    let a = actual.unwrap_or(0.0);
    let progress = if cap {
        match actual {
            None => 0.0,
            Some(a) if a <= target => 1.0,
            Some(a) => target / a,
        }
    } else if target <= 0.0 {
        1.0
    } else {
        (a / target).min(1.0)
    };
    let progress_bp = (progress.clamp(0.0, 1.0) * 10000.0).floor() as i32;
    let met = is_met(comparator, target, actual);
    let mut days_late = 0;
    let status = if met {
        if as_of <= deadline || is_met(comparator, target, value_on(history, deadline)) {
            Status::Achieved
        } else {
            // The first date after the deadline on which the history meets the target.
            let first = history
                .iter()
                .filter(|(d, _)| *d > deadline && *d <= as_of)
                .find(|(_, v)| is_met(comparator, target, Some(*v)))
                .map(|(d, _)| *d);
            match first {
                Some(day) => {
                    days_late = i32::try_from((day - deadline).num_days()).unwrap_or(i32::MAX);
                    Status::AchievedLate
                }
                // Met without a change after the deadline (a target of 0): met all along.
                None => Status::Achieved,
            }
        }
    } else if as_of > deadline || (as_of == deadline && day_over) {
        Status::Missed
    } else if (cap && actual.is_none()) || (!cap && a <= 0.0 && as_of < year_start) {
        Status::NotStarted
    } else if cap {
        // Over the cap with the deadline still ahead: it has to come down.
        Status::AtRisk
    } else {
        let span = (deadline - year_start).num_days();
        let elapsed = if span <= 0 {
            1.0
        } else {
            ((as_of - year_start).num_days() as f64 / span as f64).clamp(0.0, 1.0)
        };
        if progress >= elapsed - ON_TRACK_SLACK {
            Status::OnTrack
        } else {
            Status::AtRisk
        }
    };
    Evaluation {
        progress_bp,
        status,
        days_remaining,
        days_late,
    }
}

/// Key of a breakdown entry without a town or sector.
pub const UNSPECIFIED: &str = "unspecified";

/// One indicator's line of a report.
#[derive(Clone, Debug, PartialEq)]
pub struct IndicatorReport {
    pub indicator: Indicator,
    pub actual: f64,
    pub evaluation: Evaluation,
    pub by_town: Vec<(String, f64)>,
    pub by_sector: Vec<(String, f64)>,
    pub by_department: Vec<(String, f64)>,
    /// When the actual value last changed (the latest fact or record it includes).
    pub last_change_ms: Option<i64>,
    /// How the actual grew: the value at the end of each date on which it changed, up to the
    /// report date, oldest first.
    pub history: Vec<(NaiveDate, f64)>,
    /// For an indicator whose rule counts projects: how many of the projects it counts have
    /// been handed over (completed, 移交) as of the date. `None` for other indicators.
    pub completed: Option<i64>,
}

/// The history of a counted indicator up to `as_of`, in the rule's measure: its amount added
/// on the effective date a unit first counts, taken off on the date a rule that removes
/// terminated projects takes it off (as [`counted`] does for every date).
pub fn counted_history(
    rule: &CountingRule,
    scope: &Scope,
    facts: &[Fact],
    as_of: NaiveDate,
) -> Vec<(NaiveDate, f64)> {
    // Per unit: its first (date, event id) and amount, and its project.
    let mut start: HashMap<String, ((NaiveDate, &str), i64, &str)> = HashMap::new();
    let mut stop: HashMap<&str, NaiveDate> = HashMap::new();
    for f in facts.iter().filter(|f| f.effective_date <= as_of) {
        if counts_for(rule, scope, f) {
            let (unit, amount) = f.unit_of(rule.measure);
            let at = (f.effective_date, f.event_id.as_str());
            let entry = start
                .entry(unit)
                .or_insert((at, amount, f.project_id.as_str()));
            if at < entry.0 {
                *entry = (at, amount, f.project_id.as_str());
            }
        }
        if rule.on_terminated == OnTerminated::Remove && f.milestone == Milestone::Terminated {
            let at = stop
                .entry(f.project_id.as_str())
                .or_insert(f.effective_date);
            *at = (*at).min(f.effective_date);
        }
    }
    let mut deltas: BTreeMap<NaiveDate, i128> = BTreeMap::new();
    for ((first, _), amount, project) in start.into_values() {
        let amount = i128::from(amount);
        match stop.get(project) {
            // Terminated on or before the day it would count: it never counts.
            Some(t) if *t <= first => {}
            Some(t) => {
                *deltas.entry(first).or_default() += amount;
                *deltas.entry(*t).or_default() -= amount;
            }
            None => *deltas.entry(first).or_default() += amount,
        }
    }
    let mut total: i128 = 0;
    deltas
        .into_iter()
        .filter(|(_, d)| *d != 0)
        .map(|(day, d)| {
            total += d;
            (day, rule.measure.display(total))
        })
        .collect()
}

/// The history of a recorded indicator up to `as_of`: its actual at the end of each date with
/// an achievement.
pub fn recorded_history(
    aggregation: Aggregation,
    items: &[Recorded],
    as_of: NaiveDate,
) -> Vec<(NaiveDate, f64)> {
    let mut days: Vec<NaiveDate> = items
        .iter()
        .map(|r| r.achieved_date)
        .filter(|d| *d <= as_of)
        .collect();
    days.sort();
    days.dedup();
    days.into_iter()
        .filter_map(|day| {
            recorded_actual(&recorded_included(aggregation, items, day)).map(|v| (day, v))
        })
        .collect()
}

fn sums<'a>(entries: impl Iterator<Item = (&'a str, f64)>) -> Vec<(String, f64)> {
    let mut map: BTreeMap<String, f64> = BTreeMap::new();
    for (key, value) in entries {
        let key = if key.is_empty() { UNSPECIFIED } else { key };
        *map.entry(key.to_string()).or_default() += value;
    }
    map.into_iter().collect()
}

/// Amounts summed exactly per key (litres, fen, units), then shown in the measure's unit.
fn exact_sums<'a>(
    measure: Measure,
    entries: impl Iterator<Item = (&'a str, i128)>,
) -> Vec<(String, f64)> {
    let mut map: BTreeMap<String, i128> = BTreeMap::new();
    for (key, value) in entries {
        let key = if key.is_empty() { UNSPECIFIED } else { key };
        *map.entry(key.to_string()).or_default() += value;
    }
    map.into_iter()
        .map(|(k, v)| (k, measure.display(v)))
        .collect()
}

/// What one source (the counting rule, or the recorded entries) adds to an indicator's line.
#[derive(Clone, Debug, Default, PartialEq)]
struct Part {
    actual: Option<f64>,
    by_town: Vec<(String, f64)>,
    by_sector: Vec<(String, f64)>,
    by_department: Vec<(String, f64)>,
    last_change_ms: Option<i64>,
    history: Vec<(NaiveDate, f64)>,
}

fn counted_part(
    indicator: &Indicator,
    rule: &CountingRule,
    scope: &Scope,
    facts: &[Fact],
    as_of: NaiveDate,
) -> Part {
    let m = rule.measure;
    let units = counted(rule, scope, facts, as_of);
    let exact = |f: &Fact| i128::from(f.unit_of(m).1);
    let actual = m.display(amount(m, &units));
    Part {
        actual: Some(actual),
        by_town: exact_sums(m, units.iter().map(|f| (f.town.as_str(), exact(f)))),
        by_sector: exact_sums(
            m,
            units
                .iter()
                .map(|f| (f.sector.map(|s| s.code()).unwrap_or(""), exact(f))),
        ),
        by_department: indicator.lead.iter().map(|d| (d.clone(), actual)).collect(),
        last_change_ms: units.iter().map(|f| f.occurred_at_ms).max(),
        history: counted_history(rule, scope, facts, as_of),
    }
}

fn recorded_part(indicator: &Indicator, recorded: &[Recorded], as_of: NaiveDate) -> Part {
    let included = recorded_included(indicator.aggregation, recorded, as_of);
    let present = |key: &str| !key.is_empty();
    Part {
        actual: recorded_actual(&included),
        by_town: sums(
            included
                .iter()
                .filter(|r| present(&r.town))
                .map(|r| (r.town.as_str(), r.value)),
        ),
        by_sector: sums(
            included
                .iter()
                .filter_map(|r| r.sector.map(|s| (s.code(), r.value))),
        ),
        by_department: sums(
            included
                .iter()
                .filter(|r| present(&r.department))
                .map(|r| (r.department.as_str(), r.value)),
        ),
        last_change_ms: included.iter().map(|r| r.recorded_at_ms).max(),
        history: recorded_history(indicator.aggregation, recorded, as_of),
    }
}

/// Adds two breakdowns key by key.
fn add_entries(a: &[(String, f64)], b: &[(String, f64)]) -> Vec<(String, f64)> {
    let mut map: BTreeMap<String, f64> = a.iter().cloned().collect();
    for (k, v) in b {
        *map.entry(k.clone()).or_default() += v;
    }
    map.into_iter().collect()
}

/// Adds two histories: the sum of both values at the end of every date either changed.
fn add_histories(a: &[(NaiveDate, f64)], b: &[(NaiveDate, f64)]) -> Vec<(NaiveDate, f64)> {
    let mut days: Vec<NaiveDate> = a.iter().chain(b).map(|(d, _)| *d).collect();
    days.sort();
    days.dedup();
    let mut out: Vec<(NaiveDate, f64)> = Vec::new();
    for day in days {
        let v = value_on(a, day).unwrap_or(0.0) + value_on(b, day).unwrap_or(0.0);
        if out.last().is_none_or(|(_, last)| *last != v) {
            out.push((day, v));
        }
    }
    out
}

/// One line from its parts: counted (from facts or kept totals), recorded, or both.
fn line(
    plan: &Plan,
    indicator: &Indicator,
    parts: Vec<Part>,
    completed: Option<i64>,
    as_of: NaiveDate,
    day_over: bool,
) -> IndicatorReport {
    let mut parts = parts.into_iter();
    let mut total = parts.next().unwrap_or_default();
    for p in parts {
        total = Part {
            actual: match (total.actual, p.actual) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
            },
            by_town: add_entries(&total.by_town, &p.by_town),
            by_sector: add_entries(&total.by_sector, &p.by_sector),
            by_department: add_entries(&total.by_department, &p.by_department),
            last_change_ms: total.last_change_ms.max(p.last_change_ms),
            history: add_histories(&total.history, &p.history),
        };
    }
    IndicatorReport {
        indicator: indicator.clone(),
        actual: total.actual.unwrap_or(0.0),
        evaluation: evaluate(
            indicator.comparator,
            indicator.target,
            indicator.deadline,
            plan.year_start(),
            total.actual,
            AsOf {
                date: as_of,
                day_over,
            },
            &total.history,
        ),
        by_town: total.by_town,
        by_sector: total.by_sector,
        by_department: total.by_department,
        last_change_ms: total.last_change_ms,
        history: total.history,
        completed,
    }
}

/// The report line of `indicator` from the facts (what its rule counts) and the current
/// revisions of its achievements (what is recorded), as its kind says.
pub fn indicator_report(
    plan: &Plan,
    indicator: &Indicator,
    facts: &[Fact],
    recorded: &[Recorded],
    as_of: NaiveDate,
    day_over: bool,
) -> IndicatorReport {
    let scope = Scope::of(plan);
    let mut parts = Vec::new();
    let mut done = None;
    if let (true, Some(rule)) = (indicator.kind.counts(), &indicator.rule) {
        parts.push(counted_part(indicator, rule, &scope, facts, as_of));
        if rule.measure == Measure::Projects {
            done = Some(completed(
                &counted(rule, &scope, facts, as_of),
                facts,
                as_of,
            ));
        }
    }
    if indicator.kind.records() || indicator.rule.is_none() {
        parts.push(recorded_part(indicator, recorded, as_of));
    }
    line(plan, indicator, parts, done, as_of, day_over)
}

/// A counted indicator's count as of a date, read from the kept count changes (see
/// `store::Store::count_totals`): what a report line needs, without the facts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CountedTotals {
    /// (town, sector code, amount, latest change ms), the amount (units, litres or fen)
    /// summed up to the date.
    pub cells: Vec<(String, String, i64, i64)>,
    /// (day number, change) up to the date.
    pub changes: Vec<(i64, i64)>,
    /// The counted projects handed over by the date.
    pub completed: i64,
}

fn totals_part(indicator: &Indicator, rule: &CountingRule, totals: &CountedTotals) -> Part {
    let m = rule.measure;
    let cells: Vec<&(String, String, i64, i64)> =
        totals.cells.iter().filter(|c| c.2 != 0).collect();
    let actual = m.display(cells.iter().map(|c| i128::from(c.2)).sum::<i128>());
    let mut history = Vec::new();
    let mut total: i128 = 0;
    let mut days: BTreeMap<i64, i128> = BTreeMap::new();
    for (day, delta) in &totals.changes {
        *days.entry(*day).or_default() += i128::from(*delta);
    }
    for (day, delta) in days {
        if delta != 0 {
            total += delta;
            history.push((date_of_day(day), m.display(total)));
        }
    }
    Part {
        actual: Some(actual),
        by_town: exact_sums(m, cells.iter().map(|c| (c.0.as_str(), i128::from(c.2)))),
        by_sector: exact_sums(m, cells.iter().map(|c| (c.1.as_str(), i128::from(c.2)))),
        by_department: indicator.lead.iter().map(|d| (d.clone(), actual)).collect(),
        last_change_ms: totals.cells.iter().map(|c| c.3).max(),
        history,
    }
}

/// The report line of a counted indicator from its kept totals (and, for a
/// counted-and-recorded one, its achievements); the same as [`indicator_report`] computes
/// from the facts.
pub fn counted_line(
    plan: &Plan,
    indicator: &Indicator,
    totals: &CountedTotals,
    recorded: &[Recorded],
    as_of: NaiveDate,
    day_over: bool,
) -> IndicatorReport {
    let mut parts = Vec::new();
    let mut done = None;
    if let Some(rule) = &indicator.rule {
        parts.push(totals_part(indicator, rule, totals));
        if rule.measure == Measure::Projects {
            done = Some(totals.completed);
        }
    }
    if indicator.kind.records() {
        parts.push(recorded_part(indicator, recorded, as_of));
    }
    line(plan, indicator, parts, done, as_of, day_over)
}

/// Whether the day a report is as of was over when it was made: then an indicator due that
/// day and not met is missed (see [`evaluate`]).
pub fn day_over(as_of: NaiveDate, generated_at_ms: i64) -> bool {
    as_of < cst_date(generated_at_ms)
}

/// The report of `plan` from the kept totals of its counted indicators (by code) and the
/// current achievements of its recorded ones.
pub fn report_from_totals(
    plan: &StoredPlan,
    totals: &HashMap<String, CountedTotals>,
    recorded: &HashMap<String, Vec<Recorded>>,
    as_of: NaiveDate,
    generated_at_ms: i64,
) -> Report {
    let empty = CountedTotals::default();
    let day_over = day_over(as_of, generated_at_ms);
    let lines = plan
        .plan
        .all_indicators()
        .into_iter()
        .map(|i| {
            let items = recorded.get(&i.code).map(Vec::as_slice).unwrap_or(&[]);
            if i.kind.counts() && i.rule.is_some() {
                let t = totals.get(&i.code).unwrap_or(&empty);
                counted_line(&plan.plan, i, t, items, as_of, day_over)
            } else {
                indicator_report(&plan.plan, i, &[], items, as_of, day_over)
            }
        })
        .collect();
    Report {
        plan: plan.clone(),
        as_of,
        lines,
        generated_at_ms,
    }
}

/// Fills the rolled-up indicators of `report` (a city's or province's plan) from `districts`,
/// the reports of the district plans inside it as of the same date: each line the sum of the
/// districts' lines of the codes it names, with their histories added up, and its breakdown by
/// place giving each district (by code) instead of towns.
pub fn roll_up_into(report: &mut Report, districts: &[&Report]) {
    let plan = report.plan.plan.clone();
    let as_of = report.as_of;
    let day_over = day_over(as_of, report.generated_at_ms);
    for line in report
        .lines
        .iter_mut()
        .filter(|l| l.indicator.kind == Kind::RolledUp)
    {
        let from = &line.indicator.rolled_up_from;
        let mut parts = Vec::new();
        let mut completed: Option<i64> = None;
        for d in districts {
            for l in d.lines.iter().filter(|l| from.contains(&l.indicator.code)) {
                parts.push(Part {
                    actual: Some(l.actual),
                    by_town: vec![(d.plan.plan.jurisdiction.to_string(), l.actual)],
                    by_sector: l.by_sector.clone(),
                    by_department: Vec::new(),
                    last_change_ms: l.last_change_ms,
                    history: l.history.clone(),
                });
                if let Some(n) = l.completed {
                    completed = Some(completed.unwrap_or(0).saturating_add(n));
                }
            }
        }
        let indicator = line.indicator.clone();
        *line = self::line(&plan, &indicator, parts, completed, as_of, day_over);
    }
}

/// The progress of a plan's indicators as of a date.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub plan: StoredPlan,
    pub as_of: NaiveDate,
    /// Goals first, then indicators by action number.
    pub lines: Vec<IndicatorReport>,
    pub generated_at_ms: i64,
}

/// Computes the report of `plan` as of `as_of` from the facts of its counted rules' milestones
/// and the current achievements of its code, by indicator code.
pub fn build_report(
    plan: &StoredPlan,
    facts: &[Fact],
    recorded: &std::collections::HashMap<String, Vec<Recorded>>,
    as_of: NaiveDate,
    generated_at_ms: i64,
) -> Report {
    let day_over = day_over(as_of, generated_at_ms);
    let lines = plan
        .plan
        .all_indicators()
        .into_iter()
        .map(|i| {
            let items = recorded.get(&i.code).map(Vec::as_slice).unwrap_or(&[]);
            indicator_report(&plan.plan, i, facts, items, as_of, day_over)
        })
        .collect();
    Report {
        plan: plan.clone(),
        as_of,
        lines,
        generated_at_ms,
    }
}

/// The date a report is as of when none is asked: today, or the plan window's last day when
/// today is past it (a 2020 plan read in 2026 shows how 2020 ended, not 2,000 days of delay).
pub fn default_as_of(plan: &Plan, today: NaiveDate) -> NaiveDate {
    today.min(plan.window.to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{self, Kind};

    fn d(text: &str) -> NaiveDate {
        parse_date(text).expect("date")
    }

    /// A target of 1 due 2020-12-31; what is there was there since 2020-06-01.
    fn at_least_one(actual: Option<f64>, as_of: &str) -> Evaluation {
        let history: Vec<(NaiveDate, f64)> = actual
            .filter(|a| *a > 0.0)
            .map(|a| vec![(d("2020-06-01"), a)])
            .unwrap_or_default();
        evaluate(
            Comparator::AtLeast,
            1.0,
            d("2020-12-31"),
            d("2020-01-01"),
            actual,
            AsOf {
                date: d(as_of),
                day_over: false,
            },
            &history,
        )
    }

    #[test]
    fn status_of_an_at_least_target_through_the_year() {
        assert_eq!(
            at_least_one(Some(0.0), "2020-03-01").status,
            Status::OnTrack
        );
        assert_eq!(at_least_one(Some(0.0), "2020-11-15").status, Status::AtRisk);
        let done = at_least_one(Some(1.0), "2020-11-15");
        assert_eq!(done.status, Status::Achieved);
        assert_eq!(done.progress_bp, 10000);
        assert_eq!(at_least_one(Some(0.0), "2021-01-05").status, Status::Missed);
        assert_eq!(at_least_one(Some(0.0), "2021-01-05").days_remaining, -5);
        assert_eq!(
            at_least_one(Some(1.0), "2021-01-05").status,
            Status::Achieved
        );
        assert_eq!(
            at_least_one(Some(0.0), "2019-12-01").status,
            Status::NotStarted
        );
        assert_eq!(at_least_one(None, "2019-12-01").status, Status::NotStarted);
        assert_eq!(at_least_one(Some(0.0), "2020-12-31").days_remaining, 0);
        assert_eq!(at_least_one(Some(0.0), "2020-12-31").status, Status::AtRisk);
    }

    /// As of its deadline day, a target not met is at risk while the day lasts and missed once
    /// it is over (a report as of a past deadline, read later): nothing more can count by then.
    #[test]
    fn a_target_not_met_by_the_end_of_its_deadline_day_is_missed() {
        let e = |actual: f64, day_over: bool| {
            evaluate(
                Comparator::AtLeast,
                10.0,
                d("2020-12-31"),
                d("2020-01-01"),
                Some(actual),
                AsOf {
                    date: d("2020-12-31"),
                    day_over,
                },
                &[(d("2020-06-30"), actual)],
            )
            .status
        };
        assert_eq!(e(4.0, false), Status::AtRisk);
        assert_eq!(e(4.0, true), Status::Missed);
        assert_eq!(e(10.0, true), Status::Achieved);
        // The report of a day decides it from when it was made (China Standard Time).
        let new_year_cst = 1_609_430_400_000; // 2021-01-01 00:00 +08:00
        assert!(!day_over(d("2020-12-31"), new_year_cst - 1));
        assert!(day_over(d("2020-12-31"), new_year_cst));
    }

    #[test]
    fn progress_is_capped_and_compared_with_time_elapsed() {
        let e = |actual, as_of| {
            evaluate(
                Comparator::AtLeast,
                10.0,
                d("2020-12-31"),
                d("2020-01-01"),
                Some(actual),
                AsOf {
                    date: d(as_of),
                    day_over: false,
                },
                &[(d("2020-03-01"), actual)],
            )
        };
        // Mid-year (about half elapsed): 3 of 10 is 0.30 ≥ 0.50 − 0.25.
        assert_eq!(e(3.0, "2020-07-01").progress_bp, 3000);
        assert_eq!(e(3.0, "2020-07-01").status, Status::OnTrack);
        assert_eq!(e(2.0, "2020-07-01").status, Status::AtRisk);
        assert_eq!(e(12.0, "2020-07-01").progress_bp, 10000);
        assert_eq!(e(12.0, "2020-07-01").status, Status::Achieved);
    }

    #[test]
    fn caps_need_data_to_be_met() {
        let e = |actual: Option<f64>, as_of| {
            let history: Vec<(NaiveDate, f64)> = actual
                .map(|a| vec![(d("2020-03-01"), a)])
                .unwrap_or_default();
            evaluate(
                Comparator::AtMost,
                871.0,
                d("2020-12-31"),
                d("2020-01-01"),
                actual,
                AsOf {
                    date: d(as_of),
                    day_over: false,
                },
                &history,
            )
        };
        assert_eq!(e(None, "2020-06-01").status, Status::NotStarted);
        assert_eq!(e(None, "2021-02-01").status, Status::Missed);
        assert_eq!(e(Some(850.0), "2020-12-31").status, Status::Achieved);
        assert_eq!(e(Some(850.0), "2020-12-31").progress_bp, 10000);
        let over = e(Some(900.0), "2020-12-31");
        assert_eq!(over.status, Status::AtRisk);
        assert_eq!(over.progress_bp, 9677);
        assert_eq!(e(Some(900.0), "2021-01-01").status, Status::Missed);
    }

    fn fact(event: &str, project: &str, milestone: Milestone, date: &str) -> Fact {
        Fact {
            event_id: event.into(),
            project_id: project.into(),
            sequence: 0,
            milestone,
            occurred_at_ms: end_of_day_ms(d(date)) - 3_600_000,
            counted_at_ms: end_of_day_ms(d(date)),
            effective_date: d(date),
            jurisdiction: Jurisdiction::default_district(),
            investment_fen: 0,
            period_id: String::new(),
            period_savings_litres: 0,
            sector: Some(Sector::School),
            unit_type: "University".into(),
            town: "Xuejia".into(),
            tags: vec![IndicatorTag::ContractProject],
            project_title: String::new(),
            company_id: String::new(),
            company_name: String::new(),
            water_user_credit_code: String::new(),
            water_user_name: String::new(),
        }
    }

    fn rule() -> CountingRule {
        CountingRule {
            milestone: Milestone::HandedOver,
            sectors: vec![Sector::School, Sector::Hospital],
            unit_types: vec![],
            towns: vec![],
            tags: vec![IndicatorTag::ContractProject],
            on_terminated: OnTerminated::Keep,
            measure: Measure::Projects,
        }
    }

    /// Xinbei in 2020.
    fn xinbei_2020() -> Scope {
        Scope {
            jurisdiction: Jurisdiction::default_district(),
            window: Window {
                from: d("2020-01-01"),
                to: d("2020-12-31"),
            },
        }
    }

    #[test]
    fn counting_is_per_project_by_rule_and_date() {
        let mut other_sector = fact("e4", "p4", Milestone::HandedOver, "2020-05-01");
        other_sector.sector = Some(Sector::Community);
        let mut untagged = fact("e5", "p5", Milestone::HandedOver, "2020-05-01");
        untagged.tags = vec![IndicatorTag::TechnicalRetrofit];
        let facts = vec![
            fact("e1", "p1", Milestone::HandedOver, "2020-05-01"),
            fact("e2", "p1", Milestone::HandedOver, "2020-06-01"),
            fact("e3", "p2", Milestone::Contracted, "2020-05-01"),
            other_sector,
            untagged,
            fact("e6", "p6", Milestone::HandedOver, "2020-09-01"),
            fact("e7", "p6", Milestone::Terminated, "2020-10-01"),
        ];
        let r = rule();
        assert_eq!(
            counted(&r, &xinbei_2020(), &facts, d("2020-04-30")).len(),
            0
        );
        assert_eq!(
            counted(&r, &xinbei_2020(), &facts, d("2020-05-01")).len(),
            1
        );
        assert_eq!(
            counted(&r, &xinbei_2020(), &facts, d("2020-12-31")).len(),
            2
        );
        let remove = CountingRule {
            on_terminated: OnTerminated::Remove,
            ..rule()
        };
        assert_eq!(
            counted(&remove, &xinbei_2020(), &facts, d("2020-09-15")).len(),
            2
        );
        assert_eq!(
            counted(&remove, &xinbei_2020(), &facts, d("2020-12-31")).len(),
            1
        );
        // The history agrees with the count on every date.
        for (r, day) in [
            (&rule(), "2020-12-31"),
            (&remove, "2020-12-31"),
            (&remove, "2020-09-15"),
        ] {
            let history = counted_history(r, &xinbei_2020(), &facts, d(day));
            assert_eq!(
                history.last().map(|p| p.1),
                Some(counted(r, &xinbei_2020(), &facts, d(day)).len() as f64)
            );
            for (date, value) in &history {
                assert_eq!(
                    *value,
                    counted(r, &xinbei_2020(), &facts, *date).len() as f64,
                    "{date}"
                );
            }
        }
        assert_eq!(
            counted_history(&remove, &xinbei_2020(), &facts, d("2020-12-31")),
            vec![
                (d("2020-05-01"), 1.0),
                (d("2020-09-01"), 2.0),
                (d("2020-10-01"), 1.0)
            ]
        );
        let by_town = CountingRule {
            towns: vec!["Chunjiang".into()],
            ..rule()
        };
        assert!(counted(&by_town, &xinbei_2020(), &facts, d("2020-12-31")).is_empty());
        let by_unit = CountingRule {
            unit_types: vec!["university".into()],
            ..rule()
        };
        assert_eq!(
            counted(&by_unit, &xinbei_2020(), &facts, d("2020-12-31")).len(),
            2
        );
    }

    #[test]
    fn days_end_in_china_standard_time() {
        let day = d("2020-12-31");
        // 2020-12-31 23:59:59.999 +08:00 is 15:59:59.999 UTC.
        assert_eq!(end_of_day_ms(day), 1_609_430_399_999);
        assert_eq!(cst_date(end_of_day_ms(day)), day);
        assert_eq!(cst_date(end_of_day_ms(day) + 1), d("2021-01-01"));
    }

    #[test]
    fn recorded_values_sum_or_take_the_latest() {
        let r = |value, date: &str, dept: &str| Recorded {
            value,
            achieved_date: d(date),
            recorded_at_ms: 0,
            department: dept.into(),
            town: String::new(),
            sector: None,
        };
        let items = vec![
            r(1.0, "2020-03-01", "edu"),
            r(2.0, "2020-06-01", "office"),
            r(5.0, "2020-09-01", "edu"),
        ];
        let sum = recorded_included(Aggregation::Sum, &items, d("2020-07-01"));
        assert_eq!(recorded_actual(&sum), Some(3.0));
        let latest = recorded_included(Aggregation::Latest, &items, d("2020-12-01"));
        assert_eq!(recorded_actual(&latest), Some(5.0));
        assert_eq!(
            recorded_history(Aggregation::Sum, &items, d("2020-12-01")),
            vec![
                (d("2020-03-01"), 1.0),
                (d("2020-06-01"), 3.0),
                (d("2020-09-01"), 8.0)
            ]
        );
        assert_eq!(
            recorded_history(Aggregation::Latest, &items, d("2020-07-01")),
            vec![(d("2020-03-01"), 1.0), (d("2020-06-01"), 2.0)]
        );
        assert_eq!(
            recorded_actual(&recorded_included(
                Aggregation::Sum,
                &items,
                d("2020-01-01")
            )),
            None
        );
    }

    #[test]
    fn a_report_line_for_the_seed_plan() {
        let plan = plan::parse(plan::DEFAULT_PLAN_TOML).expect("plan");
        let a8 = plan.indicator("A8-CONTRACT-PROJECTS").expect("a8");
        let facts = vec![fact("e1", "p1", Milestone::Contracted, "2020-05-01")];
        let line = indicator_report(&plan, a8, &facts, &[], d("2020-06-01"), false);
        assert_eq!(line.actual, 1.0);
        assert_eq!(line.completed, Some(0));
        assert_eq!(line.evaluation.status, Status::Achieved);
        assert_eq!(line.by_town, vec![("Xuejia".to_string(), 1.0)]);
        assert_eq!(line.by_sector, vec![("school".to_string(), 1.0)]);
        assert_eq!(line.by_department, vec![("agri".to_string(), 1.0)]);
        let g1 = plan.indicator("G1").expect("g1");
        let line = indicator_report(&plan, g1, &facts, &[], d("2020-06-01"), false);
        assert_eq!(line.evaluation.status, Status::NotStarted);
    }

    /// Issue 11 §2/§3: a plan counts only the facts inside its jurisdiction whose effective
    /// date lies in its window, whenever they were entered.
    #[test]
    fn a_plan_counts_inside_its_jurisdiction_and_window_by_effective_date() {
        let wujin = Jurisdiction::parse("j", "320412").expect("wujin");
        let xinqiao = Jurisdiction::parse("j", "320411004").expect("新桥街道");
        let mut in_town = fact("e1", "p1", Milestone::HandedOver, "2020-05-01");
        in_town.jurisdiction = xinqiao;
        let mut in_wujin = fact("e2", "p2", Milestone::HandedOver, "2020-05-01");
        in_wujin.jurisdiction = wujin.clone();
        // Signed in 2026: not a 2020 project.
        let late = fact("e3", "p3", Milestone::HandedOver, "2026-03-01");
        // Entered in 2026 (recorded then) with its 2020 date: a 2020 project.
        let mut entered_late = fact("e4", "p4", Milestone::HandedOver, "2026-12-01");
        entered_late.effective_date = d("2020-11-20");
        let facts = vec![in_town, in_wujin, late, entered_late];
        let r = rule();
        let xinbei = xinbei_2020();
        let ids = |as_of: &str, scope: &Scope| -> Vec<String> {
            let mut v: Vec<String> = counted(&r, scope, &facts, d(as_of))
                .iter()
                .map(|f| f.project_id.clone())
                .collect();
            v.sort();
            v
        };
        assert_eq!(ids("2020-12-31", &xinbei), ["p1", "p4"]);
        // As of a date: effective on or before it.
        assert_eq!(ids("2020-11-19", &xinbei), ["p1"]);
        // Read in 2027, the 2020 plan still counts only 2020's.
        assert_eq!(ids("2027-01-01", &xinbei), ["p1", "p4"]);
        let wujin_2020 = Scope {
            jurisdiction: wujin,
            ..xinbei.clone()
        };
        assert_eq!(ids("2020-12-31", &wujin_2020), ["p2"]);
        // A city plan contains both districts.
        let changzhou = Scope {
            jurisdiction: Jurisdiction::parse("j", "320400").expect("city"),
            ..xinbei.clone()
        };
        assert_eq!(ids("2020-12-31", &changzhou), ["p1", "p2", "p4"]);
        assert_eq!(
            counted_history(&r, &xinbei, &facts, d("2020-12-31")),
            vec![(d("2020-05-01"), 1.0), (d("2020-11-20"), 2.0)]
        );
    }

    /// Issue 11 §2: verified m³ are summed exactly from the litres of each verified period.
    #[test]
    fn verified_savings_sum_exactly_in_litres() {
        let r = CountingRule {
            milestone: Milestone::PeriodVerified,
            measure: Measure::VerifiedM3,
            ..rule()
        };
        let period = |event: &str, project: &str, id: &str, date: &str, litres: i64| Fact {
            period_id: id.into(),
            period_savings_litres: litres,
            ..fact(event, project, Milestone::PeriodVerified, date)
        };
        let facts = vec![
            period("v1", "p1", "2020-03", "2020-04-10", 400_125),
            period("v2", "p1", "2020-04", "2020-05-10", 350_250),
            period("v3", "p2", "2020-06", "2020-07-10", 249_626),
            // Verified in 2021: another window's.
            period("v4", "p2", "2020-12", "2021-01-10", 999_999),
        ];
        let counted_facts = counted(&r, &xinbei_2020(), &facts, d("2020-12-31"));
        // 400,125 L + 350,250 L + 249,626 L = 1,000,001 L = 1,000.001 m³.
        assert_eq!(amount(r.measure, &counted_facts), 1_000_001);
        let mut plan = plan::parse(plan::DEFAULT_PLAN_TOML).expect("plan");
        let mut saved = plan.indicator("A8-CONTRACT-PROJECTS").expect("a8").clone();
        saved.code = "SAVED".into();
        saved.unit = "m³".into();
        saved.target = 1000.0;
        saved.rule = Some(r.clone());
        plan.indicators.push(saved.clone());
        let line = indicator_report(&plan, &saved, &facts, &[], d("2020-12-31"), false);
        assert_eq!(line.actual, 1000.001);
        assert_eq!(line.completed, None);
        assert_eq!(line.evaluation.status, Status::Achieved);
        assert_eq!(
            line.history,
            vec![
                (d("2020-04-10"), 400.125),
                (d("2020-05-10"), 750.375),
                (d("2020-07-10"), 1000.001)
            ]
        );
    }

    /// Issue 11 §4: met after the deadline is achieved late, by the days from the deadline to
    /// the first date it was met; met by the deadline stays achieved; not met is missed.
    #[test]
    fn a_target_met_after_its_deadline_is_achieved_late() {
        let e = |history: &[(NaiveDate, f64)], as_of: &str| {
            evaluate(
                Comparator::AtLeast,
                2.0,
                d("2020-11-30"),
                d("2020-01-01"),
                history.last().map(|p| p.1),
                AsOf {
                    date: d(as_of),
                    day_over: false,
                },
                history,
            )
        };
        // One retrofit on 2020-10-01, the second on 2020-12-15: 15 days after 2020-11-30.
        let late = [(d("2020-10-01"), 1.0), (d("2020-12-15"), 2.0)];
        let status = e(&late, "2020-12-31");
        assert_eq!(
            (status.status, status.days_late),
            (Status::AchievedLate, 15)
        );
        assert_eq!(status.label_zh(), "逾期完成（晚15天）");
        assert_eq!(status.label_en(), "Achieved late (15 days)");
        assert_eq!(e(&late[..1], "2020-12-31").status, Status::Missed);
        let on_time = [(d("2020-10-01"), 1.0), (d("2020-11-30"), 2.0)];
        let status = e(&on_time, "2020-12-31");
        assert_eq!((status.status, status.days_late), (Status::Achieved, 0));
        // Before the deadline, half of it with 91% of the time gone: at risk, not missed.
        assert_eq!(e(&on_time[..1], "2020-11-01").status, Status::AtRisk);
    }

    /// Issue 11 §3: A7 adds the recorded retrofits to the contract projects it counts, and a
    /// count of projects shows how many are handed over.
    #[test]
    fn counted_and_recorded_add_up_and_completions_are_shown() {
        let plan = plan::parse(plan::DEFAULT_PLAN_TOML).expect("plan");
        let a7 = plan.indicator("A7-TECH-RETROFITS").expect("a7");
        assert_eq!(a7.kind, Kind::CountedAndRecorded);
        let mut accepted = fact("e1", "p1", Milestone::Accepted, "2020-09-01");
        accepted.sector = Some(Sector::IndustrialEnterprise);
        accepted.tags = vec![IndicatorTag::TechnicalRetrofit];
        let handed = Fact {
            event_id: "e2".into(),
            milestone: Milestone::HandedOver,
            effective_date: d("2020-10-01"),
            ..accepted.clone()
        };
        let facts = vec![accepted, handed];
        let recorded = vec![Recorded {
            value: 1.0,
            achieved_date: d("2020-11-01"),
            recorded_at_ms: 0,
            department: "econ".into(),
            town: String::new(),
            sector: None,
        }];
        let line = indicator_report(&plan, a7, &facts, &recorded, d("2020-11-30"), false);
        // 1 contract project accepted + 1 recorded retrofit = 2, the target, by the deadline.
        assert_eq!(line.actual, 2.0);
        assert_eq!(line.evaluation.status, Status::Achieved);
        assert_eq!(line.completed, Some(1));
        assert_eq!(
            line.history,
            vec![(d("2020-09-01"), 1.0), (d("2020-11-01"), 2.0)]
        );
        assert_eq!(
            line.by_department,
            vec![("agri".to_string(), 1.0), ("econ".to_string(), 2.0)]
        );
        // As of before the hand-over: counted, not completed.
        let line = indicator_report(&plan, a7, &facts, &recorded, d("2020-09-15"), false);
        assert_eq!((line.actual, line.completed), (1.0, Some(0)));
    }

    #[test]
    fn the_default_report_date_is_the_window_end_once_past_it() {
        let plan = plan::parse(plan::DEFAULT_PLAN_TOML).expect("plan");
        assert_eq!(default_as_of(&plan, d("2026-12-02")), d("2020-12-31"));
        assert_eq!(default_as_of(&plan, d("2020-06-01")), d("2020-06-01"));
    }
}
