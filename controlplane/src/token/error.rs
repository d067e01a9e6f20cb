//! Why a token is refused, and the code a Voice JS SDK client sees for it.
//!
//! Codes read from `@twilio/voice-sdk` 2.18.5 (`npm pack @twilio/voice-sdk`):
//!
//! - `lib/twilio/errors/generated.ts`: `AuthorizationErrors.AccessTokenInvalid`
//!   `code = 20101`, `AccessTokenExpired` `code = 20104`,
//!   `AuthenticationFailed` `code = 20151`,
//!   `SignatureValidationErrors.AccessTokenSignatureValidationFailed`
//!   `code = 31202`, `AuthorizationErrors.AuthorizationError` 31201,
//!   `InvalidJWTTokenError` 31204, `JWTTokenExpiredError` 31205,
//!   `JWTTokenExpirationTooLongError` 31207, `GeneralErrors.UnknownError` 31000
//!   (table `errorsByCode`).
//! - `lib/twilio/device.ts`, `_onSignalingError`: an `error` frame with code
//!   31201 becomes `AuthenticationFailed` (20151), 31204 becomes
//!   `AccessTokenInvalid` (20101), 31205 becomes `AccessTokenExpired` (20104)
//!   and stops re-registration; other codes go through
//!   `getPreciseSignalingErrorByCode` (`lib/twilio/errors/index.ts`): 31202
//!   and 31207 are in `PRECISE_SIGNALING_ERROR_CODES`, reported as themselves
//!   when the Device option `enableImprovedSignalingErrorPrecision` is set
//!   (as 53000 otherwise, per the table in `device.ts`).
//!
//! The SDK has no code for "not yet valid" or for a malformed token beyond
//! 31204, nor 20102/20103/20105-20107/20157 (absent from 2.18.5): those
//! refusals use 31204.

/// Why [`crate::token::verify`] refused a token. The messages never carry
/// the token or the secret.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts of JSON, or a claim missing or of the
    /// wrong type.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `alg` is `none`, asymmetric (RS256, ES256...) or unknown.
    #[error("algorithm {0:?} is not accepted (HS256, HS384 or HS512)")]
    UnsupportedAlgorithm(String),
    /// The header names a critical extension we do not implement (`crit`),
    /// or a `typ`/`cty` that is not a Twilio access token's.
    #[error("header field {0} is not accepted")]
    UnsupportedHeader(&'static str),
    /// The MAC does not match the key's secret.
    #[error("signature does not match")]
    BadSignature,
    /// `exp` is past.
    #[error("token expired at {exp} (now {now})")]
    Expired { exp: i64, now: i64 },
    /// `nbf` is in the future (beyond the allowed clock skew).
    #[error("token not valid before {nbf} (now {now})")]
    NotYetValid { nbf: i64, now: i64 },
    /// `exp` is more than 24 h after `iat` (or after now, without `iat`).
    #[error("token lifetime {lifetime}s exceeds {max}s")]
    LifetimeTooLong { lifetime: i64, max: i64 },
    /// No key with the `iss` SID: never created, or deleted (revoked).
    #[error("unknown or revoked API key {0}")]
    UnknownKey(String),
    /// `sub` is not the account that owns the key.
    #[error("API key {key} does not belong to account {sub}")]
    WrongAccount { key: String, sub: String },
    /// The key could not be looked up (the store failed): not the client's
    /// fault, and not a verdict on the token.
    #[error("cannot look the API key up: {0}")]
    Lookup(#[from] crate::store::StoreError),
}

impl TokenError {
    /// The code the appliance sends in the signaling `error` frame
    /// (`{"type":"error","payload":{"error":{"code",...}}}`).
    pub fn wire_code(&self) -> u32 {
        match self {
            TokenError::Malformed(_)
            | TokenError::UnsupportedAlgorithm(_)
            | TokenError::UnsupportedHeader(_)
            | TokenError::NotYetValid { .. } => 31204,
            TokenError::BadSignature => 31202,
            TokenError::Expired { .. } => 31205,
            TokenError::LifetimeTooLong { .. } => 31207,
            TokenError::UnknownKey(_) | TokenError::WrongAccount { .. } => 31201,
            TokenError::Lookup(_) => 31000,
        }
    }

    /// The code of the `TwilioError` the Voice JS SDK's `Device` emits for
    /// [`Self::wire_code`] (with `enableImprovedSignalingErrorPrecision`).
    pub fn sdk_code(&self) -> u32 {
        match self.wire_code() {
            31201 => 20151,
            31204 => 20101,
            31205 => 20104,
            other => other,
        }
    }

    /// The SDK's `description` for [`Self::sdk_code`], for the frame's
    /// `message`.
    pub fn sdk_message(&self) -> &'static str {
        match self.sdk_code() {
            20101 => "Invalid access token",
            20104 => "Access token expired or expiration date invalid",
            20151 => "Authentication Failed",
            31202 => "Signature validation failed.",
            31207 => "JWT token expiration too long",
            _ => "Unknown Error",
        }
    }
}
