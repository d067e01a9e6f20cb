//! The verifier never panics, whatever it is given.

use proptest::prelude::*;

use super::{mint, verify, VoiceGrant};
use crate::store::{AccountSid, ApiKey, ApiKeySid, Timestamp};

fn key() -> ApiKey {
    ApiKey {
        sid: ApiKeySid::parse("SK0123456789abcdef0123456789abcdef").unwrap(),
        account_sid: AccountSid::parse("AC0123456789abcdef0123456789abcdef").unwrap(),
        friendly_name: "p".into(),
        secret: "secret".into(),
        date_created: Timestamp::now(),
    }
}

/// Strings made of JWT-ish pieces, so that some get past the first checks.
fn jwtish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("eyJhbGciOiJIUzI1NiJ9".to_owned()), // {"alg":"HS256"}
        Just("eyJhbGciOiJub25lIn0".to_owned()),  // {"alg":"none"}
        Just(".".to_owned()),
        Just("e30".to_owned()), // {}
        "[A-Za-z0-9_-]{0,40}",
        any::<String>(),
    ];
    proptest::collection::vec(piece, 0..8).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>(), now in any::<i64>()) {
        let _ = verify(&s, now, |_| Ok(Some(key())));
    }

    #[test]
    fn jwtish_strings_never_panic(s in jwtish(), now in any::<i64>()) {
        let _ = verify(&s, now, |_| Ok(Some(key())));
    }

    #[test]
    fn mutated_minted_tokens_never_panic(pos in any::<usize>(), byte in any::<u8>(), now in any::<i64>()) {
        let t = mint(&key(), "alice", &VoiceGrant::default(), 1_700_000_000, 3600).unwrap();
        let mut bytes = t.into_bytes();
        let i = pos % bytes.len();
        bytes[i] = byte;
        let s = String::from_utf8_lossy(&bytes);
        let _ = verify(&s, now, |_| Ok(Some(key())));
    }
}
