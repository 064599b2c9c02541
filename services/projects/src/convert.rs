//! Domain ↔ `cwsm.projects.v1` messages: what the adapter answers, and what it reads from
//! requests into the domain (with the field named when a value is refused).

use cwsm_platform::grpc::timestamp;
use cwsm_platform::input::{
    MAX_CODE, MAX_ITEMS, MAX_NAME, MAX_TEXT, check_count, check_len, check_lengths,
};
use cwsm_platform::lang::Lang;
use cwsm_platform::vocab::{ContractModel, IndicatorTag, MvOption, Sector};
use cwsm_platform::{Error, Result};
use cwsm_proto::projects::v1 as pb;
use cwsm_proto::types;
use tonic::Status;

use crate::corrections::{Correction, CorrectionAction, CorrectionStatus};
use crate::domain::{Contract, ContractTerms, Party, Project, Stage, Transition};
use crate::ledger::{
    AdjustmentStatus, MeasurementCheck, NonRoutineAdjustment, Period, PeriodStatus, SavingsReport,
    SavingsSummary, Settlement, Waiver,
};
use crate::metering::{Meter, MeterKind, QualityAction, QualityRules, flag};
use crate::readings::Point;
use crate::verifiers::{ProposalState, VerifierAssignment, VerifierProposal};

pub fn stage_to_pb(s: Stage) -> pb::ProjectStage {
    match s {
        Stage::Contracted => pb::ProjectStage::Contracted,
        Stage::Implementing => pb::ProjectStage::Implementing,
        Stage::Commissioned => pb::ProjectStage::Commissioned,
        Stage::Accepted => pb::ProjectStage::Accepted,
        Stage::Operating => pb::ProjectStage::Operating,
        Stage::HandedOver => pb::ProjectStage::HandedOver,
        Stage::Closed => pb::ProjectStage::Closed,
        Stage::Suspended => pb::ProjectStage::Suspended,
        Stage::Terminated => pb::ProjectStage::Terminated,
    }
}

pub(crate) fn stage_from_pb(field: &str, n: i32) -> Result<Option<Stage>> {
    let stage = match pb::ProjectStage::try_from(n) {
        Ok(pb::ProjectStage::Unspecified) => return Ok(None),
        Ok(s) => s,
        Err(_) => return Err(Error::invalid(field, format!("unknown stage {n}"))),
    };
    Ok(Stage::ALL.into_iter().find(|s| stage_to_pb(*s) == stage))
}

pub(crate) fn code_filter<T>(
    field: &str,
    n: i32,
    from: fn(i32) -> Option<T>,
    code: fn(T) -> &'static str,
) -> Result<String> {
    if n == 0 {
        return Ok(String::new());
    }
    from(n)
        .map(|v| code(v).to_string())
        .ok_or_else(|| Error::invalid(field, format!("unknown value {n}")))
}

pub fn project_to_pb(p: &Project) -> pb::Project {
    let c = &p.contract;
    pb::Project {
        id: p.id.clone(),
        proposal_id: c.proposal_id.clone(),
        project_request_id: c.project_request_id.clone(),
        company: Some(types::CompanyRef {
            id: c.company.id.clone(),
            name: c.company.name.clone(),
            credit_code: c.company.credit_code.clone(),
        }),
        water_user: Some(types::WaterUserRef {
            id: c.water_user.id.clone(),
            name: c.water_user.name.clone(),
            credit_code: c.water_user.credit_code.clone(),
            sector: c.sector.number(),
            unit_type: c.unit_type.clone(),
            town: c.town.clone(),
            jurisdiction_code: c.jurisdiction_code.clone(),
        }),
        title: c.title.clone(),
        sites: p.sites.clone(),
        measures: c.measures.clone(),
        contract_model: c.contract_model.number(),
        terms: Some(types::ContractTerms {
            share_ratio_bp: c.terms.share_ratio_bp,
            sharing_period_months: c.terms.sharing_period_months,
            guaranteed_savings_litres: c.terms.guaranteed_savings_litres,
            shortfall_price_fen_per_m3: c.terms.shortfall_price_fen_per_m3,
            bonus_share_bp: c.terms.bonus_share_bp,
            hosting_fee_fen: c.terms.hosting_fee_fen,
            water_rights_share_bp: c.terms.water_rights_share_bp,
            pro_rate_by_days: c.terms.pro_rate_by_days,
        }),
        investment_fen: c.investment_fen,
        promised_savings_litres: c.promised_savings_litres,
        promised_savings_bp: c.promised_savings_bp,
        contract_term_months: c.contract_term_months,
        baseline_start_date: p.baseline_start_date.clone(),
        baseline_end_date: p.baseline_end_date.clone(),
        mv_plan: Some(pb::MvPlan {
            option: c.mv_option.number(),
            drivers: c.drivers.clone(),
            model_description: p.mv_model_description.clone(),
            reporting_period_months: p.reporting_period_months,
            quality_rules: quality_rules_to_pb(p.quality_rules),
        }),
        price_fen_per_m3: c.price_fen_per_m3,
        indicator_tags: c.indicator_tags.iter().map(|t| t.number()).collect(),
        stage: stage_to_pb(p.stage) as i32,
        suspended_from_stage: p.suspended_from.map(|s| stage_to_pb(s) as i32).unwrap_or(0),
        stage_history: vec![],
        create_time: Some(timestamp(p.created_at_ms)),
        update_time: Some(timestamp(p.updated_at_ms)),
        version: p.version,
        verifier_org: p.verifier_org.clone(),
        verifier_history: vec![],
    }
}

pub(crate) fn transition_to_pb(t: &Transition) -> pb::ProjectTransition {
    pb::ProjectTransition {
        id: t.id.clone(),
        project_id: t.project_id.clone(),
        from_stage: t.from.map(|s| stage_to_pb(s) as i32).unwrap_or(0),
        to_stage: stage_to_pb(t.to) as i32,
        reason: t.reason.clone(),
        evidence: t.evidence.clone(),
        actor: t.actor.clone(),
        actor_org: t.actor_org.clone(),
        transition_time: Some(timestamp(t.at_ms)),
        effective_date: t.effective_date.to_string(),
    }
}

/// The contract of a project an administrator enters (CreateProject), checked: the parties by
/// credit code, the water user's town in the gazetteer, the vocabulary by number.
pub(crate) fn contract_from_pb(p: pb::Project) -> Result<Contract> {
    let proposal_id = required_id("project.proposal_id", &p.proposal_id)?.to_string();
    check_lengths(&[
        ("project.proposal_id", &proposal_id, MAX_CODE),
        (
            "project.project_request_id",
            &p.project_request_id,
            MAX_CODE,
        ),
        ("project.title", &p.title, MAX_NAME),
        ("project.measures", &p.measures, MAX_TEXT),
    ])?;
    let company = p
        .company
        .ok_or_else(|| Error::invalid("project.company", "required"))?;
    let user = p
        .water_user
        .ok_or_else(|| Error::invalid("project.water_user", "required"))?;
    let party = |field: &str, id: String, name: String, code: String| -> Result<Party> {
        let code = code.trim().to_uppercase();
        cwsm_platform::credit_code::check(&format!("{field}.credit_code"), &code)?;
        check_lengths(&[
            (&format!("{field}.id"), &id, MAX_CODE),
            (&format!("{field}.name"), &name, MAX_NAME),
        ])?;
        required_id(&format!("{field}.name"), &name)?;
        Ok(Party {
            id: id.trim().to_string(),
            name: name.trim().to_string(),
            credit_code: code,
        })
    };
    let company = party(
        "project.company",
        company.id,
        company.name,
        company.credit_code,
    )?;
    let sector = Sector::from_number(user.sector).ok_or_else(|| {
        Error::invalid(
            "project.water_user.sector",
            "required: the water user's sector",
        )
    })?;
    check_len("project.water_user.unit_type", &user.unit_type, MAX_NAME)?;
    let town = cwsm_platform::gazetteer::Gazetteer::builtin()
        .town("project.water_user.town", &user.town)?;
    let water_user = party("project.water_user", user.id, user.name, user.credit_code)?;
    required_id("project.title", &p.title)?;
    let contract_model = ContractModel::from_number(p.contract_model)
        .ok_or_else(|| Error::invalid("project.contract_model", "required: the contract model"))?;
    let terms = p.terms.unwrap_or_default();
    let mv = p.mv_plan.unwrap_or_default();
    for (field, value) in [
        ("project.investment_fen", p.investment_fen),
        ("project.promised_savings_litres", p.promised_savings_litres),
        ("project.price_fen_per_m3", p.price_fen_per_m3),
    ] {
        if value < 0 {
            return Err(Error::invalid(field, "must not be negative"));
        }
    }
    if p.contract_term_months < 0 || p.promised_savings_bp < 0 {
        return Err(Error::invalid(
            "project.contract_term_months",
            "terms and basis points must not be negative",
        ));
    }
    check_count("project.mv_plan.drivers", mv.drivers.len(), MAX_ITEMS)?;
    let mut indicator_tags = Vec::new();
    for (i, t) in p.indicator_tags.iter().enumerate() {
        indicator_tags.push(IndicatorTag::from_number(*t).ok_or_else(|| {
            Error::invalid(
                format!("project.indicator_tags[{i}]"),
                format!("unknown tag {t}"),
            )
        })?);
    }
    Ok(Contract {
        proposal_id,
        project_request_id: p.project_request_id.trim().to_string(),
        company,
        water_user,
        sector,
        unit_type: user.unit_type.trim().to_string(),
        town: town.name_zh.clone(),
        jurisdiction_code: town.code.as_str().to_string(),
        title: p.title.trim().to_string(),
        measures: p.measures,
        contract_model,
        terms: ContractTerms {
            share_ratio_bp: terms.share_ratio_bp,
            sharing_period_months: terms.sharing_period_months,
            guaranteed_savings_litres: terms.guaranteed_savings_litres,
            shortfall_price_fen_per_m3: terms.shortfall_price_fen_per_m3,
            bonus_share_bp: terms.bonus_share_bp,
            hosting_fee_fen: terms.hosting_fee_fen,
            water_rights_share_bp: terms.water_rights_share_bp,
            pro_rate_by_days: terms.pro_rate_by_days,
        },
        investment_fen: p.investment_fen,
        promised_savings_litres: p.promised_savings_litres,
        promised_savings_bp: p.promised_savings_bp,
        contract_term_months: p.contract_term_months,
        baseline_use_litres: 0,
        mv_option: MvOption::from_number(mv.option).unwrap_or(MvOption::C),
        drivers: mv.drivers,
        price_fen_per_m3: p.price_fen_per_m3,
        indicator_tags,
    })
}

pub(crate) fn assignment_to_pb(a: &VerifierAssignment) -> pb::VerifierAssignment {
    pb::VerifierAssignment {
        verifier_org: a.verifier_org.clone(),
        previous_verifier_org: a.previous_verifier_org.clone(),
        proposal_id: a.proposal_id.clone(),
        actor: a.actor.clone(),
        actor_org: a.actor_org.clone(),
        assign_time: Some(timestamp(a.at_ms)),
    }
}

pub(crate) fn proposal_to_pb(p: &VerifierProposal) -> pb::VerifierProposal {
    let state = match p.state {
        ProposalState::Open => pb::VerifierProposalState::Open,
        ProposalState::Approved => pb::VerifierProposalState::Approved,
        ProposalState::Declined => pb::VerifierProposalState::Declined,
    };
    pb::VerifierProposal {
        id: p.id.clone(),
        project_id: p.project_id.clone(),
        verifier_org: p.verifier_org.clone(),
        note: p.note.clone(),
        proposed_by: p.proposed_by.clone(),
        proposer_role: p.proposer_role.clone(),
        proposer_org: p.proposer_org.clone(),
        state: state as i32,
        decided_by: p.decided_by.clone(),
        decision_reason: p.decision_reason.clone(),
        decide_time: (p.decided_at_ms > 0).then(|| timestamp(p.decided_at_ms)),
        create_time: Some(timestamp(p.created_at_ms)),
        update_time: Some(timestamp(p.updated_at_ms)),
        version: p.version,
    }
}

pub(crate) fn meter_kind_to_pb(k: MeterKind) -> pb::MeterKind {
    match k {
        MeterKind::WholeSite => pb::MeterKind::WholeSite,
        MeterKind::SubMeter => pb::MeterKind::SubMeter,
    }
}

pub(crate) fn meter_kind_from_pb(field: &str, n: i32) -> Result<Option<MeterKind>> {
    match pb::MeterKind::try_from(n) {
        Ok(pb::MeterKind::Unspecified) => Ok(None),
        Ok(pb::MeterKind::WholeSite) => Ok(Some(MeterKind::WholeSite)),
        Ok(pb::MeterKind::SubMeter) => Ok(Some(MeterKind::SubMeter)),
        Err(_) => Err(Error::invalid(field, format!("unknown meter kind {n}"))),
    }
}

pub(crate) fn meter_to_pb(m: &Meter) -> pb::Meter {
    pb::Meter {
        id: m.id.clone(),
        project_id: m.project_id.clone(),
        site: m.site.clone(),
        name: m.name.clone(),
        kind: meter_kind_to_pb(m.kind) as i32,
        interval_seconds: m.interval_seconds,
        serial_number: m.serial_number.clone(),
        register_capacity_litres: m.register_capacity_litres,
        create_time: Some(timestamp(m.created_at_ms)),
        update_time: Some(timestamp(m.updated_at_ms)),
        version: m.version,
    }
}

/// The proto flags set in a bit set.
pub(crate) fn flags_to_pb(bits: i32) -> Vec<i32> {
    flag::ALL
        .iter()
        .filter(|(_, bit)| bits & bit != 0)
        .map(|(n, _)| *n)
        .collect()
}

pub(crate) fn document_to_pb(d: &crate::evidence::Document) -> pb::EvidenceDocument {
    pb::EvidenceDocument {
        project_id: d.project_id.clone(),
        sha256: d.sha256.clone(),
        file_name: d.file_name.clone(),
        media_type: d.media_type.clone(),
        size_bytes: d.size_bytes,
        uploaded_by: d.uploaded_by.clone(),
        uploaded_by_org: d.uploaded_by_org.clone(),
        create_time: Some(timestamp(d.created_at_ms)),
    }
}

pub(crate) fn correction_to_pb(c: &Correction) -> pb::ReadingCorrection {
    pb::ReadingCorrection {
        id: c.id.clone(),
        project_id: c.project_id.clone(),
        meter_id: c.meter_id.clone(),
        read_time: Some(timestamp(c.read_at_ms)),
        action: match c.action {
            CorrectionAction::Replace => pb::CorrectionAction::Replace,
            CorrectionAction::Exclude => pb::CorrectionAction::Exclude,
            CorrectionAction::Keep => pb::CorrectionAction::Keep,
        } as i32,
        corrected_use_litres: c.corrected_use_litres,
        original_use_litres: c.original_use_litres,
        original_flags: flags_to_pb(c.original_flags),
        reason: c.reason.clone(),
        evidence: c.evidence.clone(),
        status: match c.status {
            CorrectionStatus::Proposed => pb::CorrectionStatus::Proposed,
            CorrectionStatus::Accepted => pb::CorrectionStatus::Accepted,
            CorrectionStatus::Rejected => pb::CorrectionStatus::Rejected,
            CorrectionStatus::Superseded => pb::CorrectionStatus::Superseded,
        } as i32,
        proposed_by: c.proposed_by.clone(),
        proposed_by_org: c.proposed_by_org.clone(),
        decided_by: c.decided_by.clone(),
        decided_by_org: c.decided_by_org.clone(),
        decision_note: c.decision_note.clone(),
        create_time: Some(timestamp(c.created_at_ms)),
        update_time: Some(timestamp(c.updated_at_ms)),
        version: c.version,
    }
}

pub(crate) fn point_to_pb(p: &Point) -> pb::ReadingPoint {
    pb::ReadingPoint {
        start_time: Some(timestamp(p.start_ms)),
        end_time: Some(timestamp(p.end_ms)),
        use_litres: p.use_litres,
        register_litres: p.register_litres,
        reading_count: i32::try_from(p.reading_count).unwrap_or(i32::MAX),
        estimated_count: i32::try_from(p.estimated_count).unwrap_or(i32::MAX),
        flags: flags_to_pb(p.flags),
    }
}

/// Every flag's rule.
pub(crate) fn quality_rules_to_pb(rules: QualityRules) -> Vec<pb::QualityRule> {
    flag::ALL
        .iter()
        .map(|(number, bit)| pb::QualityRule {
            flag: *number,
            action: match rules.action(*bit) {
                QualityAction::Exclude => pb::QualityAction::Exclude,
                QualityAction::Include => pb::QualityAction::Include,
                QualityAction::Confirm => pb::QualityAction::Confirm,
            } as i32,
        })
        .collect()
}

/// The rules named, the default for the flags not named.
pub(crate) fn quality_rules_from_pb(rules: &[pb::QualityRule]) -> Result<QualityRules, Status> {
    let mut out = QualityRules::default();
    for (i, r) in rules.iter().enumerate() {
        let field = |name: &str| format!("project.mv_plan.quality_rules[{i}].{name}");
        let bit = flag::ALL
            .iter()
            .find(|(number, _)| *number == r.flag)
            .map(|(_, bit)| *bit)
            .ok_or_else(|| Error::invalid(field("flag"), format!("unknown flag {}", r.flag)))?;
        let action = match pb::QualityAction::try_from(r.action) {
            Ok(pb::QualityAction::Exclude) => QualityAction::Exclude,
            Ok(pb::QualityAction::Include) => QualityAction::Include,
            Ok(pb::QualityAction::Confirm) => QualityAction::Confirm,
            _ => {
                return Err(Error::invalid(
                    field("action"),
                    "required: EXCLUDE, INCLUDE or CONFIRM",
                )
                .into());
            }
        };
        out = out.with(bit, action).map_err(|e| match e {
            Error::InvalidArgument { reason, .. } => Error::InvalidArgument {
                field: field("action"),
                reason,
            },
            other => other,
        })?;
    }
    Ok(out)
}

/// A check's proto value, by name (MEASUREMENT_CHECK_ and the code in capitals).
pub(crate) fn check_to_pb(c: MeasurementCheck) -> pb::MeasurementCheck {
    pb::MeasurementCheck::from_str_name(&format!("MEASUREMENT_CHECK_{}", c.code().to_uppercase()))
        .unwrap_or(pb::MeasurementCheck::Unspecified)
}

pub(crate) fn check_from_pb(number: i32) -> Result<MeasurementCheck, Status> {
    MeasurementCheck::ALL
        .into_iter()
        .find(|c| check_to_pb(*c) as i32 == number)
        .ok_or_else(|| {
            let codes: Vec<&str> = MeasurementCheck::ALL.iter().map(|c| c.code()).collect();
            Error::invalid("check", format!("required: one of {}", codes.join(", "))).into()
        })
}

pub(crate) fn waiver_to_pb(w: &Waiver) -> pb::CheckWaiver {
    pb::CheckWaiver {
        project_id: w.project_id.clone(),
        period_start_date: w.period_start_date.clone(),
        check: check_to_pb(w.check) as i32,
        reason: w.reason.clone(),
        failure: w.failure.clone(),
        waived_by: w.waived_by.clone(),
        waived_by_org: w.waived_by_org.clone(),
        create_time: Some(timestamp(w.created_at_ms)),
    }
}

pub(crate) fn summary_to_pb(s: &SavingsSummary) -> pb::SavingsSummary {
    pb::SavingsSummary {
        start_date: s.start_date.clone(),
        end_date: s.end_date.clone(),
        periods: i32::try_from(s.periods).unwrap_or(i32::MAX),
        complete: s.complete,
        adjusted_baseline_litres: s.adjusted_baseline_litres,
        actual_litres: s.actual_litres,
        savings_litres: s.savings_litres,
        uncertainty_68_litres: s.uncertainty_68_litres,
        uncertainty_90_litres: s.uncertainty_90_litres,
        observations: s.observations,
    }
}

pub(crate) fn status_to_pb(s: PeriodStatus) -> pb::PeriodStatus {
    match s {
        PeriodStatus::Reported => pb::PeriodStatus::Reported,
        PeriodStatus::Submitted => pb::PeriodStatus::Submitted,
        PeriodStatus::Verified => pb::PeriodStatus::Verified,
        PeriodStatus::Disputed => pb::PeriodStatus::Disputed,
        PeriodStatus::Settled => pb::PeriodStatus::Settled,
    }
}

pub(crate) fn period_to_pb(p: &Period) -> pb::PeriodSavings {
    let f = &p.figures;
    pb::PeriodSavings {
        id: p.id.clone(),
        project_id: p.project_id.clone(),
        start_date: p.start_date.clone(),
        end_date: p.end_date.clone(),
        adjusted_baseline_litres: f.adjusted_baseline_litres,
        actual_litres: f.actual_litres,
        non_routine_adjustment_litres: f.non_routine_adjustment_litres,
        dispute_adjustment_litres: f.dispute_adjustment_litres,
        savings_litres: f.savings_litres,
        savings_bp: i32::try_from(f.savings_bp).unwrap_or(0),
        uncertainty_68_litres: f.uncertainty_68_litres,
        uncertainty_90_litres: f.uncertainty_90_litres,
        promised_savings_litres: p.promised_savings_litres,
        status: status_to_pb(p.status) as i32,
        dispute_reason: p.dispute_reason.clone(),
        notes: p.notes.clone(),
        create_time: (p.created_at_ms > 0).then(|| timestamp(p.created_at_ms)),
        update_time: (p.updated_at_ms > 0).then(|| timestamp(p.updated_at_ms)),
        version: p.version,
        observations: f.observations,
        waivers: p.waivers.iter().map(waiver_to_pb).collect(),
        verification_report_sha256: p.verification_report_sha256.clone(),
    }
}

pub(crate) fn report_to_pb(r: &SavingsReport) -> pb::GetSavingsReportResponse {
    let sufficiency = r.sufficiency.as_ref().map(|s| {
        let mut notes = s.notes.clone();
        notes.extend(r.problems.iter().filter(|p| !s.notes.contains(p)).cloned());
        pb::DataSufficiency {
            coverage_bp: i32::try_from(s.coverage_bp).unwrap_or(0),
            missing_days: i32::try_from(s.missing_days).unwrap_or(0),
            baseline_days: i32::try_from(s.baseline_days).unwrap_or(0),
            estimated_readings: i32::try_from(s.estimated_readings).unwrap_or(i32::MAX),
            ok: s.ok,
            notes,
            excluded_days: i32::try_from(s.excluded_days).unwrap_or(i32::MAX),
        }
    });
    let baseline_fit = match (&r.fit, sufficiency) {
        (Some(f), sufficiency) => Some(pb::BaselineFit {
            coefficients: f
                .names
                .iter()
                .zip(&f.coefficients)
                .zip(&f.standard_errors)
                .map(|((name, value), se)| pb::Coefficient {
                    name: name.clone(),
                    value: *value,
                    standard_error: *se,
                })
                .collect(),
            observations: i32::try_from(f.observations).unwrap_or(i32::MAX),
            interval_seconds: f.granularity.interval_seconds(),
            r_squared: f.r_squared,
            cv_rmse: f.cv_rmse,
            nmbe: f.nmbe,
            ashrae_g14_pass: f.g14_pass,
            data_sufficiency: sufficiency,
            autocorrelation: f.autocorrelation,
            effective_observations: f.effective_observations,
            granularity: match f.granularity {
                crate::mv::Granularity::Daily => pb::ModelGranularity::Daily,
                crate::mv::Granularity::Billing => pb::ModelGranularity::BillingPeriod,
            } as i32,
        }),
        // No fit: the sufficiency still says why.
        (None, Some(s)) => Some(pb::BaselineFit {
            data_sufficiency: Some(s),
            ..Default::default()
        }),
        (None, None) => None,
    };
    pb::GetSavingsReportResponse {
        project_id: r.project_id.clone(),
        baseline_fit,
        periods: r.periods.iter().map(period_to_pb).collect(),
        verified_savings_litres: r.verified_savings_litres,
        promised_savings_litres: r.promised_savings_litres,
        generate_time: Some(timestamp(cwsm_platform::now_ms())),
        contract_years: r.contract_years.iter().map(summary_to_pb).collect(),
        contract_to_date: r.contract_to_date.as_ref().map(summary_to_pb),
    }
}

pub(crate) fn adjustment_to_pb(a: &NonRoutineAdjustment) -> pb::NonRoutineAdjustment {
    pb::NonRoutineAdjustment {
        id: a.id.clone(),
        project_id: a.project_id.clone(),
        start_date: a.start_date.clone(),
        end_date: a.end_date.clone(),
        litres: a.litres,
        reason: a.reason.clone(),
        evidence: a.evidence.clone(),
        create_time: Some(timestamp(a.created_at_ms)),
        update_time: Some(timestamp(a.updated_at_ms)),
        version: a.version,
        recorded_by: a.recorded_by.clone(),
        recorded_by_org: a.recorded_by_org.clone(),
        status: match a.status {
            AdjustmentStatus::Proposed => pb::AdjustmentStatus::Proposed,
            AdjustmentStatus::Approved => pb::AdjustmentStatus::Approved,
            AdjustmentStatus::Rejected => pb::AdjustmentStatus::Rejected,
        } as i32,
        decided_by: a.decided_by.clone(),
        decided_by_org: a.decided_by_org.clone(),
        decision_note: a.decision_note.clone(),
    }
}

/// A settlement, its statement in `lang`.
pub(crate) fn settlement_to_pb(s: &Settlement, lang: Lang) -> pb::Settlement {
    pb::Settlement {
        id: s.id.clone(),
        project_id: s.project_id.clone(),
        period_id: s.period_id.clone(),
        period_start_date: s.period_start_date.clone(),
        period_end_date: s.period_end_date.clone(),
        contract_model: s.contract_model.number(),
        savings_litres: s.savings_litres,
        price_fen_per_m3: s.price_fen_per_m3,
        savings_value_fen: s.savings_value_fen,
        company_due_fen: s.company_due_fen,
        user_due_fen: s.user_due_fen,
        shortfall_fen: s.shortfall_fen,
        hosting_fee_fen: s.hosting_fee_fen,
        water_bill_fen: s.water_bill_fen,
        statement_lines: s
            .statement_lines
            .iter()
            .map(|l| l.get(lang).to_string())
            .collect(),
        create_time: Some(timestamp(s.created_at_ms)),
        update_time: Some(timestamp(s.updated_at_ms)),
        version: s.version,
    }
}

pub(crate) fn required_id<'a>(field: &str, value: &'a str) -> Result<&'a str> {
    if value.trim().is_empty() {
        Err(Error::invalid(field, "required"))
    } else {
        Ok(value.trim())
    }
}
