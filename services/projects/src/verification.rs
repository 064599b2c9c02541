//! The verification report (核查报告) of a reporting period, in plain Rust: one document with
//! the baseline model and its statistics, a chart of the adjusted baseline against the metered
//! use, the exclusions, the corrections and adjustments, the uncertainty, the waivers and the
//! verifier's decision; as HTML for the browser and as an xlsx workbook to archive. When the
//! period is verified both are stored with the SHA-256 of each, so the document the verifier
//! signed can be shown again, byte for byte.

use rust_xlsxwriter::{Format, Workbook, XlsxError};

use cwsm_platform::{Error, Result};

use crate::corrections::{Correction, CorrectionAction};
use crate::domain::Project;
use crate::ledger::{AdjustmentStatus, NonRoutineAdjustment, Period};
use crate::mv::{Fit, Granularity};
use crate::settle::cubic_metres;

/// What a period's report is drawn from besides the period itself.
#[derive(Clone, Debug, Default)]
pub struct Context {
    pub project_title: String,
    pub company: String,
    pub water_user: String,
    pub verifier_org: String,
    pub fit: Option<Fit>,
    /// The baseline data's remarks (sufficiency, exclusions, granularity).
    pub baseline_notes: Vec<String>,
    /// Accepted corrections of readings in the baseline or the period.
    pub corrections: Vec<Correction>,
    /// Non-routine adjustments overlapping the period, every status.
    pub adjustments: Vec<NonRoutineAdjustment>,
    /// The period's observations in order: (adjusted baseline, metered use), litres a day.
    pub points: Vec<(f64, f64)>,
}

impl Context {
    pub fn of(project: &Project) -> Context {
        Context {
            project_title: project.contract.title.clone(),
            company: project.contract.company.name.clone(),
            water_user: project.contract.water_user.name.clone(),
            verifier_org: project.verifier_org.clone(),
            ..Default::default()
        }
    }
}

/// A rendered report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    pub html: Vec<u8>,
    pub xlsx: Vec<u8>,
    pub html_sha256: String,
    pub xlsx_sha256: String,
}

use cwsm_platform::documents::sha256_hex;

/// Text for HTML: `&`, `<`, `>`, `"` and `'` escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The report's rows: (label, value), in order, Chinese first.
pub fn rows(ctx: &Context, period: &Period) -> Vec<(String, String)> {
    let f = &period.figures;
    let mut rows: Vec<(String, String)> = vec![
        ("项目 Project".into(), ctx.project_title.clone()),
        ("节水服务企业 Company".into(), ctx.company.clone()),
        ("用水单位 Water user".into(), ctx.water_user.clone()),
        ("核查机构 Verifier".into(), ctx.verifier_org.clone()),
        (
            "报告期 Period".into(),
            format!("{} – {}", period.start_date, period.end_date),
        ),
        ("状态 Status".into(), period.status.code().to_string()),
    ];
    match &ctx.fit {
        Some(fit) => {
            let terms: Vec<String> = fit
                .names
                .iter()
                .zip(&fit.coefficients)
                .zip(&fit.standard_errors)
                .map(|((n, c), se)| format!("{n} {c:.3} (± {se:.3})"))
                .collect();
            let (cv, nmbe) = fit.granularity.thresholds();
            rows.extend([
                ("基线模型 Baseline model".into(), terms.join(" + ")),
                (
                    "观测 Observations".into(),
                    format!(
                        "{} {}",
                        fit.observations,
                        match fit.granularity {
                            Granularity::Daily => "days",
                            Granularity::Billing => "billing periods (weighted by days)",
                        }
                    ),
                ),
                ("R²".into(), format!("{:.4}", fit.r_squared)),
                (
                    "CV(RMSE)".into(),
                    format!("{:.2}% (≤ {:.0}%)", fit.cv_rmse * 100.0, cv * 100.0),
                ),
                (
                    "NMBE".into(),
                    format!("{:.3}% (±{:.0}%)", fit.nmbe * 100.0, nmbe * 100.0),
                ),
                (
                    "ASHRAE Guideline 14".into(),
                    if fit.g14_pass { "pass" } else { "FAIL" }.to_string(),
                ),
                (
                    "残差自相关 ρ, n′".into(),
                    format!(
                        "{:.3}, {:.1}",
                        fit.autocorrelation, fit.effective_observations
                    ),
                ),
            ]);
        }
        None => rows.push(("基线模型 Baseline model".into(), "none".into())),
    }
    rows.extend([
        (
            "调整后基线 Adjusted baseline".into(),
            cubic_metres(f.adjusted_baseline_litres),
        ),
        ("实际用水 Actual use".into(), cubic_metres(f.actual_litres)),
        (
            "非常规调整 Non-routine adjustments".into(),
            cubic_metres(f.non_routine_adjustment_litres),
        ),
        (
            "争议调整 Dispute adjustments".into(),
            cubic_metres(f.dispute_adjustment_litres),
        ),
        ("节水量 Savings".into(), cubic_metres(f.savings_litres)),
        (
            "节水率 Savings %".into(),
            format!("{}.{:02}%", f.savings_bp / 100, (f.savings_bp % 100).abs()),
        ),
        (
            "不确定度 Uncertainty (68% / 90%)".into(),
            format!(
                "± {} / ± {}",
                cubic_metres(f.uncertainty_68_litres),
                cubic_metres(f.uncertainty_90_litres)
            ),
        ),
        (
            "报告期观测 Reporting observations".into(),
            f.observations.to_string(),
        ),
    ]);
    rows
}

/// Lines of the lists: notes, waivers, corrections, adjustments.
fn lists(ctx: &Context, period: &Period) -> Vec<(&'static str, Vec<String>)> {
    vec![
        ("基线数据 Baseline data", ctx.baseline_notes.clone()),
        (
            "豁免 Waived checks",
            period.waivers.iter().map(|w| w.note()).collect(),
        ),
        (
            "读数更正 Reading corrections (accepted)",
            ctx.corrections
                .iter()
                .map(|c| {
                    let at = chrono::DateTime::from_timestamp_millis(c.read_at_ms + 8 * 3_600_000)
                        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                        .unwrap_or_default();
                    let what = match c.action {
                        CorrectionAction::Replace => format!(
                            "use {} instead of {}",
                            cubic_metres(c.corrected_use_litres),
                            cubic_metres(c.original_use_litres)
                        ),
                        CorrectionAction::Exclude => "excluded".to_string(),
                        CorrectionAction::Keep => "kept as read".to_string(),
                    };
                    format!(
                        "meter {} at {at} CST: {what}; {} (evidence: {}); accepted by {}",
                        c.meter_id, c.reason, c.evidence, c.decided_by_org
                    )
                })
                .collect(),
        ),
        (
            "非常规调整 Non-routine adjustments",
            ctx.adjustments
                .iter()
                .map(|a| {
                    format!(
                        "{} to {}: {} — {} (evidence: {}); {}{}",
                        a.start_date,
                        if a.end_date.is_empty() {
                            "the end of the contract"
                        } else {
                            &a.end_date
                        },
                        cubic_metres(a.litres),
                        a.reason,
                        a.evidence,
                        a.status.code(),
                        if a.status == AdjustmentStatus::Approved {
                            format!(" by {}", a.decided_by_org)
                        } else {
                            " (not counted)".to_string()
                        }
                    )
                })
                .collect(),
        ),
        ("记录 Notes", period.notes.clone()),
    ]
}

/// The unit of the reports' charts.
const PER_DAY: &str = "升/天 L a day";

/// The chart: adjusted baseline (line) and metered use (bars) per observation in the unit
/// `axis` names (e.g. "升/天 L a day"), with axes, ticks, the first and last dates and a
/// legend. The verification reports and the CLI's `savings --svg` draw it.
pub fn chart_svg(points: &[(f64, f64)], first: &str, last: &str, axis: &str) -> String {
    let (w, h, left, bottom, top, right) = (720.0, 300.0, 80.0, 40.0, 30.0, 20.0);
    let max = points
        .iter()
        .flat_map(|(b, a)| [*b, *a])
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let n = points.len().max(1) as f64;
    let x = |i: f64| left + plot_w * (i + 0.5) / n;
    let y = |v: f64| top + plot_h * (1.0 - v / max);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"adjusted baseline and metered use\">"
    );
    // Axes and ticks.
    svg.push_str(&format!(
        "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"#333\"/><line x1=\"{left}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#333\"/>",
        h - bottom,
        w - right
    ));
    for k in 0..=4 {
        let v = max * f64::from(k) / 4.0;
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{:.0}</text><line x1=\"{left}\" y1=\"{:.1}\" x2=\"{}\" y2=\"{:.1}\" stroke=\"#ddd\"/>",
            left - 6.0,
            y(v) + 4.0,
            v,
            y(v),
            w - right,
            y(v)
        ));
    }
    svg.push_str(&format!(
        "<text x=\"14\" y=\"{:.1}\" font-size=\"11\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">{}</text>",
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        escape(axis)
    ));
    svg.push_str(&format!(
        "<text x=\"{left}\" y=\"{}\" font-size=\"11\">{}</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
        h - bottom + 16.0,
        escape(first),
        w - right,
        h - bottom + 16.0,
        escape(last)
    ));
    // Metered use as bars, the adjusted baseline as a line.
    let bar = (plot_w / n * 0.7).max(1.0);
    for (i, (_, actual)) in points.iter().enumerate() {
        svg.push_str(&format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{:.1}\" fill=\"#4a90d9\"/>",
            x(i as f64) - bar / 2.0,
            y(*actual),
            (h - bottom - y(*actual)).max(0.0)
        ));
    }
    let line: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, (b, _))| format!("{:.1},{:.1}", x(i as f64), y(*b)))
        .collect();
    svg.push_str(&format!(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#d0021b\" stroke-width=\"2\"/>",
        line.join(" ")
    ));
    // Legend.
    svg.push_str(&format!(
        "<rect x=\"{left}\" y=\"8\" width=\"12\" height=\"12\" fill=\"#4a90d9\"/><text x=\"{}\" y=\"18\" font-size=\"12\">实际用水 metered use</text>\
         <line x1=\"{}\" y1=\"14\" x2=\"{}\" y2=\"14\" stroke=\"#d0021b\" stroke-width=\"2\"/><text x=\"{}\" y=\"18\" font-size=\"12\">调整后基线 adjusted baseline</text>",
        left + 16.0,
        left + 170.0,
        left + 190.0,
        left + 196.0
    ));
    svg.push_str("</svg>");
    svg
}

/// The start of a report page: its title, an optional line under it, and the table of `rows`
/// (escaped), the table closed.
fn page_start(title: &str, subtitle: Option<String>, rows: &[(String, String)]) -> String {
    let mut out = format!(
        "<!DOCTYPE html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{0}</title>\
         <style>body{{font-family:sans-serif;max-width:800px;margin:2em auto;color:#222}}table{{border-collapse:collapse;width:100%}}\
         th,td{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}th{{background:#f3f3f3;width:40%}}\
         h2{{margin-top:1.5em;font-size:1.1em}}</style></head><body><h1>{0}</h1>",
        escape(title)
    );
    if let Some(line) = subtitle {
        out.push_str(&format!("<p>{}</p>", escape(&line)));
    }
    out.push_str("<table>");
    for (label, value) in rows {
        out.push_str(&format!(
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(label),
            escape(value)
        ));
    }
    out.push_str("</table>");
    out
}

/// The HTML document.
pub fn html(ctx: &Context, period: &Period, generated: &str) -> String {
    let mut out = page_start(
        "节水量核查报告 Verification report",
        Some(format!(
            "{} · {} – {}",
            ctx.project_title, period.start_date, period.end_date
        )),
        &rows(ctx, period),
    );
    out.push_str("<h2>基线与实际 Adjusted baseline and metered use</h2>");
    out.push_str(&chart_svg(
        &ctx.points,
        &period.start_date,
        &period.end_date,
        PER_DAY,
    ));
    for (title, items) in lists(ctx, period) {
        out.push_str(&format!("<h2>{}</h2>", escape(title)));
        if items.is_empty() {
            out.push_str("<p>—</p>");
        } else {
            out.push_str("<ul>");
            for item in items {
                out.push_str(&format!("<li>{}</li>", escape(&item)));
            }
            out.push_str("</ul>");
        }
    }
    out.push_str(&format!(
        "<p><small>生成 Generated {}</small></p></body></html>",
        escape(generated)
    ));
    out
}

/// The workbook: the report's rows, then the lists, then the chart's points.
pub fn xlsx(ctx: &Context, period: &Period, generated: &str) -> Result<Vec<u8>> {
    let failed = |e: XlsxError| Error::Internal(anyhow::anyhow!("the verification workbook: {e}"));
    let mut book = Workbook::new();
    let bold = Format::new().set_bold();
    let sheet = book.add_worksheet().set_name("核查报告").map_err(failed)?;
    sheet.set_column_width(0, 36).map_err(failed)?;
    sheet.set_column_width(1, 90).map_err(failed)?;
    let mut r: u32 = 0;
    for (label, value) in rows(ctx, period) {
        sheet
            .write_string_with_format(r, 0, &label, &bold)
            .map_err(failed)?;
        sheet.write_string(r, 1, &value).map_err(failed)?;
        r += 1;
    }
    for (title, items) in lists(ctx, period) {
        r += 1;
        sheet
            .write_string_with_format(r, 0, title, &bold)
            .map_err(failed)?;
        for item in items {
            sheet.write_string(r, 1, &item).map_err(failed)?;
            r += 1;
        }
        r += 1;
    }
    sheet
        .write_string(r + 1, 0, "生成 Generated")
        .map_err(failed)?;
    sheet.write_string(r + 1, 1, generated).map_err(failed)?;
    let points = book
        .add_worksheet()
        .set_name("基线与实际")
        .map_err(failed)?;
    for (c, name) in ["#", "调整后基线 L/天", "实际 L/天"].iter().enumerate() {
        points
            .write_string_with_format(0, c as u16, *name, &bold)
            .map_err(failed)?;
    }
    for (i, (b, a)) in ctx.points.iter().enumerate() {
        let row = u32::try_from(i + 1).unwrap_or(u32::MAX);
        points
            .write_number(row, 0, (i + 1) as f64)
            .map_err(failed)?;
        points
            .write_number(row, 1, (b * 10.0).round() / 10.0)
            .map_err(failed)?;
        points
            .write_number(row, 2, (a * 10.0).round() / 10.0)
            .map_err(failed)?;
    }
    book.save_to_buffer().map_err(failed)
}

/// What a contract year's report shows.
#[derive(Clone, Debug, Default)]
pub struct YearContext {
    pub project_title: String,
    pub company: String,
    pub water_user: String,
    pub verifier_org: String,
    pub summary: crate::ledger::SavingsSummary,
    /// The year's periods, oldest first.
    pub periods: Vec<Period>,
}

fn year_rows(y: &YearContext) -> Vec<(String, String)> {
    let s = &y.summary;
    vec![
        ("项目 Project".into(), y.project_title.clone()),
        ("节水服务企业 Company".into(), y.company.clone()),
        ("用水单位 Water user".into(), y.water_user.clone()),
        ("核查机构 Verifier".into(), y.verifier_org.clone()),
        (
            "合同年度 Contract year".into(),
            format!("{} – {}", s.start_date, s.end_date),
        ),
        (
            "报告期 Periods".into(),
            format!(
                "{}{}",
                s.periods,
                if s.complete {
                    ""
                } else {
                    " (the year is not complete)"
                }
            ),
        ),
        (
            "调整后基线 Adjusted baseline".into(),
            cubic_metres(s.adjusted_baseline_litres),
        ),
        ("实际用水 Actual use".into(), cubic_metres(s.actual_litres)),
        ("节水量 Savings".into(), cubic_metres(s.savings_litres)),
        (
            "不确定度 Uncertainty (68% / 90%)".into(),
            format!(
                "± {} / ± {} (Guideline 14 B-14 over the year's {} observations)",
                cubic_metres(s.uncertainty_68_litres),
                cubic_metres(s.uncertainty_90_litres),
                s.observations
            ),
        ),
    ]
}

fn year_period_line(p: &Period) -> String {
    format!(
        "{} – {}: {}, savings {} ± {}{}",
        p.start_date,
        p.end_date,
        p.status.code(),
        cubic_metres(p.figures.savings_litres),
        cubic_metres(p.figures.uncertainty_68_litres),
        if p.verification_report_sha256.is_empty() {
            String::new()
        } else {
            format!("; report SHA-256 {}", p.verification_report_sha256)
        }
    )
}

/// A contract year's report, HTML and xlsx (drawn now).
pub fn render_year(y: &YearContext, generated: &str) -> Result<Document> {
    let mut page = page_start(
        "合同年度节水量报告 Contract year report",
        None,
        &year_rows(y),
    );
    page.push_str("<h2>各报告期 Periods</h2>");
    let points: Vec<(f64, f64)> = y
        .periods
        .iter()
        .map(|p| {
            let days = p.figures.days.max(1) as f64;
            (
                p.figures.adjusted_baseline_litres as f64 / days,
                p.figures.actual_litres as f64 / days,
            )
        })
        .collect();
    page.push_str(&chart_svg(
        &points,
        &y.summary.start_date,
        &y.summary.end_date,
        PER_DAY,
    ));
    page.push_str("<ul>");
    for p in &y.periods {
        page.push_str(&format!("<li>{}</li>", escape(&year_period_line(p))));
    }
    page.push_str(&format!(
        "</ul><p><small>生成 Generated {}</small></p></body></html>",
        escape(generated)
    ));
    let failed = |e: XlsxError| Error::Internal(anyhow::anyhow!("the contract year workbook: {e}"));
    let mut book = Workbook::new();
    let bold = Format::new().set_bold();
    let sheet = book.add_worksheet().set_name("合同年度").map_err(failed)?;
    sheet.set_column_width(0, 36).map_err(failed)?;
    sheet.set_column_width(1, 90).map_err(failed)?;
    let mut r: u32 = 0;
    for (label, value) in year_rows(y) {
        sheet
            .write_string_with_format(r, 0, &label, &bold)
            .map_err(failed)?;
        sheet.write_string(r, 1, &value).map_err(failed)?;
        r += 1;
    }
    r += 1;
    sheet
        .write_string_with_format(r, 0, "各报告期 Periods", &bold)
        .map_err(failed)?;
    for p in &y.periods {
        sheet
            .write_string(r, 1, year_period_line(p))
            .map_err(failed)?;
        r += 1;
    }
    sheet
        .write_string(r + 1, 0, "生成 Generated")
        .map_err(failed)?;
    sheet.write_string(r + 1, 1, generated).map_err(failed)?;
    let xlsx = book.save_to_buffer().map_err(failed)?;
    let html = page.into_bytes();
    Ok(Document {
        html_sha256: sha256_hex(&html),
        xlsx_sha256: sha256_hex(&xlsx),
        html,
        xlsx,
    })
}

/// Both documents and their hashes.
pub fn render(ctx: &Context, period: &Period, generated: &str) -> Result<Document> {
    let html = html(ctx, period, generated).into_bytes();
    let xlsx = xlsx(ctx, period, generated)?;
    Ok(Document {
        html_sha256: sha256_hex(&html),
        xlsx_sha256: sha256_hex(&xlsx),
        html,
        xlsx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::PeriodStatus;
    use crate::mv::PeriodFigures;

    #[test]
    fn the_report_names_its_figures_and_escapes_what_people_wrote() {
        let period = Period {
            id: "p1".into(),
            project_id: "x".into(),
            start_date: "2026-11-01".into(),
            end_date: "2026-11-30".into(),
            figures: PeriodFigures {
                adjusted_baseline_litres: 300_000,
                actual_litres: 240_000,
                savings_litres: 60_000,
                savings_bp: 2_000,
                uncertainty_68_litres: 4_321,
                observations: 30,
                ..Default::default()
            },
            promised_savings_litres: 0,
            status: PeriodStatus::Verified,
            dispute_reason: String::new(),
            disputed_by: String::new(),
            notes: vec!["verified by v: <script>alert(1)</script>".into()],
            waivers: Vec::new(),
            verification_report_sha256: String::new(),
            created_at_ms: 0,
            updated_at_ms: 0,
            version: 2,
        };
        let ctx = Context {
            project_title: "校园管网改造 & 计量".into(),
            points: vec![(10_000.0, 8_000.0), (10_000.0, 8_100.0)],
            ..Default::default()
        };
        let page = html(&ctx, &period, "2026-12-03 10:00 CST");
        assert!(
            page.contains("60.000 m³") && page.contains("± 4.321 m³"),
            "{page}"
        );
        assert!(page.contains("校园管网改造 &amp; 计量"));
        assert!(!page.contains("<script>") && page.contains("&lt;script&gt;"));
        assert!(page.contains("<svg") && page.contains("调整后基线 adjusted baseline"));
        let doc = render(&ctx, &period, "2026-12-03 10:00 CST").expect("renders");
        assert_eq!(doc.html_sha256, sha256_hex(page.as_bytes()));
        assert_eq!(doc.html_sha256.len(), 64);
        assert!(doc.xlsx.starts_with(b"PK"), "a zip workbook");
    }
}
