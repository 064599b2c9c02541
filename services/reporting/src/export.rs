//! A report as a file: CSV (UTF-8 with a byte-order mark, so Excel reads the Chinese names) or
//! an Excel workbook with the report, the breakdowns and the history on separate sheets.

use cwsm_platform::{Error, Result};
use rust_xlsxwriter::{
    Color, ConditionalFormatDataBar, ConditionalFormatType, Format, FormatAlign, FormatBorder,
    Workbook, Worksheet, XlsxError,
};

use crate::report::{IndicatorReport, Report, Status};

/// A file format of [`export`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    Csv,
    Xlsx,
}

/// An exported report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exported {
    pub content: Vec<u8>,
    pub content_type: &'static str,
    pub file_name: String,
}

impl FileFormat {
    /// From a file name's extension ("report.xlsx"), case-insensitive.
    pub fn from_file_name(name: &str) -> Option<FileFormat> {
        let lower = name.to_lowercase();
        if lower.ends_with(".csv") {
            Some(FileFormat::Csv)
        } else if lower.ends_with(".xlsx") {
            Some(FileFormat::Xlsx)
        } else {
            None
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Xlsx => "xlsx",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            FileFormat::Csv => "text/csv; charset=utf-8",
            FileFormat::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
    }
}

/// The columns of the report, one row per indicator.
pub const HEADERS: [&str; 19] = [
    "code",
    "indicator",
    "指标",
    "action",
    "unit",
    "comparator",
    "target",
    "actual",
    "progress_percent",
    "deadline",
    "days_remaining",
    "status",
    "状态",
    "lead_departments",
    "by_town",
    "by_sector",
    "by_department",
    "days_late",
    "completed_projects",
];

/// The columns of [`HEADERS`] that hold numbers we format ourselves (never a user's text).
pub const NUMERIC_COLUMNS: [usize; 7] = [3, 6, 7, 8, 10, 17, 18];

fn breakdown(list: &[(String, f64)]) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={}", number(*v)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A number without a needless ".0".
pub fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn status(line: &IndicatorReport) -> Status {
    line.evaluation.status
}

fn row(line: &IndicatorReport) -> Vec<String> {
    let i = &line.indicator;
    vec![
        i.code.clone(),
        i.name.clone(),
        i.name_zh.clone(),
        i.action.to_string(),
        i.unit.clone(),
        i.comparator.code().to_string(),
        number(i.target),
        number(line.actual),
        format!("{:.2}", f64::from(line.evaluation.progress_bp) / 100.0),
        i.deadline.format("%Y-%m-%d").to_string(),
        line.evaluation.days_remaining.to_string(),
        status(line).code().to_string(),
        line.evaluation.label_zh(),
        i.lead.join(" "),
        breakdown(&line.by_town),
        breakdown(&line.by_sector),
        breakdown(&line.by_department),
        line.evaluation.days_late.to_string(),
        // Empty where the rule does not count projects.
        line.completed.map(|n| n.to_string()).unwrap_or_default(),
    ]
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// A text cell, neutralized against formula injection as OWASP describes ("CSV Injection"): a
/// spreadsheet runs a cell beginning with `=`, `+`, `-`, `@`, tab or CR (LF too, here) as a
/// formula, so such a cell gets a leading single quote and is quoted. Text here is anyone's: a
/// water user's town, a plan's names.
fn csv_text(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r', '\n']) {
        format!("\"'{}\"", text.replace('"', "\"\""))
    } else {
        csv_field(text)
    }
}

/// The report as CSV: a header line, then one line per indicator (goals first). The
/// [`NUMERIC_COLUMNS`] are numbers we format ourselves and stay numbers (a negative
/// `days_remaining` is `-12`, not `'-12`); every other column is text and neutralized.
pub fn csv(report: &Report) -> Vec<u8> {
    let mut out = String::from("\u{feff}");
    let line = |fields: &[String]| {
        fields
            .iter()
            .enumerate()
            .map(|(c, f)| {
                if NUMERIC_COLUMNS.contains(&c) {
                    csv_field(f)
                } else {
                    csv_text(f)
                }
            })
            .collect::<Vec<_>>()
            .join(",")
            + "\r\n"
    };
    out += &line(&HEADERS.map(String::from));
    for l in &report.lines {
        out += &line(&row(l));
    }
    out.into_bytes()
}

fn xlsx_error(e: XlsxError) -> Error {
    Error::Internal(anyhow::anyhow!("writing the workbook: {e}"))
}

fn status_color(s: Status) -> Color {
    match s {
        Status::Achieved => Color::RGB(0xD1F2DC),
        Status::AchievedLate => Color::RGB(0xE4F2C8),
        Status::OnTrack => Color::RGB(0xD6E6FB),
        Status::AtRisk => Color::RGB(0xFDEBC8),
        Status::Missed => Color::RGB(0xF9D2D0),
        Status::NotStarted => Color::RGB(0xE9ECEF),
    }
}

fn header(sheet: &mut Worksheet, names: &[&str]) -> std::result::Result<(), XlsxError> {
    let bold = Format::new()
        .set_bold()
        .set_background_color(Color::RGB(0x1F4E79))
        .set_font_color(Color::White)
        .set_border_bottom(FormatBorder::Thin);
    for (c, name) in names.iter().enumerate() {
        sheet.write_string_with_format(0, col(c), *name, &bold)?;
    }
    sheet.set_freeze_panes(1, 0)?;
    Ok(())
}

fn col(c: usize) -> u16 {
    u16::try_from(c).unwrap_or(u16::MAX)
}

fn xrow(r: usize) -> u32 {
    u32::try_from(r).unwrap_or(u32::MAX)
}

fn workbook(report: &Report) -> std::result::Result<Vec<u8>, XlsxError> {
    let mut book = Workbook::new();
    let plan = &report.plan.plan;
    {
        let sheet = book.add_worksheet();
        sheet.set_name("Report 报告")?;
        let title = Format::new().set_bold().set_font_size(14);
        sheet.write_string_with_format(
            0,
            0,
            format!(
                "{} {} (v{}) — as of {}",
                plan.title_zh,
                plan.title,
                report.plan.version,
                report.as_of.format("%Y-%m-%d")
            ),
            &title,
        )?;
        let mut names: Vec<&str> = HEADERS.to_vec();
        names.remove(8);
        names.insert(8, "progress 进度");
        let bold = Format::new()
            .set_bold()
            .set_background_color(Color::RGB(0x1F4E79))
            .set_font_color(Color::White);
        for (c, name) in names.iter().enumerate() {
            sheet.write_string_with_format(2, col(c), *name, &bold)?;
        }
        sheet.set_freeze_panes(3, 1)?;
        let percent = Format::new().set_num_format("0%");
        for (r, line) in report.lines.iter().enumerate() {
            let r = xrow(r + 3);
            let fields = row(line);
            let fill = Format::new().set_background_color(status_color(status(line)));
            for (c, field) in fields.iter().enumerate() {
                match c {
                    3 | 10 => {
                        sheet.write_number(r, col(c), field.parse::<f64>().unwrap_or(0.0))?;
                    }
                    6 => {
                        sheet.write_number(r, col(c), line.indicator.target)?;
                    }
                    7 => {
                        sheet.write_number(r, col(c), line.actual)?;
                    }
                    8 => {
                        sheet.write_number_with_format(
                            r,
                            col(c),
                            f64::from(line.evaluation.progress_bp) / 10000.0,
                            &percent,
                        )?;
                    }
                    11 | 12 => {
                        sheet.write_string_with_format(r, col(c), field, &fill)?;
                    }
                    _ => {
                        sheet.write_string(r, col(c), field)?;
                    }
                }
            }
        }
        if !report.lines.is_empty() {
            let last = xrow(report.lines.len() + 2);
            let bars = ConditionalFormatDataBar::new()
                .set_minimum(ConditionalFormatType::Number, 0)
                .set_maximum(ConditionalFormatType::Number, 1)
                .set_fill_color(Color::RGB(0x2E86DE));
            sheet.add_conditional_format(3, 8, last, 8, &bars)?;
            sheet.autofilter(2, 0, last, col(names.len() - 1))?;
        }
        sheet.autofit();
        sheet.set_column_width(1, 40)?;
        sheet.set_column_width(2, 24)?;
    }
    {
        let sheet = book.add_worksheet();
        sheet.set_name("Breakdowns 分项")?;
        header(sheet, &["code", "dimension", "key", "actual"])?;
        let mut r = 1;
        for line in &report.lines {
            for (dimension, list) in [
                ("town", &line.by_town),
                ("sector", &line.by_sector),
                ("department", &line.by_department),
            ] {
                for (key, value) in list {
                    sheet.write_string(xrow(r), 0, &line.indicator.code)?;
                    sheet.write_string(xrow(r), 1, dimension)?;
                    sheet.write_string(xrow(r), 2, key)?;
                    sheet.write_number(xrow(r), 3, *value)?;
                    r += 1;
                }
            }
        }
        sheet.autofit();
    }
    {
        let sheet = book.add_worksheet();
        sheet.set_name("History 历史")?;
        header(sheet, &["code", "date", "actual"])?;
        let mut r = 1;
        for line in &report.lines {
            for (date, value) in &line.history {
                sheet.write_string(xrow(r), 0, &line.indicator.code)?;
                sheet.write_string(xrow(r), 1, date.format("%Y-%m-%d").to_string())?;
                sheet.write_number(xrow(r), 2, *value)?;
                r += 1;
            }
        }
        sheet.autofit();
    }
    {
        let sheet = book.add_worksheet();
        sheet.set_name("Departments 部门")?;
        header(
            sheet,
            &["code", "department", "部门", "leads", "achieved", "open"],
        )?;
        let center = Format::new().set_align(FormatAlign::Center);
        for (r, d) in plan.departments.iter().enumerate() {
            let led: Vec<&IndicatorReport> = report
                .lines
                .iter()
                .filter(|l| l.indicator.lead.contains(&d.code))
                .collect();
            let achieved = led.iter().filter(|l| status(l) == Status::Achieved).count();
            let r = xrow(r + 1);
            sheet.write_string(r, 0, &d.code)?;
            sheet.write_string(r, 1, &d.name)?;
            sheet.write_string(r, 2, &d.name_zh)?;
            sheet.write_number_with_format(r, 3, led.len() as f64, &center)?;
            sheet.write_number_with_format(r, 4, achieved as f64, &center)?;
            sheet.write_number_with_format(r, 5, (led.len() - achieved) as f64, &center)?;
        }
        sheet.autofit();
    }
    book.save_to_buffer()
}

/// The report in `format`, with a file name from the plan code, version and date.
pub fn export(report: &Report, format: FileFormat) -> Result<Exported> {
    let content = match format {
        FileFormat::Csv => csv(report),
        FileFormat::Xlsx => workbook(report).map_err(xlsx_error)?,
    };
    Ok(Exported {
        content,
        content_type: format.content_type(),
        file_name: format!(
            "{}-v{}-{}.{}",
            report.plan.plan.code,
            report.plan.version,
            report.as_of.format("%Y-%m-%d"),
            format.extension()
        ),
    })
}

/// Splits one CSV line as [`csv`] writes it into its fields, unquoted (for tests).
#[cfg(test)]
pub(crate) fn split_csv_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.trim_end_matches(['\r', '\n']).chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                if let Some(f) = fields.last_mut() {
                    f.push('"');
                }
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => {
                if let Some(f) = fields.last_mut() {
                    f.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{self, StoredPlan};
    use crate::report::{build_report, parse_date};

    fn report() -> Report {
        let parsed = plan::parse(plan::DEFAULT_PLAN_TOML).expect("plan");
        let stored = StoredPlan {
            id: "p".into(),
            version: 1,
            plan: parsed,
            document: String::new(),
            sha256: String::new(),
            loaded_by: String::new(),
            loaded_at_ms: 0,
        };
        build_report(
            &stored,
            &[],
            &Default::default(),
            parse_date("2020-12-31").expect("date"),
            0,
        )
    }

    #[test]
    fn csv_has_a_line_per_indicator_and_quotes_commas() {
        let r = report();
        let text = String::from_utf8(csv(&r)).expect("utf-8");
        assert!(text.starts_with('\u{feff}'));
        assert_eq!(text.lines().count(), r.lines.len() + 1);
        assert!(text.contains("A8-CONTRACT-PROJECTS"));
        assert_eq!(csv_field("a,b \"c\""), "\"a,b \"\"c\"\"\"");
        let e = export(&r, FileFormat::Csv).expect("csv");
        assert_eq!(e.file_name, "xinbei-2020-v1-2020-12-31.csv");
    }

    #[test]
    fn formula_cells_are_neutralized_and_our_numbers_stay_numbers() {
        for bad in ["=1+1", "+1", "-1+cmd", "@SUM(A1)", "\t=1", "\r=1", "\n=1"] {
            let cell = csv_text(bad);
            assert!(cell.starts_with("\"'"), "{bad:?} -> {cell:?}");
        }
        assert_eq!(csv_text("=A1,\"x\""), "\"'=A1,\"\"x\"\"\"");
        assert_eq!(csv_text("新桥街道=1"), "新桥街道=1");
        assert_eq!(csv_text("a, b"), "\"a, b\"");
        // A line past its deadline: days_remaining is negative and stays a number.
        let mut r = report();
        let line = &mut r.lines[0];
        line.evaluation.days_remaining = -12;
        line.indicator.name = "-leading dash".into();
        let text = String::from_utf8(csv(&r)).expect("utf-8");
        let first = split_csv_line(text.lines().nth(1).expect("line"));
        assert_eq!(first[10], "-12");
        assert_eq!(first[1], "'-leading dash");
    }

    #[test]
    fn xlsx_is_a_zip_workbook() {
        let e = export(&report(), FileFormat::Xlsx).expect("xlsx");
        assert!(e.content.starts_with(b"PK"));
        assert!(e.content.len() > 2000);
        assert!(e.file_name.ends_with(".xlsx"));
        assert_eq!(
            FileFormat::from_file_name("Report.XLSX"),
            Some(FileFormat::Xlsx)
        );
        assert_eq!(FileFormat::from_file_name("report.txt"), None);
    }
}
