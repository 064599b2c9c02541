//! Files people bring from meter systems and spreadsheets: readings and driver values, as CSV
//! (read with the `csv` crate: quoted cells, CRLF, a BOM, ragged rows) or as the first sheet of
//! an Excel workbook (`.xlsx`, read with calamine). Checked row by row, so an error names the
//! line and nothing is sent from a file that has one. Volumes are litres or cubic metres with
//! up to three decimals, converted exactly (never through a float); a time without an offset
//! is China Standard Time.

use chrono::{DateTime, NaiveDateTime};
use cwsm_projects::metering::{TimestampsMark, looks_like};

/// A row of a file: its line (1-based: the CSV line, or the sheet's row) and its cells as text.
#[derive(Clone, Debug, PartialEq)]
pub struct TableRow {
    pub line: usize,
    pub cells: Vec<String>,
}

/// The rows of a file named `name`: an Excel workbook's first sheet when it ends in `.xlsx`,
/// else CSV (UTF-8). Blank rows are left out.
pub fn read_table(name: &str, bytes: &[u8]) -> Result<Vec<TableRow>, String> {
    if name.to_lowercase().ends_with(".xlsx") {
        return xlsx_rows(bytes);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!("the file is not UTF-8 text ({e}): save the CSV as UTF-8, or give the .xlsx")
    })?;
    csv_rows(text)
}

/// The rows of CSV text. A line starting with `#` is a comment (a file may say what its
/// columns mean, as seeds/walkthrough's readings do).
pub fn csv_rows(text: &str) -> Result<Vec<TableRow>, String> {
    // A spreadsheet's UTF-8 export often starts with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    // The line a byte offset is on (csv's own line count skips blank lines and CRLF pairs).
    // A record's offset may point at the line ends before it: its line is the first one after.
    let line_at = |byte: u64| {
        let bytes = text.as_bytes();
        let mut end = usize::try_from(byte).unwrap_or(usize::MAX).min(bytes.len());
        while end < bytes.len() && matches!(bytes[end], b'\r' | b'\n') {
            end += 1;
        }
        1 + bytes[..end].iter().filter(|b| **b == b'\n').count()
    };
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| match e.position() {
            Some(p) => format!("line {}: {e}", line_at(p.byte())),
            None => e.to_string(),
        })?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        rows.push(TableRow {
            line: record.position().map(|p| line_at(p.byte())).unwrap_or(0),
            cells: record.iter().map(str::to_string).collect(),
        });
    }
    Ok(rows)
}

/// The rows of an xlsx workbook's first sheet: numbers as written (12.345), dates and times
/// as `YYYY-MM-DD HH:MM:SS` (no offset: China Standard Time).
pub fn xlsx_rows(bytes: &[u8]) -> Result<Vec<TableRow>, String> {
    use calamine::{Data, Reader, Xlsx};
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(std::io::Cursor::new(bytes))
        .map_err(|e| format!("not an Excel workbook (.xlsx): {e}"))?;
    let sheet = book
        .worksheet_range_at(0)
        .ok_or("the workbook has no sheet")?
        .map_err(|e| format!("the first sheet cannot be read: {e}"))?;
    let first_row = sheet.start().map(|(r, _)| r as usize).unwrap_or(0);
    let first_column = sheet.start().map(|(_, c)| c as usize).unwrap_or(0);
    let mut rows = Vec::new();
    for (i, row) in sheet.rows().enumerate() {
        let mut cells: Vec<String> = vec![String::new(); first_column];
        for cell in row {
            cells.push(match cell {
                Data::Empty => String::new(),
                Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => {
                    s.trim().to_string()
                }
                Data::Int(n) => n.to_string(),
                // The shortest text that reads back as the same number: what was typed.
                Data::Float(f) => f.to_string(),
                Data::Bool(b) => b.to_string(),
                Data::DateTime(d) => d
                    .as_datetime()
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .ok_or_else(|| format!("row {}: a date out of range", first_row + i + 1))?,
                Data::Error(e) => {
                    return Err(format!(
                        "row {}: a cell holds the error {e}",
                        first_row + i + 1
                    ));
                }
            });
        }
        if cells.iter().all(String::is_empty) {
            continue;
        }
        rows.push(TableRow {
            line: first_row + i + 1,
            cells,
        });
    }
    Ok(rows)
}

/// The unit of a file's volumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Litres,
    CubicMetres,
}

/// Litres of `text` in `unit`, exactly: litres are whole, cubic metres have at most three
/// decimals (a litre); "12.345" m³ is 12,345 L, "1,200" is refused (not a number).
pub fn litres(text: &str, unit: Unit) -> Result<i64, String> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let numeric = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !numeric(whole) || !numeric(fraction) {
        return Err(format!("{text:?} is not a number"));
    }
    let (scale, places) = match unit {
        Unit::Litres => (1, 0),
        Unit::CubicMetres => (1_000, 3),
    };
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > places {
        return Err(match unit {
            Unit::Litres => format!("{text:?} is not a whole number of litres"),
            Unit::CubicMetres => {
                format!("{text:?} m³ is not a whole number of litres (at most three decimals)")
            }
        });
    }
    let too_big = || format!("{text:?} is beyond any volume a reading holds");
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_big())?
    };
    let fraction: i64 = format!("{fraction:0<places$}").parse().unwrap_or(0);
    let value = whole
        .checked_mul(scale)
        .and_then(|w| w.checked_add(fraction))
        .ok_or_else(too_big)?;
    Ok(if negative { -value } else { value })
}

/// An instant of `text`, ms since the epoch: RFC 3339 (`2025-01-01T00:00:00+08:00`), or a
/// date and time without an offset (`2025-01-01 00:00[:00]`, `T` or a space, `-` or `/`),
/// taken as China Standard Time.
pub fn instant(text: &str) -> Result<i64, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    let normal = text.replace('/', "-").replacen('T', " ", 1);
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(&normal, f).ok())
        .map(|t| t.and_utc().timestamp_millis() - 8 * 3_600_000)
        .ok_or_else(|| {
            format!(
                "{text:?} is not a time (RFC 3339, or YYYY-MM-DD HH:MM[:SS] in China Standard Time)"
            )
        })
}

/// One reading of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileReading {
    pub meter_id: String,
    /// The reading's time as the file gives it, ms since the epoch (UTC).
    pub at_ms: i64,
    pub value_litres: i64,
    pub estimated: bool,
}

/// Readings of `rows`: columns `meter_id`, `timestamp`, `value_litres` or `value_m3`,
/// `estimated`, by the header when the first row names a `timestamp` column, else in that
/// order (without `meter_id` when `meter` is given, which then names every row's meter; the
/// value in `unit`). An error names the line and the cell.
pub fn readings(
    rows: &[TableRow],
    meter: Option<&str>,
    unit: Unit,
) -> Result<Vec<FileReading>, String> {
    let mut unit = unit;
    let value = match unit {
        Unit::Litres => "value_litres",
        Unit::CubicMetres => "value_m3",
    };
    let mut columns: Vec<String> = meter
        .is_none()
        .then_some("meter_id")
        .into_iter()
        .chain(["timestamp", value, "estimated"])
        .map(String::from)
        .collect();
    let mut rows = rows;
    if let Some(first) = rows.first()
        && first
            .cells
            .iter()
            .any(|c| c.eq_ignore_ascii_case("timestamp"))
    {
        columns = first.cells.iter().map(|c| c.to_lowercase()).collect();
        unit = match (
            columns.iter().any(|c| c == "value_litres"),
            columns.iter().any(|c| c == "value_m3"),
        ) {
            (true, false) => Unit::Litres,
            (false, true) => Unit::CubicMetres,
            _ => {
                return Err(
                    "the file needs a timestamp column and one of value_litres, value_m3".into(),
                );
            }
        };
        if meter.is_none() && !columns.iter().any(|c| c == "meter_id") {
            return Err("the file has no meter_id column: give --meter".into());
        }
        rows = &rows[1..];
    }
    let value = match unit {
        Unit::Litres => "value_litres",
        Unit::CubicMetres => "value_m3",
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let line = row.line;
        let cell = |name: &str| {
            columns
                .iter()
                .position(|c| c == name)
                .and_then(|i| row.cells.get(i))
                .map(String::as_str)
                .unwrap_or("")
        };
        let at_ms =
            instant(cell("timestamp")).map_err(|e| format!("line {line}: timestamp {e}"))?;
        let value_litres =
            litres(cell(value), unit).map_err(|e| format!("line {line}: {value} {e}"))?;
        let meter_id = match meter {
            Some(m) => m.to_string(),
            None => match cell("meter_id") {
                "" => {
                    return Err(format!(
                        "line {line}: no meter_id (the file has no meter_id column: give --meter)"
                    ));
                }
                m => m.to_string(),
            },
        };
        out.push(FileReading {
            meter_id,
            at_ms,
            value_litres,
            estimated: matches!(
                cell("estimated").to_lowercase().as_str(),
                "true" | "1" | "yes" | "y" | "是"
            ),
        });
    }
    Ok(out)
}

/// What each meter's readings in `readings` look like: (meter, first, last, interval) where
/// the timestamps look stamped at interval starts or ends ([`looks_like`]), the interval
/// being the commonest step between a meter's consecutive readings.
pub fn timestamp_conventions(readings: &[FileReading]) -> Vec<(String, TimestampsMark, i64, i64)> {
    let mut by_meter: std::collections::BTreeMap<&str, Vec<i64>> = Default::default();
    for r in readings {
        by_meter.entry(&r.meter_id).or_default().push(r.at_ms);
    }
    by_meter
        .into_iter()
        .filter_map(|(meter, mut times)| {
            times.sort_unstable();
            let mut steps: std::collections::HashMap<i64, usize> = Default::default();
            for w in times.windows(2) {
                *steps.entry(w[1] - w[0]).or_default() += 1;
            }
            let interval = steps.into_iter().max_by_key(|(step, n)| (*n, *step))?.0;
            let (first, last) = (*times.first()?, *times.last()?);
            let looks = looks_like(first, last, interval)?;
            Some((meter.to_string(), looks, first, interval))
        })
        .collect()
}

/// A driver's values read from a file: its name and (date, value) by day.
pub type DriverColumn = (String, Vec<(String, f64)>);

/// Driver values of `rows`: a `date` column (YYYY-MM-DD) and a column per driver named by its
/// header; `driver` picks one (a file without a header row has two columns, date and that
/// driver's value). Returns (driver, [(date, value)]) per driver, in the file's column order.
pub fn driver_values(rows: &[TableRow], driver: Option<&str>) -> Result<Vec<DriverColumn>, String> {
    let header = rows.first().filter(|r| {
        r.cells
            .first()
            .is_some_and(|c| c.eq_ignore_ascii_case("date"))
    });
    let (names, data): (Vec<(usize, String)>, &[TableRow]) = match (header, driver) {
        (Some(h), Some(d)) => {
            let i = h.cells.iter().position(|c| c == d).ok_or_else(|| {
                format!(
                    "the header names no column {d:?} (it has: {})",
                    h.cells[1..].join(", ")
                )
            })?;
            (vec![(i, d.to_string())], &rows[1..])
        }
        (Some(h), None) => (
            h.cells
                .iter()
                .enumerate()
                .skip(1)
                .filter(|(_, c)| !c.is_empty())
                .map(|(i, c)| (i, c.clone()))
                .collect(),
            &rows[1..],
        ),
        (None, Some(d)) => (vec![(1, d.to_string())], rows),
        (None, None) => {
            return Err("the file has no header row (date, then a column per driver): give --driver for its second column".into());
        }
    };
    if names.is_empty() {
        return Err("the header names no driver column after date".into());
    }
    let mut out: Vec<DriverColumn> = names.iter().map(|(_, n)| (n.clone(), Vec::new())).collect();
    for row in data {
        let line = row.line;
        let date = row.cells.first().map(String::as_str).unwrap_or("");
        // A date written by a spreadsheet as a date-time at midnight is that date.
        let date = date.strip_suffix(" 00:00:00").unwrap_or(date);
        chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
            .map_err(|_| format!("line {line}: date {date:?} is not YYYY-MM-DD"))?;
        for ((i, name), (_, values)) in names.iter().zip(out.iter_mut()) {
            let text = row.cells.get(*i).map(String::as_str).unwrap_or("");
            if text.is_empty() {
                continue; // no value that day
            }
            let value: f64 = text
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| format!("line {line}: {name} {text:?} is not a number"))?;
            values.push((date.to_string(), value));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv_readings(text: &str, meter: Option<&str>) -> Result<Vec<FileReading>, String> {
        readings(&csv_rows(text)?, meter, Unit::Litres)
    }

    #[test]
    fn a_header_or_a_given_meter() {
        let text = "meter_id,timestamp,value_litres,estimated\n\
                    m1,2025-01-01T12:00:00+08:00,1200,false\n\
                    m1,2025-01-02T12:00:00+08:00,1300,true\n";
        let rows = csv_readings(text, None).expect("parses");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].meter_id, "m1");
        assert_eq!(rows[0].at_ms, 1_735_704_000_000);
        assert_eq!(rows[1].value_litres, 1300);
        assert!(rows[1].estimated);
        let bare = csv_readings("2025-01-01T04:00:00Z,5\n", Some("m2")).expect("parses");
        assert_eq!((bare[0].meter_id.as_str(), bare[0].value_litres), ("m2", 5));
        assert!(csv_readings("2025-01-01T04:00:00Z,5\n", None).is_err());
        let err = csv_readings("m1,yesterday,5\n", None).expect_err("a bad time");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn comment_lines_say_what_the_columns_mean_and_lines_still_count() {
        let text = "# timestamp: the end of the day whose use value_m3 is\n\
                    timestamp,value_m3\n\
                    # a note in the middle\n\
                    2025-01-02 00:00,1.5\n\
                    2025-01-03 00:00,x\n";
        let err = readings(&csv_rows(text).expect("rows"), Some("m1"), Unit::Litres)
            .expect_err("x is not a number");
        assert!(err.starts_with("line 5:"), "comments count as lines: {err}");
        let rows = readings(
            &csv_rows(&text[..text.len() - 19]).expect("rows"),
            Some("m1"),
            Unit::Litres,
        )
        .expect("parses");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].value_litres, 1_500);
    }

    #[test]
    fn quoted_cells_crlf_bom_and_columns_in_any_order() {
        let text = "\u{feff}\"value_litres\",\"timestamp\",\"meter_id\"\r\n\
                    \"1,200\",2025-01-01T12:00:00+08:00,m1\r\n";
        // A quoted "1,200" is one cell (the old splitter saw two): not a number, said so.
        let err = csv_readings(text, None).expect_err("1,200 is not a number");
        assert!(err.contains("line 2") && err.contains("1,200"), "{err}");
        let text = "\u{feff}value_litres,timestamp,meter_id\r\n\r\n1200,2025-01-01T12:00:00+08:00,\"m,1\"\r\n\nx,2025-01-02T12:00:00+08:00,m1\n";
        let err = csv_readings(text, None).expect_err("x is not a number");
        assert!(err.starts_with("line 5:"), "blank lines count: {err}");
        let rows = csv_readings(&text[..text.len() - 33], None).expect("parses");
        assert_eq!(rows[0].meter_id, "m,1");
        assert_eq!(rows[0].value_litres, 1200);
    }

    /// Issue 12's finding: m³ with decimals was refused (integer litres only).
    #[test]
    fn cubic_metres_with_decimals_are_litres_exactly() {
        let m3 = |s| litres(s, Unit::CubicMetres);
        assert_eq!(m3("12.345"), Ok(12_345));
        assert_eq!(m3("0.001"), Ok(1));
        assert_eq!(m3("-3.5"), Ok(-3_500));
        assert_eq!(m3("7"), Ok(7_000));
        assert_eq!(m3(".25"), Ok(250));
        assert_eq!(
            m3("1.2340"),
            Ok(1_234),
            "trailing zeros are no litre fractions"
        );
        // 0.1 + 0.2 in floats is 0.30000000000000004: here it is 300 L, never 300.00000000000006.
        assert_eq!(m3("0.3"), Ok(300));
        assert!(
            m3("0.0005")
                .expect_err("half a litre")
                .contains("three decimals")
        );
        assert!(m3("1,2").is_err() && m3("").is_err() && m3(".").is_err() && m3("1e3").is_err());
        assert!(
            m3("9223372036854776")
                .expect_err("too big")
                .contains("beyond")
        );
        assert_eq!(litres("1200", Unit::Litres), Ok(1_200));
        assert!(
            litres("1200.5", Unit::Litres)
                .expect_err("half")
                .contains("whole")
        );
        let text = "timestamp,value_m3\n2025-01-01 00:00,12.345\n2025-01-02 00:00,0.5\n";
        let rows =
            readings(&csv_rows(text).expect("csv"), Some("m1"), Unit::Litres).expect("parses");
        assert_eq!(
            rows.iter().map(|r| r.value_litres).collect::<Vec<_>>(),
            vec![12_345, 500]
        );
        // Without an offset, China Standard Time: 00:00 there is 16:00 UTC the day before.
        assert_eq!(rows[0].at_ms, instant("2024-12-31T16:00:00Z").expect("utc"));
        assert_eq!(instant("2025/01/01 00:00:00"), Ok(rows[0].at_ms));
        assert!(instant("01.01.2025").is_err());
    }

    #[test]
    fn files_stamped_at_interval_starts_are_recognised() {
        // A day's readings at 00:00 from 2024-01-01 to 2024-12-31: starts.
        let day = 86_400_000;
        let first = instant("2024-01-01 00:00").expect("time");
        let file: Vec<FileReading> = (0..366)
            .map(|i| FileReading {
                meter_id: "m1".into(),
                at_ms: first + i * day,
                value_litres: 1,
                estimated: false,
            })
            .collect();
        let seen = timestamp_conventions(&file);
        assert_eq!(
            seen,
            vec![("m1".to_string(), TimestampsMark::Start, first, day)]
        );
        // The same days stamped at their ends (2024-01-02 … 2025-01-01).
        let ends: Vec<FileReading> = file
            .iter()
            .map(|r| FileReading {
                at_ms: r.at_ms + day,
                ..r.clone()
            })
            .collect();
        assert_eq!(timestamp_conventions(&ends)[0].1, TimestampsMark::End);
    }

    /// Issue 12's finding: the second column of any CSV was taken as the driver, whatever the
    /// header said.
    #[test]
    fn drivers_by_their_header() {
        let text = "date,cdd,students\n2025-01-01,0.0,12000\n2025-01-02,1.5,\n";
        let rows = csv_rows(text).expect("csv");
        let all = driver_values(&rows, None).expect("parses");
        assert_eq!(all.len(), 2);
        assert_eq!(
            all[0],
            (
                "cdd".to_string(),
                vec![("2025-01-01".into(), 0.0), ("2025-01-02".into(), 1.5)]
            )
        );
        // A day without a value is no value, not zero.
        assert_eq!(
            all[1],
            (
                "students".to_string(),
                vec![("2025-01-01".into(), 12_000.0)]
            )
        );
        let students = driver_values(&rows, Some("students")).expect("parses");
        assert_eq!(students, vec![all[1].clone()]);
        let err = driver_values(&rows, Some("occupancy")).expect_err("no such column");
        assert!(err.contains("cdd, students"), "{err}");
        // No header: two columns, the driver named.
        let bare = csv_rows("2025-01-01,3\n").expect("csv");
        assert_eq!(
            driver_values(&bare, Some("occupancy")).expect("parses")[0].1,
            vec![("2025-01-01".into(), 3.0)]
        );
        assert!(driver_values(&bare, None).is_err());
        let err = driver_values(&csv_rows("date,cdd\n2025-13-01,1\n").expect("csv"), None)
            .expect_err("no 13th month");
        assert!(err.starts_with("line 2:"), "{err}");
        let err = driver_values(&csv_rows("date,cdd\n2025-01-01,NaN\n").expect("csv"), None)
            .expect_err("not a number");
        assert!(err.contains("cdd"), "{err}");
    }

    #[test]
    fn an_xlsx_sheet_reads_like_its_csv() {
        // A workbook made with rust_xlsxwriter (as the exports are): a date-time cell, a
        // number with decimals, text.
        let mut book = rust_xlsxwriter::Workbook::new();
        let sheet = book.add_worksheet();
        let format = rust_xlsxwriter::Format::new().set_num_format("yyyy-mm-dd hh:mm");
        sheet.write_string(0, 0, "timestamp").expect("cell");
        sheet.write_string(0, 1, "value_m3").expect("cell");
        let at =
            rust_xlsxwriter::ExcelDateTime::parse_from_str("2025-01-01 00:00:00").expect("time");
        sheet
            .write_datetime_with_format(1, 0, &at, &format)
            .expect("cell");
        sheet.write_number(1, 1, 12.345).expect("cell");
        sheet.write_string(2, 0, "2025-01-02 00:00").expect("cell");
        sheet.write_number(2, 1, 0.3).expect("cell");
        let bytes = book.save_to_buffer().expect("xlsx");
        let rows = read_table("readings.XLSX", &bytes).expect("reads");
        assert_eq!(
            rows[1].cells,
            vec!["2025-01-01 00:00:00".to_string(), "12.345".to_string()]
        );
        assert_eq!(rows[2].line, 3);
        let parsed = readings(&rows, Some("m1"), Unit::Litres).expect("parses");
        assert_eq!(
            (parsed[0].value_litres, parsed[1].value_litres),
            (12_345, 300)
        );
        assert_eq!(parsed[0].at_ms, instant("2025-01-01 00:00").expect("time"));
        assert!(
            read_table("x.xlsx", b"not a zip")
                .expect_err("junk")
                .contains("not an Excel workbook")
        );
        assert!(
            read_table("x.csv", &[0xff, 0xfe])
                .expect_err("UTF-16")
                .contains("UTF-8")
        );
    }
}
