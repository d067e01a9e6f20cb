//! [`Store`] on an embedded SQLite database: one file in the appliance's
//! state directory, in WAL mode, behind one connection.
//!
//! **One connection, one mutex.** Every operation takes the lock, runs, and
//! releases it. SQLite writes one transaction at a time anyway; reads are
//! point lookups on indexes and take microseconds. If list queries ever
//! compete with the call path, WAL lets a few read-only connections run
//! beside the writer: that change stays inside this file.
//!
//! **Every write is one `BEGIN IMMEDIATE` transaction**, so a read-modify-write
//! (an `Edit`) cannot interleave with another writer, even from another
//! process opening the same file.
//!
//! **Durability** is chosen at open, see [`Durability`].

#[cfg(test)]
mod tests;

use super::trunk::to_v6;
use super::*;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, Value, ValueRef};
use rusqlite::{ffi, params, params_from_iter, Connection, OptionalExtension, Row, ToSql, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The schema, one migration per version, applied in order. Version N of a
/// database has the first N applied (`PRAGMA user_version` = N). Append,
/// never edit.
const MIGRATIONS: &[(&str, &str)] = &[("0001_initial", include_str!("migrations/0001_initial.sql"))];

/// How long a writer waits for another process's transaction (a backup tool,
/// `sqlite3` by hand) before giving up with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// What a committed transaction survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous = NORMAL` (the default). A commit is appended to the WAL
    /// file and handed to the kernel without waiting for the disk. It
    /// survives the process being killed (`kill -9`, a panic, the OOM
    /// killer): the kernel writes it out all the same. A power loss or a
    /// kernel crash can lose the transactions committed since the last
    /// sync (WAL checkpoints sync), but the database stays consistent and
    /// opens. This keeps a commit to a few microseconds, which matters at
    /// hundreds of call records a second.
    #[default]
    ProcessCrash,
    /// `synchronous = FULL`: the WAL is synced to the disk on every commit,
    /// so a commit also survives a power loss, at the price of one fsync per
    /// write (milliseconds on flash).
    PowerLoss,
}

pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// Counts configuration writes (see [`Store::config_version`]).
    version: std::sync::atomic::AtomicU64,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish()
    }
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` with
    /// [`Durability::ProcessCrash`] and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, Durability::default())
    }

    pub fn open_with(path: &Path, durability: Durability) -> Result<SqliteStore, StoreError> {
        let open_err = |source| StoreError::Open { path: path.display().to_string(), source };
        create_private(path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            source: rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_CANTOPEN), Some(e.to_string())),
        })?;
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_err(rusqlite::Error::SqliteFailure(
                ffi::Error::new(ffi::SQLITE_CANTOPEN),
                Some(format!("the file system does not support WAL (journal_mode is {mode})")),
            )));
        }
        let synchronous = match durability {
            Durability::ProcessCrash => "NORMAL",
            Durability::PowerLoss => "FULL",
        };
        conn.execute_batch(&format!("PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON;"))
            .map_err(open_err)?;
        migrate(&mut conn)?;
        Ok(SqliteStore { conn: Mutex::new(conn), version: Default::default(), path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database (the number of migrations
    /// applied).
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self.lock().query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// `PRAGMA integrity_check`: `["ok"]` for a sound database, otherwise
    /// the problems SQLite found.
    pub fn integrity_check(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("PRAGMA integrity_check")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held dropped its transaction, which
        // rolled back: the connection is fine to use.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        f(&self.lock())
    }

    /// A write of configuration (accounts, keys, applications, numbers,
    /// trunks): what callers may have cached goes stale.
    fn write<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let out = self.write_records(f);
        // Bumped after the commit (and after a failed one too: harmless).
        self.version.fetch_add(1, std::sync::atomic::Ordering::Release);
        out
    }

    /// A write of call records only: nothing cached depends on them.
    fn write_records<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// Inserts one call record (inside the caller's transaction).
fn insert_call_row(c: &Connection, call: &CallRecord) -> Result<(), StoreError> {
    c.prepare_cached(&format!(
        "INSERT INTO calls ({CALL_COLUMNS}) VALUES \
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
    ))?
    .execute(params![
        call.sid,
        call.account_sid,
        call.parent_call_sid,
        call.from,
        call.to,
        call.direction,
        call.status,
        call.start_time,
        call.end_time,
        call.duration_s,
        call.answered_by,
        call.error_code,
        call.error_message,
        call.application_sid,
        call.trunk,
        call.date_created,
        call.date_updated
    ])
    .map_err(|e| insert_error(e, || format!("call {} exists", call.sid), &call.account_sid))?;
    Ok(())
}

/// The parameters of [`UPDATE_CALL`].
fn update_params<'a>(sid: &'a CallSid, u: &'a CallUpdate, now: &'a Timestamp) -> impl rusqlite::Params + 'a {
    params_from_iter::<[&dyn ToSql; 9]>([
        sid,
        &u.status,
        &u.start_time,
        &u.end_time,
        &u.duration_s,
        &u.answered_by,
        &u.error_code,
        &u.error_message,
        now,
    ])
}

/// The update of a call record: only the fields given change.
const UPDATE_CALL: &str = "UPDATE calls SET \
   status = coalesce(?2, status), \
   start_time = coalesce(?3, start_time), \
   end_time = coalesce(?4, end_time), \
   duration_s = coalesce(?5, duration_s), \
   answered_by = coalesce(?6, answered_by), \
   error_code = coalesce(?7, error_code), \
   error_message = coalesce(?8, error_message), \
   date_updated = max(?9, date_updated) \
 WHERE sid = ?1";

/// Creates the file readable and writable by its owner only (it holds auth
/// tokens and secrets) if it does not exist yet. SQLite gives its `-wal` and
/// `-shm` files the same permissions.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if found > known {
        return Err(StoreError::SchemaTooNew { found, known });
    }
    for (version, (_name, sql)) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql)?;
        // user_version lives in the file header, written by this same
        // transaction: the schema and its number change together or not at all.
        tx.pragma_update(None, "user_version", version as i64 + 1)?;
    }
    tx.commit()?;
    Ok(())
}

// ---- column conversions ---------------------------------------------------

/// Types stored as TEXT in their display form and checked when read back.
macro_rules! text_column {
    ($ty:ty, $to:expr, $from:expr) => {
        impl ToSql for $ty {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                #[allow(clippy::redundant_closure_call)]
                Ok(ToSqlOutput::from(($to)(self)))
            }
        }
        impl FromSql for $ty {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let s = value.as_str()?;
                #[allow(clippy::redundant_closure_call)]
                ($from)(s)
                    .ok_or_else(|| FromSqlError::Other(format!("{s:?} is not a valid {}", stringify!($ty)).into()))
            }
        }
    };
}

text_column!(AccountSid, |v: &AccountSid| v.as_str().to_string(), |s| { AccountSid::parse(s).ok() });
text_column!(ApiKeySid, |v: &ApiKeySid| v.as_str().to_string(), |s| { ApiKeySid::parse(s).ok() });
text_column!(ApplicationSid, |v: &ApplicationSid| v.as_str().to_string(), |s| { ApplicationSid::parse(s).ok() });
text_column!(PhoneNumberSid, |v: &PhoneNumberSid| v.as_str().to_string(), |s| { PhoneNumberSid::parse(s).ok() });
text_column!(CallSid, |v: &CallSid| v.as_str().to_string(), |s| { CallSid::parse(s).ok() });
text_column!(E164, |v: &E164| v.as_str().to_string(), |s| E164::parse(s).ok());
text_column!(Cidr, |v: &Cidr| v.to_string(), |s| Cidr::parse(s).ok());
text_column!(AccountStatus, |v: &AccountStatus| v.as_str(), AccountStatus::parse);
text_column!(HttpMethod, |v: &HttpMethod| v.as_str(), HttpMethod::parse);
text_column!(Direction, |v: &Direction| v.as_str(), Direction::parse);
text_column!(CallStatus, |v: &CallStatus| v.as_str(), CallStatus::parse);

impl ToSql for Timestamp {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.unix_ms()))
    }
}

impl FromSql for Timestamp {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value.as_i64().map(Timestamp::from_unix_ms)
    }
}

// ---- errors ---------------------------------------------------------------

/// The SQLite constraint a statement broke, if that is why it failed.
fn broken_constraint(e: &rusqlite::Error) -> Option<std::os::raw::c_int> {
    match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            Some(f.extended_code)
        }
        _ => None,
    }
}

/// A failed insert: a taken key becomes `Conflict(what)`, a missing account
/// `NotFound`, anything else stays a database error.
fn insert_error(e: rusqlite::Error, what: impl FnOnce() -> String, account: &AccountSid) -> StoreError {
    match broken_constraint(&e) {
        Some(ffi::SQLITE_CONSTRAINT_PRIMARYKEY | ffi::SQLITE_CONSTRAINT_UNIQUE) => StoreError::Conflict(what()),
        Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => StoreError::not_found("account", account),
        _ => StoreError::Sqlite(e),
    }
}

fn ensure_account(c: &Connection, sid: &AccountSid) -> Result<(), StoreError> {
    let found = c.prepare_cached("SELECT 1 FROM accounts WHERE sid = ?1")?.query_row([sid], |_| Ok(())).optional()?;
    found.ok_or_else(|| StoreError::not_found("account", sid))
}

fn page_of<T>(mut items: Vec<T>, page: PageRequest) -> Page<T> {
    let has_more = items.len() > page.page_size as usize;
    items.truncate(page.page_size as usize);
    Page { items, page: page.page, page_size: page.page_size, has_more }
}

/// `LIMIT` and `OFFSET` for `page`, one row more than the page so that
/// `has_more` needs no second query.
fn limit_offset(page: PageRequest) -> Result<(i64, i64), StoreError> {
    page.check()?;
    Ok((i64::from(page.page_size) + 1, i64::from(page.page) * i64::from(page.page_size)))
}

// ---- accounts -------------------------------------------------------------

const ACCOUNT_COLUMNS: &str = "sid, friendly_name, auth_token, status, date_created, date_updated";

fn account_from_row(r: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        sid: r.get("sid")?,
        friendly_name: r.get("friendly_name")?,
        auth_token: r.get("auth_token")?,
        status: r.get("status")?,
        date_created: r.get("date_created")?,
        date_updated: r.get("date_updated")?,
    })
}

fn get_account(c: &Connection, sid: &AccountSid) -> Result<Account, StoreError> {
    c.prepare_cached(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE sid = ?1"))?
        .query_row([sid], account_from_row)
        .optional()?
        .ok_or_else(|| StoreError::not_found("account", sid))
}

fn insert_account(c: &Connection, a: &Account) -> Result<(), StoreError> {
    a.validate()?;
    c.prepare_cached(&format!("INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"))?
        .execute(params![a.sid, a.friendly_name, a.auth_token, a.status, a.date_created, a.date_updated])
        .map_err(|e| insert_error(e, || format!("account {} exists", a.sid), &a.sid))?;
    Ok(())
}

// ---- API keys -------------------------------------------------------------

const API_KEY_COLUMNS: &str = "sid, account_sid, friendly_name, secret, date_created";

fn api_key_from_row(r: &Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        sid: r.get("sid")?,
        account_sid: r.get("account_sid")?,
        friendly_name: r.get("friendly_name")?,
        secret: r.get("secret")?,
        date_created: r.get("date_created")?,
    })
}

fn insert_api_key(c: &Connection, k: &ApiKey) -> Result<(), StoreError> {
    k.validate()?;
    ensure_account(c, &k.account_sid)?;
    c.prepare_cached(&format!("INSERT INTO api_keys ({API_KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"))?
        .execute(params![k.sid, k.account_sid, k.friendly_name, k.secret, k.date_created])
        .map_err(|e| insert_error(e, || format!("API key {} exists", k.sid), &k.account_sid))?;
    Ok(())
}

// ---- applications ---------------------------------------------------------

const APPLICATION_COLUMNS: &str = "sid, account_sid, friendly_name, voice_url, voice_method, \
     voice_fallback_url, voice_fallback_method, status_callback, status_callback_method, \
     date_created, date_updated";

fn application_from_row(r: &Row<'_>) -> rusqlite::Result<Application> {
    Ok(Application {
        sid: r.get("sid")?,
        account_sid: r.get("account_sid")?,
        friendly_name: r.get("friendly_name")?,
        voice_url: r.get("voice_url")?,
        voice_method: r.get("voice_method")?,
        voice_fallback_url: r.get("voice_fallback_url")?,
        voice_fallback_method: r.get("voice_fallback_method")?,
        status_callback: r.get("status_callback")?,
        status_callback_method: r.get("status_callback_method")?,
        date_created: r.get("date_created")?,
        date_updated: r.get("date_updated")?,
    })
}

fn get_application(c: &Connection, account: &AccountSid, sid: &ApplicationSid) -> Result<Application, StoreError> {
    c.prepare_cached(&format!("SELECT {APPLICATION_COLUMNS} FROM applications WHERE sid = ?1 AND account_sid = ?2"))?
        .query_row(params![sid, account], application_from_row)
        .optional()?
        .ok_or_else(|| StoreError::not_found("application", sid))
}

fn insert_application(c: &Connection, a: &Application) -> Result<(), StoreError> {
    a.validate()?;
    ensure_account(c, &a.account_sid)?;
    c.prepare_cached(&format!(
        "INSERT INTO applications ({APPLICATION_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))?
    .execute(params![
        a.sid,
        a.account_sid,
        a.friendly_name,
        a.voice_url,
        a.voice_method,
        a.voice_fallback_url,
        a.voice_fallback_method,
        a.status_callback,
        a.status_callback_method,
        a.date_created,
        a.date_updated
    ])
    .map_err(|e| insert_error(e, || format!("application {} exists", a.sid), &a.account_sid))?;
    Ok(())
}

// ---- phone numbers --------------------------------------------------------

const NUMBER_COLUMNS: &str =
    "sid, account_sid, phone_number, application_sid, friendly_name, date_created, date_updated";

fn number_from_row(r: &Row<'_>) -> rusqlite::Result<PhoneNumber> {
    Ok(PhoneNumber {
        sid: r.get("sid")?,
        account_sid: r.get("account_sid")?,
        phone_number: r.get("phone_number")?,
        application_sid: r.get("application_sid")?,
        friendly_name: r.get("friendly_name")?,
        date_created: r.get("date_created")?,
        date_updated: r.get("date_updated")?,
    })
}

fn get_number(c: &Connection, account: &AccountSid, sid: &PhoneNumberSid) -> Result<PhoneNumber, StoreError> {
    c.prepare_cached(&format!("SELECT {NUMBER_COLUMNS} FROM phone_numbers WHERE sid = ?1 AND account_sid = ?2"))?
        .query_row(params![sid, account], number_from_row)
        .optional()?
        .ok_or_else(|| StoreError::not_found("phone number", sid))
}

/// The number's application must exist in the number's own account.
fn check_number_application(c: &Connection, n: &PhoneNumber) -> Result<(), StoreError> {
    match &n.application_sid {
        Some(app) => get_application(c, &n.account_sid, app).map(drop),
        None => Ok(()),
    }
}

fn insert_number(c: &Connection, n: &PhoneNumber) -> Result<(), StoreError> {
    n.validate()?;
    ensure_account(c, &n.account_sid)?;
    check_number_application(c, n)?;
    let owner: Option<String> = c
        .prepare_cached("SELECT sid FROM phone_numbers WHERE phone_number = ?1")?
        .query_row([&n.phone_number], |r| r.get(0))
        .optional()?;
    if owner.is_some() {
        return Err(StoreError::Conflict(format!("phone number {} is already in use", n.phone_number)));
    }
    c.prepare_cached(&format!("INSERT INTO phone_numbers ({NUMBER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"))?
        .execute(params![
            n.sid,
            n.account_sid,
            n.phone_number,
            n.application_sid,
            n.friendly_name,
            n.date_created,
            n.date_updated
        ])
        .map_err(|e| insert_error(e, || format!("phone number {} exists", n.sid), &n.account_sid))?;
    Ok(())
}

// ---- trunks ---------------------------------------------------------------

const TRUNK_COLUMNS: &str = "account_sid, name, outbound, username, password, date_created, date_updated";

fn get_trunk(c: &Connection, account: &AccountSid, name: &str) -> Result<Trunk, StoreError> {
    let trunk = c
        .prepare_cached(&format!("SELECT {TRUNK_COLUMNS} FROM trunks WHERE account_sid = ?1 AND name = ?2"))?
        .query_row(params![account, name], |r| {
            Ok(Trunk {
                account_sid: r.get("account_sid")?,
                name: r.get("name")?,
                allow: Vec::new(),
                outbound: r.get("outbound")?,
                username: r.get("username")?,
                password: r.get("password")?,
                date_created: r.get("date_created")?,
                date_updated: r.get("date_updated")?,
            })
        })
        .optional()?;
    let mut trunk = trunk.ok_or_else(|| StoreError::not_found("trunk", name))?;
    // The rowid keeps the order the networks were written in.
    trunk.allow = c
        .prepare_cached("SELECT cidr FROM trunk_allow WHERE account_sid = ?1 AND trunk_name = ?2 ORDER BY rowid")?
        .query_map(params![account, name], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(trunk)
}

fn trunk_exists(c: &Connection, account: &AccountSid, name: &str) -> Result<bool, StoreError> {
    Ok(c.prepare_cached("SELECT 1 FROM trunks WHERE account_sid = ?1 AND name = ?2")?
        .query_row(params![account, name], |_| Ok(()))
        .optional()?
        .is_some())
}

fn insert_allow(c: &Connection, t: &Trunk) -> Result<(), StoreError> {
    let mut stmt = c.prepare_cached(
        "INSERT INTO trunk_allow (account_sid, trunk_name, cidr, lo, hi, v6_prefix_len) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for cidr in &t.allow {
        let (lo, hi) = cidr.v6_range();
        stmt.execute(params![t.account_sid, t.name, cidr, &lo[..], &hi[..], cidr.v6_prefix_len()])?;
    }
    Ok(())
}

fn insert_trunk(c: &Connection, t: &Trunk) -> Result<(), StoreError> {
    t.validate()?;
    ensure_account(c, &t.account_sid)?;
    if trunk_exists(c, &t.account_sid, &t.name)? {
        return Err(StoreError::Conflict(format!("trunk {} exists", t.name)));
    }
    c.prepare_cached(&format!("INSERT INTO trunks ({TRUNK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"))?
        .execute(params![t.account_sid, t.name, t.outbound, t.username, t.password, t.date_created, t.date_updated])
        .map_err(|e| insert_error(e, || format!("trunk {} exists", t.name), &t.account_sid))?;
    insert_allow(c, t)
}

// ---- call records ---------------------------------------------------------

const CALL_COLUMNS: &str = "sid, account_sid, parent_call_sid, from_party, to_party, direction, \
     status, start_time, end_time, duration_s, answered_by, error_code, error_message, \
     application_sid, trunk, date_created, date_updated";

fn call_from_row(r: &Row<'_>) -> rusqlite::Result<CallRecord> {
    Ok(CallRecord {
        sid: r.get("sid")?,
        account_sid: r.get("account_sid")?,
        parent_call_sid: r.get("parent_call_sid")?,
        from: r.get("from_party")?,
        to: r.get("to_party")?,
        direction: r.get("direction")?,
        status: r.get("status")?,
        start_time: r.get("start_time")?,
        end_time: r.get("end_time")?,
        duration_s: r.get("duration_s")?,
        answered_by: r.get("answered_by")?,
        error_code: r.get("error_code")?,
        error_message: r.get("error_message")?,
        application_sid: r.get("application_sid")?,
        trunk: r.get("trunk")?,
        date_created: r.get("date_created")?,
        date_updated: r.get("date_updated")?,
    })
}

impl Store for SqliteStore {
    fn create_account(&self, account: &Account) -> Result<(), StoreError> {
        self.write(|c| insert_account(c, account))
    }

    fn account(&self, sid: &AccountSid) -> Result<Account, StoreError> {
        self.read(|c| get_account(c, sid))
    }

    fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY date_created, rowid"))?
                .query_map([], account_from_row)?
                .collect::<Result<_, _>>()?)
        })
    }

    fn update_account(&self, sid: &AccountSid, edit: Edit<'_, Account>) -> Result<Account, StoreError> {
        self.write(|c| {
            let current = get_account(c, sid)?;
            let next = edited(&current, edit, |old, new| {
                new.sid = old.sid.clone();
                new.date_created = old.date_created;
                new.date_updated = now_after(old.date_updated);
            });
            next.validate()?;
            c.prepare_cached(
                "UPDATE accounts SET friendly_name = ?2, auth_token = ?3, status = ?4, \
                 date_updated = ?5 WHERE sid = ?1",
            )?
            .execute(params![
                next.sid,
                next.friendly_name,
                next.auth_token,
                next.status,
                next.date_updated
            ])?;
            Ok(next)
        })
    }

    fn import_account(&self, bundle: &AccountBundle) -> Result<bool, StoreError> {
        self.write(|c| {
            let sid = &bundle.account.sid;
            match ensure_account(c, sid) {
                Ok(()) => return Ok(false),
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            insert_account(c, &bundle.account)?;
            let foreign = |what: &str, owner: &AccountSid| {
                StoreError::Invalid(format!("{what} of account {owner} imported with account {sid}"))
            };
            for k in &bundle.api_keys {
                if &k.account_sid != sid {
                    return Err(foreign("API key", &k.account_sid));
                }
                insert_api_key(c, k)?;
            }
            for a in &bundle.applications {
                if &a.account_sid != sid {
                    return Err(foreign("application", &a.account_sid));
                }
                insert_application(c, a)?;
            }
            for n in &bundle.numbers {
                if &n.account_sid != sid {
                    return Err(foreign("phone number", &n.account_sid));
                }
                insert_number(c, n)?;
            }
            for t in &bundle.trunks {
                if &t.account_sid != sid {
                    return Err(foreign("trunk", &t.account_sid));
                }
                insert_trunk(c, t)?;
            }
            Ok(true)
        })
    }

    fn create_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.write(|c| insert_api_key(c, key))
    }

    fn api_key(&self, sid: &ApiKeySid) -> Result<ApiKey, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE sid = ?1"))?
                .query_row([sid], api_key_from_row)
                .optional()?
                .ok_or_else(|| StoreError::not_found("API key", sid))
        })
    }

    fn api_keys(&self, account: &AccountSid) -> Result<Vec<ApiKey>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE account_sid = ?1 \
                     ORDER BY date_created, rowid"
            ))?
            .query_map([account], api_key_from_row)?
            .collect::<Result<_, _>>()?)
        })
    }

    fn delete_api_key(&self, account: &AccountSid, sid: &ApiKeySid) -> Result<(), StoreError> {
        self.write(|c| {
            let n = c
                .prepare_cached("DELETE FROM api_keys WHERE sid = ?1 AND account_sid = ?2")?
                .execute(params![sid, account])?;
            if n == 0 {
                return Err(StoreError::not_found("API key", sid));
            }
            Ok(())
        })
    }

    fn rename_api_key(&self, account: &AccountSid, sid: &ApiKeySid, friendly_name: &str) -> Result<ApiKey, StoreError> {
        self.write(|c| {
            let mut key = c
                .prepare_cached(&format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE sid = ?1 AND account_sid = ?2"))?
                .query_row(params![sid, account], api_key_from_row)
                .optional()?
                .ok_or_else(|| StoreError::not_found("API key", sid))?;
            key.friendly_name = friendly_name.to_string();
            key.validate()?;
            c.prepare_cached("UPDATE api_keys SET friendly_name = ?2 WHERE sid = ?1")?
                .execute(params![sid, friendly_name])?;
            Ok(key)
        })
    }

    fn create_application(&self, app: &Application) -> Result<(), StoreError> {
        self.write(|c| insert_application(c, app))
    }

    fn application(&self, account: &AccountSid, sid: &ApplicationSid) -> Result<Application, StoreError> {
        self.read(|c| get_application(c, account, sid))
    }

    fn applications(&self, account: &AccountSid, page: PageRequest) -> Result<Page<Application>, StoreError> {
        let (limit, offset) = limit_offset(page)?;
        self.read(|c| {
            let items = c
                .prepare_cached(&format!(
                    "SELECT {APPLICATION_COLUMNS} FROM applications WHERE account_sid = ?1 \
                     ORDER BY date_created, rowid LIMIT ?2 OFFSET ?3"
                ))?
                .query_map(params![account, limit, offset], application_from_row)?
                .collect::<Result<_, _>>()?;
            Ok(page_of(items, page))
        })
    }

    fn update_application(
        &self,
        account: &AccountSid,
        sid: &ApplicationSid,
        edit: Edit<'_, Application>,
    ) -> Result<Application, StoreError> {
        self.write(|c| {
            let current = get_application(c, account, sid)?;
            let next = edited(&current, edit, |old, new| {
                new.sid = old.sid.clone();
                new.account_sid = old.account_sid.clone();
                new.date_created = old.date_created;
                new.date_updated = now_after(old.date_updated);
            });
            next.validate()?;
            c.prepare_cached(
                "UPDATE applications SET friendly_name = ?2, voice_url = ?3, voice_method = ?4, \
                 voice_fallback_url = ?5, voice_fallback_method = ?6, status_callback = ?7, \
                 status_callback_method = ?8, date_updated = ?9 WHERE sid = ?1",
            )?
            .execute(params![
                next.sid,
                next.friendly_name,
                next.voice_url,
                next.voice_method,
                next.voice_fallback_url,
                next.voice_fallback_method,
                next.status_callback,
                next.status_callback_method,
                next.date_updated
            ])?;
            Ok(next)
        })
    }

    fn delete_application(&self, account: &AccountSid, sid: &ApplicationSid) -> Result<(), StoreError> {
        self.write(|c| {
            get_application(c, account, sid)?;
            let users: Vec<String> = c
                .prepare_cached(
                    "SELECT phone_number FROM phone_numbers WHERE application_sid = ?1 \
                     ORDER BY phone_number LIMIT 5",
                )?
                .query_map([sid], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            if !users.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "application {sid} answers {}; point them elsewhere first",
                    users.join(", ")
                )));
            }
            c.prepare_cached("DELETE FROM applications WHERE sid = ?1")?.execute([sid])?;
            Ok(())
        })
    }

    fn create_number(&self, number: &PhoneNumber) -> Result<(), StoreError> {
        self.write(|c| insert_number(c, number))
    }

    fn number(&self, account: &AccountSid, sid: &PhoneNumberSid) -> Result<PhoneNumber, StoreError> {
        self.read(|c| get_number(c, account, sid))
    }

    fn numbers(&self, account: &AccountSid, page: PageRequest) -> Result<Page<PhoneNumber>, StoreError> {
        let (limit, offset) = limit_offset(page)?;
        self.read(|c| {
            let items = c
                .prepare_cached(&format!(
                    "SELECT {NUMBER_COLUMNS} FROM phone_numbers WHERE account_sid = ?1 \
                     ORDER BY date_created, rowid LIMIT ?2 OFFSET ?3"
                ))?
                .query_map(params![account, limit, offset], number_from_row)?
                .collect::<Result<_, _>>()?;
            Ok(page_of(items, page))
        })
    }

    fn update_number(
        &self,
        account: &AccountSid,
        sid: &PhoneNumberSid,
        edit: Edit<'_, PhoneNumber>,
    ) -> Result<PhoneNumber, StoreError> {
        self.write(|c| {
            let current = get_number(c, account, sid)?;
            let next = edited(&current, edit, |old, new| {
                new.sid = old.sid.clone();
                new.account_sid = old.account_sid.clone();
                // A number is bought and released, not renumbered.
                new.phone_number = old.phone_number.clone();
                new.date_created = old.date_created;
                new.date_updated = now_after(old.date_updated);
            });
            next.validate()?;
            check_number_application(c, &next)?;
            c.prepare_cached(
                "UPDATE phone_numbers SET application_sid = ?2, friendly_name = ?3, \
                 date_updated = ?4 WHERE sid = ?1",
            )?
            .execute(params![next.sid, next.application_sid, next.friendly_name, next.date_updated])?;
            Ok(next)
        })
    }

    fn delete_number(&self, account: &AccountSid, sid: &PhoneNumberSid) -> Result<(), StoreError> {
        self.write(|c| {
            let n = c
                .prepare_cached("DELETE FROM phone_numbers WHERE sid = ?1 AND account_sid = ?2")?
                .execute(params![sid, account])?;
            if n == 0 {
                return Err(StoreError::not_found("phone number", sid));
            }
            Ok(())
        })
    }

    fn route_number(&self, number: &E164) -> Result<Option<(PhoneNumber, Option<Application>)>, StoreError> {
        self.read(|c| {
            let found = c
                .prepare_cached(&format!("SELECT {NUMBER_COLUMNS} FROM phone_numbers WHERE phone_number = ?1"))?
                .query_row([number], number_from_row)
                .optional()?;
            let Some(n) = found else { return Ok(None) };
            let app = match &n.application_sid {
                Some(app) => Some(get_application(c, &n.account_sid, app)?),
                None => None,
            };
            Ok(Some((n, app)))
        })
    }

    fn create_trunk(&self, trunk: &Trunk) -> Result<(), StoreError> {
        self.write(|c| insert_trunk(c, trunk))
    }

    fn trunk(&self, account: &AccountSid, name: &str) -> Result<Trunk, StoreError> {
        self.read(|c| get_trunk(c, account, name))
    }

    fn trunks(&self, account: &AccountSid) -> Result<Vec<Trunk>, StoreError> {
        self.read(|c| {
            let names: Vec<String> = c
                .prepare_cached("SELECT name FROM trunks WHERE account_sid = ?1 ORDER BY name")?
                .query_map([account], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            names.iter().map(|n| get_trunk(c, account, n)).collect()
        })
    }

    fn update_trunk(&self, account: &AccountSid, name: &str, edit: Edit<'_, Trunk>) -> Result<Trunk, StoreError> {
        self.write(|c| {
            let current = get_trunk(c, account, name)?;
            let next = edited(&current, edit, |old, new| {
                new.account_sid = old.account_sid.clone();
                new.date_created = old.date_created;
                new.date_updated = now_after(old.date_updated);
            });
            next.validate()?;
            if next.name != current.name && trunk_exists(c, account, &next.name)? {
                return Err(StoreError::Conflict(format!("trunk {} exists", next.name)));
            }
            c.prepare_cached("DELETE FROM trunk_allow WHERE account_sid = ?1 AND trunk_name = ?2")?
                .execute(params![account, name])?;
            c.prepare_cached(
                "UPDATE trunks SET name = ?3, outbound = ?4, username = ?5, password = ?6, \
                 date_updated = ?7 WHERE account_sid = ?1 AND name = ?2",
            )?
            .execute(params![
                account,
                name,
                next.name,
                next.outbound,
                next.username,
                next.password,
                next.date_updated
            ])?;
            insert_allow(c, &next)?;
            Ok(next)
        })
    }

    fn delete_trunk(&self, account: &AccountSid, name: &str) -> Result<(), StoreError> {
        self.write(|c| {
            // trunk_allow rows go with it (ON DELETE CASCADE).
            let n = c
                .prepare_cached("DELETE FROM trunks WHERE account_sid = ?1 AND name = ?2")?
                .execute(params![account, name])?;
            if n == 0 {
                return Err(StoreError::not_found("trunk", name));
            }
            Ok(())
        })
    }

    fn trunk_for_source(&self, source: IpAddr) -> Result<Option<Trunk>, StoreError> {
        let ip = to_v6(source);
        self.read(|c| {
            let best: Option<(AccountSid, String)> = c
                .prepare_cached(
                    "SELECT a.account_sid, a.trunk_name FROM trunk_allow a \
                     JOIN trunks t ON t.account_sid = a.account_sid AND t.name = a.trunk_name \
                     WHERE a.lo <= ?1 AND a.hi >= ?1 \
                     ORDER BY a.v6_prefix_len DESC, t.date_created, t.rowid LIMIT 1",
                )?
                .query_row([&ip[..]], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            match best {
                Some((account, name)) => Ok(Some(get_trunk(c, &account, &name)?)),
                None => Ok(None),
            }
        })
    }

    fn insert_call(&self, call: &CallRecord) -> Result<(), StoreError> {
        self.write_records(|c| insert_call_row(c, call))
    }

    fn config_version(&self) -> Option<u64> {
        Some(self.version.load(std::sync::atomic::Ordering::Acquire))
    }

    fn write_calls(&self, writes: &[CallWrite]) -> Result<(), StoreError> {
        self.write_records(|c| {
            for w in writes {
                match w {
                    CallWrite::Insert(call) => insert_call_row(c, call)?,
                    CallWrite::Update(sid, update) => {
                        c.prepare_cached(UPDATE_CALL)?.execute(update_params(sid, update, &Timestamp::now()))?;
                    }
                }
            }
            Ok(())
        })
    }

    fn update_call(&self, sid: &CallSid, update: &CallUpdate) -> Result<CallRecord, StoreError> {
        self.write_records(|c| {
            c.prepare_cached(&format!("{UPDATE_CALL} RETURNING {CALL_COLUMNS}"))?
                .query_row(update_params(sid, update, &Timestamp::now()), call_from_row)
                .optional()?
                .ok_or_else(|| StoreError::not_found("call", sid))
        })
    }

    fn call(&self, account: &AccountSid, sid: &CallSid) -> Result<CallRecord, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {CALL_COLUMNS} FROM calls WHERE sid = ?1 AND account_sid = ?2"))?
                .query_row(params![sid, account], call_from_row)
                .optional()?
                .ok_or_else(|| StoreError::not_found("call", sid))
        })
    }

    fn calls(
        &self,
        account: &AccountSid,
        filter: &CallFilter,
        page: PageRequest,
    ) -> Result<Page<CallRecord>, StoreError> {
        let (limit, offset) = limit_offset(page)?;
        let mut sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE account_sid = ?");
        let mut args: Vec<Value> = vec![Value::Text(account.to_string())];
        let mut and = |clause: &str, value: Value| {
            sql.push_str(" AND ");
            sql.push_str(clause);
            args.push(value);
        };
        if let Some(to) = &filter.to {
            and("to_party = ?", Value::Text(to.clone()));
        }
        if let Some(from) = &filter.from {
            and("from_party = ?", Value::Text(from.clone()));
        }
        if let Some(status) = filter.status {
            and("status = ?", Value::Text(status.as_str().into()));
        }
        if let Some(parent) = &filter.parent_call_sid {
            and("parent_call_sid = ?", Value::Text(parent.to_string()));
        }
        if let Some(t) = filter.started_at_or_after {
            and("start_time >= ?", Value::Integer(t.unix_ms()));
        }
        if let Some(t) = filter.started_before {
            and("start_time < ?", Value::Integer(t.unix_ms()));
        }
        sql.push_str(" ORDER BY date_created DESC, rowid DESC LIMIT ? OFFSET ?");
        args.push(Value::Integer(limit));
        args.push(Value::Integer(offset));
        self.read(|c| {
            // At most 2^6 shapes of this query: the statement cache keeps them.
            let items = c
                .prepare_cached(&sql)?
                .query_map(params_from_iter(args.iter()), call_from_row)?
                .collect::<Result<_, _>>()?;
            Ok(page_of(items, page))
        })
    }
}
