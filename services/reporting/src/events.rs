//! The `cwsm.events.v1.ProjectMilestone` event in: each milestone stored as a fact, exactly
//! once; what cannot be used is set aside as a dead letter.

use async_trait::async_trait;
use cwsm_platform::bus::{Envelope, EventHandler, topics};
use cwsm_platform::grpc::millis;
use cwsm_platform::now_ms;
use cwsm_platform::vocab::{IndicatorTag, Milestone, Sector};
use cwsm_proto::events::v1::ProjectMilestone;
use prost::Message;

use crate::Reporting;
use crate::report::{self, Fact};

/// Stores each `ProjectMilestone` as a fact, exactly once.
pub struct MilestoneHandler {
    reporting: Reporting,
}

impl MilestoneHandler {
    pub fn new(reporting: Reporting) -> Self {
        Self { reporting }
    }
}

/// The fact a milestone event carries, or why it cannot be used (an unknown milestone, a
/// malformed effective date or jurisdiction code). An event without an effective date
/// (published before they existed) takes effect on the CST date it occurred; one without a
/// jurisdiction is in the platform's `district`.
pub fn fact_from_event(
    envelope: &Envelope,
    m: &ProjectMilestone,
    district: &cwsm_platform::jurisdiction::Jurisdiction,
) -> Result<Fact, String> {
    let milestone = Milestone::from_number(m.milestone)
        .ok_or_else(|| format!("unknown milestone {}", m.milestone))?;
    let event_id = if m.event_id.is_empty() {
        envelope.event_id.clone()
    } else {
        m.event_id.clone()
    };
    let occurred_at_ms = m
        .occurred_time
        .as_ref()
        .map(millis)
        .unwrap_or(envelope.occurred_at_ms);
    let effective_date = if m.effective_date.trim().is_empty() {
        report::cst_date(occurred_at_ms)
    } else {
        report::parse_date(&m.effective_date).ok_or_else(|| {
            format!(
                "effective_date {:?} is not a date YYYY-MM-DD",
                m.effective_date.chars().take(32).collect::<String>()
            )
        })?
    };
    let jurisdiction = if m.jurisdiction_code.trim().is_empty() {
        district.clone()
    } else {
        cwsm_platform::jurisdiction::Jurisdiction::parse("jurisdiction_code", &m.jurisdiction_code)
            .map_err(|e| e.to_string())?
    };
    // Amounts within the platform's ranges, so that sums of them stay exact.
    let investment_fen = cwsm_platform::quantity::fen("investment_fen", m.investment_fen)
        .map_err(|e| e.to_string())?;
    let period_savings_litres =
        cwsm_platform::quantity::signed_litres("period_savings_litres", m.period_savings_litres)
            .map_err(|e| e.to_string())?;
    Ok(Fact {
        event_id,
        project_id: m.project_id.clone(),
        sequence: m.sequence,
        milestone,
        occurred_at_ms,
        counted_at_ms: now_ms(),
        effective_date,
        jurisdiction,
        investment_fen: investment_fen.0,
        period_id: if milestone == Milestone::PeriodVerified {
            m.period_id.clone()
        } else {
            String::new()
        },
        period_savings_litres: period_savings_litres.0,
        sector: Sector::from_number(m.sector),
        unit_type: m.unit_type.clone(),
        town: m.town.clone(),
        tags: m
            .indicator_tags
            .iter()
            .filter_map(|t| IndicatorTag::from_number(*t))
            .collect(),
        project_title: m.project_title.clone(),
        company_id: m.company_id.clone(),
        company_name: m.company_name.clone(),
        water_user_credit_code: m.water_user_credit_code.clone(),
        water_user_name: m.water_user_name.clone(),
    })
}

#[async_trait]
impl EventHandler for MilestoneHandler {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        if event.kind != topics::PROJECT_MILESTONE_KIND {
            return Ok(());
        }
        // A payload that does not decode never will: retrying it would block the stream, so it
        // is set aside as a dead letter (ListDeadLetters) and acknowledged.
        let m = match ProjectMilestone::decode(event.payload.as_slice()) {
            Ok(m) => m,
            Err(e) => {
                self.reporting
                    .dead_letter(event, &format!("undecodable ProjectMilestone: {e}"))
                    .await?;
                return Ok(());
            }
        };
        let fact = match fact_from_event(event, &m, self.reporting.district()) {
            Ok(fact) => fact,
            Err(reason) => {
                self.reporting.dead_letter(event, &reason).await?;
                return Ok(());
            }
        };
        if fact.project_id.is_empty() {
            self.reporting
                .dead_letter(event, "ProjectMilestone without a project id")
                .await?;
            return Ok(());
        }
        self.reporting.apply_fact(&fact).await?;
        Ok(())
    }
}
