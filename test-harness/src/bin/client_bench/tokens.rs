//! The bench's access tokens: one per client, minted with the appliance's
//! own `controlplane::token::mint` (15,000 in well under a second), after
//! checking once that a token minted the same way by Twilio's Python
//! library (`twilio.jwt.access_token`) has the same header and claims.

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use controlplane::store::{AccountSid, ApiKey, ApiKeySid, ApplicationSid, Timestamp};
use controlplane::token::{OutgoingGrant, VoiceGrant};
use serde_json::{json, Value};

pub const ACCOUNT: &str = "AC00000000000000000000000000c11be0";
pub const AUTH_TOKEN: &str = "client-bench-auth-token";
pub const KEY: &str = "SK00000000000000000000000000c11be0";
pub const SECRET: &str = "client-bench-key-secret-0123456789";
/// The application of the callers' outgoing grant.
pub const APP: &str = "AP00000000000000000000000000c11be0";
/// Long enough for any run.
const TTL: i64 = 4 * 3600;

fn key() -> Result<ApiKey> {
    Ok(ApiKey {
        sid: ApiKeySid::parse(KEY)?,
        account_sid: AccountSid::parse(ACCOUNT)?,
        friendly_name: "client-bench".into(),
        secret: SECRET.into(),
        date_created: Timestamp::now(),
    })
}

/// Identity `client-00001`.. (incoming grant) or `caller-001`.. (outgoing
/// grant through [`APP`]).
pub fn mint(identity: &str, caller: bool, now: i64) -> Result<String> {
    let voice = if caller {
        VoiceGrant {
            incoming_allow: false,
            outgoing: Some(OutgoingGrant { application_sid: ApplicationSid::parse(APP)?, params: Default::default() }),
        }
    } else {
        VoiceGrant { incoming_allow: true, outgoing: None }
    };
    Ok(controlplane::token::mint(&key()?, identity, &voice, now, TTL)?)
}

fn decode(token: &str) -> Result<(Value, Value)> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        bail!("not a JWT: {} parts", parts.len());
    }
    let header = serde_json::from_slice(&b64.decode(parts[0])?)?;
    let claims = serde_json::from_slice(&b64.decode(parts[1])?)?;
    Ok((header, claims))
}

/// Compares one token of ours with one Twilio's library mints for the same
/// key, identity and grants: same header, same claims but for the times
/// (Twilio's has no `iat` or `nbf` by default). `Ok(None)` when python3 with
/// `twilio` is not installed (said so in the report), `Ok(Some(what))` when
/// they agree.
pub fn check_against_twilio(now: i64) -> Result<Option<String>> {
    let probe = std::process::Command::new("python3").args(["-c", "import twilio.jwt.access_token"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        return Ok(None);
    }
    let case = json!({"account": ACCOUNT, "key": KEY, "secret": SECRET, "identity": "client-00001", "incoming": true, "ttl": TTL});
    let theirs = test_harness::twilio_py::mint(&[case]).context("minting with Twilio's library")?.remove(0);
    let ours = mint("client-00001", false, now)?;
    let ((h1, c1), (h2, c2)) = (decode(&ours)?, decode(&theirs)?);
    if h1 != h2 {
        bail!("headers differ: ours {h1}, Twilio's {h2}");
    }
    for claim in ["iss", "sub", "grants"] {
        if c1[claim] != c2[claim] {
            bail!("claim {claim} differs: ours {}, Twilio's {}", c1[claim], c2[claim]);
        }
    }
    let jti = c2["jti"].as_str().unwrap_or_default();
    if !jti.starts_with(&format!("{KEY}-")) || !c1["jti"].as_str().unwrap_or_default().starts_with(&format!("{KEY}-")) {
        bail!("jti differs in shape: ours {}, Twilio's {jti}", c1["jti"]);
    }
    Ok(Some(format!("header {h2} and claims iss/sub/grants/jti shape equal to Twilio's")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_tokens_verify() {
        let now = 1_700_000_000;
        let token = mint("client-00007", false, now).unwrap();
        let verified = controlplane::token::verify(&token, now + 1, |_| Ok(Some(key().unwrap()))).unwrap();
        assert_eq!(verified.identity, "client-00007");
        assert!(verified.incoming_allow && verified.outgoing.is_none());
        let caller = mint("caller-001", true, now).unwrap();
        let verified = controlplane::token::verify(&caller, now + 1, |_| Ok(Some(key().unwrap()))).unwrap();
        assert_eq!(verified.outgoing.unwrap().application_sid.as_str(), APP);
    }
}
