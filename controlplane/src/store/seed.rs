//! Seeding: the `[[accounts]]` tables of the configuration file, written to
//! the store on start.
//!
//! **The database wins.** An account whose SID is already in the database
//! is left exactly as it is, with everything it owns: what the REST API
//! changed since (a rotated auth token, a deleted application, a new number)
//! is never overwritten or brought back by a restart. Only accounts the
//! database does not know are written, each at once with its API keys,
//! applications, numbers and trunks (one transaction: all or nothing). To
//! re-seed an account from the file, delete the database (or, later, the
//! account through the API).
//!
//! The config parser (`config.rs`) checks the tables and reports each
//! problem with its key (`accounts[0].applications[1].voice_url`); what
//! reaches [`seed`] is well-formed, and the store only refuses what depends
//! on the database (a number another account already holds).

use super::{
    Account, AccountBundle, AccountSid, ApiKey, ApiKeySid, Application, ApplicationSid, Cidr, HttpMethod, PhoneNumber,
    Store, StoreError, Timestamp, Trunk, E164,
};
use std::fmt;

/// One `[[accounts]]` table.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountSeed {
    pub sid: AccountSid,
    pub auth_token: String,
    pub friendly_name: Option<String>,
    pub api_keys: Vec<ApiKeySeed>,
    pub applications: Vec<ApplicationSeed>,
    pub numbers: Vec<NumberSeed>,
    pub trunks: Vec<TrunkSeed>,
}

/// One `[[accounts.api_keys]]` table.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySeed {
    pub sid: ApiKeySid,
    pub secret: String,
    pub friendly_name: Option<String>,
}

/// One `[[accounts.applications]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationSeed {
    pub sid: ApplicationSid,
    pub friendly_name: Option<String>,
    pub voice_url: Option<String>,
    pub voice_method: HttpMethod,
    pub voice_fallback_url: Option<String>,
    pub voice_fallback_method: HttpMethod,
    pub status_callback: Option<String>,
    pub status_callback_method: HttpMethod,
}

/// One `[[accounts.numbers]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberSeed {
    pub number: E164,
    /// An application of the same account.
    pub application: Option<ApplicationSid>,
    pub friendly_name: Option<String>,
}

/// One `[[accounts.trunks]]` table.
#[derive(Clone, PartialEq, Eq)]
pub struct TrunkSeed {
    pub name: String,
    pub allow: Vec<Cidr>,
    pub outbound: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// What seeding did, for the start-up log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedReport {
    /// Accounts written from the file.
    pub created: Vec<AccountSid>,
    /// Accounts already in the database, whose tables in the file were ignored.
    pub kept: Vec<AccountSid>,
}

/// Writes each account of `seeds` the database does not hold yet (see the
/// module docs for the rule). Stops at the first account the store refuses;
/// the accounts before it stay written, and a restart after fixing the file
/// picks up where it stopped.
pub fn seed(store: &dyn Store, seeds: &[AccountSeed]) -> Result<SeedReport, StoreError> {
    let mut report = SeedReport::default();
    for s in seeds {
        if store.import_account(&s.bundle(Timestamp::now()))? {
            report.created.push(s.sid.clone());
        } else {
            report.kept.push(s.sid.clone());
        }
    }
    Ok(report)
}

impl AccountSeed {
    /// The store objects for this table, dated `now`; phone numbers get new
    /// SIDs (the file names them by number).
    pub fn bundle(&self, now: Timestamp) -> AccountBundle {
        let account_sid = &self.sid;
        AccountBundle {
            account: Account {
                friendly_name: self.friendly_name.clone().unwrap_or_else(|| self.sid.to_string()),
                date_created: now,
                date_updated: now,
                ..Account::new(self.sid.clone(), self.auth_token.clone())
            },
            api_keys: self
                .api_keys
                .iter()
                .map(|k| ApiKey {
                    sid: k.sid.clone(),
                    account_sid: account_sid.clone(),
                    friendly_name: k.friendly_name.clone().unwrap_or_default(),
                    secret: k.secret.clone(),
                    date_created: now,
                })
                .collect(),
            applications: self
                .applications
                .iter()
                .map(|a| Application {
                    sid: a.sid.clone(),
                    account_sid: account_sid.clone(),
                    friendly_name: a.friendly_name.clone().unwrap_or_else(|| a.sid.to_string()),
                    voice_url: a.voice_url.clone(),
                    voice_method: a.voice_method,
                    voice_fallback_url: a.voice_fallback_url.clone(),
                    voice_fallback_method: a.voice_fallback_method,
                    status_callback: a.status_callback.clone(),
                    status_callback_method: a.status_callback_method,
                    date_created: now,
                    date_updated: now,
                })
                .collect(),
            numbers: self
                .numbers
                .iter()
                .map(|n| {
                    let mut number = PhoneNumber::new(account_sid.clone(), n.number.clone(), n.application.clone());
                    if let Some(name) = &n.friendly_name {
                        number.friendly_name = name.clone();
                    }
                    number.date_created = now;
                    number.date_updated = now;
                    number
                })
                .collect(),
            trunks: self
                .trunks
                .iter()
                .map(|t| Trunk {
                    account_sid: account_sid.clone(),
                    name: t.name.clone(),
                    allow: t.allow.clone(),
                    outbound: t.outbound.clone(),
                    username: t.username.clone(),
                    password: t.password.clone(),
                    date_created: now,
                    date_updated: now,
                })
                .collect(),
        }
    }
}

// Secrets never reach logs, not even through `{:?}` of the whole config.
impl fmt::Debug for AccountSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountSeed")
            .field("sid", &self.sid)
            .field("auth_token", &"<redacted>")
            .field("friendly_name", &self.friendly_name)
            .field("api_keys", &self.api_keys)
            .field("applications", &self.applications)
            .field("numbers", &self.numbers)
            .field("trunks", &self.trunks)
            .finish()
    }
}

impl fmt::Debug for ApiKeySeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeySeed")
            .field("sid", &self.sid)
            .field("secret", &"<redacted>")
            .field("friendly_name", &self.friendly_name)
            .finish()
    }
}

impl fmt::Debug for TrunkSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrunkSeed")
            .field("name", &self.name)
            .field("allow", &self.allow)
            .field("outbound", &self.outbound)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}
