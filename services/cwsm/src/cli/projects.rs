//! `cwsm projects …`: contract projects, their lifecycle, meters and readings, measured
//! savings, periods and settlements; and `cwsm projects bench`, the ingestion and M&V
//! benchmark.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use cwsm_platform::vocab::ContractModel;
use cwsm_projects::settle::cubic_metres;
use cwsm_proto::projects::v1 as ppb;
use tokio_stream::StreamExt;

use super::{
    Clients, Connection, Format, Output, Paging, api_json, api_json_list, cst, money, more,
    name_of, request_id, stage_name, stages, word,
};

#[derive(Args)]
pub struct ProjectsArgs {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub command: ProjectsCommand,
}

#[derive(Subcommand)]
pub enum ProjectsCommand {
    /// List projects, filtered by stage.
    List {
        /// Only projects at this stage.
        #[arg(long, default_value = "", hide_default_value = true, value_parser = stages())]
        stage: String,
        /// Only projects whose title, company or water user has this text.
        #[arg(long, default_value = "", hide_default_value = true)]
        query: String,
        #[command(flatten)]
        page: Paging,
    },
    /// Move a project to a stage (implementing, commissioned, accepted, operating, handed_over, …).
    Move {
        project_id: String,
        /// The stage it enters.
        #[arg(value_parser = stages())]
        stage: String,
        #[arg(long, default_value = "", hide_default_value = true)]
        reason: String,
        /// Evidence, e.g. the post-installation verification report (required for accepted,
        /// and for a date before today).
        #[arg(long, default_value = "", hide_default_value = true)]
        evidence: String,
        /// The day the change took effect, YYYY-MM-DD (China Standard Time); today if not
        /// given. Not in the future, not before the project's earlier milestones.
        #[arg(long, default_value = "", hide_default_value = true)]
        effective_date: String,
    },
    /// Assign the verifier body (its credit code) that verifies a project (an administrator;
    /// neither party may be it).
    AssignVerifier {
        project_id: String,
        verifier_org: String,
    },
    /// Verifier proposals: a party proposes a verifier body, an administrator decides.
    #[command(subcommand)]
    Verifier(VerifierCommand),
    /// Set the baseline period and the reporting period length (while contracted).
    Baseline {
        project_id: String,
        /// First day, YYYY-MM-DD.
        #[arg(long)]
        start: String,
        /// Last day, YYYY-MM-DD (inclusive).
        #[arg(long)]
        end: String,
        /// Months per reporting period.
        #[arg(long, default_value_t = 1)]
        months: i32,
    },
    /// A project's meters.
    #[command(subcommand)]
    Meters(MetersCommand),
    /// Meter readings: import from CSV or xlsx, list raw or by day or month, corrections.
    #[command(subcommand)]
    Readings(ReadingsCommand),
    /// Record daily values of the M&V plan's drivers from a CSV or xlsx file: a header row
    /// `date,<driver>,<driver>…` (each column recorded as the driver its header names), or no
    /// header and two columns (date YYYY-MM-DD, value) with --driver.
    Drivers {
        project_id: String,
        file: PathBuf,
        /// Only this driver's column (as the M&V plan names it, e.g. occupancy); a file without
        /// a header row needs it.
        #[arg(long)]
        driver: Option<String>,
    },
    /// The measured savings of a project: the baseline fit, a table per period and a chart.
    Savings {
        project_id: String,
        /// Also draw the chart as an SVG file.
        #[arg(long)]
        svg: Option<PathBuf>,
    },
    /// Reporting periods: submit, verify, dispute, resolve, settle.
    #[command(subcommand)]
    Periods(PeriodsCommand),
    /// Non-routine adjustments to the baseline: document one (a party), approve or reject it
    /// (the assigned verifier), list them.
    #[command(subcommand)]
    Adjustments(AdjustmentsCommand),
    /// Evidence documents (PDF, PNG, JPEG, Office; at most 16 MiB): upload one, download one,
    /// list them. Evidence fields cite a document as sha256:<hex>.
    #[command(subcommand)]
    Evidence(EvidenceCommand),
    /// A project's settlements and their statements.
    Settlements { project_id: String },
    /// Benchmark: readings ingested per second through IngestReadings, and the M&V time for
    /// 3 years of hourly data. Starts its own projects service (SQLite in a temporary folder,
    /// and PostgreSQL in the scratch schema bench_projects when --database-url is given).
    Bench {
        /// Readings to ingest.
        #[arg(long, default_value_t = 1_000_000)]
        readings: i64,
        /// Readings per stream message.
        #[arg(long, default_value_t = 5_000)]
        batch: usize,
        /// postgres://… to bench PostgreSQL as well.
        #[arg(long)]
        database_url: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum MetersCommand {
    /// Register a meter on a project.
    Create {
        project_id: String,
        #[arg(long)]
        name: String,
        /// The whole site's meter, or a sub-meter of part of it.
        #[arg(long, default_value = "whole_site", value_parser = ["whole_site", "sub_meter"])]
        kind: String,
        /// Seconds between readings (86400 daily, 3600 hourly, 900 quarter-hourly).
        #[arg(long, default_value_t = 86_400)]
        interval: i32,
        #[arg(long, default_value = "", hide_default_value = true)]
        site: String,
        #[arg(long, default_value = "", hide_default_value = true)]
        serial: String,
        /// Digits of the register in m³ (a 5-digit register rolls over at 100,000 m³): a
        /// register that goes back is then a rollover when the water fits the time.
        #[arg(long)]
        register_digits: Option<u32>,
    },
    List {
        project_id: String,
    },
}

#[derive(Subcommand)]
pub enum ReadingsCommand {
    /// Import readings from a CSV or xlsx file (columns: meter_id, timestamp, value_litres or
    /// value_m3, estimated; meter_id may be left out with --meter; a header row is optional).
    /// A timestamp is RFC 3339, or YYYY-MM-DD HH:MM[:SS] in China Standard Time.
    Import {
        file: PathBuf,
        /// The meter of every row (the file then has no meter_id column).
        #[arg(long)]
        meter: Option<String>,
        /// What each interval-use timestamp marks: `end` (the default: 2024-01-02 00:00 is the
        /// use of 2024-01-01) or `start` (2024-01-01 00:00 is that day's use, as most meter
        /// systems export). A file that looks stamped at starts is refused until this is given.
        #[arg(long, value_parser = ["end", "start"])]
        timestamps: Option<String>,
        /// The unit of a file without a header row: litres (whole) or m3 (up to three
        /// decimals); a header's value_litres or value_m3 says it.
        #[arg(long, value_parser = ["litres", "m3"], default_value = "litres")]
        unit: String,
        /// Values are the meter's cumulative register, not use per interval.
        #[arg(long)]
        register: bool,
        /// Readings per stream message.
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
    },
    /// A meter's use, raw or by day or month.
    List {
        meter_id: String,
        /// raw, day or month.
        #[arg(long, default_value = "day")]
        by: String,
        /// Points to show.
        #[arg(long, default_value_t = 100)]
        limit: i32,
    },
    /// Propose a correction of the reading of METER_ID at TIME (as stored: the end of its
    /// interval; RFC 3339 or YYYY-MM-DD HH:MM in China Standard Time): --use LITRES replaces
    /// its use, --exclude leaves it out, --keep uses a flagged reading as read.
    Correct {
        meter_id: String,
        time: String,
        #[arg(long = "use", allow_hyphen_values = true, conflicts_with_all = ["exclude", "keep"])]
        use_litres: Option<i64>,
        #[arg(long, conflicts_with = "keep")]
        exclude: bool,
        #[arg(long)]
        keep: bool,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        evidence: String,
    },
    /// A project's reading corrections, every status.
    Corrections { project_id: String },
    /// Accept or reject a proposed correction (the project's assigned verifier).
    Decide {
        correction_id: String,
        #[arg(long, conflicts_with = "reject")]
        accept: bool,
        #[arg(long)]
        reject: bool,
        /// Required to reject.
        #[arg(long, default_value = "", hide_default_value = true)]
        note: String,
    },
}

fn correction_rows(list: &[ppb::ReadingCorrection]) -> Output {
    let name = |n: &str, prefix: &str| n.trim_start_matches(prefix).to_lowercase();
    Output {
        headers: vec![
            "id",
            "meter",
            "time (CST)",
            "action",
            "use_l",
            "was_l",
            "status",
            "reason",
            "decision",
        ],
        rows: list
            .iter()
            .map(|c| {
                vec![
                    c.id.clone(),
                    c.meter_id.clone(),
                    cst(c.read_time.as_ref().map(cwsm_platform::grpc::millis)),
                    ppb::CorrectionAction::try_from(c.action)
                        .map(|a| name(a.as_str_name(), "CORRECTION_ACTION_"))
                        .unwrap_or_default(),
                    c.corrected_use_litres.to_string(),
                    c.original_use_litres.to_string(),
                    ppb::CorrectionStatus::try_from(c.status)
                        .map(|a| name(a.as_str_name(), "CORRECTION_STATUS_"))
                        .unwrap_or_default(),
                    c.reason.clone(),
                    c.decision_note.clone(),
                ]
            })
            .collect(),
    }
}

#[derive(Subcommand)]
pub enum EvidenceCommand {
    Upload {
        project_id: String,
        file: PathBuf,
    },
    /// Save the document to --out (default: its file name).
    Get {
        project_id: String,
        sha256: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    List {
        project_id: String,
    },
}

fn document_rows(list: &[ppb::EvidenceDocument]) -> Output {
    super::evidence::document_rows(list.iter().map(|d| {
        [
            d.sha256.clone(),
            d.file_name.clone(),
            d.media_type.clone(),
            d.size_bytes.to_string(),
            d.uploaded_by_org.clone(),
        ]
    }))
}

async fn evidence(c: &Clients, cmd: EvidenceCommand, format: Format) -> anyhow::Result<()> {
    match cmd {
        EvidenceCommand::Upload { project_id, file } => {
            let messages = super::evidence::upload_messages(
                &file,
                &project_id,
                |project_id, file_name, chunk| ppb::UploadEvidenceRequest {
                    project_id,
                    file_name,
                    chunk,
                },
            )?;
            let reply = c
                .projects()
                .upload_evidence(tokio_stream::iter(messages))
                .await?
                .into_inner();
            if reply.already_uploaded {
                eprintln!("the project had this document already");
            }
            document_rows(&reply.document.into_iter().collect::<Vec<_>>()).print(format);
        }
        EvidenceCommand::Get {
            project_id,
            sha256,
            out,
        } => {
            let stream = c
                .projects()
                .get_evidence(ppb::GetEvidenceRequest { project_id, sha256 })
                .await?
                .into_inner();
            let (record, bytes) =
                super::evidence::collect_download(stream, |m| (m.document, m.chunk)).await?;
            super::evidence::save_download(out, &record.file_name, &record.sha256, &bytes)?;
        }
        EvidenceCommand::List { project_id } => {
            let documents = every!(
                c.projects(),
                list_evidence,
                ppb::ListEvidenceRequest {
                    project_id: project_id.clone(),
                    ..Default::default()
                },
                documents
            )
            .await?;
            document_rows(&documents).print(format);
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum AdjustmentsCommand {
    /// Document a non-routine event's effect on the baseline use, litres over START..=END
    /// (pro-rated by days; no --end: to the end of the contract).
    Create {
        project_id: String,
        #[arg(long)]
        start: String,
        #[arg(long, default_value = "", hide_default_value = true)]
        end: String,
        /// Litres added to the adjusted baseline (negative when the event lowered use).
        #[arg(long, allow_hyphen_values = true)]
        litres: i64,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        evidence: String,
    },
    /// Approve (or --reject) a proposed adjustment (the project's assigned verifier).
    Decide {
        adjustment_id: String,
        #[arg(long)]
        reject: bool,
        /// Required to reject.
        #[arg(long, default_value = "", hide_default_value = true)]
        note: String,
    },
    List {
        project_id: String,
    },
}

fn adjustment_rows(list: &[ppb::NonRoutineAdjustment]) -> Output {
    Output {
        headers: vec![
            "id",
            "from",
            "to",
            "litres",
            "status",
            "reason",
            "evidence",
            "decided by",
        ],
        rows: list
            .iter()
            .map(|a| {
                vec![
                    a.id.clone(),
                    a.start_date.clone(),
                    a.end_date.clone(),
                    a.litres.to_string(),
                    ppb::AdjustmentStatus::try_from(a.status)
                        .map(|s| {
                            s.as_str_name()
                                .trim_start_matches("ADJUSTMENT_STATUS_")
                                .to_lowercase()
                        })
                        .map(|code| super::text::state(&code))
                        .unwrap_or_default(),
                    a.reason.clone(),
                    a.evidence.clone(),
                    a.decided_by_org.clone(),
                ]
            })
            .collect(),
    }
}

async fn adjustments(c: &Clients, cmd: AdjustmentsCommand, format: Format) -> anyhow::Result<()> {
    let list = match cmd {
        AdjustmentsCommand::Create {
            project_id,
            start,
            end,
            litres,
            reason,
            evidence,
        } => c
            .projects()
            .create_non_routine_adjustment(ppb::CreateNonRoutineAdjustmentRequest {
                request_id: request_id(),
                adjustment: Some(ppb::NonRoutineAdjustment {
                    project_id,
                    start_date: start,
                    end_date: end,
                    litres,
                    reason,
                    evidence,
                    ..Default::default()
                }),
            })
            .await?
            .into_inner()
            .adjustment
            .into_iter()
            .collect(),
        AdjustmentsCommand::Decide {
            adjustment_id,
            reject,
            note,
        } => c
            .projects()
            .decide_non_routine_adjustment(ppb::DecideNonRoutineAdjustmentRequest {
                request_id: request_id(),
                adjustment_id,
                expected_version: 0,
                approve: !reject,
                note,
            })
            .await?
            .into_inner()
            .adjustment
            .into_iter()
            .collect(),
        AdjustmentsCommand::List { project_id } => {
            every!(
                c.projects(),
                list_non_routine_adjustments,
                ppb::ListNonRoutineAdjustmentsRequest {
                    project_id: project_id.clone(),
                    ..Default::default()
                },
                adjustments
            )
            .await?
        }
    };
    adjustment_rows(&list).print(format);
    Ok(())
}

#[derive(Subcommand)]
pub enum PeriodsCommand {
    /// Submit the period starting START_DATE (the company).
    Submit {
        project_id: String,
        start_date: String,
        #[arg(long, default_value = "", hide_default_value = true)]
        note: String,
    },
    /// Verify a submitted period (the project's assigned verifier).
    Verify {
        period_id: String,
        #[arg(long, default_value = "", hide_default_value = true)]
        note: String,
    },
    /// Dispute a period (the company or the water user; the assigned verifier resolves it).
    Dispute {
        period_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Resolve a dispute with an agreed adjustment of the savings (the assigned verifier or an
    /// administrator, not the dispute's raiser).
    Resolve {
        period_id: String,
        /// Litres added to the savings (negative lowers them).
        #[arg(long, allow_hyphen_values = true, default_value_t = 0)]
        adjustment: i64,
        #[arg(long)]
        note: String,
    },
    /// Settle a verified period by the contract model.
    Settle { period_id: String },
    /// Save a period's verification report (the one archived at verification, else drawn
    /// now) as HTML, or xlsx with --xlsx, to --out (default verification-PERIOD_ID.html|xlsx);
    /// with --year START instead of a period, the contract year's report of PROJECT_ID.
    Report {
        /// The period, or with --year the project.
        id: String,
        /// The contract year's first day (as `savings` lists the contract years).
        #[arg(long)]
        year: Option<String>,
        #[arg(long)]
        xlsx: bool,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Let a failing measurement check of the period starting START_DATE stand (the
    /// project's assigned verifier, before submission): baseline_g14 or savings_uncertainty.
    Waive {
        project_id: String,
        start_date: String,
        /// The check: the baseline's fit (ASHRAE Guideline 14) or the savings' uncertainty.
        #[arg(long, value_parser = ["baseline_g14", "savings_uncertainty"])]
        check: String,
        /// Why the failing check may stand (the report shows it).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
pub enum VerifierCommand {
    /// Propose a verifier body (its credit code) for a project (its company or water user;
    /// the body must be independent of both).
    Propose {
        project_id: String,
        verifier_org: String,
        /// Why this body, e.g. the contract clause that names it.
        #[arg(long, default_value = "", hide_default_value = true)]
        note: String,
    },
    /// A project's verifier proposals, oldest first.
    Proposals { project_id: String },
    /// Approve or decline an open proposal (an administrator); approval assigns the body.
    Decide {
        proposal_id: String,
        /// approve or decline.
        #[arg(value_parser = ["approve", "decline"])]
        decision: String,
        /// Why (required to decline).
        #[arg(long, default_value = "", hide_default_value = true)]
        reason: String,
    },
}

pub async fn projects(args: ProjectsArgs) -> anyhow::Result<()> {
    let ProjectsArgs { conn, command } = args;
    if let ProjectsCommand::Bench {
        readings,
        batch,
        database_url,
    } = command
    {
        return crate::bench::readings::run(readings, batch, database_url.as_deref()).await;
    }
    let c = Clients::connect(&conn).await?;
    match command {
        ProjectsCommand::List { stage, query, page } => {
            let stage_number = if stage.is_empty() {
                0
            } else {
                ppb::ProjectStage::from_str_name(&format!("PROJECT_STAGE_{}", stage.to_uppercase()))
                    .map(|s| s as i32)
                    .ok_or_else(|| anyhow::anyhow!("unknown stage {stage:?}"))?
            };
            let (projects, next) = pages!(
                page,
                c.projects(),
                list_projects,
                ppb::ListProjectsRequest {
                    stage: stage_number,
                    query: query.clone(),
                    ..Default::default()
                },
                projects
            )
            .await?;
            let rows = projects
                .iter()
                .map(|p| {
                    vec![
                        p.id.clone(),
                        p.title.clone(),
                        p.company
                            .as_ref()
                            .map(|x| x.name.clone())
                            .unwrap_or_default(),
                        p.water_user
                            .as_ref()
                            .map(|x| x.name.clone())
                            .unwrap_or_default(),
                        name_of(
                            p.contract_model,
                            ContractModel::from_number,
                            ContractModel::code,
                            ContractModel::name,
                        ),
                        stage_name(p.stage),
                    ]
                })
                .collect();
            Output {
                headers: vec!["id", "title", "company", "water_user", "model", "stage"],
                rows,
            }
            .print_or(conn.format(), || api_json_list(&projects))?;
            more(&next, conn.format());
        }
        ProjectsCommand::Move {
            project_id,
            stage,
            reason,
            evidence,
            effective_date,
        } => {
            let to = ppb::ProjectStage::from_str_name(&format!(
                "PROJECT_STAGE_{}",
                stage.to_uppercase()
            ))
            .ok_or_else(|| anyhow::anyhow!("unknown stage {stage:?}"))?;
            let reply = c
                .projects()
                .transition_project(ppb::TransitionProjectRequest {
                    request_id: request_id(),
                    project_id,
                    to_stage: to as i32,
                    reason,
                    expected_version: 0,
                    evidence,
                    effective_date,
                })
                .await?
                .into_inner();
            let p = reply.project.unwrap_or_default();
            let effective = reply.transition.unwrap_or_default().effective_date;
            Output {
                headers: vec!["id", "title", "stage", "effective", "version"],
                rows: vec![vec![
                    p.id,
                    p.title,
                    stage_name(p.stage),
                    effective,
                    p.version.to_string(),
                ]],
            }
            .print(conn.format());
        }
        ProjectsCommand::AssignVerifier {
            project_id,
            verifier_org,
        } => {
            let p = c
                .projects()
                .assign_verifier(ppb::AssignVerifierRequest {
                    request_id: request_id(),
                    project_id,
                    verifier_org,
                    expected_version: 0,
                })
                .await?
                .into_inner()
                .project
                .unwrap_or_default();
            Output {
                headers: vec!["id", "title", "verifier_org", "version"],
                rows: vec![vec![p.id, p.title, p.verifier_org, p.version.to_string()]],
            }
            .print(conn.format());
        }
        ProjectsCommand::Baseline {
            project_id,
            start,
            end,
            months,
        } => {
            let mut p = c
                .projects()
                .get_project(ppb::GetProjectRequest {
                    project_id: project_id.clone(),
                })
                .await?
                .into_inner()
                .project
                .ok_or_else(|| anyhow::anyhow!("no project {project_id}"))?;
            p.baseline_start_date = start;
            p.baseline_end_date = end;
            p.stage_history.clear();
            let mut plan = p.mv_plan.take().unwrap_or_default();
            plan.reporting_period_months = months;
            p.mv_plan = Some(plan);
            let p = c
                .projects()
                .update_project(ppb::UpdateProjectRequest {
                    request_id: request_id(),
                    project: Some(p),
                    expected_version: 0,
                })
                .await?
                .into_inner()
                .project
                .unwrap_or_default();
            Output {
                headers: vec!["id", "baseline_start", "baseline_end", "period_months"],
                rows: vec![vec![
                    p.id,
                    p.baseline_start_date,
                    p.baseline_end_date,
                    p.mv_plan
                        .map(|m| m.reporting_period_months.to_string())
                        .unwrap_or_default(),
                ]],
            }
            .print(conn.format());
        }
        ProjectsCommand::Drivers {
            project_id,
            file,
            driver,
        } => {
            let rows = read_rows(&file)?;
            let drivers = crate::import::driver_values(&rows, driver.as_deref())
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let mut table = Vec::new();
            for (driver, values) in drivers {
                let sent = values.len();
                let reply = c
                    .projects()
                    .record_driver_values(ppb::RecordDriverValuesRequest {
                        project_id: project_id.clone(),
                        driver: driver.clone(),
                        values: values
                            .into_iter()
                            .map(|(date, value)| ppb::DriverValue { date, value })
                            .collect(),
                    })
                    .await
                    .with_context(|| format!("driver {driver}"))?
                    .into_inner();
                table.push(vec![driver, sent.to_string(), reply.recorded.to_string()]);
            }
            Output {
                headers: vec!["driver", "sent", "recorded"],
                rows: table,
            }
            .print(conn.format());
        }
        ProjectsCommand::Meters(cmd) => meters(&c, cmd, conn.format()).await?,
        ProjectsCommand::Readings(cmd) => readings(&c, cmd, conn.format()).await?,
        ProjectsCommand::Savings { project_id, svg } => {
            savings(&c, &project_id, svg.as_deref(), conn.format()).await?
        }
        ProjectsCommand::Periods(cmd) => periods(&c, cmd, conn.format()).await?,
        ProjectsCommand::Adjustments(cmd) => adjustments(&c, cmd, conn.format()).await?,
        ProjectsCommand::Evidence(cmd) => evidence(&c, cmd, conn.format()).await?,
        ProjectsCommand::Verifier(cmd) => verifier(&c, cmd, conn.format()).await?,
        ProjectsCommand::Settlements { project_id } => {
            settlements(&c, &project_id, conn.format()).await?
        }
        ProjectsCommand::Bench { .. } => {}
    }
    Ok(())
}

fn meter_kind(code: &str) -> anyhow::Result<ppb::MeterKind> {
    match code {
        "whole_site" => Ok(ppb::MeterKind::WholeSite),
        "sub_meter" => Ok(ppb::MeterKind::SubMeter),
        other => anyhow::bail!("unknown meter kind {other:?}: whole_site or sub_meter"),
    }
}

fn meter_row(m: &ppb::Meter) -> Vec<String> {
    vec![
        m.id.clone(),
        m.name.clone(),
        m.site.clone(),
        ppb::MeterKind::try_from(m.kind)
            .map(|k| {
                k.as_str_name()
                    .trim_start_matches("METER_KIND_")
                    .to_lowercase()
            })
            .unwrap_or_default(),
        m.interval_seconds.to_string(),
    ]
}

/// The project `project_id` once the projects service has it: an accepted proposal's project
/// is started from the acceptance event, a moment after the acceptance answers.
pub(crate) async fn wait_for_project(
    c: &Clients,
    project_id: &str,
) -> anyhow::Result<ppb::Project> {
    const WAIT: std::time::Duration = std::time::Duration::from_secs(30);
    let started = std::time::Instant::now();
    let mut client = c.projects();
    loop {
        match client
            .get_project(ppb::GetProjectRequest {
                project_id: project_id.to_string(),
            })
            .await
        {
            Ok(reply) => {
                return reply
                    .into_inner()
                    .project
                    .with_context(|| format!("project {project_id}: an empty reply"));
            }
            Err(status) if status.code() == tonic::Code::NotFound && started.elapsed() < WAIT => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(status) if status.code() == tonic::Code::NotFound => anyhow::bail!(
                "the proposal is accepted, but project {project_id} did not start within {} s: \
                 see `cwsm projects list` in a while, or the projects service's log",
                WAIT.as_secs()
            ),
            Err(status) => return Err(status.into()),
        }
    }
}

async fn meters(c: &Clients, cmd: MetersCommand, format: Format) -> anyhow::Result<()> {
    let headers = vec!["id", "name", "site", "kind", "interval_s"];
    match cmd {
        MetersCommand::Create {
            project_id,
            name,
            kind,
            interval,
            site,
            serial,
            register_digits,
        } => {
            // 10^digits m³ in litres; beyond 10 digits no register (nor i64 litres) holds it.
            let capacity = match register_digits {
                None => 0,
                Some(d @ 1..=10) => 10i64.pow(d + 3),
                Some(d) => anyhow::bail!("--register-digits {d}: a register has 1 to 10 digits"),
            };
            let m = c
                .projects()
                .create_meter(ppb::CreateMeterRequest {
                    request_id: request_id(),
                    meter: Some(ppb::Meter {
                        project_id,
                        name,
                        kind: meter_kind(&kind)? as i32,
                        interval_seconds: interval,
                        site,
                        serial_number: serial,
                        register_capacity_litres: capacity,
                        ..Default::default()
                    }),
                })
                .await?
                .into_inner()
                .meter
                .unwrap_or_default();
            Output {
                headers,
                rows: vec![meter_row(&m)],
            }
            .print_or(format, || api_json(&m))?;
        }
        MetersCommand::List { project_id } => {
            let meters = every!(
                c.projects(),
                list_meters,
                ppb::ListMetersRequest {
                    project_id: project_id.clone(),
                    ..Default::default()
                },
                meters
            )
            .await?;
            Output {
                headers,
                rows: meters.iter().map(meter_row).collect(),
            }
            .print_or(format, || api_json_list(&meters))?;
        }
    }
    Ok(())
}

/// Reads "date,value" lines (a header row is skipped).
/// The rows of a CSV or xlsx file ([`crate::import::read_table`]).
fn read_rows(file: &std::path::Path) -> anyhow::Result<Vec<crate::import::TableRow>> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    crate::import::read_table(&file.to_string_lossy(), &bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
}

/// Checks the timestamps convention of `rows` against the one asked (`None`: the default,
/// interval ends): a file that looks stamped at interval starts is refused unless asked for
/// explicitly; one that looks otherwise than asked is warned of.
fn check_timestamps(
    rows: &[crate::import::FileReading],
    asked: Option<&str>,
) -> anyhow::Result<cwsm_projects::metering::TimestampsMark> {
    use cwsm_projects::metering::{TimestampsMark, timestamps_warning};
    let mark = match asked {
        Some("start") => TimestampsMark::Start,
        _ => TimestampsMark::End,
    };
    for (meter, looks, first, interval) in crate::import::timestamp_conventions(rows) {
        let last = rows
            .iter()
            .filter(|r| r.meter_id == meter)
            .map(|r| r.at_ms)
            .max()
            .unwrap_or(first);
        let Some(warning) = timestamps_warning(&meter, first, last, interval, mark) else {
            continue;
        };
        if asked.is_none() && looks == TimestampsMark::Start {
            anyhow::bail!(
                "{warning}. Nothing was sent: give --timestamps start if they mark the start of each interval, or --timestamps end to take them as ends"
            );
        }
        eprintln!("warning: {warning}");
    }
    Ok(mark)
}

async fn readings(c: &Clients, cmd: ReadingsCommand, format: Format) -> anyhow::Result<()> {
    match cmd {
        ReadingsCommand::Import {
            file,
            meter,
            timestamps,
            unit,
            register,
            batch,
        } => {
            let unit = match unit.as_str() {
                "m3" => crate::import::Unit::CubicMetres,
                _ => crate::import::Unit::Litres,
            };
            let rows = crate::import::readings(&read_rows(&file)?, meter.as_deref(), unit)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let (kind, mark) = if register {
                if timestamps.as_deref() == Some("start") {
                    anyhow::bail!(
                        "a register is read at an instant: --timestamps start applies to interval use"
                    );
                }
                (
                    ppb::ReadingValueKind::CumulativeRegister,
                    ppb::ReadingTimestamps::IntervalEnd,
                )
            } else {
                let mark = match check_timestamps(&rows, timestamps.as_deref())? {
                    cwsm_projects::metering::TimestampsMark::Start => {
                        ppb::ReadingTimestamps::IntervalStart
                    }
                    cwsm_projects::metering::TimestampsMark::End => {
                        ppb::ReadingTimestamps::IntervalEnd
                    }
                };
                (ppb::ReadingValueKind::IntervalUse, mark)
            };
            // One message per run of rows of the same meter, at most `batch` readings.
            let mut messages: Vec<ppb::IngestReadingsRequest> = Vec::new();
            for row in rows {
                let reading = ppb::Reading {
                    read_time: Some(cwsm_platform::grpc::timestamp(row.at_ms)),
                    value_litres: row.value_litres,
                    estimated: row.estimated,
                };
                match messages.last_mut() {
                    Some(m) if m.meter_id == row.meter_id && m.readings.len() < batch.max(1) => {
                        m.readings.push(reading)
                    }
                    _ => messages.push(ppb::IngestReadingsRequest {
                        meter_id: row.meter_id,
                        value_kind: kind as i32,
                        readings: vec![reading],
                        timestamps: mark as i32,
                    }),
                }
            }
            let total: usize = messages.iter().map(|m| m.readings.len()).sum();
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} readings, {per_sec}, {eta} left",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let progress = bar.clone();
            // The bar moves as the stream hands each message to the connection.
            let stream = tokio_stream::iter(messages).map(move |m| {
                progress.inc(m.readings.len() as u64);
                m
            });
            let reply = c.projects().ingest_readings(stream).await;
            bar.finish_and_clear();
            let reply = reply?.into_inner();
            let flags = reply
                .flagged
                .iter()
                .map(|f| {
                    format!(
                        "{} {}",
                        ppb::ReadingFlag::try_from(f.flag)
                            .map(|x| x
                                .as_str_name()
                                .trim_start_matches("READING_FLAG_")
                                .to_lowercase())
                            .unwrap_or_default(),
                        f.count
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            Output {
                headers: vec!["sent", "accepted", "duplicates", "rejected", "flagged"],
                rows: vec![vec![
                    total.to_string(),
                    reply.accepted.to_string(),
                    reply.duplicates.to_string(),
                    reply.rejected.to_string(),
                    flags,
                ]],
            }
            .print(format);
            if format == Format::Table {
                if reply.unknown_meters > 0 {
                    println!(
                        "{} unknown meters, e.g. {}",
                        reply.unknown_meters,
                        reply.unknown_meter_ids.join(", ")
                    );
                }
                for r in &reply.rejections {
                    let at = r
                        .read_time
                        .as_ref()
                        .map(cwsm_platform::grpc::millis)
                        .and_then(chrono::DateTime::from_timestamp_millis)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_default();
                    println!(
                        "rejected {} {at} {} L: {}",
                        r.meter_id, r.value_litres, r.reason
                    );
                }
            }
        }
        ReadingsCommand::List {
            meter_id,
            by,
            limit,
        } => {
            let aggregation = match by.as_str() {
                "raw" => ppb::ReadingAggregation::Raw,
                "day" => ppb::ReadingAggregation::Day,
                "month" => ppb::ReadingAggregation::Month,
                other => anyhow::bail!("unknown aggregation {other:?}: raw, day or month"),
            };
            let reply = c
                .projects()
                .list_readings(ppb::ListReadingsRequest {
                    meter_id,
                    aggregation: aggregation as i32,
                    page_size: limit,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let rows = reply
                .points
                .iter()
                .map(|p| {
                    vec![
                        cst(p.start_time.as_ref().map(cwsm_platform::grpc::millis)),
                        cst(p.end_time.as_ref().map(cwsm_platform::grpc::millis)),
                        p.use_litres.to_string(),
                        p.reading_count.to_string(),
                        p.estimated_count.to_string(),
                        p.flags
                            .iter()
                            .filter_map(|f| ppb::ReadingFlag::try_from(*f).ok())
                            .map(|f| {
                                f.as_str_name()
                                    .trim_start_matches("READING_FLAG_")
                                    .to_lowercase()
                            })
                            .collect::<Vec<_>>()
                            .join(" "),
                    ]
                })
                .collect();
            Output {
                headers: vec![
                    "from (CST)",
                    "to (CST)",
                    "use_l",
                    "readings",
                    "estimated",
                    "flags",
                ],
                rows,
            }
            .print(format);
        }
        ReadingsCommand::Correct {
            meter_id,
            time,
            use_litres,
            exclude,
            keep,
            reason,
            evidence,
        } => {
            let action = match (use_litres, exclude, keep) {
                (Some(_), _, _) => ppb::CorrectionAction::Replace,
                (None, true, _) => ppb::CorrectionAction::Exclude,
                (None, false, true) => ppb::CorrectionAction::Keep,
                _ => {
                    anyhow::bail!("say what the correction does: --use LITRES, --exclude or --keep")
                }
            };
            let at = crate::import::instant(&time).map_err(anyhow::Error::msg)?;
            let c = c
                .projects()
                .propose_reading_correction(ppb::ProposeReadingCorrectionRequest {
                    request_id: request_id(),
                    correction: Some(ppb::ReadingCorrection {
                        meter_id,
                        read_time: Some(cwsm_platform::grpc::timestamp(at)),
                        action: action as i32,
                        corrected_use_litres: use_litres.unwrap_or(0),
                        reason,
                        evidence,
                        ..Default::default()
                    }),
                })
                .await?
                .into_inner()
                .correction
                .unwrap_or_default();
            correction_rows(std::slice::from_ref(&c)).print(format);
        }
        ReadingsCommand::Corrections { project_id } => {
            let corrections = every!(
                c.projects(),
                list_reading_corrections,
                ppb::ListReadingCorrectionsRequest {
                    project_id: project_id.clone(),
                    ..Default::default()
                },
                corrections
            )
            .await?;
            correction_rows(&corrections).print(format);
        }
        ReadingsCommand::Decide {
            correction_id,
            accept,
            reject,
            note,
        } => {
            if accept == reject {
                anyhow::bail!("give --accept or --reject");
            }
            let c = c
                .projects()
                .decide_reading_correction(ppb::DecideReadingCorrectionRequest {
                    request_id: request_id(),
                    correction_id,
                    expected_version: 0,
                    accept,
                    note,
                })
                .await?
                .into_inner()
                .correction
                .unwrap_or_default();
            correction_rows(std::slice::from_ref(&c)).print(format);
        }
    }
    Ok(())
}

fn status_name(n: i32) -> String {
    ppb::PeriodStatus::try_from(n)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("PERIOD_STATUS_")
                .to_lowercase()
        })
        .map(|code| super::text::state(&code))
        .unwrap_or_default()
}

fn percent_bp(bp: i32) -> String {
    format!("{:.1}%", f64::from(bp) / 100.0)
}

async fn savings(
    c: &Clients,
    project_id: &str,
    svg: Option<&std::path::Path>,
    format: Format,
) -> anyhow::Result<()> {
    let report = c
        .projects()
        .get_savings_report(ppb::GetSavingsReportRequest {
            project_id: project_id.to_string(),
        })
        .await?
        .into_inner();
    let rows: Vec<Vec<String>> = report
        .periods
        .iter()
        .map(|p| {
            vec![
                format!("{} – {}", p.start_date, p.end_date),
                status_name(p.status),
                cubic_metres(p.adjusted_baseline_litres),
                cubic_metres(p.actual_litres),
                cubic_metres(p.non_routine_adjustment_litres + p.dispute_adjustment_litres),
                cubic_metres(p.savings_litres),
                percent_bp(p.savings_bp),
                format!("± {}", cubic_metres(p.uncertainty_68_litres)),
                format!("± {}", cubic_metres(p.uncertainty_90_litres)),
                cubic_metres(p.promised_savings_litres),
            ]
        })
        .collect();
    Output {
        headers: vec![
            "period",
            "status",
            "adjusted baseline",
            "actual",
            "adjustments",
            "savings",
            "savings %",
            "±68%",
            "±90%",
            "promised",
        ],
        rows,
    }
    .print_or(format, || api_json(&report))?;
    if format != Format::Table {
        return Ok(());
    }
    match &report.baseline_fit {
        Some(f) if f.observations > 0 => {
            let terms: Vec<String> = f
                .coefficients
                .iter()
                .map(|k| format!("{} {:.1} (± {:.1})", k.name, k.value, k.standard_error))
                .collect();
            println!(
                "Baseline model: use per day = {}; n = {} ({}), R² = {}, CV(RMSE) = {:.1}%, NMBE = {:.2}%, ASHRAE Guideline 14: {}; residuals' ρ = {:.2}, n′ = {:.1}",
                terms.join(" + "),
                f.observations,
                if f.granularity == ppb::ModelGranularity::BillingPeriod as i32 {
                    "billing periods, weighted by their days"
                } else {
                    "days"
                },
                // A model of the intercept alone explains no variance by construction: its R²
                // is 0 and says nothing of the fit.
                if f.coefficients.len() > 1 {
                    format!("{:.3}", f.r_squared)
                } else {
                    "— (no drivers: the mean day)".to_string()
                },
                f.cv_rmse * 100.0,
                f.nmbe * 100.0,
                if f.ashrae_g14_pass { "pass" } else { "FAIL" },
                f.autocorrelation,
                f.effective_observations
            );
        }
        _ => {
            // Why there is none, and what to run: the baseline period is not set, or its days
            // have no readings yet.
            let project = c
                .projects()
                .get_project(ppb::GetProjectRequest {
                    project_id: project_id.to_string(),
                })
                .await?
                .into_inner()
                .project
                .unwrap_or_default();
            if project.baseline_start_date.is_empty() {
                println!(
                    "Baseline model: none yet: the baseline period is not set. Set it while the \
                     project is contracted: cwsm projects baseline {project_id} --start YYYY-MM-DD \
                     --end YYYY-MM-DD"
                );
            } else {
                println!(
                    "Baseline model: none yet: no readings cover the baseline period {} to {}. \
                     Register a meter (cwsm projects meters create {project_id} …) and import its \
                     readings (cwsm projects readings import FILE --meter METER_ID); a reading's \
                     time is the end of its interval",
                    project.baseline_start_date, project.baseline_end_date
                );
            }
        }
    }
    if let Some(s) = report
        .baseline_fit
        .as_ref()
        .and_then(|f| f.data_sufficiency.as_ref())
    {
        println!(
            "Baseline data: {} of {} days, {} missing ({}), {}",
            s.baseline_days - s.missing_days,
            s.baseline_days,
            s.missing_days,
            percent_bp(s.coverage_bp),
            if s.ok { "sufficient" } else { "NOT sufficient" }
        );
        for note in &s.notes {
            println!("  - {note}");
        }
    }
    println!(
        "Verified savings: {} (promised for the same periods: {})",
        cubic_metres(report.verified_savings_litres),
        cubic_metres(report.promised_savings_litres)
    );
    let summary = |label: &str, s: &ppb::SavingsSummary| {
        println!(
            "{label} {} – {} ({} period{}{}): savings {} ± {} (68%) ± {} (90%) of an adjusted baseline of {}",
            s.start_date,
            s.end_date,
            s.periods,
            if s.periods == 1 { "" } else { "s" },
            if s.complete { "" } else { ", not complete" },
            cubic_metres(s.savings_litres),
            cubic_metres(s.uncertainty_68_litres),
            cubic_metres(s.uncertainty_90_litres),
            cubic_metres(s.adjusted_baseline_litres)
        )
    };
    for y in &report.contract_years {
        summary("Contract year", y);
    }
    if let Some(s) = &report.contract_to_date {
        summary("Contract to date", s);
    }
    for p in report.periods.iter().filter(|p| !p.notes.is_empty()) {
        println!("Period {}:", p.start_date);
        for note in &p.notes {
            println!("  - {note}");
        }
        // A reported period's waivers are not in its notes until it is submitted.
        if p.id.is_empty() {
            for w in &p.waivers {
                println!(
                    "  - waived by verifier {}: {} ({})",
                    w.waived_by_org, w.reason, w.failure
                );
            }
        }
    }
    // A small chart: adjusted baseline (░) and actual (█) per period.
    let max = report
        .periods
        .iter()
        .map(|p| p.adjusted_baseline_litres.max(p.actual_litres))
        .max()
        .unwrap_or(0)
        .max(1);
    let bar = |litres: i64, ch: &str| ch.repeat(((litres.max(0) * 40 + max / 2) / max) as usize);
    if !report.periods.is_empty() {
        println!();
        for p in &report.periods {
            println!(
                "{}  {} {}",
                p.start_date,
                bar(p.adjusted_baseline_litres, "░"),
                cubic_metres(p.adjusted_baseline_litres)
            );
            println!(
                "{}  {} {}",
                " ".repeat(p.start_date.len()),
                bar(p.actual_litres, "█"),
                cubic_metres(p.actual_litres)
            );
        }
        println!("░ adjusted baseline  █ actual");
    }
    if let Some(path) = svg {
        std::fs::write(path, savings_svg(&report))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("chart written to {}", path.display());
    }
    Ok(())
}

/// The savings chart as SVG: per period, the adjusted baseline (line) and the metered use
/// (bars) in m³, with axes, the first and last periods and a legend (the verification report's
/// chart).
fn savings_svg(report: &ppb::GetSavingsReportResponse) -> String {
    let m3 = |litres: i64| litres as f64 / 1000.0;
    let points: Vec<(f64, f64)> = report
        .periods
        .iter()
        .map(|p| (m3(p.adjusted_baseline_litres), m3(p.actual_litres)))
        .collect();
    let first = report
        .periods
        .first()
        .map(|p| p.start_date.as_str())
        .unwrap_or_default();
    let last = report
        .periods
        .last()
        .map(|p| p.end_date.as_str())
        .unwrap_or_default();
    cwsm_projects::verification::chart_svg(&points, first, last, "立方米/结算期 m³ a period")
}

fn proposal_row(p: &ppb::VerifierProposal) -> Vec<String> {
    vec![
        p.id.clone(),
        p.verifier_org.clone(),
        ppb::VerifierProposalState::try_from(p.state)
            .map(|s| {
                s.as_str_name()
                    .trim_start_matches("VERIFIER_PROPOSAL_STATE_")
                    .to_lowercase()
            })
            .map(|code| super::text::state(&code))
            .unwrap_or_default(),
        format!("{} {}", p.proposer_role, p.proposer_org),
        p.decision_reason.clone(),
        p.version.to_string(),
    ]
}

fn verifier_decision(word: &str) -> anyhow::Result<ppb::VerifierDecision> {
    match word {
        "approve" => Ok(ppb::VerifierDecision::Approve),
        "decline" => Ok(ppb::VerifierDecision::Decline),
        other => anyhow::bail!("unknown decision {other:?}: approve or decline"),
    }
}

async fn verifier(c: &Clients, cmd: VerifierCommand, format: Format) -> anyhow::Result<()> {
    let rows = match cmd {
        VerifierCommand::Propose {
            project_id,
            verifier_org,
            note,
        } => {
            let p = c
                .projects()
                .propose_verifier(ppb::ProposeVerifierRequest {
                    request_id: request_id(),
                    project_id,
                    verifier_credit_code: verifier_org,
                    note,
                })
                .await?
                .into_inner()
                .proposal
                .unwrap_or_default();
            vec![proposal_row(&p)]
        }
        VerifierCommand::Proposals { project_id } => every!(
            c.projects(),
            list_verifier_proposals,
            ppb::ListVerifierProposalsRequest {
                project_id: project_id.clone(),
                ..Default::default()
            },
            proposals
        )
        .await?
        .iter()
        .map(proposal_row)
        .collect(),
        VerifierCommand::Decide {
            proposal_id,
            decision,
            reason,
        } => {
            let decision = verifier_decision(&decision)?;
            let p = c
                .projects()
                .decide_verifier_proposal(ppb::DecideVerifierProposalRequest {
                    request_id: request_id(),
                    proposal_id,
                    decision: decision as i32,
                    reason,
                    expected_version: 0,
                })
                .await?
                .into_inner()
                .proposal
                .unwrap_or_default();
            vec![proposal_row(&p)]
        }
    };
    Output {
        headers: vec![
            "id",
            "verifier_org",
            "state",
            "proposed by",
            "reason",
            "version",
        ],
        rows,
    }
    .print(format);
    Ok(())
}

async fn periods(c: &Clients, cmd: PeriodsCommand, format: Format) -> anyhow::Result<()> {
    let period = match cmd {
        PeriodsCommand::Submit {
            project_id,
            start_date,
            note,
        } => {
            c.projects()
                .submit_period(ppb::SubmitPeriodRequest {
                    request_id: request_id(),
                    project_id,
                    start_date,
                    note,
                })
                .await?
                .into_inner()
                .period
        }
        PeriodsCommand::Verify { period_id, note } => {
            c.projects()
                .verify_period(ppb::VerifyPeriodRequest {
                    request_id: request_id(),
                    period_id,
                    expected_version: 0,
                    note,
                })
                .await?
                .into_inner()
                .period
        }
        PeriodsCommand::Dispute { period_id, reason } => {
            c.projects()
                .dispute_period(ppb::DisputePeriodRequest {
                    request_id: request_id(),
                    period_id,
                    expected_version: 0,
                    reason,
                })
                .await?
                .into_inner()
                .period
        }
        PeriodsCommand::Resolve {
            period_id,
            adjustment,
            note,
        } => {
            c.projects()
                .resolve_dispute(ppb::ResolveDisputeRequest {
                    request_id: request_id(),
                    period_id,
                    expected_version: 0,
                    adjustment_litres: adjustment,
                    note,
                })
                .await?
                .into_inner()
                .period
        }
        PeriodsCommand::Report {
            id,
            year,
            xlsx,
            out,
        } => {
            let (period_id, project_id, contract_year_start_date) = match year {
                Some(start) => (String::new(), id, start),
                None => (id, String::new(), String::new()),
            };
            let kind = if xlsx {
                ppb::ReportFormat::Xlsx
            } else {
                ppb::ReportFormat::Html
            };
            let r = c
                .projects()
                .get_verification_report(ppb::GetVerificationReportRequest {
                    period_id,
                    format: kind as i32,
                    project_id,
                    contract_year_start_date,
                })
                .await?
                .into_inner();
            let path = out.unwrap_or_else(|| PathBuf::from(&r.file_name));
            std::fs::write(&path, &r.content)
                .with_context(|| format!("writing {}", path.display()))?;
            Output {
                headers: vec!["file", "sha256", "archived"],
                rows: vec![vec![
                    path.display().to_string(),
                    r.sha256,
                    if r.archived {
                        "yes (as verified)".to_string()
                    } else {
                        "no (drawn now)".to_string()
                    },
                ]],
            }
            .print(format);
            return Ok(());
        }
        PeriodsCommand::Waive {
            project_id,
            start_date,
            check,
            reason,
        } => {
            let number = ppb::MeasurementCheck::from_str_name(&format!(
                "MEASUREMENT_CHECK_{}",
                check.to_uppercase()
            ))
            .with_context(|| {
                format!("unknown check {check:?}: baseline_g14 or savings_uncertainty")
            })?;
            let w = c
                .projects()
                .waive_period_check(ppb::WaivePeriodCheckRequest {
                    request_id: request_id(),
                    project_id,
                    start_date,
                    check: number as i32,
                    reason,
                })
                .await?
                .into_inner()
                .waiver
                .unwrap_or_default();
            Output {
                headers: vec!["period", "check", "waived by", "reason", "failed as"],
                rows: vec![vec![
                    w.period_start_date,
                    check,
                    w.waived_by_org,
                    w.reason,
                    w.failure,
                ]],
            }
            .print(format);
            return Ok(());
        }
        PeriodsCommand::Settle { period_id } => {
            let reply = c
                .projects()
                .settle_period(ppb::SettlePeriodRequest {
                    request_id: request_id(),
                    period_id,
                    expected_version: 0,
                })
                .await?
                .into_inner();
            if let Some(s) = &reply.settlement {
                print_settlements(std::slice::from_ref(s), format)?;
            }
            return Ok(());
        }
    }
    .unwrap_or_default();
    Output {
        headers: vec!["id", "period", "status", "savings", "version"],
        rows: vec![vec![
            period.id.clone(),
            format!("{} – {}", period.start_date, period.end_date),
            status_name(period.status),
            cubic_metres(period.savings_litres),
            period.version.to_string(),
        ]],
    }
    .print_or(format, || api_json(&period))?;
    Ok(())
}

fn print_settlements(list: &[ppb::Settlement], format: Format) -> anyhow::Result<()> {
    Output {
        headers: vec![
            "id",
            "period",
            "model",
            "savings",
            "value",
            "company due",
            "user due",
            "shortfall",
            "hosting fee",
            "water bill",
        ],
        rows: list
            .iter()
            .map(|s| {
                vec![
                    s.id.clone(),
                    format!("{} – {}", s.period_start_date, s.period_end_date),
                    word(
                        s.contract_model,
                        ContractModel::from_number,
                        ContractModel::name,
                    ),
                    cubic_metres(s.savings_litres),
                    money(s.savings_value_fen),
                    money(s.company_due_fen),
                    money(s.user_due_fen),
                    money(s.shortfall_fen),
                    money(s.hosting_fee_fen),
                    money(s.water_bill_fen),
                ]
            })
            .collect(),
    }
    .print_or(format, || api_json_list(list))?;
    if format == Format::Table {
        for s in list {
            match super::text::lang() {
                cwsm_platform::lang::Lang::Zh => {
                    println!("\n结算单 {}（结算期 {}）：", s.id, s.period_id)
                }
                cwsm_platform::lang::Lang::En => {
                    println!("\nStatement {} (period {}):", s.id, s.period_id)
                }
            }
            for line in &s.statement_lines {
                println!("  {line}");
            }
        }
    }
    Ok(())
}

async fn settlements(c: &Clients, project_id: &str, format: Format) -> anyhow::Result<()> {
    let settlements = every!(
        c.projects(),
        list_settlements,
        ppb::ListSettlementsRequest {
            project_id: project_id.to_string(),
            ..Default::default()
        },
        settlements
    )
    .await?;
    print_settlements(&settlements, format)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12's finding: a file stamped at interval starts was taken as ends, silently.
    #[test]
    fn a_file_stamped_at_interval_starts_is_sent_only_when_said() {
        use cwsm_projects::metering::TimestampsMark;
        let text: String = (1..=31)
            .map(|d| format!("m1,2025-01-{d:02} 00:00,1000\n"))
            .collect();
        let rows = crate::import::readings(
            &crate::import::csv_rows(&text).expect("csv"),
            None,
            crate::import::Unit::Litres,
        )
        .expect("parses");
        let err = check_timestamps(&rows, None).expect_err("it looks like starts");
        assert!(
            err.to_string()
                .contains("Nothing was sent: give --timestamps start"),
            "{err}"
        );
        assert_eq!(
            check_timestamps(&rows, Some("start")).ok(),
            Some(TimestampsMark::Start)
        );
        // Said to be ends: taken so (with a warning).
        assert_eq!(
            check_timestamps(&rows, Some("end")).ok(),
            Some(TimestampsMark::End)
        );
        // Noon stamps look like neither.
        let noon = crate::import::readings(
            &crate::import::csv_rows("m1,2025-01-01 12:00,1\nm1,2025-01-02 12:00,1\n")
                .expect("csv"),
            None,
            crate::import::Unit::Litres,
        )
        .expect("parses");
        assert_eq!(
            check_timestamps(&noon, None).ok(),
            Some(TimestampsMark::End)
        );
    }

    /// Issue 13: the chart was 140 px wide for a period, titled with the project's UUID
    /// (clipped), without axes or legend. Now the report's chart: axes in m³, a legend.
    #[test]
    fn the_savings_chart_has_axes_units_and_a_legend() {
        let report = ppb::GetSavingsReportResponse {
            project_id: "01a24263-288c-7053-b4fd-878893e6176d".into(),
            periods: vec![ppb::PeriodSavings {
                start_date: "2026-01-01".into(),
                end_date: "2026-01-31".into(),
                adjusted_baseline_litres: 3_099_949,
                actual_litres: 2_476_300,
                ..Default::default()
            }],
            ..Default::default()
        };
        let svg = savings_svg(&report);
        assert!(svg.contains("width=\"720\""), "{svg:.200}");
        assert!(!svg.contains(&report.project_id));
        for part in [
            "m³",
            "调整后基线",
            "metered use",
            "2026-01-01",
            "2026-01-31",
            "<polyline",
        ] {
            assert!(svg.contains(part), "{part} missing");
        }
    }

    #[test]
    fn verifier_commands_parse() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(subcommand)]
            command: ProjectsCommand,
        }
        let cli = Cli::try_parse_from([
            "projects",
            "verifier",
            "decide",
            "p-1",
            "decline",
            "--reason",
            "未认证",
        ])
        .expect("parses");
        assert!(matches!(
            cli.command,
            ProjectsCommand::Verifier(VerifierCommand::Decide { ref proposal_id, ref decision, ref reason })
                if proposal_id == "p-1" && decision == "decline" && reason == "未认证"
        ));
        let cli = Cli::try_parse_from(["projects", "verifier", "propose", "x-1", "CODE"])
            .expect("parses");
        assert!(matches!(
            cli.command,
            ProjectsCommand::Verifier(VerifierCommand::Propose { ref note, .. }) if note.is_empty()
        ));
        assert_eq!(
            verifier_decision("approve").ok(),
            Some(ppb::VerifierDecision::Approve)
        );
        assert!(verifier_decision("maybe").is_err());
        let correct = |extra: &[&str]| {
            let mut args = vec!["projects", "readings", "correct", "m-1", "2025-01-11 00:00"];
            args.extend(extra);
            args.extend(["--reason", "现场抄表", "--evidence", "log 7"]);
            Cli::try_parse_from(args).map(|c| c.command)
        };
        assert!(matches!(
            correct(&["--use", "-1600"]),
            Ok(ProjectsCommand::Readings(ReadingsCommand::Correct {
                use_litres: Some(-1600),
                exclude: false,
                keep: false,
                ..
            }))
        ));
        assert!(
            correct(&["--use", "1600", "--exclude"]).is_err(),
            "one action"
        );
        assert!(correct(&["--exclude", "--keep"]).is_err(), "one action");
        let cli = Cli::try_parse_from([
            "projects",
            "periods",
            "report",
            "p-1",
            "--year",
            "2025-12-01",
            "--xlsx",
        ])
        .expect("parses");
        assert!(matches!(
            cli.command,
            ProjectsCommand::Periods(PeriodsCommand::Report { ref id, year: Some(ref y), xlsx: true, .. })
                if id == "p-1" && y == "2025-12-01"
        ));
        let cli = Cli::try_parse_from([
            "projects",
            "adjustments",
            "create",
            "p-1",
            "--start",
            "2026-01-01",
            "--litres",
            "-3000",
            "--reason",
            "宿舍楼停用",
            "--evidence",
            "后勤处通知 12",
        ])
        .expect("parses");
        assert!(matches!(
            cli.command,
            ProjectsCommand::Adjustments(AdjustmentsCommand::Create { litres: -3000, ref end, .. }) if end.is_empty()
        ));
    }
}
