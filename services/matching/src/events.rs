//! Events matching listens to: `cwsm.events.v1.ProjectMilestone` from the projects service, which
//! keeps each company's verified track record (projects handed over; verified against promised
//! savings).

use async_trait::async_trait;
use cwsm_platform::bus::{Envelope, EventHandler, topics};
use cwsm_platform::vocab::Milestone;
use cwsm_proto::events::v1::ProjectMilestone;
use prost::Message;

use crate::domain::ProjectProgress;
use crate::store::Store;

/// The consumer group of matching on the milestones topic.
pub const CONSUMER_GROUP: &str = "matching";

pub struct MilestoneHandler {
    pub store: Store,
}

/// What a milestone event tells matching; `None` for a milestone it does not know.
pub fn progress_from_event(envelope: &Envelope, m: &ProjectMilestone) -> Option<ProjectProgress> {
    let milestone = Milestone::from_number(m.milestone)?;
    // The running totals: on every PERIOD_VERIFIED, and on any other milestone that carries
    // them (a milestone without totals must not reset them to zero).
    let carries_totals = milestone == Milestone::PeriodVerified
        || m.verified_savings_litres > 0
        || m.promised_savings_litres > 0;
    Some(ProjectProgress {
        event_id: if m.event_id.is_empty() {
            envelope.event_id.clone()
        } else {
            m.event_id.clone()
        },
        project_id: m.project_id.clone(),
        company_id: m.company_id.clone(),
        company_credit_code: m.company_credit_code.clone(),
        sequence: m.sequence,
        handed_over: milestone == Milestone::HandedOver,
        totals: carries_totals.then_some((
            m.verified_savings_litres.max(0),
            m.promised_savings_litres.max(0),
        )),
    })
}

#[async_trait]
impl EventHandler for MilestoneHandler {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        if event.kind != topics::PROJECT_MILESTONE_KIND {
            return Ok(());
        }
        // A payload that does not decode never will: retrying would block the stream, so it is
        // logged and acknowledged.
        let m = match ProjectMilestone::decode(event.payload.as_slice()) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(event_id = %event.event_id, error = %e, "undecodable ProjectMilestone; skipped");
                return Ok(());
            }
        };
        let Some(progress) = progress_from_event(event, &m) else {
            tracing::warn!(event_id = %event.event_id, milestone = m.milestone, "ProjectMilestone with an unknown milestone; skipped");
            return Ok(());
        };
        let fresh = self.store.apply_milestone(&progress).await?;
        tracing::debug!(event_id = %progress.event_id, project_id = %progress.project_id, fresh, "milestone applied to the track record");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_come_from_verified_periods_and_not_from_milestones_without_them() {
        let envelope = Envelope {
            event_id: "e".into(),
            topic: topics::PROJECT_MILESTONES.into(),
            kind: topics::PROJECT_MILESTONE_KIND.into(),
            payload: vec![],
            occurred_at_ms: 0,
            trace_parent: String::new(),
        };
        let mut m = ProjectMilestone {
            project_id: "p".into(),
            company_id: "c".into(),
            sequence: 7,
            milestone: Milestone::HandedOver.number(),
            ..Default::default()
        };
        let p = progress_from_event(&envelope, &m).expect("known");
        assert!(p.handed_over);
        assert_eq!(p.totals, None);
        assert_eq!(
            p.event_id, "e",
            "the envelope's id when the payload has none"
        );
        m.milestone = Milestone::PeriodVerified.number();
        m.verified_savings_litres = 90;
        m.promised_savings_litres = 100;
        let p = progress_from_event(&envelope, &m).expect("known");
        assert!(!p.handed_over);
        assert_eq!(p.totals, Some((90, 100)));
        m.milestone = 99;
        assert!(progress_from_event(&envelope, &m).is_none());
    }
}
