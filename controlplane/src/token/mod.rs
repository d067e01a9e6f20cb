//! Access tokens in the shape Twilio's helper libraries mint: a JWT signed
//! with an API key's secret (HS256, HS384 or HS512), `iss` = the key's SID,
//! `sub` = the account's SID, and Voice grants.
//!
//! ```text
//!   token string ──► verify(token, now, lookup) ──► VerifiedToken
//!                      │  header: alg HS256/384/512 (by value, any order)
//!                      │  claims: iss ──► lookup(&ApiKeySid) (the only I/O)
//!                      │  MAC checked in constant time with the key's secret
//!                      │  sub == key's account, nbf/exp/lifetime ≤ 24 h
//!                      └► TokenError (wire_code: the `error` frame's code)
//!
//!   mint(key, grants, now, ttl) ──► token string (the `bridgehead token` CLI)
//! ```
//!
//! Sans-IO: no clock and no store inside; the caller passes `now` and a
//! closure that looks the key up (`|sid| store.api_key(sid)`, with
//! `NotFound` turned into `None`, see [`lookup_in`]). A repeated `jti` is
//! not a replay: Twilio's libraries mint `{key_sid}-{iat}`, so two tokens
//! minted in one second share it. See `docs/tokens.md`.

mod claims;
mod error;
mod mint;
#[cfg(test)]
mod proptests;
mod verify;

pub use claims::{OutgoingGrant, VerifiedToken, VoiceGrant};
pub use error::TokenError;
pub use mint::{mint, MintError};
pub use verify::{lookup_in, verify, Algorithm, CLOCK_SKEW_SECS, MAX_LIFETIME_SECS};
