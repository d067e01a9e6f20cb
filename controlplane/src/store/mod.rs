//! The durable state of the control plane: accounts, API keys,
//! applications, phone numbers, SIP trunks and call records, behind one
//! [`Store`] trait.
//!
//! ```text
//!   REST API, calls, seeding          (callers; async ones via spawn_blocking)
//!          │
//!          ▼
//!   Store (trait)                     this file: operations and errors
//!     ├── SqliteStore                 sqlite.rs: one file in state_dir, WAL
//!     │     └── migrations/*.sql      the schema, one file per version
//!     └── PostgresStore               postgres.rs: a server a fleet shares,
//!           └── migrations/postgres/  the same schema, same version numbers
//!
//!   domain types: sid.rs (AC/SK/AP/PN/CA), account.rs, application.rs,
//!   phone_number.rs (E.164), trunk.rs (Cidr), call_record.rs, timestamp.rs
//!   seed.rs: the [[accounts]] tables of the config, written on first start
//! ```
//!
//! Use it like this:
//!
//! ```no_run
//! use controlplane::store::{SqliteStore, Store, E164};
//! let store = SqliteStore::open("./state/bridgehead.db".as_ref()).unwrap();
//! let number = E164::parse("+15550100001").unwrap();
//! if let Some((number, app)) = store.route_number(&number).unwrap() {
//!     println!("{} -> {:?}", number.phone_number, app.and_then(|a| a.voice_url));
//! }
//! ```
//!
//! Routes and presence do not live here: they change every second and go by
//! gossip (see `RouteStore`). The schema and the durability rules are
//! described in `docs/store.md`.

mod account;
mod application;
mod call_record;
mod phone_number;
mod postgres;
pub mod seed;
mod sid;
mod sqlite;
#[cfg(test)]
mod suite;
#[cfg(any(test, feature = "test-postgres"))]
pub mod test_postgres;
mod timestamp;
mod trunk;

pub use account::{Account, AccountStatus, ApiKey};
pub use application::{check_http_url, Application, HttpMethod};
pub use call_record::{CallFilter, CallRecord, CallStatus, CallUpdate, CallWrite, Direction};
pub use phone_number::{E164Error, PhoneNumber, E164};
pub use postgres::{PostgresStore, PostgresUrl, DEFAULT_POOL as DEFAULT_POSTGRES_POOL};
pub use seed::{seed, AccountSeed, SeedReport};
pub use sid::{random_secret, AccountSid, ApiKeySid, ApplicationSid, CallSid, PhoneNumberSid, SidError};
pub use sqlite::{Durability, SqliteStore};
pub use timestamp::Timestamp;
pub use trunk::{check_sip_uri, check_trunk_name, Cidr, CidrError, Trunk};

use std::net::IpAddr;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist, or belongs to another account (the two are
    /// not told apart, so that one account cannot probe another's SIDs).
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// A unique key is taken (SID, phone number, trunk name) or the object
    /// is still in use (an application that numbers point at).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The object breaks a rule of its type (URL, name, paging bounds...).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The database was written by a newer Bridgehead; this one refuses to
    /// touch it rather than misread it.
    #[error("the database is at schema version {found}, newer than the {known} this build knows; run the newer build or restore a backup")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("cannot open the database {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The PostgreSQL server cannot be used: connecting failed, every
    /// connection of the pool stayed busy, or it stopped answering. `url`
    /// is the store's URL without its password.
    #[error("cannot use the PostgreSQL server {url}: {reason}")]
    PostgresConnect { url: String, reason: String },
    /// A statement failed on the server (or its connection broke midway).
    #[error("PostgreSQL: {}", postgres::error_text(.0))]
    Postgres(#[from] tokio_postgres::Error),
}

impl StoreError {
    pub(crate) fn not_found(kind: &'static str, id: impl ToString) -> StoreError {
        StoreError::NotFound { kind, id: id.to_string() }
    }
}

/// Which page of a list to return. Pages count from 0, as in Twilio's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u32,
    pub page_size: u32,
}

impl PageRequest {
    /// Twilio's default page size.
    pub const DEFAULT_SIZE: u32 = 50;
    /// Twilio's largest page.
    pub const MAX_SIZE: u32 = 1000;

    pub fn new(page: u32, page_size: u32) -> PageRequest {
        PageRequest { page, page_size }
    }

    pub(crate) fn check(&self) -> Result<(), StoreError> {
        if !(1..=Self::MAX_SIZE).contains(&self.page_size) {
            return Err(StoreError::Invalid(format!(
                "page_size {} is not between 1 and {}",
                self.page_size,
                Self::MAX_SIZE
            )));
        }
        if u64::from(self.page) * u64::from(self.page_size) > i64::MAX as u64 {
            return Err(StoreError::Invalid(format!("page {} is too far", self.page)));
        }
        Ok(())
    }
}

impl Default for PageRequest {
    fn default() -> PageRequest {
        PageRequest::new(0, Self::DEFAULT_SIZE)
    }
}

/// One page of a list, and whether a next page has anything on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: u32,
    pub page_size: u32,
    pub has_more: bool,
}

/// An account with everything it owns, written at once by
/// [`Store::import_account`] (seeding, later backup restore).
#[derive(Debug, Clone)]
pub struct AccountBundle {
    pub account: Account,
    pub api_keys: Vec<ApiKey>,
    pub applications: Vec<Application>,
    pub numbers: Vec<PhoneNumber>,
    pub trunks: Vec<Trunk>,
}

/// A change to an object, applied by the store inside the transaction that
/// reads and writes it back, so that two concurrent partial updates (two
/// REST `POST`s to one application) do not lose each other's fields. The
/// store keeps the identity fields (`sid`, `account_sid`, `date_created`) as
/// they were, sets `date_updated`, and validates the result.
pub type Edit<'a, T> = &'a dyn Fn(&mut T);

/// The durable state of the control plane.
///
/// **Why synchronous.** SQLite is a blocking C library: a commit writes to
/// the WAL (microseconds), and now and then a checkpoint writes the main
/// file (milliseconds). Hiding that behind `async fn` would only move the
/// blocking somewhere less visible. Async callers hold an
/// `Arc<dyn Store>` and call it through `tokio::task::spawn_blocking`, which
/// keeps the runtime's threads free and costs one thread hand-off per call,
/// small beside the write itself. `PostgresStore` keeps this shape with a
/// runtime of its own (postgres.rs), so callers do not change.
///
/// **Scoping.** Operations the REST API serves take the caller's account and
/// answer `NotFound` for another account's objects. Operations the call path
/// needs before it knows the account (`route_number`, `trunk_for_source`,
/// `api_key`, `account`) are global.
///
/// **Writes** are each one transaction: when a call returns `Ok` the change
/// is committed, and survives a crash of the process (see [`Durability`]).
pub trait Store: Send + Sync {
    // ---- accounts -------------------------------------------------------

    fn create_account(&self, account: &Account) -> Result<(), StoreError>;
    fn account(&self, sid: &AccountSid) -> Result<Account, StoreError>;
    /// Every account, oldest first.
    fn accounts(&self) -> Result<Vec<Account>, StoreError>;
    /// Changes the friendly name, status or auth token (rotation).
    fn update_account(&self, sid: &AccountSid, edit: Edit<'_, Account>) -> Result<Account, StoreError>;
    /// Writes an account and everything it owns in one transaction if no
    /// account with its SID exists yet; returns whether it did. An existing
    /// account is left exactly as it is (the database wins over the config).
    fn import_account(&self, bundle: &AccountBundle) -> Result<bool, StoreError>;

    // ---- API keys -------------------------------------------------------

    fn create_api_key(&self, key: &ApiKey) -> Result<(), StoreError>;
    /// Any account's key (authentication looks the key up by its SID first).
    fn api_key(&self, sid: &ApiKeySid) -> Result<ApiKey, StoreError>;
    /// The account's keys, oldest first.
    fn api_keys(&self, account: &AccountSid) -> Result<Vec<ApiKey>, StoreError>;
    fn delete_api_key(&self, account: &AccountSid, sid: &ApiKeySid) -> Result<(), StoreError>;
    /// Renames a key of `account` (its secret never changes).
    fn rename_api_key(&self, account: &AccountSid, sid: &ApiKeySid, friendly_name: &str) -> Result<ApiKey, StoreError>;

    // ---- applications ---------------------------------------------------

    fn create_application(&self, app: &Application) -> Result<(), StoreError>;
    fn application(&self, account: &AccountSid, sid: &ApplicationSid) -> Result<Application, StoreError>;
    /// The account's applications, oldest first.
    fn applications(&self, account: &AccountSid, page: PageRequest) -> Result<Page<Application>, StoreError>;
    fn update_application(
        &self,
        account: &AccountSid,
        sid: &ApplicationSid,
        edit: Edit<'_, Application>,
    ) -> Result<Application, StoreError>;
    /// Refused with `Conflict` while phone numbers point at it.
    fn delete_application(&self, account: &AccountSid, sid: &ApplicationSid) -> Result<(), StoreError>;

    // ---- phone numbers --------------------------------------------------

    /// The number must be free in the whole store, and its application (if
    /// any) must belong to the same account.
    fn create_number(&self, number: &PhoneNumber) -> Result<(), StoreError>;
    fn number(&self, account: &AccountSid, sid: &PhoneNumberSid) -> Result<PhoneNumber, StoreError>;
    /// The account's numbers, oldest first.
    fn numbers(&self, account: &AccountSid, page: PageRequest) -> Result<Page<PhoneNumber>, StoreError>;
    fn update_number(
        &self,
        account: &AccountSid,
        sid: &PhoneNumberSid,
        edit: Edit<'_, PhoneNumber>,
    ) -> Result<PhoneNumber, StoreError>;
    fn delete_number(&self, account: &AccountSid, sid: &PhoneNumberSid) -> Result<(), StoreError>;
    /// For a call to `number`: the number and the application answering it
    /// (`None` if the number has none), or `None` if no account owns it.
    fn route_number(&self, number: &E164) -> Result<Option<(PhoneNumber, Option<Application>)>, StoreError>;

    // ---- trunks ---------------------------------------------------------

    fn create_trunk(&self, trunk: &Trunk) -> Result<(), StoreError>;
    fn trunk(&self, account: &AccountSid, name: &str) -> Result<Trunk, StoreError>;
    /// The account's trunks, by name.
    fn trunks(&self, account: &AccountSid) -> Result<Vec<Trunk>, StoreError>;
    /// Edits a trunk; renaming it is allowed (call records keep the old name).
    fn update_trunk(&self, account: &AccountSid, name: &str, edit: Edit<'_, Trunk>) -> Result<Trunk, StoreError>;
    fn delete_trunk(&self, account: &AccountSid, name: &str) -> Result<(), StoreError>;
    /// The trunk whose `allow` list holds `source`, for an INVITE from it; if
    /// several do, the one with the longest matching prefix, then the oldest.
    /// `None`: the call is refused (403).
    fn trunk_for_source(&self, source: IpAddr) -> Result<Option<Trunk>, StoreError>;

    // ---- call records ---------------------------------------------------

    /// Written when a leg starts; `Conflict` if the SID exists.
    fn insert_call(&self, call: &CallRecord) -> Result<(), StoreError>;
    /// Applies the set fields of `update` and returns the record as stored.
    fn update_call(&self, sid: &CallSid, update: &CallUpdate) -> Result<CallRecord, StoreError>;
    /// A number that changes whenever accounts, keys, applications, numbers
    /// or trunks change through this store (or, for PostgreSQL, through any
    /// appliance sharing its database), so that a caller may keep what it
    /// looked up (the call layer's routing cache, the client hub's keys)
    /// until it does. Cheap: no I/O, safe on a runtime thread. `None`:
    /// changes cannot be seen now (another process writes too, or the
    /// PostgreSQL watcher is disconnected); do not cache.
    fn config_version(&self) -> Option<u64> {
        None
    }

    /// Applies `writes` in order as one transaction: all or none. The call
    /// layer batches its record writes this way, one commit for many
    /// calls' progress instead of one each. An update of a call that does
    /// not exist is skipped, not an error (its insert failed and was said).
    fn write_calls(&self, writes: &[CallWrite]) -> Result<(), StoreError> {
        for w in writes {
            match w {
                CallWrite::Insert(record) => self.insert_call(record)?,
                CallWrite::Update(sid, update) => match self.update_call(sid, update) {
                    Ok(_) | Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                },
            }
        }
        Ok(())
    }
    fn call(&self, account: &AccountSid, sid: &CallSid) -> Result<CallRecord, StoreError>;
    /// The account's calls that pass `filter`, newest first.
    fn calls(
        &self,
        account: &AccountSid,
        filter: &CallFilter,
        page: PageRequest,
    ) -> Result<Page<CallRecord>, StoreError>;
}

/// Printable text of at most `max` characters, for names shown in lists.
/// Applies an `Edit` to a copy of `current`, keeping the identity fields
/// and stamping `date_updated` (never earlier than it was).
pub(crate) fn edited<T: Clone>(current: &T, edit: Edit<'_, T>, keep: impl FnOnce(&T, &mut T)) -> T {
    let mut next = current.clone();
    edit(&mut next);
    keep(current, &mut next);
    next
}

pub(crate) fn now_after(previous: Timestamp) -> Timestamp {
    Timestamp::now().max(previous)
}

pub(crate) fn check_text(what: &str, value: &str, max: usize) -> Result<(), StoreError> {
    if value.chars().count() > max {
        return Err(StoreError::Invalid(format!("{what} must be at most {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!("{what} must not contain control characters")));
    }
    Ok(())
}
