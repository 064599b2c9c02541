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
use cwsm_platform::vocab::{ContractModel, IndicatorTag, Sector};
use cwsm_platform::{Error, Result};
use cwsm_proto::events::v1::ProjectMilestone;
use cwsm_proto::projects::v1 as pb;
use prost::Message;
use tonic::{Request, Response, Status};

use crate::convert::*;
use crate::corrections::CorrectionAction;
use crate::corrections_store::CorrectionAsk;
use crate::domain::{Project, TransitionAsk, check_effective_date, effective_date};
use crate::ledger::{AdjustmentStatus, NonRoutineAdjustment, PeriodStep};
use crate::ledger_store::{ProjectUpdate, StepAsk};
use crate::metering::{Incoming, Meter, TimestampsMark, ValueKind};
use crate::readings::{Aggregation, IngestSession};
use crate::store::{ProjectFilter, SeenBy, Signing, Store};
use crate::verifiers::Decision;

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

/// A verifier body's credit code as sent in `field`: trimmed, upper-cased and checked.
fn verifier_code(field: &str, value: &str) -> Result<String> {
    let code = value.trim().to_uppercase();
    cwsm_platform::credit_code::check(field, &code)?;
    Ok(code)
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
    use crate::domain::Stage;
    use cwsm_proto::types;

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
