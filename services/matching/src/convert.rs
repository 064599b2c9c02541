//! Protobuf ↔ domain for matching. Only this module and [`crate::grpc`] know wire types.

use cwsm_platform::grpc::timestamp;
use cwsm_platform::lang::Lang;
use cwsm_platform::vocab::{
    CertificationGrade, ContractModel, IndicatorTag, MvOption, Sector, Technology,
};
use cwsm_platform::{Error, Result};
use cwsm_proto::matching::v1 as pb;
use cwsm_proto::types;

use crate::domain::*;
use crate::ranking::ScorePart;

/// Reads a required enum field.
pub fn one<T>(field: &str, n: i32, from: fn(i32) -> Option<T>) -> Result<T> {
    if n == 0 {
        return Err(Error::invalid(field, "required"));
    }
    from(n).ok_or_else(|| Error::invalid(field, format!("unknown value {n}")))
}

/// Reads a repeated enum field; 0 (unspecified) and unknown numbers are errors.
pub fn many<T>(field: &str, ns: &[i32], from: fn(i32) -> Option<T>) -> Result<Vec<T>> {
    ns.iter()
        .map(|n| from(*n).ok_or_else(|| Error::invalid(field, format!("unknown value {n}"))))
        .collect()
}

/// An optional enum filter as the stored code, empty for "any".
pub fn filter<T>(
    field: &str,
    n: i32,
    from: fn(i32) -> Option<T>,
    code: fn(T) -> &'static str,
) -> Result<String> {
    if n == 0 {
        Ok(String::new())
    } else {
        from(n)
            .map(|v| code(v).to_string())
            .ok_or_else(|| Error::invalid(field, format!("unknown value {n}")))
    }
}

fn numbers<T: Copy>(values: &[T], number: fn(T) -> i32) -> Vec<i32> {
    values.iter().map(|v| number(*v)).collect()
}

fn contact_in(c: Option<types::Contact>) -> Contact {
    let c = c.unwrap_or_default();
    Contact {
        name: c.name,
        phone: c.phone,
        email: c.email,
    }
}

fn contact_out(c: &Contact) -> types::Contact {
    types::Contact {
        name: c.name.clone(),
        phone: c.phone.clone(),
        email: c.email.clone(),
    }
}

pub fn company_profile(c: pb::Company) -> Result<CompanyProfile> {
    Ok(CompanyProfile {
        credit_code: c.credit_code.trim().to_uppercase(),
        name: c.name.trim().to_string(),
        description: c.description,
        contact: contact_in(c.contact),
        towns: c.towns,
        sectors: many("company.sectors", &c.sectors, Sector::from_number)?,
        claimed_certification: if c.certification_grade == 0 {
            CertificationGrade::None
        } else {
            one(
                "company.certification_grade",
                c.certification_grade,
                CertificationGrade::from_number,
            )?
        },
        certification_evidence: c.certification_evidence.trim().to_string(),
        financing_capacity_fen: c.financing_capacity_fen,
        jurisdiction_code: c.jurisdiction_code.trim().to_string(),
    })
}

fn grade_number(g: Option<CertificationGrade>) -> i32 {
    g.map(CertificationGrade::number).unwrap_or(0)
}

fn track_record(t: &TrackRecord) -> pb::TrackRecord {
    pb::TrackRecord {
        projects_completed: i32::try_from(t.projects_completed).unwrap_or(i32::MAX),
        verified_savings_litres: t.verified_savings_litres,
        promised_savings_litres: t.promised_savings_litres,
    }
}

pub fn company(c: &Company) -> pb::Company {
    let p = &c.profile;
    pb::Company {
        id: c.id.clone(),
        credit_code: p.credit_code.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        contact: Some(contact_out(&p.contact)),
        towns: p.towns.clone(),
        sectors: numbers(&p.sectors, Sector::number),
        certification_grade: p.claimed_certification.number(),
        financing_capacity_fen: p.financing_capacity_fen,
        track_record: Some(track_record(&c.track_record)),
        create_time: Some(timestamp(c.created_at_ms)),
        update_time: Some(timestamp(c.updated_at_ms)),
        version: c.version,
        certification_evidence: p.certification_evidence.clone(),
        confirmed_certification_grade: grade_number(c.certification.grade),
        certification_confirmed_by: c.certification.by.clone(),
        certification_confirm_time: (c.certification.at_ms > 0)
            .then(|| timestamp(c.certification.at_ms)),
        certification_note: c.certification.note.clone(),
        jurisdiction_code: cwsm_platform::jurisdiction::Jurisdiction::of_stored(
            &p.jurisdiction_code,
        )
        .to_string(),
    }
}

pub fn company_summary(c: &Company) -> pb::CompanySummary {
    pb::CompanySummary {
        id: c.id.clone(),
        name: c.profile.name.clone(),
        credit_code: c.profile.credit_code.clone(),
        certification_grade: c.profile.claimed_certification.number(),
        financing_capacity_fen: c.profile.financing_capacity_fen,
        track_record: Some(track_record(&c.track_record)),
        confirmed_certification_grade: grade_number(c.certification.grade),
    }
}

pub fn offering_draft(o: pb::Offering) -> Result<OfferingDraft> {
    Ok(OfferingDraft {
        company_id: o.company_id.trim().to_string(),
        title: o.title.trim().to_string(),
        description: o.description,
        technologies: many(
            "offering.technologies",
            &o.technologies,
            Technology::from_number,
        )?,
        contract_models: many(
            "offering.contract_models",
            &o.contract_models,
            ContractModel::from_number,
        )?,
        sectors: many("offering.sectors", &o.sectors, Sector::from_number)?,
        towns: o.towns,
        min_investment_fen: o.min_investment_fen,
        max_investment_fen: o.max_investment_fen,
        typical_savings_bp: o.typical_savings_bp,
        typical_term_months: o.typical_term_months,
    })
}

pub fn offering_status(s: OfferingStatus) -> pb::OfferingStatus {
    match s {
        OfferingStatus::Draft => pb::OfferingStatus::Draft,
        OfferingStatus::Published => pb::OfferingStatus::Published,
        OfferingStatus::Withdrawn => pb::OfferingStatus::Withdrawn,
    }
}

pub fn offering(o: &Offering) -> pb::Offering {
    let d = &o.draft;
    pb::Offering {
        id: o.id.clone(),
        company_id: d.company_id.clone(),
        title: d.title.clone(),
        description: d.description.clone(),
        technologies: numbers(&d.technologies, Technology::number),
        contract_models: numbers(&d.contract_models, ContractModel::number),
        min_investment_fen: d.min_investment_fen,
        max_investment_fen: d.max_investment_fen,
        typical_savings_bp: d.typical_savings_bp,
        typical_term_months: d.typical_term_months,
        sectors: numbers(&d.sectors, Sector::number),
        towns: d.towns.clone(),
        status: offering_status(o.status) as i32,
        create_time: Some(timestamp(o.created_at_ms)),
        update_time: Some(timestamp(o.updated_at_ms)),
        version: o.version,
    }
}

pub fn water_user_profile(u: pb::WaterUser) -> Result<WaterUserProfile> {
    Ok(WaterUserProfile {
        credit_code: u.credit_code.trim().to_uppercase(),
        name: u.name.trim().to_string(),
        sector: one("water_user.sector", u.sector, Sector::from_number)?,
        unit_type: u.unit_type,
        town: u.town.trim().to_string(),
        // Output only: set from the town when the profile is checked.
        jurisdiction_code: String::new(),
        annual_use_litres: u.annual_use_litres,
        annual_quota_litres: u.annual_quota_litres,
        contact: contact_in(u.contact),
    })
}

pub fn water_user(u: &WaterUser) -> pb::WaterUser {
    let p = &u.profile;
    pb::WaterUser {
        id: u.id.clone(),
        credit_code: p.credit_code.clone(),
        name: p.name.clone(),
        sector: p.sector.number(),
        unit_type: p.unit_type.clone(),
        town: p.town.clone(),
        annual_use_litres: p.annual_use_litres,
        annual_quota_litres: p.annual_quota_litres,
        contact: Some(contact_out(&p.contact)),
        planned_use_supervised: u.planned_use_supervised(),
        create_time: Some(timestamp(u.created_at_ms)),
        update_time: Some(timestamp(u.updated_at_ms)),
        version: u.version,
        jurisdiction_code: p.jurisdiction_code.clone(),
    }
}

pub fn water_user_ref(u: &WaterUser) -> types::WaterUserRef {
    types::WaterUserRef {
        id: u.id.clone(),
        name: u.profile.name.clone(),
        credit_code: u.profile.credit_code.clone(),
        sector: u.profile.sector.number(),
        unit_type: u.profile.unit_type.clone(),
        town: u.profile.town.clone(),
        jurisdiction_code: u.profile.jurisdiction_code.clone(),
    }
}

pub fn request_draft(r: pb::ProjectRequest) -> Result<RequestDraft> {
    Ok(RequestDraft {
        water_user_id: r.water_user_id.trim().to_string(),
        title: r.title.trim().to_string(),
        problem: r.problem,
        scope: r.scope,
        baseline_use_litres: r.baseline_use_litres,
        expected_savings_bp: r.expected_savings_bp,
        price_fen_per_m3: r.price_fen_per_m3,
        preferred_contract_models: many(
            "project_request.preferred_contract_models",
            &r.preferred_contract_models,
            ContractModel::from_number,
        )?,
        wanted_technologies: many(
            "project_request.wanted_technologies",
            &r.wanted_technologies,
            Technology::from_number,
        )?,
        investment_wanted_fen: r.investment_wanted_fen,
        proposal_deadline: r.proposal_deadline.trim().to_string(),
        visibility: match pb::RequestVisibility::try_from(r.visibility) {
            Ok(pb::RequestVisibility::Invited) => Visibility::Invited,
            Ok(_) => Visibility::Public,
            Err(_) => {
                return Err(Error::invalid(
                    "project_request.visibility",
                    format!("unknown value {}", r.visibility),
                ));
            }
        },
        invited_company_ids: r.invited_company_ids,
        indicator_tags: many(
            "project_request.indicator_tags",
            &r.indicator_tags,
            IndicatorTag::from_number,
        )?,
    })
}

pub fn request_status(s: RequestStatus) -> pb::ProjectRequestStatus {
    match s {
        RequestStatus::Draft => pb::ProjectRequestStatus::Draft,
        RequestStatus::Open => pb::ProjectRequestStatus::Open,
        RequestStatus::Closed => pb::ProjectRequestStatus::Closed,
        RequestStatus::Awarded => pb::ProjectRequestStatus::Awarded,
        RequestStatus::Cancelled => pb::ProjectRequestStatus::Cancelled,
    }
}

pub fn request_status_filter(n: i32) -> Result<String> {
    Ok(match pb::ProjectRequestStatus::try_from(n) {
        Ok(pb::ProjectRequestStatus::Unspecified) => String::new(),
        Ok(pb::ProjectRequestStatus::Draft) => "draft".into(),
        Ok(pb::ProjectRequestStatus::Open) => "open".into(),
        Ok(pb::ProjectRequestStatus::Closed) => "closed".into(),
        Ok(pb::ProjectRequestStatus::Awarded) => "awarded".into(),
        Ok(pb::ProjectRequestStatus::Cancelled) => "cancelled".into(),
        Err(_) => return Err(Error::invalid("status", format!("unknown value {n}"))),
    })
}

pub fn project_request(r: &ProjectRequest, user: Option<&WaterUser>) -> pb::ProjectRequest {
    let d = &r.draft;
    pb::ProjectRequest {
        id: r.id.clone(),
        water_user_id: d.water_user_id.clone(),
        water_user: user.map(water_user_ref),
        title: d.title.clone(),
        problem: d.problem.clone(),
        scope: d.scope.clone(),
        baseline_use_litres: d.baseline_use_litres,
        expected_savings_bp: d.expected_savings_bp,
        price_fen_per_m3: d.price_fen_per_m3,
        preferred_contract_models: numbers(&d.preferred_contract_models, ContractModel::number),
        wanted_technologies: numbers(&d.wanted_technologies, Technology::number),
        investment_wanted_fen: d.investment_wanted_fen,
        proposal_deadline: d.proposal_deadline.clone(),
        visibility: match d.visibility {
            Visibility::Public => pb::RequestVisibility::Public as i32,
            Visibility::Invited => pb::RequestVisibility::Invited as i32,
        },
        invited_company_ids: d.invited_company_ids.clone(),
        indicator_tags: numbers(&d.indicator_tags, IndicatorTag::number),
        status: request_status(r.status) as i32,
        status_reason: r.status_reason.clone(),
        awarded_proposal_id: r.awarded_proposal_id.clone(),
        proposal_count: i32::try_from(r.proposal_count).unwrap_or(i32::MAX),
        create_time: Some(timestamp(r.created_at_ms)),
        update_time: Some(timestamp(r.updated_at_ms)),
        version: r.version,
    }
}

pub fn terms_in(t: Option<types::ContractTerms>) -> ContractTerms {
    let t = t.unwrap_or_default();
    ContractTerms {
        share_ratio_bp: t.share_ratio_bp,
        sharing_period_months: t.sharing_period_months,
        guaranteed_savings_litres: t.guaranteed_savings_litres,
        shortfall_price_fen_per_m3: t.shortfall_price_fen_per_m3,
        bonus_share_bp: t.bonus_share_bp,
        hosting_fee_fen: t.hosting_fee_fen,
        water_rights_share_bp: t.water_rights_share_bp,
        pro_rate_by_days: t.pro_rate_by_days,
    }
}

pub fn terms_out(t: &ContractTerms) -> types::ContractTerms {
    types::ContractTerms {
        share_ratio_bp: t.share_ratio_bp,
        sharing_period_months: t.sharing_period_months,
        guaranteed_savings_litres: t.guaranteed_savings_litres,
        shortfall_price_fen_per_m3: t.shortfall_price_fen_per_m3,
        bonus_share_bp: t.bonus_share_bp,
        hosting_fee_fen: t.hosting_fee_fen,
        water_rights_share_bp: t.water_rights_share_bp,
        pro_rate_by_days: t.pro_rate_by_days,
    }
}

pub fn proposal_draft(p: pb::Proposal) -> Result<ProposalDraft> {
    Ok(ProposalDraft {
        project_request_id: p.project_request_id.trim().to_string(),
        company_id: p.company_id.trim().to_string(),
        offering_id: p.offering_id.trim().to_string(),
        measures: p.measures,
        investment_fen: p.investment_fen,
        promised_savings_litres: p.promised_savings_litres,
        promised_savings_bp: p.promised_savings_bp,
        contract_model: one(
            "proposal.contract_model",
            p.contract_model,
            ContractModel::from_number,
        )?,
        terms: terms_in(p.terms),
        contract_term_months: p.contract_term_months,
        mv_option: if p.mv_option == 0 {
            MvOption::C
        } else {
            one("proposal.mv_option", p.mv_option, MvOption::from_number)?
        },
        drivers: p.drivers,
    })
}

pub fn proposal_status(s: ProposalStatus) -> pb::ProposalStatus {
    match s {
        ProposalStatus::Submitted => pb::ProposalStatus::Submitted,
        ProposalStatus::Accepted => pb::ProposalStatus::Accepted,
        ProposalStatus::Declined => pb::ProposalStatus::Declined,
        ProposalStatus::Withdrawn => pb::ProposalStatus::Withdrawn,
    }
}

pub fn proposal_status_filter(n: i32) -> Result<String> {
    Ok(match pb::ProposalStatus::try_from(n) {
        Ok(pb::ProposalStatus::Unspecified) => String::new(),
        Ok(s) => s
            .as_str_name()
            .trim_start_matches("PROPOSAL_STATUS_")
            .to_lowercase(),
        Err(_) => return Err(Error::invalid("status", format!("unknown value {n}"))),
    })
}

pub fn proposal(p: &Proposal, company: Option<&Company>, price_fen_per_m3: i64) -> pb::Proposal {
    let d = &p.draft;
    pb::Proposal {
        id: p.id.clone(),
        project_request_id: d.project_request_id.clone(),
        company_id: d.company_id.clone(),
        offering_id: d.offering_id.clone(),
        company: company.map(company_summary),
        measures: d.measures.clone(),
        investment_fen: d.investment_fen,
        promised_savings_litres: d.promised_savings_litres,
        promised_savings_bp: d.promised_savings_bp,
        contract_model: d.contract_model.number(),
        terms: Some(terms_out(&d.terms)),
        contract_term_months: d.contract_term_months,
        mv_option: d.mv_option.number(),
        drivers: d.drivers.clone(),
        status: proposal_status(p.status) as i32,
        decline_reason: p.decline_reason.clone(),
        withdraw_reason: p.withdraw_reason.clone(),
        project_id: p.project_id.clone(),
        cost_per_m3_saved_fen: p.cost_per_m3_saved_fen(),
        payback_months: p.payback_months(price_fen_per_m3),
        create_time: Some(timestamp(p.created_at_ms)),
        update_time: Some(timestamp(p.updated_at_ms)),
        version: p.version,
    }
}

/// The parts of a score, explained in `lang`.
pub fn score_parts(parts: &[ScorePart], lang: Lang) -> Vec<pb::ScorePart> {
    parts
        .iter()
        .map(|p| pb::ScorePart {
            name: p.name.to_string(),
            weight: p.weight,
            value: p.value,
            explanation: p.explanation.get(lang).to_string(),
        })
        .collect()
}
