//! `cwsm report`: the action plan's indicators.

use anyhow::Context;
use clap::Args;
use cwsm_proto::reporting::v1 as rpb;

use super::{Clients, Connection, Output};

#[derive(Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub conn: Connection,
    /// Plan code.
    #[arg(long, default_value = "xinbei-2020")]
    pub plan: String,
    /// Report as of this date (YYYY-MM-DD) [default: today].
    #[arg(long, default_value = "")]
    pub date: String,
}

pub async fn report(args: ReportArgs) -> anyhow::Result<()> {
    let ReportArgs { conn, plan, date } = args;
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
    Ok(())
}
