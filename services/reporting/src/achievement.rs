//! Achievements toward recorded indicators: what an administrator records with evidence, and its
//! corrections (each a new revision; the earlier ones are kept).
//!
//! Checked against the plan (issue 11 §3): the achieved date lies inside the plan's window and
//! not after today (China Standard Time); a unit is counted once per indicator. Departments
//! record their own (§6): a revision recorded by a participating department is pending until a
//! lead department approves it; approvals and rejections are revisions too, so the history
//! shows who decided what and why.

use chrono::NaiveDate;
use cwsm_platform::auth::{Principal, Scope};
use cwsm_platform::vocab::Sector;
use cwsm_platform::{Error, Result};

use crate::plan::{Indicator, Plan};
use crate::report::parse_date;

/// Whether a revision counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Recorded (or corrected) by a participating department: waits for a lead department.
    Pending,
    /// Counts: recorded by a lead department or a district administrator, or approved.
    Approved,
    /// Turned down by a lead department, with the reason; does not count.
    Rejected,
}

impl State {
    pub const ALL: [State; 3] = [State::Pending, State::Approved, State::Rejected];

    /// The stored code.
    pub fn code(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Rejected => "rejected",
        }
    }

    pub fn from_code(code: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// The key a unit is counted once by: its name trimmed, case-insensitive.
pub fn unit_key(unit_name: &str) -> String {
    unit_name.trim().to_lowercase()
}

/// INVALID_ARGUMENT on `achieved_date` unless `date` lies inside the plan's window and is not
/// after `today` (China Standard Time).
pub fn check_achieved_date(plan: &Plan, date: NaiveDate, today: NaiveDate) -> Result<()> {
    if date > today {
        return Err(Error::invalid(
            "achieved_date",
            format!("{date} is in the future (today is {today}, China Standard Time)"),
        ));
    }
    if !plan.window.contains(date) {
        return Err(Error::invalid(
            "achieved_date",
            format!(
                "{date} is outside plan {}'s window {}..{}",
                plan.code, plan.window.from, plan.window.to
            ),
        ));
    }
    Ok(())
}

/// One revision of an achievement.
#[derive(Clone, Debug, PartialEq)]
pub struct Revision {
    /// The row's own id.
    pub id: String,
    /// 1 for the original record.
    pub revision: i64,
    pub value: f64,
    pub achieved_date: String,
    pub evidence: String,
    pub note: String,
    pub retracted: bool,
    /// Why it was corrected, approved or rejected; empty for the original.
    pub reason: String,
    pub recorded_by: String,
    pub recorded_at_ms: i64,
    /// Whether this revision counts (only the current revision's state matters).
    pub state: State,
}

/// An achievement with its history; the last revision is current.
#[derive(Clone, Debug, PartialEq)]
pub struct Achievement {
    pub id: String,
    pub plan_code: String,
    pub indicator_code: String,
    pub unit_name: String,
    pub department: String,
    pub town: String,
    pub sector: Option<Sector>,
    /// Oldest first; never empty.
    pub revisions: Vec<Revision>,
}

impl Achievement {
    pub fn current(&self) -> &Revision {
        // The store never builds an achievement without its first revision.
        self.revisions
            .last()
            .expect("an achievement has at least one revision")
    }

    pub fn version(&self) -> i64 {
        self.current().revision
    }

    pub fn state(&self) -> State {
        self.current().state
    }

    pub fn created_at_ms(&self) -> i64 {
        self.revisions
            .first()
            .map(|r| r.recorded_at_ms)
            .unwrap_or(0)
    }
}

/// What RecordAchievement asks to record.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAchievement {
    pub plan_code: String,
    pub indicator_code: String,
    pub unit_name: String,
    pub achieved_date: String,
    pub evidence: String,
    pub value: f64,
    pub note: String,
    pub department: String,
    pub town: String,
    pub sector: Option<Sector>,
}

/// What CorrectAchievement asks to change.
#[derive(Clone, Debug, PartialEq)]
pub struct Correction {
    pub value: f64,
    pub achieved_date: String,
    pub evidence: String,
    pub note: String,
    pub retract: bool,
    pub reason: String,
}

fn check_date(field: &str, text: &str) -> Result<NaiveDate> {
    parse_date(text)
        .ok_or_else(|| Error::invalid(field, format!("{text:?} is not a date YYYY-MM-DD")))
}

fn check_value(value: f64) -> Result<()> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid("value", "must be a finite number"))
    }
}

/// Checks a value against what the indicator's comparator allows: rates and coverage are
/// percentages (0–100), a reduction against a base year may be negative (use grew) but not
/// below −100%, anything else (units recognized, measured quantities) is not negative.
pub fn check_range(indicator: &Indicator, value: f64) -> Result<()> {
    use crate::plan::Comparator;
    check_value(value)?;
    let (low, high) = match indicator.comparator {
        Comparator::RateAtLeast | Comparator::RateAtMost | Comparator::Coverage => (0.0, 100.0),
        Comparator::PercentReduction => (-100.0, 100.0),
        Comparator::AtLeast | Comparator::AtMost => (0.0, f64::MAX),
    };
    if value < low || value > high {
        let range = if high == f64::MAX {
            format!("at least {low}")
        } else {
            format!("between {low} and {high}")
        };
        return Err(Error::invalid(
            "value",
            format!(
                "{value} is out of range for {} ({}, in {}): {range}",
                indicator.code,
                indicator.comparator.code(),
                indicator.unit
            ),
        ));
    }
    Ok(())
}

impl NewAchievement {
    /// Checks the request against the plan (the latest version of its code) on `today`.
    pub fn validate(&mut self, plan: &Plan, today: NaiveDate) -> Result<()> {
        let indicator = plan.indicator(&self.indicator_code).ok_or_else(|| {
            Error::invalid(
                "indicator_code",
                format!(
                    "plan {} has no indicator {:?}",
                    plan.code, self.indicator_code
                ),
            )
        })?;
        if !indicator.kind.records() {
            return Err(Error::invalid(
                "indicator_code",
                format!(
                    "{} is counted from project milestones; only recorded (and counted_and_recorded) indicators take achievements",
                    indicator.code
                ),
            ));
        }
        let date = check_date("achieved_date", &self.achieved_date)?;
        check_achieved_date(plan, date, today)?;
        self.achieved_date = date.format("%Y-%m-%d").to_string();
        check_range(indicator, self.value)?;
        if !self.department.is_empty()
            && !plan.departments.iter().any(|d| d.code == self.department)
        {
            return Err(Error::invalid(
                "department",
                format!(
                    "{:?} is not a department code of plan {}",
                    self.department, plan.code
                ),
            ));
        }
        if self.unit_name.trim().is_empty() {
            return Err(Error::invalid(
                "unit_name",
                "required: the unit the achievement is about (e.g. \"district\")",
            ));
        }
        Ok(())
    }
}

impl Correction {
    /// Checks a correction's value and date against the plan on `today` (a retraction keeps
    /// what it retracts and is not checked).
    pub fn check_against(
        &self,
        plan: &Plan,
        indicator: &Indicator,
        today: NaiveDate,
    ) -> Result<()> {
        if self.retract {
            return Ok(());
        }
        check_range(indicator, self.value)?;
        let date = check_date("achieved_date", &self.achieved_date)?;
        check_achieved_date(plan, date, today)
    }

    /// Checks the correction and fills what a retraction keeps from `current`.
    pub fn validate(&mut self, current: &Revision) -> Result<()> {
        if self.reason.trim().is_empty() {
            return Err(Error::invalid(
                "reason",
                "required: why the achievement is corrected",
            ));
        }
        if current.retracted {
            return Err(Error::precondition(
                "the achievement is retracted; record a new one",
            ));
        }
        if self.retract {
            self.value = current.value;
            self.achieved_date = current.achieved_date.clone();
            self.evidence = current.evidence.clone();
            if self.note.is_empty() {
                self.note = current.note.clone();
            }
            return Ok(());
        }
        let date = check_date("achieved_date", &self.achieved_date)?;
        self.achieved_date = date.format("%Y-%m-%d").to_string();
        check_value(self.value)
    }
}

/// The department an administrator is scoped to, if any (`dept` of its token).
pub fn caller_department(caller: &Principal) -> Option<&str> {
    match &caller.scope {
        Scope::Within { department, .. } => department.as_deref(),
        Scope::Platform => None,
    }
}

/// PERMISSION_DENIED unless `caller` administers the plan's jurisdiction (a department's
/// administrator: its department's part of it). `what` is the act, for the message.
pub fn require_plan_jurisdiction(caller: &Principal, what: &str, plan: &Plan) -> Result<()> {
    caller.require_administer(
        &format!("{what} of plan {}", plan.code),
        &plan.jurisdiction,
        caller_department(caller),
    )
}

/// Who may record or correct achievements of `indicator`, and in which state they land: an
/// administrator of the plan's jurisdiction without a department, or of a lead department →
/// approved (counts at once); of a participating department → pending (counts once a lead
/// department approves); of any other department → PERMISSION_DENIED naming the departments
/// that may.
pub fn recording_state(
    caller: &Principal,
    what: &str,
    plan: &Plan,
    indicator: &Indicator,
) -> Result<State> {
    require_plan_jurisdiction(caller, what, plan)?;
    let Some(department) = caller_department(caller) else {
        return Ok(State::Approved);
    };
    if indicator.lead.iter().any(|d| d == department) {
        return Ok(State::Approved);
    }
    if indicator.participants.iter().any(|d| d == department) {
        return Ok(State::Pending);
    }
    Err(Error::denied(format!(
        "department {department} may not {what} of {}: only its lead departments ({}) and participating departments ({}) may",
        indicator.code,
        names(&indicator.lead),
        names(&indicator.participants),
    )))
}

/// PERMISSION_DENIED unless `caller` may approve or reject achievements of `indicator`: an
/// administrator of the plan's jurisdiction without a department, or of a lead department.
pub fn require_approver(
    caller: &Principal,
    what: &str,
    plan: &Plan,
    indicator: &Indicator,
) -> Result<()> {
    require_plan_jurisdiction(caller, what, plan)?;
    match caller_department(caller) {
        None => Ok(()),
        Some(d) if indicator.lead.iter().any(|l| l == d) => Ok(()),
        Some(d) => Err(Error::denied(format!(
            "department {d} may not {what} of {}: only its lead departments ({}) or the district office may",
            indicator.code,
            names(&indicator.lead)
        ))),
    }
}

fn names(codes: &[String]) -> String {
    if codes.is_empty() {
        "none".to_string()
    } else {
        codes.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan;

    #[test]
    fn values_out_of_range_are_refused() {
        let plan = plan::parse(plan::DEFAULT_PLAN_TOML).expect("plan");
        let mut a = new("A2-GOV-AGENCIES");
        a.value = -3.0;
        assert!(matches!(
            a.validate(&plan, today()),
            Err(Error::InvalidArgument { .. })
        ));
        let mut rate = new("A2-SCHOOLS-SUCCESS-RATE");
        rate.value = 140.0;
        assert!(matches!(
            rate.validate(&plan, today()),
            Err(Error::InvalidArgument { .. })
        ));
        rate.value = 70.0;
        rate.validate(&plan, today()).expect("a rate of 70%");
    }

    /// A day after the 2020 plan's window, as its administrators would record on.
    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2021, 3, 1).expect("date")
    }

    /// Issue 11 §3: 9999-12-31 on a 2020 plan was accepted; so was a 2019 date.
    #[test]
    fn achieved_dates_in_the_future_or_outside_the_window_are_refused() {
        let plan = plan::parse(plan::DEFAULT_PLAN_TOML).expect("plan");
        for (date, says) in [
            ("9999-12-31", "in the future"),
            ("2021-03-02", "in the future"),
            (
                "2019-12-31",
                "outside plan xinbei-2020's window 2020-01-01..2020-12-31",
            ),
            (
                "2021-01-01",
                "outside plan xinbei-2020's window 2020-01-01..2020-12-31",
            ),
        ] {
            let mut a = new("A2-GOV-AGENCIES");
            a.achieved_date = date.into();
            let e = a.validate(&plan, today()).expect_err(date);
            assert!(
                matches!(&e, Error::InvalidArgument { field, reason } if field == "achieved_date" && reason.contains(says)),
                "{date}: {e:?}"
            );
        }
        // The window's ends are inside it.
        for date in ["2020-01-01", "2020-12-31"] {
            let mut a = new("A2-GOV-AGENCIES");
            a.achieved_date = date.into();
            a.validate(&plan, today()).expect(date);
        }
        // Corrections follow the same rules.
        let indicator = plan.indicator("A2-GOV-AGENCIES").expect("indicator");
        let mut fix = Correction {
            value: 1.0,
            achieved_date: "9999-12-31".into(),
            evidence: String::new(),
            note: String::new(),
            retract: false,
            reason: "date".into(),
        };
        assert!(matches!(
            fix.check_against(&plan, indicator, today()),
            Err(Error::InvalidArgument { field, .. }) if field == "achieved_date"
        ));
        fix.achieved_date = "2020-11-30".into();
        fix.check_against(&plan, indicator, today())
            .expect("inside");
    }

    #[test]
    fn a_unit_is_named_by_its_trimmed_case_insensitive_name() {
        assert_eq!(
            unit_key("  Xinbei Education Bureau "),
            unit_key("xinbei education bureau")
        );
        assert_eq!(unit_key(" 新北区教育局"), "新北区教育局");
        assert_eq!(State::from_code("pending"), Some(State::Pending));
        assert_eq!(State::from_code("counted"), None);
    }

    fn new(indicator: &str) -> NewAchievement {
        NewAchievement {
            plan_code: "xinbei-2020".into(),
            indicator_code: indicator.into(),
            unit_name: "新北区教育局".into(),
            achieved_date: "2020-06-01".into(),
            evidence: "doc 1".into(),
            value: 1.0,
            note: String::new(),
            department: "edu".into(),
            town: String::new(),
            sector: None,
        }
    }

    #[test]
    fn only_recorded_indicators_take_achievements() {
        let plan = plan::parse(plan::DEFAULT_PLAN_TOML).expect("plan");
        assert!(new("A2-GOV-AGENCIES").validate(&plan, today()).is_ok());
        let e = new("A8-CONTRACT-PROJECTS")
            .validate(&plan, today())
            .expect_err("counted");
        assert!(matches!(e, Error::InvalidArgument { field, .. } if field == "indicator_code"));
        assert!(new("NOPE").validate(&plan, today()).is_err());
        let mut bad_date = new("G1");
        bad_date.achieved_date = "2020-02-30".into();
        assert!(
            matches!(bad_date.validate(&plan, today()), Err(Error::InvalidArgument { field, .. }) if field == "achieved_date")
        );
        let mut bad_dept = new("G1");
        bad_dept.department = "police".into();
        assert!(bad_dept.validate(&plan, today()).is_err());
    }
}
