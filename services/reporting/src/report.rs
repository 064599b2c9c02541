//! An indicator's actual value, progress and status as of a date, computed from facts: pure
//! functions, no storage. Counts are derived, never stored: a counted indicator's actual is the
//! number of distinct projects whose milestone facts match its rule up to the date, so a plan
//! loaded later counts the facts already there.
//!
//! Days are China Standard Time (UTC+8): "as of 2020-12-31" includes everything that occurred
//! up to 2020-12-31 23:59:59.999 in Changzhou.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::NaiveDate;
use cwsm_platform::vocab::{IndicatorTag, Milestone, Sector};

use crate::plan::{
    Aggregation, Comparator, CountingRule, Indicator, Kind, OnTerminated, Plan, StoredPlan,
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
    pub occurred_at_ms: i64,
    /// When reporting stored it.
    pub counted_at_ms: i64,
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

/// The facts that make a counted indicator's count as of `as_of`: one per project (its first
/// matching milestone), without terminated projects when the rule removes them; in the order
/// they were counted.
pub fn counted<'a>(rule: &CountingRule, facts: &'a [Fact], as_of: NaiveDate) -> Vec<&'a Fact> {
    let end = end_of_day_ms(as_of);
    let terminated: HashSet<&str> = if rule.on_terminated == OnTerminated::Remove {
        facts
            .iter()
            .filter(|f| f.milestone == Milestone::Terminated && f.occurred_at_ms <= end)
            .map(|f| f.project_id.as_str())
            .collect()
    } else {
        HashSet::new()
    };
    let mut candidates: Vec<&Fact> = facts
        .iter()
        .filter(|f| {
            f.milestone == rule.milestone
                && f.occurred_at_ms <= end
                && matches(rule, f)
                && !terminated.contains(f.project_id.as_str())
        })
        .collect();
    candidates
        .sort_by(|a, b| (a.occurred_at_ms, &a.event_id).cmp(&(b.occurred_at_ms, &b.event_id)));
    let mut seen = HashSet::new();
    candidates.retain(|f| seen.insert(f.project_id.as_str()));
    candidates.sort_by(|a, b| (a.counted_at_ms, &a.event_id).cmp(&(b.counted_at_ms, &b.event_id)));
    candidates
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

/// Progress status of an indicator as of a date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Achieved,
    OnTrack,
    AtRisk,
    Overdue,
    NotStarted,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Achieved,
        Status::OnTrack,
        Status::AtRisk,
        Status::Overdue,
        Status::NotStarted,
    ];

    /// Lower-case code, e.g. "on_track" (the proto enum value name without its prefix).
    pub fn code(self) -> &'static str {
        match self {
            Status::Achieved => "achieved",
            Status::OnTrack => "on_track",
            Status::AtRisk => "at_risk",
            Status::Overdue => "overdue",
            Status::NotStarted => "not_started",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            Status::Achieved => "Achieved",
            Status::OnTrack => "On track",
            Status::AtRisk => "At risk",
            Status::Overdue => "Overdue",
            Status::NotStarted => "Not started",
        }
    }

    pub fn label_zh(self) -> &'static str {
        match self {
            Status::Achieved => "已完成",
            Status::OnTrack => "进展正常",
            Status::AtRisk => "有风险",
            Status::Overdue => "已逾期",
            Status::NotStarted => "未开始",
        }
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
}

/// How far behind the share of time elapsed progress may be and still be on track.
pub const ON_TRACK_SLACK: f64 = 0.25;

/// Evaluates `actual` (`None`: nothing counted or recorded) against the target.
///
/// - ACHIEVED when the comparator is met (a cap is never met without data);
/// - OVERDUE after the deadline otherwise;
/// - NOT_STARTED for a cap with no data yet, or nothing at all before the plan year begins;
/// - AT_RISK for a cap exceeded before the deadline;
/// - else ON_TRACK when progress ≥ (time elapsed from January 1st of the plan year to the
///   deadline) − 0.25, AT_RISK below.
pub fn evaluate(
    comparator: Comparator,
    target: f64,
    deadline: NaiveDate,
    year_start: NaiveDate,
    actual: Option<f64>,
    as_of: NaiveDate,
) -> Evaluation {
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
    let achieved = if cap {
        actual.is_some_and(|a| a <= target)
    } else {
        a >= target
    };
    let status = if achieved {
        Status::Achieved
    } else if as_of > deadline {
        Status::Overdue
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
}

/// The history of a counted indicator up to `as_of`: +1 on the day a project first counts,
/// −1 on the day a rule that removes terminated projects takes it off (as [`counted`] does
/// for every date).
pub fn counted_history(
    rule: &CountingRule,
    facts: &[Fact],
    as_of: NaiveDate,
) -> Vec<(NaiveDate, f64)> {
    let end = end_of_day_ms(as_of);
    let mut start: HashMap<&str, i64> = HashMap::new();
    let mut stop: HashMap<&str, i64> = HashMap::new();
    for f in facts.iter().filter(|f| f.occurred_at_ms <= end) {
        if f.milestone == rule.milestone && matches(rule, f) {
            let at = start
                .entry(f.project_id.as_str())
                .or_insert(f.occurred_at_ms);
            *at = (*at).min(f.occurred_at_ms);
        }
        if rule.on_terminated == OnTerminated::Remove && f.milestone == Milestone::Terminated {
            let at = stop
                .entry(f.project_id.as_str())
                .or_insert(f.occurred_at_ms);
            *at = (*at).min(f.occurred_at_ms);
        }
    }
    let mut deltas: BTreeMap<NaiveDate, f64> = BTreeMap::new();
    for (project, from) in start {
        let first = cst_date(from);
        match stop.get(project) {
            // Terminated on or before the day it would count: it never counts.
            Some(t) if cst_date(*t) <= first => {}
            Some(t) => {
                *deltas.entry(first).or_default() += 1.0;
                *deltas.entry(cst_date(*t)).or_default() -= 1.0;
            }
            None => *deltas.entry(first).or_default() += 1.0,
        }
    }
    let mut total = 0.0;
    deltas
        .into_iter()
        .filter(|(_, d)| *d != 0.0)
        .map(|(day, d)| {
            total += d;
            (day, total)
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

/// The report line of `indicator` from the facts (for counted ones) or the current revisions of
/// its achievements (for recorded ones).
pub fn indicator_report(
    plan: &Plan,
    indicator: &Indicator,
    facts: &[Fact],
    recorded: &[Recorded],
    as_of: NaiveDate,
) -> IndicatorReport {
    let year_start = plan.year_start();
    let eval = |actual| {
        evaluate(
            indicator.comparator,
            indicator.target,
            indicator.deadline,
            year_start,
            actual,
            as_of,
        )
    };
    match (&indicator.kind, &indicator.rule) {
        (Kind::Counted, Some(rule)) => {
            let projects = counted(rule, facts, as_of);
            let actual = projects.len() as f64;
            IndicatorReport {
                indicator: indicator.clone(),
                actual,
                evaluation: eval(Some(actual)),
                by_town: sums(projects.iter().map(|f| (f.town.as_str(), 1.0))),
                by_sector: sums(
                    projects
                        .iter()
                        .map(|f| (f.sector.map(|s| s.code()).unwrap_or(""), 1.0)),
                ),
                by_department: indicator.lead.iter().map(|d| (d.clone(), actual)).collect(),
                last_change_ms: projects.iter().map(|f| f.occurred_at_ms).max(),
                history: counted_history(rule, facts, as_of),
            }
        }
        _ => {
            let included = recorded_included(indicator.aggregation, recorded, as_of);
            let actual = recorded_actual(&included);
            let present = |key: &str| !key.is_empty();
            IndicatorReport {
                indicator: indicator.clone(),
                actual: actual.unwrap_or(0.0),
                evaluation: eval(actual),
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
    }
}

/// A counted indicator's count as of a date, read from the kept count changes (see
/// `store::Store::count_changes`): what a report line needs, without the facts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CountedTotals {
    /// (town, sector code, count, latest change ms), the count summed up to the date.
    pub cells: Vec<(String, String, i64, i64)>,
    /// (day number, change) up to the date.
    pub changes: Vec<(i64, i64)>,
}

/// The report line of a counted indicator from its kept totals; the same as
/// [`indicator_report`] computes from the facts.
pub fn counted_line(
    plan: &Plan,
    indicator: &Indicator,
    totals: &CountedTotals,
    as_of: NaiveDate,
) -> IndicatorReport {
    let cells: Vec<&(String, String, i64, i64)> =
        totals.cells.iter().filter(|c| c.2 != 0).collect();
    let actual = cells.iter().map(|c| c.2 as f64).sum::<f64>();
    let mut history = Vec::new();
    let mut total = 0i64;
    let mut days: BTreeMap<i64, i64> = BTreeMap::new();
    for (day, delta) in &totals.changes {
        *days.entry(*day).or_default() += delta;
    }
    for (day, delta) in days {
        if delta != 0 {
            total += delta;
            history.push((date_of_day(day), total as f64));
        }
    }
    IndicatorReport {
        indicator: indicator.clone(),
        actual,
        evaluation: evaluate(
            indicator.comparator,
            indicator.target,
            indicator.deadline,
            plan.year_start(),
            Some(actual),
            as_of,
        ),
        by_town: sums(cells.iter().map(|c| (c.0.as_str(), c.2 as f64))),
        by_sector: sums(cells.iter().map(|c| (c.1.as_str(), c.2 as f64))),
        by_department: indicator.lead.iter().map(|d| (d.clone(), actual)).collect(),
        last_change_ms: totals.cells.iter().map(|c| c.3).max(),
        history,
    }
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
    let lines = plan
        .plan
        .all_indicators()
        .into_iter()
        .map(|i| match (&i.kind, &i.rule) {
            (Kind::Counted, Some(_)) => {
                counted_line(&plan.plan, i, totals.get(&i.code).unwrap_or(&empty), as_of)
            }
            _ => {
                let items = recorded.get(&i.code).map(Vec::as_slice).unwrap_or(&[]);
                indicator_report(&plan.plan, i, &[], items, as_of)
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
    let lines = plan
        .plan
        .all_indicators()
        .into_iter()
        .map(|i| {
            let items = recorded.get(&i.code).map(Vec::as_slice).unwrap_or(&[]);
            indicator_report(&plan.plan, i, facts, items, as_of)
        })
        .collect();
    Report {
        plan: plan.clone(),
        as_of,
        lines,
        generated_at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan;

    fn d(text: &str) -> NaiveDate {
        parse_date(text).expect("date")
    }

    fn at_least_one(actual: Option<f64>, as_of: &str) -> Evaluation {
        evaluate(
            Comparator::AtLeast,
            1.0,
            d("2020-12-31"),
            d("2020-01-01"),
            actual,
            d(as_of),
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
        assert_eq!(
            at_least_one(Some(0.0), "2021-01-05").status,
            Status::Overdue
        );
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

    #[test]
    fn progress_is_capped_and_compared_with_time_elapsed() {
        let e = |actual, as_of| {
            evaluate(
                Comparator::AtLeast,
                10.0,
                d("2020-12-31"),
                d("2020-01-01"),
                Some(actual),
                d(as_of),
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
        let e = |actual, as_of| {
            evaluate(
                Comparator::AtMost,
                871.0,
                d("2020-12-31"),
                d("2020-01-01"),
                actual,
                d(as_of),
            )
        };
        assert_eq!(e(None, "2020-06-01").status, Status::NotStarted);
        assert_eq!(e(None, "2021-02-01").status, Status::Overdue);
        assert_eq!(e(Some(850.0), "2020-12-31").status, Status::Achieved);
        assert_eq!(e(Some(850.0), "2020-12-31").progress_bp, 10000);
        let over = e(Some(900.0), "2020-12-31");
        assert_eq!(over.status, Status::AtRisk);
        assert_eq!(over.progress_bp, 9677);
        assert_eq!(e(Some(900.0), "2021-01-01").status, Status::Overdue);
    }

    fn fact(event: &str, project: &str, milestone: Milestone, date: &str) -> Fact {
        Fact {
            event_id: event.into(),
            project_id: project.into(),
            sequence: 0,
            milestone,
            occurred_at_ms: end_of_day_ms(d(date)) - 3_600_000,
            counted_at_ms: end_of_day_ms(d(date)),
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
        assert_eq!(counted(&r, &facts, d("2020-04-30")).len(), 0);
        assert_eq!(counted(&r, &facts, d("2020-05-01")).len(), 1);
        assert_eq!(counted(&r, &facts, d("2020-12-31")).len(), 2);
        let remove = CountingRule {
            on_terminated: OnTerminated::Remove,
            ..rule()
        };
        assert_eq!(counted(&remove, &facts, d("2020-09-15")).len(), 2);
        assert_eq!(counted(&remove, &facts, d("2020-12-31")).len(), 1);
        // The history agrees with the count on every date.
        for (r, day) in [
            (&rule(), "2020-12-31"),
            (&remove, "2020-12-31"),
            (&remove, "2020-09-15"),
        ] {
            let history = counted_history(r, &facts, d(day));
            assert_eq!(
                history.last().map(|p| p.1),
                Some(counted(r, &facts, d(day)).len() as f64)
            );
            for (date, value) in &history {
                assert_eq!(*value, counted(r, &facts, *date).len() as f64, "{date}");
            }
        }
        assert_eq!(
            counted_history(&remove, &facts, d("2020-12-31")),
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
        assert!(counted(&by_town, &facts, d("2020-12-31")).is_empty());
        let by_unit = CountingRule {
            unit_types: vec!["university".into()],
            ..rule()
        };
        assert_eq!(counted(&by_unit, &facts, d("2020-12-31")).len(), 2);
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
        let facts = vec![fact("e1", "p1", Milestone::HandedOver, "2020-05-01")];
        let line = indicator_report(&plan, a8, &facts, &[], d("2020-06-01"));
        assert_eq!(line.actual, 1.0);
        assert_eq!(line.evaluation.status, Status::Achieved);
        assert_eq!(line.by_town, vec![("Xuejia".to_string(), 1.0)]);
        assert_eq!(line.by_sector, vec![("school".to_string(), 1.0)]);
        assert_eq!(line.by_department, vec![("agri".to_string(), 1.0)]);
        let g1 = plan.indicator("G1").expect("g1");
        let line = indicator_report(&plan, g1, &facts, &[], d("2020-06-01"));
        assert_eq!(line.evaluation.status, Status::NotStarted);
    }
}
