//! Files people bring from meter systems and spreadsheets: readings as CSV, read with the `csv`
//! crate (quoted cells, CRLF, a BOM, ragged rows), checked line by line so an error names the
//! line and nothing is sent from a file that has one.

use chrono::DateTime;

/// One reading of a CSV file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvReading {
    pub meter_id: String,
    /// The end of the reading's interval, ms since the epoch (UTC).
    pub at_ms: i64,
    pub value_litres: i64,
    pub estimated: bool,
}

/// Reads readings: columns `meter_id`, `timestamp` (RFC 3339, the end of the interval),
/// `value_litres`, `estimated`, by the header when the first row names a `timestamp` column, else
/// in that order (without `meter_id` when `meter` is given, which then names every row's meter).
/// Blank lines are skipped. An error names the line (1-based) and the cell.
pub fn readings_csv(text: &str, meter: Option<&str>) -> Result<Vec<CsvReading>, String> {
    // A spreadsheet's UTF-8 export often starts with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut columns: Vec<String> = match meter {
        Some(_) => vec![
            "timestamp".into(),
            "value_litres".into(),
            "estimated".into(),
        ],
        None => vec![
            "meter_id".into(),
            "timestamp".into(),
            "value_litres".into(),
            "estimated".into(),
        ],
    };
    let mut rows = Vec::new();
    let mut first = true;
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
    for record in reader.records() {
        let record = record.map_err(|e| match e.position() {
            Some(p) => format!("line {}: {e}", line_at(p.byte())),
            None => e.to_string(),
        })?;
        let line = record.position().map(|p| line_at(p.byte())).unwrap_or(0);
        if record.iter().all(str::is_empty) {
            continue;
        }
        if std::mem::take(&mut first) && record.iter().any(|c| c.eq_ignore_ascii_case("timestamp"))
        {
            columns = record.iter().map(str::to_lowercase).collect();
            if !columns.iter().any(|c| c == "value_litres") {
                return Err("the CSV needs timestamp and value_litres columns".into());
            }
            if meter.is_none() && !columns.iter().any(|c| c == "meter_id") {
                return Err("the CSV has no meter_id column: give --meter".into());
            }
            continue;
        }
        let cell = |name: &str| {
            columns
                .iter()
                .position(|c| c == name)
                .and_then(|i| record.get(i))
                .unwrap_or("")
        };
        let ts = cell("timestamp");
        let time = DateTime::parse_from_rfc3339(ts)
            .map_err(|_| format!("line {line}: timestamp {ts:?} is not RFC 3339"))?;
        let value = cell("value_litres");
        let value_litres: i64 = value
            .parse()
            .map_err(|_| format!("line {line}: value_litres {value:?} is not an integer"))?;
        let meter_id = match meter {
            Some(m) => m.to_string(),
            None => {
                let m = cell("meter_id");
                if m.is_empty() {
                    return Err(format!(
                        "line {line}: no meter_id (the CSV has no meter_id column: give --meter)"
                    ));
                }
                m.to_string()
            }
        };
        rows.push(CsvReading {
            meter_id,
            at_ms: time.timestamp_millis(),
            value_litres,
            estimated: matches!(
                cell("estimated").to_lowercase().as_str(),
                "true" | "1" | "yes" | "y"
            ),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_or_a_given_meter() {
        let text = "meter_id,timestamp,value_litres,estimated\n\
                    m1,2025-01-01T12:00:00+08:00,1200,false\n\
                    m1,2025-01-02T12:00:00+08:00,1300,true\n";
        let rows = readings_csv(text, None).expect("parses");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].meter_id, "m1");
        assert_eq!(rows[0].at_ms, 1_735_704_000_000);
        assert_eq!(rows[1].value_litres, 1300);
        assert!(rows[1].estimated);
        let bare = readings_csv("2025-01-01T04:00:00Z,5\n", Some("m2")).expect("parses");
        assert_eq!((bare[0].meter_id.as_str(), bare[0].value_litres), ("m2", 5));
        assert!(readings_csv("2025-01-01T04:00:00Z,5\n", None).is_err());
        let err = readings_csv("m1,yesterday,5\n", None).expect_err("a bad time");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn quoted_cells_crlf_bom_and_columns_in_any_order() {
        let text = "\u{feff}\"value_litres\",\"timestamp\",\"meter_id\"\r\n\
                    \"1,200\",2025-01-01T12:00:00+08:00,m1\r\n";
        // A quoted "1,200" is one cell (the old splitter saw two): not an integer, said so.
        let err = readings_csv(text, None).expect_err("1,200 is not an integer");
        assert!(err.contains("line 2") && err.contains("1,200"), "{err}");
        let text = "\u{feff}value_litres,timestamp,meter_id\r\n\r\n1200,2025-01-01T12:00:00+08:00,\"m,1\"\r\n\nx,2025-01-02T12:00:00+08:00,m1\n";
        let err = readings_csv(text, None).expect_err("x is not an integer");
        assert!(err.starts_with("line 5:"), "blank lines count: {err}");
        let rows = readings_csv(&text[..text.len() - 33], None).expect("parses");
        assert_eq!(rows[0].meter_id, "m,1");
        assert_eq!(rows[0].value_litres, 1200);
    }
}
