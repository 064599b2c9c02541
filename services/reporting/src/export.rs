//! A report as a file a district sends: CSV (UTF-8 with a byte-order mark, so Excel reads the
//! Chinese) or an Excel workbook with the report, the breakdowns, the history, the departments
//! and (for the plan's administrators) the projects counted, each sheet set up to print one
//! page wide. In Chinese or English, as asked.

use chrono::NaiveDate;
use cwsm_platform::lang::{Lang, Text};
use cwsm_platform::vocab::{Milestone, Sector};
use cwsm_platform::{Error, Result};
use rust_xlsxwriter::{
    Color, ConditionalFormatDataBar, ConditionalFormatType, ExcelDateTime, Format, FormatAlign,
    FormatBorder, Workbook, Worksheet, XlsxError,
};

use crate::plan::{Comparator, Plan};
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

/// The columns of the report, one row per indicator: (English, Chinese). The same in CSV and
/// in the workbook, in the language asked.
pub const COLUMNS: [(&str, &str); 17] = [
    ("code", "编码"),
    ("indicator", "指标"),
    ("action", "行动"),
    ("unit", "单位"),
    ("comparator", "比较"),
    ("target", "目标值"),
    ("actual", "实际值"),
    ("progress (%)", "进度（%）"),
    ("deadline", "截止日期"),
    ("days remaining", "剩余天数"),
    ("status", "状态"),
    ("lead departments", "牵头部门"),
    ("by town", "按镇（街道）"),
    ("by sector", "按领域"),
    ("by department", "按部门"),
    ("days late", "逾期天数"),
    ("completed projects", "已完成项目"),
];

/// The columns of [`COLUMNS`] that hold numbers we format ourselves (never a user's text).
pub const NUMERIC_COLUMNS: [usize; 7] = [2, 5, 6, 7, 9, 15, 16];

/// The columns of the counted-projects sheet: (English, Chinese).
pub const COUNTED_COLUMNS: [(&str, &str); 8] = [
    ("indicator code", "指标编码"),
    ("indicator", "指标"),
    ("project", "项目"),
    ("water user", "用水单位"),
    ("company", "节水服务企业"),
    ("town", "镇（街道）"),
    ("milestone", "节点"),
    ("effective date", "生效日期"),
];

/// A project an indicator counted (the workbook's sheet of counted projects).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountedRow {
    pub indicator_code: String,
    pub indicator: Text,
    pub project_title: String,
    pub water_user: String,
    pub company: String,
    pub town: String,
    pub milestone: Milestone,
    pub effective_date: NaiveDate,
}

/// What an export is asked for besides the report: its language, and the projects counted
/// (only for a caller who may see them by name: the plan's administrators).
#[derive(Clone, Copy, Debug)]
pub struct Ask<'a> {
    pub lang: Lang,
    pub counted: Option<&'a [CountedRow]>,
}

fn headers(columns: &[(&'static str, &'static str)], lang: Lang) -> Vec<&'static str> {
    columns.iter().map(|(en, zh)| lang.pick(zh, en)).collect()
}

/// A breakdown's keys by their names in `lang` (`name` maps a key to them).
fn breakdown(list: &[(String, f64)], name: impl Fn(&str) -> String, lang: Lang) -> String {
    list.iter()
        .map(|(k, v)| format!("{}={}", name(k), number(*v)))
        .collect::<Vec<_>>()
        .join(lang.pick("；", "; "))
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

/// How the plan's words read in `lang`: departments and sectors by name.
struct Names<'a> {
    plan: &'a Plan,
    lang: Lang,
}

impl Names<'_> {
    fn department(&self, code: &str) -> String {
        self.plan
            .departments
            .iter()
            .find(|d| d.code == code)
            .map(|d| self.lang.pick(&d.name_zh, &d.name).to_string())
            .unwrap_or_else(|| code.to_string())
    }
    fn sector(&self, code: &str) -> String {
        Sector::from_code(code)
            .map(|s| s.name(self.lang).to_string())
            .unwrap_or_else(|| code.to_string())
    }
    fn comparator(&self, c: Comparator) -> &'static str {
        let zh = match c {
            Comparator::AtLeast => "不少于",
            Comparator::AtMost => "不多于",
            Comparator::PercentReduction => "降低百分比",
            Comparator::RateAtLeast => "比率不低于",
            Comparator::RateAtMost => "比率不高于",
            Comparator::Coverage => "覆盖率",
        };
        self.lang.pick(zh, c.code())
    }
    fn status(&self, line: &IndicatorReport) -> String {
        let days = line.evaluation.days_late;
        match self.lang {
            Lang::Zh => status(line).label_zh_with(days),
            Lang::En => status(line).label_en_with(days),
        }
    }
    fn indicator<'i>(&self, i: &'i crate::plan::Indicator) -> &'i str {
        self.lang.pick(&i.name_zh, &i.name)
    }
}

/// An indicator's unit in Chinese: the plans write units in English ("projects"); these are
/// the ones the plans use. Another stays as written.
pub fn unit_zh(unit: &str) -> &str {
    match unit {
        "projects" => "个项目",
        "agencies" => "个机关",
        "audits" => "项审计",
        "communities" => "个社区",
        "irrigation districts" => "个灌区",
        "parks" => "个园区",
        "units" => "个单位",
        "units or products" => "个单位或产品",
        "million m³" => "百万立方米",
        "coefficient" => "系数",
        other => other,
    }
}

fn row(line: &IndicatorReport, names: &Names) -> Vec<String> {
    let i = &line.indicator;
    let lang = names.lang;
    vec![
        i.code.clone(),
        names.indicator(i).to_string(),
        i.action.to_string(),
        match lang {
            Lang::Zh => unit_zh(&i.unit).to_string(),
            Lang::En => i.unit.clone(),
        },
        names.comparator(i.comparator).to_string(),
        number(i.target),
        number(line.actual),
        format!("{:.2}", f64::from(line.evaluation.progress_bp) / 100.0),
        i.deadline.format("%Y-%m-%d").to_string(),
        line.evaluation.days_remaining.to_string(),
        names.status(line),
        i.lead
            .iter()
            .map(|d| names.department(d))
            .collect::<Vec<_>>()
            .join(lang.pick("、", ", ")),
        breakdown(&line.by_town, str::to_string, lang),
        breakdown(&line.by_sector, |k| names.sector(k), lang),
        breakdown(&line.by_department, |k| names.department(k), lang),
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

/// The report as CSV: a header line, then one line per indicator (goals first), the columns of
/// the workbook's report sheet in `lang`. The [`NUMERIC_COLUMNS`] are numbers we format
/// ourselves and stay numbers (a negative `days remaining` is `-12`, not `'-12`); every other
/// column is text and neutralized.
pub fn csv(report: &Report, lang: Lang) -> Vec<u8> {
    let names = Names {
        plan: &report.plan.plan,
        lang,
    };
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
    let header: Vec<String> = headers(&COLUMNS, lang)
        .into_iter()
        .map(String::from)
        .collect();
    out += &line(&header);
    for l in &report.lines {
        out += &line(&row(l, &names));
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

fn col(c: usize) -> u16 {
    u16::try_from(c).unwrap_or(u16::MAX)
}

fn xrow(r: usize) -> u32 {
    u32::try_from(r).unwrap_or(u32::MAX)
}

fn excel_date(d: NaiveDate) -> std::result::Result<ExcelDateTime, XlsxError> {
    use chrono::Datelike;
    ExcelDateTime::from_ymd(
        u16::try_from(d.year()).map_err(|_| XlsxError::DateTimeRangeError(d.to_string()))?,
        u8::try_from(d.month()).unwrap_or(1),
        u8::try_from(d.day()).unwrap_or(1),
    )
}

/// A sheet as a district office prints it: A4 landscape, one page wide, the title and header
/// rows on every page, the plan and date in the page header, page numbers in the footer; a
/// merged title row over the columns and the header row under it (`rows` 0 and 2).
fn sheet_for_print(
    sheet: &mut Worksheet,
    name: (&str, &str),
    title: &str,
    running_header: &str,
    columns: &[(&'static str, &'static str)],
    lang: Lang,
) -> std::result::Result<(), XlsxError> {
    let names = headers(columns, lang);
    sheet.set_name(lang.pick(name.0, name.1))?;
    let last = col(names.len().saturating_sub(1));
    let heading = Format::new()
        .set_bold()
        .set_font_size(14)
        .set_align(FormatAlign::Center)
        .set_align(FormatAlign::VerticalCenter);
    if last > 0 {
        sheet.merge_range(0, 0, 0, last, title, &heading)?;
    } else {
        sheet.write_string_with_format(0, 0, title, &heading)?;
    }
    sheet.set_row_height(0, 28)?;
    let bold = Format::new()
        .set_bold()
        .set_text_wrap()
        .set_background_color(Color::RGB(0x1F4E79))
        .set_font_color(Color::White)
        .set_border_bottom(FormatBorder::Thin);
    for (c, name) in names.iter().enumerate() {
        sheet.write_string_with_format(2, col(c), *name, &bold)?;
    }
    sheet.set_freeze_panes(3, 0)?;
    sheet
        .set_landscape()
        .set_paper_size(9) // A4
        .set_print_fit_to_pages(1, 0)
        .set_margins(0.4, 0.4, 0.6, 0.6, 0.3, 0.3);
    sheet.set_repeat_rows(0, 2)?;
    // `&&` is a literal ampersand in Excel's header codes.
    let running_header = running_header.replace('&', "&&");
    sheet.set_header(format!("&L{running_header}"));
    sheet.set_footer(match lang {
        Lang::Zh => "&C第 &P 页，共 &N 页".to_string(),
        Lang::En => "&CPage &P of &N".to_string(),
    });
    Ok(())
}

/// How a breakdown's keys read.
#[derive(Clone, Copy)]
enum Named {
    AsIs,
    Sector,
    Department,
}

fn workbook(report: &Report, ask: Ask) -> std::result::Result<Vec<u8>, XlsxError> {
    let lang = ask.lang;
    let plan = &report.plan.plan;
    let names = Names { plan, lang };
    let as_of = report.as_of.format("%Y-%m-%d").to_string();
    let plan_title = lang.pick(&plan.title_zh, &plan.title);
    let running = match lang {
        Lang::Zh => format!(
            "{plan_title}（第 {} 版），截至 {as_of}",
            report.plan.version
        ),
        Lang::En => format!("{plan_title} (v{}), as of {as_of}", report.plan.version),
    };
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let mut book = Workbook::new();
    {
        let sheet = book.add_worksheet();
        sheet_for_print(
            sheet,
            ("报告", "Report"),
            &running,
            &running,
            &COLUMNS,
            lang,
        )?;
        let percent = Format::new().set_num_format("0%");
        for (r, line) in report.lines.iter().enumerate() {
            let r = xrow(r + 3);
            let fields = row(line, &names);
            let fill = Format::new().set_background_color(status_color(status(line)));
            for (c, field) in fields.iter().enumerate() {
                match c {
                    2 | 9 | 15 => {
                        sheet.write_number(r, col(c), field.parse::<f64>().unwrap_or(0.0))?;
                    }
                    5 => {
                        sheet.write_number(r, col(c), line.indicator.target)?;
                    }
                    6 => {
                        sheet.write_number(r, col(c), line.actual)?;
                    }
                    7 => {
                        sheet.write_number_with_format(
                            r,
                            col(c),
                            f64::from(line.evaluation.progress_bp) / 10000.0,
                            &percent,
                        )?;
                    }
                    8 => {
                        sheet.write_datetime_with_format(
                            r,
                            col(c),
                            excel_date(line.indicator.deadline)?,
                            &date,
                        )?;
                    }
                    10 => {
                        sheet.write_string_with_format(r, col(c), field, &fill)?;
                    }
                    16 if !field.is_empty() => {
                        sheet.write_number(r, col(c), field.parse::<f64>().unwrap_or(0.0))?;
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
            sheet.add_conditional_format(3, 7, last, 7, &bars)?;
            sheet.autofilter(2, 0, last, col(COLUMNS.len() - 1))?;
        }
        // Widths that print: the names and breakdowns wrap rather than run a page wide.
        let wrap = Format::new().set_text_wrap();
        for (c, width) in [
            (0, 22.0),
            (1, 36.0),
            (2, 6.0),
            (3, 8.0),
            (4, 10.0),
            (5, 9.0),
            (6, 9.0),
            (7, 9.0),
            (8, 11.0),
            (9, 9.0),
            (10, 16.0),
            (11, 18.0),
            (12, 22.0),
            (13, 18.0),
            (14, 18.0),
            (15, 8.0),
            (16, 9.0),
        ] {
            sheet.set_column_width(c, width)?;
        }
        for c in [1, 11, 12, 13, 14] {
            sheet.set_column_format(c, &wrap)?;
        }
    }
    {
        let sheet = book.add_worksheet();
        let columns = [
            ("code", "编码"),
            ("dimension", "维度"),
            ("key", "分项"),
            ("actual", "实际值"),
        ];
        let title = lang.pick("分项统计", "Breakdowns");
        sheet_for_print(
            sheet,
            ("分项", "Breakdowns"),
            title,
            &running,
            &columns,
            lang,
        )?;
        let mut r = 3;
        for line in &report.lines {
            // Towns as the facts name them; sectors and departments by their names.
            for (dimension, list, named) in [
                (lang.pick("镇（街道）", "town"), &line.by_town, Named::AsIs),
                (lang.pick("领域", "sector"), &line.by_sector, Named::Sector),
                (
                    lang.pick("部门", "department"),
                    &line.by_department,
                    Named::Department,
                ),
            ] {
                for (key, value) in list {
                    let key = match named {
                        Named::Sector => names.sector(key),
                        Named::Department => names.department(key),
                        Named::AsIs => key.clone(),
                    };
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
        let columns = [("code", "编码"), ("date", "日期"), ("actual", "实际值")];
        let title = lang.pick("完成情况历史", "History");
        sheet_for_print(sheet, ("历史", "History"), title, &running, &columns, lang)?;
        let mut r = 3;
        for line in &report.lines {
            for (day, value) in &line.history {
                sheet.write_string(xrow(r), 0, &line.indicator.code)?;
                sheet.write_datetime_with_format(xrow(r), 1, excel_date(*day)?, &date)?;
                sheet.write_number(xrow(r), 2, *value)?;
                r += 1;
            }
        }
        sheet.autofit();
        sheet.set_column_width(1, 12)?;
    }
    {
        let sheet = book.add_worksheet();
        let columns = [
            ("code", "编码"),
            ("department", "部门"),
            ("leads", "牵头指标"),
            ("achieved", "已完成"),
            ("open", "未完成"),
        ];
        let title = lang.pick(
            "各部门牵头指标完成情况",
            "Departments and the indicators they lead",
        );
        sheet_for_print(
            sheet,
            ("部门", "Departments"),
            title,
            &running,
            &columns,
            lang,
        )?;
        let center = Format::new().set_align(FormatAlign::Center);
        for (r, d) in plan.departments.iter().enumerate() {
            let led: Vec<&IndicatorReport> = report
                .lines
                .iter()
                .filter(|l| l.indicator.lead.contains(&d.code))
                .collect();
            let achieved = led.iter().filter(|l| status(l) == Status::Achieved).count();
            let r = xrow(r + 3);
            sheet.write_string(r, 0, &d.code)?;
            sheet.write_string(r, 1, names.department(&d.code))?;
            sheet.write_number_with_format(r, 2, led.len() as f64, &center)?;
            sheet.write_number_with_format(r, 3, achieved as f64, &center)?;
            sheet.write_number_with_format(r, 4, (led.len() - achieved) as f64, &center)?;
        }
        sheet.autofit();
    }
    if let Some(counted) = ask.counted {
        let sheet = book.add_worksheet();
        let title = lang.pick("计入指标的项目", "The projects the indicators count");
        let name = ("计入项目", "Counted projects");
        sheet_for_print(sheet, name, title, &running, &COUNTED_COLUMNS, lang)?;
        for (r, c) in counted.iter().enumerate() {
            let r = xrow(r + 3);
            sheet.write_string(r, 0, &c.indicator_code)?;
            sheet.write_string(r, 1, c.indicator.get(lang))?;
            sheet.write_string(r, 2, &c.project_title)?;
            sheet.write_string(r, 3, &c.water_user)?;
            sheet.write_string(r, 4, &c.company)?;
            sheet.write_string(r, 5, &c.town)?;
            sheet.write_string(r, 6, c.milestone.name(lang))?;
            sheet.write_datetime_with_format(r, 7, excel_date(c.effective_date)?, &date)?;
        }
        sheet.autofit();
        sheet.set_column_width(7, 12)?;
    }
    book.save_to_buffer()
}

/// The report in `format` and the language asked, with a file name from the plan code,
/// version and date. The workbook adds the counted projects when `ask` has them.
pub fn export(report: &Report, format: FileFormat, ask: Ask) -> Result<Exported> {
    let content = match format {
        FileFormat::Csv => csv(report, ask.lang),
        FileFormat::Xlsx => workbook(report, ask).map_err(xlsx_error)?,
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

    fn english() -> Ask<'static> {
        Ask {
            lang: Lang::En,
            counted: None,
        }
    }

    /// Issue 13: the workbook printed as 10 portrait pages, the first holding the code column
    /// alone. Opened in LibreOffice (as a district office would print it, to PDF), every sheet
    /// is one page wide: here each fits one page, so the PDF has a page per sheet. Needs
    /// LibreOffice's `soffice` (CI installs it: CWSM_REQUIRE_LIBREOFFICE=1); skipped without.
    #[test]
    fn the_workbook_prints_one_page_wide_per_sheet_in_libreoffice() {
        let soffice = std::process::Command::new("soffice")
            .arg("--version")
            .output();
        if soffice.is_err() {
            assert!(
                std::env::var("CWSM_REQUIRE_LIBREOFFICE").is_err(),
                "CWSM_REQUIRE_LIBREOFFICE is set but soffice is not installed"
            );
            eprintln!("skipped: no LibreOffice (soffice)");
            return;
        }
        let counted = [CountedRow {
            indicator_code: "A8-CONTRACT-PROJECTS".into(),
            indicator: Text::new("合同节水管理项目", "contract projects"),
            project_title: "教学楼供水管网查漏修复".into(),
            water_user: "常州某职业技术学院".into(),
            company: "常州清源节水科技有限公司".into(),
            town: "三井街道".into(),
            milestone: Milestone::Contracted,
            effective_date: NaiveDate::from_ymd_opt(2020, 6, 1).expect("a date"),
        }];
        let e = export(
            &report(),
            FileFormat::Xlsx,
            Ask {
                lang: Lang::Zh,
                counted: Some(&counted),
            },
        )
        .expect("xlsx");
        let dir = std::env::temp_dir().join(format!("cwsm-export-{}", cwsm_platform::new_id()));
        std::fs::create_dir_all(&dir).expect("a folder");
        let book = dir.join("report.xlsx");
        std::fs::write(&book, &e.content).expect("written");
        let out = std::process::Command::new("soffice")
            .arg(format!(
                "-env:UserInstallation=file://{}",
                dir.join("profile").display()
            ))
            .args(["--headless", "--convert-to", "pdf", "--outdir"])
            .arg(&dir)
            .arg(&book)
            .output()
            .expect("soffice runs");
        let pdf = std::fs::read(dir.join("report.pdf"))
            .unwrap_or_else(|e| panic!("no PDF ({e}): {out:?}"));
        let _ = std::fs::remove_dir_all(&dir);
        let pages = pdf_pages(&pdf);
        assert_eq!(pages, 5, "five sheets, each on one page: {pages} pages");
    }

    /// The pages of a PDF: its `/Type /Page` objects (not `/Pages`).
    fn pdf_pages(pdf: &[u8]) -> usize {
        let mut pages = 0;
        for pattern in [&b"/Type/Page"[..], &b"/Type /Page"[..]] {
            pages += pdf
                .windows(pattern.len() + 1)
                .filter(|w| w.starts_with(pattern) && w[pattern.len()] != b's')
                .count();
        }
        pages
    }

    #[test]
    fn csv_has_a_line_per_indicator_and_quotes_commas() {
        let r = report();
        let text = String::from_utf8(csv(&r, Lang::En)).expect("utf-8");
        assert!(text.starts_with('\u{feff}'));
        assert_eq!(text.lines().count(), r.lines.len() + 1);
        assert!(text.contains("A8-CONTRACT-PROJECTS"));
        assert_eq!(csv_field("a,b \"c\""), "\"a,b \"\"c\"\"\"");
        let e = export(&r, FileFormat::Csv, english()).expect("csv");
        assert_eq!(e.file_name, "xinbei-2020-v1-2020-12-31.csv");
        // In Chinese: the headers, the indicator's and the departments' names, the status.
        let zh = String::from_utf8(csv(&r, Lang::Zh)).expect("utf-8");
        let header = zh.lines().next().expect("a header");
        assert!(header.starts_with("\u{feff}编码,指标,行动"), "{header}");
        let a8 = zh
            .lines()
            .find(|l| l.starts_with("A8-CONTRACT-PROJECTS,"))
            .expect("A8");
        // As of its deadline day with nothing counted: at risk while the day lasts.
        assert!(
            a8.contains("合同节水管理") && a8.contains("有风险") && a8.contains(",个项目,"),
            "{a8}"
        );
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
        let text = String::from_utf8(csv(&r, Lang::En)).expect("utf-8");
        let first = split_csv_line(text.lines().nth(1).expect("line"));
        assert_eq!(first[9], "-12");
        assert_eq!(first[1], "'-leading dash");
    }

    #[test]
    fn xlsx_is_a_zip_workbook() {
        let e = export(&report(), FileFormat::Xlsx, english()).expect("xlsx");
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
