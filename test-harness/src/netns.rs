//! Network namespaces for tests: created with `ip netns add`, deleted when
//! the guard drops (also while a failing test unwinds).
//!
//! Names are unique per process and test (`bhe2e-<pid>-<n>-<role>`), so tests
//! run in parallel without meeting. Namespaces a killed run left behind are
//! swept on the first use in a later run (their pid no longer exists).
//!
//! Two ways into a namespace:
//! - [`Netns::run_in`] runs a closure on a thread that joined the namespace
//!   (`setns(2)`). A socket made there stays in that namespace for its whole
//!   life, so the test thread can open sockets "inside" and use them directly.
//! - [`Netns::command`] builds an `nsenter --net` command for a program.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Once};

const PREFIX: &str = "bhe2e";
static COUNTER: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// Runs `ip ARGS...` and fails with its stderr when it fails.
pub fn ip(args: &[&str]) -> Result<()> {
    run("ip", args, None)
}

/// Runs a program to completion, feeding it `stdin`; its stderr goes in the error.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<()> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().with_context(|| format!("cannot run {program} (is it installed?)"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        pipe.write_all(text.as_bytes()).with_context(|| format!("writing to {program}"))?;
    }
    let out = child.wait_with_output().with_context(|| format!("waiting for {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    handle: NetnsHandle,
}

/// A non-owning way into a namespace, for clients that outlive no guard of
/// their own (the admin client). Cheap to clone.
#[derive(Debug, Clone)]
pub struct NetnsHandle {
    name: Arc<str>,
    fd: Arc<File>,
}

impl Netns {
    /// Creates `bhe2e-<pid>-<n>-<role>` with its loopback up.
    pub fn new(role: &str) -> Result<Netns> {
        SWEEP.call_once(sweep_stale);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}-{}-{n}-{role}", std::process::id());
        ip(&["netns", "add", &name]).context("creating a network namespace (the end-to-end tests need root)")?;
        let fd = match File::open(format!("/run/netns/{name}")) {
            Ok(f) => f,
            Err(e) => {
                let _ = ip(&["netns", "del", &name]);
                return Err(e).with_context(|| format!("opening /run/netns/{name}"));
            }
        };
        let ns = Netns { handle: NetnsHandle { name: name.into(), fd: Arc::new(fd) } };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.handle.name
    }

    pub fn handle(&self) -> NetnsHandle {
        self.handle.clone()
    }

    /// `ip ARGS...` inside this namespace.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        self.exec("ip", args, None)
    }

    /// Runs a program inside to completion, with `stdin` fed to it.
    pub fn exec(&self, program: &str, args: &[&str], stdin: Option<&str>) -> Result<()> {
        let net = self.handle.nsenter_arg();
        let mut all = vec![net.as_str(), program];
        all.extend_from_slice(args);
        run("nsenter", &all, stdin)
    }

    /// Sets a sysctl inside (`net.*` keys are per namespace).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.exec("sysctl", &["-qw", &format!("{key}={value}")], None)
    }

    /// A command that runs `program` inside this namespace.
    pub fn command(&self, program: &std::path::Path) -> Command {
        self.handle.command(program)
    }

    pub fn run_in<R: Send, F: FnOnce() -> R + Send>(&self, f: F) -> Result<R> {
        self.handle.run_in(f)
    }
}

impl NetnsHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on a thread that joined this namespace and returns its result.
    /// Sockets made by `f` belong to the namespace for good, whichever thread
    /// uses them afterwards. A panic in `f` is passed on to the caller.
    pub fn run_in<R: Send, F: FnOnce() -> R + Send>(&self, f: F) -> Result<R> {
        let fd: &File = &self.fd;
        let joined = std::thread::scope(|s| {
            s.spawn(move || -> Result<R> {
                nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).context("setns(CLONE_NEWNET)")?;
                Ok(f())
            })
            .join()
        });
        match joined {
            Ok(r) => r.with_context(|| format!("entering namespace {}", self.name)),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// A command that runs `program` inside this namespace. `nsenter
    /// --net` joins only the network namespace and execs the program (the
    /// child's pid is the program's); unlike `ip netns exec` it needs no
    /// mount namespace, so it also works where `/` is not a mount point
    /// (a chroot).
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(self.nsenter_arg()).arg(program);
        cmd
    }

    fn nsenter_arg(&self) -> String {
        format!("--net=/run/netns/{}", self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Links inside (veth ends, bridges) go with it; a veth's peer in
        // another namespace is removed by the kernel too.
        if let Err(e) = ip(&["netns", "del", self.name()]) {
            eprintln!("warning: {e}");
        }
    }
}

/// Deletes namespaces of earlier runs whose process is gone.
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut parts = name.splitn(3, '-');
        if parts.next() != Some(PREFIX) {
            continue;
        }
        let Some(pid) = parts.next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

/// Creates a veth pair with one end in each namespace (`a_if` in `a`,
/// `b_if` in `b`), MAC addresses given, both ends left down.
pub fn veth(a: &Netns, a_if: &str, a_mac: &str, b: &Netns, b_if: &str, b_mac: &str) -> Result<()> {
    ip(&[
        "link",
        "add",
        a_if,
        "netns",
        a.name(),
        "address",
        a_mac,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
        "address",
        b_mac,
    ])
}
