//! Any text as an action-plan file: parsing and validation never panic; they answer a plan or
//! an error with a line and a reason.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cwsm_reporting::plan::parse(text);
    }
});
