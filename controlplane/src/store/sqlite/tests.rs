//! The SQLite store against real database files in temporary directories:
//! the behaviour every store shares (`store/suite.rs`), then what is
//! SQLite's own (the file, its pragmas, its indexes, kill -9).

use super::*;
use crate::store::suite::{ac, store_suite};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// A directory removed when the test ends.
struct TestDir(PathBuf);

impl TestDir {
    fn new() -> TestDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "bh-store-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            random_secret()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }

    fn db(&self) -> PathBuf {
        self.0.join("bridgehead.db")
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open() -> (TestDir, SqliteStore) {
    let dir = TestDir::new();
    let store = SqliteStore::open(&dir.db()).unwrap();
    (dir, store)
}

store_suite!(open());

/// A store with accounts 1 and 2.
fn with_accounts() -> (TestDir, SqliteStore) {
    let (dir, store) = open();
    store.create_account(&Account::new(ac(1), "token-1".into())).unwrap();
    store.create_account(&Account::new(ac(2), "token-2".into())).unwrap();
    (dir, store)
}

// ---- opening ----------------------------------------------------------------

#[test]
fn opens_migrates_and_reopens() {
    let dir = TestDir::new();
    let store = SqliteStore::open(&dir.db()).unwrap();
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
    assert_eq!(store.integrity_check().unwrap(), ["ok"]);
    let mode: String = store.lock().query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = store.lock().query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
    assert_eq!(fk, 1);
    store.create_account(&Account::new(ac(1), "t".into())).unwrap();
    drop(store);

    // Holds secrets: owner-only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.db()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // A second open migrates nothing and keeps the data.
    let store = SqliteStore::open_with(&dir.db(), Durability::PowerLoss).unwrap();
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
    assert_eq!(store.account(&ac(1)).unwrap().auth_token, "t");
}

#[test]
fn refuses_a_database_from_a_newer_build() {
    let dir = TestDir::new();
    drop(SqliteStore::open(&dir.db()).unwrap());
    Connection::open(dir.db()).unwrap().pragma_update(None, "user_version", 99).unwrap();
    match SqliteStore::open(&dir.db()) {
        Err(StoreError::SchemaTooNew { found: 99, known }) => {
            assert_eq!(known, MIGRATIONS.len() as i64)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn reports_a_path_it_cannot_open() {
    let dir = TestDir::new();
    let err = SqliteStore::open(&dir.0.join("missing/dir/x.db")).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("missing/dir/x.db"), "{err}");
}

#[test]
fn hot_queries_use_their_indexes() {
    let (_dir, store) = with_accounts();
    let plan = |sql: &str| -> String {
        let conn = store.lock();
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(3)).unwrap().map(Result::unwrap).collect::<Vec<_>>();
        rows.join("; ")
    };
    let p = plan("SELECT * FROM phone_numbers WHERE phone_number = '+15550100001'");
    assert!(p.contains("USING INDEX"), "{p}");
    let p = plan(
        "SELECT * FROM calls WHERE account_sid = 'AC1' \
         ORDER BY date_created DESC, rowid DESC LIMIT 51 OFFSET 0",
    );
    assert!(p.contains("calls_by_account_date") && !p.contains("TEMP B-TREE"), "{p}");
    let p = plan("SELECT * FROM trunk_allow WHERE lo <= x'00' AND hi >= x'00'");
    assert!(p.contains("trunk_allow_by_range"), "{p}");
}

// ---- kill -9 ----------------------------------------------------------------

/// Set in the child process of `committed_writes_survive_kill_9`: the
/// database it writes to.
const WRITER_ENV: &str = "BH_STORE_WRITER";
const WRITER_TEST: &str = "store::sqlite::tests::crash_writer";
/// Lines the writer prints after each commit returned.
const COMMITTED: &str = "committed ";

/// Not a check by itself: the body of the child process that
/// `committed_writes_survive_kill_9` starts (and kills). Without the
/// environment variable it does nothing.
#[test]
fn crash_writer() {
    let Ok(path) = std::env::var(WRITER_ENV) else {
        return;
    };
    let store = SqliteStore::open(Path::new(&path)).unwrap();
    // Large enough rows that the WAL passes its checkpoint threshold (1000
    // pages) during the run, so a kill can land in a checkpoint too.
    let filler = "x".repeat(3000);
    let mut out = std::io::stdout().lock();
    // A bound in case the parent is gone without killing us (a closed pipe
    // also ends the loop, through the failed write).
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let record = CallRecord::new(
            ac(1),
            "+15550100009".into(),
            "+15550100001".into(),
            Direction::Inbound,
            CallStatus::Ringing,
        );
        store.insert_call(&record).unwrap();
        store
            .update_call(
                &record.sid,
                &CallUpdate {
                    status: Some(CallStatus::Completed),
                    error_message: Some(filler.clone()),
                    ..CallUpdate::default()
                },
            )
            .unwrap();
        // Both transactions have committed: report it.
        writeln!(out, "{COMMITTED}{}", record.sid).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn committed_writes_survive_kill_9() {
    if std::env::var_os(WRITER_ENV).is_some() {
        return;
    }
    let dir = TestDir::new();
    let store = SqliteStore::open(&dir.db()).unwrap();
    store.create_account(&Account::new(ac(1), "t".into())).unwrap();
    drop(store);

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([WRITER_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(WRITER_ENV, dir.db())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut committed = Vec::new();
    // Anywhere in the line: libtest prints "test crash_writer ... " without a
    // newline before the test body runs.
    let reported = |line: &str| line.split_once(COMMITTED).and_then(|(_, sid)| CallSid::parse(sid).ok());
    for line in lines.by_ref() {
        if let Some(sid) = reported(&line.unwrap()) {
            committed.push(sid);
            if committed.len() == 800 {
                break;
            }
        }
    }
    // SIGKILL, in the middle of the next transaction.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    // What the child printed between our last read and the kill was committed too.
    for line in lines {
        match line {
            Ok(line) => committed.extend(reported(&line)),
            Err(_) => break,
        }
    }
    assert!(committed.len() >= 800, "the writer stopped after {} commits ({status})", committed.len());
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{status}");

    let store = SqliteStore::open(&dir.db()).unwrap();
    assert_eq!(store.integrity_check().unwrap(), ["ok"]);
    for sid in &committed {
        let record = store.call(&ac(1), sid).unwrap();
        assert_eq!(record.status, CallStatus::Completed, "{sid}");
    }
    // Nothing beyond the one transaction in flight is unaccounted for.
    let rows: i64 = store.lock().query_row("SELECT count(*) FROM calls", [], |r| r.get(0)).unwrap();
    assert!(
        rows as usize == committed.len() || rows as usize == committed.len() + 1,
        "{rows} rows for {} reported commits",
        committed.len()
    );
}
