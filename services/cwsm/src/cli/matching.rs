//! `cwsm companies|offerings|requests|proposals …`: the marketplace.

use anyhow::Context;
use clap::{Args, Subcommand};
use cwsm_platform::vocab::{ContractModel, Sector, Technology};
use cwsm_proto::matching::v1 as mpb;

use super::{Clients, Connection, Output, code_number, name_of, request_id, yuan};

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

#[derive(Args)]
pub struct CompaniesArgs {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub command: ListOnly,
}

pub async fn companies(args: CompaniesArgs) -> anyhow::Result<()> {
    let CompaniesArgs {
        conn,
        command: ListOnly::List(a),
    } = args;
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
                cwsm_platform::vocab::CertificationGrade::from_number(x.certification_grade)
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
    Ok(())
}

#[derive(Args)]
pub struct OfferingsArgs {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub command: ListOnly,
}

pub async fn offerings(args: OfferingsArgs) -> anyhow::Result<()> {
    let OfferingsArgs {
        conn,
        command: ListOnly::List(a),
    } = args;
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
    Ok(())
}

#[derive(Args)]
pub struct RequestsArgs {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub command: RequestsCommand,
}

pub async fn requests(args: RequestsArgs) -> anyhow::Result<()> {
    let RequestsArgs { conn, command } = args;
    let c = Clients::connect(&conn).await?;
    match command {
        RequestsCommand::List(a) => {
            let reply = c
                .matching()
                .list_project_requests(mpb::ListProjectRequestsRequest {
                    page_size: a.limit,
                    sector: code_number("sector", &a.sector, Sector::from_code, Sector::number)?,
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
                        code_number("model", x, ContractModel::from_code, ContractModel::number)
                    })
                    .collect::<anyhow::Result<_>>()?,
                wanted_technologies: technologies
                    .iter()
                    .map(|x| {
                        code_number("technology", x, Technology::from_code, Technology::number)
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
                            .map(|p| format!("{} {:.2}: {}", p.name, p.value, p.explanation))
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
    Ok(())
}

#[derive(Args)]
pub struct ProposalsArgs {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub command: ProposalsCommand,
}

pub async fn proposals(args: ProposalsArgs) -> anyhow::Result<()> {
    let ProposalsArgs { conn, command } = args;
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
    Ok(())
}
