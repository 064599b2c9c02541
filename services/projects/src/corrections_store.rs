//! Reading corrections in the store: proposed, decided (an accepted one supersedes the
//! reading's earlier accepted correction in the same transaction), listed; and the accepted
//! ones applied to a project's days for the M&V.

use std::collections::BTreeMap;

use cwsm_platform::auth::Principal;
use cwsm_platform::grpc::Page;
use cwsm_platform::idempotency::{self, RequestKey};
use cwsm_platform::{Error, Result, keyed_write, new_id, now_ms, with_db};

use crate::corrections::*;
use crate::domain::Project;
use crate::metering::{MAX_FLOW_LITRES_PER_SECOND, QualityRules};
use crate::mv::DayUse;
use crate::readings::{day_date, day_index, day_start_ms};
use crate::store::{ProjectRow, Store};

#[derive(sqlx::FromRow)]
struct CorrectionRow {
    id: String,
    project_id: String,
    meter_id: String,
    read_at_ms: i64,
    action: String,
    corrected_use_litres: i64,
    original_use_litres: i64,
    original_flags: i32,
    reason: String,
    evidence: String,
    status: String,
    proposed_by: String,
    proposed_by_org: String,
    decided_by: String,
    decided_by_org: String,
    decision_note: String,
    created_at_ms: i64,
    updated_at_ms: i64,
    version: i64,
}

impl From<CorrectionRow> for Correction {
    fn from(r: CorrectionRow) -> Self {
        Correction {
            id: r.id,
            project_id: r.project_id,
            meter_id: r.meter_id,
            read_at_ms: r.read_at_ms,
            action: CorrectionAction::from_code(&r.action).unwrap_or(CorrectionAction::Exclude),
            corrected_use_litres: r.corrected_use_litres,
            original_use_litres: r.original_use_litres,
            original_flags: r.original_flags,
            reason: r.reason,
            evidence: r.evidence,
            status: CorrectionStatus::from_code(&r.status).unwrap_or(CorrectionStatus::Proposed),
            proposed_by: r.proposed_by,
            proposed_by_org: r.proposed_by_org,
            decided_by: r.decided_by,
            decided_by_org: r.decided_by_org,
            decision_note: r.decision_note,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            version: r.version,
        }
    }
}

/// What a proposal asks.
#[derive(Clone, Debug)]
pub struct CorrectionAsk {
    pub meter_id: String,
    pub read_at_ms: i64,
    pub action: CorrectionAction,
    pub corrected_use_litres: i64,
    pub reason: String,
    pub evidence: String,
}

impl Store {
    pub async fn correction(&self, id: &str) -> Result<Correction> {
        let row: Option<CorrectionRow> = with_db!(&self.db, pool => sqlx::query_as("SELECT * FROM reading_corrections WHERE id = $1").bind(id).fetch_optional(pool).await?);
        row.map(Correction::from)
            .ok_or_else(|| Error::not_found("reading correction", id))
    }

    /// Proposes a correction of a stored reading ([`check_proposal`]); ALREADY_EXISTS while
    /// another proposal of the same reading is open.
    pub async fn propose_correction(
        &self,
        key: &RequestKey,
        ask: &CorrectionAsk,
        who: &Principal,
    ) -> Result<Correction> {
        if let Some(id) = idempotency::recorded(&self.db, key).await? {
            return self.correction(&id).await;
        }
        let meter = self.meter(&ask.meter_id).await?;
        let project = self.project(&meter.project_id).await?;
        if !project.readable_by(who) {
            return Err(Error::not_found("meter", &ask.meter_id));
        }
        let stored: Option<(i64, i32)> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT use_litres, flags FROM readings WHERE meter_id = $1 AND read_at_ms = $2")
            .bind(&ask.meter_id).bind(ask.read_at_ms).fetch_optional(pool).await?);
        let Some((use_litres, flags)) = stored else {
            return Err(Error::not_found(
                "reading",
                format!("{} at {} ms", ask.meter_id, ask.read_at_ms),
            ));
        };
        let reading = StoredReading {
            at_ms: ask.read_at_ms,
            use_litres,
            flags,
        };
        self.check_cited(&project.id, "correction.evidence", &ask.evidence)
            .await?;
        let periods = self.stored_periods(&project.id).await?;
        let day = day_date(day_index(ask.read_at_ms));
        check_proposal(
            &project,
            who,
            reading,
            ask.action,
            frozen(&project, &periods, day),
        )?;
        if ask.action == CorrectionAction::Replace {
            let most = MAX_FLOW_LITRES_PER_SECOND.saturating_mul(i64::from(meter.interval_seconds));
            if ask.corrected_use_litres.unsigned_abs() > most.unsigned_abs() {
                return Err(Error::invalid(
                    "correction.corrected_use_litres",
                    format!(
                        "{} L in a {} s interval is more than {MAX_FLOW_LITRES_PER_SECOND} L/s could pass (at most {most} L)",
                        ask.corrected_use_litres, meter.interval_seconds
                    ),
                ));
            }
        }
        let corrected = match ask.action {
            CorrectionAction::Replace => ask.corrected_use_litres,
            _ => 0,
        };
        let org = who.org.clone().unwrap_or_default();
        let id = keyed_write!(&self.db, key, tx => {
            let id = new_id();
            let now = now_ms();
            let inserted = sqlx::query("INSERT INTO reading_corrections (id, project_id, meter_id, read_at_ms, action, corrected_use_litres, original_use_litres, original_flags, \
                         reason, evidence, status, proposed_by, proposed_by_org, created_at_ms, updated_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'proposed', $11, $12, $13, $13) ON CONFLICT DO NOTHING")
                .bind(&id).bind(&project.id).bind(&ask.meter_id).bind(ask.read_at_ms).bind(ask.action.code()).bind(corrected)
                .bind(use_litres).bind(flags).bind(&ask.reason).bind(&ask.evidence).bind(&who.subject).bind(&org).bind(now)
                .execute(&mut *tx).await?.rows_affected();
            if inserted == 0 {
                let open: Option<String> = sqlx::query_scalar("SELECT id FROM reading_corrections WHERE meter_id = $1 AND read_at_ms = $2 AND status = 'proposed'")
                    .bind(&ask.meter_id).bind(ask.read_at_ms).fetch_optional(&mut *tx).await?;
                return Err(Error::AlreadyExists(format!(
                    "correction {} of this reading is proposed already; the verifier decides it first",
                    open.unwrap_or_default()
                )));
            }
            id
        });
        self.correction(&id).await
    }

    /// Accepts or rejects a proposed correction ([`check_decision`]); accepting supersedes
    /// the reading's accepted correction, and is refused once the reading's day is frozen.
    pub async fn decide_correction(
        &self,
        key: &RequestKey,
        id: &str,
        expected_version: i64,
        accept: bool,
        note: &str,
        who: &Principal,
    ) -> Result<Correction> {
        let org = who.org.clone().unwrap_or_default();
        // The stored periods are read before the write; the write checks that none was
        // submitted since (their count), so no frozen figure changes.
        let periods = match self.correction(id).await {
            Ok(c) => self.stored_periods(&c.project_id).await?,
            Err(_) => Vec::new(),
        };
        let id = keyed_write!(&self.db, key, tx => {
            let row: Option<CorrectionRow> = sqlx::query_as("SELECT * FROM reading_corrections WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
            let c = row.map(Correction::from).ok_or_else(|| Error::not_found("reading correction", id))?;
            let project_row: Option<ProjectRow> = sqlx::query_as("SELECT * FROM projects WHERE id = $1").bind(&c.project_id).fetch_optional(&mut *tx).await?;
            let project = project_row.map(Project::from).ok_or_else(|| Error::not_found("project", &c.project_id))?;
            check_decision(&project, who, &c)?;
            if expected_version != 0 && c.version != expected_version {
                return Err(Error::Aborted(format!(
                    "correction {id} is at version {}, not {expected_version}; read it again and retry", c.version)));
            }
            let submitted: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM periods WHERE project_id = $1")
                .bind(&c.project_id).fetch_one(&mut *tx).await?;
            if accept {
                if let Some(why) = frozen(&project, &periods, day_date(day_index(c.read_at_ms))) {
                    return Err(Error::precondition(why));
                }
                if submitted as usize != periods.len() {
                    return Err(Error::Aborted(format!("a period of project {} was submitted meanwhile; decide again", c.project_id)));
                }
                sqlx::query("UPDATE reading_corrections SET status = 'superseded', updated_at_ms = $3, version = version + 1 WHERE meter_id = $1 AND read_at_ms = $2 AND status = 'accepted'")
                    .bind(&c.meter_id).bind(c.read_at_ms).bind(now_ms()).execute(&mut *tx).await?;
            }
            let status = if accept { CorrectionStatus::Accepted } else { CorrectionStatus::Rejected };
            let written = sqlx::query("UPDATE reading_corrections SET status = $1, decided_by = $2, decided_by_org = $3, decision_note = $4, updated_at_ms = $5, version = version + 1 \
                         WHERE id = $6 AND version = $7 AND status = 'proposed'")
                .bind(status.code()).bind(&who.subject).bind(&org).bind(note).bind(now_ms()).bind(id).bind(c.version)
                .execute(&mut *tx).await?.rows_affected();
            if written == 0 {
                return Err(Error::Aborted(format!("correction {id} changed while it was being decided; read it again and retry")));
            }
            id.to_string()
        });
        self.correction(&id).await
    }

    /// A project's corrections, oldest first (ids are time-ordered).
    pub async fn corrections(
        &self,
        project_id: &str,
        page: &Page,
    ) -> Result<(Vec<Correction>, String)> {
        let mut rows: Vec<Correction> = with_db!(&self.db, pool => sqlx::query_as::<_, CorrectionRow>(
            "SELECT * FROM reading_corrections WHERE project_id = $1 AND ($2 = '' OR id > $2) ORDER BY id LIMIT $3")
            .bind(project_id).bind(page.after.clone().unwrap_or_default()).bind(page.fetch_limit()).fetch_all(pool).await?)
        .into_iter().map(Correction::from).collect();
        let next = page.finish(&mut rows, |c| c.id.clone());
        Ok((rows, next))
    }

    /// The accepted corrections of the project's meters of `kind`, oldest reading first.
    pub(crate) async fn accepted_corrections(
        &self,
        project_id: &str,
        kind: &str,
    ) -> Result<Vec<Correction>> {
        Ok(with_db!(&self.db, pool => sqlx::query_as::<_, CorrectionRow>(
            "SELECT c.* FROM reading_corrections c JOIN meters m ON m.id = c.meter_id \
             WHERE c.project_id = $1 AND c.status = 'accepted' AND m.kind = $2 ORDER BY c.read_at_ms")
            .bind(project_id).bind(kind).fetch_all(pool).await?)
        .into_iter().map(Correction::from).collect())
    }

    /// Recomputes the days of `days` that hold a reading of a meter read daily or finer with
    /// an accepted correction, from those readings and corrections, under `rules` (a bill's
    /// correction applies to the bill before it is spread).
    pub(crate) async fn apply_corrections(
        &self,
        project_id: &str,
        kind: &str,
        rules: QualityRules,
        days: &mut [DayUse],
    ) -> Result<()> {
        let accepted = self.accepted_corrections(project_id, kind).await?;
        let mut by_day: BTreeMap<i64, Vec<&Correction>> = BTreeMap::new();
        for c in &accepted {
            by_day.entry(day_index(c.read_at_ms)).or_default().push(c);
        }
        for (d, corrections) in by_day {
            let Some(day) = days.iter_mut().find(|x| x.day == day_date(d)) else {
                continue;
            };
            // The day's readings (a day holds the instants (start, end]), as aggregated.
            let readings: Vec<(String, i64, i64, i32)> = with_db!(&self.db, pool => sqlx::query_as(
                "SELECT r.meter_id, r.read_at_ms, r.use_litres, r.flags FROM readings r JOIN meters m ON m.id = r.meter_id \
                 WHERE m.project_id = $1 AND m.kind = $2 AND m.interval_seconds <= 86400 AND r.read_at_ms > $3 AND r.read_at_ms <= $4 \
                 AND r.use_litres BETWEEN -$5 * CAST(m.interval_seconds AS BIGINT) AND $5 * CAST(m.interval_seconds AS BIGINT)")
                .bind(project_id).bind(kind).bind(day_start_ms(d)).bind(day_start_ms(d + 1)).bind(MAX_FLOW_LITRES_PER_SECOND)
                .fetch_all(pool).await?);
            let with: Vec<(StoredReading, Option<&Correction>)> = readings
                .iter()
                .map(|(meter, at, use_litres, flags)| {
                    (
                        StoredReading {
                            at_ms: *at,
                            use_litres: *use_litres,
                            flags: *flags,
                        },
                        corrections
                            .iter()
                            .find(|c| &c.meter_id == meter && c.read_at_ms == *at)
                            .copied(),
                    )
                })
                .collect();
            *day = corrected_day(*day, &with, rules);
        }
        Ok(())
    }
}
