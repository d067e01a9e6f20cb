//! Minting tokens as Twilio's helper libraries do, for the `bridgehead
//! token` command and for tests.

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::claims::VoiceGrant;
use super::verify::{Algorithm, MAX_LIFETIME_SECS, MAX_TOKEN_LEN};
use crate::store::ApiKey;

/// Why [`mint`] refused.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("ttl must be between 1 and {MAX_LIFETIME_SECS} seconds, not {0}")]
    Ttl(i64),
    #[error("identity must not be empty")]
    EmptyIdentity,
    #[error("the token would be {0} bytes, more than verify accepts ({MAX_TOKEN_LEN})")]
    TooLong(usize),
}

/// An HS256 token for `identity`, signed with `key`, valid from `now_unix`
/// for `ttl_secs`: the header, `jti` and grants shaped exactly as Twilio's
/// `AccessToken` + `VoiceGrant` shape them (plus `iat`).
pub fn mint(
    key: &ApiKey,
    identity: &str,
    voice: &VoiceGrant,
    now_unix: i64,
    ttl_secs: i64,
) -> Result<String, MintError> {
    if !(1..=MAX_LIFETIME_SECS).contains(&ttl_secs) {
        return Err(MintError::Ttl(ttl_secs));
    }
    if identity.is_empty() {
        return Err(MintError::EmptyIdentity);
    }
    let mut voice_json = Map::new();
    if voice.incoming_allow {
        voice_json.insert("incoming".into(), json!({ "allow": true }));
    }
    if let Some(out) = &voice.outgoing {
        let mut o = Map::new();
        o.insert("application_sid".into(), Value::String(out.application_sid.to_string()));
        if !out.params.is_empty() {
            o.insert("params".into(), Value::Object(out.params.clone()));
        }
        voice_json.insert("outgoing".into(), Value::Object(o));
    }
    let mut grants = Map::new();
    grants.insert("identity".into(), Value::String(identity.to_owned()));
    grants.insert("voice".into(), Value::Object(voice_json));
    let header = json!({ "alg": "HS256", "typ": "JWT", "cty": "twilio-fpa;v=1" });
    let claims = json!({
        "jti": format!("{}-{}", key.sid, now_unix),
        "grants": grants,
        "iss": key.sid.to_string(),
        "sub": key.account_sid.to_string(),
        "iat": now_unix,
        "nbf": now_unix,
        "exp": now_unix.saturating_add(ttl_secs),
    });
    // A token that `verify` would refuse is no token: an identity or
    // parameters too long for it (found by the `token` fuzz target).
    let token = sign(Algorithm::HS256, &key.secret, &header, &claims);
    if token.len() > MAX_TOKEN_LEN {
        return Err(MintError::TooLong(token.len()));
    }
    Ok(token)
}

/// `header.payload.mac`, each part base64url without padding.
pub(super) fn sign(alg: Algorithm, secret: &str, header: &Value, claims: &Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut token = format!("{}.{}", b64.encode(header.to_string()), b64.encode(claims.to_string()));
    let mac = alg.sign(secret, token.as_bytes());
    token.push('.');
    token.push_str(&b64.encode(mac));
    token
}
