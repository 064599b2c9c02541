//! A city's or province's report (issue 11 §5): the latest version of every plan of the year
//! whose jurisdiction is a district inside it, grouped by indicator code, one row per district
//! plan for drill-down, with totals where adding up is meaningful; beside it the report of the
//! higher jurisdiction's own plan, when it has one.
//!
//! What adds up: counts and sums of "at least" and "at most" targets (projects contracted,
//! units recognized, m³ saved): the city's actual is the sum of its districts' actuals and its
//! target the sum of their targets. Rates, coverages, reductions against a base year and
//! "latest" measurements do not add up; they are shown per district only.
//!
//! Pure: the service reads the plans and their reports, this module groups them.

use std::sync::Arc;

use chrono::NaiveDate;
use cwsm_platform::gazetteer::{Gazetteer, Place};
use cwsm_platform::jurisdiction::{Jurisdiction, Level};
use cwsm_platform::{Error, Result};

use crate::plan::{Aggregation, Comparator, Indicator, Kind, StoredPlan};
use crate::report::{Report, Status};

/// One district plan's line of an indicator.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub district: Place,
    /// The city the district is in (for a province's drill-down by city).
    pub city: Option<Place>,
    /// The district plan's indicator code: the line's own, or for a line of a higher plan's
    /// rolled-up indicator one of the codes it sums.
    pub indicator_code: String,
    pub plan_code: String,
    pub plan_version: i64,
    pub actual: f64,
    pub target: f64,
    pub status: Status,
    /// How late it was achieved (with [`Status::AchievedLate`]), days.
    pub days_late: i32,
    pub progress_bp: i32,
    pub deadline: NaiveDate,
}

/// An indicator code over the district plans that have it.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub code: String,
    /// As the first district plan (in code order) names it.
    pub name: String,
    pub name_zh: String,
    pub unit: String,
    pub comparator: Comparator,
    /// The sums of the rows' actuals and targets, when they add up (see the module's note):
    /// every row an "at least" or "at most" count or sum, of the same comparator and unit.
    pub total: Option<Total>,
    /// By district code, then plan code.
    pub rows: Vec<Row>,
    /// For a rolled-up indicator of the city's or province's own plan: that plan's target and
    /// status against the total (the rows are the districts' lines of the codes it sums).
    pub own: Option<OwnTarget>,
}

/// A higher plan's own target over the sum of its districts (a rolled-up indicator).
#[derive(Clone, Debug, PartialEq)]
pub struct OwnTarget {
    pub plan_code: String,
    pub target: f64,
    pub deadline: NaiveDate,
    pub status: Status,
    pub days_late: i32,
    pub progress_bp: i32,
    /// The district indicator codes summed.
    pub from: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Total {
    pub actual: f64,
    pub target: f64,
}

/// The roll-up of a city or province as of a date.
#[derive(Clone, Debug, PartialEq)]
pub struct Rollup {
    pub place: Place,
    pub year: i32,
    pub as_of: NaiveDate,
    /// The reports of the plans made for the city or province itself (usually none or one).
    pub own: Vec<Report>,
    /// In a province's roll-up: the reports of the plans of the cities inside it, which set
    /// targets of their own (their rolled-up lines summing their own districts).
    pub cities: Vec<Report>,
    /// Indicator codes in the order the district plans list them (goals first).
    pub lines: Vec<Line>,
    /// The districts inside with no plan of the year.
    pub without_plan: Vec<Place>,
}

/// The date a roll-up of `year` (0: none given) is as of when no date is asked: today, or
/// the year's last day once today is past it (as a report of a closed window).
pub fn default_as_of(year: i32, today: NaiveDate) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, 12, 31)
        .filter(|end| year > 0 && *end < today)
        .unwrap_or(today)
}

/// The place a roll-up is asked for: a city or a province of `gazetteer`, else
/// INVALID_ARGUMENT on `field`.
pub fn place<'g>(gazetteer: &'g Gazetteer, field: &str, code: &str) -> Result<&'g Place> {
    let place = gazetteer.place(field, code)?;
    match place.level() {
        Level::City | Level::Province => Ok(place),
        Level::District | Level::Town => Err(Error::invalid(
            field,
            format!(
                "{} {} is not a city or province: a district's progress is the report of its plan (GetReport)",
                place.code, place.name_zh
            ),
        )),
    }
}

/// The plans of the cities strictly inside `place` (a province) for `year`, of `plans`.
pub fn select_cities<'p>(
    place: &Jurisdiction,
    year: i32,
    plans: &'p [Arc<StoredPlan>],
) -> Vec<&'p StoredPlan> {
    plans
        .iter()
        .map(|p| &**p)
        .filter(|p| {
            let j = &p.plan.jurisdiction;
            p.plan.year == year && j.level() == Level::City && j != place && place.contains(j)
        })
        .collect()
}

/// Which of `plans` (the latest version of each code) the roll-up of `place` for `year` reads:
/// those made for `place` itself, and those of districts inside it that `gazetteer` knows.
pub fn select<'p>(
    gazetteer: &Gazetteer,
    place: &Jurisdiction,
    year: i32,
    plans: &'p [Arc<StoredPlan>],
) -> (Vec<&'p StoredPlan>, Vec<&'p StoredPlan>) {
    let of_year = || {
        plans
            .iter()
            .map(|p| &**p)
            .filter(move |p| p.plan.year == year)
    };
    let own = of_year()
        .filter(|p| &p.plan.jurisdiction == place)
        .collect();
    let districts = of_year()
        .filter(|p| {
            let j = &p.plan.jurisdiction;
            j.level() == Level::District && place.contains(j) && gazetteer.get(j).is_some()
        })
        .collect();
    (own, districts)
}

/// Whether an indicator's actuals and targets add up across districts.
fn adds_up(i: &Indicator) -> bool {
    matches!(i.comparator, Comparator::AtLeast | Comparator::AtMost)
        && (i.kind == Kind::Counted || i.aggregation == Aggregation::Sum)
}

/// Groups the district reports (any order) into the roll-up of `place`.
pub fn build(
    gazetteer: &Gazetteer,
    place: &Place,
    year: i32,
    as_of: NaiveDate,
    own: Vec<Report>,
    cities: Vec<Report>,
    mut districts: Vec<Arc<Report>>,
) -> Rollup {
    districts.sort_by(|a, b| {
        (a.plan.plan.jurisdiction.as_str(), a.plan.plan.code.as_str())
            .cmp(&(b.plan.plan.jurisdiction.as_str(), b.plan.plan.code.as_str()))
    });
    let mut lines: Vec<Line> = Vec::new();
    // Whether every row so far of the line at the same index adds up.
    let mut summable: Vec<bool> = Vec::new();
    for report in &districts {
        let Some(district) = gazetteer.get(&report.plan.plan.jurisdiction) else {
            continue;
        };
        let city = city_of(gazetteer, &district.code);
        for l in &report.lines {
            let i = &l.indicator;
            let row = Row {
                district: district.clone(),
                city: city.clone(),
                indicator_code: i.code.clone(),
                plan_code: report.plan.plan.code.clone(),
                plan_version: report.plan.version,
                actual: l.actual,
                target: i.target,
                status: l.evaluation.status,
                days_late: l.evaluation.days_late,
                progress_bp: l.evaluation.progress_bp,
                deadline: i.deadline,
            };
            match lines.iter().position(|line| line.code == i.code) {
                Some(k) => {
                    let line = &mut lines[k];
                    summable[k] = summable[k]
                        && adds_up(i)
                        && i.comparator == line.comparator
                        && i.unit == line.unit;
                    line.rows.push(row);
                }
                None => {
                    summable.push(adds_up(i));
                    lines.push(Line {
                        code: i.code.clone(),
                        name: i.name.clone(),
                        name_zh: i.name_zh.clone(),
                        unit: i.unit.clone(),
                        comparator: i.comparator,
                        total: None,
                        rows: vec![row],
                        own: None,
                    });
                }
            }
        }
    }
    for (line, adds) in lines.iter_mut().zip(summable) {
        if adds {
            line.total = total_of(&line.rows);
        }
    }
    // The own plans' rolled-up indicators: a line each, over the district rows of the codes
    // it sums, with the higher plan's own target and status (its report summed the same).
    let mut rolled = Vec::new();
    for report in &own {
        for l in report
            .lines
            .iter()
            .filter(|l| l.indicator.kind == Kind::RolledUp)
        {
            let i = &l.indicator;
            let rows: Vec<Row> = lines
                .iter()
                .filter(|line| i.rolled_up_from.contains(&line.code))
                .flat_map(|line| line.rows.iter().cloned())
                .collect();
            rolled.push(Line {
                code: i.code.clone(),
                name: i.name.clone(),
                name_zh: i.name_zh.clone(),
                unit: i.unit.clone(),
                comparator: i.comparator,
                total: total_of(&rows),
                rows,
                own: Some(OwnTarget {
                    plan_code: report.plan.plan.code.clone(),
                    target: i.target,
                    deadline: i.deadline,
                    status: l.evaluation.status,
                    days_late: l.evaluation.days_late,
                    progress_bp: l.evaluation.progress_bp,
                    from: i.rolled_up_from.clone(),
                }),
            });
        }
    }
    rolled.append(&mut lines);
    let lines = rolled;
    let planned: Vec<&Jurisdiction> = districts
        .iter()
        .map(|r| &r.plan.plan.jurisdiction)
        .collect();
    let without_plan = gazetteer
        .districts_within(&place.code)
        .filter(|d| !planned.contains(&&d.code))
        .cloned()
        .collect();
    Rollup {
        place: place.clone(),
        year,
        as_of,
        own,
        cities,
        lines,
        without_plan,
    }
}

/// The sums of `rows`' actuals and targets; `None` when one is not finite (finite inputs of at
/// most 10¹⁵ stay finite).
fn total_of(rows: &[Row]) -> Option<Total> {
    let actual: f64 = rows.iter().map(|r| r.actual).sum();
    let target: f64 = rows.iter().map(|r| r.target).sum();
    (actual.is_finite() && target.is_finite()).then_some(Total { actual, target })
}

/// The city a district belongs to, when `gazetteer` knows it.
fn city_of(gazetteer: &Gazetteer, district: &Jurisdiction) -> Option<Place> {
    gazetteer
        .ancestors(district)
        .into_iter()
        .find(|p| p.level() == Level::City)
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan;
    use crate::report::{Evaluation, IndicatorReport};

    fn stored(code: &str, jurisdiction: &str, version: i64) -> StoredPlan {
        let mut p = plan::parse(plan::DEFAULT_PLAN_TOML).expect("plan");
        p.code = code.into();
        p.jurisdiction = Jurisdiction::parse("j", jurisdiction).expect("code");
        StoredPlan {
            id: format!("{code}-v{version}"),
            version,
            plan: p,
            document: String::new(),
            sha256: String::new(),
            loaded_by: "t".into(),
            loaded_at_ms: 0,
        }
    }

    /// A report whose every indicator has `actual`.
    fn report(plan: StoredPlan, actual: f64) -> Report {
        let lines = plan
            .plan
            .all_indicators()
            .into_iter()
            .map(|i| IndicatorReport {
                indicator: i.clone(),
                actual,
                evaluation: Evaluation {
                    progress_bp: 0,
                    status: Status::OnTrack,
                    days_remaining: 0,
                    days_late: 0,
                },
                by_town: vec![],
                by_sector: vec![],
                by_department: vec![],
                last_change_ms: None,
                history: vec![],
                completed: None,
            })
            .collect();
        Report {
            plan,
            as_of: NaiveDate::from_ymd_opt(2020, 12, 31).expect("date"),
            lines,
            generated_at_ms: 0,
        }
    }

    #[test]
    fn counts_add_up_and_rates_stay_per_district() {
        let g = Gazetteer::builtin();
        let city = place(g, "jurisdiction_code", "320400").expect("Changzhou");
        let as_of = NaiveDate::from_ymd_opt(2020, 12, 31).expect("date");
        // Wujin given first: rows come in district code order all the same.
        let r = build(
            g,
            city,
            2020,
            as_of,
            vec![],
            vec![],
            vec![
                Arc::new(report(stored("wujin-2020", "320412", 1), 3.0)),
                Arc::new(report(stored("xinbei-2020", "320411", 2), 2.0)),
            ],
        );
        let a8 = r
            .lines
            .iter()
            .find(|l| l.code == "A8-CONTRACT-PROJECTS")
            .expect("a8");
        let codes: Vec<&str> = a8.rows.iter().map(|r| r.district.code.as_str()).collect();
        assert_eq!(codes, ["320411", "320412"]);
        let target = a8.rows[0].target;
        // 2 (Xinbei) + 3 (Wujin) = 5 projects; the targets add up as well.
        assert_eq!(
            a8.total,
            Some(Total {
                actual: 5.0,
                target: target * 2.0
            })
        );
        // A rate is not summed.
        let rate = r
            .lines
            .iter()
            .find(|l| l.comparator == Comparator::RateAtLeast)
            .expect("a rate indicator");
        assert_eq!(rate.total, None);
        assert_eq!(rate.rows.len(), 2);
        // The other four districts of Changzhou have no plan.
        assert_eq!(r.without_plan.len(), 4);
        assert!(r.without_plan.iter().all(|p| p.code.as_str() != "320411"));
    }

    /// A district's "achieved late by 18 days" reaches its row with the days (the dashboard and
    /// the CLI print 逾期完成（晚18天）).
    #[test]
    fn a_row_says_how_late_its_district_achieved() {
        let g = Gazetteer::builtin();
        let city = place(g, "jurisdiction_code", "320400").expect("Changzhou");
        let mut late = report(stored("xinbei-2020", "320411", 1), 2.0);
        for l in &mut late.lines {
            l.evaluation.status = Status::AchievedLate;
            l.evaluation.days_late = 18;
        }
        let as_of = NaiveDate::from_ymd_opt(2020, 12, 31).expect("date");
        let r = build(g, city, 2020, as_of, vec![], vec![], vec![Arc::new(late)]);
        let row = &r.lines[0].rows[0];
        assert_eq!((row.status, row.days_late), (Status::AchievedLate, 18));
    }

    #[test]
    fn a_past_year_is_rolled_up_as_of_its_last_day() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).expect("date");
        assert_eq!(default_as_of(2020, d(2026, 12, 2)), d(2020, 12, 31));
        assert_eq!(default_as_of(2026, d(2026, 12, 2)), d(2026, 12, 2));
        assert_eq!(default_as_of(0, d(2026, 12, 2)), d(2026, 12, 2));
    }

    #[test]
    fn a_rollup_is_of_a_city_or_province_and_reads_the_plans_inside() {
        let g = Gazetteer::builtin();
        assert!(place(g, "jurisdiction_code", "320000").is_ok());
        let e = place(g, "jurisdiction_code", "320411").expect_err("a district");
        assert!(matches!(e, Error::InvalidArgument { field, .. } if field == "jurisdiction_code"));
        let plans: Vec<Arc<StoredPlan>> = [
            stored("xinbei-2020", "320411", 1),
            stored("changzhou-2020", "320400", 1),
            stored("jiangsu-2020", "320000", 1),
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        let city = Jurisdiction::parse("j", "320400").expect("code");
        let (own, districts) = select(g, &city, 2020, &plans);
        assert_eq!(own.len(), 1);
        assert_eq!(own[0].plan.code, "changzhou-2020");
        assert_eq!(districts.len(), 1);
        assert_eq!(districts[0].plan.code, "xinbei-2020");
        // Another year reads none.
        let (own, districts) = select(g, &city, 2021, &plans);
        assert!(own.is_empty() && districts.is_empty());
    }
}
