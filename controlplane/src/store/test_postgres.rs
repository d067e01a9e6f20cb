//! A throwaway PostgreSQL server for tests: `initdb` into a temporary
//! directory, `postgres` on a free loopback port, one database per test,
//! everything stopped and removed at the end.
//!
//! Built for this crate's tests and, with the `test-postgres` feature, for
//! the end-to-end tests in `test-harness` (never part of the appliance).
//!
//! ```text
//!   test process ──stdin pipe──▶ sh (supervisor) ──▶ postgres -D dir/data
//!                                  └ when the pipe closes (the test process
//!                                    ended, however): stop postgres, rm -rf dir
//! ```
//!
//! The supervisor is why a server shared by a whole test binary (a
//! `static`, never dropped) still goes away with it, even after a panic or
//! a kill. Root runs the server as the `postgres` user (`setpriv`): the
//! server refuses to run as root.
//!
//! The binaries come from Debian's `postgresql` package
//! (`/usr/lib/postgresql/<version>/bin`), which the test command installs;
//! `BRIDGEHEAD_PG_BIN` points elsewhere. Without them, [`TestPostgres::start`]
//! fails and says so: the tests that need a server fail, never skip.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The role the tests connect as, and its password (checked: TCP
/// connections authenticate with SCRAM, as a production server would ask).
pub const USER: &str = "bridgehead";
pub const PASSWORD: &str = "test-password";

pub struct TestPostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    supervisor: Mutex<Option<(Child, ChildStdin)>>,
    databases: AtomicUsize,
}

impl std::fmt::Debug for TestPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPostgres").field("dir", &self.dir).field("port", &self.port).finish()
    }
}

impl TestPostgres {
    /// One server for the whole test process, started by the first caller.
    pub fn shared() -> Result<&'static TestPostgres, String> {
        static SHARED: OnceLock<Result<TestPostgres, String>> = OnceLock::new();
        SHARED.get_or_init(TestPostgres::start).as_ref().map_err(Clone::clone)
    }

    /// Starts a server of its own, stopped when dropped.
    pub fn start() -> Result<TestPostgres, String> {
        let bin = binaries()?;
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "bh-pg-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let owner = server_user()?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("cannot give {} to the postgres user: {e}", dir.display()))?;
        }
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, format!("{PASSWORD}\n"))
            .map_err(|e| format!("cannot write {}: {e}", pwfile.display()))?;
        if let Some((uid, gid)) = owner {
            let _ = std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid));
        }
        let mut initdb = as_server_user(owner, &bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-U", USER, "-E", "UTF8", "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let out = initdb.output().map_err(|e| format!("cannot run initdb: {e}"))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        // A port found free now may be taken before the server binds it:
        // try a few.
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port()?;
            match TestPostgres::run(&bin, &dir, owner, port) {
                Ok(supervisor) => {
                    return Ok(TestPostgres {
                        bin,
                        dir,
                        port,
                        supervisor: Mutex::new(Some(supervisor)),
                        databases: AtomicUsize::new(0),
                    })
                }
                Err(e) => last = e,
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(last)
    }

    fn run(bin: &Path, dir: &Path, owner: Option<(u32, u32)>, port: u16) -> Result<(Child, ChildStdin), String> {
        let server = match owner {
            Some((uid, gid)) => {
                format!("setpriv --reuid={uid} --regid={gid} --clear-groups {}", bin.join("postgres").display())
            }
            None => bin.join("postgres").display().to_string(),
        };
        // fsync off: a throwaway server need not survive a power cut, and the
        // tests run faster. Logs go to a file, read when it fails.
        let script = format!(
            r#"{server} -D "$1/data" -k "$1" -p {port} -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c max_connections=300 >"$1/log" 2>&1 &
            pid=$!
            read -r _ || true
            kill -INT "$pid" 2>/dev/null
            wait "$pid"
            rm -rf "$1""#
        );
        // The server's working directory is its own: the test's may be one
        // the postgres user cannot enter (a checkout under /root).
        let mut child = Command::new("sh")
            .current_dir(dir)
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the server: {e}"))?;
        let stdin = child.stdin.take().ok_or("no pipe to the supervisor")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", USER])
                .status()
                .map_err(|e| format!("cannot run pg_isready: {e}"))?;
            if ready.success() {
                return Ok((child, stdin));
            }
            if matches!(child.try_wait(), Ok(Some(_))) || Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
                drop(stdin);
                let _ = child.wait();
                return Err(format!("the server did not start on port {port}: {}", log.trim()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db`, as an appliance's `[store] url`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }

    /// The URL of database `db` through the server's Unix socket: reaches
    /// it from any network namespace (a socket file is not bound to one).
    pub fn socket_url(&self, db: &str) -> String {
        let dir = self.dir.display().to_string().replace('/', "%2F");
        format!("postgres://{USER}:{PASSWORD}@{dir}:{}/{db}", self.port)
    }

    /// A new, empty database; returns its name.
    pub fn create_database(&self) -> Result<String, String> {
        let name = format!("t{}", self.databases.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(name)
    }

    /// Runs `sql` in database `db` as the superuser (over the server's
    /// Unix socket); returns what it printed, unaligned, tuples only.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "-U", USER, "-d", db, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-c", sql])
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if !out.status.success() {
            return Err(format!("psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Stops the server and removes its directory.
    pub fn stop(&self) {
        let supervisor = self.supervisor.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some((mut child, mut stdin)) = supervisor {
            let _ = stdin.write_all(b"stop\n");
            drop(stdin);
            let _ = child.wait();
        }
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The directory of the server binaries: `BRIDGEHEAD_PG_BIN`, or the newest
/// `/usr/lib/postgresql/<version>/bin` with a `postgres` in it.
fn binaries() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("BRIDGEHEAD_PG_BIN") {
        let dir = PathBuf::from(dir);
        if !dir.join("postgres").is_file() {
            return Err(format!(
                "BRIDGEHEAD_PG_BIN={} has no postgres binary: point it at a PostgreSQL bin directory, or unset it \
                 and run the test command, scripts/test.sh, which installs Debian's postgresql package",
                dir.display()
            ));
        }
        return Ok(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (set BRIDGEHEAD_PG_BIN to elsewhere): \
         run the test command, scripts/test.sh, which installs Debian's postgresql package"
            .to_string()
    })
}

/// `Some((uid, gid))` of the `postgres` user when we are root (the server
/// refuses to run as root), `None` when we are not.
fn server_user() -> Result<Option<(u32, u32)>, String> {
    let me = std::fs::metadata("/proc/self").map_err(|e| format!("cannot read /proc/self: {e}"))?.uid();
    if me != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("cannot read /etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
                _ => None,
            }
        })
        .map(Some)
        .ok_or_else(|| "we are root and there is no postgres user to run the server as: install postgresql".into())
}

fn as_server_user(owner: Option<(u32, u32)>, program: &Path) -> Command {
    match owner {
        Some((uid, gid)) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}")).arg(format!("--regid={gid}")).arg("--clear-groups").arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn free_port() -> Result<u16, String> {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    socket.local_addr().map(|a| a.port()).map_err(|e| format!("no free port: {e}"))
}
