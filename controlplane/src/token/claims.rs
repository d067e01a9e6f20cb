//! What a verified token grants.

use crate::store::{AccountSid, ApiKeySid, ApplicationSid};

/// The Voice grant (`grants.voice`) of a token.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VoiceGrant {
    /// `grants.voice.incoming.allow`: the client may receive calls.
    pub incoming_allow: bool,
    /// `grants.voice.outgoing`: the client may place calls through this
    /// application; `None`: it may not place calls.
    pub outgoing: Option<OutgoingGrant>,
}

/// `grants.voice.outgoing`: the application that answers the client's calls
/// and the parameters passed to its voice URL with each of them.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingGrant {
    pub application_sid: ApplicationSid,
    /// `grants.voice.outgoing.params`, as the token carries them (Twilio's
    /// libraries take any JSON object).
    pub params: serde_json::Map<String, serde_json::Value>,
}

/// A token whose signature, key, account and validity period were checked.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// `sub`, equal to the account of the signing key.
    pub account_sid: AccountSid,
    /// `iss`: the API key that signed the token.
    pub key_sid: ApiKeySid,
    /// `grants.identity`: the client's name (`client:alice`).
    pub identity: String,
    pub incoming_allow: bool,
    pub outgoing: Option<OutgoingGrant>,
    /// `exp`, in seconds since the Unix epoch: warn the client before it,
    /// drop its registration at it.
    pub expires_at: i64,
}

impl VerifiedToken {
    /// The Voice grant, in the shape [`crate::token::mint`] takes.
    pub fn voice(&self) -> VoiceGrant {
        VoiceGrant { incoming_allow: self.incoming_allow, outgoing: self.outgoing.clone() }
    }
}
