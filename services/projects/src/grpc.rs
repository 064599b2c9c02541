//! The adapter between `cwsm.projects.v1` and the domain: projects (get, list, update), the
//! lifecycle (transition, history), meters and readings (client-streaming ingestion), the
//! savings report, periods (submit, verify, dispute, resolve), settlement and the milestone
//! log. Projects of the marketplace are created from `ProposalAccepted` events; `CreateProject`
//! is an administrator entering a project signed outside the platform, with its signing date.
//!
//! Who may do what (ARCHITECTURE.md, "Access rules"): the parties (each in its own role), the
//! assigned verifier and administrators read a project and everything under it, and to anyone
//! else it does not exist (NOT_FOUND); the company creates meters, sends readings and submits
//! periods; the assigned verifier verifies; a party (company or water user) disputes; the
//! assigned verifier or an administrator resolves, never the dispute's raiser; the parties
//! settle; an administrator assigns the verifier, or approves one a party proposed. A step
//! refused to someone who may read the project is PERMISSION_DENIED saying why.

use cwsm_platform::auth::{Principal, Role, principal};
use cwsm_platform::grpc::{Page, millis, timestamp};
use cwsm_platform::idempotency::RequestKey;
use cwsm_platform::input::{
    MAX_CODE, MAX_DATE, MAX_ITEMS, MAX_NAME, MAX_QUERY, MAX_TEXT, check_count, check_len,
    check_lengths,
};
use cwsm_platform::lang::Lang;
use cwsm_platform::quantity;
use cwsm_platform::vocab::{ContractModel, IndicatorTag, MvOption, Sector};
use cwsm_platform::{Error, Result};
use cwsm_proto::events::v1::ProjectMilestone;
use cwsm_proto::projects::v1 as pb;
use cwsm_proto::types;
use prost::Message;
use tonic::{Request, Response, Status};

use crate::corrections::{Correction, CorrectionAction, CorrectionStatus};
use crate::corrections_store::CorrectionAsk;
use crate::domain::{
    Contract, ContractTerms, Party, Project, Stage, Transition, TransitionAsk,
    check_effective_date, effective_date,
};
use crate::ledger::{
    AdjustmentStatus, MeasurementCheck, NonRoutineAdjustment, Period, PeriodStatus, PeriodStep,
    SavingsReport, SavingsSummary, Settlement, Waiver,
};
use crate::ledger_store::{ProjectUpdate, StepAsk};
use crate::metering::{
    Incoming, Meter, MeterKind, QualityAction, QualityRules, TimestampsMark, ValueKind, flag,
};
use crate::readings::{Aggregation, IngestSession, Point};
use crate::store::{ProjectFilter, SeenBy, Signing, Store};
use crate::verifiers::{Decision, ProposalState, VerifierAssignment, VerifierProposal};

pub struct ProjectsApi {
    pub store: Store,
    pub on_change: std::sync::Arc<dyn Fn() + Send + Sync>,
    /// IngestReadings streams open per caller.
    pub ingest_streams: std::sync::Arc<cwsm_platform::server::CallerStreams>,
}

/// Checks message `index` of an IngestReadings stream into `batch`; its value kind.
fn ingest_message(
    index: usize,
    message: &pb::IngestReadingsRequest,
    batch: &mut Vec<Incoming>,
) -> Result<(ValueKind, TimestampsMark), Error> {
    let at = |field: &str| format!("messages[{index}].{field}");
    if message.meter_id.trim().is_empty() {
        return Err(Error::invalid(at("meter_id"), "required"));
    }
    if message.meter_id.len() > crate::readings::MAX_METER_ID_BYTES {
        // Not echoed: the id may be megabytes.
        return Err(Error::invalid(
            at("meter_id"),
            format!(
                "at most {} bytes, {} sent",
                crate::readings::MAX_METER_ID_BYTES,
                message.meter_id.len()
            ),
        ));
    }
    // Unspecified means interval use, the simpler of the two.
    let kind = match pb::ReadingValueKind::try_from(message.value_kind) {
        Ok(pb::ReadingValueKind::CumulativeRegister) => ValueKind::Register,
        Ok(_) => ValueKind::IntervalUse,
        Err(_) => {
            return Err(Error::invalid(
                at("value_kind"),
                format!("unknown value kind {}", message.value_kind),
            ));
        }
    };
    let mark = match pb::ReadingTimestamps::try_from(message.timestamps) {
        Ok(pb::ReadingTimestamps::IntervalStart) if kind == ValueKind::Register => {
            return Err(Error::invalid(
                at("timestamps"),
                "a register is read at an instant; INTERVAL_START applies to interval use",
            ));
        }
        Ok(pb::ReadingTimestamps::IntervalStart) => TimestampsMark::Start,
        Ok(_) => TimestampsMark::End,
        Err(_) => {
            return Err(Error::invalid(
                at("timestamps"),
                format!("unknown convention {}", message.timestamps),
            ));
        }
    };
    batch.clear();
    for (i, r) in message.readings.iter().enumerate() {
        let field = || at(&format!("readings[{i}].read_time"));
        let Some(t) = r.read_time.as_ref() else {
            return Err(Error::invalid(field(), "required"));
        };
        let at_ms = crate::metering::reading_time_ms(t.seconds, t.nanos)
            .map_err(|why| Error::invalid(field(), why))?;
        batch.push(Incoming {
            at_ms,
            value_litres: r.value_litres,
            estimated: r.estimated,
        });
    }
    Ok((kind, mark))
}

/// Stores the messages taken before a malformed one and says so in `error`.
async fn end_ingest_with(store: &Store, session: IngestSession, error: Error) -> Status {
    let Error::InvalidArgument { field, reason } = error else {
        return error.into();
    };
    match store.finish_ingest(session).await {
        Ok(outcome) => Error::InvalidArgument {
            field,
            reason: format!(
                "{reason}; the {} messages before it are stored, none from it on: resend from message {}",
                outcome.stored_messages, outcome.stored_messages
            ),
        }
        .into(),
        Err(e) => e.into(),
    }
}

/// What the API bounds (set from the server's settings).
#[derive(Clone, Debug)]
pub struct ApiLimits {
    pub ingest_streams: std::sync::Arc<cwsm_platform::server::CallerStreams>,
    pub max_message_bytes: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            ingest_streams: cwsm_platform::server::CallerStreams::new("IngestReadings", 4),
            max_message_bytes: 4 * 1024 * 1024,
        }
    }
}

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

fn stage_from_pb(field: &str, n: i32) -> Result<Option<Stage>> {
    let stage = match pb::ProjectStage::try_from(n) {
        Ok(pb::ProjectStage::Unspecified) => return Ok(None),
        Ok(s) => s,
        Err(_) => return Err(Error::invalid(field, format!("unknown stage {n}"))),
    };
    Ok(Stage::ALL.into_iter().find(|s| stage_to_pb(*s) == stage))
}

fn code_filter<T>(
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

fn transition_to_pb(t: &Transition) -> pb::ProjectTransition {
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
fn contract_from_pb(p: pb::Project) -> Result<Contract> {
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

fn assignment_to_pb(a: &VerifierAssignment) -> pb::VerifierAssignment {
    pb::VerifierAssignment {
        verifier_org: a.verifier_org.clone(),
        previous_verifier_org: a.previous_verifier_org.clone(),
        proposal_id: a.proposal_id.clone(),
        actor: a.actor.clone(),
        actor_org: a.actor_org.clone(),
        assign_time: Some(timestamp(a.at_ms)),
    }
}

fn proposal_to_pb(p: &VerifierProposal) -> pb::VerifierProposal {
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

/// A verifier body's credit code as sent in `field`: trimmed, upper-cased and checked.
fn verifier_code(field: &str, value: &str) -> Result<String> {
    let code = value.trim().to_uppercase();
    cwsm_platform::credit_code::check(field, &code)?;
    Ok(code)
}

fn required_id<'a>(field: &str, value: &'a str) -> Result<&'a str> {
    if value.trim().is_empty() {
        Err(Error::invalid(field, "required"))
    } else {
        Ok(value.trim())
    }
}

/// The project and everything under it is read by its parties, its assigned verifier and
/// administrators; to anyone else it is NOT_FOUND.
fn check_read(project: &Project, who: &Principal) -> Result<()> {
    if project.readable_by(who) {
        Ok(())
    } else {
        Err(Error::not_found("project", &project.id))
    }
}

impl ProjectsApi {
    /// The project named by the request's `project_id`, if `who` may read its measurements.
    async fn readable_project(&self, who: &Principal, project_id: &str) -> Result<Project> {
        let project = self
            .store
            .project(required_id("project_id", project_id)?)
            .await?;
        check_read(&project, who)?;
        Ok(project)
    }
}

fn meter_kind_to_pb(k: MeterKind) -> pb::MeterKind {
    match k {
        MeterKind::WholeSite => pb::MeterKind::WholeSite,
        MeterKind::SubMeter => pb::MeterKind::SubMeter,
    }
}

fn meter_kind_from_pb(field: &str, n: i32) -> Result<Option<MeterKind>> {
    match pb::MeterKind::try_from(n) {
        Ok(pb::MeterKind::Unspecified) => Ok(None),
        Ok(pb::MeterKind::WholeSite) => Ok(Some(MeterKind::WholeSite)),
        Ok(pb::MeterKind::SubMeter) => Ok(Some(MeterKind::SubMeter)),
        Err(_) => Err(Error::invalid(field, format!("unknown meter kind {n}"))),
    }
}

fn meter_to_pb(m: &Meter) -> pb::Meter {
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
fn flags_to_pb(bits: i32) -> Vec<i32> {
    flag::ALL
        .iter()
        .filter(|(_, bit)| bits & bit != 0)
        .map(|(n, _)| *n)
        .collect()
}

fn document_to_pb(d: &crate::evidence::Document) -> pb::EvidenceDocument {
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

fn correction_to_pb(c: &Correction) -> pb::ReadingCorrection {
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

fn point_to_pb(p: &Point) -> pb::ReadingPoint {
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
fn quality_rules_to_pb(rules: QualityRules) -> Vec<pb::QualityRule> {
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
fn quality_rules_from_pb(rules: &[pb::QualityRule]) -> Result<QualityRules, Status> {
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
fn check_to_pb(c: MeasurementCheck) -> pb::MeasurementCheck {
    pb::MeasurementCheck::from_str_name(&format!("MEASUREMENT_CHECK_{}", c.code().to_uppercase()))
        .unwrap_or(pb::MeasurementCheck::Unspecified)
}

fn check_from_pb(number: i32) -> Result<MeasurementCheck, Status> {
    MeasurementCheck::ALL
        .into_iter()
        .find(|c| check_to_pb(*c) as i32 == number)
        .ok_or_else(|| {
            let codes: Vec<&str> = MeasurementCheck::ALL.iter().map(|c| c.code()).collect();
            Error::invalid("check", format!("required: one of {}", codes.join(", "))).into()
        })
}

fn waiver_to_pb(w: &Waiver) -> pb::CheckWaiver {
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

fn summary_to_pb(s: &SavingsSummary) -> pb::SavingsSummary {
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

fn status_to_pb(s: PeriodStatus) -> pb::PeriodStatus {
    match s {
        PeriodStatus::Reported => pb::PeriodStatus::Reported,
        PeriodStatus::Submitted => pb::PeriodStatus::Submitted,
        PeriodStatus::Verified => pb::PeriodStatus::Verified,
        PeriodStatus::Disputed => pb::PeriodStatus::Disputed,
        PeriodStatus::Settled => pb::PeriodStatus::Settled,
    }
}

fn period_to_pb(p: &Period) -> pb::PeriodSavings {
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

fn report_to_pb(r: &SavingsReport) -> pb::GetSavingsReportResponse {
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

fn adjustment_to_pb(a: &NonRoutineAdjustment) -> pb::NonRoutineAdjustment {
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
fn settlement_to_pb(s: &Settlement, lang: Lang) -> pb::Settlement {
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

fn check_date(field: &str, value: &str, required: bool) -> Result<()> {
    if value.is_empty() && !required {
        return Ok(());
    }
    crate::ledger::date(field, value).map(|_| ())
}

#[tonic::async_trait]
impl pb::projects_service_server::ProjectsService for ProjectsApi {
    async fn create_project(
        &self,
        request: Request<pb::CreateProjectRequest>,
    ) -> Result<Response<pb::CreateProjectResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        who.require_admin("enter a project signed outside the platform")?;
        cwsm_platform::grpc::request_id(&r.request_id)?;
        check_lengths(&[
            ("project_id", &r.project_id, MAX_CODE),
            ("signing_date", &r.signing_date, MAX_DATE),
            ("evidence", &r.evidence, MAX_TEXT),
        ])?;
        let contract = contract_from_pb(
            r.project
                .ok_or_else(|| Error::invalid("project", "required"))?,
        )?;
        // An administrator enters the projects of the jurisdiction it administers.
        let site = cwsm_platform::jurisdiction::Jurisdiction::parse(
            "project.water_user.town",
            &contract.jurisdiction_code,
        )?;
        let district = site.district().unwrap_or(site);
        who.require_administer(
            &format!("enter a project of {}", contract.town),
            &district,
            None,
        )?;
        let today = crate::ledger_store::today_cst();
        let signed = effective_date("signing_date", &r.signing_date, today)?;
        check_effective_date("signing_date", signed, today, &r.evidence, &[])?;
        let project_id = if r.project_id.trim().is_empty() {
            cwsm_platform::new_id()
        } else {
            r.project_id.trim().to_string()
        };
        let signing = Signing {
            date: signed,
            evidence: r.evidence.trim().to_string(),
            reason: "entered by an administrator (signed outside the platform)".to_string(),
            actor_org: who.org.clone().unwrap_or_default(),
        };
        // Once per proposal: a retry (or a second call) finds the project made the first time.
        let event_id = format!("create-project:{}", contract.proposal_id);
        let created = self
            .store
            .create_from_contract(&event_id, &project_id, &contract, &who.subject, &signing)
            .await?;
        let existing = self
            .store
            .project_of_proposal(&contract.proposal_id)
            .await?
            .ok_or_else(|| {
                Error::AlreadyExists(format!(
                    "project id {project_id} is taken by another proposal's project"
                ))
            })?;
        if created {
            (self.on_change)();
        }
        let view = self.store.project_view(&existing).await?;
        let mut message = project_to_pb(&view.project);
        message.stage_history = view.history.iter().map(transition_to_pb).collect();
        Ok(Response::new(pb::CreateProjectResponse {
            project: Some(message),
        }))
    }

    async fn get_project(
        &self,
        request: Request<pb::GetProjectRequest>,
    ) -> Result<Response<pb::GetProjectResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let view = self
            .store
            .project_view(required_id("project_id", &r.project_id)?)
            .await?;
        check_read(&view.project, &who)?;
        let mut message = project_to_pb(&view.project);
        message.stage_history = view.history.iter().map(transition_to_pb).collect();
        message.verifier_history = view.verifiers.iter().map(assignment_to_pb).collect();
        Ok(Response::new(pb::GetProjectResponse {
            project: Some(message),
        }))
    }

    async fn list_projects(
        &self,
        request: Request<pb::ListProjectsRequest>,
    ) -> Result<Response<pb::ListProjectsResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        check_lengths(&[
            ("query", &r.query, MAX_QUERY),
            ("company_id", &r.company_id, MAX_CODE),
            ("water_user_id", &r.water_user_id, MAX_CODE),
            ("town", &r.town, MAX_NAME),
        ])?;
        let page = Page::from_request(r.page_size, &r.page_token)?;
        let filter = ProjectFilter {
            stage: stage_from_pb("stage", r.stage)?
                .map(|s| s.code().to_string())
                .unwrap_or_default(),
            company_id: r.company_id,
            water_user_id: r.water_user_id,
            sector: code_filter("sector", r.sector, Sector::from_number, Sector::code)?,
            town: r.town,
            contract_model: code_filter(
                "contract_model",
                r.contract_model,
                ContractModel::from_number,
                ContractModel::code,
            )?,
            indicator_tag: code_filter(
                "indicator_tag",
                r.indicator_tag,
                IndicatorTag::from_number,
                IndicatorTag::code,
            )?,
            query: r.query,
            seen_by: SeenBy::of(&who),
        };
        let (projects, next) = self.store.list_projects(&filter, &page).await?;
        Ok(Response::new(pb::ListProjectsResponse {
            projects: projects.iter().map(project_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn assign_verifier(
        &self,
        request: Request<pb::AssignVerifierRequest>,
    ) -> Result<Response<pb::AssignVerifierResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        check_lengths(&[
            ("project_id", &r.project_id, MAX_CODE),
            ("verifier_org", &r.verifier_org, MAX_CODE),
        ])?;
        let key = RequestKey::new(&who, "AssignVerifier", &r.project_id, &r.request_id, &r)?;
        let project_id = required_id("project_id", &r.project_id)?;
        {
            // The parties and the verifier may read the project but not choose its verifier.
            let project = self.store.project(project_id).await?;
            if !project.administered_by(&who) {
                return Err(project
                    .refuse(
                        &who,
                        format!(
                            "only an administrator of {} assigns the verifier of project {project_id}",
                            project.jurisdiction()
                        ),
                    )
                    .into());
            }
        }
        let verifier_org = verifier_code("verifier_org", &r.verifier_org)?;
        let project = self
            .store
            .assign_verifier(&key, project_id, r.expected_version, &verifier_org, &who)
            .await?;
        Ok(Response::new(pb::AssignVerifierResponse {
            project: Some(project_to_pb(&project)),
        }))
    }

    async fn propose_verifier(
        &self,
        request: Request<pb::ProposeVerifierRequest>,
    ) -> Result<Response<pb::ProposeVerifierResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        check_lengths(&[
            ("project_id", &r.project_id, MAX_CODE),
            ("verifier_credit_code", &r.verifier_credit_code, MAX_CODE),
            ("note", &r.note, MAX_TEXT),
        ])?;
        let key = RequestKey::new(&who, "ProposeVerifier", &r.project_id, &r.request_id, &r)?;
        let project_id = required_id("project_id", &r.project_id)?;
        let verifier_org = verifier_code("verifier_credit_code", &r.verifier_credit_code)?;
        let proposal = self
            .store
            .propose_verifier(&key, project_id, &verifier_org, &r.note, &who)
            .await?;
        Ok(Response::new(pb::ProposeVerifierResponse {
            proposal: Some(proposal_to_pb(&proposal)),
        }))
    }

    async fn list_verifier_proposals(
        &self,
        request: Request<pb::ListVerifierProposalsRequest>,
    ) -> Result<Response<pb::ListVerifierProposalsResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        check_len("project_id", &r.project_id, MAX_CODE)?;
        let page = Page::from_request(r.page_size, &r.page_token)?;
        let project = self.readable_project(&who, &r.project_id).await?;
        let (rows, next) = self.store.verifier_proposals(&project.id, &page).await?;
        Ok(Response::new(pb::ListVerifierProposalsResponse {
            proposals: rows.iter().map(proposal_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn decide_verifier_proposal(
        &self,
        request: Request<pb::DecideVerifierProposalRequest>,
    ) -> Result<Response<pb::DecideVerifierProposalResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        check_lengths(&[
            ("proposal_id", &r.proposal_id, MAX_CODE),
            ("reason", &r.reason, MAX_TEXT),
        ])?;
        let key = RequestKey::new(
            &who,
            "DecideVerifierProposal",
            &r.proposal_id,
            &r.request_id,
            &r,
        )?;
        let proposal_id = required_id("proposal_id", &r.proposal_id)?;
        let decision = match pb::VerifierDecision::try_from(r.decision) {
            Ok(pb::VerifierDecision::Approve) => Decision::Approve,
            Ok(pb::VerifierDecision::Decline) => Decision::Decline,
            _ => {
                return Err(Error::invalid("decision", "required: APPROVE or DECLINE").into());
            }
        };
        if decision == Decision::Decline && r.reason.trim().is_empty() {
            return Err(Error::invalid("reason", "required to decline: say why").into());
        }
        let (proposal, project) = self
            .store
            .decide_verifier_proposal(
                &key,
                proposal_id,
                r.expected_version,
                decision,
                &r.reason,
                &who,
            )
            .await?;
        Ok(Response::new(pb::DecideVerifierProposalResponse {
            proposal: Some(proposal_to_pb(&proposal)),
            project: project.as_ref().map(project_to_pb),
        }))
    }

    async fn transition_project(
        &self,
        request: Request<pb::TransitionProjectRequest>,
    ) -> Result<Response<pb::TransitionProjectResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        check_lengths(&[
            ("reason", &r.reason, MAX_TEXT),
            ("evidence", &r.evidence, MAX_TEXT),
            ("effective_date", &r.effective_date, MAX_DATE),
        ])?;
        // The request as sent is the fingerprint: its effective date included.
        let key = RequestKey::new(&who, "TransitionProject", &r.project_id, &r.request_id, &r)?;
        let project_id = required_id("project_id", &r.project_id)?;
        let to = stage_from_pb("to_stage", r.to_stage)?
            .ok_or_else(|| Error::invalid("to_stage", "required: the stage to move to"))?;
        self.store
            .check_cited(project_id, "evidence", &r.evidence)
            .await?;
        let today = crate::ledger_store::today_cst();
        let ask = TransitionAsk {
            to,
            reason: r.reason,
            evidence: r.evidence,
            effective_date: effective_date("effective_date", &r.effective_date, today)?,
        };
        let (project, transition) = self
            .store
            .transition(
                &key,
                project_id,
                r.expected_version,
                &ask,
                &who.subject,
                who.org.as_deref().unwrap_or_default(),
                |p: &Project| p.check_transition(&who, &ask),
            )
            .await?;
        (self.on_change)();
        Ok(Response::new(pb::TransitionProjectResponse {
            project: Some(project_to_pb(&project)),
            transition: Some(transition_to_pb(&transition)),
        }))
    }

    async fn list_project_transitions(
        &self,
        request: Request<pb::ListProjectTransitionsRequest>,
    ) -> Result<Response<pb::ListProjectTransitionsResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let page = Page::from_request(r.page_size, &r.page_token)?;
        let project_id = self.readable_project(&who, &r.project_id).await?.id;
        let project_id = project_id.as_str();
        let (rows, next) = self.store.transitions(project_id, &page).await?;
        Ok(Response::new(pb::ListProjectTransitionsResponse {
            transitions: rows.iter().map(transition_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn update_project(
        &self,
        request: Request<pb::UpdateProjectRequest>,
    ) -> Result<Response<pb::UpdateProjectResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        if let Some(p) = &r.project {
            check_lengths(&[
                ("project.title", &p.title, MAX_NAME),
                ("project.measures", &p.measures, MAX_TEXT),
                (
                    "project.baseline_start_date",
                    &p.baseline_start_date,
                    MAX_DATE,
                ),
                ("project.baseline_end_date", &p.baseline_end_date, MAX_DATE),
            ])?;
            check_count("project.sites", p.sites.len(), MAX_ITEMS)?;
            for (i, site) in p.sites.iter().enumerate() {
                check_len(&format!("project.sites[{i}]"), site, MAX_NAME)?;
            }
            if let Some(plan) = &p.mv_plan {
                check_len(
                    "project.mv_plan.model_description",
                    &plan.model_description,
                    MAX_TEXT,
                )?;
                check_count("project.mv_plan.drivers", plan.drivers.len(), MAX_ITEMS)?;
                for (i, d) in plan.drivers.iter().enumerate() {
                    check_len(&format!("project.mv_plan.drivers[{i}]"), d, MAX_CODE)?;
                }
            }
        }
        let key = RequestKey::new(
            &who,
            "UpdateProject",
            &r.project.as_ref().map(|p| p.id.clone()).unwrap_or_default(),
            &r.request_id,
            &r,
        )?;
        let p = r
            .project
            .ok_or_else(|| Error::invalid("project", "required"))?;
        let project_id = required_id("project.id", &p.id)?.to_string();
        if p.title.trim().is_empty() {
            return Err(Error::invalid("project.title", "required").into());
        }
        check_date("project.baseline_start_date", &p.baseline_start_date, false)?;
        check_date("project.baseline_end_date", &p.baseline_end_date, false)?;
        if p.baseline_start_date.is_empty() != p.baseline_end_date.is_empty()
            || (!p.baseline_start_date.is_empty() && p.baseline_end_date < p.baseline_start_date)
        {
            return Err(Error::invalid(
                "project.baseline_end_date",
                "give both baseline dates, the end on or after the start",
            )
            .into());
        }
        let plan = p.mv_plan.unwrap_or_default();
        let months = if plan.reporting_period_months == 0 {
            1
        } else {
            plan.reporting_period_months
        };
        if !(1..=12).contains(&months) {
            return Err(Error::invalid(
                "project.mv_plan.reporting_period_months",
                "between 1 and 12",
            )
            .into());
        }
        quantity::price("project.price_fen_per_m3", p.price_fen_per_m3)?;
        let tags = p
            .indicator_tags
            .iter()
            .map(|t| {
                IndicatorTag::from_number(*t)
                    .map(|t| t.code().to_string())
                    .ok_or_else(|| {
                        Error::invalid("project.indicator_tags", format!("unknown tag {t}"))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let update = ProjectUpdate {
            title: p.title.trim().to_string(),
            sites: p.sites,
            measures: p.measures,
            indicator_tags: tags,
            baseline_start_date: p.baseline_start_date,
            baseline_end_date: p.baseline_end_date,
            reporting_period_months: months,
            mv_model_description: plan.model_description,
            quality_rules: quality_rules_from_pb(&plan.quality_rules)?,
            drivers: plan.drivers,
            price_fen_per_m3: p.price_fen_per_m3,
        };
        let project = self
            .store
            .update_project(
                &key,
                &project_id,
                r.expected_version,
                &update,
                |p: &Project| {
                    if p.party(&who) {
                        Ok(())
                    } else {
                        Err(p.refuse(
                            &who,
                            format!(
                                "only the parties to project {} or an administrator may update it",
                                p.id
                            ),
                        ))
                    }
                },
            )
            .await?;
        Ok(Response::new(pb::UpdateProjectResponse {
            project: Some(project_to_pb(&project)),
        }))
    }

    async fn create_meter(
        &self,
        request: Request<pb::CreateMeterRequest>,
    ) -> Result<Response<pb::CreateMeterResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        if let Some(m) = &r.meter {
            check_lengths(&[
                ("meter.site", &m.site, MAX_NAME),
                ("meter.name", &m.name, MAX_NAME),
                ("meter.serial_number", &m.serial_number, MAX_CODE),
            ])?;
        }
        let key = RequestKey::new(
            &who,
            "CreateMeter",
            &r.meter
                .as_ref()
                .map(|m| m.project_id.clone())
                .unwrap_or_default(),
            &r.request_id,
            &r,
        )?;
        let m = r.meter.ok_or_else(|| Error::invalid("meter", "required"))?;
        let project = self
            .store
            .project(required_id("meter.project_id", &m.project_id)?)
            .await?;
        if !project.company(&who) {
            return Err(project
                .refuse(
                    &who,
                    format!(
                        "only the company of project {} or an administrator registers its meters",
                        project.id
                    ),
                )
                .into());
        }
        let kind = meter_kind_from_pb("meter.kind", m.kind)?
            .ok_or_else(|| Error::invalid("meter.kind", "required: WHOLE_SITE or SUB_METER"))?;
        let meter = Meter {
            id: String::new(),
            project_id: project.id.clone(),
            site: m.site.trim().to_string(),
            name: m.name.trim().to_string(),
            kind,
            interval_seconds: m.interval_seconds,
            serial_number: m.serial_number,
            register_capacity_litres: m.register_capacity_litres,
            created_at_ms: 0,
            updated_at_ms: 0,
            version: 0,
        };
        meter.validate(&project.sites)?;
        let created = self.store.create_meter(&key, &meter).await?;
        Ok(Response::new(pb::CreateMeterResponse {
            meter: Some(meter_to_pb(&created)),
        }))
    }

    async fn list_meters(
        &self,
        request: Request<pb::ListMetersRequest>,
    ) -> Result<Response<pb::ListMetersResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let page = Page::from_request(r.page_size, &r.page_token)?;
        let project = self.readable_project(&who, &r.project_id).await?;
        let kind = meter_kind_from_pb("kind", r.kind)?
            .map(|k| k.code())
            .unwrap_or_default();
        let (meters, next) = self
            .store
            .list_meters(&project.id, &r.site, kind, &page)
            .await?;
        Ok(Response::new(pb::ListMetersResponse {
            meters: meters.iter().map(meter_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn ingest_readings(
        &self,
        request: Request<tonic::Streaming<pb::IngestReadingsRequest>>,
    ) -> Result<Response<pb::IngestReadingsResponse>, Status> {
        let who = principal(&request)?;
        let _permit = self.ingest_streams.acquire(&who)?;
        let mut stream = request.into_inner();
        let mut session = IngestSession::new(who);
        let mut batch: Vec<Incoming> = Vec::new();
        let mut index: usize = 0;
        loop {
            let message = match stream.message().await {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(status) => {
                    // tonic decodes strictly and calls a bad message INTERNAL: it is the
                    // client's (invalid UTF-8, broken protobuf).
                    let error = if status.code() == tonic::Code::Internal {
                        Error::invalid(
                            format!("messages[{index}]"),
                            format!("not an IngestReadingsRequest: {}", status.message()),
                        )
                    } else {
                        return Err(status);
                    };
                    return Err(end_ingest_with(&self.store, session, error).await);
                }
            };
            let parsed = ingest_message(index, &message, &mut batch);
            let step = match parsed {
                Ok((kind, mark)) => {
                    self.store
                        .ingest_batch(&mut session, &message.meter_id, kind, mark, &batch)
                        .await
                }
                Err(e) => Err(e),
            };
            match step {
                Ok(()) => {}
                Err(Error::InvalidArgument { field, reason }) => {
                    // A field inside the message: name the message too.
                    let field = if field.starts_with("messages[") {
                        field
                    } else {
                        format!("messages[{index}].{field}")
                    };
                    let error = Error::InvalidArgument { field, reason };
                    return Err(end_ingest_with(&self.store, session, error).await);
                }
                Err(e) => return Err(e.into()),
            }
            index += 1;
        }
        let outcome = self.store.finish_ingest(session).await?;
        Ok(Response::new(pb::IngestReadingsResponse {
            accepted: outcome.accepted,
            duplicates: outcome.duplicates,
            rejected: outcome.rejected,
            flagged: outcome
                .flagged
                .iter()
                .map(|(flag, count)| pb::FlagCount {
                    flag: *flag,
                    count: *count,
                })
                .collect(),
            rejections: outcome
                .rejections
                .iter()
                .map(|r| pb::RejectedReading {
                    meter_id: r.meter_id.clone(),
                    read_time: Some(timestamp(r.at_ms)),
                    value_litres: r.value_litres,
                    reason: r.reason.clone(),
                })
                .collect(),
            stored_messages: outcome.stored_messages,
            unknown_meters: outcome.unknown_meters,
            unknown_meter_ids: outcome.unknown_meter_ids,
            warnings: outcome.warnings,
        }))
    }

    async fn list_readings(
        &self,
        request: Request<pb::ListReadingsRequest>,
    ) -> Result<Response<pb::ListReadingsResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let page = Page::from_request(r.page_size, &r.page_token)?;
        let meter = self
            .store
            .meter(required_id("meter_id", &r.meter_id)?)
            .await?;
        let project = self.store.project(&meter.project_id).await?;
        check_read(&project, &who)?;
        let aggregation = match pb::ReadingAggregation::try_from(r.aggregation) {
            Ok(pb::ReadingAggregation::Unspecified | pb::ReadingAggregation::Raw) => {
                Aggregation::Raw
            }
            Ok(pb::ReadingAggregation::Day) => Aggregation::Day,
            Ok(pb::ReadingAggregation::Month) => Aggregation::Month,
            Err(_) => {
                return Err(Error::invalid(
                    "aggregation",
                    format!("unknown aggregation {}", r.aggregation),
                )
                .into());
            }
        };
        let from = r.start_time.as_ref().map(millis).unwrap_or(i64::MIN);
        let to = r.end_time.as_ref().map(millis).unwrap_or(i64::MAX);
        if from >= to {
            return Err(Error::invalid("end_time", "must be after start_time").into());
        }
        let (points, next) = self
            .store
            .list_readings(&meter, from, to, aggregation, &page)
            .await?;
        Ok(Response::new(pb::ListReadingsResponse {
            points: points.iter().map(point_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn get_savings_report(
        &self,
        request: Request<pb::GetSavingsReportRequest>,
    ) -> Result<Response<pb::GetSavingsReportResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let (project, report) = self
            .store
            .savings_report(required_id("project_id", &r.project_id)?)
            .await?;
        check_read(&project, &who)?;
        Ok(Response::new(report_to_pb(&report)))
    }

    async fn record_driver_values(
        &self,
        request: Request<pb::RecordDriverValuesRequest>,
    ) -> Result<Response<pb::RecordDriverValuesResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let project = self
            .store
            .project(required_id("project_id", &r.project_id)?)
            .await?;
        if !(project.company(&who) || project.assigned_verifier(&who)) {
            return Err(project
                .refuse(
                    &who,
                    format!(
                        "only the company of project {}, its assigned verifier or an administrator records driver values",
                        project.id
                    ),
                )
                .into());
        }
        if !project.contract.drivers.contains(&r.driver) {
            return Err(Error::invalid(
                "driver",
                format!(
                    "{:?} is not a driver of the M&V plan ({})",
                    r.driver,
                    if project.contract.drivers.is_empty() {
                        "it has none".to_string()
                    } else {
                        project.contract.drivers.join(", ")
                    }
                ),
            )
            .into());
        }
        if r.values.len() > 10_000 {
            return Err(Error::invalid("values", "at most 10,000 a call").into());
        }
        let mut values = Vec::with_capacity(r.values.len());
        for (i, v) in r.values.iter().enumerate() {
            check_date(&format!("values[{i}].date"), &v.date, true)?;
            if !v.value.is_finite() {
                return Err(Error::invalid(format!("values[{i}].value"), "not a number").into());
            }
            values.push((v.date.clone(), v.value));
        }
        let recorded = self
            .store
            .record_driver_values(&project, &r.driver, &values, &who)
            .await?;
        let (recorded, unchanged) = recorded;
        Ok(Response::new(pb::RecordDriverValuesResponse {
            recorded,
            unchanged,
        }))
    }

    async fn create_non_routine_adjustment(
        &self,
        request: Request<pb::CreateNonRoutineAdjustmentRequest>,
    ) -> Result<Response<pb::CreateNonRoutineAdjustmentResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        if let Some(a) = &r.adjustment {
            check_lengths(&[
                ("adjustment.start_date", &a.start_date, MAX_DATE),
                ("adjustment.end_date", &a.end_date, MAX_DATE),
                ("adjustment.reason", &a.reason, MAX_TEXT),
                ("adjustment.evidence", &a.evidence, MAX_TEXT),
            ])?;
        }
        let key = RequestKey::new(
            &who,
            "CreateNonRoutineAdjustment",
            &r.adjustment
                .as_ref()
                .map(|a| a.project_id.clone())
                .unwrap_or_default(),
            &r.request_id,
            &r,
        )?;
        let a = r
            .adjustment
            .ok_or_else(|| Error::invalid("adjustment", "required"))?;
        let project = self
            .store
            .project(required_id("adjustment.project_id", &a.project_id)?)
            .await?;
        if !(project.company(&who) || project.assigned_verifier(&who)) {
            return Err(project
                .refuse(
                    &who,
                    format!(
                        "only the company of project {}, its assigned verifier or an administrator documents non-routine adjustments",
                        project.id
                    ),
                )
                .into());
        }
        let verifier = project.assigned_verifier(&who);
        self.store
            .check_cited(&project.id, "adjustment.evidence", &a.evidence)
            .await?;
        check_date("adjustment.start_date", &a.start_date, true)?;
        check_date("adjustment.end_date", &a.end_date, false)?;
        if !a.end_date.is_empty() && a.end_date < a.start_date {
            return Err(
                Error::invalid("adjustment.end_date", "must not be before start_date").into(),
            );
        }
        if a.reason.trim().chars().count() < 4 {
            return Err(Error::invalid(
                "adjustment.reason",
                "required, at least 4 characters: the non-routine event (a new wing, a change of use)",
            )
            .into());
        }
        if a.evidence.trim().is_empty() {
            return Err(Error::invalid(
                "adjustment.evidence",
                "required: the record that shows the event (a permit, a work order, a meter photo)",
            )
            .into());
        }
        if a.litres == 0 {
            return Err(Error::invalid("adjustment.litres", "must not be 0").into());
        }
        quantity::signed_litres("adjustment.litres", a.litres)?;
        crate::ledger::check_adjustment_bound(
            &project,
            a.litres,
            crate::ledger::date("adjustment.start_date", &a.start_date)?,
            if a.end_date.is_empty() {
                None
            } else {
                Some(crate::ledger::date("adjustment.end_date", &a.end_date)?)
            },
        )?;
        let created = self
            .store
            .create_adjustment(
                &key,
                &NonRoutineAdjustment {
                    id: String::new(),
                    project_id: project.id.clone(),
                    start_date: a.start_date,
                    end_date: a.end_date,
                    litres: a.litres,
                    reason: a.reason.trim().to_string(),
                    evidence: a.evidence,
                    recorded_by: who.subject.clone(),
                    recorded_by_org: who.org.clone().unwrap_or_default(),
                    // The independent verifier's own is approved as documented.
                    status: if verifier {
                        AdjustmentStatus::Approved
                    } else {
                        AdjustmentStatus::Proposed
                    },
                    decided_by: if verifier {
                        who.subject.clone()
                    } else {
                        String::new()
                    },
                    decided_by_org: if verifier {
                        who.org.clone().unwrap_or_default()
                    } else {
                        String::new()
                    },
                    decision_note: String::new(),
                    created_at_ms: 0,
                    updated_at_ms: 0,
                    version: 0,
                },
            )
            .await?;
        Ok(Response::new(pb::CreateNonRoutineAdjustmentResponse {
            adjustment: Some(adjustment_to_pb(&created)),
        }))
    }

    async fn decide_non_routine_adjustment(
        &self,
        request: Request<pb::DecideNonRoutineAdjustmentRequest>,
    ) -> Result<Response<pb::DecideNonRoutineAdjustmentResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        check_lengths(&[("note", &r.note, MAX_TEXT)])?;
        let key = RequestKey::new(
            &who,
            "DecideNonRoutineAdjustment",
            &r.adjustment_id,
            &r.request_id,
            &r,
        )?;
        let id = required_id("adjustment_id", &r.adjustment_id)?;
        if !r.approve && r.note.trim().is_empty() {
            return Err(Error::invalid(
                "note",
                "required to reject: why the adjustment does not stand",
            )
            .into());
        }
        let adjustment = self
            .store
            .decide_adjustment(&key, id, r.expected_version, r.approve, r.note.trim(), &who)
            .await?;
        (self.on_change)();
        Ok(Response::new(pb::DecideNonRoutineAdjustmentResponse {
            adjustment: Some(adjustment_to_pb(&adjustment)),
        }))
    }

    async fn list_driver_value_changes(
        &self,
        request: Request<pb::ListDriverValueChangesRequest>,
    ) -> Result<Response<pb::ListDriverValueChangesResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        check_lengths(&[("driver", &r.driver, MAX_CODE)])?;
        let page = Page::from_request(r.page_size, &r.page_token)?;
        let project = self.readable_project(&who, &r.project_id).await?;
        let (rows, next) = self
            .store
            .driver_value_changes(&project.id, &r.driver, &page)
            .await?;
        Ok(Response::new(pb::ListDriverValueChangesResponse {
            changes: rows
                .iter()
                .map(|c| pb::DriverValueChange {
                    driver: c.driver.clone(),
                    date: c.day.clone(),
                    value: c.value,
                    previous_value: c.previous_value,
                    recorded_by: c.recorded_by.clone(),
                    recorded_by_org: c.recorded_by_org.clone(),
                    record_time: Some(timestamp(c.recorded_at_ms)),
                })
                .collect(),
            next_page_token: next,
        }))
    }

    async fn upload_evidence(
        &self,
        request: Request<tonic::Streaming<pb::UploadEvidenceRequest>>,
    ) -> Result<Response<pb::UploadEvidenceResponse>, Status> {
        let who = principal(&request)?;
        let mut stream = request.into_inner();
        let upload = cwsm_platform::documents::gather_upload(
            &mut stream,
            "project_id",
            MAX_NAME,
            |m: pb::UploadEvidenceRequest| (m.project_id, m.file_name, m.chunk),
        )
        .await?;
        let project_id = required_id("project_id", &upload.owner)?;
        let (doc, already) = self
            .store
            .upload_evidence(project_id, &upload.file_name, &upload.content, &who)
            .await?;
        Ok(Response::new(pb::UploadEvidenceResponse {
            document: Some(document_to_pb(&doc)),
            already_uploaded: already,
        }))
    }

    async fn get_evidence(
        &self,
        request: Request<pb::GetEvidenceRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<pb::GetEvidenceResponse>>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let project_id = required_id("project_id", &r.project_id)?;
        let sha256 = cwsm_platform::documents::sha256_field("sha256", &r.sha256)?;
        let (doc, content) = self.store.evidence(project_id, &sha256, &who).await?;
        let messages = cwsm_platform::documents::download_messages(
            pb::GetEvidenceResponse {
                document: Some(document_to_pb(&doc)),
                chunk: Vec::new(),
            },
            &content,
            |chunk| pb::GetEvidenceResponse {
                document: None,
                chunk,
            },
        );
        Ok(Response::new(Box::pin(tokio_stream::iter(
            messages.into_iter().map(Ok),
        ))))
    }

    async fn list_evidence(
        &self,
        request: Request<pb::ListEvidenceRequest>,
    ) -> Result<Response<pb::ListEvidenceResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let page = Page::from_request(r.page_size, &r.page_token)?;
        let project = self.readable_project(&who, &r.project_id).await?;
        let (rows, next) = self.store.evidence_list(&project.id, &page).await?;
        Ok(Response::new(pb::ListEvidenceResponse {
            documents: rows.iter().map(document_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn propose_reading_correction(
        &self,
        request: Request<pb::ProposeReadingCorrectionRequest>,
    ) -> Result<Response<pb::ProposeReadingCorrectionResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let c = r
            .correction
            .as_ref()
            .ok_or_else(|| Error::invalid("correction", "required"))?;
        check_lengths(&[
            ("correction.reason", &c.reason, MAX_TEXT),
            ("correction.evidence", &c.evidence, MAX_TEXT),
        ])?;
        let key = RequestKey::new(
            &who,
            "ProposeReadingCorrection",
            &c.meter_id,
            &r.request_id,
            &r,
        )?;
        let meter_id = required_id("correction.meter_id", &c.meter_id)?;
        let read_time = c
            .read_time
            .as_ref()
            .ok_or_else(|| Error::invalid("correction.read_time", "required"))?;
        let read_at_ms = crate::metering::reading_time_ms(read_time.seconds, read_time.nanos)
            .map_err(|why| Error::invalid("correction.read_time", why))?;
        let action = match pb::CorrectionAction::try_from(c.action) {
            Ok(pb::CorrectionAction::Replace) => CorrectionAction::Replace,
            Ok(pb::CorrectionAction::Exclude) => CorrectionAction::Exclude,
            Ok(pb::CorrectionAction::Keep) => CorrectionAction::Keep,
            _ => {
                return Err(Error::invalid(
                    "correction.action",
                    "required: REPLACE, EXCLUDE or KEEP",
                )
                .into());
            }
        };
        if c.reason.trim().chars().count() < 4 {
            return Err(Error::invalid(
                "correction.reason",
                "required, at least 4 characters: what was wrong with the reading",
            )
            .into());
        }
        if c.evidence.trim().is_empty() {
            return Err(Error::invalid(
                "correction.evidence",
                "required: the record that shows the correction (a site log, a photo of the register, a bill)",
            )
            .into());
        }
        let ask = CorrectionAsk {
            meter_id: meter_id.to_string(),
            read_at_ms,
            action,
            corrected_use_litres: c.corrected_use_litres,
            reason: c.reason.trim().to_string(),
            evidence: c.evidence.trim().to_string(),
        };
        let correction = self.store.propose_correction(&key, &ask, &who).await?;
        Ok(Response::new(pb::ProposeReadingCorrectionResponse {
            correction: Some(correction_to_pb(&correction)),
        }))
    }

    async fn decide_reading_correction(
        &self,
        request: Request<pb::DecideReadingCorrectionRequest>,
    ) -> Result<Response<pb::DecideReadingCorrectionResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        check_lengths(&[("note", &r.note, MAX_TEXT)])?;
        let key = RequestKey::new(
            &who,
            "DecideReadingCorrection",
            &r.correction_id,
            &r.request_id,
            &r,
        )?;
        let id = required_id("correction_id", &r.correction_id)?;
        if !r.accept && r.note.trim().is_empty() {
            return Err(Error::invalid(
                "note",
                "required to reject: why the correction does not stand",
            )
            .into());
        }
        let correction = self
            .store
            .decide_correction(&key, id, r.expected_version, r.accept, r.note.trim(), &who)
            .await?;
        Ok(Response::new(pb::DecideReadingCorrectionResponse {
            correction: Some(correction_to_pb(&correction)),
        }))
    }

    async fn list_reading_corrections(
        &self,
        request: Request<pb::ListReadingCorrectionsRequest>,
    ) -> Result<Response<pb::ListReadingCorrectionsResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let page = Page::from_request(r.page_size, &r.page_token)?;
        let project = self.readable_project(&who, &r.project_id).await?;
        let (rows, next) = self.store.corrections(&project.id, &page).await?;
        Ok(Response::new(pb::ListReadingCorrectionsResponse {
            corrections: rows.iter().map(correction_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn list_non_routine_adjustments(
        &self,
        request: Request<pb::ListNonRoutineAdjustmentsRequest>,
    ) -> Result<Response<pb::ListNonRoutineAdjustmentsResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let page = Page::from_request(r.page_size, &r.page_token)?;
        let project = self.readable_project(&who, &r.project_id).await?;
        let (rows, next) = self.store.adjustments(&project.id, &page).await?;
        Ok(Response::new(pb::ListNonRoutineAdjustmentsResponse {
            adjustments: rows.iter().map(adjustment_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn submit_period(
        &self,
        request: Request<pb::SubmitPeriodRequest>,
    ) -> Result<Response<pb::SubmitPeriodResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        check_lengths(&[
            ("note", &r.note, MAX_TEXT),
            ("start_date", &r.start_date, MAX_DATE),
        ])?;
        let key = RequestKey::new(&who, "SubmitPeriod", &r.project_id, &r.request_id, &r)?;
        let project_id = required_id("project_id", &r.project_id)?;
        check_date("start_date", &r.start_date, true)?;
        let period = self
            .store
            .submit_period(&key, project_id, &r.start_date, &r.note, &who)
            .await?;
        Ok(Response::new(pb::SubmitPeriodResponse {
            period: Some(period_to_pb(&period)),
        }))
    }

    async fn get_verification_report(
        &self,
        request: Request<pb::GetVerificationReportRequest>,
    ) -> Result<Response<pb::GetVerificationReportResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        check_lengths(&[(
            "contract_year_start_date",
            &r.contract_year_start_date,
            MAX_DATE,
        )])?;
        let xlsx = match pb::ReportFormat::try_from(r.format) {
            Ok(pb::ReportFormat::Xlsx) => true,
            Ok(_) => false,
            Err(_) => {
                return Err(
                    Error::invalid("format", format!("unknown format {}", r.format)).into(),
                );
            }
        };
        // A period's report, or a contract year's (no period, a project and the year's start).
        let (id, served) = if r.period_id.is_empty() && !r.project_id.is_empty() {
            let project_id = required_id("project_id", &r.project_id)?;
            check_date(
                "contract_year_start_date",
                &r.contract_year_start_date,
                true,
            )?;
            let served = self
                .store
                .contract_year_report(project_id, &r.contract_year_start_date, xlsx, &who)
                .await?;
            (
                format!("{project_id}-{}", r.contract_year_start_date),
                served,
            )
        } else {
            let id = required_id("period_id", &r.period_id)?;
            (
                id.to_string(),
                self.store.verification_report(id, xlsx, &who).await?,
            )
        };
        let (content_type, extension) = if xlsx {
            (
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                "xlsx",
            )
        } else {
            ("text/html; charset=utf-8", "html")
        };
        Ok(Response::new(pb::GetVerificationReportResponse {
            content: served.content,
            content_type: content_type.to_string(),
            file_name: format!("verification-{id}.{extension}"),
            sha256: served.sha256,
            archived: served.archived,
        }))
    }

    async fn waive_period_check(
        &self,
        request: Request<pb::WaivePeriodCheckRequest>,
    ) -> Result<Response<pb::WaivePeriodCheckResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        check_lengths(&[
            ("reason", &r.reason, MAX_TEXT),
            ("start_date", &r.start_date, MAX_DATE),
        ])?;
        let key = RequestKey::new(&who, "WaivePeriodCheck", &r.project_id, &r.request_id, &r)?;
        let project_id = required_id("project_id", &r.project_id)?;
        check_date("start_date", &r.start_date, true)?;
        let check = check_from_pb(r.check)?;
        let reason = r.reason.trim();
        if reason.chars().count() < 4 {
            return Err(Error::invalid(
                "reason",
                "required, at least 4 characters: why the failing check may stand",
            )
            .into());
        }
        if self.store.project(project_id).await?.readable_by(&who) {
            self.store.check_cited(project_id, "reason", reason).await?;
        }
        let waiver = self
            .store
            .waive_period_check(&key, project_id, &r.start_date, check, reason, &who)
            .await?;
        Ok(Response::new(pb::WaivePeriodCheckResponse {
            waiver: Some(waiver_to_pb(&waiver)),
        }))
    }

    async fn verify_period(
        &self,
        request: Request<pb::VerifyPeriodRequest>,
    ) -> Result<Response<pb::VerifyPeriodResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        check_lengths(&[("note", &r.note, MAX_TEXT)])?;
        let key = RequestKey::new(&who, "VerifyPeriod", &r.period_id, &r.request_id, &r)?;
        let period = self
            .store
            .period_step(
                &key,
                required_id("period_id", &r.period_id)?,
                r.expected_version,
                &who,
                &StepAsk {
                    step: PeriodStep::Verify,
                    text: r.note,
                    adjustment_litres: 0,
                },
            )
            .await?;
        self.store.archive_year_of(&period).await;
        (self.on_change)();
        Ok(Response::new(pb::VerifyPeriodResponse {
            period: Some(period_to_pb(&period)),
        }))
    }

    async fn dispute_period(
        &self,
        request: Request<pb::DisputePeriodRequest>,
    ) -> Result<Response<pb::DisputePeriodResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        check_lengths(&[("reason", &r.reason, MAX_TEXT)])?;
        let key = RequestKey::new(&who, "DisputePeriod", &r.period_id, &r.request_id, &r)?;
        let period_id = required_id("period_id", &r.period_id)?;
        if r.reason.trim().is_empty() {
            return Err(Error::invalid("reason", "required: what is disputed and why").into());
        }
        let period = self
            .store
            .period_step(
                &key,
                period_id,
                r.expected_version,
                &who,
                &StepAsk {
                    step: PeriodStep::Dispute,
                    text: r.reason,
                    adjustment_litres: 0,
                },
            )
            .await?;
        Ok(Response::new(pb::DisputePeriodResponse {
            period: Some(period_to_pb(&period)),
        }))
    }

    async fn resolve_dispute(
        &self,
        request: Request<pb::ResolveDisputeRequest>,
    ) -> Result<Response<pb::ResolveDisputeResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        check_lengths(&[("note", &r.note, MAX_TEXT)])?;
        let key = RequestKey::new(&who, "ResolveDispute", &r.period_id, &r.request_id, &r)?;
        let period_id = required_id("period_id", &r.period_id)?;
        if r.note.trim().is_empty() {
            return Err(Error::invalid("note", "required: how the dispute was resolved").into());
        }
        quantity::signed_litres("adjustment_litres", r.adjustment_litres)?;
        let period = self
            .store
            .period_step(
                &key,
                period_id,
                r.expected_version,
                &who,
                &StepAsk {
                    step: PeriodStep::Resolve,
                    text: r.note,
                    adjustment_litres: r.adjustment_litres,
                },
            )
            .await?;
        self.store.archive_year_of(&period).await;
        (self.on_change)();
        Ok(Response::new(pb::ResolveDisputeResponse {
            period: Some(period_to_pb(&period)),
        }))
    }

    async fn settle_period(
        &self,
        request: Request<pb::SettlePeriodRequest>,
    ) -> Result<Response<pb::SettlePeriodResponse>, Status> {
        let who = principal(&request)?;
        let lang = Lang::of_metadata(request.metadata());
        let r = request.into_inner();
        let key = RequestKey::new(&who, "SettlePeriod", &r.period_id, &r.request_id, &r)?;
        let (settlement, period) = self
            .store
            .settle_period(
                &key,
                required_id("period_id", &r.period_id)?,
                r.expected_version,
                &who,
            )
            .await?;
        Ok(Response::new(pb::SettlePeriodResponse {
            settlement: Some(settlement_to_pb(&settlement, lang)),
            period: Some(period_to_pb(&period)),
        }))
    }

    async fn list_settlements(
        &self,
        request: Request<pb::ListSettlementsRequest>,
    ) -> Result<Response<pb::ListSettlementsResponse>, Status> {
        let who = principal(&request)?;
        let lang = Lang::of_metadata(request.metadata());
        let r = request.into_inner();
        let page = Page::from_request(r.page_size, &r.page_token)?;
        let project = self.readable_project(&who, &r.project_id).await?;
        let (rows, next) = self.store.settlements(&project.id, &page).await?;
        Ok(Response::new(pb::ListSettlementsResponse {
            settlements: rows.iter().map(|s| settlement_to_pb(s, lang)).collect(),
            next_page_token: next,
        }))
    }

    async fn list_milestones(
        &self,
        request: Request<pb::ListMilestonesRequest>,
    ) -> Result<Response<pb::ListMilestonesResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        check_len("project_id", &r.project_id, MAX_CODE)?;
        // Administrators and services (reporting rebuilding its counts) read the whole log;
        // the others the milestones of the projects they may read.
        let seen_by = if who.role == Role::Service {
            SeenBy::All
        } else {
            if !r.project_id.is_empty() {
                self.readable_project(&who, &r.project_id).await?;
            }
            SeenBy::of(&who)
        };
        let page = Page::from_request(r.page_size, &r.page_token)?;
        // The sequence is the page key: a token carries the last sequence seen.
        let after = match &page.after {
            Some(seq) => seq
                .parse::<i64>()
                .map_err(|_| Error::invalid("page_token", "not a token this server issued"))?,
            None => r.after_sequence,
        };
        let mut rows = self
            .store
            .milestones(after, &r.project_id, &seen_by, page.fetch_limit())
            .await?;
        let next = page.finish(&mut rows, |(seq, _)| seq.to_string());
        let milestones = rows
            .iter()
            .map(|(_, payload)| ProjectMilestone::decode(payload.as_slice()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Internal(anyhow::anyhow!("milestone log entry unreadable: {e}")))?;
        Ok(Response::new(pb::ListMilestonesResponse {
            milestones,
            next_page_token: next,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_maps_to_the_proto_stage_of_the_same_name() {
        for s in Stage::ALL {
            assert_eq!(
                stage_to_pb(s).as_str_name(),
                format!("PROJECT_STAGE_{}", s.code().to_uppercase())
            );
            assert_eq!(
                stage_from_pb("x", stage_to_pb(s) as i32).expect("known"),
                Some(s)
            );
        }
        assert!(stage_from_pb("x", 99).is_err());
    }

    #[test]
    fn vocabulary_numbers_match_the_proto_enums() {
        for s in Sector::ALL {
            let name = types::Sector::try_from(s.number())
                .expect("known")
                .as_str_name();
            assert_eq!(name, format!("SECTOR_{}", s.code().to_uppercase()));
        }
        for m in ContractModel::ALL {
            let name = types::ContractModel::try_from(m.number())
                .expect("known")
                .as_str_name();
            assert_eq!(name, format!("CONTRACT_MODEL_{}", m.code().to_uppercase()));
        }
        for t in IndicatorTag::ALL {
            let name = types::IndicatorTag::try_from(t.number())
                .expect("known")
                .as_str_name();
            assert_eq!(name, format!("INDICATOR_TAG_{}", t.code().to_uppercase()));
        }
        for m in cwsm_platform::vocab::Milestone::ALL {
            let name = types::Milestone::try_from(m.number())
                .expect("known")
                .as_str_name();
            assert_eq!(name, format!("MILESTONE_{}", m.code().to_uppercase()));
        }
    }
}
