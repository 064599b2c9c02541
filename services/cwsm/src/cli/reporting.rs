//! `cwsm report`: the action plan's indicators: the status table, `--json`, `--export FILE`
//! (CSV or Excel), and `load`, `record`, `correct`, `approve`, `reject`, `rollup`, `rebuild`,
//! `bench`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use cwsm_platform::lang::Lang;
use cwsm_platform::vocab::Sector;
use cwsm_proto::reporting::v1 as rpb;

use super::{Clients, Connection, Format, Output, api_json, code_number, codes, request_id};

#[derive(Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub conn: Connection,
    /// Plan code.
    #[arg(long, default_value = "xinbei-2020", global = true)]
    pub plan: String,
    /// Plan version [default: the latest].
    #[arg(long, default_value_t = 0)]
    pub version: i64,
    /// Report as of this date (YYYY-MM-DD) [default: today].
    #[arg(long, default_value = "", hide_default_value = true)]
    pub date: String,
    /// Write the report to FILE instead: CSV (.csv) or an Excel workbook (.xlsx).
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<ReportCommand>,
}

#[derive(Subcommand)]
pub enum ReportCommand {
    /// Load a plan from a TOML file as a new version of its code (administrators).
    Load {
        file: PathBuf,
        /// Only check it; store nothing.
        #[arg(long)]
        validate_only: bool,
    },
    /// List the plans (the latest version of each code, or every version).
    Plans {
        #[arg(long)]
        all_versions: bool,
    },
    /// Record an achievement toward a recorded indicator (administrators).
    Record {
        /// Indicator code, e.g. A2-GOV-AGENCIES.
        #[arg(long)]
        indicator: String,
        /// The unit that qualified, e.g. "新北区教育局", or "district" for a measured goal.
        #[arg(long)]
        unit: String,
        /// When it was achieved or measured (YYYY-MM-DD).
        #[arg(long)]
        achieved: String,
        /// Reference to the evidence: document number, file name, URL.
        #[arg(long)]
        evidence: String,
        /// Value in the indicator's unit (1 for a unit recognized).
        #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
        value: f64,
        /// Department code recording it, e.g. edu.
        #[arg(long, default_value = "", hide_default_value = true)]
        department: String,
        #[arg(long, default_value = "", hide_default_value = true)]
        town: String,
        /// Sector code, e.g. school.
        #[arg(long, default_value = "", hide_default_value = true, value_parser = codes(Sector::ALL, Sector::code, Sector::label))]
        sector: String,
        #[arg(long, default_value = "", hide_default_value = true)]
        note: String,
    },
    /// List recorded achievements.
    Achievements {
        #[arg(long, default_value = "", hide_default_value = true)]
        indicator: String,
        #[arg(long)]
        include_retracted: bool,
    },
    /// Correct (or retract) an achievement; the earlier revisions are kept.
    Correct {
        achievement_id: String,
        /// Why; required.
        #[arg(long)]
        reason: String,
        #[arg(long, allow_negative_numbers = true)]
        value: Option<f64>,
        #[arg(long)]
        achieved: Option<String>,
        #[arg(long)]
        evidence: Option<String>,
        #[arg(long)]
        retract: bool,
    },
    /// Approve a pending achievement (a lead department of its indicator, or the district office).
    Approve {
        achievement_id: String,
        /// Kept with the approval.
        #[arg(long, default_value = "", hide_default_value = true)]
        note: String,
    },
    /// Reject a pending achievement, with the reason (a lead department, or the district office).
    Reject {
        achievement_id: String,
        /// Why; required.
        #[arg(long)]
        reason: String,
    },
    /// A city's or province's report over its districts' plans: totals where they add up, one
    /// row per district (`--date` as for the report).
    Rollup {
        /// City or province code, e.g. 320400 (常州市) or 320000 (江苏省).
        jurisdiction: String,
        /// The plans' year [default: the year of --date].
        #[arg(long, default_value_t = 0)]
        year: i32,
    },
    /// Evidence documents of the plan's achievements (--plan): upload one (administrators who
    /// record them), save one, or list them. An achievement cites one as "sha256:<hex>".
    #[command(subcommand)]
    Evidence(EvidenceCommand),
    /// Rebuild the counts from the projects service's milestone log (administrators).
    Rebuild,
    /// The projects a counted indicator counts, in the order they were counted (the plan's
    /// administrators): project, water user, company, town, milestone and when it took effect.
    Counted {
        /// Indicator code, e.g. A8-CONTRACT-PROJECTS.
        #[arg(long)]
        indicator: String,
        /// Only projects of this town or sub-district.
        #[arg(long, default_value = "", hide_default_value = true)]
        town: String,
        /// Only projects of water users of this sector.
        #[arg(long, default_value = "", hide_default_value = true,
              value_parser = codes(Sector::ALL, Sector::code, Sector::label))]
        sector: String,
        #[command(flatten)]
        page: super::Paging,
    },
    /// Events the consumer set aside (undecodable, unknown milestone, no project).
    DeadLetters,
    /// Benchmark the report and event application on a scratch database (runs locally; no
    /// server needed).
    Bench {
        /// Fact counts to run with.
        #[arg(long, value_delimiter = ',', default_values_t = [10_000usize, 100_000])]
        facts: Vec<usize>,
        /// Report calls per run.
        #[arg(long, default_value_t = 200)]
        calls: usize,
        /// Districts of the roll-up case's province (0: skip the case).
        #[arg(long, default_value_t = 100)]
        rollup_districts: usize,
        /// Facts each district plan counts in the roll-up case.
        #[arg(long, default_value_t = 10_000)]
        rollup_facts: usize,
    },
}

fn status_code(n: i32) -> String {
    rpb::ProgressStatus::try_from(n)
        .map(|x| {
            x.as_str_name()
                .trim_start_matches("PROGRESS_STATUS_")
                .to_lowercase()
        })
        .unwrap_or_default()
}

/// The status as the dashboard and the exports show it: "achieved_late 逾期完成（晚15天）".
fn status_label(s: &rpb::IndicatorStatus) -> String {
    status_label_of(s.status, s.days_late)
}

/// [`status_label`] of a status number and its days late (a roll-up's rows).
fn status_label_of(status: i32, days_late: i32) -> String {
    let code = status_code(status);
    match (
        cwsm_reporting::report::Status::from_code(&code),
        super::text::lang(),
    ) {
        (Some(status), Lang::Zh) => status.label_zh_with(days_late),
        (Some(status), Lang::En) => format!("{code} {}", status.label_zh_with(days_late)),
        (None, _) => code,
    }
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

pub async fn report(args: ReportArgs) -> anyhow::Result<()> {
    let ReportArgs {
        conn,
        plan,
        version,
        date,
        export,
        command,
    } = args;
    if let Some(ReportCommand::Bench {
        facts,
        calls,
        rollup_districts,
        rollup_facts,
    }) = &command
    {
        crate::bench::report::report(facts, *calls, conn.format()).await?;
        if *rollup_districts > 0 {
            return crate::bench::report::rollup(
                *rollup_districts,
                *rollup_facts,
                *calls,
                conn.format(),
            )
            .await;
        }
        return Ok(());
    }
    let c = Clients::connect(&conn).await?;
    match command {
        None => match export {
            Some(file) => export_to(&c, plan, version, date, file).await,
            None => table(&c, &conn, plan, version, date).await,
        },
        Some(ReportCommand::Load {
            file,
            validate_only,
        }) => {
            let toml = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let p = c
                .reporting()
                .load_plan(rpb::LoadPlanRequest {
                    request_id: request_id(),
                    plan_toml: toml,
                    validate_only,
                })
                .await?
                .into_inner()
                .plan
                .context("empty reply")?;
            let what = if validate_only {
                "valid; would load as"
            } else {
                "loaded"
            };
            if conn.json {
                println!(
                    "{}",
                    serde_json::json!({"code": p.code, "version": p.version, "id": p.id,
                        "indicators": p.goals.len() + p.indicators.len(), "validate_only": validate_only})
                );
            } else {
                println!(
                    "{what} {} version {} ({} goals, {} indicators){}",
                    p.code,
                    p.version,
                    p.goals.len(),
                    p.indicators.len(),
                    if p.id.is_empty() {
                        String::new()
                    } else {
                        format!(", id {}", p.id)
                    }
                );
            }
            Ok(())
        }
        Some(ReportCommand::Plans { all_versions }) => {
            let plans = every!(
                c.reporting(),
                list_plans,
                rpb::ListPlansRequest {
                    all_versions,
                    ..Default::default()
                },
                plans
            )
            .await?;
            let rows = plans
                .iter()
                .map(|p| {
                    vec![
                        p.code.clone(),
                        p.version.to_string(),
                        format!("{} {}", p.title_zh, p.title),
                        p.year.to_string(),
                        p.loaded_by.clone(),
                        p.id.clone(),
                    ]
                })
                .collect();
            Output {
                headers: vec!["code", "version", "title", "year", "loaded_by", "id"],
                rows,
            }
            .print(conn.format());
            Ok(())
        }
        Some(ReportCommand::Record {
            indicator,
            unit,
            achieved,
            evidence,
            value,
            department,
            town,
            sector,
            note,
        }) => {
            let sector = code_number("sector", &sector, Sector::from_code, Sector::number)?;
            let a = c
                .reporting()
                .record_achievement(rpb::RecordAchievementRequest {
                    request_id: request_id(),
                    plan_code: plan,
                    indicator_code: indicator,
                    unit_name: unit,
                    achieved_date: achieved,
                    evidence,
                    value,
                    note,
                    department,
                    town,
                    sector,
                })
                .await?
                .into_inner()
                .achievement
                .context("empty reply")?;
            print_achievements(&[a], conn.format());
            Ok(())
        }
        Some(ReportCommand::Achievements {
            indicator,
            include_retracted,
        }) => {
            let achievements = every!(
                c.reporting(),
                list_achievements,
                rpb::ListAchievementsRequest {
                    plan_code: plan.clone(),
                    indicator_code: indicator.clone(),
                    include_retracted,
                    ..Default::default()
                },
                achievements
            )
            .await?;
            print_achievements(&achievements, conn.format());
            Ok(())
        }
        Some(ReportCommand::Correct {
            achievement_id,
            reason,
            value,
            achieved,
            evidence,
            retract,
        }) => {
            // Unchanged fields keep the current revision's values.
            // Every page: the one corrected may be past the first 500.
            let current = every!(
                c.reporting(),
                list_achievements,
                rpb::ListAchievementsRequest {
                    include_retracted: true,
                    ..Default::default()
                },
                achievements
            )
            .await?
            .into_iter()
            .find(|a| a.id == achievement_id)
            .with_context(|| format!("no achievement {achievement_id}"))?;
            let a = c
                .reporting()
                .correct_achievement(rpb::CorrectAchievementRequest {
                    request_id: request_id(),
                    achievement_id,
                    expected_version: current.version,
                    value: value.unwrap_or(current.value),
                    achieved_date: achieved.unwrap_or(current.achieved_date),
                    evidence: evidence.unwrap_or(current.evidence),
                    note: current.note,
                    retract,
                    reason,
                })
                .await?
                .into_inner()
                .achievement
                .context("empty reply")?;
            print_achievements(&[a], conn.format());
            Ok(())
        }
        Some(ReportCommand::Approve {
            achievement_id,
            note,
        }) => {
            let a = c
                .reporting()
                .approve_achievement(rpb::ApproveAchievementRequest {
                    request_id: request_id(),
                    achievement_id,
                    expected_version: 0,
                    note,
                })
                .await?
                .into_inner()
                .achievement
                .context("empty reply")?;
            print_achievements(&[a], conn.format());
            Ok(())
        }
        Some(ReportCommand::Reject {
            achievement_id,
            reason,
        }) => {
            let a = c
                .reporting()
                .reject_achievement(rpb::RejectAchievementRequest {
                    request_id: request_id(),
                    achievement_id,
                    expected_version: 0,
                    reason,
                })
                .await?
                .into_inner()
                .achievement
                .context("empty reply")?;
            print_achievements(&[a], conn.format());
            Ok(())
        }
        Some(ReportCommand::Rollup { jurisdiction, year }) => {
            rollup(&c, conn.format(), jurisdiction, year, date).await
        }
        Some(ReportCommand::Evidence(cmd)) => evidence(&c, &plan, cmd, conn.format()).await,
        Some(ReportCommand::Rebuild) => {
            let r = c
                .reporting()
                .rebuild_counts(rpb::RebuildCountsRequest {
                    request_id: request_id(),
                    plan_code: plan,
                })
                .await?
                .into_inner();
            let rows = r
                .counts_before
                .iter()
                .map(|b| {
                    let after = r
                        .counts_after
                        .iter()
                        .find(|a| a.indicator_code == b.indicator_code)
                        .map(|a| a.count)
                        .unwrap_or_default();
                    vec![
                        b.indicator_code.clone(),
                        b.count.to_string(),
                        after.to_string(),
                    ]
                })
                .collect();
            if conn.format() == Format::Table {
                println!(
                    "read {} milestone events (last sequence {})",
                    r.events_read, r.last_sequence
                );
            }
            Output {
                headers: vec!["indicator", "before", "after"],
                rows,
            }
            .print(conn.format());
            Ok(())
        }
        Some(ReportCommand::Counted {
            indicator,
            town,
            sector,
            page,
        }) => {
            let sector = code_number("sector", &sector, Sector::from_code, Sector::number)?;
            let (counted, next) = pages!(
                page,
                c.reporting(),
                list_counted_projects,
                rpb::ListCountedProjectsRequest {
                    plan_code: plan.clone(),
                    indicator_code: indicator.clone(),
                    town: town.clone(),
                    sector,
                    ..Default::default()
                },
                counted_projects
            )
            .await?;
            let rows = counted
                .iter()
                .map(|p| {
                    vec![
                        p.project_id.clone(),
                        p.project_title.clone(),
                        p.water_user_name.clone(),
                        p.company_name.clone(),
                        p.town.clone(),
                        super::word(
                            p.milestone,
                            cwsm_platform::vocab::Milestone::from_number,
                            cwsm_platform::vocab::Milestone::name,
                        ),
                        p.effective_date.clone(),
                    ]
                })
                .collect();
            Output {
                headers: vec![
                    "project",
                    "title",
                    "water_user",
                    "company",
                    "town",
                    "milestone",
                    "effective",
                ],
                rows,
            }
            .print_or(conn.format(), || super::api_json_list(&counted))?;
            super::more(&next, conn.format());
            Ok(())
        }
        Some(ReportCommand::DeadLetters) => {
            let dead_letters = every!(
                c.reporting(),
                list_dead_letters,
                rpb::ListDeadLettersRequest {
                    page_size: 0,
                    page_token: String::new(),
                },
                dead_letters
            )
            .await?;
            let rows = dead_letters
                .iter()
                .map(|d| {
                    vec![
                        d.event_id.clone(),
                        d.kind.clone(),
                        d.reason.clone(),
                        d.payload_size.to_string(),
                        d.receive_time
                            .as_ref()
                            .map(|t| {
                                chrono::DateTime::from_timestamp(t.seconds, 0)
                                    .map(|d| d.to_rfc3339())
                                    .unwrap_or_default()
                            })
                            .unwrap_or_default(),
                    ]
                })
                .collect();
            Output {
                headers: vec!["event_id", "kind", "reason", "bytes", "received"],
                rows,
            }
            .print(conn.format());
            Ok(())
        }
        Some(ReportCommand::Bench { .. }) => Ok(()),
    }
}

async fn rollup(
    c: &Clients,
    format: Format,
    jurisdiction: String,
    year: i32,
    date: String,
) -> anyhow::Result<()> {
    let r = c
        .reporting()
        .get_rollup(rpb::GetRollupRequest {
            jurisdiction_code: jurisdiction,
            as_of_date: date,
            year,
        })
        .await?
        .into_inner()
        .rollup
        .context("empty reply")?;
    if format == Format::Table {
        if let Some(p) = &r.place {
            println!(
                "{} {} ({}): plans of {} as of {}",
                p.name_zh, p.name, p.code, r.year, r.as_of_date
            );
        }
        for (what, reports) in [("own plan", &r.own_reports), ("city plan", &r.city_reports)] {
            for report in reports {
                if let Some(plan) = &report.plan {
                    println!(
                        "{what}: {} v{} {} ({} indicators; `cwsm report --plan {}`)",
                        plan.code,
                        plan.version,
                        plan.district,
                        report.indicators.len(),
                        plan.code
                    );
                }
            }
        }
        if !r.districts_without_plan.is_empty() {
            let names: Vec<String> = r
                .districts_without_plan
                .iter()
                .map(|d| format!("{} {}", d.code, d.name_zh))
                .collect();
            println!("no plan: {}", names.join(", "));
        }
    }
    // One line per indicator (its total, or "per district"), then one per district row.
    let mut rows = Vec::new();
    for i in &r.indicators {
        // A rolled-up line of the higher plan: its own target and status against the total.
        let own = i.own_target.as_ref();
        rows.push(vec![
            i.code.clone(),
            "total".into(),
            own.map(|o| format!("{} ← {}", o.plan_code, o.rolled_up_from.join(" + ")))
                .unwrap_or_default(),
            if i.summed {
                num(i.total_actual)
            } else {
                "per district".into()
            },
            match own {
                Some(o) => num(o.target),
                None if i.summed => num(i.total_target),
                None => String::new(),
            },
            own.map(|o| status_label_of(o.status, o.days_late))
                .unwrap_or_default(),
        ]);
        for row in &i.rows {
            let district = row
                .district
                .as_ref()
                .map(|d| format!("{} {}", d.code, d.name_zh))
                .unwrap_or_default();
            rows.push(vec![
                i.code.clone(),
                district,
                if row.indicator_code.is_empty() || row.indicator_code == i.code {
                    format!("{} v{}", row.plan_code, row.plan_version)
                } else {
                    format!(
                        "{} v{} {}",
                        row.plan_code, row.plan_version, row.indicator_code
                    )
                },
                num(row.actual),
                num(row.target),
                status_label_of(row.status, row.days_late),
            ]);
        }
    }
    Output {
        headers: vec![
            "indicator",
            "district",
            "plan",
            "actual",
            "target",
            "status",
        ],
        rows,
    }
    .print(format);
    Ok(())
}

async fn table(
    c: &Clients,
    conn: &Connection,
    plan: String,
    version: i64,
    date: String,
) -> anyhow::Result<()> {
    let report = c
        .reporting()
        .get_report(rpb::GetReportRequest {
            plan_code: plan,
            plan_version: version,
            as_of_date: date,
        })
        .await?
        .into_inner()
        .report
        .context("empty report")?;
    // The plan itself, for its Chinese title and its departments' names (the report names
    // departments by code).
    let full = match &report.plan {
        Some(p) if conn.format() == Format::Table => {
            c.reporting()
                .get_plan(rpb::GetPlanRequest {
                    plan_id: p.plan_id.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner()
                .plan
        }
        _ => None,
    };
    if let Some(p) = &full {
        match super::text::lang() {
            Lang::Zh => println!(
                "{}（第 {} 版），截至 {}",
                p.title_zh, p.version, report.as_of_date
            ),
            Lang::En => println!("{} (v{}) as of {}", p.title, p.version, report.as_of_date),
        }
    }
    // Departments by name in the run's language (the plan's codes in the data).
    let department = |code: &str| {
        full.as_ref()
            .and_then(|p| p.departments.iter().find(|d| d.code == code))
            .map(|d| match super::text::lang() {
                Lang::Zh => d.name_zh.clone(),
                Lang::En => d.name.clone(),
            })
            .unwrap_or_else(|| code.to_string())
    };
    let rows = report
        .indicators
        .iter()
        .map(|s| {
            let i = s.indicator.clone().unwrap_or_default();
            vec![
                i.code,
                match super::text::lang() {
                    Lang::Zh => i.name_zh.clone(),
                    Lang::En => format!("{} {}", i.name, i.name_zh),
                },
                num(i.target),
                num(s.actual),
                format!("{:.0}%", f64::from(s.progress_bp) / 100.0),
                i.deadline,
                status_label(s),
                // Of the projects counted, how many are handed over (completed).
                if s.counts_projects {
                    s.completed_projects.to_string()
                } else {
                    String::new()
                },
                i.lead_departments
                    .iter()
                    .map(|d| department(d))
                    .collect::<Vec<_>>()
                    .join(super::text::pick("、", ", ")),
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
            "completed",
            "lead",
        ],
        rows,
    }
    .print_or(conn.format(), || api_json(&report))?;
    if conn.format() == Format::Table {
        let mut counts = std::collections::BTreeMap::new();
        for s in &report.indicators {
            let code = status_code(s.status);
            let word = match (
                cwsm_reporting::report::Status::from_code(&code),
                super::text::lang(),
            ) {
                (Some(status), Lang::Zh) => status.label_zh().to_string(),
                _ => code,
            };
            *counts.entry(word).or_insert(0) += 1;
        }
        let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("{}", summary.join(" · "));
    }
    Ok(())
}

async fn export_to(
    c: &Clients,
    plan: String,
    version: i64,
    date: String,
    file: PathBuf,
) -> anyhow::Result<()> {
    let name = file.to_string_lossy().to_lowercase();
    let format = if name.ends_with(".csv") {
        rpb::ExportFormat::Csv
    } else if name.ends_with(".xlsx") {
        rpb::ExportFormat::Xlsx
    } else {
        anyhow::bail!("--export {}: name a .csv or .xlsx file", file.display());
    };
    let reply = c
        .reporting()
        .export_report(rpb::ExportReportRequest {
            plan_code: plan,
            plan_version: version,
            as_of_date: date,
            format: format as i32,
        })
        .await?
        .into_inner();
    std::fs::write(&file, &reply.content).with_context(|| format!("writing {}", file.display()))?;
    println!(
        "wrote {} ({} bytes, {})",
        file.display(),
        reply.content.len(),
        reply.content_type
    );
    Ok(())
}

fn print_achievements(list: &[rpb::Achievement], format: Format) {
    let rows = list
        .iter()
        .map(|a| {
            vec![
                a.id.clone(),
                a.indicator_code.clone(),
                a.unit_name.clone(),
                num(a.value),
                a.achieved_date.clone(),
                a.evidence.clone(),
                a.department.clone(),
                a.version.to_string(),
                if a.retracted { "yes" } else { "" }.to_string(),
                rpb::AchievementState::try_from(a.state)
                    .map(|s| {
                        s.as_str_name()
                            .trim_start_matches("ACHIEVEMENT_STATE_")
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
            "indicator",
            "unit",
            "value",
            "achieved",
            "evidence",
            "department",
            "version",
            "retracted",
            "state",
        ],
        rows,
    }
    .print(format);
}

#[derive(Subcommand)]
pub enum EvidenceCommand {
    /// Upload FILE (PDF, PNG, JPEG or Office; at most 16 MiB) to the plan.
    Upload {
        file: PathBuf,
    },
    /// Save the document to --out (default: its file name).
    Get {
        sha256: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    List,
}

fn plan_document_row(d: &rpb::EvidenceDocument) -> [String; 5] {
    [
        d.sha256.clone(),
        d.file_name.clone(),
        d.media_type.clone(),
        d.size_bytes.to_string(),
        d.uploaded_by.clone(),
    ]
}

async fn evidence(
    c: &Clients,
    plan: &str,
    cmd: EvidenceCommand,
    format: Format,
) -> anyhow::Result<()> {
    match cmd {
        EvidenceCommand::Upload { file } => {
            let messages =
                super::evidence::upload_messages(&file, plan, |plan_code, file_name, chunk| {
                    rpb::UploadEvidenceRequest {
                        plan_code,
                        file_name,
                        chunk,
                    }
                })?;
            let reply = c
                .reporting()
                .upload_evidence(tokio_stream::iter(messages))
                .await?
                .into_inner();
            if reply.already_uploaded {
                eprintln!("the plan had this document already");
            }
            super::evidence::document_rows(reply.document.iter().map(plan_document_row))
                .print(format);
        }
        EvidenceCommand::Get { sha256, out } => {
            let stream = c
                .reporting()
                .get_evidence(rpb::GetEvidenceRequest {
                    plan_code: plan.to_string(),
                    sha256,
                })
                .await?
                .into_inner();
            let (record, bytes) =
                super::evidence::collect_download(stream, |m| (m.document, m.chunk)).await?;
            super::evidence::save_download(out, &record.file_name, &record.sha256, &bytes)?;
        }
        EvidenceCommand::List => {
            let documents = every!(
                c.reporting(),
                list_evidence,
                rpb::ListEvidenceRequest {
                    plan_code: plan.to_string(),
                    ..Default::default()
                },
                documents
            )
            .await?;
            super::evidence::document_rows(documents.iter().map(plan_document_row)).print(format);
        }
    }
    Ok(())
}
