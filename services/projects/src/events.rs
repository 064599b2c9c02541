//! The wire form of events, both ways: `ProposalAccepted` from matching starts a project;
//! `ProjectMilestone` tells reporting and matching what happened.

use std::sync::Arc;

use async_trait::async_trait;
use cwsm_platform::bus::{Envelope, EventHandler, topics};
use cwsm_platform::grpc::{millis, timestamp};
use cwsm_platform::vocab::{ContractModel, IndicatorTag, MvOption, Sector};
use cwsm_proto::events::v1 as wire;
use prost::Message;

use crate::domain::{Contract, ContractTerms, Party};
use crate::store::{MilestoneFacts, Signing, Store};

/// Encodes a milestone as `cwsm.events.v1.ProjectMilestone`.
pub fn encode_milestone(m: &MilestoneFacts) -> Vec<u8> {
    let p = &m.project;
    let c = &p.contract;
    wire::ProjectMilestone {
        event_id: m.event_id.clone(),
        project_id: p.id.clone(),
        proposal_id: c.proposal_id.clone(),
        sequence: m.sequence,
        milestone: m.milestone.number(),
        occurred_time: Some(timestamp(m.occurred_at_ms)),
        project_title: c.title.clone(),
        company_id: c.company.id.clone(),
        company_credit_code: c.company.credit_code.clone(),
        company_name: c.company.name.clone(),
        water_user_id: c.water_user.id.clone(),
        water_user_credit_code: c.water_user.credit_code.clone(),
        water_user_name: c.water_user.name.clone(),
        sector: c.sector.number(),
        unit_type: c.unit_type.clone(),
        town: c.town.clone(),
        indicator_tags: c.indicator_tags.iter().map(|t| t.number()).collect(),
        contract_model: c.contract_model.number(),
        verified_savings_litres: m.verified_savings_litres,
        promised_savings_litres: m.promised_savings_litres,
        period_id: m.period_id.clone(),
        period_savings_litres: m.period_savings_litres,
        reason: m.reason.clone(),
        effective_date: m.effective_date.to_string(),
        jurisdiction_code: c.jurisdiction_code.clone(),
        investment_fen: c.investment_fen,
    }
    .encode_to_vec()
}

/// Reads a `ProposalAccepted` into the contract it signs, and the project id matching chose.
pub fn decode_accepted(payload: &[u8]) -> anyhow::Result<(String, String, Contract, i64)> {
    let e = wire::ProposalAccepted::decode(payload)?;
    let company = e.company.unwrap_or_default();
    let user = e.water_user.unwrap_or_default();
    let terms = e.terms.unwrap_or_default();
    let sector = Sector::from_number(user.sector)
        .ok_or_else(|| anyhow::anyhow!("ProposalAccepted {} has no sector", e.event_id))?;
    let contract_model = ContractModel::from_number(e.contract_model)
        .ok_or_else(|| anyhow::anyhow!("ProposalAccepted {} has no contract model", e.event_id))?;
    let contract = Contract {
        proposal_id: e.proposal_id,
        project_request_id: e.project_request_id,
        company: Party {
            id: company.id,
            name: company.name,
            credit_code: company.credit_code,
        },
        water_user: Party {
            id: user.id,
            name: user.name,
            credit_code: user.credit_code,
        },
        sector,
        unit_type: user.unit_type,
        // Events from before the gazetteer carry only the town's name: look it up.
        jurisdiction_code: if user.jurisdiction_code.is_empty() {
            cwsm_platform::gazetteer::Gazetteer::builtin().code_of_site(&user.town)
        } else {
            user.jurisdiction_code
        },
        town: user.town,
        title: e.title,
        measures: e.measures,
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
        investment_fen: e.investment_fen,
        promised_savings_litres: e.promised_savings_litres,
        promised_savings_bp: e.promised_savings_bp,
        contract_term_months: e.contract_term_months,
        baseline_use_litres: e.baseline_use_litres,
        mv_option: MvOption::from_number(e.mv_option).unwrap_or(MvOption::C),
        drivers: e.drivers,
        price_fen_per_m3: e.price_fen_per_m3,
        indicator_tags: e
            .indicator_tags
            .iter()
            .filter_map(|t| IndicatorTag::from_number(*t))
            .collect(),
    };
    let accepted_ms = e.accepted_time.as_ref().map(millis).unwrap_or_default();
    Ok((e.event_id, e.project_id, contract, accepted_ms))
}

/// Starts a project for each accepted proposal (consumer group `projects` on
/// `matching.proposals-accepted`).
pub struct AcceptedProposals {
    pub store: Store,
    pub on_change: Arc<dyn Fn() + Send + Sync>,
}

#[async_trait]
impl EventHandler for AcceptedProposals {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        if event.kind != topics::PROPOSAL_ACCEPTED_KIND {
            return Ok(());
        }
        let (event_id, project_id, contract, accepted_ms) = decode_accepted(&event.payload)?;
        let created = self
            .store
            .create_from_contract(
                &event_id,
                &project_id,
                &contract,
                "matching",
                &Signing::at_acceptance(accepted_ms),
            )
            .await
            .map_err(|e| anyhow::anyhow!("creating project {project_id}: {e}"))?;
        if created {
            tracing::info!(project_id = %project_id, proposal_id = %contract.proposal_id, "project contracted");
            (self.on_change)();
        }
        Ok(())
    }
}
