//! The PostgreSQL store against a real server (a throwaway one, see
//! `store/test_postgres.rs`, one database per test): the behaviour every
//! store shares (`store/suite.rs`), then what is PostgreSQL's own:
//! migrations under concurrency, lost connections, two appliances on one
//! database.

use super::*;
use crate::store::suite::{ac, store_suite};
use crate::store::test_postgres::TestPostgres;
use std::sync::Barrier;

fn server() -> &'static TestPostgres {
    // Fails (never skips) without the server binaries: the message says to
    // run the test command, which installs them.
    TestPostgres::shared().unwrap_or_else(|e| panic!("{e}"))
}

fn url(db: &str) -> PostgresUrl {
    PostgresUrl::parse(&server().url(db)).unwrap()
}

fn open_db(db: &str) -> PostgresStore {
    PostgresStore::open(&url(db), 3).unwrap()
}

/// A store on a new database (the name is the guard: databases go with the
/// server when the test process ends).
fn fresh() -> (String, PostgresStore) {
    let db = server().create_database().unwrap_or_else(|e| panic!("{e}"));
    let store = open_db(&db);
    (db, store)
}

store_suite!(fresh());

/// Waits (bounded) for `done`; the watcher and reconnects take a moment.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what} within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- opening and migrations -------------------------------------------------

#[test]
fn concurrent_opens_migrate_once_and_reopening_migrates_nothing() {
    let db = server().create_database().unwrap();
    let barrier = Barrier::new(4);
    let opened: Vec<Result<i64, StoreError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    PostgresStore::open(&url(&db), 2).and_then(|store| store.schema_version())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for result in opened {
        assert_eq!(result.unwrap(), MIGRATIONS.len() as i64);
    }
    // One row per migration: each was applied once.
    let rows = server().psql(&db, "SELECT string_agg(version || ':' || name, ',') FROM schema_version").unwrap();
    assert_eq!(rows, "1:0001_initial");

    let store = open_db(&db);
    store.create_account(&Account::new(ac(1), "t".into())).unwrap();
    drop(store);
    let store = open_db(&db);
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
    assert_eq!(store.account(&ac(1)).unwrap().auth_token, "t");
    assert_eq!(server().psql(&db, "SELECT count(*) FROM schema_version").unwrap(), "1");
}

#[test]
fn refuses_a_database_from_a_newer_build() {
    let (db, store) = fresh();
    drop(store);
    server().psql(&db, "INSERT INTO schema_version VALUES (99, '0099_future', 0)").unwrap();
    match PostgresStore::open(&url(&db), 1) {
        Err(StoreError::SchemaTooNew { found: 99, known }) => assert_eq!(known, MIGRATIONS.len() as i64),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_server_it_cannot_reach_is_reported_without_the_password() {
    let port = {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap().port()
    };
    let url = PostgresUrl::parse(&format!("postgres://bh:hunter2@127.0.0.1:{port}/bh")).unwrap();
    let err = PostgresStore::open(&url, 1).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::PostgresConnect { .. }), "{err:?}");
    assert!(text.contains(&format!("postgres://bh@127.0.0.1:{port}/bh")), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    // A wrong password is refused by the server, and said.
    let wrong =
        PostgresUrl::parse(&format!("postgres://bridgehead:nope@127.0.0.1:{}/postgres", server().port())).unwrap();
    let err = PostgresStore::open(&wrong, 1).unwrap_err().to_string();
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("nope"), "{err}");
}

#[test]
fn urls() {
    let shown = |s: &str| PostgresUrl::parse(s).map(|u| u.to_string());
    assert_eq!(shown("postgres://u:p%40ss@db.example:5433/bh").unwrap(), "postgres://u@db.example:5433/bh");
    assert_eq!(shown("postgresql://u@db/bh?connect_timeout=3").unwrap(), "postgresql://u@db/bh?connect_timeout=3");
    assert_eq!(
        shown("postgres://db/bh?user=u&password=secret&application_name=x").unwrap(),
        "postgres://db/bh?user=u&application_name=x"
    );
    assert!(!format!("{:?}", PostgresUrl::parse("postgres://u:secret@db/bh").unwrap()).contains("secret"));
    for bad in ["sqlite://x.db", "postgres:///bh", "postgres://u:p@db/bh?sslmode=require", "postgres://db:notaport/bh"]
    {
        let err = PostgresUrl::parse(bad).unwrap_err();
        assert!(!err.contains(":p@"), "{err}");
    }
}

// ---- connections --------------------------------------------------------------

/// Ends every connection to `db` but the one asking, as an operator (or a
/// server restart) would.
fn terminate_connections(db: &str) -> usize {
    let killed = server()
        .psql(
            "postgres",
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = '{db}' AND pid <> pg_backend_pid()"
            ),
        )
        .unwrap();
    killed.parse().unwrap()
}

#[test]
fn a_killed_connection_is_replaced() {
    let (db, store) = fresh();
    store.create_account(&Account::new(ac(1), "t".into())).unwrap();
    // The pooled connection and the watcher's.
    assert!(terminate_connections(&db) >= 2);
    // The next operation notices, reconnects and runs; should it fail, it says
    // why, and the one after works.
    match store.account(&ac(1)) {
        Ok(a) => assert_eq!(a.auth_token, "t"),
        Err(e) => assert!(matches!(e, StoreError::Postgres(_) | StoreError::PostgresConnect { .. }), "{e:?}"),
    }
    assert_eq!(store.account(&ac(1)).unwrap().auth_token, "t");

    terminate_connections(&db);
    // A write whose connection died before it began is run on a new one.
    match store.create_account(&Account::new(ac(2), "t2".into())) {
        Ok(()) => {}
        Err(e) => assert!(matches!(e, StoreError::Postgres(_) | StoreError::PostgresConnect { .. }), "{e:?}"),
    }
    store.update_account(&ac(1), &|a| a.friendly_name = "after".into()).unwrap();
    assert_eq!(store.account(&ac(1)).unwrap().friendly_name, "after");
    // The watcher reconnects too, and the caches come back.
    eventually("the watcher reconnects", || store.config_version().is_some());
}

#[test]
fn the_store_can_be_called_on_a_runtime_thread() {
    let (_db, store) = fresh();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // The sync `postgres` crate would panic here ("cannot start a runtime
    // from within a runtime"); this store only parks the thread.
    runtime.block_on(async {
        store.create_account(&Account::new(ac(1), "t".into())).unwrap();
        assert_eq!(store.account(&ac(1)).unwrap().auth_token, "t");
    });
}

#[test]
fn pool_connections_are_reused_and_bounded() {
    let (db, store) = fresh();
    let store = Arc::new(store);
    store.create_account(&Account::new(ac(1), "t".into())).unwrap();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..20 {
                    store.account(&ac(1)).unwrap();
                }
            });
        }
    });
    // At most the pool (3) plus the watcher, whatever the callers.
    let open: usize = server()
        .psql("postgres", &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'"))
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=4).contains(&open), "{open} connections");
}

// ---- a fleet: two appliances, one database ---------------------------------------

#[test]
fn two_appliances_see_each_others_writes_and_config_versions() {
    let (db, a) = fresh();
    let b = open_db(&db);
    a.create_account(&Account::new(ac(1), "t".into())).unwrap();
    let key = ApiKey::generate(ac(1), "fleet".into());
    a.create_api_key(&key).unwrap();
    assert_eq!(b.api_key(&key.sid).unwrap(), key);

    let (va, vb) = (a.config_version().unwrap(), b.config_version().unwrap());
    // B deletes the key: A sees its configuration change (so its key cache
    // forgets the key) within moments, and B at once.
    b.delete_api_key(&ac(1), &key.sid).unwrap();
    assert!(b.config_version().unwrap() > vb);
    eventually("A notices B's change", || a.config_version().is_some_and(|v| v > va));
    assert!(matches!(a.api_key(&key.sid), Err(StoreError::NotFound { .. })));

    // Call records do not touch the configuration version.
    let settled = a.config_version();
    a.insert_call(&CallRecord::new(ac(1), "a".into(), "b".into(), Direction::Inbound, CallStatus::Ringing)).unwrap();
    assert_eq!(a.config_version(), settled);

    // An operator's own SQL counts too (the trigger sees it).
    let before = b.config_version().unwrap();
    server().psql(&db, "UPDATE accounts SET friendly_name = 'by hand'").unwrap();
    eventually("B notices a change made with psql", || b.config_version().is_some_and(|v| v > before));
    assert_eq!(b.account(&ac(1)).unwrap().friendly_name, "by hand");
}

#[test]
fn concurrent_edits_from_two_appliances_lose_nothing() {
    let (db, a) = fresh();
    let b = open_db(&db);
    a.create_account(&Account::new(ac(1), "t".into())).unwrap();
    let app = Application::new(ac(1), "app".into());
    a.create_application(&app).unwrap();
    // A appends to the name, B to the voice URL path, each reading the
    // other's last write: without the configuration lock, edits would
    // overwrite each other's field with a stale copy.
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..15 {
                a.update_application(&ac(1), &app.sid, &|x| x.friendly_name.push_str(&i.to_string())).unwrap();
            }
        });
        s.spawn(|| {
            for _ in 0..15 {
                b.update_application(&ac(1), &app.sid, &|x| {
                    let url = x.voice_url.take().unwrap_or_else(|| "http://127.0.0.1/v".into());
                    x.voice_url = Some(format!("{url}x"));
                })
                .unwrap();
            }
        });
    });
    let stored = a.application(&ac(1), &app.sid).unwrap();
    assert_eq!(stored.friendly_name, format!("app{}", (0..15).map(|i: i32| i.to_string()).collect::<String>()));
    assert_eq!(stored.voice_url.unwrap(), format!("http://127.0.0.1/v{}", "x".repeat(15)));
}

#[test]
fn two_appliances_seeding_at_once_write_an_account_once() {
    let db = server().create_database().unwrap();
    let config = crate::config::Config::parse_str(
        "[[accounts]]\nsid = \"AC00000000000000000000000000000001\"\nauth_token = \"t\"\n\
         [[accounts.api_keys]]\nsid = \"SK00000000000000000000000000000001\"\nsecret = \"s\"\n",
    )
    .unwrap();
    let barrier = Barrier::new(2);
    let reports: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let store = open_db(&db);
                    barrier.wait();
                    crate::store::seed(&store, &config.accounts).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let created: usize = reports.iter().map(|r| r.created.len()).sum();
    let kept: usize = reports.iter().map(|r| r.kept.len()).sum();
    assert_eq!((created, kept), (1, 1));
}
