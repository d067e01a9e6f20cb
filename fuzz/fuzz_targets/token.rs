//! Access tokens: `token::verify` (JWT split, base64url, JSON, header
//! checks, HMAC, claims) with a fixed key lookup, and `token::mint`.
//!
//! Invariants beyond "no panic":
//! - a token that verifies names the fixed key and account, a non-empty
//!   identity and an expiry after now;
//! - changing one byte of the signature of a token that verifies makes it
//!   fail (the MAC covers what was sent);
//! - a token minted for any identity (the input) verifies to that identity.
#![no_main]

use controlplane::store::{AccountSid, ApiKey, ApiKeySid, StoreError, Timestamp};
use controlplane::token::{mint, verify, VoiceGrant};
use libfuzzer_sys::fuzz_target;

/// The fixed time and key; scripts/fuzz-seeds.py signs its seed tokens
/// with the same ones.
const NOW: i64 = 1_700_000_000;
const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const KEY: &str = "SK0123456789abcdef0123456789abcdef";
const SECRET: &str = "fuzz-secret-fuzz-secret-fuzz-0001";

fn key() -> ApiKey {
    ApiKey {
        sid: ApiKeySid::parse(KEY).expect("literal"),
        account_sid: AccountSid::parse(ACCOUNT).expect("literal"),
        friendly_name: "fuzz".into(),
        secret: SECRET.into(),
        date_created: Timestamp::now(),
    }
}

fn lookup(sid: &ApiKeySid) -> Result<Option<ApiKey>, StoreError> {
    Ok((sid.to_string() == KEY).then(key))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(token) = verify(text, NOW, lookup) {
        assert_eq!(token.key_sid.to_string(), KEY);
        assert_eq!(token.account_sid.to_string(), ACCOUNT);
        assert!(!token.identity.is_empty());
        assert!(token.expires_at > NOW);
        let _ = token.voice();
        // Flip one character of the signature part.
        let trimmed = text.trim();
        if let Some(dot) = trimmed.rfind('.') {
            if dot + 1 < trimmed.len() {
                let mut forged = trimmed.as_bytes().to_vec();
                let last = forged.len() - 1;
                forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
                if let Ok(forged) = String::from_utf8(forged) {
                    // Base64url's last character may carry unused bits: a
                    // change there can decode to the same MAC.
                    let same_mac = base64_same_bits(trimmed.as_bytes()[last], forged.as_bytes()[last]);
                    if !same_mac {
                        assert!(verify(&forged, NOW, lookup).is_err(), "a changed signature verifies: {forged}");
                    }
                }
            }
        }
    }
    let voice = VoiceGrant { incoming_allow: true, outgoing: None };
    if let Ok(minted) = mint(&key(), text, &voice, NOW, 3600) {
        match verify(&minted, NOW, lookup) {
            Ok(t) => assert_eq!(t.identity, text),
            Err(e) => panic!("a token we minted does not verify: {e}"),
        }
    }
});

/// Whether two base64url characters, as the last of an HMAC-SHA256
/// signature (32 bytes: 43 characters, the last one's low 2 bits unused),
/// decode to the same bits.
fn base64_same_bits(a: u8, b: u8) -> bool {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    };
    matches!((value(a), value(b)), (Some(x), Some(y)) if x >> 2 == y >> 2)
}
