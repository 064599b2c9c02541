//! Reporting periods, their verification and disputes, non-routine adjustments and
//! settlements, in plain Rust: the records and who may move a period to which status.

use cwsm_platform::auth::Principal;
use cwsm_platform::quantity::{Litres, Overflow};
use cwsm_platform::vocab::ContractModel;
use cwsm_platform::{Error, Result};

use crate::domain::Project;
use crate::mv::PeriodFigures;

/// Where a reporting period's savings stand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeriodStatus {
    /// Computed from readings, not stored; figures may still change.
    Reported,
    Submitted,
    Verified,
    Disputed,
    Settled,
}

impl PeriodStatus {
    pub fn code(self) -> &'static str {
        match self {
            PeriodStatus::Reported => "reported",
            PeriodStatus::Submitted => "submitted",
            PeriodStatus::Verified => "verified",
            PeriodStatus::Disputed => "disputed",
            PeriodStatus::Settled => "settled",
        }
    }

    pub fn from_code(s: &str) -> Option<PeriodStatus> {
        [
            PeriodStatus::Reported,
            PeriodStatus::Submitted,
            PeriodStatus::Verified,
            PeriodStatus::Disputed,
            PeriodStatus::Settled,
        ]
        .into_iter()
        .find(|p| p.code() == s)
    }

    /// Whether the period's savings count as verified (toward totals and milestones).
    pub fn counts_as_verified(self) -> bool {
        matches!(self, PeriodStatus::Verified | PeriodStatus::Settled)
    }
}

/// A reporting period's savings: computed (REPORTED, no id) or stored (frozen at submission).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Period {
    pub id: String,
    pub project_id: String,
    pub start_date: String,
    pub end_date: String,
    pub figures: PeriodFigures,
    pub promised_savings_litres: i64,
    pub status: PeriodStatus,
    pub dispute_reason: String,
    /// Who raised the open dispute ([`raiser`]); never its resolver.
    pub disputed_by: String,
    pub notes: Vec<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub version: i64,
}

/// What is asked of a stored period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeriodStep {
    Verify,
    Dispute,
    Resolve,
    Settle,
}

impl PeriodStep {
    fn name(self) -> &'static str {
        match self {
            PeriodStep::Verify => "verify",
            PeriodStep::Dispute => "dispute",
            PeriodStep::Resolve => "resolve a dispute on",
            PeriodStep::Settle => "settle",
        }
    }
}

/// Who raises a dispute, as kept with the period: the role and organization (a person of the
/// same organization is the same raiser), or an administrator's subject.
pub fn raiser(who: &Principal) -> String {
    format!(
        "{}:{}",
        who.role,
        who.org
            .as_deref()
            .filter(|o| !o.is_empty())
            .unwrap_or(&who.subject)
    )
}

/// The steps a period in `status` allows.
pub fn allowed_steps(status: PeriodStatus) -> &'static [&'static str] {
    match status {
        PeriodStatus::Reported => &["submit"],
        PeriodStatus::Submitted => &["verify", "dispute"],
        PeriodStatus::Verified => &["settle", "dispute"],
        PeriodStatus::Disputed => &["resolve"],
        PeriodStatus::Settled => &[],
    }
}

/// Checks that `who` may take `step` on `period` of `project`; the errors name the allowed
/// steps or the roles that may.
pub fn check_step(
    project: &Project,
    period: &Period,
    who: &Principal,
    step: PeriodStep,
) -> Result<()> {
    // A party in its own role (not an administrator acting as one) or the assigned verifier.
    let raises = project.own_party(who) || project.assigned_verifier(who);
    let allowed = match step {
        // The independent third party assigned to the project checks the savings.
        PeriodStep::Verify => project.assigned_verifier(who),
        PeriodStep::Dispute => raises,
        PeriodStep::Resolve => project.assigned_verifier(who) || project.administered_by(who),
        PeriodStep::Settle => project.party(who),
    };
    if !allowed {
        let why = match step {
            PeriodStep::Verify if project.verifier_org.is_empty() => format!(
                "project {} has no verifier assigned yet; an administrator assigns one (AssignVerifier) or approves one a party proposes (ProposeVerifier)",
                project.id
            ),
            PeriodStep::Verify => format!(
                "only the verifier assigned to project {} (org {}) verifies its periods",
                project.id, project.verifier_org
            ),
            PeriodStep::Dispute => format!(
                "disputes on project {} are raised by its company, its water user or its assigned verifier (administrators resolve them)",
                project.id
            ),
            PeriodStep::Resolve => format!(
                "only the verifier assigned to project {} or an administrator resolves its disputes",
                project.id
            ),
            PeriodStep::Settle => format!(
                "only the parties to project {} or an administrator may settle its periods",
                project.id
            ),
        };
        return Err(project.refuse(who, why));
    }
    if step == PeriodStep::Resolve
        && !period.disputed_by.is_empty()
        && period.disputed_by == raiser(who)
    {
        return Err(Error::denied(format!(
            "the dispute on period {} was raised by {}; an administrator or the assigned verifier other than its raiser resolves it",
            period.id, period.disputed_by
        )));
    }
    let ok = match step {
        PeriodStep::Verify => period.status == PeriodStatus::Submitted,
        PeriodStep::Dispute => matches!(
            period.status,
            PeriodStatus::Submitted | PeriodStatus::Verified
        ),
        PeriodStep::Resolve => period.status == PeriodStatus::Disputed,
        // A settled period settles again as a no-op (the first settlement is returned).
        PeriodStep::Settle => matches!(
            period.status,
            PeriodStatus::Verified | PeriodStatus::Settled
        ),
    };
    if !ok {
        let allowed = allowed_steps(period.status);
        return Err(Error::precondition(format!(
            "period {} ({} to {}) is {}; cannot {} it (allowed: {})",
            period.id,
            period.start_date,
            period.end_date,
            period.status.code(),
            step.name(),
            if allowed.is_empty() {
                "none: it is settled".to_string()
            } else {
                allowed.join(", ")
            }
        )));
    }
    Ok(())
}

/// A documented non-routine adjustment to the baseline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NonRoutineAdjustment {
    pub id: String,
    pub project_id: String,
    pub start_date: String,
    pub end_date: String,
    pub litres: i64,
    pub reason: String,
    pub evidence: String,
    /// Who documented it (subject) and the organization acted for.
    pub recorded_by: String,
    pub recorded_by_org: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub version: i64,
}

/// The money of one settled period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    pub id: String,
    pub project_id: String,
    pub period_id: String,
    pub period_start_date: String,
    pub period_end_date: String,
    pub contract_model: ContractModel,
    pub savings_litres: i64,
    pub price_fen_per_m3: i64,
    pub savings_value_fen: i64,
    pub company_due_fen: i64,
    pub user_due_fen: i64,
    pub shortfall_fen: i64,
    pub hosting_fee_fen: i64,
    pub water_bill_fen: i64,
    pub statement_lines: Vec<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub version: i64,
}

/// A project's measured savings: the baseline fit and the reporting periods.
#[derive(Clone, Debug, PartialEq)]
pub struct SavingsReport {
    pub project_id: String,
    pub fit: Option<crate::mv::Fit>,
    pub sufficiency: Option<crate::mv::Sufficiency>,
    /// Why there is no fit (or why it cannot be used), for people.
    pub problems: Vec<String>,
    pub periods: Vec<Period>,
    pub verified_savings_litres: i64,
    pub promised_savings_litres: i64,
}

impl SavingsReport {
    /// The fit, if the data suffice and it could be made; else why not.
    pub fn usable_fit(&self) -> std::result::Result<&crate::mv::Fit, String> {
        match (&self.fit, &self.sufficiency) {
            (Some(f), Some(s)) if s.ok => Ok(f),
            _ => Err(if self.problems.is_empty() {
                "the baseline data do not suffice".to_string()
            } else {
                self.problems.join("; ")
            }),
        }
    }
}

/// Parses "YYYY-MM-DD".
pub fn date(field: &str, s: &str) -> Result<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| Error::invalid(field, format!("{s:?} is not a date (YYYY-MM-DD)")))
}

/// The baseline period and the first reporting day, when the project has them.
pub fn baseline_dates(
    project: &Project,
) -> Option<(chrono::NaiveDate, chrono::NaiveDate, chrono::NaiveDate)> {
    let start = date("baseline_start_date", &project.baseline_start_date).ok()?;
    let end = date("baseline_end_date", &project.baseline_end_date).ok()?;
    Some((start, end, end.succ_opt()?))
}

/// Litres of the adjustments that fall in `[start, end]`, each pro-rated by its days.
pub fn non_routine_litres(
    adjustments: &[NonRoutineAdjustment],
    start: chrono::NaiveDate,
    end: chrono::NaiveDate,
    open_end: chrono::NaiveDate,
) -> Result<i64, Overflow> {
    let parts = adjustments.iter().filter_map(|a| {
        let s = date("start_date", &a.start_date).ok()?;
        let e = if a.end_date.is_empty() {
            open_end
        } else {
            date("end_date", &a.end_date).ok()?
        };
        let days = (e - s).num_days() + 1;
        let overlap = (e.min(end) - s.max(start)).num_days() + 1;
        (days > 0 && overlap > 0)
            .then(|| Litres(a.litres).pro_rata(overlap, days, "non_routine_adjustment_litres"))
    });
    let mut total = Litres::ZERO;
    for part in parts {
        total = total.checked_add(part?, "non_routine_adjustment_litres")?;
    }
    Ok(total.0)
}

/// The last day of the contract term, where an open-ended adjustment ends: the term from the
/// first reporting day (from `from` while the baseline period is not set; 12 months when the
/// term is not known).
pub fn term_last_day(project: &Project, from: chrono::NaiveDate) -> Option<chrono::NaiveDate> {
    let first = baseline_dates(project).map(|b| b.2).unwrap_or(from);
    let term = u32::try_from(project.contract.contract_term_months)
        .ok()
        .filter(|t| *t > 0)
        .unwrap_or(12);
    first
        .checked_add_months(chrono::Months::new(term))
        .and_then(|d| d.pred_opt())
}

/// Checks a non-routine adjustment of `litres` over `start..=end` (`None`: to the end of the
/// term) against the contract's baseline use: at most that use over the same days (the
/// yearly use pro rata), so an adjustment can double a site's expected use or take it all
/// away, not more. Without a known baseline use only the volume bound applies.
pub fn check_adjustment_bound(
    project: &Project,
    litres: i64,
    start: chrono::NaiveDate,
    end: Option<chrono::NaiveDate>,
) -> Result<()> {
    let yearly = project.contract.baseline_use_litres;
    if yearly <= 0 {
        return Ok(());
    }
    let last = end
        .or_else(|| term_last_day(project, start))
        .unwrap_or(start);
    let days = ((last - start).num_days() + 1).max(1);
    let most = Litres(yearly)
        .pro_rata(days, 365, "adjustment.litres")
        .map(|l| l.0)
        .unwrap_or(i64::MAX);
    if litres.unsigned_abs() > most.unsigned_abs() {
        return Err(Error::invalid(
            "adjustment.litres",
            format!(
                "{litres} L is beyond ±{most} L, the contract's baseline use over the adjustment's {days} days ({yearly} L a year × {days} / 365)"
            ),
        ));
    }
    Ok(())
}

/// Checks a period's dispute adjustments after a resolution (`total`, litres): together at
/// most its adjusted baseline use either way, as a dispute corrects the savings measured,
/// it cannot make up more water than the site was expected to use.
pub fn check_dispute_adjustment(figures: &PeriodFigures, added: i64) -> Result<()> {
    let most = figures.adjusted_baseline_litres.unsigned_abs();
    if figures.dispute_adjustment_litres.unsigned_abs() > most {
        return Err(Error::invalid(
            "adjustment_litres",
            format!(
                "{added:+} L would make the period's dispute adjustments {:+} L, beyond ±{most} L (its adjusted baseline use)",
                figures.dispute_adjustment_litres
            ),
        ));
    }
    Ok(())
}

/// Computes a period from readings (status REPORTED, not stored).
pub fn compute_period(
    project: &Project,
    fit: &crate::mv::Fit,
    days: &[crate::mv::DayUse],
    drivers: &[&crate::mv::DriverDays],
    adjustments: &[NonRoutineAdjustment],
    start: chrono::NaiveDate,
    end: chrono::NaiveDate,
) -> Result<Period, Overflow> {
    let open_end = term_last_day(project, start).unwrap_or(end);
    let nra = non_routine_litres(adjustments, start, end, open_end)?;
    let figures = crate::mv::period_figures(fit, days, start, end, drivers, nra, 0)?;
    let mut notes = figures.notes.clone();
    if !fit.g14_pass {
        let (cv, nmbe) = fit.granularity.thresholds();
        notes.push(format!(
            "the baseline model fails ASHRAE Guideline 14: CV(RMSE) {:.1}% (≤ {:.0}%), NMBE {:.1}% (±{:.0}%)",
            fit.cv_rmse * 100.0,
            cv * 100.0,
            fit.nmbe * 100.0,
            nmbe * 100.0
        ));
    }
    Ok(Period {
        id: String::new(),
        project_id: project.id.clone(),
        start_date: start.to_string(),
        end_date: end.to_string(),
        promised_savings_litres: Litres(project.contract.promised_savings_litres)
            .pro_rata(figures.days, 365, "promised_savings_litres")?
            .0,
        figures,
        status: PeriodStatus::Reported,
        dispute_reason: String::new(),
        disputed_by: String::new(),
        notes,
        created_at_ms: 0,
        updated_at_ms: 0,
        version: 0,
    })
}

/// The savings report: the baseline fitted on the baseline period, and every reporting period
/// that has ended (by `today`) and has readings to its end: stored ones as stored, the others
/// computed as REPORTED. `drivers` holds the recorded values of the M&V plan's drivers; a
/// driver of the plan with none is left out of the model, and the report says so.
pub fn report(
    project: &Project,
    days: &[crate::mv::DayUse],
    granularity: crate::mv::Granularity,
    drivers: &[(String, crate::mv::DriverDays)],
    adjustments: &[NonRoutineAdjustment],
    stored: Vec<Period>,
    today: chrono::NaiveDate,
) -> SavingsReport {
    let mut r = SavingsReport {
        project_id: project.id.clone(),
        fit: None,
        sufficiency: None,
        problems: Vec::new(),
        periods: Vec::new(),
        verified_savings_litres: 0,
        promised_savings_litres: 0,
    };
    let verified = stored.iter().filter(|p| p.status.counts_as_verified());
    match (
        Litres::sum(
            verified.clone().map(|p| Litres(p.figures.savings_litres)),
            "verified_savings_litres",
        ),
        Litres::sum(
            verified.map(|p| Litres(p.promised_savings_litres)),
            "promised_savings_litres",
        ),
    ) {
        (Ok(v), Ok(p)) => {
            r.verified_savings_litres = v.0;
            r.promised_savings_litres = p.0;
        }
        (Err(e), _) | (_, Err(e)) => r.problems.push(format!("the contract-to-date totals: {e}")),
    }
    let Some((start, end, first)) = baseline_dates(project) else {
        r.problems.push(
            "the baseline period is not set (UpdateProject sets it while the project is contracted)"
                .to_string(),
        );
        r.periods = stored;
        return r;
    };
    let mut sufficiency = crate::mv::sufficiency(days, start, end);
    if !sufficiency.ok {
        r.problems.extend(sufficiency.notes.iter().cloned());
    }
    let mut used: Vec<(String, &crate::mv::DriverDays)> = Vec::new();
    for name in &project.contract.drivers {
        match drivers.iter().find(|(n, v)| n == name && !v.is_empty()) {
            Some((n, v)) => used.push((n.clone(), v)),
            None => sufficiency.notes.push(format!(
                "driver {name} has no recorded values (RecordDriverValues); the model leaves it out"
            )),
        }
    }
    r.sufficiency = Some(sufficiency);
    let values: Vec<&crate::mv::DriverDays> = used.iter().map(|(_, v)| *v).collect();
    match crate::mv::fit_baseline(days, start, end, granularity, &used) {
        Ok(f) => r.fit = Some(f),
        Err(e) => r
            .problems
            .push(format!("the baseline cannot be fitted: {e}")),
    }
    let last_data = days.iter().map(|d| d.day).max();
    let yesterday = today.pred_opt().unwrap_or(today);
    let months = u32::try_from(project.reporting_period_months.max(1)).unwrap_or(1);
    let ended = match last_data {
        Some(last) => crate::mv::reporting_periods(first, months, last.min(yesterday)),
        None => Vec::new(),
    };
    let mut periods = stored;
    for (s, e) in ended {
        if periods.iter().any(|p| p.start_date == s.to_string()) {
            continue;
        }
        if let Some(f) = &r.fit {
            match compute_period(project, f, days, &values, adjustments, s, e) {
                Ok(p) => periods.push(p),
                // Left out, and said: it cannot be submitted with figures that do not fit.
                Err(o) => r
                    .problems
                    .push(format!("the period {s} to {e} cannot be computed: {o}")),
            }
        }
    }
    periods.sort_by(|a, b| a.start_date.cmp(&b.start_date));
    r.periods = periods;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjustments_pro_rate_by_days() {
        let d = |s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        let a = NonRoutineAdjustment {
            id: "a".into(),
            project_id: "p".into(),
            start_date: "2025-01-16".into(),
            end_date: "2025-02-14".into(), // 30 days, 3,000 L
            litres: 3_000,
            reason: "new dormitory wing".into(),
            evidence: String::new(),
            recorded_by: String::new(),
            recorded_by_org: String::new(),
            created_at_ms: 0,
            updated_at_ms: 0,
            version: 1,
        };
        let open = d("2030-12-31");
        // January holds 16 of its 30 days.
        assert_eq!(
            non_routine_litres(
                std::slice::from_ref(&a),
                d("2025-01-01"),
                d("2025-01-31"),
                open
            ),
            Ok(1_600)
        );
        assert_eq!(
            non_routine_litres(&[a], d("2025-03-01"), d("2025-03-31"), open),
            Ok(0)
        );
    }
}
