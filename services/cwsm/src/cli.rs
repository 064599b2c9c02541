//! The command-line client: tables for people, `--json` for scripts.
//!
//! It talks gRPC to `--server` (default the embedded `cwsm serve` address) with the bearer token
//! in `--token` / `CWSM_TOKEN`. With no token, and a signing key in the local data folder (the
//! embedded mode on this machine), it signs itself an administrator token: whoever can read
//! that file can sign any token anyway.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use cwsm_platform::auth::{Keys, Role};
use cwsm_platform::vocab::{ContractModel, Sector, Technology};
use cwsm_proto::matching::v1 as mpb;
use cwsm_proto::matching::v1::matching_service_client::MatchingServiceClient;
use cwsm_proto::projects::v1 as ppb;
use cwsm_proto::projects::v1::projects_service_client::ProjectsServiceClient;
use cwsm_proto::reporting::v1 as rpb;
use cwsm_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

#[derive(Args, Clone)]
pub struct Connection {
    /// Server address.
    #[arg(
        long,
        global = true,
        env = "CWSM_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// Bearer token (see `cwsm token issue`).
    #[arg(long, global = true, env = "CWSM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Data folder whose signing key may sign an admin token when no token is given.
    #[arg(
        long,
        global = true,
        env = "CWSM_DATA_DIR",
        default_value = "cwsm-data"
    )]
    pub data_dir: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum ClientCommand {
    /// The action plan's indicators: target, actual, progress, status.
    Report {
        #[command(flatten)]
        conn: Connection,
        /// Plan code.
        #[arg(long, default_value = "xinbei-2020")]
        plan: String,
        /// Report as of this date (YYYY-MM-DD) [default: today].
        #[arg(long, default_value = "")]
        date: String,
    },
    /// Water-saving service companies.
    Companies {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        command: ListOnly,
    },
    /// What service companies offer.
    Offerings {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        command: ListOnly,
    },
    /// Water users' project requests.
    Requests {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        command: RequestsCommand,
    },
    /// Proposals on a request.
    Proposals {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        command: ProposalsCommand,
    },
    /// Contract projects.
    Projects {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        command: ProjectsCommand,
    },
}

#[derive(Subcommand)]
pub enum ListOnly {
    /// List, newest last.
    List(ListArgs),
}

#[derive(Args, Clone, Default)]
pub struct ListArgs {
    /// Sector code, e.g. school, industrial_enterprise.
    #[arg(long, default_value = "")]
    pub sector: String,
    /// Town or sub-district.
    #[arg(long, default_value = "")]
    pub town: String,
    /// Text in the name.
    #[arg(long, default_value = "")]
    pub query: String,
    /// Rows to show.
    #[arg(long, default_value_t = 50)]
    pub limit: i32,
}

#[derive(Subcommand)]
pub enum RequestsCommand {
    List(ListArgs),
    /// Create a request (as draft) and open it to proposals.
    Create {
        #[arg(long)]
        water_user: String,
        #[arg(long)]
        title: String,
        /// Yearly baseline use, m³.
        #[arg(long)]
        baseline_m3: i64,
        /// Savings expected, percent.
        #[arg(long, default_value_t = 20.0)]
        savings_pct: f64,
        /// Investment the company should carry, yuan.
        #[arg(long, default_value_t = 0)]
        investment_yuan: i64,
        /// Water price, yuan per m³.
        #[arg(long, default_value_t = 4.10)]
        price_yuan: f64,
        /// Preferred contract model codes, e.g. shared_savings.
        #[arg(long = "model")]
        models: Vec<String>,
        /// Wanted technology codes, e.g. leak_detection.
        #[arg(long = "tech")]
        technologies: Vec<String>,
    },
    /// Offerings ranked for a request, with the parts of each score.
    Rank {
        request_id: String,
    },
}

#[derive(Subcommand)]
pub enum ProposalsCommand {
    /// Proposals on a request, side by side.
    List { request_id: String },
    /// Accept a proposal: starts the project.
    Accept { proposal_id: String },
}

#[derive(Subcommand)]
pub enum ProjectsCommand {
    List {
        /// Stage code, e.g. operating.
        #[arg(long, default_value = "")]
        stage: String,
    },
    /// Move a project to a stage (implementing, commissioned, accepted, operating, handed_over, …).
    Move {
        project_id: String,
        stage: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

type Auth = Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>;

struct Clients {
    channel: Channel,
    token: String,
}

impl Clients {
    async fn connect(conn: &Connection) -> anyhow::Result<Clients> {
        let token = match &conn.token {
            Some(t) => t.clone(),
            None => {
                let key = conn.data_dir.join(cwsm_platform::auth::KEY_FILE);
                if !key.exists() {
                    anyhow::bail!(
                        "no token: pass --token or set CWSM_TOKEN (cwsm token issue --role …)"
                    );
                }
                Keys::load_or_create(&conn.data_dir)?.issue(
                    "cli",
                    Role::Admin,
                    None,
                    Duration::from_secs(3600),
                )?
            }
        };
        let channel = Channel::from_shared(conn.server.clone())?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("cannot reach {} (is `cwsm serve` running?)", conn.server))?;
        Ok(Clients { channel, token })
    }

    fn auth(&self) -> Auth {
        let header = format!("Bearer {}", self.token);
        Box::new(move |mut request: tonic::Request<()>| {
            let value = header
                .parse()
                .map_err(|_| tonic::Status::invalid_argument("token is not valid metadata"))?;
            request.metadata_mut().insert("authorization", value);
            Ok(request)
        })
    }

    fn matching(&self) -> MatchingServiceClient<InterceptedService<Channel, Auth>> {
        MatchingServiceClient::with_interceptor(self.channel.clone(), self.auth())
    }
    fn projects(&self) -> ProjectsServiceClient<InterceptedService<Channel, Auth>> {
        ProjectsServiceClient::with_interceptor(self.channel.clone(), self.auth())
    }
    fn reporting(&self) -> ReportingServiceClient<InterceptedService<Channel, Auth>> {
        ReportingServiceClient::with_interceptor(self.channel.clone(), self.auth())
    }
}

/// Rows for people or scripts.
struct Output {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Output {
    fn print(&self, json: bool) {
        if json {
            let objects: Vec<serde_json::Value> = self
                .rows
                .iter()
                .map(|row| {
                    serde_json::Value::Object(
                        self.headers
                            .iter()
                            .zip(row)
                            .map(|(h, v)| (h.to_string(), serde_json::Value::String(v.clone())))
                            .collect(),
                    )
                })
                .collect();
            println!("{}", serde_json::Value::Array(objects));
        } else {
            let mut table = Table::new();
            table
                .load_preset(UTF8_FULL_CONDENSED)
                .set_content_arrangement(ContentArrangement::Dynamic)
                .set_header(self.headers.clone());
            for row in &self.rows {
                table.add_row(row.clone());
            }
            println!("{table}");
        }
    }
}

fn code_number<T>(
    field: &str,
    code: &str,
    from: fn(&str) -> Option<T>,
    number: fn(T) -> i32,
) -> anyhow::Result<i32> {
    if code.is_empty() {
        return Ok(0);
    }
    from(code)
        .map(number)
        .ok_or_else(|| anyhow::anyhow!("unknown {field} {code:?}"))
}

fn name_of<T>(n: i32, from: fn(i32) -> Option<T>, code: fn(T) -> &'static str) -> String {
    from(n).map(|v| code(v).to_string()).unwrap_or_default()
}

fn yuan(fen: i64) -> String {
    format!("{:.2}", fen as f64 / 100.0)
}

fn stage_name(n: i32) -> String {
    ppb::ProjectStage::try_from(n)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("PROJECT_STAGE_")
                .to_lowercase()
        })
        .unwrap_or_default()
}

fn request_id() -> String {
    format!("cli:{}", cwsm_platform::new_id())
}

pub async fn run(command: ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::Report { conn, plan, date } => {
            let c = Clients::connect(&conn).await?;
            let report = c
                .reporting()
                .get_report(rpb::GetReportRequest {
                    plan_code: plan,
                    plan_version: 0,
                    as_of_date: date,
                })
                .await?
                .into_inner()
                .report
                .context("empty report")?;
            if let (Some(p), false) = (&report.plan, conn.json) {
                println!("{} (v{}) as of {}", p.title, p.version, report.as_of_date);
            }
            let rows = report
                .indicators
                .iter()
                .map(|s| {
                    let i = s.indicator.clone().unwrap_or_default();
                    vec![
                        i.code,
                        format!("{} {}", i.name, i.name_zh),
                        format!("{}", i.target),
                        format!("{}", s.actual),
                        format!("{:.0}%", f64::from(s.progress_bp) / 100.0),
                        i.deadline,
                        rpb::ProgressStatus::try_from(s.status)
                            .map(|x| {
                                x.as_str_name()
                                    .trim_start_matches("PROGRESS_STATUS_")
                                    .to_lowercase()
                            })
                            .unwrap_or_default(),
                        i.lead_departments.join(", "),
                    ]
                })
                .collect();
            Output {
                headers: vec![
                    "code",
                    "indicator",
                    "target",
                    "actual",
                    "progress",
                    "deadline",
                    "status",
                    "lead",
                ],
                rows,
            }
            .print(conn.json);
        }
        ClientCommand::Companies {
            conn,
            command: ListOnly::List(a),
        } => {
            let c = Clients::connect(&conn).await?;
            let reply = c
                .matching()
                .list_companies(mpb::ListCompaniesRequest {
                    page_size: a.limit,
                    sector: code_number("sector", &a.sector, Sector::from_code, Sector::number)?,
                    town: a.town,
                    query: a.query,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let rows = reply
                .companies
                .iter()
                .map(|x| {
                    vec![
                        x.id.clone(),
                        x.name.clone(),
                        x.credit_code.clone(),
                        cwsm_platform::vocab::CertificationGrade::from_number(
                            x.certification_grade,
                        )
                        .map(|g| g.label().to_string())
                        .unwrap_or_default(),
                        yuan(x.financing_capacity_fen),
                        x.towns.join(", "),
                    ]
                })
                .collect();
            Output {
                headers: vec![
                    "id",
                    "name",
                    "credit_code",
                    "certification",
                    "financing_yuan",
                    "towns",
                ],
                rows,
            }
            .print(conn.json);
        }
        ClientCommand::Offerings {
            conn,
            command: ListOnly::List(a),
        } => {
            let c = Clients::connect(&conn).await?;
            let reply = c
                .matching()
                .list_offerings(mpb::ListOfferingsRequest {
                    page_size: a.limit,
                    sector: code_number("sector", &a.sector, Sector::from_code, Sector::number)?,
                    town: a.town,
                    query: a.query,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let rows = reply
                .offerings
                .iter()
                .map(|o| {
                    vec![
                        o.id.clone(),
                        o.title.clone(),
                        o.technologies
                            .iter()
                            .map(|t| name_of(*t, Technology::from_number, Technology::code))
                            .collect::<Vec<_>>()
                            .join(", "),
                        o.contract_models
                            .iter()
                            .map(|m| name_of(*m, ContractModel::from_number, ContractModel::code))
                            .collect::<Vec<_>>()
                            .join(", "),
                        format!("{:.1}%", f64::from(o.typical_savings_bp) / 100.0),
                        mpb::OfferingStatus::try_from(o.status)
                            .map(|s| {
                                s.as_str_name()
                                    .trim_start_matches("OFFERING_STATUS_")
                                    .to_lowercase()
                            })
                            .unwrap_or_default(),
                    ]
                })
                .collect();
            Output {
                headers: vec![
                    "id",
                    "title",
                    "technologies",
                    "models",
                    "typical_savings",
                    "status",
                ],
                rows,
            }
            .print(conn.json);
        }
        ClientCommand::Requests { conn, command } => {
            let c = Clients::connect(&conn).await?;
            match command {
                RequestsCommand::List(a) => {
                    let reply = c
                        .matching()
                        .list_project_requests(mpb::ListProjectRequestsRequest {
                            page_size: a.limit,
                            sector: code_number(
                                "sector",
                                &a.sector,
                                Sector::from_code,
                                Sector::number,
                            )?,
                            town: a.town,
                            query: a.query,
                            ..Default::default()
                        })
                        .await?
                        .into_inner();
                    let rows = reply
                        .project_requests
                        .iter()
                        .map(|r| {
                            vec![
                                r.id.clone(),
                                r.title.clone(),
                                r.water_user
                                    .as_ref()
                                    .map(|u| u.name.clone())
                                    .unwrap_or_default(),
                                format!("{}", r.baseline_use_litres / 1000),
                                yuan(r.investment_wanted_fen),
                                mpb::ProjectRequestStatus::try_from(r.status)
                                    .map(|s| {
                                        s.as_str_name()
                                            .trim_start_matches("PROJECT_REQUEST_STATUS_")
                                            .to_lowercase()
                                    })
                                    .unwrap_or_default(),
                                r.proposal_count.to_string(),
                            ]
                        })
                        .collect();
                    Output {
                        headers: vec![
                            "id",
                            "title",
                            "water_user",
                            "baseline_m3",
                            "investment_yuan",
                            "status",
                            "proposals",
                        ],
                        rows,
                    }
                    .print(conn.json);
                }
                RequestsCommand::Create {
                    water_user,
                    title,
                    baseline_m3,
                    savings_pct,
                    investment_yuan,
                    price_yuan,
                    models,
                    technologies,
                } => {
                    let mut m = c.matching();
                    let draft = mpb::ProjectRequest {
                        water_user_id: water_user,
                        title,
                        baseline_use_litres: baseline_m3 * 1000,
                        expected_savings_bp: (savings_pct * 100.0).round() as i32,
                        investment_wanted_fen: investment_yuan * 100,
                        price_fen_per_m3: (price_yuan * 100.0).round() as i64,
                        preferred_contract_models: models
                            .iter()
                            .map(|x| {
                                code_number(
                                    "model",
                                    x,
                                    ContractModel::from_code,
                                    ContractModel::number,
                                )
                            })
                            .collect::<anyhow::Result<_>>()?,
                        wanted_technologies: technologies
                            .iter()
                            .map(|x| {
                                code_number(
                                    "technology",
                                    x,
                                    Technology::from_code,
                                    Technology::number,
                                )
                            })
                            .collect::<anyhow::Result<_>>()?,
                        ..Default::default()
                    };
                    let created = m
                        .create_project_request(mpb::CreateProjectRequestRequest {
                            request_id: request_id(),
                            project_request: Some(draft),
                        })
                        .await?
                        .into_inner()
                        .project_request
                        .context("empty reply")?;
                    let opened = m
                        .open_project_request(mpb::OpenProjectRequestRequest {
                            request_id: request_id(),
                            project_request_id: created.id.clone(),
                            expected_version: 0,
                        })
                        .await?
                        .into_inner()
                        .project_request
                        .context("empty reply")?;
                    Output {
                        headers: vec!["id", "title", "status"],
                        rows: vec![vec![opened.id, opened.title, "open".into()]],
                    }
                    .print(conn.json);
                }
                RequestsCommand::Rank { request_id: id } => {
                    let reply = c
                        .matching()
                        .rank_offerings(mpb::RankOfferingsRequest {
                            project_request_id: id,
                            page_size: 20,
                        })
                        .await?
                        .into_inner();
                    let rows = reply
                        .ranked_offerings
                        .iter()
                        .map(|r| {
                            vec![
                                r.rank.to_string(),
                                format!("{:.3}", r.score),
                                r.company
                                    .as_ref()
                                    .map(|x| x.name.clone())
                                    .unwrap_or_default(),
                                r.offering
                                    .as_ref()
                                    .map(|x| x.title.clone())
                                    .unwrap_or_default(),
                                r.parts
                                    .iter()
                                    .map(|p| {
                                        format!("{} {:.2}: {}", p.name, p.value, p.explanation)
                                    })
                                    .collect::<Vec<_>>()
                                    .join("\n"),
                            ]
                        })
                        .collect();
                    Output {
                        headers: vec!["rank", "score", "company", "offering", "why"],
                        rows,
                    }
                    .print(conn.json);
                    if !conn.json && !reply.excluded_offerings.is_empty() {
                        println!("Excluded:");
                        for x in &reply.excluded_offerings {
                            println!(
                                "  {} / {}: {} ({})",
                                x.company_name, x.offering_title, x.explanation, x.filter
                            );
                        }
                    }
                }
            }
        }
        ClientCommand::Proposals { conn, command } => {
            let c = Clients::connect(&conn).await?;
            match command {
                ProposalsCommand::List { request_id: id } => {
                    let reply = c
                        .matching()
                        .list_proposals(mpb::ListProposalsRequest {
                            project_request_id: id,
                            ..Default::default()
                        })
                        .await?
                        .into_inner();
                    let rows = reply
                        .proposals
                        .iter()
                        .map(|p| {
                            vec![
                                p.id.clone(),
                                p.company
                                    .as_ref()
                                    .map(|x| x.name.clone())
                                    .unwrap_or_default(),
                                name_of(
                                    p.contract_model,
                                    ContractModel::from_number,
                                    ContractModel::code,
                                ),
                                yuan(p.investment_fen),
                                format!("{}", p.promised_savings_litres / 1000),
                                yuan(p.cost_per_m3_saved_fen),
                                p.payback_months.to_string(),
                                mpb::ProposalStatus::try_from(p.status)
                                    .map(|s| {
                                        s.as_str_name()
                                            .trim_start_matches("PROPOSAL_STATUS_")
                                            .to_lowercase()
                                    })
                                    .unwrap_or_default(),
                            ]
                        })
                        .collect();
                    Output {
                        headers: vec![
                            "id",
                            "company",
                            "model",
                            "investment_yuan",
                            "savings_m3_per_year",
                            "yuan_per_m3_saved",
                            "payback_months",
                            "status",
                        ],
                        rows,
                    }
                    .print(conn.json);
                }
                ProposalsCommand::Accept { proposal_id } => {
                    let reply = c
                        .matching()
                        .accept_proposal(mpb::AcceptProposalRequest {
                            request_id: request_id(),
                            proposal_id,
                            expected_version: 0,
                        })
                        .await?
                        .into_inner();
                    Output {
                        headers: vec!["proposal", "project"],
                        rows: vec![vec![
                            reply.proposal.map(|p| p.id).unwrap_or_default(),
                            reply.project_id,
                        ]],
                    }
                    .print(conn.json);
                }
            }
        }
        ClientCommand::Projects { conn, command } => {
            let c = Clients::connect(&conn).await?;
            match command {
                ProjectsCommand::List { stage } => {
                    let stage_number = if stage.is_empty() {
                        0
                    } else {
                        ppb::ProjectStage::from_str_name(&format!(
                            "PROJECT_STAGE_{}",
                            stage.to_uppercase()
                        ))
                        .map(|s| s as i32)
                        .ok_or_else(|| anyhow::anyhow!("unknown stage {stage:?}"))?
                    };
                    let reply = c
                        .projects()
                        .list_projects(ppb::ListProjectsRequest {
                            stage: stage_number,
                            ..Default::default()
                        })
                        .await?
                        .into_inner();
                    let rows = reply
                        .projects
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
                                ),
                                stage_name(p.stage),
                            ]
                        })
                        .collect();
                    Output {
                        headers: vec!["id", "title", "company", "water_user", "model", "stage"],
                        rows,
                    }
                    .print(conn.json);
                }
                ProjectsCommand::Move {
                    project_id,
                    stage,
                    reason,
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
                            evidence: String::new(),
                        })
                        .await?
                        .into_inner();
                    let p = reply.project.unwrap_or_default();
                    Output {
                        headers: vec!["id", "title", "stage", "version"],
                        rows: vec![vec![
                            p.id,
                            p.title,
                            stage_name(p.stage),
                            p.version.to_string(),
                        ]],
                    }
                    .print(conn.json);
                }
            }
        }
    }
    Ok(())
}
