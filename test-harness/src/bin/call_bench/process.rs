//! Child processes: started inside the run's namespace, killed with this
//! process, stopped (with whatever they forked) when dropped.
//!
//! A child runs as `setpriv --pdeathsig KILL -- nsenter --net=NS PROGRAM
//! ARGS`: both exec, so the child's pid is the program's, and the kernel
//! kills it if call-bench dies without running its destructors. What the
//! program forks itself (kamailio's workers) does not inherit that; those
//! are found through `/proc` and stopped with their parent.

use crate::cpu;
use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a child has to exit after SIGTERM before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// A running child. Stopped on drop (SIGTERM, then SIGKILL), its
/// descendants too.
pub struct Child {
    name: String,
    child: std::process::Child,
    log: PathBuf,
}

/// What to start: the program, its arguments, where, and where its output goes.
pub struct Spawn<'a> {
    pub name: &'a str,
    pub program: &'a Path,
    pub args: Vec<String>,
    /// `/run/netns/<name>` of the namespace to run in.
    pub netns: &'a Path,
    pub cwd: &'a Path,
    /// stdout and stderr both go here.
    pub log: PathBuf,
}

impl Spawn<'_> {
    pub fn start(self) -> Result<Child> {
        let out = File::create(&self.log).with_context(|| format!("creating {}", self.log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL", "--", "nsenter"])
            .arg(format!("--net={}", self.netns.display()))
            .arg(self.program)
            .args(&self.args)
            .current_dir(self.cwd)
            // Plain logs (tracing's ANSI colours are off with NO_COLOR).
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd
            .spawn()
            .with_context(|| format!("{}: cannot start {cmd:?} (setpriv and nsenter: util-linux)", self.name))?;
        Ok(Child { name: self.name.to_string(), child, log: self.log })
    }
}

impl Child {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of what it printed.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Fails if it has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}); its last output:\n{}", self.name, self.log_tail(20));
        }
        Ok(())
    }

    /// Waits for its exit until `deadline`; `None` if it still runs then.
    pub fn wait_until(&mut self, deadline: Instant) -> Result<Option<ExitStatus>> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM to it, SIGKILL after the grace period; then SIGKILL to any
    /// process it had forked that is still there.
    pub fn stop(&mut self) {
        let forked = cpu::descendants(self.pid());
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGTERM);
            if !matches!(self.wait_until(Instant::now() + EXIT_GRACE), Ok(Some(_))) {
                eprintln!("call-bench: {} did not exit on SIGTERM; killing it", self.name);
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        // Orphaned workers are re-parented, so they are matched by the pid
        // and start time taken while their parent lived.
        for p in forked {
            if cpu::same_process(p) {
                let _ = kill(Pid::from_raw(p.pid as i32), Signal::SIGKILL);
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stop();
    }
}
