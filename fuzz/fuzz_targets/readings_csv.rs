//! Any bytes as a readings CSV: the import never panics, and every reading it returns has a
//! meter and came from a line the file has.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for meter in [None, Some("m1")] {
        if let Ok(rows) = cwsm::import::readings_csv(text, meter) {
            assert!(rows.len() <= text.lines().count());
            assert!(rows.iter().all(|r| !r.meter_id.is_empty()));
        }
    }
});
