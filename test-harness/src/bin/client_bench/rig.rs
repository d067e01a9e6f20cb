//! The processes of a run, all inside one network namespace of the run's
//! own (the orchestrator joins it first, so every child is born there):
//! the appliance, the customer's app, and the client workers, each started
//! as `setpriv --pdeathsig KILL -- PROGRAM` so that nothing outlives the
//! orchestrator, and stopped on drop.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use test_harness::admin::AdminClient;
use test_harness::appliance::ApplianceConfig;
use test_harness::netns::Netns;

pub const HTTPS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8443);
pub const ADMIN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9090);
pub const APP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
const ADMIN_TOKEN: &str = "client-bench-admin";
const STARTUP: Duration = Duration::from_secs(30);
/// 200 media ports: 50 calls at once, few descriptors.
pub const MEDIA_PORTS: (u16, u16) = (20000, 20199);

/// The run's namespace, joined by this process.
pub struct Namespace {
    _ns: Netns,
}

impl Namespace {
    /// Creates it and moves this (still single-threaded) process into it.
    pub fn enter() -> Result<Namespace> {
        let ns = Netns::new("cbench").context("a network namespace (client-bench needs root)")?;
        let fd = std::fs::File::open(format!("/run/netns/{}", ns.name()))?;
        nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).context("setns")?;
        Ok(Namespace { _ns: ns })
    }
}

/// A child process killed with us and stopped (SIGTERM, then SIGKILL) on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, program: &Path, args: &[String], dir: &Path, piped: bool) -> Result<Proc> {
        let log = dir.join(format!("{name}.log"));
        let err = std::fs::File::create(&log)?;
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL", "--"]).arg(program).args(args).env("NO_COLOR", "1").stderr(err);
        if piped {
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        } else {
            cmd.stdin(Stdio::null()).stdout(std::fs::File::create(dir.join(format!("{name}.out")))?);
        }
        let child = cmd.spawn().with_context(|| format!("{name}: starting {cmd:?} (setpriv: util-linux)"))?;
        Ok(Proc { name: name.into(), child, log })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}); its log ends with:\n{}", self.name, self.log_tail(20));
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The appliance: its configuration, process and admin client.
pub struct Bridgehead {
    pub proc: Proc,
    pub admin: AdminClient,
}

impl Bridgehead {
    pub fn start(bin: &Path, dir: &Path, max_connections: Option<usize>) -> Result<Bridgehead> {
        let mut config = ApplianceConfig::sockets(IpAddr::V4(Ipv4Addr::LOCALHOST));
        config.id = "client-bench".into();
        config.region = "bench".into();
        config.admin = ADMIN;
        config.admin_token = Some(ADMIN_TOKEN.into());
        config.https = Some(HTTPS);
        config.ports = MEDIA_PORTS;
        config.sessions = 256;
        config.extra = accounts(max_connections);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("bridgehead.toml");
        std::fs::write(&path, config.to_toml(&dir.join("state")))?;
        let args = vec!["--config".to_string(), path.to_string_lossy().into_owned()];
        let mut proc = Proc::spawn("bridgehead", bin, &args, dir, false)?;
        let admin = AdminClient::new(ADMIN, Some(ADMIN_TOKEN.into()), None);
        let deadline = Instant::now() + STARTUP;
        loop {
            proc.check_running()?;
            if admin.request("GET", "/ready", None, Duration::from_millis(500)).is_ok_and(|r| r.status == 200) {
                return Ok(Bridgehead { proc, admin });
            }
            if Instant::now() > deadline {
                bail!("bridgehead not ready within {STARTUP:?}; its log ends with:\n{}", proc.log_tail(20));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn accounts(max_connections: Option<usize>) -> String {
    use crate::tokens::{ACCOUNT, APP as APP_SID, AUTH_TOKEN, KEY, SECRET};
    let clients = max_connections.map_or(String::new(), |n| format!("[clients]\nmax_connections = {n}\n\n"));
    format!(
        "{clients}[[accounts]]\nsid = \"{ACCOUNT}\"\nauth_token = \"{AUTH_TOKEN}\"\n\
         [[accounts.api_keys]]\nsid = \"{KEY}\"\nsecret = \"{SECRET}\"\n\
         [[accounts.applications]]\nsid = \"{APP_SID}\"\nvoice_url = \"http://{APP}/voice\"\nvoice_method = \"POST\"\n"
    )
}

/// The customer's app (`client-bench serve-app`).
pub fn start_app(me: &Path, dir: &Path) -> Result<Proc> {
    let mut app = Proc::spawn("app", me, &["serve-app".into(), "--listen".into(), APP.to_string()], dir, false)?;
    let deadline = Instant::now() + STARTUP;
    while TcpStream::connect_timeout(&APP, Duration::from_millis(200)).is_err() {
        app.check_running()?;
        if Instant::now() > deadline {
            bail!("the app does not accept connections on {APP}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(app)
}

/// A `client-bench worker`: commands on its stdin, JSON lines back.
pub struct Worker {
    pub proc: Proc,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Worker {
    pub fn start(name: &str, me: &Path, args: Vec<String>, dir: &Path) -> Result<Worker> {
        let mut all = vec!["worker".to_string()];
        all.extend(args);
        let mut proc = Proc::spawn(name, me, &all, dir, true)?;
        let stdin = proc.child.stdin.take().context("stdin")?;
        let stdout = proc.child.stdout.take().context("stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut w = Worker { proc, stdin, lines };
        w.expect("started", STARTUP)?;
        Ok(w)
    }

    pub fn send(&mut self, command: &str) -> Result<()> {
        writeln!(self.stdin, "{command}").with_context(|| format!("{}: command {command}", self.proc.name))?;
        Ok(self.stdin.flush()?)
    }

    /// The next answer of `event` kind within `within`.
    pub fn expect(&mut self, event: &str, within: Duration) -> Result<Value> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let v: Value =
                        serde_json::from_str(&line).with_context(|| format!("{}: {line}", self.proc.name))?;
                    if v["event"] == event {
                        return Ok(v);
                    }
                    if v["event"] == "error" {
                        bail!("{}: {}", self.proc.name, v["error"]);
                    }
                }
                Err(_) => {
                    self.proc.check_running()?;
                    bail!("{}: no {event} within {within:?}", self.proc.name);
                }
            }
        }
    }

    pub fn ask(&mut self, command: &str, event: &str, within: Duration) -> Result<Value> {
        self.send(command)?;
        self.expect(event, within)
    }
}
