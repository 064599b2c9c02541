//! `cwsm companies|offerings|users|requests|proposals …`: the marketplace, for both sides. A
//! company registers, publishes offerings, browses fitting requests and proposes; a water user
//! registers, creates a request, sees the ranked offerings with the parts of each score,
//! compares proposals and accepts one. `cwsm requests bench-rank` measures the ranking.

use anyhow::Context;
use clap::{Args, Subcommand};
use cwsm_platform::lang::Lang;
use cwsm_platform::vocab::{CertificationGrade, ContractModel, MvOption, Sector, Technology};
use cwsm_proto::matching::v1 as mpb;
use cwsm_proto::types;

use super::{
    Clients, Connection, Format, OrgKind, Output, Paging, api_json, api_json_list, code_number,
    codes, more, name_of, request_id, stage_name, yuan,
};

/// Parses repeated vocabulary codes into proto numbers, naming a bad one.
fn numbers<T>(
    field: &str,
    codes: &[String],
    from: fn(&str) -> Option<T>,
    number: fn(T) -> i32,
) -> anyhow::Result<Vec<i32>> {
    codes
        .iter()
        .map(|c| code_number(field, c, from, number))
        .collect()
}

fn fen(yuan: f64) -> i64 {
    (yuan * 100.0).round() as i64
}

/// `m3` cubic metres in litres (the API's unit), refused rather than wrapped when too large.
fn litres(flag: &str, m3: i64) -> anyhow::Result<i64> {
    m3.checked_mul(1000)
        .with_context(|| format!("--{flag} {m3}: too large a volume"))
}

fn bp(percent: f64) -> i32 {
    (percent * 100.0).round() as i32
}

fn contact(name: String, phone: String, email: String) -> Option<types::Contact> {
    Some(types::Contact { name, phone, email })
}

#[derive(Args, Clone)]
pub struct ListArgs {
    /// Sector, e.g. school, industrial_enterprise.
    #[arg(long, default_value = "", hide_default_value = true,
          value_parser = codes(Sector::ALL, Sector::code, Sector::label))]
    pub sector: String,
    /// Town or sub-district.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub town: String,
    /// Text in the name.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub query: String,
    #[command(flatten)]
    pub page: Paging,
}

#[derive(Subcommand)]
pub enum CompaniesCommand {
    /// List companies, filtered.
    List {
        #[command(flatten)]
        list: ListArgs,
        /// Confirmed at this grade or better.
        #[arg(long, default_value = "", hide_default_value = true,
              value_parser = codes(CertificationGrade::ALL, CertificationGrade::code, CertificationGrade::label))]
        min_grade: String,
        /// With a published offering of this technology.
        #[arg(long, default_value = "", hide_default_value = true,
              value_parser = codes(Technology::ALL, Technology::code, Technology::label))]
        tech: String,
        /// With a published offering supporting this contract model.
        #[arg(long, default_value = "", hide_default_value = true,
              value_parser = codes(ContractModel::ALL, ContractModel::code, ContractModel::label))]
        model: String,
    },
    /// Register a company (as itself: a company token for its credit code, or an admin).
    Create {
        /// 18-character unified social credit code.
        #[arg(long)]
        credit_code: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "", hide_default_value = true)]
        description: String,
        /// Town or sub-district served (repeat), a gazetteer town by Chinese name or code
        /// (新桥街道 or 320411004); none means all.
        #[arg(long = "town")]
        towns: Vec<String>,
        /// Sector served (repeat); none means all.
        #[arg(long = "sector", value_parser = codes(Sector::ALL, Sector::code, Sector::label))]
        sectors: Vec<String>,
        /// Certification grade claimed (ranked once the district confirms it).
        #[arg(long, default_value = "none",
              value_parser = codes(CertificationGrade::ALL, CertificationGrade::code, CertificationGrade::label))]
        grade: String,
        /// What backs the claimed grade: certificate number and issuing body.
        #[arg(long, default_value = "", hide_default_value = true)]
        evidence: String,
        /// What the company can invest in projects, yuan.
        #[arg(long, default_value_t = 0.0)]
        financing_yuan: f64,
        #[arg(long, default_value = "", hide_default_value = true)]
        contact_name: String,
        #[arg(long, default_value = "", hide_default_value = true)]
        phone: String,
        #[arg(long, default_value = "", hide_default_value = true)]
        email: String,
        /// Where the company is registered: a district's (city's, province's) code, e.g.
        /// 320412; its administrators act for it and confirm its grade. Default: the
        /// platform's district.
        #[arg(long, default_value = "", hide_default_value = true)]
        jurisdiction: String,
    },
    /// Confirm a company's claimed certification grade (administrators of the company's
    /// jurisdiction). The grade may be lower than claimed; `withdraw` withdraws a confirmation.
    ConfirmGrade {
        company_id: String,
        /// none, a, aa, aaa, aaaa, aaaaa, or withdraw.
        grade: String,
        /// Why, for the record: e.g. the certificate checked.
        #[arg(long, default_value = "", hide_default_value = true)]
        note: String,
    },
}

#[derive(Subcommand)]
pub enum OfferingsCommand {
    /// List offerings, filtered (others than the company see published ones).
    List {
        #[command(flatten)]
        list: ListArgs,
        /// Only this company's (its credit code or name).
        #[arg(long, default_value = "", hide_default_value = true)]
        company: String,
        #[arg(long, default_value = "", hide_default_value = true, value_parser = codes(Technology::ALL, Technology::code, Technology::label))]
        tech: String,
        #[arg(long, default_value = "", hide_default_value = true, value_parser = codes(ContractModel::ALL, ContractModel::code, ContractModel::label))]
        model: String,
        /// Only offerings in this state.
        #[arg(long, default_value = "", hide_default_value = true,
              value_parser = ["", "draft", "published", "withdrawn"])]
        status: String,
    },
    /// Create an offering of a company (as draft; --publish publishes it too).
    Create {
        /// The company (its credit code or name); default: the one you act for.
        #[arg(long, default_value = "", hide_default_value = true)]
        company: String,
        #[arg(long)]
        title: String,
        #[arg(long, default_value = "", hide_default_value = true)]
        description: String,
        /// Technology code (repeat), e.g. leak_detection, smart_metering.
        #[arg(long = "tech", required = true, value_parser = codes(Technology::ALL, Technology::code, Technology::label))]
        technologies: Vec<String>,
        /// Contract model code (repeat), e.g. shared_savings, guaranteed_savings.
        #[arg(long = "model", required = true, value_parser = codes(ContractModel::ALL, ContractModel::code, ContractModel::label))]
        models: Vec<String>,
        /// Sector served (repeat); none means the company's.
        #[arg(long = "sector", value_parser = codes(Sector::ALL, Sector::code, Sector::label))]
        sectors: Vec<String>,
        /// Town served (repeat), a gazetteer town by Chinese name or code; none means the
        /// company's.
        #[arg(long = "town")]
        towns: Vec<String>,
        #[arg(long, default_value_t = 0.0)]
        min_investment_yuan: f64,
        /// 0 for no limit.
        #[arg(long, default_value_t = 0.0)]
        max_investment_yuan: f64,
        /// Typical savings, percent of baseline use.
        #[arg(long, default_value_t = 20.0)]
        savings_pct: f64,
        #[arg(long, default_value_t = 96)]
        term_months: i32,
        /// Publish it at once.
        #[arg(long)]
        publish: bool,
    },
    /// Publish a draft offering: it becomes visible and rankable.
    Publish { offering_id: String },
    /// Withdraw a published offering.
    Withdraw {
        offering_id: String,
        #[arg(long, default_value = "", hide_default_value = true)]
        reason: String,
    },
}

#[derive(Subcommand)]
pub enum UsersCommand {
    /// List water users, filtered.
    List {
        #[command(flatten)]
        list: ListArgs,
        /// Exact unit type, e.g. university.
        #[arg(long, default_value = "", hide_default_value = true)]
        unit_type: String,
    },
    /// Register a water user (as itself: a water_user token for its credit code, or an admin).
    Create {
        #[arg(long)]
        credit_code: String,
        #[arg(long)]
        name: String,
        /// Sector code, e.g. school, hospital, industrial_enterprise.
        #[arg(long, value_parser = codes(Sector::ALL, Sector::code, Sector::label))]
        sector: String,
        /// Kind of unit, e.g. university, textile mill.
        #[arg(long, default_value = "", hide_default_value = true)]
        unit_type: String,
        /// Town or sub-district (镇/街道) of the gazetteer, by Chinese name or code (新桥街道 or
        /// 320411004); an unknown one is refused with the valid ones named.
        #[arg(long)]
        town: String,
        /// Water used last year, m³.
        #[arg(long, default_value_t = 0)]
        annual_use_m3: i64,
        /// Planned-use quota, m³ a year.
        #[arg(long, default_value_t = 0)]
        annual_quota_m3: i64,
        #[arg(long, default_value = "", hide_default_value = true)]
        contact_name: String,
        #[arg(long, default_value = "", hide_default_value = true)]
        phone: String,
        #[arg(long, default_value = "", hide_default_value = true)]
        email: String,
    },
}

#[derive(Subcommand)]
pub enum RequestsCommand {
    /// List project requests (those the caller may see), filtered.
    List {
        #[command(flatten)]
        list: ListArgs,
        /// Only this water user's (its credit code or name).
        #[arg(long, default_value = "", hide_default_value = true)]
        water_user: String,
        #[arg(long, default_value = "", hide_default_value = true, value_parser = codes(Technology::ALL, Technology::code, Technology::label))]
        tech: String,
        #[arg(long, default_value = "", hide_default_value = true, value_parser = codes(ContractModel::ALL, ContractModel::code, ContractModel::label))]
        model: String,
        /// Only requests in this state.
        #[arg(long, default_value = "", hide_default_value = true,
              value_parser = ["", "draft", "open", "closed", "awarded", "cancelled"])]
        status: String,
    },
    /// Create a request (as draft) and open it to proposals.
    Create {
        /// The water user asking (its credit code or name); default: the one you act for.
        #[arg(long, default_value = "", hide_default_value = true)]
        water_user: String,
        /// What the project is, e.g. 教学楼供水管网查漏修复.
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
        #[arg(long = "model", value_parser = codes(ContractModel::ALL, ContractModel::code, ContractModel::label))]
        models: Vec<String>,
        /// Wanted technology codes, e.g. leak_detection.
        #[arg(long = "tech", value_parser = codes(Technology::ALL, Technology::code, Technology::label))]
        technologies: Vec<String>,
        /// Last day proposals are taken, YYYY-MM-DD.
        #[arg(long, default_value = "", hide_default_value = true)]
        deadline: String,
        /// Invite only these companies (credit code or name; repeat); none makes the request
        /// public.
        #[arg(long = "invite")]
        invited: Vec<String>,
    },
    /// Offerings ranked for a request, with the parts of each score.
    Rank {
        request_id: String,
        /// How many ranked offerings to show.
        #[arg(long, default_value_t = 20)]
        limit: i32,
    },
    /// For a company: the open requests that fit its offerings, best first.
    Fitting {
        /// The company (its credit code or name); default: the one you act for.
        #[arg(long, default_value = "", hide_default_value = true)]
        company: String,
        #[command(flatten)]
        page: Paging,
    },
    /// Benchmark: rank one request against 1,000, 10,000 and 100,000 offerings (in process and
    /// over gRPC, then under load); prints p50/p99 per ranking. Needs no server: it starts its
    /// own matching service on a temporary SQLite file.
    BenchRank(crate::bench::rank::BenchArgs),
}

#[derive(Subcommand)]
pub enum ProposalsCommand {
    /// Proposals on a request, side by side.
    List { request_id: String },
    /// Propose on a request, for a company.
    Create {
        /// The request proposed on (its id).
        #[arg(long)]
        request: String,
        /// The company proposing (its credit code or name); default: the one you act for.
        #[arg(long, default_value = "", hide_default_value = true)]
        company: String,
        /// The offering it builds on.
        #[arg(long, default_value = "", hide_default_value = true)]
        offering: String,
        /// What the company will do, e.g. 管网听音检漏、更换老化管段.
        #[arg(long)]
        measures: String,
        #[arg(long, default_value_t = 0.0)]
        investment_yuan: f64,
        /// Savings promised, m³ a year.
        #[arg(long)]
        savings_m3: i64,
        /// Savings promised, percent of the baseline.
        #[arg(long, default_value_t = 0.0)]
        savings_pct: f64,
        /// Contract model code, e.g. shared_savings.
        #[arg(long, value_parser = codes(ContractModel::ALL, ContractModel::code, ContractModel::label))]
        model: String,
        /// The company's share of the savings, percent (sharing models).
        #[arg(long, default_value_t = 0.0)]
        share_pct: f64,
        #[arg(long, default_value_t = 0)]
        sharing_months: i32,
        /// Guaranteed saving, m³ a year (guarantee models).
        #[arg(long, default_value_t = 0)]
        guaranteed_m3: i64,
        /// Price of each m³ short of the guarantee, yuan.
        #[arg(long, default_value_t = 0.0)]
        shortfall_yuan: f64,
        /// Yearly hosting fee, yuan (hosting models).
        #[arg(long, default_value_t = 0.0)]
        hosting_fee_yuan: f64,
        #[arg(long, default_value_t = 96)]
        term_months: i32,
        /// IPMVP option: a, b or c.
        #[arg(long, default_value = "c", value_parser = codes(MvOption::ALL, MvOption::code, MvOption::label))]
        mv: String,
        /// Baseline driver (repeat), e.g. occupancy.
        #[arg(long = "driver")]
        drivers: Vec<String>,
    },
    /// Accept a proposal: starts the project; the other proposals are declined.
    Accept { proposal_id: String },
    /// Decline a proposal, saying why (the company sees the reason).
    Decline {
        proposal_id: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Args)]
pub struct CompaniesArgs {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub command: CompaniesCommand,
}

fn company_row(x: &mpb::Company) -> Vec<String> {
    let t = x.track_record.unwrap_or_default();
    vec![
        x.id.clone(),
        x.name.clone(),
        x.credit_code.clone(),
        certification_text(x),
        yuan(x.financing_capacity_fen),
        x.towns.join(", "),
        format!(
            "{} done, {}/{} m³ verified",
            t.projects_completed,
            t.verified_savings_litres / 1000,
            t.promised_savings_litres / 1000
        ),
    ]
}

/// The grade as the marketplace trusts it: the confirmed one, and a claim beyond it.
fn certification_text(x: &mpb::Company) -> String {
    let lang = super::text::lang();
    let label = |n: i32| CertificationGrade::from_number(n).map(|g| g.name(lang));
    match (
        label(x.certification_grade),
        label(x.confirmed_certification_grade),
    ) {
        (Some(claimed), None) if x.certification_grade != CertificationGrade::None.number() => {
            super::text::pick(
                &format!("{claimed}（自称，未确认）"),
                &format!("{claimed} (claimed, unconfirmed)"),
            )
            .to_string()
        }
        (Some(claimed), Some(confirmed))
            if x.certification_grade != x.confirmed_certification_grade =>
        {
            super::text::pick(
                &format!("{confirmed}（自称{claimed}）"),
                &format!("{confirmed} (claimed {claimed})"),
            )
            .to_string()
        }
        (_, Some(confirmed)) => confirmed.to_string(),
        (claimed, None) => claimed.unwrap_or_default().to_string(),
    }
}

const COMPANY_HEADERS: [&str; 7] = [
    "id",
    "name",
    "credit_code",
    "certification",
    "financing_yuan",
    "towns",
    "track_record",
];

pub async fn companies(args: CompaniesArgs) -> anyhow::Result<()> {
    let CompaniesArgs { conn, command } = args;
    let c = Clients::connect(&conn).await?;
    let (a, min_grade, tech, model) = match command {
        CompaniesCommand::List {
            list,
            min_grade,
            tech,
            model,
        } => (list, min_grade, tech, model),
        CompaniesCommand::Create {
            credit_code,
            name,
            description,
            towns,
            sectors,
            grade,
            evidence,
            financing_yuan,
            contact_name,
            phone,
            email,
            jurisdiction,
        } => {
            let created = c
                .matching()
                .create_company(mpb::CreateCompanyRequest {
                    request_id: request_id(),
                    company: Some(mpb::Company {
                        credit_code,
                        name,
                        description,
                        contact: contact(contact_name, phone, email),
                        towns,
                        sectors: numbers("sector", &sectors, Sector::from_code, Sector::number)?,
                        certification_grade: code_number(
                            "grade",
                            &grade,
                            CertificationGrade::from_code,
                            CertificationGrade::number,
                        )?,
                        certification_evidence: evidence,
                        financing_capacity_fen: fen(financing_yuan),
                        jurisdiction_code: jurisdiction,
                        ..Default::default()
                    }),
                })
                .await?
                .into_inner()
                .company
                .context("empty reply")?;
            Output {
                headers: COMPANY_HEADERS.to_vec(),
                rows: vec![company_row(&created)],
            }
            .print_or(conn.format(), || api_json(&created))?;
            return Ok(());
        }
        CompaniesCommand::ConfirmGrade {
            company_id,
            grade,
            note,
        } => {
            let grade = if grade.eq_ignore_ascii_case("withdraw") {
                0
            } else {
                code_number(
                    "grade",
                    &grade.to_lowercase(),
                    CertificationGrade::from_code,
                    CertificationGrade::number,
                )?
            };
            let confirmed = c
                .matching()
                .confirm_certification(mpb::ConfirmCertificationRequest {
                    request_id: request_id(),
                    company_id,
                    grade,
                    note,
                    expected_version: 0,
                })
                .await?
                .into_inner()
                .company
                .context("empty reply")?;
            Output {
                headers: COMPANY_HEADERS.to_vec(),
                rows: vec![company_row(&confirmed)],
            }
            .print_or(conn.format(), || api_json(&confirmed))?;
            return Ok(());
        }
    };
    let filter = mpb::ListCompaniesRequest {
        sector: code_number("sector", &a.sector, Sector::from_code, Sector::number)?,
        town: a.town,
        query: a.query,
        technology: technology(&tech)?,
        contract_model: contract_model(&model)?,
        min_certification_grade: code_number(
            "min-grade",
            &min_grade,
            CertificationGrade::from_code,
            CertificationGrade::number,
        )?,
        ..Default::default()
    };
    let (companies, next) = pages!(
        a.page,
        c.matching(),
        list_companies,
        filter.clone(),
        companies
    )
    .await?;
    Output {
        headers: COMPANY_HEADERS.to_vec(),
        rows: companies.iter().map(company_row).collect(),
    }
    .print_or(conn.format(), || api_json_list(&companies))?;
    more(&next, conn.format());
    Ok(())
}

#[derive(Args)]
pub struct OfferingsArgs {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub command: OfferingsCommand,
}

/// A `--tech` filter as its proto number (0: any).
fn technology(code: &str) -> anyhow::Result<i32> {
    code_number("tech", code, Technology::from_code, Technology::number)
}

/// A `--model` filter as its proto number (0: any).
fn contract_model(code: &str) -> anyhow::Result<i32> {
    code_number(
        "model",
        code,
        ContractModel::from_code,
        ContractModel::number,
    )
}

fn offering_status(code: &str) -> anyhow::Result<i32> {
    Ok(match code {
        "" => 0,
        "draft" => mpb::OfferingStatus::Draft as i32,
        "published" => mpb::OfferingStatus::Published as i32,
        "withdrawn" => mpb::OfferingStatus::Withdrawn as i32,
        other => anyhow::bail!("unknown status {other:?}: draft, published or withdrawn"),
    })
}

pub async fn offerings(args: OfferingsArgs) -> anyhow::Result<()> {
    let OfferingsArgs { conn, command } = args;
    let c = Clients::connect(&conn).await?;
    let (offerings, next) = match command {
        OfferingsCommand::List {
            list: a,
            company,
            tech,
            model,
            status,
        } => {
            let filter = mpb::ListOfferingsRequest {
                company_id: c.org_filter(OrgKind::Company, "company", &company).await?,
                sector: code_number("sector", &a.sector, Sector::from_code, Sector::number)?,
                town: a.town,
                technology: technology(&tech)?,
                contract_model: contract_model(&model)?,
                status: offering_status(&status)?,
                query: a.query,
                ..Default::default()
            };
            let (offerings, next) = pages!(
                a.page,
                c.matching(),
                list_offerings,
                filter.clone(),
                offerings
            )
            .await?;
            (offerings, next)
        }
        OfferingsCommand::Create {
            company,
            title,
            description,
            technologies,
            models,
            sectors,
            towns,
            min_investment_yuan,
            max_investment_yuan,
            savings_pct,
            term_months,
            publish,
        } => {
            let mut m = c.matching();
            let mut created = m
                .create_offering(mpb::CreateOfferingRequest {
                    request_id: request_id(),
                    offering: Some(mpb::Offering {
                        company_id: c.org_id(OrgKind::Company, "company", &company).await?,
                        title,
                        description,
                        technologies: numbers(
                            "tech",
                            &technologies,
                            Technology::from_code,
                            Technology::number,
                        )?,
                        contract_models: numbers(
                            "model",
                            &models,
                            ContractModel::from_code,
                            ContractModel::number,
                        )?,
                        sectors: numbers("sector", &sectors, Sector::from_code, Sector::number)?,
                        towns,
                        min_investment_fen: fen(min_investment_yuan),
                        max_investment_fen: fen(max_investment_yuan),
                        typical_savings_bp: bp(savings_pct),
                        typical_term_months: term_months,
                        ..Default::default()
                    }),
                })
                .await?
                .into_inner()
                .offering
                .context("empty reply")?;
            if publish {
                created = m
                    .publish_offering(mpb::PublishOfferingRequest {
                        request_id: request_id(),
                        offering_id: created.id.clone(),
                        expected_version: created.version,
                    })
                    .await?
                    .into_inner()
                    .offering
                    .context("empty reply")?;
            }
            (vec![created], String::new())
        }
        OfferingsCommand::Publish { offering_id } => {
            let published = c
                .matching()
                .publish_offering(mpb::PublishOfferingRequest {
                    request_id: request_id(),
                    offering_id,
                    expected_version: 0,
                })
                .await?
                .into_inner()
                .offering
                .context("empty reply")?;
            (vec![published], String::new())
        }
        OfferingsCommand::Withdraw {
            offering_id,
            reason,
        } => {
            let withdrawn = c
                .matching()
                .withdraw_offering(mpb::WithdrawOfferingRequest {
                    request_id: request_id(),
                    offering_id,
                    expected_version: 0,
                    reason,
                })
                .await?
                .into_inner()
                .offering
                .context("empty reply")?;
            (vec![withdrawn], String::new())
        }
    };
    let rows = offerings
        .iter()
        .map(|o| {
            vec![
                o.id.clone(),
                o.title.clone(),
                o.technologies
                    .iter()
                    .map(|t| {
                        name_of(
                            *t,
                            Technology::from_number,
                            Technology::code,
                            Technology::name,
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                o.contract_models
                    .iter()
                    .map(|m| {
                        name_of(
                            *m,
                            ContractModel::from_number,
                            ContractModel::code,
                            ContractModel::name,
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                format!("{:.1}%", f64::from(o.typical_savings_bp) / 100.0),
                mpb::OfferingStatus::try_from(o.status)
                    .map(|s| {
                        s.as_str_name()
                            .trim_start_matches("OFFERING_STATUS_")
                            .to_lowercase()
                    })
                    .map(|code| super::text::state(&code))
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
    .print_or(conn.format(), || api_json_list(&offerings))?;
    more(&next, conn.format());
    Ok(())
}

#[derive(Args)]
pub struct UsersArgs {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub command: UsersCommand,
}

fn user_row(u: &mpb::WaterUser) -> Vec<String> {
    vec![
        u.id.clone(),
        u.name.clone(),
        u.credit_code.clone(),
        name_of(u.sector, Sector::from_number, Sector::code, Sector::name),
        u.unit_type.clone(),
        u.town.clone(),
        u.jurisdiction_code.clone(),
        (u.annual_use_litres / 1000).to_string(),
        if u.planned_use_supervised {
            "yes"
        } else {
            "no"
        }
        .to_string(),
    ]
}

const USER_HEADERS: [&str; 9] = [
    "id",
    "name",
    "credit_code",
    "sector",
    "unit_type",
    "town",
    "jurisdiction_code",
    "annual_use_m3",
    "planned_use",
];

pub async fn users(args: UsersArgs) -> anyhow::Result<()> {
    let UsersArgs { conn, command } = args;
    let c = Clients::connect(&conn).await?;
    match command {
        UsersCommand::List { list: a, unit_type } => {
            let filter = mpb::ListWaterUsersRequest {
                sector: code_number("sector", &a.sector, Sector::from_code, Sector::number)?,
                town: a.town,
                unit_type,
                query: a.query,
                ..Default::default()
            };
            let (water_users, next) = pages!(
                a.page,
                c.matching(),
                list_water_users,
                filter.clone(),
                water_users
            )
            .await?;
            Output {
                headers: USER_HEADERS.to_vec(),
                rows: water_users.iter().map(user_row).collect(),
            }
            .print_or(conn.format(), || api_json_list(&water_users))?;
            more(&next, conn.format());
        }
        UsersCommand::Create {
            credit_code,
            name,
            sector,
            unit_type,
            town,
            annual_use_m3,
            annual_quota_m3,
            contact_name,
            phone,
            email,
        } => {
            let created = c
                .matching()
                .create_water_user(mpb::CreateWaterUserRequest {
                    request_id: request_id(),
                    water_user: Some(mpb::WaterUser {
                        credit_code,
                        name,
                        sector: code_number("sector", &sector, Sector::from_code, Sector::number)?,
                        unit_type,
                        town,
                        annual_use_litres: annual_use_m3 * 1000,
                        annual_quota_litres: annual_quota_m3 * 1000,
                        contact: contact(contact_name, phone, email),
                        ..Default::default()
                    }),
                })
                .await?
                .into_inner()
                .water_user
                .context("empty reply")?;
            Output {
                headers: USER_HEADERS.to_vec(),
                rows: vec![user_row(&created)],
            }
            .print_or(conn.format(), || api_json(&created))?;
        }
    }
    Ok(())
}

fn request_status(code: &str) -> anyhow::Result<i32> {
    Ok(match code {
        "" => 0,
        "draft" => mpb::ProjectRequestStatus::Draft as i32,
        "open" => mpb::ProjectRequestStatus::Open as i32,
        "closed" => mpb::ProjectRequestStatus::Closed as i32,
        "awarded" => mpb::ProjectRequestStatus::Awarded as i32,
        "cancelled" => mpb::ProjectRequestStatus::Cancelled as i32,
        other => {
            anyhow::bail!("unknown status {other:?}: draft, open, closed, awarded or cancelled")
        }
    })
}

/// A score part's name as a word of the CLI's table ([`super::text`]).
fn part_word(name: &str) -> &'static str {
    cwsm_matching::ranking::WEIGHTS
        .iter()
        .map(|(n, _)| *n)
        .find(|n| *n == name)
        .unwrap_or("score")
}

fn parts_text(parts: &[mpb::ScorePart]) -> String {
    parts
        .iter()
        .map(|p| {
            format!(
                "{} {:.2}×{:.2}: {}",
                super::text::tr(part_word(&p.name)),
                p.weight,
                p.value,
                p.explanation
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
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
    if let RequestsCommand::BenchRank(bench) = command {
        return crate::bench::rank::run(bench).await;
    }
    let c = Clients::connect(&conn).await?;
    match command {
        // Run above, before connecting.
        RequestsCommand::BenchRank(_) => {}
        RequestsCommand::List {
            list: a,
            water_user,
            tech,
            model,
            status,
        } => {
            let filter = mpb::ListProjectRequestsRequest {
                water_user_id: c
                    .org_filter(OrgKind::WaterUser, "water-user", &water_user)
                    .await?,
                sector: code_number("sector", &a.sector, Sector::from_code, Sector::number)?,
                town: a.town,
                technology: technology(&tech)?,
                contract_model: contract_model(&model)?,
                status: request_status(&status)?,
                query: a.query,
                ..Default::default()
            };
            let (project_requests, next) = pages!(
                a.page,
                c.matching(),
                list_project_requests,
                filter.clone(),
                project_requests
            )
            .await?;
            let rows = project_requests
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
                            .map(|code| super::text::state(&code))
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
            .print_or(conn.format(), || api_json_list(&project_requests))?;
            more(&next, conn.format());
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
            deadline,
            invited,
        } => {
            let mut m = c.matching();
            let mut invited_company_ids = Vec::with_capacity(invited.len());
            for named in &invited {
                invited_company_ids.push(c.org_id(OrgKind::Company, "invite", named).await?);
            }
            let draft = mpb::ProjectRequest {
                water_user_id: c
                    .org_id(OrgKind::WaterUser, "water-user", &water_user)
                    .await?,
                title,
                baseline_use_litres: litres("baseline-m3", baseline_m3)?,
                expected_savings_bp: (savings_pct * 100.0).round() as i32,
                investment_wanted_fen: investment_yuan
                    .checked_mul(100)
                    .with_context(|| format!("--investment-yuan {investment_yuan}: too large"))?,
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
                proposal_deadline: deadline,
                visibility: if invited.is_empty() {
                    mpb::RequestVisibility::Public as i32
                } else {
                    mpb::RequestVisibility::Invited as i32
                },
                invited_company_ids,
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
                rows: vec![vec![opened.id.clone(), opened.title.clone(), "open".into()]],
            }
            .print_or(conn.format(), || api_json(&opened))?;
        }
        RequestsCommand::Rank {
            request_id: id,
            limit,
        } => {
            let reply = c
                .matching()
                .rank_offerings(mpb::RankOfferingsRequest {
                    project_request_id: id,
                    page_size: limit,
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
                        parts_text(&r.parts),
                    ]
                })
                .collect();
            Output {
                headers: vec!["rank", "score", "company", "offering", "why"],
                rows,
            }
            .print_or(conn.format(), || api_json(&reply))?;
            if conn.format() == Format::Table {
                match super::text::lang() {
                    Lang::Zh => println!(
                        "{} 个服务方案通过硬性条件，{} 个被排除",
                        reply.ranked_total, reply.excluded_total
                    ),
                    Lang::En => println!(
                        "{} offerings passed the hard filters; {} excluded",
                        reply.ranked_total, reply.excluded_total
                    ),
                }
                for x in &reply.excluded_offerings {
                    match super::text::lang() {
                        Lang::Zh => println!(
                            "  {} / {}：{}",
                            x.company_name, x.offering_title, x.explanation
                        ),
                        Lang::En => println!(
                            "  {} / {}: {} ({})",
                            x.company_name, x.offering_title, x.explanation, x.filter
                        ),
                    }
                }
            }
        }
        RequestsCommand::Fitting { company, page } => {
            let company_id = c.org_id(OrgKind::Company, "company", &company).await?;
            let (fitting, next) = pages!(
                page,
                c.matching(),
                list_fitting_requests,
                mpb::ListFittingRequestsRequest {
                    company_id: company_id.clone(),
                    ..Default::default()
                },
                fitting_requests
            )
            .await?;
            let rows = fitting
                .iter()
                .map(|f| {
                    let r = f.project_request.clone().unwrap_or_default();
                    vec![
                        format!("{:.3}", f.score),
                        r.id,
                        r.title,
                        r.water_user.map(|u| u.name).unwrap_or_default(),
                        yuan(r.investment_wanted_fen),
                        r.proposal_deadline,
                        f.offering_id.clone(),
                        parts_text(&f.parts),
                    ]
                })
                .collect();
            Output {
                headers: vec![
                    "score",
                    "request",
                    "title",
                    "water_user",
                    "investment_yuan",
                    "deadline",
                    "best_offering",
                    "why",
                ],
                rows,
            }
            .print_or(conn.format(), || api_json_list(&fitting))?;
            more(&next, conn.format());
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
                            ContractModel::name,
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
                            .map(|code| super::text::state(&code))
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
            .print_or(conn.format(), || api_json(&reply))?;
        }
        ProposalsCommand::Create {
            request,
            company,
            offering,
            measures,
            investment_yuan,
            savings_m3,
            savings_pct,
            model,
            share_pct,
            sharing_months,
            guaranteed_m3,
            shortfall_yuan,
            hosting_fee_yuan,
            term_months,
            mv,
            drivers,
        } => {
            let created = c
                .matching()
                .create_proposal(mpb::CreateProposalRequest {
                    request_id: request_id(),
                    proposal: Some(mpb::Proposal {
                        project_request_id: request,
                        company_id: c.org_id(OrgKind::Company, "company", &company).await?,
                        offering_id: offering,
                        measures,
                        investment_fen: fen(investment_yuan),
                        promised_savings_litres: litres("savings-m3", savings_m3)?,
                        promised_savings_bp: bp(savings_pct),
                        contract_model: code_number(
                            "model",
                            &model,
                            ContractModel::from_code,
                            ContractModel::number,
                        )?,
                        terms: Some(types::ContractTerms {
                            share_ratio_bp: bp(share_pct),
                            sharing_period_months: sharing_months,
                            guaranteed_savings_litres: litres("guaranteed-m3", guaranteed_m3)?,
                            shortfall_price_fen_per_m3: fen(shortfall_yuan),
                            hosting_fee_fen: fen(hosting_fee_yuan),
                            ..Default::default()
                        }),
                        contract_term_months: term_months,
                        mv_option: code_number("mv", &mv, MvOption::from_code, MvOption::number)?,
                        drivers,
                        ..Default::default()
                    }),
                })
                .await?
                .into_inner()
                .proposal
                .context("empty reply")?;
            Output {
                headers: vec!["proposal", "yuan_per_m3_saved", "payback_months", "status"],
                rows: vec![vec![
                    created.id.clone(),
                    yuan(created.cost_per_m3_saved_fen),
                    created.payback_months.to_string(),
                    "submitted".into(),
                ]],
            }
            .print_or(conn.format(), || api_json(&created))?;
        }
        ProposalsCommand::Decline {
            proposal_id,
            reason,
        } => {
            let declined = c
                .matching()
                .decline_proposal(mpb::DeclineProposalRequest {
                    request_id: request_id(),
                    proposal_id,
                    expected_version: 0,
                    reason,
                })
                .await?
                .into_inner()
                .proposal
                .context("empty reply")?;
            Output {
                headers: vec!["proposal", "status", "reason"],
                rows: vec![vec![
                    declined.id.clone(),
                    "declined".into(),
                    declined.decline_reason.clone(),
                ]],
            }
            .print_or(conn.format(), || api_json(&declined))?;
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
            // The projects service starts the project from the acceptance event: wait for it,
            // so that what the next command names exists.
            let project = super::projects::wait_for_project(&c, &reply.project_id).await?;
            Output {
                headers: vec!["project", "proposal", "title", "stage"],
                rows: vec![vec![
                    project.id.clone(),
                    reply
                        .proposal
                        .as_ref()
                        .map(|p| p.id.clone())
                        .unwrap_or_default(),
                    project.title.clone(),
                    stage_name(project.stage),
                ]],
            }
            .print_or(conn.format(), || api_json(&project))?;
        }
    }
    Ok(())
}
