//! The verifier: header, key lookup, MAC, claims, validity period.

use base64::Engine as _;
use serde_json::{Map, Value};

use super::claims::{OutgoingGrant, VerifiedToken};
use super::error::TokenError;
use crate::store::{AccountSid, ApiKey, ApiKeySid, ApplicationSid, Store, StoreError};

/// The longest validity Twilio allows an access token: 24 h.
pub const MAX_LIFETIME_SECS: i64 = 24 * 3600;

/// How far in the future `nbf` may be: Twilio's libraries set `nbf` to the
/// minting second, and the minting server's clock may run ahead of ours.
/// `exp` gets no such grace.
pub const CLOCK_SKEW_SECS: i64 = 60;

/// Twilio tokens are a few hundred bytes; a token of more than this is
/// refused before it is decoded.
pub(super) const MAX_TOKEN_LEN: usize = 16 * 1024;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The HMAC algorithms of RFC 7518 section 3.2, the only ones accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    HS256,
    HS384,
    HS512,
}

impl Algorithm {
    pub fn parse(alg: &str) -> Option<Algorithm> {
        Some(match alg {
            "HS256" => Algorithm::HS256,
            "HS384" => Algorithm::HS384,
            "HS512" => Algorithm::HS512,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
        }
    }

    fn ring(self) -> ring::hmac::Algorithm {
        match self {
            Algorithm::HS256 => ring::hmac::HMAC_SHA256,
            Algorithm::HS384 => ring::hmac::HMAC_SHA384,
            Algorithm::HS512 => ring::hmac::HMAC_SHA512,
        }
    }

    pub(super) fn sign(self, secret: &str, signing_input: &[u8]) -> Vec<u8> {
        let key = ring::hmac::Key::new(self.ring(), secret.as_bytes());
        ring::hmac::sign(&key, signing_input).as_ref().to_vec()
    }

    /// Constant-time comparison (`ring::hmac::verify`).
    fn verify(self, secret: &str, signing_input: &[u8], mac: &[u8]) -> bool {
        let key = ring::hmac::Key::new(self.ring(), secret.as_bytes());
        ring::hmac::verify(&key, signing_input, mac).is_ok()
    }
}

/// A `lookup` for [`verify`] backed by a [`Store`]: `NotFound` (never
/// created, or deleted) becomes `None`.
pub fn lookup_in(store: &dyn Store) -> impl FnOnce(&ApiKeySid) -> Result<Option<ApiKey>, StoreError> + '_ {
    move |sid| match store.api_key(sid) {
        Ok(key) => Ok(Some(key)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Verifies `token` at `now_unix` (seconds since the epoch). `lookup` finds
/// the API key named by `iss`; it is called at most once, and only for a
/// token whose header is acceptable. Never panics.
pub fn verify(
    token: &str,
    now_unix: i64,
    lookup: impl FnOnce(&ApiKeySid) -> Result<Option<ApiKey>, StoreError>,
) -> Result<VerifiedToken, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed("token too long"));
    }
    let token = token.trim();
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(mac_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("a JWT has three dot-separated parts"));
    };

    let alg = check_header(&decode_json(header_b64, "header")?)?;
    let claims = decode_json(payload_b64, "payload")?;
    let mac = B64.decode(mac_b64).map_err(|_| TokenError::Malformed("signature is not base64url"))?;

    let iss = str_claim(&claims, "iss")?;
    let key_sid = ApiKeySid::parse(iss).map_err(|_| TokenError::Malformed("iss is not an API key SID"))?;
    let key = lookup(&key_sid)?.ok_or_else(|| TokenError::UnknownKey(key_sid.to_string()))?;

    // The header and payload parts exactly as sent: the MAC covers the
    // bytes, the checks above compared the fields by value.
    let signing_input_len = header_b64.len() + 1 + payload_b64.len();
    let signing_input = token.get(..signing_input_len).ok_or(TokenError::Malformed("signing input"))?;
    if !alg.verify(&key.secret, signing_input.as_bytes(), &mac) {
        return Err(TokenError::BadSignature);
    }

    let sub = str_claim(&claims, "sub")?;
    let account_sid = AccountSid::parse(sub).map_err(|_| TokenError::Malformed("sub is not an account SID"))?;
    if account_sid != key.account_sid {
        return Err(TokenError::WrongAccount { key: key_sid.to_string(), sub: account_sid.to_string() });
    }

    let exp = time_claim(&claims, "exp")?.ok_or(TokenError::Malformed("exp is missing"))?;
    let nbf = time_claim(&claims, "nbf")?;
    let iat = time_claim(&claims, "iat")?;
    if exp <= now_unix {
        return Err(TokenError::Expired { exp, now: now_unix });
    }
    if let Some(nbf) = nbf {
        if nbf > now_unix.saturating_add(CLOCK_SKEW_SECS) {
            return Err(TokenError::NotYetValid { nbf, now: now_unix });
        }
    }
    let lifetime = exp.saturating_sub(iat.unwrap_or(now_unix));
    if lifetime > MAX_LIFETIME_SECS {
        return Err(TokenError::LifetimeTooLong { lifetime, max: MAX_LIFETIME_SECS });
    }

    let grants = claims.get("grants").and_then(Value::as_object).ok_or(TokenError::Malformed("grants is missing"))?;
    let identity = match grants.get("identity") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(TokenError::Malformed("grants.identity is missing")),
    };
    let (incoming_allow, outgoing) = match grants.get("voice") {
        None => (false, None),
        Some(Value::Object(voice)) => voice_grant(voice)?,
        Some(_) => return Err(TokenError::Malformed("grants.voice is not an object")),
    };

    Ok(VerifiedToken { account_sid, key_sid, identity, incoming_allow, outgoing, expires_at: exp })
}

/// The header, field by field: `alg` one of the HMACs; `typ` and `cty`, if
/// there, those of a Twilio token; no `crit`; other fields (`twr`, `kid`)
/// ignored, in any order.
fn check_header(header: &Map<String, Value>) -> Result<Algorithm, TokenError> {
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg,
        Some(_) => return Err(TokenError::Malformed("alg is not a string")),
        None => return Err(TokenError::Malformed("alg is missing")),
    };
    let alg = Algorithm::parse(alg).ok_or_else(|| TokenError::UnsupportedAlgorithm(printable(alg)))?;
    match header.get("typ") {
        None => {}
        Some(Value::String(t)) if t.eq_ignore_ascii_case("JWT") => {}
        Some(_) => return Err(TokenError::UnsupportedHeader("typ")),
    }
    match header.get("cty") {
        None => {}
        Some(Value::String(c)) if c == "twilio-fpa;v=1" => {}
        Some(_) => return Err(TokenError::UnsupportedHeader("cty")),
    }
    if header.contains_key("crit") {
        return Err(TokenError::UnsupportedHeader("crit"));
    }
    Ok(alg)
}

fn voice_grant(voice: &Map<String, Value>) -> Result<(bool, Option<OutgoingGrant>), TokenError> {
    let incoming_allow = match voice.get("incoming") {
        None => false,
        Some(Value::Object(incoming)) => match incoming.get("allow") {
            None => false,
            Some(Value::Bool(allow)) => *allow,
            Some(_) => return Err(TokenError::Malformed("grants.voice.incoming.allow is not a boolean")),
        },
        Some(_) => return Err(TokenError::Malformed("grants.voice.incoming is not an object")),
    };
    let outgoing = match voice.get("outgoing") {
        None => None,
        Some(Value::Object(outgoing)) => {
            let sid = match outgoing.get("application_sid") {
                Some(Value::String(s)) => ApplicationSid::parse(s)
                    .map_err(|_| TokenError::Malformed("grants.voice.outgoing.application_sid is not an AP SID"))?,
                _ => return Err(TokenError::Malformed("grants.voice.outgoing.application_sid is missing")),
            };
            let params = match outgoing.get("params") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(p)) => p.clone(),
                Some(_) => return Err(TokenError::Malformed("grants.voice.outgoing.params is not an object")),
            };
            Some(OutgoingGrant { application_sid: sid, params })
        }
        Some(_) => return Err(TokenError::Malformed("grants.voice.outgoing is not an object")),
    };
    Ok((incoming_allow, outgoing))
}

fn decode_json(part: &str, what: &'static str) -> Result<Map<String, Value>, TokenError> {
    let bytes = B64.decode(part).map_err(|_| {
        TokenError::Malformed(if what == "header" { "header is not base64url" } else { "payload is not base64url" })
    })?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(TokenError::Malformed(if what == "header" {
            "header is not a JSON object"
        } else {
            "payload is not a JSON object"
        })),
    }
}

fn str_claim<'a>(claims: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, TokenError> {
    match claims.get(name) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(TokenError::Malformed(match name {
            "iss" => "iss is missing or not a string",
            "sub" => "sub is missing or not a string",
            _ => "a claim is missing or not a string",
        })),
    }
}

/// A NumericDate (RFC 7519 section 2): seconds, possibly with a fraction
/// (truncated).
fn time_claim(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, TokenError> {
    let bad = || {
        TokenError::Malformed(match name {
            "exp" => "exp is not a number of seconds",
            "nbf" => "nbf is not a number of seconds",
            _ => "iat is not a number of seconds",
        })
    };
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.trunc() as i64)),
                    _ => Err(bad()),
                }
            }
        }
        Some(_) => Err(bad()),
    }
}

/// At most 20 printable characters of an attacker-chosen string, for an
/// error message.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(20).collect()
}

#[cfg(test)]
mod tests;
