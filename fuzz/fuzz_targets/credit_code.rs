//! Any text as a credit code: the check never panics, and a code it accepts is exactly its
//! first 17 characters with the check character computed for them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if cwsm_platform::credit_code::check("credit_code", text).is_ok() {
        let first17: String = text.chars().take(17).collect();
        let full = cwsm_platform::credit_code::with_check_character(&first17);
        assert_eq!(full.as_deref(), Ok(text));
    }
});
