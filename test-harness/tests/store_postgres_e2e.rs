//! Two `bridgehead` processes on one PostgreSQL database, as two appliances
//! of a fleet: the first seeds the account from its configuration, the
//! second (whose file lists no accounts) finds it there, and `bridgehead
//! token` mints a token with the key from the shared store for either.
//!
//! The server is a throwaway one (`controlplane::store::test_postgres`),
//! reached through its Unix socket so that the appliances can each run in a
//! network namespace of their own (no port of theirs collides with another
//! test's). Needs root (the namespaces) and Debian's `postgresql` package
//! (scripts/test.sh installs it); missing either fails the test, it is never
//! skipped.

use controlplane::store::test_postgres::TestPostgres;
use std::ffi::OsStr;
use std::time::Duration;
use test_harness::appliance::{run_bridgehead, Appliance, ApplianceConfig};
use test_harness::netns::Netns;

const ACCOUNT: &str = "AC0000000000000000000000000000f001";
const KEY: &str = "SK0000000000000000000000000000f001";
const SECRET: &str = "fleet-e2e-key-secret";

fn config(id: &str, store_url: &str, accounts: bool) -> ApplianceConfig {
    let mut c = ApplianceConfig::sockets("127.0.0.1".parse().unwrap());
    c.id = id.into();
    c.extra = format!("[store]\nurl = {store_url:?}\npool = 2\n");
    if accounts {
        c.extra.push_str(&format!(
            "\n[[accounts]]\nsid = \"{ACCOUNT}\"\nauth_token = \"fleet-token\"\n\
             [[accounts.api_keys]]\nsid = \"{KEY}\"\nsecret = \"{SECRET}\"\n"
        ));
    }
    c
}

/// The appliance's log without its colours.
fn log(app: &Appliance) -> String {
    let raw = app.stderr();
    let mut plain = String::with_capacity(raw.len());
    let mut rest = raw.as_str();
    while let Some(at) = rest.find('\x1b') {
        plain.push_str(&rest[..at]);
        rest = rest[at..].split_once('m').map_or("", |(_, after)| after);
    }
    plain.push_str(rest);
    plain
}

/// `bridgehead token` with the appliance's own configuration file.
fn mint(app: &Appliance) {
    let config = app.scratch_dir().join("bridgehead.toml");
    let args: Vec<&OsStr> = vec![
        OsStr::new("token"),
        OsStr::new("--config"),
        config.as_os_str(),
        OsStr::new("--account"),
        OsStr::new(ACCOUNT),
        OsStr::new("--key"),
        OsStr::new(KEY),
        OsStr::new("--identity"),
        OsStr::new("alice"),
        OsStr::new("--incoming"),
    ];
    let run = run_bridgehead(&args, Duration::from_secs(30)).expect("bridgehead token");
    assert!(run.status.success(), "bridgehead token failed ({}): {}", run.status, run.stderr);
    let token = run.stdout.trim().to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
}

#[test]
fn two_appliances_share_one_postgresql_store() {
    // Declared first, dropped last: the appliances stop before their server.
    let server = TestPostgres::start().unwrap_or_else(|e| panic!("{e}"));
    let db = server.create_database().unwrap_or_else(|e| panic!("{e}"));
    let url = server.socket_url(&db);

    let ns_a = Netns::new("pga").expect("namespace (the end-to-end tests need root)");
    let a = Appliance::start(config("bh-fleet-a", &url, true), Some(&ns_a)).expect("appliance a");
    assert!(log(&a).contains("seeded=1 kept=0"), "a seeds the account:\n{}", log(&a));
    mint(&a);

    let ns_b = Netns::new("pgb").expect("namespace");
    let b = Appliance::start(config("bh-fleet-b", &url, false), Some(&ns_b)).expect("appliance b");
    assert!(log(&b).contains("seeded=0 kept=0"), "b writes nothing:\n{}", log(&b));
    // B's file names no account: the key comes from the shared database.
    mint(&b);

    // The account was written once, with its key, and the schema once.
    let count = |sql: &str| server.psql(&db, sql).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(count(&format!("SELECT count(*) FROM accounts WHERE sid = '{ACCOUNT}'")), "1");
    assert_eq!(count(&format!("SELECT secret FROM api_keys WHERE sid = '{KEY}'")), SECRET);
    assert_eq!(count("SELECT count(*) FROM schema_version"), "1");
    // Both appliances hold connections (their pools and watchers).
    let connections: usize = server
        .psql("postgres", &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(connections >= 2, "{connections} connections");

    drop(a);
    drop(b);
}
