//! HTTP Basic authentication as Twilio does it: the user is an account SID
//! (password: its auth token) or an API key SID (password: the key's
//! secret). A key works for its own account only.
//!
//! Every failure is the same 401 `20003 Authenticate`: no header, a header
//! that is not Basic, an unknown SID, a wrong secret, a suspended or closed
//! account, and valid credentials used on another account's path (Twilio
//! lists "subaccount credentials used to access another account" among the
//! causes of 20003). One answer for all means a caller learns nothing about
//! which accounts or keys exist.

use super::error::ApiError;
use super::ApiState;
use crate::store::{Account, AccountSid, AccountStatus, ApiKeySid, Store, StoreError};
use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use base64::Engine as _;
use std::sync::Arc;

/// What authenticated a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// The account SID and its auth token.
    AuthToken,
    /// An API key of the account.
    ApiKey(ApiKeySid),
}

/// The authenticated caller of a request under `/Accounts/{AccountSid}/`:
/// the account of the path, which the credentials belong to.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account: Account,
    pub credential: Credential,
}

impl Caller {
    pub fn sid(&self) -> &AccountSid {
        &self.account.sid
    }
}

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Caller, ApiError> {
        let (user, password) = basic_credentials(&parts.headers).ok_or_else(ApiError::authenticate)?;
        // Inside `nest` the URI has lost its `/2010-04-01` prefix; the
        // original one still has it.
        let path = parts.extensions.get::<OriginalUri>().map_or(&parts.uri, |o| &o.0).path();
        let path_account = account_in_path(path).map(str::to_string);
        let store = state.store.clone();
        let caller = super::blocking(move || authenticate(&*store, &user, &password)).await??;
        if path_account.as_deref() != Some(caller.account.sid.as_str()) {
            return Err(ApiError::authenticate());
        }
        Ok(caller)
    }
}

/// Checks `user`/`password` against the store.
pub fn authenticate(store: &dyn Store, user: &str, password: &str) -> Result<Caller, ApiError> {
    let found = |r: Result<Account, StoreError>| match r {
        Ok(account) => Ok(Some(account)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(ApiError::internal(e)),
    };
    let (account, secret_ok, credential) = if let Ok(sid) = AccountSid::parse(user) {
        let Some(account) = found(store.account(&sid))? else {
            return Err(ApiError::authenticate());
        };
        let ok = constant_time_eq(account.auth_token.as_bytes(), password.as_bytes());
        (account, ok, Credential::AuthToken)
    } else if let Ok(sid) = ApiKeySid::parse(user) {
        let key = match store.api_key(&sid) {
            Ok(key) => key,
            Err(StoreError::NotFound { .. }) => return Err(ApiError::authenticate()),
            Err(e) => return Err(ApiError::internal(e)),
        };
        let Some(account) = found(store.account(&key.account_sid))? else {
            return Err(ApiError::authenticate());
        };
        let ok = constant_time_eq(key.secret.as_bytes(), password.as_bytes());
        (account, ok, Credential::ApiKey(sid))
    } else {
        return Err(ApiError::authenticate());
    };
    if !secret_ok || account.status != AccountStatus::Active {
        return Err(ApiError::authenticate());
    }
    Ok(Caller { account, credential })
}

/// The user and password of an `Authorization: Basic ...` header.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("Basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The `{AccountSid}` of `/2010-04-01/Accounts/{AccountSid}.json` or
/// `/2010-04-01/Accounts/{AccountSid}/...`.
pub fn account_in_path(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(super::ACCOUNTS_PREFIX)?;
    let segment = rest.split('/').next()?;
    Some(segment.strip_suffix(".json").unwrap_or(segment))
}

/// Compares secrets in time that depends on their lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basic_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(basic_credentials(&h), None);
        h.insert(AUTHORIZATION, "Basic QUMxOnMzY3I6ZXQ=".parse().unwrap()); // AC1:s3cr:et
        assert_eq!(basic_credentials(&h), Some(("AC1".into(), "s3cr:et".into())));
        h.insert(AUTHORIZATION, "Bearer QUMxOnMzY3JldA==".parse().unwrap());
        assert_eq!(basic_credentials(&h), None);
        h.insert(AUTHORIZATION, "Basic not-base64!".parse().unwrap());
        assert_eq!(basic_credentials(&h), None);
    }

    #[test]
    fn finds_the_account_of_a_path() {
        assert_eq!(account_in_path("/2010-04-01/Accounts/AC1.json"), Some("AC1"));
        assert_eq!(account_in_path("/2010-04-01/Accounts/AC1/Calls.json"), Some("AC1"));
        assert_eq!(account_in_path("/2010-04-01/Accounts.json"), None);
        assert_eq!(account_in_path("/other"), None);
    }
}
