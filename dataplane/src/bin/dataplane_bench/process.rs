//! Child processes of a benchmark run: spawned pinned to a core, spoken to by
//! lines on stdin/stdout, measured through `/proc`, and always stopped.
//!
//! Every child is held by an [`Agent`], which stops it when dropped (also
//! while a panic unwinds). Children are started through `setpriv
//! --pdeathsig KILL` where it exists, so the kernel kills them even if this
//! process is killed outright and no destructor runs.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Kernel clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`): fixed at
/// 100 by the Linux ABI on every architecture this runs on.
const USER_HZ: f64 = 100.0;

/// How long a child may take to exit after its stdin closes or SIGTERM.
const EXIT_GRACE: Duration = Duration::from_secs(3);

/// How a child is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Close its stdin: our own modes exit at end of input.
    CloseStdin,
    /// SIGTERM (programs that do not read stdin).
    Terminate,
}

/// A running child process. Stopped on drop: first as its [`Stop`] says,
/// then with SIGKILL once [`EXIT_GRACE`] has passed.
pub struct Agent {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Option<Receiver<String>>,
    stop: Stop,
}

/// Finds a program in `PATH` (or takes a path as it is).
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}

/// Builds the command line of a child: killed with its parent, pinned to
/// `core` when the machine has it and `taskset` is there.
pub fn command(program: &Path, args: &[String], core: Option<usize>) -> Command {
    let mut line: Vec<String> = Vec::new();
    if which("setpriv").is_some() {
        line.extend(["setpriv", "--pdeathsig", "KILL", "--"].map(String::from));
    }
    if let Some(core) = core.filter(|&c| c < cores()) {
        if which("taskset").is_some() {
            line.extend(["taskset".into(), "-c".into(), core.to_string()]);
        }
    }
    line.push(program.display().to_string());
    line.extend(args.iter().cloned());
    let mut cmd = Command::new(&line[0]);
    cmd.args(&line[1..]);
    cmd
}

/// Online CPU cores.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Agent {
    /// Spawns `cmd` with piped stdin and stdout (stdout read line by line on
    /// a thread); stderr goes to `stderr`.
    pub fn spawn(name: &str, mut cmd: Command, stderr: Stdio, stop: Stop) -> Result<Agent, String> {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(stderr);
        let mut child = cmd.spawn().map_err(|e| format!("{name}: cannot start {cmd:?}: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(stdout) = stdout {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Agent { name: name.to_string(), child, stdin, lines: Some(rx), stop })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one line to the child's stdin.
    pub fn send(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or_else(|| format!("{}: stdin closed", self.name))?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("{}: write to stdin: {e}", self.name))
    }

    /// The next line the child prints, waiting at most `timeout`.
    pub fn line(&mut self, timeout: Duration) -> Result<String, String> {
        let rx = self.lines.as_ref().ok_or_else(|| format!("{}: no stdout", self.name))?;
        match rx.recv_timeout(timeout) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => {
                Err(format!("{}: no answer within {:.1} s", self.name, timeout.as_secs_f64()))
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.try_wait().ok().flatten();
                Err(format!("{}: exited ({})", self.name, status.map_or("still running".into(), |s| s.to_string())))
            }
        }
    }

    /// The next line that is a JSON object (other lines are skipped).
    pub fn json(&mut self, timeout: Duration) -> Result<serde_json::Value, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.line(left)?;
            if line.trim_start().starts_with('{') {
                return serde_json::from_str(&line).map_err(|e| format!("{}: bad JSON {line:?}: {e}", self.name));
            }
        }
    }

    /// Asks for a JSON answer: sends `line`, returns the next JSON line.
    pub fn ask(&mut self, line: &str, timeout: Duration) -> Result<serde_json::Value, String> {
        self.send(line)?;
        self.json(timeout)
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the child (see [`Stop`]) and reaps it.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if !self.alive() {
            return;
        }
        match self.stop {
            Stop::CloseStdin => drop(self.stdin.take()),
            Stop::Terminate => signal(self.pid(), "TERM"),
        }
        let deadline = Instant::now() + EXIT_GRACE;
        while Instant::now() < deadline {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("dataplane-bench: {} did not exit; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Sends a signal with kill(1): this crate's `nix` has no signal feature and
/// the workspace denies unsafe code.
fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// `utime + stime` of a process (every thread, live and exited), in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    parse_cpu_ticks(&stat)
        .map(|ticks| ticks as f64 / USER_HZ)
        .ok_or_else(|| format!("/proc/{pid}/stat: unexpected format"))
}

/// Fields 14 (utime) and 15 (stime) of a `/proc/<pid>/stat` line. The
/// command name (field 2) may hold spaces and parentheses, so fields are
/// counted from the last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state): utime is the 12th from there.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The path of a file in a per-run temporary folder, for child logs.
pub fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("dataplane-bench-{}-{name}.log", std::process::id()))
}

/// A file to send a child's stderr to (null when it cannot be created).
pub fn log_file(name: &str) -> Stdio {
    std::fs::File::create(log_path(name)).map_or(Stdio::null(), Stdio::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_from_stat_line() {
        let line = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 75 0 0 20 0 3 0 12345 1000000 200 18446744073709551615";
        assert_eq!(parse_cpu_ticks(line), Some(325));
    }

    #[test]
    fn own_cpu_time_is_readable() {
        assert!(cpu_seconds(std::process::id()).is_ok());
    }
}
