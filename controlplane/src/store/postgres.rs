//! [`Store`] on a PostgreSQL server shared by the appliances of a fleet, so
//! that each of them accepts the same tokens and runs the same applications.
//!
//! ```text
//!   caller thread (spawn_blocking, main, tests)     "bh-postgres" thread
//!   ───────────────────────────────────────────     ─────────────────────────
//!   PostgresStore::account(..)                      current-thread runtime:
//!     Pool::get ── idle Conn, or connect ─────────▶   connect, then drive each
//!     block_on(query futures) ◀── channel ────────▶   connection's socket
//!     (parks this thread, never a runtime)           config watcher (LISTEN)
//! ```
//!
//! **Why tokio-postgres on a runtime of its own, not the `postgres` crate.**
//! The sync `postgres` crate blocks on a runtime of its own inside the
//! calling thread, and panics when that thread already runs tokio tasks.
//! Most callers reach the store through `spawn_blocking`, but a few read it
//! on a runtime thread (the client hub's key cache, the routing cache's
//! version check, `bridgehead token` under test), and SQLite makes that merely
//! slow, not fatal. Here the connections' sockets are driven by one small
//! runtime on a dedicated thread, and a caller waits for its query with a
//! plain thread park ([`block_on`]): the store is safe to call from any
//! thread, and blocks it exactly as long as SQLite would block it on I/O.
//!
//! **A small pool.** At most `pool` connections are opened, on demand, and
//! kept; one whose server went away (restart, `pg_terminate_backend`, a lost
//! link) is dropped when noticed and the next operation opens another.
//! An operation whose connection turned out to be dead before it did anything
//! (its `BEGIN`, or a read) is run once more on a fresh connection; one that
//! failed midway is reported (`StoreError::Postgres`), never retried, since
//! its commit may or may not have happened.
//!
//! **Writes are one transaction each.** Writes of configuration (accounts,
//! keys, applications, numbers, trunks) first lock the `config_version` row,
//! so they run one at a time across the whole fleet: an `Edit`'s
//! read-modify-write cannot interleave with another appliance's, and two
//! writers cannot deadlock. Call records do not take that lock.
//!
//! **`config_version`** ([`Store::config_version`]) comes from the row of that
//! name, which a trigger raises on every change to the configuration tables
//! (by any appliance, or by hand with `psql`) and announces with `NOTIFY`. A
//! watcher task keeps a connection that `LISTEN`s; while it is down the store
//! answers `None` (do not cache), since it cannot see other writers then.
//!
//! **Migrations** run at open in one transaction holding an advisory lock:
//! appliances started at once apply each migration once, and a database
//! written by a newer build is refused (`SchemaTooNew`), as with SQLite.

#[cfg(test)]
mod tests;

use super::trunk::to_v6;
use super::*;
use bytes::BytesMut;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use tokio_postgres::{AsyncMessage, Client, NoTls, Row, Statement, Transaction};

/// The schema, one migration per version, applied in order; the same
/// numbers as SQLite's (`sqlite.rs`), so a version means the same tables on
/// both. Append, never edit.
const MIGRATIONS: &[(&str, &str)] = &[("0001_initial", include_str!("migrations/postgres/0001_initial.sql"))];

/// The advisory lock migrations hold: any fixed number, the same in every
/// build ("BHSTORE1" in ASCII), so that two appliances opening one database
/// at once migrate it one after the other.
const MIGRATION_LOCK: i64 = 0x4248_5354_4f52_4531;

/// The channel the configuration trigger notifies (see the migration).
const CONFIG_CHANNEL: &str = "bridgehead_config";

/// A connection attempt that takes longer is reported: the server is down or
/// unreachable, and the caller (a REST request, a call) should not hang.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an operation waits for a free connection of the pool.
const POOL_WAIT: Duration = Duration::from_secs(10);

/// An operation that takes longer has lost its server (a link that drops
/// packets without a reset); its connection is dropped and the call fails.
/// Far above any query of this store, which are index lookups.
const OPERATION_DEADLINE: Duration = Duration::from_secs(30);

/// The watcher's pause between attempts to reconnect.
const WATCH_RETRY: Duration = Duration::from_secs(1);

/// The default pool size (`[store] pool`): the REST API, the call layer's
/// record writer and the route lookups each hold one at a time.
pub const DEFAULT_POOL: usize = 4;

/// A `postgres://` (or `postgresql://`) URL, checked when the configuration
/// is read. Kept whole to connect; shown (`Display`, `Debug`) without its
/// password, so it may go into logs and error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    /// Checks `url` as tokio-postgres reads it, and what this store needs of it.
    pub fn parse(url: &str) -> Result<PostgresUrl, String> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err("expected postgres://USER:PASSWORD@HOST:PORT/DATABASE".into());
        }
        let config = tokio_postgres::Config::from_str(url).map_err(|e| format!("{}: {e}", without_password(url)))?;
        if config.get_hosts().is_empty() {
            return Err(format!("{}: names no host", without_password(url)));
        }
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(format!(
                "{}: sslmode=require, but this build speaks to PostgreSQL without TLS; \
                 carry the link over a network the operator secures (docs/store.md)",
                without_password(url)
            ));
        }
        Ok(PostgresUrl(url.to_string()))
    }

    fn config(&self) -> Result<tokio_postgres::Config, StoreError> {
        let mut config = tokio_postgres::Config::from_str(&self.0)
            .map_err(|e| StoreError::PostgresConnect { url: self.to_string(), reason: error_text(&e) })?;
        // Shown in pg_stat_activity, so an operator can tell whose
        // connections these are (and the tests can cut them).
        if config.get_application_name().is_none() {
            config.application_name("bridgehead");
        }
        config.connect_timeout(CONNECT_TIMEOUT);
        // A dead peer is noticed in about a minute, not TCP's two hours.
        config.keepalives_idle(Duration::from_secs(30));
        Ok(config)
    }
}

impl std::fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&without_password(&self.0))
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

/// `url` with the password left out of its user part and its query.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // A password holding '@' must be percent-encoded: the last '@' ends it.
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{user}@{hosts}")
        }
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> = query.split('&').filter(|p| !p.starts_with("password=")).collect();
            if kept.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", kept.join("&"))
            }
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

pub struct PostgresStore {
    pool: Pool,
    version: Arc<ConfigVersion>,
    runtime: RuntimeThread,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("url", &self.pool.url).field("pool", &self.pool.max).finish()
    }
}

impl PostgresStore {
    /// Connects to the server at `url`, brings the schema up to date, and
    /// keeps at most `pool` connections (at least one) plus the watcher's.
    pub fn open(url: &PostgresUrl, pool: usize) -> Result<PostgresStore, StoreError> {
        let config = url.config()?;
        let runtime = RuntimeThread::start().map_err(|e| StoreError::PostgresConnect {
            url: url.to_string(),
            reason: format!("cannot start the client's thread: {e}"),
        })?;
        let pool = Pool::new(config.clone(), url.to_string(), runtime.handle.clone(), pool.max(1));
        {
            let mut conn = pool.get()?;
            conn.with_deadline(async |c| migrate(c).await).and_then(|r| r)?;
        }
        let version = Arc::new(ConfigVersion::default());
        let (live_tx, live_rx) = std::sync::mpsc::channel();
        runtime.handle.spawn(watch_config(config, url.to_string(), version.clone(), live_tx));
        // Wait for the watcher's first reading, so that a fresh store's
        // caches work from the start; without it they stay off until then.
        if live_rx.recv_timeout(CONNECT_TIMEOUT).is_err() {
            tracing::warn!(url = %url, "the configuration watcher is not connected yet; caches stay off until it is");
        }
        Ok(PostgresStore { pool, version, runtime })
    }

    /// The URL, without its password.
    pub fn url(&self) -> &str {
        &self.pool.url
    }

    /// The schema version of the database (the migrations applied).
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.read(async |db| {
            let row = db.query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[]).await?;
            Ok(row.try_get(0)?)
        })
    }

    /// Runs a read on a pooled connection, outside a transaction (each
    /// query sees what was committed when it started).
    fn read<T>(&self, op: impl AsyncFn(&Db<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.run(Kind::Read, op).map(|(out, _)| out)
    }

    /// A write of configuration: one transaction holding the fleet-wide
    /// configuration lock; what callers cached goes stale.
    fn write<T>(&self, op: impl AsyncFn(&Db<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let (out, version) = self.run(Kind::Config, op)?;
        if let Some(v) = version {
            // Our own write is seen at once, before the NOTIFY comes back.
            self.version.seen(v);
        }
        Ok(out)
    }

    /// A write of call records only: one transaction, no lock beyond its rows.
    fn write_records<T>(&self, op: impl AsyncFn(&Db<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.run(Kind::Records, op).map(|(out, _)| out)
    }

    fn run<T>(
        &self,
        kind: Kind,
        op: impl AsyncFn(&Db<'_>) -> Result<T, StoreError>,
    ) -> Result<(T, Option<i64>), StoreError> {
        let mut retried = false;
        loop {
            let mut conn = self.pool.get()?;
            match conn.with_deadline(async |c| attempt(c, kind, &op).await)? {
                Ok(out) => return Ok(out),
                Err(Failed::Before(e)) if !retried && (e.is_closed() || conn.is_closed() || lost(&e)) => {
                    // Nothing reached the server: safe to run again on a
                    // fresh connection (this one is dropped with the guard).
                    tracing::warn!(url = %self.pool.url, error = %e, "PostgreSQL connection lost; reconnecting");
                    conn.discard();
                    retried = true;
                }
                Err(Failed::Before(e)) => return Err(e.into()),
                Err(Failed::During(e)) => return Err(e),
            }
        }
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Close the pooled connections before their runtime goes: the server
        // sees a clean goodbye, not a reset.
        self.pool.close();
        self.runtime.stop();
    }
}

/// A server error that says the connection is gone (the server shut down,
/// or an operator terminated it), rather than that the query was wrong.
fn lost(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::ADMIN_SHUTDOWN || *c == SqlState::CRASH_SHUTDOWN || *c == SqlState::CANNOT_CONNECT_NOW
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Config,
    Records,
}

/// How an attempt failed: before anything reached the server (may be run
/// again), or during (reported as it is).
enum Failed {
    Before(tokio_postgres::Error),
    During(StoreError),
}

/// One attempt of an operation on `conn`: the operation's result and, for a
/// configuration write, the configuration version it left.
async fn attempt<T>(
    conn: &mut Conn,
    kind: Kind,
    op: &impl AsyncFn(&Db<'_>) -> Result<T, StoreError>,
) -> Result<(T, Option<i64>), Failed> {
    if kind == Kind::Read {
        let db = Db { on: On::Client(&conn.client), statements: &conn.statements };
        return match op(&db).await {
            Ok(out) => Ok((out, None)),
            // A read changes nothing: it may be run again whenever it failed.
            Err(StoreError::Postgres(e)) => Err(Failed::Before(e)),
            Err(e) => Err(Failed::During(e)),
        };
    }
    let tx = conn.client.transaction().await.map_err(Failed::Before)?;
    let db = Db { on: On::Tx(&tx), statements: &conn.statements };
    let during = Failed::During;
    if kind == Kind::Config {
        db.query_one("SELECT version FROM config_version FOR UPDATE", &[]).await.map_err(|e| during(e.into()))?;
    }
    let out = op(&db).await.map_err(during)?;
    let version = match kind {
        Kind::Config => Some(
            db.query_one("SELECT version FROM config_version", &[])
                .await
                .and_then(|r| r.try_get(0))
                .map_err(|e| during(e.into()))?,
        ),
        _ => None,
    };
    tx.commit().await.map_err(|e| during(e.into()))?;
    Ok((out, version))
}

// ---- the client's runtime and the callers' waiting -----------------------

/// The thread whose runtime drives the connections' sockets and the watcher.
struct RuntimeThread {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl RuntimeThread {
    fn start() -> std::io::Result<RuntimeThread> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new().name("bh-postgres".into()).spawn(move || {
            // Ends when the store is dropped (or its sender is); dropping the
            // runtime then closes every connection it drove.
            let _ = runtime.block_on(stopped);
        })?;
        Ok(RuntimeThread { handle, stop: Some(stop) })
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Wakes a parked thread.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` on the calling thread until it is done or `deadline`
/// passes (`None`). The futures of a tokio-postgres client only wait on
/// channels to the connection, which the runtime thread drives; this needs
/// no runtime, so it works on any thread, a tokio worker included.
fn block_on<F: Future>(future: F, deadline: Instant) -> Option<F::Output> {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return Some(out);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        // A wake between the poll and here leaves the token set: no wake-up is lost.
        std::thread::park_timeout(deadline - now);
    }
}

// ---- the pool -------------------------------------------------------------

/// A connection and the statements prepared on it (each query is parsed
/// once per connection, then only bound and run: one round trip).
struct Conn {
    client: Client,
    statements: RefCell<HashMap<String, Statement>>,
}

struct Pool {
    config: tokio_postgres::Config,
    /// Without the password.
    url: String,
    handle: tokio::runtime::Handle,
    max: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Conn>,
    /// Connections open, idle or in use.
    open: usize,
    closed: bool,
}

impl Pool {
    fn new(config: tokio_postgres::Config, url: String, handle: tokio::runtime::Handle, max: usize) -> Pool {
        Pool { config, url, handle, max, state: Mutex::default(), freed: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // The state is a list and a count, consistent at every unlock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn unavailable(&self, reason: impl Into<String>) -> StoreError {
        StoreError::PostgresConnect { url: self.url.clone(), reason: reason.into() }
    }

    /// An idle connection, a new one while fewer than `max` are open, or the
    /// first one returned within [`POOL_WAIT`].
    fn get(&self) -> Result<Pooled<'_>, StoreError> {
        let deadline = Instant::now() + POOL_WAIT;
        let mut state = self.lock();
        loop {
            if state.closed {
                return Err(self.unavailable("the store is closed"));
            }
            while let Some(conn) = state.idle.pop() {
                if conn.client.is_closed() {
                    // The server went away while it sat idle.
                    state.open -= 1;
                    continue;
                }
                return Ok(Pooled { pool: self, conn: Some(conn) });
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match self.connect() {
                    Ok(client) => {
                        Ok(Pooled { pool: self, conn: Some(Conn { client, statements: RefCell::default() }) })
                    }
                    Err(e) => {
                        self.lock().open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.unavailable(format!(
                    "all {} connections stayed busy for {} s (raise [store] pool?)",
                    self.max,
                    POOL_WAIT.as_secs()
                )));
            }
            state = self.freed.wait_timeout(state, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// Opens a connection on the runtime thread, which then drives it.
    fn connect(&self) -> Result<Client, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let config = self.config.clone();
        let url = self.url.clone();
        self.handle.spawn(async move {
            match config.connect(NoTls).await {
                Ok((client, connection)) => {
                    let _ = tx.send(Ok(client));
                    if let Err(e) = connection.await {
                        tracing::warn!(url = %url, error = %e, "PostgreSQL connection ended");
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        });
        match rx.recv_timeout(CONNECT_TIMEOUT + Duration::from_secs(1)) {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(self.unavailable(error_text(&e))),
            Err(_) => Err(self.unavailable(format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()))),
        }
    }

    fn put(&self, conn: Conn) {
        let mut state = self.lock();
        if conn.client.is_closed() || state.closed {
            state.open -= 1;
        } else {
            state.idle.push(conn);
        }
        drop(state);
        self.freed.notify_one();
    }

    fn forget(&self) {
        self.lock().open -= 1;
        self.freed.notify_one();
    }

    /// Drops the idle connections and refuses new ones.
    fn close(&self) {
        let idle = {
            let mut state = self.lock();
            state.closed = true;
            state.open -= state.idle.len();
            std::mem::take(&mut state.idle)
        };
        drop(idle);
        self.freed.notify_all();
    }
}

/// A connection taken from the pool, returned to it when dropped (or
/// forgotten, when it is known to be broken).
struct Pooled<'p> {
    pool: &'p Pool,
    conn: Option<Conn>,
}

impl Pooled<'_> {
    fn is_closed(&self) -> bool {
        self.conn.as_ref().is_none_or(|c| c.client.is_closed())
    }

    /// Drops the connection instead of returning it.
    fn discard(&mut self) {
        if self.conn.take().is_some() {
            self.pool.forget();
        }
    }

    /// Runs `op` on the connection within [`OPERATION_DEADLINE`]; past it
    /// the connection is in an unknown state, so it is dropped.
    fn with_deadline<T>(&mut self, op: impl AsyncFnOnce(&mut Conn) -> T) -> Result<T, StoreError> {
        let Some(conn) = self.conn.as_mut() else { return Err(self.pool.unavailable("no connection")) };
        match block_on(op(conn), Instant::now() + OPERATION_DEADLINE) {
            Some(out) => Ok(out),
            None => {
                self.discard();
                Err(self.pool.unavailable(format!("no answer within {} s", OPERATION_DEADLINE.as_secs())))
            }
        }
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // A transaction left open by an error or a panic was rolled back
            // when it was dropped (tokio-postgres queues the ROLLBACK).
            self.pool.put(conn);
        }
    }
}

/// What a store operation runs on: a pooled connection (reads) or a
/// transaction on it (writes), and the connection's prepared statements.
struct Db<'a> {
    on: On<'a>,
    statements: &'a RefCell<HashMap<String, Statement>>,
}

enum On<'a> {
    Client(&'a Client),
    Tx(&'a Transaction<'a>),
}

type Params<'p> = [&'p (dyn ToSql + Sync)];

impl Db<'_> {
    async fn statement(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = match &self.on {
            On::Client(c) => c.prepare(sql).await?,
            On::Tx(t) => t.prepare(sql).await?,
        };
        self.statements.borrow_mut().insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    async fn query(&self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        match &self.on {
            On::Client(c) => c.query(&statement, params).await,
            On::Tx(t) => t.query(&statement, params).await,
        }
    }

    async fn query_opt(&self, sql: &str, params: &Params<'_>) -> Result<Option<Row>, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        match &self.on {
            On::Client(c) => c.query_opt(&statement, params).await,
            On::Tx(t) => t.query_opt(&statement, params).await,
        }
    }

    async fn query_one(&self, sql: &str, params: &Params<'_>) -> Result<Row, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        match &self.on {
            On::Client(c) => c.query_one(&statement, params).await,
            On::Tx(t) => t.query_one(&statement, params).await,
        }
    }

    async fn execute(&self, sql: &str, params: &Params<'_>) -> Result<u64, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        match &self.on {
            On::Client(c) => c.execute(&statement, params).await,
            On::Tx(t) => t.execute(&statement, params).await,
        }
    }
}

// ---- migrations -----------------------------------------------------------

async fn migrate(conn: &mut Conn) -> Result<(), StoreError> {
    let tx = conn.client.transaction().await?;
    // Held to the end of the transaction: a second appliance opening the
    // same database waits here, then finds the schema up to date.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (\
             version    BIGINT PRIMARY KEY, \
             name       TEXT   NOT NULL, \
             applied_at BIGINT NOT NULL)",
    )
    .await?;
    let found: i64 = tx.query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[]).await?.try_get(0)?;
    let known = MIGRATIONS.len() as i64;
    if found > known {
        return Err(StoreError::SchemaTooNew { found, known });
    }
    for (version, (name, sql)) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_version (version, name, applied_at) VALUES ($1, $2, $3)",
            &[&(version as i64 + 1), name, &Timestamp::now()],
        )
        .await?;
        tracing::info!(version = version + 1, name, "PostgreSQL schema migrated");
    }
    tx.commit().await?;
    Ok(())
}

// ---- the configuration version, across appliances -------------------------

/// The last configuration version seen (this store's writes, and the
/// notifications of everybody's), and whether the watcher is listening.
#[derive(Default)]
struct ConfigVersion {
    version: AtomicU64,
    live: AtomicBool,
}

impl ConfigVersion {
    fn seen(&self, version: i64) {
        // The row only grows; max keeps a late notification from going back.
        self.version.fetch_max(u64::try_from(version).unwrap_or(0), Ordering::AcqRel);
    }

    fn get(&self) -> Option<u64> {
        self.live.load(Ordering::Acquire).then(|| self.version.load(Ordering::Acquire))
    }
}

/// Keeps a connection that LISTENs for configuration changes, reconnecting
/// after a pause when it is lost; `live` is false while it is not listening.
async fn watch_config(
    config: tokio_postgres::Config,
    url: String,
    version: Arc<ConfigVersion>,
    first: std::sync::mpsc::Sender<()>,
) {
    let mut first = Some(first);
    let mut said = false;
    loop {
        let result = listen(&config, &version, &mut first).await;
        version.live.store(false, Ordering::Release);
        match result {
            // One line per outage, not one per retry.
            Err(e) if !said => {
                tracing::warn!(url = %url, error = %e, "configuration watcher disconnected; caches off until it reconnects");
                said = true;
            }
            Err(_) => {}
            Ok(()) => said = false,
        }
        tokio::time::sleep(WATCH_RETRY).await;
    }
}

async fn listen(
    config: &tokio_postgres::Config,
    version: &ConfigVersion,
    first: &mut Option<std::sync::mpsc::Sender<()>>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    // Drives the connection and hands its notifications over; ends with it.
    tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_string()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    // LISTEN before reading: a change between the two is then not missed.
    client.batch_execute(&format!("LISTEN {CONFIG_CHANNEL}")).await?;
    version.seen(client.query_one("SELECT version FROM config_version", &[]).await?.try_get(0)?);
    version.live.store(true, Ordering::Release);
    if let Some(first) = first.take() {
        let _ = first.send(());
    }
    while let Some(payload) = rx.recv().await {
        match payload.parse::<i64>() {
            Ok(v) => version.seen(v),
            // Not ours to read: go and look.
            Err(_) => version.seen(client.query_one("SELECT version FROM config_version", &[]).await?.try_get(0)?),
        }
    }
    Ok(())
}

// ---- column conversions ---------------------------------------------------

/// Types stored as TEXT in their display form and checked when read back.
macro_rules! text_column {
    ($ty:ty, $to:expr, $from:expr) => {
        impl ToSql for $ty {
            fn to_sql(
                &self,
                ty: &Type,
                out: &mut BytesMut,
            ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
                #[allow(clippy::redundant_closure_call)]
                let text = ($to)(self);
                ToSql::to_sql(&text, ty, out)
            }
            fn accepts(ty: &Type) -> bool {
                <&str as ToSql>::accepts(ty)
            }
            to_sql_checked!();
        }
        impl<'a> FromSql<'a> for $ty {
            fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
                let s = <&str as FromSql>::from_sql(ty, raw)?;
                #[allow(clippy::redundant_closure_call)]
                ($from)(s).ok_or_else(|| format!("{s:?} is not a valid {}", stringify!($ty)).into())
            }
            fn accepts(ty: &Type) -> bool {
                <&str as FromSql>::accepts(ty)
            }
        }
    };
}

text_column!(AccountSid, |v: &AccountSid| v.as_str().to_string(), |s| AccountSid::parse(s).ok());
text_column!(ApiKeySid, |v: &ApiKeySid| v.as_str().to_string(), |s| ApiKeySid::parse(s).ok());
text_column!(ApplicationSid, |v: &ApplicationSid| v.as_str().to_string(), |s| ApplicationSid::parse(s).ok());
text_column!(PhoneNumberSid, |v: &PhoneNumberSid| v.as_str().to_string(), |s| PhoneNumberSid::parse(s).ok());
text_column!(CallSid, |v: &CallSid| v.as_str().to_string(), |s| CallSid::parse(s).ok());
text_column!(E164, |v: &E164| v.as_str().to_string(), |s| E164::parse(s).ok());
text_column!(Cidr, |v: &Cidr| v.to_string(), |s| Cidr::parse(s).ok());
text_column!(AccountStatus, |v: &AccountStatus| v.as_str(), AccountStatus::parse);
text_column!(HttpMethod, |v: &HttpMethod| v.as_str(), HttpMethod::parse);
text_column!(Direction, |v: &Direction| v.as_str(), Direction::parse);
text_column!(CallStatus, |v: &CallStatus| v.as_str(), CallStatus::parse);

impl ToSql for Timestamp {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.unix_ms().to_sql(ty, out)
    }
    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty)
    }
    to_sql_checked!();
}

impl<'a> FromSql<'a> for Timestamp {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        i64::from_sql(ty, raw).map(Timestamp::from_unix_ms)
    }
    fn accepts(ty: &Type) -> bool {
        <i64 as FromSql>::accepts(ty)
    }
}

/// A u32 field (duration, error code) as BIGINT.
fn wide(v: Option<u32>) -> Option<i64> {
    v.map(i64::from)
}

/// A BIGINT column read back into a u32 field.
fn narrow(r: &Row, column: &str) -> Result<Option<u32>, StoreError> {
    let v: Option<i64> = r.try_get(column)?;
    v.map(|v| u32::try_from(v).map_err(|_| StoreError::Invalid(format!("{column} {v} is out of range")))).transpose()
}

// ---- errors ---------------------------------------------------------------

/// An error of tokio-postgres in one line with its cause: its `Display`
/// alone says only "db error" for what the server answered.
pub(crate) fn error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {} (SQLSTATE {})", db.severity(), db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A failed insert: a taken key becomes `Conflict(what)`, a missing account
/// `NotFound`, anything else stays a database error.
fn insert_error(e: tokio_postgres::Error, what: impl FnOnce() -> String, account: &AccountSid) -> StoreError {
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => StoreError::Conflict(what()),
        Some(c) if *c == SqlState::FOREIGN_KEY_VIOLATION => StoreError::not_found("account", account),
        _ => StoreError::Postgres(e),
    }
}

async fn ensure_account(db: &Db<'_>, sid: &AccountSid) -> Result<(), StoreError> {
    match db.query_opt("SELECT 1 FROM accounts WHERE sid = $1", &[sid]).await? {
        Some(_) => Ok(()),
        None => Err(StoreError::not_found("account", sid)),
    }
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

fn rows<T>(rows: Vec<Row>, from_row: fn(&Row) -> Result<T, StoreError>) -> Result<Vec<T>, StoreError> {
    rows.iter().map(from_row).collect()
}

// ---- accounts -------------------------------------------------------------

const ACCOUNT_COLUMNS: &str = "sid, friendly_name, auth_token, status, date_created, date_updated";

fn account_from_row(r: &Row) -> Result<Account, StoreError> {
    Ok(Account {
        sid: r.try_get("sid")?,
        friendly_name: r.try_get("friendly_name")?,
        auth_token: r.try_get("auth_token")?,
        status: r.try_get("status")?,
        date_created: r.try_get("date_created")?,
        date_updated: r.try_get("date_updated")?,
    })
}

async fn get_account(db: &Db<'_>, sid: &AccountSid) -> Result<Account, StoreError> {
    match db.query_opt(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE sid = $1"), &[sid]).await? {
        Some(r) => account_from_row(&r),
        None => Err(StoreError::not_found("account", sid)),
    }
}

async fn insert_account(db: &Db<'_>, a: &Account) -> Result<(), StoreError> {
    a.validate()?;
    db.execute(
        &format!("INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
        &[&a.sid, &a.friendly_name, &a.auth_token, &a.status, &a.date_created, &a.date_updated],
    )
    .await
    .map_err(|e| insert_error(e, || format!("account {} exists", a.sid), &a.sid))?;
    Ok(())
}

// ---- API keys -------------------------------------------------------------

const API_KEY_COLUMNS: &str = "sid, account_sid, friendly_name, secret, date_created";

fn api_key_from_row(r: &Row) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        sid: r.try_get("sid")?,
        account_sid: r.try_get("account_sid")?,
        friendly_name: r.try_get("friendly_name")?,
        secret: r.try_get("secret")?,
        date_created: r.try_get("date_created")?,
    })
}

async fn insert_api_key(db: &Db<'_>, k: &ApiKey) -> Result<(), StoreError> {
    k.validate()?;
    ensure_account(db, &k.account_sid).await?;
    db.execute(
        &format!("INSERT INTO api_keys ({API_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"),
        &[&k.sid, &k.account_sid, &k.friendly_name, &k.secret, &k.date_created],
    )
    .await
    .map_err(|e| insert_error(e, || format!("API key {} exists", k.sid), &k.account_sid))?;
    Ok(())
}

// ---- applications ---------------------------------------------------------

const APPLICATION_COLUMNS: &str = "sid, account_sid, friendly_name, voice_url, voice_method, \
     voice_fallback_url, voice_fallback_method, status_callback, status_callback_method, \
     date_created, date_updated";

fn application_from_row(r: &Row) -> Result<Application, StoreError> {
    Ok(Application {
        sid: r.try_get("sid")?,
        account_sid: r.try_get("account_sid")?,
        friendly_name: r.try_get("friendly_name")?,
        voice_url: r.try_get("voice_url")?,
        voice_method: r.try_get("voice_method")?,
        voice_fallback_url: r.try_get("voice_fallback_url")?,
        voice_fallback_method: r.try_get("voice_fallback_method")?,
        status_callback: r.try_get("status_callback")?,
        status_callback_method: r.try_get("status_callback_method")?,
        date_created: r.try_get("date_created")?,
        date_updated: r.try_get("date_updated")?,
    })
}

async fn get_application(db: &Db<'_>, account: &AccountSid, sid: &ApplicationSid) -> Result<Application, StoreError> {
    let sql = format!("SELECT {APPLICATION_COLUMNS} FROM applications WHERE sid = $1 AND account_sid = $2");
    match db.query_opt(&sql, &[sid, account]).await? {
        Some(r) => application_from_row(&r),
        None => Err(StoreError::not_found("application", sid)),
    }
}

async fn insert_application(db: &Db<'_>, a: &Application) -> Result<(), StoreError> {
    a.validate()?;
    ensure_account(db, &a.account_sid).await?;
    db.execute(
        &format!(
            "INSERT INTO applications ({APPLICATION_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ),
        &[
            &a.sid,
            &a.account_sid,
            &a.friendly_name,
            &a.voice_url,
            &a.voice_method,
            &a.voice_fallback_url,
            &a.voice_fallback_method,
            &a.status_callback,
            &a.status_callback_method,
            &a.date_created,
            &a.date_updated,
        ],
    )
    .await
    .map_err(|e| insert_error(e, || format!("application {} exists", a.sid), &a.account_sid))?;
    Ok(())
}

// ---- phone numbers --------------------------------------------------------

const NUMBER_COLUMNS: &str =
    "sid, account_sid, phone_number, application_sid, friendly_name, date_created, date_updated";

fn number_from_row(r: &Row) -> Result<PhoneNumber, StoreError> {
    Ok(PhoneNumber {
        sid: r.try_get("sid")?,
        account_sid: r.try_get("account_sid")?,
        phone_number: r.try_get("phone_number")?,
        application_sid: r.try_get("application_sid")?,
        friendly_name: r.try_get("friendly_name")?,
        date_created: r.try_get("date_created")?,
        date_updated: r.try_get("date_updated")?,
    })
}

async fn get_number(db: &Db<'_>, account: &AccountSid, sid: &PhoneNumberSid) -> Result<PhoneNumber, StoreError> {
    let sql = format!("SELECT {NUMBER_COLUMNS} FROM phone_numbers WHERE sid = $1 AND account_sid = $2");
    match db.query_opt(&sql, &[sid, account]).await? {
        Some(r) => number_from_row(&r),
        None => Err(StoreError::not_found("phone number", sid)),
    }
}

/// The number's application must exist in the number's own account.
async fn check_number_application(db: &Db<'_>, n: &PhoneNumber) -> Result<(), StoreError> {
    match &n.application_sid {
        Some(app) => get_application(db, &n.account_sid, app).await.map(drop),
        None => Ok(()),
    }
}

async fn insert_number(db: &Db<'_>, n: &PhoneNumber) -> Result<(), StoreError> {
    n.validate()?;
    ensure_account(db, &n.account_sid).await?;
    check_number_application(db, n).await?;
    if db.query_opt("SELECT sid FROM phone_numbers WHERE phone_number = $1", &[&n.phone_number]).await?.is_some() {
        return Err(StoreError::Conflict(format!("phone number {} is already in use", n.phone_number)));
    }
    db.execute(
        &format!("INSERT INTO phone_numbers ({NUMBER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
        &[
            &n.sid,
            &n.account_sid,
            &n.phone_number,
            &n.application_sid,
            &n.friendly_name,
            &n.date_created,
            &n.date_updated,
        ],
    )
    .await
    .map_err(|e| insert_error(e, || format!("phone number {} exists", n.sid), &n.account_sid))?;
    Ok(())
}

// ---- trunks ---------------------------------------------------------------

/// A trunk with its networks in the order they were written, in one query.
const TRUNK_SELECT: &str = "SELECT t.account_sid, t.name, t.outbound, t.username, t.password, \
     t.date_created, t.date_updated, \
     ARRAY(SELECT a.cidr FROM trunk_allow a \
           WHERE a.account_sid = t.account_sid AND a.trunk_name = t.name ORDER BY a.seq) AS allow \
     FROM trunks t";

fn trunk_from_row(r: &Row) -> Result<Trunk, StoreError> {
    Ok(Trunk {
        account_sid: r.try_get("account_sid")?,
        name: r.try_get("name")?,
        allow: r.try_get("allow")?,
        outbound: r.try_get("outbound")?,
        username: r.try_get("username")?,
        password: r.try_get("password")?,
        date_created: r.try_get("date_created")?,
        date_updated: r.try_get("date_updated")?,
    })
}

async fn get_trunk(db: &Db<'_>, account: &AccountSid, name: &str) -> Result<Trunk, StoreError> {
    let sql = format!("{TRUNK_SELECT} WHERE t.account_sid = $1 AND t.name = $2");
    match db.query_opt(&sql, &[account, &name]).await? {
        Some(r) => trunk_from_row(&r),
        None => Err(StoreError::not_found("trunk", name)),
    }
}

async fn trunk_exists(db: &Db<'_>, account: &AccountSid, name: &str) -> Result<bool, StoreError> {
    Ok(db.query_opt("SELECT 1 FROM trunks WHERE account_sid = $1 AND name = $2", &[account, &name]).await?.is_some())
}

async fn insert_allow(db: &Db<'_>, t: &Trunk) -> Result<(), StoreError> {
    for cidr in &t.allow {
        let (lo, hi) = cidr.v6_range();
        db.execute(
            "INSERT INTO trunk_allow (account_sid, trunk_name, cidr, lo, hi, v6_prefix_len) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&t.account_sid, &t.name, cidr, &&lo[..], &&hi[..], &i32::from(cidr.v6_prefix_len())],
        )
        .await?;
    }
    Ok(())
}

async fn insert_trunk(db: &Db<'_>, t: &Trunk) -> Result<(), StoreError> {
    t.validate()?;
    ensure_account(db, &t.account_sid).await?;
    if trunk_exists(db, &t.account_sid, &t.name).await? {
        return Err(StoreError::Conflict(format!("trunk {} exists", t.name)));
    }
    db.execute(
        "INSERT INTO trunks (account_sid, name, outbound, username, password, date_created, date_updated) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[&t.account_sid, &t.name, &t.outbound, &t.username, &t.password, &t.date_created, &t.date_updated],
    )
    .await
    .map_err(|e| insert_error(e, || format!("trunk {} exists", t.name), &t.account_sid))?;
    insert_allow(db, t).await
}

// ---- call records ---------------------------------------------------------

const CALL_COLUMNS: &str = "sid, account_sid, parent_call_sid, from_party, to_party, direction, \
     status, start_time, end_time, duration_s, answered_by, error_code, error_message, \
     application_sid, trunk, date_created, date_updated";

fn call_from_row(r: &Row) -> Result<CallRecord, StoreError> {
    Ok(CallRecord {
        sid: r.try_get("sid")?,
        account_sid: r.try_get("account_sid")?,
        parent_call_sid: r.try_get("parent_call_sid")?,
        from: r.try_get("from_party")?,
        to: r.try_get("to_party")?,
        direction: r.try_get("direction")?,
        status: r.try_get("status")?,
        start_time: r.try_get("start_time")?,
        end_time: r.try_get("end_time")?,
        duration_s: narrow(r, "duration_s")?,
        answered_by: r.try_get("answered_by")?,
        error_code: narrow(r, "error_code")?,
        error_message: r.try_get("error_message")?,
        application_sid: r.try_get("application_sid")?,
        trunk: r.try_get("trunk")?,
        date_created: r.try_get("date_created")?,
        date_updated: r.try_get("date_updated")?,
    })
}

async fn insert_call_row(db: &Db<'_>, call: &CallRecord) -> Result<(), StoreError> {
    db.execute(
        &format!(
            "INSERT INTO calls ({CALL_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        ),
        &[
            &call.sid,
            &call.account_sid,
            &call.parent_call_sid,
            &call.from,
            &call.to,
            &call.direction,
            &call.status,
            &call.start_time,
            &call.end_time,
            &wide(call.duration_s),
            &call.answered_by,
            &wide(call.error_code),
            &call.error_message,
            &call.application_sid,
            &call.trunk,
            &call.date_created,
            &call.date_updated,
        ],
    )
    .await
    .map_err(|e| insert_error(e, || format!("call {} exists", call.sid), &call.account_sid))?;
    Ok(())
}

/// The update of a call record: only the fields given change.
const UPDATE_CALL: &str = "UPDATE calls SET \
   status = coalesce($2, status), \
   start_time = coalesce($3, start_time), \
   end_time = coalesce($4, end_time), \
   duration_s = coalesce($5, duration_s), \
   answered_by = coalesce($6, answered_by), \
   error_code = coalesce($7, error_code), \
   error_message = coalesce($8, error_message), \
   date_updated = greatest($9, date_updated) \
 WHERE sid = $1";

async fn update_call_row(
    db: &Db<'_>,
    sid: &CallSid,
    u: &CallUpdate,
    returning: bool,
) -> Result<Option<Row>, StoreError> {
    let now = Timestamp::now();
    let params: [&(dyn ToSql + Sync); 9] = [
        sid,
        &u.status,
        &u.start_time,
        &u.end_time,
        &wide(u.duration_s),
        &u.answered_by,
        &wide(u.error_code),
        &u.error_message,
        &now,
    ];
    if returning {
        Ok(db.query_opt(&format!("{UPDATE_CALL} RETURNING {CALL_COLUMNS}"), &params).await?)
    } else {
        db.execute(UPDATE_CALL, &params).await?;
        Ok(None)
    }
}

impl Store for PostgresStore {
    fn create_account(&self, account: &Account) -> Result<(), StoreError> {
        self.write(async |db| insert_account(db, account).await)
    }

    fn account(&self, sid: &AccountSid) -> Result<Account, StoreError> {
        self.read(async |db| get_account(db, sid).await)
    }

    fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.read(async |db| {
            let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY date_created, seq");
            rows(db.query(&sql, &[]).await?, account_from_row)
        })
    }

    fn update_account(&self, sid: &AccountSid, edit: Edit<'_, Account>) -> Result<Account, StoreError> {
        self.write(async |db| {
            let current = get_account(db, sid).await?;
            let next = edited(&current, edit, |old, new| {
                new.sid = old.sid.clone();
                new.date_created = old.date_created;
                new.date_updated = now_after(old.date_updated);
            });
            next.validate()?;
            db.execute(
                "UPDATE accounts SET friendly_name = $2, auth_token = $3, status = $4, date_updated = $5 \
                 WHERE sid = $1",
                &[&next.sid, &next.friendly_name, &next.auth_token, &next.status, &next.date_updated],
            )
            .await?;
            Ok(next)
        })
    }

    fn import_account(&self, bundle: &AccountBundle) -> Result<bool, StoreError> {
        self.write(async |db| {
            let sid = &bundle.account.sid;
            // Under the configuration lock: two appliances seeding the same
            // account at once write it once, and the second keeps it.
            match ensure_account(db, sid).await {
                Ok(()) => return Ok(false),
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            insert_account(db, &bundle.account).await?;
            let foreign = |what: &str, owner: &AccountSid| {
                StoreError::Invalid(format!("{what} of account {owner} imported with account {sid}"))
            };
            for k in &bundle.api_keys {
                if &k.account_sid != sid {
                    return Err(foreign("API key", &k.account_sid));
                }
                insert_api_key(db, k).await?;
            }
            for a in &bundle.applications {
                if &a.account_sid != sid {
                    return Err(foreign("application", &a.account_sid));
                }
                insert_application(db, a).await?;
            }
            for n in &bundle.numbers {
                if &n.account_sid != sid {
                    return Err(foreign("phone number", &n.account_sid));
                }
                insert_number(db, n).await?;
            }
            for t in &bundle.trunks {
                if &t.account_sid != sid {
                    return Err(foreign("trunk", &t.account_sid));
                }
                insert_trunk(db, t).await?;
            }
            Ok(true)
        })
    }

    fn create_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.write(async |db| insert_api_key(db, key).await)
    }

    fn api_key(&self, sid: &ApiKeySid) -> Result<ApiKey, StoreError> {
        self.read(async |db| {
            match db.query_opt(&format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE sid = $1"), &[sid]).await? {
                Some(r) => api_key_from_row(&r),
                None => Err(StoreError::not_found("API key", sid)),
            }
        })
    }

    fn api_keys(&self, account: &AccountSid) -> Result<Vec<ApiKey>, StoreError> {
        self.read(async |db| {
            let sql =
                format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE account_sid = $1 ORDER BY date_created, seq");
            rows(db.query(&sql, &[account]).await?, api_key_from_row)
        })
    }

    fn delete_api_key(&self, account: &AccountSid, sid: &ApiKeySid) -> Result<(), StoreError> {
        self.write(async |db| {
            let n = db.execute("DELETE FROM api_keys WHERE sid = $1 AND account_sid = $2", &[sid, account]).await?;
            if n == 0 {
                return Err(StoreError::not_found("API key", sid));
            }
            Ok(())
        })
    }

    fn rename_api_key(&self, account: &AccountSid, sid: &ApiKeySid, friendly_name: &str) -> Result<ApiKey, StoreError> {
        self.write(async |db| {
            let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE sid = $1 AND account_sid = $2");
            let mut key = match db.query_opt(&sql, &[sid, account]).await? {
                Some(r) => api_key_from_row(&r)?,
                None => return Err(StoreError::not_found("API key", sid)),
            };
            key.friendly_name = friendly_name.to_string();
            key.validate()?;
            db.execute("UPDATE api_keys SET friendly_name = $2 WHERE sid = $1", &[sid, &friendly_name]).await?;
            Ok(key)
        })
    }

    fn create_application(&self, app: &Application) -> Result<(), StoreError> {
        self.write(async |db| insert_application(db, app).await)
    }

    fn application(&self, account: &AccountSid, sid: &ApplicationSid) -> Result<Application, StoreError> {
        self.read(async |db| get_application(db, account, sid).await)
    }

    fn applications(&self, account: &AccountSid, page: PageRequest) -> Result<Page<Application>, StoreError> {
        let (limit, offset) = limit_offset(page)?;
        self.read(async |db| {
            let sql = format!(
                "SELECT {APPLICATION_COLUMNS} FROM applications WHERE account_sid = $1 \
                 ORDER BY date_created, seq LIMIT $2 OFFSET $3"
            );
            Ok(page_of(rows(db.query(&sql, &[account, &limit, &offset]).await?, application_from_row)?, page))
        })
    }

    fn update_application(
        &self,
        account: &AccountSid,
        sid: &ApplicationSid,
        edit: Edit<'_, Application>,
    ) -> Result<Application, StoreError> {
        self.write(async |db| {
            let current = get_application(db, account, sid).await?;
            let next = edited(&current, edit, |old, new| {
                new.sid = old.sid.clone();
                new.account_sid = old.account_sid.clone();
                new.date_created = old.date_created;
                new.date_updated = now_after(old.date_updated);
            });
            next.validate()?;
            db.execute(
                "UPDATE applications SET friendly_name = $2, voice_url = $3, voice_method = $4, \
                 voice_fallback_url = $5, voice_fallback_method = $6, status_callback = $7, \
                 status_callback_method = $8, date_updated = $9 WHERE sid = $1",
                &[
                    &next.sid,
                    &next.friendly_name,
                    &next.voice_url,
                    &next.voice_method,
                    &next.voice_fallback_url,
                    &next.voice_fallback_method,
                    &next.status_callback,
                    &next.status_callback_method,
                    &next.date_updated,
                ],
            )
            .await?;
            Ok(next)
        })
    }

    fn delete_application(&self, account: &AccountSid, sid: &ApplicationSid) -> Result<(), StoreError> {
        self.write(async |db| {
            get_application(db, account, sid).await?;
            let users: Vec<String> = db
                .query(
                    "SELECT phone_number FROM phone_numbers WHERE application_sid = $1 \
                     ORDER BY phone_number LIMIT 5",
                    &[sid],
                )
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            if !users.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "application {sid} answers {}; point them elsewhere first",
                    users.join(", ")
                )));
            }
            db.execute("DELETE FROM applications WHERE sid = $1", &[sid]).await?;
            Ok(())
        })
    }

    fn create_number(&self, number: &PhoneNumber) -> Result<(), StoreError> {
        self.write(async |db| insert_number(db, number).await)
    }

    fn number(&self, account: &AccountSid, sid: &PhoneNumberSid) -> Result<PhoneNumber, StoreError> {
        self.read(async |db| get_number(db, account, sid).await)
    }

    fn numbers(&self, account: &AccountSid, page: PageRequest) -> Result<Page<PhoneNumber>, StoreError> {
        let (limit, offset) = limit_offset(page)?;
        self.read(async |db| {
            let sql = format!(
                "SELECT {NUMBER_COLUMNS} FROM phone_numbers WHERE account_sid = $1 \
                 ORDER BY date_created, seq LIMIT $2 OFFSET $3"
            );
            Ok(page_of(rows(db.query(&sql, &[account, &limit, &offset]).await?, number_from_row)?, page))
        })
    }

    fn update_number(
        &self,
        account: &AccountSid,
        sid: &PhoneNumberSid,
        edit: Edit<'_, PhoneNumber>,
    ) -> Result<PhoneNumber, StoreError> {
        self.write(async |db| {
            let current = get_number(db, account, sid).await?;
            let next = edited(&current, edit, |old, new| {
                new.sid = old.sid.clone();
                new.account_sid = old.account_sid.clone();
                // A number is bought and released, not renumbered.
                new.phone_number = old.phone_number.clone();
                new.date_created = old.date_created;
                new.date_updated = now_after(old.date_updated);
            });
            next.validate()?;
            check_number_application(db, &next).await?;
            db.execute(
                "UPDATE phone_numbers SET application_sid = $2, friendly_name = $3, date_updated = $4 \
                 WHERE sid = $1",
                &[&next.sid, &next.application_sid, &next.friendly_name, &next.date_updated],
            )
            .await?;
            Ok(next)
        })
    }

    fn delete_number(&self, account: &AccountSid, sid: &PhoneNumberSid) -> Result<(), StoreError> {
        self.write(async |db| {
            let n =
                db.execute("DELETE FROM phone_numbers WHERE sid = $1 AND account_sid = $2", &[sid, account]).await?;
            if n == 0 {
                return Err(StoreError::not_found("phone number", sid));
            }
            Ok(())
        })
    }

    fn route_number(&self, number: &E164) -> Result<Option<(PhoneNumber, Option<Application>)>, StoreError> {
        self.read(async |db| {
            let sql = format!("SELECT {NUMBER_COLUMNS} FROM phone_numbers WHERE phone_number = $1");
            let Some(row) = db.query_opt(&sql, &[number]).await? else { return Ok(None) };
            let n = number_from_row(&row)?;
            let app = match &n.application_sid {
                Some(app) => Some(get_application(db, &n.account_sid, app).await?),
                None => None,
            };
            Ok(Some((n, app)))
        })
    }

    fn create_trunk(&self, trunk: &Trunk) -> Result<(), StoreError> {
        self.write(async |db| insert_trunk(db, trunk).await)
    }

    fn trunk(&self, account: &AccountSid, name: &str) -> Result<Trunk, StoreError> {
        self.read(async |db| get_trunk(db, account, name).await)
    }

    fn trunks(&self, account: &AccountSid) -> Result<Vec<Trunk>, StoreError> {
        self.read(async |db| {
            let sql = format!("{TRUNK_SELECT} WHERE t.account_sid = $1 ORDER BY t.name");
            rows(db.query(&sql, &[account]).await?, trunk_from_row)
        })
    }

    fn update_trunk(&self, account: &AccountSid, name: &str, edit: Edit<'_, Trunk>) -> Result<Trunk, StoreError> {
        self.write(async |db| {
            let current = get_trunk(db, account, name).await?;
            let next = edited(&current, edit, |old, new| {
                new.account_sid = old.account_sid.clone();
                new.date_created = old.date_created;
                new.date_updated = now_after(old.date_updated);
            });
            next.validate()?;
            if next.name != current.name && trunk_exists(db, account, &next.name).await? {
                return Err(StoreError::Conflict(format!("trunk {} exists", next.name)));
            }
            db.execute("DELETE FROM trunk_allow WHERE account_sid = $1 AND trunk_name = $2", &[account, &name]).await?;
            db.execute(
                "UPDATE trunks SET name = $3, outbound = $4, username = $5, password = $6, date_updated = $7 \
                 WHERE account_sid = $1 AND name = $2",
                &[account, &name, &next.name, &next.outbound, &next.username, &next.password, &next.date_updated],
            )
            .await?;
            insert_allow(db, &next).await?;
            Ok(next)
        })
    }

    fn delete_trunk(&self, account: &AccountSid, name: &str) -> Result<(), StoreError> {
        self.write(async |db| {
            // trunk_allow rows go with it (ON DELETE CASCADE).
            let n = db.execute("DELETE FROM trunks WHERE account_sid = $1 AND name = $2", &[account, &name]).await?;
            if n == 0 {
                return Err(StoreError::not_found("trunk", name));
            }
            Ok(())
        })
    }

    fn trunk_for_source(&self, source: IpAddr) -> Result<Option<Trunk>, StoreError> {
        let ip = to_v6(source);
        self.read(async |db| {
            let sql = format!(
                "{TRUNK_SELECT} JOIN trunk_allow m ON m.account_sid = t.account_sid AND m.trunk_name = t.name \
                 WHERE m.lo <= $1 AND m.hi >= $1 \
                 ORDER BY m.v6_prefix_len DESC, t.date_created, t.seq LIMIT 1"
            );
            match db.query_opt(&sql, &[&&ip[..]]).await? {
                Some(r) => Ok(Some(trunk_from_row(&r)?)),
                None => Ok(None),
            }
        })
    }

    fn insert_call(&self, call: &CallRecord) -> Result<(), StoreError> {
        self.write_records(async |db| insert_call_row(db, call).await)
    }

    fn config_version(&self) -> Option<u64> {
        self.version.get()
    }

    fn write_calls(&self, writes: &[CallWrite]) -> Result<(), StoreError> {
        self.write_records(async |db| {
            for w in writes {
                match w {
                    CallWrite::Insert(call) => insert_call_row(db, call).await?,
                    // An update of a call that is not there matches no row:
                    // skipped, as the trait says.
                    CallWrite::Update(sid, update) => drop(update_call_row(db, sid, update, false).await?),
                }
            }
            Ok(())
        })
    }

    fn update_call(&self, sid: &CallSid, update: &CallUpdate) -> Result<CallRecord, StoreError> {
        self.write_records(async |db| match update_call_row(db, sid, update, true).await? {
            Some(r) => call_from_row(&r),
            None => Err(StoreError::not_found("call", sid)),
        })
    }

    fn call(&self, account: &AccountSid, sid: &CallSid) -> Result<CallRecord, StoreError> {
        self.read(async |db| {
            let sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE sid = $1 AND account_sid = $2");
            match db.query_opt(&sql, &[sid, account]).await? {
                Some(r) => call_from_row(&r),
                None => Err(StoreError::not_found("call", sid)),
            }
        })
    }

    fn calls(
        &self,
        account: &AccountSid,
        filter: &CallFilter,
        page: PageRequest,
    ) -> Result<Page<CallRecord>, StoreError> {
        let (limit, offset) = limit_offset(page)?;
        let mut sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE account_sid = $1");
        let mut clauses: Vec<(&str, &(dyn ToSql + Sync))> = Vec::new();
        if let Some(to) = &filter.to {
            clauses.push(("to_party =", to));
        }
        if let Some(from) = &filter.from {
            clauses.push(("from_party =", from));
        }
        if let Some(status) = &filter.status {
            clauses.push(("status =", status));
        }
        if let Some(parent) = &filter.parent_call_sid {
            clauses.push(("parent_call_sid =", parent));
        }
        if let Some(t) = &filter.started_at_or_after {
            clauses.push(("start_time >=", t));
        }
        if let Some(t) = &filter.started_before {
            clauses.push(("start_time <", t));
        }
        let mut args: Vec<&(dyn ToSql + Sync)> = vec![account];
        for (clause, value) in clauses {
            args.push(value);
            sql.push_str(&format!(" AND {clause} ${}", args.len()));
        }
        args.push(&limit);
        args.push(&offset);
        sql.push_str(&format!(
            " ORDER BY date_created DESC, seq DESC LIMIT ${} OFFSET ${}",
            args.len() - 1,
            args.len()
        ));
        self.read(async |db| {
            // At most 2^6 shapes of this query: each connection prepares them once.
            Ok(page_of(rows(db.query(&sql, &args).await?, call_from_row)?, page))
        })
    }
}
