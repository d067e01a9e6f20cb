//! The fleet SIP proof: `FleetKey::verify` on any `X-Bh-Fleet` value,
//! subject and time.
//!
//! Input: 8 bytes of "now" (little-endian), then the header value, a NUL,
//! and the subject.
//!
//! Invariants beyond "no panic": a value that verifies names an appliance
//! that is the value's first field; what `sign` makes for the value's
//! appliance (when it is a plain id) verifies to it.
#![no_main]

use controlplane::call::shell::FleetKey;
use libfuzzer_sys::fuzz_target;

/// scripts/fuzz-seeds.py signs its seeds with the same key.
const FLEET_KEY: &str = "fuzz-fleet-key";

fuzz_target!(|data: &[u8]| {
    let Some((now, rest)) = data.split_first_chunk::<8>() else { return };
    let now = u64::from_le_bytes(*now);
    let Ok(rest) = std::str::from_utf8(rest) else { return };
    let (value, subject) = rest.split_once('\0').unwrap_or((rest, ""));
    let key = FleetKey::new(FLEET_KEY);
    if let Ok(appliance) = key.verify(value, subject, now) {
        assert_eq!(Some(appliance.as_str()), value.split(';').next().map(str::trim));
    }
    let appliance = value.split(';').next().unwrap_or_default();
    let plain = !appliance.is_empty() && appliance.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if plain {
        let signed = key.sign(appliance, now, subject);
        assert_eq!(key.verify(&signed, subject, now).as_deref(), Ok(appliance));
    }
});
