//! Every refusal, and the shapes that must pass.

use serde_json::{json, Value};

use super::super::mint::sign;
use super::super::{mint, MintError, OutgoingGrant, VoiceGrant};
use super::*;
use crate::store::Timestamp;

const NOW: i64 = 1_700_000_000;
const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const OTHER_ACCOUNT: &str = "ACffffffffffffffffffffffffffffffff";
const KEY: &str = "SK0123456789abcdef0123456789abcdef";
const SECRET: &str = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-0001";
const APP: &str = "AP0123456789abcdef0123456789abcdef";

fn key() -> ApiKey {
    ApiKey {
        sid: ApiKeySid::parse(KEY).unwrap(),
        account_sid: AccountSid::parse(ACCOUNT).unwrap(),
        friendly_name: "test".into(),
        secret: SECRET.into(),
        date_created: Timestamp::now(),
    }
}

fn found(_: &ApiKeySid) -> Result<Option<ApiKey>, StoreError> {
    Ok(Some(key()))
}

fn twilio_header(alg: &str) -> Value {
    json!({ "cty": "twilio-fpa;v=1", "typ": "JWT", "alg": alg })
}

/// The claims Twilio's Python `AccessToken` writes (no `iat`).
fn twilio_claims() -> Value {
    json!({
        "jti": format!("{KEY}-{NOW}"),
        "grants": {
            "voice": {
                "incoming": { "allow": true },
                "outgoing": { "application_sid": APP, "params": { "to": "+15550100001", "n": 3 } }
            },
            "identity": "alice"
        },
        "iss": KEY,
        "exp": NOW + 3600,
        "nbf": NOW,
        "sub": ACCOUNT
    })
}

fn signed(header: &Value, claims: &Value) -> String {
    sign(Algorithm::HS256, SECRET, header, claims)
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn verify_now(token: &str) -> Result<VerifiedToken, TokenError> {
    verify(token, NOW + 10, found)
}

#[test]
fn twilio_shaped_token_verifies_with_every_hmac() {
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let t = sign(alg, SECRET, &twilio_header(alg.as_str()), &twilio_claims());
        let v = verify_now(&t).unwrap();
        assert_eq!(v.account_sid.as_str(), ACCOUNT);
        assert_eq!(v.key_sid.as_str(), KEY);
        assert_eq!(v.identity, "alice");
        assert!(v.incoming_allow);
        let out = v.outgoing.unwrap();
        assert_eq!(out.application_sid.as_str(), APP);
        assert_eq!(out.params["to"], "+15550100001");
        assert_eq!(out.params["n"], 3);
        assert_eq!(v.expires_at, NOW + 3600);
    }
}

#[test]
fn header_fields_compared_by_value_not_bytes() {
    for header in [
        json!({ "alg": "HS256" }),
        json!({ "typ": "JWT", "alg": "HS256" }),
        json!({ "alg": "HS256", "twr": "ie1", "kid": "x", "typ": "jwt", "cty": "twilio-fpa;v=1" }),
    ] {
        assert!(verify_now(&signed(&header, &twilio_claims())).is_ok(), "{header}");
    }
    // Whitespace and order in the header JSON do not matter either.
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let h = b64.encode(" { \"typ\" : \"JWT\",\n \"alg\":\"HS256\" } ");
    let p = b64.encode(twilio_claims().to_string());
    let mac = b64.encode(Algorithm::HS256.sign(SECRET, format!("{h}.{p}").as_bytes()));
    assert!(verify_now(&format!("{h}.{p}.{mac}")).is_ok());
}

#[test]
fn iat_and_nbf_are_optional() {
    let t = signed(&twilio_header("HS256"), &without(twilio_claims(), "nbf"));
    assert!(verify_now(&t).is_ok());
    let t = signed(&twilio_header("HS256"), &with(twilio_claims(), "iat", json!(NOW)));
    assert!(verify_now(&t).is_ok());
}

#[test]
fn repeated_jti_is_not_a_replay() {
    let t = signed(&twilio_header("HS256"), &twilio_claims());
    assert!(verify_now(&t).is_ok());
    assert!(verify_now(&t).is_ok());
}

#[test]
fn token_without_voice_grant_has_no_rights() {
    let claims = with(twilio_claims(), "grants", json!({ "identity": "bob" }));
    let v = verify_now(&signed(&twilio_header("HS256"), &claims)).unwrap();
    assert!(!v.incoming_allow);
    assert!(v.outgoing.is_none());
}

#[test]
fn alg_none_refused() {
    let t = signed(&twilio_header("none"), &twilio_claims());
    let e = verify_now(&t).unwrap_err();
    assert!(matches!(e, TokenError::UnsupportedAlgorithm(ref a) if a == "none"), "{e:?}");
    // Unsigned, with an empty MAC, as an attacker sends it.
    let unsigned = format!("{}.", t.rsplit_once('.').unwrap().0);
    assert!(matches!(verify_now(&unsigned), Err(TokenError::UnsupportedAlgorithm(_))));
    assert_eq!(e.wire_code(), 31204);
    assert_eq!(e.sdk_code(), 20101);
}

#[test]
fn asymmetric_algorithms_refused_without_lookup() {
    for alg in ["RS256", "ES256", "PS256", "EdDSA", "hs256", ""] {
        let t = signed(&twilio_header(alg), &twilio_claims());
        let e = verify(&t, NOW, |_| panic!("no lookup for a refused algorithm")).unwrap_err();
        assert!(matches!(e, TokenError::UnsupportedAlgorithm(_)), "{alg}: {e:?}");
    }
}

#[test]
fn bad_signature_refused() {
    let t = sign(Algorithm::HS256, "another secret", &twilio_header("HS256"), &twilio_claims());
    let e = verify_now(&t).unwrap_err();
    assert!(matches!(e, TokenError::BadSignature));
    assert_eq!((e.wire_code(), e.sdk_code()), (31202, 31202));
    // A MAC of the right algorithm but another one's length.
    let t384 = sign(Algorithm::HS384, SECRET, &twilio_header("HS256"), &twilio_claims());
    assert!(matches!(verify_now(&t384), Err(TokenError::BadSignature)));
    // A payload changed after signing.
    let good = signed(&twilio_header("HS256"), &twilio_claims());
    let forged_payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(with(twilio_claims(), "sub", json!(OTHER_ACCOUNT)).to_string());
    let mut parts: Vec<&str> = good.split('.').collect();
    parts[1] = &forged_payload;
    assert!(matches!(verify_now(&parts.join(".")), Err(TokenError::BadSignature)));
}

#[test]
fn expired_refused() {
    let t = signed(&twilio_header("HS256"), &twilio_claims());
    let e = verify(&t, NOW + 3600, found).unwrap_err();
    assert!(matches!(e, TokenError::Expired { exp, now } if exp == NOW + 3600 && now == NOW + 3600));
    assert_eq!((e.wire_code(), e.sdk_code()), (31205, 20104));
}

#[test]
fn nbf_in_future_refused() {
    let t = signed(&twilio_header("HS256"), &with(twilio_claims(), "nbf", json!(NOW + 600)));
    let e = verify(&t, NOW, found).unwrap_err();
    assert!(matches!(e, TokenError::NotYetValid { .. }), "{e:?}");
    assert_eq!(e.sdk_code(), 20101);
    // Within the clock skew: accepted.
    let t = signed(&twilio_header("HS256"), &with(twilio_claims(), "nbf", json!(NOW + CLOCK_SKEW_SECS)));
    assert!(verify(&t, NOW, found).is_ok());
}

#[test]
fn lifetime_over_24h_refused() {
    let claims = with(with(twilio_claims(), "iat", json!(NOW)), "exp", json!(NOW + MAX_LIFETIME_SECS + 1));
    let e = verify_now(&signed(&twilio_header("HS256"), &claims)).unwrap_err();
    assert!(matches!(e, TokenError::LifetimeTooLong { .. }), "{e:?}");
    assert_eq!((e.wire_code(), e.sdk_code()), (31207, 31207));
    // Exactly 24 h is Twilio's maximum ttl, and accepted.
    let claims = with(with(twilio_claims(), "iat", json!(NOW)), "exp", json!(NOW + MAX_LIFETIME_SECS));
    assert!(verify(&signed(&twilio_header("HS256"), &claims), NOW, found).is_ok());
}

#[test]
fn lifetime_over_24h_from_now_refused_without_iat() {
    let claims = with(twilio_claims(), "exp", json!(NOW + MAX_LIFETIME_SECS + 1));
    let e = verify(&signed(&twilio_header("HS256"), &claims), NOW, found).unwrap_err();
    assert!(matches!(e, TokenError::LifetimeTooLong { .. }), "{e:?}");
}

#[test]
fn unknown_or_revoked_key_refused() {
    let t = signed(&twilio_header("HS256"), &twilio_claims());
    let e = verify(&t, NOW, |_| Ok(None)).unwrap_err();
    assert!(matches!(e, TokenError::UnknownKey(ref k) if k == KEY));
    assert_eq!((e.wire_code(), e.sdk_code()), (31201, 20151));
}

#[test]
fn store_failure_is_not_a_verdict() {
    let t = signed(&twilio_header("HS256"), &twilio_claims());
    let e = verify(&t, NOW, |_| Err(StoreError::Invalid("disk".into()))).unwrap_err();
    assert!(matches!(e, TokenError::Lookup(_)));
}

#[test]
fn key_of_another_account_refused() {
    let t = signed(&twilio_header("HS256"), &with(twilio_claims(), "sub", json!(OTHER_ACCOUNT)));
    let e = verify_now(&t).unwrap_err();
    assert!(matches!(e, TokenError::WrongAccount { .. }), "{e:?}");
    assert_eq!(e.sdk_code(), 20151);
}

#[test]
fn malformed_tokens_refused() {
    let good = signed(&twilio_header("HS256"), &twilio_claims());
    let (hp, mac) = good.rsplit_once('.').unwrap();
    let cases = [
        "".to_owned(),
        "abc".to_owned(),
        "a.b".to_owned(),
        format!("{good}.extra"),
        format!("{hp}.{mac}!"),
        format!("*.{}", good.split_once('.').unwrap().1),
        format!("{}.e30.{mac}", good.split('.').next().unwrap()), // payload `{}`
        format!("bnVsbA.{}", good.split_once('.').unwrap().1),    // header `null`
        "x".repeat(20_000),
    ];
    for t in &cases {
        let e = verify_now(t).unwrap_err();
        assert!(matches!(e, TokenError::Malformed(_)), "{t:.40}: {e:?}");
    }
    let h = twilio_header("HS256");
    let bad_claims = [
        without(twilio_claims(), "iss"),
        with(twilio_claims(), "iss", json!("AC0123456789abcdef0123456789abcdef")),
        without(twilio_claims(), "sub"),
        with(twilio_claims(), "sub", json!(42)),
        without(twilio_claims(), "exp"),
        with(twilio_claims(), "exp", json!("soon")),
        with(twilio_claims(), "nbf", json!(1e300)),
        without(twilio_claims(), "grants"),
        with(twilio_claims(), "grants", json!({ "voice": {} })),
        with(twilio_claims(), "grants", json!({ "identity": "a", "voice": { "incoming": { "allow": "yes" } } })),
        with(
            twilio_claims(),
            "grants",
            json!({ "identity": "a", "voice": { "outgoing": { "application_sid": "x" } } }),
        ),
        with(
            twilio_claims(),
            "grants",
            json!({ "identity": "a", "voice": { "outgoing": { "application_sid": APP, "params": [1] } } }),
        ),
    ];
    for c in &bad_claims {
        let e = verify_now(&signed(&h, c)).unwrap_err();
        assert!(matches!(e, TokenError::Malformed(_)), "{c}: {e:?}");
        assert_eq!(e.sdk_code(), 20101);
    }
    let e = verify_now(&signed(&json!({ "alg": "HS256", "crit": ["exp"] }), &twilio_claims())).unwrap_err();
    assert!(matches!(e, TokenError::UnsupportedHeader("crit")));
    let e = verify_now(&signed(&json!({ "alg": "HS256", "cty": "JWT" }), &twilio_claims())).unwrap_err();
    assert!(matches!(e, TokenError::UnsupportedHeader("cty")));
}

#[test]
fn minted_token_verifies_and_has_twilio_shape() {
    let voice = VoiceGrant {
        incoming_allow: true,
        outgoing: Some(OutgoingGrant {
            application_sid: ApplicationSid::parse(APP).unwrap(),
            params: json!({ "agent": "7" }).as_object().unwrap().clone(),
        }),
    };
    let t = mint(&key(), "alice", &voice, NOW, 3600).unwrap();
    let v = verify(&t, NOW, found).unwrap();
    assert_eq!(v.identity, "alice");
    assert_eq!(v.voice(), voice);
    assert_eq!(v.expires_at, NOW + 3600);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header: Value = serde_json::from_slice(&b64.decode(t.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header, json!({ "alg": "HS256", "typ": "JWT", "cty": "twilio-fpa;v=1" }));
    let claims: Value = serde_json::from_slice(&b64.decode(t.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(claims["jti"], format!("{KEY}-{NOW}"));
    assert_eq!(claims["grants"]["voice"]["outgoing"]["params"]["agent"], "7");
    assert!(mint(&key(), "alice", &voice, NOW, MAX_LIFETIME_SECS + 1).is_err());
    assert!(mint(&key(), "alice", &voice, NOW, 0).is_err());
    assert!(mint(&key(), "", &voice, NOW, 60).is_err());
}

/// Found by the `token` fuzz target: `mint` made a token for a 16 KiB
/// identity that `verify` then refused as too long; now `mint` refuses it.
#[test]
fn fuzz_mint_refuses_what_verify_would() {
    let long = "a".repeat(16 * 1024);
    assert!(matches!(mint(&key(), &long, &VoiceGrant::default(), NOW, 3600), Err(MintError::TooLong(_))));
    let fits = "a".repeat(8 * 1024);
    let token = mint(&key(), &fits, &VoiceGrant::default(), NOW, 3600).unwrap();
    assert_eq!(verify(&token, NOW, found).unwrap().identity, fits);
}
