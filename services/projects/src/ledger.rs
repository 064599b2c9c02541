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
    /// The checks the assigned verifier waived for this period (see [`check_submittable`]).
    pub waivers: Vec<Waiver>,
    /// The SHA-256 of the verification report archived when it was (last) verified; '' until.
    pub verification_report_sha256: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub version: i64,
}

/// A check a period's measurement must pass to be submitted, unless the verifier assigned
/// to the project waives it with a reason: ASHRAE Guideline 14's acceptance of the baseline
/// model (CV(RMSE), NMBE) and its ask that the savings' uncertainty at 68% be under half of
/// the savings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeasurementCheck {
    BaselineG14,
    SavingsUncertainty,
}

impl MeasurementCheck {
    pub const ALL: [MeasurementCheck; 2] = [
        MeasurementCheck::BaselineG14,
        MeasurementCheck::SavingsUncertainty,
    ];

    pub fn code(self) -> &'static str {
        match self {
            MeasurementCheck::BaselineG14 => "baseline_g14",
            MeasurementCheck::SavingsUncertainty => "savings_uncertainty",
        }
    }

    pub fn from_code(s: &str) -> Option<MeasurementCheck> {
        Self::ALL.into_iter().find(|c| c.code() == s)
    }

    /// For people.
    pub fn label(self) -> &'static str {
        match self {
            MeasurementCheck::BaselineG14 => "the baseline model's Guideline 14 acceptance",
            MeasurementCheck::SavingsUncertainty => "the savings' uncertainty under 50% at 68%",
        }
    }

    /// Why `fit` and `figures` fail this check, or `None` when they pass.
    pub fn failure(self, fit: &crate::mv::Fit, figures: &PeriodFigures) -> Option<String> {
        match self {
            MeasurementCheck::BaselineG14 if !fit.g14_pass => {
                let (cv, nmbe) = fit.granularity.thresholds();
                Some(format!(
                    "the baseline model fails ASHRAE Guideline 14: CV(RMSE) {:.1}% (≤ {:.0}%), NMBE {:.1}% (±{:.0}%)",
                    fit.cv_rmse * 100.0,
                    cv * 100.0,
                    fit.nmbe * 100.0,
                    nmbe * 100.0
                ))
            }
            // Savings of none or less have no fraction to be uncertain of (and pay nothing).
            MeasurementCheck::SavingsUncertainty
                if figures.savings_litres > 0
                    && figures.uncertainty_68_litres.saturating_mul(2)
                        >= figures.savings_litres =>
            {
                Some(format!(
                    "the savings' uncertainty at 68% is ±{} L, {:.0}% of the savings of {} L (Guideline 14 asks under 50%)",
                    figures.uncertainty_68_litres,
                    figures.uncertainty_68_litres as f64 * 100.0 / figures.savings_litres as f64,
                    figures.savings_litres
                ))
            }
            _ => None,
        }
    }
}

/// The checks `figures` (measured by `fit`) fail, each with why.
pub fn failing_checks(
    fit: &crate::mv::Fit,
    figures: &PeriodFigures,
) -> Vec<(MeasurementCheck, String)> {
    MeasurementCheck::ALL
        .into_iter()
        .filter_map(|c| c.failure(fit, figures).map(|why| (c, why)))
        .collect()
}

/// A failing check of one period that the project's verifier let stand, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiver {
    pub project_id: String,
    /// The period's first day, "YYYY-MM-DD".
    pub period_start_date: String,
    pub check: MeasurementCheck,
    pub reason: String,
    /// What failed when it was waived (the figures may move until the period is submitted).
    pub failure: String,
    /// The verifier's person (subject) and organization.
    pub waived_by: String,
    pub waived_by_org: String,
    pub created_at_ms: i64,
}

impl Waiver {
    /// The line the period's notes carry.
    pub fn note(&self) -> String {
        format!(
            "waived by verifier {} ({}): {}: {} (it failed as: {})",
            self.waived_by_org,
            self.waived_by,
            self.check.label(),
            self.reason,
            self.failure
        )
    }
}

/// Checks that `period`, measured by `fit`, may be submitted: each check it fails is waived.
/// The error names what fails and the allowed steps.
pub fn check_submittable(fit: &crate::mv::Fit, period: &Period) -> Result<()> {
    let unwaived: Vec<(MeasurementCheck, String)> = failing_checks(fit, &period.figures)
        .into_iter()
        .filter(|(c, _)| !period.waivers.iter().any(|w| w.check == *c))
        .collect();
    if unwaived.is_empty() {
        return Ok(());
    }
    let whys: Vec<&str> = unwaived.iter().map(|(_, why)| why.as_str()).collect();
    let codes: Vec<&str> = unwaived.iter().map(|(c, _)| c.code()).collect();
    Err(Error::precondition(format!(
        "the period {} to {} cannot be submitted: {}. Allowed: correct the readings or drivers, or the project's assigned verifier waives the check with a reason (WaivePeriodCheck {})",
        period.start_date,
        period.end_date,
        whys.join("; "),
        codes.join(", ")
    )))
}

/// Checks that `who` may waive `check` of the period of `report` starting `start_date`: the
/// project's assigned verifier, of a REPORTED period that fails the check and has it not
/// waived yet. Returns what fails.
pub fn check_waiver(
    project: &Project,
    report: &SavingsReport,
    start_date: &str,
    who: &Principal,
    check: MeasurementCheck,
) -> Result<String> {
    if !project.assigned_verifier(who) {
        return Err(project.refuse(
            who,
            if project.verifier_org.is_empty() {
                format!(
                    "project {} has no verifier assigned yet; only its assigned verifier waives a check",
                    project.id
                )
            } else {
                format!(
                    "only the verifier assigned to project {} (org {}) waives a check of its periods",
                    project.id, project.verifier_org
                )
            },
        ));
    }
    let fit = report
        .usable_fit()
        .map_err(|why| Error::precondition(format!("the savings cannot be measured: {why}")))?;
    let period = period_starting(report, &project.id, start_date)?;
    if period.status != PeriodStatus::Reported {
        return Err(Error::precondition(format!(
            "the period starting {} is {} (period {}): checks are waived before submission",
            period.start_date,
            period.status.code(),
            period.id
        )));
    }
    if period.waivers.iter().any(|w| w.check == check) {
        return Err(Error::AlreadyExists(format!(
            "{} of the period starting {} is waived already",
            check.label(),
            period.start_date
        )));
    }
    check.failure(fit, &period.figures).ok_or_else(|| {
        Error::precondition(format!(
            "the period starting {} passes {}; there is nothing to waive",
            period.start_date,
            check.label()
        ))
    })
}

/// Savings over several periods together: a contract year, or the contract to date.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavingsSummary {
    pub start_date: String,
    pub end_date: String,
    /// The reporting periods in it (by their first day).
    pub periods: i64,
    /// Whether its periods cover every day of it (a year not over, or with a period not yet
    /// reported, is not).
    pub complete: bool,
    pub adjusted_baseline_litres: i64,
    pub actual_litres: i64,
    pub savings_litres: i64,
    /// Guideline 14 B-14 over all its reporting observations at once (m = their sum, E the
    /// sum of the adjusted baselines), by the current baseline fit; 0 without one.
    pub uncertainty_68_litres: i64,
    pub uncertainty_90_litres: i64,
    pub observations: i64,
}

/// Sums `periods` (oldest first) into a summary from `start` to `end`.
fn summarize(
    fit: Option<&crate::mv::Fit>,
    periods: &[&Period],
    start: chrono::NaiveDate,
    end: chrono::NaiveDate,
) -> Result<SavingsSummary, Overflow> {
    let sum = |what: &'static str, f: fn(&PeriodFigures) -> i64| {
        Litres::sum(periods.iter().map(|p| Litres(f(&p.figures))), what).map(|l| l.0)
    };
    let adjusted_baseline_litres = sum("adjusted_baseline_litres", |f| f.adjusted_baseline_litres)?;
    let observations = periods
        .iter()
        .try_fold(0i64, |m, p| m.checked_add(p.figures.observations))
        .ok_or(Overflow {
            what: "observations",
        })?;
    let covered = periods.iter().try_fold(0i64, |d, p| {
        let s = date("start_date", &p.start_date).ok()?;
        let e = date("end_date", &p.end_date).ok()?;
        d.checked_add((e - s).num_days() + 1)
    });
    let u = |c| {
        fit.map(|f| {
            let m = usize::try_from(observations).unwrap_or(0);
            crate::mv::savings_uncertainty(f, c, adjusted_baseline_litres as f64, m).round() as i64
        })
        .unwrap_or(0)
    };
    Ok(SavingsSummary {
        start_date: start.to_string(),
        end_date: end.to_string(),
        periods: periods.len() as i64,
        complete: covered == Some((end - start).num_days() + 1),
        adjusted_baseline_litres,
        actual_litres: sum("actual_litres", |f| f.actual_litres)?,
        savings_litres: sum("savings_litres", |f| f.savings_litres)?,
        uncertainty_68_litres: u(crate::mv::Confidence::P68),
        uncertainty_90_litres: u(crate::mv::Confidence::P90),
        observations,
    })
}

/// The savings of each contract year (twelve months from the first reporting day; a period
/// belongs to the year it starts in) with at least one period, and of the contract to date
/// (every period reported, from the first reporting day to the last period's end).
pub fn summaries(
    first_day: chrono::NaiveDate,
    fit: Option<&crate::mv::Fit>,
    periods: &[Period],
) -> Result<(Vec<SavingsSummary>, Option<SavingsSummary>), Overflow> {
    let dated: Vec<(chrono::NaiveDate, &Period)> = periods
        .iter()
        .filter_map(|p| Some((date("start_date", &p.start_date).ok()?, p)))
        .filter(|(s, _)| *s >= first_day)
        .collect();
    let mut years = Vec::new();
    for k in 0u32.. {
        let (Some(start), Some(next)) = (
            first_day.checked_add_months(chrono::Months::new(12 * k)),
            first_day.checked_add_months(chrono::Months::new(12 * (k + 1))),
        ) else {
            break;
        };
        if !dated.iter().any(|(s, _)| *s >= start) {
            break;
        }
        let end = next.pred_opt().unwrap_or(next);
        let of_year: Vec<&Period> = dated
            .iter()
            .filter(|(s, _)| *s >= start && *s <= end)
            .map(|(_, p)| *p)
            .collect();
        if !of_year.is_empty() {
            years.push(summarize(fit, &of_year, start, end)?);
        }
    }
    let all: Vec<&Period> = dated.iter().map(|(_, p)| *p).collect();
    let to_date = match all.last() {
        Some(last) => {
            let end = date("end_date", &last.end_date).unwrap_or(first_day);
            Some(summarize(fit, &all, first_day, end)?)
        }
        None => None,
    };
    Ok((years, to_date))
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
    let allowed = match step {
        // The independent third party assigned to the project checks the savings.
        PeriodStep::Verify => project.assigned_verifier(who),
        // A party in its own role (not an administrator acting as one): the verifier who doubts
        // figures does not verify them, and would otherwise resolve what another raised.
        PeriodStep::Dispute => project.own_party(who),
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
                "disputes on project {} are raised by its company or its water user (its assigned verifier or an administrator resolves them)",
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
            "the dispute on period {} was raised by {}; the assigned verifier or an administrator resolves it, never its raiser",
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
    /// Counted in the M&V once approved by the assigned verifier.
    pub status: AdjustmentStatus,
    pub decided_by: String,
    pub decided_by_org: String,
    pub decision_note: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub version: i64,
}

/// Where a non-routine adjustment stands: the verifier assigned to the project approves what
/// a party documents (one the verifier documents is approved as it is).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdjustmentStatus {
    Proposed,
    Approved,
    Rejected,
}

impl AdjustmentStatus {
    pub fn code(self) -> &'static str {
        match self {
            AdjustmentStatus::Proposed => "proposed",
            AdjustmentStatus::Approved => "approved",
            AdjustmentStatus::Rejected => "rejected",
        }
    }

    pub fn from_code(s: &str) -> Option<AdjustmentStatus> {
        [
            AdjustmentStatus::Proposed,
            AdjustmentStatus::Approved,
            AdjustmentStatus::Rejected,
        ]
        .into_iter()
        .find(|a| a.code() == s)
    }
}

/// Checks that `who` may decide `adjustment` of `project`: its assigned verifier, while the
/// adjustment is proposed.
pub fn check_adjustment_decision(
    project: &Project,
    who: &Principal,
    adjustment: &NonRoutineAdjustment,
) -> Result<()> {
    if !project.assigned_verifier(who) {
        return Err(project.refuse(
            who,
            format!(
                "only the verifier assigned to project {} approves its non-routine adjustments{}",
                project.id,
                if project.verifier_org.is_empty() {
                    " (none is assigned yet)"
                } else {
                    ""
                }
            ),
        ));
    }
    if adjustment.status != AdjustmentStatus::Proposed {
        return Err(Error::precondition(format!(
            "adjustment {} is {}; only a proposed adjustment is decided (allowed: none; document another)",
            adjustment.id,
            adjustment.status.code()
        )));
    }
    Ok(())
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
    /// The statement as settled, a line each in both languages.
    pub statement_lines: Vec<cwsm_platform::lang::Text>,
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
    /// Each contract year with a period, and the contract to date ([`summaries`]).
    pub contract_years: Vec<SavingsSummary>,
    pub contract_to_date: Option<SavingsSummary>,
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

/// The report's period starting `start_date`; else FAILED_PRECONDITION naming those that
/// may be submitted.
pub fn period_starting<'a>(
    report: &'a SavingsReport,
    project_id: &str,
    start_date: &str,
) -> Result<&'a Period> {
    report
        .periods
        .iter()
        .find(|p| p.start_date == start_date)
        .ok_or_else(|| {
            let listed: Vec<&str> = report
                .periods
                .iter()
                .filter(|p| p.status == PeriodStatus::Reported)
                .map(|p| p.start_date.as_str())
                .collect();
            Error::precondition(format!(
                "no ended reporting period of project {project_id} with readings starts on {start_date} (submittable: {})",
                if listed.is_empty() {
                    "none yet".to_string()
                } else {
                    listed.join(", ")
                }
            ))
        })
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
    // Only what the verifier approved counts.
    let approved = adjustments
        .iter()
        .filter(|a| a.status == AdjustmentStatus::Approved);
    let parts = approved.filter_map(|a| {
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
    notes.extend(
        failing_checks(fit, &figures)
            .into_iter()
            .map(|(_, why)| why),
    );
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
        waivers: Vec::new(),
        verification_report_sha256: String::new(),
        created_at_ms: 0,
        updated_at_ms: 0,
        version: 0,
    })
}

/// What a savings report is made of, as stored.
pub struct ReportData<'a> {
    pub days: &'a [crate::mv::DayUse],
    pub granularity: crate::mv::Granularity,
    /// The recorded values of the M&V plan's drivers, by driver.
    pub drivers: &'a [(String, crate::mv::DriverDays)],
    pub adjustments: &'a [NonRoutineAdjustment],
    pub stored: Vec<Period>,
    pub waivers: Vec<Waiver>,
}

/// The savings report: the baseline fitted on the baseline period, and every reporting period
/// that has ended (by `today`) and has readings in it: stored ones as stored, the others
/// computed as REPORTED (a period whose last days have no data is reported, its missing days
/// noted); each with the checks waived for it; then the contract years and the contract to
/// date. A driver of the plan with no values is left out of the model, and the report says so.
pub fn report(project: &Project, data: ReportData<'_>, today: chrono::NaiveDate) -> SavingsReport {
    let ReportData {
        days,
        granularity,
        drivers,
        adjustments,
        stored,
        waivers,
    } = data;
    let mut r = SavingsReport {
        project_id: project.id.clone(),
        fit: None,
        sufficiency: None,
        problems: Vec::new(),
        periods: Vec::new(),
        contract_years: Vec::new(),
        contract_to_date: None,
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
        Ok(f) => {
            if f.granularity == crate::mv::Granularity::Billing
                && let Some(s) = r.sufficiency.as_mut()
            {
                s.notes.push(format!(
                    "modelled per billing period: {} bills, each its use per day with the drivers averaged over its days, weighted by its days",
                    f.observations
                ));
            }
            r.fit = Some(f)
        }
        Err(e) => r
            .problems
            .push(format!("the baseline cannot be fitted: {e}")),
    }
    let last_data = days.iter().map(|d| d.day).max();
    let yesterday = today.pred_opt().unwrap_or(today);
    let months = u32::try_from(project.reporting_period_months.max(1)).unwrap_or(1);
    // Ended by yesterday, with data in it (not necessarily to its last day).
    let ended: Vec<_> = match last_data {
        Some(last) => crate::mv::reporting_periods(first, months, yesterday)
            .into_iter()
            .filter(|(s, _)| *s <= last)
            .collect(),
        None => Vec::new(),
    };
    let mut periods = stored;
    // Periods stored before their observations were: counted from the data now.
    for p in periods.iter_mut().filter(|p| p.figures.observations == 0) {
        if let (Ok(s), Ok(e)) = (
            date("start_date", &p.start_date),
            date("end_date", &p.end_date),
        ) {
            p.figures.observations =
                crate::mv::observations(days, s, e, granularity, &values).len() as i64;
        }
    }
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
    for w in waivers {
        if let Some(p) = periods
            .iter_mut()
            .find(|p| p.start_date == w.period_start_date)
        {
            p.waivers.push(w);
        }
    }
    match summaries(first, r.fit.as_ref(), &periods) {
        Ok((years, to_date)) => {
            r.contract_years = years;
            r.contract_to_date = to_date;
        }
        Err(o) => r
            .problems
            .push(format!("the contract years' totals cannot be summed: {o}")),
    }
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
            status: AdjustmentStatus::Approved,
            decided_by: String::new(),
            decided_by_org: String::new(),
            decision_note: String::new(),
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

    fn day(s: &str) -> chrono::NaiveDate {
        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    /// An intercept-only fit of 366 days alternating 900 and 1,100 L: mean 1,000, residuals
    /// ±100 (ρ < 0, so n′ = n), CV(RMSE) = sqrt(366·100²/365)/1000.
    fn alternating_fit() -> crate::mv::Fit {
        let ys: Vec<f64> = (0..366)
            .map(|i| if i % 2 == 0 { 900.0 } else { 1100.0 })
            .collect();
        let xs = vec![Vec::new(); 366];
        crate::mv::fit(&[], &ys, &xs, crate::mv::Granularity::Daily).expect("fits")
    }

    fn period(start: &str, end: &str, baseline: i64, actual: i64, m: i64) -> Period {
        let (s, e) = (day(start), day(end));
        Period {
            id: String::new(),
            project_id: "p".into(),
            start_date: start.into(),
            end_date: end.into(),
            figures: PeriodFigures {
                adjusted_baseline_litres: baseline,
                actual_litres: actual,
                savings_litres: baseline - actual,
                days: (e - s).num_days() + 1,
                days_with_data: m,
                observations: m,
                ..Default::default()
            },
            promised_savings_litres: 0,
            status: PeriodStatus::Reported,
            dispute_reason: String::new(),
            disputed_by: String::new(),
            notes: Vec::new(),
            waivers: Vec::new(),
            verification_report_sha256: String::new(),
            created_at_ms: 0,
            updated_at_ms: 0,
            version: 0,
        }
    }

    #[test]
    fn contract_years_take_b14_over_all_their_observations() {
        let fit = alternating_fit();
        // Fourteen monthly periods from 2025-03-01: 1,000 L/day baseline, 800 actual.
        let first = day("2025-03-01");
        let periods: Vec<Period> = (0..14u32)
            .map(|k| {
                let s = first + chrono::Months::new(k);
                let e = (s + chrono::Months::new(1)).pred_opt().expect("day");
                let n = (e - s).num_days() + 1;
                period(&s.to_string(), &e.to_string(), 1_000 * n, 800 * n, n)
            })
            .collect();
        let (years, to_date) = summaries(first, Some(&fit), &periods).expect("sums");
        assert_eq!(years.len(), 2);
        // Year 1: 2025-03-01 to 2026-02-28, 365 days, all twelve months reported.
        let y1 = &years[0];
        assert_eq!(
            (y1.start_date.as_str(), y1.end_date.as_str()),
            ("2025-03-01", "2026-02-28")
        );
        assert_eq!((y1.periods, y1.complete, y1.observations), (12, true, 365));
        assert_eq!(y1.adjusted_baseline_litres, 365_000);
        assert_eq!(y1.savings_litres, 73_000);
        // B-14 with m = 365 and E = 365,000 L, n = n′ = 366, t at 365 dof:
        // ΔE₆₈ = t · 1.26 · CV · 365,000 · sqrt((1 + 2/366) / 365).
        let cv = (366.0_f64 * 100.0 * 100.0 / 365.0).sqrt() / 1000.0;
        assert!((fit.cv_rmse - cv).abs() < 1e-12);
        let t68 = crate::mv::t_value(crate::mv::Confidence::P68, 365.0);
        let u68 = t68 * 1.26 * cv * 365_000.0 * ((1.0 + 2.0 / 366.0) / 365.0_f64).sqrt();
        assert_eq!(y1.uncertainty_68_litres, u68.round() as i64);
        // Together the months are surer than month by month: one month's ± is E_m/√m_m of
        // the same factor, and the twelve added are ≈ √12 times the year's.
        let monthly: f64 = periods[..12]
            .iter()
            .map(|p| {
                crate::mv::savings_uncertainty(
                    &fit,
                    crate::mv::Confidence::P68,
                    p.figures.adjusted_baseline_litres as f64,
                    p.figures.observations as usize,
                )
            })
            .sum();
        assert!(
            monthly / u68 > 3.4 && monthly / u68 < 3.5,
            "{}",
            monthly / u68
        );
        // Year 2 has two months (March and April 2026) of its twelve: not complete.
        let y2 = &years[1];
        assert_eq!(
            (y2.start_date.as_str(), y2.end_date.as_str()),
            ("2026-03-01", "2027-02-28")
        );
        assert_eq!((y2.periods, y2.complete, y2.observations), (2, false, 61));
        // To date: all fourteen, to the last period's end.
        let all = to_date.expect("to date");
        assert_eq!(
            (all.start_date.as_str(), all.end_date.as_str()),
            ("2025-03-01", "2026-04-30")
        );
        assert_eq!(
            (all.periods, all.complete, all.observations),
            (14, true, 426)
        );
        assert_eq!(all.savings_litres, 200 * 426);
        // Without a fit the sums stand, with no uncertainty.
        let (years, _) = summaries(first, None, &periods).expect("sums");
        assert_eq!(
            (years[0].savings_litres, years[0].uncertainty_68_litres),
            (73_000, 0)
        );
        assert_eq!(summaries(first, Some(&fit), &[]), Ok((Vec::new(), None)));
    }

    #[test]
    fn a_failing_check_stops_submission_until_the_verifier_waives_it() {
        let mut fit = alternating_fit();
        let mut p = period("2025-03-01", "2025-03-31", 31_000, 24_800, 31);
        // Savings 6,200 L: ±3,099 passes, ±3,100 (50%) fails.
        p.figures.uncertainty_68_litres = 3_099;
        assert!(check_submittable(&fit, &p).is_ok());
        p.figures.uncertainty_68_litres = 3_100;
        let err = check_submittable(&fit, &p).expect_err("50% fails");
        let Error::FailedPrecondition(why) = &err else {
            panic!("{err:?}")
        };
        assert!(
            why.contains("±3100 L, 50% of the savings of 6200 L"),
            "{why}"
        );
        assert!(
            why.contains("WaivePeriodCheck savings_uncertainty"),
            "{why}"
        );
        // Savings of none or less have no fraction to fail.
        let mut none = p.clone();
        none.figures.savings_litres = 0;
        assert!(check_submittable(&fit, &none).is_ok());
        // A failing baseline is named too, with both thresholds.
        fit.g14_pass = false;
        let failing: Vec<MeasurementCheck> = failing_checks(&fit, &p.figures)
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        assert_eq!(failing, MeasurementCheck::ALL.to_vec());
        let waiver = |check| Waiver {
            project_id: "p".into(),
            period_start_date: p.start_date.clone(),
            check,
            reason: "meter replaced mid-year, data checked by hand".into(),
            failure: String::new(),
            waived_by: "v@x".into(),
            waived_by_org: "91320000MA1VERIF0X".into(),
            created_at_ms: 0,
        };
        p.waivers.push(waiver(MeasurementCheck::SavingsUncertainty));
        let err = check_submittable(&fit, &p).expect_err("the baseline is not waived");
        assert!(
            format!("{err:?}").contains("WaivePeriodCheck baseline_g14"),
            "{err:?}"
        );
        p.waivers.push(waiver(MeasurementCheck::BaselineG14));
        assert!(check_submittable(&fit, &p).is_ok());
        assert!(p.waivers[1].note().starts_with(
            "waived by verifier 91320000MA1VERIF0X (v@x): the baseline model's Guideline 14 acceptance: meter replaced"
        ));
    }
}
