//! Runs the `bridgehead` binary for a test: writes its configuration into a
//! scratch directory, starts it (inside a namespace if asked), waits until
//! `/ready` answers, and stops it with SIGTERM when dropped.
//!
//! The binary is `$BRIDGEHEAD_BIN`, or `bridgehead` in the target directory
//! the test itself was built into (`cargo build -p controlplane` first).

use crate::admin::AdminClient;
use crate::netns::Netns;
use anyhow::{bail, Context, Result};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long start-up may take before the test fails.
pub const READY_WITHIN: Duration = Duration::from_secs(15);
/// How long a stop may take before the process is killed.
pub const STOP_WITHIN: Duration = Duration::from_secs(5);

/// The path of the `bridgehead` binary.
pub fn bridgehead_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("BRIDGEHEAD_BIN") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("BRIDGEHEAD_BIN={} does not exist", p.display());
        }
        return Ok(p);
    }
    // A test runs as <target>/<profile>/deps/<test>-<hash>.
    let exe = std::env::current_exe().context("current_exe")?;
    let profile_dir = exe.parent().and_then(Path::parent).context("test binary outside a target directory")?;
    let bin = profile_dir.join("bridgehead");
    if !bin.is_file() {
        bail!(
            "{} not found: build it first with `cargo build -p controlplane` (same CARGO_TARGET_DIR and profile as the tests), \
             or point BRIDGEHEAD_BIN at it",
            bin.display()
        );
    }
    Ok(bin)
}

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub fn new(role: &str) -> Result<ScratchDir> {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "bhe2e-{}-{}-{role}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(ScratchDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The keys of the configuration file a test sets.
#[derive(Debug, Clone)]
pub struct ApplianceConfig {
    pub id: String,
    pub region: String,
    pub admin: SocketAddr,
    pub admin_token: Option<String>,
    pub backend: String,
    pub media_ip: IpAddr,
    pub extra_media_ips: Vec<IpAddr>,
    pub ports: (u16, u16),
    pub workers: usize,
    pub sessions: usize,
    pub media_timeout_s: u64,
    /// `listen.https` (TLS: the REST API); `None` leaves the appliance's default.
    pub https: Option<SocketAddr>,
    /// Lines appended as they are (a `[dataplane.dpdk]` section, say).
    pub extra: String,
    /// `appliance.drain_s`: the grace calls get on SIGTERM (short in
    /// tests, so that stopping a rig with a call up stays quick).
    pub drain_s: u64,
}

impl ApplianceConfig {
    /// The socket backend on `media_ip`, admin on loopback with a token.
    pub fn sockets(media_ip: IpAddr) -> ApplianceConfig {
        ApplianceConfig {
            id: "bh-e2e".into(),
            region: "e2e".into(),
            admin: SocketAddr::from(([127, 0, 0, 1], 9090)),
            admin_token: Some("e2e-admin-token".into()),
            backend: "sockets".into(),
            media_ip,
            extra_media_ips: Vec::new(),
            ports: (20000, 20199),
            workers: 2,
            sessions: 64,
            media_timeout_s: 30,
            https: None,
            extra: String::new(),
            drain_s: 1,
        }
    }

    /// The TOML text; `state_dir` is the appliance's own.
    pub fn to_toml(&self, state_dir: &Path) -> String {
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default(); // a JSON string is a valid TOML basic string
        let mut t = String::new();
        t.push_str(&format!(
            "[appliance]\nid = {}\nregion = {}\nstate_dir = {}\ndrain_s = {}\n\n",
            q(&self.id),
            q(&self.region),
            q(&state_dir.to_string_lossy()),
            self.drain_s
        ));
        t.push_str(&format!("[listen]\nadmin = {}\n", q(&self.admin.to_string())));
        if let Some(token) = &self.admin_token {
            t.push_str(&format!("admin_token = {}\n", q(token)));
        }
        if let Some(https) = self.https {
            t.push_str(&format!("https = {}\n", q(&https.to_string())));
        }
        let extra_ips: Vec<String> = self.extra_media_ips.iter().map(|ip| q(&ip.to_string())).collect();
        t.push_str(&format!(
            "\n[dataplane]\nbackend = {}\nmedia_ip = {}\nextra_media_ips = [{}]\nports = \"{}-{}\"\nworkers = {}\nsessions = {}\nmedia_timeout_s = {}\n",
            q(&self.backend),
            q(&self.media_ip.to_string()),
            extra_ips.join(", "),
            self.ports.0,
            self.ports.1,
            self.workers,
            self.sessions,
            self.media_timeout_s
        ));
        if !self.extra.is_empty() {
            t.push('\n');
            t.push_str(&self.extra);
            t.push('\n');
        }
        t
    }
}

/// A running appliance; stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct Appliance {
    child: Option<Child>,
    pub admin: AdminClient,
    pub config: ApplianceConfig,
    stderr_path: PathBuf,
    // Last: removed after the process is gone.
    dir: ScratchDir,
}

impl Appliance {
    /// Starts `bridgehead` with `config`, inside `netns` if given, and waits for `/ready`.
    pub fn start(config: ApplianceConfig, netns: Option<&Netns>) -> Result<Appliance> {
        let bin = bridgehead_bin()?;
        let dir = ScratchDir::new("appliance")?;
        let config_path = dir.path().join("bridgehead.toml");
        std::fs::write(&config_path, config.to_toml(&dir.path().join("state")))?;
        let stderr_path = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path)?;
        let mut cmd = match netns {
            Some(ns) => ns.command(&bin),
            None => Command::new(&bin),
        };
        cmd.arg("--config").arg(&config_path).stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
        let child = cmd.spawn().with_context(|| format!("starting {}", bin.display()))?;
        let admin = AdminClient::new(config.admin, config.admin_token.clone(), netns.map(Netns::handle));
        let mut appliance = Appliance { child: Some(child), admin, config, stderr_path, dir };
        appliance.wait_ready(READY_WITHIN)?;
        Ok(appliance)
    }

    fn wait_ready(&mut self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        let mut last: String;
        loop {
            if let Some(status) = self.child.as_mut().map(Child::try_wait).transpose()?.flatten() {
                bail!("bridgehead exited during start-up ({status}); its stderr:\n{}", self.stderr());
            }
            match self.admin.request("GET", "/ready", None, Duration::from_millis(500)) {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) => last = format!("/ready answered {}: {}", r.status, r.body.trim()),
                Err(e) => last = format!("{e:#}"),
            }
            if Instant::now() >= deadline {
                bail!("bridgehead not ready within {within:?} ({last}); its stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the appliance wrote to stderr so far (its log).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn scratch_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The appliance's `state_dir` (its database, `tls/cert.pem` when the
    /// certificate was generated).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Sends SIGTERM and returns at once (see [`Appliance::wait_exit`]).
    pub fn terminate(&self) -> Result<()> {
        let child = self.child.as_ref().context("already stopped")?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).context("SIGTERM")
    }

    /// Waits up to `within` for the process to exit by itself; kills it if
    /// it does not (and fails).
    pub fn wait_exit(&mut self, within: Duration) -> Result<ExitStatus> {
        let mut child = self.child.take().context("already stopped")?;
        match wait_bounded(&mut child, within)? {
            Some(status) => Ok(status),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("bridgehead did not exit within {within:?}; its stderr:\n{}", self.stderr())
            }
        }
    }

    /// Sends SIGTERM and waits up to `within` for the exit; kills it if it
    /// does not stop in time (and fails).
    pub fn stop(&mut self, within: Duration) -> Result<ExitStatus> {
        let mut child = self.child.take().context("already stopped")?;
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).context("SIGTERM")?;
        match wait_bounded(&mut child, within)? {
            Some(status) => Ok(status),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("bridgehead did not exit within {within:?} of SIGTERM; its stderr:\n{}", self.stderr())
            }
        }
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        if self.child.is_some() {
            if let Err(e) = self.stop(STOP_WITHIN) {
                eprintln!("warning: {e:#}");
            }
        }
    }
}

/// Waits for `child` up to `within`; None if it still runs.
pub fn wait_bounded(child: &mut Child, within: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What a finished run of `bridgehead` left.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `bridgehead ARGS...` in the root namespace to its end (killed after
/// `within`), with output captured: for configuration checks.
pub fn run_bridgehead(args: &[&std::ffi::OsStr], within: Duration) -> Result<Finished> {
    let bin = bridgehead_bin()?;
    let dir = ScratchDir::new("run")?;
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new(&bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let status = match wait_bounded(&mut child, within)? {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "bridgehead {args:?} still running after {within:?}; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
    };
    Ok(Finished { status, stdout: std::fs::read_to_string(&out_path)?, stderr: std::fs::read_to_string(&err_path)? })
}
