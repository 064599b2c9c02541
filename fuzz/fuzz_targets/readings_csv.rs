//! Any bytes as a readings file (CSV, and the same bytes as an xlsx workbook): the import never
//! panics, and every reading it returns has a meter and came from a line the file has; any
//! bytes as a driver file likewise.
#![no_main]

use cwsm::import::{Unit, driver_values, read_table, readings};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for name in ["readings.csv", "readings.xlsx"] {
        let Ok(rows) = read_table(name, data) else {
            continue;
        };
        let lines = data.iter().filter(|b| **b == b'\n').count() + 1;
        for meter in [None, Some("m1")] {
            for unit in [Unit::Litres, Unit::CubicMetres] {
                if let Ok(found) = readings(&rows, meter, unit) {
                    assert!(name.ends_with(".xlsx") || found.len() <= lines);
                    assert!(found.iter().all(|r| !r.meter_id.is_empty()));
                }
            }
        }
        let _ = driver_values(&rows, None);
        let _ = driver_values(&rows, Some("occupancy"));
    }
});
