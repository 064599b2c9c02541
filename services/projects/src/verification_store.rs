//! Verification reports in the store: what a period's report is drawn from, the archived
//! documents written with the verification, and the report as asked for.

use cwsm_platform::auth::Principal;
use cwsm_platform::grpc::Page;
use cwsm_platform::{Error, Result, with_db};

use crate::corrections::CorrectionStatus;
use crate::ledger::{Period, baseline_dates, date};
use crate::store::Store;
use crate::verification::{Context, Document, render};

/// A report as served: the bytes, and whether they are the archived ones of a verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedReport {
    pub content: Vec<u8>,
    pub sha256: String,
    /// Recorded when the period was verified (else drawn now, for a period not verified yet).
    pub archived: bool,
}

impl Store {
    /// What `period`'s report is drawn from: the project's baseline fit and its remarks, the
    /// accepted corrections of readings in the baseline or the period, the adjustments over
    /// the period, and the period's observations for the chart.
    pub async fn report_context(&self, period: &Period) -> Result<Context> {
        let crate::ledger_store::Measured {
            project,
            report,
            days,
            drivers,
            adjustments,
        } = self.measured(&period.project_id).await?;
        let mut ctx = Context::of(&project);
        ctx.baseline_notes = report
            .sufficiency
            .as_ref()
            .map(|s| s.notes.clone())
            .unwrap_or_default();
        let (start, end) = (
            date("start_date", &period.start_date)?,
            date("end_date", &period.end_date)?,
        );
        let baseline = baseline_dates(&project);
        let in_scope = |day: chrono::NaiveDate| {
            (start..=end).contains(&day) || baseline.is_some_and(|(s, e, _)| (s..=e).contains(&day))
        };
        let (corrections, _) = self
            .corrections(
                &project.id,
                &Page {
                    size: 10_000,
                    after: None,
                },
            )
            .await?;
        ctx.corrections = corrections
            .into_iter()
            .filter(|c| c.status == CorrectionStatus::Accepted)
            .filter(|c| {
                in_scope(crate::readings::day_date(crate::readings::day_index(
                    c.read_at_ms,
                )))
            })
            .collect();
        ctx.adjustments = adjustments
            .into_iter()
            .filter(|a| {
                let s = date("start_date", &a.start_date).ok();
                let e = date("end_date", &a.end_date).ok();
                s.is_some_and(|s| s <= end) && e.is_none_or(|e| e >= start)
            })
            .collect();
        if let Some(fit) = &report.fit {
            let values: Vec<&crate::mv::DriverDays> = fit.names[1..]
                .iter()
                .filter_map(|n| drivers.iter().find(|(d, _)| d == n).map(|(_, v)| v))
                .collect();
            ctx.points = crate::mv::observations(&days, start, end, fit.granularity, &values)
                .iter()
                .map(|o| (fit.predict(&o.x), o.y))
                .collect();
        }
        ctx.fit = report.fit;
        Ok(ctx)
    }

    /// The period's report in `xlsx` or HTML, for `who` who may read the project: the
    /// archived one of its latest verification, else drawn now.
    pub async fn verification_report(
        &self,
        period_id: &str,
        xlsx: bool,
        who: &Principal,
    ) -> Result<ServedReport> {
        let period = self.period(period_id).await?;
        let project = self.project(&period.project_id).await?;
        if !project.readable_by(who) {
            return Err(Error::not_found("period", period_id));
        }
        let archived: Option<(Vec<u8>, Vec<u8>, String, String)> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT html, xlsx, html_sha256, xlsx_sha256 FROM verification_reports WHERE period_id = $1 ORDER BY period_version DESC LIMIT 1")
            .bind(period_id).fetch_optional(pool).await?);
        if let Some((html, book, html_sha, book_sha)) = archived {
            return Ok(if xlsx {
                ServedReport {
                    content: book,
                    sha256: book_sha,
                    archived: true,
                }
            } else {
                ServedReport {
                    content: html,
                    sha256: html_sha,
                    archived: true,
                }
            });
        }
        let ctx = self.report_context(&period).await?;
        let doc = render(&ctx, &period, &generated_now())?;
        Ok(if xlsx {
            ServedReport {
                content: doc.xlsx,
                sha256: doc.xlsx_sha256,
                archived: false,
            }
        } else {
            ServedReport {
                content: doc.html,
                sha256: doc.html_sha256,
                archived: false,
            }
        })
    }
}

impl Store {
    /// A contract year's report, for whoever may read the project: the archived one when the
    /// year is closed (archived now if it was not yet), else drawn now.
    pub async fn contract_year_report(
        &self,
        project_id: &str,
        start_date: &str,
        xlsx: bool,
        who: &Principal,
    ) -> Result<ServedReport> {
        let (project, report) = self.savings_report(project_id).await?;
        if !project.readable_by(who) {
            return Err(Error::not_found("project", project_id));
        }
        self.year_report(&project, &report, start_date, xlsx).await
    }

    /// The report of `project`'s contract year starting `start_date`, from its savings
    /// `report`: archived when the year is closed, else drawn.
    async fn year_report(
        &self,
        project: &crate::domain::Project,
        report: &crate::ledger::SavingsReport,
        start_date: &str,
        xlsx: bool,
    ) -> Result<ServedReport> {
        let project_id = project.id.as_str();
        let (summary, periods) = year_of(report, start_date).ok_or_else(|| {
            let years: Vec<&str> = report.contract_years.iter().map(|y| y.start_date.as_str()).collect();
            Error::invalid(
                "contract_year_start_date",
                format!(
                    "no contract year of project {project_id} with a period starts on {start_date} (they start: {})",
                    if years.is_empty() { "none yet".to_string() } else { years.join(", ") }
                ),
            )
        })?;
        let closed = year_closed(&summary, &periods);
        let key = periods_key(&periods);
        if closed
            && let Some(served) = self
                .archived_year(project_id, start_date, &key, xlsx)
                .await?
        {
            return Ok(served);
        }
        let ctx = Context::of(project);
        let year = crate::verification::YearContext {
            project_title: ctx.project_title,
            company: ctx.company,
            water_user: ctx.water_user,
            verifier_org: ctx.verifier_org,
            summary,
            periods,
        };
        let doc = crate::verification::render_year(&year, &generated_now())?;
        if closed {
            // Kept as the year closed; a concurrent reader's copy of the same closing wins. A
            // read that cannot store it still serves what it drew (not archived).
            let stored: Result<()> = async { with_db!(&self.db, pool => sqlx::query(
                "INSERT INTO contract_year_reports (project_id, start_date, periods, html, xlsx, html_sha256, xlsx_sha256, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (project_id, start_date, periods) DO NOTHING")
                .bind(project_id).bind(start_date).bind(&key).bind(&doc.html).bind(&doc.xlsx)
                .bind(&doc.html_sha256).bind(&doc.xlsx_sha256).bind(cwsm_platform::now_ms())
                .execute(pool).await.map(|_| ())?); Ok(()) }.await;
            match stored {
                Ok(()) => {
                    if let Some(served) = self
                        .archived_year(project_id, start_date, &key, xlsx)
                        .await?
                    {
                        return Ok(served);
                    }
                }
                Err(e) => tracing::warn!(project_id, year = start_date, error = %e,
                    "the closed contract year's report could not be archived; served as drawn"),
            }
        }
        Ok(if xlsx {
            ServedReport {
                content: doc.xlsx,
                sha256: doc.xlsx_sha256,
                archived: false,
            }
        } else {
            ServedReport {
                content: doc.html,
                sha256: doc.html_sha256,
                archived: false,
            }
        })
    }

    /// Archives the report of the contract year `period` falls in when that year is closed now
    /// (the verification of its last open period). A failure is logged, not returned: the
    /// verification is committed already, and the year is archived at its next read.
    pub async fn archive_year_of(&self, period: &Period) {
        let Ok((project, report)) = self.savings_report(&period.project_id).await else {
            return;
        };
        let Some(start) = report
            .contract_years
            .iter()
            .find(|y| {
                y.start_date.as_str() <= period.start_date.as_str()
                    && period.start_date.as_str() <= y.end_date.as_str()
            })
            .map(|y| y.start_date.clone())
        else {
            return;
        };
        let closed = year_of(&report, &start).is_some_and(|(y, p)| year_closed(&y, &p));
        if !closed {
            return;
        }
        // The report computed once: the closed year is drawn from it and archived.
        if let Err(e) = self.year_report(&project, &report, &start, false).await {
            tracing::warn!(project_id = %period.project_id, year = %start, error = %e,
                "the closed contract year's report was not archived; it will be at its next read");
        }
    }

    async fn archived_year(
        &self,
        project_id: &str,
        start_date: &str,
        periods: &str,
        xlsx: bool,
    ) -> Result<Option<ServedReport>> {
        let row: Option<(Vec<u8>, String)> = with_db!(&self.db, pool => sqlx::query_as(if xlsx {
                "SELECT xlsx, xlsx_sha256 FROM contract_year_reports WHERE project_id = $1 AND start_date = $2 AND periods = $3"
            } else {
                "SELECT html, html_sha256 FROM contract_year_reports WHERE project_id = $1 AND start_date = $2 AND periods = $3"
            })
            .bind(project_id).bind(start_date).bind(periods).fetch_optional(pool).await?);
        Ok(row.map(|(content, sha256)| ServedReport {
            content,
            sha256,
            archived: true,
        }))
    }
}

/// The summary of the contract year of `report` starting `start_date` and its periods.
fn year_of(
    report: &crate::ledger::SavingsReport,
    start_date: &str,
) -> Option<(crate::ledger::SavingsSummary, Vec<Period>)> {
    let summary = report
        .contract_years
        .iter()
        .find(|y| y.start_date == start_date)
        .cloned()?;
    let periods = report
        .periods
        .iter()
        .filter(|p| {
            p.start_date.as_str() >= summary.start_date.as_str()
                && p.start_date.as_str() <= summary.end_date.as_str()
        })
        .cloned()
        .collect();
    Some((summary, periods))
}

/// Whether a contract year is closed: every day of it in reporting periods, each verified or
/// settled (a disputed or submitted one keeps it open).
fn year_closed(summary: &crate::ledger::SavingsSummary, periods: &[Period]) -> bool {
    summary.complete
        && !periods.is_empty()
        && periods.iter().all(|p| {
            matches!(
                p.status,
                crate::ledger::PeriodStatus::Verified | crate::ledger::PeriodStatus::Settled
            )
        })
}

/// The year's periods at their versions, "id@version,…": one archive per closing.
fn periods_key(periods: &[Period]) -> String {
    periods
        .iter()
        .map(|p| format!("{}@{}", p.id, p.version))
        .collect::<Vec<_>>()
        .join(",")
}

/// When a report is drawn, for people (China Standard Time).
pub fn generated_now() -> String {
    chrono::DateTime::from_timestamp_millis(cwsm_platform::now_ms() + 8 * 3_600_000)
        .map(|t| t.format("%Y-%m-%d %H:%M CST").to_string())
        .unwrap_or_default()
}

/// The documents to archive for `period` as verified.
pub fn archive(ctx: &Context, period: &Period) -> Result<Document> {
    render(ctx, period, &generated_now())
}
