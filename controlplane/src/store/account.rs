//! Accounts and their API keys: who may use the appliance, and the secrets
//! that authenticate them (HTTP Basic on the REST API, HMAC signatures on
//! webhooks, HS256 access tokens).

use super::sid::{random_secret, AccountSid, ApiKeySid};
use super::timestamp::Timestamp;
use super::{check_text, StoreError};
use std::fmt;

/// A tenant. Its `auth_token` signs webhook requests (`X-Twilio-Signature`)
/// and authenticates REST requests, so it is kept in clear (it cannot be
/// hashed); the database file is created readable by its owner only.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    pub sid: AccountSid,
    pub friendly_name: String,
    pub auth_token: String,
    pub status: AccountStatus,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
}

impl Account {
    /// A new active account named after its SID, dated now.
    pub fn new(sid: AccountSid, auth_token: String) -> Account {
        let now = Timestamp::now();
        Account {
            friendly_name: sid.to_string(),
            sid,
            auth_token,
            status: AccountStatus::Active,
            date_created: now,
            date_updated: now,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check_text("account friendly_name", &self.friendly_name, 64)?;
        if self.auth_token.is_empty() {
            return Err(StoreError::Invalid("an auth token must not be empty".into()));
        }
        Ok(())
    }
}

// Secrets never reach logs, not even through `{:?}`.
impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("sid", &self.sid)
            .field("friendly_name", &self.friendly_name)
            .field("auth_token", &"<redacted>")
            .field("status", &self.status)
            .field("date_created", &self.date_created)
            .field("date_updated", &self.date_updated)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    Active,
    Suspended,
    Closed,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Suspended => "suspended",
            AccountStatus::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<AccountStatus> {
        Some(match s {
            "active" => AccountStatus::Active,
            "suspended" => AccountStatus::Suspended,
            "closed" => AccountStatus::Closed,
            _ => return None,
        })
    }
}

/// A key an account hands to its application servers: `sid` + `secret`
/// authenticate REST requests and sign access tokens (HS256, `iss` = sid).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub sid: ApiKeySid,
    pub account_sid: AccountSid,
    pub friendly_name: String,
    pub secret: String,
    pub date_created: Timestamp,
}

impl ApiKey {
    /// A new key with a generated SID and a random 128-bit secret, dated now.
    pub fn generate(account_sid: AccountSid, friendly_name: String) -> ApiKey {
        ApiKey {
            sid: ApiKeySid::generate(),
            account_sid,
            friendly_name,
            secret: random_secret(),
            date_created: Timestamp::now(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check_text("API key friendly_name", &self.friendly_name, 64)?;
        if self.secret.is_empty() {
            return Err(StoreError::Invalid("an API key secret must not be empty".into()));
        }
        Ok(())
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("sid", &self.sid)
            .field("account_sid", &self.account_sid)
            .field("friendly_name", &self.friendly_name)
            .field("secret", &"<redacted>")
            .field("date_created", &self.date_created)
            .finish()
    }
}
