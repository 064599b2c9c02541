//! Achievements toward recorded indicators: what an administrator records with evidence, and its
//! corrections (each a new revision; the earlier ones are kept).

use chrono::NaiveDate;
use cwsm_platform::vocab::Sector;
use cwsm_platform::{Error, Result};

use crate::plan::Plan;
use crate::report::parse_date;

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
    /// Why it was corrected; empty for the original.
    pub reason: String,
    pub recorded_by: String,
    pub recorded_at_ms: i64,
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
pub fn check_range(indicator: &crate::plan::Indicator, value: f64) -> Result<()> {
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
    /// Checks the request against the plan (the latest version of its code).
    pub fn validate(&mut self, plan: &Plan) -> Result<()> {
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
            a.validate(&plan),
            Err(Error::InvalidArgument { .. })
        ));
        let mut rate = new("A2-SCHOOLS-SUCCESS-RATE");
        rate.value = 140.0;
        assert!(matches!(
            rate.validate(&plan),
            Err(Error::InvalidArgument { .. })
        ));
        rate.value = 70.0;
        rate.validate(&plan).expect("a rate of 70%");
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
        assert!(new("A2-GOV-AGENCIES").validate(&plan).is_ok());
        let e = new("A8-CONTRACT-PROJECTS")
            .validate(&plan)
            .expect_err("counted");
        assert!(matches!(e, Error::InvalidArgument { field, .. } if field == "indicator_code"));
        assert!(new("NOPE").validate(&plan).is_err());
        let mut bad_date = new("G1");
        bad_date.achieved_date = "2020-02-30".into();
        assert!(
            matches!(bad_date.validate(&plan), Err(Error::InvalidArgument { field, .. }) if field == "achieved_date")
        );
        let mut bad_dept = new("G1");
        bad_dept.department = "police".into();
        assert!(bad_dept.validate(&plan).is_err());
    }
}
