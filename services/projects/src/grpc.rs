//! The adapter between `cwsm.projects.v1` and the domain. Built so far: projects (get, list),
//! the lifecycle (transition, history) and the milestone log. Meters, readings, M&V periods and
//! settlement answer UNIMPLEMENTED until they are built (the projects-in-depth issue); projects
//! are created from `ProposalAccepted` events, not by `CreateProject`.

use cwsm_platform::auth::principal;
use cwsm_platform::grpc::{Page, request_id, timestamp};
use cwsm_platform::vocab::{ContractModel, IndicatorTag, Sector};
use cwsm_platform::{Error, Result};
use cwsm_proto::events::v1::ProjectMilestone;
use cwsm_proto::projects::v1 as pb;
use cwsm_proto::types;
use prost::Message;
use tonic::{Request, Response, Status};

use crate::domain::{Project, Stage, Transition, TransitionAsk};
use crate::store::{ProjectFilter, Store};

pub struct ProjectsApi {
    pub store: Store,
    pub on_change: std::sync::Arc<dyn Fn() + Send + Sync>,
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
            model_description: String::new(),
            reporting_period_months: 0,
        }),
        price_fen_per_m3: c.price_fen_per_m3,
        indicator_tags: c.indicator_tags.iter().map(|t| t.number()).collect(),
        stage: stage_to_pb(p.stage) as i32,
        suspended_from_stage: p.suspended_from.map(|s| stage_to_pb(s) as i32).unwrap_or(0),
        stage_history: vec![],
        create_time: Some(timestamp(p.created_at_ms)),
        update_time: Some(timestamp(p.updated_at_ms)),
        version: p.version,
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
    }
}

fn required_id<'a>(field: &str, value: &'a str) -> Result<&'a str> {
    if value.trim().is_empty() {
        Err(Error::invalid(field, "required"))
    } else {
        Ok(value.trim())
    }
}

#[tonic::async_trait]
impl pb::projects_service_server::ProjectsService for ProjectsApi {
    async fn get_project(
        &self,
        request: Request<pb::GetProjectRequest>,
    ) -> Result<Response<pb::GetProjectResponse>, Status> {
        principal(&request)?;
        let r = request.into_inner();
        let project = self
            .store
            .project(required_id("project_id", &r.project_id)?)
            .await?;
        let (history, _) = self
            .store
            .transitions(
                &project.id,
                &Page {
                    size: 200,
                    after: None,
                },
            )
            .await?;
        let mut message = project_to_pb(&project);
        message.stage_history = history.iter().map(transition_to_pb).collect();
        Ok(Response::new(pb::GetProjectResponse {
            project: Some(message),
        }))
    }

    async fn list_projects(
        &self,
        request: Request<pb::ListProjectsRequest>,
    ) -> Result<Response<pb::ListProjectsResponse>, Status> {
        principal(&request)?;
        let r = request.into_inner();
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
        };
        let (projects, next) = self.store.list_projects(&filter, &page).await?;
        Ok(Response::new(pb::ListProjectsResponse {
            projects: projects.iter().map(project_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn transition_project(
        &self,
        request: Request<pb::TransitionProjectRequest>,
    ) -> Result<Response<pb::TransitionProjectResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let request_id = request_id(&r.request_id)?;
        let project_id = required_id("project_id", &r.project_id)?;
        let to = stage_from_pb("to_stage", r.to_stage)?
            .ok_or_else(|| Error::invalid("to_stage", "required: the stage to move to"))?;
        let ask = TransitionAsk {
            to,
            reason: r.reason,
            evidence: r.evidence,
        };
        let scope = format!(
            "{}:{}:TransitionProject",
            who.subject,
            who.org.clone().unwrap_or_default()
        );
        let (project, transition) = self
            .store
            .transition(
                &scope,
                request_id,
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
        principal(&request)?;
        let r = request.into_inner();
        let page = Page::from_request(r.page_size, &r.page_token)?;
        let project_id = required_id("project_id", &r.project_id)?;
        self.store.project(project_id).await?;
        let (rows, next) = self.store.transitions(project_id, &page).await?;
        Ok(Response::new(pb::ListProjectTransitionsResponse {
            transitions: rows.iter().map(transition_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn list_milestones(
        &self,
        request: Request<pb::ListMilestonesRequest>,
    ) -> Result<Response<pb::ListMilestonesResponse>, Status> {
        principal(&request)?;
        let r = request.into_inner();
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
            .milestones(after, &r.project_id, page.fetch_limit())
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
