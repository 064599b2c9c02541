//! The marketplace in plain Rust: service companies (节水服务企业) and their offerings, water users
//! (用水单位) and their project requests, proposals between them, and the checks each must pass.

use cwsm_platform::quantity;
use cwsm_platform::vocab::{
    CertificationGrade, ContractModel, IndicatorTag, MvOption, Sector, Technology,
};
use cwsm_platform::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub name: String,
    pub phone: String,
    pub email: String,
}

/// Verified history kept by matching from project events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrackRecord {
    pub projects_completed: i64,
    pub verified_savings_litres: i64,
    pub promised_savings_litres: i64,
}

/// What a project milestone tells matching about a company's track record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProjectProgress {
    pub event_id: String,
    pub project_id: String,
    /// Matching's id of the company; when empty, the company is found by its credit code.
    pub company_id: String,
    pub company_credit_code: String,
    /// Position in the projects service's milestone log; the totals of the highest one win.
    pub sequence: i64,
    /// The project was handed over (移交): it counts as completed.
    pub handed_over: bool,
    /// The project's running totals of verified and promised savings, litres, when the event
    /// carries them.
    pub totals: Option<(i64, i64)>,
}

/// What a company says of itself; the rest of [`Company`] is kept by the system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompanyProfile {
    pub credit_code: String,
    pub name: String,
    pub description: String,
    pub contact: Contact,
    pub towns: Vec<String>,
    pub sectors: Vec<Sector>,
    /// The grade the company claims; a claim until the district confirms it (see
    /// [`Certification`]), and never ranked as such.
    pub claimed_certification: CertificationGrade,
    /// What backs the claim (certificate number, issuing body), free text for the reviewer.
    pub certification_evidence: String,
    pub financing_capacity_fen: i64,
    /// Where the company is registered (a district's, city's or province's code): whose
    /// administrators act for it. '' in rows from before: the platform's district
    /// (`Jurisdiction::of_stored`).
    pub jurisdiction_code: String,
}

/// The district's review of a company's claimed grade: only an administrator sets it, and a
/// new claim clears it. `grade` is `None` when nothing is confirmed (never reviewed, withdrawn,
/// or the claim changed since).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Certification {
    pub grade: Option<CertificationGrade>,
    /// Who confirmed (or withdrew) it, and when; empty and 0 when never reviewed.
    pub by: String,
    pub at_ms: i64,
    pub note: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Company {
    pub id: String,
    pub profile: CompanyProfile,
    pub certification: Certification,
    pub track_record: TrackRecord,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub version: i64,
}

impl Company {
    /// The grade the marketplace trusts: the confirmed one, "not certified" while unconfirmed.
    pub fn confirmed_grade(&self) -> CertificationGrade {
        self.certification.grade.unwrap_or(CertificationGrade::None)
    }

    /// What a reviewer may confirm: `grade` (None withdraws) up to the claimed grade.
    pub fn check_confirmable(&self, grade: Option<CertificationGrade>) -> Result<()> {
        match grade {
            Some(g) if g > self.profile.claimed_certification => Err(Error::invalid(
                "grade",
                format!(
                    "{} is above the grade company {} claims ({}); a confirmation may be the claim or lower",
                    g.label(),
                    self.id,
                    self.profile.claimed_certification.label()
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// Longest certification evidence and review note, characters.
pub const MAX_CERTIFICATION_TEXT: usize = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfferingStatus {
    Draft,
    Published,
    Withdrawn,
}

impl OfferingStatus {
    pub fn code(self) -> &'static str {
        match self {
            OfferingStatus::Draft => "draft",
            OfferingStatus::Published => "published",
            OfferingStatus::Withdrawn => "withdrawn",
        }
    }
    pub fn from_code(s: &str) -> Option<Self> {
        Some(match s {
            "draft" => OfferingStatus::Draft,
            "published" => OfferingStatus::Published,
            "withdrawn" => OfferingStatus::Withdrawn,
            _ => return None,
        })
    }
}

/// What a company sells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfferingDraft {
    pub company_id: String,
    pub title: String,
    pub description: String,
    pub technologies: Vec<Technology>,
    pub contract_models: Vec<ContractModel>,
    pub sectors: Vec<Sector>,
    pub towns: Vec<String>,
    pub min_investment_fen: i64,
    pub max_investment_fen: i64,
    pub typical_savings_bp: i32,
    pub typical_term_months: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offering {
    pub id: String,
    pub draft: OfferingDraft,
    pub status: OfferingStatus,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub version: i64,
}

/// Units using at least this much a year (6,000 m³) are under planned-use supervision.
pub const PLANNED_USE_THRESHOLD_LITRES: i64 = 6_000_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaterUserProfile {
    pub credit_code: String,
    pub name: String,
    pub sector: Sector,
    pub unit_type: String,
    /// The gazetteer town's Chinese name (free text only in units registered before it).
    pub town: String,
    /// The town's code in the gazetteer (`320411004`); '' when the gazetteer does not know it.
    pub jurisdiction_code: String,
    pub annual_use_litres: i64,
    pub annual_quota_litres: i64,
    pub contact: Contact,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaterUser {
    pub id: String,
    pub profile: WaterUserProfile,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub version: i64,
}

impl WaterUser {
    pub fn planned_use_supervised(&self) -> bool {
        self.profile.annual_use_litres >= PLANNED_USE_THRESHOLD_LITRES
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    Public,
    Invited,
}

impl Visibility {
    pub fn code(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Invited => "invited",
        }
    }
    pub fn from_code(s: &str) -> Option<Self> {
        match s {
            "public" => Some(Visibility::Public),
            "invited" => Some(Visibility::Invited),
            _ => None,
        }
    }
}

/// Lifecycle of a project request: draft → open → closed | awarded | cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestStatus {
    Draft,
    Open,
    Closed,
    Awarded,
    Cancelled,
}

impl RequestStatus {
    pub fn code(self) -> &'static str {
        match self {
            RequestStatus::Draft => "draft",
            RequestStatus::Open => "open",
            RequestStatus::Closed => "closed",
            RequestStatus::Awarded => "awarded",
            RequestStatus::Cancelled => "cancelled",
        }
    }
    pub fn from_code(s: &str) -> Option<Self> {
        Some(match s {
            "draft" => RequestStatus::Draft,
            "open" => RequestStatus::Open,
            "closed" => RequestStatus::Closed,
            "awarded" => RequestStatus::Awarded,
            "cancelled" => RequestStatus::Cancelled,
            _ => return None,
        })
    }
}

/// What a water user asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestDraft {
    pub water_user_id: String,
    pub title: String,
    pub problem: String,
    pub scope: String,
    pub baseline_use_litres: i64,
    pub expected_savings_bp: i32,
    pub price_fen_per_m3: i64,
    pub preferred_contract_models: Vec<ContractModel>,
    pub wanted_technologies: Vec<Technology>,
    pub investment_wanted_fen: i64,
    /// ISO date `YYYY-MM-DD`, empty for none.
    pub proposal_deadline: String,
    pub visibility: Visibility,
    pub invited_company_ids: Vec<String>,
    pub indicator_tags: Vec<IndicatorTag>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectRequest {
    pub id: String,
    pub draft: RequestDraft,
    pub status: RequestStatus,
    pub status_reason: String,
    pub awarded_proposal_id: String,
    pub proposal_count: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub version: i64,
}

/// Money terms of a contract (see `cwsm.type.v1.ContractTerms`).
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposalStatus {
    Submitted,
    Accepted,
    Declined,
    Withdrawn,
}

impl ProposalStatus {
    pub fn code(self) -> &'static str {
        match self {
            ProposalStatus::Submitted => "submitted",
            ProposalStatus::Accepted => "accepted",
            ProposalStatus::Declined => "declined",
            ProposalStatus::Withdrawn => "withdrawn",
        }
    }
    pub fn from_code(s: &str) -> Option<Self> {
        Some(match s {
            "submitted" => ProposalStatus::Submitted,
            "accepted" => ProposalStatus::Accepted,
            "declined" => ProposalStatus::Declined,
            "withdrawn" => ProposalStatus::Withdrawn,
            _ => return None,
        })
    }
}

/// What a company proposes on a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProposalDraft {
    pub project_request_id: String,
    pub company_id: String,
    pub offering_id: String,
    pub measures: String,
    pub investment_fen: i64,
    pub promised_savings_litres: i64,
    pub promised_savings_bp: i32,
    pub contract_model: ContractModel,
    pub terms: ContractTerms,
    pub contract_term_months: i32,
    pub mv_option: MvOption,
    pub drivers: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub id: String,
    pub draft: ProposalDraft,
    pub status: ProposalStatus,
    pub decline_reason: String,
    pub withdraw_reason: String,
    pub project_id: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub version: i64,
}

impl Proposal {
    /// Investment per m³ of yearly saving, fen: lower is better value.
    pub fn cost_per_m3_saved_fen(&self) -> i64 {
        let m3 = self.draft.promised_savings_litres / 1000;
        if m3 <= 0 {
            0
        } else {
            self.draft.investment_fen / m3
        }
    }

    /// The company's yearly income from the promised savings at `price_fen_per_m3`, fen, by
    /// the contract model: its share of the savings value (shared savings), its bonus share
    /// of the value above the guarantee (guaranteed savings, guarantee + sharing), the hosting
    /// fee less the water bill it pays after the retrofit (hosting); 0 when it cannot be told.
    pub fn company_yearly_income_fen(&self, price_fen_per_m3: i64) -> i128 {
        let d = &self.draft;
        let t = &d.terms;
        let value = |litres: i64| i128::from(litres.max(0)) * i128::from(price_fen_per_m3) / 1000;
        let share = |fen: i128, bp: i32| fen * i128::from(bp) / 10_000;
        match d.contract_model {
            ContractModel::SharedSavings | ContractModel::SavingsPlusWaterRights => {
                share(value(d.promised_savings_litres), t.share_ratio_bp)
            }
            ContractModel::GuaranteedSavings => share(
                value(d.promised_savings_litres - t.guaranteed_savings_litres),
                t.bonus_share_bp,
            ),
            ContractModel::GuaranteePlusSharing => share(
                value(d.promised_savings_litres - t.guaranteed_savings_litres),
                t.share_ratio_bp,
            ),
            ContractModel::WaterCostHosting | ContractModel::HostingPlusGuarantee => {
                // The baseline use from the promise and its share of it.
                if d.promised_savings_bp <= 0 {
                    return 0;
                }
                let baseline = i128::from(d.promised_savings_litres) * 10_000
                    / i128::from(d.promised_savings_bp);
                let after = baseline - i128::from(d.promised_savings_litres);
                i128::from(t.hosting_fee_fen) - after * i128::from(price_fen_per_m3) / 1000
            }
        }
    }

    /// Months until the company's yearly income ([`Self::company_yearly_income_fen`]) repays
    /// its investment, at `price_fen_per_m3`; 0 when it cannot be told (no income).
    pub fn payback_months(&self, price_fen_per_m3: i64) -> i32 {
        let income = self.company_yearly_income_fen(price_fen_per_m3);
        if income <= 0 {
            return 0;
        }
        let months = i128::from(self.draft.investment_fen) * 12 / income;
        i32::try_from(months).unwrap_or(i32::MAX)
    }
}

// ---------------------------------------------------------------------------------------------
// Who sees what.

/// The caller as the marketplace sees it: an operator (or another cwsm service) sees
/// everything, an administrator of a jurisdiction everything of the organizations inside it;
/// a company or water user is known by its record here, when it has one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Viewer {
    /// An operator or a service: everything.
    pub all: bool,
    /// An administrator of a jurisdiction: everything of the organizations inside it too.
    pub reach: Option<cwsm_platform::auth::Codes>,
    /// The caller's company record, when the caller acts for a company.
    pub company_id: Option<String>,
    /// The caller's water user record, when the caller acts for a water user.
    pub water_user_id: Option<String>,
}

impl Viewer {
    pub fn everything() -> Viewer {
        Viewer {
            all: true,
            ..Viewer::default()
        }
    }

    pub fn is_company(&self, id: &str) -> bool {
        self.company_id.as_deref() == Some(id)
    }

    pub fn is_water_user(&self, id: &str) -> bool {
        self.water_user_id.as_deref() == Some(id)
    }

    /// Whether the caller administers an organization with stored jurisdiction `code`.
    pub fn administers(&self, code: &str) -> bool {
        self.all || self.reach.as_ref().is_some_and(|r| r.hold(code))
    }
}

impl ProjectRequest {
    /// Whether `company_id` may propose (and, as a company, see the request): every company for
    /// a public request, the invited ones for an invited-only request.
    pub fn admits(&self, company_id: &str) -> bool {
        self.draft.visibility == Visibility::Public
            || self
                .draft
                .invited_company_ids
                .iter()
                .any(|c| c == company_id)
    }

    /// Who may see a request: its water user and administrators always; others once it left
    /// draft, and, when it is invited-only, only the invited companies.
    pub fn visible_to(&self, viewer: &Viewer) -> bool {
        if viewer.all || viewer.is_water_user(&self.draft.water_user_id) {
            return true;
        }
        if self.status == RequestStatus::Draft {
            return false;
        }
        match self.draft.visibility {
            Visibility::Public => true,
            Visibility::Invited => viewer.company_id.as_deref().is_some_and(|c| self.admits(c)),
        }
    }

    /// Whether the proposal deadline (inclusive, a calendar day in China Standard Time) has
    /// passed on `today`. No deadline never passes.
    pub fn deadline_passed(&self, today: chrono::NaiveDate) -> bool {
        chrono::NaiveDate::parse_from_str(&self.draft.proposal_deadline, "%Y-%m-%d")
            .is_ok_and(|deadline| today > deadline)
    }
}

impl Offering {
    /// Others than its company see an offering only while it is published.
    pub fn visible_to(&self, viewer: &Viewer) -> bool {
        viewer.all
            || self.status == OfferingStatus::Published
            || viewer.is_company(&self.draft.company_id)
    }
}

/// Today in China Standard Time (UTC+8), the calendar of proposal deadlines.
pub fn today_cst() -> chrono::NaiveDate {
    (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive()
}

// ---------------------------------------------------------------------------------------------
// Validation: each check names the field as the API spells it.

const MAX_NAME: usize = 200;
const MAX_TEXT: usize = 10_000;

fn required(field: &str, value: &str, max: usize) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::invalid(field, "required"));
    }
    if value.chars().count() > max {
        return Err(Error::invalid(field, format!("at most {max} characters")));
    }
    Ok(())
}

fn bounded(field: &str, value: &str, max: usize) -> Result<()> {
    if value.chars().count() > max {
        return Err(Error::invalid(field, format!("at most {max} characters")));
    }
    Ok(())
}

/// A volume, amount or price field: not negative, and within the range the platform's checked
/// arithmetic keeps inside `i64` (the unit is read off the field's name).
fn not_negative(field: &str, value: i64) -> Result<()> {
    if field.ends_with("price_fen_per_m3") {
        quantity::price(field, value)?;
    } else if field.ends_with("_fen") {
        quantity::fen(field, value)?;
    } else {
        quantity::litres(field, value)?;
    }
    Ok(())
}

fn basis_points(field: &str, value: i32) -> Result<()> {
    if !(0..=10_000).contains(&value) {
        return Err(Error::invalid(
            field,
            "basis points between 0 and 10000 (100%)",
        ));
    }
    Ok(())
}

/// Checks an ISO calendar date (`YYYY-MM-DD`); empty is allowed where the field is optional.
pub fn optional_date(field: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Ok(());
    }
    chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map(|_| ())
        .map_err(|_| Error::invalid(field, "a date written YYYY-MM-DD"))
}

/// Unified social credit code (统一社会信用代码, GB 32100-2015): see [`cwsm_platform::credit_code`].
pub use cwsm_platform::credit_code::check as check_credit_code;

/// A town of the gazetteer, by code or Chinese name: (its Chinese name, its code). An unknown
/// one is INVALID_ARGUMENT on `field` naming the valid towns.
pub fn gazetteer_town(field: &str, text: &str) -> Result<(String, String)> {
    let place = cwsm_platform::gazetteer::Gazetteer::builtin().town(field, text)?;
    Ok((place.name_zh.clone(), place.code.as_str().to_string()))
}

/// Replaces each town served by its gazetteer name (`field[i]` names a bad one).
fn gazetteer_towns(field: &str, towns: &mut [String]) -> Result<()> {
    for (i, town) in towns.iter_mut().enumerate() {
        *town = gazetteer_town(&format!("{field}[{i}]"), town)?.0;
    }
    Ok(())
}

impl CompanyProfile {
    /// Checks the profile; the towns served become the gazetteer's names.
    pub fn validate(&mut self, prefix: &str) -> Result<()> {
        check_credit_code(&format!("{prefix}.credit_code"), &self.credit_code)?;
        required(&format!("{prefix}.name"), &self.name, MAX_NAME)?;
        bounded(
            &format!("{prefix}.description"),
            &self.description,
            MAX_TEXT,
        )?;
        bounded(
            &format!("{prefix}.certification_evidence"),
            &self.certification_evidence,
            MAX_CERTIFICATION_TEXT,
        )?;
        not_negative(
            &format!("{prefix}.financing_capacity_fen"),
            self.financing_capacity_fen,
        )?;
        gazetteer_towns(&format!("{prefix}.towns"), &mut self.towns)?;
        self.jurisdiction_code = registration_place(
            &format!("{prefix}.jurisdiction_code"),
            &self.jurisdiction_code,
        )?;
        Ok(())
    }
}

/// Where a company registers: a district, city or province of the gazetteer (a market
/// regulator's level; a town registers nobody), or the platform's district when none is given.
fn registration_place(field: &str, code: &str) -> Result<String> {
    use cwsm_platform::jurisdiction::{Jurisdiction, Level};
    if code.trim().is_empty() {
        return Ok(Jurisdiction::default_district().to_string());
    }
    let place = cwsm_platform::gazetteer::Gazetteer::builtin().place(field, code)?;
    if place.level() == Level::Town {
        return Err(Error::invalid(
            field,
            format!(
                "{code} is a town ({}); a company is registered with a district, city or province",
                place.name_zh
            ),
        ));
    }
    Ok(place.code.to_string())
}

impl OfferingDraft {
    /// Checks the draft; the towns served become the gazetteer's names.
    pub fn validate(&mut self, prefix: &str) -> Result<()> {
        required(&format!("{prefix}.company_id"), &self.company_id, MAX_NAME)?;
        required(&format!("{prefix}.title"), &self.title, MAX_NAME)?;
        bounded(
            &format!("{prefix}.description"),
            &self.description,
            MAX_TEXT,
        )?;
        if self.technologies.is_empty() {
            return Err(Error::invalid(
                format!("{prefix}.technologies"),
                "name at least one technology",
            ));
        }
        if self.contract_models.is_empty() {
            return Err(Error::invalid(
                format!("{prefix}.contract_models"),
                "name at least one contract model",
            ));
        }
        not_negative(
            &format!("{prefix}.min_investment_fen"),
            self.min_investment_fen,
        )?;
        not_negative(
            &format!("{prefix}.max_investment_fen"),
            self.max_investment_fen,
        )?;
        if self.max_investment_fen > 0 && self.max_investment_fen < self.min_investment_fen {
            return Err(Error::invalid(
                format!("{prefix}.max_investment_fen"),
                "must not be below min_investment_fen",
            ));
        }
        basis_points(
            &format!("{prefix}.typical_savings_bp"),
            self.typical_savings_bp,
        )?;
        if self.typical_term_months < 0 {
            return Err(Error::invalid(
                format!("{prefix}.typical_term_months"),
                "must not be negative",
            ));
        }
        gazetteer_towns(&format!("{prefix}.towns"), &mut self.towns)?;
        Ok(())
    }
}

impl WaterUserProfile {
    /// Checks the profile; the town becomes the gazetteer's name, with its code.
    pub fn validate(&mut self, prefix: &str) -> Result<()> {
        check_credit_code(&format!("{prefix}.credit_code"), &self.credit_code)?;
        required(&format!("{prefix}.name"), &self.name, MAX_NAME)?;
        required(&format!("{prefix}.town"), &self.town, MAX_NAME)?;
        (self.town, self.jurisdiction_code) =
            gazetteer_town(&format!("{prefix}.town"), &self.town)?;
        bounded(&format!("{prefix}.unit_type"), &self.unit_type, MAX_NAME)?;
        not_negative(
            &format!("{prefix}.annual_use_litres"),
            self.annual_use_litres,
        )?;
        not_negative(
            &format!("{prefix}.annual_quota_litres"),
            self.annual_quota_litres,
        )?;
        Ok(())
    }
}

impl RequestDraft {
    pub fn validate(&self, prefix: &str) -> Result<()> {
        required(
            &format!("{prefix}.water_user_id"),
            &self.water_user_id,
            MAX_NAME,
        )?;
        required(&format!("{prefix}.title"), &self.title, MAX_NAME)?;
        bounded(&format!("{prefix}.problem"), &self.problem, MAX_TEXT)?;
        bounded(&format!("{prefix}.scope"), &self.scope, MAX_TEXT)?;
        not_negative(
            &format!("{prefix}.baseline_use_litres"),
            self.baseline_use_litres,
        )?;
        basis_points(
            &format!("{prefix}.expected_savings_bp"),
            self.expected_savings_bp,
        )?;
        not_negative(&format!("{prefix}.price_fen_per_m3"), self.price_fen_per_m3)?;
        not_negative(
            &format!("{prefix}.investment_wanted_fen"),
            self.investment_wanted_fen,
        )?;
        optional_date(
            &format!("{prefix}.proposal_deadline"),
            &self.proposal_deadline,
        )?;
        if self.invited_company_ids.iter().any(|c| c.trim().is_empty()) {
            return Err(Error::invalid(
                format!("{prefix}.invited_company_ids"),
                "an empty company id",
            ));
        }
        if self.visibility == Visibility::Invited && self.invited_company_ids.is_empty() {
            return Err(Error::invalid(
                format!("{prefix}.invited_company_ids"),
                "an invited-only request must invite at least one company",
            ));
        }
        Ok(())
    }
}

impl RequestDraft {
    /// A deadline for proposals must not be in the past (it may be today).
    pub fn check_deadline(&self, prefix: &str, today: chrono::NaiveDate) -> Result<()> {
        if let Ok(deadline) = chrono::NaiveDate::parse_from_str(&self.proposal_deadline, "%Y-%m-%d")
            && deadline < today
        {
            return Err(Error::invalid(
                format!("{prefix}.proposal_deadline"),
                format!("{deadline} is in the past (today is {today}, China Standard Time)"),
            ));
        }
        Ok(())
    }
}

impl ProposalDraft {
    pub fn validate(&self, prefix: &str) -> Result<()> {
        required(
            &format!("{prefix}.project_request_id"),
            &self.project_request_id,
            MAX_NAME,
        )?;
        required(&format!("{prefix}.company_id"), &self.company_id, MAX_NAME)?;
        required(&format!("{prefix}.measures"), &self.measures, MAX_TEXT)?;
        not_negative(&format!("{prefix}.investment_fen"), self.investment_fen)?;
        not_negative(
            &format!("{prefix}.promised_savings_litres"),
            self.promised_savings_litres,
        )?;
        if self.promised_savings_litres <= 0 {
            return Err(Error::invalid(
                format!("{prefix}.promised_savings_litres"),
                "must be positive: what is promised is what is measured",
            ));
        }
        basis_points(
            &format!("{prefix}.promised_savings_bp"),
            self.promised_savings_bp,
        )?;
        if self.contract_term_months <= 0 {
            return Err(Error::invalid(
                format!("{prefix}.contract_term_months"),
                "must be positive",
            ));
        }
        quantity::months(
            &format!("{prefix}.contract_term_months"),
            self.contract_term_months,
        )?;
        let t = &self.terms;
        quantity::months(
            &format!("{prefix}.terms.sharing_period_months"),
            t.sharing_period_months,
        )?;
        not_negative(
            &format!("{prefix}.terms.guaranteed_savings_litres"),
            t.guaranteed_savings_litres,
        )?;
        not_negative(
            &format!("{prefix}.terms.shortfall_price_fen_per_m3"),
            t.shortfall_price_fen_per_m3,
        )?;
        not_negative(
            &format!("{prefix}.terms.hosting_fee_fen"),
            t.hosting_fee_fen,
        )?;
        basis_points(&format!("{prefix}.terms.share_ratio_bp"), t.share_ratio_bp)?;
        basis_points(&format!("{prefix}.terms.bonus_share_bp"), t.bonus_share_bp)?;
        basis_points(
            &format!("{prefix}.terms.water_rights_share_bp"),
            t.water_rights_share_bp,
        )?;
        match self.contract_model {
            ContractModel::SharedSavings | ContractModel::GuaranteePlusSharing
                if t.share_ratio_bp == 0 =>
            {
                Err(Error::invalid(
                    format!("{prefix}.terms.share_ratio_bp"),
                    "a shared-savings contract needs the company's share",
                ))
            }
            ContractModel::GuaranteedSavings
            | ContractModel::HostingPlusGuarantee
            | ContractModel::GuaranteePlusSharing
                if t.guaranteed_savings_litres <= 0 =>
            {
                Err(Error::invalid(
                    format!("{prefix}.terms.guaranteed_savings_litres"),
                    "a guaranteed-savings contract needs the guaranteed saving",
                ))
            }
            ContractModel::WaterCostHosting | ContractModel::HostingPlusGuarantee
                if t.hosting_fee_fen <= 0 =>
            {
                Err(Error::invalid(
                    format!("{prefix}.terms.hosting_fee_fen"),
                    "a hosting contract needs the hosting fee",
                ))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposals_compare_by_cost_and_payback() {
        let p = Proposal {
            id: "p".into(),
            draft: ProposalDraft {
                project_request_id: "r".into(),
                company_id: "c".into(),
                offering_id: String::new(),
                measures: "pipes".into(),
                investment_fen: 120_000_000,          // 1.2 million yuan
                promised_savings_litres: 400_000_000, // 400,000 m³ a year
                promised_savings_bp: 2000,
                contract_model: ContractModel::SharedSavings,
                terms: ContractTerms {
                    share_ratio_bp: 7000,
                    ..Default::default()
                },
                contract_term_months: 96,
                mv_option: MvOption::C,
                drivers: vec![],
            },
            status: ProposalStatus::Submitted,
            decline_reason: String::new(),
            withdraw_reason: String::new(),
            project_id: String::new(),
            created_at_ms: 0,
            updated_at_ms: 0,
            version: 1,
        };
        assert_eq!(p.cost_per_m3_saved_fen(), 300); // 3 yuan per m³ of yearly saving
        // Issue 12's finding: the payback took the whole savings value (1.64 million a year:
        // 8 months). The company's 70% is 1.148 million a year: 1.2 million repays in 12
        // months (12.54, whole months).
        assert_eq!(p.company_yearly_income_fen(410), 114_800_000);
        assert_eq!(p.payback_months(410), 12);
        // Guaranteed savings: its 20% bonus on the 100,000 m³ above a 300,000 m³ guarantee,
        // 82,000 yuan a year: 175 months.
        let mut g = p.clone();
        g.draft.contract_model = ContractModel::GuaranteedSavings;
        g.draft.terms = ContractTerms {
            guaranteed_savings_litres: 300_000_000,
            bonus_share_bp: 2000,
            ..Default::default()
        };
        assert_eq!(g.company_yearly_income_fen(410), 8_200_000);
        assert_eq!(g.payback_months(410), 175);
        // Hosting: the fee less the bill after the retrofit (baseline 2,000,000 m³ at 20%).
        let mut h = p.clone();
        h.draft.contract_model = ContractModel::WaterCostHosting;
        h.draft.terms = ContractTerms {
            hosting_fee_fen: 800_000_000,
            ..Default::default()
        };
        assert_eq!(
            h.company_yearly_income_fen(410),
            800_000_000 - 1_600_000 * 410
        );
        assert_eq!(h.payback_months(410), 120_000_000 * 12 / 144_000_000);
    }
}
