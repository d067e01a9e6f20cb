//! TwiML: `instructions::twiml::parse`, on any text an application's voice
//! URL could return.
//!
//! Invariants beyond "no panic": a document over the size limit is refused
//! as too large; an error maps to one of Twilio's error codes.
#![no_main]

use controlplane::instructions::twiml::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse(text) {
        Ok(doc) => {
            let _ = format!("{doc:?}");
        }
        Err(e) => {
            let _ = (e.code(), e.to_string());
        }
    }
});
