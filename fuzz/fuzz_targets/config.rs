//! The appliance configuration: `Config::parse_str` on any text. Every
//! error is collected and reported; nothing panics.
//!
//! Invariant beyond "no panic": a refused file has at least one error, and
//! every error names a key and a reason.
#![no_main]

use controlplane::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(errors) = Config::parse_str(text) {
        assert!(!errors.is_empty(), "refused without a reason");
        for e in &errors {
            assert!(!e.key.is_empty() && !e.reason.is_empty(), "an error without key or reason: {e:?}");
        }
    }
});
