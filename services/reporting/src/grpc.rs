//! The gRPC adapter of `cwsm.reporting.v1`: requests checked and answered from the plain-Rust
//! domain (with `events`, the event in, and `convert`, the messages, the edge that knows
//! protobuf types).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cwsm_platform::Error;
use cwsm_platform::auth::principal;
use cwsm_platform::bus::{Envelope, topics};
use cwsm_platform::grpc::{Page, timestamp};
use cwsm_platform::input::check_bytes;
use cwsm_platform::vocab::Sector;
use cwsm_proto::reporting::v1 as pb;
use cwsm_proto::reporting::v1::reporting_service_server::ReportingService;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::Reporting;
use crate::achievement::{Correction, NewAchievement, State};
use crate::convert::*;
use crate::export::FileFormat;
use crate::plan::{self, StoredPlan};
use crate::report::{self, Report};
use crate::store::{AchievementFilter, PlanFilter};
use crate::watch::WatchKey;

// ---------------------------------------------------------------------------------------------
// protobuf → domain

/// An optional sector: 0 is none, an unknown number is an error.
fn sector(field: &str, number: i32) -> Result<Option<Sector>, Error> {
    if number == 0 {
        return Ok(None);
    }
    Sector::from_number(number)
        .map(Some)
        .ok_or_else(|| Error::invalid(field, format!("unknown sector {number}")))
}

/// "YYYY-MM-DD", or `None` when empty (the plan's default: see `Reporting::as_of`).
fn as_of_date(text: &str) -> Result<Option<chrono::NaiveDate>, Error> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    report::parse_date(text)
        .map(Some)
        .ok_or_else(|| Error::invalid("as_of_date", format!("{text:?} is not a date YYYY-MM-DD")))
}

// ---------------------------------------------------------------------------------------------
// Limits of the strings in requests (characters; the plan file in bytes), checked before anything
// else: nothing unbounded is stored, searched or echoed back in an error.

pub use cwsm_platform::input::{MAX_CODE, MAX_DATE, MAX_NAME, MAX_QUERY, MAX_TEXT, MAX_TOKEN};
/// A plan file (the 2020 Xinbei plan is 17 KB).
pub const MAX_PLAN_TOML_BYTES: usize = 1024 * 1024;

use cwsm_platform::input::check_lengths as check;

// ---------------------------------------------------------------------------------------------
// The service

/// `cwsm.reporting.v1.ReportingService` over [`Reporting`].
#[derive(Clone)]
pub struct ReportingApi {
    reporting: Reporting,
}

impl ReportingApi {
    pub fn new(reporting: Reporting) -> Self {
        Self { reporting }
    }
}

#[async_trait]
impl ReportingService for ReportingApi {
    async fn load_plan(
        &self,
        request: Request<pb::LoadPlanRequest>,
    ) -> Result<Response<pb::LoadPlanResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        check(&[("request_id", &req.request_id, MAX_CODE)])?;
        check_bytes("plan_toml", &req.plan_toml, MAX_PLAN_TOML_BYTES)?;
        let stored = self
            .reporting
            .load_plan(
                &caller,
                &req.request_id,
                &req.encode_to_vec(),
                &req.plan_toml,
                req.validate_only,
            )
            .await?;
        Ok(Response::new(pb::LoadPlanResponse {
            plan: Some(plan_message(&stored)),
        }))
    }

    async fn get_plan(
        &self,
        request: Request<pb::GetPlanRequest>,
    ) -> Result<Response<pb::GetPlanResponse>, Status> {
        principal(&request)?;
        let req = request.into_inner();
        check(&[
            ("plan_id", &req.plan_id, MAX_CODE),
            ("code", &req.code, MAX_CODE),
        ])?;
        let stored = self
            .reporting
            .plan(&req.plan_id, &req.code, req.version)
            .await?;
        Ok(Response::new(pb::GetPlanResponse {
            plan: Some(plan_message(&stored)),
        }))
    }

    async fn list_plans(
        &self,
        request: Request<pb::ListPlansRequest>,
    ) -> Result<Response<pb::ListPlansResponse>, Status> {
        principal(&request)?;
        let req = request.into_inner();
        check(&[
            ("page_token", &req.page_token, MAX_TOKEN),
            ("code", &req.code, MAX_CODE),
            ("district", &req.district, MAX_NAME),
            ("query", &req.query, MAX_QUERY),
        ])?;
        let page = Page::from_request(req.page_size, &req.page_token)?;
        let filter = PlanFilter {
            code: req.code,
            district: req.district,
            year: req.year,
            all_versions: req.all_versions,
            query: req.query,
        };
        let (plans, next) = self.reporting.list_plans(&filter, &page).await?;
        Ok(Response::new(pb::ListPlansResponse {
            plans: plans.iter().map(plan_message).collect(),
            next_page_token: next,
        }))
    }

    async fn get_report(
        &self,
        request: Request<pb::GetReportRequest>,
    ) -> Result<Response<pb::GetReportResponse>, Status> {
        principal(&request)?;
        let req = request.into_inner();
        check(&[
            ("plan_code", &req.plan_code, MAX_CODE),
            ("as_of_date", &req.as_of_date, MAX_DATE),
        ])?;
        if req.plan_code.trim().is_empty() {
            return Err(Error::invalid("plan_code", "required, e.g. \"xinbei-2020\"").into());
        }
        let asked = as_of_date(&req.as_of_date)?;
        let as_of = self
            .reporting
            .as_of(&req.plan_code, req.plan_version, asked)
            .await?;
        let report = self
            .reporting
            .report(&req.plan_code, req.plan_version, as_of)
            .await?;
        Ok(Response::new(pb::GetReportResponse {
            report: Some(report_message(&report)),
        }))
    }

    async fn watch_report(
        &self,
        request: Request<pb::WatchReportRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<pb::WatchReportResponse>>, Status> {
        let who = principal(&request)?;
        // Held by the stream's task: the place frees when the watcher goes.
        let permit = self.reporting.watch_streams().acquire(&who)?;
        let req = request.into_inner();
        check(&[
            ("plan_code", &req.plan_code, MAX_CODE),
            ("as_of_date", &req.as_of_date, MAX_DATE),
        ])?;
        if req.plan_code.trim().is_empty() {
            return Err(Error::invalid("plan_code", "required, e.g. \"xinbei-2020\"").into());
        }
        // Empty means today, moving with the date.
        let fixed_date = as_of_date(&req.as_of_date)?;
        // One feed per plan, version and date computes the report once per change for every
        // watcher (see `watch`); this stream only converts and sends it.
        let mut watch = self
            .reporting
            .watch(WatchKey {
                plan_code: req.plan_code.trim().to_string(),
                version: req.plan_version,
                date: fixed_date,
            })
            .await?;
        // Room for one message: a client that reads slowly gets the latest report next, not a
        // backlog.
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            let _permit = permit;
            let Some(mut current) = watch.latest() else {
                return;
            };
            let mut sent: Option<Arc<Report>> = None;
            loop {
                if sent
                    .as_ref()
                    .is_none_or(|r| !Arc::ptr_eq(r, &current.report))
                {
                    let message = pb::WatchReportResponse {
                        report: Some(report_message(&current.report)),
                    };
                    if tx.send(Ok(message)).await.is_err() {
                        return;
                    }
                    sent = Some(current.report.clone());
                }
                tokio::select! {
                    _ = tx.closed() => return,
                    next = watch.changed() => match next {
                        Some(s) => current = s,
                        None => return,
                    },
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn record_achievement(
        &self,
        request: Request<pb::RecordAchievementRequest>,
    ) -> Result<Response<pb::RecordAchievementResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        check(&[
            ("request_id", &req.request_id, MAX_CODE),
            ("plan_code", &req.plan_code, MAX_CODE),
            ("indicator_code", &req.indicator_code, MAX_CODE),
            ("unit_name", &req.unit_name, MAX_NAME),
            ("achieved_date", &req.achieved_date, MAX_DATE),
            ("evidence", &req.evidence, MAX_TEXT),
            ("note", &req.note, MAX_TEXT),
            ("department", &req.department, MAX_NAME),
            ("town", &req.town, MAX_NAME),
        ])?;
        let encoded = req.encode_to_vec();
        let new = NewAchievement {
            plan_code: req.plan_code,
            indicator_code: req.indicator_code,
            unit_name: req.unit_name,
            achieved_date: req.achieved_date,
            evidence: req.evidence,
            value: req.value,
            note: req.note,
            department: req.department,
            town: req.town,
            sector: sector("sector", req.sector)?,
        };
        let a = self
            .reporting
            .record_achievement(&caller, &req.request_id, &encoded, new)
            .await?;
        Ok(Response::new(pb::RecordAchievementResponse {
            achievement: Some(achievement_message(&a)),
        }))
    }

    async fn list_achievements(
        &self,
        request: Request<pb::ListAchievementsRequest>,
    ) -> Result<Response<pb::ListAchievementsResponse>, Status> {
        principal(&request)?;
        let req = request.into_inner();
        check(&[
            ("page_token", &req.page_token, MAX_TOKEN),
            ("plan_code", &req.plan_code, MAX_CODE),
            ("indicator_code", &req.indicator_code, MAX_CODE),
            ("department", &req.department, MAX_NAME),
            ("town", &req.town, MAX_NAME),
            ("query", &req.query, MAX_QUERY),
        ])?;
        let page = Page::from_request(req.page_size, &req.page_token)?;
        let filter = AchievementFilter {
            plan_code: req.plan_code,
            indicator_code: req.indicator_code,
            department: req.department,
            town: req.town,
            sector: sector("sector", req.sector)?,
            include_retracted: req.include_retracted,
            query: req.query,
            state: state_filter("state", req.state)?,
        };
        let (list, next) = self.reporting.list_achievements(&filter, &page).await?;
        Ok(Response::new(pb::ListAchievementsResponse {
            achievements: list.iter().map(achievement_message).collect(),
            next_page_token: next,
        }))
    }

    async fn correct_achievement(
        &self,
        request: Request<pb::CorrectAchievementRequest>,
    ) -> Result<Response<pb::CorrectAchievementResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        check(&[
            ("request_id", &req.request_id, MAX_CODE),
            ("achievement_id", &req.achievement_id, MAX_CODE),
            ("achieved_date", &req.achieved_date, MAX_DATE),
            ("evidence", &req.evidence, MAX_TEXT),
            ("note", &req.note, MAX_TEXT),
            ("reason", &req.reason, MAX_TEXT),
        ])?;
        let encoded = req.encode_to_vec();
        let correction = Correction {
            value: req.value,
            achieved_date: req.achieved_date,
            evidence: req.evidence,
            note: req.note,
            retract: req.retract,
            reason: req.reason,
        };
        let a = self
            .reporting
            .correct_achievement(
                &caller,
                &req.request_id,
                &encoded,
                &req.achievement_id,
                req.expected_version,
                correction,
            )
            .await?;
        Ok(Response::new(pb::CorrectAchievementResponse {
            achievement: Some(achievement_message(&a)),
        }))
    }

    async fn list_counted_projects(
        &self,
        request: Request<pb::ListCountedProjectsRequest>,
    ) -> Result<Response<pb::ListCountedProjectsResponse>, Status> {
        // Projects by name with their parties: the district's administrators' drill-down, not
        // every member's (projects are read by their parties, verifier and administrators).
        let caller = principal(&request)?;
        if !caller.is_admin() {
            return Err(Error::denied("only administrators list the counted projects").into());
        }
        let req = request.into_inner();
        check(&[
            ("plan_code", &req.plan_code, MAX_CODE),
            ("indicator_code", &req.indicator_code, MAX_CODE),
            ("page_token", &req.page_token, MAX_TOKEN),
            ("town", &req.town, MAX_NAME),
        ])?;
        let page = Page::from_request(req.page_size, &req.page_token)?;
        let (facts, next) = self
            .reporting
            .counted_projects(
                &caller,
                &req.plan_code,
                &req.indicator_code,
                &req.town,
                sector("sector", req.sector)?,
                &page,
            )
            .await?;
        Ok(Response::new(pb::ListCountedProjectsResponse {
            counted_projects: facts.iter().map(counted_project).collect(),
            next_page_token: next,
        }))
    }

    async fn rebuild_counts(
        &self,
        request: Request<pb::RebuildCountsRequest>,
    ) -> Result<Response<pb::RebuildCountsResponse>, Status> {
        let caller = principal(&request)?;
        if !caller.is_admin() {
            return Err(Error::denied("only administrators may rebuild counts").into());
        }
        // The caller's own token reads the projects service's log on its behalf.
        let authorization = request.metadata().get("authorization").cloned();
        let req = request.into_inner();
        check(&[
            ("request_id", &req.request_id, MAX_CODE),
            ("plan_code", &req.plan_code, MAX_CODE),
        ])?;
        if req.plan_code.trim().is_empty() {
            return Err(Error::invalid("plan_code", "required, e.g. \"xinbei-2020\"").into());
        }
        let plan_code = req.plan_code.trim().to_string();
        // Administrators of the plan's jurisdiction only (the log they replay is the part of
        // the projects service they may read).
        let plan = self.reporting.plan("", &plan_code, 0).await?;
        caller.require_administer(
            &format!("rebuild the counts of plan {plan_code}"),
            &plan.plan.jurisdiction,
            None,
        )?;
        let before = self.reporting.counts(&plan_code).await?;
        let (url, tls) = self.reporting.projects_url().ok_or_else(|| {
            Status::failed_precondition(
                "this reporting service does not know the projects service: set projects_url",
            )
        })?;
        let channel = cwsm_platform::server::client_endpoint(&url, &tls)
            .map_err(|e| Status::failed_precondition(format!("projects_url {url:?}: {e:#}")))?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| {
                Status::unavailable(format!("cannot reach the projects service at {url}: {e}"))
            })?;
        let (events_read, last_sequence) =
            rebuild_from_log(&self.reporting, channel, authorization).await?;
        let after = self.reporting.counts(&plan_code).await?;
        let counts = |list: Vec<(String, i64)>| {
            list.into_iter()
                .map(|(indicator_code, count)| pb::IndicatorCount {
                    indicator_code,
                    count,
                })
                .collect()
        };
        tracing::info!(plan = %plan_code, events_read, last_sequence, "rebuilt counts from the projects service's milestone log");
        Ok(Response::new(pb::RebuildCountsResponse {
            counts_before: counts(before),
            counts_after: counts(after),
            events_read,
            last_sequence,
        }))
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        check(&[("page_token", &req.page_token, MAX_TOKEN)])?;
        let page = Page::from_request(req.page_size, &req.page_token)?;
        let (list, next) = self.reporting.dead_letters(&caller, &page).await?;
        Ok(Response::new(pb::ListDeadLettersResponse {
            dead_letters: list
                .into_iter()
                .map(|d| pb::DeadLetter {
                    event_id: d.event_id,
                    topic: d.topic,
                    kind: d.kind,
                    reason: d.reason,
                    payload_size: d.payload_size,
                    receive_time: Some(timestamp(d.received_at_ms)),
                })
                .collect(),
            next_page_token: next,
        }))
    }

    async fn approve_achievement(
        &self,
        request: Request<pb::ApproveAchievementRequest>,
    ) -> Result<Response<pb::ApproveAchievementResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        check(&[
            ("request_id", &req.request_id, MAX_CODE),
            ("achievement_id", &req.achievement_id, MAX_CODE),
            ("note", &req.note, MAX_TEXT),
        ])?;
        let a = self
            .reporting
            .decide_achievement(
                &caller,
                &req.request_id,
                &req.encode_to_vec(),
                &req.achievement_id,
                req.expected_version,
                State::Approved,
                &req.note,
            )
            .await?;
        Ok(Response::new(pb::ApproveAchievementResponse {
            achievement: Some(achievement_message(&a)),
        }))
    }

    async fn reject_achievement(
        &self,
        request: Request<pb::RejectAchievementRequest>,
    ) -> Result<Response<pb::RejectAchievementResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        check(&[
            ("request_id", &req.request_id, MAX_CODE),
            ("achievement_id", &req.achievement_id, MAX_CODE),
            ("reason", &req.reason, MAX_TEXT),
        ])?;
        let a = self
            .reporting
            .decide_achievement(
                &caller,
                &req.request_id,
                &req.encode_to_vec(),
                &req.achievement_id,
                req.expected_version,
                State::Rejected,
                &req.reason,
            )
            .await?;
        Ok(Response::new(pb::RejectAchievementResponse {
            achievement: Some(achievement_message(&a)),
        }))
    }

    async fn get_rollup(
        &self,
        request: Request<pb::GetRollupRequest>,
    ) -> Result<Response<pb::GetRollupResponse>, Status> {
        principal(&request)?;
        let req = request.into_inner();
        check(&[
            ("jurisdiction_code", &req.jurisdiction_code, MAX_CODE),
            ("as_of_date", &req.as_of_date, MAX_DATE),
        ])?;
        // As for a report: today, or the last day of the year asked once today is past it.
        let as_of = match as_of_date(&req.as_of_date)? {
            Some(date) => date,
            None => crate::rollup::default_as_of(req.year, crate::today()),
        };
        let rollup = self
            .reporting
            .rollup(&req.jurisdiction_code, req.year, as_of)
            .await?;
        Ok(Response::new(pb::GetRollupResponse {
            rollup: Some(rollup_message(&rollup)),
        }))
    }

    async fn upload_evidence(
        &self,
        request: Request<tonic::Streaming<pb::UploadEvidenceRequest>>,
    ) -> Result<Response<pb::UploadEvidenceResponse>, Status> {
        let caller = principal(&request)?;
        let mut stream = request.into_inner();
        let upload = cwsm_platform::documents::gather_upload(
            &mut stream,
            "plan_code",
            MAX_NAME,
            |m: pb::UploadEvidenceRequest| (m.plan_code, m.file_name, m.chunk),
        )
        .await?;
        check(&[("plan_code", &upload.owner, MAX_CODE)])?;
        let (doc, already) = self
            .reporting
            .upload_evidence(&caller, &upload.owner, &upload.file_name, &upload.content)
            .await?;
        Ok(Response::new(pb::UploadEvidenceResponse {
            document: Some(document_message(&doc)),
            already_uploaded: already,
        }))
    }

    async fn get_evidence(
        &self,
        request: Request<pb::GetEvidenceRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<pb::GetEvidenceResponse>>, Status> {
        principal(&request)?;
        let req = request.into_inner();
        check(&[("plan_code", &req.plan_code, MAX_CODE)])?;
        let sha256 = cwsm_platform::documents::sha256_field("sha256", &req.sha256)?;
        let (doc, content) = self
            .reporting
            .evidence(req.plan_code.trim(), &sha256)
            .await?;
        let messages = cwsm_platform::documents::download_messages(
            pb::GetEvidenceResponse {
                document: Some(document_message(&doc)),
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
        principal(&request)?;
        let req = request.into_inner();
        check(&[
            ("plan_code", &req.plan_code, MAX_CODE),
            ("page_token", &req.page_token, MAX_TOKEN),
        ])?;
        let page = Page::from_request(req.page_size, &req.page_token)?;
        let (rows, next) = self
            .reporting
            .evidence_list(req.plan_code.trim(), &page)
            .await?;
        Ok(Response::new(pb::ListEvidenceResponse {
            documents: rows.iter().map(document_message).collect(),
            next_page_token: next,
        }))
    }

    async fn export_report(
        &self,
        request: Request<pb::ExportReportRequest>,
    ) -> Result<Response<pb::ExportReportResponse>, Status> {
        let who = principal(&request)?;
        let lang = cwsm_platform::lang::Lang::of_metadata(request.metadata());
        let req = request.into_inner();
        check(&[
            ("plan_code", &req.plan_code, MAX_CODE),
            ("as_of_date", &req.as_of_date, MAX_DATE),
        ])?;
        if req.plan_code.trim().is_empty() {
            return Err(Error::invalid("plan_code", "required, e.g. \"xinbei-2020\"").into());
        }
        let format = match pb::ExportFormat::try_from(req.format) {
            Ok(pb::ExportFormat::Csv) => FileFormat::Csv,
            Ok(pb::ExportFormat::Xlsx | pb::ExportFormat::Unspecified) => FileFormat::Xlsx,
            Err(_) => {
                return Err(
                    Error::invalid("format", format!("unknown format {}", req.format)).into(),
                );
            }
        };
        let asked = as_of_date(&req.as_of_date)?;
        let as_of = self
            .reporting
            .as_of(&req.plan_code, req.plan_version, asked)
            .await?;
        let file = self
            .reporting
            .export(
                Some(&who),
                &req.plan_code,
                req.plan_version,
                as_of,
                format,
                lang,
            )
            .await?;
        Ok(Response::new(pb::ExportReportResponse {
            content: file.content,
            content_type: file.content_type.to_string(),
            file_name: file.file_name,
        }))
    }
}

/// Reads the projects service's whole milestone log, page by page in sequence order, and
/// applies each entry as the consumer does (exactly once). Returns the entries read and the
/// last sequence.
pub async fn rebuild_from_log(
    reporting: &Reporting,
    channel: tonic::transport::Channel,
    authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
) -> Result<(i64, i64), Status> {
    use cwsm_proto::projects::v1 as ppb;
    let mut client = ppb::projects_service_client::ProjectsServiceClient::new(channel);
    let mut token = String::new();
    let mut read = 0i64;
    let mut last = 0i64;
    loop {
        let mut call = Request::new(ppb::ListMilestonesRequest {
            after_sequence: 0,
            page_size: 500,
            page_token: token.clone(),
            project_id: String::new(),
        });
        if let Some(value) = &authorization {
            call.metadata_mut().insert("authorization", value.clone());
        }
        let page = client.list_milestones(call).await?.into_inner();
        for m in &page.milestones {
            read += 1;
            last = last.max(m.sequence);
            let envelope = Envelope {
                event_id: m.event_id.clone(),
                topic: topics::PROJECT_MILESTONES.into(),
                kind: topics::PROJECT_MILESTONE_KIND.into(),
                payload: Vec::new(),
                occurred_at_ms: 0,
                trace_parent: String::new(),
            };
            match crate::events::fact_from_event(&envelope, m, reporting.district()) {
                Ok(fact) if !fact.project_id.is_empty() => {
                    reporting.apply_fact(&fact).await?;
                }
                Ok(_) => {
                    tracing::warn!(event_id = %m.event_id, sequence = m.sequence, "milestone log entry without a project; skipped");
                }
                Err(reason) => {
                    tracing::warn!(event_id = %m.event_id, sequence = m.sequence, reason, "milestone log entry skipped");
                }
            }
        }
        if page.next_page_token.is_empty() || page.milestones.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    Ok((read, last))
}

/// Parses a plan for callers that hold TOML (e.g. a CLI `validate` command).
pub fn plan_message_from_toml(toml: &str) -> Result<pb::Plan, Error> {
    let parsed = plan::parse(toml).map_err(|e| Error::invalid("plan_toml", e.to_string()))?;
    Ok(plan_message(&StoredPlan {
        id: String::new(),
        version: 0,
        plan: parsed,
        document: toml.to_string(),
        sha256: cwsm_platform::documents::sha256_hex(toml.as_bytes()),
        loaded_by: String::new(),
        loaded_at_ms: 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Comparator;
    use crate::report::Fact;
    use cwsm_platform::vocab::{IndicatorTag, Milestone};
    use cwsm_proto::types;

    #[test]
    fn vocabulary_numbers_match_the_proto_enums_by_name() {
        for m in Milestone::ALL {
            let p = types::Milestone::try_from(m.number()).expect("milestone number");
            assert_eq!(
                p.as_str_name(),
                format!("MILESTONE_{}", m.code().to_uppercase())
            );
        }
        for s in Sector::ALL {
            let p = types::Sector::try_from(s.number()).expect("sector number");
            assert_eq!(
                p.as_str_name(),
                format!("SECTOR_{}", s.code().to_uppercase())
            );
        }
        for t in IndicatorTag::ALL {
            let p = types::IndicatorTag::try_from(t.number()).expect("tag number");
            assert_eq!(
                p.as_str_name(),
                format!("INDICATOR_TAG_{}", t.code().to_uppercase())
            );
        }
    }

    fn as_role<T>(message: T, role: cwsm_platform::auth::Role) -> Request<T> {
        let mut r = Request::new(message);
        r.extensions_mut().insert(cwsm_platform::auth::Principal {
            subject: "tester".into(),
            role,
            org: None,
            scope: cwsm_platform::auth::Scope::Platform,
        });
        r
    }

    #[tokio::test]
    async fn the_api_checks_roles_fields_and_records() {
        use cwsm_platform::auth::Role;
        let path =
            std::env::temp_dir().join(format!("cwsm-reporting-{}.db", cwsm_platform::new_id()));
        let r = Reporting::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("connect");
        r.seed_default_plan().await.expect("seed");
        let api = ReportingApi::new(r.clone());

        let load = |toml: &str, id: &str| pb::LoadPlanRequest {
            request_id: id.into(),
            plan_toml: toml.into(),
            validate_only: false,
        };
        let denied = api
            .load_plan(as_role(load(plan::DEFAULT_PLAN_TOML, "l1"), Role::Company))
            .await
            .expect_err("company");
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        let bad = api
            .load_plan(as_role(load("code = \"x\"\nyear = [\n", "l1"), Role::Admin))
            .await
            .expect_err("bad toml");
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
        assert!(
            bad.message().contains("plan_toml") && bad.message().contains("line"),
            "{}",
            bad.message()
        );
        let no_id = api
            .load_plan(as_role(load(plan::DEFAULT_PLAN_TOML, ""), Role::Admin))
            .await
            .expect_err("no request id");
        assert_eq!(no_id.code(), tonic::Code::InvalidArgument);
        let v2 = api
            .load_plan(as_role(load(plan::DEFAULT_PLAN_TOML, "l1"), Role::Admin))
            .await
            .expect("v2")
            .into_inner()
            .plan
            .expect("plan");
        assert_eq!(v2.version, 2);
        let again = api
            .load_plan(as_role(load(plan::DEFAULT_PLAN_TOML, "l1"), Role::Admin))
            .await
            .expect("replay")
            .into_inner()
            .plan
            .expect("plan");
        assert_eq!(again.id, v2.id);

        let get = |code: &str, date: &str| pb::GetReportRequest {
            plan_code: code.into(),
            plan_version: 0,
            as_of_date: date.into(),
        };
        let e = api
            .get_report(as_role(get("", ""), Role::WaterUser))
            .await
            .expect_err("no code");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let e = api
            .get_report(as_role(get("nowhere", ""), Role::WaterUser))
            .await
            .expect_err("unknown");
        assert_eq!(e.code(), tonic::Code::NotFound);
        let e = api
            .get_report(as_role(get("xinbei-2020", "2020-13-01"), Role::WaterUser))
            .await
            .expect_err("date");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);

        let record = pb::RecordAchievementRequest {
            request_id: "a1".into(),
            plan_code: "xinbei-2020".into(),
            indicator_code: "A2-COMMUNITIES".into(),
            unit_name: "Sanjing community".into(),
            achieved_date: "2020-05-10".into(),
            evidence: "notice 12".into(),
            value: 3.0,
            department: "agri".into(),
            town: "Sanjing".into(),
            sector: types::Sector::Community as i32,
            ..Default::default()
        };
        let e = api
            .record_achievement(as_role(
                pb::RecordAchievementRequest {
                    indicator_code: "A8-CONTRACT-PROJECTS".into(),
                    ..record.clone()
                },
                Role::Admin,
            ))
            .await
            .expect_err("counted");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let a = api
            .record_achievement(as_role(record, Role::Admin))
            .await
            .expect("record")
            .into_inner()
            .achievement
            .expect("achievement");
        assert_eq!(a.version, 1);
        let report = api
            .get_report(as_role(get("xinbei-2020", "2020-06-01"), Role::Company))
            .await
            .expect("report")
            .into_inner()
            .report
            .expect("report");
        assert_eq!(report.plan.as_ref().expect("summary").version, 2);
        assert_eq!(report.indicators.len(), 18);
        assert_eq!(
            report.indicators[0].indicator.as_ref().expect("g1").code,
            "G1"
        );
        let line = report
            .indicators
            .iter()
            .find(|l| {
                l.indicator
                    .as_ref()
                    .is_some_and(|i| i.code == "A2-COMMUNITIES")
            })
            .expect("line");
        assert_eq!(line.actual, 3.0);
        assert_eq!(line.status, pb::ProgressStatus::Achieved as i32);
        assert_eq!(line.by_town[0].key, "Sanjing");

        let corrected = api
            .correct_achievement(as_role(
                pb::CorrectAchievementRequest {
                    request_id: "c1".into(),
                    achievement_id: a.id.clone(),
                    expected_version: 1,
                    retract: true,
                    reason: "not yet recognized".into(),
                    ..Default::default()
                },
                Role::Admin,
            ))
            .await
            .expect("retract")
            .into_inner()
            .achievement
            .expect("achievement");
        assert!(corrected.retracted);
        assert_eq!(corrected.revisions.len(), 2);
        let report = r
            .report("xinbei-2020", 0, report::parse_date("2020-06-01").unwrap())
            .await
            .expect("report");
        let line = report
            .lines
            .iter()
            .find(|l| l.indicator.code == "A2-COMMUNITIES")
            .expect("line");
        assert_eq!(line.actual, 0.0);

        let e = api
            .rebuild_counts(as_role(
                pb::RebuildCountsRequest {
                    plan_code: "xinbei-2020".into(),
                    ..Default::default()
                },
                Role::Admin,
            ))
            .await
            .expect_err("no projects service known");
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        let e = api
            .rebuild_counts(as_role(pb::RebuildCountsRequest::default(), Role::Company))
            .await
            .expect_err("not an administrator");
        assert_eq!(e.code(), tonic::Code::PermissionDenied);

        let file = api
            .export_report(as_role(
                pb::ExportReportRequest {
                    plan_code: "xinbei-2020".into(),
                    as_of_date: "2020-06-01".into(),
                    format: pb::ExportFormat::Csv as i32,
                    ..Default::default()
                },
                Role::Admin,
            ))
            .await
            .expect("export")
            .into_inner();
        assert_eq!(file.content_type, "text/csv; charset=utf-8");
        assert_eq!(file.file_name, "xinbei-2020-v2-2020-06-01.csv");
        let text = String::from_utf8(file.content).expect("utf-8");
        assert!(text.contains("A2-COMMUNITIES"), "{text}");
        let e = api
            .export_report(as_role(
                pb::ExportReportRequest {
                    plan_code: "xinbei-2020".into(),
                    format: 9,
                    ..Default::default()
                },
                Role::Admin,
            ))
            .await
            .expect_err("format");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);

        r.db().close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[tokio::test]
    async fn watch_report_sends_at_once_then_on_change() {
        use cwsm_platform::auth::Role;
        use tokio_stream::StreamExt;
        let path =
            std::env::temp_dir().join(format!("cwsm-reporting-{}.db", cwsm_platform::new_id()));
        let r = Reporting::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("connect");
        r.seed_default_plan().await.expect("seed");
        let api = ReportingApi::new(r.clone());
        let mut stream = api
            .watch_report(as_role(
                pb::WatchReportRequest {
                    plan_code: "xinbei-2020".into(),
                    plan_version: 0,
                    as_of_date: "2020-12-31".into(),
                },
                Role::Admin,
            ))
            .await
            .expect("watch")
            .into_inner();
        let first = stream.next().await.expect("first").expect("ok");
        let a8 = |m: &pb::WatchReportResponse| {
            m.report
                .as_ref()
                .and_then(|r| {
                    r.indicators.iter().find(|l| {
                        l.indicator
                            .as_ref()
                            .is_some_and(|i| i.code == "A8-CONTRACT-PROJECTS")
                    })
                })
                .map(|l| l.actual)
                .unwrap_or(-1.0)
        };
        assert_eq!(a8(&first), 0.0);
        let fact = Fact {
            event_id: "e1".into(),
            project_id: "p1".into(),
            sequence: 1,
            milestone: Milestone::Contracted,
            occurred_at_ms: 1_598_918_400_000,
            counted_at_ms: 0,
            effective_date: crate::report::cst_date(1_598_918_400_000),
            jurisdiction: cwsm_platform::jurisdiction::Jurisdiction::default_district(),
            investment_fen: 0,
            period_id: String::new(),
            period_savings_litres: 0,
            sector: Some(Sector::Hospital),
            unit_type: String::new(),
            town: "Longhutang".into(),
            tags: vec![IndicatorTag::ContractProject],
            project_title: String::new(),
            company_id: String::new(),
            company_name: String::new(),
            water_user_credit_code: String::new(),
            water_user_name: String::new(),
        };
        assert!(r.apply_fact(&fact).await.expect("fact"));
        let second = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("in time")
            .expect("second")
            .expect("ok");
        assert_eq!(a8(&second), 1.0);
        drop(stream);
        r.db().close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    fn a8_of(m: &pb::WatchReportResponse) -> f64 {
        m.report
            .as_ref()
            .and_then(|r| {
                r.indicators.iter().find(|l| {
                    l.indicator
                        .as_ref()
                        .is_some_and(|i| i.code == "A8-CONTRACT-PROJECTS")
                })
            })
            .map(|l| l.actual)
            .unwrap_or(-1.0)
    }

    fn handover(event_id: &str, project_id: &str) -> Fact {
        Fact {
            event_id: event_id.into(),
            project_id: project_id.into(),
            sequence: 1,
            milestone: Milestone::Contracted,
            // 2020-09-01T00:00:00Z
            occurred_at_ms: 1_598_918_400_000,
            counted_at_ms: 0,
            effective_date: crate::report::cst_date(1_598_918_400_000),
            jurisdiction: cwsm_platform::jurisdiction::Jurisdiction::default_district(),
            investment_fen: 0,
            period_id: String::new(),
            period_savings_litres: 0,
            sector: Some(Sector::Hospital),
            unit_type: String::new(),
            town: "Longhutang".into(),
            tags: vec![IndicatorTag::ContractProject],
            project_title: String::new(),
            company_id: String::new(),
            company_name: String::new(),
            water_user_credit_code: String::new(),
            water_user_name: String::new(),
        }
    }

    /// Hundreds of WatchReport streams of one plan and date, over loopback gRPC: one change is
    /// computed once (a small constant), not once per watcher, and every watcher receives it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_change_is_computed_once_for_every_watcher() {
        use cwsm_platform::auth::{AuthInterceptor, Keys, Role};
        use cwsm_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
        use tokio_stream::StreamExt;
        const WATCHERS: usize = 600;
        const CONNECTIONS: usize = 6;
        // A guard against a hang, not a speed requirement.
        const GUARD: Duration = Duration::from_secs(120);

        let path =
            std::env::temp_dir().join(format!("cwsm-reporting-{}.db", cwsm_platform::new_id()));
        let r = Reporting::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("connect");
        r.seed_default_plan().await.expect("seed");
        let keys = std::sync::Arc::new(Keys::from_secret(&[7u8; 32]).expect("keys"));
        // One caller per watcher: a caller may hold only a few WatchReport streams.
        let token = |i: usize| {
            keys.issue(
                &format!("watcher-{i}"),
                Role::Admin,
                None,
                Duration::from_secs(600),
            )
            .expect("token")
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .max_concurrent_streams(Some(1024))
                .add_service(r.grpc_service(AuthInterceptor::new(keys.clone())))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    stop.clone().cancelled_owned(),
                ),
        );
        let mut channels = Vec::new();
        for _ in 0..CONNECTIONS {
            channels.push(
                tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                    .expect("endpoint")
                    .connect()
                    .await
                    .expect("connect"),
            );
        }
        let mut streams = Vec::with_capacity(WATCHERS);
        for i in 0..WATCHERS {
            let mut client = ReportingServiceClient::new(channels[i % CONNECTIONS].clone());
            let mut request = Request::new(pb::WatchReportRequest {
                plan_code: "xinbei-2020".into(),
                plan_version: 0,
                as_of_date: "2020-12-31".into(),
            });
            let authorization: tonic::metadata::MetadataValue<_> =
                format!("Bearer {}", token(i)).parse().expect("metadata");
            request
                .metadata_mut()
                .insert("authorization", authorization);
            streams.push(
                client
                    .watch_report(request)
                    .await
                    .expect("watch")
                    .into_inner(),
            );
        }
        for s in &mut streams {
            let first = tokio::time::timeout(GUARD, s.next())
                .await
                .expect("first report")
                .expect("open")
                .expect("ok");
            assert_eq!(a8_of(&first), 0.0);
        }
        let opening = r.report_computations();

        let before = r.report_computations();
        assert!(r.apply_fact(&handover("e1", "p1")).await.expect("fact"));
        for s in &mut streams {
            let next = tokio::time::timeout(GUARD, s.next())
                .await
                .expect("the change")
                .expect("open")
                .expect("ok");
            assert_eq!(a8_of(&next), 1.0);
        }
        let per_change = r.report_computations() - before;
        eprintln!(
            "{WATCHERS} watchers: {opening} computations to open them, {per_change} for one change"
        );
        assert!(
            per_change <= 2,
            "one change was computed {per_change} times for {WATCHERS} watchers"
        );
        assert!(
            opening <= 2,
            "{WATCHERS} watchers of one report took {opening} computations to open"
        );

        assert_eq!(r.live_feeds(), 1, "one feed for one plan and date");
        // The feed ends with its last watcher (the server notices each stream's reset).
        drop(streams);
        let mut left = r.live_feeds();
        for _ in 0..400 {
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            left = r.live_feeds();
        }
        assert_eq!(left, 0, "the feed outlived its watchers");
        stop.cancel();
        let _ = server.await;
        r.db().close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[test]
    fn comparators_match_the_proto_enum_by_name() {
        for c in Comparator::ALL {
            assert_eq!(
                comparator(*c).as_str_name(),
                format!("COMPARATOR_{}", c.code().to_uppercase())
            );
        }
    }

    #[test]
    fn the_seed_plan_as_a_message() {
        let p = plan_message_from_toml(plan::DEFAULT_PLAN_TOML).expect("plan");
        assert_eq!(p.indicators.len(), 12);
        assert_eq!(p.goals.len(), 6);
        assert_eq!(p.source_sha256.len(), 64);
        let a7 = p
            .indicators
            .iter()
            .find(|i| i.code == "A7-TECH-RETROFITS")
            .expect("a7");
        let rule = a7.counting_rule.as_ref().expect("rule");
        assert_eq!(rule.milestone, types::Milestone::Accepted as i32);
        assert_eq!(
            rule.sectors,
            vec![types::Sector::IndustrialEnterprise as i32]
        );
        assert_eq!(a7.kind, pb::IndicatorKind::CountedAndRecorded as i32);
        let e = plan_message_from_toml("code = \"x\"\ntitle = 1\nyear = 2020\n").expect_err("bad");
        let status = Status::from(e);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().contains("plan_toml") && status.message().contains("line 2"),
            "{}",
            status.message()
        );
    }
}
