//! The contract water-saving project in plain Rust: its parties and terms (frozen at signing),
//! and the lifecycle state machine.

use chrono::NaiveDate;
use cwsm_platform::auth::{Principal, Role};
use cwsm_platform::vocab::{ContractModel, IndicatorTag, Milestone, MvOption, Sector};
use cwsm_platform::{Error, Result};
use serde::{Deserialize, Serialize};

/// Where a project stands. Suspended and terminated are side states, entered from contracted
/// through operating.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    Contracted,
    Implementing,
    Commissioned,
    Accepted,
    Operating,
    HandedOver,
    Closed,
    Suspended,
    Terminated,
}

impl Stage {
    pub const ALL: [Stage; 9] = [
        Stage::Contracted,
        Stage::Implementing,
        Stage::Commissioned,
        Stage::Accepted,
        Stage::Operating,
        Stage::HandedOver,
        Stage::Closed,
        Stage::Suspended,
        Stage::Terminated,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Stage::Contracted => "contracted",
            Stage::Implementing => "implementing",
            Stage::Commissioned => "commissioned",
            Stage::Accepted => "accepted",
            Stage::Operating => "operating",
            Stage::HandedOver => "handed_over",
            Stage::Closed => "closed",
            Stage::Suspended => "suspended",
            Stage::Terminated => "terminated",
        }
    }

    pub fn from_code(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|st| st.code() == s)
    }

    /// The milestone others hear of when a project enters this stage.
    pub fn milestone(self) -> Milestone {
        match self {
            Stage::Contracted => Milestone::Contracted,
            Stage::Implementing => Milestone::Implementing,
            Stage::Commissioned => Milestone::Commissioned,
            Stage::Accepted => Milestone::Accepted,
            Stage::Operating => Milestone::Operating,
            Stage::HandedOver => Milestone::HandedOver,
            Stage::Closed => Milestone::Closed,
            Stage::Suspended => Milestone::Suspended,
            Stage::Terminated => Milestone::Terminated,
        }
    }

    /// The stage that follows in the normal course.
    fn next(self) -> Option<Stage> {
        Some(match self {
            Stage::Contracted => Stage::Implementing,
            Stage::Implementing => Stage::Commissioned,
            Stage::Commissioned => Stage::Accepted,
            Stage::Accepted => Stage::Operating,
            Stage::Operating => Stage::HandedOver,
            Stage::HandedOver => Stage::Closed,
            _ => return None,
        })
    }

    fn active(self) -> bool {
        matches!(
            self,
            Stage::Contracted
                | Stage::Implementing
                | Stage::Commissioned
                | Stage::Accepted
                | Stage::Operating
        )
    }
}

/// The stages a project in `stage` may move to (`suspended_from` is where a suspended project
/// returns on resumption).
pub fn allowed_next(stage: Stage, suspended_from: Option<Stage>) -> Vec<Stage> {
    let mut next = Vec::new();
    if stage == Stage::Suspended {
        if let Some(back) = suspended_from {
            next.push(back);
        }
        next.push(Stage::Terminated);
        return next;
    }
    if let Some(n) = stage.next() {
        next.push(n);
    }
    if stage.active() {
        next.push(Stage::Suspended);
        next.push(Stage::Terminated);
    }
    next
}

/// Money terms of the contract, as accepted (see `cwsm.type.v1.ContractTerms`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContractTerms {
    pub share_ratio_bp: i32,
    pub sharing_period_months: i32,
    pub guaranteed_savings_litres: i64,
    pub shortfall_price_fen_per_m3: i64,
    pub bonus_share_bp: i32,
    pub hosting_fee_fen: i64,
    pub water_rights_share_bp: i32,
    /// Annual terms pro-rated by days over the contract year's days, not by months.
    pub pro_rate_by_days: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Party {
    pub id: String,
    pub name: String,
    pub credit_code: String,
}

/// Everything agreed at signing: copied from the accepted proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contract {
    pub proposal_id: String,
    pub project_request_id: String,
    pub company: Party,
    pub water_user: Party,
    pub sector: Sector,
    pub unit_type: String,
    pub town: String,
    /// Where the water user's site is, by the gazetteer's code (a town's nine digits); '' when
    /// the accepted proposal's town is not in the gazetteer.
    pub jurisdiction_code: String,
    pub title: String,
    pub measures: String,
    pub contract_model: ContractModel,
    pub terms: ContractTerms,
    pub investment_fen: i64,
    pub promised_savings_litres: i64,
    pub promised_savings_bp: i32,
    pub contract_term_months: i32,
    pub baseline_use_litres: i64,
    pub mv_option: MvOption,
    pub drivers: Vec<String>,
    pub price_fen_per_m3: i64,
    pub indicator_tags: Vec<IndicatorTag>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Project {
    pub id: String,
    pub contract: Contract,
    pub sites: Vec<String>,
    pub baseline_start_date: String,
    pub baseline_end_date: String,
    pub stage: Stage,
    pub suspended_from: Option<Stage>,
    /// Months per reporting (and settlement) period; 1 monthly, 3 quarterly.
    pub reporting_period_months: i32,
    pub mv_model_description: String,
    /// What the M&V does with flagged readings; frozen with the plan.
    pub quality_rules: crate::metering::QualityRules,
    /// The credit code of the verifier body an administrator assigned ('' until then).
    pub verifier_org: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub version: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub id: String,
    pub project_id: String,
    pub from: Option<Stage>,
    pub to: Stage,
    pub reason: String,
    pub evidence: String,
    pub actor: String,
    pub actor_org: String,
    /// When it was recorded.
    pub at_ms: i64,
    /// The day it took effect (China Standard Time).
    pub effective_date: NaiveDate,
}

/// What a caller asks of the lifecycle.
#[derive(Clone, Debug)]
pub struct TransitionAsk {
    pub to: Stage,
    pub reason: String,
    pub evidence: String,
    /// The day the change took effect; today when the caller named none.
    pub effective_date: NaiveDate,
}

/// The day (China Standard Time) of the instant `at_ms`: what a milestone recorded before
/// effective dates existed is read as.
pub fn recorded_day(at_ms: i64) -> NaiveDate {
    crate::readings::day_date(crate::readings::day_index(at_ms.saturating_add(1)))
}

/// Reads an effective date ("YYYY-MM-DD"; empty means `today`).
pub fn effective_date(field: &str, text: &str, today: NaiveDate) -> Result<NaiveDate> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(today);
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        Error::invalid(
            field,
            format!("{text:?} is not a date (YYYY-MM-DD, China Standard Time)"),
        )
    })
}

/// The rules of back-dating a milestone to `date` (its `field`): never after `today`; a date
/// before today needs `evidence`; never before the effective date of any of the project's
/// `earlier` milestones (stage and day), whose order it would otherwise contradict.
pub fn check_effective_date(
    field: &str,
    date: NaiveDate,
    today: NaiveDate,
    evidence: &str,
    earlier: &[(Stage, NaiveDate)],
) -> Result<()> {
    if date > today {
        return Err(Error::invalid(
            field,
            format!(
                "{date} is after today ({today}, China Standard Time): a milestone cannot take effect in the future"
            ),
        ));
    }
    if let Some((stage, latest)) = earlier
        .iter()
        .filter(|(_, d)| *d > date)
        .max_by_key(|(_, d)| *d)
    {
        return Err(Error::invalid(
            field,
            format!(
                "{date} is before the project's {} milestone, effective {latest}: a later step cannot take effect before an earlier one",
                stage.code()
            ),
        ));
    }
    if date < today && evidence.trim().is_empty() {
        return Err(Error::invalid(
            "evidence",
            format!(
                "a milestone dated {date}, before today ({today}), needs evidence of that date (contract number, report reference)"
            ),
        ));
    }
    Ok(())
}

impl Project {
    /// Where the project's site is, for administrator scope: its site's gazetteer code, or for
    /// a project whose site the gazetteer does not know (contracted before it existed) the
    /// platform's first district, as reporting places milestones without a code.
    pub fn jurisdiction(&self) -> cwsm_platform::jurisdiction::Jurisdiction {
        cwsm_platform::jurisdiction::Jurisdiction::of_stored(&self.contract.jurisdiction_code)
    }

    /// Whether `who` administers this project: an operator, or an administrator of a
    /// jurisdiction containing its site (a department's administrator does not: departments
    /// record the plan's achievements, they do not run contracts).
    pub fn administered_by(&self, who: &Principal) -> bool {
        who.may_administer(&self.jurisdiction(), None)
    }

    /// Whether `who` acts for this project's company (a company token with its credit code) or
    /// administers the project.
    pub fn company(&self, who: &Principal) -> bool {
        who.is(Role::Company, &self.contract.company.credit_code) || self.administered_by(who)
    }

    /// Whether `who` is a party to this project, each in its own role: the company with a
    /// company token, the water user with a water-user token (or an administrator of it).
    pub fn party(&self, who: &Principal) -> bool {
        self.company(who) || who.is(Role::WaterUser, &self.contract.water_user.credit_code)
    }

    /// Whether `who` is one of the two parties in its own role (an administrator acting as one
    /// is not): who may raise a dispute or propose a verifier.
    pub fn own_party(&self, who: &Principal) -> bool {
        who.is(Role::Company, &self.contract.company.credit_code)
            || who.is(Role::WaterUser, &self.contract.water_user.credit_code)
    }

    /// Checks that the verifier body `verifier_org` is independent of both parties: neither of
    /// them, nor the same organization under another code (see
    /// [`cwsm_platform::credit_code::same_organization`]). The one independence rule, made
    /// when a verifier is proposed, approved and assigned.
    pub fn check_verifier_independent(&self, verifier_org: &str) -> Result<()> {
        let parties = [
            ("company", &self.contract.company.credit_code),
            ("water user", &self.contract.water_user.credit_code),
        ];
        for (party, code) in parties {
            if cwsm_platform::credit_code::same_organization(verifier_org, code) {
                return Err(Error::precondition(format!(
                    "verifier_org {verifier_org} is the {party} of project {} ({code}) or the same organization (subject code {}); the verifier must be independent of the company and the water user",
                    self.id,
                    cwsm_platform::credit_code::subject_code(code).unwrap_or(code)
                )));
            }
        }
        Ok(())
    }

    /// Whether `who` is the verifier body assigned to this project (administrators are not).
    pub fn assigned_verifier(&self, who: &Principal) -> bool {
        who.is(Role::Verifier, &self.verifier_org)
    }

    /// Whether `who` may read this project and everything under it: the parties, the assigned
    /// verifier and administrators.
    pub fn readable_by(&self, who: &Principal) -> bool {
        self.party(who) || self.assigned_verifier(who)
    }

    /// NOT_FOUND for a caller who may not read the project (its existence is not revealed),
    /// else PERMISSION_DENIED with `why`: the one rule for refusing a step on a project.
    pub fn refuse(&self, who: &Principal, why: String) -> Error {
        if self.readable_by(who) {
            Error::denied(why)
        } else {
            Error::not_found("project", &self.id)
        }
    }

    /// Checks that `who` may move this project as asked; the error names the allowed steps.
    pub fn check_transition(&self, who: &Principal, ask: &TransitionAsk) -> Result<()> {
        if !self.party(who) {
            return Err(self.refuse(
                who,
                format!(
                    "only the parties to project {} or an administrator may change its stage",
                    self.id
                ),
            ));
        }
        let allowed = allowed_next(self.stage, self.suspended_from);
        if !allowed.contains(&ask.to) {
            let names: Vec<&str> = allowed.iter().map(|s| s.code()).collect();
            return Err(Error::precondition(format!(
                "project {} is {}; it cannot become {} (allowed next: {})",
                self.id,
                self.stage.code(),
                ask.to.code(),
                if names.is_empty() {
                    "none: the project is finished".to_string()
                } else {
                    names.join(", ")
                }
            )));
        }
        // The water user accepts the works and takes them over; the company cannot sign
        // those for it.
        if matches!(ask.to, Stage::Accepted | Stage::HandedOver) && who.role == Role::Company {
            return Err(Error::denied(format!(
                "{} is the water user's step, not the company's",
                ask.to.code()
            )));
        }
        // Acceptance follows the post-installation verification: name its report.
        if ask.to == Stage::Accepted && ask.evidence.trim().is_empty() {
            return Err(Error::invalid(
                "evidence",
                "acceptance needs the post-installation verification (its report reference)",
            ));
        }
        if matches!(ask.to, Stage::Suspended | Stage::Terminated) && ask.reason.trim().is_empty() {
            return Err(Error::invalid(
                "reason",
                format!("say why the project is {}", ask.to.code()),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn effective_dates_are_not_future_not_out_of_order_and_back_dates_have_evidence() {
        let today = day("2026-12-02");
        let contracted = [(Stage::Contracted, day("2020-03-15"))];
        let ok = |d: &str, evidence: &str| {
            check_effective_date("effective_date", day(d), today, evidence, &contracted)
        };
        assert!(ok("2026-12-02", "").is_ok(), "today needs no evidence");
        assert!(
            ok("2020-03-15", "report 7").is_ok(),
            "the same day as signing"
        );
        let field = |r: Result<()>| match r {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(ok("2026-12-03", "x")), "effective_date");
        assert_eq!(field(ok("2020-03-14", "x")), "effective_date");
        assert_eq!(field(ok("2020-05-01", "")), "evidence");
    }

    #[test]
    fn the_normal_course_and_its_side_states() {
        assert_eq!(
            allowed_next(Stage::Contracted, None),
            vec![Stage::Implementing, Stage::Suspended, Stage::Terminated]
        );
        assert_eq!(allowed_next(Stage::HandedOver, None), vec![Stage::Closed]);
        assert!(allowed_next(Stage::Closed, None).is_empty());
        assert!(allowed_next(Stage::Terminated, None).is_empty());
        assert_eq!(
            allowed_next(Stage::Suspended, Some(Stage::Commissioned)),
            vec![Stage::Commissioned, Stage::Terminated]
        );
    }
}
